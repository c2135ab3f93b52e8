/* The tape: recording ops and walking them backwards. */
#include "nn_internal.h"

typedef struct range_task {
  attn__nn_range_fn fn;
  void *arg;
  int64_t n, grain;
} range_task;

static void range_item(void *ctx, int64_t item, int thread_id) {
  (void)thread_id;
  const range_task *r = ctx;
  const int64_t begin = item * r->grain, end = begin + r->grain < r->n ? begin + r->grain : r->n;
  r->fn(r->arg, begin, end);
}

void attn__nn_parallel_range(int64_t n, int64_t grain, attn__nn_range_fn fn, void *arg) {
  if (n <= 0) return;
  if (grain < 1) grain = 1;
  if (n <= grain) {
    fn(arg, 0, n);
    return;
  }
  range_task r = {fn, arg, n, grain};
  attn__parallel_for((n + grain - 1) / grain, range_item, &r);
}

bool attn__nn_record(attn_nn_ctx *ctx, const char *op, attn_var *out, attn__nn_backward_fn bw,
                     int n_in, attn_var *const *ins, attn_nn_node **node) {
  *node = NULL;
  if (!ctx->grad_enabled) return true;
  bool needs = false;
  for (int i = 0; i < n_in; i++)
    if (ins[i] && ins[i]->requires_grad) needs = true;
  if (!needs) return true;
  attn_nn_node *n = attn__nn_alloc(ctx, sizeof *n);
  attn_var **in = n ? attn__nn_alloc(ctx, (size_t)n_in * sizeof *in) : NULL;
  if (!in) {
    attn__nn_fail(ctx, ATTN_STATUS_OUT_OF_MEMORY, "%s: out of memory recording the tape", op);
    return false;
  }
  memset(n, 0, sizeof *n);
  for (int i = 0; i < n_in; i++) in[i] = ins[i];
  n->in = in;
  n->n_in = n_in;
  n->backward = bw;
  n->op = op;
  n->out = out;
  n->prev = ctx->tail;
  ctx->tail = n;
  ctx->n_nodes++;
  out->requires_grad = 1;
  out->node = n;
  *node = n;
  return true;
}

static attn_status walk(attn_var *out, const float *seed, const char *who) {
  attn__clear_error();
  if (!out) return attn__fail(ATTN_STATUS_NULL_POINTER, "%s: the output is NULL", who);
  attn_nn_ctx *ctx = out->ctx;
  if (!ctx)
    return attn__fail(ATTN_STATUS_INVALID_ARGUMENT, "%s: the output is a parameter, not an op's result", who);
  if (ctx->status != ATTN_OK)
    return attn__fail(ctx->status, "%s: the context has an error: %s", who, ctx->error);
  if (!out->requires_grad)
    return attn__fail(ATTN_STATUS_INVALID_ARGUMENT,
                      "%s: the output does not require a gradient (no_grad, or no input requires one)", who);
  if (ctx->walked)
    return attn__fail(ATTN_STATUS_INVALID_ARGUMENT,
                      "%s: the tape was already walked; reset the context to record again", who);
  float *g = attn__nn_grad(out);
  if (!g) return attn__fail(ATTN_STATUS_OUT_OF_MEMORY, "%s: out of memory", who);
  ctx->walked = 1;
  for (int64_t i = 0; i < out->numel; i++) g[i] += seed ? seed[i] : 1.0f;
  /* Newest to oldest: a record runs after every record that used its output, so its output's
   * gradient is complete when it runs. Records newer than `out` have no gradient and are skipped. */
  for (attn_nn_node *n = ctx->tail; n; n = n->prev) {
    if (!n->out->grad) continue;
    attn_status st = n->backward(n);
    if (st != ATTN_OK) {
      if (st == ATTN_STATUS_OUT_OF_MEMORY)
        return attn__fail(st, "%s: out of memory in the backward of %s", who, n->op);
      return st; /* the kernel's message stays in attn_last_error */
    }
    /* Every record that used n's output is newer and has run, so its gradient is dead: reuse the
     * buffer for the gradients still to come (the peak holds the live ones, not all of them). */
    attn__nn_release_grad(n->out);
  }
  return ATTN_OK;
}

attn_status attn_backward(attn_var *loss) {
  if (loss && loss->numel != 1)
    return attn__fail(ATTN_STATUS_INVALID_ARGUMENT,
                      "attn_backward: the loss has %lld elements, want 1 (use attn_backward_from)",
                      (long long)loss->numel);
  return walk(loss, NULL, "attn_backward");
}

attn_status attn_backward_from(attn_var *out, const float *dout) {
  if (out && !dout) return attn__fail(ATTN_STATUS_NULL_POINTER, "attn_backward_from: dout is NULL");
  return walk(out, dout, "attn_backward_from");
}
