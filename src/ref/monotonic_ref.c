/* Monotonic attention: validation shared with the fast kernels, and the reference loops.
 *
 * Double throughout. The expected alignment of RECURSIVE is computed from its explicit sum
 * (O(Tk^2) per step), independent of the recurrence the fast path runs; PARALLEL is the clamped
 * closed form. The backward runs the shared per-step reverse mode (src/core/monotonic_internal.h)
 * on the reference's own double forward. Contract: include/attn/monotonic.h. */
#include "monotonic_internal.h"

attn_monotonic_params attn_monotonic_params_default(void) {
  attn_monotonic_params p;
  memset(&p, 0, sizeof p);
  p.mode = ATTN_MONOTONIC_RECURSIVE;
  p.noise_std = 0.0f;
  p.seed = 0;
  return p;
}

float attn_monotonic_noise(uint64_t seed, int64_t row, int64_t j) {
  return attn__mono_normal(seed, row, j);
}

attn_status attn__monotonic_check(const char *fn, const attn_tensor *dst,
                                  const attn_tensor *d_alpha, const attn_tensor *alpha,
                                  const attn_tensor *energy, const attn_tensor *mask,
                                  const attn_monotonic_params *p, int64_t *seqs, int64_t *tq,
                                  int64_t *tk) {
  bool backward = d_alpha != NULL || alpha != NULL;
  const char *const names[4] = {backward ? "d_energy" : "alpha", "energy", "alpha", "d_alpha"};
  if (backward && !d_alpha) return attn__fail(ATTN_STATUS_NULL_POINTER, "%s: d_alpha is NULL", fn);
  if (backward && !alpha) return attn__fail(ATTN_STATUS_NULL_POINTER, "%s: alpha is NULL", fn);
  if (p->mode != ATTN_MONOTONIC_RECURSIVE && p->mode != ATTN_MONOTONIC_PARALLEL &&
      p->mode != ATTN_MONOTONIC_HARD)
    return attn__fail(ATTN_STATUS_INVALID_ARGUMENT,
                      "%s: params->mode is %d, not an attn_monotonic_mode", fn, (int)p->mode);
  if (!isfinite(p->noise_std) || !(p->noise_std >= 0.0f))
    return attn__fail(ATTN_STATUS_INVALID_ARGUMENT,
                      "%s: params->noise_std is %g, must be finite and >= 0", fn,
                      (double)p->noise_std);
  if (backward && p->mode == ATTN_MONOTONIC_HARD)
    return attn__fail(ATTN_STATUS_INVALID_ARGUMENT,
                      "%s: params->mode is HARD, which has no gradient (use RECURSIVE or "
                      "PARALLEL for training)",
                      fn);
  attn_align_params ap = attn_align_params_default();
  int64_t rows, n;
  ATTN__TRY(attn__align_check(fn, names, dst, NULL, d_alpha, alpha, energy, mask, &ap, &rows, &n));
  if (energy->ndim < 2)
    return attn__fail(ATTN_STATUS_SHAPE_MISMATCH,
                      "%s: energy has %d dim, expected 2 to 4 (..., Tq, Tk)", fn,
                      (int)energy->ndim);
  *tq = energy->shape[energy->ndim - 2];
  *tk = n;
  *seqs = *tq > 0 ? rows / *tq : 0;
  return ATTN_OK;
}

/* p of row r in double: sigmoid(e + noise_std n + mask), 0 where the mask is -inf. */
static void ref_p_row(double *p, const attn_tensor *energy, const attn_tensor *mask,
                      const attn_monotonic_params *prm, int64_t r, int64_t n) {
  const float *x = (const float *)energy->data + attn__align_row_offset(energy, energy, r, NULL);
  const float *mk =
      mask ? (const float *)mask->data + attn__align_row_offset(mask, energy, r, NULL) : NULL;
  bool bcast = mask && mask->shape[mask->ndim - 1] == 1;
  bool noisy = prm->noise_std > 0.0f && prm->mode != ATTN_MONOTONIC_HARD;
  for (int64_t j = 0; j < n; j++) {
    double z = (double)x[j];
    if (noisy) z += (double)(prm->noise_std * attn__mono_normal(prm->seed, r, j));
    if (mk) {
      double m = (double)mk[bcast ? 0 : j];
      z = m == -INFINITY ? -INFINITY : z + m;
    }
    p[j] = 1.0 / (1.0 + exp(-z));
  }
}

typedef struct ref_seq {
  double *P, *A;         /* Tq x Tk: p and alpha of one sequence */
  double *a0, *ga, *g_a; /* Tk each: alpha_{-1}, the step's gradient, the carried gradient */
  double *gp, *scratch;  /* Tk, 3 Tk */
  void *block;
} ref_seq;

static attn_status ref_alloc(ref_seq *w, int64_t tq, int64_t tk) {
  /* 2 Tq Tk + 7 Tk doubles; each step checked (Tk up to 2^61 passes the view checks). */
  size_t cells, rows_x7, count, bytes;
  if (!attn__mul_size((size_t)tq, (size_t)tk, &cells) || !attn__mul_size(cells, 2, &count) ||
      !attn__mul_size((size_t)tk, 7, &rows_x7) || __builtin_add_overflow(count, rows_x7, &count) ||
      !attn__mul_size(count, sizeof(double), &bytes))
    return attn__fail(ATTN_STATUS_OVERFLOW, "monotonic ref: scratch size overflows");
  w->block = attn__malloc(bytes, ATTN_ALIGN);
  if (!w->block)
    return attn__fail(ATTN_STATUS_OUT_OF_MEMORY, "monotonic ref: %zu bytes of scratch", bytes);
  w->P = (double *)w->block;
  w->A = w->P + cells;
  w->a0 = w->A + cells;
  w->ga = w->a0 + tk;
  w->g_a = w->ga + tk;
  w->gp = w->g_a + tk;
  w->scratch = w->gp + tk;
  for (int64_t j = 0; j < tk; j++) w->a0[j] = j == 0 ? 1.0 : 0.0;
  return ATTN_OK;
}

/* P and A of sequence s (rows s Tq .. s Tq + Tq - 1). */
static void ref_seq_forward(ref_seq *w, const attn_tensor *energy, const attn_tensor *mask,
                            const attn_monotonic_params *prm, int64_t s, int64_t tq, int64_t tk) {
  for (int64_t i = 0; i < tq; i++) ref_p_row(w->P + i * tk, energy, mask, prm, s * tq + i, tk);
  if (prm->mode == ATTN_MONOTONIC_HARD) {
    /* Scan from the previous step's position for the first p >= 0.5; none: this step and all
     * later ones attend nowhere. */
    int64_t t = 0;
    bool alive = true;
    for (int64_t i = 0; i < tq; i++) {
      double *A = w->A + i * tk;
      const double *P = w->P + i * tk;
      for (int64_t j = 0; j < tk; j++) A[j] = 0.0;
      if (!alive) continue;
      int64_t j = t;
      while (j < tk && !(P[j] >= 0.5)) j++;
      if (j < tk) {
        A[j] = 1.0;
        t = j;
      } else {
        alive = false;
      }
    }
    return;
  }
  for (int64_t i = 0; i < tq; i++) {
    const double *a = i > 0 ? w->A + (i - 1) * tk : w->a0, *p = w->P + i * tk;
    double *A = w->A + i * tk;
    if (prm->mode == ATTN_MONOTONIC_PARALLEL) {
      attn__mono_step_parallel(A, a, p, tk, w->scratch, NULL);
      continue;
    }
    /* alpha_{i,j} = p_{i,j} sum_{k<=j} a_k prod_{l=k}^{j-1} (1 - p_{i,l}); the product grows
     * as k steps down from j. */
    for (int64_t j = 0; j < tk; j++) {
      double sum = 0.0, prod = 1.0;
      for (int64_t k = j; k >= 0; k--) {
        sum += a[k] * prod;
        if (k > 0) prod *= 1.0 - p[k - 1];
      }
      A[j] = p[j] * sum;
    }
  }
}

attn_status attn_monotonic_forward_ref(const attn_tensor *alpha, const attn_tensor *energy,
                                       const attn_tensor *mask,
                                       const attn_monotonic_params *params) {
  static const char fn[] = "attn_monotonic_forward_ref";
  attn__clear_error();
  attn_monotonic_params p = params ? *params : attn_monotonic_params_default();
  int64_t seqs, tq, tk;
  ATTN__TRY(attn__monotonic_check(fn, alpha, NULL, NULL, energy, mask, &p, &seqs, &tq, &tk));
  if (seqs == 0) return ATTN_OK;
  ref_seq w;
  ATTN__TRY(ref_alloc(&w, tq, tk));
  for (int64_t s = 0; s < seqs; s++) {
    ref_seq_forward(&w, energy, mask, &p, s, tq, tk);
    for (int64_t i = 0; i < tq; i++) {
      float *o = (float *)alpha->data + attn__align_row_offset(alpha, energy, s * tq + i, NULL);
      for (int64_t j = 0; j < tk; j++) o[j] = (float)w.A[i * tk + j];
    }
  }
  attn__free(w.block);
  return ATTN_OK;
}

attn_status attn_monotonic_backward_ref(const attn_tensor *d_energy, const attn_tensor *d_alpha,
                                        const attn_tensor *alpha, const attn_tensor *energy,
                                        const attn_tensor *mask,
                                        const attn_monotonic_params *params) {
  static const char fn[] = "attn_monotonic_backward_ref";
  attn__clear_error();
  attn_monotonic_params p = params ? *params : attn_monotonic_params_default();
  int64_t seqs, tq, tk;
  if (!d_alpha) return attn__fail(ATTN_STATUS_NULL_POINTER, "%s: d_alpha is NULL", fn);
  ATTN__TRY(attn__monotonic_check(fn, d_energy, d_alpha, alpha, energy, mask, &p, &seqs, &tq, &tk));
  if (seqs == 0) return ATTN_OK;
  ref_seq w;
  ATTN__TRY(ref_alloc(&w, tq, tk));
  bool parallel = p.mode == ATTN_MONOTONIC_PARALLEL;
  for (int64_t s = 0; s < seqs; s++) {
    ref_seq_forward(&w, energy, mask, &p, s, tq, tk);
    for (int64_t j = 0; j < tk; j++) w.g_a[j] = 0.0;
    /* Invariant: g_a = dL/d alpha_i through the steps after i. */
    for (int64_t i = tq - 1; i >= 0; i--) {
      int64_t r = s * tq + i;
      const float *go =
          (const float *)d_alpha->data + attn__align_row_offset(d_alpha, energy, r, NULL);
      for (int64_t j = 0; j < tk; j++) w.ga[j] = (double)go[j] + w.g_a[j];
      const double *a = i > 0 ? w.A + (i - 1) * tk : w.a0, *pr = w.P + i * tk;
      attn__mono_step_backward(parallel, w.gp, w.g_a, w.ga, a, pr, tk, w.scratch);
      float *de = (float *)d_energy->data + attn__align_row_offset(d_energy, energy, r, NULL);
      for (int64_t j = 0; j < tk; j++) de[j] = (float)(w.gp[j] * pr[j] * (1.0 - pr[j]));
    }
  }
  attn__free(w.block);
  return ATTN_OK;
}
