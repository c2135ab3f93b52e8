/* LayerNorm of one row: see layernorm.h. One portable body, written so that GCC vectorises its
 * 16 partial sums into one vector register, inlined into AVX-512 and AVX2 copies (GCC target
 * attributes; attn_get_isa() picks one), as src/cpu/gelu.c does. The library builds with
 * -ffp-contract=off, so no copy fuses a multiply-add and all give the same bits. */
#include "layernorm.h"

#include "internal.h"

static inline __attribute__((always_inline)) void ln_body(float *restrict x,
                                                          const float *restrict bias,
                                                          const float *restrict g,
                                                          const float *restrict b, int64_t n,
                                                          float eps) {
  float acc[16] = {0};
  int64_t i = 0;
  if (bias) {
    for (; i + 16 <= n; i += 16)
      for (int j = 0; j < 16; j++) {
        x[i + j] += bias[i + j];
        acc[j] += x[i + j];
      }
    for (int64_t t = i; t < n; t++) x[t] += bias[t];
  } else {
    for (; i + 16 <= n; i += 16)
      for (int j = 0; j < 16; j++) acc[j] += x[i + j];
  }
  float sum = 0;
  for (int j = 0; j < 16; j++) sum += acc[j];
  for (; i < n; i++) sum += x[i];
  const float mean = sum / (float)n;
  float acc2[16] = {0};
  for (i = 0; i + 16 <= n; i += 16)
    for (int j = 0; j < 16; j++) {
      const float d = x[i + j] - mean;
      acc2[j] += d * d;
    }
  float ss = 0;
  for (int j = 0; j < 16; j++) ss += acc2[j];
  for (; i < n; i++) ss += (x[i] - mean) * (x[i] - mean);
  const float rstd = 1.0f / sqrtf(ss / (float)n + eps);
  for (i = 0; i < n; i++) x[i] = (x[i] - mean) * rstd * g[i] + b[i];
}

#if ATTN_X86
ATTN__TARGET_AVX512_VEC static void ln_avx512(float *restrict x, const float *restrict bias,
                                              const float *restrict g, const float *restrict b,
                                              int64_t n, float eps) {
  ln_body(x, bias, g, b, n, eps);
}
ATTN__TARGET_AVX2 static void ln_avx2(float *restrict x, const float *restrict bias,
                                      const float *restrict g, const float *restrict b, int64_t n,
                                      float eps) {
  ln_body(x, bias, g, b, n, eps);
}
#endif

void attn__layer_norm_row(float *x, const float *bias, const float *g, const float *b, int64_t n,
                          float eps) {
#if ATTN_X86
  const attn_isa isa = attn_get_isa();
  if (isa == ATTN_ISA_AVX512) {
    ln_avx512(x, bias, g, b, n, eps);
    return;
  }
  if (isa == ATTN_ISA_AVX2) {
    ln_avx2(x, bias, g, b, n, eps);
    return;
  }
#endif
  ln_body(x, bias, g, b, n, eps);
}
