/* The fused exact attention kernel as one differentiable op. */
#include "nn_internal.h"

/* The kernel's (B, H, N, D) view of a tensor: the tensor itself when it is 4-d (B, H, N, D);
 * a strided view when it is 3-d (B, N, H * D) with `heads` heads (the layout the projections
 * produce, so no permute copy is needed). */
static attn_tensor view_bhnd(const attn_var *v, float *data, int64_t heads) {
  if (v->ndim == 4) return attn_tensor_make(data, ATTN_DTYPE_F32, 4, v->shape);
  const int64_t B = v->shape[0], N = v->shape[1], W = v->shape[2], D = W / heads;
  attn_tensor t;
  memset(&t, 0, sizeof t);
  t.data = data;
  t.dtype = ATTN_DTYPE_F32;
  t.ndim = 4;
  t.shape[0] = B;
  t.shape[1] = heads;
  t.shape[2] = N;
  t.shape[3] = D;
  t.stride[0] = N * W;
  t.stride[1] = D;
  t.stride[2] = W;
  t.stride[3] = 1;
  return t;
}

/* The kernel's params with every array it points to copied into the arena, so the backward
 * (which reruns the kernel with the same params) does not depend on the caller's buffers. */
static bool copy_i32(attn_nn_ctx *ctx, const int32_t **dst, const int32_t *src, int64_t n) {
  if (!src) return true;
  int32_t *c = attn__nn_alloc(ctx, (size_t)(n > 0 ? n : 1) * sizeof(int32_t));
  if (!c) return false;
  if (n > 0) memcpy(c, src, (size_t)n * sizeof(int32_t));
  *dst = c;
  return true;
}

static attn_sdpa_params *params_copy(attn_nn_ctx *ctx, const attn_sdpa_params *p, int64_t B, int64_t Hq) {
  attn_sdpa_params *c = attn__nn_alloc(ctx, sizeof *c);
  if (!c) return NULL;
  *c = p ? *p : attn_sdpa_params_default();
  const int64_t nseq = c->cu_seqlens_q && c->n_seqs >= 0 ? c->n_seqs + 1 : 0;
  if (!copy_i32(ctx, &c->key_lens, c->key_lens, B) || !copy_i32(ctx, &c->query_lens, c->query_lens, B) ||
      !copy_i32(ctx, &c->cu_seqlens_q, c->cu_seqlens_q, nseq) || !copy_i32(ctx, &c->cu_seqlens_k, c->cu_seqlens_k, nseq))
    return NULL;
  if (c->alibi_slopes) {
    float *s = attn__nn_alloc(ctx, (size_t)(Hq > 0 ? Hq : 1) * sizeof(float));
    if (!s) return NULL;
    if (Hq > 0) memcpy(s, c->alibi_slopes, (size_t)Hq * sizeof(float));
    c->alibi_slopes = s;
  }
  return c;
}

/* saved: lse (B, Hq, Nq) f32; saved2: the params (arena copy). iarg: 0 Hq, 1 Hkv (for the 3-d
 * layout). */
static attn_status sdpa_backward(attn_nn_node *n) {
  attn_var *q = n->in[0], *k = n->in[1], *v = n->in[2], *o = n->out;
  const int64_t Hq = n->iarg[0], Hkv = n->iarg[1];
  bool oom = false;
  float *gq = attn__nn_in_grad(n, 0, &oom), *gk = attn__nn_in_grad(n, 1, &oom),
        *gv = attn__nn_in_grad(n, 2, &oom);
  if (oom) return ATTN_STATUS_OUT_OF_MEMORY;
  /* The kernel overwrites dq, dk, dv, while gradients accumulate: compute into scratch, then add. */
  const size_t nq = (size_t)q->numel, nk = (size_t)k->numel, nv = (size_t)v->numel;
  float *scratch = attn__malloc((nq + nk + nv) * sizeof(float), ATTN_ALIGN);
  if (!scratch) return ATTN_STATUS_OUT_OF_MEMORY;
  float *dq = scratch, *dk = dq + nq, *dv = dk + nk;
  const attn_tensor tq = view_bhnd(q, q->data, Hq), tk = view_bhnd(k, k->data, Hkv), tv = view_bhnd(v, v->data, Hkv);
  const attn_tensor to = view_bhnd(o, o->data, Hq), tdo = view_bhnd(o, o->grad, Hq);
  const attn_tensor tdq = view_bhnd(q, dq, Hq), tdk = view_bhnd(k, dk, Hkv), tdv = view_bhnd(v, dv, Hkv);
  int64_t lse_shape[3] = {tq.shape[0], Hq, tq.shape[2]};
  attn_tensor tl = attn_tensor_make(n->saved, ATTN_DTYPE_F32, 3, lse_shape);
  attn_status st = attn_sdpa_backward(&tdq, &tdk, &tdv, &tdo, &tq, &tk, &tv, &to, &tl, n->saved2, NULL, 0);
  if (st == ATTN_OK) {
    if (gq) for (size_t i = 0; i < nq; i++) gq[i] += dq[i];
    if (gk) for (size_t i = 0; i < nk; i++) gk[i] += dk[i];
    if (gv) for (size_t i = 0; i < nv; i++) gv[i] += dv[i];
  }
  attn__free(scratch);
  return st;
}

/* Both layouts: 4-d (B, H, N, D) tensors (Hq, Hkv from the shapes), or 3-d (B, N, H * D) with
 * Hq, Hkv given. */
static attn_var *sdpa_core(attn_nn_ctx *ctx, const char *op, attn_var *q, attn_var *k, attn_var *v, int64_t Hq,
                           int64_t Hkv, const attn_sdpa_params *params, attn_var **weights) {
  attn_var *ins[3] = {q, k, v};
  if (weights) *weights = NULL;
  if (!attn__nn_check(ctx, op, 3, ins, 0)) return NULL;
  const bool packed = Hq > 0;
  if (!packed && (q->ndim != 4 || k->ndim != 4 || v->ndim != 4))
    return attn__nn_fail(ctx, ATTN_STATUS_SHAPE_MISMATCH, "%s: q, k and v must be 4-d (B, H, N, D)", op);
  if (packed) {
    if (q->ndim != 3 || k->ndim != 3 || v->ndim != 3 || Hkv < 1 || q->shape[2] % Hq || k->shape[2] % Hkv ||
        v->shape[2] % Hkv || q->shape[2] / Hq < 1 || v->shape[2] / Hkv < 1)
      return attn__nn_fail(ctx, ATTN_STATUS_SHAPE_MISMATCH,
                           "%s: q, k, v must be 3-d (B, N, H * D) with widths divisible by their head counts", op);
  } else {
    Hq = q->shape[1];
    Hkv = k->shape[1];
  }
  const attn_tensor tq = view_bhnd(q, q->data, Hq), tk = view_bhnd(k, k->data, Hkv), tv = view_bhnd(v, v->data, Hkv);
  const int64_t B = tq.shape[0], Nq = tq.shape[2], Nk = tk.shape[2], Dv = tv.shape[3];
  int64_t lse_shape[3] = {B, Hq, Nq};
  attn_var *out;
  if (packed)
    out = attn__nn_new(ctx, op, 3, (const int64_t[]){B, Nq, Hq * Dv});
  else
    out = attn__nn_new(ctx, op, 4, (const int64_t[]){B, Hq, Nq, Dv});
  if (!out) return NULL;
  float *lse = attn__nn_alloc(ctx, (size_t)(B * Hq * Nq + 1) * sizeof(float));
  attn_sdpa_params *p = lse ? params_copy(ctx, params, B, Hq) : NULL;
  if (!p) return attn__nn_fail(ctx, ATTN_STATUS_OUT_OF_MEMORY, "%s: out of memory", op);
  attn_var *w = NULL;
  attn_tensor tw;
  if (weights) {
    const bool mean = p->weights_mode == ATTN_WEIGHTS_HEAD_MEAN;
    int64_t wshape[4] = {B, Hq, Nq, Nk}, wmean[3] = {B, Nq, Nk};
    w = mean ? attn__nn_new(ctx, op, 3, wmean) : attn__nn_new(ctx, op, 4, wshape);
    if (!w) return NULL;
    tw = attn_tensor_make(w->data, ATTN_DTYPE_F32, w->ndim, w->shape);
  }
  const attn_tensor to = view_bhnd(out, out->data, Hq), tl = attn_tensor_make(lse, ATTN_DTYPE_F32, 3, lse_shape);
  attn_status st = attn_sdpa_forward(&to, &tl, w ? &tw : NULL, &tq, &tk, &tv, p, NULL, 0);
  if (st != ATTN_OK) return attn__nn_fail(ctx, st, "%s: %s", op, attn_last_error());
  attn_nn_node *node;
  if (!attn__nn_record(ctx, op, out, sdpa_backward, 3, ins, &node)) return NULL;
  if (node) {
    node->saved = lse;
    node->saved2 = p;
    node->iarg[0] = Hq;
    node->iarg[1] = Hkv;
  }
  if (weights) *weights = w;
  return out;
}

attn_var *attn_nn_sdpa_ex(attn_nn_ctx *ctx, attn_var *q, attn_var *k, attn_var *v,
                          const attn_sdpa_params *params, attn_var **weights) {
  return sdpa_core(ctx, "attn_nn_sdpa", q, k, v, 0, 0, params, weights);
}

attn_var *attn_nn_sdpa_heads(attn_nn_ctx *ctx, attn_var *q, attn_var *k, attn_var *v, int64_t n_heads,
                             int64_t n_kv_heads, const attn_sdpa_params *params, attn_var **weights) {
  static const char *op = "attn_nn_sdpa_heads";
  if (n_heads < 1 || n_kv_heads < 1) {
    if (weights) *weights = NULL;
    if (!attn__nn_check(ctx, op, 0, NULL, 0)) return NULL;
    return attn__nn_fail(ctx, ATTN_STATUS_INVALID_ARGUMENT, "%s: n_heads and n_kv_heads must be >= 1", op);
  }
  return sdpa_core(ctx, op, q, k, v, n_heads, n_kv_heads, params, weights);
}

attn_var *attn_nn_sdpa(attn_nn_ctx *ctx, attn_var *q, attn_var *k, attn_var *v, float scale,
                       int causal, const int32_t *key_lens) {
  attn_sdpa_params p = attn_sdpa_params_default();
  p.scale = scale;
  p.causal = causal ? 1 : 0;
  p.key_lens = key_lens;
  return attn_nn_sdpa_ex(ctx, q, k, v, &p, NULL);
}
