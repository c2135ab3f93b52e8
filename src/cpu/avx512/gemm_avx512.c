/* AVX-512 single-precision GEMM micro-kernel: a 14 x 32 tile of C in 28 zmm accumulators. Each
 * k step loads one 32-wide row of the packed B panel (2 zmm) and, per row of the tile, broadcasts
 * one element of the packed A panel (a load-port-only uop) into 2 FMAs: 31 of the 32 registers,
 * and 16 loads per 28 FMAs, well under the two load ports. Blocking for a 48 KB L1 and
 * a 2 MB L2: the 14 x KC panel of A (14 KB at KC = 256) stays in L1 while the 32-wide panels of
 * the KC x NC block of B (1 MB at NC = 1024) stream from L2; KC = 256 measured best among
 * 192..384 at 1024^3. Packing uses 16 x 16 in-register transposes where op(A) or op(B) has to be
 * turned around. A full 14-row panel of a non-transposed A is not packed at all: ukernel_14x32_rows
 * reads it where it lies (packing it was latency-bound on A coming from L3; in BERT-MiniLM the
 * batch ran 1.6-1.7% faster without it, median of 20-40 alternated pairs, 1 and 2 threads). */
#include <immintrin.h>

#include "../gemm_internal.h"

#define MR 14
#define NR 32

/* X(i) for each of the MR rows. */
#define ROWS(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7) X(8) X(9) X(10) X(11) X(12) X(13)

/* The kernel body, for A packed (a[k * MR + i]) or read in place (in_place: row i of the panel at
 * a + i * lda, all MR rows valid). Only the address of A's element differs: the arithmetic, and
 * so every bit of C, is the same both ways. In place, five row pointers advance along k and the
 * other rows are reached as pointer + lda or + 2 lda (base + index addressing), so a k step still
 * issues 14 broadcasts, 2 loads and 28 FMAs. */
static inline __attribute__((always_inline)) void ukernel_body(
    const int R, const bool in_place, int64_t kc, const float *restrict a, int64_t lda,
    const float *restrict b, float *c, int64_t ldc, int64_t m, int64_t n, float alpha, float beta,
    bool load_c) {
#define DECL(i) __m512 acc##i##_0 = _mm512_setzero_ps(), acc##i##_1 = _mm512_setzero_ps();
  ROWS(DECL)
#undef DECL
  /* Fetch the C tile while the k loop runs: it is read (or written) only at the end, and after a
   * sweep over other tiles it has usually left L2. */
  for (int64_t i = 0; i < m; i++) {
    _mm_prefetch((const char *)(c + i * ldc), _MM_HINT_T0);
    _mm_prefetch((const char *)(c + i * ldc + NR - 1), _MM_HINT_T0);
  }
  /* One k step of row i (i < R), its A element at ptr. */
#define STEP(i, ptr)                                  \
  if (i < R) {                                        \
    const __m512 ai = _mm512_set1_ps(*(ptr));         \
    acc##i##_0 = _mm512_fmadd_ps(ai, b0, acc##i##_0); \
    acc##i##_1 = _mm512_fmadd_ps(ai, b1, acc##i##_1); \
  }
  if (in_place) {
    const float *p0 = a, *p3 = a + 3 * lda, *p6 = a + 6 * lda, *p9 = a + 9 * lda,
                *p12 = a + 12 * lda;
    const int64_t l1 = lda, l2 = 2 * lda;
    for (int64_t k = 0; k < kc; k++) {
      const __m512 b0 = _mm512_load_ps(b), b1 = _mm512_load_ps(b + 16);
      STEP(0, p0) STEP(1, p0 + l1) STEP(2, p0 + l2) STEP(3, p3) STEP(4, p3 + l1) STEP(5, p3 + l2)
      STEP(6, p6) STEP(7, p6 + l1) STEP(8, p6 + l2) STEP(9, p9) STEP(10, p9 + l1)
      STEP(11, p9 + l2) STEP(12, p12) STEP(13, p12 + l1)
      p0++, p3++, p6++, p9++, p12++;
      b += NR;
    }
  } else {
    for (int64_t k = 0; k < kc; k++) {
      const __m512 b0 = _mm512_load_ps(b), b1 = _mm512_load_ps(b + 16);
#define PACKED_STEP(i) STEP(i, a + i)
      ROWS(PACKED_STEP)
#undef PACKED_STEP
      a += MR;
      b += NR;
    }
  }
#undef STEP
  /* Columns j < n of the two 16-wide halves. */
  const __mmask16 mask0 = n >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << n) - 1u);
  const __mmask16 mask1 =
      n >= 32 ? (__mmask16)0xffff : (n <= 16 ? (__mmask16)0 : (__mmask16)((1u << (n - 16)) - 1u));
  const __m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta);
  if (load_c) {
#define STORE_C(i)                                                                                 \
  if (i < R && i < m) {                                                                            \
    float *ci = c + (int64_t)(i)*ldc;                                                              \
    __m512 c0 = _mm512_maskz_loadu_ps(mask0, ci), c1 = _mm512_maskz_loadu_ps(mask1, ci + 16);      \
    _mm512_mask_storeu_ps(ci, mask0, _mm512_fmadd_ps(va, acc##i##_0, _mm512_mul_ps(vb, c0)));      \
    _mm512_mask_storeu_ps(ci + 16, mask1, _mm512_fmadd_ps(va, acc##i##_1, _mm512_mul_ps(vb, c1))); \
  }
    ROWS(STORE_C)
#undef STORE_C
  } else {
#define STORE(i)                                                          \
  if (i < R && i < m) {                                                   \
    float *ci = c + (int64_t)(i)*ldc;                                     \
    _mm512_mask_storeu_ps(ci, mask0, _mm512_mul_ps(va, acc##i##_0));      \
    _mm512_mask_storeu_ps(ci + 16, mask1, _mm512_mul_ps(va, acc##i##_1)); \
  }
    ROWS(STORE)
#undef STORE
  }
}

static void ukernel_14x32(int64_t kc, const float *restrict a, const float *restrict b, float *c,
                          int64_t ldc, int64_t m, int64_t n, float alpha, float beta, bool load_c) {
  ukernel_body(MR, false, kc, a, 0, b, c, ldc, m, n, alpha, beta, load_c);
}

/* m <= 8 rows of a packed panel: 16 accumulators, still twice the FMA latency times the two FMA
 * ports, so the short last panel of a product costs 8 rows instead of 14. */
static void ukernel_8x32(int64_t kc, const float *restrict a, const float *restrict b, float *c,
                         int64_t ldc, int64_t m, int64_t n, float alpha, float beta, bool load_c) {
  ukernel_body(8, false, kc, a, 0, b, c, ldc, m, n, alpha, beta, load_c);
}

static void ukernel_14x32_rows(int64_t kc, const float *restrict a, int64_t lda,
                               const float *restrict b, float *c, int64_t ldc, int64_t n,
                               float alpha, float beta, bool load_c) {
  ukernel_body(MR, true, kc, a, lda, b, c, ldc, MR, n, alpha, beta, load_c);
}

/* ---- packing ------------------------------------------------------------------------------- */

/* In-register transpose of a 16 x 16 block: on return r[j] holds column j (r[j][i] = old r[i][j]).
 * 64 shuffles in three stages: pairs of rows within 128-bit lanes, then pairs of pairs, then the
 * 4 x 4 transpose of 128-bit lanes. */
static inline __attribute__((always_inline)) void transpose16(__m512 r[16]) {
  __m512 t[16];
  for (int i = 0; i < 8; i++) {
    t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);     /* a0 b0 a1 b1 per lane */
    t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]); /* a2 b2 a3 b3 */
  }
  for (int g = 0; g < 4; g++) {
    __m512d lo0 = _mm512_castps_pd(t[4 * g]), lo1 = _mm512_castps_pd(t[4 * g + 2]);
    __m512d hi0 = _mm512_castps_pd(t[4 * g + 1]), hi1 = _mm512_castps_pd(t[4 * g + 3]);
    /* r[4g + c], lane L: rows 4g .. 4g + 3 at column 4L + c. */
    r[4 * g + 0] = _mm512_castpd_ps(_mm512_unpacklo_pd(lo0, lo1));
    r[4 * g + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(lo0, lo1));
    r[4 * g + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(hi0, hi1));
    r[4 * g + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(hi0, hi1));
  }
  for (int c = 0; c < 4; c++) {
    /* X_g = r[4g + c]; column 4L + c is [X_0.L, X_1.L, X_2.L, X_3.L]. */
    __m512 u0 = _mm512_shuffle_f32x4(r[c], r[4 + c], 0x44);
    __m512 u1 = _mm512_shuffle_f32x4(r[c], r[4 + c], 0xEE);
    __m512 u2 = _mm512_shuffle_f32x4(r[8 + c], r[12 + c], 0x44);
    __m512 u3 = _mm512_shuffle_f32x4(r[8 + c], r[12 + c], 0xEE);
    t[c] = _mm512_shuffle_f32x4(u0, u2, 0x88);
    t[4 + c] = _mm512_shuffle_f32x4(u0, u2, 0xDD);
    t[8 + c] = _mm512_shuffle_f32x4(u1, u3, 0x88);
    t[12 + c] = _mm512_shuffle_f32x4(u1, u3, 0xDD);
  }
  for (int i = 0; i < 16; i++) r[i] = t[i];
}

static inline __mmask16 first_lanes(int64_t n) {
  return n >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << n) - 1u);
}

/* Transpose `rows` (<= 16) rows of `len` (<= 16) floats, row i at src + i * ld, into
 * dst[k * dst_ld + i] for k < len, writing lanes `out_mask` of each (lanes i >= rows get 0). */
static inline __attribute__((always_inline)) void transpose_block(const float *src, int64_t ld,
                                                                  int64_t rows, int64_t len,
                                                                  float *dst, int64_t dst_ld,
                                                                  __mmask16 out_mask) {
  __m512 r[16];
  const __mmask16 in_mask = first_lanes(len);
  for (int i = 0; i < 16; i++)
    r[i] = i < rows ? _mm512_maskz_loadu_ps(in_mask, src + i * ld) : _mm512_setzero_ps();
  transpose16(r);
  for (int k = 0; k < 16; k++)
    if (k < len) _mm512_mask_storeu_ps(dst + k * dst_ld, out_mask, r[k]);
}

static void pack_a_avx512(bool ta, const float *A, int64_t lda, int64_t row0, int64_t rows,
                          int64_t k0, int64_t kb, float *dst) {
  const __mmask16 row_mask = first_lanes(MR);
  if (!ta) {
    /* A rows are contiguous in k: transpose 16-wide k blocks of the MR rows. */
    const float *src = A + row0 * lda + k0;
    for (int64_t k = 0; k < kb; k += 16)
      transpose_block(src + k, lda, rows, kb - k < 16 ? kb - k : 16, dst + k * MR, MR, row_mask);
  } else {
    /* op(A) column k is the contiguous row k0 + k of A. */
    const __mmask16 in_mask = first_lanes(rows);
    for (int64_t k = 0; k < kb; k++)
      _mm512_mask_storeu_ps(dst + k * MR, row_mask,
                            _mm512_maskz_loadu_ps(in_mask, A + (k0 + k) * lda + row0));
  }
}

static void pack_b_avx512(bool tb, const float *B, int64_t ldb, int64_t k0, int64_t kb,
                          int64_t col0, int64_t cols, float *dst) {
  const int64_t full = cols / NR, tail = cols - full * NR;
  if (!tb) {
    /* Eight rows of B at a time, panel by panel: B is read in contiguous runs and each panel
     * gets 1 KB contiguous writes (panels are a multiple of 4 KB apart, so writing all of them
     * per row would thrash one L1 set). */
    const __mmask16 t0 = first_lanes(tail), t1 = first_lanes(tail > 16 ? tail - 16 : 0);
    for (int64_t k = 0; k < kb; k += 8) {
      const int64_t kn = kb - k < 8 ? kb - k : 8;
      const float *src = B + (k0 + k) * ldb + col0;
      float *d = dst + k * NR;
      for (int64_t q = 0; q < full; q++, src += NR, d += kb * NR) {
        for (int64_t r = 0; r < kn; r++) {
          _mm512_store_ps(d + r * NR, _mm512_loadu_ps(src + r * ldb));
          _mm512_store_ps(d + r * NR + 16, _mm512_loadu_ps(src + r * ldb + 16));
        }
      }
      if (tail) {
        for (int64_t r = 0; r < kn; r++) {
          _mm512_store_ps(d + r * NR, _mm512_maskz_loadu_ps(t0, src + r * ldb));
          _mm512_store_ps(d + r * NR + 16, _mm512_maskz_loadu_ps(t1, src + r * ldb + 16));
        }
      }
    }
  } else {
    /* Column j of op(B) is the contiguous row col0 + j of B: transpose 16 x 16 blocks. */
    for (int64_t q = 0; q * NR < cols; q++) {
      float *d = dst + q * kb * NR;
      for (int64_t h = 0; h < NR; h += 16) {
        int64_t c = q * NR + h, w = cols - c;
        if (w <= 0) { /* the right half of a narrow last panel */
          for (int64_t k = 0; k < kb; k++) _mm512_store_ps(d + k * NR + h, _mm512_setzero_ps());
          continue;
        }
        const float *src = B + (col0 + c) * ldb + k0;
        for (int64_t k = 0; k < kb; k += 16)
          transpose_block(src + k, ldb, w > 16 ? 16 : w, kb - k < 16 ? kb - k : 16, d + k * NR + h,
                          NR, (__mmask16)0xffff);
      }
    }
  }
}

const attn__sgemm_arch attn__sgemm_arch_avx512 = {.mr = MR,
                                             .nr = NR,
                                             .kc = 256,
                                             .nc = 1024,
                                             .ukernel = ukernel_14x32,
                                             .ukernel_rows = ukernel_14x32_rows,
                                             .small_mr = 8,
                                             .ukernel_small = ukernel_8x32,
                                             .pack_a = pack_a_avx512,
                                             .pack_b = pack_b_avx512};

attn_status attn__sgemm_avx512(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K,
                               float alpha, const float *A, int64_t lda, const float *B,
                               int64_t ldb, float beta, float *C, int64_t ldc) {
  return attn__sgemm_run(&attn__sgemm_arch_avx512, trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C,
                         ldc);
}
