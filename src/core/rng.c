/* Philox 4x32-10 (Salmon, Moraes, Dror, Shaw: "Parallel random numbers: as easy as 1, 2, 3",
 * SC'11). Constants from the paper. */
#include "internal.h"

void attn_philox4x32(const uint32_t counter[4], const uint32_t key[2], uint32_t out[4]) {
  uint32_t c0 = counter[0], c1 = counter[1], c2 = counter[2], c3 = counter[3];
  uint32_t k0 = key[0], k1 = key[1];
  for (int round = 0; round < 10; round++) {
    attn__philox_round(&c0, &c1, &c2, &c3, k0, k1);
    k0 += ATTN__PHILOX_W0;
    k1 += ATTN__PHILOX_W1;
  }
  out[0] = c0;
  out[1] = c1;
  out[2] = c2;
  out[3] = c3;
}

float attn_uniform_from_u32(uint32_t x) { return (float)(x >> 8) * (1.0f / 16777216.0f); }

/* One Philox call covers four consecutive keys: counter = (j / 4, i, h, b), key = seed. Word
 * j % 4 decides key j. */
int attn_dropout_keep(uint64_t seed, float p, int64_t b, int64_t h, int64_t i, int64_t j) {
  uint32_t ctr[4] = {(uint32_t)(j >> 2), (uint32_t)i, (uint32_t)h, (uint32_t)b};
  uint32_t key[2] = {(uint32_t)seed, (uint32_t)(seed >> 32)};
  uint32_t r[4];
  attn_philox4x32(ctr, key, r);
  return attn_uniform_from_u32(r[j & 3]) >= p;
}
