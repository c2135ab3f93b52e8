/* Shape ops (reshape, permute, transpose, slice, concat) and embedding lookup. Every result is a
 * new contiguous tensor; the backward scatters (+=) the gradient back through the same map. */
#include "nn_internal.h"

/* dst[map] (+)= src[map] over an nd-dim index space of `shape`, with per-tensor strides. */
static void strided_copy(float *dst, const int64_t *dst_stride, const float *src,
                         const int64_t *src_stride, const int64_t *shape, int nd, bool accumulate) {
  int64_t total = 1;
  for (int d = 0; d < nd; d++) total *= shape[d];
  if (total == 0) return;
  const int64_t inner = nd ? shape[nd - 1] : 1;
  const int64_t ds = nd ? dst_stride[nd - 1] : 1, ss = nd ? src_stride[nd - 1] : 1;
  int64_t idx[ATTN_NN_MAX_DIMS] = {0};
  int64_t od = 0, os = 0;
  for (int64_t base = 0; base < total; base += inner) {
    if (accumulate)
      for (int64_t j = 0; j < inner; j++) dst[od + j * ds] += src[os + j * ss];
    else
      for (int64_t j = 0; j < inner; j++) dst[od + j * ds] = src[os + j * ss];
    for (int d = nd - 2; d >= 0; d--) {
      idx[d]++;
      od += dst_stride[d];
      os += src_stride[d];
      if (idx[d] < shape[d]) break;
      od -= idx[d] * dst_stride[d];
      os -= idx[d] * src_stride[d];
      idx[d] = 0;
    }
  }
}

/* ---- reshape ----------------------------------------------------------------------------------- */

/* A view's gradient buffer is its base's (attn__nn_grad), so the gradient is already in place. */
static attn_status view_backward(attn_nn_node *n) {
  (void)n;
  return ATTN_OK;
}

attn_var *attn_nn_reshape(attn_nn_ctx *ctx, attn_var *x, int ndim, const int64_t *shape) {
  static const char *op = "attn_nn_reshape";
  if (!attn__nn_check(ctx, op, 1, &x, 0)) return NULL;
  if (ndim < 0 || ndim > ATTN_NN_MAX_DIMS || (ndim && !shape))
    return attn__nn_fail(ctx, ATTN_STATUS_INVALID_ARGUMENT, "%s: bad ndim %d or NULL shape", op, ndim);
  int64_t s[ATTN_NN_MAX_DIMS], known = 1;
  int infer = -1;
  for (int d = 0; d < ndim; d++) {
    s[d] = shape[d];
    if (s[d] == -1 && infer < 0) {
      infer = d;
      continue;
    }
    if (s[d] < 0 || !attn__mul_i64(known, s[d], &known))
      return attn__nn_fail(ctx, ATTN_STATUS_INVALID_ARGUMENT, "%s: bad dim %d (%lld)", op, d, (long long)s[d]);
  }
  if (infer >= 0) {
    if (known == 0 || x->numel % known)
      return attn__nn_fail(ctx, ATTN_STATUS_SHAPE_MISMATCH, "%s: cannot infer dim %d", op, infer);
    s[infer] = x->numel / known;
    known = x->numel;
  }
  if (known != x->numel)
    return attn__nn_fail(ctx, ATTN_STATUS_SHAPE_MISMATCH, "%s: %lld elements into %lld", op,
                         (long long)x->numel, (long long)known);
  attn_var *y = attn__nn_alloc(ctx, sizeof *y);
  if (!y) return attn__nn_fail(ctx, ATTN_STATUS_OUT_OF_MEMORY, "%s: out of memory", op);
  memset(y, 0, sizeof *y);
  attn__nn_set_shape(y, ndim, s);
  y->data = x->data;
  y->ctx = ctx;
  y->base = x->base ? x->base : x;
  attn_nn_node *node;
  if (!attn__nn_record(ctx, op, y, view_backward, 1, &x, &node)) return NULL;
  return y;
}

/* ---- permute ----------------------------------------------------------------------------------- */

/* iarg[0..nd) = perm. */
static attn_status permute_backward(attn_nn_node *n) {
  bool oom = false;
  float *gx = attn__nn_in_grad(n, 0, &oom);
  if (oom) return ATTN_STATUS_OUT_OF_MEMORY;
  attn_var *x = n->in[0], *y = n->out;
  int64_t xs[ATTN_NN_MAX_DIMS];
  for (int d = 0; d < y->ndim; d++) xs[d] = x->stride[n->iarg[d]];
  strided_copy(gx, xs, y->grad, y->stride, y->shape, y->ndim, true);
  return ATTN_OK;
}

attn_var *attn_nn_permute(attn_nn_ctx *ctx, attn_var *x, const int *perm) {
  static const char *op = "attn_nn_permute";
  if (!attn__nn_check(ctx, op, 1, &x, 0)) return NULL;
  if (!perm && x->ndim) return attn__nn_fail(ctx, ATTN_STATUS_NULL_POINTER, "%s: perm is NULL", op);
  int seen[ATTN_NN_MAX_DIMS] = {0};
  int64_t shape[ATTN_NN_MAX_DIMS], xs[ATTN_NN_MAX_DIMS];
  for (int d = 0; d < x->ndim; d++) {
    if (perm[d] < 0 || perm[d] >= x->ndim || seen[perm[d]]++)
      return attn__nn_fail(ctx, ATTN_STATUS_INVALID_ARGUMENT, "%s: perm is not a permutation of 0..%d",
                           op, x->ndim - 1);
    shape[d] = x->shape[perm[d]];
    xs[d] = x->stride[perm[d]];
  }
  attn_var *y = attn__nn_new(ctx, op, x->ndim, shape);
  if (!y) return NULL;
  strided_copy(y->data, y->stride, x->data, xs, shape, x->ndim, false);
  attn_nn_node *node;
  if (!attn__nn_record(ctx, op, y, permute_backward, 1, &x, &node)) return NULL;
  if (node)
    for (int d = 0; d < x->ndim; d++) node->iarg[d] = perm[d];
  return y;
}

attn_var *attn_nn_transpose(attn_nn_ctx *ctx, attn_var *x, int d0, int d1) {
  static const char *op = "attn_nn_transpose";
  if (!attn__nn_check(ctx, op, 1, &x, 0)) return NULL;
  int a, b;
  if (!attn__nn_axis(d0, x->ndim, &a) || !attn__nn_axis(d1, x->ndim, &b))
    return attn__nn_fail(ctx, ATTN_STATUS_INVALID_ARGUMENT, "%s: dims %d, %d out of range for %d dims",
                         op, d0, d1, x->ndim);
  int perm[ATTN_NN_MAX_DIMS];
  for (int d = 0; d < x->ndim; d++) perm[d] = d;
  perm[a] = b;
  perm[b] = a;
  return attn_nn_permute(ctx, x, perm);
}

/* ---- slice ------------------------------------------------------------------------------------- */

/* iarg: 0 dim, 1 start. */
static attn_status slice_backward(attn_nn_node *n) {
  bool oom = false;
  float *gx = attn__nn_in_grad(n, 0, &oom);
  if (oom) return ATTN_STATUS_OUT_OF_MEMORY;
  attn_var *x = n->in[0], *y = n->out;
  strided_copy(gx + n->iarg[1] * x->stride[n->iarg[0]], x->stride, y->grad, y->stride, y->shape,
               y->ndim, true);
  return ATTN_OK;
}

attn_var *attn_nn_slice(attn_nn_ctx *ctx, attn_var *x, int dim, int64_t start, int64_t end) {
  static const char *op = "attn_nn_slice";
  if (!attn__nn_check(ctx, op, 1, &x, 0)) return NULL;
  int d;
  if (!attn__nn_axis(dim, x->ndim, &d))
    return attn__nn_fail(ctx, ATTN_STATUS_INVALID_ARGUMENT, "%s: dim %d out of range", op, dim);
  if (start < 0 || start > end || end > x->shape[d])
    return attn__nn_fail(ctx, ATTN_STATUS_INVALID_ARGUMENT, "%s: [%lld, %lld) is outside [0, %lld]",
                         op, (long long)start, (long long)end, (long long)x->shape[d]);
  int64_t shape[ATTN_NN_MAX_DIMS];
  memcpy(shape, x->shape, sizeof shape);
  shape[d] = end - start;
  attn_var *y = attn__nn_new(ctx, op, x->ndim, shape);
  if (!y) return NULL;
  strided_copy(y->data, y->stride, x->data + start * x->stride[d], x->stride, shape, x->ndim, false);
  attn_nn_node *node;
  if (!attn__nn_record(ctx, op, y, slice_backward, 1, &x, &node)) return NULL;
  if (node) {
    node->iarg[0] = d;
    node->iarg[1] = start;
  }
  return y;
}

/* ---- concat ------------------------------------------------------------------------------------ */

/* iarg[0] = dim. */
static attn_status concat_backward(attn_nn_node *n) {
  attn_var *y = n->out;
  const int d = (int)n->iarg[0];
  int64_t off = 0;
  for (int i = 0; i < n->n_in; i++) {
    attn_var *x = n->in[i];
    bool oom = false;
    float *gx = attn__nn_in_grad(n, i, &oom);
    if (oom) return ATTN_STATUS_OUT_OF_MEMORY;
    if (gx)
      strided_copy(gx, x->stride, y->grad + off * y->stride[d], y->stride, x->shape, x->ndim, true);
    off += x->shape[d];
  }
  return ATTN_OK;
}

attn_var *attn_nn_concat(attn_nn_ctx *ctx, attn_var *const *xs, int n, int dim) {
  static const char *op = "attn_nn_concat";
  if (!ctx) return attn__nn_fail(NULL, ATTN_STATUS_NULL_POINTER, "%s: ctx is NULL", op);
  if (!xs || n < 1)
    return attn__nn_fail(ctx, ATTN_STATUS_INVALID_ARGUMENT, "%s: need n >= 1 tensors", op);
  if (!attn__nn_check(ctx, op, n, xs, 0)) return NULL;
  int d;
  if (!attn__nn_axis(dim, xs[0]->ndim, &d))
    return attn__nn_fail(ctx, ATTN_STATUS_INVALID_ARGUMENT, "%s: dim %d out of range", op, dim);
  int64_t shape[ATTN_NN_MAX_DIMS];
  memcpy(shape, xs[0]->shape, sizeof shape);
  shape[d] = 0;
  for (int i = 0; i < n; i++) {
    bool ok = xs[i]->ndim == xs[0]->ndim;
    for (int e = 0; ok && e < xs[0]->ndim; e++)
      if (e != d && xs[i]->shape[e] != xs[0]->shape[e]) ok = false;
    if (!ok)
      return attn__nn_fail(ctx, ATTN_STATUS_SHAPE_MISMATCH,
                           "%s: input %d differs from input 0 outside dim %d", op, i, d);
    shape[d] += xs[i]->shape[d];
  }
  attn_var *y = attn__nn_new(ctx, op, xs[0]->ndim, shape);
  if (!y) return NULL;
  int64_t off = 0;
  for (int i = 0; i < n; i++) {
    strided_copy(y->data + off * y->stride[d], y->stride, xs[i]->data, xs[i]->stride, xs[i]->shape,
                 xs[i]->ndim, false);
    off += xs[i]->shape[d];
  }
  attn_nn_node *node;
  if (!attn__nn_record(ctx, op, y, concat_backward, n, xs, &node)) return NULL;
  if (node) node->iarg[0] = d;
  return y;
}

/* ---- embedding --------------------------------------------------------------------------------- */

/* saved = ids (n int32). */
static attn_status embedding_backward(attn_nn_node *n) {
  bool oom = false;
  float *gt = attn__nn_in_grad(n, 0, &oom);
  if (oom) return ATTN_STATUS_OUT_OF_MEMORY;
  const int32_t *ids = n->saved;
  const int64_t D = n->in[0]->shape[1], count = n->out->numel / (D ? D : 1);
  const float *dy = n->out->grad;
  for (int64_t i = 0; D && i < count; i++)
    for (int64_t j = 0; j < D; j++) gt[ids[i] * D + j] += dy[i * D + j];
  return ATTN_OK;
}

attn_var *attn_nn_embedding(attn_nn_ctx *ctx, attn_var *table, const int32_t *ids, int ndim,
                            const int64_t *shape) {
  static const char *op = "attn_nn_embedding";
  if (!attn__nn_check(ctx, op, 1, &table, 0)) return NULL;
  if (table->ndim != 2)
    return attn__nn_fail(ctx, ATTN_STATUS_SHAPE_MISMATCH, "%s: table must be (V, D)", op);
  if (ndim < 0 || ndim >= ATTN_NN_MAX_DIMS || (ndim && !shape))
    return attn__nn_fail(ctx, ATTN_STATUS_INVALID_ARGUMENT, "%s: bad ndim %d or NULL shape", op, ndim);
  int64_t oshape[ATTN_NN_MAX_DIMS];
  for (int d = 0; d < ndim; d++) oshape[d] = shape[d];
  oshape[ndim] = table->shape[1];
  attn_var *y = attn__nn_new(ctx, op, ndim + 1, oshape);
  if (!y) return NULL;
  const int64_t V = table->shape[0], D = table->shape[1], count = D ? y->numel / D : 0;
  if (count && !ids) return attn__nn_fail(ctx, ATTN_STATUS_NULL_POINTER, "%s: ids is NULL", op);
  for (int64_t i = 0; i < count; i++)
    if (ids[i] < 0 || ids[i] >= V)
      return attn__nn_fail(ctx, ATTN_STATUS_INVALID_ARGUMENT, "%s: ids[%lld] = %d is outside [0, %lld)",
                           op, (long long)i, ids[i], (long long)V);
  for (int64_t i = 0; i < count; i++)
    memcpy(y->data + i * D, table->data + ids[i] * D, (size_t)D * sizeof(float));
  attn_nn_node *node;
  if (!attn__nn_record(ctx, op, y, embedding_backward, 1, &table, &node)) return NULL;
  if (node) {
    int32_t *saved = attn__nn_alloc(ctx, (size_t)(count ? count : 1) * sizeof(int32_t));
    if (!saved) return attn__nn_fail(ctx, ATTN_STATUS_OUT_OF_MEMORY, "%s: out of memory", op);
    if (count) memcpy(saved, ids, (size_t)count * sizeof(int32_t));
    node->saved = saved;
  }
  return y;
}

/* ---- split ------------------------------------------------------------------------------------- */

attn_status attn_nn_split(attn_nn_ctx *ctx, attn_var *x, int dim, int n, const int64_t *sizes,
                          attn_var **outs) {
  static const char *op = "attn_nn_split";
  if (outs)
    for (int i = 0; i < n; i++) outs[i] = NULL;
  if (!attn__nn_check(ctx, op, 1, &x, 0)) return ctx ? ctx->status : ATTN_STATUS_NULL_POINTER;
  if (n < 1 || !sizes || !outs) {
    attn__nn_fail(ctx, ATTN_STATUS_INVALID_ARGUMENT, "%s: need n >= 1, sizes and outs", op);
    return ctx->status;
  }
  int d;
  if (!attn__nn_axis(dim, x->ndim, &d)) {
    attn__nn_fail(ctx, ATTN_STATUS_INVALID_ARGUMENT, "%s: dim %d out of range", op, dim);
    return ctx->status;
  }
  int64_t total = 0;
  for (int i = 0; i < n; i++) {
    if (sizes[i] < 0) total = -1;
    if (total >= 0) total += sizes[i];
  }
  if (total != x->shape[d]) {
    attn__nn_fail(ctx, ATTN_STATUS_SHAPE_MISMATCH, "%s: sizes do not add up to %lld", op, (long long)x->shape[d]);
    return ctx->status;
  }
  int64_t start = 0;
  for (int i = 0; i < n; i++) {
    outs[i] = attn_nn_slice(ctx, x, d, start, start + sizes[i]);
    start += sizes[i];
  }
  if (ctx->status != ATTN_OK)
    for (int i = 0; i < n; i++) outs[i] = NULL;
  return ctx->status;
}

/* ---- index_select ------------------------------------------------------------------------------ */

/* saved = ids; iarg: 0 outer, 1 len (x's axis size), 2 inner, 3 n. */
static attn_status index_select_backward(attn_nn_node *nd) {
  bool oom = false;
  float *gx = attn__nn_in_grad(nd, 0, &oom);
  if (oom) return ATTN_STATUS_OUT_OF_MEMORY;
  const int32_t *ids = nd->saved;
  const int64_t outer = nd->iarg[0], len = nd->iarg[1], inner = nd->iarg[2], n = nd->iarg[3];
  const float *dy = nd->out->grad;
  for (int64_t o = 0; o < outer; o++)
    for (int64_t k = 0; k < n; k++)
      for (int64_t i = 0; i < inner; i++) gx[(o * len + ids[k]) * inner + i] += dy[(o * n + k) * inner + i];
  return ATTN_OK;
}

attn_var *attn_nn_index_select(attn_nn_ctx *ctx, attn_var *x, int axis, const int32_t *ids, int64_t n) {
  static const char *op = "attn_nn_index_select";
  if (!attn__nn_check(ctx, op, 1, &x, 0)) return NULL;
  int a;
  if (!attn__nn_axis(axis, x->ndim, &a))
    return attn__nn_fail(ctx, ATTN_STATUS_INVALID_ARGUMENT, "%s: axis %d out of range", op, axis);
  if (n < 0 || (n && !ids))
    return attn__nn_fail(ctx, ATTN_STATUS_INVALID_ARGUMENT, "%s: bad n %lld or NULL ids", op, (long long)n);
  const int64_t len = x->shape[a];
  for (int64_t k = 0; k < n; k++)
    if (ids[k] < 0 || ids[k] >= len)
      return attn__nn_fail(ctx, ATTN_STATUS_INVALID_ARGUMENT, "%s: ids[%lld] = %d outside [0, %lld)", op,
                           (long long)k, ids[k], (long long)len);
  int64_t shape[ATTN_NN_MAX_DIMS], outer = 1, inner = 1;
  memcpy(shape, x->shape, sizeof shape);
  shape[a] = n;
  for (int d = 0; d < a; d++) outer *= x->shape[d];
  for (int d = a + 1; d < x->ndim; d++) inner *= x->shape[d];
  attn_var *y = attn__nn_new(ctx, op, x->ndim, shape);
  int32_t *saved = y ? attn__nn_alloc(ctx, (size_t)(n ? n : 1) * sizeof(int32_t)) : NULL;
  if (!saved) return y ? attn__nn_fail(ctx, ATTN_STATUS_OUT_OF_MEMORY, "%s: out of memory", op) : NULL;
  if (n) memcpy(saved, ids, (size_t)n * sizeof(int32_t));
  for (int64_t o = 0; o < outer; o++)
    for (int64_t k = 0; k < n; k++)
      memcpy(y->data + (o * n + k) * inner, x->data + (o * len + ids[k]) * inner, (size_t)inner * sizeof(float));
  attn_nn_node *node;
  if (!attn__nn_record(ctx, op, y, index_select_backward, 1, &x, &node)) return NULL;
  if (node) {
    node->saved = saved;
    node->iarg[0] = outer;
    node->iarg[1] = len;
    node->iarg[2] = inner;
    node->iarg[3] = n;
  }
  return y;
}
