/* Fused exact attention for AVX2 + FMA: 8 lanes, 6-row register blocks (12 accumulators of 16). */
#include "internal.h"

#include <immintrin.h>

#define VW 8
#define RMAX 6
#define RALT 4
#define SUFFIX(name) name##_avx2
typedef __m256 vf;

#define vload(p) _mm256_loadu_ps(p)
#define vstore(p, x) _mm256_storeu_ps((p), (x))
#define vzero() _mm256_setzero_ps()
#define vset1(x) _mm256_set1_ps(x)
#define vbcast(p) _mm256_broadcast_ss(p)
#define vfma(a, b, c) _mm256_fmadd_ps((a), (b), (c))
#define vadd(a, b) _mm256_add_ps((a), (b))
#define vsub(a, b) _mm256_sub_ps((a), (b))
#define vmul(a, b) _mm256_mul_ps((a), (b))
#define vmax(a, b) _mm256_max_ps((a), (b))

/* Lane l of the result is all ones iff bit l of bits is set. */
static inline __m256 bits_mask(uint32_t bits) {
  const __m256i sel = _mm256_setr_epi32(1, 2, 4, 8, 16, 32, 64, 128);
  __m256i b = _mm256_and_si256(_mm256_set1_epi32((int)(bits & 0xffu)), sel);
  return _mm256_castsi256_ps(_mm256_cmpeq_epi32(b, sel));
}
#define vkeep(x, bits) _mm256_and_ps((x), bits_mask(bits))
#define vfma_bits(a, b, c, bits) _mm256_blendv_ps((c), _mm256_fmadd_ps((a), (b), (c)), bits_mask(bits))
#define vneginf(x, bits) _mm256_blendv_ps(_mm256_set1_ps(-INFINITY), (x), bits_mask(bits))

/* 2^x as in the AVX-512 file, with 2^n built in the exponent field; x < -126 (and -inf) give an
 * exact 0, NaN stays NaN. */
static inline vf vexp2(vf x) {
  const vf lo = _mm256_set1_ps(-126.0f);
  vf under = _mm256_cmp_ps(x, lo, _CMP_LT_OQ);
  x = _mm256_max_ps(lo, x);
  vf n = _mm256_round_ps(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  vf f = _mm256_sub_ps(x, n);
  vf p = _mm256_set1_ps(1.5403530393381606e-4f);
  p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(1.3333558146428443e-3f));
  p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(9.6181291076284772e-3f));
  p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(5.5504108664821580e-2f));
  p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(2.4022650695910071e-1f));
  p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(6.9314718055994531e-1f));
  p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(1.0f));
  __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
  return _mm256_andnot_ps(under, _mm256_mul_ps(p, _mm256_castsi256_ps(e)));
}

/* Bit l set iff lo[l] <= j <= hi[l], for the 16 lanes of a query block. */
static inline uint32_t vlanebits(int64_t j, const int64_t *lo, const int64_t *hi) {
  const __m256i jj = _mm256_set1_epi64x(j);
  uint32_t m = 0;
  for (int k = 0; k < 4; k++) {
    __m256i below = _mm256_cmpgt_epi64(_mm256_loadu_si256((const __m256i *)(lo + 4 * k)), jj); /* lo > j */
    __m256i above = _mm256_cmpgt_epi64(jj, _mm256_loadu_si256((const __m256i *)(hi + 4 * k))); /* j > hi */
    int out = _mm256_movemask_pd(_mm256_castsi256_pd(_mm256_or_si256(below, above)));
    m |= (uint32_t)(~out & 0xf) << (4 * k);
  }
  return m;
}

/* In-place transpose of an 8x8 block held in r[0..7]. */
static inline void vtranspose(vf r[VW]) {
  vf t[8], u[8];
  for (int i = 0; i < 4; i++) {
    t[2 * i] = _mm256_unpacklo_ps(r[2 * i], r[2 * i + 1]);
    t[2 * i + 1] = _mm256_unpackhi_ps(r[2 * i], r[2 * i + 1]);
  }
  for (int i = 0; i < 2; i++) {
    u[4 * i + 0] = _mm256_shuffle_ps(t[4 * i], t[4 * i + 2], _MM_SHUFFLE(1, 0, 1, 0));
    u[4 * i + 1] = _mm256_shuffle_ps(t[4 * i], t[4 * i + 2], _MM_SHUFFLE(3, 2, 3, 2));
    u[4 * i + 2] = _mm256_shuffle_ps(t[4 * i + 1], t[4 * i + 3], _MM_SHUFFLE(1, 0, 1, 0));
    u[4 * i + 3] = _mm256_shuffle_ps(t[4 * i + 1], t[4 * i + 3], _MM_SHUFFLE(3, 2, 3, 2));
  }
  for (int i = 0; i < 4; i++) {
    r[i] = _mm256_permute2f128_ps(u[i], u[4 + i], 0x20);
    r[4 + i] = _mm256_permute2f128_ps(u[i], u[4 + i], 0x31);
  }
}

#include "../sdpa_kernel.inc"

const attn__kernels attn__kernels_avx2 = {
    .isa = ATTN_ISA_AVX2,
    .sdpa_forward = sdpa_forward_avx2,
    .sdpa_forward_ws = sdpa_forward_ws_avx2,
    .sdpa_backward = sdpa_backward_avx2,
    .sdpa_backward_ws = sdpa_backward_ws_avx2,
    .sgemm = attn__sgemm_avx2,
};
