/* libattn: fused additive (Bahdanau) attention, forward and backward.
 *
 *   e_ij = sum_c w_c tanh(q1_ic + k2_jc + b_c)          (MECHANISMS.md §2, act = tanh)
 *   s_ij = e_ij + mask_ij                                (-INFINITY blocks the pair)
 *   a_ij = softmax_j(s_ij),  out_i = sum_j a_ij v_j,  lse_i = log sum_j exp(s_ij)
 *
 * The projections are the caller's: q1 = q W1^T and k2 = k W2^T (attn_gemm does them), so the
 * kernel's inputs are already in the score space of width d. The B x Tq x Tk x d tensor of tanh
 * values is never stored: the kernel keeps them in registers (the backward: one 4 x 16 x d tile at a
 * time). Extra memory is O(Tk d) per thread plus O(B d) for the w/b gradient partials, plus, for
 * the AVX-512 backward with B < 16, dq1 partials of up to 15 key blocks ((nkb - 1) B Tq d floats,
 * nkb = min(ceil(16 / B), ceil(Tk / 64)); one extra dq1 at B = 8). The Tq x Tk weights exist only
 * when the caller asks for them. docs/additive.md has the details.
 *
 * Shapes (f32; innermost stride 1, other strides free, >= 0):
 *   q1: (B, Tq, d)   k2: (B, Tk, d)   v: (B, Tk, Dv)   w: (d)   b: (d) or NULL (= 0)
 *   out: (B, Tq, Dv)   lse: (B, Tq) or NULL (the backward needs it)
 *   weights: (B, Tq, Tk) or NULL (the softmax probabilities, for inspection)
 *   params->mask: NULL or (B | 1, Tq | 1, Tk | 1), additive, a dim of size 1 broadcasts.
 * d >= 1, Tk >= 1 (no keys is an error), B, Tq, Dv >= 0.
 *
 * Masking: a row whose keys are all blocked gets out = 0, lse = -INFINITY, weights 0 and zero
 * gradients; never NaN. A blocked key's k2 and v are never read into a result (NaN there stays
 * out). NaN or +inf in unblocked inputs propagates.
 *
 * Threads: the forward splits (batch, block of queries); the backward splits batches (AVX-512:
 * (batch, block of keys), the blocks chosen from the shape alone) and reduces its partials in a
 * fixed order. Results are bitwise identical for any thread count; different ISAs may differ in
 * the last bits (the AVX-512 kernels use FMAs and another form of tanh, see attn_tanh_approx).
 *
 * Errors (attn_last_error() names the argument): NULL_POINTER, UNSUPPORTED_DTYPE (not f32),
 * SHAPE_MISMATCH, BAD_STRIDE, OVERFLOW, ALIASING (an output overlaps an input or another output),
 * INVALID_ARGUMENT (Tk == 0, d == 0, negative dims), WORKSPACE_TOO_SMALL, OUT_OF_MEMORY. On error
 * the outputs are untouched. */
#ifndef ATTN_ADDITIVE_H
#define ATTN_ADDITIVE_H

#include "attn.h"

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct attn_additive_params {
  const attn_tensor *mask; /* NULL = no mask */
} attn_additive_params;

ATTN_API attn_additive_params attn_additive_params_default(void);

/* Forward. workspace: NULL to allocate through the allocator hook, else at least
 * attn_additive_workspace_size() bytes, 64-byte aligned. */
ATTN_API attn_status attn_additive_forward(const attn_tensor *out, const attn_tensor *lse,
                                           const attn_tensor *weights, const attn_tensor *q1,
                                           const attn_tensor *k2, const attn_tensor *v,
                                           const attn_tensor *w, const attn_tensor *b,
                                           const attn_additive_params *params, void *workspace,
                                           size_t workspace_size);

/* Backward. Overwrites (=) dq1, dk2, dv, dw and db (db may be NULL; it is then not computed,
 * and b may still be given). dout: (B, Tq, Dv); out and lse from the forward with the same
 * inputs and params. The mask is not differentiated. Gradients must not overlap each other or
 * any input. */
ATTN_API attn_status attn_additive_backward(const attn_tensor *dq1, const attn_tensor *dk2,
                                            const attn_tensor *dv, const attn_tensor *dw,
                                            const attn_tensor *db, const attn_tensor *dout,
                                            const attn_tensor *q1, const attn_tensor *k2,
                                            const attn_tensor *v, const attn_tensor *w,
                                            const attn_tensor *b, const attn_tensor *out,
                                            const attn_tensor *lse,
                                            const attn_additive_params *params, void *workspace,
                                            size_t workspace_size);

/* Workspace bytes for the forward (backward = 0) or the backward (backward = 1) of these shapes
 * at the current thread count and ISA (attn_get_isa()). Only q1, k2 and v are read (for B, Tq,
 * Tk, d, Dv). Errors: NULL_POINTER, SHAPE_MISMATCH (not 3-d), INVALID_ARGUMENT (B, Tq or Dv
 * negative, Tk or d below 1), OVERFLOW; *size is written only on success. */
ATTN_API attn_status attn_additive_workspace_size(size_t *size, int backward,
                                                  const attn_tensor *q1, const attn_tensor *k2,
                                                  const attn_tensor *v);

/* Reference: plain loops in double, single-threaded, same validation. The backward recomputes
 * everything from the inputs in double (it validates out and lse but does not read them). */
ATTN_API attn_status attn_additive_forward_ref(const attn_tensor *out, const attn_tensor *lse,
                                               const attn_tensor *weights, const attn_tensor *q1,
                                               const attn_tensor *k2, const attn_tensor *v,
                                               const attn_tensor *w, const attn_tensor *b,
                                               const attn_additive_params *params);
ATTN_API attn_status attn_additive_backward_ref(const attn_tensor *dq1, const attn_tensor *dk2,
                                                const attn_tensor *dv, const attn_tensor *dw,
                                                const attn_tensor *db, const attn_tensor *dout,
                                                const attn_tensor *q1, const attn_tensor *k2,
                                                const attn_tensor *v, const attn_tensor *w,
                                                const attn_tensor *b, const attn_tensor *out,
                                                const attn_tensor *lse,
                                                const attn_additive_params *params);

/* The f32 tanh of the portable kernels (a rational approximation, |error| < 5e-7 over the reals;
 * exact sign, NaN kept), exposed so its accuracy is testable. The AVX-512 kernels compute
 * tanh(a + b) as 1 - 2 / (1 + e^{2a} e^{2b}) when |a|, |b| <= 20 and this rational (with FMAs)
 * otherwise; both also within 5e-7 (tests/test_additive.c). */
ATTN_API float attn_tanh_approx(float x);

#ifdef __cplusplus
}
#endif

#endif /* ATTN_ADDITIVE_H */
