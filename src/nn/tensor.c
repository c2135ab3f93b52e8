/* Owning tensors of the training layer: contexts and their arenas, arena tensors, parameters,
 * parameter lists and seeded initialisers. */
#include "nn_internal.h"

#include <stdio.h>

/* ---- arena ----------------------------------------------------------------------------------- */

/* A block of the arena. Blocks are filled bump-pointer style; a block never moves, so pointers
 * into it stay valid until the reset. */
struct attn__nn_block {
  attn__nn_block *next;
  size_t cap, used;
  /* data follows at the 64-byte aligned offset ATTN__NN_HDR */
};
#define ATTN__NN_HDR ((size_t)64)
#define ATTN__NN_MIN_BLOCK ((size_t)1 << 20)

static attn__nn_block *block_new(size_t cap) {
  attn__nn_block *b = attn__malloc(ATTN__NN_HDR + cap, ATTN_ALIGN);
  if (!b) return NULL;
  b->next = NULL;
  b->cap = cap;
  b->used = 0;
  return b;
}

void *attn__nn_alloc(attn_nn_ctx *ctx, size_t size) {
  size = attn__round_up(size ? size : 1, ATTN_ALIGN);
  attn__nn_block *b = ctx->blocks;
  if (!b || b->cap - b->used < size) {
    size_t cap = size > ATTN__NN_MIN_BLOCK ? size : ATTN__NN_MIN_BLOCK;
    if (cap > SIZE_MAX - ATTN__NN_HDR) return NULL;
    attn__nn_block *nb = block_new(cap);
    if (!nb) return NULL;
    nb->next = b;
    ctx->blocks = nb;
    b = nb;
  }
  void *p = (char *)b + ATTN__NN_HDR + b->used;
  b->used += size;
  ctx->used_total += size;
  return p;
}

static void blocks_free(attn__nn_block *b) {
  while (b) {
    attn__nn_block *next = b->next;
    attn__free(b);
    b = next;
  }
}

attn_nn_ctx *attn_nn_ctx_new(void) {
  attn__clear_error();
  attn_nn_ctx *ctx = attn__malloc(sizeof *ctx, ATTN_ALIGN);
  if (!ctx) {
    attn__fail(ATTN_STATUS_OUT_OF_MEMORY, "attn_nn_ctx_new: out of memory");
    return NULL;
  }
  memset(ctx, 0, sizeof *ctx);
  ctx->grad_enabled = 1;
  return ctx;
}

void attn_nn_ctx_free(attn_nn_ctx *ctx) {
  if (!ctx) return;
  blocks_free(ctx->blocks);
  attn__free(ctx);
}

void attn_nn_ctx_reset(attn_nn_ctx *ctx) {
  if (!ctx) return;
  size_t want = ctx->used_total;
  attn__nn_block *b = ctx->blocks;
  if (b && !b->next) {
    b->used = 0; /* one block already: reuse it as is */
  } else {
    blocks_free(b);
    ctx->blocks = NULL;
    /* Keep one block big enough for the step just finished, so a steady training loop does not
     * allocate. Failing here is harmless: the next step allocates on demand. */
    if (want > ATTN__NN_MIN_BLOCK) ctx->blocks = block_new(want);
  }
  ctx->used_total = 0;
  ctx->freed = NULL;
  ctx->tail = NULL;
  ctx->n_nodes = 0;
  ctx->walked = 0;
  ctx->status = ATTN_OK;
  ctx->error[0] = '\0';
}

attn_status attn_nn_ctx_status(const attn_nn_ctx *ctx) {
  return ctx ? ctx->status : ATTN_STATUS_NULL_POINTER;
}
const char *attn_nn_ctx_error(const attn_nn_ctx *ctx) { return ctx ? ctx->error : ""; }

int attn_nn_set_grad_enabled(attn_nn_ctx *ctx, int enabled) {
  if (!ctx) return 0;
  int old = ctx->grad_enabled;
  ctx->grad_enabled = enabled ? 1 : 0;
  return old;
}

int64_t attn_nn_tape_size(const attn_nn_ctx *ctx) { return ctx ? ctx->n_nodes : 0; }
size_t attn_nn_arena_used(const attn_nn_ctx *ctx) { return ctx ? ctx->used_total : 0; }

/* ---- errors and checks ---------------------------------------------------------------------- */

attn_var *attn__nn_fail(attn_nn_ctx *ctx, attn_status status, const char *fmt, ...) {
  char msg[256];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  attn__fail(status, "%s", msg);
  if (ctx && ctx->status == ATTN_OK) {
    ctx->status = status;
    memcpy(ctx->error, msg, sizeof msg);
  }
  return NULL;
}

bool attn__nn_check(attn_nn_ctx *ctx, const char *op, int n, attn_var *const *ins,
                    unsigned optional_mask) {
  if (!ctx) {
    attn__fail(ATTN_STATUS_NULL_POINTER, "%s: ctx is NULL", op);
    return false;
  }
  if (ctx->status != ATTN_OK) return false; /* sticky: the first error stays the one reported */
  for (int i = 0; i < n; i++) {
    if (!ins[i]) {
      if (optional_mask & (1u << i)) continue;
      attn__nn_fail(ctx, ATTN_STATUS_NULL_POINTER, "%s: input %d is NULL", op, i);
      return false;
    }
    if (!ins[i]->is_param && ins[i]->ctx != ctx) {
      attn__nn_fail(ctx, ATTN_STATUS_INVALID_ARGUMENT,
                    "%s: input %d belongs to another context", op, i);
      return false;
    }
  }
  return true;
}

const char *attn__nn_shape_str(const attn_var *v, char *buf, size_t size) {
  size_t at = 0;
  at += (size_t)snprintf(buf, size, "(");
  for (int d = 0; d < v->ndim && at < size; d++)
    at += (size_t)snprintf(buf + at, size - at, d ? ", %lld" : "%lld", (long long)v->shape[d]);
  if (at < size) snprintf(buf + at, size - at, ")");
  return buf;
}

/* ---- tensors --------------------------------------------------------------------------------- */

bool attn__nn_set_shape(attn_var *v, int ndim, const int64_t *shape) {
  int64_t n = 1;
  for (int d = ndim - 1; d >= 0; d--) {
    if (shape[d] < 0) return false;
    v->shape[d] = shape[d];
    v->stride[d] = n;
    if (!attn__mul_i64(n, shape[d], &n)) return false;
  }
  for (int d = ndim; d < ATTN_NN_MAX_DIMS; d++) {
    v->shape[d] = 1;
    v->stride[d] = 1;
  }
  v->ndim = ndim;
  v->numel = n;
  return (uint64_t)n <= SIZE_MAX / sizeof(float);
}

attn_var *attn__nn_new(attn_nn_ctx *ctx, const char *op, int ndim, const int64_t *shape) {
  if (ndim < 0 || ndim > ATTN_NN_MAX_DIMS)
    return attn__nn_fail(ctx, ATTN_STATUS_INVALID_ARGUMENT, "%s: ndim %d is outside 0..%d", op,
                         ndim, ATTN_NN_MAX_DIMS);
  if (ndim > 0 && !shape) return attn__nn_fail(ctx, ATTN_STATUS_NULL_POINTER, "%s: shape is NULL", op);
  attn_var tmp;
  memset(&tmp, 0, sizeof tmp);
  if (!attn__nn_set_shape(&tmp, ndim, shape)) {
    for (int d = 0; d < ndim; d++)
      if (shape[d] < 0)
        return attn__nn_fail(ctx, ATTN_STATUS_INVALID_ARGUMENT, "%s: dim %d is negative (%lld)",
                             op, d, (long long)shape[d]);
    return attn__nn_fail(ctx, ATTN_STATUS_OVERFLOW, "%s: the element count overflows", op);
  }
  attn_var *v = attn__nn_alloc(ctx, sizeof *v);
  float *data = v ? attn__nn_alloc(ctx, (size_t)tmp.numel * sizeof(float)) : NULL;
  if (!data) return attn__nn_fail(ctx, ATTN_STATUS_OUT_OF_MEMORY, "%s: out of memory", op);
  *v = tmp;
  v->data = data;
  v->ctx = ctx;
  return v;
}

attn_var *attn_nn_tensor(attn_nn_ctx *ctx, int ndim, const int64_t *shape, const float *data,
                         int requires_grad) {
  if (!attn__nn_check(ctx, "attn_nn_tensor", 0, NULL, 0)) return NULL;
  attn_var *v = attn__nn_new(ctx, "attn_nn_tensor", ndim, shape);
  if (!v) return NULL;
  if (data)
    memcpy(v->data, data, (size_t)v->numel * sizeof(float));
  else
    memset(v->data, 0, (size_t)v->numel * sizeof(float));
  v->requires_grad = requires_grad ? 1 : 0;
  return v;
}

attn_var *attn_nn_full(attn_nn_ctx *ctx, int ndim, const int64_t *shape, float value) {
  attn_var *v = attn_nn_tensor(ctx, ndim, shape, NULL, 0);
  if (v)
    for (int64_t i = 0; i < v->numel; i++) v->data[i] = value;
  return v;
}

attn_var *attn_nn_param_new(int ndim, const int64_t *shape, const char *name) {
  attn__clear_error();
  if (ndim < 0 || ndim > ATTN_NN_MAX_DIMS || (ndim > 0 && !shape)) {
    attn__fail(ATTN_STATUS_INVALID_ARGUMENT, "attn_nn_param_new: bad ndim %d or NULL shape", ndim);
    return NULL;
  }
  attn_var tmp;
  memset(&tmp, 0, sizeof tmp);
  if (!attn__nn_set_shape(&tmp, ndim, shape)) {
    attn__fail(ATTN_STATUS_INVALID_ARGUMENT, "attn_nn_param_new: bad shape");
    return NULL;
  }
  attn_var *p = attn__malloc(sizeof *p, ATTN_ALIGN);
  size_t bytes = (size_t)tmp.numel * sizeof(float);
  float *data = p ? attn__malloc(bytes, ATTN_ALIGN) : NULL;
  float *grad = data ? attn__malloc(bytes, ATTN_ALIGN) : NULL;
  if (!grad) {
    attn__free(data);
    attn__free(p);
    attn__fail(ATTN_STATUS_OUT_OF_MEMORY, "attn_nn_param_new: out of memory");
    return NULL;
  }
  memset(data, 0, bytes);
  memset(grad, 0, bytes);
  *p = tmp;
  p->data = data;
  p->grad = grad;
  p->requires_grad = 1;
  p->is_param = 1;
  p->name = name;
  return p;
}

void attn_nn_param_free(attn_var *p) {
  if (!p || !p->is_param) return;
  attn__free(p->grad);
  attn__free(p->data);
  attn__free(p);
}

void attn_nn_zero_grad(attn_var *p) {
  if (p && p->grad) memset(p->grad, 0, (size_t)p->numel * sizeof(float));
}

/* A released gradient buffer: the header lives in the buffer itself (arena allocations are at
 * least ATTN_ALIGN bytes). */
struct attn__nn_freed {
  struct attn__nn_freed *next;
  size_t bytes; /* the buffer's rounded size */
};

/* The smallest released buffer of at least `bytes` (unlinked), or NULL. The list holds a few
 * dozen buffers at most (the gradients live at one point of the backward), so a scan is cheap. */
static void *freed_take(attn_nn_ctx *ctx, size_t bytes) {
  struct attn__nn_freed **best = NULL;
  for (struct attn__nn_freed **f = &ctx->freed; *f; f = &(*f)->next)
    if ((*f)->bytes >= bytes && (!best || (*f)->bytes < (*best)->bytes)) {
      best = f;
      if ((*f)->bytes == bytes) break;
    }
  if (!best) return NULL;
  struct attn__nn_freed *b = *best;
  *best = b->next;
  return b;
}

void attn__nn_release_grad(attn_var *v) {
  if (!v->grad || v->is_param || !v->ctx) return;
  if (!v->base) {
    struct attn__nn_freed *f = (struct attn__nn_freed *)(void *)v->grad;
    const size_t bytes = (size_t)v->numel * sizeof(float);
    f->bytes = attn__round_up(bytes ? bytes : 1, ATTN_ALIGN); /* what attn__nn_alloc handed out */
    f->next = v->ctx->freed;
    v->ctx->freed = f;
  }
  v->grad = NULL;
}

/* v's gradient buffer; a new one is zeroed unless `fresh` is non-NULL, which then says whether
 * the buffer is new (its contents undefined). */
static float *grad_get(attn_var *v, bool *fresh) {
  if (fresh) *fresh = false;
  if (!v->requires_grad) return NULL;
  if (!v->grad && v->base) {
    /* A reshape view accumulates straight into its base's buffer (same elements, same order). */
    v->grad = grad_get(v->base, fresh);
    return v->grad;
  }
  if (!v->grad) {
    if (!v->ctx) return NULL;
    const size_t bytes = (size_t)v->numel * sizeof(float);
    v->grad = freed_take(v->ctx, attn__round_up(bytes ? bytes : 1, ATTN_ALIGN));
    if (!v->grad) v->grad = attn__nn_alloc(v->ctx, bytes);
    if (v->grad && fresh) *fresh = true;
    else if (v->grad) memset(v->grad, 0, bytes);
  }
  return v->grad;
}

float *attn__nn_grad(attn_var *v) { return grad_get(v, NULL); }

float *attn__nn_in_grad_fresh(attn_nn_node *n, int i, bool *oom, bool *fresh) {
  *fresh = false;
  attn_var *v = n->in[i];
  if (!v || !v->requires_grad) return NULL;
  float *g = grad_get(v, fresh);
  if (!g) *oom = true;
  return g;
}

float *attn__nn_in_grad(attn_nn_node *n, int i, bool *oom) {
  attn_var *v = n->in[i];
  if (!v || !v->requires_grad) return NULL;
  float *g = attn__nn_grad(v);
  if (!g) *oom = true;
  return g;
}

/* ---- initialisers ---------------------------------------------------------------------------- */

/* Four uniforms in [0, 1) for block c of the stream: Philox counter (c, stream), key = seed. */
static void philox_uniforms(uint64_t seed, uint64_t c, uint32_t stream, float u[4]) {
  uint32_t ctr[4] = {(uint32_t)c, (uint32_t)(c >> 32), stream, 0x6e6e5f69u};
  uint32_t key[2] = {(uint32_t)seed, (uint32_t)(seed >> 32)};
  uint32_t r[4];
  attn_philox4x32(ctr, key, r);
  for (int i = 0; i < 4; i++) u[i] = attn_uniform_from_u32(r[i]);
}

void attn_nn_init_uniform(attn_var *p, float lo, float hi, uint64_t seed) {
  if (!p) return;
  for (int64_t i = 0; i < p->numel; i += 4) {
    float u[4];
    philox_uniforms(seed, (uint64_t)i / 4, 0, u);
    for (int j = 0; j < 4 && i + j < p->numel; j++) p->data[i + j] = lo + (hi - lo) * u[j];
  }
}

void attn_nn_init_normal(attn_var *p, float mean, float std, uint64_t seed) {
  if (!p) return;
  for (int64_t i = 0; i < p->numel; i += 4) {
    float u[4];
    philox_uniforms(seed, (uint64_t)i / 4, 1, u);
    for (int j = 0; j < 4 && i + j < p->numel; j += 2) {
      /* Box-Muller on (u[j], u[j+1]); 1 - u is in (0, 1], so the log is finite. */
      double r = sqrt(-2.0 * log(1.0 - (double)u[j]));
      double t = 6.283185307179586 * (double)u[j + 1];
      p->data[i + j] = mean + std * (float)(r * cos(t));
      if (i + j + 1 < p->numel) p->data[i + j + 1] = mean + std * (float)(r * sin(t));
    }
  }
}

void attn_nn_init_xavier_uniform(attn_var *p, int64_t fan_in, int64_t fan_out, float gain,
                                 uint64_t seed) {
  if (!p || fan_in + fan_out <= 0) return;
  float a = gain * (float)sqrt(6.0 / (double)(fan_in + fan_out));
  attn_nn_init_uniform(p, -a, a, seed);
}

void attn_nn_init_kaiming_normal(attn_var *p, int64_t fan_in, float gain, uint64_t seed) {
  if (!p || fan_in <= 0) return;
  attn_nn_init_normal(p, 0.0f, gain / (float)sqrt((double)fan_in), seed);
}

void attn_nn_init_trunc_normal(attn_var *p, float mean, float std, float lo, float hi, uint64_t seed) {
  if (!p || !(lo < hi)) return;
  for (int64_t i = 0; i < p->numel; i++) {
    float x = mean;
    for (uint32_t attempt = 0; attempt < 64; attempt++) {
      /* Stream 2 + attempt of block i: two uniforms give one Box-Muller draw. */
      float u[4];
      philox_uniforms(seed, (uint64_t)i, 2 + attempt, u);
      double r = sqrt(-2.0 * log(1.0 - (double)u[0]));
      x = mean + std * (float)(r * cos(6.283185307179586 * (double)u[1]));
      if (x >= lo && x <= hi) break;
      x = x < lo ? lo : hi;
    }
    p->data[i] = x;
  }
}

void attn_nn_init_const(attn_var *p, float value) {
  if (!p) return;
  for (int64_t i = 0; i < p->numel; i++) p->data[i] = value;
}
