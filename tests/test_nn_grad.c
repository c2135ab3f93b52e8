/* Finite-difference gradient checks of every op and layer of the training layer (attn/nn.h).
 *
 * Each case builds y = f(inputs) in f32 on a small random input and takes L = sum_i r_i y_i with
 * a fixed random r, accumulated in double. The analytic gradient comes from
 * attn_backward_from(y, r); the numerical one is the central difference
 * (L(x + h) - L(x - h)) / (x+h - x-h) with h = 1e-2, using the step actually representable in
 * f32. Tolerance: |analytic - numeric| <= 3e-3 + 3e-2 |numeric| per element (f32 forward
 * round-off divided by h dominates; a wrong backward misses by O(1)). Tensors with more than
 * 48 elements are checked on 48 random elements. The ReLU MLP uses h = 1e-3 (fewer steps across
 * a kink) and may accept up to two one-sided differences (see gradcheck). */
#include "nn_gradcheck.h"

#define MAX_IN 6 /* inputs per case when a layer's parameters are split over several */
#define MAX_PROBE 48

static t_rng rng;
static attn_nn_ctx *ctx;

static void gradcheck(gc_case *c) {
  gc_check(ctx, &rng, c, MAX_PROBE);
}

/* ---- helpers to declare inputs ---- */

static void host_in(gc_case *c, int ndim, const int64_t *shape, float lo, float hi, bool wrt) {
  gc_host_in(c, &rng, ndim, shape, lo, hi, wrt);
}
#define param_in gc_param_in
#define case_free gc_case_free

/* Keeps every element at least `gap` away from each point in pts (kinks of relu, etc.). */
static void push_away(gc_input *g, float gap) {
  for (int64_t i = 0; i < g->n; i++)
    if (fabsf(g->data[i]) < gap) g->data[i] = g->data[i] < 0 ? -gap - 0.1f : gap + 0.1f;
}

#define S(...) ((const int64_t[]){__VA_ARGS__})

/* ---- op builders ---- */

typedef struct mm_arg { int ta, tb; } mm_arg;
static attn_var *b_matmul(attn_nn_ctx *cx, attn_var **in, void *arg) {
  mm_arg *m = arg;
  return attn_nn_matmul(cx, in[0], in[1], m->ta, m->tb);
}
static attn_var *b_linear(attn_nn_ctx *cx, attn_var **in, void *arg) {
  return attn_nn_linear(cx, in[0], in[1], arg ? in[2] : NULL);
}
static attn_var *b_add(attn_nn_ctx *cx, attn_var **in, void *arg) { return attn_nn_add(cx, in[0], in[1]); }
static attn_var *b_sub(attn_nn_ctx *cx, attn_var **in, void *arg) { return attn_nn_sub(cx, in[0], in[1]); }
static attn_var *b_mul(attn_nn_ctx *cx, attn_var **in, void *arg) { return attn_nn_mul(cx, in[0], in[1]); }
static attn_var *b_div(attn_nn_ctx *cx, attn_var **in, void *arg) { return attn_nn_div(cx, in[0], in[1]); }
static attn_var *b_scale(attn_nn_ctx *cx, attn_var **in, void *arg) { return attn_nn_scale(cx, in[0], -1.7f, 0.3f); }
static attn_var *b_unary(attn_nn_ctx *cx, attn_var **in, void *arg) {
  return attn_nn_unary_op(cx, (attn_nn_unary)(intptr_t)arg, in[0]);
}
static attn_var *b_dropout(attn_nn_ctx *cx, attn_var **in, void *arg) {
  return attn_nn_dropout(cx, in[0], 0.3f, 1234);
}
static attn_var *b_reshape(attn_nn_ctx *cx, attn_var **in, void *arg) {
  /* multiply so the reshape's input is an op result, then reshape with an inferred dim */
  return attn_nn_reshape(cx, attn_nn_scale(cx, in[0], 2.0f, 0.0f), 3, S(4, -1, 2));
}
static attn_var *b_permute(attn_nn_ctx *cx, attn_var **in, void *arg) {
  static const int perm[4] = {2, 0, 3, 1};
  return attn_nn_permute(cx, in[0], perm);
}
static attn_var *b_transpose(attn_nn_ctx *cx, attn_var **in, void *arg) {
  return attn_nn_transpose(cx, in[0], -1, 0);
}
static attn_var *b_slice(attn_nn_ctx *cx, attn_var **in, void *arg) {
  return attn_nn_slice(cx, in[0], 1, 1, 4);
}
static attn_var *b_concat(attn_nn_ctx *cx, attn_var **in, void *arg) {
  attn_var *xs[3] = {in[0], in[1], in[0]}; /* in[0] twice: gradients accumulate */
  return attn_nn_concat(cx, xs, 3, 1);
}
static const int32_t emb_ids[6] = {3, 0, 3, 2, 4, 3};
static attn_var *b_embedding(attn_nn_ctx *cx, attn_var **in, void *arg) {
  return attn_nn_embedding(cx, in[0], emb_ids, 2, S(2, 3));
}
typedef struct red_arg { int axis, keep, mean; } red_arg;
static attn_var *b_reduce(attn_nn_ctx *cx, attn_var **in, void *arg) {
  red_arg *a = arg;
  return a->mean ? attn_nn_mean(cx, in[0], a->axis, a->keep) : attn_nn_sum(cx, in[0], a->axis, a->keep);
}
static attn_var *b_sum_all(attn_nn_ctx *cx, attn_var **in, void *arg) { return attn_nn_sum_all(cx, in[0]); }
static attn_var *b_mean_all(attn_nn_ctx *cx, attn_var **in, void *arg) { return attn_nn_mean_all(cx, in[0]); }
static attn_var *b_layernorm(attn_nn_ctx *cx, attn_var **in, void *arg) {
  return arg ? attn_nn_layernorm(cx, in[0], in[1], in[2], 1e-5f) : attn_nn_layernorm(cx, in[0], NULL, NULL, 1e-5f);
}
static attn_var *b_rmsnorm(attn_nn_ctx *cx, attn_var **in, void *arg) {
  return attn_nn_rmsnorm(cx, in[0], arg ? in[1] : NULL, 1e-6f);
}
static attn_var *b_softmax(attn_nn_ctx *cx, attn_var **in, void *arg) {
  return attn_nn_softmax(cx, in[0], in[1]);
}
static attn_var *b_log_softmax(attn_nn_ctx *cx, attn_var **in, void *arg) {
  return attn_nn_log_softmax(cx, in[0], in[1]);
}
static attn_var *b_softmax_nomask(attn_nn_ctx *cx, attn_var **in, void *arg) {
  return arg ? attn_nn_log_softmax(cx, in[0], NULL) : attn_nn_softmax(cx, in[0], NULL);
}
static const int32_t ce_targets[6] = {2, 0, -100, 4, 1, 4};
static attn_var *b_ce(attn_nn_ctx *cx, attn_var **in, void *arg) {
  return attn_nn_cross_entropy(cx, in[0], ce_targets, -100, arg ? 0.1f : 0.0f);
}
static attn_var *b_mse(attn_nn_ctx *cx, attn_var **in, void *arg) { return attn_nn_mse(cx, in[0], in[1]); }
typedef struct sdpa_arg { int causal; const int32_t *lens; float scale; } sdpa_arg;
static attn_var *b_sdpa(attn_nn_ctx *cx, attn_var **in, void *arg) {
  sdpa_arg *a = arg;
  return attn_nn_sdpa(cx, in[0], in[1], in[2], a->scale, a->causal, a->lens);
}

static attn_var *b_leaky(attn_nn_ctx *cx, attn_var **in, void *arg) { return attn_nn_leaky_relu(cx, in[0], 0.2f); }
static attn_var *b_elu(attn_nn_ctx *cx, attn_var **in, void *arg) { return attn_nn_elu(cx, in[0], 0.7f); }
static attn_var *b_softplus(attn_nn_ctx *cx, attn_var **in, void *arg) { return attn_nn_softplus(cx, in[0]); }
static attn_var *b_sqrt(attn_nn_ctx *cx, attn_var **in, void *arg) { return attn_nn_sqrt(cx, in[0]); }
static attn_var *b_max(attn_nn_ctx *cx, attn_var **in, void *arg) {
  return attn_nn_max(cx, in[0], arg ? 0 : -1, arg ? 1 : 0);
}
static attn_var *b_split(attn_nn_ctx *cx, attn_var **in, void *arg) {
  attn_var *parts[3];
  if (attn_nn_split(cx, in[0], 1, 3, S(1, 3, 1), parts) != ATTN_OK) return NULL;
  /* recombine with different weights so each part's gradient is distinct */
  attn_var *a = attn_nn_scale(cx, parts[0], 2.0f, 0.0f), *c = attn_nn_scale(cx, parts[2], -3.0f, 0.0f);
  attn_var *xs[3] = {c, parts[1], a};
  return attn_nn_concat(cx, xs, 3, 1);
}
static const int32_t sel_ids[5] = {2, 0, 2, 3, 2};
static attn_var *b_index_select(attn_nn_ctx *cx, attn_var **in, void *arg) {
  return attn_nn_index_select(cx, in[0], 1, sel_ids, 5);
}
static attn_var *b_bce(attn_nn_ctx *cx, attn_var **in, void *arg) { return attn_nn_bce_with_logits(cx, in[0], in[1]); }

typedef struct rope_arg { int interleaved; int64_t rot; const int32_t *pos; } rope_arg;
static attn_var *b_rope(attn_nn_ctx *cx, attn_var **in, void *arg) {
  rope_arg *a = arg;
  return attn_nn_rope(cx, in[0], a->pos, 100.0f, a->rot, a->interleaved);
}
static attn_var *b_t5_bias(attn_nn_ctx *cx, attn_var **in, void *arg) {
  return attn_nn_t5_bias(cx, in[0], 3, 5, arg != NULL, 8);
}
/* unfused attention with a learned bias, a constant mask, and Shaw relative embeddings */
static attn_var *b_unfused(attn_nn_ctx *cx, attn_var **in, void *arg) {
  int32_t ids[3 * 4];
  attn_nn_shaw_ids(ids, 3, 4, 1);
  attn_var *rk = attn_nn_embedding(cx, in[4], ids, 2, S(3, 4));
  attn_var *rv = attn_nn_embedding(cx, in[5], ids, 2, S(3, 4));
  attn_var *mask = attn_nn_full(cx, 4, S(2, 1, 1, 4), 0.0f);
  if (mask) mask->data[4 + 3] = -INFINITY; /* batch 1: key 3 padded */
  return attn_nn_attention_unfused(cx, in[0], in[1], in[2], in[3], mask, rk, rv, 0.0f);
}

static void run_simple(const char *name, build_fn f, void *arg, int n, const int ndims[],
                       const int64_t *shapes[], float lo, float hi, const bool wrt[]) {
  gc_case c;
  memset(&c, 0, sizeof c);
  c.name = name;
  c.build = f;
  c.arg = arg;
  for (int i = 0; i < n; i++) host_in(&c, ndims[i], shapes[i], lo, hi, wrt ? wrt[i] : true);
  gradcheck(&c);
  case_free(&c);
}

static void test_ops(void) {
  /* matmul: batched, all transposes, shared 2-d b */
  for (int ta = 0; ta < 2; ta++)
    for (int tb = 0; tb < 2; tb++) {
      mm_arg m = {ta, tb};
      const int64_t *sh[2] = {ta ? S(2, 4, 3) : S(2, 3, 4), tb ? S(2, 5, 4) : S(2, 4, 5)};
      run_simple("matmul batched", b_matmul, &m, 2, (int[]){3, 3}, sh, -1, 1, NULL);
      const int64_t *sh2[2] = {ta ? S(2, 4, 3) : S(2, 3, 4), tb ? S(5, 4) : S(4, 5)};
      run_simple("matmul shared b", b_matmul, &m, 2, (int[]){3, 2}, sh2, -1, 1, NULL);
    }
  run_simple("linear+bias", b_linear, (void *)1, 3, (int[]){3, 2, 1},
             (const int64_t *[]){S(2, 3, 4), S(5, 4), S(5)}, -1, 1, NULL);
  run_simple("linear", b_linear, NULL, 2, (int[]){2, 2}, (const int64_t *[]){S(3, 4), S(5, 4)}, -1, 1, NULL);

  /* broadcasting binary ops */
  const int64_t *pairs[][2] = {{S(2, 3, 4), S(2, 3, 4)}, {S(2, 3, 4), S(3, 1)}, {S(2, 3, 4), S(4)},
                               {S(3, 1), S(2, 1, 4)}, {S(1), S(2, 3)}};
  const int nds[][2] = {{3, 3}, {3, 2}, {3, 1}, {2, 3}, {1, 2}};
  build_fn bins[3] = {b_add, b_sub, b_mul};
  const char *bnames[3] = {"add", "sub", "mul"};
  for (int k = 0; k < 3; k++)
    for (int p = 0; p < 5; p++) run_simple(bnames[k], bins[k], NULL, 2, nds[p], pairs[p], -1, 1, NULL);
  for (int p = 0; p < 5; p++) run_simple("div", b_div, NULL, 2, nds[p], pairs[p], 0.6f, 1.6f, NULL);
  run_simple("scale", b_scale, NULL, 1, (int[]){2}, (const int64_t *[]){S(3, 4)}, -1, 1, NULL);

  /* unary */
  static const char *unames[] = {"tanh", "relu", "gelu_erf", "gelu_tanh", "silu", "sigmoid", "exp", "log"};
  for (int k = ATTN_NN_UNARY_TANH; k <= ATTN_NN_UNARY_LOG; k++) {
    gc_case c;
    memset(&c, 0, sizeof c);
    c.name = unames[k];
    c.build = b_unary;
    c.arg = (void *)(intptr_t)k;
    if (k == ATTN_NN_UNARY_LOG)
      host_in(&c, 2, S(3, 5), 0.3f, 2.0f, true);
    else
      host_in(&c, 2, S(3, 5), -2.5f, 2.5f, true);
    if (k == ATTN_NN_UNARY_RELU) push_away(&c.in[0], 0.05f);
    gradcheck(&c);
    case_free(&c);
  }
  {
    gc_case c = {.name = "leaky_relu", .build = b_leaky};
    host_in(&c, 2, S(3, 5), -2, 2, true);
    push_away(&c.in[0], 0.05f);
    gradcheck(&c);
    case_free(&c);
    gc_case e = {.name = "elu", .build = b_elu};
    host_in(&e, 2, S(3, 5), -2, 2, true);
    push_away(&e.in[0], 0.05f);
    gradcheck(&e);
    case_free(&e);
  }
  run_simple("softplus", b_softplus, NULL, 1, (int[]){2}, (const int64_t *[]){S(3, 5)}, -4, 4, NULL);
  run_simple("sqrt", b_sqrt, NULL, 1, (int[]){2}, (const int64_t *[]){S(3, 5)}, 0.3f, 3.0f, NULL);
  /* max: distinct values far apart (a step never changes the argmax) */
  for (int k = 0; k < 2; k++) {
    gc_case c = {.name = k ? "max axis 0 keepdim" : "max last axis", .build = b_max, .arg = (void *)(intptr_t)k};
    host_in(&c, 3, S(3, 2, 4), -1, 1, true);
    for (int64_t i = 0; i < c.in[0].n; i++) c.in[0].data[i] = 0.1f * (float)((i * 7) % 24) - 1.0f;
    gradcheck(&c);
    case_free(&c);
  }
  run_simple("split", b_split, NULL, 1, (int[]){3}, (const int64_t *[]){S(2, 5, 3)}, -1, 1, NULL);
  run_simple("index_select", b_index_select, NULL, 1, (int[]){3}, (const int64_t *[]){S(2, 4, 3)}, -1, 1, NULL);
  run_simple("bce_with_logits", b_bce, NULL, 2, (int[]){2, 2}, (const int64_t *[]){S(3, 4), S(3, 4)}, -3, 3,
             (const bool[]){true, false});
  run_simple("dropout", b_dropout, NULL, 1, (int[]){2}, (const int64_t *[]){S(5, 7)}, -1, 1, NULL);

  /* shape ops */
  run_simple("reshape", b_reshape, NULL, 1, (int[]){2}, (const int64_t *[]){S(4, 6)}, -1, 1, NULL);
  run_simple("permute", b_permute, NULL, 1, (int[]){4}, (const int64_t *[]){S(2, 3, 4, 5)}, -1, 1, NULL);
  run_simple("transpose", b_transpose, NULL, 1, (int[]){3}, (const int64_t *[]){S(2, 3, 4)}, -1, 1, NULL);
  run_simple("slice", b_slice, NULL, 1, (int[]){3}, (const int64_t *[]){S(2, 5, 3)}, -1, 1, NULL);
  run_simple("concat", b_concat, NULL, 2, (int[]){3, 3}, (const int64_t *[]){S(2, 2, 3), S(2, 1, 3)}, -1, 1, NULL);
  run_simple("embedding", b_embedding, NULL, 1, (int[]){2}, (const int64_t *[]){S(5, 4)}, -1, 1, NULL);

  /* reductions */
  red_arg ra[4] = {{1, 0, 0}, {-1, 1, 0}, {0, 0, 1}, {1, 1, 1}};
  for (int k = 0; k < 4; k++)
    run_simple(ra[k].mean ? "mean axis" : "sum axis", b_reduce, &ra[k], 1, (int[]){3},
               (const int64_t *[]){S(2, 3, 4)}, -1, 1, NULL);
  run_simple("sum_all", b_sum_all, NULL, 1, (int[]){2}, (const int64_t *[]){S(3, 4)}, -1, 1, NULL);
  run_simple("mean_all", b_mean_all, NULL, 1, (int[]){2}, (const int64_t *[]){S(3, 4)}, -1, 1, NULL);

  /* normalisation */
  run_simple("layernorm", b_layernorm, NULL, 1, (int[]){3}, (const int64_t *[]){S(2, 3, 6)}, -2, 2, NULL);
  run_simple("layernorm affine", b_layernorm, (void *)1, 3, (int[]){2, 1, 1},
             (const int64_t *[]){S(4, 6), S(6), S(6)}, -2, 2, NULL);
  run_simple("rmsnorm", b_rmsnorm, NULL, 1, (int[]){2}, (const int64_t *[]){S(4, 6)}, -2, 2, NULL);
  run_simple("rmsnorm affine", b_rmsnorm, (void *)1, 2, (int[]){2, 1}, (const int64_t *[]){S(4, 6), S(6)}, -2, 2, NULL);

  /* softmax with a broadcast additive mask holding -inf, including a fully blocked row */
  for (int logsm = 0; logsm < 2; logsm++) {
    gc_case c;
    memset(&c, 0, sizeof c);
    c.name = logsm ? "log_softmax masked" : "softmax masked";
    c.build = logsm ? b_log_softmax : b_softmax;
    host_in(&c, 3, S(2, 3, 5), -2, 2, true);
    host_in(&c, 3, S(2, 1, 5), -1, 1, false);
    float *m = c.in[1].data;
    m[1] = -INFINITY; /* batch 0: key 1 blocked */
    for (int j = 0; j < 5; j++) m[5 + j] = -INFINITY; /* batch 1: every key blocked */
    gradcheck(&c);
    case_free(&c);
    run_simple(logsm ? "log_softmax" : "softmax", b_softmax_nomask, logsm ? (void *)1 : NULL, 1,
               (int[]){2}, (const int64_t *[]){S(3, 7)}, -3, 3, NULL);
  }

  /* positional encodings */
  static const int32_t rope_pos[4] = {3, 0, 7, 100};
  rope_arg rargs[4] = {{1, 0, NULL}, {0, 0, NULL}, {1, 4, rope_pos}, {0, 4, rope_pos}};
  for (int k = 0; k < 4; k++)
    run_simple(rargs[k].interleaved ? "rope interleaved" : "rope half-split", b_rope, &rargs[k], 1, (int[]){4},
               (const int64_t *[]){S(2, 2, 4, 6)}, -1, 1, NULL);
  run_simple("t5 bias bidirectional", b_t5_bias, (void *)1, 1, (int[]){2}, (const int64_t *[]){S(8, 2)}, -1, 1, NULL);
  run_simple("t5 bias causal", b_t5_bias, NULL, 1, (int[]){2}, (const int64_t *[]){S(8, 2)}, -1, 1, NULL);
  run_simple("unfused attention bias+mask+shaw", b_unfused, NULL, 6, (int[]){4, 4, 4, 4, 2, 2},
             (const int64_t *[]){S(2, 2, 3, 4), S(2, 2, 4, 4), S(2, 2, 4, 3), S(1, 2, 3, 4), S(3, 4), S(3, 3)}, -1, 1, NULL);

  /* losses */
  run_simple("cross_entropy", b_ce, NULL, 1, (int[]){2}, (const int64_t *[]){S(6, 5)}, -2, 2, NULL);
  run_simple("cross_entropy smoothing", b_ce, (void *)1, 1, (int[]){3},
             (const int64_t *[]){S(2, 3, 5)}, -2, 2, NULL);
  run_simple("mse", b_mse, NULL, 2, (int[]){2, 2}, (const int64_t *[]){S(3, 4), S(3, 4)}, -1, 1, NULL);

  /* fused attention: plain, causal, key lengths (one empty), GQA */
  static const int32_t lens[2] = {3, 0};
  sdpa_arg sa[4] = {{0, NULL, 0.0f}, {1, NULL, 0.0f}, {0, lens, 0.7f}, {1, lens, 0.0f}};
  for (int k = 0; k < 4; k++) {
    run_simple("sdpa", b_sdpa, &sa[k], 3, (int[]){4, 4, 4},
               (const int64_t *[]){S(2, 2, 3, 4), S(2, 2, 4, 4), S(2, 2, 4, 3)}, -1.5f, 1.5f, NULL);
    run_simple("sdpa gqa", b_sdpa, &sa[k], 3, (int[]){4, 4, 4},
               (const int64_t *[]){S(2, 4, 5, 4), S(2, 2, 5, 4), S(2, 2, 5, 4)}, -1.5f, 1.5f, NULL);
  }
}

/* ---- layers ---- */

static attn_var *b_linear_layer(attn_nn_ctx *cx, attn_var **in, void *arg) {
  return attn_nn_linear_forward(cx, arg, in[0]);
}
static attn_var *b_embedding_layer(attn_nn_ctx *cx, attn_var **in, void *arg) {
  return attn_nn_embedding_forward(cx, arg, emb_ids, 1, S(6));
}
static attn_var *b_layernorm_layer(attn_nn_ctx *cx, attn_var **in, void *arg) {
  return attn_nn_layernorm_forward(cx, arg, in[0]);
}
static attn_var *b_mlp(attn_nn_ctx *cx, attn_var **in, void *arg) { return attn_nn_mlp_forward(cx, arg, in[0]); }
static const int32_t mha_lens[2] = {4, 2};
static attn_var *b_mha_self(attn_nn_ctx *cx, attn_var **in, void *arg) {
  return attn_nn_mha_forward(cx, arg, in[0], in[0], 1, mha_lens);
}
static attn_var *b_mha_cross(attn_nn_ctx *cx, attn_var **in, void *arg) {
  return attn_nn_mha_forward(cx, arg, in[0], in[1], 0, mha_lens);
}
static attn_var *b_block(attn_nn_ctx *cx, attn_var **in, void *arg) {
  return attn_nn_block_forward(cx, arg, in[0], 1, NULL);
}
static attn_var *b_decoder_block(attn_nn_ctx *cx, attn_var **in, void *arg) {
  return attn_nn_block_forward_ex(cx, arg, in[0], 1, NULL, in[1], mha_lens);
}
static attn_var *b_rmsnorm_layer(attn_nn_ctx *cx, attn_var **in, void *arg) {
  return attn_nn_rmsnorm_forward(cx, arg, in[0]);
}
static attn_var *b_mha_self_plain(attn_nn_ctx *cx, attn_var **in, void *arg) {
  return attn_nn_mha_forward(cx, arg, in[0], NULL, 1, mha_lens);
}
/* sdpa with the kernel's extra options: sliding window, ALiBi, soft-cap, bottom-right causal */
static attn_var *b_sdpa_ex(attn_nn_ctx *cx, attn_var **in, void *arg) {
  static const float slopes[2] = {0.5f, 0.25f};
  attn_sdpa_params p = attn_sdpa_params_default();
  p.causal = 1;
  p.align = ATTN_MASK_ALIGN_BOTTOM_RIGHT;
  p.window_left = 2;
  p.alibi_slopes = slopes;
  p.softcap = 3.0f;
  attn_var *w = NULL;
  attn_var *o = attn_nn_sdpa_ex(cx, in[0], in[1], in[2], &p, &w);
  return w && !w->requires_grad ? o : NULL;
}

static const int32_t rnn_lens[2] = {3, 2};
typedef struct rnn_arg { attn_nn_rnn *r; int reverse; } rnn_arg;
static attn_var *b_rnn(attn_nn_ctx *cx, attn_var **in, void *arg) {
  rnn_arg *a = arg;
  attn_var *h_last = NULL;
  attn_var *o = attn_nn_rnn_forward(cx, a->r, in[0], rnn_lens, a->reverse, &h_last);
  /* differentiate outputs and the final state together */
  attn_var *parts[2] = {attn_nn_reshape(cx, o, 2, S(2, -1)), h_last};
  return attn_nn_concat(cx, parts, 2, 1);
}
static attn_var *b_rnn_cell(attn_nn_ctx *cx, attn_var **in, void *arg) {
  attn_nn_rnn *r = arg;
  attn_var *c_out = NULL;
  attn_var *h = attn_nn_rnn_cell(cx, r, in[0], in[1], r->kind == ATTN_NN_RNN_LSTM ? in[2] : NULL, &c_out);
  if (!c_out) return h;
  attn_var *parts[2] = {h, c_out};
  return attn_nn_concat(cx, parts, 2, 1);
}
static attn_var *b_birnn(attn_nn_ctx *cx, attn_var **in, void *arg) {
  return attn_nn_birnn_forward(cx, arg, in[0], rnn_lens);
}

/* Checks a layer's every parameter and inputs, MAX_IN - n_host parameters per case. */
static void layer_check(const char *name, build_fn f, void *arg, attn_nn_params *ps, int n_host,
                        const int64_t *const *shapes, const int *ndims) {
  for (int64_t first = 0; first < ps->n; first += MAX_IN - n_host) {
    gc_case c = {.name = name, .build = f, .arg = arg};
    for (int i = 0; i < n_host; i++) host_in(&c, ndims[i], shapes[i], -1, 1, true);
    for (int64_t i = first; i < ps->n && c.n_in < MAX_IN; i++) param_in(&c, ps->items[i]);
    gradcheck(&c);
    case_free(&c);
  }
}

/* Adds every parameter of the list as an input of c (each checked on up to MAX_PROBE elements). */
static void params_in(gc_case *c, attn_nn_params *ps) {
  for (int64_t i = 0; i < ps->n && c->n_in < MAX_IN; i++) param_in(c, ps->items[i]);
}

/* Perturbs parameters that init to constants so the check is not at a special point. */
static void jitter(attn_nn_params *ps) {
  for (int64_t i = 0; i < ps->n; i++)
    for (int64_t j = 0; j < ps->items[i]->numel; j++) ps->items[i]->data[j] += t_uniform(&rng, -0.3f, 0.3f);
}

static void test_layers(void) {
  {
    attn_nn_params ps = {0};
    attn_nn_linear_layer l;
    CHECK_OK(attn_nn_linear_init(&l, 4, 3, 1, 7, &ps));
    jitter(&ps);
    gc_case c = {.name = "Linear layer", .build = b_linear_layer, .arg = &l};
    host_in(&c, 3, S(2, 2, 4), -1, 1, true);
    params_in(&c, &ps);
    gradcheck(&c);
    case_free(&c);
    attn_nn_linear_free(&l);
    attn_nn_params_clear(&ps);
  }
  {
    attn_nn_params ps = {0};
    attn_nn_embedding_layer l;
    CHECK_OK(attn_nn_embedding_init(&l, 5, 3, 1.0f, 7, &ps));
    gc_case c = {.name = "Embedding layer", .build = b_embedding_layer, .arg = &l};
    params_in(&c, &ps);
    gradcheck(&c);
    attn_nn_embedding_free(&l);
    attn_nn_params_clear(&ps);
  }
  {
    attn_nn_params ps = {0};
    attn_nn_layernorm_layer l;
    CHECK_OK(attn_nn_layernorm_init(&l, 6, 1e-5f, &ps));
    jitter(&ps);
    gc_case c = {.name = "LayerNorm layer", .build = b_layernorm_layer, .arg = &l};
    host_in(&c, 3, S(2, 2, 6), -2, 2, true);
    params_in(&c, &ps);
    gradcheck(&c);
    case_free(&c);
    attn_nn_layernorm_free(&l);
    attn_nn_params_clear(&ps);
  }
  for (int act = ATTN_NN_ACT_RELU; act <= ATTN_NN_ACT_SILU; act++) {
    attn_nn_params ps = {0};
    attn_nn_mlp m;
    CHECK_OK(attn_nn_mlp_init(&m, 4, 8, (attn_nn_act)act, 11, &ps));
    jitter(&ps);
    static const char *names[] = {"MLP relu", "MLP gelu", "MLP gelu_tanh", "MLP silu"};
    gc_case c = {.name = names[act], .build = b_mlp, .arg = &m, .allow_kinks = act == ATTN_NN_ACT_RELU,
                 .h = act == ATTN_NN_ACT_RELU ? 1e-3f : 0.0f};
    host_in(&c, 3, S(2, 3, 4), -1, 1, true);
    params_in(&c, &ps);
    gradcheck(&c);
    case_free(&c);
    attn_nn_mlp_free(&m);
    attn_nn_params_clear(&ps);
  }
  for (int cross = 0; cross < 2; cross++) {
    attn_nn_params ps = {0};
    attn_nn_mha m;
    CHECK_OK(attn_nn_mha_init(&m, 8, 2, 13, &ps));
    jitter(&ps);
    /* inputs then W_q, b_q, W_k, b_k (MAX_IN); a second case covers W_v, b_v, W_o, b_o */
    for (int part = 0; part < 2; part++) {
      gc_case c = {.name = cross ? "MHA cross (causal off, key padding)" : "MHA self (causal, key padding)",
                   .build = cross ? b_mha_cross : b_mha_self, .arg = &m};
      host_in(&c, 3, S(2, 4, 8), -1, 1, true);
      if (cross) host_in(&c, 3, S(2, 4, 8), -1, 1, true);
      for (int64_t i = 4 * part; i < 4 * part + 4 && c.n_in < MAX_IN; i++) param_in(&c, ps.items[i]);
      gradcheck(&c);
      case_free(&c);
    }
    attn_nn_mha_free(&m);
    attn_nn_params_clear(&ps);
  }
  {
    attn_nn_params ps = {0};
    attn_nn_rmsnorm_layer l;
    CHECK_OK(attn_nn_rmsnorm_init(&l, 6, 1e-6f, &ps));
    jitter(&ps);
    layer_check("RMSNorm layer", b_rmsnorm_layer, &l, &ps, 1, (const int64_t *[]){S(2, 2, 6)}, (int[]){3});
    attn_nn_rmsnorm_free(&l);
    attn_nn_params_clear(&ps);
  }
  for (int act = ATTN_NN_ACT_GELU; act <= ATTN_NN_ACT_SILU; act += 2) {
    attn_nn_params ps = {0};
    attn_nn_mlp m;
    CHECK_OK(attn_nn_mlp_init_gated(&m, 4, 8, (attn_nn_act)act, 19, &ps));
    CHECK(ps.n == 6 && m.gate.w, "gated MLP has 6 parameters");
    jitter(&ps);
    layer_check(act == ATTN_NN_ACT_GELU ? "GEGLU MLP" : "SwiGLU MLP", b_mlp, &m, &ps, 1,
                (const int64_t *[]){S(2, 3, 4)}, (int[]){3});
    attn_nn_mlp_free(&m);
    attn_nn_params_clear(&ps);
  }
  for (int variant = 0; variant < 3; variant++) {
    /* GQA (4 heads over 2 kv heads), packed QKV, multi-query cross-attention of another width */
    attn_nn_params ps = {0};
    attn_nn_mha m;
    attn_nn_mha_config cfg = attn_nn_mha_config_default(8, 4);
    if (variant == 0) cfg.n_kv_heads = 2;
    if (variant == 1) cfg.packed_qkv = 1;
    if (variant == 2) {
      cfg.n_kv_heads = 1;
      cfg.kv_dim = 6;
      cfg.bias = 0;
    }
    CHECK_OK(attn_nn_mha_init_ex(&m, &cfg, 23, &ps));
    jitter(&ps);
    static const char *names[3] = {"MHA GQA", "MHA packed QKV", "MHA multi-query cross"};
    if (variant < 2)
      layer_check(names[variant], b_mha_self_plain, &m, &ps, 1, (const int64_t *[]){S(2, 4, 8)}, (int[]){3});
    else
      layer_check(names[variant], b_mha_cross, &m, &ps, 2, (const int64_t *[]){S(2, 3, 8), S(2, 4, 6)}, (int[]){3, 3});
    attn_nn_mha_free(&m);
    attn_nn_params_clear(&ps);
  }
  for (int kind = 0; kind < 2; kind++) {
    attn_nn_params ps = {0};
    attn_nn_rnn r;
    CHECK_OK(attn_nn_rnn_init(&r, (attn_nn_rnn_kind)kind, 3, 4, 31, &ps));
    CHECK(ps.n == (kind == ATTN_NN_RNN_LSTM ? 3 : 4), "rnn parameter count %lld", (long long)ps.n);
    for (int rev = 0; rev < 2; rev++) {
      rnn_arg a = {&r, rev};
      static const char *names[2][2] = {{"LSTM", "LSTM reverse"}, {"GRU", "GRU reverse"}};
      layer_check(names[kind][rev], b_rnn, &a, &ps, 1, (const int64_t *[]){S(2, 3, 3)}, (int[]){3});
    }
    layer_check(kind ? "GRU cell" : "LSTM cell", b_rnn_cell, &r, &ps, 3 - kind,
                (const int64_t *[]){S(2, 3), S(2, 4), S(2, 4)}, (int[]){2, 2, 2});
    attn_nn_rnn_free(&r);
    attn_nn_params_clear(&ps);
    attn_nn_birnn bi;
    CHECK_OK(attn_nn_birnn_init(&bi, (attn_nn_rnn_kind)kind, 3, 2, 37, &ps));
    layer_check(kind ? "bidirectional GRU" : "bidirectional LSTM", b_birnn, &bi, &ps, 1, (const int64_t *[]){S(2, 3, 3)},
                (int[]){3});
    attn_nn_birnn_free(&bi);
    attn_nn_params_clear(&ps);
  }
  for (int k = 0; k < 2; k++)
    run_simple("sdpa window+alibi+softcap", b_sdpa_ex, NULL, 3, (int[]){4, 4, 4},
               (const int64_t *[]){S(1, 2, 3, 4), S(1, 2, 5, 4), S(1, 2, 5, 3)}, -1.5f, 1.5f, NULL);
  for (int variant = 0; variant < 2; variant++) {
    /* post-LN encoder block; pre-LN decoder block with cross-attention over a memory */
    attn_nn_params ps = {0};
    attn_nn_block blk;
    attn_nn_block_config cfg = attn_nn_block_config_default(8, 2, 12);
    if (variant == 0) cfg.post_ln = 1;
    if (variant == 1) {
      cfg.cross = 1;
      cfg.cross_dim = 6;
      cfg.gated = 1;
      cfg.act = ATTN_NN_ACT_SILU;
    }
    CHECK_OK(attn_nn_block_init_ex(&blk, &cfg, 29, &ps));
    jitter(&ps);
    if (variant == 0)
      layer_check("post-LN block", b_block, &blk, &ps, 1, (const int64_t *[]){S(2, 3, 8)}, (int[]){3});
    else
      layer_check("decoder block", b_decoder_block, &blk, &ps, 2, (const int64_t *[]){S(2, 3, 8), S(2, 4, 6)}, (int[]){3, 3});
    attn_nn_block_free(&blk);
    attn_nn_params_clear(&ps);
  }
  {
    attn_nn_params ps = {0};
    attn_nn_block blk;
    CHECK_OK(attn_nn_block_init(&blk, 8, 2, 16, ATTN_NN_ACT_GELU, 17, &ps));
    jitter(&ps);
    /* 16 parameter tensors: check them five at a time, each case with the input too */
    for (int64_t first = 0; first < ps.n; first += MAX_IN - 1) {
      gc_case c = {.name = "pre-LN block", .build = b_block, .arg = &blk};
      host_in(&c, 3, S(2, 3, 8), -1, 1, true);
      for (int64_t i = first; i < ps.n && c.n_in < MAX_IN; i++) param_in(&c, ps.items[i]);
      gradcheck(&c);
      case_free(&c);
    }
    attn_nn_block_free(&blk);
    attn_nn_params_clear(&ps);
  }
}

int main(void) {
  rng = t_rng_make(42);
  ctx = attn_nn_ctx_new();
  CHECK(ctx != NULL, "ctx");
  test_ops();
  test_layers();
  attn_nn_ctx_free(ctx);
  return t_finish("test_nn_grad");
}
