/* CPU feature detection (cpuid + xgetbv) and the dispatch table. */
#include "internal.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <strings.h>

#if ATTN_X86
#include <cpuid.h>

static uint64_t read_xcr0(void) {
  uint32_t eax, edx;
  __asm__ volatile("xgetbv" : "=a"(eax), "=d"(edx) : "c"(0));
  return ((uint64_t)edx << 32) | eax;
}

static attn_isa detect(void) {
  unsigned a, b, c, d;
  if (!__get_cpuid(1, &a, &b, &c, &d)) return ATTN_ISA_SCALAR;
  bool osxsave = c & (1u << 27), fma = c & (1u << 12), avx = c & (1u << 28);
  if (!osxsave || !avx || !fma) return ATTN_ISA_SCALAR;
  uint64_t xcr0 = read_xcr0();
  if ((xcr0 & 0x6) != 0x6) return ATTN_ISA_SCALAR; /* OS saves XMM and YMM state */
  if (__get_cpuid_max(0, NULL) < 7) return ATTN_ISA_SCALAR;
  __cpuid_count(7, 0, a, b, c, d);
  bool avx2 = b & (1u << 5);
  if (!avx2) return ATTN_ISA_SCALAR;
  bool f = b & (1u << 16), dq = b & (1u << 17), bw = b & (1u << 30), vl = b & (1u << 31);
  bool os_zmm = (xcr0 & 0xe6) == 0xe6; /* opmask, ZMM_Hi256, Hi16_ZMM */
  if (f && dq && bw && vl && os_zmm) return ATTN_ISA_AVX512;
  return ATTN_ISA_AVX2;
}
#else
static attn_isa detect(void) { return ATTN_ISA_SCALAR; }
#endif

static atomic_int best_isa = -1;
static atomic_int forced_isa = -1;

attn_isa attn_cpu_best_isa(void) {
  int v = atomic_load(&best_isa);
  if (v < 0) {
    v = (int)detect();
    atomic_store(&best_isa, v);
  }
  return (attn_isa)v;
}

int attn_cpu_supports(attn_isa isa) {
  return (int)isa >= (int)ATTN_ISA_SCALAR && (int)isa <= (int)attn_cpu_best_isa();
}

const char *attn_isa_name(attn_isa isa) {
  switch (isa) {
    case ATTN_ISA_SCALAR: return "scalar";
    case ATTN_ISA_AVX2: return "avx2";
    case ATTN_ISA_AVX512: return "avx512";
  }
  return "unknown";
}

static int isa_from_env(void) {
  const char *env = getenv("ATTN_ISA");
  if (!env || !*env) return -1;
  for (int i = ATTN_ISA_SCALAR; i <= ATTN_ISA_AVX512; i++)
    if (strcasecmp(env, attn_isa_name((attn_isa)i)) == 0 && attn_cpu_supports((attn_isa)i))
      return i;
  return -1; /* unknown or unsupported: keep the best path */
}

attn_isa attn_get_isa(void) {
  int v = atomic_load(&forced_isa);
  if (v < 0) {
    v = isa_from_env();
    if (v < 0) v = (int)attn_cpu_best_isa();
    atomic_store(&forced_isa, v);
  }
  return (attn_isa)v;
}

attn_status attn_set_isa(attn_isa isa) {
  attn__clear_error();
  if ((int)isa < (int)ATTN_ISA_SCALAR || (int)isa > (int)ATTN_ISA_AVX512)
    return attn__fail(ATTN_STATUS_INVALID_ARGUMENT, "attn_set_isa: isa = %d is not an attn_isa",
                      (int)isa);
  if (!attn_cpu_supports(isa))
    return attn__fail(ATTN_STATUS_UNSUPPORTED, "attn_set_isa: this CPU does not support %s",
                      attn_isa_name(isa));
  atomic_store(&forced_isa, (int)isa);
  return ATTN_OK;
}

const attn__kernels *attn__kernels_get(void) {
#if ATTN_X86
  switch (attn_get_isa()) {
    case ATTN_ISA_AVX512: return &attn__kernels_avx512;
    case ATTN_ISA_AVX2: return &attn__kernels_avx2;
    default: break;
  }
#endif
  return &attn__kernels_scalar;
}
