/* The training layer's machinery: gradient accumulation, no_grad, the arena, errors, a failing
 * allocator at every allocation of a small model's training step, optimizers, clipping,
 * schedules and initialisers. Gradients of the ops themselves are in test_nn_grad.c. */
#include "attn/nn.h"
#include "common.h"

#include <unistd.h>

#define S(...) ((const int64_t[]){__VA_ARGS__})

static bool near(double a, double b, double tol) { return fabs(a - b) <= tol * (1.0 + fabs(b)); }

/* Gradients accumulate across uses of a tensor within one tape, and across tapes for params. */
static void test_accumulation(void) {
  attn_nn_ctx *ctx = attn_nn_ctx_new();
  const float xs[3] = {0.5f, -1.0f, 2.0f};
  attn_var *x = attn_nn_tensor(ctx, 1, S(3), xs, 1);
  /* y = sum(x * x + x): dy/dx = 2x + 1, with x used three times */
  attn_var *y = attn_nn_sum_all(ctx, attn_nn_add(ctx, attn_nn_mul(ctx, x, x), x));
  CHECK_OK(attn_backward(y));
  for (int i = 0; i < 3; i++) CHECK(near(x->grad[i], 2 * xs[i] + 1, 1e-6), "dx[%d] = %g", i, x->grad[i]);
  CHECK_STATUS(attn_backward(y), ATTN_STATUS_INVALID_ARGUMENT); /* a tape is walked once */

  /* A parameter used twice in one step, then a second step without zero_grad: += twice. */
  attn_var *w = attn_nn_param_new(1, S(3), "w");
  for (int i = 0; i < 3; i++) w->data[i] = (float)i;
  for (int step = 1; step <= 2; step++) {
    attn_nn_ctx_reset(ctx);
    attn_var *a = attn_nn_tensor(ctx, 1, S(3), xs, 0);
    attn_var *l = attn_nn_sum_all(ctx, attn_nn_add(ctx, attn_nn_mul(ctx, a, w), attn_nn_scale(ctx, w, 3.0f, 0.0f)));
    CHECK_OK(attn_backward(l));
    for (int i = 0; i < 3; i++)
      CHECK(near(w->grad[i], step * (xs[i] + 3.0), 1e-6), "step %d dw[%d] = %g", step, i, w->grad[i]);
  }
  attn_nn_zero_grad(w);
  CHECK(w->grad[0] == 0 && w->grad[2] == 0, "zero_grad");
  attn_nn_param_free(w);
  attn_nn_ctx_free(ctx);
}

static void test_no_grad(void) {
  attn_nn_ctx *ctx = attn_nn_ctx_new();
  attn_var *w = attn_nn_param_new(2, S(3, 2), "w");
  attn_nn_init_normal(w, 0, 1, 3);
  CHECK(attn_nn_set_grad_enabled(ctx, 0) == 1, "previous setting");
  attn_var *x = attn_nn_full(ctx, 2, S(4, 2), 0.5f);
  attn_var *y = attn_nn_mean_all(ctx, attn_nn_tanh(ctx, attn_nn_linear(ctx, x, w, NULL)));
  CHECK(y != NULL, "no_grad forward works");
  CHECK(attn_nn_tape_size(ctx) == 0, "no_grad recorded %lld records", (long long)attn_nn_tape_size(ctx));
  CHECK(y && !y->requires_grad && !y->node, "no_grad result requires no grad");
  CHECK_STATUS(attn_backward(y), ATTN_STATUS_INVALID_ARGUMENT);
  /* same values with recording on */
  CHECK(attn_nn_set_grad_enabled(ctx, 1) == 0, "previous setting");
  attn_var *y2 = attn_nn_mean_all(ctx, attn_nn_tanh(ctx, attn_nn_linear(ctx, x, w, NULL)));
  CHECK(y2 && y2->requires_grad && attn_nn_tape_size(ctx) == 3, "recorded %lld", (long long)attn_nn_tape_size(ctx));
  CHECK(y && y2 && y->data[0] == y2->data[0], "same value with and without grad");
  /* constants only: nothing recorded even with grad enabled */
  int64_t before = attn_nn_tape_size(ctx);
  attn_var *z = attn_nn_exp(ctx, x);
  CHECK(z && !z->requires_grad && attn_nn_tape_size(ctx) == before, "constants are not recorded");
  attn_nn_param_free(w);
  attn_nn_ctx_free(ctx);
}

static void test_errors(void) {
  attn_nn_ctx *ctx = attn_nn_ctx_new();
  attn_var *a = attn_nn_full(ctx, 2, S(2, 3), 1.0f), *b = attn_nn_full(ctx, 2, S(4, 3), 1.0f);
  CHECK(attn_nn_add(ctx, a, b) == NULL, "(2,3)+(4,3) must fail");
  CHECK(attn_nn_ctx_status(ctx) == ATTN_STATUS_SHAPE_MISMATCH, "status %s", attn_status_str(attn_nn_ctx_status(ctx)));
  CHECK(strstr(attn_nn_ctx_error(ctx), "attn_nn_add") != NULL, "message: %s", attn_nn_ctx_error(ctx));
  CHECK(strstr(attn_last_error(), "(2, 3)") != NULL, "last error: %s", attn_last_error());
  /* sticky: later ops return NULL and keep the first error */
  CHECK(attn_nn_relu(ctx, a) == NULL, "sticky");
  CHECK(attn_nn_ctx_status(ctx) == ATTN_STATUS_SHAPE_MISMATCH, "first error kept");
  attn_nn_ctx_reset(ctx);
  CHECK(attn_nn_ctx_status(ctx) == ATTN_OK && attn_nn_ctx_error(ctx)[0] == 0, "reset clears");
  a = attn_nn_full(ctx, 2, S(2, 3), 1.0f);
  CHECK(attn_nn_relu(ctx, NULL) == NULL && attn_nn_ctx_status(ctx) == ATTN_STATUS_NULL_POINTER, "NULL input");
  attn_nn_ctx_reset(ctx);
  a = attn_nn_full(ctx, 2, S(2, 3), 1.0f);
  CHECK(attn_nn_matmul(ctx, a, a, 0, 0) == NULL && attn_nn_ctx_status(ctx) == ATTN_STATUS_SHAPE_MISMATCH, "matmul");
  attn_nn_ctx_reset(ctx);
  a = attn_nn_full(ctx, 2, S(2, 3), 1.0f);
  CHECK(attn_nn_sum(ctx, a, 2, 0) == NULL && attn_nn_ctx_status(ctx) == ATTN_STATUS_INVALID_ARGUMENT, "axis");
  attn_nn_ctx_reset(ctx);
  a = attn_nn_full(ctx, 2, S(2, 3), 1.0f);
  const int32_t bad_t[2] = {0, 3};
  CHECK(attn_nn_cross_entropy(ctx, a, bad_t, -100, 0) == NULL && attn_nn_ctx_status(ctx) == ATTN_STATUS_INVALID_ARGUMENT, "target");
  attn_nn_ctx_reset(ctx);
  attn_var *t = attn_nn_full(ctx, 2, S(4, 3), 1.0f);
  const int32_t bad_ids[2] = {1, 4};
  CHECK(attn_nn_embedding(ctx, t, bad_ids, 1, S(2)) == NULL && attn_nn_ctx_status(ctx) == ATTN_STATUS_INVALID_ARGUMENT, "ids");
  attn_nn_ctx_reset(ctx);
  a = attn_nn_full(ctx, 2, S(2, 3), 1.0f);
  CHECK(attn_nn_reshape(ctx, a, 2, S(4, 2)) == NULL && attn_nn_ctx_status(ctx) == ATTN_STATUS_SHAPE_MISMATCH, "reshape");
  attn_nn_ctx_reset(ctx);
  a = attn_nn_full(ctx, 2, S(2, 3), 1.0f);
  CHECK(attn_nn_slice(ctx, a, 1, 2, 4) == NULL && attn_nn_ctx_status(ctx) == ATTN_STATUS_INVALID_ARGUMENT, "slice");
  attn_nn_ctx_reset(ctx);
  a = attn_nn_full(ctx, 2, S(2, 3), 1.0f);
  CHECK(attn_nn_dropout(ctx, a, 1.0f, 1) == NULL && attn_nn_ctx_status(ctx) == ATTN_STATUS_INVALID_ARGUMENT, "dropout p");
  attn_nn_ctx_reset(ctx);
  /* a tensor of another context */
  attn_nn_ctx *other = attn_nn_ctx_new();
  attn_var *o = attn_nn_full(other, 1, S(3), 1.0f);
  a = attn_nn_full(ctx, 1, S(3), 1.0f);
  CHECK(attn_nn_add(ctx, a, o) == NULL && attn_nn_ctx_status(ctx) == ATTN_STATUS_INVALID_ARGUMENT, "foreign tensor");
  attn_nn_ctx_free(other);
  attn_nn_ctx_reset(ctx);
  /* sdpa: bad head grouping comes back as the kernel's error */
  attn_var *q = attn_nn_full(ctx, 4, S(1, 3, 2, 4), 0.1f), *k = attn_nn_full(ctx, 4, S(1, 2, 2, 4), 0.1f);
  CHECK(attn_nn_sdpa(ctx, q, k, k, 0, 0, NULL) == NULL && attn_nn_ctx_status(ctx) == ATTN_STATUS_INVALID_ARGUMENT,
        "sdpa Hq %% Hkv: %s", attn_status_str(attn_nn_ctx_status(ctx)));
  attn_nn_ctx_reset(ctx);
  /* backward on a non-scalar, NULL, after an error */
  attn_var *x = attn_nn_tensor(ctx, 1, S(2), NULL, 1);
  attn_var *y = attn_nn_scale(ctx, x, 2, 0);
  CHECK_STATUS(attn_backward(y), ATTN_STATUS_INVALID_ARGUMENT);
  CHECK_STATUS(attn_backward(NULL), ATTN_STATUS_NULL_POINTER);
  CHECK_STATUS(attn_backward_from(y, NULL), ATTN_STATUS_NULL_POINTER);
  CHECK(attn_nn_add(ctx, y, attn_nn_full(ctx, 1, S(3), 0)) == NULL, "mismatch");
  CHECK_STATUS(attn_backward_from(y, (const float[]){1, 1}), ATTN_STATUS_SHAPE_MISMATCH);
  CHECK(attn_nn_add(NULL, y, y) == NULL, "NULL ctx");
  attn_nn_ctx_free(ctx);
  /* layers and optimizers */
  attn_nn_mha m;
  CHECK_STATUS(attn_nn_mha_init(&m, 10, 3, 1, NULL), ATTN_STATUS_INVALID_ARGUMENT);
  attn_nn_linear_layer l;
  CHECK_STATUS(attn_nn_linear_init(&l, 0, 3, 1, 1, NULL), ATTN_STATUS_INVALID_ARGUMENT);
  CHECK_STATUS(attn_nn_linear_init(NULL, 2, 3, 1, 1, NULL), ATTN_STATUS_NULL_POINTER);
  attn_nn_optim_config cfg = attn_nn_optim_config_default(ATTN_NN_OPTIM_ADAM);
  cfg.beta1 = 1.0f;
  attn_nn_params none = {0};
  CHECK(attn_nn_optim_new(&cfg, &none) == NULL, "beta1 = 1 rejected");
  CHECK_STATUS(attn_nn_clip_grad_norm(&none, 0.0f, NULL), ATTN_STATUS_INVALID_ARGUMENT);
}

/* ---- a small model: embedding -> pre-LN block -> layernorm -> linear head, AdamW ---- */

typedef struct tiny {
  attn_nn_params params;
  attn_nn_embedding_layer emb, pos;
  attn_nn_block blk;
  attn_nn_birnn rnn;
  attn_nn_layernorm_layer lnf;
  attn_nn_linear_layer head;
} tiny;

static attn_status tiny_init(tiny *m, int64_t vocab, int64_t T, int64_t dim, uint64_t seed) {
  memset(m, 0, sizeof *m);
  attn_nn_params *ps = &m->params;
  int64_t first = 0;
  /* Each part's names get a prefix, so the checkpoint keys are unique. */
#define PART(call, prefix)                                                   \
  if (st == ATTN_OK) {                                                       \
    first = ps->n;                                                           \
    st = (call);                                                             \
    if (st == ATTN_OK) st = attn_nn_params_prefix(ps, first, prefix);        \
  }
  attn_status st = ATTN_OK;
  PART(attn_nn_embedding_init(&m->emb, vocab, dim, 0.5f, seed, ps), "emb")
  PART(attn_nn_embedding_init(&m->pos, T, dim, 0.5f, seed + 1, ps), "pos")
  PART(attn_nn_block_init(&m->blk, dim, 2, 2 * dim, ATTN_NN_ACT_GELU, seed + 2, ps), "blk")
  PART(attn_nn_birnn_init(&m->rnn, ATTN_NN_RNN_LSTM, dim, dim / 2, seed + 4, ps), "rnn")
  PART(attn_nn_layernorm_init(&m->lnf, dim, 1e-5f, ps), "lnf")
  PART(attn_nn_linear_init(&m->head, dim, vocab, 1, seed + 3, ps), "head")
#undef PART
  (void)first;
  if (st != ATTN_OK) attn_nn_params_free_all(ps); /* the list owns what was made */
  return st;
}

static attn_var *tiny_forward(attn_nn_ctx *ctx, tiny *m, const int32_t *ids, int64_t B, int64_t T,
                              const int32_t *key_lens) {
  int32_t pos[64];
  for (int64_t t = 0; t < T; t++) pos[t] = (int32_t)t;
  attn_var *x = attn_nn_add(ctx, attn_nn_embedding_forward(ctx, &m->emb, ids, 2, S(B, T)),
                            attn_nn_embedding_forward(ctx, &m->pos, pos, 1, S(T)));
  x = attn_nn_dropout(ctx, x, 0.1f, 99);
  x = attn_nn_block_forward(ctx, &m->blk, x, 1, key_lens);
  x = attn_nn_add(ctx, x, attn_nn_birnn_forward(ctx, &m->rnn, x, key_lens));
  return attn_nn_linear_forward(ctx, &m->head, attn_nn_layernorm_forward(ctx, &m->lnf, x));
}

/* One full training step: forward, loss, backward, clip, AdamW. */
static attn_status tiny_step(attn_nn_ctx *ctx, tiny *m, attn_nn_optim *opt, float *loss_out) {
  const int32_t ids[8] = {1, 2, 3, 4, 5, 6, 7, 0}, tg[8] = {2, 3, 4, 5, 6, 7, 0, -100};
  const int32_t lens[2] = {4, 3};
  attn_nn_ctx_reset(ctx);
  attn_nn_params_zero_grad(&m->params);
  attn_var *logits = tiny_forward(ctx, m, ids, 2, 4, lens);
  attn_var *loss = attn_nn_cross_entropy(ctx, logits, tg, -100, 0.05f);
  if (!loss) return attn_nn_ctx_status(ctx);
  *loss_out = loss->data[0];
  attn_status st = attn_backward(loss);
  if (st == ATTN_OK) st = attn_nn_clip_grad_norm(&m->params, 1.0f, NULL);
  if (st == ATTN_OK) st = attn_nn_optim_step(opt);
  return st;
}

static void test_small_model_and_failing_allocator(void) {
  /* Reference run without failures: the loss must go down. */
  float first = 0, last = 0;
  {
    tiny m;
    CHECK_OK(tiny_init(&m, 8, 4, 8, 5));
    attn_nn_optim_config cfg = attn_nn_optim_config_default(ATTN_NN_OPTIM_ADAMW);
    cfg.lr = 1e-2f;
    attn_nn_optim *opt = attn_nn_optim_new(&cfg, &m.params);
    attn_nn_ctx *ctx = attn_nn_ctx_new();
    for (int s = 0; s < 30; s++) {
      float l = 0;
      CHECK_OK(tiny_step(ctx, &m, opt, &l));
      if (s == 0) first = l;
      last = l;
    }
    CHECK(last < 0.5f * first, "loss %g -> %g should drop", first, last);
    size_t used = attn_nn_arena_used(ctx);
    CHECK(used > 0, "arena in use");
    attn_nn_ctx_reset(ctx);
    CHECK(attn_nn_arena_used(ctx) == 0 && attn_nn_tape_size(ctx) == 0, "reset empties the arena");
    attn_nn_ctx_free(ctx);
    attn_nn_optim_free(opt);
    attn_nn_params_free_all(&m.params);
  }
  /* Fail allocation k for every k of: init, optimizer, context, two training steps, a checkpoint
   * save and load. Each run must report an error or succeed, and free everything afterwards. */
  char ckpt[128];
  snprintf(ckpt, sizeof ckpt, "/tmp/attn_nn_core_%ld.safetensors", (long)getpid());
  int64_t total = -1, failures_seen = 0;
  for (int64_t k = 1; total < 0 || k <= total; k++) {
    t_alloc_install(k);
    tiny m;
    attn_nn_optim *opt = NULL;
    attn_nn_ctx *ctx = NULL;
    attn_status st = tiny_init(&m, 8, 4, 8, 5);
    if (st == ATTN_OK) {
      attn_nn_optim_config cfg = attn_nn_optim_config_default(ATTN_NN_OPTIM_ADAMW);
      opt = attn_nn_optim_new(&cfg, &m.params);
      if (!opt) st = ATTN_STATUS_OUT_OF_MEMORY;
    }
    if (st == ATTN_OK && !(ctx = attn_nn_ctx_new())) st = ATTN_STATUS_OUT_OF_MEMORY;
    float l;
    for (int s = 0; s < 2 && st == ATTN_OK; s++) st = tiny_step(ctx, &m, opt, &l);
    if (st == ATTN_OK) st = attn_nn_save(ckpt, &m.params, NULL, 0);
    if (st == ATTN_OK) st = attn_nn_load(ckpt, &m.params);
    bool unexpected = false;
    if (st != ATTN_OK) {
      failures_seen++;
      unexpected = st != ATTN_STATUS_OUT_OF_MEMORY;
      CHECK(!unexpected, "fail at %lld: %s (%s)", (long long)k, attn_status_str(st), attn_last_error());
    }
    attn_nn_ctx_free(ctx);
    attn_nn_optim_free(opt);
    attn_nn_params_free_all(&m.params);
    if (st == ATTN_OK && total < 0) total = k - 1; /* the first k past the last allocation */
    CHECK(t_alloc_live() == 0, "fail at %lld: %lld blocks leaked", (long long)k, (long long)t_alloc_live());
    t_alloc_uninstall();
    if (unexpected || k > 20000) break;
  }
  remove(ckpt);
  printf("failing-allocator sweep: %lld allocation points, each failed once, nothing leaked\n", (long long)total);
  CHECK(total > 20 && failures_seen == total, "allocation steps %lld, failures %lld", (long long)total, (long long)failures_seen);
}

/* Gradients are bitwise identical for 1, 2 and 3 threads (a model large enough that elementwise
 * ops split over the pool). */
static void test_thread_determinism(void) {
  float *ref = NULL;
  int64_t total = 0;
  const int saved = attn_get_num_threads();
  for (int threads = 1; threads <= 3; threads++) {
    CHECK_OK(attn_set_num_threads(threads));
    tiny m;
    CHECK_OK(tiny_init(&m, 16, 32, 64, 21));
    attn_nn_ctx *ctx = attn_nn_ctx_new();
    int32_t ids[4 * 32], tg[4 * 32];
    for (int i = 0; i < 4 * 32; i++) {
      ids[i] = (i * 5 + 3) % 16;
      tg[i] = (i * 3 + 1) % 16;
    }
    const int32_t lens[4] = {32, 20, 7, 32};
    attn_var *loss = attn_nn_cross_entropy(ctx, tiny_forward(ctx, &m, ids, 4, 32, lens), tg, -100, 0.1f);
    CHECK(loss != NULL, "forward: %s", attn_nn_ctx_error(ctx));
    if (loss) CHECK_OK(attn_backward(loss));
    total = attn_nn_params_numel(&m.params);
    float *g = malloc((size_t)total * sizeof(float));
    int64_t at = 0;
    for (int64_t i = 0; i < m.params.n; i++) {
      memcpy(g + at, m.params.items[i]->grad, (size_t)m.params.items[i]->numel * sizeof(float));
      at += m.params.items[i]->numel;
    }
    if (!ref)
      ref = g;
    else {
      CHECK(memcmp(ref, g, (size_t)total * sizeof(float)) == 0, "%d threads: gradients differ from 1 thread", threads);
      free(g);
    }
    attn_nn_ctx_free(ctx);
    attn_nn_params_free_all(&m.params);
  }
  free(ref);
  attn_set_num_threads(saved);
}

static void test_optimizers(void) {
  /* One parameter, gradient fixed to g: compare with hand-computed updates. */
  const float g = 0.5f, w0 = 1.0f;
  for (int kind = 0; kind < 5; kind++) {
    attn_var *p = attn_nn_param_new(1, S(1), "p");
    p->data[0] = w0;
    attn_nn_params ps = {0};
    attn_nn_params_add(&ps, p);
    attn_nn_optim_config cfg = attn_nn_optim_config_default(kind < 3 ? ATTN_NN_OPTIM_SGD : kind == 3 ? ATTN_NN_OPTIM_ADAM : ATTN_NN_OPTIM_ADAMW);
    cfg.lr = 0.1f;
    if (kind >= 1 && kind <= 2) cfg.momentum = 0.9f;
    if (kind == 2) cfg.nesterov = 1;
    if (kind == 4) cfg.weight_decay = 0.1f;
    attn_nn_optim *opt = attn_nn_optim_new(&cfg, &ps);
    double w = w0, v = 0, m1 = 0, m2 = 0;
    for (int t = 1; t <= 3; t++) {
      p->grad[0] = g;
      CHECK_OK(attn_nn_optim_step(opt));
      switch (kind) {
        case 0: w -= 0.1 * g; break;
        case 1: v = 0.9 * v + g; w -= 0.1 * v; break;
        case 2: v = 0.9 * v + g; w -= 0.1 * (g + 0.9 * v); break;
        default:
          if (kind == 4) w -= 0.1 * 0.1 * w;
          m1 = 0.9 * m1 + 0.1 * g;
          m2 = 0.999 * m2 + 0.001 * g * g;
          w -= 0.1 * (m1 / (1 - pow(0.9, t))) / (sqrt(m2 / (1 - pow(0.999, t))) + 1e-8);
      }
      CHECK(near(p->data[0], w, 1e-5), "optimizer %d step %d: %.7g want %.7g", kind, t, p->data[0], w);
    }
    attn_nn_optim_free(opt);
    attn_nn_params_free_all(&ps);
  }
  /* Clipping by the global norm over two tensors. */
  attn_var *a = attn_nn_param_new(1, S(2), "a"), *b = attn_nn_param_new(1, S(1), "b");
  a->grad[0] = 3;
  a->grad[1] = 0;
  b->grad[0] = 4;
  attn_nn_params ps = {0};
  attn_nn_params_add(&ps, a);
  attn_nn_params_add(&ps, b);
  float norm = 0;
  CHECK_OK(attn_nn_clip_grad_norm(&ps, 10.0f, &norm));
  CHECK(near(norm, 5.0, 1e-6) && a->grad[0] == 3.0f, "no clip below max: norm %g", norm);
  CHECK_OK(attn_nn_clip_grad_norm(&ps, 1.0f, &norm));
  CHECK(near(a->grad[0], 0.6, 1e-5) && near(b->grad[0], 0.8, 1e-5), "clipped %g %g", a->grad[0], b->grad[0]);
  attn_nn_params_free_all(&ps);
  /* Warmup + cosine. */
  CHECK(near(attn_nn_lr_warmup_cosine(0, 10, 110, 1.0f, 0.1f), 0.1, 1e-6), "warmup start");
  CHECK(near(attn_nn_lr_warmup_cosine(9, 10, 110, 1.0f, 0.1f), 1.0, 1e-6), "warmup end");
  CHECK(near(attn_nn_lr_warmup_cosine(10, 10, 110, 1.0f, 0.1f), 1.0, 1e-6), "cosine start");
  CHECK(near(attn_nn_lr_warmup_cosine(60, 10, 110, 1.0f, 0.1f), 0.55, 1e-5), "cosine middle");
  CHECK(near(attn_nn_lr_warmup_cosine(110, 10, 110, 1.0f, 0.1f), 0.1, 1e-6), "cosine end");
  CHECK(near(attn_nn_lr_warmup_cosine(500, 10, 110, 1.0f, 0.1f), 0.1, 1e-6), "after the end");
}

static void test_init(void) {
  attn_var *p = attn_nn_param_new(2, S(100, 100), "p"), *q = attn_nn_param_new(2, S(100, 100), "q");
  attn_nn_init_normal(p, 0.5f, 2.0f, 77);
  attn_nn_init_normal(q, 0.5f, 2.0f, 77);
  CHECK(memcmp(p->data, q->data, (size_t)p->numel * 4) == 0, "same seed, same values");
  attn_nn_init_normal(q, 0.5f, 2.0f, 78);
  CHECK(memcmp(p->data, q->data, (size_t)p->numel * 4) != 0, "other seed, other values");
  double s = 0, ss = 0;
  for (int64_t i = 0; i < p->numel; i++) {
    s += p->data[i];
    ss += (double)p->data[i] * p->data[i];
  }
  double mean = s / 1e4, sd = sqrt(ss / 1e4 - mean * mean);
  CHECK(fabs(mean - 0.5) < 0.08 && fabs(sd - 2.0) < 0.08, "normal: mean %g sd %g", mean, sd);
  attn_nn_init_xavier_uniform(p, 100, 50, 1.0f, 3);
  float a = (float)sqrt(6.0 / 150), mx = 0;
  for (int64_t i = 0; i < p->numel; i++) mx = fmaxf(mx, fabsf(p->data[i]));
  CHECK(mx <= a && mx > 0.95f * a, "xavier bound %g vs %g", mx, a);
  attn_nn_init_kaiming_normal(p, 50, (float)sqrt(2.0), 4);
  ss = 0;
  for (int64_t i = 0; i < p->numel; i++) ss += (double)p->data[i] * p->data[i];
  CHECK(fabs(sqrt(ss / 1e4) - 0.2) < 0.01, "kaiming sd %g want 0.2", sqrt(ss / 1e4));
  attn_nn_param_free(p);
  attn_nn_param_free(q);
}

static void test_data_and_schedules(void) {
  int64_t a[50], b[50], seen[50] = {0};
  CHECK_OK(attn_nn_shuffle(a, 50, 9));
  CHECK_OK(attn_nn_shuffle(b, 50, 9));
  CHECK(memcmp(a, b, sizeof a) == 0, "same seed, same permutation");
  for (int i = 0; i < 50; i++)
    if (a[i] >= 0 && a[i] < 50) seen[a[i]]++;
  bool perm = true, moved = false;
  for (int i = 0; i < 50; i++) {
    perm = perm && seen[i] == 1;
    moved = moved || a[i] != i;
  }
  CHECK(perm && moved, "a shuffled permutation");
  CHECK_OK(attn_nn_shuffle(b, 50, 10));
  CHECK(memcmp(a, b, sizeof a) != 0, "other seed, other permutation");
  CHECK_STATUS(attn_nn_shuffle(NULL, 3, 1), ATTN_STATUS_NULL_POINTER);

  const int32_t s0[3] = {5, 6, 7}, s2[6] = {1, 2, 3, 4, 5, 6};
  const int32_t *seqs[3] = {s0, NULL, s2};
  const int64_t sl[3] = {3, 0, 6};
  int32_t ids[12], lens[3];
  CHECK_OK(attn_nn_pad_batch(ids, lens, seqs, sl, 3, 4, -1));
  const int32_t want[12] = {5, 6, 7, -1, -1, -1, -1, -1, 1, 2, 3, 4};
  CHECK(memcmp(ids, want, sizeof want) == 0 && lens[0] == 3 && lens[1] == 0 && lens[2] == 4, "padded batch");
  CHECK_STATUS(attn_nn_pad_batch(ids, lens, seqs, sl, 3, 0, 0), ATTN_STATUS_INVALID_ARGUMENT);

  CHECK(near(attn_nn_lr_step(0, 10, 0.5f, 1.0f), 1.0, 1e-7) && near(attn_nn_lr_step(25, 10, 0.5f, 1.0f), 0.25, 1e-7),
        "step schedule");
  attn_var *p = attn_nn_param_new(1, S(4000), "p");
  attn_nn_init_trunc_normal(p, 0.0f, 1.0f, -0.5f, 2.0f, 5);
  float lo = 1e9f, hi = -1e9f;
  double s = 0;
  for (int64_t i = 0; i < p->numel; i++) {
    lo = fminf(lo, p->data[i]);
    hi = fmaxf(hi, p->data[i]);
    s += p->data[i];
  }
  /* mean of N(0,1) truncated to [-0.5, 2]: (phi(-0.5) - phi(2)) / (Phi(2) - Phi(-0.5)) = 0.4103 */
  CHECK(lo >= -0.5f && hi <= 2.0f && lo < -0.45f && hi > 1.8f && fabs(s / 4000 - 0.4103) < 0.04,
        "trunc normal range [%g, %g] mean %g", lo, hi, s / 4000);
  attn_nn_param_free(p);
}

static void test_positional(void) {
  const int64_t rels[9] = {0, 1, -1, 7, -8, -20, 50, -200, 300};
  const int32_t want_bi[9] = {0, 17, 1, 23, 8, 10, 29, 15, 31}; /* from the T5 reference code */
  for (int i = 0; i < 9; i++)
    CHECK(attn_nn_t5_bucket(rels[i], 1, 32, 128) == want_bi[i], "t5 bucket(%lld) = %d want %d", (long long)rels[i],
          attn_nn_t5_bucket(rels[i], 1, 32, 128), want_bi[i]);
  const int64_t rels1[8] = {0, 1, -1, -15, -16, -20, -100, -1000};
  const int32_t want_uni[8] = {0, 0, 1, 15, 16, 17, 30, 31};
  for (int i = 0; i < 8; i++)
    CHECK(attn_nn_t5_bucket(rels1[i], 0, 32, 128) == want_uni[i], "t5 one-way bucket(%lld)", (long long)rels1[i]);

  attn_nn_ctx *ctx = attn_nn_ctx_new();
  attn_var *pe = attn_nn_sinusoidal(ctx, 50, 8, 10000.0f);
  CHECK(pe && fabsf(pe->data[0 * 8 + 1] - 1.0f) < 1e-6f && fabsf(pe->data[0 * 8 + 0]) < 1e-6f, "pe[0]");
  CHECK(pe && fabsf(pe->data[3 * 8 + 2] - (float)sin(3.0 / pow(10000.0, 2.0 / 8))) < 1e-6f, "pe[3, 2]");
  CHECK(pe && fabsf(pe->data[49 * 8 + 7] - (float)cos(49.0 / pow(10000.0, 6.0 / 8))) < 1e-6f, "pe[49, 7]");

  /* RoPE: the score between positions m and n depends on m - n only, and norms are kept. */
  float qd[8], kd[8];
  t_rng r = t_rng_make(3);
  for (int i = 0; i < 8; i++) {
    qd[i] = t_normal(&r);
    kd[i] = t_normal(&r);
  }
  for (int inter = 0; inter < 2; inter++) {
    double dots[2];
    const int32_t pos_a[2] = {5, 2}, pos_b[2] = {13, 10}; /* both differ by 3 */
    for (int t = 0; t < 2; t++) {
      const int32_t *pos = t ? pos_b : pos_a;
      float both[16];
      memcpy(both, qd, sizeof qd);
      memcpy(both + 8, kd, sizeof kd);
      attn_var *x = attn_nn_tensor(ctx, 2, S(2, 8), both, 0);
      attn_var *y = attn_nn_rope(ctx, x, pos, 10000.0f, 0, inter);
      double d = 0, n0 = 0, n1 = 0;
      for (int i = 0; y && i < 8; i++) {
        d += (double)y->data[i] * y->data[8 + i];
        n0 += (double)y->data[i] * y->data[i];
        n1 += (double)qd[i] * qd[i];
      }
      dots[t] = d;
      CHECK(fabs(n0 - n1) < 1e-4 * n1, "rope keeps norms");
    }
    CHECK(fabs(dots[0] - dots[1]) < 1e-4, "rope relative: %g vs %g", dots[0], dots[1]);
  }

  /* Unfused attention without extras equals the fused kernel. */
  t_rng r2 = t_rng_make(4);
  float qv[2 * 2 * 3 * 4], kv[2 * 2 * 5 * 4];
  for (int i = 0; i < 48; i++) qv[i] = t_normal(&r2);
  for (int i = 0; i < 80; i++) kv[i] = t_normal(&r2);
  attn_var *q = attn_nn_tensor(ctx, 4, S(2, 2, 3, 4), qv, 0), *k = attn_nn_tensor(ctx, 4, S(2, 2, 5, 4), kv, 0);
  attn_var *o1 = attn_nn_attention_unfused(ctx, q, k, k, NULL, NULL, NULL, NULL, 0.0f);
  attn_var *o2 = attn_nn_sdpa(ctx, q, k, k, 0.0f, 0, NULL);
  double err = 0;
  for (int64_t i = 0; o1 && o2 && i < o1->numel; i++) err = fmax(err, fabs(o1->data[i] - o2->data[i]));
  CHECK(o1 && o2 && err < 1e-5, "unfused vs fused: %g", err);
  CHECK(attn_nn_rope(ctx, q, NULL, 10000.0f, 3, 0) == NULL && attn_nn_ctx_status(ctx) == ATTN_STATUS_INVALID_ARGUMENT, "odd rot");
  attn_nn_ctx_free(ctx);
}

/* RNN masking: padded steps output 0 and leave the state; h_last is the state at len - 1. */
static void test_rnn_masking(void) {
  for (int kind = 0; kind < 2; kind++) {
    attn_nn_params ps = {0};
    attn_nn_rnn r;
    CHECK_OK(attn_nn_rnn_init(&r, (attn_nn_rnn_kind)kind, 2, 3, 5, &ps));
    attn_nn_ctx *ctx = attn_nn_ctx_new();
    float xd[2 * 4 * 2];
    for (int i = 0; i < 16; i++) xd[i] = 0.1f * (float)(i % 7) - 0.3f;
    attn_var *x = attn_nn_tensor(ctx, 3, S(2, 4, 2), xd, 0);
    const int32_t lens[2] = {4, 2};
    attn_var *h_last = NULL;
    attn_var *o = attn_nn_rnn_forward(ctx, &r, x, lens, 0, &h_last);
    CHECK(o && h_last, "rnn forward: %s", attn_nn_ctx_error(ctx));
    if (o && h_last) {
      for (int j = 0; j < 3; j++) {
        CHECK(o->data[(1 * 4 + 2) * 3 + j] == 0.0f && o->data[(1 * 4 + 3) * 3 + j] == 0.0f, "padded output is 0");
        CHECK(h_last->data[3 + j] == o->data[(1 * 4 + 1) * 3 + j], "h_last of a short sequence");
        CHECK(h_last->data[j] == o->data[(0 * 4 + 3) * 3 + j], "h_last of a full sequence");
      }
      /* the same sequence alone, unpadded, gives the same outputs */
      attn_var *x1 = attn_nn_slice(ctx, attn_nn_slice(ctx, x, 0, 1, 2), 1, 0, 2);
      attn_var *o1 = attn_nn_rnn_forward(ctx, &r, x1, NULL, 0, NULL);
      for (int i = 0; o1 && i < 6; i++) CHECK(fabsf(o1->data[i] - o->data[12 + i]) < 1e-7f, "unpadded = padded");
      /* reverse of a short sequence starts at its last valid step */
      attn_var *orv = attn_nn_rnn_forward(ctx, &r, x, lens, 1, NULL);
      attn_var *x1r = attn_nn_tensor(ctx, 3, S(1, 2, 2), NULL, 0);
      if (x1r && x1) {
        memcpy(x1r->data, x1->data + 2, 2 * sizeof(float));
        memcpy(x1r->data + 2, x1->data, 2 * sizeof(float));
      }
      attn_var *o1r = attn_nn_rnn_forward(ctx, &r, x1r, NULL, 0, NULL);
      for (int j = 0; orv && o1r && j < 3; j++)
        CHECK(fabsf(orv->data[(1 * 4 + 1) * 3 + j] - o1r->data[j]) < 1e-7f, "reverse starts at len - 1");
    }
    attn_nn_ctx_free(ctx);
    attn_nn_rnn_free(&r);
    attn_nn_params_clear(&ps);
  }
}

int main(void) {
  test_rnn_masking();
  test_positional();
  test_data_and_schedules();
  test_accumulation();
  test_no_grad();
  test_errors();
  test_optimizers();
  test_init();
  test_small_model_and_failing_allocator();
  test_thread_determinism();
  return t_finish("test_nn_core");
}
