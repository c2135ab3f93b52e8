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
 * aliasing rules of attn/align.h. Messages name `fn` and the operands as names[0..3] = {dst, in,
 * out, d_out}; names NULL = {"out" or "d_in", "in", "out", "d_out"}; names[0] NULL = no
 * destination (dst is then ignored and may be NULL). *rows is the product of the
 * leading dims, *n the last dim. */
attn_status attn__align_check(const char *fn, const char *const *names, const attn_tensor *dst,
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

/* log(x) for finite normal x > 0, within ~2 ulp: x = m 2^k with m in [sqrt(1/2), sqrt(2)),
 * log m = 2 atanh(s), s = (m - 1)/(m + 1), |s| <= 0.172, by its odd series to s^9 (truncation
 * < 2e-9 relative). Integer selects only, so a loop over it vectorises and gives the same bits on
 * every ISA (the library builds with -ffp-contract=off). */
static inline __attribute__((always_inline)) float attn__log_pos(float x) {
  uint32_t b;
  memcpy(&b, &x, 4);
  int32_t k = (int32_t)((b >> 23) & 0xffu) - 127;
  uint32_t mb = (b & 0x7fffffu) | 0x3f800000u; /* m in [1, 2) */
  int32_t big = mb >= 0x3fb504f3u;             /* m >= sqrt(2): halve it */
  mb -= (uint32_t)big << 23;
  k += big;
  float m;
  memcpy(&m, &mb, 4);
  float s = (m - 1.0f) / (m + 1.0f), s2 = s * s;
  float p = 1.0f / 9.0f;
  p = p * s2 + 1.0f / 7.0f;
  p = p * s2 + 0.2f;
  p = p * s2 + 1.0f / 3.0f;
  p = p * s2 + 1.0f;
  float kf = (float)k;
  return kf * 0.693145752f + (kf * 1.42860677e-6f + 2.0f * s * p); /* ln2 = hi + lo */
}

/* Gumbel noise from one 32-bit word: U = (k + 0.5) / 2^23 with k its top 23 bits (exact in f32,
 * in (0, 1)), g = -log(-log U) by attn__log_pos. g lies in [-2.81, 16.7]. */
static inline __attribute__((always_inline)) float attn__gumbel_from_u32(uint32_t x) {
  float u = ((float)(x >> 9) + 0.5f) * (1.0f / 8388608.0f);
  return -attn__log_pos(-attn__log_pos(u));
}

/* Gumbel noise of positions [0, n) of row r into g (attn_gumbel_noise for each j). The Philox
 * rounds run over 8 blocks (32 positions) at once, which vectorises. */
static inline __attribute__((always_inline)) void attn__gumbel_row(float *g, uint64_t seed,
                                                                   int64_t row, int64_t n) {
  enum { NB = 8 };
  const uint32_t lo = (uint32_t)(uint64_t)row, hi = (uint32_t)((uint64_t)row >> 32);
  for (int64_t j0 = 0; j0 < n; j0 += 4 * NB) {
    uint32_t c0[NB], c1[NB], c2[NB], c3[NB];
    for (int b = 0; b < NB; b++) {
      c0[b] = lo;
      c1[b] = hi;
      c2[b] = (uint32_t)(j0 / 4) + (uint32_t)b;
      c3[b] = ATTN__STREAM_GUMBEL;
    }
    uint32_t k0 = (uint32_t)seed, k1 = (uint32_t)(seed >> 32);
    for (int round = 0; round < 10; round++) {
      for (int b = 0; b < NB; b++) attn__philox_round(&c0[b], &c1[b], &c2[b], &c3[b], k0, k1);
      k0 += ATTN__PHILOX_W0;
      k1 += ATTN__PHILOX_W1;
    }
    float block[4 * NB];
    for (int b = 0; b < NB; b++) {
      block[4 * b] = attn__gumbel_from_u32(c0[b]);
      block[4 * b + 1] = attn__gumbel_from_u32(c1[b]);
      block[4 * b + 2] = attn__gumbel_from_u32(c2[b]);
      block[4 * b + 3] = attn__gumbel_from_u32(c3[b]);
    }
    int64_t len = n - j0 < 4 * NB ? n - j0 : 4 * NB;
    memcpy(g + j0, block, (size_t)len * sizeof(float));
  }
}

/* cos(2 pi u) for u in [0, 1), branch-free in f32: fold u onto b in [0, 1/4] (cos is even and
 * cos(2 pi (1/2 - b)) = -cos(2 pi b)), then the Taylor series of cos to x^12 at x = 2 pi b
 * <= pi/2 (truncation < 1e-8). */
static inline __attribute__((always_inline)) float attn__cos_2pi(float u) {
  float t = u > 0.5f ? u - 1.0f : u;  /* [-1/2, 1/2] */
  float a = fabsf(t);                 /* [0, 1/2] */
  float b = a > 0.25f ? 0.5f - a : a; /* [0, 1/4] */
  float x = 6.28318531f * b, x2 = x * x;
  float c = 1.0f / 479001600.0f; /* 1/12! */
  c = c * x2 - 1.0f / 3628800.0f;
  c = c * x2 + 1.0f / 40320.0f;
  c = c * x2 - 1.0f / 720.0f;
  c = c * x2 + 1.0f / 24.0f;
  c = c * x2 - 0.5f;
  c = c * x2 + 1.0f;
  return a > 0.25f ? -c : c;
}

/* Box-Muller from two words: sqrt(-2 log U1) cos(2 pi U2), U1 = (k + 0.5)/2^23 in (0, 1) and
 * U2 = k'/2^23 in [0, 1) from the top 23 bits; |n| <= 5.8. f32, the same bits on every ISA. */
static inline __attribute__((always_inline)) float attn__normal_from_u32(uint32_t w1, uint32_t w2) {
  float u1 = ((float)(w1 >> 9) + 0.5f) * (1.0f / 8388608.0f);
  float u2 = (float)(w2 >> 9) * (1.0f / 8388608.0f);
  return sqrtf(-2.0f * attn__log_pos(u1)) * attn__cos_2pi(u2);
}

/* Standard normal noise of (row, j): block (row, j / 2) of the MONO stream, words 0 and 1 for
 * even j, 2 and 3 for odd j. */
static inline float attn__mono_normal(uint64_t seed, int64_t row, int64_t j) {
  uint32_t o[4];
  attn__stream_block(seed, row, (uint32_t)(j / 2), ATTN__STREAM_MONO, o);
  return j & 1 ? attn__normal_from_u32(o[2], o[3]) : attn__normal_from_u32(o[0], o[1]);
}

/* attn__mono_normal of positions [0, n) of row r into out, 16 at a time (8 Philox blocks whose
 * rounds vectorise). */
static inline __attribute__((always_inline)) void attn__mono_normal_row(float *out, uint64_t seed,
                                                                        int64_t row, int64_t n) {
  enum { NB = 8 };
  const uint32_t lo = (uint32_t)(uint64_t)row, hi = (uint32_t)((uint64_t)row >> 32);
  for (int64_t j0 = 0; j0 < n; j0 += 2 * NB) {
    uint32_t c0[NB], c1[NB], c2[NB], c3[NB];
    for (int b = 0; b < NB; b++) {
      c0[b] = lo;
      c1[b] = hi;
      c2[b] = (uint32_t)(j0 / 2) + (uint32_t)b;
      c3[b] = ATTN__STREAM_MONO;
    }
    uint32_t k0 = (uint32_t)seed, k1 = (uint32_t)(seed >> 32);
    for (int round = 0; round < 10; round++) {
      for (int b = 0; b < NB; b++) attn__philox_round(&c0[b], &c1[b], &c2[b], &c3[b], k0, k1);
      k0 += ATTN__PHILOX_W0;
      k1 += ATTN__PHILOX_W1;
    }
    float block[2 * NB];
    for (int b = 0; b < NB; b++) {
      block[2 * b] = attn__normal_from_u32(c0[b], c1[b]);
      block[2 * b + 1] = attn__normal_from_u32(c2[b], c3[b]);
    }
    int64_t len = n - j0 < 2 * NB ? n - j0 : 2 * NB;
    memcpy(out + j0, block, (size_t)len * sizeof(float));
  }
}

/* ---- stochastic alignment (src/ref/stochastic_ref.c) ---------------------------------------- */

#include "attn/stochastic.h"

/* Validation of the calls of attn/stochastic.h that take tensors: attn__align_check with a
 * softmax at params->temperature (dst may be NULL: only `in` and `mask` are then checked), then
 * the per-row arrays (4 bytes per row each): `outs` (n_outs arrays written) must not overlap each
 * other, dst, in, mask or the `ins` arrays (NULL entries are skipped). Names come in `out_names` /
 * `in_names`. */
attn_status attn__stochastic_check(const char *fn, const char *dst_name, const attn_tensor *dst,
                                   const attn_tensor *d_out, const attn_tensor *out,
                                   const attn_tensor *in, const attn_tensor *mask,
                                   const attn_stochastic_params *p, int n_outs, void *const *outs,
                                   const char *const *out_names, int n_ins, const void *const *ins,
                                   const char *const *in_names, int64_t *rows, int64_t *n);

/* index[r] in [-1, n) for every row, else INVALID_ARGUMENT naming index[r]. */
attn_status attn__hard_index_check(const char *fn, const int32_t *index, int64_t rows, int64_t n);

/* ---- monotonic attention (src/ref/monotonic_ref.c) --------------------------------------------
 */

#include <float.h>

#include "attn/monotonic.h"

/* Validation of attn/monotonic.h: attn__align_check on energy / dst / mask (and d_alpha, alpha in
 * the backward) with names, then ndim >= 2, the mode and noise_std. *seqs sequences of *tq steps
 * over *tk positions. */
attn_status attn__monotonic_check(const char *fn, const attn_tensor *dst,
                                  const attn_tensor *d_alpha, const attn_tensor *alpha,
                                  const attn_tensor *energy, const attn_tensor *mask,
                                  const attn_monotonic_params *p, int64_t *seqs, int64_t *tq,
                                  int64_t *tk);

/* One step of the expected alignment, in double, shared by the reference's backward and the fast
 * kernels (the reference's forward for RECURSIVE is its own explicit sum). a = alpha_{i-1},
 * p = p_i, n positions. The clamps of PARALLEL (MECHANISMS.md §3.11): */
#define ATTN__MONO_CLIP_X ((double)FLT_MIN) /* lower clip of 1 - p inside the log */
#define ATTN__MONO_CLIP_C 1e-10             /* lower clip of the cumprod in the division */

static inline void attn__mono_step_recursive(double *alpha, const double *a, const double *p,
                                             int64_t n) {
  /* Invariant: q = q_{i,j} = sum_{k<=j} a_k prod_{l=k}^{j-1} (1 - p_l). */
  double q = a[0];
  for (int64_t j = 0; j < n; j++) {
    alpha[j] = p[j] * q;
    if (j + 1 < n) q = (1.0 - p[j]) * q + a[j + 1];
  }
}

/* C (n doubles, out) = exclusive cumprod exp(sum_{l<j} log clip(1 - p_l)); S (n doubles or NULL)
 * = cumsum(a / clip(C)); alpha = p C S. */
static inline void attn__mono_step_parallel(double *alpha, const double *a, const double *p,
                                            int64_t n, double *C, double *S) {
  double log_c = 0.0, s = 0.0;
  for (int64_t j = 0; j < n; j++) {
    C[j] = exp(log_c);
    s += a[j] / (C[j] > ATTN__MONO_CLIP_C ? C[j] : ATTN__MONO_CLIP_C);
    if (S) S[j] = s;
    alpha[j] = p[j] * C[j] * s;
    double x = 1.0 - p[j];
    log_c += log(x > ATTN__MONO_CLIP_X ? (x < 1.0 ? x : 1.0) : ATTN__MONO_CLIP_X);
  }
}

/* Reverse mode of one step: from ga = dL/d alpha_i, gp = dL/d p_i and g_a = dL/d alpha_{i-1}
 * (both overwritten). scratch: 3 n doubles. */
static inline void attn__mono_step_backward(bool parallel, double *gp, double *g_a,
                                            const double *ga, const double *a, const double *p,
                                            int64_t n, double *scratch) {
  if (!parallel) {
    /* q_0 = a_0, q_{j+1} = (1 - p_j) q_j + a_{j+1}, alpha_j = p_j q_j:
     *   dq_j = ga_j p_j + dq_{j+1} (1 - p_j),  dp_j = (ga_j - dq_{j+1}) q_j,  da_j = dq_j. */
    double *q = scratch, acc = a[0];
    for (int64_t j = 0; j < n; j++) {
      q[j] = acc;
      if (j + 1 < n) acc = (1.0 - p[j]) * acc + a[j + 1];
    }
    double dq_next = 0.0;
    for (int64_t j = n - 1; j >= 0; j--) {
      gp[j] = (ga[j] - dq_next) * q[j];
      double dq = ga[j] * p[j] + dq_next * (1.0 - p[j]);
      g_a[j] = dq;
      dq_next = dq;
    }
    return;
  }
  /* alpha_j = p_j C_j S_j, S_j = sum_{k<=j} a_k / D_k, D_k = max(C_k, eps),
   * C_j = exp(sum_{l<j} log x_l), x_l = clip(1 - p_l, tiny, 1). */
  double *C = scratch, *S = scratch + n, *gC = scratch + 2 * n;
  attn__mono_step_parallel(gp, a, p, n, C, S); /* gp is scratch until written below */
  for (int64_t j = 0; j < n; j++) {
    gC[j] = ga[j] * p[j] * S[j];
    gp[j] = ga[j] * C[j] * S[j];
  }
  double gr = 0.0; /* dL/d(a_k / D_k) = sum_{j>=k} ga_j p_j C_j */
  for (int64_t k = n - 1; k >= 0; k--) {
    gr += ga[k] * p[k] * C[k];
    bool clipped = !(C[k] > ATTN__MONO_CLIP_C);
    double d = clipped ? ATTN__MONO_CLIP_C : C[k];
    g_a[k] = gr / d;
    if (!clipped) gC[k] -= gr * a[k] / (d * d);
  }
  double gl = 0.0; /* dL/d log x_l = sum_{j>l} gC_j C_j */
  for (int64_t l = n - 1; l >= 0; l--) {
    double x = 1.0 - p[l];
    if (x > ATTN__MONO_CLIP_X && x <= 1.0) gp[l] -= gl / x;
    gl += gC[l] * C[l];
  }
}

#endif
