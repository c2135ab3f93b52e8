/* dev: the P.V micro-kernel alone: rows (value dims) per block and keys per call.
 * gcc -O3 -mavx512f -mavx512bw -mavx512vl -mavx512dq -mfma -I../include -I../src/core 03_pv_variants.c ../src/core/*.c -lpthread -lm */
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
  int D = argc > 1 ? atoi(argv[1]) : 64, T = argc > 2 ? atoi(argv[2]) : 96, blk = argc > 3 ? atoi(argv[3]) : 8, N = 2048;
  float *V = aligned_alloc(64, (size_t)N * D * 4), *Ot = aligned_alloc(64, D * QW * 4), *P = aligned_alloc(64, (size_t)T * QW * 4);
  for (int i = 0; i < N * D; i++) V[i] = 0.001f * (i % 100);
  for (int i = 0; i < D * QW; i++) Ot[i] = 0.0f;
  for (int i = 0; i < T * QW; i++) P[i] = 0.5f;
  float alpha[QW]; for (int i = 0; i < QW; i++) alpha[i] = 1.0f;
  mk_opts po = {NULL, alpha, NULL};
  double best = 1e9;
  for (int rep = 0; rep < 5; rep++) {
    double t0 = now();
    for (int r = 0; r < 200; r++)
      for (int j0 = 0; j0 + T <= N; j0 += T)
        for (int r0 = 0; r0 < D; r0 += blk) mk_block(blk, Ot + r0 * QW, QW, V + j0 * D + r0, 1, D, P, QW, T, &po, true);
    double t = now() - t0; if (t < best) best = t;
  }
  double fl = 2.0 * 200 * (N / T) * T * QW * D;
  printf("D=%d T=%d blk=%d: PV %.1f GFLOP/s\n", D, T, blk, fl / best * 1e-9);
  return 0;
}
