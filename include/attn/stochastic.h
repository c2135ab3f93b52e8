/* libattn: stochastic alignment. Stochastic hard attention with REINFORCE (Xu et al. 2015) and
 * Gumbel-softmax (Jang et al. 2017; Maddison et al. 2017), forward and backward, over the last
 * axis (MECHANISMS.md §3.4, §3.5).
 *
 * Shapes, masks and rows follow attn/align.h: `in` (the scores e) is an f32 view of 1 to 4 dims
 * (..., n), n >= 1, innermost stride 1; every index of the leading dims is one row, numbered in
 * row-major order ("row r"); the optional additive f32 mask has in's ndim with each dim equal to
 * in's or 1, and -INFINITY blocks a position (even where the score is NaN). Per-row outputs and
 * inputs (index, log_prob, entropy, coef, lambda) are plain arrays of `rows` elements in row
 * order, rows = the product of the leading dims.
 *
 * Randomness. Every random number is a pure function of (params->seed, row, position) through
 * Philox 4x32-10 (attn_philox4x32), with a stream tag per function, so results are bitwise
 * identical for any thread count and ISA, and a backward regenerates its forward's noise from the
 * same params. attn_hard_sample_uniform() and attn_gumbel_noise() expose the numbers used.
 *
 * Errors (attn_last_error() names the argument): NULL_POINTER, UNSUPPORTED_DTYPE (not f32),
 * SHAPE_MISMATCH, BAD_STRIDE, OVERFLOW, ALIASING, INVALID_ARGUMENT (n == 0, n > INT32_MAX for the
 * sampler's int32 index, temperature not finite or <= 0, an index outside [-1, n) in the
 * sampler's backward, beta outside [0, 1], a non-finite reward or baseline), WORKSPACE_TOO_SMALL,
 * OUT_OF_MEMORY. On error the outputs are untouched.
 *
 * Threads: rows are spread over the thread pool, each row computed by one thread in a fixed order
 * (bitwise identical for any thread count). Calls are reentrant. */
#ifndef ATTN_STOCHASTIC_H
#define ATTN_STOCHASTIC_H

#include "attn.h"

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Options of both mechanisms. Initialise with attn_stochastic_params_default() (temperature 1,
 * seed 0, soft) and set what you need. */
typedef struct attn_stochastic_params {
  float temperature; /* T > 0, finite */
  uint64_t seed;     /* keys the Philox streams: use a new one per draw (e.g. the step number) */
  int hard;          /* Gumbel-softmax only: nonzero = one-hot forward, straight-through backward */
} attn_stochastic_params;

ATTN_API attn_stochastic_params attn_stochastic_params_default(void);

/* Workspace bytes the fast calls of this header need for `in` at the current thread count (one
 * call covers all of them). Errors: NULL_POINTER, SHAPE_MISMATCH (ndim), INVALID_ARGUMENT (n < 1),
 * OVERFLOW. */
ATTN_API attn_status attn_stochastic_workspace_size(size_t *size, const attn_tensor *in);

/* ---- stochastic hard attention (MECHANISMS.md §3.5) ------------------------------------------
 *
 * Per row: z = in / T + mask, p = softmax(z), and one position s ~ Categorical(p) by the inverse
 * CDF on one uniform u = attn_hard_sample_uniform(seed, r): s is the first position whose
 * cumulative weight exceeds u * sum (blocked positions, p = 0, are never drawn). Outputs:
 *   weights  (shape of in, or NULL)  one_hot(s)
 *   index    int32[rows]             s
 *   log_prob f32[rows] or NULL       log p_s = z_s - logsumexp(z)
 *   entropy  f32[rows] or NULL       H(p) = -sum_j p_j log p_j (over unblocked positions)
 * A fully blocked row gives index -1, weights 0, log_prob 0 and entropy 0, and zero gradients. A
 * NaN or +inf among a row's unblocked z gives index -1, weights NaN, log_prob and entropy NaN.
 * The fast path computes p in f32 and the cumulative sums in double; the reference (double
 * throughout) can draw a neighbouring position when u * sum lies within rounding (~1e-6 relative)
 * of a cumulative boundary.
 * weights, index, log_prob and entropy must not overlap each other or in / mask. */
ATTN_API attn_status attn_hard_sample_forward(const attn_tensor *weights, int32_t *index,
                                              float *log_prob, float *entropy,
                                              const attn_tensor *in, const attn_tensor *mask,
                                              const attn_stochastic_params *params, void *workspace,
                                              size_t workspace_size);

/* Backward of the REINFORCE surrogate L = sum_r (coef[r] * log p_{s_r} + lambda[r] * H_r), with
 * s_r = index[r] from the forward (same in, mask, params). Overwrites (=) d_in (shape of in):
 *   dL/dz_j = coef_r (onehot(s)_j - p_j) - lambda_r p_j (log p_j + H_r),   d_in = dL/dz / T.
 * With coef_r = -(R_r - b) (attn_reinforce_coef) minimising L follows the REINFORCE estimator
 * of the gradient of the expected reward; lambda_r > 0 then penalises entropy, lambda_r < 0
 * rewards it (Xu et al. add lambda_e dH to the ascent direction: pass lambda = -lambda_e).
 * coef and lambda are f32[rows] or NULL (0). index holds the forward's draws: each value in
 * [-1, n), else INVALID_ARGUMENT naming index[r]. Rows with index -1 get zero gradients (an index
 * at a blocked position contributes no onehot term, as that position has no gradient). The one-hot
 * weights themselves carry no gradient (the score-function estimator replaces it). d_in may be the
 * very same view as in (in place); otherwise it must not overlap any input. */
ATTN_API attn_status attn_hard_sample_backward(const attn_tensor *d_in, const float *coef,
                                               const float *lambda, const int32_t *index,
                                               const attn_tensor *in, const attn_tensor *mask,
                                               const attn_stochastic_params *params,
                                               void *workspace, size_t workspace_size);

/* The uniform in [0, 1) (53 random bits) that row r of attn_hard_sample_forward draws with. */
ATTN_API double attn_hard_sample_uniform(uint64_t seed, int64_t row);

/* REINFORCE with a moving-average baseline (Xu et al. 2015: b_k = 0.9 b_{k-1} + 0.1 R_k).
 * For rows r in [0, rows): coef[r] = -(reward[r] - *baseline), using the baseline before this
 * call; then *baseline <- beta * *baseline + (1 - beta) * mean_r reward[r] (in double; unchanged
 * when rows = 0). coef feeds attn_hard_sample_backward. beta in [0, 1] (0.9 is the paper's);
 * rewards and the baseline must be finite (INVALID_ARGUMENT naming reward[r] or baseline, nothing
 * written). coef must not overlap reward or baseline. */
ATTN_API attn_status attn_reinforce_coef(float *coef, float *baseline, const float *reward,
                                         int64_t rows, float beta);

/* ---- Gumbel-softmax (MECHANISMS.md §3.4) -----------------------------------------------------
 *
 * Per row: g_j = attn_gumbel_noise(seed, r, j), y_j = (in_j + g_j) / T + mask_j,
 *   soft: out = softmax(y)
 *   hard: out = one_hot(argmax y) (ties to the lowest index); backward through softmax(y)
 *         (straight-through).
 * Fully blocked rows give 0 and zero gradients; NaN or +inf among a row's unblocked y make the
 * row NaN (as attn/align.h). out may be the very same view as in; otherwise no overlap. */
ATTN_API attn_status attn_gumbel_softmax_forward(const attn_tensor *out, const attn_tensor *in,
                                                 const attn_tensor *mask,
                                                 const attn_stochastic_params *params,
                                                 void *workspace, size_t workspace_size);

/* Overwrites (=) d_in with dL/d(in) = (1/T) p (d_out - <p, d_out>), p = softmax(y) regenerated
 * from in, mask and params (the forward's out is used for p in soft mode). d_out, out: shape of
 * in. d_in must not overlap any input. */
ATTN_API attn_status attn_gumbel_softmax_backward(const attn_tensor *d_in, const attn_tensor *d_out,
                                                  const attn_tensor *out, const attn_tensor *in,
                                                  const attn_tensor *mask,
                                                  const attn_stochastic_params *params,
                                                  void *workspace, size_t workspace_size);

/* The Gumbel noise g = -log(-log U) of row r, position j: U = (k + 0.5) / 2^23 with k the top
 * 23 bits of word j % 4 of the Philox block (row, j / 4), so g lies in [-2.81, 16.7]. Computed in
 * f32 with a polynomial log (within ~2 ulp per log), the same bits on every ISA; the reference
 * uses the same noise. */
ATTN_API float attn_gumbel_noise(uint64_t seed, int64_t row, int64_t j);

/* Reference implementations: plain loops in double, single-threaded, the same validation and
 * semantics (scratch through the allocator hook). The oracle of the tests. */
ATTN_API attn_status attn_hard_sample_forward_ref(const attn_tensor *weights, int32_t *index,
                                                  float *log_prob, float *entropy,
                                                  const attn_tensor *in, const attn_tensor *mask,
                                                  const attn_stochastic_params *params);
ATTN_API attn_status attn_hard_sample_backward_ref(const attn_tensor *d_in, const float *coef,
                                                   const float *lambda, const int32_t *index,
                                                   const attn_tensor *in, const attn_tensor *mask,
                                                   const attn_stochastic_params *params);
ATTN_API attn_status attn_gumbel_softmax_forward_ref(const attn_tensor *out, const attn_tensor *in,
                                                     const attn_tensor *mask,
                                                     const attn_stochastic_params *params);
ATTN_API attn_status attn_gumbel_softmax_backward_ref(const attn_tensor *d_in,
                                                      const attn_tensor *d_out,
                                                      const attn_tensor *out, const attn_tensor *in,
                                                      const attn_tensor *mask,
                                                      const attn_stochastic_params *params);

#ifdef __cplusplus
}
#endif

#endif /* ATTN_STOCHASTIC_H */
