/* A tiny Transformer trained from scratch on sequence reversal: inputs of 8 to 16 random tokens
 * (right-padded to 16, key padding through the attention's key lengths), target at position i is
 * the input token L-1-i. The model: token embedding + learned position embedding + learned
 * position-from-the-end embedding, two pre-LN blocks (d 64, 4 heads, GELU MLP 128), final
 * layernorm and a linear head; AdamW with warmup + cosine and global-norm clipping.
 * Pass: >= 99% of 1000 fresh sequences reversed exactly (every token right).
 * With ATTN_TEST_QUICK=1 (the sanitizer run) it trains a few steps only and checks that the
 * loss falls. */
#include "attn/nn.h"
#include "common.h"

#define T 16
#define LMIN 8
#define VOCAB 10 /* tokens 0..9; padding positions hold token 0 and are masked */
#define DIM 64
#define HEADS 4
#define HIDDEN 128
#define LAYERS 2
#define BATCH 64

#define S(...) ((const int64_t[]){__VA_ARGS__})

typedef struct model {
  attn_nn_params params;
  attn_nn_embedding_layer tok, pos, rpos;
  attn_nn_block blk[LAYERS];
  attn_nn_layernorm_layer lnf;
  attn_nn_linear_layer head;
} model;

static attn_status model_init(model *m, uint64_t seed) {
  memset(m, 0, sizeof *m);
  attn_status st = attn_nn_embedding_init(&m->tok, VOCAB, DIM, 0.3f, seed, &m->params);
  if (st == ATTN_OK) st = attn_nn_embedding_init(&m->pos, T, DIM, 0.3f, seed + 1, &m->params);
  if (st == ATTN_OK) st = attn_nn_embedding_init(&m->rpos, T + 1, DIM, 0.3f, seed + 2, &m->params);
  for (int l = 0; l < LAYERS && st == ATTN_OK; l++)
    st = attn_nn_block_init(&m->blk[l], DIM, HEADS, HIDDEN, ATTN_NN_ACT_GELU, seed + 10 + (uint64_t)l, &m->params);
  if (st == ATTN_OK) st = attn_nn_layernorm_init(&m->lnf, DIM, 1e-5f, &m->params);
  if (st == ATTN_OK) st = attn_nn_linear_init(&m->head, DIM, VOCAB, 1, seed + 3, &m->params);
  return st;
}

/* ids, lens: a batch of B sequences; returns logits (B, T, VOCAB). */
static attn_var *model_forward(attn_nn_ctx *ctx, model *m, const int32_t *ids, const int32_t *lens, int64_t B) {
  int32_t pos[T], rpos[BATCH * T];
  for (int t = 0; t < T; t++) pos[t] = t;
  for (int64_t b = 0; b < B; b++)
    for (int t = 0; t < T; t++) rpos[b * T + t] = t < lens[b] ? lens[b] - 1 - t : T;
  attn_var *x = attn_nn_embedding_forward(ctx, &m->tok, ids, 2, S(B, T));
  x = attn_nn_add(ctx, x, attn_nn_embedding_forward(ctx, &m->pos, pos, 1, S(T)));
  x = attn_nn_add(ctx, x, attn_nn_embedding_forward(ctx, &m->rpos, rpos, 2, S(B, T)));
  for (int l = 0; l < LAYERS; l++) x = attn_nn_block_forward(ctx, &m->blk[l], x, 0, lens);
  return attn_nn_linear_forward(ctx, &m->head, attn_nn_layernorm_forward(ctx, &m->lnf, x));
}

static void make_batch(t_rng *r, int32_t *ids, int32_t *lens, int32_t *targets, int64_t B) {
  for (int64_t b = 0; b < B; b++) {
    int32_t L = (int32_t)t_int(r, LMIN, T);
    lens[b] = L;
    for (int t = 0; t < T; t++) ids[b * T + t] = t < L ? (int32_t)t_int(r, 0, VOCAB - 1) : 0;
    for (int t = 0; t < T; t++) targets[b * T + t] = t < L ? ids[b * T + L - 1 - t] : -100;
  }
}

int main(void) {
  const char *quick_env = getenv("ATTN_TEST_QUICK");
  const bool quick = quick_env && quick_env[0] && strcmp(quick_env, "0") != 0;
  const int steps = quick ? 15 : 400;
  if (quick)
    printf("test_nn_train: ATTN_TEST_QUICK is set: training %d steps only and checking that the loss "
           "falls; the reversal-accuracy bar runs in the normal build\n", steps);

  model m;
  CHECK_OK(model_init(&m, 2024));
  attn_nn_optim_config cfg = attn_nn_optim_config_default(ATTN_NN_OPTIM_ADAMW);
  cfg.weight_decay = 0.01f;
  attn_nn_optim *opt = attn_nn_optim_new(&cfg, &m.params);
  attn_nn_ctx *ctx = attn_nn_ctx_new();
  CHECK(opt && ctx, "setup");
  if (!opt || !ctx) return t_finish("test_nn_train");

  t_rng r = t_rng_make(7);
  int32_t ids[BATCH * T], lens[BATCH], tg[BATCH * T];
  float first_loss = 0, loss_avg = 0;
  for (int s = 0; s < steps; s++) {
    make_batch(&r, ids, lens, tg, BATCH);
    attn_nn_ctx_reset(ctx);
    attn_nn_params_zero_grad(&m.params);
    attn_var *loss = attn_nn_cross_entropy(ctx, model_forward(ctx, &m, ids, lens, BATCH), tg, -100, 0.0f);
    if (!loss) {
      CHECK(false, "step %d: %s", s, attn_nn_ctx_error(ctx));
      break;
    }
    attn_status st = attn_backward(loss);
    if (st == ATTN_OK) st = attn_nn_clip_grad_norm(&m.params, 1.0f, NULL);
    attn_nn_optim_set_lr(opt, attn_nn_lr_warmup_cosine(s, quick ? 5 : 50, steps, 3e-3f, 1e-4f));
    if (st == ATTN_OK) st = attn_nn_optim_step(opt);
    CHECK_OK(st);
    if (st != ATTN_OK) break;
    if (s == 0) first_loss = loss->data[0];
    loss_avg = s == 0 ? loss->data[0] : 0.9f * loss_avg + 0.1f * loss->data[0];
    if (!quick && (s + 1) % 100 == 0) printf("step %4d  loss %.4f\n", s + 1, (double)loss_avg);
  }
  CHECK(loss_avg < first_loss, "loss %g -> %g", (double)first_loss, (double)loss_avg);

  if (!quick) {
    /* Evaluation on fresh sequences, without recording. */
    attn_nn_set_grad_enabled(ctx, 0);
    int correct = 0, total = 0;
    for (int e = 0; e < 1000 / 50; e++) {
      make_batch(&r, ids, lens, tg, 50);
      attn_nn_ctx_reset(ctx);
      attn_var *logits = model_forward(ctx, &m, ids, lens, 50);
      CHECK(logits != NULL, "eval forward: %s", attn_nn_ctx_error(ctx));
      if (!logits) break;
      for (int b = 0; b < 50; b++) {
        bool ok = true;
        for (int t = 0; t < lens[b]; t++) {
          const float *row = logits->data + ((int64_t)b * T + t) * VOCAB;
          int best = 0;
          for (int v = 1; v < VOCAB; v++)
            if (row[v] > row[best]) best = v;
          if (best != tg[b * T + t]) ok = false;
        }
        correct += ok;
        total++;
      }
    }
    const double acc = total ? (double)correct / total : 0.0;
    printf("reversal sequence accuracy: %.1f%% (%d / %d)\n", 100.0 * acc, correct, total);
    CHECK(acc >= 0.99, "sequence accuracy %.3f < 0.99", acc);
  }

  attn_nn_ctx_free(ctx);
  attn_nn_optim_free(opt);
  attn_nn_params_free_all(&m.params);
  return t_finish("test_nn_train");
}
