/* GELU (erf form) and its derivative, vectorised: see gelu.h.
 *
 * Phi(x) through erfc: with a = |x| and z = a / sqrt 2, erfc(z) = t exp(-z^2 + P(t)),
 * t = 1 / (1 + z / 2), P the degree-9 Chebyshev fit of Numerical Recipes (relative error of erfc
 * < 1.2e-7 for every z >= 0). h = erfc(z) / 2 = Phi(-a), so Phi(x) = 1 - h for x >= 0 and h for
 * x < 0: the negative tail keeps its relative accuracy (no 1 - (1 - tiny) cancellation).
 *
 * The exponent -z^2 + P(t) reaches -80, where rounding z^2 = a^2 / 2 to float alone would cost
 * ~2e-6 relative in exp. So a = ah + al with ah holding the top 12 significand bits: ah^2 / 2 is
 * exact and -a^2 / 2 + P = hi + lo with hi = -ah^2 / 2 and lo = P - al (ah + al / 2); exp(hi + lo)
 * reduces by k ln 2 against hi (exact, Cody-Waite) and adds lo to the reduced argument.
 *
 * Branch-free with integer selects (the library builds with the default -ftrapping-math, under
 * which GCC does not if-convert float selects), so the loops vectorise; the body is inlined into
 * copies compiled for AVX2 and AVX-512 (GCC target attributes) and attn_get_isa() picks one, as
 * src/cpu/align.c does. */
#include "gelu.h"

#include "internal.h"

/* The library builds with -ffp-contract=off; here a * b + c may fuse (the AVX2 and AVX-512 copies
 * then use FMA, about a third fewer instructions). Each element is still a pure function of its
 * input, so the thread count never changes a result; ISAs may differ in the last bits. */
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

/* GELU_COPIES(name, params, args): name_body inlined into an AVX-512 and an AVX2 copy (GCC target
 * attributes), and name_run(params), which calls the copy of the ISA in force (attn_get_isa())
 * or, on other ISAs and CPUs, the portable body. */
#if ATTN_X86
#if defined(__clang__)
#define GELU_AVX512 __attribute__((target("avx512f,avx512dq,avx512vl,avx2,fma")))
#else /* GCC prefers 256-bit vectors unless told otherwise */
#define GELU_AVX512 \
  __attribute__((target("avx512f,avx512dq,avx512vl,avx2,fma,prefer-vector-width=512")))
#endif
#define GELU_AVX2 __attribute__((target("avx2,fma")))
#define GELU_COPIES(name, params, args)                                   \
  GELU_AVX512 static void name##_avx512 params { name##_body args; }      \
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
