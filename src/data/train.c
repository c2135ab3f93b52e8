/* The training loop, model, checkpoints and evaluation of attn/train.h. */
#include "attn/train.h"
#include "attn/dataset.h"
#include "attn/safetensors.h"

#include "../io/json.h"
#include "internal.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#define MAX_LAYERS 16
#define EVAL_CHUNK 100
#define S(...) ((const int64_t[]){__VA_ARGS__})

struct attn_seq_model {
  attn_train_config cfg;
  attn_task_shape shape;
  attn_nn_params params;
  attn_nn_embedding_layer tok, pos, rpos;
  attn_nn_block blk[MAX_LAYERS];
  attn_nn_layernorm_layer lnf;
  attn_nn_linear_layer head;
  attn_nn_ctx *ctx;
};

attn_train_config attn_train_config_default(attn_task_id task) {
  attn_train_config c;
  memset(&c, 0, sizeof c);
  c.task = attn_task_config_default(task);
  c.dim = 64;
  c.heads = 4;
  c.hidden = 128;
  c.layers = 2;
  c.seed = 1;
  c.steps = 600;
  c.batch = 64;
  c.warmup = 50;
  c.lr = 3e-3f;
  c.min_lr = 1e-4f;
  c.weight_decay = 0.01f;
  c.clip = 1.0f;
  c.log_every = 20;
  c.ckpt_every = 200;
  c.eval_examples = 500;
  c.out_dir = NULL;
  c.resume = 0;
  c.fault_nan_step = -1;
  c.shuffle = 1;
  return c;
}

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static attn_status check_train_config(const attn_train_config *c, attn_task_shape *shape) {
  if (c->data_shape.seq_len > 0) { /* your own data */
    const attn_task_shape *d = &c->data_shape;
    if (d->seq_len > ATTN_DATA_MAX_LEN || d->vocab < 2 || d->n_classes < 1 ||
        (d->kind != ATTN_TASK_LABELING && d->kind != ATTN_TASK_CLASSIFICATION))
      return attn__fail(ATTN_STATUS_INVALID_ARGUMENT,
                        "train config: bad data shape (length %d, vocabulary %d, %d classes)",
                        (int)d->seq_len, (int)d->vocab, (int)d->n_classes);
    *shape = *d;
  } else {
    attn_status st = attn_task_get_shape(&c->task, shape);
    if (st != ATTN_OK) return st;
  }
#define RANGE(field, lo, hi)                                                                    \
  if (c->field < (lo) || c->field > (hi))                                                       \
    return attn__fail(ATTN_STATUS_INVALID_ARGUMENT,                                             \
                      "train config: " #field " %lld not in [%lld, %lld]", (long long)c->field, \
                      (long long)(lo), (long long)(hi));
  RANGE(dim, 4, 4096)
  RANGE(heads, 1, 256)
  RANGE(hidden, 1, 65536)
  RANGE(layers, 1, MAX_LAYERS)
  RANGE(steps, 1, 1000000000)
  RANGE(batch, 1, 1 << 20)
  RANGE(warmup, 0, 1000000000)
  RANGE(log_every, 1, 1000000000)
  RANGE(ckpt_every, 0, 1000000000)
  RANGE(eval_examples, 0, 100000000)
#undef RANGE
  if (c->dim % c->heads != 0)
    return attn__fail(ATTN_STATUS_INVALID_ARGUMENT,
                      "train config: dim %lld is not a multiple of heads %lld", (long long)c->dim,
                      (long long)c->heads);
  if (!(c->lr > 0 && isfinite(c->lr)) || !(c->min_lr >= 0 && isfinite(c->min_lr)) ||
      !(c->weight_decay >= 0 && isfinite(c->weight_decay)) || !(c->clip >= 0 && isfinite(c->clip)))
    return attn__fail(ATTN_STATUS_INVALID_ARGUMENT,
                      "train config: lr must be > 0, min_lr, weight_decay and clip >= 0 (finite)");
  return ATTN_OK;
}

/* ---- the model --------------------------------------------------------------------------- */

void attn_seq_model_free(attn_seq_model *m) {
  if (!m) return;
  attn_nn_ctx_free(m->ctx);
  attn_nn_params_free_all(&m->params);
  attn__free(m);
}

static attn_status add_prefixed(attn_seq_model *m, int64_t first, const char *prefix,
                                attn_status st) {
  if (st != ATTN_OK) return st;
  return attn_nn_params_prefix(&m->params, first, prefix);
}

attn_seq_model *attn_seq_model_new(const attn_train_config *cfg) {
  attn__clear_error();
  attn_task_shape sh = {0};
  if (!cfg) {
    attn__fail(ATTN_STATUS_NULL_POINTER, "attn_seq_model_new: cfg is NULL");
    return NULL;
  }
  if (check_train_config(cfg, &sh) != ATTN_OK) return NULL;
  attn_seq_model *m = attn__malloc(sizeof *m, 64);
  if (m) memset(m, 0, sizeof *m);
  if (!m) {
    attn__fail(ATTN_STATUS_OUT_OF_MEMORY, "attn_seq_model_new: out of memory");
    return NULL;
  }
  m->cfg = *cfg;
  m->cfg.out_dir = NULL;
  m->cfg.resume = 0;
  m->cfg.data_train = m->cfg.data_valid = NULL; /* borrowed for one run only */
  m->shape = sh;
  const uint64_t seed = cfg->seed;
  const int64_t T = sh.seq_len, D = cfg->dim;
  int64_t first = 0;
  attn_status st = attn_nn_embedding_init(&m->tok, sh.vocab, D, 0.3f, seed, &m->params);
  st = add_prefixed(m, first, "tok", st);
  first = m->params.n;
  if (st == ATTN_OK)
    st = add_prefixed(m, first, "pos",
                      attn_nn_embedding_init(&m->pos, T, D, 0.3f, seed + 1, &m->params));
  first = m->params.n;
  if (st == ATTN_OK)
    st = add_prefixed(m, first, "rpos",
                      attn_nn_embedding_init(&m->rpos, T + 1, D, 0.3f, seed + 2, &m->params));
  for (int64_t l = 0; l < cfg->layers && st == ATTN_OK; l++) {
    char name[32];
    snprintf(name, sizeof name, "blocks.%lld", (long long)l);
    first = m->params.n;
    st = add_prefixed(m, first, name,
                      attn_nn_block_init(&m->blk[l], D, cfg->heads, cfg->hidden, ATTN_NN_ACT_GELU,
                                         seed + 10 + (uint64_t)l, &m->params));
  }
  first = m->params.n;
  if (st == ATTN_OK)
    st = add_prefixed(m, first, "lnf", attn_nn_layernorm_init(&m->lnf, D, 1e-5f, &m->params));
  first = m->params.n;
  if (st == ATTN_OK)
    st = add_prefixed(m, first, "head",
                      attn_nn_linear_init(&m->head, D, sh.n_classes, 1, seed + 3, &m->params));
  if (st == ATTN_OK) {
    m->ctx = attn_nn_ctx_new();
    if (!m->ctx) st = attn__fail(ATTN_STATUS_OUT_OF_MEMORY, "attn_seq_model_new: out of memory");
  }
  if (st != ATTN_OK) {
    /* Layers that were initialised put their parameters in the list: free them through it. */
    attn_seq_model_free(m);
    return NULL;
  }
  return m;
}

int64_t attn_seq_model_numel(const attn_seq_model *m) {
  return m ? attn_nn_params_numel(&m->params) : 0;
}
const attn_nn_params *attn_seq_model_params(const attn_seq_model *m) {
  return m ? &m->params : NULL;
}

/* logits (B, T, C) for ids (B, T), lens[B]; NULL on error (the context's status says). */
static attn_var *forward(attn_seq_model *m, const int32_t *ids, const int32_t *lens, int64_t B,
                         int32_t *pos, int32_t *rpos) {
  attn_nn_ctx *ctx = m->ctx;
  const int64_t T = m->shape.seq_len;
  for (int64_t t = 0; t < T; t++) pos[t] = (int32_t)t;
  for (int64_t b = 0; b < B; b++)
    for (int64_t t = 0; t < T; t++)
      rpos[b * T + t] = t < lens[b] ? lens[b] - 1 - (int32_t)t : (int32_t)T;
  attn_var *x = attn_nn_embedding_forward(ctx, &m->tok, ids, 2, S(B, T));
  x = attn_nn_add(ctx, x, attn_nn_embedding_forward(ctx, &m->pos, pos, 1, S(T)));
  x = attn_nn_add(ctx, x, attn_nn_embedding_forward(ctx, &m->rpos, rpos, 2, S(B, T)));
  for (int64_t l = 0; l < m->cfg.layers; l++)
    x = attn_nn_block_forward(ctx, &m->blk[l], x, 0, lens);
  return attn_nn_linear_forward(ctx, &m->head, attn_nn_layernorm_forward(ctx, &m->lnf, x));
}

/* Counts right target positions and right sequences of a batch. */
static void score(const float *logits, const int32_t *tg, int64_t B, int64_t T, int64_t C,
                  int64_t *tok_ok, int64_t *tok_n, int64_t *seq_ok) {
  for (int64_t b = 0; b < B; b++) {
    int all = 1;
    for (int64_t t = 0; t < T; t++) {
      const int32_t want = tg[b * T + t];
      if (want == ATTN_TASK_IGNORE) continue;
      const float *row = logits + (b * T + t) * C;
      int64_t best = 0;
      for (int64_t c = 1; c < C; c++)
        if (row[c] > row[best]) best = c;
      (*tok_n)++;
      if (best == want)
        (*tok_ok)++;
      else
        all = 0;
    }
    *seq_ok += all;
  }
}

typedef struct batch_buf {
  int32_t *ids, *lens, *tg, *pos, *rpos;
} batch_buf;

static void batch_free(batch_buf *b) {
  attn__free(b->ids);
  attn__free(b->lens);
  attn__free(b->tg);
  attn__free(b->pos);
  attn__free(b->rpos);
  memset(b, 0, sizeof *b);
}

static attn_status batch_alloc(batch_buf *b, int64_t B, int64_t T) {
  memset(b, 0, sizeof *b);
  b->ids = attn__malloc((size_t)(B * T) * sizeof(int32_t), 64);
  b->lens = attn__malloc((size_t)B * sizeof(int32_t), 64);
  b->tg = attn__malloc((size_t)(B * T) * sizeof(int32_t), 64);
  b->pos = attn__malloc((size_t)T * sizeof(int32_t), 64);
  b->rpos = attn__malloc((size_t)(B * T) * sizeof(int32_t), 64);
  if (!b->ids || !b->lens || !b->tg || !b->pos || !b->rpos) {
    batch_free(b);
    return attn__fail(ATTN_STATUS_OUT_OF_MEMORY, "training batch: out of memory");
  }
  return ATTN_OK;
}

/* A batch of a task's split, or of a dataset when ds is not NULL. */
static attn_status get_batch(const attn_task_config *task, const attn_dataset *ds, attn_split split,
                             int64_t first, int64_t n, batch_buf *bb) {
  if (ds) return attn_dataset_batch(ds, first, n, bb->ids, bb->lens, bb->tg);
  return attn_task_batch(task, split, first, n, bb->ids, bb->lens, bb->tg);
}

static attn_status eval_impl(attn_seq_model *m, const attn_task_config *task,
                             const attn_dataset *ds, attn_split split, int64_t n,
                             attn_eval_result *res);

/* The training batch of positions [first, first + n) of a dataset visited in the seeded order of
 * each epoch (attn_data_shuffle_order); perm (ds->n entries) caches the order of epoch *epoch
 * (-1: none yet). */
static attn_status shuffled_batch(const attn_dataset *ds, uint64_t seed, int64_t first, int64_t n,
                                  int64_t *perm, int64_t *epoch, batch_buf *bb) {
  const int64_t T = ds->seq_len;
  for (int64_t b = 0; b < n; b++) {
    const int64_t p = first + b, e = p / ds->n;
    if (e != *epoch) {
      attn_status st = attn_data_shuffle_order(perm, ds->n, seed, e);
      if (st != ATTN_OK) return st;
      *epoch = e;
    }
    const int64_t i = perm[p % ds->n];
    memcpy(bb->ids + b * T, ds->ids + i * T, (size_t)T * sizeof(int32_t));
    memcpy(bb->tg + b * T, ds->targets + i * T, (size_t)T * sizeof(int32_t));
    bb->lens[b] = ds->lens[i];
  }
  return ATTN_OK;
}

attn_status attn_seq_model_eval_data(attn_seq_model *m, const attn_dataset *ds, int64_t n,
                                     attn_eval_result *res) {
  attn__clear_error();
  if (!m || !ds || !res)
    return attn__fail(ATTN_STATUS_NULL_POINTER, "attn_seq_model_eval_data: NULL argument");
  memset(res, 0, sizeof *res);
  if (ds->seq_len != m->shape.seq_len || ds->kind != m->shape.kind)
    return attn__fail(ATTN_STATUS_INVALID_ARGUMENT,
                      "data (%s, length %d) does not fit the model (%s, length %d)",
                      attn_task_kind_name(ds->kind), (int)ds->seq_len,
                      attn_task_kind_name(m->shape.kind), (int)m->shape.seq_len);
  return eval_impl(m, NULL, ds, ATTN_SPLIT_VALID, n < ds->n ? n : ds->n, res);
}

attn_status attn_seq_model_eval(attn_seq_model *m, const attn_task_config *task, attn_split split,
                                int64_t n, attn_eval_result *res) {
  attn__clear_error();
  if (!m || !task || !res)
    return attn__fail(ATTN_STATUS_NULL_POINTER, "attn_seq_model_eval: NULL argument");
  memset(res, 0, sizeof *res);
  attn_task_shape sh = {0};
  attn_status st = attn_task_get_shape(task, &sh);
  if (st != ATTN_OK) return st;
  if (m->cfg.data_shape.seq_len > 0)
    return attn__fail(ATTN_STATUS_INVALID_ARGUMENT,
                      "the model was trained on your own data, not on task %s",
                      attn_task_name(task->id));
  if (sh.seq_len != m->shape.seq_len || sh.vocab != m->shape.vocab ||
      sh.n_classes != m->shape.n_classes)
    return attn__fail(
        ATTN_STATUS_INVALID_ARGUMENT,
        "task %s (length %d, vocabulary %d) does not fit the model (length %d, vocabulary %d)",
        attn_task_name(task->id), (int)sh.seq_len, (int)sh.vocab, (int)m->shape.seq_len,
        (int)m->shape.vocab);
  return eval_impl(m, task, NULL, split, n, res);
}

static attn_status eval_impl(attn_seq_model *m, const attn_task_config *task,
                             const attn_dataset *ds, attn_split split, int64_t n,
                             attn_eval_result *res) {
  if (n < 0)
    return attn__fail(ATTN_STATUS_INVALID_ARGUMENT, "attn_seq_model_eval: n %lld < 0",
                      (long long)n);
  const int64_t T = m->shape.seq_len, C = m->shape.n_classes;
  batch_buf bb;
  attn_status st = batch_alloc(&bb, EVAL_CHUNK, T);
  if (st != ATTN_OK) return st;
  const int prev = attn_nn_set_grad_enabled(m->ctx, 0);
  int64_t tok_ok = 0, tok_n = 0, seq_ok = 0;
  double loss_sum = 0;
  for (int64_t first = 0; first < n && st == ATTN_OK; first += EVAL_CHUNK) {
    const int64_t B = n - first < EVAL_CHUNK ? n - first : EVAL_CHUNK;
    st = get_batch(task, ds, split, first, B, &bb);
    if (st != ATTN_OK) break;
    attn_nn_ctx_reset(m->ctx);
    attn_var *logits = forward(m, bb.ids, bb.lens, B, bb.pos, bb.rpos);
    attn_var *loss = attn_nn_cross_entropy(m->ctx, logits, bb.tg, ATTN_TASK_IGNORE, 0.0f);
    if (!loss) {
      st = attn_nn_ctx_status(m->ctx);
      break;
    }
    int64_t n_before = tok_n;
    score(logits->data, bb.tg, B, T, C, &tok_ok, &tok_n, &seq_ok);
    loss_sum += (double)loss->data[0] * (double)(tok_n - n_before);
  }
  attn_nn_ctx_reset(m->ctx);
  attn_nn_set_grad_enabled(m->ctx, prev);
  batch_free(&bb);
  if (st != ATTN_OK) return st;
  res->examples = n;
  res->loss = tok_n ? loss_sum / (double)tok_n : 0.0;
  res->token_acc = tok_n ? (double)tok_ok / (double)tok_n : 0.0;
  res->seq_acc = n ? (double)seq_ok / (double)n : 0.0;
  return ATTN_OK;
}

/* A batch of one sequence for predict/attention: checks the length and the token ids, then pads
 * to the model's length. */
static attn_status single_batch(const attn_seq_model *m, const int32_t *ids, int32_t len,
                                batch_buf *bb) {
  const int64_t T = m->shape.seq_len;
  if (len < 1 || len > T)
    return attn__fail(ATTN_STATUS_INVALID_ARGUMENT, "%d tokens; the model takes 1..%lld", (int)len,
                      (long long)T);
  for (int32_t t = 0; t < len; t++)
    if (ids[t] < 0 || ids[t] >= m->shape.vocab)
      return attn__fail(ATTN_STATUS_INVALID_ARGUMENT, "token %d at position %d not in [0, %d)",
                        (int)ids[t], (int)t, (int)m->shape.vocab);
  attn_status st = batch_alloc(bb, 1, T);
  if (st != ATTN_OK) return st;
  for (int64_t t = 0; t < T; t++) bb->ids[t] = t < len ? ids[t] : ATTN_TASK_PAD;
  bb->lens[0] = len;
  return ATTN_OK;
}

attn_status attn_seq_model_predict(attn_seq_model *m, const int32_t *ids, int32_t len,
                                   int32_t *out) {
  attn__clear_error();
  if (!m || !ids || !out)
    return attn__fail(ATTN_STATUS_NULL_POINTER, "attn_seq_model_predict: NULL argument");
  const int64_t C = m->shape.n_classes;
  batch_buf bb;
  attn_status st = single_batch(m, ids, len, &bb);
  if (st != ATTN_OK) return st;
  const int prev = attn_nn_set_grad_enabled(m->ctx, 0);
  attn_nn_ctx_reset(m->ctx);
  attn_var *logits = forward(m, bb.ids, bb.lens, 1, bb.pos, bb.rpos);
  if (!logits)
    st = attn_nn_ctx_status(m->ctx);
  else
    for (int32_t t = 0; t < len; t++) {
      const float *row = logits->data + (int64_t)t * C;
      int32_t best = 0;
      for (int32_t c = 1; c < C; c++)
        if (row[c] > row[best]) best = c;
      out[t] = best;
    }
  attn_nn_ctx_reset(m->ctx);
  attn_nn_set_grad_enabled(m->ctx, prev);
  batch_free(&bb);
  return st;
}

attn_status attn_seq_model_attention(attn_seq_model *m, const int32_t *ids, int32_t len,
                                     float *weights) {
  attn__clear_error();
  if (!m || !ids || !weights)
    return attn__fail(ATTN_STATUS_NULL_POINTER, "attn_seq_model_attention: NULL argument");
  const int64_t T = m->shape.seq_len, H = m->cfg.heads;
  batch_buf bb;
  attn_status st = single_batch(m, ids, len, &bb);
  if (st != ATTN_OK) return st;
  attn_nn_ctx *ctx = m->ctx;
  const int prev = attn_nn_set_grad_enabled(ctx, 0);
  attn_nn_ctx_reset(ctx);
  for (int64_t t = 0; t < T; t++) bb.pos[t] = (int32_t)t;
  for (int64_t t = 0; t < T; t++) bb.rpos[t] = t < len ? len - 1 - (int32_t)t : (int32_t)T;
  attn_var *x = attn_nn_embedding_forward(ctx, &m->tok, bb.ids, 2, S(1, T));
  x = attn_nn_add(ctx, x, attn_nn_embedding_forward(ctx, &m->pos, bb.pos, 1, S(T)));
  x = attn_nn_add(ctx, x, attn_nn_embedding_forward(ctx, &m->rpos, bb.rpos, 2, S(1, T)));
  attn_sdpa_params p = attn_sdpa_params_default();
  p.key_lens = bb.lens;
  p.weights_mode = ATTN_WEIGHTS_PER_HEAD;
  for (int64_t l = 0; l < m->cfg.layers && x; l++) {
    /* The block is pre-LN: its attention sees ln1(x); recompute that sublayer for its weights. */
    attn_var *w = NULL;
    attn_var *xn = attn_nn_layernorm_forward(ctx, &m->blk[l].ln1, x);
    attn_var *y = attn_nn_mha_forward_ex(ctx, &m->blk[l].attn, xn, NULL, &p, &w);
    if (!y || !w) break;
    for (int64_t h = 0; h < H; h++)
      for (int32_t i = 0; i < len; i++)
        memcpy(weights + ((l * H + h) * len + i) * len, w->data + (h * T + i) * T,
               (size_t)len * sizeof(float));
    x = attn_nn_block_forward(ctx, &m->blk[l], x, 0, bb.lens);
  }
  st = attn_nn_ctx_status(ctx);
  attn_nn_ctx_reset(ctx);
  attn_nn_set_grad_enabled(ctx, prev);
  batch_free(&bb);
  return st;
}

/* ---- checkpoints ------------------------------------------------------------------------- */

static void join(char *buf, size_t cap, const char *dir, const char *file) {
  snprintf(buf, cap, "%s/%s", dir, file);
}

static attn_status write_config(const char *dir, const attn_train_config *c,
                                const attn_task_shape *sh, int64_t step, int64_t n_params,
                                const attn_eval_result *valid) {
  char path[4096], tmp[4200];
  join(path, sizeof path, dir, "config.json");
  snprintf(tmp, sizeof tmp, "%s.tmp", path);
  FILE *f = fopen(tmp, "w");
  if (!f)
    return attn__fail(ATTN_STATUS_INVALID_ARGUMENT, "%s: cannot write: %s", tmp, strerror(errno));
  fprintf(
      f,
      "{\n  \"format\": \"attn-seq-model\",\n  \"version\": 1,\n  \"model\": \"transformer\",\n"
      "  \"task\": \"%s\",\n  \"task_kind\": \"%s\",\n  \"n_symbols\": %d,\n  \"min_len\": %d,\n"
      "  \"max_len\": %d,\n  \"task_seed\": %llu,\n  \"seq_len\": %d,\n  \"vocab\": %d,\n"
      "  \"n_classes\": %d,\n  \"dim\": %lld,\n  \"heads\": %lld,\n  \"hidden\": %lld,\n"
      "  \"layers\": %lld,\n  \"seed\": %llu,\n  \"steps\": %lld,\n  \"batch\": %lld,\n"
      "  \"warmup\": %lld,\n  \"lr\": %.9g,\n  \"min_lr\": %.9g,\n  \"weight_decay\": %.9g,\n"
      "  \"clip\": %.9g,\n  \"log_every\": %lld,\n  \"ckpt_every\": %lld,\n"
      "  \"eval_examples\": %lld,\n  \"n_params\": %lld,\n  \"step\": %lld",
      c->data_shape.seq_len > 0 ? "data" : attn_task_name(c->task.id),
      attn_task_kind_name(sh->kind), (int)c->task.n_symbols, (int)c->task.min_len,
      (int)c->task.max_len, (unsigned long long)c->task.seed, (int)sh->seq_len, (int)sh->vocab,
      (int)sh->n_classes, (long long)c->dim, (long long)c->heads, (long long)c->hidden,
      (long long)c->layers, (unsigned long long)c->seed, (long long)c->steps, (long long)c->batch,
      (long long)c->warmup, (double)c->lr, (double)c->min_lr, (double)c->weight_decay,
      (double)c->clip, (long long)c->log_every, (long long)c->ckpt_every,
      (long long)c->eval_examples, (long long)n_params, (long long)step);
  if (c->data_shape.seq_len > 0) fprintf(f, ",\n  \"shuffle\": %d", c->shuffle ? 1 : 0);
  if (valid)
    fprintf(f,
            ",\n  \"valid\": {\"examples\": %lld, \"loss\": %.6g, \"token_acc\": %.6g, "
            "\"seq_acc\": %.6g}",
            (long long)valid->examples, valid->loss, valid->token_acc, valid->seq_acc);
  fprintf(f, "\n}\n");
  int bad = ferror(f) != 0;
  if (fclose(f) != 0) bad = 1;
  if (bad || rename(tmp, path) != 0) {
    remove(tmp);
    return attn__fail(ATTN_STATUS_INVALID_ARGUMENT, "%s: write failed", path);
  }
  return ATTN_OK;
}

typedef struct optim_state {
  attn_nn_params m, v; /* parallel to the model's list */
} optim_state;

static void optim_free(optim_state *o) {
  attn_nn_params_free_all(&o->m);
  attn_nn_params_free_all(&o->v);
}

static attn_status optim_init(optim_state *o, const attn_nn_params *params) {
  memset(o, 0, sizeof *o);
  attn_status st = ATTN_OK;
  for (int64_t i = 0; i < params->n && st == ATTN_OK; i++) {
    const attn_var *p = params->items[i];
    char name[512];
    for (int k = 0; k < 2 && st == ATTN_OK; k++) {
      attn_var *s = attn_nn_param_new(p->ndim, p->shape, NULL);
      if (!s) {
        st = attn__fail(ATTN_STATUS_OUT_OF_MEMORY, "optimizer state: out of memory");
        break;
      }
      snprintf(name, sizeof name, "%s.%s", k ? "v" : "m", params->names[i]);
      st = attn_nn_params_add_named(k ? &o->v : &o->m, s, name);
      if (st != ATTN_OK) attn_nn_param_free(s);
    }
  }
  if (st != ATTN_OK) optim_free(o);
  return st;
}

/* AdamW, step t >= 1 (PyTorch's update). */
static void adamw_step(const attn_nn_params *params, optim_state *o, int64_t t, float lr,
                       float wd) {
  const float b1 = 0.9f, b2 = 0.999f, eps = 1e-8f;
  const float bc1 = (float)(1.0 - pow(0.9, (double)t)), bc2 = (float)(1.0 - pow(0.999, (double)t));
  const float sq_bc2 = sqrtf(bc2);
  for (int64_t i = 0; i < params->n; i++) {
    attn_var *p = params->items[i];
    float *m = o->m.items[i]->data, *v = o->v.items[i]->data;
    const float *g = p->grad;
    if (!g) continue;
    for (int64_t j = 0; j < p->numel; j++) {
      float x = p->data[j];
      x -= lr * wd * x;
      m[j] = b1 * m[j] + (1.0f - b1) * g[j];
      v[j] = b2 * v[j] + (1.0f - b2) * g[j] * g[j];
      x -= (lr / bc1) * m[j] / (sqrtf(v[j]) / sq_bc2 + eps);
      p->data[j] = x;
    }
  }
}

static attn_status save_checkpoint(const char *dir, attn_seq_model *m, optim_state *o, int64_t step,
                                   const attn_eval_result *valid) {
  char path[4096], step_text[32];
  snprintf(step_text, sizeof step_text, "%lld", (long long)step);
  const char *meta[4] = {"format", "attn-seq-model", "step", step_text};
  join(path, sizeof path, dir, "optim.safetensors");
  attn_status st = ATTN_OK;
  if (o) {
    /* m and v in one file: a combined list (pointers only). */
    attn_nn_params both = {0};
    for (int64_t i = 0; i < o->m.n && st == ATTN_OK; i++)
      st = attn_nn_params_add_named(&both, o->m.items[i], o->m.names[i]);
    for (int64_t i = 0; i < o->v.n && st == ATTN_OK; i++)
      st = attn_nn_params_add_named(&both, o->v.items[i], o->v.names[i]);
    if (st == ATTN_OK) st = attn_nn_save(path, &both, meta, 2);
    attn_nn_params_clear(&both);
  }
  join(path, sizeof path, dir, "model.safetensors");
  if (st == ATTN_OK) st = attn_nn_save(path, &m->params, meta, 2);
  if (st == ATTN_OK)
    st = write_config(dir, &m->cfg, &m->shape, step, attn_seq_model_numel(m), valid);
  return st;
}

/* The whole of a small file (at most 16 MB), NUL-terminated, from attn__malloc. */
static attn_status read_file(const char *path, char **text, size_t *len) {
  FILE *f = fopen(path, "rb");
  if (!f)
    return attn__fail(ATTN_STATUS_INVALID_ARGUMENT, "%s: cannot open: %s", path, strerror(errno));
  long size = -1;
  if (fseek(f, 0, SEEK_END) == 0) size = ftell(f);
  if (size < 0 || size > (1l << 24) || fseek(f, 0, SEEK_SET) != 0) {
    fclose(f);
    return attn__fail(ATTN_STATUS_INVALID_ARGUMENT, "%s: cannot read (or larger than 16 MB)", path);
  }
  char *buf = attn__malloc((size_t)size + 1, 64);
  if (!buf) {
    fclose(f);
    return attn__fail(ATTN_STATUS_OUT_OF_MEMORY, "%s: out of memory", path);
  }
  const size_t got = fread(buf, 1, (size_t)size, f);
  const int bad = got != (size_t)size || ferror(f);
  fclose(f);
  if (bad) {
    attn__free(buf);
    return attn__fail(ATTN_STATUS_INVALID_ARGUMENT, "%s: read failed", path);
  }
  buf[size] = '\0';
  *text = buf;
  *len = (size_t)size;
  return ATTN_OK;
}

static attn_status jint(const attn__json_doc *doc, const char *path, const char *key, int64_t lo,
                        int64_t hi, int64_t *out) {
  const attn__json_node *n = attn__json_get(doc, attn__json_root(doc), key);
  if (!n || n->kind != ATTN__JSON_NUMBER || !n->is_int || n->ival < lo || n->ival > hi)
    return attn__fail(ATTN_STATUS_INVALID_ARGUMENT,
                      "%s: '%s' missing or not an integer in [%lld, %lld]", path, key,
                      (long long)lo, (long long)hi);
  *out = n->ival;
  return ATTN_OK;
}

static attn_status jfloat(const attn__json_doc *doc, const char *path, const char *key,
                          float *out) {
  const attn__json_node *n = attn__json_get(doc, attn__json_root(doc), key);
  if (!n || n->kind != ATTN__JSON_NUMBER || !isfinite(n->num))
    return attn__fail(ATTN_STATUS_INVALID_ARGUMENT, "%s: '%s' missing or not a number", path, key);
  *out = (float)n->num;
  return ATTN_OK;
}

static attn_status read_config(const char *dir, attn_train_config *c, int64_t *step) {
  char path[4096];
  join(path, sizeof path, dir, "config.json");
  char *text = NULL;
  size_t len = 0;
  attn_status st = read_file(path, &text, &len);
  if (st != ATTN_OK) return st;
  attn__json_doc doc;
  memset(&doc, 0, sizeof doc);
  st = attn__json_parse(&doc, text, len, path);
  attn__free(text);
  if (st != ATTN_OK) return st;
  const attn__json_node *root = attn__json_root(&doc);
  const attn__json_node *fmt = attn__json_get(&doc, root, "format");
  const attn__json_node *task = attn__json_get(&doc, root, "task");
  attn_task_id id = ATTN_TASK_COPY;
  const int is_data = task && task->kind == ATTN__JSON_STRING && strcmp(task->str, "data") == 0;
  if (!fmt || fmt->kind != ATTN__JSON_STRING || strcmp(fmt->str, "attn-seq-model") != 0)
    st = attn__fail(ATTN_STATUS_INVALID_ARGUMENT,
                    "%s: not an attn-seq-model checkpoint (no \"format\": \"attn-seq-model\")",
                    path);
  else if (!task || task->kind != ATTN__JSON_STRING)
    st = attn__fail(ATTN_STATUS_INVALID_ARGUMENT, "%s: 'task' missing", path);
  else if (!is_data && attn_task_from_name(task->str, &id) != ATTN_OK)
    st = attn__fail(ATTN_STATUS_INVALID_ARGUMENT, "%s: unknown task '%s'", path, task->str);
  *c = attn_train_config_default(id);
  int64_t v = 0;
  const int64_t big = INT64_MAX;
#define GETI(key, field, lo, hi) \
  if (st == ATTN_OK && (st = jint(&doc, path, key, lo, hi, &v)) == ATTN_OK) c->field = v;
  GETI("n_symbols", task.n_symbols, 2, 4096)
  GETI("min_len", task.min_len, 1, 1024)
  GETI("max_len", task.max_len, 1, 1024)
  GETI("task_seed", task.seed, 0, big)
  GETI("dim", dim, 1, big)
  GETI("heads", heads, 1, big)
  GETI("hidden", hidden, 1, big)
  GETI("layers", layers, 1, big)
  GETI("seed", seed, 0, big)
  GETI("steps", steps, 1, big)
  GETI("batch", batch, 1, big)
  GETI("warmup", warmup, 0, big)
  GETI("log_every", log_every, 1, big)
  GETI("ckpt_every", ckpt_every, 0, big)
  GETI("eval_examples", eval_examples, 0, big)
  if (is_data) {
    const attn__json_node *kind = attn__json_get(&doc, root, "task_kind");
    if (st == ATTN_OK && (!kind || kind->kind != ATTN__JSON_STRING ||
                          (strcmp(kind->str, attn_task_kind_name(ATTN_TASK_LABELING)) != 0 &&
                           strcmp(kind->str, attn_task_kind_name(ATTN_TASK_CLASSIFICATION)) != 0)))
      st = attn__fail(ATTN_STATUS_INVALID_ARGUMENT, "%s: 'task_kind' missing or not one of data",
                      path);
    if (st == ATTN_OK)
      c->data_shape.kind = strcmp(kind->str, attn_task_kind_name(ATTN_TASK_LABELING)) == 0
                               ? ATTN_TASK_LABELING
                               : ATTN_TASK_CLASSIFICATION;
    GETI("seq_len", data_shape.seq_len, 1, ATTN_DATA_MAX_LEN)
    GETI("vocab", data_shape.vocab, 2, INT32_MAX)
    GETI("n_classes", data_shape.n_classes, 1, INT32_MAX)
    /* Checkpoints written before shuffling existed were trained in the file's order. */
    c->shuffle = 0;
    if (st == ATTN_OK && attn__json_get(&doc, root, "shuffle")) {
      GETI("shuffle", shuffle, 0, 1)
    }
  }
#undef GETI
  if (st == ATTN_OK) st = jfloat(&doc, path, "lr", &c->lr);
  if (st == ATTN_OK) st = jfloat(&doc, path, "min_lr", &c->min_lr);
  if (st == ATTN_OK) st = jfloat(&doc, path, "weight_decay", &c->weight_decay);
  if (st == ATTN_OK) st = jfloat(&doc, path, "clip", &c->clip);
  if (st == ATTN_OK) st = jint(&doc, path, "step", 0, big, step);
  attn__json_free(&doc);
  if (st == ATTN_OK) {
    attn_task_shape sh = {0};
    st = check_train_config(c, &sh);
    if (st != ATTN_OK) st = attn__fail(st, "%s: %s", path, attn_last_error());
  }
  if (st == ATTN_OK && *step > c->steps)
    st = attn__fail(ATTN_STATUS_INVALID_ARGUMENT, "%s: step %lld beyond steps %lld", path,
                    (long long)*step, (long long)c->steps);
  return st;
}

/* The "step" metadata of a safetensors file must be `step`. */
static attn_status check_step(const char *path, int64_t step) {
  attn_st_file *f = NULL;
  attn_status st = attn_st_open(&f, path);
  if (st != ATTN_OK) return st;
  const char *s = attn_st_metadata(f, "step");
  char want[32];
  snprintf(want, sizeof want, "%lld", (long long)step);
  if (!s || strcmp(s, want) != 0)
    st = attn__fail(ATTN_STATUS_INVALID_ARGUMENT,
                    "%s: saved at step %s, config.json says %s (files of different runs?)", path,
                    s ? s : "(none)", want);
  attn_st_close(f);
  return st;
}

attn_status attn_seq_model_load(attn_seq_model **model, const char *dir, attn_train_config *cfg_out,
                                int64_t *step_out) {
  attn__clear_error();
  if (!model || !dir)
    return attn__fail(ATTN_STATUS_NULL_POINTER, "attn_seq_model_load: NULL argument");
  *model = NULL;
  attn_train_config c;
  int64_t step = 0;
  attn_status st = read_config(dir, &c, &step);
  if (st != ATTN_OK) return st;
  attn_seq_model *m = attn_seq_model_new(&c);
  if (!m) return ATTN_STATUS_OUT_OF_MEMORY; /* the config was checked: only memory can fail */
  char path[4096];
  join(path, sizeof path, dir, "model.safetensors");
  st = check_step(path, step);
  if (st == ATTN_OK) st = attn_nn_load(path, &m->params);
  if (st != ATTN_OK) {
    attn_seq_model_free(m);
    return st;
  }
  *model = m;
  if (cfg_out) *cfg_out = m->cfg;
  if (step_out) *step_out = step;
  return ATTN_OK;
}

/* Loads the AdamW moments saved with a checkpoint at `step`. */
static attn_status load_optim(const char *dir, optim_state *o, int64_t step) {
  char path[4096];
  join(path, sizeof path, dir, "optim.safetensors");
  attn_status st = check_step(path, step);
  attn_nn_params both = {0};
  for (int64_t i = 0; i < o->m.n && st == ATTN_OK; i++)
    st = attn_nn_params_add_named(&both, o->m.items[i], o->m.names[i]);
  for (int64_t i = 0; i < o->v.n && st == ATTN_OK; i++)
    st = attn_nn_params_add_named(&both, o->v.items[i], o->v.names[i]);
  if (st == ATTN_OK) st = attn_nn_load(path, &both);
  attn_nn_params_clear(&both);
  return st;
}

static int all_finite(const attn_nn_params *params) {
  for (int64_t i = 0; i < params->n; i++) {
    const attn_var *p = params->items[i];
    if (!p->grad) continue;
    for (int64_t j = 0; j < p->numel; j++)
      if (!isfinite(p->grad[j])) return 0;
  }
  return 1;
}

attn_status attn_train_run(const attn_train_config *cfg, const attn_train_callbacks *cb,
                           attn_train_result *result) {
  attn__clear_error();
  if (!cfg || !result) return attn__fail(ATTN_STATUS_NULL_POINTER, "attn_train_run: NULL argument");
  memset(result, 0, sizeof *result);
  result->last_ckpt_step = -1;
  const double t_start = now_s();
  const char *dir = cfg->out_dir;
  attn_train_config c = *cfg;
  attn_seq_model *m = NULL;
  int64_t step = 0;
  attn_status st = ATTN_OK;
  if (cfg->resume) {
    if (!dir)
      return attn__fail(ATTN_STATUS_INVALID_ARGUMENT,
                        "resume needs a checkpoint directory (out_dir)");
    st = attn_seq_model_load(&m, dir, &c, &step);
    if (st != ATTN_OK) return st;
    if (cfg->steps > 0) c.steps = cfg->steps;
    if (cfg->log_every > 0) c.log_every = cfg->log_every;
    if (cfg->ckpt_every > 0) c.ckpt_every = cfg->ckpt_every;
    if (cfg->eval_examples > 0) c.eval_examples = cfg->eval_examples;
    c.fault_nan_step = cfg->fault_nan_step;
    c.data_train = cfg->data_train;
    c.data_valid = cfg->data_valid;
    if (step > c.steps) {
      attn_seq_model_free(m);
      return attn__fail(ATTN_STATUS_INVALID_ARGUMENT,
                        "%s: checkpoint at step %lld is beyond --steps %lld", dir, (long long)step,
                        (long long)c.steps);
    }
    m->cfg.steps = c.steps;
    m->cfg.log_every = c.log_every;
    m->cfg.ckpt_every = c.ckpt_every;
    m->cfg.eval_examples = c.eval_examples;
  } else {
    attn_task_shape sh = {0};
    st = check_train_config(&c, &sh);
    if (st != ATTN_OK) return st;
    m = attn_seq_model_new(&c);
    if (!m) return ATTN_STATUS_OUT_OF_MEMORY; /* the config was checked: only memory can fail */
  }
  if (dir && !cfg->resume && mkdir(dir, 0777) != 0 && errno != EEXIST) {
    attn_seq_model_free(m);
    return attn__fail(ATTN_STATUS_INVALID_ARGUMENT, "%s: cannot create the directory: %s", dir,
                      strerror(errno));
  }
  if (dir && !cfg->resume) { /* a fresh run starts a fresh log */
    char lp[4096];
    join(lp, sizeof lp, dir, "log.jsonl");
    remove(lp);
  }
  optim_state o;
  st = optim_init(&o, &m->params);
  if (st == ATTN_OK && cfg->resume) st = load_optim(dir, &o, step);
  const int64_t B = c.batch, T = m->shape.seq_len, C = m->shape.n_classes;
  batch_buf bb = {0};
  if (st == ATTN_OK) st = batch_alloc(&bb, B, T);
  if (st != ATTN_OK) {
    optim_free(&o);
    attn_seq_model_free(m);
    return st;
  }
  const int own_data = c.data_shape.seq_len > 0;
  const attn_dataset *valid_ds = own_data ? c.data_valid : NULL;
  if (own_data) { /* the datasets must have the model's shape */
    const attn_dataset *bad =
        !c.data_train || c.data_train->seq_len != T || c.data_train->kind != m->shape.kind
            ? c.data_train
        : valid_ds && (valid_ds->seq_len != T || valid_ds->kind != m->shape.kind) ? valid_ds
                                                                                  : NULL;
    if (!c.data_train)
      st = attn__fail(ATTN_STATUS_INVALID_ARGUMENT, "train config: data_shape without data_train");
    else if (c.data_train->n < 1)
      st = attn__fail(ATTN_STATUS_INVALID_ARGUMENT, "train config: data_train has no examples");
    else if (bad)
      st = attn__fail(ATTN_STATUS_INVALID_ARGUMENT,
                      "data (%s, length %d) does not fit the model (%s, length %d)",
                      attn_task_kind_name(bad->kind), (int)bad->seq_len,
                      attn_task_kind_name(m->shape.kind), (int)T);
    if (!valid_ds)
      c.eval_examples = 0;
    else if (c.eval_examples > valid_ds->n)
      c.eval_examples = valid_ds->n;
  } else if (c.eval_examples > 0) {
    /* A task space too small for a validation split fails now, not after training. */
    st = attn_task_batch(&c.task, ATTN_SPLIT_VALID, 0, 1, bb.ids, bb.lens, bb.tg);
  }
  if (st != ATTN_OK) {
    batch_free(&bb);
    optim_free(&o);
    attn_seq_model_free(m);
    return st;
  }
  int64_t *perm = NULL, perm_epoch = -1;
  if (own_data && c.shuffle) {
    size_t bytes;
    if (!attn__mul_size((size_t)c.data_train->n, sizeof *perm, &bytes) ||
        !(perm = attn__malloc(bytes, 64))) {
      batch_free(&bb);
      optim_free(&o);
      attn_seq_model_free(m);
      return attn__fail(ATTN_STATUS_OUT_OF_MEMORY, "training order: out of memory");
    }
  }
  result->start_step = step;
  result->steps_done = step;
  result->n_params = attn_seq_model_numel(m);
  result->stop = ATTN_TRAIN_DONE;

  double log_loss = 0, log_t0 = now_s();
  int64_t log_steps = 0, log_tok_ok = 0, log_tok_n = 0, log_seq_ok = 0, log_seqs = 0,
          log_tokens = 0;
  float lr = c.lr;
  for (; step < c.steps; step++) {
    if (cb && cb->stop && *cb->stop) {
      result->stop = ATTN_TRAIN_INTERRUPTED;
      break;
    }
    if (perm)
      st = shuffled_batch(c.data_train, c.seed, step * B, B, perm, &perm_epoch, &bb);
    else
      st = get_batch(&c.task, own_data ? c.data_train : NULL, ATTN_SPLIT_TRAIN, step * B, B, &bb);
    if (st != ATTN_OK) break;
    attn_nn_ctx_reset(m->ctx);
    attn_nn_params_zero_grad(&m->params);
    attn_var *logits = forward(m, bb.ids, bb.lens, B, bb.pos, bb.rpos);
    attn_var *loss = attn_nn_cross_entropy(m->ctx, logits, bb.tg, ATTN_TASK_IGNORE, 0.0f);
    if (!loss) {
      st = attn_nn_ctx_status(m->ctx);
      break;
    }
    float lv = loss->data[0];
    if (step == c.fault_nan_step) lv = NAN;
    if (!isfinite(lv)) {
      result->stop = ATTN_TRAIN_NONFINITE;
      break;
    }
    st = attn_backward(loss);
    float norm = 0;
    if (st == ATTN_OK && c.clip > 0) st = attn_nn_clip_grad_norm(&m->params, c.clip, &norm);
    if (st != ATTN_OK) break;
    if (!isfinite(norm) || (c.clip <= 0 && !all_finite(&m->params))) {
      result->stop = ATTN_TRAIN_NONFINITE;
      break;
    }
    lr = attn_nn_lr_warmup_cosine(step, c.warmup, c.steps, c.lr, c.min_lr);
    adamw_step(&m->params, &o, step + 1, lr, c.weight_decay);
    result->final_loss = lv;
    result->steps_done = step + 1;
    log_loss += lv;
    log_steps++;
    score(logits->data, bb.tg, B, T, C, &log_tok_ok, &log_tok_n, &log_seq_ok);
    log_seqs += B;
    for (int64_t b = 0; b < B; b++) log_tokens += bb.lens[b];

    const int64_t done = step + 1;
    if (dir && c.ckpt_every > 0 && done % c.ckpt_every == 0 && done < c.steps) {
      st = save_checkpoint(dir, m, &o, done, NULL);
      if (st != ATTN_OK) break;
      result->last_ckpt_step = done;
    }
    if (done % c.log_every == 0 || done == c.steps) {
      const double t = now_s();
      attn_train_progress p;
      p.step = done;
      p.total = c.steps;
      p.loss = log_loss / (double)log_steps;
      p.token_acc = log_tok_n ? (double)log_tok_ok / (double)log_tok_n : 0.0;
      p.seq_acc = log_seqs ? (double)log_seq_ok / (double)log_seqs : 0.0;
      p.lr = lr;
      p.tokens_per_s = t > log_t0 ? (double)log_tokens / (t - log_t0) : 0.0;
      p.elapsed_s = t - t_start;
      const int64_t run = done - result->start_step;
      p.eta_s = run > 0 ? p.elapsed_s / (double)run * (double)(c.steps - done) : 0.0;
      if (dir) {
        char lp[4096];
        join(lp, sizeof lp, dir, "log.jsonl");
        FILE *lf = fopen(lp, "a");
        if (lf) {
          fprintf(lf,
                  "{\"step\":%lld,\"loss\":%.6g,\"token_acc\":%.6g,\"seq_acc\":%.6g,\"lr\":%.6g,"
                  "\"tokens_per_s\":%.1f}\n",
                  (long long)p.step, p.loss, p.token_acc, p.seq_acc, p.lr, p.tokens_per_s);
          fclose(lf);
        }
      }
      log_loss = 0;
      log_steps = log_tok_ok = log_tok_n = log_seq_ok = log_seqs = log_tokens = 0;
      log_t0 = t;
      if (cb && cb->on_log && cb->on_log(&p, cb->user) != 0 && done < c.steps) {
        result->stop = ATTN_TRAIN_INTERRUPTED;
        break;
      }
    }
  }
  if (st == ATTN_OK && result->stop == ATTN_TRAIN_INTERRUPTED && dir) {
    st = save_checkpoint(dir, m, &o, result->steps_done, NULL);
    if (st == ATTN_OK) result->last_ckpt_step = result->steps_done;
  }
  if (st == ATTN_OK && result->stop == ATTN_TRAIN_DONE) {
    if (c.eval_examples > 0)
      st = own_data
               ? attn_seq_model_eval_data(m, valid_ds, c.eval_examples, &result->valid)
               : attn_seq_model_eval(m, &c.task, ATTN_SPLIT_VALID, c.eval_examples, &result->valid);
    if (st == ATTN_OK && dir) {
      st = save_checkpoint(dir, m, &o, result->steps_done,
                           c.eval_examples > 0 ? &result->valid : NULL);
      if (st == ATTN_OK) result->last_ckpt_step = result->steps_done;
    }
  }
  result->seconds = now_s() - t_start;
  attn__free(perm);
  batch_free(&bb);
  optim_free(&o);
  attn_seq_model_free(m);
  return st;
}
