/* Pictures for `attn train/demo/report --png`: an RGB canvas with rectangles, lines and text in a
 * 5x7 bitmap font of our own, written as PNG by our own encoder (no libpng, no zlib): an 8-bit
 * RGB image, filter 0 on every row, one zlib stream holding one deflate block with the fixed
 * Huffman codes (matches against the previous pixel and the pixel above only) and its Adler-32,
 * chunks with their CRC-32 (PNG spec, RFC 1950, RFC 1951). Not part of the library. */
#ifndef ATTN_CLI_PNG_H
#define ATTN_CLI_PNG_H

#include <stddef.h>
#include <stdint.h>

typedef struct cli_image {
  int w, h;
  uint8_t *rgb; /* (h, w, 3), row-major */
} cli_image;

/* A white w x h canvas (1 <= w, h <= 16384). 0, or -1 when out of memory or out of range. */
int cli_image_init(cli_image *img, int w, int h);
void cli_image_free(cli_image *img);

/* Fills the rectangle [x, x + w) x [y, y + h) clipped to the canvas; color 0xRRGGBB. */
void cli_image_rect(cli_image *img, int x, int y, int w, int h, uint32_t color);
/* A 1-pixel line from (x0, y0) to (x1, y1) (Bresenham), clipped. */
void cli_image_line(cli_image *img, int x0, int y0, int x1, int y1, uint32_t color);

/* The font: 5x7 glyphs in 6x8 cells, printable ASCII; any other byte is drawn as '?' (a UTF-8
 * character counts once: its continuation bytes are skipped). `scale` multiplies each pixel. */
enum { CLI_FONT_W = 6, CLI_FONT_H = 8 };
/* Text with its top-left corner at (x, y); returns the width drawn in pixels. */
int cli_image_text(cli_image *img, int x, int y, const char *s, uint32_t color, int scale);
/* Text drawn downwards, one character under the other (column labels of a heatmap). */
void cli_image_text_down(cli_image *img, int x, int y, const char *s, uint32_t color, int scale);
/* The number of characters the font draws for s (UTF-8 characters count once). */
int cli_text_chars(const char *s);

/* Writes img as a PNG file (to path.tmp, then renamed). 0, or -1 with errno set. */
int cli_png_write(const char *path, const cli_image *img);

/* The checksums of the format, exposed for the tests: CRC-32 (ISO 3309, as PNG uses it) and
 * Adler-32 (RFC 1950) of n bytes, continuing from `crc` / `adler` (start from 0 / 1). */
uint32_t cli_crc32(uint32_t crc, const uint8_t *p, size_t n);
uint32_t cli_adler32(uint32_t adler, const uint8_t *p, size_t n);

#endif
