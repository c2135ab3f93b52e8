/* Normalisation over the last dim (layernorm, rmsnorm) and softmax / log-softmax with an additive
 * mask. Row statistics accumulate in double. */
#include "nn_internal.h"

/* ---- layernorm ---------------------------------------------------------------------------------- */

/* Rows per parallel chunk: about NORM_GRAIN elements (chunks depend on the shape only). */
#define NORM_GRAIN ((int64_t)8192)
static int64_t rows_grain(int64_t D) { return D >= NORM_GRAIN ? 1 : NORM_GRAIN / (D ? D : 1); }

typedef struct ln_job {
  const float *x, *dy, *gamma, *beta;
  float *stats, *y, *gx, *gg, *gb;
  int64_t R, D;
  float eps;
} ln_job;

/* gx for rows [r0, r1): each row is independent. */
static void ln_bwd_rows(void *arg, int64_t r0, int64_t r1) {
  const ln_job *j = arg;
  const int64_t D = j->D;
  const float *gamma = j->gamma;
  for (int64_t r = r0; r < r1; r++) {
    const float mean = j->stats[2 * r], rstd = j->stats[2 * r + 1];
    const float *xr = j->x + r * D, *dyr = j->dy + r * D;
    double s1 = 0, s2 = 0; /* sums of dxhat and dxhat * xhat */
    for (int64_t c = 0; c < D; c++) {
      const float xh = (xr[c] - mean) * rstd, dxh = dyr[c] * (gamma ? gamma[c] : 1.0f);
      s1 += dxh;
      s2 += (double)dxh * xh;
    }
    const float m1 = (float)(s1 / (double)D), m2 = (float)(s2 / (double)D);
    for (int64_t c = 0; c < D; c++) {
      const float xh = (xr[c] - mean) * rstd, dxh = dyr[c] * (gamma ? gamma[c] : 1.0f);
      j->gx[r * D + c] += rstd * (dxh - m1 - xh * m2);
    }
  }
}

/* dgamma, dbeta for a block of at most LN_COLS columns [c0, c1): sums over all rows in row order
 * into local blocks, then added to gg / gb. The blocks are fixed by D, so the result does not
 * depend on the thread count. */
#define LN_COLS 64
static void ln_bwd_cols(void *arg, int64_t c0, int64_t c1) {
  const ln_job *j = arg;
  const int64_t D = j->D, w = c1 - c0;
  float sg[LN_COLS] = {0}, sb[LN_COLS] = {0};
  for (int64_t r = 0; r < j->R; r++) {
    const float mean = j->stats[2 * r], rstd = j->stats[2 * r + 1];
    const float *xr = j->x + r * D + c0, *dyr = j->dy + r * D + c0;
    for (int64_t c = 0; c < w; c++) {
      sg[c] += dyr[c] * ((xr[c] - mean) * rstd);
      sb[c] += dyr[c];
    }
  }
  for (int64_t c = 0; c < w; c++) {
    if (j->gg) j->gg[c0 + c] += sg[c];
    if (j->gb) j->gb[c0 + c] += sb[c];
  }
}

/* saved: mean and rstd per row (2R floats). iarg: 0 R, 1 D. Rows in parallel for dx, column
 * blocks in parallel for dgamma / dbeta. */
static attn_status layernorm_backward(attn_nn_node *n) {
  bool oom = false;
  float *gx = attn__nn_in_grad(n, 0, &oom);
  float *gg = n->in[1] ? attn__nn_in_grad(n, 1, &oom) : NULL;
  float *gb = n->in[2] ? attn__nn_in_grad(n, 2, &oom) : NULL;
  if (oom) return ATTN_STATUS_OUT_OF_MEMORY;
  ln_job j = {n->in[0]->data, n->out->grad, n->in[1] ? n->in[1]->data : NULL, NULL, n->saved,
              NULL, gx, gg, gb, n->iarg[0], n->iarg[1], 0.0f};
  if (gg || gb) attn__nn_parallel_range(j.D, LN_COLS, ln_bwd_cols, &j);
  if (gx) attn__nn_parallel_range(j.R, rows_grain(j.D), ln_bwd_rows, &j);
  return ATTN_OK;
}

static void ln_fwd_rows(void *arg, int64_t r0, int64_t r1) {
  const ln_job *j = arg;
  const int64_t D = j->D;
  float *stats = j->stats;
  for (int64_t r = r0; r < r1; r++) {
    const float *xr = j->x + r * D;
    double s = 0, ss = 0;
    for (int64_t c = 0; c < D; c++) s += xr[c];
    const double mean = s / (double)D;
    for (int64_t c = 0; c < D; c++) ss += (xr[c] - mean) * (xr[c] - mean);
    const float rstd = (float)(1.0 / sqrt(ss / (double)D + j->eps));
    stats[2 * r] = (float)mean;
    stats[2 * r + 1] = rstd;
    for (int64_t c = 0; c < D; c++) {
      float v = (xr[c] - (float)mean) * rstd;
      if (j->gamma) v *= j->gamma[c];
      if (j->beta) v += j->beta[c];
      j->y[r * D + c] = v;
    }
  }
}

static bool check_vec(attn_nn_ctx *ctx, const char *op, const char *name, const attn_var *v, int64_t D) {
  if (!v || (v->ndim == 1 && v->shape[0] == D)) return true;
  attn__nn_fail(ctx, ATTN_STATUS_SHAPE_MISMATCH, "%s: %s must have shape (%lld)", op, name, (long long)D);
  return false;
}

attn_var *attn_nn_layernorm(attn_nn_ctx *ctx, attn_var *x, attn_var *gamma, attn_var *beta,
                            float eps) {
  static const char *op = "attn_nn_layernorm";
  attn_var *ins[3] = {x, gamma, beta};
  if (!attn__nn_check(ctx, op, 3, ins, 6u)) return NULL;
  if (x->ndim < 1 || !(eps >= 0.0f))
    return attn__nn_fail(ctx, ATTN_STATUS_INVALID_ARGUMENT, "%s: x needs >= 1 dim and eps >= 0", op);
  const int64_t D = x->shape[x->ndim - 1], R = D ? x->numel / D : 0;
  if (!check_vec(ctx, op, "gamma", gamma, D) || !check_vec(ctx, op, "beta", beta, D)) return NULL;
  attn_var *y = attn__nn_new(ctx, op, x->ndim, x->shape);
  float *stats = y ? attn__nn_alloc(ctx, (size_t)(2 * R + 1) * sizeof(float)) : NULL;
  if (!stats) return y ? attn__nn_fail(ctx, ATTN_STATUS_OUT_OF_MEMORY, "%s: out of memory", op) : NULL;
  ln_job j = {x->data, NULL, gamma ? gamma->data : NULL, beta ? beta->data : NULL, stats,
              y->data, NULL, NULL, NULL, R, D, eps};
  attn__nn_parallel_range(R, rows_grain(D), ln_fwd_rows, &j); /* rows are independent */
  attn_nn_node *node;
  if (!attn__nn_record(ctx, op, y, layernorm_backward, 3, ins, &node)) return NULL;
  if (node) {
    node->saved = stats;
    node->iarg[0] = R;
    node->iarg[1] = D;
  }
  return y;
}

/* ---- rmsnorm ------------------------------------------------------------------------------------ */

/* saved: rstd per row. iarg: 0 R, 1 D. */
static attn_status rmsnorm_backward(attn_nn_node *n) {
  bool oom = false;
  float *gx = attn__nn_in_grad(n, 0, &oom);
  float *gg = n->in[1] ? attn__nn_in_grad(n, 1, &oom) : NULL;
  if (oom) return ATTN_STATUS_OUT_OF_MEMORY;
  const int64_t R = n->iarg[0], D = n->iarg[1];
  const float *rs = n->saved, *x = n->in[0]->data, *dy = n->out->grad;
  const float *gamma = n->in[1] ? n->in[1]->data : NULL;
  for (int64_t r = 0; r < R; r++) {
    const float rstd = rs[r], *xr = x + r * D, *dyr = dy + r * D;
    double s = 0; /* sum of dxhat * x */
    for (int64_t j = 0; j < D; j++) {
      const float dxh = dyr[j] * (gamma ? gamma[j] : 1.0f);
      if (gg) gg[j] += dyr[j] * xr[j] * rstd;
      s += (double)dxh * xr[j];
    }
    if (!gx) continue;
    const float m = (float)(s / (double)D) * rstd * rstd;
    for (int64_t j = 0; j < D; j++) {
      const float dxh = dyr[j] * (gamma ? gamma[j] : 1.0f);
      gx[r * D + j] += rstd * (dxh - xr[j] * m);
    }
  }
  return ATTN_OK;
}

attn_var *attn_nn_rmsnorm(attn_nn_ctx *ctx, attn_var *x, attn_var *gamma, float eps) {
  static const char *op = "attn_nn_rmsnorm";
  attn_var *ins[2] = {x, gamma};
  if (!attn__nn_check(ctx, op, 2, ins, 2u)) return NULL;
  if (x->ndim < 1 || !(eps >= 0.0f))
    return attn__nn_fail(ctx, ATTN_STATUS_INVALID_ARGUMENT, "%s: x needs >= 1 dim and eps >= 0", op);
  const int64_t D = x->shape[x->ndim - 1], R = D ? x->numel / D : 0;
  if (!check_vec(ctx, op, "gamma", gamma, D)) return NULL;
  attn_var *y = attn__nn_new(ctx, op, x->ndim, x->shape);
  float *rs = y ? attn__nn_alloc(ctx, (size_t)(R + 1) * sizeof(float)) : NULL;
  if (!rs) return y ? attn__nn_fail(ctx, ATTN_STATUS_OUT_OF_MEMORY, "%s: out of memory", op) : NULL;
  for (int64_t r = 0; r < R; r++) {
    const float *xr = x->data + r * D;
    double ss = 0;
    for (int64_t j = 0; j < D; j++) ss += (double)xr[j] * xr[j];
    const float rstd = (float)(1.0 / sqrt(ss / (double)D + eps));
    rs[r] = rstd;
    for (int64_t j = 0; j < D; j++) y->data[r * D + j] = xr[j] * rstd * (gamma ? gamma->data[j] : 1.0f);
  }
  attn_nn_node *node;
  if (!attn__nn_record(ctx, op, y, rmsnorm_backward, 2, ins, &node)) return NULL;
  if (node) {
    node->saved = rs;
    node->iarg[0] = R;
    node->iarg[1] = D;
  }
  return y;
}

/* ---- softmax / log_softmax ---------------------------------------------------------------------- */

typedef struct sm_job {
  bool logsm;
  int nd;
  int64_t D;
  const int64_t *shape; /* x's shape */
  const int64_t *ms;    /* mask strides over x's dims (0 where it broadcasts) */
  const float *x, *mask, *y, *dy;
  float *out; /* forward: y; backward: gx */
} sm_job;

static void softmax_bwd_rows(void *arg, int64_t r0, int64_t r1) {
  const sm_job *j = arg;
  const int64_t D = j->D;
  for (int64_t r = r0; r < r1; r++) {
    const float *yr = j->y + r * D, *dyr = j->dy + r * D;
    float *gr = j->out + r * D;
    double s = 0;
    if (j->logsm) {
      /* y = z - lse: dz_j = dy_j - softmax_j sum(dy) over allowed entries; blocked entries
       * (y = -inf) get no gradient. */
      for (int64_t c = 0; c < D; c++)
        if (yr[c] != -INFINITY) s += dyr[c];
      for (int64_t c = 0; c < D; c++)
        if (yr[c] != -INFINITY) gr[c] += dyr[c] - expf(yr[c]) * (float)s;
    } else {
      for (int64_t c = 0; c < D; c++) s += (double)dyr[c] * yr[c];
      for (int64_t c = 0; c < D; c++) gr[c] += yr[c] * (dyr[c] - (float)s);
    }
  }
}

/* iarg[0] = 1 for log_softmax; iarg: 1 R, 2 D. in[1] is the mask (a constant, may be NULL). Rows
 * are independent and split over the pool. */
static attn_status softmax_backward(attn_nn_node *n) {
  bool oom = false;
  float *gx = attn__nn_in_grad(n, 0, &oom);
  if (oom) return ATTN_STATUS_OUT_OF_MEMORY;
  if (!gx) return ATTN_OK;
  sm_job j = {n->iarg[0] != 0, 0, n->iarg[2], NULL, NULL, NULL, NULL, n->out->data,
              n->out->grad,    gx};
  attn__nn_parallel_range(n->iarg[1], rows_grain(j.D), softmax_bwd_rows, &j);
  return ATTN_OK;
}

/* Rows [r0, r1) of the forward: the mask offset of row r0 from its index, then advanced row by
 * row over x's leading dims. */
static void softmax_fwd_rows(void *arg, int64_t r0, int64_t r1) {
  const sm_job *j = arg;
  const int nd = j->nd;
  const int64_t D = j->D;
  const bool logsm = j->logsm;
  int64_t idx[ATTN_NN_MAX_DIMS] = {0}, moff = 0;
  for (int64_t d = nd - 2, q = r0; d >= 0; d--) {
    idx[d] = q % j->shape[d];
    q /= j->shape[d];
    moff += idx[d] * j->ms[d];
  }
  for (int64_t r = r0; r < r1; r++) {
    const float *xr = j->x + r * D;
    float *yr = j->out + r * D;
    for (int64_t c = 0; c < D; c++)
      yr[c] = xr[c] + (j->mask ? j->mask[moff + c * j->ms[nd - 1]] : 0.0f);
    float m = -INFINITY;
    for (int64_t c = 0; c < D; c++) m = yr[c] > m ? yr[c] : m;
    if (m == -INFINITY) { /* every entry blocked */
      for (int64_t c = 0; c < D; c++) yr[c] = logsm ? -INFINITY : 0.0f;
    } else {
      double s = 0;
      for (int64_t c = 0; c < D; c++) s += exp((double)yr[c] - m);
      if (logsm) {
        const float lse = m + (float)log(s);
        for (int64_t c = 0; c < D; c++) yr[c] = yr[c] - lse;
      } else {
        const double inv = 1.0 / s;
        for (int64_t c = 0; c < D; c++) yr[c] = (float)(exp((double)yr[c] - m) * inv);
      }
    }
    for (int d = nd - 2; d >= 0; d--) { /* advance the row index and the mask offset */
      idx[d]++;
      moff += j->ms[d];
      if (idx[d] < j->shape[d]) break;
      moff -= idx[d] * j->ms[d];
      idx[d] = 0;
    }
  }
}

static attn_var *softmax_impl(attn_nn_ctx *ctx, const char *op, attn_var *x, attn_var *mask,
                              bool logsm) {
  attn_var *ins[2] = {x, mask};
  if (!attn__nn_check(ctx, op, 2, ins, 2u)) return NULL;
  if (x->ndim < 1) return attn__nn_fail(ctx, ATTN_STATUS_SHAPE_MISMATCH, "%s: x needs >= 1 dim", op);
  const int nd = x->ndim;
  /* Mask strides over x's dims (0 where the mask broadcasts). */
  int64_t ms[ATTN_NN_MAX_DIMS] = {0};
  if (mask) {
    if (mask->ndim > nd)
      return attn__nn_fail(ctx, ATTN_STATUS_SHAPE_MISMATCH, "%s: mask has more dims than x", op);
    for (int d = 0; d < nd; d++) {
      int dm = d - (nd - mask->ndim);
      if (dm < 0) continue;
      if (mask->shape[dm] != 1 && mask->shape[dm] != x->shape[d])
        return attn__nn_fail(ctx, ATTN_STATUS_SHAPE_MISMATCH,
                             "%s: mask dim %d (%lld) does not broadcast to x dim %d (%lld)", op, dm,
                             (long long)mask->shape[dm], d, (long long)x->shape[d]);
      ms[d] = mask->shape[dm] == 1 ? 0 : mask->stride[dm];
    }
  }
  const int64_t D = x->shape[nd - 1], R = D ? x->numel / D : 0;
  attn_var *y = attn__nn_new(ctx, op, nd, x->shape);
  if (!y) return NULL;
  sm_job j = {logsm, nd, D, x->shape, ms, x->data, mask ? mask->data : NULL, NULL, NULL, y->data};
  attn__nn_parallel_range(R, rows_grain(D), softmax_fwd_rows, &j); /* rows are independent */
  attn_nn_node *node;
  if (!attn__nn_record(ctx, op, y, softmax_backward, 1, ins, &node)) return NULL;
  if (node) {
    node->iarg[0] = logsm;
    node->iarg[1] = R;
    node->iarg[2] = D;
  }
  return y;
}

attn_var *attn_nn_softmax(attn_nn_ctx *ctx, attn_var *x, attn_var *mask) {
  return softmax_impl(ctx, "attn_nn_softmax", x, mask, false);
}
attn_var *attn_nn_log_softmax(attn_nn_ctx *ctx, attn_var *x, attn_var *mask) {
  return softmax_impl(ctx, "attn_nn_log_softmax", x, mask, true);
}
