/* The PNG writer of `attn --png` (tools/attn/png.c, compiled into this test so that it also runs
 * under the sanitizers, which build no tools): CRC-32 and Adler-32 of known strings; images of
 * awkward sizes (1 x 1, odd widths, rows wider than a stored block, random pixels that defeat the
 * matches, flat areas that use them) read back pixel for pixel through tests/png_check.h, an
 * independent reader and inflater; the font draws printable ASCII and a '?' for other
 * characters; bad arguments fail without writing. */
#include "../tools/attn/png.c"

#include "common.h"
#include "png_check.h"

#include <unistd.h>

static char g_root[256];

static void test_checksums(void) {
  const uint8_t *s = (const uint8_t *)"123456789";
  CHECK(cli_crc32(0, s, 9) == 0xCBF43926u, "crc32 %08x", cli_crc32(0, s, 9));
  CHECK(cli_crc32(cli_crc32(0, s, 4), s + 4, 5) == 0xCBF43926u, "crc32 in two parts");
  CHECK(cli_crc32(0, s, 0) == 0, "crc32 of nothing");
  const uint8_t *wk = (const uint8_t *)"Wikipedia";
  CHECK(cli_adler32(1, wk, 9) == 0x11E60398u, "adler32 %08x", cli_adler32(1, wk, 9));
  /* long input: the modulo is taken in time */
  uint8_t *big = malloc(100000);
  for (int i = 0; i < 100000; i++) big[i] = 255;
  CHECK(cli_adler32(1, big, 100000) == pc_adler32(big, 100000), "adler32 of 100000 x 0xff");
  free(big);
}

/* Writes img, reads it back and compares every pixel. */
static void round_trip(const cli_image *img, const char *what) {
  char path[512], why[128];
  snprintf(path, sizeof path, "%s/img.png", g_root);
  CHECK(cli_png_write(path, img) == 0, "%s: write failed", what);
  int w = 0, h = 0;
  uint8_t *rgb = NULL;
  const int ok = png_check(path, &w, &h, &rgb, why, sizeof why);
  CHECK(ok && w == img->w && h == img->h, "%s: %s (%dx%d)", what, why, w, h);
  if (ok && rgb)
    CHECK(!memcmp(rgb, img->rgb, (size_t)w * (size_t)h * 3), "%s: pixels differ", what);
  free(rgb);
  snprintf(path, sizeof path, "%s/img.png.tmp", g_root);
  CHECK(access(path, F_OK) != 0, "%s: temporary file left", what);
}

static void test_round_trips(void) {
  static const int sizes[][2] = {{1, 1}, {2, 1}, {1, 3}, {7, 5}, {33, 17}, {300, 200}, {11000, 2}};
  t_rng r = t_rng_make(3);
  for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
    for (int kind = 0; kind < 3; kind++) {
      cli_image img;
      CHECK(cli_image_init(&img, sizes[k][0], sizes[k][1]) == 0, "init");
      const size_t n = (size_t)img.w * (size_t)img.h * 3;
      if (kind == 0) /* random bytes: literals only */
        for (size_t i = 0; i < n; i++) img.rgb[i] = (uint8_t)t_next(&r);
      else if (kind == 1) /* flat rectangles and lines: long matches of both kinds */
        for (int i = 0; i < 20; i++) {
          cli_image_rect(&img, (int)t_int(&r, -5, img.w), (int)t_int(&r, -5, img.h),
                         (int)t_int(&r, 0, img.w), (int)t_int(&r, 0, img.h),
                         (uint32_t)t_next(&r) & 0xffffff);
          cli_image_line(&img, (int)t_int(&r, -9, img.w + 9), (int)t_int(&r, -9, img.h + 9),
                         (int)t_int(&r, -9, img.w + 9), (int)t_int(&r, -9, img.h + 9), 0x123456);
        }
      else /* few values: short matches everywhere */
        for (size_t i = 0; i < n; i++) img.rgb[i] = (uint8_t)(t_next(&r) % 3);
      char what[64];
      snprintf(what, sizeof what, "%dx%d kind %d", img.w, img.h, kind);
      round_trip(&img, what);
      cli_image_free(&img);
    }
  }
}

static void test_font(void) {
  cli_image img;
  CHECK(cli_image_init(&img, 200, 20) == 0, "init");
  CHECK(cli_text_chars("abc") == 3 && cli_text_chars("caf\xc3\xa9") == 4 && cli_text_chars("") == 0,
        "text_chars");
  const int w = cli_image_text(&img, 1, 1, "Az09~", 0x000000, 1);
  CHECK(w == 5 * CLI_FONT_W, "width %d", w);
  int dark = 0; /* every printable glyph but the space has pixels */
  for (size_t i = 0; i < (size_t)img.w * (size_t)img.h * 3; i++) dark += img.rgb[i] == 0;
  CHECK(dark > 5 * 3 * 6, "%d dark bytes", dark);
  for (int c = 0x21; c < 0x7f; c++) {
    int on = 0;
    for (int row = 0; row < 7; row++) on |= font5x7[c - 0x20][row];
    CHECK(on != 0 && (on & ~0x1f) == 0, "glyph %c", c);
  }
  /* "é" draws like '?' */
  cli_image a, b;
  cli_image_init(&a, 12, 10);
  cli_image_init(&b, 12, 10);
  cli_image_text(&a, 0, 0, "\xc3\xa9", 0x000000, 1);
  cli_image_text(&b, 0, 0, "?", 0x000000, 1);
  CHECK(!memcmp(a.rgb, b.rgb, 12 * 10 * 3), "non-ASCII is '?'");
  /* clipping: text and shapes off the canvas write nothing out of bounds */
  cli_image_text(&a, -20, -3, "clipped", 0x000000, 3);
  cli_image_text_down(&a, 8, 5, "down", 0x000000, 2);
  cli_image_rect(&a, -100, -100, 1000, 1000, 0xffffff);
  cli_image_free(&a);
  cli_image_free(&b);
  cli_image_free(&img);
}

/* The reader is not a rubber stamp: a flipped pixel byte (CRC fixed up) fails the Adler-32, a
 * flipped byte anywhere else fails the CRC. */
static void test_reader_catches(void) {
  cli_image img;
  CHECK(cli_image_init(&img, 40, 30) == 0, "init");
  cli_image_rect(&img, 5, 5, 10, 10, 0x336699);
  char path[512], why[128];
  snprintf(path, sizeof path, "%s/c.png", g_root);
  CHECK(cli_png_write(path, &img) == 0, "write");
  cli_image_free(&img);
  FILE *f = fopen(path, "rb");
  uint8_t d[65536];
  const size_t n = f ? fread(d, 1, sizeof d, f) : 0;
  if (f) fclose(f);
  CHECK(n > 60 && png_check(path, NULL, NULL, NULL, why, sizeof why), "clean file: %s", why);
  for (size_t at = 8; at < n; at += 7) {
    uint8_t e[65536];
    memcpy(e, d, n);
    e[at] ^= 0x10;
    f = fopen(path, "wb");
    fwrite(e, 1, n, f);
    fclose(f);
    CHECK(!png_check(path, NULL, NULL, NULL, why, sizeof why), "byte %zu flipped: accepted", at);
  }
  /* the IDAT's last data byte (in the Adler-32) flipped and the chunk's CRC recomputed */
  const size_t idat = 8 + 25, len = pc_be32(d + idat);
  d[idat + 8 + len - 1] ^= 1;
  const uint32_t crc = pc_crc32(d + idat + 4, len + 4);
  d[idat + 8 + len] = (uint8_t)(crc >> 24);
  d[idat + 9 + len] = (uint8_t)(crc >> 16);
  d[idat + 10 + len] = (uint8_t)(crc >> 8);
  d[idat + 11 + len] = (uint8_t)crc;
  f = fopen(path, "wb");
  fwrite(d, 1, n, f);
  fclose(f);
  CHECK(!png_check(path, NULL, NULL, NULL, why, sizeof why), "bad Adler-32 accepted");
  remove(path);
}

static void test_bad(void) {
  cli_image img;
  CHECK(cli_image_init(&img, 0, 5) == -1 && img.rgb == NULL, "width 0");
  CHECK(cli_image_init(&img, 5, 16385) == -1 && img.rgb == NULL, "height too large");
  char path[512];
  snprintf(path, sizeof path, "%s/none.png", g_root);
  CHECK(cli_png_write(path, &img) == -1 && access(path, F_OK) != 0, "empty image written");
  CHECK(cli_image_init(&img, 4, 4) == 0, "init");
  snprintf(path, sizeof path, "%s/no/such/dir/x.png", g_root);
  CHECK(cli_png_write(path, &img) == -1, "unwritable path accepted");
  cli_image_free(&img);
}

int main(void) {
  const char *tmp = getenv("TMPDIR");
  snprintf(g_root, sizeof g_root, "%s/attn_png_XXXXXX", tmp && *tmp ? tmp : "/tmp");
  if (!mkdtemp(g_root)) {
    perror("mkdtemp");
    return 1;
  }
  test_checksums();
  test_round_trips();
  test_font();
  test_reader_catches();
  test_bad();
  char path[512];
  snprintf(path, sizeof path, "%s/img.png", g_root);
  remove(path);
  rmdir(g_root);
  return t_finish("test_png");
}
