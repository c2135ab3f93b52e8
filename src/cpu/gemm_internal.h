/* Internal interface of the single-precision GEMM: argument validation shared by attn_gemm and
 * attn_gemm_ref, and the blocked driver shared by every ISA's micro-kernel. Not installed. */
#ifndef ATTN_GEMM_INTERNAL_H
#define ATTN_GEMM_INTERNAL_H

#include "internal.h"

/* Validate the arguments of attn_gemm / attn_gemm_ref exactly as attn.h documents them; `fn`
 * names the public call in the error message. Returns ATTN_OK or the status with attn__fail. */
attn_status attn__sgemm_validate(const char *fn, attn_layout layout, attn_trans trans_a,
                                 attn_trans trans_b, int64_t M, int64_t N, int64_t K,
                                 const float *A, int64_t lda, const float *B, int64_t ldb,
                                 const float *C, int64_t ldc);

/* Micro-kernel contract. a is a packed MR x kc panel of op(A) (a[k * MR + i], rows past the edge
 * zero), b a packed kc x NR panel of op(B) (b[k * NR + j], columns past the edge zero). For
 * i < m <= MR and j < n <= NR it forms acc = sum_{k = 0}^{kc - 1} a[k][i] * b[k][j] in f32, k in
 * increasing order, and stores
 *     c[i * ldc + j] = load_c ? alpha * acc + beta * c[i * ldc + j] : alpha * acc
 * (a kernel may fuse the multiply-add). Nothing outside the m x n corner of c is read or written,
 * and c is not read when load_c is false. kc >= 1. Each element's arithmetic depends only on its
 * own inputs, never on m, n or its position in the tile: this is what makes results independent
 * of how the driver tiles C, and so of the thread count. */
typedef void (*attn__sgemm_ukernel_fn)(int64_t kc, const float *a, const float *b, float *c,
                                       int64_t ldc, int64_t m, int64_t n, float alpha, float beta,
                                       bool load_c);

/* Optional (NULL: always pack A): the micro-kernel with a full MR-row panel of a non-transposed
 * A read in place instead of packed. a points at A[row0][k0]; row i of the panel is a + i * lda,
 * for every i < MR (so m = MR); b, c, n, alpha, beta and load_c as above. Element for element
 * the same arithmetic as ukernel on the packed panel, so C is bitwise the same; it saves the
 * packing, which is bound by the latency of reading A. */
typedef void (*attn__sgemm_ukernel_rows_fn)(int64_t kc, const float *a, int64_t lda,
                                            const float *b, float *c, int64_t ldc, int64_t n,
                                            float alpha, float beta, bool load_c);

/* Packing (optional per ISA; NULL selects the portable loops of gemm.c).
 * pack_a: dst[k * MR + i] = op(A)[row0 + i][k0 + k] for i < rows <= MR, k < kb, 0 for
 *   rows <= i < MR; op(A)[i][k] is A[i * lda + k], or A[k * lda + i] when trans_a.
 * pack_b: ceil(cols / NR) panels of kb x NR, panel q at dst + q * kb * NR, with
 *   dst_q[k * NR + j] = op(B)[k0 + k][col0 + q * NR + j], 0 past cols; op(B)[k][j] is
 *   B[k * ldb + j], or B[j * ldb + k] when trans_b. dst is 64-byte aligned, and so is every
 *   panel when NR * 4 is a multiple of 64. */
typedef void (*attn__sgemm_pack_a_fn)(bool trans_a, const float *A, int64_t lda, int64_t row0,
                                      int64_t rows, int64_t k0, int64_t kb, float *dst);
typedef void (*attn__sgemm_pack_b_fn)(bool trans_b, const float *B, int64_t ldb, int64_t k0,
                                      int64_t kb, int64_t col0, int64_t cols, float *dst);

/* One ISA's micro-kernel and the cache blocking that suits it. */
typedef struct attn__sgemm_arch {
  int mr, nr; /* micro-tile: rows of C (broadcast side) x columns of C (vector side) */
  int kc;     /* largest K block: an MR x KC panel of A stays in L1 */
  int nc;     /* largest column block: a KC x NC block of packed B stays in L2 */
  attn__sgemm_ukernel_fn ukernel;
  attn__sgemm_ukernel_rows_fn ukernel_rows; /* NULL: A is always packed */
  /* Optional (NULL: every panel runs ukernel): the ukernel contract for m <= small_mr rows, on
   * the same MR-row packed panels, with fewer accumulators. The driver gives the last rows of a
   * tile to it: r <= small_mr rows as one panel, and MR + r <= 2 small_mr as two (16 = 8 + 8
   * instead of 14 + 2: a 1024-row product computes 1024 rows, not 1036). Same arithmetic per
   * element, so C is bitwise what ukernel gives. */
  int small_mr;
  attn__sgemm_ukernel_fn ukernel_small;
  attn__sgemm_pack_a_fn pack_a; /* NULL: portable */
  attn__sgemm_pack_b_fn pack_b; /* NULL: portable */
} attn__sgemm_arch;

/* Row-major C = alpha op(A) op(B) + beta C on validated arguments, with `arch`'s micro-kernel:
 * packs op(A) and op(B) into panels (buffers from attn__malloc, all taken before C is written;
 * ATTN_STATUS_OUT_OF_MEMORY with C untouched otherwise) and spreads blocks of C over the thread
 * pool. K is cut into blocks that depend only on K and arch->kc, and each block's contribution
 * is added to C in increasing order, so every element of C is computed the same way for any
 * thread count. Handles M, N == 0, and K == 0 or alpha == 0 (C = beta C without reading A, B;
 * beta == 0 writes zeros without reading C). */
attn_status attn__sgemm_run(const attn__sgemm_arch *arch, bool trans_a, bool trans_b, int64_t M,
                            int64_t N, int64_t K, float alpha, const float *A, int64_t lda,
                            const float *B, int64_t ldb, float beta, float *C, int64_t ldc);

/* Each ISA's arch (src/cpu/gemm_scalar.c, avx2/gemm_avx2.c, avx512/gemm_avx512.c), and the one of
 * the ISA in force (attn_get_isa()), which is what attn_gemm uses. */
extern const attn__sgemm_arch attn__sgemm_arch_scalar;
#if ATTN_X86
extern const attn__sgemm_arch attn__sgemm_arch_avx2;
extern const attn__sgemm_arch attn__sgemm_arch_avx512;
#endif
const attn__sgemm_arch *attn__sgemm_arch_get(void);

/* attn_gemm_packed with the caller's epilogue on whole rows instead of a built-in one: once rows
 * [row0, row0 + m) of C (m <= the micro-kernel's MR) are final, epi(ctx, C + row0 * ldc, ldc,
 * row0, m) runs on them, on the thread that computed them and while they are in cache; different
 * row ranges may run at once on different threads. For a layer's epilogue that needs a whole row
 * (LayerNorm after the output projection). Same arguments and errors as attn_gemm_packed. */
typedef void (*attn__gemm_row_epilogue)(void *ctx, float *c, int64_t ldc, int64_t row0, int64_t m);
attn_status attn__gemm_packed_rows(attn_trans trans_a, int64_t M, float alpha, const float *A,
                                   int64_t lda, const attn_gemm_packed_b *b, float beta, float *C,
                                   int64_t ldc, attn__gemm_row_epilogue epi, void *ctx);

#endif /* ATTN_GEMM_INTERNAL_H */
