/* Counter-based random streams of the stochastic and monotonic alignment code (Philox 4x32-10 of
 * src/core/rng.c) and the noise built from them: the categorical sampler's uniform, Gumbel noise,
 * Gaussian noise. Shared by the reference and the fast kernels, so both see the same numbers.
 * Not installed. */
#ifndef ATTN_STREAM_INTERNAL_H
#define ATTN_STREAM_INTERNAL_H

#include "internal.h"

/* ---- random streams (Philox 4x32-10, attn_philox4x32) -----------------------------------------
 * Every stream is keyed by the seed (key = its two 32-bit halves) and counted by (row, block,
 * tag): counter = {row low 32 bits, row high 32 bits, block, tag}. The tag separates the streams
 * of different functions, so one seed gives unrelated numbers to each. Everything is a pure
 * function of (seed, row, position): results do not depend on threads or ISA. */
enum {
  ATTN__STREAM_SAMPLE = 0x534d504c, /* "SMPL": the categorical sampler's uniform */
  ATTN__STREAM_GUMBEL = 0x474d424c, /* "GMBL": Gumbel noise, 4 positions per block */
  ATTN__STREAM_MONO = 0x4d4f4e4f,   /* "MONO": monotonic attention's Gaussian noise */
};

static inline void attn__stream_block(uint64_t seed, int64_t row, uint32_t block, uint32_t tag,
                                      uint32_t out[4]) {
  const uint32_t ctr[4] = {(uint32_t)(uint64_t)row, (uint32_t)((uint64_t)row >> 32), block, tag};
  const uint32_t key[2] = {(uint32_t)seed, (uint32_t)(seed >> 32)};
  attn_philox4x32(ctr, key, out);
}

/* The sampler's uniform of row r in [0, 1) with 53 random bits. */
static inline double attn__sample_uniform(uint64_t seed, int64_t row) {
  uint32_t o[4];
  attn__stream_block(seed, row, 0, ATTN__STREAM_SAMPLE, o);
  uint64_t bits = ((uint64_t)(o[0] >> 5) << 26) | (uint64_t)(o[1] >> 6);
  return (double)bits * (1.0 / 9007199254740992.0);
}

/* log(x) for finite normal x > 0, within ~2 ulp: x = m 2^k with m in [sqrt(1/2), sqrt(2)),
 * log m = 2 atanh(s), s = (m - 1)/(m + 1), |s| <= 0.172, by its odd series to s^9 (truncation
 * < 2e-9 relative). Integer selects only, so a loop over it vectorises and gives the same bits on
 * every ISA (the library builds with -ffp-contract=off). */
static inline __attribute__((always_inline)) float attn__log_pos(float x) {
  uint32_t b;
  memcpy(&b, &x, 4);
  int32_t k = (int32_t)((b >> 23) & 0xffu) - 127;
  uint32_t mb = (b & 0x7fffffu) | 0x3f800000u; /* m in [1, 2) */
  int32_t big = mb >= 0x3fb504f3u;             /* m >= sqrt(2): halve it */
  mb -= (uint32_t)big << 23;
  k += big;
  float m;
  memcpy(&m, &mb, 4);
  float s = (m - 1.0f) / (m + 1.0f), s2 = s * s;
  float p = 1.0f / 9.0f;
  p = p * s2 + 1.0f / 7.0f;
  p = p * s2 + 0.2f;
  p = p * s2 + 1.0f / 3.0f;
  p = p * s2 + 1.0f;
  float kf = (float)k;
  return kf * 0.693145752f + (kf * 1.42860677e-6f + 2.0f * s * p); /* ln2 = hi + lo */
}

/* Gumbel noise from one 32-bit word: U = (k + 0.5) / 2^23 with k its top 23 bits (exact in f32,
 * in (0, 1)), g = -log(-log U) by attn__log_pos. g lies in [-2.81, 16.7]. */
static inline __attribute__((always_inline)) float attn__gumbel_from_u32(uint32_t x) {
  float u = ((float)(x >> 9) + 0.5f) * (1.0f / 8388608.0f);
  return -attn__log_pos(-attn__log_pos(u));
}

/* Gumbel noise of positions [0, n) of row r into g (attn_gumbel_noise for each j). The Philox
 * rounds run over 8 blocks (32 positions) at once, which vectorises. */
static inline __attribute__((always_inline)) void attn__gumbel_row(float *g, uint64_t seed,
                                                                   int64_t row, int64_t n) {
  enum { NB = 8 };
  const uint32_t lo = (uint32_t)(uint64_t)row, hi = (uint32_t)((uint64_t)row >> 32);
  for (int64_t j0 = 0; j0 < n; j0 += 4 * NB) {
    uint32_t c0[NB], c1[NB], c2[NB], c3[NB];
    for (int b = 0; b < NB; b++) {
      c0[b] = lo;
      c1[b] = hi;
      c2[b] = (uint32_t)(j0 / 4) + (uint32_t)b;
      c3[b] = ATTN__STREAM_GUMBEL;
    }
    uint32_t k0 = (uint32_t)seed, k1 = (uint32_t)(seed >> 32);
    for (int round = 0; round < 10; round++) {
      for (int b = 0; b < NB; b++) attn__philox_round(&c0[b], &c1[b], &c2[b], &c3[b], k0, k1);
      k0 += ATTN__PHILOX_W0;
      k1 += ATTN__PHILOX_W1;
    }
    float block[4 * NB];
    for (int b = 0; b < NB; b++) {
      block[4 * b] = attn__gumbel_from_u32(c0[b]);
      block[4 * b + 1] = attn__gumbel_from_u32(c1[b]);
      block[4 * b + 2] = attn__gumbel_from_u32(c2[b]);
      block[4 * b + 3] = attn__gumbel_from_u32(c3[b]);
    }
    int64_t len = n - j0 < 4 * NB ? n - j0 : 4 * NB;
    memcpy(g + j0, block, (size_t)len * sizeof(float));
  }
}

/* cos(2 pi u) for u in [0, 1), branch-free in f32: fold u onto b in [0, 1/4] (cos is even and
 * cos(2 pi (1/2 - b)) = -cos(2 pi b)), then the Taylor series of cos to x^12 at x = 2 pi b
 * <= pi/2 (truncation < 1e-8). */
static inline __attribute__((always_inline)) float attn__cos_2pi(float u) {
  float t = u > 0.5f ? u - 1.0f : u;  /* [-1/2, 1/2] */
  float a = fabsf(t);                 /* [0, 1/2] */
  float b = a > 0.25f ? 0.5f - a : a; /* [0, 1/4] */
  float x = 6.28318531f * b, x2 = x * x;
  float c = 1.0f / 479001600.0f; /* 1/12! */
  c = c * x2 - 1.0f / 3628800.0f;
  c = c * x2 + 1.0f / 40320.0f;
  c = c * x2 - 1.0f / 720.0f;
  c = c * x2 + 1.0f / 24.0f;
  c = c * x2 - 0.5f;
  c = c * x2 + 1.0f;
  return a > 0.25f ? -c : c;
}

/* Box-Muller from two words: sqrt(-2 log U1) cos(2 pi U2), U1 = (k + 0.5)/2^23 in (0, 1) and
 * U2 = k'/2^23 in [0, 1) from the top 23 bits; |n| <= 5.8. f32, the same bits on every ISA. */
static inline __attribute__((always_inline)) float attn__normal_from_u32(uint32_t w1, uint32_t w2) {
  float u1 = ((float)(w1 >> 9) + 0.5f) * (1.0f / 8388608.0f);
  float u2 = (float)(w2 >> 9) * (1.0f / 8388608.0f);
  return sqrtf(-2.0f * attn__log_pos(u1)) * attn__cos_2pi(u2);
}

/* Standard normal noise of (row, j): block (row, j / 2) of the MONO stream, words 0 and 1 for
 * even j, 2 and 3 for odd j. */
static inline float attn__mono_normal(uint64_t seed, int64_t row, int64_t j) {
  uint32_t o[4];
  attn__stream_block(seed, row, (uint32_t)(j / 2), ATTN__STREAM_MONO, o);
  return j & 1 ? attn__normal_from_u32(o[2], o[3]) : attn__normal_from_u32(o[0], o[1]);
}

/* attn__mono_normal of positions [0, n) of row r into out, 16 at a time (8 Philox blocks whose
 * rounds vectorise). */
static inline __attribute__((always_inline)) void attn__mono_normal_row(float *out, uint64_t seed,
                                                                        int64_t row, int64_t n) {
  enum { NB = 8 };
  const uint32_t lo = (uint32_t)(uint64_t)row, hi = (uint32_t)((uint64_t)row >> 32);
  for (int64_t j0 = 0; j0 < n; j0 += 2 * NB) {
    uint32_t c0[NB], c1[NB], c2[NB], c3[NB];
    for (int b = 0; b < NB; b++) {
      c0[b] = lo;
      c1[b] = hi;
      c2[b] = (uint32_t)(j0 / 2) + (uint32_t)b;
      c3[b] = ATTN__STREAM_MONO;
    }
    uint32_t k0 = (uint32_t)seed, k1 = (uint32_t)(seed >> 32);
    for (int round = 0; round < 10; round++) {
      for (int b = 0; b < NB; b++) attn__philox_round(&c0[b], &c1[b], &c2[b], &c3[b], k0, k1);
      k0 += ATTN__PHILOX_W0;
      k1 += ATTN__PHILOX_W1;
    }
    float block[2 * NB];
    for (int b = 0; b < NB; b++) {
      block[2 * b] = attn__normal_from_u32(c0[b], c1[b]);
      block[2 * b + 1] = attn__normal_from_u32(c2[b], c3[b]);
    }
    int64_t len = n - j0 < 2 * NB ? n - j0 : 2 * NB;
    memcpy(out + j0, block, (size_t)len * sizeof(float));
  }
}

#endif
