/* Timing of the score kernels (include/attn/score.h), not a test: single-threaded unless a thread
 * count is given. Build against a release build of the library:
 *   gcc -O2 -Iinclude dev/score_bench.c build/libattn.a -lm -lpthread -o /tmp/score_bench
 *   /tmp/score_bench 1
 * Prints the best of several runs per line. Pair-dims: B Tq Tk d activations per pass. */
#include "attn/score.h"
#include "attn/additive.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec + 1e-9 * t.tv_nsec;
}
static float *rnd(int64_t n) {
  float *x = malloc(n * 4);
  for (int64_t i = 0; i < n; i++) x[i] = (float)rand() / RAND_MAX - 0.5f;
  return x;
}
#define T3(p, a, b, c) attn_tensor_make(p, ATTN_DTYPE_F32, 3, (int64_t[]){a, b, c})
#define T2(p, a, b) attn_tensor_make(p, ATTN_DTYPE_F32, 2, (int64_t[]){a, b})
#define T1(p, a) attn_tensor_make(p, ATTN_DTYPE_F32, 1, (int64_t[]){a})
#define TIME(label, reps, expr)                  \
  do {                                           \
    double best = 1e30;                          \
    for (int r_ = 0; r_ < reps; r_++) {          \
      double t0 = now();                         \
      expr;                                      \
      double t = now() - t0;                     \
      if (t < best) best = t;                    \
    }                                            \
    printf("%-44s %9.3f ms", label, best * 1e3); \
    last = best;                                 \
  } while (0)
int main(int argc, char **argv) {
  int threads = argc > 1 ? atoi(argv[1]) : 1;
  attn_set_num_threads(threads);
  double last;
  printf("isa %s threads %d\n", attn_isa_name(attn_get_isa()), threads);
  { /* additive, tanh */
    int64_t B = 4, T = 256, D = 128, d = 128;
    float *q = rnd(B * T * D), *k = rnd(B * T * D), *W1 = rnd(d * D), *W2 = rnd(d * D), *w = rnd(d),
          *b = rnd(d);
    float *e = rnd(B * T * T), *de = rnd(B * T * T), *dq = rnd(B * T * D), *dk = rnd(B * T * D),
          *dW1 = rnd(d * D), *dW2 = rnd(d * D), *dw = rnd(d), *db = rnd(d);
    attn_tensor tq = T3(q, B, T, D), tk = T3(k, B, T, D), te = T3(e, B, T, T),
                tde = T3(de, B, T, T), tdq = T3(dq, B, T, D), tdk = T3(dk, B, T, D);
    attn_tensor tW1 = T2(W1, d, D), tW2 = T2(W2, d, D), tw = T1(w, d), tb = T1(b, d),
                tdW1 = T2(dW1, d, D), tdW2 = T2(dW2, d, D), tdw = T1(dw, d), tdb = T1(db, d);
    attn_score_params p = attn_score_params_default();
    p.kind = ATTN_SCORE_ADDITIVE;
    p.W1 = &tW1;
    p.W2 = &tW2;
    p.w = &tw;
    p.b = &tb;
    attn_score_grads g = attn_score_grads_default();
    g.dW1 = &tdW1;
    g.dW2 = &tdW2;
    g.dw = &tdw;
    g.db = &tdb;
    double pd = (double)B * T * T * d;
    TIME("additive tanh fwd B4 T256 d128", 7, attn_score_forward(&te, &tq, &tk, &p, NULL, 0));
    printf("  %.2f Gpair-dim/s\n", pd / last * 1e-9);
    TIME("additive tanh bwd", 5, attn_score_backward(&tdq, &tdk, &g, &tde, &tq, &tk, &p, NULL, 0));
    printf("  %.2f Gpair-dim/s\n", pd / last * 1e-9);
    p.act = ATTN_SCORE_ACT_RELU;
    TIME("additive relu fwd", 7, attn_score_forward(&te, &tq, &tk, &p, NULL, 0));
    printf("  %.2f Gpair-dim/s\n", pd / last * 1e-9);
    p.act = ATTN_SCORE_ACT_TANH;
    if (threads == 1) {
      TIME("additive tanh fwd reference", 1, attn_score_forward_ref(&te, &tq, &tk, &p));
      printf("  %.2f Gpair-dim/s\n", pd / last * 1e-9);
    }
    /* the fused additive attention kernel (softmax + context too) on the projected inputs */
    float *v = rnd(B * T * D), *out = rnd(B * T * D), *lse = rnd(B * T);
    attn_tensor tv = T3(v, B, T, D), to = T3(out, B, T, D),
                tl = attn_tensor_make(lse, ATTN_DTYPE_F32, 2, (int64_t[]){B, T});
    TIME("attn_additive_forward (fused, +softmax+ctx)", 7,
         attn_additive_forward(&to, &tl, NULL, &tq, &tk, &tv, &tw, &tb, NULL, NULL, 0));
    printf("  %.2f Gpair-dim/s\n", pd / last * 1e-9);
  }
  { /* general */
    int64_t B = 4, T = 512, D = 128;
    float *q = rnd(B * T * D), *k = rnd(B * T * D), *W = rnd(D * D), *e = rnd(B * T * T),
          *de = rnd(B * T * T), *dq = rnd(B * T * D), *dk = rnd(B * T * D), *dW = rnd(D * D);
    attn_tensor tq = T3(q, B, T, D), tk = T3(k, B, T, D), te = T3(e, B, T, T),
                tde = T3(de, B, T, T), tdq = T3(dq, B, T, D), tdk = T3(dk, B, T, D),
                tW = T2(W, D, D), tdW = T2(dW, D, D);
    attn_score_params p = attn_score_params_default();
    p.kind = ATTN_SCORE_GENERAL;
    p.W = &tW;
    attn_score_grads g = attn_score_grads_default();
    g.dW = &tdW;
    double fl = 2.0 * B * T * D * D + 2.0 * B * T * T * D;
    TIME("general fwd B4 T512 d128", 7, attn_score_forward(&te, &tq, &tk, &p, NULL, 0));
    printf("  %.1f GFLOP/s\n", fl / last * 1e-9);
    TIME("general bwd", 5, attn_score_backward(&tdq, &tdk, &g, &tde, &tq, &tk, &p, NULL, 0));
    printf("  %.1f GFLOP/s\n", 2 * fl / last * 1e-9 + 2.0 * B * T * D * D / last * 1e-9);
  }
  { /* multidim F = d = 64 */
    int64_t B = 2, T = 128, D = 64, d = 64, F = 64;
    float *q = rnd(B * T * D), *k = rnd(B * T * D), *W1 = rnd(d * D), *W2 = rnd(d * D),
          *Wo = rnd(F * d), *e = rnd(B * T * T * F), *de = rnd(B * T * T * F);
    float *dq = rnd(B * T * D), *dk = rnd(B * T * D), *dW1 = rnd(d * D), *dW2 = rnd(d * D),
          *dWo = rnd(F * d);
    attn_tensor tq = T3(q, B, T, D), tk = T3(k, B, T, D), tW1 = T2(W1, d, D), tW2 = T2(W2, d, D),
                tWo = T2(Wo, F, d);
    attn_tensor te = attn_tensor_make(e, ATTN_DTYPE_F32, 4, (int64_t[]){B, T, T, F}),
                tde = attn_tensor_make(de, ATTN_DTYPE_F32, 4, (int64_t[]){B, T, T, F});
    attn_tensor tdq = T3(dq, B, T, D), tdk = T3(dk, B, T, D), tdW1 = T2(dW1, d, D),
                tdW2 = T2(dW2, d, D), tdWo = T2(dWo, F, d);
    attn_score_params p = attn_score_params_default();
    p.kind = ATTN_SCORE_MULTIDIM;
    p.W1 = &tW1;
    p.W2 = &tW2;
    p.Wo = &tWo;
    attn_score_grads g = attn_score_grads_default();
    g.dW1 = &tdW1;
    g.dW2 = &tdW2;
    g.dWo = &tdWo;
    double pd = (double)B * T * T * d;
    TIME("multidim tanh fwd B2 T128 d64 F64", 7, attn_score_forward(&te, &tq, &tk, &p, NULL, 0));
    printf("  %.2f Gpair-dim/s (x F MACs)\n", pd / last * 1e-9);
    TIME("multidim tanh bwd", 5, attn_score_backward(&tdq, &tdk, &g, &tde, &tq, &tk, &p, NULL, 0));
    printf("  %.2f Gpair-dim/s\n", pd / last * 1e-9);
  }
  return 0;
}
