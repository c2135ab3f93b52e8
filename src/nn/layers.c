/* Layers: Linear, Embedding, LayerNorm, MLP, multi-head attention, pre-LN Transformer block. */
#include "nn_internal.h"

/* A distinct, reproducible seed for sub-part `i` of a layer seeded with `seed` (splitmix64). */
static uint64_t subseed(uint64_t seed, uint64_t i) {
  uint64_t z = seed + 0x9E3779B97F4A7C15ull * (i + 1);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

/* Appends the n non-NULL parameters to list (if any) under their own names; on failure removes
 * what it appended. */
static attn_status register_params(attn_nn_params *list, attn_var **ps, int n) {
  if (!list) return ATTN_OK;
  const int64_t old = list->n;
  for (int i = 0; i < n; i++) {
    if (!ps[i]) continue;
    attn_status st = attn_nn_params_add(list, ps[i]);
    if (st != ATTN_OK) {
      attn_nn_params_truncate(list, old);
      return st;
    }
  }
  return ATTN_OK;
}

/* Prefixes the names of entries [first, n) with `prefix` after a part's init succeeded. */
static attn_status name_part(attn_status st, attn_nn_params *list, int64_t first, const char *prefix) {
  if (st != ATTN_OK || !list) return st;
  return attn_nn_params_prefix(list, first, prefix);
}

/* ---- Linear ------------------------------------------------------------------------------------ */

attn_status attn_nn_linear_init(attn_nn_linear_layer *l, int64_t in, int64_t out, int bias,
                                uint64_t seed, attn_nn_params *params) {
  attn__clear_error();
  if (!l) return attn__fail(ATTN_STATUS_NULL_POINTER, "attn_nn_linear_init: l is NULL");
  memset(l, 0, sizeof *l);
  if (in < 1 || out < 1)
    return attn__fail(ATTN_STATUS_INVALID_ARGUMENT, "attn_nn_linear_init: in and out must be >= 1");
  int64_t ws[2] = {out, in};
  l->w = attn_nn_param_new(2, ws, "weight");
  if (l->w && bias) l->b = attn_nn_param_new(1, &out, "bias");
  attn_status st = (!l->w || (bias && !l->b)) ? ATTN_STATUS_OUT_OF_MEMORY : ATTN_OK;
  if (st == ATTN_OK) {
    attn_nn_init_xavier_uniform(l->w, in, out, 1.0f, seed);
    attn_var *ps[2] = {l->w, l->b};
    st = register_params(params, ps, 2);
  }
  if (st != ATTN_OK) {
    attn_nn_linear_free(l);
    return attn__fail(st, "attn_nn_linear_init: out of memory");
  }
  return ATTN_OK;
}

void attn_nn_linear_free(attn_nn_linear_layer *l) {
  if (!l) return;
  attn_nn_param_free(l->w);
  attn_nn_param_free(l->b);
  l->w = l->b = NULL;
}

attn_var *attn_nn_linear_forward(attn_nn_ctx *ctx, const attn_nn_linear_layer *l, attn_var *x) {
  if (!l) return attn__nn_fail(ctx, ATTN_STATUS_NULL_POINTER, "attn_nn_linear_forward: layer is NULL");
  return attn_nn_linear(ctx, x, l->w, l->b);
}

/* ---- Embedding ----------------------------------------------------------------------------------- */

attn_status attn_nn_embedding_init(attn_nn_embedding_layer *l, int64_t vocab, int64_t dim,
                                   float std, uint64_t seed, attn_nn_params *params) {
  attn__clear_error();
  if (!l) return attn__fail(ATTN_STATUS_NULL_POINTER, "attn_nn_embedding_init: l is NULL");
  memset(l, 0, sizeof *l);
  if (vocab < 1 || dim < 1)
    return attn__fail(ATTN_STATUS_INVALID_ARGUMENT, "attn_nn_embedding_init: vocab and dim must be >= 1");
  int64_t s[2] = {vocab, dim};
  l->table = attn_nn_param_new(2, s, "embedding");
  attn_status st = l->table ? register_params(params, &l->table, 1) : ATTN_STATUS_OUT_OF_MEMORY;
  if (st != ATTN_OK) {
    attn_nn_embedding_free(l);
    return attn__fail(st, "attn_nn_embedding_init: out of memory");
  }
  attn_nn_init_normal(l->table, 0.0f, std, seed);
  return ATTN_OK;
}

void attn_nn_embedding_free(attn_nn_embedding_layer *l) {
  if (!l) return;
  attn_nn_param_free(l->table);
  l->table = NULL;
}

attn_var *attn_nn_embedding_forward(attn_nn_ctx *ctx, const attn_nn_embedding_layer *l,
                                    const int32_t *ids, int ndim, const int64_t *shape) {
  if (!l) return attn__nn_fail(ctx, ATTN_STATUS_NULL_POINTER, "attn_nn_embedding_forward: layer is NULL");
  return attn_nn_embedding(ctx, l->table, ids, ndim, shape);
}

/* ---- LayerNorm ----------------------------------------------------------------------------------- */

attn_status attn_nn_layernorm_init(attn_nn_layernorm_layer *l, int64_t dim, float eps,
                                   attn_nn_params *params) {
  attn__clear_error();
  if (!l) return attn__fail(ATTN_STATUS_NULL_POINTER, "attn_nn_layernorm_init: l is NULL");
  memset(l, 0, sizeof *l);
  if (dim < 1 || !(eps >= 0.0f))
    return attn__fail(ATTN_STATUS_INVALID_ARGUMENT, "attn_nn_layernorm_init: dim >= 1 and eps >= 0");
  l->eps = eps;
  l->gamma = attn_nn_param_new(1, &dim, "gamma");
  if (l->gamma) l->beta = attn_nn_param_new(1, &dim, "beta");
  attn_status st = l->beta ? ATTN_OK : ATTN_STATUS_OUT_OF_MEMORY;
  if (st == ATTN_OK) {
    attn_nn_init_const(l->gamma, 1.0f);
    attn_var *ps[2] = {l->gamma, l->beta};
    st = register_params(params, ps, 2);
  }
  if (st != ATTN_OK) {
    attn_nn_layernorm_free(l);
    return attn__fail(st, "attn_nn_layernorm_init: out of memory");
  }
  return ATTN_OK;
}

void attn_nn_layernorm_free(attn_nn_layernorm_layer *l) {
  if (!l) return;
  attn_nn_param_free(l->gamma);
  attn_nn_param_free(l->beta);
  l->gamma = l->beta = NULL;
}

attn_var *attn_nn_layernorm_forward(attn_nn_ctx *ctx, const attn_nn_layernorm_layer *l, attn_var *x) {
  if (!l) return attn__nn_fail(ctx, ATTN_STATUS_NULL_POINTER, "attn_nn_layernorm_forward: layer is NULL");
  return attn_nn_layernorm(ctx, x, l->gamma, l->beta, l->eps);
}

/* ---- RMSNorm ------------------------------------------------------------------------------------ */

attn_status attn_nn_rmsnorm_init(attn_nn_rmsnorm_layer *l, int64_t dim, float eps, attn_nn_params *params) {
  attn__clear_error();
  if (!l) return attn__fail(ATTN_STATUS_NULL_POINTER, "attn_nn_rmsnorm_init: l is NULL");
  memset(l, 0, sizeof *l);
  if (dim < 1 || !(eps >= 0.0f))
    return attn__fail(ATTN_STATUS_INVALID_ARGUMENT, "attn_nn_rmsnorm_init: dim >= 1 and eps >= 0");
  l->eps = eps;
  l->gamma = attn_nn_param_new(1, &dim, "gamma");
  attn_status st = l->gamma ? register_params(params, &l->gamma, 1) : ATTN_STATUS_OUT_OF_MEMORY;
  if (st != ATTN_OK) {
    attn_nn_rmsnorm_free(l);
    return attn__fail(st, "attn_nn_rmsnorm_init: out of memory");
  }
  attn_nn_init_const(l->gamma, 1.0f);
  return ATTN_OK;
}

void attn_nn_rmsnorm_free(attn_nn_rmsnorm_layer *l) {
  if (!l) return;
  attn_nn_param_free(l->gamma);
  l->gamma = NULL;
}

attn_var *attn_nn_rmsnorm_forward(attn_nn_ctx *ctx, const attn_nn_rmsnorm_layer *l, attn_var *x) {
  if (!l) return attn__nn_fail(ctx, ATTN_STATUS_NULL_POINTER, "attn_nn_rmsnorm_forward: layer is NULL");
  return attn_nn_rmsnorm(ctx, x, l->gamma, l->eps);
}

/* ---- MLP --------------------------------------------------------------------------------------- */

/* Inits a Linear layer and prefixes its parameters' names with `name`. */
static attn_status linear_part(attn_nn_linear_layer *l, int64_t in, int64_t out, int bias, uint64_t seed,
                               attn_nn_params *params, const char *name) {
  const int64_t first = params ? params->n : 0;
  return name_part(attn_nn_linear_init(l, in, out, bias, seed, params), params, first, name);
}

static attn_status mlp_init(attn_nn_mlp *m, int64_t dim, int64_t hidden, attn_nn_act act, bool gated,
                            uint64_t seed, attn_nn_params *params) {
  attn__clear_error();
  if (!m) return attn__fail(ATTN_STATUS_NULL_POINTER, "attn_nn_mlp_init: m is NULL");
  memset(m, 0, sizeof *m);
  if ((int)act < ATTN_NN_ACT_RELU || (int)act > ATTN_NN_ACT_SILU)
    return attn__fail(ATTN_STATUS_INVALID_ARGUMENT, "attn_nn_mlp_init: unknown activation %d", (int)act);
  m->act = act;
  const int64_t old = params ? params->n : 0;
  attn_status st = linear_part(&m->fc1, dim, hidden, 1, subseed(seed, 0), params, "fc1");
  if (st == ATTN_OK && gated) st = linear_part(&m->gate, dim, hidden, 1, subseed(seed, 2), params, "gate");
  if (st == ATTN_OK) st = linear_part(&m->fc2, hidden, dim, 1, subseed(seed, 1), params, "fc2");
  if (st != ATTN_OK) {
    attn_nn_mlp_free(m);
    attn_nn_params_truncate(params, old);
  }
  return st;
}

attn_status attn_nn_mlp_init(attn_nn_mlp *m, int64_t dim, int64_t hidden, attn_nn_act act,
                             uint64_t seed, attn_nn_params *params) {
  return mlp_init(m, dim, hidden, act, false, seed, params);
}

attn_status attn_nn_mlp_init_gated(attn_nn_mlp *m, int64_t dim, int64_t hidden, attn_nn_act act,
                                   uint64_t seed, attn_nn_params *params) {
  return mlp_init(m, dim, hidden, act, true, seed, params);
}

void attn_nn_mlp_free(attn_nn_mlp *m) {
  if (!m) return;
  attn_nn_linear_free(&m->fc1);
  attn_nn_linear_free(&m->gate);
  attn_nn_linear_free(&m->fc2);
}

attn_var *attn_nn_mlp_forward(attn_nn_ctx *ctx, const attn_nn_mlp *m, attn_var *x) {
  if (!m) return attn__nn_fail(ctx, ATTN_STATUS_NULL_POINTER, "attn_nn_mlp_forward: layer is NULL");
  attn_var *h = attn_nn_linear_forward(ctx, &m->fc1, x);
  switch (m->act) {
    case ATTN_NN_ACT_RELU: h = attn_nn_relu(ctx, h); break;
    case ATTN_NN_ACT_GELU: h = attn_nn_gelu(ctx, h, 0); break;
    case ATTN_NN_ACT_GELU_TANH: h = attn_nn_gelu(ctx, h, 1); break;
    default: h = attn_nn_silu(ctx, h); break;
  }
  if (m->gate.w) h = attn_nn_mul(ctx, h, attn_nn_linear_forward(ctx, &m->gate, x));
  return attn_nn_linear_forward(ctx, &m->fc2, h);
}

/* ---- multi-head attention ------------------------------------------------------------------------ */

attn_nn_mha_config attn_nn_mha_config_default(int64_t dim, int64_t n_heads) {
  attn_nn_mha_config c;
  memset(&c, 0, sizeof c);
  c.dim = dim;
  c.kv_dim = dim;
  c.n_heads = n_heads;
  c.n_kv_heads = n_heads;
  c.bias = 1;
  return c;
}

attn_status attn_nn_mha_init_ex(attn_nn_mha *m, const attn_nn_mha_config *cfg, uint64_t seed,
                                attn_nn_params *params) {
  attn__clear_error();
  if (!m || !cfg) return attn__fail(ATTN_STATUS_NULL_POINTER, "attn_nn_mha_init: m or cfg is NULL");
  memset(m, 0, sizeof *m);
  const int64_t dim = cfg->dim, H = cfg->n_heads;
  const int64_t Hkv = cfg->n_kv_heads ? cfg->n_kv_heads : H, kv_dim = cfg->kv_dim ? cfg->kv_dim : dim;
  if (dim < 1 || H < 1 || dim % H || Hkv < 1 || H % Hkv || kv_dim < 1 || (cfg->packed_qkv && kv_dim != dim))
    return attn__fail(ATTN_STATUS_INVALID_ARGUMENT,
                      "attn_nn_mha_init: need dim %% n_heads == 0 (dim %lld, n_heads %lld), n_heads %% "
                      "n_kv_heads == 0 (%lld), kv_dim >= 1 and kv_dim == dim when packed",
                      (long long)dim, (long long)H, (long long)Hkv);
  m->dim = dim;
  m->kv_dim = kv_dim;
  m->n_heads = H;
  m->n_kv_heads = Hkv;
  m->head_dim = dim / H;
  const int64_t kv_out = Hkv * m->head_dim;
  const int bias = cfg->bias ? 1 : 0;
  const int64_t old = params ? params->n : 0;
  attn_status st;
  if (cfg->packed_qkv) {
    st = linear_part(&m->wqkv, dim, dim + 2 * kv_out, bias, subseed(seed, 4), params, "wqkv");
  } else {
    st = linear_part(&m->wq, dim, dim, bias, subseed(seed, 0), params, "wq");
    if (st == ATTN_OK) st = linear_part(&m->wk, kv_dim, kv_out, bias, subseed(seed, 1), params, "wk");
    if (st == ATTN_OK) st = linear_part(&m->wv, kv_dim, kv_out, bias, subseed(seed, 2), params, "wv");
  }
  if (st == ATTN_OK) st = linear_part(&m->wo, dim, dim, bias, subseed(seed, 3), params, "wo");
  if (st != ATTN_OK) {
    attn_nn_mha_free(m);
    attn_nn_params_truncate(params, old);
  }
  return st;
}

attn_status attn_nn_mha_init(attn_nn_mha *m, int64_t dim, int64_t n_heads, uint64_t seed,
                             attn_nn_params *params) {
  attn_nn_mha_config cfg = attn_nn_mha_config_default(dim, n_heads);
  return attn_nn_mha_init_ex(m, &cfg, seed, params);
}

void attn_nn_mha_free(attn_nn_mha *m) {
  if (!m) return;
  attn_nn_linear_free(&m->wq);
  attn_nn_linear_free(&m->wk);
  attn_nn_linear_free(&m->wv);
  attn_nn_linear_free(&m->wqkv);
  attn_nn_linear_free(&m->wo);
}

attn_var *attn_nn_mha_forward_ex(attn_nn_ctx *ctx, const attn_nn_mha *m, attn_var *xq, attn_var *xkv,
                                 const attn_sdpa_params *params, attn_var **weights) {
  static const char *op = "attn_nn_mha_forward";
  if (weights) *weights = NULL;
  if (!xkv) xkv = xq;
  attn_var *ins[2] = {xq, xkv};
  if (!attn__nn_check(ctx, op, 2, ins, 0)) return NULL;
  if (!m) return attn__nn_fail(ctx, ATTN_STATUS_NULL_POINTER, "%s: layer is NULL", op);
  if (xq->ndim != 3 || xkv->ndim != 3 || xq->shape[2] != m->dim || xkv->shape[2] != m->kv_dim ||
      xq->shape[0] != xkv->shape[0])
    return attn__nn_fail(ctx, ATTN_STATUS_SHAPE_MISMATCH,
                         "%s: xq must be (B, Nq, %lld) and xkv (B, Nk, %lld) with the same B", op,
                         (long long)m->dim, (long long)m->kv_dim);
  if (m->wqkv.w && xkv != xq)
    return attn__nn_fail(ctx, ATTN_STATUS_INVALID_ARGUMENT, "%s: a packed QKV projection is for self-attention only", op);
  const int64_t kv_out = m->n_kv_heads * m->head_dim;
  attn_var *q, *k, *v;
  if (m->wqkv.w) {
    attn_var *parts[3] = {NULL, NULL, NULL};
    attn_nn_split(ctx, attn_nn_linear_forward(ctx, &m->wqkv, xq), -1, 3, (const int64_t[]){m->dim, kv_out, kv_out}, parts);
    q = parts[0];
    k = parts[1];
    v = parts[2];
  } else {
    q = attn_nn_linear_forward(ctx, &m->wq, xq);
    k = attn_nn_linear_forward(ctx, &m->wk, xkv);
    v = attn_nn_linear_forward(ctx, &m->wv, xkv);
  }
  /* The kernel reads heads as strided views of the (B, N, H * hd) projections: no permutes. */
  attn_var *o = attn_nn_sdpa_heads(ctx, q, k, v, m->n_heads, m->n_kv_heads, params, weights);
  return attn_nn_linear_forward(ctx, &m->wo, o);
}

attn_var *attn_nn_mha_forward(attn_nn_ctx *ctx, const attn_nn_mha *m, attn_var *xq, attn_var *xkv,
                              int causal, const int32_t *key_lens) {
  attn_sdpa_params p = attn_sdpa_params_default();
  p.causal = causal ? 1 : 0;
  p.key_lens = key_lens;
  return attn_nn_mha_forward_ex(ctx, m, xq, xkv, &p, NULL);
}

/* ---- Transformer block --------------------------------------------------------------------------- */

attn_nn_block_config attn_nn_block_config_default(int64_t dim, int64_t n_heads, int64_t hidden) {
  attn_nn_block_config c;
  memset(&c, 0, sizeof c);
  c.dim = dim;
  c.n_heads = n_heads;
  c.n_kv_heads = n_heads;
  c.hidden = hidden;
  c.act = ATTN_NN_ACT_GELU;
  c.ln_eps = 1e-5f;
  return c;
}

attn_status attn_nn_block_init_ex(attn_nn_block *blk, const attn_nn_block_config *cfg, uint64_t seed,
                                  attn_nn_params *params) {
  attn__clear_error();
  if (!blk || !cfg) return attn__fail(ATTN_STATUS_NULL_POINTER, "attn_nn_block_init: blk or cfg is NULL");
  memset(blk, 0, sizeof *blk);
  blk->post_ln = cfg->post_ln ? 1 : 0;
  blk->has_cross = cfg->cross ? 1 : 0;
  const int64_t old = params ? params->n : 0;
  int64_t first = old;
  attn_nn_mha_config mc = attn_nn_mha_config_default(cfg->dim, cfg->n_heads);
  mc.n_kv_heads = cfg->n_kv_heads;
  attn_status st = name_part(attn_nn_layernorm_init(&blk->ln1, cfg->dim, cfg->ln_eps, params), params, first, "ln1");
  if (st == ATTN_OK) {
    first = params ? params->n : 0;
    st = name_part(attn_nn_mha_init_ex(&blk->attn, &mc, subseed(seed, 0), params), params, first, "attn");
  }
  if (st == ATTN_OK && cfg->cross) {
    first = params ? params->n : 0;
    st = name_part(attn_nn_layernorm_init(&blk->ln_cross, cfg->dim, cfg->ln_eps, params), params, first, "ln_cross");
    mc.kv_dim = cfg->cross_dim ? cfg->cross_dim : cfg->dim;
    first = params ? params->n : 0;
    if (st == ATTN_OK)
      st = name_part(attn_nn_mha_init_ex(&blk->cross, &mc, subseed(seed, 2), params), params, first, "cross");
  }
  if (st == ATTN_OK) {
    first = params ? params->n : 0;
    st = name_part(attn_nn_layernorm_init(&blk->ln2, cfg->dim, cfg->ln_eps, params), params, first, "ln2");
  }
  if (st == ATTN_OK) {
    first = params ? params->n : 0;
    st = name_part(mlp_init(&blk->mlp, cfg->dim, cfg->hidden, cfg->act, cfg->gated != 0, subseed(seed, 1), params),
                   params, first, "mlp");
  }
  if (st != ATTN_OK) {
    attn_nn_block_free(blk);
    attn_nn_params_truncate(params, old);
  }
  return st;
}

attn_status attn_nn_block_init(attn_nn_block *blk, int64_t dim, int64_t n_heads, int64_t hidden,
                               attn_nn_act act, uint64_t seed, attn_nn_params *params) {
  attn_nn_block_config cfg = attn_nn_block_config_default(dim, n_heads, hidden);
  cfg.act = act;
  return attn_nn_block_init_ex(blk, &cfg, seed, params);
}

void attn_nn_block_free(attn_nn_block *blk) {
  if (!blk) return;
  attn_nn_layernorm_free(&blk->ln1);
  attn_nn_mha_free(&blk->attn);
  attn_nn_layernorm_free(&blk->ln_cross);
  attn_nn_mha_free(&blk->cross);
  attn_nn_layernorm_free(&blk->ln2);
  attn_nn_mlp_free(&blk->mlp);
}

attn_var *attn_nn_block_forward_ex(attn_nn_ctx *ctx, const attn_nn_block *blk, attn_var *x, int causal,
                                   const int32_t *key_lens, attn_var *memory, const int32_t *mem_lens) {
  if (!blk) return attn__nn_fail(ctx, ATTN_STATUS_NULL_POINTER, "attn_nn_block_forward: block is NULL");
  if (!blk->has_cross != !memory)
    return attn__nn_fail(ctx, blk->has_cross ? ATTN_STATUS_NULL_POINTER : ATTN_STATUS_INVALID_ARGUMENT,
                         "attn_nn_block_forward: %s", blk->has_cross ? "this decoder block needs a memory"
                                                                      : "this block has no cross-attention");
  attn_var *h;
  if (!blk->post_ln) {
    attn_var *a = attn_nn_layernorm_forward(ctx, &blk->ln1, x);
    h = attn_nn_add(ctx, x, attn_nn_mha_forward(ctx, &blk->attn, a, a, causal, key_lens));
    if (blk->has_cross)
      h = attn_nn_add(ctx, h, attn_nn_mha_forward(ctx, &blk->cross, attn_nn_layernorm_forward(ctx, &blk->ln_cross, h),
                                                  memory, 0, mem_lens));
    attn_var *f = attn_nn_mlp_forward(ctx, &blk->mlp, attn_nn_layernorm_forward(ctx, &blk->ln2, h));
    return attn_nn_add(ctx, h, f);
  }
  h = attn_nn_layernorm_forward(ctx, &blk->ln1, attn_nn_add(ctx, x, attn_nn_mha_forward(ctx, &blk->attn, x, x, causal, key_lens)));
  if (blk->has_cross)
    h = attn_nn_layernorm_forward(ctx, &blk->ln_cross,
                                  attn_nn_add(ctx, h, attn_nn_mha_forward(ctx, &blk->cross, h, memory, 0, mem_lens)));
  return attn_nn_layernorm_forward(ctx, &blk->ln2, attn_nn_add(ctx, h, attn_nn_mlp_forward(ctx, &blk->mlp, h)));
}

attn_var *attn_nn_block_forward(attn_nn_ctx *ctx, const attn_nn_block *blk, attn_var *x, int causal,
                                const int32_t *key_lens) {
  return attn_nn_block_forward_ex(ctx, blk, x, causal, key_lens, NULL, NULL);
}
