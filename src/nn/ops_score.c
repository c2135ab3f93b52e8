/* Score functions (attn/score.h) as differentiable ops. */
#include "nn_internal.h"

/* Inputs of the tape record, in this order. */
enum { IN_Q, IN_K, IN_W, IN_B, IN_SW, IN_W1, IN_W2, IN_WO, IN_BO, IN_FIXED };
#define MAXC ATTN_SCORE_MAX_CONTEXTS

/* The kernel's views and params, kept in the arena for the backward. */
typedef struct score_saved {
  attn_score_params p;
  attn_tensor t[IN_FIXED + 2 * MAXC];
  const attn_tensor *pc[MAXC], *pU[MAXC];
  attn_tensor e;
  int n_in;
} score_saved;

attn_nn_score_spec attn_nn_score_spec_default(attn_score_kind kind) {
  attn_nn_score_spec s;
  memset(&s, 0, sizeof s);
  attn_score_params p = attn_score_params_default();
  s.kind = kind;
  s.act = p.act;
  s.leaky_slope = p.leaky_slope;
  s.temperature = p.temperature;
  return s;
}

static attn_tensor view_of(const attn_var *v, float *data) {
  return attn_tensor_make(data, ATTN_DTYPE_F32, v->ndim, v->shape);
}

/* Points the params' tensors at sv->t[] (the views of the inputs' data, filled by the caller);
 * the forward and the backward use the same bound params. */
static void bind(score_saved *sv, attn_var *const *ins, int nc) {
  const attn_tensor *slot[IN_FIXED];
  for (int i = 0; i < IN_FIXED; i++) slot[i] = ins[i] ? &sv->t[i] : NULL;
  sv->p.W = slot[IN_W];
  sv->p.b = slot[IN_B];
  sv->p.w = slot[IN_SW];
  sv->p.W1 = slot[IN_W1];
  sv->p.W2 = slot[IN_W2];
  sv->p.Wo = slot[IN_WO];
  sv->p.bo = slot[IN_BO];
  for (int m = 0; m < nc; m++) {
    sv->pc[m] = ins[IN_FIXED + m] ? &sv->t[IN_FIXED + m] : NULL;
    sv->pU[m] = ins[IN_FIXED + nc + m] ? &sv->t[IN_FIXED + nc + m] : NULL;
  }
  sv->p.n_contexts = nc;
  sv->p.contexts = nc ? sv->pc : NULL;
  sv->p.U = nc ? sv->pU : NULL;
}

static attn_status score_backward(attn_nn_node *n) {
  score_saved *sv = (score_saved *)n->saved;
  const int nc = sv->p.n_contexts, n_in = sv->n_in;
  bool oom = false;
  float *acc[IN_FIXED + 2 * MAXC];
  size_t total = 0;
  for (int i = 0; i < n_in; i++) {
    acc[i] = attn__nn_in_grad(n, i, &oom);
    if (acc[i]) total += (size_t)n->in[i]->numel;
  }
  if (oom) return ATTN_STATUS_OUT_OF_MEMORY;
  /* The kernel overwrites its gradients, while ours accumulate: compute into scratch, then add. */
  float *scratch = attn__malloc((total ? total : 1) * sizeof(float), ATTN_ALIGN);
  if (!scratch) return ATTN_STATUS_OUT_OF_MEMORY;
  attn_tensor g[IN_FIXED + 2 * MAXC];
  const attn_tensor *gp[IN_FIXED + 2 * MAXC];
  float *at = scratch;
  for (int i = 0; i < n_in; i++) {
    gp[i] = NULL;
    if (!acc[i]) continue;
    g[i] = view_of(n->in[i], at);
    gp[i] = &g[i];
    at += n->in[i]->numel;
  }
  attn_score_grads gr = attn_score_grads_default();
  gr.dW = gp[IN_W];
  gr.db = gp[IN_B];
  gr.dw = gp[IN_SW];
  gr.dW1 = gp[IN_W1];
  gr.dW2 = gp[IN_W2];
  gr.dWo = gp[IN_WO];
  gr.dbo = gp[IN_BO];
  if (nc) {
    gr.dcontexts = gp + IN_FIXED;
    gr.dU = gp + IN_FIXED + nc;
  }
  attn_tensor de = view_of(n->out, n->out->grad);
  attn_status st =
      attn_score_backward(gp[IN_Q], gp[IN_K], &gr, &de, n->in[IN_Q] ? &sv->t[IN_Q] : NULL,
                          n->in[IN_K] ? &sv->t[IN_K] : NULL, &sv->p, NULL, 0);
  if (st == ATTN_OK) {
    at = scratch;
    for (int i = 0; i < n_in; i++) {
      if (!acc[i]) continue;
      for (int64_t x = 0; x < n->in[i]->numel; x++) acc[i][x] += at[x];
      at += n->in[i]->numel;
    }
  }
  attn__free(scratch);
  return st;
}

attn_var *attn_nn_score(attn_nn_ctx *ctx, attn_var *q, attn_var *k,
                        const attn_nn_score_spec *spec) {
  static const char op[] = "attn_nn_score";
  if (!ctx) {
    attn__fail(ATTN_STATUS_NULL_POINTER, "%s: ctx is NULL", op);
    return NULL;
  }
  if (ctx->status != ATTN_OK) return NULL;
  if (!spec) return attn__nn_fail(ctx, ATTN_STATUS_NULL_POINTER, "%s: spec is NULL", op);
  const int nc = spec->kind == ATTN_SCORE_ADDITIVE ? spec->n_contexts : 0;
  if (nc < 0 || nc > MAXC)
    return attn__nn_fail(ctx, ATTN_STATUS_INVALID_ARGUMENT,
                         "%s: spec->n_contexts is %d, must be in [0, %d]", op, nc, MAXC);
  if (nc && (!spec->contexts || !spec->U))
    return attn__nn_fail(ctx, ATTN_STATUS_NULL_POINTER, "%s: spec->%s is NULL", op,
                         spec->contexts ? "U" : "contexts");
  attn_var *ins[IN_FIXED + 2 * MAXC] = {q,        k,        spec->W,  spec->b, spec->w,
                                        spec->W1, spec->W2, spec->Wo, spec->bo};
  for (int m = 0; m < nc; m++) {
    ins[IN_FIXED + m] = spec->contexts[m];
    ins[IN_FIXED + nc + m] = spec->U[m];
  }
  const int n_in = IN_FIXED + 2 * nc;
  /* Every input may be NULL here (the kernel says which one a kind needs); ownership is checked. */
  if (!attn__nn_check(ctx, op, IN_FIXED, ins, (1u << IN_FIXED) - 1)) return NULL;
  if (nc && !attn__nn_check(ctx, op, 2 * nc, ins + IN_FIXED, (1u << (2 * nc)) - 1)) return NULL;
  for (int i = 0; i < n_in; i++)
    if (ins[i] && ins[i]->ndim > ATTN_MAX_DIMS)
      return attn__nn_fail(ctx, ATTN_STATUS_SHAPE_MISMATCH, "%s: input %d has %d dims, at most %d",
                           op, i, (int)ins[i]->ndim, ATTN_MAX_DIMS);
  score_saved *sv = attn__nn_alloc(ctx, sizeof *sv);
  if (!sv) return attn__nn_fail(ctx, ATTN_STATUS_OUT_OF_MEMORY, "%s: out of memory", op);
  memset(sv, 0, sizeof *sv);
  sv->n_in = n_in;
  sv->p = attn_score_params_default();
  sv->p.kind = spec->kind;
  sv->p.act = spec->act;
  sv->p.leaky_slope = spec->leaky_slope;
  sv->p.temperature = spec->temperature;
  for (int i = 0; i < n_in; i++)
    if (ins[i]) sv->t[i] = view_of(ins[i], ins[i]->data);
  bind(sv, ins, nc);
  const attn_tensor *tq = q ? &sv->t[IN_Q] : NULL, *tk = k ? &sv->t[IN_K] : NULL;
  /* Validate everything but e (the kernel's messages name the argument), then shape e. */
  size_t ws = 0;
  attn_status st = attn_score_workspace_size(&ws, 0, tq, tk, &sv->p);
  if (st != ATTN_OK) return attn__nn_fail(ctx, st, "%s: %s", op, attn_last_error());
  int64_t shape[4];
  int nd = 3;
  switch (spec->kind) {
    case ATTN_SCORE_LOCATION:
      shape[0] = k->shape[0];
      shape[1] = 1;
      shape[2] = k->shape[1];
      break;
    case ATTN_SCORE_LUONG_LOCATION:
      shape[0] = q->shape[0];
      shape[1] = q->shape[1];
      shape[2] = spec->W->shape[0];
      break;
    default:
      shape[0] = q->shape[0];
      shape[1] = q->shape[1];
      shape[2] = k->shape[1];
      if (spec->kind == ATTN_SCORE_MULTIDIM) {
        shape[3] = spec->Wo->shape[0];
        nd = 4;
      }
      break;
  }
  attn_var *out = attn__nn_new(ctx, op, nd, shape);
  if (!out) return NULL;
  sv->e = view_of(out, out->data);
  st = attn_score_forward(&sv->e, tq, tk, &sv->p, NULL, 0);
  if (st != ATTN_OK) return attn__nn_fail(ctx, st, "%s: %s", op, attn_last_error());
  attn_nn_node *node;
  if (!attn__nn_record(ctx, op, out, score_backward, n_in, ins, &node)) return NULL;
  if (node) node->saved = sv;
  return out;
}

/* ---- score -> softmax -> context ------------------------------------------------------------- */

static bool fusable(attn_score_kind kind) {
  return kind == ATTN_SCORE_DOT || kind == ATTN_SCORE_SCALED_DOT || kind == ATTN_SCORE_GENERAL ||
         kind == ATTN_SCORE_BIASED_GENERAL;
}

/* A 4-d (B, 1, N, D) reshape view of a (B, N, D) tensor. */
static attn_var *heads1(attn_nn_ctx *ctx, attn_var *x) {
  if (!x) return NULL;
  const int64_t s[4] = {x->shape[0], 1, x->shape[1], x->shape[2]};
  return attn_nn_reshape(ctx, x, 4, s);
}

/* v must be (B, Tk, Dv), and Dv == F for MULTIDIM. */
static bool check_v(attn_nn_ctx *ctx, const char *op, const attn_var *v, int64_t B, int64_t Tk,
                    int64_t F) {
  if (v->ndim == 3 && v->shape[0] == B && v->shape[1] == Tk && (F < 0 || v->shape[2] == F))
    return true;
  char buf[96];
  attn__nn_fail(ctx, ATTN_STATUS_SHAPE_MISMATCH,
                "%s: v is %s, expected (%lld, %lld, %s) (the score's batch and key count%s)", op,
                attn__nn_shape_str(v, buf, sizeof buf), (long long)B, (long long)Tk,
                F < 0 ? "Dv" : "F", F < 0 ? "" : "; multidim needs Dv == F");
  return false;
}

attn_var *attn__nn_zero_blocked_rows(attn_nn_ctx *ctx, const char *op, attn_var *x,
                                     const int32_t *key_lens) {
  const int64_t B = x->shape[0], T = x->shape[1], D = x->shape[2];
  if (B * T >= INT32_MAX)
    return attn__nn_fail(ctx, ATTN_STATUS_OVERFLOW, "%s: %lld key rows do not fit an int32 index",
                         op, (long long)(B * T));
  int32_t *ids = attn__nn_alloc(ctx, (size_t)(B * T + 1) * sizeof(int32_t));
  if (!ids) return attn__nn_fail(ctx, ATTN_STATUS_OUT_OF_MEMORY, "%s: out of memory", op);
  for (int64_t b = 0; b < B; b++) {
    if (key_lens[b] < 0 || key_lens[b] > T)
      return attn__nn_fail(ctx, ATTN_STATUS_INVALID_ARGUMENT,
                           "%s: key_lens[%lld] is %d, must be in [0, %lld]", op, (long long)b,
                           (int)key_lens[b], (long long)T);
    for (int64_t t = 0; t < T; t++) ids[b * T + t] = (int32_t)(t < key_lens[b] ? b * T + t : B * T);
  }
  const int64_t flat[2] = {B * T, D}, zero_row[2] = {1, D};
  attn_var *rows[2] = {attn_nn_reshape(ctx, x, 2, flat), attn_nn_full(ctx, 2, zero_row, 0.0f)};
  attn_var *all = rows[0] && rows[1] ? attn_nn_concat(ctx, rows, 2, 0) : NULL;
  attn_var *kept = all ? attn_nn_index_select(ctx, all, 0, ids, B * T) : NULL;
  return kept ? attn_nn_reshape(ctx, kept, 3, x->shape) : NULL;
}

attn_var *attn_nn_score_attention(attn_nn_ctx *ctx, attn_var *q, attn_var *k, attn_var *v,
                                  const attn_nn_score_spec *spec, const int32_t *key_lens,
                                  int allow_fused) {
  static const char op[] = "attn_nn_score_attention";
  attn_var *ins[1] = {v};
  if (!attn__nn_check(ctx, op, 1, ins, 0)) return NULL;
  if (!spec) return attn__nn_fail(ctx, ATTN_STATUS_NULL_POINTER, "%s: spec is NULL", op);
  if (allow_fused && fusable(spec->kind)) {
    /* Validate with the score kernel's own check (its messages name the parameter), then route
     * through attn_nn_sdpa. */
    attn_var *qkw[4] = {q, k, spec->W, spec->b};
    if (!attn__nn_check(ctx, op, 4, qkw, 15u)) return NULL;
    for (int i = 0; i < 4; i++)
      if (qkw[i] && qkw[i]->ndim > ATTN_MAX_DIMS)
        return attn__nn_fail(ctx, ATTN_STATUS_SHAPE_MISMATCH, "%s: input %d has %d dims", op, i,
                             (int)qkw[i]->ndim);
    attn_score_params p = attn_score_params_default();
    attn_tensor t[4];
    for (int i = 0; i < 4; i++)
      if (qkw[i]) t[i] = view_of(qkw[i], qkw[i]->data);
    p.kind = spec->kind;
    p.act = spec->act;
    p.leaky_slope = spec->leaky_slope;
    p.temperature = spec->temperature;
    p.W = spec->W ? &t[2] : NULL;
    p.b = spec->b ? &t[3] : NULL;
    size_t ws;
    attn_status st = attn_score_workspace_size(&ws, 0, q ? &t[0] : NULL, k ? &t[1] : NULL, &p);
    if (st != ATTN_OK) return attn__nn_fail(ctx, st, "%s: %s", op, attn_last_error());
    const int64_t B = q->shape[0], Tq = q->shape[1];
    if (!check_v(ctx, op, v, B, k->shape[1], -1)) return NULL;
    attn_var *qp = q;
    if (spec->kind == ATTN_SCORE_GENERAL) qp = attn_nn_matmul(ctx, q, spec->W, 0, 1);
    if (spec->kind == ATTN_SCORE_BIASED_GENERAL) qp = attn_nn_linear(ctx, q, spec->W, spec->b);
    double scale = 1.0 / (double)spec->temperature;
    if (spec->kind == ATTN_SCORE_SCALED_DOT) scale /= sqrt((double)k->shape[2]);
    attn_var *o = attn_nn_sdpa(ctx, heads1(ctx, qp), heads1(ctx, k), heads1(ctx, v), (float)scale,
                               0, key_lens);
    if (!o) return NULL;
    const int64_t s3[3] = {B, Tq, v->shape[2]};
    return attn_nn_reshape(ctx, o, 3, s3);
  }
  /* k as the score reads it (its ndim is the score's to check). */
  if (key_lens && k && k->ndim == 3 && !(k = attn__nn_zero_blocked_rows(ctx, op, k, key_lens)))
    return NULL;
  attn_var *e = attn_nn_score(ctx, q, k, spec);
  if (!e) return NULL;
  const bool md = spec->kind == ATTN_SCORE_MULTIDIM;
  const int64_t B = e->shape[0], Tk = e->shape[2];
  if (!check_v(ctx, op, v, B, Tk, md ? e->shape[3] : -1)) return NULL;
  if (key_lens && !(v = attn__nn_zero_blocked_rows(ctx, op, v, key_lens))) return NULL;
  attn_var *mask = NULL;
  if (key_lens) {
    const int64_t m3[3] = {B, 1, Tk}, m4[4] = {B, 1, 1, Tk};
    mask = attn_nn_full(ctx, md ? 4 : 3, md ? m4 : m3, 0.0f);
    if (!mask) return NULL;
    for (int64_t b = 0; b < B; b++) {
      if (key_lens[b] < 0 || key_lens[b] > Tk)
        return attn__nn_fail(ctx, ATTN_STATUS_INVALID_ARGUMENT,
                             "%s: key_lens[%lld] is %d, must be in [0, %lld]", op, (long long)b,
                             (int)key_lens[b], (long long)Tk);
      for (int64_t l = key_lens[b]; l < Tk; l++) mask->data[b * Tk + l] = -INFINITY;
    }
  }
  if (!md) return attn_nn_matmul(ctx, attn_nn_softmax(ctx, e, mask), v, 0, 0);
  /* One softmax over the keys per feature f: (B, Tq, F, Tk) weights times v^T (B, 1, F, Tk),
   * summed over the keys. */
  static const int perm_e[4] = {0, 1, 3, 2}, perm_v[3] = {0, 2, 1};
  attn_var *a = attn_nn_softmax(ctx, attn_nn_permute(ctx, e, perm_e), mask);
  attn_var *vt = attn_nn_permute(ctx, v, perm_v);
  const int64_t s4[4] = {B, 1, v->shape[2], Tk};
  attn_var *prod = attn_nn_mul(ctx, a, vt ? attn_nn_reshape(ctx, vt, 4, s4) : NULL);
  return attn_nn_sum(ctx, prod, 3, 0);
}
