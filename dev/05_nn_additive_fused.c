/* dev experiment: one training step (forward + backward) of additive attention through the fused
 * op attn_nn_additive_attention against the same math composed from nn ops (broadcast add, tanh,
 * matmul with w, masked softmax, matmul with v), which stores the B x Tq x Tk x d tanh tensor.
 * Reports the minimum over alternating runs and the arena bytes of each step. Not part of the
 * build:
 *   cc -O2 -Iinclude dev/05_nn_additive_fused.c build/libattn.a -lpthread -lm -o /tmp/nnadd
 *   /tmp/nnadd [B Tq Tk d Dv] [threads] */
#include "attn/nn.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec + 1e-9 * t.tv_nsec;
}

typedef struct shape {
  int64_t B, Tq, Tk, d, Dv;
} shape;

/* Returns the step's seconds; *arena = arena bytes; *out_sum a checksum of the gradients. */
static double step(attn_nn_ctx *ctx, const shape *s, int fused, const float *q, const float *k,
                   const float *v, attn_var *w, attn_var *b, size_t *arena, double *check) {
  const double t0 = now();
  attn_nn_ctx_reset(ctx);
  attn_nn_zero_grad(w);
  attn_nn_zero_grad(b);
  const int64_t B = s->B, Tq = s->Tq, Tk = s->Tk, d = s->d, Dv = s->Dv;
  attn_var *q1 = attn_nn_tensor(ctx, 3, (int64_t[]){B, Tq, d}, q, 1);
  attn_var *k2 = attn_nn_tensor(ctx, 3, (int64_t[]){B, Tk, d}, k, 1);
  attn_var *vv = attn_nn_tensor(ctx, 3, (int64_t[]){B, Tk, Dv}, v, 1);
  attn_var *out;
  if (fused) {
    out = attn_nn_additive_attention(ctx, q1, k2, vv, w, b, NULL, NULL);
  } else {
    attn_var *qa = attn_nn_reshape(ctx, q1, 4, (int64_t[]){B, Tq, 1, d});
    attn_var *ka = attn_nn_reshape(ctx, k2, 4, (int64_t[]){B, 1, Tk, d});
    attn_var *t = attn_nn_tanh(ctx, attn_nn_add(ctx, attn_nn_add(ctx, qa, ka), b));
    attn_var *e = attn_nn_matmul(ctx, t, attn_nn_reshape(ctx, w, 2, (int64_t[]){d, 1}), 0, 0);
    attn_var *a = attn_nn_softmax(ctx, attn_nn_reshape(ctx, e, 3, (int64_t[]){B, Tq, Tk}), NULL);
    out = attn_nn_matmul(ctx, a, vv, 0, 0);
  }
  attn_var *loss = attn_nn_sum_all(ctx, attn_nn_mul(ctx, out, out));
  if (!loss || attn_backward(loss) != ATTN_OK) {
    fprintf(stderr, "step failed: %s\n", attn_nn_ctx_error(ctx));
    exit(1);
  }
  const double dt = now() - t0;
  *arena = attn_nn_arena_used(ctx);
  double c = 0;
  for (int64_t i = 0; i < q1->numel; i++) c += q1->grad[i];
  for (int64_t i = 0; i < w->numel; i++) c += w->grad[i];
  *check = c;
  return dt;
}

int main(int argc, char **argv) {
  shape s = {16, 32, 64, 128, 64};
  if (argc >= 6)
    s = (shape){atoll(argv[1]), atoll(argv[2]), atoll(argv[3]), atoll(argv[4]), atoll(argv[5])};
  if (argc >= 7) attn_set_num_threads(atoi(argv[6]));
  const int64_t nq = s.B * s.Tq * s.d, nk = s.B * s.Tk * s.d, nv = s.B * s.Tk * s.Dv;
  float *q = malloc(nq * sizeof(float)), *k = malloc(nk * sizeof(float)),
        *v = malloc(nv * sizeof(float));
  srand(1);
  for (int64_t i = 0; i < nq; i++) q[i] = (float)rand() / RAND_MAX - 0.5f;
  for (int64_t i = 0; i < nk; i++) k[i] = (float)rand() / RAND_MAX - 0.5f;
  for (int64_t i = 0; i < nv; i++) v[i] = (float)rand() / RAND_MAX - 0.5f;
  attn_var *w = attn_nn_param_new(1, &s.d, "w"), *b = attn_nn_param_new(1, &s.d, "b");
  attn_nn_init_uniform(w, -0.1f, 0.1f, 1);
  attn_nn_init_uniform(b, -0.1f, 0.1f, 2);
  attn_nn_ctx *ctx = attn_nn_ctx_new();
  double best[2] = {1e30, 1e30}, check[2];
  size_t arena[2];
  for (int rep = 0; rep < 9; rep++)
    for (int fused = 0; fused < 2; fused++) {
      const double dt = step(ctx, &s, fused, q, k, v, w, b, &arena[fused], &check[fused]);
      if (rep >= 2 && dt < best[fused]) best[fused] = dt; /* two warm-up runs */
    }
  printf("B %lld Tq %lld Tk %lld d %lld Dv %lld, %d threads\n", (long long)s.B, (long long)s.Tq,
         (long long)s.Tk, (long long)s.d, (long long)s.Dv, attn_get_num_threads());
  printf("  composed ops: %8.2f ms per step, arena %8.1f MiB\n", 1e3 * best[0],
         arena[0] / 1048576.0);
  printf("  fused op:     %8.2f ms per step, arena %8.1f MiB  (%.1fx faster, %.0fx less memory)\n",
         1e3 * best[1], arena[1] / 1048576.0, best[0] / best[1], (double)arena[0] / arena[1]);
  printf("  gradient checksums: composed %.6g, fused %.6g\n", check[0], check[1]);
  attn_nn_ctx_free(ctx);
  attn_nn_param_free(w);
  attn_nn_param_free(b);
  free(q);
  free(k);
  free(v);
  return 0;
}
