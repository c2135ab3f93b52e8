/* A/B timing of attn_gemm (B packed per call) against attn_gemm_packed (B packed once, bias in
 * the epilogue) at BERT-MiniLM's projection shapes, alternating calls, best of many.
 * build: cc -O2 -Iinclude dev/07_packed_gemm.c build/libattn.a -lm -lpthread -o /tmp/pg */
#include <attn.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec + 1e-9 * t.tv_nsec;
}

int main(int argc, char **argv) {
  int threads = argc > 1 ? atoi(argv[1]) : 1;
  attn_set_num_threads(threads);
  const int64_t M = 2048;
  const int64_t shapes[4][2] = {{1152, 384}, {384, 384}, {1536, 384}, {384, 1536}}; /* N, K */
  const attn_epilogue ep[4] = {ATTN_EPILOGUE_BIAS, ATTN_EPILOGUE_BIAS, ATTN_EPILOGUE_BIAS_GELU,
                               ATTN_EPILOGUE_BIAS};
  for (int s = 0; s < 4; s++) {
    int64_t N = shapes[s][0], K = shapes[s][1];
    float *A = malloc(M * K * 4), *B = malloc(N * K * 4), *C = malloc(M * N * 4), *bias = malloc(N * 4);
    for (int64_t i = 0; i < M * K; i++) A[i] = (float)((i * 7919) % 1000) / 1000 - 0.5f;
    for (int64_t i = 0; i < N * K; i++) B[i] = (float)((i * 104729) % 1000) / 1000 - 0.5f;
    for (int64_t i = 0; i < N; i++) bias[i] = 0.01f * (float)(i % 7);
    attn_gemm_packed_b *pb;
    if (attn_gemm_pack_b(&pb, ATTN_TRANS, K, N, B, K) != ATTN_OK) return 1;
    double best[3] = {1e9, 1e9, 1e9};
    for (int r = 0; r < 40; r++) {
      double t0 = now();
      attn_gemm(ATTN_ROW_MAJOR, ATTN_NO_TRANS, ATTN_TRANS, M, N, K, 1, A, K, B, K, 0, C, N);
      double t1 = now();
      attn_gemm_packed(ATTN_NO_TRANS, M, 1, A, K, pb, 0, C, N, ATTN_EPILOGUE_NONE, NULL);
      double t2 = now();
      attn_gemm_packed(ATTN_NO_TRANS, M, 1, A, K, pb, 0, C, N, ep[s], bias);
      double t3 = now();
      if (t1 - t0 < best[0]) best[0] = t1 - t0;
      if (t2 - t1 < best[1]) best[1] = t2 - t1;
      if (t3 - t2 < best[2]) best[2] = t3 - t2;
    }
    double fl = 2.0 * M * N * K * 1e-9;
    printf("M %lld N %4lld K %4lld thr %d: gemm %.3f ms (%.0f GF/s)  packed %.3f ms (%.0f)  +epi %.3f ms\n",
           (long long)M, (long long)N, (long long)K, threads, best[0] * 1e3, fl / best[0],
           best[1] * 1e3, fl / best[1], best[2] * 1e3);
    attn_gemm_packed_free(pb);
    free(A), free(B), free(C), free(bias);
  }
  return 0;
}
