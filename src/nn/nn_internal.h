/* Internal interfaces of the training layer (src/nn). Not installed. */
#ifndef ATTN_NN_INTERNAL_H
#define ATTN_NN_INTERNAL_H

#include "attn/nn.h"
#include "internal.h"

/* A backward: reads n->out->grad (never NULL when called) and accumulates (+=) into the grad of
 * each input that requires one (attn__nn_grad allocates it). Returns OUT_OF_MEMORY or a kernel's
 * error. */
typedef attn_status (*attn__nn_backward_fn)(attn_nn_node *n);

/* One tape record. Everything it points to lives in the arena of its context. */
struct attn_nn_node {
  attn_nn_node *prev;           /* the record before it (older) */
  attn__nn_backward_fn backward;
  const char *op;               /* the op's name, for messages */
  attn_var *out;
  attn_var **in;                /* n_in inputs, in the op's argument order */
  int n_in;
  void *saved;                  /* op-specific saved data (arena) */
  void *saved2;
  int64_t iarg[8];
  float farg[4];
};

typedef struct attn__nn_block attn__nn_block;

struct attn_nn_ctx {
  attn__nn_block *blocks;       /* newest first; the newest is the one being filled */
  size_t used_total;            /* bytes handed out since the last reset */
  attn_nn_node *tail;           /* newest tape record */
  struct attn__nn_freed *freed; /* gradient buffers released by the backward, for reuse */
  int64_t n_nodes;
  int grad_enabled;
  int walked;                   /* attn_backward ran on this tape */
  attn_status status;
  char error[256];
};

/* Arena allocation of `size` bytes, 64-byte aligned; NULL on OOM (no error recorded). */
void *attn__nn_alloc(attn_nn_ctx *ctx, size_t size);

/* Records `status` with a formatted message as the context's sticky error (the first one wins)
 * and as the thread's last error. Returns NULL so ops can `return attn__nn_fail(...)`. */
attn_var *attn__nn_fail(attn_nn_ctx *ctx, attn_status status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Entry check of an op named `op` with n inputs: ctx non-NULL and without a sticky error, every
 * required input non-NULL and owned by ctx or a parameter. Optional inputs may be NULL when the
 * matching bit of `optional_mask` is set. Returns false (error recorded when it is new). */
bool attn__nn_check(attn_nn_ctx *ctx, const char *op, int n, attn_var *const *ins,
                    unsigned optional_mask);

/* A new arena tensor of ndim dims of shape (data uninitialised, no grad, requires_grad 0).
 * Records OUT_OF_MEMORY / INVALID_ARGUMENT / OVERFLOW and returns NULL on failure. */
attn_var *attn__nn_new(attn_nn_ctx *ctx, const char *op, int ndim, const int64_t *shape);

/* If gradients are enabled and an input requires a gradient, records a tape entry for out and
 * sets out->requires_grad; *node = the record (NULL when nothing is recorded). NULL inputs are
 * skipped. Returns false on OOM (error recorded). */
bool attn__nn_record(attn_nn_ctx *ctx, const char *op, attn_var *out, attn__nn_backward_fn bw,
                     int n_in, attn_var *const *ins, attn_nn_node **node);

/* The gradient buffer of v, allocated and zeroed on first use (arena of v->ctx; parameters own
 * theirs). NULL when v does not require a gradient or on OOM (check v->requires_grad). */
float *attn__nn_grad(attn_var *v);
/* Called by the tape walk once v's record has run: v's gradient is complete and consumed, so the
 * buffer goes back to the context for the next attn__nn_grad of a tensor of that size or smaller
 * (a view's buffer is its base's and is only forgotten). v->grad is NULL afterwards. */
void attn__nn_release_grad(attn_var *v);
/* As attn__nn_in_grad, but a buffer allocated by this call is not zeroed and *fresh is set: the
 * caller must then write (=) every element instead of accumulating. *fresh is false when the
 * buffer already held a gradient (or when there is none). */
float *attn__nn_in_grad_fresh(attn_nn_node *n, int i, bool *oom, bool *fresh);
/* For backwards: the grad buffer of input i of n when that input requires one, else NULL; sets
 * *oom when the allocation failed. */
float *attn__nn_in_grad(attn_nn_node *n, int i, bool *oom);

/* Fills shape/stride/numel of v (contiguous); false on overflow. */
bool attn__nn_set_shape(attn_var *v, int ndim, const int64_t *shape);

/* Normalises a possibly negative axis against ndim; false when out of range. */
/* True when a and b have the same dims. */
static inline bool attn__nn_same_shape(const attn_var *a, const attn_var *b) {
  if (a->ndim != b->ndim) return false;
  for (int d = 0; d < a->ndim; d++)
    if (a->shape[d] != b->shape[d]) return false;
  return true;
}

static inline bool attn__nn_axis(int axis, int ndim, int *out) {
  if (axis < 0) axis += ndim;
  if (axis < 0 || axis >= ndim) return false;
  *out = axis;
  return true;
}

/* fn(arg, begin, end) over [0, n) in chunks of `grain` spread over the thread pool (serial when
 * n <= grain). Chunks are fixed by n and grain, never by the thread count, and each writes only
 * its own range: callers keep results independent of the number of threads. */
typedef void (*attn__nn_range_fn)(void *arg, int64_t begin, int64_t end);
void attn__nn_parallel_range(int64_t n, int64_t grain, attn__nn_range_fn fn, void *arg);

/* "(2, 3, 4)" into buf. */
const char *attn__nn_shape_str(const attn_var *v, char *buf, size_t size);

/* The kernel's view of a constant additive mask (src/nn/ops_align.c): `mask` (at most nd dims)
 * aligned at the last dim of a target of nd (<= 4) dims of `target`, numpy style, with leading
 * dims of size 1 added. Every dim must equal the target's or be 1 (broadcast); otherwise records
 * SHAPE_MISMATCH naming the mask and `target_name` and returns false. */
bool attn__nn_mask_view(attn_nn_ctx *ctx, const char *op, const attn_var *mask, int nd,
                        const int64_t *target, const char *target_name, attn_tensor *out);

/* x (B, T, D) with the rows t >= key_lens[b] replaced by zeros (src/nn/ops_score.c), for the
 * composed attentions that take key lengths: a blocked key's rows are then never read into a
 * result, where a NaN would otherwise pass through a 0 weight times v or through the backward of
 * a score or projection (0 * NaN). A gather of the rows of [x as (B T, D); a zero row], so the
 * blocked rows get no gradient. Records INVALID_ARGUMENT unless 0 <= key_lens[b] <= T. */
attn_var *attn__nn_zero_blocked_rows(attn_nn_ctx *ctx, const char *op, attn_var *x,
                                     const int32_t *key_lens);

#endif
