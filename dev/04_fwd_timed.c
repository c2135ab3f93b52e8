/* dev: where the forward's cycles go (rdtsc around QK, softmax, P.V, per block).
 * gcc -O3 -mavx512f -mavx512bw -mavx512vl -mavx512dq -mfma -I../include -I../src/core 04_fwd_timed.c ../src/core/*.c ../src/ref/sdpa_ref.c -lpthread -lm */
#include "04_fwd_timed_kernel.c"
#include <stdio.h>
attn_status attn__sgemm_avx512(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float *A, int64_t lda, const float *B, int64_t ldb, float beta, float *C, int64_t ldc) { return 0; }
attn_status attn__sgemm_avx2(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float *A, int64_t lda, const float *B, int64_t ldb, float beta, float *C, int64_t ldc) { return 0; }
attn_status attn__sgemm_scalar(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float *A, int64_t lda, const float *B, int64_t ldb, float beta, float *C, int64_t ldc) { return 0; }
const attn__kernels attn__kernels_avx2 = {0}, attn__kernels_scalar = {0}, attn__kernels_avx512 = {0};
int main(int argc, char **argv) {
  int64_t N = argc > 1 ? atoll(argv[1]) : 2048, D = argc > 2 ? atoll(argv[2]) : 64, H = argc > 4 ? atoll(argv[4]) : 8;
  int causal = argc > 3 ? atoi(argv[3]) : 0;
  attn_set_num_threads(1);
  int64_t s4[4] = {1, H, N, D}, l3[3] = {1, H, N};
  float *q = malloc(H * N * D * 4), *k = malloc(H * N * D * 4), *v = malloc(H * N * D * 4), *o = malloc(H * N * D * 4), *l = malloc(H * N * 4);
  for (int64_t i = 0; i < H * N * D; i++) q[i] = k[i] = v[i] = (float)((i * 7919) % 1000) / 1000.0f - 0.5f;
  attn_tensor Q = attn_tensor_make(q, 0, 4, s4), K = attn_tensor_make(k, 0, 4, s4), V = attn_tensor_make(v, 0, 4, s4), O = attn_tensor_make(o, 0, 4, s4), L = attn_tensor_make(l, 0, 3, l3);
  attn_sdpa_params p = attn_sdpa_params_default(); p.causal = causal;
  attn__sdpa_problem pr; memset(&pr, 0, sizeof pr);
  pr.B = 1; pr.Hq = pr.Hkv = H; pr.Nq = pr.Nk = N; pr.Dk = pr.Dv = D; pr.group = 1; pr.scale = 1 / sqrtf(D); pr.p = &p;
  pr.q = &Q; pr.k = &K; pr.v = &V; pr.out = &O; pr.lse = &L; pr.n_batch = 1;
  size_t ws = sdpa_forward_ws_avx512(&pr, 1); void *w = aligned_alloc(64, ws);
  sdpa_forward_avx512(&pr, w, ws);
  T_qk = T_sm = T_pv = T_blk = 0;
  unsigned long long t0 = __rdtsc();
  sdpa_forward_avx512(&pr, w, ws);
  unsigned long long tot = __rdtsc() - t0;
  double pairs = causal ? N * (N + 1) / 2.0 : (double)N * N;
  double fl = 4.0 * H * pairs * D;
  printf("N=%lld D=%lld causal=%d: total %.1f Mcyc, FLOP/cyc %.1f (of 64) | qk %.1f%% softmax %.1f%% pv %.1f%% other-in-block %.1f%% outside-blocks %.1f%%\n",
         (long long)N, (long long)D, causal, tot / 1e6, fl / tot, 100.0 * T_qk / tot, 100.0 * T_sm / tot, 100.0 * T_pv / tot,
         100.0 * (T_blk - T_qk - T_sm - T_pv) / tot, 100.0 * (tot - T_blk) / tot);
  return 0;
}
