/* Attention layers over the alignment and additive ops: Bahdanau (fused additive score) and Luong
 * (dot / general score, every alignment kind, local-m and local-p with a learned centre). */
#include "nn_internal.h"

#include <math.h>

/* Inits a bias-free Linear part (in -> out) and prefixes its parameter names with `name`. Parts
 * of one layer use seeds seed + 1, seed + 2, ...: the initialisers key Philox with the seed, so
 * the streams are independent. */
static attn_status linear_part(attn_nn_linear_layer *l, int64_t in, int64_t out, uint64_t seed,
                               attn_nn_params *params, const char *name) {
  const int64_t first = params ? params->n : 0;
  attn_status st = attn_nn_linear_init(l, in, out, 0, seed, params);
  if (st == ATTN_OK && params) st = attn_nn_params_prefix(params, first, name);
  return st;
}

/* The key padding mask (B, 1, S) of key_lens: 0 for s < len[b], -INFINITY after. A constant. */
static attn_var *lens_mask(attn_nn_ctx *ctx, const char *op, const int32_t *key_lens, int64_t B,
                           int64_t S) {
  for (int64_t b = 0; b < B; b++)
    if (key_lens[b] < 0 || key_lens[b] > S)
      return attn__nn_fail(ctx, ATTN_STATUS_INVALID_ARGUMENT,
                           "%s: key_lens[%lld] = %d is outside [0, %lld]", op, (long long)b,
                           (int)key_lens[b], (long long)S);
  attn_var *m = attn__nn_new(ctx, op, 3, (const int64_t[]){B, 1, S});
  if (!m) return NULL;
  for (int64_t b = 0; b < B; b++)
    for (int64_t s = 0; s < S; s++) m->data[b * S + s] = s < key_lens[b] ? 0.0f : -INFINITY;
  return m;
}

/* ---- Bahdanau -----------------------------------------------------------------------------------
 */

attn_status attn_nn_bahdanau_init(attn_nn_bahdanau *l, int64_t query_dim, int64_t key_dim,
                                  int64_t dim, uint64_t seed, attn_nn_params *params) {
  static const char *op = "attn_nn_bahdanau_init";
  attn__clear_error();
  if (!l) return attn__fail(ATTN_STATUS_NULL_POINTER, "%s: l is NULL", op);
  memset(l, 0, sizeof *l);
  if (query_dim < 1 || key_dim < 1 || dim < 1)
    return attn__fail(ATTN_STATUS_INVALID_ARGUMENT, "%s: query_dim, key_dim and dim must be >= 1",
                      op);
  l->query_dim = query_dim;
  l->key_dim = key_dim;
  l->dim = dim;
  const int64_t old = params ? params->n : 0;
  attn_status st = linear_part(&l->w1, query_dim, dim, seed + 1, params, "w1");
  if (st == ATTN_OK) st = linear_part(&l->w2, key_dim, dim, seed + 2, params, "w2");
  if (st == ATTN_OK) {
    l->w = attn_nn_param_new(1, &dim, "w");
    l->b = l->w ? attn_nn_param_new(1, &dim, "b") : NULL;
    st = l->b ? ATTN_OK : ATTN_STATUS_OUT_OF_MEMORY;
  }
  if (st == ATTN_OK) {
    const float a = 1.0f / sqrtf((float)dim);
    attn_nn_init_uniform(l->w, -a, a, seed + 3);
    if (params) st = attn_nn_params_add(params, l->w);
    if (st == ATTN_OK && params) st = attn_nn_params_add(params, l->b);
  }
  if (st != ATTN_OK) {
    attn_nn_bahdanau_free(l);
    attn_nn_params_truncate(params, old);
    return attn__fail(st, "%s: out of memory", op);
  }
  return ATTN_OK;
}

void attn_nn_bahdanau_free(attn_nn_bahdanau *l) {
  if (!l) return;
  attn_nn_linear_free(&l->w1);
  attn_nn_linear_free(&l->w2);
  attn_nn_param_free(l->w);
  attn_nn_param_free(l->b);
  l->w = l->b = NULL;
}

attn_var *attn_nn_bahdanau_forward(attn_nn_ctx *ctx, const attn_nn_bahdanau *l, attn_var *query,
                                   attn_var *keys, attn_var *values, const int32_t *key_lens,
                                   attn_var **weights) {
  static const char *op = "attn_nn_bahdanau_forward";
  if (weights) *weights = NULL;
  attn_var *ins[3] = {query, keys, values};
  if (!attn__nn_check(ctx, op, 3, ins, 4u)) return NULL;
  if (!l || !l->w)
    return attn__nn_fail(ctx, ATTN_STATUS_NULL_POINTER, "%s: layer is NULL or empty", op);
  if (query->ndim != 3 || keys->ndim != 3 || query->shape[2] != l->query_dim ||
      keys->shape[2] != l->key_dim || keys->shape[0] != query->shape[0])
    return attn__nn_fail(ctx, ATTN_STATUS_SHAPE_MISMATCH,
                         "%s: query must be (B, Tq, %lld) and keys (B, Tk, %lld)", op,
                         (long long)l->query_dim, (long long)l->key_dim);
  attn_var *mask = NULL;
  if (key_lens && !(mask = lens_mask(ctx, op, key_lens, keys->shape[0], keys->shape[1])))
    return NULL;
  /* The kernel never reads a blocked key's k2 or v, but the projection's backward would read its
   * row of keys (dW2 = dk2^T keys, 0 * NaN): project keys with those rows zeroed. */
  attn_var *k_in = keys;
  if (key_lens && !(k_in = attn__nn_zero_blocked_rows(ctx, op, keys, key_lens))) return NULL;
  attn_var *q1 = attn_nn_linear(ctx, query, l->w1.w, NULL);
  attn_var *k2 = attn_nn_linear(ctx, k_in, l->w2.w, NULL);
  return attn_nn_additive_attention(ctx, q1, k2, values ? values : keys, l->w, l->b, mask, weights);
}

/* ---- Luong --------------------------------------------------------------------------------------
 */

attn_nn_luong_config attn_nn_luong_config_default(int64_t query_dim, int64_t key_dim) {
  attn_nn_luong_config c;
  memset(&c, 0, sizeof c);
  c.query_dim = query_dim;
  c.key_dim = key_dim;
  c.score = ATTN_NN_LUONG_GENERAL;
  c.align = attn_align_params_default();
  return c;
}

attn_status attn_nn_luong_init(attn_nn_luong *l, const attn_nn_luong_config *cfg, uint64_t seed,
                               attn_nn_params *params) {
  static const char *op = "attn_nn_luong_init";
  attn__clear_error();
  if (!l || !cfg)
    return attn__fail(ATTN_STATUS_NULL_POINTER, "%s: %s is NULL", op, l ? "cfg" : "l");
  memset(l, 0, sizeof *l);
  const attn_nn_luong_config c = *cfg;
  if (c.query_dim < 1 || c.key_dim < 1 || c.pred_dim < 0 || c.out_dim < 0)
    return attn__fail(ATTN_STATUS_INVALID_ARGUMENT,
                      "%s: query_dim and key_dim must be >= 1, pred_dim and out_dim >= 0", op);
  if (c.score != ATTN_NN_LUONG_DOT && c.score != ATTN_NN_LUONG_GENERAL)
    return attn__fail(ATTN_STATUS_INVALID_ARGUMENT, "%s: unknown score %d", op, (int)c.score);
  if (c.score == ATTN_NN_LUONG_DOT && c.query_dim != c.key_dim)
    return attn__fail(ATTN_STATUS_INVALID_ARGUMENT,
                      "%s: the dot score needs query_dim == key_dim (%lld vs %lld)", op,
                      (long long)c.query_dim, (long long)c.key_dim);
  if (c.align.local != ATTN_ALIGN_LOCAL_NONE && c.align.local != ATTN_ALIGN_LOCAL_M &&
      c.align.local != ATTN_ALIGN_LOCAL_P)
    return attn__fail(ATTN_STATUS_INVALID_ARGUMENT, "%s: unknown local mode %d", op,
                      (int)c.align.local);
  const bool local_p = c.align.local == ATTN_ALIGN_LOCAL_P;
  if (local_p && c.align.window < 1)
    return attn__fail(ATTN_STATUS_INVALID_ARGUMENT, "%s: local-p needs window >= 1 (got %lld)", op,
                      (long long)c.align.window);
  l->cfg = c;
  l->cfg.align.positions = NULL;
  if (local_p && l->cfg.pred_dim == 0) l->cfg.pred_dim = c.query_dim;
  const int64_t old = params ? params->n : 0;
  attn_status st = ATTN_OK;
  if (c.score == ATTN_NN_LUONG_GENERAL)
    st = linear_part(&l->wa, c.query_dim, c.key_dim, seed + 1, params, "wa");
  if (st == ATTN_OK && local_p)
    st = linear_part(&l->wp, c.query_dim, l->cfg.pred_dim, seed + 2, params, "wp");
  if (st == ATTN_OK && local_p)
    st = linear_part(&l->vp, l->cfg.pred_dim, 1, seed + 3, params, "vp");
  if (st == ATTN_OK && c.out_dim > 0)
    st = linear_part(&l->wc, c.key_dim + c.query_dim, c.out_dim, seed + 4, params, "wc");
  if (st != ATTN_OK) {
    attn_nn_luong_free(l);
    attn_nn_params_truncate(params, old);
    return attn__fail(st, "%s: out of memory", op);
  }
  return ATTN_OK;
}

void attn_nn_luong_free(attn_nn_luong *l) {
  if (!l) return;
  attn_nn_linear_free(&l->wa);
  attn_nn_linear_free(&l->wp);
  attn_nn_linear_free(&l->vp);
  attn_nn_linear_free(&l->wc);
}

attn_var *attn_nn_luong_forward(attn_nn_ctx *ctx, const attn_nn_luong *l, attn_var *h, attn_var *hs,
                                const int32_t *key_lens, attn_var **weights) {
  static const char *op = "attn_nn_luong_forward";
  if (weights) *weights = NULL;
  attn_var *ins[2] = {h, hs};
  if (!attn__nn_check(ctx, op, 2, ins, 0)) return NULL;
  if (!l) return attn__nn_fail(ctx, ATTN_STATUS_NULL_POINTER, "%s: layer is NULL", op);
  const attn_nn_luong_config *c = &l->cfg;
  if ((c->score == ATTN_NN_LUONG_GENERAL && !l->wa.w) || c->query_dim < 1)
    return attn__nn_fail(ctx, ATTN_STATUS_INVALID_ARGUMENT, "%s: the layer is not initialised", op);
  if (h->ndim != 3 || hs->ndim != 3 || h->shape[2] != c->query_dim || hs->shape[2] != c->key_dim ||
      hs->shape[0] != h->shape[0])
    return attn__nn_fail(ctx, ATTN_STATUS_SHAPE_MISMATCH,
                         "%s: h must be (B, T, %lld) and hs (B, S, %lld)", op,
                         (long long)c->query_dim, (long long)c->key_dim);
  const int64_t B = h->shape[0], S = hs->shape[1];
  attn_var *mask = NULL;
  if (key_lens && !(mask = lens_mask(ctx, op, key_lens, B, S))) return NULL;
  /* A blocked key's row of hs is never read into the result (0 weight times NaN is NaN). */
  if (key_lens && !(hs = attn__nn_zero_blocked_rows(ctx, op, hs, key_lens))) return NULL;
  /* e = (h W_a^T) hs^T: (B, T, S). */
  attn_var *hq = c->score == ATTN_NN_LUONG_GENERAL ? attn_nn_linear(ctx, h, l->wa.w, NULL) : h;
  attn_var *e = attn_nn_matmul(ctx, hq, hs, 0, 1);
  attn_var *pos = NULL;
  if (c->align.local == ATTN_ALIGN_LOCAL_P) {
    /* p_t = S_b sigmoid(v_p^T tanh(W_p h_t)): (B, T, 1), one centre per row of e. */
    attn_var *z = attn_nn_linear(ctx, attn_nn_tanh(ctx, attn_nn_linear(ctx, h, l->wp.w, NULL)),
                                 l->vp.w, NULL);
    attn_var *sig = attn_nn_sigmoid(ctx, z);
    if (key_lens) {
      attn_var *len = attn__nn_new(ctx, op, 3, (const int64_t[]){B, 1, 1});
      if (!len) return NULL;
      for (int64_t b = 0; b < B; b++) len->data[b] = (float)key_lens[b];
      pos = attn_nn_mul(ctx, sig, len);
    } else {
      pos = attn_nn_scale(ctx, sig, (float)S, 0.0f);
    }
  }
  attn_var *a = attn_nn_align(ctx, e, mask, &c->align, pos);
  attn_var *ctxv = attn_nn_matmul(ctx, a, hs, 0, 0);
  if (c->out_dim > 0) {
    attn_var *cat[2] = {ctxv, h};
    ctxv = attn_nn_tanh(ctx, attn_nn_linear(ctx, attn_nn_concat(ctx, cat, 2, 2), l->wc.w, NULL));
  }
  if (ctxv && weights) *weights = a;
  return ctxv;
}
