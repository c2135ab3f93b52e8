/* Fused exact attention for AVX-512 (F, BW, VL, DQ): 16 lanes, 12-row register blocks
 * (24 accumulators of 32). exp2 uses vscalefps, which also flushes 2^-200 to an exact 0. */
#include "internal.h"

#include <immintrin.h>

#define VW 16
#define RMAX 12
#define RALT 8
#define SUFFIX(name) name##_avx512
typedef __m512 vf;

#define vload(p) _mm512_loadu_ps(p)
#define vstore(p, x) _mm512_storeu_ps((p), (x))
#define vzero() _mm512_setzero_ps()
#define vset1(x) _mm512_set1_ps(x)
#define vbcast(p) _mm512_set1_ps(*(p))
#define vfma(a, b, c) _mm512_fmadd_ps((a), (b), (c))
#define vadd(a, b) _mm512_add_ps((a), (b))
#define vsub(a, b) _mm512_sub_ps((a), (b))
#define vmul(a, b) _mm512_mul_ps((a), (b))
#define vmax(a, b) _mm512_max_ps((a), (b))
#define vkeep(x, bits) _mm512_maskz_mov_ps((__mmask16)(bits), (x))
#define vfma_bits(a, b, c, bits) _mm512_mask3_fmadd_ps((a), (b), (c), (__mmask16)(bits))
#define vneginf(x, bits) _mm512_mask_mov_ps(_mm512_set1_ps(-INFINITY), (__mmask16)(bits), (x))

/* 2^x: x = n + f with f in [-1/2, 1/2]; 2^f by its degree-6 Taylor polynomial (relative error
 * below 2e-7 on that interval); 2^n applied by vscalefps. Clamping at -200 makes -inf and deep
 * underflow an exact 0; the clamp keeps NaN (maxps returns its second operand on NaN). */
static inline vf vexp2(vf x) {
  x = _mm512_max_ps(_mm512_set1_ps(-200.0f), x);
  vf n = _mm512_roundscale_ps(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  vf f = _mm512_sub_ps(x, n);
  vf p = _mm512_set1_ps(1.5403530393381606e-4f);
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(1.3333558146428443e-3f));
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(9.6181291076284772e-3f));
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(5.5504108664821580e-2f));
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(2.4022650695910071e-1f));
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(6.9314718055994531e-1f));
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(1.0f));
  return _mm512_scalef_ps(p, n);
}

/* Bit l set iff lo[l] <= j <= hi[l], for the 32 lanes of a query block. */
static inline uint32_t vlanebits(int64_t j, const int64_t *lo, const int64_t *hi) {
  const __m512i jj = _mm512_set1_epi64(j);
  uint32_t m = 0;
  for (int k = 0; k < 4; k++) {
    __mmask8 a = _mm512_cmple_epi64_mask(_mm512_loadu_si512(lo + 8 * k), jj);
    __mmask8 b = _mm512_cmpge_epi64_mask(_mm512_loadu_si512(hi + 8 * k), jj);
    m |= (uint32_t)(a & b) << (8 * k);
  }
  return m;
}

/* In-place transpose of a 16x16 block held in r[0..15] (unpack, shuffle within 128-bit lanes, then
 * two rounds of 128-bit lane shuffles). */
static inline void vtranspose(vf r[VW]) {
  vf t[VW];
  for (int i = 0; i < 8; i++) {
    t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
    t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
  }
  for (int i = 0; i < 4; i++) {
    r[4 * i + 0] = _mm512_shuffle_ps(t[4 * i], t[4 * i + 2], _MM_SHUFFLE(1, 0, 1, 0));
    r[4 * i + 1] = _mm512_shuffle_ps(t[4 * i], t[4 * i + 2], _MM_SHUFFLE(3, 2, 3, 2));
    r[4 * i + 2] = _mm512_shuffle_ps(t[4 * i + 1], t[4 * i + 3], _MM_SHUFFLE(1, 0, 1, 0));
    r[4 * i + 3] = _mm512_shuffle_ps(t[4 * i + 1], t[4 * i + 3], _MM_SHUFFLE(3, 2, 3, 2));
  }
  for (int i = 0; i < 4; i++) {
    t[i] = _mm512_shuffle_f32x4(r[i], r[4 + i], 0x88);
    t[4 + i] = _mm512_shuffle_f32x4(r[i], r[4 + i], 0xdd);
    t[8 + i] = _mm512_shuffle_f32x4(r[8 + i], r[12 + i], 0x88);
    t[12 + i] = _mm512_shuffle_f32x4(r[8 + i], r[12 + i], 0xdd);
  }
  for (int i = 0; i < 4; i++) {
    r[i] = _mm512_shuffle_f32x4(t[i], t[8 + i], 0x88);
    r[8 + i] = _mm512_shuffle_f32x4(t[i], t[8 + i], 0xdd);
    r[4 + i] = _mm512_shuffle_f32x4(t[4 + i], t[12 + i], 0x88);
    r[12 + i] = _mm512_shuffle_f32x4(t[4 + i], t[12 + i], 0xdd);
  }
}

#include "../sdpa_kernel.inc"

const attn__kernels attn__kernels_avx512 = {
    .isa = ATTN_ISA_AVX512,
    .sdpa_forward = sdpa_forward_avx512,
    .sdpa_forward_ws = sdpa_forward_ws_avx512,
    .sdpa_backward = sdpa_backward_avx512,
    .sdpa_backward_ws = sdpa_backward_ws_avx512,
    .sgemm = attn__sgemm_avx512,
};
