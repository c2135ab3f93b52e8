/* FMA-throughput loop: measures one core's peak fp32 FLOP/s with 512-bit FMAs and prints the
 * implied clock assuming 2 FMA units (64 FLOP/cycle). 16 independent accumulators hide the 4-cycle
 * latency. Build: gcc -O2 -mavx512f -mfma dev/gemm_peak.c -o /tmp/gemm_peak */
#include <immintrin.h>
#include <stdio.h>
#include <time.h>

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

int main(void) {
  __m512 a0 = _mm512_set1_ps(0e-3f);
  __m512 a1 = _mm512_set1_ps(1e-3f);
  __m512 a2 = _mm512_set1_ps(2e-3f);
  __m512 a3 = _mm512_set1_ps(3e-3f);
  __m512 a4 = _mm512_set1_ps(4e-3f);
  __m512 a5 = _mm512_set1_ps(5e-3f);
  __m512 a6 = _mm512_set1_ps(6e-3f);
  __m512 a7 = _mm512_set1_ps(7e-3f);
  __m512 a8 = _mm512_set1_ps(8e-3f);
  __m512 a9 = _mm512_set1_ps(9e-3f);
  __m512 a10 = _mm512_set1_ps(10e-3f);
  __m512 a11 = _mm512_set1_ps(11e-3f);
  __m512 a12 = _mm512_set1_ps(12e-3f);
  __m512 a13 = _mm512_set1_ps(13e-3f);
  __m512 a14 = _mm512_set1_ps(14e-3f);
  __m512 a15 = _mm512_set1_ps(15e-3f);
  const __m512 m = _mm512_set1_ps(0.999999f), c = _mm512_set1_ps(1e-7f);
  const long iters = 10000000;
  double best = 0;
  for (int rep = 0; rep < 7; rep++) {
    double t0 = now();
    for (long it = 0; it < iters; it++) {
      a0 = _mm512_fmadd_ps(a0, m, c);
      a1 = _mm512_fmadd_ps(a1, m, c);
      a2 = _mm512_fmadd_ps(a2, m, c);
      a3 = _mm512_fmadd_ps(a3, m, c);
      a4 = _mm512_fmadd_ps(a4, m, c);
      a5 = _mm512_fmadd_ps(a5, m, c);
      a6 = _mm512_fmadd_ps(a6, m, c);
      a7 = _mm512_fmadd_ps(a7, m, c);
      a8 = _mm512_fmadd_ps(a8, m, c);
      a9 = _mm512_fmadd_ps(a9, m, c);
      a10 = _mm512_fmadd_ps(a10, m, c);
      a11 = _mm512_fmadd_ps(a11, m, c);
      a12 = _mm512_fmadd_ps(a12, m, c);
      a13 = _mm512_fmadd_ps(a13, m, c);
      a14 = _mm512_fmadd_ps(a14, m, c);
      a15 = _mm512_fmadd_ps(a15, m, c);
    }
    double t = now() - t0;
    double gf = (double)iters * 16.0 * 32.0 / t * 1e-9;
    if (gf > best) best = gf;
  }
  float s = _mm512_reduce_add_ps(a0) + _mm512_reduce_add_ps(a1) + _mm512_reduce_add_ps(a2) +
            _mm512_reduce_add_ps(a3) + _mm512_reduce_add_ps(a4) + _mm512_reduce_add_ps(a5) +
            _mm512_reduce_add_ps(a6) + _mm512_reduce_add_ps(a7) + _mm512_reduce_add_ps(a8) +
            _mm512_reduce_add_ps(a9) + _mm512_reduce_add_ps(a10) + _mm512_reduce_add_ps(a11) +
            _mm512_reduce_add_ps(a12) + _mm512_reduce_add_ps(a13) + _mm512_reduce_add_ps(a14) +
            _mm512_reduce_add_ps(a15);
  printf("peak %.1f GFLOP/s per core (fp32 zmm FMA); clock if 2 FMA units: %.2f GHz (check %g)\n",
         best, best / 64.0, (double)s);
  return 0;
}
