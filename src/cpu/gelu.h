/* GELU in its exact erf form, 0.5 x (1 + erf(x / sqrt 2)) = x Phi(x), vectorised (src/cpu/gelu.c).
 * Shared by the training layer's GELU op (src/nn/ops_elementwise.c) and the BERT encoder
 * (src/models/bert.c). Not installed.
 *
 * Accuracy (tests/test_gelu.c sweeps every ISA against erf in double): a few ulp relative to the
 * result for |x| <= 12.5, both for GELU and its derivative; beyond, GELU is x or 0 to float
 * precision and the error is below 1e-33 absolute. NaN stays NaN; GELU(+inf) = +inf and
 * GELU(-inf) is 0 to 1e-33; the derivative is 1 at +inf and 0 (to 1e-33) at -inf. Each element is a
 * pure function of its input, so results never depend on how a caller splits the work across
 * threads; they may differ in the last bits between ISAs (ATTN_ISA). Single-threaded: callers split
 * the work. */
#ifndef ATTN_CPU_GELU_H
#define ATTN_CPU_GELU_H

#include <stdint.h>

#include "attn.h"

/* y[i] = gelu(x[i]) for i < n. y and x must not overlap. */
void attn__gelu_erf_forward(float *y, const float *x, int64_t n);

/* y[i] = gelu(y[i] + b[i]) for i < n, in place (the bias add and GELU in one pass). */
void attn__gelu_erf_bias_inplace(float *y, const float *b, int64_t n);

/* gx[i] += dy[i] * gelu'(x[i]) for i < n (accumulate != 0), or gx[i] = dy[i] * gelu'(x[i])
 * (accumulate == 0: gx's old contents are not read); gelu'(x) = Phi(x) + x phi(x). gx must not
 * overlap dy or x. */
void attn__gelu_erf_backward(float *gx, const float *dy, const float *x, int64_t n, int accumulate);

/* The epilogues of attn_gemm_packed on one row of n: y[i] += b[i] (ATTN_EPILOGUE_BIAS), then GELU
 * (BIAS_GELU, as attn__gelu_erf_bias_inplace) or max(., 0) keeping NaN (BIAS_RELU); NONE does
 * nothing. y and b must not overlap. */
void attn__bias_epilogue(attn_epilogue kind, float *y, const float *b, int64_t n);

#endif
