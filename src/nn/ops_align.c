/* Alignment functions (attn/align.h) and the fused additive attention kernel (attn/additive.h) as
 * differentiable ops. Both call the kernels' public forward and backward; the backwards compute
 * into scratch (the kernels overwrite) and then accumulate into the inputs' gradients. */
#include "attn/additive.h"
#include "attn/align.h"
#include "nn_internal.h"

bool attn__nn_mask_view(attn_nn_ctx *ctx, const char *op, const attn_var *mask, int nd,
                        const int64_t *target, const char *target_name, attn_tensor *out) {
  char buf[96];
  if (mask->ndim > nd) {
    attn__nn_fail(ctx, ATTN_STATUS_SHAPE_MISMATCH, "%s: mask %s has more than %d dims", op,
                  attn__nn_shape_str(mask, buf, sizeof buf), nd);
    return false;
  }
  int64_t shape[ATTN_MAX_DIMS];
  const int lead = nd - mask->ndim;
  for (int d = 0; d < nd; d++) {
    shape[d] = d < lead ? 1 : mask->shape[d - lead];
    if (shape[d] != 1 && shape[d] != target[d]) {
      attn__nn_fail(ctx, ATTN_STATUS_SHAPE_MISMATCH,
                    "%s: mask %s does not broadcast to the %s (dim %d: %lld vs %lld)", op,
                    attn__nn_shape_str(mask, buf, sizeof buf), target_name, d, (long long)shape[d],
                    (long long)target[d]);
      return false;
    }
  }
  *out = attn_tensor_make(mask->data, ATTN_DTYPE_F32, nd, shape);
  return true;
}

/* ---- alignment ----------------------------------------------------------------------------------
 */

/* What the backward needs besides the inputs and the output: the params (positions pointing at
 * the positions tensor's data) and the mask view. */
typedef struct align_saved {
  attn_align_params params;
  attn_tensor mask;
  bool has_mask;
} align_saved;

/* in: x, positions (NULL unless LOCAL_P). saved: align_saved. */
static attn_status align_backward(attn_nn_node *n) {
  attn_var *x = n->in[0], *pos = n->in[1], *y = n->out;
  const align_saved *s = n->saved;
  bool oom = false;
  float *gx = attn__nn_in_grad(n, 0, &oom), *gp = attn__nn_in_grad(n, 1, &oom);
  if (oom) return ATTN_STATUS_OUT_OF_MEMORY;
  /* The kernel always writes d_in (even when only the positions need a gradient). */
  const size_t nx = (size_t)x->numel, np = gp ? (size_t)pos->numel : 0;
  float *scratch = attn__malloc((nx + np + 1) * sizeof(float), ATTN_ALIGN);
  if (!scratch) return ATTN_STATUS_OUT_OF_MEMORY;
  float *dx = scratch, *dp = gp ? scratch + nx : NULL;
  const attn_tensor tdx = attn_tensor_make(dx, ATTN_DTYPE_F32, x->ndim, x->shape);
  const attn_tensor tdy = attn_tensor_make(y->grad, ATTN_DTYPE_F32, y->ndim, y->shape);
  const attn_tensor ty = attn_tensor_make(y->data, ATTN_DTYPE_F32, y->ndim, y->shape);
  const attn_tensor tx = attn_tensor_make(x->data, ATTN_DTYPE_F32, x->ndim, x->shape);
  attn_status st = attn_align_backward(&tdx, dp, &tdy, &ty, &tx, s->has_mask ? &s->mask : NULL,
                                       &s->params, NULL, 0);
  if (st == ATTN_OK) {
    if (gx)
      for (size_t i = 0; i < nx; i++) gx[i] += dx[i];
    if (gp)
      for (size_t i = 0; i < np; i++) gp[i] += dp[i];
  }
  attn__free(scratch);
  return st;
}

attn_var *attn_nn_align(attn_nn_ctx *ctx, attn_var *x, attn_var *mask,
                        const attn_align_params *params, attn_var *positions) {
  static const char *op = "attn_nn_align";
  attn_var *ins[3] = {x, mask, positions};
  if (!attn__nn_check(ctx, op, 3, ins, 6u)) return NULL;
  char buf[96];
  if (x->ndim < 1 || x->ndim > 4)
    return attn__nn_fail(ctx, ATTN_STATUS_SHAPE_MISMATCH, "%s: x %s must have 1 to 4 dims", op,
                         attn__nn_shape_str(x, buf, sizeof buf));
  const int64_t n = x->shape[x->ndim - 1], rows = n > 0 ? x->numel / n : 0;
  align_saved *s = attn__nn_alloc(ctx, sizeof *s);
  if (!s) return attn__nn_fail(ctx, ATTN_STATUS_OUT_OF_MEMORY, "%s: out of memory", op);
  memset(s, 0, sizeof *s);
  s->params = params ? *params : attn_align_params_default();
  s->params.positions = NULL;
  if (s->params.local == ATTN_ALIGN_LOCAL_P) {
    if (!positions)
      return attn__nn_fail(ctx, ATTN_STATUS_NULL_POINTER,
                           "%s: positions is NULL (LOCAL_P needs one position per row)", op);
    if (positions->numel != rows)
      return attn__nn_fail(ctx, ATTN_STATUS_SHAPE_MISMATCH,
                           "%s: positions %s must hold one value per row of x (%lld)", op,
                           attn__nn_shape_str(positions, buf, sizeof buf), (long long)rows);
    s->params.positions = positions->data;
  } else if (positions) {
    return attn__nn_fail(ctx, ATTN_STATUS_INVALID_ARGUMENT,
                         "%s: positions must be NULL unless params->local is LOCAL_P", op);
  }
  if (mask) {
    if (!attn__nn_mask_view(ctx, op, mask, x->ndim, x->shape, "scores", &s->mask)) return NULL;
    s->has_mask = true;
  }
  attn_var *y = attn__nn_new(ctx, op, x->ndim, x->shape);
  if (!y) return NULL;
  const attn_tensor ty = attn_tensor_make(y->data, ATTN_DTYPE_F32, y->ndim, y->shape);
  const attn_tensor tx = attn_tensor_make(x->data, ATTN_DTYPE_F32, x->ndim, x->shape);
  attn_status st = attn_align_forward(&ty, &tx, mask ? &s->mask : NULL, &s->params, NULL, 0);
  if (st != ATTN_OK) return attn__nn_fail(ctx, st, "%s: %s", op, attn_last_error());
  attn_var *rec[2] = {x, positions};
  attn_nn_node *node;
  if (!attn__nn_record(ctx, op, y, align_backward, 2, rec, &node)) return NULL;
  if (node) node->saved = s;
  return y;
}

/* ---- fused additive attention -------------------------------------------------------------------
 */

typedef struct additive_saved {
  attn_additive_params params; /* .mask points at `mask` when there is one */
  attn_tensor mask;
  float *lse; /* (B, Tq) */
} additive_saved;

static attn_tensor view_of(const attn_var *v, float *data) {
  return attn_tensor_make(data, ATTN_DTYPE_F32, v->ndim, v->shape);
}

/* in: q1, k2, v, w, b (may be NULL). saved: additive_saved. */
static attn_status additive_backward(attn_nn_node *n) {
  attn_var *q1 = n->in[0], *k2 = n->in[1], *v = n->in[2], *w = n->in[3], *b = n->in[4], *o = n->out;
  const additive_saved *s = n->saved;
  bool oom = false;
  float *g[5];
  for (int i = 0; i < 5; i++) g[i] = attn__nn_in_grad(n, i, &oom);
  if (oom) return ATTN_STATUS_OUT_OF_MEMORY;
  /* The kernel overwrites its gradients, which here accumulate: compute into scratch, then add. */
  size_t len[5] = {(size_t)q1->numel, (size_t)k2->numel, (size_t)v->numel, (size_t)w->numel,
                   b ? (size_t)b->numel : 0};
  const size_t total = len[0] + len[1] + len[2] + len[3] + len[4];
  float *scratch = attn__malloc((total + 1) * sizeof(float), ATTN_ALIGN);
  if (!scratch) return ATTN_STATUS_OUT_OF_MEMORY;
  float *d[5];
  d[0] = scratch;
  for (int i = 1; i < 5; i++) d[i] = d[i - 1] + len[i - 1];
  const attn_tensor tdq = view_of(q1, d[0]), tdk = view_of(k2, d[1]), tdv = view_of(v, d[2]),
                    tdw = view_of(w, d[3]), tdb = b ? view_of(b, d[4]) : tdw;
  const attn_tensor tq = view_of(q1, q1->data), tk = view_of(k2, k2->data),
                    tv = view_of(v, v->data), tw = view_of(w, w->data),
                    tb = b ? view_of(b, b->data) : tw;
  const attn_tensor tdo = view_of(o, o->grad), to = view_of(o, o->data);
  const int64_t lse_shape[2] = {q1->shape[0], q1->shape[1]};
  const attn_tensor tl = attn_tensor_make(s->lse, ATTN_DTYPE_F32, 2, lse_shape);
  attn_status st =
      attn_additive_backward(&tdq, &tdk, &tdv, &tdw, g[4] ? &tdb : NULL, &tdo, &tq, &tk, &tv, &tw,
                             b ? &tb : NULL, &to, &tl, &s->params, NULL, 0);
  if (st == ATTN_OK)
    for (int i = 0; i < 5; i++)
      if (g[i])
        for (size_t j = 0; j < len[i]; j++) g[i][j] += d[i][j];
  attn__free(scratch);
  return st;
}

attn_var *attn_nn_additive_attention(attn_nn_ctx *ctx, attn_var *q1, attn_var *k2, attn_var *v,
                                     attn_var *w, attn_var *b, attn_var *mask, attn_var **weights) {
  static const char *op = "attn_nn_additive_attention";
  if (weights) *weights = NULL;
  attn_var *ins[6] = {q1, k2, v, w, b, mask};
  if (!attn__nn_check(ctx, op, 6, ins, (1u << 4) | (1u << 5))) return NULL;
  if (q1->ndim != 3 || k2->ndim != 3 || v->ndim != 3)
    return attn__nn_fail(ctx, ATTN_STATUS_SHAPE_MISMATCH,
                         "%s: q1, k2 and v must be 3-d: (B, Tq, d), (B, Tk, d), (B, Tk, Dv)", op);
  const int64_t B = q1->shape[0], Tq = q1->shape[1], Tk = k2->shape[1], Dv = v->shape[2];
  additive_saved *s = attn__nn_alloc(ctx, sizeof *s);
  float *lse = s ? attn__nn_alloc(ctx, (size_t)(B * Tq + 1) * sizeof(float)) : NULL;
  if (!lse) return attn__nn_fail(ctx, ATTN_STATUS_OUT_OF_MEMORY, "%s: out of memory", op);
  memset(s, 0, sizeof *s);
  s->lse = lse;
  s->params = attn_additive_params_default();
  if (mask) {
    const int64_t scores[3] = {B, Tq, Tk};
    if (!attn__nn_mask_view(ctx, op, mask, 3, scores, "scores", &s->mask)) return NULL;
    s->params.mask = &s->mask;
  }
  attn_var *out = attn__nn_new(ctx, op, 3, (const int64_t[]){B, Tq, Dv});
  if (!out) return NULL;
  attn_var *wt = NULL;
  attn_tensor twt;
  if (weights) {
    wt = attn__nn_new(ctx, op, 3, (const int64_t[]){B, Tq, Tk});
    if (!wt) return NULL;
    twt = view_of(wt, wt->data);
  }
  const int64_t lse_shape[2] = {B, Tq};
  const attn_tensor to = view_of(out, out->data),
                    tl = attn_tensor_make(lse, ATTN_DTYPE_F32, 2, lse_shape);
  const attn_tensor tq = view_of(q1, q1->data), tk = view_of(k2, k2->data),
                    tv = view_of(v, v->data), tw = view_of(w, w->data),
                    tb = b ? view_of(b, b->data) : tw;
  attn_status st = attn_additive_forward(&to, &tl, wt ? &twt : NULL, &tq, &tk, &tv, &tw,
                                         b ? &tb : NULL, &s->params, NULL, 0);
  if (st != ATTN_OK) return attn__nn_fail(ctx, st, "%s: %s", op, attn_last_error());
  attn_nn_node *node;
  if (!attn__nn_record(ctx, op, out, additive_backward, 5, ins, &node)) return NULL;
  if (node) node->saved = s;
  if (weights) *weights = wt;
  return out;
}
