/* Monotonic attention internals shared by src/ref/monotonic_ref.c and src/cpu/monotonic.c:
 * validation and the per-step recurrences in double. Not installed. */
#ifndef ATTN_MONOTONIC_INTERNAL_H
#define ATTN_MONOTONIC_INTERNAL_H

#include <float.h>

#include "align_internal.h"
#include "attn/monotonic.h"
#include "stream_internal.h"

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
