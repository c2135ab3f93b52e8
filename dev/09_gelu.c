/* Timing of the erf-GELU kernel (src/cpu/gelu.c) on one core: attn__gelu_erf_bias_inplace, the
 * BERT FFN epilogue, over 2048 rows of 1536 (bias row of 1536) with BERT-like pre-activations
 * normal(0,1) * 2 - 0.5, and over a 4-row block (24 KB, L1-resident) for the compute cost alone;
 * the forward and backward on that block too. Best of many calls, ns per element. The buffer is
 * restored from a copy (untimed) before each timed call, so every call sees the same values.
 *
 * With OLD defined, the same calls on a second copy of gelu.c (any commit's, symbols renamed)
 * alternate with the library's in one process, so both see the same machine state:
 *   git show ee379f8:src/cpu/gelu.c > /tmp/gelu_old.c
 *   cc -O3 -ffp-contract=off -Isrc/core -Isrc/cpu -Iinclude -Dattn__gelu_erf_forward=old_fwd \
 *      -Dattn__gelu_erf_bias_inplace=old_bias -Dattn__gelu_erf_backward=old_bwd \
 *      -Dattn__bias_epilogue=old_epilogue -c /tmp/gelu_old.c -o /tmp/gelu_old.o
 *   cc -O2 -DOLD -Iinclude -Isrc/core dev/09_gelu.c /tmp/gelu_old.o build/libattn.a -lm -lpthread \
 *      -o /tmp/gelu_bench
 * or without the old copy: cc -O2 -Iinclude -Isrc/core dev/09_gelu.c build/libattn.a -lm
 * -lpthread -o /tmp/gelu_bench. Run: /tmp/gelu_bench [reps] (ATTN_ISA=avx2 etc. to pick a copy). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../src/cpu/gelu.h"

#ifdef OLD
void old_fwd(float *y, const float *x, int64_t n);
void old_bias(float *y, const float *b, int64_t n);
void old_bwd(float *gx, const float *dy, const float *x, int64_t n, int accumulate);
#endif

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec + 1e-9 * t.tv_nsec;
}

static unsigned long long rng = 88172645463325252ull;
static double unif(void) {
  rng ^= rng << 13;
  rng ^= rng >> 7;
  rng ^= rng << 17;
  return ((rng >> 11) + 0.5) * (1.0 / 9007199254740992.0);
}
static float normal(void) {
  return (float)(sqrt(-2.0 * log(unif())) * cos(6.283185307179586 * unif()));
}

enum { COLS = 1536, ROWS = 2048, SMALL = 4 };

typedef void (*bias_fn)(float *, const float *, int64_t);
typedef void (*fwd_fn)(float *, const float *, int64_t);
typedef void (*bwd_fn)(float *, const float *, const float *, int64_t, int);

/* One timed pass of bias-GELU over rows x COLS of buf (restored from src first). */
static double time_bias(bias_fn f, float *buf, const float *src, const float *b, int rows) {
  memcpy(buf, src, (size_t)rows * COLS * sizeof(float));
  const double t0 = now();
  for (int r = 0; r < rows; r++) f(buf + (size_t)r * COLS, b, COLS);
  return now() - t0;
}
static double time_fwd(fwd_fn f, float *y, const float *x, int rows) {
  const double t0 = now();
  for (int r = 0; r < rows; r++) f(y + (size_t)r * COLS, x + (size_t)r * COLS, COLS);
  return now() - t0;
}
static double time_bwd(bwd_fn f, float *g, const float *dy, const float *x, int rows) {
  const double t0 = now();
  for (int r = 0; r < rows; r++)
    f(g + (size_t)r * COLS, dy + (size_t)r * COLS, x + (size_t)r * COLS, COLS, 0);
  return now() - t0;
}

static void report(const char *what, const double *best, int64_t n) {
#ifdef OLD
  printf("%-34s old %.3f ns/elem  new %.3f ns/elem  (old/new %.2fx)\n", what, 1e9 * best[0] / n,
         1e9 * best[1] / n, best[0] / best[1]);
#else
  (void)best[0];
  printf("%-34s new %.3f ns/elem\n", what, 1e9 * best[1] / n);
#endif
}

int main(int argc, char **argv) {
  const int reps = argc > 1 ? atoi(argv[1]) : 30;
  const size_t n = (size_t)ROWS * COLS;
  float *src = malloc(n * sizeof(float)), *buf = malloc(n * sizeof(float));
  float *b = malloc(COLS * sizeof(float)), *dy = malloc(n * sizeof(float));
  float *g = malloc(n * sizeof(float));
  for (size_t i = 0; i < n; i++) {
    src[i] = normal() * 2.0f - 0.5f;
    dy[i] = normal();
  }
  for (int i = 0; i < COLS; i++) b[i] = 0.1f * normal();
  printf("ISA %s, %d x %d floats, best of %d\n", attn_isa_name(attn_get_isa()), ROWS, COLS, reps);

  bias_fn bias[2] = {attn__gelu_erf_bias_inplace, attn__gelu_erf_bias_inplace};
  fwd_fn fwd[2] = {attn__gelu_erf_forward, attn__gelu_erf_forward};
  bwd_fn bwd[2] = {attn__gelu_erf_backward, attn__gelu_erf_backward};
  int first = 1;
#ifdef OLD
  bias[0] = old_bias;
  fwd[0] = old_fwd;
  bwd[0] = old_bwd;
  first = 0;
#endif
  double big[2] = {1e30, 1e30}, small[2] = {1e30, 1e30}, f[2] = {1e30, 1e30},
         bw[2] = {1e30, 1e30};
  for (int r = 0; r < reps; r++) {
    for (int v = first; v < 2; v++) big[v] = fmin(big[v], time_bias(bias[v], buf, src, b, ROWS));
    for (int k = 0; k < 20; k++)
      for (int v = first; v < 2; v++) {
        small[v] = fmin(small[v], time_bias(bias[v], buf, src, b, SMALL));
        f[v] = fmin(f[v], time_fwd(fwd[v], buf, src, SMALL));
        bw[v] = fmin(bw[v], time_bwd(bwd[v], g, dy, src, SMALL));
      }
  }
  report("bias-GELU, 2048 x 1536 (12 MB)", big, (int64_t)n);
  report("bias-GELU, 4 x 1536 (L1)", small, (int64_t)SMALL * COLS);
  report("forward, 4 x 1536 (L1)", f, (int64_t)SMALL * COLS);
  report("backward (write), 4 x 1536 (L1)", bw, (int64_t)SMALL * COLS);
  free(src);
  free(buf);
  free(b);
  free(dy);
  free(g);
  return 0;
}
