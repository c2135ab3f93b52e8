/* Data helpers: seeded shuffling and padded batches. */
#include "nn_internal.h"

attn_status attn_nn_shuffle(int64_t *perm, int64_t n, uint64_t seed) {
  attn__clear_error();
  if (n < 0) return attn__fail(ATTN_STATUS_INVALID_ARGUMENT, "attn_nn_shuffle: n = %lld", (long long)n);
  if (n && !perm) return attn__fail(ATTN_STATUS_NULL_POINTER, "attn_nn_shuffle: perm is NULL");
  for (int64_t i = 0; i < n; i++) perm[i] = i;
  const uint32_t key[2] = {(uint32_t)seed, (uint32_t)(seed >> 32)};
  for (int64_t i = n - 1; i > 0; i--) {
    /* j uniform in [0, i] from 64 random bits (the modulo bias is below 2^-30 for any n here). */
    uint32_t ctr[4] = {(uint32_t)i, (uint32_t)((uint64_t)i >> 32), 0x73687566u, 0}, r[4];
    attn_philox4x32(ctr, key, r);
    const uint64_t x = ((uint64_t)r[0] << 32) | r[1];
    const int64_t j = (int64_t)(x % (uint64_t)(i + 1));
    const int64_t t = perm[i];
    perm[i] = perm[j];
    perm[j] = t;
  }
  return ATTN_OK;
}

attn_status attn_nn_pad_batch(int32_t *ids, int32_t *lens, const int32_t *const *seqs,
                              const int64_t *seq_lens, int64_t n, int64_t max_len, int32_t pad) {
  attn__clear_error();
  if (n < 0 || max_len < 1 || max_len > INT32_MAX)
    return attn__fail(ATTN_STATUS_INVALID_ARGUMENT, "attn_nn_pad_batch: n = %lld, max_len = %lld",
                      (long long)n, (long long)max_len);
  if (n && (!ids || !lens || !seqs || !seq_lens))
    return attn__fail(ATTN_STATUS_NULL_POINTER, "attn_nn_pad_batch: NULL argument");
  for (int64_t i = 0; i < n; i++) {
    if (seq_lens[i] < 0)
      return attn__fail(ATTN_STATUS_INVALID_ARGUMENT, "attn_nn_pad_batch: seq_lens[%lld] < 0", (long long)i);
    if (seq_lens[i] > 0 && !seqs[i])
      return attn__fail(ATTN_STATUS_NULL_POINTER, "attn_nn_pad_batch: seqs[%lld] is NULL", (long long)i);
  }
  for (int64_t i = 0; i < n; i++) {
    const int64_t len = seq_lens[i] < max_len ? seq_lens[i] : max_len;
    for (int64_t t = 0; t < max_len; t++) ids[i * max_len + t] = t < len ? seqs[i][t] : pad;
    lens[i] = (int32_t)len;
  }
  return ATTN_OK;
}
