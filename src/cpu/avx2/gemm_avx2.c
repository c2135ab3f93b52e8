/* AVX2 single-precision GEMM micro-kernel: a 6 x 16 tile of C in 12 ymm accumulators, B rows in
 * 2 ymm and one broadcast of A, 15 of the 16 registers. Partial tiles use masked loads and
 * stores, so nothing outside the m x n corner of C is touched. */
#include <immintrin.h>

#include "../gemm_internal.h"

#define MR 6
#define NR 16

#define ROWS(X) X(0) X(1) X(2) X(3) X(4) X(5)

static void ukernel_6x16(int64_t kc, const float *restrict a, const float *restrict b, float *c,
                         int64_t ldc, int64_t m, int64_t n, float alpha, float beta, bool load_c) {
#define DECL(i) __m256 acc##i##_0 = _mm256_setzero_ps(), acc##i##_1 = _mm256_setzero_ps();
  ROWS(DECL)
#undef DECL
  for (int64_t k = 0; k < kc; k++) {
    const __m256 b0 = _mm256_load_ps(b), b1 = _mm256_load_ps(b + 8);
#define STEP(i)                                       \
  {                                                   \
    const __m256 ai = _mm256_broadcast_ss(a + (i));   \
    acc##i##_0 = _mm256_fmadd_ps(ai, b0, acc##i##_0); \
    acc##i##_1 = _mm256_fmadd_ps(ai, b1, acc##i##_1); \
  }
    ROWS(STEP)
#undef STEP
    a += MR;
    b += NR;
  }
  /* Lane masks for columns j < n of the two 8-wide halves (sign bit set = active). */
  const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  const int n0 = n < 8 ? (int)n : 8, n1 = n > 8 ? (int)n - 8 : 0;
  const __m256i mask0 = _mm256_cmpgt_epi32(_mm256_set1_epi32(n0), lane);
  const __m256i mask1 = _mm256_cmpgt_epi32(_mm256_set1_epi32(n1), lane);
  const __m256 va = _mm256_set1_ps(alpha), vb = _mm256_set1_ps(beta);
  if (load_c) {
#define STORE_C(i)                                                                              \
  if (i < m) {                                                                                  \
    float *ci = c + (int64_t)(i)*ldc;                                                           \
    __m256 c0 = _mm256_maskload_ps(ci, mask0), c1 = _mm256_maskload_ps(ci + 8, mask1);          \
    _mm256_maskstore_ps(ci, mask0, _mm256_fmadd_ps(va, acc##i##_0, _mm256_mul_ps(vb, c0)));     \
    _mm256_maskstore_ps(ci + 8, mask1, _mm256_fmadd_ps(va, acc##i##_1, _mm256_mul_ps(vb, c1))); \
  }
    ROWS(STORE_C)
#undef STORE_C
  } else {
#define STORE(i)                                                       \
  if (i < m) {                                                         \
    float *ci = c + (int64_t)(i)*ldc;                                  \
    _mm256_maskstore_ps(ci, mask0, _mm256_mul_ps(va, acc##i##_0));     \
    _mm256_maskstore_ps(ci + 8, mask1, _mm256_mul_ps(va, acc##i##_1)); \
  }
    ROWS(STORE)
#undef STORE
  }
}

const attn__sgemm_arch attn__sgemm_arch_avx2 = {
    .mr = MR, .nr = NR, .kc = 256, .nc = 1024, .ukernel = ukernel_6x16};

attn_status attn__sgemm_avx2(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K,
                             float alpha, const float *A, int64_t lda, const float *B, int64_t ldb,
                             float beta, float *C, int64_t ldc) {
  return attn__sgemm_run(&attn__sgemm_arch_avx2, trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C,
                         ldc);
}
