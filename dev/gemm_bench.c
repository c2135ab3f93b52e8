/* Quick attn_gemm timing: GFLOP/s of row-major C = A B (M = N = K = size by default) for a given
 * thread count and ISA, median of `reps` runs after two warm-ups.
 * Usage: gemm_bench [size] [threads] [reps] [isa: scalar|avx2|avx512] [ta] [tb]
 * Build: cmake --build build-gemm --target attn_static &&
 *        cc -O2 -Iinclude dev/gemm_bench.c build-gemm/libattn.a -lpthread -lm -o /tmp/gemm_bench
 * Compare with dev/gemm_peak.c (one core's FMA peak) run right before. */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "attn.h"

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static int cmp(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

int main(int argc, char **argv) {
  int64_t n = argc > 1 ? atoll(argv[1]) : 1024;
  int threads = argc > 2 ? atoi(argv[2]) : 1;
  int reps = argc > 3 ? atoi(argv[3]) : 9;
  if (reps > 64) reps = 64;
  if (argc > 4) {
    attn_isa isa = strcmp(argv[4], "scalar") == 0 ? ATTN_ISA_SCALAR
                   : strcmp(argv[4], "avx2") == 0 ? ATTN_ISA_AVX2
                                                  : ATTN_ISA_AVX512;
    if (attn_set_isa(isa) != ATTN_OK) return 1;
  }
  attn_trans ta = argc > 5 && atoi(argv[5]) ? ATTN_TRANS : ATTN_NO_TRANS;
  attn_trans tb = argc > 6 && atoi(argv[6]) ? ATTN_TRANS : ATTN_NO_TRANS;
  attn_set_num_threads(threads);
  float *A = malloc(sizeof(float) * (size_t)(n * n)), *B = malloc(sizeof(float) * (size_t)(n * n));
  float *C = malloc(sizeof(float) * (size_t)(n * n));
  for (int64_t i = 0; i < n * n; i++) {
    A[i] = (float)((i * 7) % 13) * 0.1f - 0.6f;
    B[i] = (float)((i * 5) % 11) * 0.1f - 0.5f;
    C[i] = 0.0f;
  }
  double t[64];
  for (int r = -2; r < reps; r++) {
    double t0 = now();
    attn_status st = attn_gemm(ATTN_ROW_MAJOR, ta, tb, n, n, n, 1.0f, A, n, B, n, 0.0f, C, n);
    double dt = now() - t0;
    if (st != ATTN_OK) {
      fprintf(stderr, "attn_gemm: %s\n", attn_last_error());
      return 1;
    }
    if (r >= 0) t[r] = dt;
  }
  qsort(t, (size_t)reps, sizeof(double), cmp);
  double flop = 2.0 * (double)n * (double)n * (double)n;
  printf("sgemm %lld^3 %s ta=%d tb=%d threads=%d: median %.1f GFLOP/s (best %.1f, worst %.1f)\n",
         (long long)n, attn_isa_name(attn_get_isa()), (int)ta, (int)tb, threads,
         flop / t[reps / 2] * 1e-9, flop / t[0] * 1e-9, flop / t[reps - 1] * 1e-9);
  free(A);
  free(B);
  free(C);
  attn_shutdown();
  return 0;
}
