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

/* Points the params' tensors at sv->t[] (views of `data_of(i)`), for the forward (values) and
 * the backward (the same views). */
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
  attn_status st = attn_score_backward(gp[IN_Q], gp[IN_K], &gr, &de,
                                       n->in[IN_Q] ? &sv->t[IN_Q] : NULL,
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
  attn_var *ins[IN_FIXED + 2 * MAXC] = {q, k, spec->W, spec->b, spec->w, spec->W1, spec->W2,
                                        spec->Wo, spec->bo};
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
