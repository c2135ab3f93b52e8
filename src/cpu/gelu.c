/* GELU (erf form) and its derivative, vectorised: see gelu.h.
 *
 * Portable form (the scalar and AVX2 copies). Phi(x) through erfc: with a = |x| and
 * z = a / sqrt 2, erfc(z) = t exp(-z^2 + P(t)), t = 1 / (1 + z / 2), P the degree-9 Chebyshev fit
 * of Numerical Recipes (relative error of erfc < 1.2e-7 for every z >= 0). h = erfc(z) / 2 =
 * Phi(-a), so Phi(x) = 1 - h for x >= 0 and h for x < 0: the negative tail keeps its relative
 * accuracy (no 1 - (1 - tiny) cancellation).
 *
 * The exponent -z^2 + P(t) reaches -80, where rounding z^2 = a^2 / 2 to float alone would cost
 * ~2e-6 relative in exp. So a = ah + al with ah holding the top 12 significand bits: ah^2 / 2 is
 * exact and -a^2 / 2 + P = hi + lo with hi = -ah^2 / 2 and lo = P - al (ah + al / 2); exp(hi + lo)
 * reduces by k ln 2 against hi (exact, Cody-Waite) and adds lo to the reduced argument.
 *
 * Branch-free with integer selects (the library builds with the default -ftrapping-math, under
 * which GCC does not if-convert float selects), so the loops vectorise; the body is inlined into
 * a copy compiled for AVX2 (GCC target attribute) and attn_get_isa() picks it, as src/cpu/align.c
 * does. That form costs ~93 zmm instructions per 16 elements when GCC vectorises it for AVX-512.
 *
 * AVX-512 (fwd, bias, bwd: hand-written intrinsics, ~35 instructions per 16 elements, about half
 * the time per element; the BERT FFN epilogue runs here). The same h = Phi(-a), split the other
 * way: h = exp(-a^2 / 2) Q(a) with Q(a) = erfc(a / sqrt 2) exp(a^2 / 2) / 2 (smooth, from 1/2 at
 * 0 down to ~1 / (a sqrt(2 pi))), fitted as a rational N(a) / D(a) of degrees 4 / 5 (relative
 * error 2.5e-8 on [0, 12.5]); the quotient by vrcp14ps and one correction. exp(-a^2 / 2) needs
 * a^2 to more than float precision (it reaches 156): k = round(-a^2 log2(e) / 2), and
 * m = a^2 + 2 k ln 2 by an FMA that rounds a^2 + k L (L = 2 ln 2 to 16 bits, k L exact) once,
 * then the rest of 2 ln 2; exp(-m / 2) by a degree-6 fit, 2^k by vscalefps. a = min(|x|, 12.5)
 * is one vrangeps; the sign picks 1 - h or h with a masked subtraction; x < -12.5 and -inf
 * multiply -12.5 (vmaxps, which keeps NaN). The tail is one masked vector through the same code,
 * so chunked calls give the same bits as one call. Measured over every float with |x| <= 12.5:
 * GELU 4.7e-7 relative at worst (at x = -11.33), GELU' 3.0e-7 of Phi + |x| phi; the test's sweep
 * (tests/test_gelu.c) sees 4.0e-7 and 2.4e-7 (the portable form there: 5.4e-7, 3.8e-7). */
#include "gelu.h"

#include "internal.h"

#if ATTN_X86
#include <immintrin.h>
#endif

/* The library builds with -ffp-contract=off; here a * b + c may fuse (the AVX2 copy then uses
 * FMA, about a third fewer instructions; the AVX-512 code spells its FMAs out). Each element is
 * still a pure function of its input, so the thread count never changes a result; ISAs may
 * differ in the last bits. */
#if defined(__clang__)
#pragma clang fp contract(fast)
#else
#pragma GCC optimize("fp-contract=fast")
#endif

#define GELU_AI static inline __attribute__((always_inline))

#define GELU_CLAMP_BITS 0x41480000 /* 12.5f: above it GELU is x or 0 to float precision */

GELU_AI uint32_t f2u(float f) {
  uint32_t u;
  memcpy(&u, &f, 4);
  return u;
}
GELU_AI float u2f(uint32_t u) {
  float f;
  memcpy(&f, &u, 4);
  return f;
}
/* Bits of a where mask m is all ones, of b where it is 0: the form GCC if-converts for AVX2 too
 * (a ?: on floats or with && stays a branch there). */
GELU_AI float sel(uint32_t m, float a, float b) {
  return u2f((f2u(a) & m) | (f2u(b) & ~m));
}
GELU_AI uint32_t mask_if(bool c) {
  return 0u - (uint32_t)c;
}

/* exp(hi + lo) for hi + lo in about [-82, 0] and |lo| <= 2: k = round((hi + lo) / ln 2) by the
 * 1.5 * 2^23 trick, r = (hi - k ln2_hi) - k ln2_lo + lo (the first difference exact), exp(r) by its
 * Taylor series to r^7 in Estrin's form (truncation < 6e-9 relative for |r| <= ln2 / 2), 2^k in the
 * exponent bits (k >= -120: a normal number). */
GELU_AI float exp_hilo(float hi, float lo) {
  const float magic = 12582912.0f; /* 1.5 * 2^23 */
  float tk = (hi + lo) * 1.44269504f + magic;
  float kf = tk - magic;
  float r = (hi - kf * 0.693145752f) - kf * 1.42860677e-6f + lo;
  float r2 = r * r, r4 = r2 * r2;
  float p = ((1.0f + r) + (0.5f + r * (1.0f / 6)) * r2) +
            (((1.0f / 24) + r * (1.0f / 120)) + ((1.0f / 720) + r * (1.0f / 5040)) * r2) * r4;
  return p * u2f((f2u(tk) - 0x4B400000u + 127u) << 23);
}

/* What both GELU and its derivative need of x: a = min(|x|, 12.5), h = Phi(-a) and the exp
 * argument's parts (for the density phi(a) = exp(-a^2 / 2) / sqrt(2 pi)). */
typedef struct gelu_parts {
  int32_t ab;    /* |x| bits (unclamped: > 0x7f800000 means NaN); signed compares, which AVX2
                    has for selects (it has no unsigned ones) */
  float a;       /* min(|x|, 12.5) */
  float h;       /* Phi(-a) = erfc(a / sqrt 2) / 2 */
  float hi, al2; /* -a^2 / 2 = hi - al2 */
} gelu_parts;

GELU_AI gelu_parts gelu_split(float x) {
  gelu_parts g;
  g.ab = (int32_t)(f2u(x) & 0x7fffffffu);
  const int32_t abc = g.ab < GELU_CLAMP_BITS ? g.ab : GELU_CLAMP_BITS; /* NaN clamps too */
  const float a = u2f((uint32_t)abc), ah = u2f((uint32_t)abc & 0xfffff000u), al = a - ah;
  g.a = a;
  g.hi = -0.5f * (ah * ah);
  g.al2 = al * (ah + 0.5f * al);
  const float z = a * 0.70710678118654752f;
  const float t = 1.0f / (1.0f + 0.5f * z);
  /* P(t) = -1.26551223 + 1.00002368 t + ... + 0.17087277 t^9, by Estrin's scheme */
  const float t2 = t * t, t4 = t2 * t2, t8 = t4 * t4;
  const float p01 = -1.26551223f + 1.00002368f * t, p23 = 0.37409196f + 0.09678418f * t;
  const float p45 = -0.18628806f + 0.27886807f * t, p67 = -1.13520398f + 1.48851587f * t;
  const float p89 = -0.82215223f + 0.17087277f * t;
  const float poly = ((p01 + p23 * t2) + (p45 + p67 * t2) * t4) + p89 * t8;
  g.h = 0.5f * t * exp_hilo(g.hi, poly - g.al2);
  return g;
}

/* Phi(x): 1 - h for x >= 0, h for x < 0 (an integer select on the sign bit, so the tail is h
 * itself, not 0.5 - (0.5 - h)). */
GELU_AI float gelu_phi_cdf(float x, const gelu_parts *g) {
  const float one_minus = 1.0f - g->h;
  return sel((uint32_t)((int32_t)f2u(x) >> 31), g->h, one_minus);
}

GELU_AI float gelu_one(float x) {
  const gelu_parts g = gelu_split(x);
  /* Negative x below -12.5 (and -inf) multiply the clamped value, so the result is 0 to 1e-33
   * rather than -inf x tiny; NaN and every other x multiply themselves. */
  const uint32_t xb = f2u(x);
  const uint32_t neg_big =
      (uint32_t)((int32_t)xb >> 31) & mask_if(g.ab > GELU_CLAMP_BITS) & mask_if(g.ab <= 0x7f800000);
  const float w = sel(neg_big, -g.a, x);
  return w * gelu_phi_cdf(x, &g);
}

GELU_AI float gelu_grad_one(float x) {
  const gelu_parts g = gelu_split(x);
  const float pdf = 0.3989422804014327f * exp_hilo(g.hi, -g.al2); /* phi(a) */
  const float xc = copysignf(g.a, x);
  const float d = gelu_phi_cdf(x, &g) + xc * pdf;
  return sel(mask_if(g.ab > 0x7f800000), x, d); /* NaN in, NaN out */
}

GELU_AI void fwd_body(float *restrict y, const float *restrict x, int64_t n) {
  for (int64_t i = 0; i < n; i++) y[i] = gelu_one(x[i]);
}
GELU_AI void bias_body(float *restrict y, const float *restrict b, int64_t n) {
  for (int64_t i = 0; i < n; i++) y[i] = gelu_one(y[i] + b[i]);
}
GELU_AI void add_body(float *restrict y, const float *restrict b, int64_t n) {
  for (int64_t i = 0; i < n; i++) y[i] += b[i];
}
/* v < 0 ? 0 : v keeps NaN (the compare is false); as an integer select so it vectorises. */
GELU_AI void relu_body(float *restrict y, const float *restrict b, int64_t n) {
  for (int64_t i = 0; i < n; i++) {
    const float v = y[i] + b[i];
    y[i] = sel(mask_if(v < 0.0f), 0.0f, v);
  }
}
GELU_AI void bwd_body(float *restrict gx, const float *restrict dy, const float *restrict x,
                      int64_t n, int acc) {
  if (acc)
    for (int64_t i = 0; i < n; i++) gx[i] += dy[i] * gelu_grad_one(x[i]);
  else
    for (int64_t i = 0; i < n; i++) gx[i] = dy[i] * gelu_grad_one(x[i]);
}

/* GELU_COPIES(name, params, args): name_run(params), which calls the copy of the ISA in force
 * (attn_get_isa()): name_avx512 (hand-written below for fwd, bias and bwd; for the others,
 * name_body compiled for AVX-512 by GELU_AVX512_COPY), name_avx2 (name_body inlined into a copy
 * compiled for AVX2 by a GCC target attribute) or, on other ISAs and CPUs, the portable body. */
#if ATTN_X86
#define GELU_AVX512 ATTN__TARGET_AVX512_VEC
#define GELU_AVX2 ATTN__TARGET_AVX2
#define GELU_AVX512_COPY(name, params, args) \
  GELU_AVX512 static void name##_avx512 params { name##_body args; }
#define GELU_COPIES(name, params, args)                                   \
  GELU_AVX2 static void name##_avx2 params { name##_body args; }          \
  static void name##_run params {                                         \
    const attn_isa isa = attn_get_isa();                                  \
    if (isa == ATTN_ISA_AVX512)                                           \
      name##_avx512 args;                                                 \
    else if (isa == ATTN_ISA_AVX2)                                        \
      name##_avx2 args;                                                   \
    else                                                                  \
      name##_body args;                                                   \
  }

/* AVX-512, 16 lanes (see the header comment for the method). The coefficients: numpy in double,
 * Chebyshev-distributed points, linearised least squares (Sanathanan-Koerner for the rational)
 * with Lawson's reweighting towards minimax relative error, then rounded to float and rechecked:
 *   Q(a) = erfc(a / sqrt 2) exp(a^2 / 2) / 2 ~ N(a) / D(a), degrees 4 / 5, on [0, 12.5]:
 *     2.5e-8 relative with the float coefficients below (all positive: no cancellation);
 *   exp(-m / 2) ~ E(m), degree 6, on |m| <= 0.72: 2.7e-8 relative. */
GELU_AVX512 static inline __attribute__((always_inline)) __m512 v_set(float f) {
  return _mm512_set1_ps(f);
}

/* exp(-a^2 / 2) = 2^k E(m): k = round(-a^2 log2(e) / 2) by the 1.5 * 2^23 trick (from a^2 rounded:
 * any nearby integer does), m = a^2 + 2 k ln 2 with 2 ln 2 = L + l, L = 2 ln 2 to 16 bits so that
 * k L is exact (|k| < 128): one FMA rounds a^2 + k L, exact inside, once (a^2 is not rounded
 * first: it reaches 156, where its float rounding alone would cost 4e-6 relative in exp), a second
 * adds k l; |m| <= ln 2 (1 + 2^-20), error <= 2^-24 absolute. Returns E(m); *kf = k (as a float,
 * for vscalefps). */
GELU_AVX512 static inline __attribute__((always_inline)) __m512 v_exp_half_sq(__m512 a,
                                                                              __m512 *kf) {
  const __m512 magic = v_set(12582912.0f); /* 1.5 * 2^23 */
  const __m512 tk = _mm512_fmadd_ps(_mm512_mul_ps(a, a), v_set(-0.721347520444f), magic);
  const __m512 k = _mm512_sub_ps(tk, magic);                    /* -log2(e) / 2 above */
  const __m512 kl = _mm512_mul_ps(k, v_set(1.38629150390625f)); /* L: exact */
  const __m512 m = _mm512_fmadd_ps(k, v_set(2.85721364e-06f), _mm512_fmadd_ps(a, a, kl)); /* l */
  __m512 e = v_set(2.16136605e-05f);
  e = _mm512_fmadd_ps(e, m, v_set(-2.61814786e-04f));
  e = _mm512_fmadd_ps(e, m, v_set(2.60428006e-03f));
  e = _mm512_fmadd_ps(e, m, v_set(-2.08329751e-02f));
  e = _mm512_fmadd_ps(e, m, v_set(1.24999975e-01f));
  e = _mm512_fmadd_ps(e, m, v_set(-5.00000023e-01f));
  e = _mm512_fmadd_ps(e, m, v_set(1.00000000e+00f));
  *kf = k;
  return e;
}

/* h = Phi(-a) = 2^k E(m) N(a) / D(a), the quotient by vrcp14ps (2^-14) and one correction of the
 * quotient q = q0 + r (N - D q0), q0 = N r: about an ulp. h >= 3.7e-36 at a = 12.5, normal. */
GELU_AVX512 static inline __attribute__((always_inline)) __m512 v_phi_neg(__m512 a, __m512 e,
                                                                          __m512 kf) {
  __m512 nu = v_set(3.94955553e-03f), de = v_set(9.89990460e-03f);
  nu = _mm512_fmadd_ps(nu, a, v_set(3.95037228e-02f));
  de = _mm512_fmadd_ps(de, a, v_set(9.90292901e-02f));
  nu = _mm512_fmadd_ps(nu, a, v_set(1.79873016e-01f));
  de = _mm512_fmadd_ps(de, a, v_set(4.60597025e-01f));
  nu = _mm512_fmadd_ps(nu, a, v_set(4.33735606e-01f));
  de = _mm512_fmadd_ps(de, a, v_set(1.18850425e+00f));
  nu = _mm512_fmadd_ps(nu, a, v_set(5.00000002e-01f));
  de = _mm512_fmadd_ps(de, a, v_set(1.66535609e+00f));
  de = _mm512_fmadd_ps(de, a, v_set(1.0f));
  const __m512 r = _mm512_rcp14_ps(de), q0 = _mm512_mul_ps(nu, r);
  const __m512 q = _mm512_fmadd_ps(r, _mm512_fnmadd_ps(de, q0, nu), q0);
  return _mm512_scalef_ps(_mm512_mul_ps(e, q), kf);
}

/* a = min(|x|, 12.5) in one vrangeps (imm 0xA: smaller magnitude, sign cleared). A NaN x gives
 * a = 12.5 (not NaN): the callers carry NaN through x itself. */
GELU_AVX512 static inline __attribute__((always_inline)) __m512 v_abs_clamp(__m512 x) {
  return _mm512_range_ps(x, v_set(12.5f), 0x0A);
}

/* Phi(x) = 1 - h for x >= 0, h otherwise (and for NaN): a masked subtraction (one compare, where
 * the sign bit would need vpmovd2m and knotw). -0 takes 1 - h, the portable code h: both are 1/2
 * to an ulp, and x Phi is -0 either way. */
GELU_AVX512 static inline __attribute__((always_inline)) __m512 v_cdf(__m512 x, __m512 h) {
  const __mmask16 pos = _mm512_cmp_ps_mask(x, _mm512_setzero_ps(), _CMP_GE_OQ);
  return _mm512_mask_sub_ps(h, pos, v_set(1.0f), h);
}

/* GELU of 16 lanes: w Phi(x), w = max(x, -12.5) (x itself for NaN: vmaxps returns its second
 * operand then), so x < -12.5 and -inf give -12.5 Phi(-12.5) = -4.6e-35, not -inf x tiny. */
GELU_AVX512 static inline __attribute__((always_inline)) __m512 v_gelu(__m512 x) {
  const __m512 a = v_abs_clamp(x);
  __m512 kf;
  const __m512 e = v_exp_half_sq(a, &kf);
  const __m512 w = _mm512_max_ps(v_set(-12.5f), x);
  return _mm512_mul_ps(w, v_cdf(x, v_phi_neg(a, e, kf)));
}

/* gelu'(x) = Phi(x) + xc phi(a), xc = x clamped to [-12.5, 12.5] (NaN stays NaN: vminps and
 * vmaxps return their second operand then; vrangeps does not keep it in a), phi(a) = 2^k E(m) /
 * sqrt(2 pi). */
GELU_AVX512 static inline __attribute__((always_inline)) __m512 v_gelu_grad(__m512 x) {
  const __m512 a = v_abs_clamp(x);
  __m512 kf;
  const __m512 e = v_exp_half_sq(a, &kf);
  const __m512 pdf = _mm512_scalef_ps(_mm512_mul_ps(e, v_set(0.398942280401f)), kf);
  const __m512 xc = _mm512_max_ps(v_set(-12.5f), _mm512_min_ps(v_set(12.5f), x));
  return _mm512_fmadd_ps(xc, pdf, v_cdf(x, v_phi_neg(a, e, kf)));
}

GELU_AVX512 static inline __attribute__((always_inline)) __mmask16 v_tail(int64_t left) {
  return (__mmask16)((1u << left) - 1u);
}

/* Pairs of vectors (two independent chains: ~4% faster than one), a last full vector, then one
 * masked vector for the remainder: the same arithmetic on every element, so chunked calls give
 * the same bits as one call. */
GELU_AVX512 static void fwd_avx512(float *restrict y, const float *restrict x, int64_t n) {
  int64_t i = 0;
  for (; i + 32 <= n; i += 32) {
    const __m512 v0 = _mm512_loadu_ps(x + i), v1 = _mm512_loadu_ps(x + i + 16);
    _mm512_storeu_ps(y + i, v_gelu(v0));
    _mm512_storeu_ps(y + i + 16, v_gelu(v1));
  }
  for (; i + 16 <= n; i += 16) _mm512_storeu_ps(y + i, v_gelu(_mm512_loadu_ps(x + i)));
  if (i < n) {
    const __mmask16 k = v_tail(n - i);
    _mm512_mask_storeu_ps(y + i, k, v_gelu(_mm512_maskz_loadu_ps(k, x + i)));
  }
}
GELU_AVX512 static void bias_avx512(float *restrict y, const float *restrict b, int64_t n) {
  int64_t i = 0;
  for (; i + 32 <= n; i += 32) {
    const __m512 v0 = _mm512_add_ps(_mm512_loadu_ps(y + i), _mm512_loadu_ps(b + i));
    const __m512 v1 = _mm512_add_ps(_mm512_loadu_ps(y + i + 16), _mm512_loadu_ps(b + i + 16));
    _mm512_storeu_ps(y + i, v_gelu(v0));
    _mm512_storeu_ps(y + i + 16, v_gelu(v1));
  }
  for (; i + 16 <= n; i += 16)
    _mm512_storeu_ps(y + i, v_gelu(_mm512_add_ps(_mm512_loadu_ps(y + i), _mm512_loadu_ps(b + i))));
  if (i < n) {
    const __mmask16 k = v_tail(n - i);
    const __m512 v =
        _mm512_add_ps(_mm512_maskz_loadu_ps(k, y + i), _mm512_maskz_loadu_ps(k, b + i));
    _mm512_mask_storeu_ps(y + i, k, v_gelu(v));
  }
}
GELU_AVX512 static void bwd_avx512(float *restrict gx, const float *restrict dy,
                                   const float *restrict x, int64_t n, int acc) {
  int64_t i = 0;
  if (acc) {
    for (; i + 32 <= n; i += 32) {
      const __m512 d0 = v_gelu_grad(_mm512_loadu_ps(x + i));
      const __m512 d1 = v_gelu_grad(_mm512_loadu_ps(x + i + 16));
      _mm512_storeu_ps(gx + i,
                       _mm512_fmadd_ps(_mm512_loadu_ps(dy + i), d0, _mm512_loadu_ps(gx + i)));
      _mm512_storeu_ps(gx + i + 16, _mm512_fmadd_ps(_mm512_loadu_ps(dy + i + 16), d1,
                                                    _mm512_loadu_ps(gx + i + 16)));
    }
    for (; i + 16 <= n; i += 16) {
      const __m512 d = v_gelu_grad(_mm512_loadu_ps(x + i));
      _mm512_storeu_ps(gx + i,
                       _mm512_fmadd_ps(_mm512_loadu_ps(dy + i), d, _mm512_loadu_ps(gx + i)));
    }
    if (i < n) {
      const __mmask16 k = v_tail(n - i);
      const __m512 d = v_gelu_grad(_mm512_maskz_loadu_ps(k, x + i));
      _mm512_mask_storeu_ps(gx + i, k,
                            _mm512_fmadd_ps(_mm512_maskz_loadu_ps(k, dy + i), d,
                                            _mm512_maskz_loadu_ps(k, gx + i)));
    }
  } else {
    for (; i + 32 <= n; i += 32) {
      const __m512 d0 = v_gelu_grad(_mm512_loadu_ps(x + i));
      const __m512 d1 = v_gelu_grad(_mm512_loadu_ps(x + i + 16));
      _mm512_storeu_ps(gx + i, _mm512_mul_ps(_mm512_loadu_ps(dy + i), d0));
      _mm512_storeu_ps(gx + i + 16, _mm512_mul_ps(_mm512_loadu_ps(dy + i + 16), d1));
    }
    for (; i + 16 <= n; i += 16)
      _mm512_storeu_ps(gx + i,
                       _mm512_mul_ps(_mm512_loadu_ps(dy + i), v_gelu_grad(_mm512_loadu_ps(x + i))));
    if (i < n) {
      const __mmask16 k = v_tail(n - i);
      const __m512 d = v_gelu_grad(_mm512_maskz_loadu_ps(k, x + i));
      _mm512_mask_storeu_ps(gx + i, k, _mm512_mul_ps(_mm512_maskz_loadu_ps(k, dy + i), d));
    }
  }
}
GELU_AVX512_COPY(add, (float *restrict y, const float *restrict b, int64_t n), (y, b, n))
GELU_AVX512_COPY(relu, (float *restrict y, const float *restrict b, int64_t n), (y, b, n))
#else
#define GELU_COPIES(name, params, args) \
  static void name##_run params { name##_body args; }
#endif

GELU_COPIES(fwd, (float *restrict y, const float *restrict x, int64_t n), (y, x, n))
GELU_COPIES(bias, (float *restrict y, const float *restrict b, int64_t n), (y, b, n))
GELU_COPIES(add, (float *restrict y, const float *restrict b, int64_t n), (y, b, n))
GELU_COPIES(relu, (float *restrict y, const float *restrict b, int64_t n), (y, b, n))
GELU_COPIES(bwd,
            (float *restrict gx, const float *restrict dy, const float *restrict x, int64_t n,
             int acc),
            (gx, dy, x, n, acc))

void attn__gelu_erf_forward(float *y, const float *x, int64_t n) {
  fwd_run(y, x, n);
}

void attn__gelu_erf_bias_inplace(float *y, const float *b, int64_t n) {
  bias_run(y, b, n);
}

void attn__gelu_erf_backward(float *gx, const float *dy, const float *x, int64_t n,
                             int accumulate) {
  bwd_run(gx, dy, x, n, accumulate);
}

void attn__bias_epilogue(attn_epilogue kind, float *y, const float *b, int64_t n) {
  switch (kind) {
    case ATTN_EPILOGUE_BIAS:
      add_run(y, b, n);
      break;
    case ATTN_EPILOGUE_BIAS_GELU:
      bias_run(y, b, n);
      break;
    case ATTN_EPILOGUE_BIAS_RELU:
      relu_run(y, b, n);
      break;
    default:
      break;
  }
}
