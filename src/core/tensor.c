/* Tensor views, dtypes and conversions. */
#include "internal.h"

attn_tensor attn_tensor_make(void *data, attn_dtype dtype, int ndim, const int64_t *shape) {
  attn_tensor t;
  memset(&t, 0, sizeof t);
  t.data = data;
  t.dtype = dtype;
  t.ndim = ndim;
  if (ndim < 1 || ndim > ATTN_MAX_DIMS || !shape) return t;
  int64_t stride = 1;
  for (int d = ndim - 1; d >= 0; d--) {
    t.shape[d] = shape[d];
    t.stride[d] = stride;
    stride *= shape[d] > 0 ? shape[d] : 1;
  }
  return t;
}

size_t attn_dtype_size(attn_dtype dtype) {
  switch (dtype) {
    case ATTN_DTYPE_F32: return 4;
    case ATTN_DTYPE_F16:
    case ATTN_DTYPE_BF16: return 2;
  }
  return 0;
}

attn_status attn_tensor_numel(const attn_tensor *t, int64_t *count) {
  attn__clear_error();
  if (!t || !count) return attn__fail(ATTN_STATUS_NULL_POINTER, "attn_tensor_numel: %s is NULL", t ? "count" : "t");
  if (t->ndim < 0 || t->ndim > ATTN_MAX_DIMS)
    return attn__fail(ATTN_STATUS_INVALID_ARGUMENT, "attn_tensor_numel: ndim %d outside 0..4", (int)t->ndim);
  int64_t n = 1;
  for (int d = 0; d < t->ndim; d++) {
    if (t->shape[d] < 0)
      return attn__fail(ATTN_STATUS_INVALID_ARGUMENT, "attn_tensor_numel: shape[%d] = %lld is negative", d,
                        (long long)t->shape[d]);
    if (!attn__mul_i64(n, t->shape[d], &n))
      return attn__fail(ATTN_STATUS_OVERFLOW, "attn_tensor_numel: element count overflows int64");
  }
  *count = n;
  return ATTN_OK;
}

/* binary16 <-> binary32 by bit manipulation, exact and round-to-nearest-even. */
float attn__f16_to_f32_slow(uint16_t h) {
  uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
  uint32_t exp = (h >> 10) & 0x1fu;
  uint32_t man = h & 0x3ffu;
  uint32_t u;
  if (exp == 0) {
    if (man == 0) {
      u = sign;
    } else { /* subnormal: normalise */
      int e = -1;
      do {
        e++;
        man <<= 1;
      } while (!(man & 0x400u));
      u = sign | ((uint32_t)(127 - 15 - e) << 23) | ((man & 0x3ffu) << 13);
    }
  } else if (exp == 31) {
    u = sign | 0x7f800000u | (man << 13) | (man ? 0x400000u : 0);
  } else {
    u = sign | ((exp + 112u) << 23) | (man << 13);
  }
  return attn__bits_to_f32(u);
}

uint16_t attn__f32_to_f16_slow(float x) {
  uint32_t u = attn__f32_to_bits(x);
  uint32_t sign = (u >> 16) & 0x8000u;
  uint32_t a = u & 0x7fffffffu;
  if (a > 0x7f800000u) return (uint16_t)(sign | 0x7e00u | ((a >> 13) & 0x3ffu)); /* NaN */
  if (a >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u); /* overflow (rounds to inf) or inf */
  if (a < 0x38800000u) { /* result subnormal or zero */
    if (a < 0x33000000u) return (uint16_t)sign; /* below half the smallest subnormal */
    uint32_t e = a >> 23;
    uint32_t m = (a & 0x7fffffu) | 0x800000u;
    uint32_t shift = 126u - e; /* 14..24 */
    uint32_t r = m >> shift;
    uint32_t rem = m & ((1u << shift) - 1);
    uint32_t half = 1u << (shift - 1);
    if (rem > half || (rem == half && (r & 1u))) r++;
    return (uint16_t)(sign | r);
  }
  uint32_t r = a - 0x38000000u; /* rebias 127 -> 15 */
  uint32_t lsb = (r >> 13) & 1u;
  r += 0xfffu + lsb;
  return (uint16_t)(sign | (r >> 13));
}

uint16_t attn_f32_to_f16(float x) { return attn__f32_to_f16_slow(x); }
float attn_f16_to_f32(uint16_t h) { return attn__f16_to_f32_slow(h); }
uint16_t attn_f32_to_bf16(float x) { return attn__f32_to_bf16(x); }
float attn_bf16_to_f32(uint16_t h) { return attn__bf16_to_f32(h); }

void attn__convert_to_f32(float *dst, const void *src, attn_dtype dtype, int64_t n) {
  if (dtype == ATTN_DTYPE_F32) {
    memcpy(dst, src, (size_t)n * 4);
  } else if (dtype == ATTN_DTYPE_BF16) {
    const uint16_t *s = src;
    for (int64_t i = 0; i < n; i++) dst[i] = attn__bf16_to_f32(s[i]);
  } else {
    const uint16_t *s = src;
    for (int64_t i = 0; i < n; i++) dst[i] = attn__f16_to_f32_slow(s[i]);
  }
}

void attn__convert_from_f32(void *dst, attn_dtype dtype, const float *src, int64_t n) {
  if (dtype == ATTN_DTYPE_F32) {
    memcpy(dst, src, (size_t)n * 4);
  } else if (dtype == ATTN_DTYPE_BF16) {
    uint16_t *d = dst;
    for (int64_t i = 0; i < n; i++) d[i] = attn__f32_to_bf16(src[i]);
  } else {
    uint16_t *d = dst;
    for (int64_t i = 0; i < n; i++) d[i] = attn__f32_to_f16_slow(src[i]);
  }
}
