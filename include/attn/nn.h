/*
 * attn/nn.h — the training layer of libattn: owning f32 tensors with gradients, a tape for
 * reverse-mode automatic differentiation, differentiable ops, layers, initialisers and optimizers.
 *
 * The model of memory and errors (read this first):
 *
 *   - A context (attn_nn_ctx) owns one training step: every tensor an op creates (activations,
 *     their gradients, the tape that records how they were made) lives in the context's arena.
 *     attn_nn_ctx_reset() frees all of it in one call; tensors of the context are invalid after it.
 *   - Parameters are tensors created with attn_nn_param_new(). They live outside any arena, own a
 *     gradient buffer of their shape (zeroed at creation, accumulated by attn_backward, cleared by
 *     attn_nn_zero_grad) and are freed with attn_nn_param_free().
 *   - Ops are sticky-error calls: each returns the new tensor, or NULL on error. The first error
 *     records an attn_status in the context (attn_nn_ctx_status) and a message (attn_last_error and
 *     attn_nn_ctx_error). Once the context holds an error every op returns NULL at once and keeps
 *     the first error, so the NULL an op returned can be passed on and a whole forward pass can be
 *     written without checks and checked once at the end. A NULL input while the context is
 *     fine is itself an error (NULL_POINTER). A caller's mistake (shape mismatch, NULL, bad axis,
 *     an index out of range, a tensor of another context) is an error, never a crash.
 *   - Every tensor is contiguous row-major; stride[] is stored for the caller's convenience and
 *     always describes that layout. reshape returns a view that shares its input's data and
 *     gradient buffer (no copy); permute, transpose, slice, concat and split return new
 *     contiguous tensors (a copy). Do not write into an op's input or result data while its
 *     tape is alive: backwards read them.
 *   - A tensor requires a gradient if it is a parameter, a leaf made with requires_grad, or the
 *     result of an op on such a tensor while gradients are enabled (attn_nn_set_grad_enabled).
 *     Only such results are recorded on the tape; in no_grad mode nothing is recorded.
 *   - attn_backward(loss) walks the tape once, from the newest record to the oldest, and
 *     accumulates (+=) into the grad of every tensor that requires one. Gradients accumulate
 *     across all uses of a tensor. A tape can be walked once; reset the context to record again.
 *     The gradient of an op's result is released (grad = NULL) as soon as its own record has run,
 *     and its buffer is reused for later gradients, so a backward holds only the gradients still
 *     live; parameters and leaves made with requires_grad keep theirs (as PyTorch keeps only leaf
 *     gradients).
 *   - Not thread-safe per context: one thread uses a context at a time. Ops use the library's
 *     thread pool internally (GEMM, attention); results do not depend on the thread count.
 *
 * Shapes are written outermost first. Up to ATTN_NN_MAX_DIMS dims; a 0-dim tensor is a scalar.
 */
#ifndef ATTN_NN_H
#define ATTN_NN_H

#include "attn.h"

#ifdef __cplusplus
extern "C" {
#endif

#define ATTN_NN_MAX_DIMS 6

typedef struct attn_nn_ctx attn_nn_ctx;
typedef struct attn_nn_node attn_nn_node;

/* An owning f32 tensor. Read the fields; do not change them except data/grad contents. */
typedef struct attn_var {
  float *data;                       /* numel floats, contiguous row-major */
  float *grad;                       /* numel floats or NULL (allocated on first accumulation) */
  int32_t ndim;                      /* 0..ATTN_NN_MAX_DIMS */
  int64_t shape[ATTN_NN_MAX_DIMS];
  int64_t stride[ATTN_NN_MAX_DIMS];  /* in elements; contiguous row-major always */
  int64_t numel;
  int32_t requires_grad;             /* 1 if gradients flow into this tensor */
  int32_t is_param;                  /* 1 for attn_nn_param_new tensors (not in an arena) */
  attn_nn_ctx *ctx;                  /* owning context; NULL for parameters */
  attn_nn_node *node;                /* the tape record that made it; NULL for leaves */
  const char *name;                  /* optional, not owned (parameters: for checkpoints) */
  struct attn_var *base;             /* reshape views: the tensor whose data and grad this one
                                      * shares; NULL otherwise */
} attn_var;

/* ---- contexts ------------------------------------------------------------------------------- */

/* A new context with an empty arena; NULL when out of memory. Gradients are enabled. */
ATTN_API attn_nn_ctx *attn_nn_ctx_new(void);
/* Frees the context and everything in its arena. NULL is fine. */
ATTN_API void attn_nn_ctx_free(attn_nn_ctx *ctx);
/* Frees every tensor and tape record of the context in one call, clears its status, and keeps
 * (at most) one arena block sized to the last step's use, so the next step of the same size
 * allocates nothing. Parameter gradients are not touched. */
ATTN_API void attn_nn_ctx_reset(attn_nn_ctx *ctx);
/* The first error since the last reset (ATTN_OK when none), and its message ("" when none). */
ATTN_API attn_status attn_nn_ctx_status(const attn_nn_ctx *ctx);
ATTN_API const char *attn_nn_ctx_error(const attn_nn_ctx *ctx);
/* Enable (1) or disable (0) recording; returns the previous setting. With recording disabled
 * (no_grad), ops compute values only and nothing goes on the tape. */
ATTN_API int attn_nn_set_grad_enabled(attn_nn_ctx *ctx, int enabled);
/* Number of tape records and arena bytes in use (for tests and memory reports). */
ATTN_API int64_t attn_nn_tape_size(const attn_nn_ctx *ctx);
ATTN_API size_t attn_nn_arena_used(const attn_nn_ctx *ctx);

/* ---- tensors -------------------------------------------------------------------------------- */

/* A tensor in the arena of ctx with `ndim` dims of `shape`: zeros, a copy of `data` (numel floats,
 * may be NULL for zeros), or a constant. requires_grad = 1 makes it a leaf whose grad attn_backward
 * fills (allocated in the arena). NULL on error (recorded in ctx). */
ATTN_API attn_var *attn_nn_tensor(attn_nn_ctx *ctx, int ndim, const int64_t *shape,
                                  const float *data, int requires_grad);
ATTN_API attn_var *attn_nn_full(attn_nn_ctx *ctx, int ndim, const int64_t *shape, float value);

/* A parameter: zero data, zero gradient, requires_grad = 1, allocated through the allocator hook.
 * `name` is kept as a pointer (not copied); it may be NULL. NULL when out of memory or for a bad
 * shape (attn_last_error says which). Free with attn_nn_param_free (NULL is fine). */
ATTN_API attn_var *attn_nn_param_new(int ndim, const int64_t *shape, const char *name);
ATTN_API void attn_nn_param_free(attn_var *p);
/* Sets p->grad to zeros (p must be a parameter or have a grad). */
ATTN_API void attn_nn_zero_grad(attn_var *p);

/* ---- autodiff ------------------------------------------------------------------------------- */

/* Backpropagate from `loss`, a one-element tensor (any shape with numel 1), seeding dloss = 1.
 * Accumulates (+=) into the grad of every tensor on the tape that requires one, parameters
 * included. Walks the tape once; a second call on the same tape is INVALID_ARGUMENT.
 * Errors: NULL_POINTER, INVALID_ARGUMENT (numel != 1, loss does not require grad, tape already
 * walked, the context has a sticky error), OUT_OF_MEMORY (grads are then partly accumulated). */
ATTN_API attn_status attn_backward(attn_var *loss);
/* Same with a caller's seed gradient dout (out->numel floats) for any output tensor. */
ATTN_API attn_status attn_backward_from(attn_var *out, const float *dout);

/* ---- ops: linear algebra -------------------------------------------------------------------- */

/* c = op(a) op(b), op = transpose of the last two dims when trans_* is set.
 *   a: (..., M, K) (or (..., K, M) transposed), b: (..., K, N) (or (..., N, K)), both >= 2 dims.
 *   Batch dims (all but the last two) of a and b must be equal, or b is 2-d and shared by every
 *   batch of a. c: (batch of a..., M, N). Uses attn_gemm. */
ATTN_API attn_var *attn_nn_matmul(attn_nn_ctx *ctx, attn_var *a, attn_var *b, int trans_a,
                                  int trans_b);
/* y = x W^T + b. x: (..., in), w: (out, in), b: (out) or NULL. y: (..., out). */
ATTN_API attn_var *attn_nn_linear(attn_nn_ctx *ctx, attn_var *x, attn_var *w, attn_var *b);

/* ---- ops: elementwise ----------------------------------------------------------------------- */

/* Binary ops with numpy broadcasting (shapes aligned at the last dim; a dim of 1 or a missing dim
 * broadcasts). Gradients of broadcast inputs are summed over the broadcast dims. */
ATTN_API attn_var *attn_nn_add(attn_nn_ctx *ctx, attn_var *a, attn_var *b);
ATTN_API attn_var *attn_nn_sub(attn_nn_ctx *ctx, attn_var *a, attn_var *b);
ATTN_API attn_var *attn_nn_mul(attn_nn_ctx *ctx, attn_var *a, attn_var *b);
ATTN_API attn_var *attn_nn_div(attn_nn_ctx *ctx, attn_var *a, attn_var *b);
/* y = s * x + t. */
ATTN_API attn_var *attn_nn_scale(attn_nn_ctx *ctx, attn_var *x, float s, float t);

typedef enum attn_nn_unary {
  ATTN_NN_UNARY_TANH = 0,
  ATTN_NN_UNARY_RELU = 1,
  ATTN_NN_UNARY_GELU_ERF = 2,  /* x * Phi(x) */
  ATTN_NN_UNARY_GELU_TANH = 3, /* 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))) */
  ATTN_NN_UNARY_SILU = 4,      /* x * sigmoid(x) */
  ATTN_NN_UNARY_SIGMOID = 5,
  ATTN_NN_UNARY_EXP = 6,
  ATTN_NN_UNARY_LOG = 7,       /* natural log; x <= 0 gives -inf / NaN as libm does */
  ATTN_NN_UNARY_LEAKY_RELU = 8, /* x > 0 ? x : slope x (slope 0.01 through attn_nn_unary_op) */
  ATTN_NN_UNARY_ELU = 9,        /* x > 0 ? x : alpha (exp(x) - 1) (alpha 1 through unary_op) */
  ATTN_NN_UNARY_SOFTPLUS = 10,  /* log(1 + exp(x)); x for x > 20 */
  ATTN_NN_UNARY_SQRT = 11,      /* sqrt(x); gradient 0.5 / sqrt(x) (inf at 0) */
} attn_nn_unary;
ATTN_API attn_var *attn_nn_unary_op(attn_nn_ctx *ctx, attn_nn_unary kind, attn_var *x);
ATTN_API attn_var *attn_nn_tanh(attn_nn_ctx *ctx, attn_var *x);
ATTN_API attn_var *attn_nn_relu(attn_nn_ctx *ctx, attn_var *x);
/* approximate = 0: erf form; 1: tanh form. */
ATTN_API attn_var *attn_nn_gelu(attn_nn_ctx *ctx, attn_var *x, int approximate);
ATTN_API attn_var *attn_nn_silu(attn_nn_ctx *ctx, attn_var *x);
ATTN_API attn_var *attn_nn_sigmoid(attn_nn_ctx *ctx, attn_var *x);
ATTN_API attn_var *attn_nn_exp(attn_nn_ctx *ctx, attn_var *x);
ATTN_API attn_var *attn_nn_log(attn_nn_ctx *ctx, attn_var *x);
ATTN_API attn_var *attn_nn_leaky_relu(attn_nn_ctx *ctx, attn_var *x, float slope);
ATTN_API attn_var *attn_nn_elu(attn_nn_ctx *ctx, attn_var *x, float alpha);
ATTN_API attn_var *attn_nn_softplus(attn_nn_ctx *ctx, attn_var *x);
ATTN_API attn_var *attn_nn_sqrt(attn_nn_ctx *ctx, attn_var *x);

/* Inverted dropout: each element is kept with probability 1 - p and scaled by 1/(1 - p); the
 * mask of element i is a pure function of (seed, i) through attn_philox4x32 (counter (i/4, 0, 0,
 * 0), key (seed lo, seed hi), word i % 4 compared with p via attn_uniform_from_u32), regenerated
 * in the backward. p in [0, 1); p = 0 returns a copy. */
ATTN_API attn_var *attn_nn_dropout(attn_nn_ctx *ctx, attn_var *x, float p, uint64_t seed);

/* ---- ops: shape ----------------------------------------------------------------------------- */

/* Same elements, new shape (numel must match; one entry may be -1 to infer it). The result is a
 * view: it shares x's data and (when one is needed) x's gradient buffer, so it costs no copy. */
ATTN_API attn_var *attn_nn_reshape(attn_nn_ctx *ctx, attn_var *x, int ndim, const int64_t *shape);
/* y.shape[i] = x.shape[perm[i]]; perm is a permutation of 0..ndim-1. */
ATTN_API attn_var *attn_nn_permute(attn_nn_ctx *ctx, attn_var *x, const int *perm);
/* Swap dims d0 and d1 (negative dims count from the end). */
ATTN_API attn_var *attn_nn_transpose(attn_nn_ctx *ctx, attn_var *x, int d0, int d1);
/* Elements [start, end) along dim (negative dim counts from the end; 0 <= start <= end <= size). */
ATTN_API attn_var *attn_nn_slice(attn_nn_ctx *ctx, attn_var *x, int dim, int64_t start,
                                 int64_t end);
/* Join n >= 1 tensors along dim; other dims must match. */
ATTN_API attn_var *attn_nn_concat(attn_nn_ctx *ctx, attn_var *const *xs, int n, int dim);

/* Splits x along dim into n parts of sizes[0..n) (summing to the dim's size): outs[i] is
 * attn_nn_slice of the part. Returns the context's status (outs are NULL on error). */
ATTN_API attn_status attn_nn_split(attn_nn_ctx *ctx, attn_var *x, int dim, int n,
                                   const int64_t *sizes, attn_var **outs);
/* Picks n entries along axis by ids (n int32 in [0, size), copied; repeats allowed): y has x's
 * shape with dim `axis` = n. Gradient scatters (+=) back, summing repeats. */
ATTN_API attn_var *attn_nn_index_select(attn_nn_ctx *ctx, attn_var *x, int axis,
                                        const int32_t *ids, int64_t n);

/* Rows of table (V, D) picked by ids (n int32 values in [0, V), copied): y (shape..., D) where
 * shape (ndim dims) has numel n. Gradient scatters (+=) into the picked rows. */
ATTN_API attn_var *attn_nn_embedding(attn_nn_ctx *ctx, attn_var *table, const int32_t *ids,
                                     int ndim, const int64_t *shape);

/* ---- ops: reductions ------------------------------------------------------------------------ */

/* Sum or mean over one axis (negative counts from the end); keepdim keeps it as size 1. */
ATTN_API attn_var *attn_nn_sum(attn_nn_ctx *ctx, attn_var *x, int axis, int keepdim);
ATTN_API attn_var *attn_nn_mean(attn_nn_ctx *ctx, attn_var *x, int axis, int keepdim);
/* Maximum over one axis; the gradient goes to the first maximal entry of each slice. */
ATTN_API attn_var *attn_nn_max(attn_nn_ctx *ctx, attn_var *x, int axis, int keepdim);
/* Sum or mean of all elements: a 0-dim tensor. */
ATTN_API attn_var *attn_nn_sum_all(attn_nn_ctx *ctx, attn_var *x);
ATTN_API attn_var *attn_nn_mean_all(attn_nn_ctx *ctx, attn_var *x);

/* ---- ops: normalisation and softmax --------------------------------------------------------- */

/* Over the last dim D: y = (x - mean) / sqrt(var + eps) * gamma + beta (biased variance).
 * gamma, beta: (D) or NULL (1 and 0). */
ATTN_API attn_var *attn_nn_layernorm(attn_nn_ctx *ctx, attn_var *x, attn_var *gamma,
                                     attn_var *beta, float eps);
/* y = x / sqrt(mean(x^2) + eps) * gamma. gamma: (D) or NULL. */
ATTN_API attn_var *attn_nn_rmsnorm(attn_nn_ctx *ctx, attn_var *x, attn_var *gamma, float eps);
/* Softmax / log-softmax over the last dim of x + mask. mask: NULL or a tensor broadcastable to x
 * (numpy rules) holding additive logits (-INFINITY blocks); it is a constant (no gradient flows
 * into it). A row where every entry is blocked gives softmax 0 and log_softmax -inf, with zero
 * gradient. */
ATTN_API attn_var *attn_nn_softmax(attn_nn_ctx *ctx, attn_var *x, attn_var *mask);
ATTN_API attn_var *attn_nn_log_softmax(attn_nn_ctx *ctx, attn_var *x, attn_var *mask);

/* ---- ops: losses ---------------------------------------------------------------------------- */

/* Mean cross-entropy of logits (..., C) against n = numel/C int32 targets (copied), over the rows
 * whose target != ignore_index; target values must be in [0, C) otherwise. With label smoothing
 * e in [0, 1): the target distribution is (1 - e) one-hot + e / C. 0-dim result; 0 when every row
 * is ignored. */
ATTN_API attn_var *attn_nn_cross_entropy(attn_nn_ctx *ctx, attn_var *logits,
                                         const int32_t *targets, int32_t ignore_index,
                                         float label_smoothing);
/* Binary cross-entropy on logits: mean over all elements of
 * max(x, 0) - x t + log(1 + exp(-|x|)), targets t of the same shape as logits (a constant: no
 * gradient flows into it; values in [0, 1]). 0-dim result. */
ATTN_API attn_var *attn_nn_bce_with_logits(attn_nn_ctx *ctx, attn_var *logits, attn_var *targets);
/* mean((a - b)^2) over all elements; a and b have the same shape. 0-dim result. */
ATTN_API attn_var *attn_nn_mse(attn_nn_ctx *ctx, attn_var *a, attn_var *b);

/* ---- ops: fused attention ------------------------------------------------------------------- */

/* out = softmax(scale q k^T + masks) v through attn_sdpa_forward, one tape record; the backward
 * uses attn_sdpa_backward with the saved out and lse.
 *   q: (B, Hq, Nq, Dk), k: (B, Hkv, Nk, Dk), v: (B, Hkv, Nk, Dv); out: (B, Hq, Nq, Dv).
 * scale 0 = 1/sqrt(Dk); causal: top-left aligned; key_lens: NULL or int32[B] (copied) with
 * 0 <= len <= Nk (keys >= len blocked). GQA when Hq % Hkv == 0. */
ATTN_API attn_var *attn_nn_sdpa(attn_nn_ctx *ctx, attn_var *q, attn_var *k, attn_var *v,
                                float scale, int causal, const int32_t *key_lens);
/* The same with every option of the kernel (attn.h's attn_sdpa_params; NULL = defaults): mask
 * alignment, windows, query lengths, packed variable-length batches, ALiBi, soft-cap, dropout on
 * the weights. The arrays params points to (lengths, cu_seqlens, slopes) are copied; a dense
 * params->bias view is not, and must stay valid and unchanged until the backward has run (it is a
 * constant: no gradient). weights: NULL, or receives the attention weights (softmax before
 * dropout) as a new tensor without gradient, (B, Hq, Nq, Nk) or (B, Nq, Nk) by
 * params->weights_mode; O(Nq Nk) memory, for inspection. */
ATTN_API attn_var *attn_nn_sdpa_ex(attn_nn_ctx *ctx, attn_var *q, attn_var *k, attn_var *v,
                                   const attn_sdpa_params *params, attn_var **weights);
/* The same on the projections' layout, with no permute copies: q (B, Nq, n_heads * Dk),
 * k (B, Nk, n_kv_heads * Dk), v (B, Nk, n_kv_heads * Dv); out (B, Nq, n_heads * Dv). Head h of q
 * is columns [h Dk, (h + 1) Dk); the kernel reads these as strided (B, H, N, D) views. */
ATTN_API attn_var *attn_nn_sdpa_heads(attn_nn_ctx *ctx, attn_var *q, attn_var *k, attn_var *v,
                                      int64_t n_heads, int64_t n_kv_heads,
                                      const attn_sdpa_params *params, attn_var **weights);

/* ---- positional encodings and unfused attention --------------------------------------------- */

/* Rotary position embedding on x (..., N, D): the pairs of the first rotary_dims dims of position
 * n are rotated by angle pos_n * base^(-2k / rotary_dims), k = 0 .. rotary_dims/2 - 1; the other
 * dims pass through. interleaved = 1 pairs (2k, 2k+1) (GPT-J, the paper); 0 pairs (k, k + rot/2)
 * (GPT-NeoX / LLaMA half-split). positions: NULL for 0..N-1, else int32[N] (copied).
 * rotary_dims: even, 2..D (0 = D). base > 0 (10000 usual). Linear in x; the backward rotates back. */
ATTN_API attn_var *attn_nn_rope(attn_nn_ctx *ctx, attn_var *x, const int32_t *positions,
                                float base, int64_t rotary_dims, int interleaved);
/* The sinusoidal table of "Attention is all you need" as a constant (n, dim) tensor:
 * pe[p, 2i] = sin(p / base^(2i/dim)), pe[p, 2i+1] = cos(p / base^(2i/dim)) (base 10000 usual). */
ATTN_API attn_var *attn_nn_sinusoidal(attn_nn_ctx *ctx, int64_t n, int64_t dim, float base);
/* The T5 relative-position bucket of relative position rel = key - query: half the buckets for
 * each sign when bidirectional, exact buckets for |rel| < num_buckets/4 (/2 one-way), log-spaced
 * up to max_distance after. Same as the reference implementation of T5. */
ATTN_API int32_t attn_nn_t5_bucket(int64_t rel, int bidirectional, int32_t num_buckets,
                                   int32_t max_distance);
/* T5 bias: table (num_buckets, H) -> bias (1, H, Nq, Nk) with bias[0, h, i, j] =
 * table[bucket(j - i), h]; differentiable in the table. */
ATTN_API attn_var *attn_nn_t5_bias(attn_nn_ctx *ctx, attn_var *table, int64_t nq, int64_t nk,
                                   int bidirectional, int32_t max_distance);

/* Attention written with the ops above (matmul, softmax), for scores the fused kernel does not
 * differentiate: out = softmax(scale q k^T + bias + mask) v with
 *   q (B, H, Nq, Dk), k (B, H, Nk, Dk), v (B, H, Nk, Dv); out (B, H, Nq, Dv);
 *   bias: NULL or a tensor broadcastable to (B, H, Nq, Nk), differentiable (T5, learned biases);
 *   mask: NULL or a constant additive mask broadcastable to (B, H, Nq, Nk) (-inf blocks);
 *   rel_k, rel_v: NULL or Shaw et al. relative embeddings (Nq, Nk, Dk) / (Nq, Nk, Dv), e.g. from
 *   attn_nn_embedding of a (2K + 1, D) table with ids clip(j - i, -K, K) + K (attn_nn_shaw_ids):
 *   scores += scale q_i . rel_k[i, j], out_i += sum_j a_ij rel_v[i, j].
 * O(B H Nq Nk) memory; scale 0 = 1/sqrt(Dk). Unlike the fused kernel, a blocked key's k and v
 * are still read: a NaN or inf there reaches the rows it is blocked for (0 * NaN in the matmul),
 * so give finite values in padding. */
ATTN_API attn_var *attn_nn_attention_unfused(attn_nn_ctx *ctx, attn_var *q, attn_var *k,
                                             attn_var *v, attn_var *bias, attn_var *mask,
                                             attn_var *rel_k, attn_var *rel_v, float scale);
/* ids[i * nk + j] = clip(j - i, -max_rel, max_rel) + max_rel, for an embedding of 2 max_rel + 1
 * rows (Shaw et al. 2018). */
ATTN_API void attn_nn_shaw_ids(int32_t *ids, int64_t nq, int64_t nk, int64_t max_rel);

/* ---- initialisers (seeded, reproducible: element i uses Philox counter (i, stream), key seed) */

/* Uniform in [lo, hi). */
ATTN_API void attn_nn_init_uniform(attn_var *p, float lo, float hi, uint64_t seed);
/* Normal(mean, std) by Box-Muller on Philox uniforms. */
ATTN_API void attn_nn_init_normal(attn_var *p, float mean, float std, uint64_t seed);
/* Xavier/Glorot uniform: U(-a, a), a = gain * sqrt(6 / (fan_in + fan_out)). */
ATTN_API void attn_nn_init_xavier_uniform(attn_var *p, int64_t fan_in, int64_t fan_out,
                                          float gain, uint64_t seed);
/* Kaiming/He normal: N(0, gain / sqrt(fan_in)) (gain sqrt(2) for ReLU). */
ATTN_API void attn_nn_init_kaiming_normal(attn_var *p, int64_t fan_in, float gain,
                                          uint64_t seed);
/* Normal(mean, std) truncated to [lo, hi] (absolute bounds, like PyTorch's trunc_normal_) by
 * rejection: each element redraws (deterministically, from its own Philox stream) until inside.
 * Requires lo < hi and the interval to hold non-negligible mass (else values are clamped after
 * 64 draws). */
ATTN_API void attn_nn_init_trunc_normal(attn_var *p, float mean, float std, float lo, float hi,
                                        uint64_t seed);
/* All elements = value. */
ATTN_API void attn_nn_init_const(attn_var *p, float value);

/* ---- parameter lists ------------------------------------------------------------------------ */

/* A growable list of parameters with a name for each (the names are owned by the list, the
 * parameters are not unless attn_nn_params_free_all is called). Zero-initialise it ({0}).
 * Layers name what they add ("weight", "bias", "gamma", ...) and composite layers prefix the names
 * of their parts ("attn.wq.weight"), so a model's list has unique dotted names, the keys of its
 * checkpoints. */
typedef struct attn_nn_params {
  attn_var **items;
  char **names; /* names[i] (owned, never NULL after a successful add) */
  int64_t n, cap;
} attn_nn_params;
/* Appends p under `name` (copied; NULL = p->name, or "" if that is NULL too).
 * OUT_OF_MEMORY / NULL_POINTER (list or p). */
ATTN_API attn_status attn_nn_params_add(attn_nn_params *list, attn_var *p);
ATTN_API attn_status attn_nn_params_add_named(attn_nn_params *list, attn_var *p, const char *name);
/* Prepends "prefix." to the names of entries [first, n). OUT_OF_MEMORY leaves names unchanged. */
ATTN_API attn_status attn_nn_params_prefix(attn_nn_params *list, int64_t first, const char *prefix);
/* Drops entries [n_keep, n) from the list (their names are freed; the parameters are not). */
ATTN_API void attn_nn_params_truncate(attn_nn_params *list, int64_t n_keep);
/* The parameter called `name`, or NULL. */
ATTN_API attn_var *attn_nn_params_find(const attn_nn_params *list, const char *name);
/* Frees the list storage and names (not the parameters). */
ATTN_API void attn_nn_params_clear(attn_nn_params *list);
/* Frees every parameter in the list and the list storage. */
ATTN_API void attn_nn_params_free_all(attn_nn_params *list);
ATTN_API void attn_nn_params_zero_grad(const attn_nn_params *list);
/* Total number of elements of the parameters. */
ATTN_API int64_t attn_nn_params_numel(const attn_nn_params *list);

/* ---- checkpoints (safetensors, through attn/safetensors.h) ---------------------------------- */

/* Writes every parameter of the list as an F32 tensor named by the list (names must be unique
 * and non-empty) to `path`, atomically (written to path.tmp, then renamed). n_meta string pairs
 * meta_kv[2i] = key, meta_kv[2i+1] = value go to "__metadata__" (meta_kv may be NULL if n_meta is
 * 0). Errors: those of attn_st_write. */
ATTN_API attn_status attn_nn_save(const char *path, const attn_nn_params *list,
                                  const char *const *meta_kv, int64_t n_meta);
/* Reads `path` into the parameters of the list, matched by name. Strict and all-or-nothing: the
 * file must hold exactly the list's names, each with the parameter's shape and dtype F32, F16,
 * BF16 or F64 (converted to f32); otherwise INVALID_ARGUMENT / SHAPE_MISMATCH naming the tensor,
 * and no parameter is changed. Gradients are not touched. Errors of attn_st_open too. */
ATTN_API attn_status attn_nn_load(const char *path, const attn_nn_params *list);

/* ---- layers --------------------------------------------------------------------------------- */
/* Each *_init creates the layer's parameters (through attn_nn_param_new), initialises them from
 * `seed`, and appends them to `params` when it is not NULL; *_free frees them. On error the layer
 * is left empty (nothing leaked) and the status returned. The layer holds pointers only; free the
 * layer or the list, not both (attn_nn_params_clear the list if layers free themselves). */

typedef struct attn_nn_linear_layer {
  attn_var *w; /* (out, in), Xavier uniform */
  attn_var *b; /* (out) zeros, or NULL when built without bias */
} attn_nn_linear_layer;
ATTN_API attn_status attn_nn_linear_init(attn_nn_linear_layer *l, int64_t in, int64_t out,
                                         int bias, uint64_t seed, attn_nn_params *params);
ATTN_API void attn_nn_linear_free(attn_nn_linear_layer *l);
ATTN_API attn_var *attn_nn_linear_forward(attn_nn_ctx *ctx, const attn_nn_linear_layer *l,
                                          attn_var *x);

typedef struct attn_nn_embedding_layer {
  attn_var *table; /* (V, D), Normal(0, 1) */
} attn_nn_embedding_layer;
ATTN_API attn_status attn_nn_embedding_init(attn_nn_embedding_layer *l, int64_t vocab,
                                            int64_t dim, float std, uint64_t seed,
                                            attn_nn_params *params);
ATTN_API void attn_nn_embedding_free(attn_nn_embedding_layer *l);
ATTN_API attn_var *attn_nn_embedding_forward(attn_nn_ctx *ctx, const attn_nn_embedding_layer *l,
                                             const int32_t *ids, int ndim, const int64_t *shape);

typedef struct attn_nn_layernorm_layer {
  attn_var *gamma, *beta; /* (D): ones, zeros */
  float eps;
} attn_nn_layernorm_layer;
ATTN_API attn_status attn_nn_layernorm_init(attn_nn_layernorm_layer *l, int64_t dim, float eps,
                                            attn_nn_params *params);
ATTN_API void attn_nn_layernorm_free(attn_nn_layernorm_layer *l);
ATTN_API attn_var *attn_nn_layernorm_forward(attn_nn_ctx *ctx, const attn_nn_layernorm_layer *l,
                                             attn_var *x);

typedef enum attn_nn_act {
  ATTN_NN_ACT_RELU = 0,
  ATTN_NN_ACT_GELU = 1,      /* erf form */
  ATTN_NN_ACT_GELU_TANH = 2,
  ATTN_NN_ACT_SILU = 3,
} attn_nn_act;

/* y = fc2(act(fc1(x))), or with gating y = fc2(act(fc1(x)) * gate(x)) (GLU family: SwiGLU with
 * SILU, GEGLU with GELU): (..., dim) -> (..., hidden) -> (..., dim). gate.w is NULL when not
 * gated. Parameters: fc1.weight/bias, [gate.weight/bias], fc2.weight/bias. */
typedef struct attn_nn_mlp {
  attn_nn_linear_layer fc1, gate, fc2;
  attn_nn_act act;
} attn_nn_mlp;
ATTN_API attn_status attn_nn_mlp_init(attn_nn_mlp *m, int64_t dim, int64_t hidden,
                                      attn_nn_act act, uint64_t seed, attn_nn_params *params);
ATTN_API attn_status attn_nn_mlp_init_gated(attn_nn_mlp *m, int64_t dim, int64_t hidden,
                                            attn_nn_act act, uint64_t seed,
                                            attn_nn_params *params);
ATTN_API void attn_nn_mlp_free(attn_nn_mlp *m);
ATTN_API attn_var *attn_nn_mlp_forward(attn_nn_ctx *ctx, const attn_nn_mlp *m, attn_var *x);

/* RMSNorm layer: y = x / rms(x) * gamma over the last dim; gamma (dim) ones. */
typedef struct attn_nn_rmsnorm_layer {
  attn_var *gamma;
  float eps;
} attn_nn_rmsnorm_layer;
ATTN_API attn_status attn_nn_rmsnorm_init(attn_nn_rmsnorm_layer *l, int64_t dim, float eps,
                                          attn_nn_params *params);
ATTN_API void attn_nn_rmsnorm_free(attn_nn_rmsnorm_layer *l);
ATTN_API attn_var *attn_nn_rmsnorm_forward(attn_nn_ctx *ctx, const attn_nn_rmsnorm_layer *l,
                                           attn_var *x);

/* Multi-head attention.
 *   xq: (B, Nq, dim); xkv: (B, Nk, kv_dim) (pass xq again, or NULL, for self-attention);
 *   y: (B, Nq, dim).
 * Projections (Xavier, with bias when cfg.bias): q = xq Wq^T (n_heads x head_dim outputs),
 * k, v = xkv Wk^T, xkv Wv^T (n_kv_heads x head_dim each), y = o Wo^T. With packed_qkv one
 * projection "wqkv" of xq gives [q | k | v] (self-attention only: xkv must be NULL or xq).
 * head_dim = dim / n_heads; n_heads % n_kv_heads == 0 (grouped-query; 1 = multi-query).
 * Parameters: wq.*, wk.*, wv.* (or wqkv.*), wo.*. */
typedef struct attn_nn_mha_config {
  int64_t dim;        /* model width; dim % n_heads == 0 */
  int64_t kv_dim;     /* width of xkv; 0 = dim */
  int64_t n_heads;
  int64_t n_kv_heads; /* 0 = n_heads */
  int packed_qkv;     /* 1: one fused QKV projection (needs kv_dim == dim) */
  int bias;           /* 1: projections have biases */
} attn_nn_mha_config;
/* dim, n_heads as given, kv_dim = dim, n_kv_heads = n_heads, separate projections, bias 1. */
ATTN_API attn_nn_mha_config attn_nn_mha_config_default(int64_t dim, int64_t n_heads);

typedef struct attn_nn_mha {
  attn_nn_linear_layer wq, wk, wv; /* .w NULL when packed */
  attn_nn_linear_layer wqkv;       /* .w NULL when separate */
  attn_nn_linear_layer wo;
  int64_t dim, kv_dim, n_heads, n_kv_heads, head_dim;
} attn_nn_mha;
ATTN_API attn_status attn_nn_mha_init(attn_nn_mha *m, int64_t dim, int64_t n_heads,
                                      uint64_t seed, attn_nn_params *params);
ATTN_API attn_status attn_nn_mha_init_ex(attn_nn_mha *m, const attn_nn_mha_config *cfg,
                                         uint64_t seed, attn_nn_params *params);
ATTN_API void attn_nn_mha_free(attn_nn_mha *m);
/* causal: top-left causal mask; key_lens: NULL or int32[B] key padding lengths (copied). */
ATTN_API attn_var *attn_nn_mha_forward(attn_nn_ctx *ctx, const attn_nn_mha *m, attn_var *xq,
                                       attn_var *xkv, int causal, const int32_t *key_lens);
/* Every kernel option through params (as attn_nn_sdpa_ex; scale 0 = 1/sqrt(head_dim)), and the
 * attention weights on request (weights != NULL; see attn_nn_sdpa_ex). */
ATTN_API attn_var *attn_nn_mha_forward_ex(attn_nn_ctx *ctx, const attn_nn_mha *m, attn_var *xq,
                                          attn_var *xkv, const attn_sdpa_params *params,
                                          attn_var **weights);

/* Transformer block, x: (B, N, dim) -> (B, N, dim).
 *   pre-LN:  h = x + attn(ln1(x));  [h = h + cross(ln_cross(h), memory);]  y = h + mlp(ln2(h))
 *   post-LN: h = ln1(x + attn(x));  [h = ln_cross(h + cross(h, memory));]  y = ln2(h + mlp(h))
 * The bracketed cross-attention sublayer exists when cfg.cross is set (a decoder block); memory
 * is (B, M, cross_dim). Parameters: ln1.*, attn.*, [ln_cross.*, cross.*], ln2.*, mlp.*. */
typedef struct attn_nn_block_config {
  int64_t dim, n_heads;
  int64_t n_kv_heads; /* 0 = n_heads */
  int64_t hidden;     /* MLP width */
  attn_nn_act act;
  int gated;          /* gated MLP */
  int post_ln;        /* 0: pre-LN (default), 1: post-LN */
  int cross;          /* 1: add a cross-attention sublayer (decoder block) */
  int64_t cross_dim;  /* width of the memory; 0 = dim */
  float ln_eps;       /* 1e-5 */
} attn_nn_block_config;
ATTN_API attn_nn_block_config attn_nn_block_config_default(int64_t dim, int64_t n_heads,
                                                           int64_t hidden);

typedef struct attn_nn_block {
  attn_nn_layernorm_layer ln1, ln_cross, ln2;
  attn_nn_mha attn, cross;
  attn_nn_mlp mlp;
  int post_ln, has_cross;
} attn_nn_block;
/* A pre-LN encoder block with act and a plain MLP. */
ATTN_API attn_status attn_nn_block_init(attn_nn_block *blk, int64_t dim, int64_t n_heads,
                                        int64_t hidden, attn_nn_act act, uint64_t seed,
                                        attn_nn_params *params);
ATTN_API attn_status attn_nn_block_init_ex(attn_nn_block *blk, const attn_nn_block_config *cfg,
                                           uint64_t seed, attn_nn_params *params);
ATTN_API void attn_nn_block_free(attn_nn_block *blk);
/* Self-attention with `causal` and key padding key_lens (int32[B] or NULL). */
ATTN_API attn_var *attn_nn_block_forward(attn_nn_ctx *ctx, const attn_nn_block *blk, attn_var *x,
                                         int causal, const int32_t *key_lens);
/* Decoder form: memory (B, M, cross_dim) with mem_lens (int32[B] or NULL) for the cross-attention;
 * memory must be NULL for a block without cross-attention. */
ATTN_API attn_var *attn_nn_block_forward_ex(attn_nn_ctx *ctx, const attn_nn_block *blk,
                                            attn_var *x, int causal, const int32_t *key_lens,
                                            attn_var *memory, const int32_t *mem_lens);

/* Recurrent layers (PyTorch's equations and gate order), for the additive and location-based
 * mechanisms that attend over RNN states.
 *   LSTM: [i f g o] = x Wx^T + bx + h Wh^T; c' = sig(f) c + sig(i) tanh(g); h' = sig(o) tanh(c')
 *   GRU:  [r z n]x = x Wx^T + bx, [r z n]h = h Wh^T + bh; r = sig(rx + rh), z = sig(zx + zh),
 *         n = tanh(nx + r nh); h' = (1 - z) n + z h
 * Parameters: wx.weight (G H, in), wx.bias (G H), wh.weight (G H, H) [, wh.bias (G H) for GRU],
 * G = 4 (LSTM) or 3 (GRU); init U(-1/sqrt(H), 1/sqrt(H)). */
typedef enum attn_nn_rnn_kind {
  ATTN_NN_RNN_LSTM = 0,
  ATTN_NN_RNN_GRU = 1,
} attn_nn_rnn_kind;
typedef struct attn_nn_rnn {
  attn_nn_rnn_kind kind;
  attn_nn_linear_layer wx, wh;
  int64_t in, hidden;
} attn_nn_rnn;
ATTN_API attn_status attn_nn_rnn_init(attn_nn_rnn *r, attn_nn_rnn_kind kind, int64_t in,
                                      int64_t hidden, uint64_t seed, attn_nn_params *params);
ATTN_API void attn_nn_rnn_free(attn_nn_rnn *r);
/* One step: x (B, in), h (B, H), c (B, H) for LSTM (ignored for GRU) -> h' (B, H); *c_out
 * receives c' for LSTM (NULL for GRU; c_out may be NULL). */
ATTN_API attn_var *attn_nn_rnn_cell(attn_nn_ctx *ctx, const attn_nn_rnn *r, attn_var *x,
                                    attn_var *h, attn_var *c, attn_var **c_out);
/* A sequence: x (B, T, in) -> outputs (B, T, H) from zero initial states. lens: NULL or int32[B]
 * (0 <= len <= T): steps t >= len[b] neither change the state nor output (their outputs are 0).
 * reverse = 1 runs from the last valid step to the first. h_last (may be NULL) receives the final
 * state (B, H): after step len-1 forward, after step 0 in reverse. */
ATTN_API attn_var *attn_nn_rnn_forward(attn_nn_ctx *ctx, const attn_nn_rnn *r, attn_var *x,
                                       const int32_t *lens, int reverse, attn_var **h_last);

/* Bidirectional wrapper: outputs (B, T, 2H) = [forward | reverse] along the feature dim.
 * Parameters: fwd.*, bwd.*. */
typedef struct attn_nn_birnn {
  attn_nn_rnn fwd, bwd;
} attn_nn_birnn;
ATTN_API attn_status attn_nn_birnn_init(attn_nn_birnn *r, attn_nn_rnn_kind kind, int64_t in,
                                        int64_t hidden, uint64_t seed, attn_nn_params *params);
ATTN_API void attn_nn_birnn_free(attn_nn_birnn *r);
ATTN_API attn_var *attn_nn_birnn_forward(attn_nn_ctx *ctx, const attn_nn_birnn *r, attn_var *x,
                                         const int32_t *lens);

/* ---- optimizers ----------------------------------------------------------------------------- */

typedef enum attn_nn_optim_kind {
  ATTN_NN_OPTIM_SGD = 0,   /* v = mu v + g; p -= lr (g + mu v) if nesterov else lr v */
  ATTN_NN_OPTIM_ADAM = 1,  /* L2 weight decay added to the gradient */
  ATTN_NN_OPTIM_ADAMW = 2, /* decoupled weight decay: p -= lr wd p */
} attn_nn_optim_kind;

typedef struct attn_nn_optim_config {
  attn_nn_optim_kind kind;
  float lr;
  float momentum;     /* SGD */
  int nesterov;       /* SGD */
  float beta1, beta2; /* Adam */
  float eps;          /* Adam */
  float weight_decay; /* SGD and Adam: added to the gradient; AdamW: decoupled */
} attn_nn_optim_config;
/* kind with PyTorch's defaults: lr 1e-3, momentum 0, betas (0.9, 0.999), eps 1e-8, weight decay
 * 0 (0.01 for AdamW). */
ATTN_API attn_nn_optim_config attn_nn_optim_config_default(attn_nn_optim_kind kind);

typedef struct attn_nn_optim attn_nn_optim;
/* An optimizer over the parameters in `params` (the list is copied; parameters must outlive the
 * optimizer). State (momentum, Adam moments) is allocated here, zeroed. NULL on error
 * (attn_last_error). */
ATTN_API attn_nn_optim *attn_nn_optim_new(const attn_nn_optim_config *cfg,
                                          const attn_nn_params *params);
ATTN_API void attn_nn_optim_free(attn_nn_optim *opt);
/* Sets the learning rate used by the next steps. */
ATTN_API void attn_nn_optim_set_lr(attn_nn_optim *opt, float lr);
/* One update from the parameters' current gradients (gradients are not cleared). */
ATTN_API attn_status attn_nn_optim_step(attn_nn_optim *opt);

/* Scales every gradient by min(1, max_norm / (norm + 1e-6)), norm = global L2 norm over all
 * gradients (computed in double); writes the norm before clipping to *norm_out if non-NULL. */
ATTN_API attn_status attn_nn_clip_grad_norm(const attn_nn_params *params, float max_norm,
                                            float *norm_out);

/* Learning rate at `step` (0-based): linear warmup base_lr * (step + 1) / warmup for
 * step < warmup, then cosine decay from base_lr (at step = warmup) to min_lr (at total_steps, and
 * after). */
ATTN_API float attn_nn_lr_warmup_cosine(int64_t step, int64_t warmup, int64_t total_steps,
                                        float base_lr, float min_lr);
/* Step decay: base_lr * gamma^(step / step_size) (integer division; step_size >= 1). */
ATTN_API float attn_nn_lr_step(int64_t step, int64_t step_size, float gamma, float base_lr);

/* ---- data helpers --------------------------------------------------------------------------- */

/* perm[0..n) = a permutation of 0..n-1, a pure function of (n, seed) (Fisher-Yates on Philox). */
ATTN_API attn_status attn_nn_shuffle(int64_t *perm, int64_t n, uint64_t seed);
/* Packs n token sequences into a right-padded batch: ids (n, max_len) row-major, position t of
 * row i = seqs[i][t] for t < min(seq_lens[i], max_len), else pad; lens[i] = that min (int32, the
 * key_lens of attention). seqs[i] may be NULL when seq_lens[i] is 0.
 * Errors: NULL_POINTER, INVALID_ARGUMENT (n < 0, max_len < 1, a negative length). */
ATTN_API attn_status attn_nn_pad_batch(int32_t *ids, int32_t *lens, const int32_t *const *seqs,
                                       const int64_t *seq_lens, int64_t n, int64_t max_len,
                                       int32_t pad);

/* ---- alignment and additive attention ops ---- */
/* Issue 4: the alignment functions and the fused additive kernel as ops, and the Bahdanau and
 * Luong attention layers built on them (docs/nn.md, "Alignment and additive attention"). */
#include "attn/align.h"

/* a = align(x) over the last axis through attn_align_forward (attn/align.h: every kind, the
 * temperature, local-m and local-p windows), one tape record; the backward is
 * attn_align_backward.
 *   x: 1 to 4 dims (..., n); the result has x's shape. Rows are the leading indices in row-major
 *     order; local-m centres row r on its index along dim ndim - 2.
 *   mask: NULL or a constant additive mask (-INFINITY blocks) of at most x->ndim dims that
 *     broadcasts to x (numpy rules: aligned at the last dim, each dim equal or 1). No gradient
 *     flows into it. Fully blocked rows give 0 and zero gradients.
 *   params: NULL = attn_align_params_default(); params->positions is ignored.
 *   positions: for params->local == LOCAL_P, the predicted centres p_r, one per row (any shape
 *     with numel = number of rows, e.g. (..., 1)); differentiable: dL/dp_r = sum_j a_j (j - p_r)
 *     / sigma^2 dL/da_j (sigma = window / 2). Must be NULL for the other modes.
 * Straight-through hardmax passes the softmax gradient; plain hardmax passes none.
 * Errors (sticky, see the top of this file): NULL_POINTER (positions missing for LOCAL_P),
 * SHAPE_MISMATCH (x not 1-4 dims, positions numel, mask broadcast), INVALID_ARGUMENT (positions
 * given without LOCAL_P), and every error of attn_align_forward (bad params, a window outside the
 * sequence, non-finite positions). Deterministic for any thread count. */
ATTN_API attn_var *attn_nn_align(attn_nn_ctx *ctx, attn_var *x, attn_var *mask,
                                 const attn_align_params *params, attn_var *positions);

/* Fused additive (Bahdanau) attention through attn_additive_forward / attn_additive_backward,
 * one tape record; the B x Tq x Tk x d tanh tensor is never stored:
 *   out_i = sum_j softmax_j(sum_c w_c tanh(q1_ic + k2_jc + b_c) + mask_ij) v_j
 *   q1: (B, Tq, d) (the projected queries, q W1^T), k2: (B, Tk, d) (k W2^T), v: (B, Tk, Dv),
 *   w: (d), b: (d) or NULL (= 0); out: (B, Tq, Dv). Gradients flow into q1, k2, v, w and b.
 *   mask: NULL or a constant additive mask broadcastable (numpy rules) to (B, Tq, Tk). A fully
 *     blocked row gives out 0 and zero gradients.
 *   weights: NULL, or receives the softmax weights (B, Tq, Tk) as a new tensor without gradient
 *     (for inspection; O(B Tq Tk) memory).
 * Errors (sticky): SHAPE_MISMATCH (q1, k2, v not 3-d, mask broadcast) and the kernel's
 * (SHAPE_MISMATCH between the inputs, INVALID_ARGUMENT for Tk == 0 or d == 0, ...). */
ATTN_API attn_var *attn_nn_additive_attention(attn_nn_ctx *ctx, attn_var *q1, attn_var *k2,
                                              attn_var *v, attn_var *w, attn_var *b,
                                              attn_var *mask, attn_var **weights);

/* Bahdanau attention layer: e_ij = w^T tanh(W1 q_i + W2 k_j + b), a_i = softmax_j(e_i),
 * out_i = sum_j a_ij v_j, with the projections as linear ops and the rest as
 * attn_nn_additive_attention.
 * Parameters: w1.weight (dim, query_dim) and w2.weight (dim, key_dim), Xavier uniform, no bias;
 * w (dim), U(-1/sqrt(dim), 1/sqrt(dim)); b (dim), zeros. */
typedef struct attn_nn_bahdanau {
  attn_nn_linear_layer w1, w2; /* .b NULL */
  attn_var *w, *b;
  int64_t query_dim, key_dim, dim;
} attn_nn_bahdanau;
/* Errors: NULL_POINTER, INVALID_ARGUMENT (a width < 1), OUT_OF_MEMORY. */
ATTN_API attn_status attn_nn_bahdanau_init(attn_nn_bahdanau *l, int64_t query_dim,
                                           int64_t key_dim, int64_t dim, uint64_t seed,
                                           attn_nn_params *params);
ATTN_API void attn_nn_bahdanau_free(attn_nn_bahdanau *l);
/* query: (B, Tq, query_dim); keys: (B, Tk, key_dim); values: (B, Tk, Dv), or NULL for the keys;
 * key_lens: NULL or int32[B] (copied into a mask), 0 <= len <= Tk, keys >= len blocked (a length
 * of 0 gives zero rows; their rows of keys and values never reach the result or a gradient).
 * Result (B, Tq, Dv); weights as attn_nn_additive_attention. */
ATTN_API attn_var *attn_nn_bahdanau_forward(attn_nn_ctx *ctx, const attn_nn_bahdanau *l,
                                            attn_var *query, attn_var *keys, attn_var *values,
                                            const int32_t *key_lens, attn_var **weights);

/* Luong attention layer (Luong et al. 2015) over source states hs for target states h:
 *   score  e_ts = h_t^T hs_s (DOT) or h_t^T W_a hs_s (GENERAL)
 *   align  a_t = attn_nn_align(e_t) with cfg.align: any kind and temperature, global, local-m
 *          (centre t), or local-p with the predicted centre
 *          p_t = S_b sigmoid(v_p^T tanh(W_p h_t))     S_b = source length of batch b
 *          (key_lens[b], else S), a Gaussian factor exp(-(s - p_t)^2 / (2 (D/2)^2)) on the
 *          weights (no renormalisation) and gradients into W_p and v_p through p_t
 *   output c_t = sum_s a_ts hs_s, or with out_dim > 0, tanh(W_c [c_t; h_t])
 * (rows of hs past key_lens never reach the result or a gradient: NaN there stays out)
 * Local-p needs cfg.align.window >= 1: p_t lies in (0, S_b), so the window around round(p_t)
 * always meets the sequence.
 * Parameters: wa.weight (key_dim, query_dim) for GENERAL; for local-p wp.weight (pred_dim,
 * query_dim) and vp.weight (1, pred_dim); wc.weight (out_dim, key_dim + query_dim) when
 * out_dim > 0. All Xavier uniform, no biases. */
typedef enum attn_nn_luong_score {
  ATTN_NN_LUONG_DOT = 0,     /* needs query_dim == key_dim */
  ATTN_NN_LUONG_GENERAL = 1,
} attn_nn_luong_score;
typedef struct attn_nn_luong_config {
  int64_t query_dim, key_dim;
  attn_nn_luong_score score;
  attn_align_params align; /* .positions ignored */
  int64_t pred_dim;        /* local-p predictor width; 0 = query_dim */
  int64_t out_dim;         /* 0: the context is the output */
} attn_nn_luong_config;
/* GENERAL score, attn_align_params_default() (global softmax), pred_dim 0, out_dim 0. */
ATTN_API attn_nn_luong_config attn_nn_luong_config_default(int64_t query_dim, int64_t key_dim);
typedef struct attn_nn_luong {
  attn_nn_linear_layer wa, wp, vp, wc; /* .w NULL where unused; no biases */
  attn_nn_luong_config cfg;
} attn_nn_luong;
/* Errors: NULL_POINTER, INVALID_ARGUMENT (a width < 1 or < 0, an unknown score or local mode,
 * DOT with query_dim != key_dim, LOCAL_P with window < 1), OUT_OF_MEMORY. The align kind and
 * its other options are checked by the forward (attn_align_forward's errors). */
ATTN_API attn_status attn_nn_luong_init(attn_nn_luong *l, const attn_nn_luong_config *cfg,
                                        uint64_t seed, attn_nn_params *params);
ATTN_API void attn_nn_luong_free(attn_nn_luong *l);
/* h: (B, T, query_dim) target states; hs: (B, S, key_dim) source states; key_lens: NULL or
 * int32[B] (copied), 0 <= len <= S. Result (B, T, out_dim or key_dim). weights: NULL, or receives
 * the alignment a (B, T, S) (the op's result itself, part of the graph). */
ATTN_API attn_var *attn_nn_luong_forward(attn_nn_ctx *ctx, const attn_nn_luong *l, attn_var *h,
                                         attn_var *hs, const int32_t *key_lens,
                                         attn_var **weights);

/* ---- score functions ---- */

/* The score functions of attn/score.h as one differentiable op (one tape record; the backward
 * runs attn_score_backward and accumulates into q, k and every parameter that requires a
 * gradient). Shapes and semantics are the kernel's: q (B, Tq, dq), k (B, Tk, dk);
 * e (B, Tq, Tk), (B, 1, Tk) for LOCATION, (B, Tq, Tk, F) for MULTIDIM. q may be NULL for
 * LOCATION and k for LUONG_LOCATION. Initialise the spec with attn_nn_score_spec_default(kind)
 * (tanh, slope 0.01, T = 1, no tensors) and set the parameters the kind reads (the table of
 * attn/score.h; W, b, w, W1, W2, Wo, bo, and contexts/U for ADDITIVE, any of them a parameter
 * or a tensor of ctx). Errors are the kernel's (a missing or misshaped parameter is named), plus
 * SHAPE_MISMATCH for a tensor of more than 4 dims. */
#include "attn/score.h"

typedef struct attn_nn_score_spec {
  attn_score_kind kind;
  attn_score_act act;
  float leaky_slope;
  float temperature;
  attn_var *W, *b, *w, *W1, *W2, *Wo, *bo;
  int n_contexts;               /* ADDITIVE: 0..ATTN_SCORE_MAX_CONTEXTS */
  attn_var *const *contexts;    /* n_contexts tensors (B, dc_m) */
  attn_var *const *U;           /* n_contexts tensors (d, dc_m) */
} attn_nn_score_spec;

ATTN_API attn_nn_score_spec attn_nn_score_spec_default(attn_score_kind kind);
ATTN_API attn_var *attn_nn_score(attn_nn_ctx *ctx, attn_var *q, attn_var *k,
                                 const attn_nn_score_spec *spec);

/* Score -> softmax over the keys -> context: out_i = sum_l softmax_l(e_il) v_l, with
 *   v: (B, Tk, Dv) (Tk = the score's key count: W's rows for LUONG_LOCATION);
 *   out: (B, Tq, Dv), (B, 1, Dv) for LOCATION; MULTIDIM needs F == Dv and takes one softmax per
 *   feature: out_if = sum_l softmax_l(e_ilf) v_lf.
 * key_lens: NULL or int32[B] (copied), 0 <= len <= Tk: keys >= len are blocked, and their rows
 * of k and v are never read into the output or a gradient (NaN there stays out); a row with no
 * key gives 0. With allow_fused set, DOT, SCALED_DOT, GENERAL and BIASED_GENERAL run through the
 * fused exact kernel (attn_nn_sdpa; the general kinds project q first, q' = W q (+ b)), with no
 * Tq x Tk tensor; every other kind (or allow_fused = 0) is attn_nn_score -> attn_nn_softmax ->
 * matmul. Both routes give the same values and gradients up to f32 rounding (tested). */
ATTN_API attn_var *attn_nn_score_attention(attn_nn_ctx *ctx, attn_var *q, attn_var *k,
                                           attn_var *v, const attn_nn_score_spec *spec,
                                           const int32_t *key_lens, int allow_fused);

/* ---- stochastic and monotonic alignment ---- */
/* Ops over attn/stochastic.h and attn/monotonic.h (see those headers and docs/align.md for the
 * semantics). scores / energy: 1 to 4 dims (monotonic: 2 to 4, (..., Tq, Tk)); mask: NULL or an
 * additive constant (no gradient) that broadcasts to it, numpy style (missing leading dims and
 * dims of 1), -INFINITY blocking a position. Errors are the kernels' (temperature <= 0, shapes,
 * ...), recorded in ctx like every op. */

/* Stochastic hard attention: one position per row (rows = all but the last dim) drawn from
 * softmax(scores / temperature + mask) with the Philox stream of `seed`. Returns the one-hot
 * weights (shape of scores; a constant: no gradient flows through a sample). *log_prob and
 * *entropy (each may be NULL) receive log p_s and H(p), shape scores.shape[:-1], differentiable:
 * their gradients reach scores through d log p_s / dz = onehot(s) - p and
 * dH/dz = -p (log p + H) (divided by the temperature). So the REINFORCE surrogate is
 *   loss = sum(coef * log_prob) + lambda * sum(entropy),   coef = -(R - b) (attn_reinforce_coef),
 * built from ordinary ops. index (NULL or int32[rows]) receives the drawn positions (-1 for a
 * fully masked row, whose log_prob and entropy are 0 with zero gradient). */
ATTN_API attn_var *attn_nn_hard_sample(attn_nn_ctx *ctx, attn_var *scores, attn_var *mask,
                                       float temperature, uint64_t seed, int32_t *index,
                                       attn_var **log_prob, attn_var **entropy);

/* Gumbel-softmax: softmax((scores + g) / temperature + mask) with Gumbel noise g from `seed`
 * (attn_gumbel_noise); hard = 1 returns one_hot(argmax) with the straight-through gradient of
 * the soft weights. */
ATTN_API attn_var *attn_nn_gumbel_softmax(attn_nn_ctx *ctx, attn_var *scores, attn_var *mask,
                                          float temperature, int hard, uint64_t seed);

/* Monotonic attention alpha (shape of energy) for params (NULL = RECURSIVE expected alignment, no
 * noise). The expected modes are differentiable in energy; HARD returns a constant (nothing is
 * recorded). */
struct attn_monotonic_params;
ATTN_API attn_var *attn_nn_monotonic(attn_nn_ctx *ctx, attn_var *energy, attn_var *mask,
                                     const struct attn_monotonic_params *params);

#ifdef __cplusplus
}
#endif

#endif /* ATTN_NN_H */
