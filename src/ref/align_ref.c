/* Alignment functions: validation shared with the fast kernels, and the reference loops.
 *
 * The reference accumulates in double and recomputes everything it needs from `in` (the backward
 * ignores `out` apart from validating it), so it is the oracle for src/cpu/align.c. Formulas are
 * MECHANISMS.md §3; the contract is include/attn/align.h. */
#include "align_internal.h"

#include <stdlib.h>

attn_align_params attn_align_params_default(void) {
  attn_align_params p;
  memset(&p, 0, sizeof p);
  p.kind = ATTN_ALIGN_SOFTMAX;
  p.temperature = 1.0f;
  p.alpha = 1.5f;
  p.n_iter = 50;
  p.straight_through = 0;
  p.local = ATTN_ALIGN_LOCAL_NONE;
  p.window = 0;
  p.positions = NULL;
  return p;
}

/* ---- validation ------------------------------------------------------------------------------ */

/* One f32 operand of 1..4 dims: the shared layout rules, then its shape against `ref` (when not
 * NULL); `broadcast` allows dims of size 1 against ref. */
static attn_status check_tensor(const char *fn, const char *name, const attn_tensor *t,
                                const attn_tensor *ref, const char *ref_name, bool broadcast,
                                bool is_output, attn__range *r) {
  if (t->ndim < 1 || t->ndim > ATTN_MAX_DIMS)
    return attn__fail(ATTN_STATUS_SHAPE_MISMATCH, "%s: %s has %d dims, expected 1 to 4", fn, name,
                      (int)t->ndim);
  if (t->dtype != ATTN_DTYPE_F32)
    return attn__fail(ATTN_STATUS_UNSUPPORTED_DTYPE, "%s: %s has dtype %d, only f32 is supported",
                      fn, name, (int)t->dtype);
  int nd = t->ndim;
  if (ref && ref->ndim != nd)
    return attn__fail(ATTN_STATUS_SHAPE_MISMATCH, "%s: %s has %d dims but %s has %d", fn, name, nd,
                      ref_name, (int)ref->ndim);
  attn_status st = attn__check_view_layout(fn, name, t, is_output, r);
  if (st != ATTN_OK) return st;
  for (int d = 0; ref && d < nd; d++)
    if (t->shape[d] != ref->shape[d] && !(broadcast && t->shape[d] == 1))
      return attn__fail(ATTN_STATUS_SHAPE_MISMATCH, "%s: %s: dim %d is %lld but %s has %lld%s", fn,
                        name, d, (long long)t->shape[d], ref_name, (long long)ref->shape[d],
                        broadcast ? " (and it is not 1)" : "");
  return ATTN_OK;
}

static bool same_view(const attn_tensor *a, const attn_tensor *b) {
  if (a->data != b->data || a->ndim != b->ndim) return false;
  for (int d = 0; d < a->ndim; d++)
    if (a->shape[d] != b->shape[d] || (a->shape[d] > 1 && a->stride[d] != b->stride[d]))
      return false;
  return true;
}

static attn_status check_params(const char *fn, const attn_tensor *in, int64_t rows, int64_t n,
                                const attn_align_params *p, attn__range *pos_range) {
  *pos_range = (attn__range){0, 0};
  if (p->kind < ATTN_ALIGN_SOFTMAX || p->kind > ATTN_ALIGN_ENTMAX_BISECT)
    return attn__fail(ATTN_STATUS_INVALID_ARGUMENT, "%s: params->kind is %d, not an attn_align_kind",
                      fn, (int)p->kind);
  if (!isfinite(p->temperature) || !(p->temperature > 0.0f))
    return attn__fail(ATTN_STATUS_INVALID_ARGUMENT,
                      "%s: params->temperature is %g, must be finite and > 0", fn,
                      (double)p->temperature);
  if (p->kind == ATTN_ALIGN_ENTMAX_BISECT) {
    if (!isfinite(p->alpha) || !(p->alpha > 1.0f))
      return attn__fail(ATTN_STATUS_INVALID_ARGUMENT,
                        "%s: params->alpha is %g, must be finite and > 1 (alpha = 1 is softmax)",
                        fn, (double)p->alpha);
    if (p->n_iter < 1)
      return attn__fail(ATTN_STATUS_INVALID_ARGUMENT, "%s: params->n_iter is %d, must be >= 1", fn,
                        p->n_iter);
  }
  if (p->local == ATTN_ALIGN_LOCAL_NONE) return ATTN_OK;
  if (p->local != ATTN_ALIGN_LOCAL_M && p->local != ATTN_ALIGN_LOCAL_P)
    return attn__fail(ATTN_STATUS_INVALID_ARGUMENT,
                      "%s: params->local is %d, not an attn_align_local", fn, (int)p->local);
  if (p->window < 0)
    return attn__fail(ATTN_STATUS_INVALID_ARGUMENT, "%s: params->window (D) is %lld, must be >= 0",
                      fn, (long long)p->window);
  int64_t D = p->window;
  if (p->local == ATTN_ALIGN_LOCAL_M) {
    /* Rows sit at t = 0 .. T-1; the last one must still see position n - 1. */
    int64_t T = in->ndim >= 2 ? in->shape[in->ndim - 2] : 1;
    if (rows > 0 && T - 1 > n - 1 + D)
      return attn__fail(ATTN_STATUS_INVALID_ARGUMENT,
                        "%s: local-m: the window [t-D, t+D] of row position t = %lld (D = %lld) "
                        "lies outside the sequence [0, %lld]",
                        fn, (long long)(n + D), (long long)D, (long long)(n - 1));
    return ATTN_OK;
  }
  if (rows == 0) return ATTN_OK;
  if (!p->positions)
    return attn__fail(ATTN_STATUS_NULL_POINTER, "%s: params->positions is NULL (needed by local-p)",
                      fn);
  for (int64_t r = 0; r < rows; r++) {
    float pr = p->positions[r];
    if (!isfinite(pr))
      return attn__fail(ATTN_STATUS_INVALID_ARGUMENT, "%s: params->positions[%lld] is %g, not finite",
                        fn, (long long)r, (double)pr);
    double c = floor((double)pr + 0.5);
    if (c - (double)D > (double)(n - 1) || c + (double)D < 0.0)
      return attn__fail(ATTN_STATUS_INVALID_ARGUMENT,
                        "%s: local-p: params->positions[%lld] = %g: the window [%.0f, %.0f] lies "
                        "outside the sequence [0, %lld]",
                        fn, (long long)r, (double)pr, c - (double)D, c + (double)D,
                        (long long)(n - 1));
  }
  uintptr_t lo = (uintptr_t)p->positions;
  *pos_range = (attn__range){lo, lo + (uintptr_t)rows * 4u};
  return ATTN_OK;
}

attn_status attn__align_check(const char *fn, const char *const *names, const attn_tensor *dst,
                              const float *d_positions, const attn_tensor *d_out,
                              const attn_tensor *out, const attn_tensor *in,
                              const attn_tensor *mask, const attn_align_params *p,
                              int64_t *rows_out, int64_t *n_out) {
  bool backward = d_out != NULL || out != NULL;
  const char *dst_name = names ? names[0] : backward ? "d_in" : "out";
  const char *in_name = names ? names[1] : "in", *out_name = names ? names[2] : "out";
  const char *dout_name = names ? names[3] : "d_out";
  /* names[0] == NULL: a call without a destination tensor (only the other checks apply). */
  bool no_dst = names && !names[0];
  if (no_dst) dst_name = "(no destination)";
  if (!in) return attn__fail(ATTN_STATUS_NULL_POINTER, "%s: %s is NULL", fn, in_name);
  if (!dst && !no_dst) return attn__fail(ATTN_STATUS_NULL_POINTER, "%s: %s is NULL", fn, dst_name);
  attn__range r_in, r_dst = {0, 0}, r_mask = {0, 0}, r_dout = {0, 0}, r_out = {0, 0}, r_pos;
  ATTN__TRY(check_tensor(fn, in_name, in, NULL, NULL, false, false, &r_in));
  if (!no_dst) ATTN__TRY(check_tensor(fn, dst_name, dst, in, in_name, false, true, &r_dst));
  if (mask) ATTN__TRY(check_tensor(fn, "mask", mask, in, in_name, true, false, &r_mask));
  int64_t n = in->shape[in->ndim - 1], rows = 1;
  if (n == 0)
    return attn__fail(ATTN_STATUS_INVALID_ARGUMENT,
                      "%s: %s: last dim (n) is 0: there are no positions to align over", fn,
                      in_name);
  /* No overflow: the element count, a multiple of this product, was checked above. */
  for (int d = 0; d < in->ndim - 1; d++) rows *= in->shape[d];
  ATTN__TRY(check_params(fn, in, rows, n, p, &r_pos));
  if (backward) {
    if (!d_out) return attn__fail(ATTN_STATUS_NULL_POINTER, "%s: %s is NULL", fn, dout_name);
    if (!out) return attn__fail(ATTN_STATUS_NULL_POINTER, "%s: %s is NULL", fn, out_name);
    ATTN__TRY(check_tensor(fn, dout_name, d_out, in, in_name, false, false, &r_dout));
    ATTN__TRY(check_tensor(fn, out_name, out, in, in_name, false, false, &r_out));
    const struct {
      const char *name;
      attn__range r;
    } inputs[] = {{dout_name, r_dout}, {out_name, r_out}, {in_name, r_in}, {"mask", r_mask},
                  {"params->positions", r_pos}};
    for (size_t i = 0; i < sizeof inputs / sizeof inputs[0]; i++)
      if (attn__ranges_overlap(r_dst, inputs[i].r))
        return attn__fail(ATTN_STATUS_ALIASING, "%s: %s overlaps %s", fn, dst_name,
                          inputs[i].name);
    if (d_positions && p->local == ATTN_ALIGN_LOCAL_P && rows > 0) {
      uintptr_t lo = (uintptr_t)d_positions;
      attn__range r_dp = {lo, lo + (uintptr_t)rows * 4u};
      if (attn__ranges_overlap(r_dp, r_dst))
        return attn__fail(ATTN_STATUS_ALIASING, "%s: d_positions overlaps %s", fn, dst_name);
      for (size_t i = 0; i < sizeof inputs / sizeof inputs[0]; i++)
        if (attn__ranges_overlap(r_dp, inputs[i].r))
          return attn__fail(ATTN_STATUS_ALIASING, "%s: d_positions overlaps %s", fn,
                            inputs[i].name);
    }
  } else {
    if (attn__ranges_overlap(r_dst, r_in) && !same_view(dst, in))
      return attn__fail(ATTN_STATUS_ALIASING,
                        "%s: %s overlaps %s (only the very same view, in place, is allowed)", fn,
                        dst_name, in_name);
    if (attn__ranges_overlap(r_dst, r_mask))
      return attn__fail(ATTN_STATUS_ALIASING, "%s: %s overlaps mask", fn, dst_name);
    if (attn__ranges_overlap(r_dst, r_pos))
      return attn__fail(ATTN_STATUS_ALIASING, "%s: %s overlaps params->positions", fn, dst_name);
  }
  *rows_out = rows;
  *n_out = n;
  return ATTN_OK;
}

/* ---- geometry -------------------------------------------------------------------------------- */

#define row_offset attn__align_row_offset

/* ---- one row, in double ---------------------------------------------------------------------- */

static int cmp_desc(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x < y) - (x > y);
}

/* a = align(z) for one row. z_j = -inf is blocked. scratch holds n doubles. */
static void ref_row_forward(const attn_align_params *p, const double *z, double *a, int64_t n,
                            double *scratch) {
  int64_t m_cnt = 0;
  bool has_nan = false;
  double zmax = -INFINITY;
  for (int64_t j = 0; j < n; j++) {
    if (isnan(z[j]) || z[j] == INFINITY) has_nan = true; /* the row becomes NaN */
    if (z[j] > -INFINITY) {
      scratch[m_cnt++] = z[j];
      if (z[j] > zmax) zmax = z[j];
    }
  }
  if (p->kind == ATTN_ALIGN_SIGMOID) {
    for (int64_t j = 0; j < n; j++) a[j] = 1.0 / (1.0 + exp(-z[j]));
    return;
  }
  if (has_nan || m_cnt == 0) {
    for (int64_t j = 0; j < n; j++) a[j] = has_nan ? NAN : 0.0;
    return;
  }
  switch (p->kind) {
    case ATTN_ALIGN_SOFTMAX: {
      double sum = 0.0;
      for (int64_t j = 0; j < n; j++) {
        a[j] = z[j] > -INFINITY ? exp(z[j] - zmax) : 0.0;
        sum += a[j];
      }
      for (int64_t j = 0; j < n; j++) a[j] /= sum;
      break;
    }
    case ATTN_ALIGN_HARDMAX: {
      int64_t best = -1;
      for (int64_t j = 0; j < n; j++)
        if (z[j] > -INFINITY && (best < 0 || z[j] > z[best])) best = j;
      for (int64_t j = 0; j < n; j++) a[j] = j == best ? 1.0 : 0.0;
      break;
    }
    case ATTN_ALIGN_SPARSEMAX: {
      qsort(scratch, (size_t)m_cnt, sizeof(double), cmp_desc);
      double cum = 0.0, tau_sum = 0.0;
      int64_t k = 0;
      for (int64_t i = 0; i < m_cnt; i++) {
        cum += scratch[i];
        if (1.0 + (double)(i + 1) * scratch[i] > cum) {
          k = i + 1;
          tau_sum = cum;
        }
      }
      double tau = (tau_sum - 1.0) / (double)k;
      for (int64_t j = 0; j < n; j++) a[j] = z[j] > tau ? z[j] - tau : 0.0;
      break;
    }
    case ATTN_ALIGN_ENTMAX15: {
      for (int64_t i = 0; i < m_cnt; i++) scratch[i] = (scratch[i] - zmax) / 2.0;
      qsort(scratch, (size_t)m_cnt, sizeof(double), cmp_desc);
      double s1 = 0.0, s2 = 0.0, tau_star = 0.0;
      int64_t support = 0;
      /* First pass: support size = #{k : tau_k <= x_(k)}; the second finds tau at that k. */
      for (int64_t i = 0; i < m_cnt; i++) {
        double k = (double)(i + 1);
        s1 += scratch[i];
        s2 += scratch[i] * scratch[i];
        double mu = s1 / k, ss = k * (s2 / k - mu * mu), delta = (1.0 - ss) / k;
        double tau = mu - sqrt(delta > 0.0 ? delta : 0.0);
        if (tau <= scratch[i]) support++;
      }
      s1 = s2 = 0.0;
      for (int64_t i = 0; i < support; i++) {
        s1 += scratch[i];
        s2 += scratch[i] * scratch[i];
      }
      {
        double k = (double)support, mu = s1 / k, ss = k * (s2 / k - mu * mu),
               delta = (1.0 - ss) / k;
        tau_star = mu - sqrt(delta > 0.0 ? delta : 0.0);
      }
      for (int64_t j = 0; j < n; j++) {
        double x = z[j] > -INFINITY ? (z[j] - zmax) / 2.0 - tau_star : 0.0;
        a[j] = x > 0.0 ? x * x : 0.0;
      }
      break;
    }
    case ATTN_ALIGN_ENTMAX_BISECT: {
      double am1 = (double)p->alpha - 1.0, inv = 1.0 / am1;
      double xmax = am1 * zmax;
      double tau_lo = xmax - 1.0, tau_hi = xmax - pow(1.0 / (double)m_cnt, am1);
      double dm = tau_hi - tau_lo, tau_m = tau_lo;
      for (int it = 0; it < p->n_iter; it++) {
        dm /= 2.0;
        tau_m = tau_lo + dm;
        double f_m = -1.0;
        for (int64_t j = 0; j < n; j++) {
          double x = am1 * z[j] - tau_m;
          if (z[j] > -INFINITY && x > 0.0) f_m += pow(x, inv);
        }
        /* f decreases in tau and f(tau_lo) >= 0 throughout, so the sign test of the entmax
         * package, f_m * f_lo >= 0, is f_m >= 0 while f_lo > 0; once f_lo hits 0 exactly it
         * would accept every later step and walk tau to tau_hi. Testing f_m >= 0 does not. */
        if (f_m >= 0.0) tau_lo = tau_m;
      }
      double sum = 0.0;
      for (int64_t j = 0; j < n; j++) {
        double x = am1 * z[j] - tau_m;
        a[j] = z[j] > -INFINITY && x > 0.0 ? pow(x, inv) : 0.0;
        sum += a[j];
      }
      for (int64_t j = 0; j < n; j++) a[j] /= sum;
      break;
    }
    default: break;
  }
}

/* dz = J(z)^T g for one row, from a = align(z) (and z itself for the straight-through hardmax).
 * scratch holds n doubles. */
static void ref_row_backward(const attn_align_params *p, const double *z, const double *a,
                             const double *g, double *dz, int64_t n, double *scratch) {
  switch (p->kind) {
    case ATTN_ALIGN_SOFTMAX: {
      double dot = 0.0;
      for (int64_t j = 0; j < n; j++) dot += a[j] * g[j];
      for (int64_t j = 0; j < n; j++) dz[j] = a[j] * (g[j] - dot);
      break;
    }
    case ATTN_ALIGN_SIGMOID:
      for (int64_t j = 0; j < n; j++) dz[j] = a[j] * (1.0 - a[j]) * g[j];
      break;
    case ATTN_ALIGN_HARDMAX: {
      if (!p->straight_through) {
        for (int64_t j = 0; j < n; j++) dz[j] = 0.0;
        break;
      }
      attn_align_params sp = *p;
      sp.kind = ATTN_ALIGN_SOFTMAX;
      double *prob = scratch;
      ref_row_forward(&sp, z, prob, n, dz); /* dz is free scratch until written below */
      double dot = 0.0;
      for (int64_t j = 0; j < n; j++) dot += prob[j] * g[j];
      for (int64_t j = 0; j < n; j++) dz[j] = prob[j] * (g[j] - dot);
      break;
    }
    default: {
      /* Sparsemax and entmax: s = a^(2 - alpha) on the support, dz = s g - (<s, g> / sum s) s. */
      double expo = p->kind == ATTN_ALIGN_SPARSEMAX ? 0.0
                    : p->kind == ATTN_ALIGN_ENTMAX15 ? 0.5
                                                      : 2.0 - (double)p->alpha;
      double ssum = 0.0, sg = 0.0;
      for (int64_t j = 0; j < n; j++) {
        double s = a[j] > 0.0 ? (expo == 0.0 ? 1.0 : pow(a[j], expo)) : 0.0;
        scratch[j] = s;
        ssum += s;
        sg += s * g[j];
      }
      double c = ssum > 0.0 ? sg / ssum : 0.0;
      for (int64_t j = 0; j < n; j++) dz[j] = scratch[j] * (g[j] - c);
      break;
    }
  }
}

/* ---- rows ------------------------------------------------------------------------------------ */

typedef struct ref_row {
  double *z, *a, *g, *dz, *scratch;
  double sigma2; /* local-p: sigma^2 (0 when D = 0) */
  double pr;     /* local-p: p_r */
} ref_row;

/* z of row r (scores / T + mask, window applied) and a = align(z), with the local-p factor. */
static void ref_row_prepare(const attn_align_params *p, const attn_tensor *in,
                            const attn_tensor *mask, int64_t r, int64_t n, ref_row *w,
                            bool with_factor) {
  int64_t pos;
  const float *x = (const float *)in->data + row_offset(in, in, r, &pos);
  const float *mk = mask ? (const float *)mask->data + row_offset(mask, in, r, NULL) : NULL;
  bool mask_bcast = mask && mask->shape[mask->ndim - 1] == 1;
  double inv_t = 1.0 / (double)p->temperature;
  int64_t lo = 0, hi = n - 1;
  if (p->local == ATTN_ALIGN_LOCAL_M) {
    lo = pos - p->window;
    hi = pos + p->window;
  } else if (p->local == ATTN_ALIGN_LOCAL_P) {
    w->pr = (double)p->positions[r];
    int64_t c = (int64_t)floor(w->pr + 0.5);
    lo = c - p->window;
    hi = c + p->window;
    w->sigma2 = (double)p->window * (double)p->window / 4.0;
  }
  for (int64_t j = 0; j < n; j++) {
    double zj = (double)x[j] * inv_t;
    if (mk) {
      double mj = (double)mk[mask_bcast ? 0 : j];
      zj = mj == -INFINITY ? -INFINITY : zj + mj; /* blocked even when the score is NaN */
    }
    w->z[j] = (j < lo || j > hi) ? -INFINITY : zj;
  }
  ref_row_forward(p, w->z, w->a, n, w->scratch);
  if (with_factor && p->local == ATTN_ALIGN_LOCAL_P && p->window > 0)
    for (int64_t j = lo < 0 ? 0 : lo; j <= hi && j < n; j++) {
      double d = (double)j - w->pr;
      w->a[j] *= exp(-d * d / (2.0 * w->sigma2));
    }
}

static attn_status ref_alloc(ref_row *w, int64_t n, void **block) {
  size_t bytes;
  if (!attn__mul_size((size_t)n, 5 * sizeof(double), &bytes))
    return attn__fail(ATTN_STATUS_OVERFLOW, "align ref: scratch size overflows");
  double *mem = (double *)attn__malloc(bytes, ATTN_ALIGN);
  if (!mem) return attn__fail(ATTN_STATUS_OUT_OF_MEMORY, "align ref: %zu bytes of scratch", bytes);
  *block = mem;
  w->z = mem;
  w->a = mem + n;
  w->g = mem + 2 * n;
  w->dz = mem + 3 * n;
  w->scratch = mem + 4 * n;
  w->sigma2 = 0.0;
  w->pr = 0.0;
  return ATTN_OK;
}

attn_status attn_align_forward_ref(const attn_tensor *out, const attn_tensor *in,
                                   const attn_tensor *mask, const attn_align_params *params) {
  static const char fn[] = "attn_align_forward_ref";
  attn__clear_error();
  attn_align_params p = params ? *params : attn_align_params_default();
  int64_t rows, n;
  ATTN__TRY(attn__align_check(fn, NULL, out, NULL, NULL, NULL, in, mask, &p, &rows, &n));
  if (rows == 0) return ATTN_OK;
  ref_row w;
  void *block = NULL;
  ATTN__TRY(ref_alloc(&w, n, &block));
  for (int64_t r = 0; r < rows; r++) {
    ref_row_prepare(&p, in, mask, r, n, &w, true);
    float *o = (float *)out->data + row_offset(out, in, r, NULL);
    for (int64_t j = 0; j < n; j++) o[j] = (float)w.a[j];
  }
  attn__free(block);
  return ATTN_OK;
}

attn_status attn_align_backward_ref(const attn_tensor *d_in, float *d_positions,
                                    const attn_tensor *d_out, const attn_tensor *out,
                                    const attn_tensor *in, const attn_tensor *mask,
                                    const attn_align_params *params) {
  static const char fn[] = "attn_align_backward_ref";
  attn__clear_error();
  attn_align_params p = params ? *params : attn_align_params_default();
  int64_t rows, n;
  if (!d_out) return attn__fail(ATTN_STATUS_NULL_POINTER, "%s: d_out is NULL", fn);
  if (!out) return attn__fail(ATTN_STATUS_NULL_POINTER, "%s: out is NULL", fn);
  ATTN__TRY(attn__align_check(fn, NULL, d_in, d_positions, d_out, out, in, mask, &p, &rows, &n));
  if (rows == 0) return ATTN_OK;
  ref_row w;
  void *block = NULL;
  ATTN__TRY(ref_alloc(&w, n, &block));
  double inv_t = 1.0 / (double)p.temperature;
  for (int64_t r = 0; r < rows; r++) {
    ref_row_prepare(&p, in, mask, r, n, &w, false); /* w.a = ã, before the local-p factor */
    const float *go = (const float *)d_out->data + row_offset(d_out, in, r, NULL);
    for (int64_t j = 0; j < n; j++) w.g[j] = (double)go[j];
    if (p.local == ATTN_ALIGN_LOCAL_P) {
      /* a = ã f with f_j = exp(-(j - p)^2 / (2 sigma^2)): dL/dp = sum_j a_j (j - p)/sigma^2 g_j,
       * and the gradient reaching ã is f g. */
      double dp = 0.0;
      /* Every position gets f g, not only the support: the straight-through hardmax passes
       * gradient to positions where ã is 0. Outside the window z = -inf, so none flows there. */
      if (p.window > 0)
        for (int64_t j = 0; j < n; j++) {
          if (w.z[j] == -INFINITY) continue;
          double d = (double)j - w.pr, f = exp(-d * d / (2.0 * w.sigma2));
          if (w.a[j] != 0.0) dp += w.a[j] * f * d / w.sigma2 * w.g[j];
          w.g[j] *= f;
        }
      if (d_positions) d_positions[r] = (float)dp;
    }
    ref_row_backward(&p, w.z, w.a, w.g, w.dz, n, w.scratch);
    float *di = (float *)d_in->data + row_offset(d_in, in, r, NULL);
    for (int64_t j = 0; j < n; j++) di[j] = (float)(w.dz[j] * inv_t);
  }
  attn__free(block);
  return ATTN_OK;
}
