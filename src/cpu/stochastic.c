/* Stochastic alignment, fast path: f32 rows spread over the thread pool (attn/stochastic.h).
 *
 * Each row is computed by one thread: z and the softmax in f32 with the shared row kernels
 * (src/cpu/align_rows.h: polynomial exp, fixed-lane sums), the scalars that decide a sample (the
 * cumulative sum, log-sum-exp, entropy) in double. The random numbers come from the same Philox
 * streams as the reference (src/core/stream_internal.h), so only rounding separates the two. */
#include "align_internal.h"
#include "stream_internal.h"

/* Every row kernel is inlined into stoch_task_impl, compiled three times (baseline, AVX2,
 * AVX-512) through GCC's target attribute; attn_get_isa() picks one. */
#include "align_rows.h"

typedef enum stoch_op { SAMPLE_FWD, SAMPLE_BWD, GUMBEL_FWD, GUMBEL_BWD } stoch_op;

typedef struct stoch_job {
  stoch_op op;
  const attn_stochastic_params *p;
  const attn_tensor *in, *mask, *out, *d_in, *d_out; /* out: weights (sample) or out (gumbel) */
  int32_t *index;
  const int32_t *index_in;
  float *log_prob, *entropy;
  const float *coef, *lambda;
  int64_t rows, n, rows_per_item;
  char *ws;
  size_t per_thread;
} stoch_job;

/* Floats of per-thread scratch per element of a row: z, e and g. */
#define STOCH_FLOATS 3

/* Sampler statistics of one row: e_j = exp(z_j - m) in f32 into e, S = sum e, lse = m + log S
 * and H = log S - sum_j e_j (z_j - m) / S (no cancellation against lse for large scores). The sums
 * run in 8 f32 lanes (vectorised), added in a fixed order. Returns the unblocked count, or -1 when
 * the row is NaN. */
ATTN_AI int64_t row_stats(const float *z, float *e, int64_t n, double *sum, double *lse,
                          double *entropy) {
  int64_t count;
  bool has_nan;
  float m = row_max(z, n, &count, &has_nan);
  if (has_nan) return -1;
  if (count == 0) return 0;
  float ps[8] = {0, 0, 0, 0, 0, 0, 0, 0}, pd[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  for (int64_t j0 = 0; j0 < n; j0 += 8) {
    int64_t len = n - j0 < 8 ? n - j0 : 8;
    for (int64_t l = 0; l < len; l++) {
      float d = z[j0 + l] - m, ev = attn__exp_neg(d);
      /* d = -inf where e = 0 (blocked): select 0 on the bits, so 0 * -inf stays out. */
      int32_t eb, db;
      memcpy(&eb, &ev, 4);
      memcpy(&db, &d, 4);
      db = eb != 0 ? db : 0;
      memcpy(&d, &db, 4);
      e[j0 + l] = ev;
      ps[l] += ev;
      pd[l] += ev * d;
    }
  }
  double s = 0.0, sd = 0.0;
  for (int l = 0; l < 8; l++) {
    s += (double)ps[l];
    sd += (double)pd[l];
  }
  *sum = s;
  *lse = (double)m + log(s);
  *entropy = log(s) - sd / s;
  return count;
}

ATTN_AI void sample_row(const stoch_job *jb, int64_t r, float *z, float *e) {
  const int64_t n = jb->n;
  attn__build_z_row(z, jb->in, jb->mask, r, n, jb->p->temperature, NULL);
  double sum = 0.0, lse = 0.0, h = 0.0;
  int64_t count = row_stats(z, e, n, &sum, &lse, &h);
  int64_t s = -1;
  if (count > 0) {
    /* Inverse CDF: the first j whose cumulative weight exceeds u * S (such a j has e_j > 0);
     * the last nonzero weight should rounding leave u * S at the final sum. */
    double target = attn__sample_uniform(jb->p->seed, r) * sum, cum = 0.0;
    for (int64_t j = 0; j < n; j++) {
      cum += (double)e[j];
      if (cum > target && e[j] > 0.0f) {
        s = j;
        break;
      }
    }
    for (int64_t j = n - 1; s < 0 && j >= 0; j--)
      if (e[j] > 0.0f) s = j;
  }
  float bad = count < 0 ? NAN : 0.0f;
  jb->index[r] = (int32_t)s;
  if (jb->log_prob) jb->log_prob[r] = count > 0 ? (float)((double)z[s] - lse) : bad;
  if (jb->entropy) jb->entropy[r] = count > 0 ? (float)h : bad;
  if (jb->out) {
    float *o = (float *)jb->out->data + attn__align_row_offset(jb->out, jb->in, r, NULL);
    fill(o, n, count < 0 ? NAN : 0.0f);
    if (s >= 0) o[s] = 1.0f;
  }
}

ATTN_AI void sample_grad_row(const stoch_job *jb, int64_t r, float *z, float *e) {
  const int64_t n = jb->n;
  float *di = (float *)jb->d_in->data + attn__align_row_offset(jb->d_in, jb->in, r, NULL);
  /* z is built before d_in is written, so d_in may be in itself. */
  attn__build_z_row(z, jb->in, jb->mask, r, n, jb->p->temperature, NULL);
  double sum = 0.0, lse = 0.0, h = 0.0;
  int64_t count = row_stats(z, e, n, &sum, &lse, &h);
  int64_t s = jb->index_in[r];
  if (count <= 0 || s < 0) {
    fill(di, n, 0.0f);
    return;
  }
  float inv_t = 1.0f / jb->p->temperature, inv_s = (float)(1.0 / sum);
  float c = jb->coef ? jb->coef[r] * inv_t : 0.0f;
  float lam = jb->lambda ? jb->lambda[r] * inv_t : 0.0f;
  float shift = (float)(h - lse); /* log p_j + H = z_j + (H - lse) */
  for (int64_t j = 0; j < n; j++) {
    float pj = e[j] * inv_s;
    /* e_j = 0 at blocked positions (z = -inf): the select keeps 0 * -inf out. */
    float ent = e[j] > 0.0f ? pj * (z[j] + shift) : 0.0f;
    di[j] = -c * pj - lam * ent;
  }
  if (z[s] > -INFINITY) di[s] += c; /* the reference's rule: nothing flows to a blocked s */
}

ATTN_AI void gumbel_row(const stoch_job *jb, int64_t r, float *z, float *a, float *g) {
  const int64_t n = jb->n;
  attn__gumbel_row(g, jb->p->seed, r, n);
  attn__build_z_row(z, jb->in, jb->mask, r, n, jb->p->temperature, g);
  int64_t count;
  bool has_nan;
  float m = row_max(z, n, &count, &has_nan);
  if (has_nan || count == 0) {
    fill(a, n, has_nan ? NAN : 0.0f);
    return;
  }
  if (jb->p->hard && jb->op == GUMBEL_FWD) {
    int64_t best = 0;
    while (!(z[best] == m)) best++;
    fill(a, n, 0.0f);
    a[best] = 1.0f;
    return;
  }
  softmax_row(z, a, n, m);
}

ATTN_AI void stoch_task_impl(void *ctx, int64_t item, int thread_id) {
  const stoch_job *jb = (const stoch_job *)ctx;
  const int64_t n = jb->n;
  float *z = (float *)(jb->ws + (size_t)thread_id * jb->per_thread), *e = z + n, *g = e + n;
  int64_t r0 = item * jb->rows_per_item;
  int64_t r1 = r0 + jb->rows_per_item < jb->rows ? r0 + jb->rows_per_item : jb->rows;
  for (int64_t r = r0; r < r1; r++) {
    switch (jb->op) {
      case SAMPLE_FWD:
        sample_row(jb, r, z, e);
        break;
      case SAMPLE_BWD:
        sample_grad_row(jb, r, z, e);
        break;
      case GUMBEL_FWD: {
        float *o = (float *)jb->out->data + attn__align_row_offset(jb->out, jb->in, r, NULL);
        /* out may be in itself: z is built before o is written. */
        gumbel_row(jb, r, z, e, g);
        memcpy(o, e, (size_t)n * sizeof(float));
        break;
      }
      case GUMBEL_BWD: {
        const float *go =
            (const float *)jb->d_out->data + attn__align_row_offset(jb->d_out, jb->in, r, NULL);
        float *di = (float *)jb->d_in->data + attn__align_row_offset(jb->d_in, jb->in, r, NULL);
        const float *a = e;
        if (jb->p->hard)
          gumbel_row(jb, r, z, e, g); /* p = softmax(y), regenerated */
        else
          a = (const float *)jb->out->data + attn__align_row_offset(jb->out, jb->in, r, NULL);
        softmax_grad(a, go, di, n);
        if (jb->p->temperature != 1.0f) {
          float inv_t = 1.0f / jb->p->temperature;
          for (int64_t j = 0; j < n; j++) di[j] *= inv_t;
        }
        break;
      }
    }
  }
}

ATTN__ISA_TASKS(stoch_task, stoch_task_impl(ctx, item, tid))

attn_status attn_stochastic_workspace_size(size_t *size, const attn_tensor *in) {
  static const char fn[] = "attn_stochastic_workspace_size";
  attn__clear_error();
  if (!size) return attn__fail(ATTN_STATUS_NULL_POINTER, "%s: size is NULL", fn);
  if (!in) return attn__fail(ATTN_STATUS_NULL_POINTER, "%s: in is NULL", fn);
  if (in->ndim < 1 || in->ndim > ATTN_MAX_DIMS)
    return attn__fail(ATTN_STATUS_SHAPE_MISMATCH, "%s: in has %d dims, expected 1 to 4", fn,
                      (int)in->ndim);
  int64_t n = in->shape[in->ndim - 1];
  if (n < 1)
    return attn__fail(ATTN_STATUS_INVALID_ARGUMENT, "%s: in: last dim (n) is %lld, must be >= 1",
                      fn, (long long)n);
  size_t per_thread;
  if (!attn__align_rows_bytes(n, STOCH_FLOATS, &per_thread, size))
    return attn__fail(ATTN_STATUS_OVERFLOW, "%s: size overflows", fn);
  return ATTN_OK;
}

static attn_status run(const char *fn, stoch_job *jb, void *workspace, size_t workspace_size) {
  if (jb->rows == 0) return ATTN_OK;
  return attn__align_rows_run(fn, jb->rows, jb->n, STOCH_FLOATS, stoch_task_pick(), jb, &jb->ws,
                              &jb->per_thread, &jb->rows_per_item, workspace, workspace_size);
}

attn_status attn_hard_sample_forward(const attn_tensor *weights, int32_t *index, float *log_prob,
                                     float *entropy, const attn_tensor *in, const attn_tensor *mask,
                                     const attn_stochastic_params *params, void *workspace,
                                     size_t workspace_size) {
  static const char fn[] = "attn_hard_sample_forward";
  attn__clear_error();
  attn_stochastic_params p = params ? *params : attn_stochastic_params_default();
  stoch_job jb;
  memset(&jb, 0, sizeof jb);
  void *outs[3] = {index, log_prob, entropy};
  static const char *const names[3] = {"index", "log_prob", "entropy"};
  ATTN__TRY(attn__stochastic_check(fn, "weights", weights, NULL, NULL, in, mask, &p, 3, outs, names,
                                   0, NULL, NULL, &jb.rows, &jb.n));
  if (jb.rows > 0 && !index) return attn__fail(ATTN_STATUS_NULL_POINTER, "%s: index is NULL", fn);
  if (jb.n > INT32_MAX)
    return attn__fail(ATTN_STATUS_INVALID_ARGUMENT,
                      "%s: in: n = %lld positions do not fit an int32 index", fn, (long long)jb.n);
  jb.op = SAMPLE_FWD;
  jb.p = &p;
  jb.in = in;
  jb.mask = mask;
  jb.out = weights;
  jb.index = index;
  jb.log_prob = log_prob;
  jb.entropy = entropy;
  return run(fn, &jb, workspace, workspace_size);
}

attn_status attn_hard_sample_backward(const attn_tensor *d_in, const float *coef,
                                      const float *lambda, const int32_t *index,
                                      const attn_tensor *in, const attn_tensor *mask,
                                      const attn_stochastic_params *params, void *workspace,
                                      size_t workspace_size) {
  static const char fn[] = "attn_hard_sample_backward";
  attn__clear_error();
  attn_stochastic_params p = params ? *params : attn_stochastic_params_default();
  if (!d_in) return attn__fail(ATTN_STATUS_NULL_POINTER, "%s: d_in is NULL", fn);
  stoch_job jb;
  memset(&jb, 0, sizeof jb);
  const void *ins[3] = {coef, lambda, index};
  static const char *const names[3] = {"coef", "lambda", "index"};
  ATTN__TRY(attn__stochastic_check(fn, "d_in", d_in, NULL, NULL, in, mask, &p, 0, NULL, NULL, 3,
                                   ins, names, &jb.rows, &jb.n));
  ATTN__TRY(attn__hard_index_check(fn, index, jb.rows, jb.n));
  jb.op = SAMPLE_BWD;
  jb.p = &p;
  jb.in = in;
  jb.mask = mask;
  jb.d_in = d_in;
  jb.index_in = index;
  jb.coef = coef;
  jb.lambda = lambda;
  return run(fn, &jb, workspace, workspace_size);
}

attn_status attn_reinforce_coef(float *coef, float *baseline, const float *reward, int64_t rows,
                                float beta) {
  static const char fn[] = "attn_reinforce_coef";
  attn__clear_error();
  if (!baseline) return attn__fail(ATTN_STATUS_NULL_POINTER, "%s: baseline is NULL", fn);
  if (rows < 0)
    return attn__fail(ATTN_STATUS_INVALID_ARGUMENT, "%s: rows is %lld, must be >= 0", fn,
                      (long long)rows);
  if (rows > 0 && !coef) return attn__fail(ATTN_STATUS_NULL_POINTER, "%s: coef is NULL", fn);
  if (rows > 0 && !reward) return attn__fail(ATTN_STATUS_NULL_POINTER, "%s: reward is NULL", fn);
  if (!(beta >= 0.0f && beta <= 1.0f))
    return attn__fail(ATTN_STATUS_INVALID_ARGUMENT, "%s: beta is %g, must be in [0, 1]", fn,
                      (double)beta);
  if (!isfinite(*baseline))
    return attn__fail(ATTN_STATUS_INVALID_ARGUMENT, "%s: *baseline is %g, must be finite", fn,
                      (double)*baseline);
  if ((uint64_t)rows > (uint64_t)(INT64_MAX / 4))
    return attn__fail(ATTN_STATUS_OVERFLOW, "%s: rows overflows", fn);
  attn__range r_coef = attn__align_rows_range(coef, rows, 4);
  if (attn__ranges_overlap(r_coef, attn__align_rows_range(reward, rows, 4)))
    return attn__fail(ATTN_STATUS_ALIASING, "%s: coef overlaps reward", fn);
  if (attn__ranges_overlap(r_coef, attn__align_rows_range(baseline, 1, 4)))
    return attn__fail(ATTN_STATUS_ALIASING, "%s: coef overlaps baseline", fn);
  double sum = 0.0;
  for (int64_t r = 0; r < rows; r++) {
    if (!isfinite(reward[r]))
      return attn__fail(ATTN_STATUS_INVALID_ARGUMENT, "%s: reward[%lld] is %g, must be finite", fn,
                        (long long)r, (double)reward[r]);
    sum += (double)reward[r];
  }
  double b = (double)*baseline;
  for (int64_t r = 0; r < rows; r++) coef[r] = (float)(b - (double)reward[r]);
  if (rows > 0) *baseline = (float)((double)beta * b + (1.0 - (double)beta) * (sum / (double)rows));
  return ATTN_OK;
}

attn_status attn_gumbel_softmax_forward(const attn_tensor *out, const attn_tensor *in,
                                        const attn_tensor *mask,
                                        const attn_stochastic_params *params, void *workspace,
                                        size_t workspace_size) {
  static const char fn[] = "attn_gumbel_softmax_forward";
  attn__clear_error();
  attn_stochastic_params p = params ? *params : attn_stochastic_params_default();
  if (!out) return attn__fail(ATTN_STATUS_NULL_POINTER, "%s: out is NULL", fn);
  stoch_job jb;
  memset(&jb, 0, sizeof jb);
  ATTN__TRY(attn__stochastic_check(fn, "out", out, NULL, NULL, in, mask, &p, 0, NULL, NULL, 0, NULL,
                                   NULL, &jb.rows, &jb.n));
  jb.op = GUMBEL_FWD;
  jb.p = &p;
  jb.in = in;
  jb.mask = mask;
  jb.out = out;
  return run(fn, &jb, workspace, workspace_size);
}

attn_status attn_gumbel_softmax_backward(const attn_tensor *d_in, const attn_tensor *d_out,
                                         const attn_tensor *out, const attn_tensor *in,
                                         const attn_tensor *mask,
                                         const attn_stochastic_params *params, void *workspace,
                                         size_t workspace_size) {
  static const char fn[] = "attn_gumbel_softmax_backward";
  attn__clear_error();
  attn_stochastic_params p = params ? *params : attn_stochastic_params_default();
  if (!d_in) return attn__fail(ATTN_STATUS_NULL_POINTER, "%s: d_in is NULL", fn);
  if (!d_out) return attn__fail(ATTN_STATUS_NULL_POINTER, "%s: d_out is NULL", fn);
  if (!out) return attn__fail(ATTN_STATUS_NULL_POINTER, "%s: out is NULL", fn);
  stoch_job jb;
  memset(&jb, 0, sizeof jb);
  ATTN__TRY(attn__stochastic_check(fn, "d_in", d_in, d_out, out, in, mask, &p, 0, NULL, NULL, 0,
                                   NULL, NULL, &jb.rows, &jb.n));
  jb.op = GUMBEL_BWD;
  jb.p = &p;
  jb.in = in;
  jb.mask = mask;
  jb.out = out;
  jb.d_in = d_in;
  jb.d_out = d_out;
  return run(fn, &jb, workspace, workspace_size);
}
