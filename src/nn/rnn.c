/* Recurrent layers (LSTM, GRU, bidirectional wrapper) composed from the differentiable ops. */
#include "nn_internal.h"

static uint64_t rnn_subseed(uint64_t seed, uint64_t i) {
  uint64_t z = seed + 0x9E3779B97F4A7C15ull * (i + 1);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

attn_status attn_nn_rnn_init(attn_nn_rnn *r, attn_nn_rnn_kind kind, int64_t in, int64_t hidden,
                             uint64_t seed, attn_nn_params *params) {
  attn__clear_error();
  if (!r) return attn__fail(ATTN_STATUS_NULL_POINTER, "attn_nn_rnn_init: r is NULL");
  memset(r, 0, sizeof *r);
  if ((kind != ATTN_NN_RNN_LSTM && kind != ATTN_NN_RNN_GRU) || in < 1 || hidden < 1)
    return attn__fail(ATTN_STATUS_INVALID_ARGUMENT, "attn_nn_rnn_init: bad kind, in or hidden");
  r->kind = kind;
  r->in = in;
  r->hidden = hidden;
  const int64_t G = kind == ATTN_NN_RNN_LSTM ? 4 : 3, old = params ? params->n : 0;
  attn_status st = attn_nn_linear_init(&r->wx, in, G * hidden, 1, 0, params);
  if (st == ATTN_OK && params) st = attn_nn_params_prefix(params, old, "wx");
  const int64_t mid = params ? params->n : 0;
  if (st == ATTN_OK) st = attn_nn_linear_init(&r->wh, hidden, G * hidden, kind == ATTN_NN_RNN_GRU, 0, params);
  if (st == ATTN_OK && params) st = attn_nn_params_prefix(params, mid, "wh");
  if (st != ATTN_OK) {
    attn_nn_rnn_free(r);
    attn_nn_params_truncate(params, old);
    return st;
  }
  const float a = 1.0f / sqrtf((float)hidden);
  attn_var *ps[4] = {r->wx.w, r->wx.b, r->wh.w, r->wh.b};
  for (int i = 0; i < 4; i++)
    if (ps[i]) attn_nn_init_uniform(ps[i], -a, a, rnn_subseed(seed, (uint64_t)i));
  return ATTN_OK;
}

void attn_nn_rnn_free(attn_nn_rnn *r) {
  if (!r) return;
  attn_nn_linear_free(&r->wx);
  attn_nn_linear_free(&r->wh);
}

/* One step from the input projection xp = x Wx^T + bx (B, G H). */
static attn_var *cell_from_proj(attn_nn_ctx *ctx, const attn_nn_rnn *r, attn_var *xp, attn_var *h,
                                attn_var *c, attn_var **c_out) {
  const int64_t H = r->hidden;
  attn_var *hp = attn_nn_linear_forward(ctx, &r->wh, h);
  if (r->kind == ATTN_NN_RNN_LSTM) {
    attn_var *g[4] = {NULL, NULL, NULL, NULL};
    attn_nn_split(ctx, attn_nn_add(ctx, xp, hp), -1, 4, (const int64_t[]){H, H, H, H}, g);
    attn_var *cn = attn_nn_add(ctx, attn_nn_mul(ctx, attn_nn_sigmoid(ctx, g[1]), c),
                               attn_nn_mul(ctx, attn_nn_sigmoid(ctx, g[0]), attn_nn_tanh(ctx, g[2])));
    if (c_out) *c_out = cn;
    return attn_nn_mul(ctx, attn_nn_sigmoid(ctx, g[3]), attn_nn_tanh(ctx, cn));
  }
  if (c_out) *c_out = NULL;
  attn_var *gx[3] = {NULL, NULL, NULL}, *gh[3] = {NULL, NULL, NULL};
  attn_nn_split(ctx, xp, -1, 3, (const int64_t[]){H, H, H}, gx);
  attn_nn_split(ctx, hp, -1, 3, (const int64_t[]){H, H, H}, gh);
  attn_var *rg = attn_nn_sigmoid(ctx, attn_nn_add(ctx, gx[0], gh[0]));
  attn_var *z = attn_nn_sigmoid(ctx, attn_nn_add(ctx, gx[1], gh[1]));
  attn_var *n = attn_nn_tanh(ctx, attn_nn_add(ctx, gx[2], attn_nn_mul(ctx, rg, gh[2])));
  /* h' = n + z (h - n) */
  return attn_nn_add(ctx, n, attn_nn_mul(ctx, z, attn_nn_sub(ctx, h, n)));
}

attn_var *attn_nn_rnn_cell(attn_nn_ctx *ctx, const attn_nn_rnn *r, attn_var *x, attn_var *h, attn_var *c,
                           attn_var **c_out) {
  static const char *op = "attn_nn_rnn_cell";
  if (c_out) *c_out = NULL;
  attn_var *ins[3] = {x, h, c};
  const bool lstm = r && r->kind == ATTN_NN_RNN_LSTM;
  if (!attn__nn_check(ctx, op, 3, ins, lstm ? 0u : 4u)) return NULL;
  if (!r) return attn__nn_fail(ctx, ATTN_STATUS_NULL_POINTER, "%s: layer is NULL", op);
  const int64_t B = x->ndim == 2 ? x->shape[0] : -1;
  if (x->ndim != 2 || x->shape[1] != r->in || h->ndim != 2 || h->shape[0] != B || h->shape[1] != r->hidden ||
      (lstm && (c->ndim != 2 || c->shape[0] != B || c->shape[1] != r->hidden)))
    return attn__nn_fail(ctx, ATTN_STATUS_SHAPE_MISMATCH, "%s: need x (B, %lld), h and c (B, %lld)", op,
                         (long long)r->in, (long long)r->hidden);
  return cell_from_proj(ctx, r, attn_nn_linear_forward(ctx, &r->wx, x), h, c, c_out);
}

attn_var *attn_nn_rnn_forward(attn_nn_ctx *ctx, const attn_nn_rnn *r, attn_var *x, const int32_t *lens,
                              int reverse, attn_var **h_last) {
  static const char *op = "attn_nn_rnn_forward";
  if (h_last) *h_last = NULL;
  if (!attn__nn_check(ctx, op, 1, &x, 0)) return NULL;
  if (!r) return attn__nn_fail(ctx, ATTN_STATUS_NULL_POINTER, "%s: layer is NULL", op);
  if (x->ndim != 3 || x->shape[2] != r->in || x->shape[1] < 1)
    return attn__nn_fail(ctx, ATTN_STATUS_SHAPE_MISMATCH, "%s: x must be (B, T >= 1, %lld)", op, (long long)r->in);
  const int64_t B = x->shape[0], T = x->shape[1], H = r->hidden;
  if (lens)
    for (int64_t b = 0; b < B; b++)
      if (lens[b] < 0 || lens[b] > T)
        return attn__nn_fail(ctx, ATTN_STATUS_INVALID_ARGUMENT, "%s: lens[%lld] = %d outside [0, %lld]", op,
                             (long long)b, lens[b], (long long)T);
  attn_var **outs = attn__nn_alloc(ctx, (size_t)T * sizeof *outs);
  if (!outs) return attn__nn_fail(ctx, ATTN_STATUS_OUT_OF_MEMORY, "%s: out of memory", op);
  /* All input projections at once: (B, T, G H). */
  attn_var *xp = attn_nn_linear_forward(ctx, &r->wx, x);
  const int64_t GH = (r->kind == ATTN_NN_RNN_LSTM ? 4 : 3) * H;
  attn_var *h = attn_nn_full(ctx, 2, (const int64_t[]){B, H}, 0.0f);
  attn_var *c = r->kind == ATTN_NN_RNN_LSTM ? attn_nn_full(ctx, 2, (const int64_t[]){B, H}, 0.0f) : NULL;
  for (int64_t s = 0; s < T; s++) {
    const int64_t t = reverse ? T - 1 - s : s;
    attn_var *xt = attn_nn_reshape(ctx, attn_nn_slice(ctx, xp, 1, t, t + 1), 2, (const int64_t[]){B, GH});
    attn_var *cn = NULL;
    attn_var *hn = cell_from_proj(ctx, r, xt, h, c, &cn);
    attn_var *m = NULL;
    if (lens) { /* m[b] = 1 while t < len[b]: masked steps keep the state and output 0 */
      m = attn_nn_full(ctx, 2, (const int64_t[]){B, 1}, 0.0f);
      for (int64_t b = 0; m && b < B; b++) m->data[b] = t < lens[b] ? 1.0f : 0.0f;
      hn = attn_nn_add(ctx, h, attn_nn_mul(ctx, m, attn_nn_sub(ctx, hn, h)));
      if (c) cn = attn_nn_add(ctx, c, attn_nn_mul(ctx, m, attn_nn_sub(ctx, cn, c)));
    }
    h = hn;
    c = cn;
    attn_var *o = m ? attn_nn_mul(ctx, m, h) : h;
    outs[t] = attn_nn_reshape(ctx, o, 3, (const int64_t[]){B, 1, H});
    if (ctx->status != ATTN_OK) return NULL;
  }
  if (h_last) *h_last = h;
  return attn_nn_concat(ctx, outs, (int)T, 1);
}

attn_status attn_nn_birnn_init(attn_nn_birnn *r, attn_nn_rnn_kind kind, int64_t in, int64_t hidden,
                               uint64_t seed, attn_nn_params *params) {
  attn__clear_error();
  if (!r) return attn__fail(ATTN_STATUS_NULL_POINTER, "attn_nn_birnn_init: r is NULL");
  memset(r, 0, sizeof *r);
  const int64_t old = params ? params->n : 0;
  attn_status st = attn_nn_rnn_init(&r->fwd, kind, in, hidden, rnn_subseed(seed, 10), params);
  if (st == ATTN_OK && params) st = attn_nn_params_prefix(params, old, "fwd");
  const int64_t mid = params ? params->n : 0;
  if (st == ATTN_OK) st = attn_nn_rnn_init(&r->bwd, kind, in, hidden, rnn_subseed(seed, 11), params);
  if (st == ATTN_OK && params) st = attn_nn_params_prefix(params, mid, "bwd");
  if (st != ATTN_OK) {
    attn_nn_birnn_free(r);
    attn_nn_params_truncate(params, old);
  }
  return st;
}

void attn_nn_birnn_free(attn_nn_birnn *r) {
  if (!r) return;
  attn_nn_rnn_free(&r->fwd);
  attn_nn_rnn_free(&r->bwd);
}

attn_var *attn_nn_birnn_forward(attn_nn_ctx *ctx, const attn_nn_birnn *r, attn_var *x, const int32_t *lens) {
  if (!r) return attn__nn_fail(ctx, ATTN_STATUS_NULL_POINTER, "attn_nn_birnn_forward: layer is NULL");
  attn_var *both[2] = {attn_nn_rnn_forward(ctx, &r->fwd, x, lens, 0, NULL),
                       attn_nn_rnn_forward(ctx, &r->bwd, x, lens, 1, NULL)};
  if (!both[0] || !both[1]) return NULL;
  return attn_nn_concat(ctx, both, 2, -1);
}
