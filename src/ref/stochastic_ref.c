/* Stochastic alignment: validation shared with the fast kernels, and the reference loops.
 *
 * The reference accumulates in double and recomputes everything from `in` and the Philox streams,
 * so it is the oracle for src/cpu/stochastic.c. Formulas are MECHANISMS.md §3.4 and §3.5; the
 * contract is include/attn/stochastic.h. */
#include "align_internal.h"
#include "stream_internal.h"

attn_stochastic_params attn_stochastic_params_default(void) {
  attn_stochastic_params p;
  memset(&p, 0, sizeof p);
  p.temperature = 1.0f;
  p.seed = 0;
  p.hard = 0;
  return p;
}

double attn_hard_sample_uniform(uint64_t seed, int64_t row) {
  return attn__sample_uniform(seed, row);
}

float attn_gumbel_noise(uint64_t seed, int64_t row, int64_t j) {
  uint32_t o[4];
  attn__stream_block(seed, row, (uint32_t)(j / 4), ATTN__STREAM_GUMBEL, o);
  return attn__gumbel_from_u32(o[j & 3]);
}

/* ---- validation ------------------------------------------------------------------------------ */

static attn__range view_range(const attn_tensor *t) {
  attn__range r = {0, 0};
  if (t) (void)attn__check_view_layout("", "", t, false, &r); /* already validated */
  return r;
}

attn_status attn__stochastic_check(const char *fn, const char *dst_name, const attn_tensor *dst,
                                   const attn_tensor *d_out, const attn_tensor *out,
                                   const attn_tensor *in, const attn_tensor *mask,
                                   const attn_stochastic_params *p, int n_outs, void *const *outs,
                                   const char *const *out_names, int n_ins, const void *const *ins,
                                   const char *const *in_names, int64_t *rows, int64_t *n) {
  attn_align_params ap = attn_align_params_default();
  ap.temperature = p->temperature;
  const char *const names[4] = {dst ? dst_name : NULL, "in", "out", "d_out"};
  ATTN__TRY(attn__align_check(fn, names, dst, NULL, d_out, out, in, mask, &ap, rows, n));
  const attn__range tensors[4] = {dst ? view_range(dst) : (attn__range){0, 0}, view_range(in),
                                  view_range(mask), view_range(out)};
  static const char *const tnames[4] = {NULL, "in", "mask", "out"};
  for (int i = 0; i < n_outs; i++) {
    if (!outs[i]) continue;
    attn__range ri = attn__align_rows_range(outs[i], *rows, 4);
    for (int t = 0; t < 4; t++)
      if (attn__ranges_overlap(ri, tensors[t]))
        return attn__fail(ATTN_STATUS_ALIASING, "%s: %s overlaps %s", fn, out_names[i],
                          t == 0 ? dst_name : tnames[t]);
    for (int k = 0; k < n_outs; k++)
      if (k != i && outs[k] && attn__ranges_overlap(ri, attn__align_rows_range(outs[k], *rows, 4)))
        return attn__fail(ATTN_STATUS_ALIASING, "%s: %s overlaps %s", fn, out_names[i],
                          out_names[k]);
    for (int k = 0; k < n_ins; k++)
      if (ins[k] && attn__ranges_overlap(ri, attn__align_rows_range(ins[k], *rows, 4)))
        return attn__fail(ATTN_STATUS_ALIASING, "%s: %s overlaps %s", fn, out_names[i],
                          in_names[k]);
  }
  if (dst) {
    attn__range rd = tensors[0];
    for (int k = 0; k < n_ins; k++)
      if (ins[k] && attn__ranges_overlap(rd, attn__align_rows_range(ins[k], *rows, 4)))
        return attn__fail(ATTN_STATUS_ALIASING, "%s: %s overlaps %s", fn, dst_name, in_names[k]);
  }
  return ATTN_OK;
}

attn_status attn__hard_index_check(const char *fn, const int32_t *index, int64_t rows, int64_t n) {
  if (rows > 0 && !index) return attn__fail(ATTN_STATUS_NULL_POINTER, "%s: index is NULL", fn);
  if (n > INT32_MAX)
    return attn__fail(ATTN_STATUS_INVALID_ARGUMENT,
                      "%s: in: n = %lld positions do not fit an int32 index", fn, (long long)n);
  for (int64_t r = 0; r < rows; r++)
    if (index[r] < -1 || (int64_t)index[r] >= n)
      return attn__fail(ATTN_STATUS_INVALID_ARGUMENT,
                        "%s: index[%lld] is %d, must be -1 or in [0, %lld)", fn, (long long)r,
                        (int)index[r], (long long)n);
  return ATTN_OK;
}

/* ---- one row, in double ---------------------------------------------------------------------- */

/* z of row r: (in + noise) / T + mask (noise: n floats or NULL). */
static void ref_build_z(double *z, const attn_tensor *in, const attn_tensor *mask, int64_t r,
                        int64_t n, float temperature, const float *noise) {
  const float *x = (const float *)in->data + attn__align_row_offset(in, in, r, NULL);
  const float *mk =
      mask ? (const float *)mask->data + attn__align_row_offset(mask, in, r, NULL) : NULL;
  bool mask_bcast = mask && mask->shape[mask->ndim - 1] == 1;
  double inv_t = 1.0 / (double)temperature;
  for (int64_t j = 0; j < n; j++) {
    double zj = ((double)x[j] + (noise ? (double)noise[j] : 0.0)) * inv_t;
    if (mk) {
      double mj = (double)mk[mask_bcast ? 0 : j];
      zj = mj == -INFINITY ? -INFINITY : zj + mj; /* blocked even when the score is NaN */
    }
    z[j] = zj;
  }
}

/* Softmax statistics of z: p (0 at blocked positions), lse and the entropy. Returns the number of
 * unblocked positions, or -1 when a NaN or +inf among them makes the row NaN. */
static int64_t ref_softmax(const double *z, double *p, int64_t n, double *lse, double *entropy) {
  double m = -INFINITY;
  int64_t count = 0;
  for (int64_t j = 0; j < n; j++) {
    if (isnan(z[j]) || z[j] == INFINITY) return -1;
    if (z[j] > -INFINITY) {
      count++;
      if (z[j] > m) m = z[j];
    }
  }
  if (count == 0) return 0;
  double sum = 0.0;
  for (int64_t j = 0; j < n; j++) {
    p[j] = z[j] > -INFINITY ? exp(z[j] - m) : 0.0;
    sum += p[j];
  }
  *lse = m + log(sum);
  double pz = 0.0;
  for (int64_t j = 0; j < n; j++) {
    p[j] /= sum;
    if (z[j] > -INFINITY) pz += p[j] * z[j];
  }
  *entropy = *lse - pz;
  return count;
}

typedef struct ref_scratch {
  double *z, *p;
  float *noise;
  void *block;
} ref_scratch;

static attn_status ref_alloc(ref_scratch *w, int64_t n) {
  size_t bytes;
  if (!attn__mul_size((size_t)n, 2 * sizeof(double) + sizeof(float), &bytes))
    return attn__fail(ATTN_STATUS_OVERFLOW, "stochastic ref: scratch size overflows");
  w->block = attn__malloc(bytes, ATTN_ALIGN);
  if (!w->block)
    return attn__fail(ATTN_STATUS_OUT_OF_MEMORY, "stochastic ref: %zu bytes of scratch", bytes);
  w->z = (double *)w->block;
  w->p = w->z + n;
  w->noise = (float *)(w->p + n);
  return ATTN_OK;
}

/* ---- stochastic hard attention ----------------------------------------------------------------
 */

attn_status attn_hard_sample_forward_ref(const attn_tensor *weights, int32_t *index,
                                         float *log_prob, float *entropy, const attn_tensor *in,
                                         const attn_tensor *mask,
                                         const attn_stochastic_params *params) {
  static const char fn[] = "attn_hard_sample_forward_ref";
  attn__clear_error();
  attn_stochastic_params p = params ? *params : attn_stochastic_params_default();
  int64_t rows, n;
  void *outs[3] = {index, log_prob, entropy};
  static const char *const names[3] = {"index", "log_prob", "entropy"};
  ATTN__TRY(attn__stochastic_check(fn, "weights", weights, NULL, NULL, in, mask, &p, 3, outs, names,
                                   0, NULL, NULL, &rows, &n));
  if (rows > 0 && !index) return attn__fail(ATTN_STATUS_NULL_POINTER, "%s: index is NULL", fn);
  if (n > INT32_MAX)
    return attn__fail(ATTN_STATUS_INVALID_ARGUMENT,
                      "%s: in: n = %lld positions do not fit an int32 index", fn, (long long)n);
  if (rows == 0) return ATTN_OK;
  ref_scratch w = {NULL, NULL, NULL, NULL};
  ATTN__TRY(ref_alloc(&w, n));
  for (int64_t r = 0; r < rows; r++) {
    ref_build_z(w.z, in, mask, r, n, p.temperature, NULL);
    double lse = 0.0, h = 0.0;
    int64_t count = ref_softmax(w.z, w.p, n, &lse, &h);
    int64_t s = -1;
    if (count > 0) {
      /* Inverse CDF on the normalised weights: the first j with cumsum_j > u. Falls back to the
       * last position of nonzero weight should rounding leave u above the final sum. */
      double u = attn__sample_uniform(p.seed, r), cum = 0.0;
      for (int64_t j = 0; j < n && s < 0; j++) {
        cum += w.p[j];
        if (cum > u && w.p[j] > 0.0) s = j;
      }
      for (int64_t j = n - 1; s < 0 && j >= 0; j--)
        if (w.p[j] > 0.0) s = j;
    }
    float bad = count < 0 ? NAN : 0.0f;
    index[r] = (int32_t)s;
    if (log_prob) log_prob[r] = count > 0 ? (float)(w.z[s] - lse) : bad;
    if (entropy) entropy[r] = count > 0 ? (float)h : bad;
    if (weights) {
      float *o = (float *)weights->data + attn__align_row_offset(weights, in, r, NULL);
      for (int64_t j = 0; j < n; j++) o[j] = count < 0 ? NAN : j == s ? 1.0f : 0.0f;
    }
  }
  attn__free(w.block);
  return ATTN_OK;
}

attn_status attn_hard_sample_backward_ref(const attn_tensor *d_in, const float *coef,
                                          const float *lambda, const int32_t *index,
                                          const attn_tensor *in, const attn_tensor *mask,
                                          const attn_stochastic_params *params) {
  static const char fn[] = "attn_hard_sample_backward_ref";
  attn__clear_error();
  attn_stochastic_params p = params ? *params : attn_stochastic_params_default();
  int64_t rows, n;
  if (!d_in) return attn__fail(ATTN_STATUS_NULL_POINTER, "%s: d_in is NULL", fn);
  const void *ins[3] = {coef, lambda, index};
  static const char *const names[3] = {"coef", "lambda", "index"};
  ATTN__TRY(attn__stochastic_check(fn, "d_in", d_in, NULL, NULL, in, mask, &p, 0, NULL, NULL, 3,
                                   ins, names, &rows, &n));
  ATTN__TRY(attn__hard_index_check(fn, index, rows, n));
  if (rows == 0) return ATTN_OK;
  ref_scratch w = {NULL, NULL, NULL, NULL};
  ATTN__TRY(ref_alloc(&w, n));
  double inv_t = 1.0 / (double)p.temperature;
  for (int64_t r = 0; r < rows; r++) {
    ref_build_z(w.z, in, mask, r, n, p.temperature, NULL);
    double lse = 0.0, h = 0.0;
    int64_t count = ref_softmax(w.z, w.p, n, &lse, &h);
    int64_t s = index[r];
    double c = coef ? (double)coef[r] : 0.0, lam = lambda ? (double)lambda[r] : 0.0;
    float *di = (float *)d_in->data + attn__align_row_offset(d_in, in, r, NULL);
    for (int64_t j = 0; j < n; j++) {
      double g = 0.0;
      if (count > 0 && s >= 0 && w.z[j] > -INFINITY) {
        /* d log p_s / dz_j = [j = s] - p_j;  dH/dz_j = -p_j (log p_j + H), log p_j = z_j - lse. */
        g = c * ((j == s ? 1.0 : 0.0) - w.p[j]) - lam * w.p[j] * (w.z[j] - lse + h);
      }
      di[j] = (float)(g * inv_t);
    }
  }
  attn__free(w.block);
  return ATTN_OK;
}

/* ---- Gumbel-softmax -----------------------------------------------------------------------------
 */

attn_status attn_gumbel_softmax_forward_ref(const attn_tensor *out, const attn_tensor *in,
                                            const attn_tensor *mask,
                                            const attn_stochastic_params *params) {
  static const char fn[] = "attn_gumbel_softmax_forward_ref";
  attn__clear_error();
  attn_stochastic_params p = params ? *params : attn_stochastic_params_default();
  int64_t rows, n;
  if (!out) return attn__fail(ATTN_STATUS_NULL_POINTER, "%s: out is NULL", fn);
  ATTN__TRY(attn__stochastic_check(fn, "out", out, NULL, NULL, in, mask, &p, 0, NULL, NULL, 0, NULL,
                                   NULL, &rows, &n));
  if (rows == 0) return ATTN_OK;
  ref_scratch w = {NULL, NULL, NULL, NULL};
  ATTN__TRY(ref_alloc(&w, n));
  for (int64_t r = 0; r < rows; r++) {
    attn__gumbel_row(w.noise, p.seed, r, n);
    ref_build_z(w.z, in, mask, r, n, p.temperature, w.noise);
    double lse = 0.0, h = 0.0;
    int64_t count = ref_softmax(w.z, w.p, n, &lse, &h);
    float *o = (float *)out->data + attn__align_row_offset(out, in, r, NULL);
    int64_t best = -1;
    if (p.hard && count > 0)
      for (int64_t j = 0; j < n; j++)
        if (w.z[j] > -INFINITY && (best < 0 || w.z[j] > w.z[best])) best = j;
    for (int64_t j = 0; j < n; j++)
      o[j] = count < 0    ? NAN
             : count == 0 ? 0.0f
             : p.hard     ? (j == best ? 1.0f : 0.0f)
                          : (float)w.p[j];
  }
  attn__free(w.block);
  return ATTN_OK;
}

attn_status attn_gumbel_softmax_backward_ref(const attn_tensor *d_in, const attn_tensor *d_out,
                                             const attn_tensor *out, const attn_tensor *in,
                                             const attn_tensor *mask,
                                             const attn_stochastic_params *params) {
  static const char fn[] = "attn_gumbel_softmax_backward_ref";
  attn__clear_error();
  attn_stochastic_params p = params ? *params : attn_stochastic_params_default();
  int64_t rows, n;
  if (!d_in) return attn__fail(ATTN_STATUS_NULL_POINTER, "%s: d_in is NULL", fn);
  if (!d_out) return attn__fail(ATTN_STATUS_NULL_POINTER, "%s: d_out is NULL", fn);
  if (!out) return attn__fail(ATTN_STATUS_NULL_POINTER, "%s: out is NULL", fn);
  ATTN__TRY(attn__stochastic_check(fn, "d_in", d_in, d_out, out, in, mask, &p, 0, NULL, NULL, 0,
                                   NULL, NULL, &rows, &n));
  if (rows == 0) return ATTN_OK;
  ref_scratch w = {NULL, NULL, NULL, NULL};
  ATTN__TRY(ref_alloc(&w, n));
  double inv_t = 1.0 / (double)p.temperature;
  for (int64_t r = 0; r < rows; r++) {
    attn__gumbel_row(w.noise, p.seed, r, n);
    ref_build_z(w.z, in, mask, r, n, p.temperature, w.noise);
    double lse = 0.0, h = 0.0;
    int64_t count = ref_softmax(w.z, w.p, n, &lse, &h);
    const float *go = (const float *)d_out->data + attn__align_row_offset(d_out, in, r, NULL);
    float *di = (float *)d_in->data + attn__align_row_offset(d_in, in, r, NULL);
    double dot = 0.0;
    if (count > 0)
      for (int64_t j = 0; j < n; j++) dot += w.p[j] * (double)go[j];
    for (int64_t j = 0; j < n; j++)
      di[j] = count < 0 ? NAN : count == 0 ? 0.0f : (float)(w.p[j] * ((double)go[j] - dot) * inv_t);
  }
  attn__free(w.block);
  return ATTN_OK;
}
