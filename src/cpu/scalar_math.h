/* Scalar math shared by the portable fast kernels (src/cpu/align.c, src/cpu/additive.c). Always
 * inlined, so each caller's AVX2 / AVX-512 clones (target attributes) vectorise it too. */
#ifndef ATTN_CPU_SCALAR_MATH_H
#define ATTN_CPU_SCALAR_MATH_H

#include <stdint.h>
#include <string.h>

/* exp(x) for x <= 0 (x > 0 is not needed here); exp(-inf) = 0, NaN stays NaN, x < -87 gives 0
 * (exp(-87) ~ 1.6e-38 is at the edge of the normal range). x = n ln2 + r with |r| <= ln2/2 and
 * n = round(x / ln2) by the 1.5 * 2^23 trick, exp(r) by its degree-7 Taylor polynomial
 * (truncation < 5e-9 relative), 2^n built in the exponent bits. Branch-free so loops over it
 * vectorise; about 2 ulp. */
static inline __attribute__((always_inline)) float attn__exp_neg(float x) {
  const float magic = 12582912.0f; /* 1.5 * 2^23 */
  float t = x * 1.44269504f + magic;
  uint32_t tb;
  memcpy(&tb, &t, 4);
  float nf = t - magic;
  float r = x - nf * 0.693145752f; /* ln2 hi */
  r = r - nf * 1.42860677e-6f;     /* ln2 lo */
  float p = 1.0f / 5040.0f;
  p = p * r + 1.0f / 720.0f;
  p = p * r + 1.0f / 120.0f;
  p = p * r + 1.0f / 24.0f;
  p = p * r + 1.0f / 6.0f;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  uint32_t sb = (tb - 0x4B400000u + 127u) << 23; /* n + 127 in the exponent field */
  float scale;
  memcpy(&scale, &sb, 4);
  float y = p * scale;
  /* 0 for x < -87 (including -inf), NaN kept; an integer mask, which GCC vectorises (with the
   * default -ftrapping-math it does not if-convert float selects, and a conditional `? 0 : yb`
   * lets it sink p * scale into a branch once float arithmetic follows the call, which then
   * blocks the vectoriser: a caller's 1 / (1 + exp) loop stayed scalar). */
  int32_t xb, yb;
  memcpy(&xb, &x, 4);
  memcpy(&yb, &y, 4);
  int32_t ab = xb & 0x7fffffff;
  int32_t under = -(int32_t)(xb < 0 && ab > 0x42AE0000 && ab <= 0x7f800000); /* 87.0f */
  yb &= ~under;
  memcpy(&y, &yb, 4);
  return y;
}

#endif
