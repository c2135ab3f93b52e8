/* Elementwise ops: broadcasting binary ops, scale, unary activations, dropout. */
#include "nn_internal.h"

#include "../cpu/gelu.h"

/* ---- broadcasting ------------------------------------------------------------------------------ */

/* The output shape of a op b and each input's strides over the output's dims (0 on broadcast). */
typedef struct bcast {
  int nd;
  int64_t shape[ATTN_NN_MAX_DIMS];
  int64_t sa[ATTN_NN_MAX_DIMS], sb[ATTN_NN_MAX_DIMS];
} bcast;

static bool bcast_make(bcast *bc, const attn_var *a, const attn_var *b) {
  int nd = a->ndim > b->ndim ? a->ndim : b->ndim;
  bc->nd = nd;
  for (int d = 0; d < nd; d++) {
    int da = d - (nd - a->ndim), db = d - (nd - b->ndim);
    int64_t na = da >= 0 ? a->shape[da] : 1, nb = db >= 0 ? b->shape[db] : 1;
    if (na != nb && na != 1 && nb != 1) return false;
    bc->shape[d] = na == 1 ? nb : na;
    bc->sa[d] = (da >= 0 && na != 1) ? a->stride[da] : 0;
    bc->sb[d] = (db >= 0 && nb != 1) ? b->stride[db] : 0;
  }
  return true;
}

/* Calls body(i, ia, ib) for every output element i in order, with the input offsets. The last
 * dim runs in the inner loop. */
#define BCAST_FOR(bc, numel, BODY)                                                                 \
  do {                                                                                             \
    int64_t idx_[ATTN_NN_MAX_DIMS] = {0};                                                          \
    const int nd_ = (bc)->nd;                                                                      \
    const int64_t inner_ = nd_ ? (bc)->shape[nd_ - 1] : 1;                                         \
    const int64_t sai_ = nd_ ? (bc)->sa[nd_ - 1] : 0, sbi_ = nd_ ? (bc)->sb[nd_ - 1] : 0;         \
    int64_t oa_ = 0, ob_ = 0;                                                                      \
    for (int64_t base_ = 0; inner_ > 0 && base_ < (numel); base_ += inner_) {                      \
      for (int64_t j_ = 0; j_ < inner_; j_++) {                                                    \
        const int64_t i = base_ + j_, ia = oa_ + j_ * sai_, ib = ob_ + j_ * sbi_;                  \
        BODY;                                                                                      \
      }                                                                                            \
      for (int d_ = nd_ - 2; d_ >= 0; d_--) {                                                      \
        idx_[d_]++;                                                                                \
        oa_ += (bc)->sa[d_];                                                                       \
        ob_ += (bc)->sb[d_];                                                                       \
        if (idx_[d_] < (bc)->shape[d_]) break;                                                     \
        oa_ -= idx_[d_] * (bc)->sa[d_];                                                            \
        ob_ -= idx_[d_] * (bc)->sb[d_];                                                            \
        idx_[d_] = 0;                                                                              \
      }                                                                                            \
    }                                                                                              \
  } while (0)

enum { BIN_ADD, BIN_SUB, BIN_MUL, BIN_DIV };
static const char *const bin_names[] = {"attn_nn_add", "attn_nn_sub", "attn_nn_mul", "attn_nn_div"};

/* Elementwise work is split in chunks of this many elements over the thread pool. */
#define ELEM_GRAIN 8192

/* Same-shape binary ops (no broadcasting; the residual adds of a transformer): elements split over
 * the pool, each computed exactly as the broadcasting loop does. */
typedef struct bin_job {
  int kind;
  const float *xa, *xb, *dy;
  float *out, *ga, *gb;
} bin_job;

static void bin_fwd_range(void *arg, int64_t i0, int64_t i1) {
  const bin_job *j = arg;
  const float *xa = j->xa, *xb = j->xb;
  float *out = j->out;
  switch (j->kind) {
    case BIN_ADD: for (int64_t i = i0; i < i1; i++) out[i] = xa[i] + xb[i]; break;
    case BIN_SUB: for (int64_t i = i0; i < i1; i++) out[i] = xa[i] - xb[i]; break;
    case BIN_MUL: for (int64_t i = i0; i < i1; i++) out[i] = xa[i] * xb[i]; break;
    default: for (int64_t i = i0; i < i1; i++) out[i] = xa[i] / xb[i]; break;
  }
}

static void bin_bwd_range(void *arg, int64_t i0, int64_t i1) {
  const bin_job *j = arg;
  const float *dy = j->dy, *xa = j->xa, *xb = j->xb;
  float *ga = j->ga, *gb = j->gb;
  switch (j->kind) {
    case BIN_ADD:
    case BIN_SUB:
      if (ga)
        for (int64_t i = i0; i < i1; i++) ga[i] += dy[i];
      if (gb && j->kind == BIN_ADD)
        for (int64_t i = i0; i < i1; i++) gb[i] += dy[i];
      else if (gb)
        for (int64_t i = i0; i < i1; i++) gb[i] -= dy[i];
      break;
    case BIN_MUL:
      for (int64_t i = i0; i < i1; i++) {
        if (ga) ga[i] += dy[i] * xb[i];
        if (gb) gb[i] += dy[i] * xa[i];
      }
      break;
    default:
      for (int64_t i = i0; i < i1; i++) {
        const float inv = 1.0f / xb[i];
        if (ga) ga[i] += dy[i] * inv;
        if (gb) gb[i] -= dy[i] * xa[i] * inv * inv;
      }
      break;
  }
}

static attn_status binary_backward(attn_nn_node *n) {
  attn_var *a = n->in[0], *b = n->in[1];
  bool oom = false;
  float *ga = attn__nn_in_grad(n, 0, &oom), *gb = attn__nn_in_grad(n, 1, &oom);
  if (oom) return ATTN_STATUS_OUT_OF_MEMORY;
  const float *dy = n->out->grad, *xa = a->data, *xb = b->data;
  const int64_t numel = n->out->numel;
  if (attn__nn_same_shape(a, b)) { /* a op a: ga = gb, both updates of element i stay in one chunk */
    bin_job j = {(int)n->iarg[0], xa, xb, dy, NULL, ga, gb};
    attn__nn_parallel_range(numel, ELEM_GRAIN, bin_bwd_range, &j);
    return ATTN_OK;
  }
  bcast bc;
  bcast_make(&bc, a, b);
  switch ((int)n->iarg[0]) {
    case BIN_ADD:
      BCAST_FOR(&bc, numel, {
        if (ga) ga[ia] += dy[i];
        if (gb) gb[ib] += dy[i];
      });
      break;
    case BIN_SUB:
      BCAST_FOR(&bc, numel, {
        if (ga) ga[ia] += dy[i];
        if (gb) gb[ib] -= dy[i];
      });
      break;
    case BIN_MUL:
      BCAST_FOR(&bc, numel, {
        if (ga) ga[ia] += dy[i] * xb[ib];
        if (gb) gb[ib] += dy[i] * xa[ia];
      });
      break;
    default:
      BCAST_FOR(&bc, numel, {
        const float inv = 1.0f / xb[ib];
        if (ga) ga[ia] += dy[i] * inv;
        if (gb) gb[ib] -= dy[i] * xa[ia] * inv * inv;
      });
      break;
  }
  return ATTN_OK;
}

static attn_var *binary(attn_nn_ctx *ctx, int kind, attn_var *a, attn_var *b) {
  const char *op = bin_names[kind];
  attn_var *ins[2] = {a, b};
  if (!attn__nn_check(ctx, op, 2, ins, 0)) return NULL;
  bcast bc;
  if (!bcast_make(&bc, a, b)) {
    char sa[96], sb[96];
    return attn__nn_fail(ctx, ATTN_STATUS_SHAPE_MISMATCH, "%s: shapes %s and %s do not broadcast",
                         op, attn__nn_shape_str(a, sa, sizeof sa), attn__nn_shape_str(b, sb, sizeof sb));
  }
  attn_var *y = attn__nn_new(ctx, op, bc.nd, bc.shape);
  if (!y) return NULL;
  const float *xa = a->data, *xb = b->data;
  float *out = y->data;
  if (attn__nn_same_shape(a, b)) {
    bin_job j = {kind, xa, xb, NULL, out, NULL, NULL};
    attn__nn_parallel_range(y->numel, ELEM_GRAIN, bin_fwd_range, &j);
  } else {
    switch (kind) {
      case BIN_ADD: BCAST_FOR(&bc, y->numel, out[i] = xa[ia] + xb[ib]); break;
      case BIN_SUB: BCAST_FOR(&bc, y->numel, out[i] = xa[ia] - xb[ib]); break;
      case BIN_MUL: BCAST_FOR(&bc, y->numel, out[i] = xa[ia] * xb[ib]); break;
      default: BCAST_FOR(&bc, y->numel, out[i] = xa[ia] / xb[ib]); break;
    }
  }
  attn_nn_node *node;
  if (!attn__nn_record(ctx, op, y, binary_backward, 2, ins, &node)) return NULL;
  if (node) node->iarg[0] = kind;
  return y;
}

attn_var *attn_nn_add(attn_nn_ctx *ctx, attn_var *a, attn_var *b) { return binary(ctx, BIN_ADD, a, b); }
attn_var *attn_nn_sub(attn_nn_ctx *ctx, attn_var *a, attn_var *b) { return binary(ctx, BIN_SUB, a, b); }
attn_var *attn_nn_mul(attn_nn_ctx *ctx, attn_var *a, attn_var *b) { return binary(ctx, BIN_MUL, a, b); }
attn_var *attn_nn_div(attn_nn_ctx *ctx, attn_var *a, attn_var *b) { return binary(ctx, BIN_DIV, a, b); }

/* ---- scale ------------------------------------------------------------------------------------- */

static attn_status scale_backward(attn_nn_node *n) {
  bool oom = false;
  float *gx = attn__nn_in_grad(n, 0, &oom);
  if (oom) return ATTN_STATUS_OUT_OF_MEMORY;
  const float s = n->farg[0], *dy = n->out->grad;
  for (int64_t i = 0; i < n->out->numel; i++) gx[i] += s * dy[i];
  return ATTN_OK;
}

attn_var *attn_nn_scale(attn_nn_ctx *ctx, attn_var *x, float s, float t) {
  static const char *op = "attn_nn_scale";
  if (!attn__nn_check(ctx, op, 1, &x, 0)) return NULL;
  attn_var *y = attn__nn_new(ctx, op, x->ndim, x->shape);
  if (!y) return NULL;
  for (int64_t i = 0; i < x->numel; i++) y->data[i] = s * x->data[i] + t;
  attn_nn_node *node;
  if (!attn__nn_record(ctx, op, y, scale_backward, 1, &x, &node)) return NULL;
  if (node) node->farg[0] = s;
  return y;
}

/* ---- unary ------------------------------------------------------------------------------------- */

#define SQRT_2_OVER_PI 0.7978845608028654f

static inline float sigmoidf(float x) {
  /* Stable for both signs: exp never overflows. */
  if (x >= 0) return 1.0f / (1.0f + expf(-x));
  float e = expf(x);
  return e / (1.0f + e);
}

/* GELU in its erf form is not here: unary_fwd_range / unary_bwd_range hand it to the vectorised
 * kernel of src/cpu/gelu.c. */
static float unary_f(int kind, float x, float a) {
  switch (kind) {
    case ATTN_NN_UNARY_LEAKY_RELU: return x > 0 ? x : a * x;
    case ATTN_NN_UNARY_ELU: return x > 0 ? x : a * expm1f(x);
    case ATTN_NN_UNARY_SOFTPLUS: return x > 20.0f ? x : log1pf(expf(x));
    case ATTN_NN_UNARY_SQRT: return sqrtf(x);
    case ATTN_NN_UNARY_TANH: return tanhf(x);
    case ATTN_NN_UNARY_RELU: return x > 0 ? x : 0.0f;
    case ATTN_NN_UNARY_GELU_TANH:
      return 0.5f * x * (1.0f + tanhf(SQRT_2_OVER_PI * (x + 0.044715f * x * x * x)));
    case ATTN_NN_UNARY_SILU: return x * sigmoidf(x);
    case ATTN_NN_UNARY_SIGMOID: return sigmoidf(x);
    case ATTN_NN_UNARY_EXP: return expf(x);
    default: return logf(x);
  }
}

/* dy/dx from the input x, the output y and the op's parameter a. */
static float unary_df(int kind, float x, float y, float a) {
  switch (kind) {
    case ATTN_NN_UNARY_LEAKY_RELU: return x > 0 ? 1.0f : a;
    case ATTN_NN_UNARY_ELU: return x > 0 ? 1.0f : y + a;
    case ATTN_NN_UNARY_SOFTPLUS: return sigmoidf(x);
    case ATTN_NN_UNARY_SQRT: return 0.5f / y;
    case ATTN_NN_UNARY_TANH: return 1.0f - y * y;
    case ATTN_NN_UNARY_RELU: return x > 0 ? 1.0f : 0.0f;
    case ATTN_NN_UNARY_GELU_TANH: {
      float t = tanhf(SQRT_2_OVER_PI * (x + 0.044715f * x * x * x));
      return 0.5f * (1.0f + t) +
             0.5f * x * (1.0f - t * t) * SQRT_2_OVER_PI * (1.0f + 3.0f * 0.044715f * x * x);
    }
    case ATTN_NN_UNARY_SILU: {
      float s = sigmoidf(x);
      return s * (1.0f + x * (1.0f - s));
    }
    case ATTN_NN_UNARY_SIGMOID: return y * (1.0f - y);
    case ATTN_NN_UNARY_EXP: return y;
    default: return 1.0f / x;
  }
}


typedef struct unary_job {
  int kind;
  int acc; /* backward: accumulate into out (else out is new: write it) */
  float a;
  const float *x, *y, *dy;
  float *out;
} unary_job;

static void unary_fwd_range(void *arg, int64_t begin, int64_t end) {
  const unary_job *j = arg;
  if (j->kind == ATTN_NN_UNARY_GELU_ERF) { /* the vectorised kernel (src/cpu/gelu.c) */
    attn__gelu_erf_forward(j->out + begin, j->x + begin, end - begin);
    return;
  }
  for (int64_t i = begin; i < end; i++) j->out[i] = unary_f(j->kind, j->x[i], j->a);
}

static void unary_bwd_range(void *arg, int64_t begin, int64_t end) {
  const unary_job *j = arg;
  if (j->kind == ATTN_NN_UNARY_GELU_ERF) {
    attn__gelu_erf_backward(j->out + begin, j->dy + begin, j->x + begin, end - begin, j->acc);
    return;
  }
  if (j->acc)
    for (int64_t i = begin; i < end; i++) j->out[i] += j->dy[i] * unary_df(j->kind, j->x[i], j->y[i], j->a);
  else
    for (int64_t i = begin; i < end; i++) j->out[i] = j->dy[i] * unary_df(j->kind, j->x[i], j->y[i], j->a);
}

static attn_status unary_backward(attn_nn_node *n) {
  bool oom = false, fresh;
  float *gx = attn__nn_in_grad_fresh(n, 0, &oom, &fresh);
  if (oom) return ATTN_STATUS_OUT_OF_MEMORY;
  unary_job j = {(int)n->iarg[0], !fresh, n->farg[0], n->in[0]->data, n->out->data, n->out->grad, gx};
  attn__nn_parallel_range(n->out->numel, ELEM_GRAIN, unary_bwd_range, &j);
  return ATTN_OK;
}

static attn_var *unary(attn_nn_ctx *ctx, attn_nn_unary kind, attn_var *x, float a) {
  static const char *op = "attn_nn_unary_op";
  if (!attn__nn_check(ctx, op, 1, &x, 0)) return NULL;
  if ((int)kind < ATTN_NN_UNARY_TANH || (int)kind > ATTN_NN_UNARY_SQRT)
    return attn__nn_fail(ctx, ATTN_STATUS_INVALID_ARGUMENT, "%s: unknown kind %d", op, (int)kind);
  attn_var *y = attn__nn_new(ctx, op, x->ndim, x->shape);
  if (!y) return NULL;
  unary_job j = {(int)kind, 0, a, x->data, NULL, NULL, y->data};
  attn__nn_parallel_range(x->numel, ELEM_GRAIN, unary_fwd_range, &j);
  attn_nn_node *node;
  if (!attn__nn_record(ctx, op, y, unary_backward, 1, &x, &node)) return NULL;
  if (node) {
    node->iarg[0] = kind;
    node->farg[0] = a;
  }
  return y;
}

attn_var *attn_nn_unary_op(attn_nn_ctx *ctx, attn_nn_unary kind, attn_var *x) {
  const float a = kind == ATTN_NN_UNARY_LEAKY_RELU ? 0.01f : 1.0f;
  return unary(ctx, kind, x, a);
}
attn_var *attn_nn_leaky_relu(attn_nn_ctx *ctx, attn_var *x, float slope) {
  return unary(ctx, ATTN_NN_UNARY_LEAKY_RELU, x, slope);
}
attn_var *attn_nn_elu(attn_nn_ctx *ctx, attn_var *x, float alpha) { return unary(ctx, ATTN_NN_UNARY_ELU, x, alpha); }
attn_var *attn_nn_softplus(attn_nn_ctx *ctx, attn_var *x) { return unary(ctx, ATTN_NN_UNARY_SOFTPLUS, x, 0.0f); }
attn_var *attn_nn_sqrt(attn_nn_ctx *ctx, attn_var *x) { return unary(ctx, ATTN_NN_UNARY_SQRT, x, 0.0f); }

attn_var *attn_nn_tanh(attn_nn_ctx *ctx, attn_var *x) { return attn_nn_unary_op(ctx, ATTN_NN_UNARY_TANH, x); }
attn_var *attn_nn_relu(attn_nn_ctx *ctx, attn_var *x) { return attn_nn_unary_op(ctx, ATTN_NN_UNARY_RELU, x); }
attn_var *attn_nn_gelu(attn_nn_ctx *ctx, attn_var *x, int approximate) {
  return attn_nn_unary_op(ctx, approximate ? ATTN_NN_UNARY_GELU_TANH : ATTN_NN_UNARY_GELU_ERF, x);
}
attn_var *attn_nn_silu(attn_nn_ctx *ctx, attn_var *x) { return attn_nn_unary_op(ctx, ATTN_NN_UNARY_SILU, x); }
attn_var *attn_nn_sigmoid(attn_nn_ctx *ctx, attn_var *x) { return attn_nn_unary_op(ctx, ATTN_NN_UNARY_SIGMOID, x); }
attn_var *attn_nn_exp(attn_nn_ctx *ctx, attn_var *x) { return attn_nn_unary_op(ctx, ATTN_NN_UNARY_EXP, x); }
attn_var *attn_nn_log(attn_nn_ctx *ctx, attn_var *x) { return attn_nn_unary_op(ctx, ATTN_NN_UNARY_LOG, x); }

/* ---- dropout ----------------------------------------------------------------------------------- */

/* The keep multiplier of elements [i, i+4) (i a multiple of 4): 1/(1-p) or 0. */
static void dropout_block(uint64_t seed, float p, int64_t i, float mult[4]) {
  uint64_t c = (uint64_t)i / 4;
  uint32_t ctr[4] = {(uint32_t)c, (uint32_t)(c >> 32), 0, 0};
  uint32_t key[2] = {(uint32_t)seed, (uint32_t)(seed >> 32)};
  uint32_t r[4];
  attn_philox4x32(ctr, key, r);
  const float keep = 1.0f / (1.0f - p);
  for (int j = 0; j < 4; j++) mult[j] = attn_uniform_from_u32(r[j]) >= p ? keep : 0.0f;
}

static attn_status dropout_backward(attn_nn_node *n) {
  bool oom = false;
  float *gx = attn__nn_in_grad(n, 0, &oom);
  if (oom) return ATTN_STATUS_OUT_OF_MEMORY;
  const uint64_t seed = (uint64_t)n->iarg[0];
  const float p = n->farg[0], *dy = n->out->grad;
  const int64_t numel = n->out->numel;
  for (int64_t i = 0; i < numel; i += 4) {
    float m[4];
    dropout_block(seed, p, i, m);
    for (int j = 0; j < 4 && i + j < numel; j++) gx[i + j] += dy[i + j] * m[j];
  }
  return ATTN_OK;
}

attn_var *attn_nn_dropout(attn_nn_ctx *ctx, attn_var *x, float p, uint64_t seed) {
  static const char *op = "attn_nn_dropout";
  if (!attn__nn_check(ctx, op, 1, &x, 0)) return NULL;
  if (!(p >= 0.0f && p < 1.0f))
    return attn__nn_fail(ctx, ATTN_STATUS_INVALID_ARGUMENT, "%s: p = %g is outside [0, 1)", op, (double)p);
  if (p == 0.0f) return attn_nn_scale(ctx, x, 1.0f, 0.0f);
  attn_var *y = attn__nn_new(ctx, op, x->ndim, x->shape);
  if (!y) return NULL;
  for (int64_t i = 0; i < x->numel; i += 4) {
    float m[4];
    dropout_block(seed, p, i, m);
    for (int j = 0; j < 4 && i + j < x->numel; j++) y->data[i + j] = x->data[i + j] * m[j];
  }
  attn_nn_node *node;
  if (!attn__nn_record(ctx, op, y, dropout_backward, 1, &x, &node)) return NULL;
  if (node) {
    node->iarg[0] = (int64_t)seed;
    node->farg[0] = p;
  }
  return y;
}
