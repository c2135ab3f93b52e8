/* Internal interfaces shared by the alignment code: src/ref/align_ref.c and src/cpu/align.c
 * (attn/align.h), src/ref/stochastic_ref.c and src/cpu/stochastic.c (attn/stochastic.h),
 * src/ref/monotonic_ref.c and src/cpu/monotonic.c (attn/monotonic.h). Not installed. */
#ifndef ATTN_ALIGN_INTERNAL_H
#define ATTN_ALIGN_INTERNAL_H

#include "attn/align.h"
#include "internal.h"

/* Validation of an alignment call (src/ref/align_ref.c): `in` (f32, 1..4 dims, n >= 1), `dst`
 * of in's shape, an optional mask broadcastable to in, the params (temperature, kind, local
 * window), and for a backward (d_out or out not NULL) d_out and out of in's shape; then the
 * aliasing rules of attn/align.h. Messages name `fn` and the destination as `dst_name` ("out" or
 * "d_in" when NULL). *rows is the product of the leading dims, *n the last dim. */
attn_status attn__align_check(const char *fn, const char *dst_name, const attn_tensor *dst,
                              const float *d_positions, const attn_tensor *d_out,
                              const attn_tensor *out, const attn_tensor *in,
                              const attn_tensor *mask, const attn_align_params *p, int64_t *rows,
                              int64_t *n);

/* Element offset of row r of t, rows numbered in row-major order over ref's leading dims; dims
 * of size 1 in t are broadcast. *pos (when not NULL) receives the row's index along dim
 * ndim - 2 (0 for 1-d views). */
static inline int64_t attn__align_row_offset(const attn_tensor *t, const attn_tensor *ref,
                                             int64_t r, int64_t *pos) {
  int64_t off = 0;
  int nd = ref->ndim;
  if (pos) *pos = 0;
  for (int d = nd - 2; d >= 0; d--) {
    int64_t idx = r % ref->shape[d];
    r /= ref->shape[d];
    if (d == nd - 2 && pos) *pos = idx;
    if (t->shape[d] != 1) off += idx * t->stride[d];
  }
  return off;
}

/* Byte range of a per-row array of `rows` elements of `size` bytes (empty for NULL). */
static inline attn__range attn__align_rows_range(const void *p, int64_t rows, size_t size) {
  uintptr_t lo = (uintptr_t)p;
  if (!p || rows <= 0) return (attn__range){0, 0};
  return (attn__range){lo, lo + (uintptr_t)rows * size};
}

/* ---- random streams (Philox 4x32-10, attn_philox4x32) -----------------------------------------
 * Every stream is keyed by the seed (key = its two 32-bit halves) and counted by (row, block,
 * tag): counter = {row low 32 bits, row high 32 bits, block, tag}. The tag separates the streams
 * of different functions, so one seed gives unrelated numbers to each. Everything is a pure
 * function of (seed, row, position): results do not depend on threads or ISA. */
enum {
  ATTN__STREAM_SAMPLE = 0x534d504c, /* "SMPL": the categorical sampler's uniform */
  ATTN__STREAM_GUMBEL = 0x474d424c, /* "GMBL": Gumbel noise, 4 positions per block */
  ATTN__STREAM_MONO = 0x4d4f4e4f,   /* "MONO": monotonic attention's Gaussian noise */
};

static inline void attn__stream_block(uint64_t seed, int64_t row, uint32_t block, uint32_t tag,
                                      uint32_t out[4]) {
  const uint32_t ctr[4] = {(uint32_t)(uint64_t)row, (uint32_t)((uint64_t)row >> 32), block, tag};
  const uint32_t key[2] = {(uint32_t)seed, (uint32_t)(seed >> 32)};
  attn_philox4x32(ctr, key, out);
}

/* The sampler's uniform of row r in [0, 1) with 53 random bits. */
static inline double attn__sample_uniform(uint64_t seed, int64_t row) {
  uint32_t o[4];
  attn__stream_block(seed, row, 0, ATTN__STREAM_SAMPLE, o);
  uint64_t bits = ((uint64_t)(o[0] >> 5) << 26) | (uint64_t)(o[1] >> 6);
  return (double)bits * (1.0 / 9007199254740992.0);
}

/* Gumbel noise from one 32-bit word: U = (x + 0.5) / 2^32 in (0, 1), g = -log(-log U), in
 * double (libm, the same bits on every ISA), rounded to f32. g lies in [-3.1, 22.2]. */
static inline float attn__gumbel_from_u32(uint32_t x) {
  double u = ((double)x + 0.5) * (1.0 / 4294967296.0);
  return (float)-log(-log(u));
}

/* Standard normal noise of (row, j) by Box-Muller on two 32-bit words of one block. */
static inline float attn__mono_normal(uint64_t seed, int64_t row, int64_t j) {
  uint32_t o[4];
  attn__stream_block(seed, row, (uint32_t)j, ATTN__STREAM_MONO, o);
  double u1 = ((double)o[0] + 0.5) * (1.0 / 4294967296.0);
  double u2 = (double)o[1] * (1.0 / 4294967296.0);
  return (float)(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
}

#endif
