/* Peer for bench/peers: unfused attention the way a user writes it on top of a BLAS, and plain
 * sgemm, timed the same way as `attn bench` (two warm-ups, median of `reps`).
 *
 * Attention per head, in blocks of R query rows (so the N x N matrix is never whole in memory and a
 * causal mask skips the key columns a block cannot see):
 *   S = scale * Q_blk K^T          (cblas_sgemm)
 *   P = softmax(S) row by row, masked entries 0, lse kept for the backward
 *   O_blk = P V                     (cblas_sgemm)
 * Backward, per block, recomputing P from lse (5 sgemms, 2.5x the forward's FLOPs):
 *   dV += P^T dO_blk,  dP = dO_blk V^T,  dS = P * (dP - rowsum(dO * O)),
 *   dQ_blk = scale dS K,  dK += scale dS^T Q_blk
 *
 * Two ways to use T threads (--mode): "gemm" lets OpenBLAS thread each sgemm (the softmax is split
 * over rows with OpenMP); "heads" runs heads in parallel with OpenMP, each with single-threaded
 * sgemm. bench/peers runs both and keeps the faster.
 *
 * usage: peer_openblas sdpa B H N D causal fwd|bwd threads reps gemm|heads
 *        peer_openblas gemm n threads reps
 *        peer_openblas info
 * Prints one JSON object. Build: cc -O2 -fopenmp peer_openblas.c -lopenblas -lm */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#ifdef _OPENMP
#include <omp.h>
#endif

/* The CBLAS and OpenBLAS entry points used, declared here so no particular cblas.h path is
 * needed (Debian puts it under an alternatives directory). */
enum { CblasRowMajor = 101 };
enum { CblasNoTrans = 111, CblasTrans = 112 };
void cblas_sgemm(int order, int trans_a, int trans_b, int M, int N, int K, float alpha,
                 const float *A, int lda, const float *B, int ldb, float beta, float *C, int ldc);
void openblas_set_num_threads(int n);
char *openblas_get_corename(void);
char *openblas_get_config(void);

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

static float *alloc_floats(size_t n, uint64_t *seed) {
  float *p = NULL;
  if (posix_memalign((void **)&p, 64, (n ? n : 1) * sizeof(float)) != 0) {
    fprintf(stderr, "peer_openblas: out of memory (%zu floats)\n", n);
    exit(1);
  }
  for (size_t i = 0; i < n; i++) {
    if (seed) {
      uint64_t x = *seed;
      x ^= x << 13;
      x ^= x >> 7;
      x ^= x << 17;
      *seed = x;
      p[i] = (float)(x >> 40) * (2.0f / 16777216.0f) - 1.0f;
    } else {
      p[i] = 0.0f;
    }
  }
  return p;
}

typedef struct problem {
  int B, H, N, D, causal, R;
  float scale;
  float *q, *k, *v, *o, *lse, *dout, *dq, *dk, *dv;
  float **scratch; /* per thread: two R x N blocks */
} problem;

static int n_threads_max(void) {
#ifdef _OPENMP
  return omp_get_max_threads();
#else
  return 1;
#endif
}

static int thread_id(void) {
#ifdef _OPENMP
  return omp_get_thread_num();
#else
  return 0;
#endif
}

/* Softmax of rows [0, m) of S (m x kn, row stride kn), query row i = i0 + r sees keys j <= i when
 * causal. Writes P over S and lse[r]. */
static void softmax_rows(float *S, int m, int kn, int i0, int causal, float *lse, int parallel) {
#pragma omp parallel for schedule(static) if (parallel)
  for (int r = 0; r < m; r++) {
    float *s = S + (size_t)r * kn;
    int valid = causal ? (i0 + r + 1 < kn ? i0 + r + 1 : kn) : kn;
    float mx = -INFINITY;
    for (int j = 0; j < valid; j++) mx = s[j] > mx ? s[j] : mx;
    float sum = 0.0f;
    for (int j = 0; j < valid; j++) {
      s[j] = expf(s[j] - mx);
      sum += s[j];
    }
    float inv = 1.0f / sum;
    for (int j = 0; j < valid; j++) s[j] *= inv;
    for (int j = valid; j < kn; j++) s[j] = 0.0f;
    lse[r] = mx + logf(sum);
  }
}

static void forward_head(const problem *p, int bh, float *S, int parallel) {
  size_t off = (size_t)bh * p->N * p->D;
  const float *q = p->q + off, *k = p->k + off, *v = p->v + off;
  float *o = p->o + off, *lse = p->lse + (size_t)bh * p->N;
  for (int i0 = 0; i0 < p->N; i0 += p->R) {
    int m = p->N - i0 < p->R ? p->N - i0 : p->R;
    int kn = p->causal ? i0 + m : p->N;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, kn, p->D, p->scale,
                q + (size_t)i0 * p->D, p->D, k, p->D, 0.0f, S, kn);
    softmax_rows(S, m, kn, i0, p->causal, lse + i0, parallel);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, p->D, kn, 1.0f, S, kn, v, p->D, 0.0f,
                o + (size_t)i0 * p->D, p->D);
  }
}

static void backward_head(const problem *p, int bh, float *P, float *dP, int parallel) {
  size_t off = (size_t)bh * p->N * p->D;
  const float *q = p->q + off, *k = p->k + off, *v = p->v + off, *o = p->o + off;
  const float *dout = p->dout + off, *lse = p->lse + (size_t)bh * p->N;
  float *dq = p->dq + off, *dk = p->dk + off, *dv = p->dv + off;
  memset(dk, 0, (size_t)p->N * p->D * sizeof(float));
  memset(dv, 0, (size_t)p->N * p->D * sizeof(float));
  for (int i0 = 0; i0 < p->N; i0 += p->R) {
    int m = p->N - i0 < p->R ? p->N - i0 : p->R;
    int kn = p->causal ? i0 + m : p->N;
    const float *q_blk = q + (size_t)i0 * p->D, *do_blk = dout + (size_t)i0 * p->D;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, kn, p->D, p->scale, q_blk, p->D, k,
                p->D, 0.0f, P, kn);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, kn, p->D, 1.0f, do_blk, p->D, v, p->D,
                0.0f, dP, kn);
#pragma omp parallel for schedule(static) if (parallel)
    for (int r = 0; r < m; r++) {
      int i = i0 + r;
      int valid = p->causal ? (i + 1 < kn ? i + 1 : kn) : kn;
      float delta = 0.0f; /* rowsum(dO * O) */
      for (int d = 0; d < p->D; d++)
        delta += do_blk[(size_t)r * p->D + d] * o[(size_t)i * p->D + d];
      float *pr = P + (size_t)r * kn, *dpr = dP + (size_t)r * kn;
      for (int j = 0; j < valid; j++) {
        pr[j] = expf(pr[j] - lse[i]);
        dpr[j] = pr[j] * (dpr[j] - delta);
      }
      for (int j = valid; j < kn; j++) pr[j] = dpr[j] = 0.0f;
    }
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, kn, p->D, m, 1.0f, P, kn, do_blk, p->D,
                1.0f, dv, p->D);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, p->D, kn, p->scale, dP, kn, k, p->D,
                0.0f, dq + (size_t)i0 * p->D, p->D);
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, kn, p->D, m, p->scale, dP, kn, q_blk, p->D,
                1.0f, dk, p->D);
  }
}

/* One call over all B*H heads. heads_parallel: OpenMP over heads with 1-thread BLAS. */
static void run_pass(const problem *p, int bwd, int heads_parallel) {
  int BH = p->B * p->H;
  if (heads_parallel) {
#pragma omp parallel for schedule(dynamic)
    for (int bh = 0; bh < BH; bh++) {
      float *s = p->scratch[thread_id()];
      if (bwd)
        backward_head(p, bh, s, s + (size_t)p->R * p->N, 0);
      else
        forward_head(p, bh, s, 0);
    }
  } else {
    float *s = p->scratch[0];
    for (int bh = 0; bh < BH; bh++) {
      if (bwd)
        backward_head(p, bh, s, s + (size_t)p->R * p->N, 1);
      else
        forward_head(p, bh, s, 1);
    }
  }
}

static void print_times(double *t, int reps) {
  qsort(t, (size_t)reps, sizeof *t, cmp_double);
  double med = reps % 2 ? t[reps / 2] : 0.5 * (t[reps / 2 - 1] + t[reps / 2]);
  printf("\"median_s\":%.6e,\"min_s\":%.6e,\"max_s\":%.6e", med, t[0], t[reps - 1]);
}

static void set_threads(int threads, int blas_threads) {
  openblas_set_num_threads(blas_threads);
#ifdef _OPENMP
  omp_set_num_threads(threads);
#endif
}

static int usage(void) {
  fprintf(stderr,
          "usage: peer_openblas sdpa B H N D causal fwd|bwd threads reps gemm|heads\n"
          "       peer_openblas gemm n threads reps\n"
          "       peer_openblas info\n");
  return 2;
}

static int cmd_sdpa(char **argv) {
  problem p;
  memset(&p, 0, sizeof p);
  p.B = atoi(argv[0]);
  p.H = atoi(argv[1]);
  p.N = atoi(argv[2]);
  p.D = atoi(argv[3]);
  p.causal = atoi(argv[4]);
  int bwd = !strcmp(argv[5], "bwd");
  int threads = atoi(argv[6]), reps = atoi(argv[7]);
  int heads = !strcmp(argv[8], "heads");
  const char *r_env = getenv("PEER_BLOCK_ROWS");
  p.R = r_env ? atoi(r_env) : 256;
  if (p.B < 1 || p.H < 1 || p.N < 1 || p.D < 1 || threads < 1 || reps < 1 || p.R < 1)
    return usage();
  if (p.R > p.N) p.R = p.N;
  p.scale = 1.0f / sqrtf((float)p.D);
  set_threads(threads, heads ? 1 : threads);

  size_t n = (size_t)p.B * p.H * p.N * p.D;
  uint64_t seed = 0x9e3779b97f4a7c15ull;
  p.q = alloc_floats(n, &seed);
  p.k = alloc_floats(n, &seed);
  p.v = alloc_floats(n, &seed);
  p.o = alloc_floats(n, NULL);
  p.lse = alloc_floats((size_t)p.B * p.H * p.N, NULL);
  if (bwd) {
    p.dout = alloc_floats(n, &seed);
    p.dq = alloc_floats(n, NULL);
    p.dk = alloc_floats(n, NULL);
    p.dv = alloc_floats(n, NULL);
  }
  int slots = n_threads_max();
  p.scratch = calloc((size_t)slots, sizeof *p.scratch);
  for (int t = 0; t < slots; t++) p.scratch[t] = alloc_floats((size_t)2 * p.R * p.N, NULL);

  if (bwd) run_pass(&p, 0, heads); /* out and lse for the backward */
  double *t = calloc((size_t)reps, sizeof *t);
  for (int i = -2; i < reps; i++) {
    double t0 = now();
    run_pass(&p, bwd, heads);
    if (i >= 0) t[i] = now() - t0;
  }
  /* A checksum so the work cannot be skipped and modes can be compared. */
  double sum = 0;
  const float *res = bwd ? p.dq : p.o;
  for (size_t i = 0; i < n; i += 97) sum += res[i];
  printf(
      "{\"peer\":\"openblas\",\"kernel\":\"sdpa\",\"pass\":\"%s\",\"mode\":\"%s\",\"B\":%d,"
      "\"H\":%d,\"Nq\":%d,\"Nk\":%d,\"D\":%d,\"causal\":%d,\"threads\":%d,\"reps\":%d,"
      "\"block_rows\":%d,\"checksum\":%.6e,",
      bwd ? "bwd" : "fwd", heads ? "heads" : "gemm", p.B, p.H, p.N, p.N, p.D, p.causal, threads,
      reps, p.R, sum);
  print_times(t, reps);
  printf(",\"corename\":\"%s\"}\n", openblas_get_corename());
  return 0;
}

static int cmd_gemm(char **argv) {
  int n = atoi(argv[0]), threads = atoi(argv[1]), reps = atoi(argv[2]);
  if (n < 1 || threads < 1 || reps < 1) return usage();
  set_threads(threads, threads);
  uint64_t seed = 0x853c49e6748fea9bull;
  float *A = alloc_floats((size_t)n * n, &seed), *B = alloc_floats((size_t)n * n, &seed);
  float *C = alloc_floats((size_t)n * n, NULL);
  double *t = calloc((size_t)reps, sizeof *t);
  for (int i = -2; i < reps; i++) {
    double t0 = now();
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0f, A, n, B, n, 0.0f, C, n);
    if (i >= 0) t[i] = now() - t0;
  }
  printf(
      "{\"peer\":\"openblas\",\"kernel\":\"gemm\",\"M\":%d,\"N\":%d,\"K\":%d,\"threads\":%d,"
      "\"reps\":%d,",
      n, n, n, threads, reps);
  print_times(t, reps);
  printf(",\"corename\":\"%s\"}\n", openblas_get_corename());
  return 0;
}

int main(int argc, char **argv) {
  if (argc >= 2 && !strcmp(argv[1], "info")) {
    printf("{\"corename\":\"%s\",\"config\":\"%s\"}\n", openblas_get_corename(),
           openblas_get_config());
    return 0;
  }
  if (argc == 11 && !strcmp(argv[1], "sdpa")) return cmd_sdpa(argv + 2);
  if (argc == 5 && !strcmp(argv[1], "gemm")) return cmd_gemm(argv + 2);
  return usage();
}
