/* LayerNorm of one row, vectorised per ISA (src/cpu/layernorm.c): the BERT encoder's epilogue
 * after its output projections (src/models/bert.c). Not installed.
 *
 * y = (v - mean) / sqrt(var + eps) * g + b with v = x + bias (bias may be NULL), mean and var
 * (the biased variance, two passes) over the n elements. The sums run over 16 partial
 * accumulators (element i into accumulator i mod 16), which are then added in order, and the
 * n mod 16 tail after them; every ISA does exactly this arithmetic (no fused multiply-add), so
 * the result is the same bits on every ISA and thread count. Single-threaded: callers split
 * the rows. */
#ifndef ATTN_CPU_LAYERNORM_H
#define ATTN_CPU_LAYERNORM_H

#include <stdint.h>

/* x[i] = LayerNorm(x + bias)[i] * g[i] + b[i] for i < n, in place; bias NULL adds nothing. x must
 * not overlap bias, g or b. n >= 1. */
void attn__layer_norm_row(float *x, const float *bias, const float *g, const float *b, int64_t n,
                          float eps);

#endif
