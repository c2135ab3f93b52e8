/* Reductions (sum, mean over an axis or everything) and losses (cross-entropy, mse). Sums
 * accumulate in double. */
#include "nn_internal.h"

/* ---- sum / mean over an axis -------------------------------------------------------------------- */

/* x viewed as (outer, n, inner); iarg: 0 outer, 1 n, 2 inner; farg[0] = 1 or 1/n. */
static attn_status axis_backward(attn_nn_node *n) {
  bool oom = false;
  float *gx = attn__nn_in_grad(n, 0, &oom);
  if (oom) return ATTN_STATUS_OUT_OF_MEMORY;
  const int64_t outer = n->iarg[0], len = n->iarg[1], inner = n->iarg[2];
  const float w = n->farg[0], *dy = n->out->grad;
  for (int64_t o = 0; o < outer; o++)
    for (int64_t j = 0; j < len; j++)
      for (int64_t i = 0; i < inner; i++) gx[(o * len + j) * inner + i] += w * dy[o * inner + i];
  return ATTN_OK;
}

static attn_var *reduce_axis(attn_nn_ctx *ctx, const char *op, attn_var *x, int axis, int keepdim,
                             bool mean) {
  if (!attn__nn_check(ctx, op, 1, &x, 0)) return NULL;
  int a;
  if (!attn__nn_axis(axis, x->ndim, &a))
    return attn__nn_fail(ctx, ATTN_STATUS_INVALID_ARGUMENT, "%s: axis %d out of range for %d dims",
                         op, axis, x->ndim);
  int64_t outer = 1, inner = 1, len = x->shape[a];
  for (int d = 0; d < a; d++) outer *= x->shape[d];
  for (int d = a + 1; d < x->ndim; d++) inner *= x->shape[d];
  int64_t shape[ATTN_NN_MAX_DIMS];
  int nd = 0;
  for (int d = 0; d < x->ndim; d++) {
    if (d == a && !keepdim) continue;
    shape[nd++] = d == a ? 1 : x->shape[d];
  }
  attn_var *y = attn__nn_new(ctx, op, nd, shape);
  if (!y) return NULL;
  const float w = mean ? (len ? 1.0f / (float)len : NAN) : 1.0f;
  for (int64_t o = 0; o < outer; o++)
    for (int64_t i = 0; i < inner; i++) {
      double s = 0;
      for (int64_t j = 0; j < len; j++) s += x->data[(o * len + j) * inner + i];
      y->data[o * inner + i] = mean ? (float)(s / (double)len) : (float)s;
    }
  attn_nn_node *node;
  if (!attn__nn_record(ctx, op, y, axis_backward, 1, &x, &node)) return NULL;
  if (node) {
    node->iarg[0] = outer;
    node->iarg[1] = len;
    node->iarg[2] = inner;
    node->farg[0] = w;
  }
  return y;
}

attn_var *attn_nn_sum(attn_nn_ctx *ctx, attn_var *x, int axis, int keepdim) {
  return reduce_axis(ctx, "attn_nn_sum", x, axis, keepdim, false);
}
attn_var *attn_nn_mean(attn_nn_ctx *ctx, attn_var *x, int axis, int keepdim) {
  return reduce_axis(ctx, "attn_nn_mean", x, axis, keepdim, true);
}

/* ---- max over an axis ----------------------------------------------------------------------------- */

/* saved: index along the axis of each output's maximum (int64). iarg: 0 outer, 1 n, 2 inner. */
static attn_status max_backward(attn_nn_node *n) {
  bool oom = false;
  float *gx = attn__nn_in_grad(n, 0, &oom);
  if (oom) return ATTN_STATUS_OUT_OF_MEMORY;
  const int64_t outer = n->iarg[0], len = n->iarg[1], inner = n->iarg[2];
  const int64_t *arg = n->saved;
  const float *dy = n->out->grad;
  for (int64_t o = 0; o < outer; o++)
    for (int64_t i = 0; i < inner; i++) gx[(o * len + arg[o * inner + i]) * inner + i] += dy[o * inner + i];
  return ATTN_OK;
}

attn_var *attn_nn_max(attn_nn_ctx *ctx, attn_var *x, int axis, int keepdim) {
  static const char *op = "attn_nn_max";
  if (!attn__nn_check(ctx, op, 1, &x, 0)) return NULL;
  int a;
  if (!attn__nn_axis(axis, x->ndim, &a) || x->shape[a] == 0)
    return attn__nn_fail(ctx, ATTN_STATUS_INVALID_ARGUMENT, "%s: axis %d out of range or empty", op, axis);
  int64_t outer = 1, inner = 1, len = x->shape[a];
  for (int d = 0; d < a; d++) outer *= x->shape[d];
  for (int d = a + 1; d < x->ndim; d++) inner *= x->shape[d];
  int64_t shape[ATTN_NN_MAX_DIMS];
  int nd = 0;
  for (int d = 0; d < x->ndim; d++) {
    if (d == a && !keepdim) continue;
    shape[nd++] = d == a ? 1 : x->shape[d];
  }
  attn_var *y = attn__nn_new(ctx, op, nd, shape);
  int64_t *arg = y ? attn__nn_alloc(ctx, (size_t)(outer * inner + 1) * sizeof(int64_t)) : NULL;
  if (!arg) return y ? attn__nn_fail(ctx, ATTN_STATUS_OUT_OF_MEMORY, "%s: out of memory", op) : NULL;
  for (int64_t o = 0; o < outer; o++)
    for (int64_t i = 0; i < inner; i++) {
      int64_t best = 0;
      float bv = x->data[o * len * inner + i];
      for (int64_t j = 1; j < len; j++) {
        const float v = x->data[(o * len + j) * inner + i];
        if (v > bv) {
          bv = v;
          best = j;
        }
      }
      y->data[o * inner + i] = bv;
      arg[o * inner + i] = best;
    }
  attn_nn_node *node;
  if (!attn__nn_record(ctx, op, y, max_backward, 1, &x, &node)) return NULL;
  if (node) {
    node->saved = arg;
    node->iarg[0] = outer;
    node->iarg[1] = len;
    node->iarg[2] = inner;
  }
  return y;
}

static attn_var *reduce_all(attn_nn_ctx *ctx, const char *op, attn_var *x, bool mean) {
  if (!attn__nn_check(ctx, op, 1, &x, 0)) return NULL;
  attn_var *y = attn__nn_new(ctx, op, 0, NULL);
  if (!y) return NULL;
  double s = 0;
  for (int64_t i = 0; i < x->numel; i++) s += x->data[i];
  y->data[0] = mean ? (float)(s / (double)x->numel) : (float)s;
  attn_nn_node *node;
  if (!attn__nn_record(ctx, op, y, axis_backward, 1, &x, &node)) return NULL;
  if (node) {
    node->iarg[0] = 1;
    node->iarg[1] = x->numel;
    node->iarg[2] = 1;
    node->farg[0] = mean ? (x->numel ? 1.0f / (float)x->numel : NAN) : 1.0f;
  }
  return y;
}

attn_var *attn_nn_sum_all(attn_nn_ctx *ctx, attn_var *x) { return reduce_all(ctx, "attn_nn_sum_all", x, false); }
attn_var *attn_nn_mean_all(attn_nn_ctx *ctx, attn_var *x) { return reduce_all(ctx, "attn_nn_mean_all", x, true); }

/* ---- mse --------------------------------------------------------------------------------------- */

static attn_status mse_backward(attn_nn_node *n) {
  bool oom = false;
  float *ga = attn__nn_in_grad(n, 0, &oom), *gb = attn__nn_in_grad(n, 1, &oom);
  if (oom) return ATTN_STATUS_OUT_OF_MEMORY;
  const float *a = n->in[0]->data, *b = n->in[1]->data;
  const int64_t cnt = n->in[0]->numel;
  const float w = 2.0f * n->out->grad[0] / (float)cnt;
  for (int64_t i = 0; i < cnt; i++) {
    float g = w * (a[i] - b[i]);
    if (ga) ga[i] += g;
    if (gb) gb[i] -= g;
  }
  return ATTN_OK;
}

attn_var *attn_nn_mse(attn_nn_ctx *ctx, attn_var *a, attn_var *b) {
  static const char *op = "attn_nn_mse";
  attn_var *ins[2] = {a, b};
  if (!attn__nn_check(ctx, op, 2, ins, 0)) return NULL;
  if (!attn__nn_same_shape(a, b) || a->numel == 0)
    return attn__nn_fail(ctx, ATTN_STATUS_SHAPE_MISMATCH, "%s: a and b need the same non-empty shape", op);
  attn_var *y = attn__nn_new(ctx, op, 0, NULL);
  if (!y) return NULL;
  double s = 0;
  for (int64_t i = 0; i < a->numel; i++) {
    double d = (double)a->data[i] - (double)b->data[i];
    s += d * d;
  }
  y->data[0] = (float)(s / (double)a->numel);
  attn_nn_node *node;
  if (!attn__nn_record(ctx, op, y, mse_backward, 2, ins, &node)) return NULL;
  return y;
}

/* ---- binary cross-entropy on logits ------------------------------------------------------------ */

static attn_status bce_backward(attn_nn_node *n) {
  bool oom = false;
  float *gx = attn__nn_in_grad(n, 0, &oom);
  if (oom) return ATTN_STATUS_OUT_OF_MEMORY;
  const float *x = n->in[0]->data, *t = n->in[1]->data;
  const int64_t cnt = n->in[0]->numel;
  const float w = n->out->grad[0] / (float)cnt;
  for (int64_t i = 0; i < cnt; i++) {
    const float s = x[i] >= 0 ? 1.0f / (1.0f + expf(-x[i])) : expf(x[i]) / (1.0f + expf(x[i]));
    gx[i] += w * (s - t[i]);
  }
  return ATTN_OK;
}

attn_var *attn_nn_bce_with_logits(attn_nn_ctx *ctx, attn_var *logits, attn_var *targets) {
  static const char *op = "attn_nn_bce_with_logits";
  attn_var *ins[2] = {logits, targets};
  if (!attn__nn_check(ctx, op, 2, ins, 0)) return NULL;
  if (!attn__nn_same_shape(logits, targets) || logits->numel == 0)
    return attn__nn_fail(ctx, ATTN_STATUS_SHAPE_MISMATCH, "%s: logits and targets need the same non-empty shape", op);
  attn_var *y = attn__nn_new(ctx, op, 0, NULL);
  if (!y) return NULL;
  double s = 0;
  for (int64_t i = 0; i < logits->numel; i++) {
    const double x = logits->data[i], t = targets->data[i];
    s += (x > 0 ? x : 0) - x * t + log1p(exp(-fabs(x)));
  }
  y->data[0] = (float)(s / (double)logits->numel);
  attn_nn_node *node;
  /* Only the logits are recorded as differentiable; the targets ride along as a constant. */
  if (!attn__nn_record(ctx, op, y, bce_backward, 1, ins, &node)) return NULL;
  if (node) {
    attn_var **in2 = attn__nn_alloc(ctx, 2 * sizeof *in2);
    if (!in2) return attn__nn_fail(ctx, ATTN_STATUS_OUT_OF_MEMORY, "%s: out of memory", op);
    in2[0] = logits;
    in2[1] = targets;
    node->in = in2; /* n_in stays 1: no gradient for the targets */
  }
  return y;
}

/* ---- cross-entropy ------------------------------------------------------------------------------ */

/* saved: targets (R int32); saved2: lse per row (R floats). iarg: 0 R, 1 C, 2 ignore_index,
 * 3 counted rows. farg[0] = label smoothing. */
static attn_status ce_backward(attn_nn_node *n) {
  bool oom = false;
  float *gx = attn__nn_in_grad(n, 0, &oom);
  if (oom) return ATTN_STATUS_OUT_OF_MEMORY;
  const int64_t R = n->iarg[0], C = n->iarg[1], count = n->iarg[3];
  const int32_t ignore = (int32_t)n->iarg[2];
  if (count == 0) return ATTN_OK;
  const int32_t *t = n->saved;
  const float *lse = n->saved2, *x = n->in[0]->data, e = n->farg[0];
  const float w = n->out->grad[0] / (float)count;
  for (int64_t r = 0; r < R; r++) {
    if (t[r] == ignore) continue;
    const float *xr = x + r * C;
    float *gr = gx + r * C;
    for (int64_t j = 0; j < C; j++) {
      float target = e / (float)C + (j == t[r] ? 1.0f - e : 0.0f);
      gr[j] += w * (expf(xr[j] - lse[r]) - target);
    }
  }
  return ATTN_OK;
}

attn_var *attn_nn_cross_entropy(attn_nn_ctx *ctx, attn_var *logits, const int32_t *targets,
                                int32_t ignore_index, float label_smoothing) {
  static const char *op = "attn_nn_cross_entropy";
  if (!attn__nn_check(ctx, op, 1, &logits, 0)) return NULL;
  if (logits->ndim < 1 || logits->shape[logits->ndim - 1] < 1)
    return attn__nn_fail(ctx, ATTN_STATUS_SHAPE_MISMATCH, "%s: logits need a class dim >= 1", op);
  if (!(label_smoothing >= 0.0f && label_smoothing < 1.0f))
    return attn__nn_fail(ctx, ATTN_STATUS_INVALID_ARGUMENT, "%s: label_smoothing %g outside [0, 1)",
                         op, (double)label_smoothing);
  const int64_t C = logits->shape[logits->ndim - 1], R = logits->numel / C;
  if (R && !targets) return attn__nn_fail(ctx, ATTN_STATUS_NULL_POINTER, "%s: targets is NULL", op);
  int64_t count = 0;
  for (int64_t r = 0; r < R; r++) {
    if (targets[r] == ignore_index) continue;
    if (targets[r] < 0 || targets[r] >= C)
      return attn__nn_fail(ctx, ATTN_STATUS_INVALID_ARGUMENT, "%s: targets[%lld] = %d outside [0, %lld)",
                           op, (long long)r, targets[r], (long long)C);
    count++;
  }
  attn_var *y = attn__nn_new(ctx, op, 0, NULL);
  int32_t *t = y ? attn__nn_alloc(ctx, (size_t)(R ? R : 1) * sizeof(int32_t)) : NULL;
  float *lse = t ? attn__nn_alloc(ctx, (size_t)(R ? R : 1) * sizeof(float)) : NULL;
  if (!lse) return y ? attn__nn_fail(ctx, ATTN_STATUS_OUT_OF_MEMORY, "%s: out of memory", op) : NULL;
  if (R) memcpy(t, targets, (size_t)R * sizeof(int32_t));
  const float e = label_smoothing;
  double total = 0;
  for (int64_t r = 0; r < R; r++) {
    const float *xr = logits->data + r * C;
    float m = xr[0];
    for (int64_t j = 1; j < C; j++) m = xr[j] > m ? xr[j] : m;
    double s = 0, mean_x = 0;
    for (int64_t j = 0; j < C; j++) {
      s += exp((double)xr[j] - m);
      mean_x += xr[j];
    }
    lse[r] = (float)(m + log(s));
    if (t[r] == ignore_index) continue;
    mean_x /= (double)C;
    total += (double)lse[r] - (1.0 - e) * xr[t[r]] - e * mean_x;
  }
  y->data[0] = count ? (float)(total / (double)count) : 0.0f;
  attn_nn_node *node;
  if (!attn__nn_record(ctx, op, y, ce_backward, 1, &logits, &node)) return NULL;
  if (node) {
    node->saved = t;
    node->saved2 = lse;
    node->iarg[0] = R;
    node->iarg[1] = C;
    node->iarg[2] = ignore_index;
    node->iarg[3] = count;
    node->farg[0] = e;
  }
  return y;
}
