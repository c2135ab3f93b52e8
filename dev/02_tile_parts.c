/* dev: time the parts of one forward tile (QK^T micro-kernel, softmax pass, P.V micro-kernel)
 * by including the AVX-512 kernel file directly.
 * gcc -O3 -mavx512f -mavx512bw -mavx512vl -mavx512dq -mfma -I../include -I../src/core 02_tile_parts.c ../src/core/*.c -lpthread -lm */
#include "../src/cpu/avx512/sdpa_avx512.c"
#include <stdio.h>
#include <time.h>
attn_status attn__sgemm_avx512(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float *A, int64_t lda, const float *B, int64_t ldb, float beta, float *C, int64_t ldc) { return 0; }
attn_status attn__sgemm_avx2(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float *A, int64_t lda, const float *B, int64_t ldb, float beta, float *C, int64_t ldc) { return 0; }
attn_status attn__sgemm_scalar(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float *A, int64_t lda, const float *B, int64_t ldb, float beta, float *C, int64_t ldc) { return 0; }
const attn__kernels attn__kernels_avx2, attn__kernels_scalar;
attn_status attn__sdpa_forward_ref_run(const attn__sdpa_problem *pr) { return 0; }
attn_status attn__sdpa_backward_ref_run(const attn__sdpa_problem *pr) { return 0; }
static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + 1e-9 * t.tv_nsec; }
int main(int argc, char **argv) {
  int D = argc > 1 ? atoi(argv[1]) : 64, N = argc > 2 ? atoi(argv[2]) : 2048;
  float *K = aligned_alloc(64, N * D * 4), *V = aligned_alloc(64, N * D * 4), *Qt = aligned_alloc(64, D * QW * 4), *Ot = aligned_alloc(64, D * QW * 4), *St = aligned_alloc(64, KB_FWD * QW * 4);
  for (int i = 0; i < N * D; i++) K[i] = V[i] = 0.001f * (i % 100);
  for (int i = 0; i < D * QW; i++) Qt[i] = Ot[i] = 0.01f;
  for (int i = 0; i < KB_FWD * QW; i++) St[i] = -1.0f;
  int reps = 2000;
  double t0 = now();
  for (int r = 0; r < reps; r++) for (int j0 = 0; j0 < N; j0 += KB_FWD) for (int t0 = 0; t0 < KB_FWD; t0 += RMAX) mk(RMAX, St + t0 * QW, QW, K + (j0 + t0) * D, 1, RMAX, Qt, QW, D, NULL, false);
  double tqk = now() - t0;
  t0 = now();
  for (int r = 0; r < reps; r++) for (int j0 = 0; j0 < N; j0 += KB_FWD) mk(D, Ot, QW, V + j0 * D, 1, D, St, QW, KB_FWD, NULL, true);
  double tpv = now() - t0;
  t0 = now();
  vf ms0 = vzero();
  for (int r = 0; r < reps; r++) for (int j0 = 0; j0 < N; j0 += KB_FWD) {
    vf s0 = vzero(), s1 = vzero();
    for (int t = 0; t < KB_FWD; t++) { vf p0 = vexp2(vsub(vload(St + t * QW), ms0)); vf p1 = vexp2(vsub(vload(St + t * QW + VW), ms0)); s0 = vadd(s0, p0); s1 = vadd(s1, p1); vstore(St + t * QW, p0); vstore(St + t * QW + VW, p1); }
    vstore(Qt, vadd(s0, s1));
    for (int t = 0; t < KB_FWD * QW; t++) St[t] = -1.0f;
  }
  double tex = now() - t0;
  double fl = 2.0 * reps * (N / KB_FWD) * KB_FWD * QW * D;
  printf("D=%d  QK %.1f GFLOP/s  PV %.1f GFLOP/s  exp pass %.2f ns/elem (incl refill)\n", D, fl / tqk * 1e-9, fl / tpv * 1e-9, tex / (reps * (double)N * QW) * 1e9);
  return 0;
}
