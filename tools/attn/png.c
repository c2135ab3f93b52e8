/* PNG pictures of our own: canvas, 5x7 bitmap font, PNG encoder (see png.h). */
#include "png.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int cli_image_init(cli_image *img, int w, int h) {
  img->w = img->h = 0;
  img->rgb = NULL;
  if (w < 1 || h < 1 || w > 16384 || h > 16384) return -1;
  img->rgb = malloc((size_t)w * (size_t)h * 3);
  if (!img->rgb) return -1;
  memset(img->rgb, 255, (size_t)w * (size_t)h * 3);
  img->w = w;
  img->h = h;
  return 0;
}

void cli_image_free(cli_image *img) {
  free(img->rgb);
  img->rgb = NULL;
  img->w = img->h = 0;
}

static void put(cli_image *img, int x, int y, uint32_t color) {
  if (x < 0 || y < 0 || x >= img->w || y >= img->h) return;
  uint8_t *p = img->rgb + ((size_t)y * (size_t)img->w + (size_t)x) * 3;
  p[0] = (uint8_t)(color >> 16);
  p[1] = (uint8_t)(color >> 8);
  p[2] = (uint8_t)color;
}

void cli_image_rect(cli_image *img, int x, int y, int w, int h, uint32_t color) {
  const int x0 = x < 0 ? 0 : x, y0 = y < 0 ? 0 : y;
  const int x1 = x + w > img->w ? img->w : x + w, y1 = y + h > img->h ? img->h : y + h;
  for (int j = y0; j < y1; j++)
    for (int i = x0; i < x1; i++) put(img, i, j, color);
}

void cli_image_line(cli_image *img, int x0, int y0, int x1, int y1, uint32_t color) {
  const int dx = abs(x1 - x0), sx = x0 < x1 ? 1 : -1;
  const int dy = -abs(y1 - y0), sy = y0 < y1 ? 1 : -1;
  int err = dx + dy;
  for (;;) {
    put(img, x0, y0, color);
    if (x0 == x1 && y0 == y1) break;
    const int e2 = 2 * err;
    if (e2 >= dy) {
      err += dy;
      x0 += sx;
    }
    if (e2 <= dx) {
      err += dx;
      y0 += sy;
    }
  }
}

/* Glyphs of ' ' .. '~': 7 rows of 5 bits, the most significant bit on the left. */
static const uint8_t font5x7[95][7] = {
    {0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00}, /* ' ' */
    {0x04, 0x04, 0x04, 0x04, 0x04, 0x00, 0x04}, /* '!' */
    {0x0a, 0x0a, 0x0a, 0x00, 0x00, 0x00, 0x00}, /* '"' */
    {0x0a, 0x0a, 0x1f, 0x0a, 0x1f, 0x0a, 0x0a}, /* '#' */
    {0x04, 0x0f, 0x14, 0x0e, 0x05, 0x1e, 0x04}, /* '$' */
    {0x18, 0x19, 0x02, 0x04, 0x08, 0x13, 0x03}, /* '%' */
    {0x0c, 0x12, 0x14, 0x08, 0x15, 0x12, 0x0d}, /* '&' */
    {0x04, 0x04, 0x04, 0x00, 0x00, 0x00, 0x00}, /* ''' */
    {0x02, 0x04, 0x08, 0x08, 0x08, 0x04, 0x02}, /* '(' */
    {0x08, 0x04, 0x02, 0x02, 0x02, 0x04, 0x08}, /* ')' */
    {0x00, 0x04, 0x15, 0x0e, 0x15, 0x04, 0x00}, /* '*' */
    {0x00, 0x04, 0x04, 0x1f, 0x04, 0x04, 0x00}, /* '+' */
    {0x00, 0x00, 0x00, 0x00, 0x0c, 0x04, 0x08}, /* ',' */
    {0x00, 0x00, 0x00, 0x1f, 0x00, 0x00, 0x00}, /* '-' */
    {0x00, 0x00, 0x00, 0x00, 0x00, 0x0c, 0x0c}, /* '.' */
    {0x00, 0x01, 0x02, 0x04, 0x08, 0x10, 0x00}, /* '/' */
    {0x0e, 0x11, 0x13, 0x15, 0x19, 0x11, 0x0e}, /* '0' */
    {0x04, 0x0c, 0x04, 0x04, 0x04, 0x04, 0x0e}, /* '1' */
    {0x0e, 0x11, 0x01, 0x02, 0x04, 0x08, 0x1f}, /* '2' */
    {0x1f, 0x02, 0x04, 0x02, 0x01, 0x11, 0x0e}, /* '3' */
    {0x02, 0x06, 0x0a, 0x12, 0x1f, 0x02, 0x02}, /* '4' */
    {0x1f, 0x10, 0x1e, 0x01, 0x01, 0x11, 0x0e}, /* '5' */
    {0x06, 0x08, 0x10, 0x1e, 0x11, 0x11, 0x0e}, /* '6' */
    {0x1f, 0x01, 0x02, 0x04, 0x08, 0x08, 0x08}, /* '7' */
    {0x0e, 0x11, 0x11, 0x0e, 0x11, 0x11, 0x0e}, /* '8' */
    {0x0e, 0x11, 0x11, 0x0f, 0x01, 0x02, 0x0c}, /* '9' */
    {0x00, 0x0c, 0x0c, 0x00, 0x0c, 0x0c, 0x00}, /* ':' */
    {0x00, 0x0c, 0x0c, 0x00, 0x0c, 0x04, 0x08}, /* ';' */
    {0x02, 0x04, 0x08, 0x10, 0x08, 0x04, 0x02}, /* '<' */
    {0x00, 0x00, 0x1f, 0x00, 0x1f, 0x00, 0x00}, /* '=' */
    {0x08, 0x04, 0x02, 0x01, 0x02, 0x04, 0x08}, /* '>' */
    {0x0e, 0x11, 0x01, 0x02, 0x04, 0x00, 0x04}, /* '?' */
    {0x0e, 0x11, 0x01, 0x0d, 0x15, 0x15, 0x0e}, /* '@' */
    {0x0e, 0x11, 0x11, 0x1f, 0x11, 0x11, 0x11}, /* 'A' */
    {0x1e, 0x11, 0x11, 0x1e, 0x11, 0x11, 0x1e}, /* 'B' */
    {0x0e, 0x11, 0x10, 0x10, 0x10, 0x11, 0x0e}, /* 'C' */
    {0x1c, 0x12, 0x11, 0x11, 0x11, 0x12, 0x1c}, /* 'D' */
    {0x1f, 0x10, 0x10, 0x1e, 0x10, 0x10, 0x1f}, /* 'E' */
    {0x1f, 0x10, 0x10, 0x1e, 0x10, 0x10, 0x10}, /* 'F' */
    {0x0e, 0x11, 0x10, 0x17, 0x11, 0x11, 0x0f}, /* 'G' */
    {0x11, 0x11, 0x11, 0x1f, 0x11, 0x11, 0x11}, /* 'H' */
    {0x0e, 0x04, 0x04, 0x04, 0x04, 0x04, 0x0e}, /* 'I' */
    {0x07, 0x02, 0x02, 0x02, 0x02, 0x12, 0x0c}, /* 'J' */
    {0x11, 0x12, 0x14, 0x18, 0x14, 0x12, 0x11}, /* 'K' */
    {0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x1f}, /* 'L' */
    {0x11, 0x1b, 0x15, 0x15, 0x11, 0x11, 0x11}, /* 'M' */
    {0x11, 0x11, 0x19, 0x15, 0x13, 0x11, 0x11}, /* 'N' */
    {0x0e, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0e}, /* 'O' */
    {0x1e, 0x11, 0x11, 0x1e, 0x10, 0x10, 0x10}, /* 'P' */
    {0x0e, 0x11, 0x11, 0x11, 0x15, 0x12, 0x0d}, /* 'Q' */
    {0x1e, 0x11, 0x11, 0x1e, 0x14, 0x12, 0x11}, /* 'R' */
    {0x0f, 0x10, 0x10, 0x0e, 0x01, 0x01, 0x1e}, /* 'S' */
    {0x1f, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04}, /* 'T' */
    {0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0e}, /* 'U' */
    {0x11, 0x11, 0x11, 0x11, 0x11, 0x0a, 0x04}, /* 'V' */
    {0x11, 0x11, 0x11, 0x15, 0x15, 0x15, 0x0a}, /* 'W' */
    {0x11, 0x11, 0x0a, 0x04, 0x0a, 0x11, 0x11}, /* 'X' */
    {0x11, 0x11, 0x0a, 0x04, 0x04, 0x04, 0x04}, /* 'Y' */
    {0x1f, 0x01, 0x02, 0x04, 0x08, 0x10, 0x1f}, /* 'Z' */
    {0x0e, 0x08, 0x08, 0x08, 0x08, 0x08, 0x0e}, /* '[' */
    {0x00, 0x10, 0x08, 0x04, 0x02, 0x01, 0x00}, /* 'backslash' */
    {0x0e, 0x02, 0x02, 0x02, 0x02, 0x02, 0x0e}, /* ']' */
    {0x04, 0x0a, 0x11, 0x00, 0x00, 0x00, 0x00}, /* '^' */
    {0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x1f}, /* '_' */
    {0x08, 0x04, 0x02, 0x00, 0x00, 0x00, 0x00}, /* '`' */
    {0x00, 0x00, 0x0e, 0x01, 0x0f, 0x11, 0x0f}, /* 'a' */
    {0x10, 0x10, 0x16, 0x19, 0x11, 0x11, 0x1e}, /* 'b' */
    {0x00, 0x00, 0x0e, 0x10, 0x10, 0x11, 0x0e}, /* 'c' */
    {0x01, 0x01, 0x0d, 0x13, 0x11, 0x11, 0x0f}, /* 'd' */
    {0x00, 0x00, 0x0e, 0x11, 0x1f, 0x10, 0x0e}, /* 'e' */
    {0x06, 0x09, 0x08, 0x1c, 0x08, 0x08, 0x08}, /* 'f' */
    {0x00, 0x0f, 0x11, 0x11, 0x0f, 0x01, 0x0e}, /* 'g' */
    {0x10, 0x10, 0x16, 0x19, 0x11, 0x11, 0x11}, /* 'h' */
    {0x04, 0x00, 0x0c, 0x04, 0x04, 0x04, 0x0e}, /* 'i' */
    {0x02, 0x00, 0x06, 0x02, 0x02, 0x12, 0x0c}, /* 'j' */
    {0x10, 0x10, 0x12, 0x14, 0x18, 0x14, 0x12}, /* 'k' */
    {0x0c, 0x04, 0x04, 0x04, 0x04, 0x04, 0x0e}, /* 'l' */
    {0x00, 0x00, 0x1a, 0x15, 0x15, 0x11, 0x11}, /* 'm' */
    {0x00, 0x00, 0x16, 0x19, 0x11, 0x11, 0x11}, /* 'n' */
    {0x00, 0x00, 0x0e, 0x11, 0x11, 0x11, 0x0e}, /* 'o' */
    {0x00, 0x00, 0x1e, 0x11, 0x1e, 0x10, 0x10}, /* 'p' */
    {0x00, 0x00, 0x0d, 0x13, 0x0f, 0x01, 0x01}, /* 'q' */
    {0x00, 0x00, 0x16, 0x19, 0x10, 0x10, 0x10}, /* 'r' */
    {0x00, 0x00, 0x0e, 0x10, 0x0e, 0x01, 0x1e}, /* 's' */
    {0x08, 0x08, 0x1c, 0x08, 0x08, 0x09, 0x06}, /* 't' */
    {0x00, 0x00, 0x11, 0x11, 0x11, 0x13, 0x0d}, /* 'u' */
    {0x00, 0x00, 0x11, 0x11, 0x11, 0x0a, 0x04}, /* 'v' */
    {0x00, 0x00, 0x11, 0x11, 0x15, 0x15, 0x0a}, /* 'w' */
    {0x00, 0x00, 0x11, 0x0a, 0x04, 0x0a, 0x11}, /* 'x' */
    {0x00, 0x00, 0x11, 0x11, 0x0f, 0x01, 0x0e}, /* 'y' */
    {0x00, 0x00, 0x1f, 0x02, 0x04, 0x08, 0x1f}, /* 'z' */
    {0x02, 0x04, 0x04, 0x08, 0x04, 0x04, 0x02}, /* '{' */
    {0x04, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04}, /* '|' */
    {0x08, 0x04, 0x04, 0x02, 0x04, 0x04, 0x08}, /* '}' */
    {0x00, 0x00, 0x08, 0x15, 0x02, 0x00, 0x00}, /* '~' */
};

/* The glyph of the character at *s, advancing *s past it (a UTF-8 sequence is one '?'). */
static const uint8_t *next_glyph(const char **s) {
  const unsigned char c = (unsigned char)**s;
  (*s)++;
  if (c >= 0x20 && c < 0x7f) return font5x7[c - 0x20];
  if (c >= 0xc0)
    while ((((unsigned char)**s) & 0xc0) == 0x80) (*s)++;
  return font5x7['?' - 0x20];
}

static void glyph(cli_image *img, int x, int y, const uint8_t *g, uint32_t color, int scale) {
  for (int r = 0; r < 7; r++)
    for (int c = 0; c < 5; c++)
      if (g[r] & (0x10 >> c))
        cli_image_rect(img, x + c * scale, y + r * scale, scale, scale, color);
}

int cli_image_text(cli_image *img, int x, int y, const char *s, uint32_t color, int scale) {
  const int x0 = x;
  while (*s) {
    glyph(img, x, y, next_glyph(&s), color, scale);
    x += CLI_FONT_W * scale;
  }
  return x - x0;
}

void cli_image_text_down(cli_image *img, int x, int y, const char *s, uint32_t color, int scale) {
  while (*s) {
    glyph(img, x, y, next_glyph(&s), color, scale);
    y += CLI_FONT_H * scale;
  }
}

int cli_text_chars(const char *s) {
  int n = 0;
  while (*s) {
    (void)next_glyph(&s);
    n++;
  }
  return n;
}

/* ---- the encoder --------------------------------------------------------------------------- */

uint32_t cli_crc32(uint32_t crc, const uint8_t *p, size_t n) {
  static uint32_t table[256];
  static int ready;
  if (!ready) { /* the reflected polynomial 0xEDB88320, one entry per byte value */
    for (uint32_t i = 0; i < 256; i++) {
      uint32_t c = i;
      for (int k = 0; k < 8; k++) c = c & 1 ? 0xEDB88320u ^ (c >> 1) : c >> 1;
      table[i] = c;
    }
    ready = 1;
  }
  crc = ~crc;
  for (size_t i = 0; i < n; i++) crc = table[(crc ^ p[i]) & 0xff] ^ (crc >> 8);
  return ~crc;
}

uint32_t cli_adler32(uint32_t adler, const uint8_t *p, size_t n) {
  uint32_t a = adler & 0xffff, b = adler >> 16;
  while (n > 0) { /* 5552 bytes is the most that cannot overflow b before the modulo */
    const size_t k = n < 5552 ? n : 5552;
    for (size_t i = 0; i < k; i++) {
      a += p[i];
      b += a;
    }
    a %= 65521;
    b %= 65521;
    p += k;
    n -= k;
  }
  return (b << 16) | a;
}

static void be32(uint8_t *p, uint32_t v) {
  p[0] = (uint8_t)(v >> 24);
  p[1] = (uint8_t)(v >> 16);
  p[2] = (uint8_t)(v >> 8);
  p[3] = (uint8_t)v;
}

/* One chunk: length, type, data, CRC-32 of type and data. */
static int chunk(FILE *f, const char type[4], const uint8_t *data, uint32_t len) {
  uint8_t head[8], tail[4];
  be32(head, len);
  memcpy(head + 4, type, 4);
  uint32_t crc = cli_crc32(0, head + 4, 4);
  crc = cli_crc32(crc, data, len);
  be32(tail, crc);
  return fwrite(head, 1, 8, f) == 8 && (len == 0 || fwrite(data, 1, len, f) == len) &&
                 fwrite(tail, 1, 4, f) == 4
             ? 0
             : -1;
}

/* ---- deflate with the fixed Huffman codes (RFC 1951, 3.2.6) ------------------------------- */

typedef struct bitw {
  uint8_t *p;
  size_t n; /* bytes completed */
  uint32_t acc;
  int bits; /* bits pending in acc (< 8 between calls) */
} bitw;

/* Appends the low `n` bits of v, least significant first (the order of deflate's fields). */
static void put_bits(bitw *w, uint32_t v, int n) {
  w->acc |= v << w->bits;
  w->bits += n;
  while (w->bits >= 8) {
    w->p[w->n++] = (uint8_t)w->acc;
    w->acc >>= 8;
    w->bits -= 8;
  }
}

/* Appends a Huffman code of `len` bits, most significant bit first. */
static void put_code(bitw *w, uint32_t code, int len) {
  uint32_t r = 0;
  for (int i = 0; i < len; i++) r |= ((code >> i) & 1) << (len - 1 - i);
  put_bits(w, r, len);
}

/* Literal/length symbol 0..287 with its fixed code. */
static void put_symbol(bitw *w, int sym) {
  if (sym < 144)
    put_code(w, 0x30 + (uint32_t)sym, 8);
  else if (sym < 256)
    put_code(w, 0x190 + (uint32_t)(sym - 144), 9);
  else if (sym < 280)
    put_code(w, (uint32_t)(sym - 256), 7);
  else
    put_code(w, 0xc0 + (uint32_t)(sym - 280), 8);
}

static const uint16_t len_base[29] = {3,  4,  5,  6,   7,   8,   9,   10,  11, 13,
                                      15, 17, 19, 23,  27,  31,  35,  43,  51, 59,
                                      67, 83, 99, 115, 131, 163, 195, 227, 258};
static const uint8_t len_extra[29] = {0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2,
                                      2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0};
static const uint16_t dist_base[30] = {
    1,   2,   3,   4,   5,   7,    9,    13,   17,   25,   33,   49,   65,    97,    129,
    193, 257, 385, 513, 769, 1025, 1537, 2049, 3073, 4097, 6145, 8193, 12289, 16385, 24577};
static const uint8_t dist_extra[30] = {0, 0, 0, 0, 1, 1, 2, 2,  3,  3,  4,  4,  5,  5,  6,
                                       6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13};

static void put_match(bitw *w, int len, int dist) {
  int k = 28;
  while (len_base[k] > len) k--;
  put_symbol(w, 257 + k);
  put_bits(w, (uint32_t)(len - len_base[k]), len_extra[k]);
  int d = 29;
  while (dist_base[d] > dist) d--;
  put_code(w, (uint32_t)d, 5);
  put_bits(w, (uint32_t)(dist - dist_base[d]), dist_extra[d]);
}

/* The longest match (<= 258 bytes) of raw[i..] with the bytes `dist` back; 0 if out of reach. */
static int match_len(const uint8_t *raw, size_t n, size_t i, size_t dist) {
  if (dist == 0 || dist > i || dist > 32768) return 0;
  const size_t most = n - i < 258 ? n - i : 258;
  size_t k = 0;
  while (k < most && raw[i + k] == raw[i + k - dist]) k++;
  return (int)k;
}

/* One final fixed-Huffman block of raw[0, n) into out (capacity n + n / 8 + 64: a literal costs at
 * most 9 bits). Matches are only tried against the previous pixel (3 bytes back) and the pixel
 * above (one row back): flat cells and axes, what these pictures are made of, cost a few bits a
 * run. Returns the bytes written. */
static size_t deflate_fixed(uint8_t *out, const uint8_t *raw, size_t n, size_t row) {
  bitw w = {out, 0, 0, 0};
  put_bits(&w, 1, 1); /* BFINAL */
  put_bits(&w, 1, 2); /* BTYPE 01: fixed Huffman codes */
  for (size_t i = 0; i < n;) {
    const int a = match_len(raw, n, i, 3), b = match_len(raw, n, i, row);
    const int len = a >= b ? a : b;
    if (len >= 3) {
      put_match(&w, len, a >= b ? 3 : (int)row);
      i += (size_t)len;
    } else {
      put_symbol(&w, raw[i]);
      i++;
    }
  }
  put_symbol(&w, 256); /* end of block */
  if (w.bits > 0) put_bits(&w, 0, 8 - w.bits);
  return w.n;
}

int cli_png_write(const char *path, const cli_image *img) {
  if (!img->rgb || img->w < 1 || img->h < 1) {
    errno = EINVAL;
    return -1;
  }
  /* The filtered image: each row is filter byte 0 (None) then its RGB bytes. */
  const size_t row = (size_t)img->w * 3 + 1, raw_n = row * (size_t)img->h;
  /* zlib: 2 header bytes, the deflate stream, Adler-32. */
  const size_t z_n = 2 + raw_n + raw_n / 8 + 64 + 4;
  if (raw_n > 0x7fffffffu) {
    errno = EFBIG;
    return -1;
  }
  uint8_t *raw = malloc(raw_n), *z = malloc(z_n);
  if (!raw || !z) {
    free(raw);
    free(z);
    errno = ENOMEM;
    return -1;
  }
  for (int y = 0; y < img->h; y++) {
    raw[(size_t)y * row] = 0;
    memcpy(raw + (size_t)y * row + 1, img->rgb + (size_t)y * (size_t)img->w * 3, row - 1);
  }
  size_t k = 0;
  z[k++] = 0x78; /* CMF: deflate, 32 KiB window */
  z[k++] = 0x01; /* FLG: no dictionary, check bits make 0x7801 a multiple of 31 */
  k += deflate_fixed(z + k, raw, raw_n, row);
  be32(z + k, cli_adler32(1, raw, raw_n));
  k += 4;
  free(raw);
  uint8_t ihdr[13];
  be32(ihdr, (uint32_t)img->w);
  be32(ihdr + 4, (uint32_t)img->h);
  ihdr[8] = 8;  /* bit depth */
  ihdr[9] = 2;  /* color type: RGB */
  ihdr[10] = 0; /* compression: deflate */
  ihdr[11] = 0; /* filter method 0 */
  ihdr[12] = 0; /* no interlace */
  static const uint8_t signature[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
  char tmp[4200];
  snprintf(tmp, sizeof tmp, "%s.tmp", path);
  FILE *f = fopen(tmp, "wb");
  if (!f) {
    free(z);
    return -1;
  }
  int bad = fwrite(signature, 1, 8, f) != 8 || chunk(f, "IHDR", ihdr, 13) != 0 ||
            chunk(f, "IDAT", z, (uint32_t)k) != 0 || chunk(f, "IEND", NULL, 0) != 0;
  free(z);
  bad |= ferror(f) != 0;
  bad |= fclose(f) != 0;
  if (bad || rename(tmp, path) != 0) {
    const int e = errno;
    remove(tmp);
    errno = e ? e : EIO;
    return -1;
  }
  return 0;
}
