/* The FMA peak of one core: what every benchmark figure is a percentage of.
 *
 * Each loop keeps its accumulators in registers and updates them with independent fused
 * multiply-adds, c = c * a + b, so the only limit is how many FMAs the core retires per cycle.
 * There are more chains than (FMA latency x FMA ports), 4 x 2 on recent x86 cores, so the loop is
 * throughput-bound, not latency-bound. The values converge to b / (1 - a) = 1 and stay normal.
 *
 * The command is built without ISA flags (it must run on any x86-64), so the vector loops carry
 * target attributes and run only when attn_get_isa() says the CPU has that ISA. */
#include "cli.h"

#include <string.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define CLI_X86 1
#else
#define CLI_X86 0
#endif

#if CLI_X86

#define AVX512_CHAINS 16
__attribute__((target("avx512f"))) static float fma_loop_avx512(int64_t iters) {
  const __m512 a = _mm512_set1_ps(0.999f), b = _mm512_set1_ps(0.001f);
  __m512 c0 = _mm512_set1_ps(0.10f), c1 = _mm512_set1_ps(0.11f), c2 = _mm512_set1_ps(0.12f);
  __m512 c3 = _mm512_set1_ps(0.13f), c4 = _mm512_set1_ps(0.14f), c5 = _mm512_set1_ps(0.15f);
  __m512 c6 = _mm512_set1_ps(0.16f), c7 = _mm512_set1_ps(0.17f), c8 = _mm512_set1_ps(0.18f);
  __m512 c9 = _mm512_set1_ps(0.19f), c10 = _mm512_set1_ps(0.20f), c11 = _mm512_set1_ps(0.21f);
  __m512 c12 = _mm512_set1_ps(0.22f), c13 = _mm512_set1_ps(0.23f), c14 = _mm512_set1_ps(0.24f);
  __m512 c15 = _mm512_set1_ps(0.25f);
  for (int64_t i = 0; i < iters; i++) {
    c0 = _mm512_fmadd_ps(c0, a, b);
    c1 = _mm512_fmadd_ps(c1, a, b);
    c2 = _mm512_fmadd_ps(c2, a, b);
    c3 = _mm512_fmadd_ps(c3, a, b);
    c4 = _mm512_fmadd_ps(c4, a, b);
    c5 = _mm512_fmadd_ps(c5, a, b);
    c6 = _mm512_fmadd_ps(c6, a, b);
    c7 = _mm512_fmadd_ps(c7, a, b);
    c8 = _mm512_fmadd_ps(c8, a, b);
    c9 = _mm512_fmadd_ps(c9, a, b);
    c10 = _mm512_fmadd_ps(c10, a, b);
    c11 = _mm512_fmadd_ps(c11, a, b);
    c12 = _mm512_fmadd_ps(c12, a, b);
    c13 = _mm512_fmadd_ps(c13, a, b);
    c14 = _mm512_fmadd_ps(c14, a, b);
    c15 = _mm512_fmadd_ps(c15, a, b);
    /* An empty asm that "uses" the accumulators keeps the compiler from reordering the chains
     * into something shorter or hoisting them out of the loop. */
    __asm__ volatile(""
                     : "+v"(c0), "+v"(c1), "+v"(c2), "+v"(c3), "+v"(c4), "+v"(c5), "+v"(c6),
                       "+v"(c7));
    __asm__ volatile(""
                     : "+v"(c8), "+v"(c9), "+v"(c10), "+v"(c11), "+v"(c12), "+v"(c13), "+v"(c14),
                       "+v"(c15));
  }
  __m512 s = _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(c0, c1), _mm512_add_ps(c2, c3)),
                           _mm512_add_ps(_mm512_add_ps(c4, c5), _mm512_add_ps(c6, c7)));
  s = _mm512_add_ps(s,
                    _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(c8, c9), _mm512_add_ps(c10, c11)),
                                  _mm512_add_ps(_mm512_add_ps(c12, c13), _mm512_add_ps(c14, c15))));
  return _mm512_reduce_add_ps(s);
}

#define AVX2_CHAINS 12 /* 16 ymm registers: 12 accumulators + 2 constants */
__attribute__((target("avx2,fma"))) static float fma_loop_avx2(int64_t iters) {
  const __m256 a = _mm256_set1_ps(0.999f), b = _mm256_set1_ps(0.001f);
  __m256 c0 = _mm256_set1_ps(0.10f), c1 = _mm256_set1_ps(0.11f), c2 = _mm256_set1_ps(0.12f);
  __m256 c3 = _mm256_set1_ps(0.13f), c4 = _mm256_set1_ps(0.14f), c5 = _mm256_set1_ps(0.15f);
  __m256 c6 = _mm256_set1_ps(0.16f), c7 = _mm256_set1_ps(0.17f), c8 = _mm256_set1_ps(0.18f);
  __m256 c9 = _mm256_set1_ps(0.19f), c10 = _mm256_set1_ps(0.20f), c11 = _mm256_set1_ps(0.21f);
  for (int64_t i = 0; i < iters; i++) {
    c0 = _mm256_fmadd_ps(c0, a, b);
    c1 = _mm256_fmadd_ps(c1, a, b);
    c2 = _mm256_fmadd_ps(c2, a, b);
    c3 = _mm256_fmadd_ps(c3, a, b);
    c4 = _mm256_fmadd_ps(c4, a, b);
    c5 = _mm256_fmadd_ps(c5, a, b);
    c6 = _mm256_fmadd_ps(c6, a, b);
    c7 = _mm256_fmadd_ps(c7, a, b);
    c8 = _mm256_fmadd_ps(c8, a, b);
    c9 = _mm256_fmadd_ps(c9, a, b);
    c10 = _mm256_fmadd_ps(c10, a, b);
    c11 = _mm256_fmadd_ps(c11, a, b);
    __asm__ volatile("" : "+x"(c0), "+x"(c1), "+x"(c2), "+x"(c3), "+x"(c4), "+x"(c5));
    __asm__ volatile("" : "+x"(c6), "+x"(c7), "+x"(c8), "+x"(c9), "+x"(c10), "+x"(c11));
  }
  __m256 s = _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(c0, c1), _mm256_add_ps(c2, c3)),
                           _mm256_add_ps(_mm256_add_ps(c4, c5), _mm256_add_ps(c6, c7)));
  s = _mm256_add_ps(s, _mm256_add_ps(_mm256_add_ps(c8, c9), _mm256_add_ps(c10, c11)));
  float lanes[8];
  _mm256_storeu_ps(lanes, s);
  return lanes[0] + lanes[1] + lanes[2] + lanes[3] + lanes[4] + lanes[5] + lanes[6] + lanes[7];
}

#endif /* CLI_X86 */

/* The scalar path's yardstick: 128-bit vectors with a separate multiply and add (baseline SSE2 on
 * x86-64; what -O3 code without ISA flags can reach). Each chain step is two dependent operations,
 * so it counts 2 flops per lane per step like an FMA. */
#define VEC128_CHAINS 12
typedef float cli_v4 __attribute__((vector_size(16)));
static float muladd_loop_vec128(int64_t iters) {
  const cli_v4 a = {0.999f, 0.999f, 0.999f, 0.999f}, b = {0.001f, 0.001f, 0.001f, 0.001f};
  cli_v4 c[VEC128_CHAINS];
  for (int j = 0; j < VEC128_CHAINS; j++) {
    float x = 0.1f + 0.01f * (float)j;
    c[j] = (cli_v4){x, x, x, x};
  }
  cli_v4 c0 = c[0], c1 = c[1], c2 = c[2], c3 = c[3], c4 = c[4], c5 = c[5];
  cli_v4 c6 = c[6], c7 = c[7], c8 = c[8], c9 = c[9], c10 = c[10], c11 = c[11];
  for (int64_t i = 0; i < iters; i++) {
    c0 = c0 * a + b;
    c1 = c1 * a + b;
    c2 = c2 * a + b;
    c3 = c3 * a + b;
    c4 = c4 * a + b;
    c5 = c5 * a + b;
    c6 = c6 * a + b;
    c7 = c7 * a + b;
    c8 = c8 * a + b;
    c9 = c9 * a + b;
    c10 = c10 * a + b;
    c11 = c11 * a + b;
#if CLI_X86
    __asm__ volatile("" : "+x"(c0), "+x"(c1), "+x"(c2), "+x"(c3), "+x"(c4), "+x"(c5));
    __asm__ volatile("" : "+x"(c6), "+x"(c7), "+x"(c8), "+x"(c9), "+x"(c10), "+x"(c11));
#endif
  }
  cli_v4 s = ((c0 + c1) + (c2 + c3)) + ((c4 + c5) + (c6 + c7)) + ((c8 + c9) + (c10 + c11));
  return s[0] + s[1] + s[2] + s[3];
}

/* Accumulated into a volatile sink so the loops' results are used. */
static volatile float peak_sink;

static double time_loop(attn_isa isa, int64_t iters) {
  double t0 = cli_now();
  float r;
#if CLI_X86
  if (isa == ATTN_ISA_AVX512)
    r = fma_loop_avx512(iters);
  else if (isa == ATTN_ISA_AVX2)
    r = fma_loop_avx2(iters);
  else
#endif
    r = muladd_loop_vec128(iters);
  double t = cli_now() - t0;
  peak_sink = peak_sink + r;
  return t;
}

void cli_measure_peak(cli_peak *peak) {
  memset(peak, 0, sizeof *peak);
  attn_isa isa = attn_get_isa();
#if !CLI_X86
  isa = ATTN_ISA_SCALAR;
#endif
  peak->isa = isa;
  if (isa == ATTN_ISA_AVX512) {
    peak->loop = "avx512-fma";
    peak->vector_bits = 512;
#if CLI_X86
    peak->accumulators = AVX512_CHAINS;
#endif
  } else if (isa == ATTN_ISA_AVX2) {
    peak->loop = "avx2-fma";
    peak->vector_bits = 256;
#if CLI_X86
    peak->accumulators = AVX2_CHAINS;
#endif
  } else {
    peak->loop = "vec128-muladd";
    peak->vector_bits = 128;
    peak->accumulators = VEC128_CHAINS;
  }
  double flop_per_iter = 2.0 * (peak->vector_bits / 32) * peak->accumulators;

  double start = cli_now();
  cli_pin_main_thread();
  /* Calibrate: grow the trip count until one trial takes >= 20 ms, then aim at ~60 ms. */
  int64_t iters = 1 << 14;
  double t = time_loop(isa, iters);
  while (t < 0.02 && iters < ((int64_t)1 << 40)) {
    iters *= 2;
    t = time_loop(isa, iters);
  }
  if (t > 0) {
    double scaled = (double)iters * 0.06 / t;
    if (scaled > (double)iters) iters = (int64_t)scaled;
  }
  /* The best of five trials: interruptions only ever slow a trial down. */
  double best = 0;
  for (int trial = 0; trial < 5; trial++) {
    t = time_loop(isa, iters);
    double g = t > 0 ? flop_per_iter * (double)iters / t * 1e-9 : 0;
    if (g > best) best = g;
  }
  cli_unpin_main_thread(); /* a pool started later must not inherit a one-CPU mask */
  peak->gflops_per_core = best;
  peak->seconds = cli_now() - start;
}
