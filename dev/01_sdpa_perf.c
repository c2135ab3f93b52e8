/* dev experiment: time the fused forward/backward on one shape. Not part of the build.
 * cc -O2 -I../include 01_sdpa_perf.c ../build-lead/libattn.a -lpthread -lm */
#include "attn.h"
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <immintrin.h>
__attribute__((target("avx512f"))) static double peak_run(long iters) {
  __m512 a = _mm512_set1_ps(0.999f), b = _mm512_set1_ps(0.001f);
  __m512 c0=a,c1=a,c2=a,c3=a,c4=a,c5=a,c6=a,c7=a,c8=a,c9=a,c10=a,c11=a;
  struct timespec t0, t1; clock_gettime(CLOCK_MONOTONIC, &t0);
  for (long it = 0; it < iters; it++) {
    c0=_mm512_fmadd_ps(c0,a,b);c1=_mm512_fmadd_ps(c1,a,b);c2=_mm512_fmadd_ps(c2,a,b);c3=_mm512_fmadd_ps(c3,a,b);
    c4=_mm512_fmadd_ps(c4,a,b);c5=_mm512_fmadd_ps(c5,a,b);c6=_mm512_fmadd_ps(c6,a,b);c7=_mm512_fmadd_ps(c7,a,b);
    c8=_mm512_fmadd_ps(c8,a,b);c9=_mm512_fmadd_ps(c9,a,b);c10=_mm512_fmadd_ps(c10,a,b);c11=_mm512_fmadd_ps(c11,a,b);
    __asm__ volatile("" : "+v"(c0),"+v"(c1),"+v"(c2),"+v"(c3),"+v"(c4),"+v"(c5),"+v"(c6),"+v"(c7),"+v"(c8),"+v"(c9),"+v"(c10),"+v"(c11));
  }
  clock_gettime(CLOCK_MONOTONIC, &t1);
  double dt = (t1.tv_sec - t0.tv_sec) + 1e-9 * (t1.tv_nsec - t0.tv_nsec);
  return iters * 12.0 * 32 / dt * 1e-9;
}
static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + 1e-9 * t.tv_nsec; }
int main(int argc, char **argv) {
  int64_t N = argc > 1 ? atoll(argv[1]) : 2048, D = argc > 2 ? atoll(argv[2]) : 64, H = argc > 3 ? atoll(argv[3]) : 8;
  int causal = argc > 4 ? atoi(argv[4]) : 0, th = argc > 5 ? atoi(argv[5]) : 1, bwd = argc > 6 ? atoi(argv[6]) : 0;
  attn_set_num_threads(th);
  int64_t s[4] = {1, H, N, D}, ls[3] = {1, H, N};
  float *q = malloc(H * N * D * 4), *k = malloc(H * N * D * 4), *v = malloc(H * N * D * 4), *o = malloc(H * N * D * 4), *l = malloc(H * N * 4);
  float *dq = malloc(H * N * D * 4), *dk = malloc(H * N * D * 4), *dv = malloc(H * N * D * 4), *dout = malloc(H * N * D * 4);
  for (int64_t i = 0; i < H * N * D; i++) { q[i] = (rand() / (float)RAND_MAX) - 0.5f; k[i] = (rand() / (float)RAND_MAX) - 0.5f; v[i] = (rand() / (float)RAND_MAX) - 0.5f; dout[i] = (rand() / (float)RAND_MAX) - 0.5f; }
  attn_tensor Q = attn_tensor_make(q, ATTN_DTYPE_F32, 4, s), K = attn_tensor_make(k, ATTN_DTYPE_F32, 4, s), V = attn_tensor_make(v, ATTN_DTYPE_F32, 4, s), O = attn_tensor_make(o, ATTN_DTYPE_F32, 4, s), L = attn_tensor_make(l, ATTN_DTYPE_F32, 3, ls);
  attn_tensor dQ = attn_tensor_make(dq, ATTN_DTYPE_F32, 4, s), dK = attn_tensor_make(dk, ATTN_DTYPE_F32, 4, s), dV = attn_tensor_make(dv, ATTN_DTYPE_F32, 4, s), dO = attn_tensor_make(dout, ATTN_DTYPE_F32, 4, s);
  attn_sdpa_params p = attn_sdpa_params_default(); p.causal = causal;
  double best = 1e9;
  for (int r = 0; r < 5; r++) {
    double t0 = now();
    attn_status st = bwd ? attn_sdpa_backward(&dQ, &dK, &dV, &dO, &Q, &K, &V, &O, &L, &p, NULL, 0) : attn_sdpa_forward(&O, &L, NULL, &Q, &K, &V, &p, NULL, 0);
    if (r == 0 && bwd) attn_sdpa_forward(&O, &L, NULL, &Q, &K, &V, &p, NULL, 0);
    double t = now() - t0;
    if (st) { printf("err %s %s\n", attn_status_str(st), attn_last_error()); return 1; }
    if (t < best) best = t;
  }
  double pairs = causal ? N * (N + 1) / 2.0 : (double)N * N;
  double fl = 4.0 * H * pairs * D * (bwd ? 2.5 : 1);
  double pk = peak_run(100000000);
  printf("peak %.1f/core, ", pk);
  printf("N=%lld D=%lld H=%lld causal=%d th=%d %s: %.2f ms  %.1f GFLOP/s (%.0f%% of peak) isa=%s\n", (long long)N, (long long)D, (long long)H, causal, th, bwd ? "bwd" : "fwd", best * 1e3, fl / best * 1e-9, 100 * fl / best * 1e-9 / (pk * th), attn_isa_name(attn_get_isa()));
  return 0;
}
