/* Layout checks shared by every entry point that takes tensor views. */
#include "internal.h"

bool attn__ranges_overlap(attn__range a, attn__range b) {
  return a.lo < a.hi && b.lo < b.hi && a.lo < b.hi && b.lo < a.hi;
}

attn_status attn__check_view_layout(const char *fn, const char *name, const attn_tensor *t,
                                    bool is_output, attn__range *r) {
  const int nd = t->ndim;
  const size_t es = attn_dtype_size(t->dtype);
  int64_t count = 1, extent = 0;
  for (int d = 0; d < nd; d++) {
    if (t->shape[d] < 0)
      return attn__fail(ATTN_STATUS_INVALID_ARGUMENT, "%s: %s: dim %d is %lld (negative)", fn, name,
                        d, (long long)t->shape[d]);
    if (t->stride[d] < 0)
      return attn__fail(ATTN_STATUS_BAD_STRIDE, "%s: %s: stride %d is %lld (negative)", fn, name, d,
                        (long long)t->stride[d]);
    if (!attn__mul_i64(count, t->shape[d], &count))
      return attn__fail(ATTN_STATUS_OVERFLOW, "%s: %s: element count overflows int64", fn, name);
  }
  if (count == 0) {
    *r = (attn__range){0, 0};
    return ATTN_OK;
  }
  for (int d = 0; d < nd; d++) {
    int64_t span;
    if (!attn__mul_i64(t->shape[d] - 1, t->stride[d], &span) ||
        !attn__add_i64(extent, span, &extent))
      return attn__fail(ATTN_STATUS_OVERFLOW, "%s: %s: extent (shape x stride) overflows int64",
                        fn, name);
    if (is_output && t->shape[d] > 1 && t->stride[d] == 0)
      return attn__fail(ATTN_STATUS_BAD_STRIDE,
                        "%s: %s: stride %d is 0 on an output dim of size %lld", fn, name, d,
                        (long long)t->shape[d]);
  }
  if (t->shape[nd - 1] > 1 && t->stride[nd - 1] != 1)
    return attn__fail(ATTN_STATUS_BAD_STRIDE, "%s: %s: innermost stride is %lld, must be 1", fn,
                      name, (long long)t->stride[nd - 1]);
  int64_t bytes;
  if (!attn__add_i64(extent, 1, &bytes) || !attn__mul_i64(bytes, (int64_t)es, &bytes) ||
      (uint64_t)bytes > (uint64_t)PTRDIFF_MAX)
    return attn__fail(ATTN_STATUS_OVERFLOW, "%s: %s: byte extent overflows", fn, name);
  if (!t->data) return attn__fail(ATTN_STATUS_NULL_POINTER, "%s: %s->data is NULL", fn, name);
  uintptr_t lo = (uintptr_t)t->data;
  if (lo + (uintptr_t)bytes < lo)
    return attn__fail(ATTN_STATUS_OVERFLOW, "%s: %s: address range wraps", fn, name);
  *r = (attn__range){lo, lo + (uintptr_t)bytes};
  return ATTN_OK;
}
