/* Portable single-precision GEMM micro-kernel (any CPU): a 6 x 8 tile of C in GCC/Clang vector
 * types, which the compiler keeps in the baseline ISA's vector registers. Blocking and packing
 * are the shared driver's (gemm.c). */
#include "gemm_internal.h"

#define MR 6
#define NR 8

/* Eight floats as one value: GCC and Clang lower this to whatever vector registers the target
 * has (two SSE registers on baseline x86-64, NEON on ARM) or to scalar code. */
typedef float v8f __attribute__((vector_size(32)));

static void ukernel_6x8(int64_t kc, const float *restrict a, const float *restrict b, float *c,
                        int64_t ldc, int64_t m, int64_t n, float alpha, float beta, bool load_c) {
  v8f acc[MR];
  for (int i = 0; i < MR; i++) acc[i] = (v8f){0};
  for (int64_t k = 0; k < kc; k++) {
    v8f bk;
    memcpy(&bk, b + k * NR, sizeof bk);
    for (int i = 0; i < MR; i++) acc[i] += a[k * MR + i] * bk;
  }
  for (int64_t i = 0; i < m; i++) {
    float *ci = c + i * ldc;
    float row[NR];
    memcpy(row, &acc[i], sizeof row);
    if (load_c)
      for (int64_t j = 0; j < n; j++) ci[j] = alpha * row[j] + beta * ci[j];
    else
      for (int64_t j = 0; j < n; j++) ci[j] = alpha * row[j];
  }
}

const attn__sgemm_arch attn__sgemm_arch_scalar = {
    .mr = MR, .nr = NR, .kc = 256, .nc = 512, .ukernel = ukernel_6x8};

attn_status attn__sgemm_scalar(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K,
                               float alpha, const float *A, int64_t lda, const float *B,
                               int64_t ldb, float beta, float *C, int64_t ldc) {
  return attn__sgemm_run(&attn__sgemm_arch_scalar, trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C,
                         ldc);
}
