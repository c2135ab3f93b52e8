/* libattn: alignment functions, align(e) -> a over the last axis, forward and backward.
 *
 * Shapes. `in` (the scores e) and `out` (the weights a) are f32 views of 1 to 4 dims with the
 * same shape (..., n): every index of the leading dims is one row, and the function acts on the
 * n entries of each row. The innermost stride must be 1; the other strides are free (>= 0; an
 * output dim of size > 1 may not have stride 0). Rows are numbered in row-major order of the
 * leading dims ("row r"); the row's position t (for local-m) is its index along dim ndim - 2
 * (0 for 1-d views).
 *
 * Mask. Optional additive f32 mask with the same ndim as `in`; each dim either equals in's or is
 * 1 (broadcast). -INFINITY blocks a position. Every kind first forms, per row,
 *     z_j = in_j / temperature + mask_j          (z_j = -inf outside a local window)
 * and then applies its function to z. A blocked position always gets a = 0, and a row whose
 * positions are all blocked gets a = 0 everywhere and zero gradients: masking never gives NaN.
 * A -inf mask entry blocks its position even where the score is NaN (NaN there stays out).
 * NaN or +inf among a row's z makes the whole row NaN (sigmoid: only that entry; +inf gives 1).
 *
 * Kinds (MECHANISMS.md §3):
 *   SOFTMAX         a = softmax(z)
 *   SIGMOID         a_j = sigmoid(z_j), independently (rows do not sum to 1)
 *   HARDMAX         a = one_hot(argmax z), ties to the lowest index. Backward: 0, or with
 *                   straight_through the softmax gradient, d_in = (1/T) p (g - <p, g>),
 *                   p = softmax(z)
 *   SPARSEMAX       Euclidean projection of z on the simplex (exact zeros)
 *   ENTMAX15        1.5-entmax, exact (sort-based)
 *   ENTMAX_BISECT   alpha-entmax for any alpha > 1 by n_iter bisection steps, then renormalised.
 *                   alpha = 2 gives sparsemax and alpha = 1.5 entmax-1.5 (to rounding)
 *
 * Local attention (Luong et al. 2015), a window of half-width D = `window` around a centre c_r:
 *   LOCAL_M   c_r = t (the row's position along dim ndim - 2); positions outside [c-D, c+D] are
 *             blocked, then the kind is applied.
 *   LOCAL_P   c_r = round(p_r) = floor(p_r + 0.5) with p_r = positions[r] (a real number, the
 *             predicted position); positions outside [c-D, c+D] are blocked, the kind gives ã,
 *             and each weight is multiplied by exp(-(j - p_r)^2 / (2 sigma^2)), sigma = D / 2
 *             (no renormalisation). D = 0 is hard attention at round(p_r): the window is that one
 *             position and its factor is 1 (no gradient for p_r). The backward writes
 *             d_positions[r] = sum_j a_j (j - p_r) / sigma^2 * d_out_j (the path through the window
 *             membership is piecewise constant and contributes nothing).
 *   The window must meet the sequence: c - D <= n - 1 and c + D >= 0 for every row, else
 *   ATTN_STATUS_INVALID_ARGUMENT naming the row.
 *
 * Errors (attn_last_error() names the argument): NULL_POINTER (in, out, d_in, d_out, params->
 * positions for LOCAL_P, a tensor's data), UNSUPPORTED_DTYPE (not f32), SHAPE_MISMATCH (ndim,
 * dims, mask broadcast), BAD_STRIDE, OVERFLOW, ALIASING, INVALID_ARGUMENT (n == 0 (no positions
 * to align over), temperature not finite or <= 0, alpha not finite or <= 1 (ENTMAX_BISECT),
 * n_iter < 1, window < 0, an unknown kind or local mode, a non-finite position, a window outside
 * the sequence), WORKSPACE_TOO_SMALL, OUT_OF_MEMORY. On error the outputs are untouched.
 *
 * Threads: rows are spread over the thread pool; each row is computed by one thread in a fixed
 * order, so results are bitwise identical for any thread count. Calls are reentrant. */
#ifndef ATTN_ALIGN_H
#define ATTN_ALIGN_H

#include "attn.h"

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum attn_align_kind {
  ATTN_ALIGN_SOFTMAX = 0,
  ATTN_ALIGN_SIGMOID = 1,
  ATTN_ALIGN_HARDMAX = 2,
  ATTN_ALIGN_SPARSEMAX = 3,
  ATTN_ALIGN_ENTMAX15 = 4,
  ATTN_ALIGN_ENTMAX_BISECT = 5,
} attn_align_kind;

typedef enum attn_align_local {
  ATTN_ALIGN_LOCAL_NONE = 0,
  ATTN_ALIGN_LOCAL_M = 1,
  ATTN_ALIGN_LOCAL_P = 2,
} attn_align_local;

/* Options. Initialise with attn_align_params_default() (softmax, temperature 1, alpha 1.5,
 * n_iter 50, no straight-through, no window) and set what you need. */
typedef struct attn_align_params {
  attn_align_kind kind;
  float temperature;    /* T > 0, finite; divides the scores for every kind */
  float alpha;          /* ENTMAX_BISECT only: alpha > 1, finite */
  int n_iter;           /* ENTMAX_BISECT only: bisection steps, >= 1 */
  int straight_through; /* HARDMAX only: nonzero = softmax gradient in the backward */
  attn_align_local local;
  int64_t window;         /* D >= 0, the half-width of a local window */
  const float *positions; /* LOCAL_P: p_r, one per row (rows in row-major order), finite */
} attn_align_params;

ATTN_API attn_align_params attn_align_params_default(void);

/* Workspace bytes the fast forward and backward need for rows of length n at the current thread
 * count (one call covers both). *size = 0 is a valid answer. Errors: NULL_POINTER, INVALID_ARGUMENT
 * (n < 1 with any rows), OVERFLOW. */
ATTN_API attn_status attn_align_workspace_size(size_t *size, const attn_tensor *in,
                                               const attn_align_params *params);

/* Forward: out = align(in, mask). out may be the very same view as in (in place); otherwise it
 * must not overlap in or mask. mask may be NULL. params NULL = defaults. workspace: NULL to
 * allocate through the allocator hook, else attn_align_workspace_size() bytes, 64-byte aligned. */
ATTN_API attn_status attn_align_forward(const attn_tensor *out, const attn_tensor *in,
                                        const attn_tensor *mask, const attn_align_params *params,
                                        void *workspace, size_t workspace_size);

/* Backward. Overwrites (=) d_in with dL/d(in), and, for LOCAL_P when d_positions is not NULL,
 * d_positions[r] (= as well, one float per row). Inputs: d_out (dL/da, shape of in), out (the
 * forward's result for the same in, mask and params) and in (the scores, needed by the
 * straight-through hardmax and by local-p, which recompute from them). The mask is not
 * differentiated. d_in must not overlap any input; d_positions must not overlap anything. */
ATTN_API attn_status attn_align_backward(const attn_tensor *d_in, float *d_positions,
                                         const attn_tensor *d_out, const attn_tensor *out,
                                         const attn_tensor *in, const attn_tensor *mask,
                                         const attn_align_params *params, void *workspace,
                                         size_t workspace_size);

/* Reference implementations: plain loops accumulating in double, single-threaded, the same
 * validation and semantics (scratch through the allocator hook). The oracle of the tests. */
ATTN_API attn_status attn_align_forward_ref(const attn_tensor *out, const attn_tensor *in,
                                            const attn_tensor *mask,
                                            const attn_align_params *params);
ATTN_API attn_status attn_align_backward_ref(const attn_tensor *d_in, float *d_positions,
                                             const attn_tensor *d_out, const attn_tensor *out,
                                             const attn_tensor *in, const attn_tensor *mask,
                                             const attn_align_params *params);

#ifdef __cplusplus
}
#endif

#endif /* ATTN_ALIGN_H */
