/* Fused exact attention in portable C: the same tiled algorithm as the SIMD files over an
 * 8-lane array type, for CPUs without AVX2 and for valgrind. */
#include "internal.h"

#define VW 8
#define RMAX 4
#define RALT 2
#define SUFFIX(name) name##_scalar

typedef struct vf {
  float v[VW];
} vf;

static inline vf vload(const float *p) {
  vf r;
  memcpy(r.v, p, sizeof r.v);
  return r;
}
static inline void vstore(float *p, vf x) { memcpy(p, x.v, sizeof x.v); }
static inline vf vset1(float x) {
  vf r;
  for (int l = 0; l < VW; l++) r.v[l] = x;
  return r;
}
static inline vf vzero(void) { return vset1(0.0f); }
static inline vf vbcast(const float *p) { return vset1(*p); }
#define LANEWISE(name, expr)            \
  static inline vf name(vf a, vf b) {   \
    vf r;                               \
    for (int l = 0; l < VW; l++) {      \
      float x = a.v[l], y = b.v[l];     \
      r.v[l] = (expr);                  \
    }                                   \
    return r;                           \
  }
LANEWISE(vadd, x + y)
LANEWISE(vsub, x - y)
LANEWISE(vmul, x * y)
LANEWISE(vmax, x > y ? x : y) /* returns y when either is NaN, like maxps */
static inline vf vfma(vf a, vf b, vf c) {
  for (int l = 0; l < VW; l++) c.v[l] = fmaf(a.v[l], b.v[l], c.v[l]);
  return c;
}
static inline vf vexp2(vf x) {
  for (int l = 0; l < VW; l++) x.v[l] = x.v[l] < -126.0f ? 0.0f : exp2f(x.v[l]);
  return x;
}
static inline vf vkeep(vf x, uint32_t bits) {
  for (int l = 0; l < VW; l++)
    if (!((bits >> l) & 1u)) x.v[l] = 0.0f;
  return x;
}
static inline vf vfma_bits(vf a, vf b, vf c, uint32_t bits) {
  for (int l = 0; l < VW; l++)
    if ((bits >> l) & 1u) c.v[l] = fmaf(a.v[l], b.v[l], c.v[l]);
  return c;
}
static inline vf vneginf(vf x, uint32_t bits) {
  for (int l = 0; l < VW; l++)
    if (!((bits >> l) & 1u)) x.v[l] = -INFINITY;
  return x;
}

static inline uint32_t vlanebits(int64_t j, const int64_t *lo, const int64_t *hi) {
  uint32_t m = 0;
  for (int l = 0; l < 2 * VW; l++) m |= (uint32_t)(j >= lo[l] && j <= hi[l]) << l;
  return m;
}

static inline void vtranspose(vf r[VW]) {
  for (int i = 0; i < VW; i++)
    for (int j = i + 1; j < VW; j++) {
      float x = r[i].v[j];
      r[i].v[j] = r[j].v[i];
      r[j].v[i] = x;
    }
}

#include "sdpa_kernel.inc"

const attn__kernels attn__kernels_scalar = {
    .isa = ATTN_ISA_SCALAR,
    .sdpa_forward = sdpa_forward_scalar,
    .sdpa_forward_ws = sdpa_forward_ws_scalar,
    .sdpa_backward = sdpa_backward_scalar,
    .sdpa_backward_ws = sdpa_backward_ws_scalar,
    .sgemm = attn__sgemm_scalar,
};
