/* Reference single-precision GEMM: the definition of attn_gemm's semantics and the oracle of its
 * tests. Same validation as attn_gemm; a plain triple loop accumulating in double, then
 * C = alpha * sum + beta * C rounded once to f32. */
#include "../cpu/gemm_internal.h"

attn_status attn_gemm_ref(attn_layout layout, attn_trans trans_a, attn_trans trans_b, int64_t M,
                          int64_t N, int64_t K, float alpha, const float *A, int64_t lda,
                          const float *B, int64_t ldb, float beta, float *C, int64_t ldc) {
  attn__clear_error();
  attn_status st = attn__sgemm_validate("attn_gemm_ref", layout, trans_a, trans_b, M, N, K, A, lda,
                                        B, ldb, C, ldc);
  if (st != ATTN_OK) return st;
  bool ta = trans_a == ATTN_TRANS, tb = trans_b == ATTN_TRANS;
  bool row = layout == ATTN_ROW_MAJOR;
  /* Element (r, c) of a stored matrix with leading dimension ld is at r * ld + c in row-major
   * and at r + c * ld in column-major. op(A)(i, k) is A(i, k), or A(k, i) when transposed. */
  for (int64_t i = 0; i < M; i++) {
    for (int64_t j = 0; j < N; j++) {
      double sum = 0.0;
      /* alpha == 0 (like K == 0) does not read A or B, as in BLAS. */
      if (alpha != 0.0f) {
        for (int64_t k = 0; k < K; k++) {
          int64_t ar = ta ? k : i, ac = ta ? i : k;
          int64_t br = tb ? j : k, bc = tb ? k : j;
          double a = A[row ? ar * lda + ac : ar + ac * lda];
          double b = B[row ? br * ldb + bc : br + bc * ldb];
          sum += a * b;
        }
      }
      float *c = &C[row ? i * ldc + j : i + j * ldc];
      double r = (double)alpha * sum;
      if (beta != 0.0f) r += (double)beta * (double)*c; /* beta == 0: C is not read */
      *c = (float)r;
    }
  }
  return ATTN_OK;
}
