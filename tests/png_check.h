/* A small PNG reader for the tests of `attn --png` (tests/test_png.c, tests/cli_e2e.c), written
 * from the specs independently of tools/attn/png.c: the signature, every chunk's CRC-32 (bitwise),
 * IHDR (8-bit RGB, no interlace) first, IEND last, the IDAT data a zlib stream (header check
 * bits, deflate method) whose deflate blocks (stored or fixed Huffman; dynamic Huffman is refused:
 * the writer never makes it) inflate to exactly h rows of 1 + 3 w bytes, each with filter byte 0,
 * and whose Adler-32 matches. Header-only: static functions. */
#ifndef ATTN_TEST_PNG_CHECK_H
#define ATTN_TEST_PNG_CHECK_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint32_t pc_crc32(const uint8_t *p, size_t n) {
  uint32_t c = 0xffffffffu;
  for (size_t i = 0; i < n; i++) {
    c ^= p[i];
    for (int k = 0; k < 8; k++) c = (c >> 1) ^ (0xEDB88320u & (0u - (c & 1)));
  }
  return ~c;
}

static uint32_t pc_adler32(const uint8_t *p, size_t n) {
  uint32_t a = 1, b = 0;
  for (size_t i = 0; i < n; i++) {
    a = (a + p[i]) % 65521;
    b = (b + a) % 65521;
  }
  return b << 16 | a;
}

static uint32_t pc_be32(const uint8_t *p) {
  return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

typedef struct pc_bits {
  const uint8_t *p;
  size_t n, pos; /* bit position */
  int bad;
} pc_bits;

/* n bits, least significant first (deflate's fields). */
static uint32_t pc_get(pc_bits *r, int n) {
  uint32_t v = 0;
  for (int i = 0; i < n; i++) {
    if (r->pos >= 8 * r->n) {
      r->bad = 1;
      return 0;
    }
    v |= (uint32_t)((r->p[r->pos >> 3] >> (r->pos & 7)) & 1) << i;
    r->pos++;
  }
  return v;
}

/* A fixed-Huffman literal/length symbol: codes are read most significant bit first. */
static int pc_fixed_symbol(pc_bits *r) {
  uint32_t code = 0;
  for (int len = 1; len <= 9 && !r->bad; len++) {
    code = code << 1 | pc_get(r, 1);
    if (len == 7 && code <= 0x17) return 256 + (int)code;
    if (len == 8 && code >= 0x30 && code <= 0xbf) return (int)code - 0x30;
    if (len == 8 && code >= 0xc0 && code <= 0xc7) return 280 + (int)(code - 0xc0);
    if (len == 9 && code >= 0x190 && code <= 0x1ff) return 144 + (int)(code - 0x190);
  }
  r->bad = 1;
  return -1;
}

/* Inflates a raw deflate stream into out[0, cap): the byte count, or -1 on any error (a bad
 * block type, a code out of range, a distance before the start, more than cap bytes, trailing
 * garbage beyond the final block's byte). *end receives the byte offset after the stream. */
static long pc_inflate(const uint8_t *in, size_t n, uint8_t *out, size_t cap, size_t *end) {
  static const uint16_t lb[29] = {3,  4,  5,  6,  7,  8,  9,  10, 11,  13,  15,  17,  19,  23, 27,
                                  31, 35, 43, 51, 59, 67, 83, 99, 115, 131, 163, 195, 227, 258};
  static const uint8_t le[29] = {0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2,
                                 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0};
  static const uint16_t db[30] = {1,    2,    3,    4,    5,    7,    9,    13,    17,    25,
                                  33,   49,   65,   97,   129,  193,  257,  385,   513,   769,
                                  1025, 1537, 2049, 3073, 4097, 6145, 8193, 12289, 16385, 24577};
  static const uint8_t de[30] = {0, 0, 0, 0, 1, 1, 2, 2,  3,  3,  4,  4,  5,  5,  6,
                                 6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13};
  pc_bits r = {in, n, 0, 0};
  size_t o = 0;
  int final = 0;
  while (!final && !r.bad) {
    final = (int)pc_get(&r, 1);
    const uint32_t type = pc_get(&r, 2);
    if (type == 0) { /* stored: from the next byte boundary, LEN, NLEN, the bytes */
      r.pos = (r.pos + 7) & ~(size_t)7;
      const uint32_t len = pc_get(&r, 16), nlen = pc_get(&r, 16);
      if (r.bad || (len ^ 0xffff) != nlen || r.pos / 8 + len > n || o + len > cap) return -1;
      memcpy(out + o, in + r.pos / 8, len);
      o += len;
      r.pos += 8 * (size_t)len;
    } else if (type == 1) {
      for (;;) {
        const int sym = pc_fixed_symbol(&r);
        if (r.bad || sym > 285) return -1;
        if (sym < 256) {
          if (o >= cap) return -1;
          out[o++] = (uint8_t)sym;
          continue;
        }
        if (sym == 256) break;
        const int k = sym - 257;
        const size_t len = lb[k] + pc_get(&r, le[k]);
        uint32_t dc = 0; /* 5-bit distance code, most significant bit first */
        for (int i = 0; i < 5; i++) dc = dc << 1 | pc_get(&r, 1);
        if (dc > 29) return -1;
        const size_t dist = db[dc] + pc_get(&r, de[dc]);
        if (r.bad || dist > o || o + len > cap) return -1;
        for (size_t i = 0; i < len; i++, o++) out[o] = out[o - dist];
      }
    } else {
      return -1;
    }
  }
  if (r.bad) return -1;
  *end = (r.pos + 7) / 8;
  return (long)o;
}

/* Reads and checks a PNG file; *why (cap bytes) says what is wrong. Returns 1 when good, with
 * *w, *h and (when rgb is not NULL) *rgb: the (h, w, 3) pixels, to free. */
static int png_check(const char *path, int *w, int *h, uint8_t **rgb, char *why, size_t cap) {
  snprintf(why, cap, "ok");
  if (rgb) *rgb = NULL;
  FILE *f = fopen(path, "rb");
  if (!f) {
    snprintf(why, cap, "cannot open");
    return 0;
  }
  fseek(f, 0, SEEK_END);
  const long size = ftell(f);
  fseek(f, 0, SEEK_SET);
  uint8_t *d = malloc(size > 0 ? (size_t)size : 1);
  const size_t n = d && size > 0 ? fread(d, 1, (size_t)size, f) : 0;
  fclose(f);
  static const uint8_t sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
  uint8_t *z = NULL, *raw = NULL;
  size_t zn = 0, at = 8;
  uint32_t pw = 0, ph = 0;
  int chunks = 0, ended = 0, ok = 0;
  if (n < 8 || memcmp(d, sig, 8) != 0) {
    snprintf(why, cap, "no PNG signature");
    goto done;
  }
  while (at + 12 <= n && !ended) {
    const uint32_t len = pc_be32(d + at);
    const uint8_t *type = d + at + 4, *body = d + at + 8;
    if (len > n - at - 12) {
      snprintf(why, cap, "chunk %d runs past the end", chunks);
      goto done;
    }
    if (pc_crc32(type, len + 4) != pc_be32(body + len)) {
      snprintf(why, cap, "chunk %.4s: bad CRC", (const char *)type);
      goto done;
    }
    if (chunks == 0) {
      if (memcmp(type, "IHDR", 4) != 0 || len != 13) {
        snprintf(why, cap, "IHDR is not first");
        goto done;
      }
      pw = pc_be32(body);
      ph = pc_be32(body + 4);
      if (pw == 0 || ph == 0 || pw > 16384 || ph > 16384 || body[8] != 8 || body[9] != 2 ||
          body[10] != 0 || body[11] != 0 || body[12] != 0) {
        snprintf(why, cap, "IHDR: %ux%u, depth %d, color type %d", pw, ph, body[8], body[9]);
        goto done;
      }
    } else if (!memcmp(type, "IDAT", 4)) {
      uint8_t *nz = realloc(z, zn + len + 1);
      if (!nz) goto done;
      z = nz;
      memcpy(z + zn, body, len);
      zn += len;
    } else if (!memcmp(type, "IEND", 4)) {
      ended = 1;
    }
    chunks++;
    at += 12 + len;
  }
  if (!ended || at != n || zn < 6) {
    snprintf(why, cap, "no IEND at the end, or no IDAT");
    goto done;
  }
  if (((z[0] << 8) | z[1]) % 31 != 0 || (z[0] & 0x0f) != 8 || (z[1] & 0x20)) {
    snprintf(why, cap, "bad zlib header %02x %02x", z[0], z[1]);
    goto done;
  }
  const size_t row = 1 + 3 * (size_t)pw, want = row * ph;
  raw = malloc(want + 1);
  size_t end = 0;
  const long got = raw ? pc_inflate(z + 2, zn - 2, raw, want, &end) : -1;
  if (got != (long)want) {
    snprintf(why, cap, "IDAT inflates to %ld bytes, want %zu", got, want);
    goto done;
  }
  if (2 + end + 4 != zn || pc_adler32(raw, want) != pc_be32(z + 2 + end)) {
    snprintf(why, cap, "bad Adler-32 or trailing bytes");
    goto done;
  }
  for (uint32_t y = 0; y < ph; y++)
    if (raw[y * row] != 0) {
      snprintf(why, cap, "row %u: filter %d", y, raw[y * row]);
      goto done;
    }
  ok = 1;
  if (rgb) {
    *rgb = malloc(3 * (size_t)pw * ph);
    for (uint32_t y = 0; *rgb && y < ph; y++) memcpy(*rgb + y * 3 * pw, raw + y * row + 1, 3 * pw);
  }
done:
  if (w) *w = (int)pw;
  if (h) *h = (int)ph;
  free(raw);
  free(z);
  free(d);
  return ok;
}

#endif
