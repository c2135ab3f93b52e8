/* Row kernels shared by the portable fast alignment code (src/cpu/align.c, src/cpu/stochastic.c):
 * always inlined, so each caller's AVX2 / AVX-512 clones (target attributes) vectorise them. */
#ifndef ATTN_CPU_ALIGN_ROWS_H
#define ATTN_CPU_ALIGN_ROWS_H

#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "align_internal.h"
#include "scalar_math.h"

#define ATTN_AI static inline __attribute__((always_inline))

/* 8 f32 lanes as a GCC vector (one AVX register, two SSE ones); used only inside functions,
 * never passed by value. */
typedef float v8f __attribute__((vector_size(32)));
typedef int32_t v8i __attribute__((vector_size(32)));

/* max over unblocked entries (-inf if none), their count, and whether any entry is NaN or +inf
 * (which makes the row NaN). Vectorised by hand: the auto-vectoriser will not if-convert the
 * float compares. The max is exact, so the lane order does not matter. */
ATTN_AI float row_max(const float *z, int64_t n, int64_t *count, bool *has_nan) {
  const v8f ninf = {-INFINITY, -INFINITY, -INFINITY, -INFINITY,
                    -INFINITY, -INFINITY, -INFINITY, -INFINITY};
  const v8f pinf = -ninf;
  v8f mv = ninf;
  v8i cnt = {0}, bad = {0};
  int64_t j = 0;
  for (; j + 8 <= n; j += 8) {
    v8f v;
    memcpy(&v, z + j, sizeof v);
    v8i gt = v > mv;
    mv = (v8f)(((v8i)v & gt) | ((v8i)mv & ~gt));
    cnt -= v > ninf;
    bad |= (v != v) | (v == pinf);
  }
  float m = -INFINITY;
  int64_t c = 0;
  bool nan = false;
  for (int l = 0; l < 8; l++) {
    m = mv[l] > m ? mv[l] : m;
    c += cnt[l];
    nan |= bad[l] != 0;
  }
  for (; j < n; j++) {
    m = z[j] > m ? z[j] : m;
    c += z[j] > -INFINITY;
    nan |= z[j] != z[j] || z[j] == INFINITY;
  }
  *count = c;
  *has_nan = nan;
  return m;
}

ATTN_AI void fill(float *a, int64_t n, float v) {
  for (int64_t j = 0; j < n; j++) a[j] = v;
}

ATTN_AI void softmax_row(const float *z, float *a, int64_t n, float m) {
  float part[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t j = 0;
  for (; j + 8 <= n; j += 8)
    for (int l = 0; l < 8; l++) {
      float e = attn__exp_neg(z[j + l] - m);
      a[j + l] = e;
      part[l] += e;
    }
  for (; j < n; j++) {
    a[j] = attn__exp_neg(z[j] - m);
    part[0] += a[j];
  }
  float sum =
      ((part[0] + part[1]) + (part[2] + part[3])) + ((part[4] + part[5]) + (part[6] + part[7]));
  float inv = 1.0f / sum;
  for (j = 0; j < n; j++) a[j] *= inv;
}

ATTN_AI void softmax_grad(const float *a, const float *g, float *dz, int64_t n) {
  float part[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  for (int64_t j = 0; j < n; j++) part[j & 7] += a[j] * g[j];
  float dot =
      ((part[0] + part[1]) + (part[2] + part[3])) + ((part[4] + part[5]) + (part[6] + part[7]));
  for (int64_t j = 0; j < n; j++) dz[j] = a[j] * (g[j] - dot);
}

/* z = (in + noise) / T + mask for row r of `in` (noise: n floats or NULL). A -inf mask entry
 * blocks its position even when the score is NaN. */
ATTN_AI void attn__build_z_row(float *z, const attn_tensor *in, const attn_tensor *mask, int64_t r,
                               int64_t n, float temperature, const float *noise) {
  const float *x = (const float *)in->data + attn__align_row_offset(in, in, r, NULL);
  float inv_t = 1.0f / temperature;
  if (noise)
    for (int64_t j = 0; j < n; j++) z[j] = (x[j] + noise[j]) * inv_t;
  else if (temperature == 1.0f)
    for (int64_t j = 0; j < n; j++) z[j] = x[j];
  else
    for (int64_t j = 0; j < n; j++) z[j] = x[j] * inv_t;
  if (mask) {
    const float *mk = (const float *)mask->data + attn__align_row_offset(mask, in, r, NULL);
    if (mask->shape[mask->ndim - 1] == 1)
      for (int64_t j = 0; j < n; j++) z[j] = mk[0] == -INFINITY ? -INFINITY : z[j] + mk[0];
    else
      for (int64_t j = 0; j < n; j++) z[j] = mk[j] == -INFINITY ? -INFINITY : z[j] + mk[j];
  }
}

#endif
