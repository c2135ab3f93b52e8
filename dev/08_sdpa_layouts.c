/* BERT-MiniLM's attention (32 sequences x 64 tokens, 12 heads of 32) through attn_sdpa_forward
 * in three layouts: contiguous (B=32, H, N, d), BERT's packed qkv views with cu_seqlens, and the
 * packed views without cu_seqlens (B=32 strided). Best of many alternated calls.
 * build: cc -O2 -Iinclude dev/08_sdpa_layouts.c build/libattn.a -lm -lpthread -o /tmp/sl */
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
  int64_t S = 32, N = argc > 2 ? atoi(argv[2]) : 64, nh = 12, hd = 32, H = nh * hd, T = S * N;
  attn_set_num_threads(threads);
  float *qkv = malloc(T * 3 * H * 4), *ctx = malloc(T * H * 4);
  float *q = malloc(T * H * 4), *k = malloc(T * H * 4), *v = malloc(T * H * 4), *o = malloc(T * H * 4);
  for (int64_t i = 0; i < T * 3 * H; i++) qkv[i] = (float)((i * 7919) % 1000) / 1000 - 0.5f;
  for (int64_t i = 0; i < T * H; i++) q[i] = k[i] = v[i] = (float)((i * 7919) % 1000) / 1000 - 0.5f;
  int32_t *cu = malloc((S + 1) * 4);
  for (int64_t s = 0; s <= S; s++) cu[s] = (int32_t)(s * N);
  attn_tensor tq = {qkv, ATTN_DTYPE_F32, 4, {1, nh, T, hd}, {T * 3 * H, hd, 3 * H, 1}};
  attn_tensor tk = tq, tv = tq;
  tk.data = qkv + H;
  tv.data = qkv + 2 * H;
  attn_tensor to = {ctx, ATTN_DTYPE_F32, 4, {1, nh, T, hd}, {T * H, hd, H, 1}};
  attn_sdpa_params p = attn_sdpa_params_default();
  p.cu_seqlens_q = cu;
  p.cu_seqlens_k = cu;
  p.n_seqs = S;
  /* the same views as a B = S batch (no cu_seqlens) */
  attn_tensor bq = {qkv, ATTN_DTYPE_F32, 4, {S, nh, N, hd}, {N * 3 * H, hd, 3 * H, 1}};
  attn_tensor bk = bq, bv = bq;
  bk.data = qkv + H;
  bv.data = qkv + 2 * H;
  attn_tensor bo = {ctx, ATTN_DTYPE_F32, 4, {S, nh, N, hd}, {N * H, hd, H, 1}};
  attn_sdpa_params p0 = attn_sdpa_params_default();
  /* contiguous */
  attn_tensor cq = {q, ATTN_DTYPE_F32, 4, {S, nh, N, hd}, {nh * N * hd, N * hd, hd, 1}};
  attn_tensor ck = cq, cv = cq, co = cq;
  ck.data = k, cv.data = v, co.data = o;
  double best[3] = {1e9, 1e9, 1e9};
  for (int r = 0; r < 60; r++) {
    double t0 = now();
    if (attn_sdpa_forward(&to, NULL, NULL, &tq, &tk, &tv, &p, NULL, 0)) return 1;
    double t1 = now();
    if (attn_sdpa_forward(&bo, NULL, NULL, &bq, &bk, &bv, &p0, NULL, 0)) return 2;
    double t2 = now();
    if (attn_sdpa_forward(&co, NULL, NULL, &cq, &ck, &cv, &p0, NULL, 0)) return 3;
    double t3 = now();
    if (t1 - t0 < best[0]) best[0] = t1 - t0;
    if (t2 - t1 < best[1]) best[1] = t2 - t1;
    if (t3 - t2 < best[2]) best[2] = t3 - t2;
  }
  double fl = 4.0 * S * nh * N * N * hd * 1e-9;
  printf("N %lld thr %d: varlen views %.3f ms (%.0f GF/s)  batch views %.3f ms (%.0f)  contiguous %.3f ms (%.0f)\n",
         (long long)N, threads, best[0] * 1e3, fl / best[0], best[1] * 1e3, fl / best[1], best[2] * 1e3,
         fl / best[2]);
  return 0;
}
