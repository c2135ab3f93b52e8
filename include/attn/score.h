/* libattn: score functions e = score(q_i, k_l), forward and backward (MECHANISMS.md §2, §11.1-2).
 *
 * Shapes (f32; innermost stride 1, other strides free, >= 0):
 *   q: (B, Tq, dq)   queries       k: (B, Tk, dk)   keys
 *   e: (B, Tq, Tk)   scores, or (B, Tq, Tk, F) for MULTIDIM (a score vector per key)
 * Every kind divides its score by params->temperature T (default 1) at the very end.
 *
 * Kinds, with the parameter tensors each one reads from attn_score_params (any other is ignored):
 *   DOT                 e = q.k / T                                    dq == dk
 *   SCALED_DOT          e = q.k / (sqrt(dk) T)                         dq == dk
 *   GENERAL             e = k.(W q) / T                                W (dk, dq)
 *   BIASED_GENERAL      e = k.(W q + b) / T                            W (dk, dq), b (dk)
 *   ACTIVATED_GENERAL   e = act(k.(W q) + b) / T                       W (dk, dq), b (1)
 *   ADDITIVE            e = w.act(W1 q + W2 k + sum_m U_m c_m + b) / T
 *                       W1 (d, dq), W2 (d, dk), w (d); b (d) optional; n_contexts >= 0 context
 *                       vectors c_m (B, dc_m), one per batch entry, with U_m (d, dc_m)
 *   CONCAT              e = w.tanh(W [q; k]) / T (Luong's concat)       W (d, dq + dk), w (d)
 *   COSINE              e = q.k / (max(|q| |k|, 1e-8) T)               dq == dk
 *   LOCATION            e_l = w.act(W k_l + b) / T (no query)          W (d, dk), w (d), b (d)
 *                       optional; q is not read (may be NULL); e is (B, 1, Tk)
 *   LUONG_LOCATION      e_i = (W_a q_i + b) / T over Tk fixed positions  W (Tk, dq), b (Tk)
 *                       optional; k is not read (may be NULL); Tk = W's rows
 *   MULTIDIM            e_il = (Wo act(W1 q_i + W2 k_l + b) + bo) / T  W1 (d, dq), W2 (d, dk),
 *                       Wo (F, d); b (d), bo (F) optional. F = dk gives one score per feature
 *                       of the key (Shen et al. 2018), to be aligned by a softmax per feature.
 * act is params->act for ACTIVATED_GENERAL, ADDITIVE, LOCATION and MULTIDIM: identity, tanh,
 * relu, sigmoid or leaky_relu(x) = x > 0 ? x : slope x. The derivative of relu and leaky_relu
 * at 0 is taken from the left (0 and slope).
 *
 * B, Tq, Tk >= 0; dq, dk, d, F, dc_m >= 1. Sizes of zero batches/rows/keys are no-ops.
 *
 * Errors (attn_last_error() names the argument): NULL_POINTER (q, k, e, a required parameter
 * such as "params->W", a context or its U_m, de), UNSUPPORTED_DTYPE (not f32), SHAPE_MISMATCH
 * (ndim, a dim that disagrees: the message names the tensor and the dim), BAD_STRIDE, OVERFLOW,
 * ALIASING (an output overlaps an input or another output), INVALID_ARGUMENT (an unknown kind or
 * act, temperature not finite or <= 0, a non-finite leaky slope, n_contexts < 0 or > 16, a zero
 * feature dim), WORKSPACE_TOO_SMALL, OUT_OF_MEMORY. On error the outputs are untouched, with one
 * exception: the fast path's attn_gemm calls allocate packing buffers, and an OUT_OF_MEMORY from
 * one after the first may leave e or a gradient partly written (docs/score.md).
 *
 * Threads: the fast forward and backward use the thread pool (attn_gemm and row kernels); each
 * result element is computed in a fixed order, so results are bitwise identical for any thread
 * count. Calls are reentrant. */
#ifndef ATTN_SCORE_H
#define ATTN_SCORE_H

#include "attn.h"

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum attn_score_kind {
  ATTN_SCORE_DOT = 0,
  ATTN_SCORE_SCALED_DOT = 1,
  ATTN_SCORE_GENERAL = 2,
  ATTN_SCORE_BIASED_GENERAL = 3,
  ATTN_SCORE_ACTIVATED_GENERAL = 4,
  ATTN_SCORE_ADDITIVE = 5,
  ATTN_SCORE_CONCAT = 6,
  ATTN_SCORE_COSINE = 7,
  ATTN_SCORE_LOCATION = 8,
  ATTN_SCORE_LUONG_LOCATION = 9,
  ATTN_SCORE_MULTIDIM = 10,
} attn_score_kind;

typedef enum attn_score_act {
  ATTN_SCORE_ACT_IDENTITY = 0,
  ATTN_SCORE_ACT_TANH = 1,
  ATTN_SCORE_ACT_RELU = 2,
  ATTN_SCORE_ACT_SIGMOID = 3,
  ATTN_SCORE_ACT_LEAKY_RELU = 4,
} attn_score_act;

/* The most context vectors ADDITIVE takes. */
#define ATTN_SCORE_MAX_CONTEXTS 16

/* Options and parameter tensors (all f32 views, not owned). Initialise with
 * attn_score_params_default() (DOT, tanh, slope 0.01, T = 1, no tensors) and set what the kind
 * reads (see the table above). */
typedef struct attn_score_params {
  attn_score_kind kind;
  attn_score_act act;
  float leaky_slope; /* LEAKY_RELU: finite */
  float temperature; /* T > 0, finite; divides every score */
  const attn_tensor *W, *b, *w, *W1, *W2, *Wo, *bo;
  int n_contexts;                     /* ADDITIVE only, 0..ATTN_SCORE_MAX_CONTEXTS */
  const attn_tensor *const *contexts; /* n_contexts views (B, dc_m) */
  const attn_tensor *const *U;        /* n_contexts views (d, dc_m) */
} attn_score_params;

ATTN_API attn_score_params attn_score_params_default(void);

/* Gradients of the parameters, named like them: each points to a view of its parameter's shape,
 * or is NULL when that gradient is not wanted (it is then not computed). dcontexts and dU are
 * NULL or arrays of n_contexts views (an entry may be NULL). Initialise with
 * attn_score_grads_default() (all NULL). */
typedef struct attn_score_grads {
  const attn_tensor *dW, *db, *dw, *dW1, *dW2, *dWo, *dbo;
  const attn_tensor *const *dcontexts;
  const attn_tensor *const *dU;
} attn_score_grads;

ATTN_API attn_score_grads attn_score_grads_default(void);

/* Forward: e = score(q, k). params must not be NULL (it carries the parameter tensors).
 * workspace: NULL to allocate through the allocator hook, else at least
 * attn_score_workspace_size(backward = 0) bytes, 64-byte aligned. e must not overlap any input. */
ATTN_API attn_status attn_score_forward(const attn_tensor *e, const attn_tensor *q,
                                        const attn_tensor *k, const attn_score_params *params,
                                        void *workspace, size_t workspace_size);

/* Backward. Overwrites (=) dq, dk and every non-NULL gradient of grads (grads may be NULL: no
 * parameter gradients) with the gradients of L given de = dL/de (shape of e). dq (like q) and dk
 * (like k) may be NULL (not computed). Gradients must not overlap each other or any input. The
 * inputs are those of the forward; e is recomputed where needed. */
ATTN_API attn_status attn_score_backward(const attn_tensor *dq, const attn_tensor *dk,
                                         const attn_score_grads *grads, const attn_tensor *de,
                                         const attn_tensor *q, const attn_tensor *k,
                                         const attn_score_params *params, void *workspace,
                                         size_t workspace_size);

/* Workspace bytes the forward (backward = 0) or backward (backward = 1) needs for these operands
 * at the current thread count. Validates q, k and params like the forward (e is not needed). */
ATTN_API attn_status attn_score_workspace_size(size_t *size, int backward, const attn_tensor *q,
                                               const attn_tensor *k,
                                               const attn_score_params *params);

/* Reference: plain loops in double, single-threaded, same validation and semantics (scratch
 * through the allocator hook). The oracle of the tests. */
ATTN_API attn_status attn_score_forward_ref(const attn_tensor *e, const attn_tensor *q,
                                            const attn_tensor *k, const attn_score_params *params);
ATTN_API attn_status attn_score_backward_ref(const attn_tensor *dq, const attn_tensor *dk,
                                             const attn_score_grads *grads, const attn_tensor *de,
                                             const attn_tensor *q, const attn_tensor *k,
                                             const attn_score_params *params);

/* Name of a kind ("dot", "scaled_dot", "general", ...); "unknown" otherwise. */
ATTN_API const char *attn_score_kind_name(attn_score_kind kind);

#ifdef __cplusplus
}
#endif

#endif /* ATTN_SCORE_H */
