/* Stochastic and monotonic alignment as differentiable ops: stochastic hard attention
 * (log-probability and entropy outputs for REINFORCE), Gumbel-softmax and monotonic attention.
 * Each wraps the kernels of attn/stochastic.h and attn/monotonic.h; the backwards rerun the
 * kernel's backward into scratch (they overwrite) and add it to the input's gradient. */
#include "attn/monotonic.h"
#include "attn/stochastic.h"
#include "nn_internal.h"

/* The kernel view of a tensor of 1..4 dims. */
static attn_tensor view_of(const attn_var *v, float *data) {
  return attn_tensor_make(data, ATTN_DTYPE_F32, v->ndim, v->shape);
}

static bool check_x(attn_nn_ctx *ctx, const char *op, const char *name, const attn_var *x,
                    int min_dims) {
  if (x->ndim >= min_dims && x->ndim <= ATTN_MAX_DIMS && x->shape[x->ndim - 1] >= 1) return true;
  attn__nn_fail(ctx, ATTN_STATUS_SHAPE_MISMATCH,
                "%s: %s must have %d to 4 dims and a last dim >= 1", op, name, min_dims);
  return false;
}

/* Adds the kernel's d_in (computed into scratch by `run`) to the grad of input 0. */
typedef attn_status (*grad_fn)(attn_nn_node *n, const attn_tensor *d_in);

static attn_status accumulate(attn_nn_node *n, grad_fn run) {
  bool oom = false;
  float *gx = attn__nn_in_grad(n, 0, &oom);
  if (oom) return ATTN_STATUS_OUT_OF_MEMORY;
  if (!gx) return ATTN_OK;
  attn_var *x = n->in[0];
  float *scratch = attn__malloc((size_t)(x->numel > 0 ? x->numel : 1) * sizeof(float), ATTN_ALIGN);
  if (!scratch) return ATTN_STATUS_OUT_OF_MEMORY;
  attn_tensor d_in = view_of(x, scratch);
  attn_status st = run(n, &d_in);
  if (st == ATTN_OK)
    for (int64_t i = 0; i < x->numel; i++) gx[i] += scratch[i];
  attn__free(scratch);
  return st;
}

static const attn_tensor *node_mask(attn_nn_node *n, attn_tensor *t) {
  if (!n->in[1]) return NULL;
  /* Validated by the forward. */
  const attn_var *mask = n->in[1], *x = n->in[0];
  int64_t shape[ATTN_MAX_DIMS];
  const int pad = x->ndim - mask->ndim;
  for (int d = 0; d < x->ndim; d++) shape[d] = d < pad ? 1 : mask->shape[d - pad];
  *t = attn_tensor_make(mask->data, ATTN_DTYPE_F32, x->ndim, shape);
  return t;
}

/* ---- stochastic hard attention ------------------------------------------------------------------
 */

/* saved: the indices (int32, one per row); saved2: the params. iarg[0]: 0 for the log-prob node,
 * 1 for the entropy node. */
static attn_status hard_sample_grad(attn_nn_node *n, const attn_tensor *d_in) {
  attn_tensor tm, tx = view_of(n->in[0], n->in[0]->data);
  const float *g = n->out->grad;
  return attn_hard_sample_backward(d_in, n->iarg[0] ? NULL : g, n->iarg[0] ? g : NULL,
                                   (const int32_t *)n->saved, &tx, node_mask(n, &tm), n->saved2,
                                   NULL, 0);
}

static attn_status hard_sample_backward(attn_nn_node *n) {
  return accumulate(n, hard_sample_grad);
}

attn_var *attn_nn_hard_sample(attn_nn_ctx *ctx, attn_var *scores, attn_var *mask, float temperature,
                              uint64_t seed, int32_t *index, attn_var **log_prob,
                              attn_var **entropy) {
  static const char *op = "attn_nn_hard_sample";
  attn_var *ins[2] = {scores, mask};
  if (log_prob) *log_prob = NULL;
  if (entropy) *entropy = NULL;
  if (!attn__nn_check(ctx, op, 2, ins, 2u)) return NULL;
  attn_tensor tm;
  if (!check_x(ctx, op, "scores", scores, 1)) return NULL;
  if (mask && !attn__nn_mask_view(ctx, op, mask, scores->ndim, scores->shape, "scores", &tm))
    return NULL;
  const int64_t n = scores->shape[scores->ndim - 1], rows = scores->numel / n;
  attn_var *w = attn__nn_new(ctx, op, scores->ndim, scores->shape);
  attn_var *lp = w ? attn__nn_new(ctx, op, scores->ndim - 1, scores->shape) : NULL;
  attn_var *h = lp ? attn__nn_new(ctx, op, scores->ndim - 1, scores->shape) : NULL;
  if (!h) return NULL;
  int32_t *idx = attn__nn_alloc(ctx, (size_t)(rows + 1) * sizeof(int32_t));
  attn_stochastic_params *p = idx ? attn__nn_alloc(ctx, sizeof *p) : NULL;
  if (!p) return attn__nn_fail(ctx, ATTN_STATUS_OUT_OF_MEMORY, "%s: out of memory", op);
  *p = attn_stochastic_params_default();
  p->temperature = temperature;
  p->seed = seed;
  attn_tensor tx = view_of(scores, scores->data), tw = view_of(w, w->data);
  attn_status st =
      attn_hard_sample_forward(&tw, idx, lp->data, h->data, &tx, mask ? &tm : NULL, p, NULL, 0);
  if (st != ATTN_OK) return attn__nn_fail(ctx, st, "%s: %s", op, attn_last_error());
  attn_var *outs[2] = {lp, h};
  for (int k = 0; k < 2; k++) {
    attn_nn_node *node;
    if (!attn__nn_record(ctx, op, outs[k], hard_sample_backward, 2, ins, &node)) return NULL;
    if (node) {
      node->saved = idx;
      node->saved2 = p;
      node->iarg[0] = k;
    }
  }
  if (index) memcpy(index, idx, (size_t)rows * sizeof(int32_t));
  if (log_prob) *log_prob = lp;
  if (entropy) *entropy = h;
  return w;
}

/* ---- Gumbel-softmax
 * ------------------------------------------------------------------------------ */

/* saved2: the params. */
static attn_status gumbel_grad(attn_nn_node *n, const attn_tensor *d_in) {
  attn_tensor tm, tx = view_of(n->in[0], n->in[0]->data);
  attn_tensor to = view_of(n->out, n->out->data), tdo = view_of(n->out, n->out->grad);
  return attn_gumbel_softmax_backward(d_in, &tdo, &to, &tx, node_mask(n, &tm), n->saved2, NULL, 0);
}

static attn_status gumbel_backward(attn_nn_node *n) {
  return accumulate(n, gumbel_grad);
}

attn_var *attn_nn_gumbel_softmax(attn_nn_ctx *ctx, attn_var *scores, attn_var *mask,
                                 float temperature, int hard, uint64_t seed) {
  static const char *op = "attn_nn_gumbel_softmax";
  attn_var *ins[2] = {scores, mask};
  if (!attn__nn_check(ctx, op, 2, ins, 2u)) return NULL;
  attn_tensor tm;
  if (!check_x(ctx, op, "scores", scores, 1)) return NULL;
  if (mask && !attn__nn_mask_view(ctx, op, mask, scores->ndim, scores->shape, "scores", &tm))
    return NULL;
  attn_var *y = attn__nn_new(ctx, op, scores->ndim, scores->shape);
  attn_stochastic_params *p = y ? attn__nn_alloc(ctx, sizeof *p) : NULL;
  if (!p) return y ? attn__nn_fail(ctx, ATTN_STATUS_OUT_OF_MEMORY, "%s: out of memory", op) : NULL;
  *p = attn_stochastic_params_default();
  p->temperature = temperature;
  p->seed = seed;
  p->hard = hard ? 1 : 0;
  attn_tensor tx = view_of(scores, scores->data), ty = view_of(y, y->data);
  attn_status st = attn_gumbel_softmax_forward(&ty, &tx, mask ? &tm : NULL, p, NULL, 0);
  if (st != ATTN_OK) return attn__nn_fail(ctx, st, "%s: %s", op, attn_last_error());
  attn_nn_node *node;
  if (!attn__nn_record(ctx, op, y, gumbel_backward, 2, ins, &node)) return NULL;
  if (node) node->saved2 = p;
  return y;
}

/* ---- monotonic attention --------------------------------------------------------------------- */

/* saved2: the params. */
static attn_status monotonic_grad(attn_nn_node *n, const attn_tensor *d_in) {
  attn_tensor tm, te = view_of(n->in[0], n->in[0]->data);
  attn_tensor ta = view_of(n->out, n->out->data), tda = view_of(n->out, n->out->grad);
  return attn_monotonic_backward(d_in, &tda, &ta, &te, node_mask(n, &tm), n->saved2, NULL, 0);
}

static attn_status monotonic_backward(attn_nn_node *n) {
  return accumulate(n, monotonic_grad);
}

attn_var *attn_nn_monotonic(attn_nn_ctx *ctx, attn_var *energy, attn_var *mask,
                            const attn_monotonic_params *params) {
  static const char *op = "attn_nn_monotonic";
  attn_var *ins[2] = {energy, mask};
  if (!attn__nn_check(ctx, op, 2, ins, 2u)) return NULL;
  attn_tensor tm;
  if (!check_x(ctx, op, "energy", energy, 2)) return NULL;
  if (mask && !attn__nn_mask_view(ctx, op, mask, energy->ndim, energy->shape, "energy", &tm))
    return NULL;
  attn_var *a = attn__nn_new(ctx, op, energy->ndim, energy->shape);
  attn_monotonic_params *p = a ? attn__nn_alloc(ctx, sizeof *p) : NULL;
  if (!p) return a ? attn__nn_fail(ctx, ATTN_STATUS_OUT_OF_MEMORY, "%s: out of memory", op) : NULL;
  *p = params ? *params : attn_monotonic_params_default();
  attn_tensor te = view_of(energy, energy->data), ta = view_of(a, a->data);
  attn_status st = attn_monotonic_forward(&ta, &te, mask ? &tm : NULL, p, NULL, 0);
  if (st != ATTN_OK) return attn__nn_fail(ctx, st, "%s: %s", op, attn_last_error());
  if (p->mode == ATTN_MONOTONIC_HARD) return a; /* test time: a constant, nothing recorded */
  attn_nn_node *node;
  if (!attn__nn_record(ctx, op, a, monotonic_backward, 2, ins, &node)) return NULL;
  if (node) node->saved2 = p;
  return a;
}
