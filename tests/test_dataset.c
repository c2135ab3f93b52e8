/* Your own data (attn/dataset.h): TSV and CoNLL files written to a temporary directory are read
 * into vocabularies and padded examples (UTF-8 characters, word tokens, a frequency cut-off,
 * unknown tokens at evaluation); every malformed line is an error naming FILE:LINE; a failing
 * allocator at every allocation of loading leaks nothing; the vocabulary round-trips through its
 * file; a tiny Transformer trained on a separable TSV file lowers its loss (and, without
 * ATTN_TEST_QUICK, reaches high accuracy), and its checkpoint reloads as "task": "data". The
 * shuffled training order is a valid, seeded, roughly uniform permutation per epoch, and a
 * shuffled run equals an unshuffled run on the file laid out in that order (bit for bit). */
#include "attn/dataset.h"
#include "attn/train.h"
#include "common.h"

#include <stdlib.h>
#include <unistd.h>

static char g_root[256];
static int quick;

static void make_root(void) {
  const char *tmp = getenv("TMPDIR");
  snprintf(g_root, sizeof g_root, "%s/attn_data_XXXXXX", tmp && *tmp ? tmp : "/tmp");
  if (!mkdtemp(g_root)) {
    perror("mkdtemp");
    exit(1);
  }
}

/* Writes `text` to g_root/name; path receives the full name. */
static void write_file(char *path, size_t cap, const char *name, const char *text) {
  snprintf(path, cap, "%s/%s", g_root, name);
  FILE *f = fopen(path, "wb");
  if (!f) {
    perror(path);
    exit(1);
  }
  fwrite(text, 1, strlen(text), f);
  fclose(f);
}

static void test_tsv_chars(void) {
  char path[512], vpath[512];
  /* "é" (2 bytes) and "日" (3 bytes) are one token each. */
  write_file(path, sizeof path, "train.tsv",
             "pos\tab\xc3\xa9\n"
             "neg\tb\xe6\x97\xa5\r\n"
             "\n"
             "pos\taa\n");
  attn_data_options o = attn_data_options_default();
  attn_vocab *v = NULL, *l = NULL;
  attn_dataset ds;
  CHECK_OK(attn_dataset_build(path, &o, &v, &l, &ds));
  if (!v) return;
  CHECK(ds.n == 3 && ds.seq_len == 3 && ds.kind == ATTN_TASK_CLASSIFICATION, "n %lld T %d",
        (long long)ds.n, (int)ds.seq_len);
  /* tokens: a x3, b x2, é, 日 ; pad, unk first */
  CHECK(attn_vocab_size(v) == 6, "vocab %d", (int)attn_vocab_size(v));
  CHECK(!strcmp(attn_vocab_token(v, 0), "<pad>") && !strcmp(attn_vocab_token(v, 1), "<unk>"),
        "specials");
  CHECK(!strcmp(attn_vocab_token(v, 2), "a") && !strcmp(attn_vocab_token(v, 3), "b"), "order");
  CHECK(attn_vocab_find(v, "\xc3\xa9", 2) >= 4 && attn_vocab_find(v, "\xe6\x97\xa5", 3) >= 4,
        "utf-8 tokens");
  CHECK(attn_vocab_size(l) == 2 && !strcmp(attn_vocab_token(l, 0), "pos"), "labels");
  CHECK(ds.lens[0] == 3 && ds.lens[1] == 2 && ds.lens[2] == 2, "lens");
  CHECK(ds.ids[0] == 2 && ds.ids[1] == 3 && ds.ids[2] == attn_vocab_find(v, "\xc3\xa9", 2), "ids");
  CHECK(ds.ids[1 * 3 + 2] == ATTN_TASK_PAD, "padding");
  CHECK(ds.targets[0] == ATTN_TASK_IGNORE && ds.targets[2] == 0, "target at the last token");
  CHECK(ds.targets[1 * 3 + 1] == 1 && ds.targets[1 * 3 + 2] == ATTN_TASK_IGNORE, "neg target");
  CHECK(ds.unknown == 0 && ds.tokens == 7, "tokens %lld", (long long)ds.tokens);

  /* Validation with the same vocabulary: unknown chars -> <unk>, same length. */
  write_file(path, sizeof path, "val.tsv", "neg\tzb\npos\ta\xc3\xa9xyz\n");
  attn_data_options ov = o;
  ov.seq_len = ds.seq_len;
  attn_dataset dv;
  CHECK_OK(attn_dataset_load(path, &ov, v, l, &dv));
  CHECK(dv.n == 2 && dv.seq_len == 3 && dv.truncated == 1, "val n %lld trunc %lld", (long long)dv.n,
        (long long)dv.truncated);
  CHECK(dv.ids[0] == ATTN_DATA_UNK && dv.ids[1] == 3, "unk");
  CHECK(dv.unknown == 2 && dv.targets[3 + 2] == 0, "unknown %lld", (long long)dv.unknown);
  attn_dataset_free(&dv);

  /* Unknown label at evaluation: a clear error with file:line. */
  write_file(path, sizeof path, "val2.tsv", "pos\ta\nmaybe\tb\n");
  CHECK_STATUS(attn_dataset_load(path, &ov, v, l, &dv), ATTN_STATUS_INVALID_ARGUMENT);
  CHECK(strstr(attn_last_error(), "val2.tsv:2: unknown label 'maybe'"), "%s", attn_last_error());

  /* Vocabulary files round-trip (with an escaped TAB token). */
  snprintf(vpath, sizeof vpath, "%s/vocab.txt", g_root);
  CHECK_OK(attn_vocab_save(v, vpath));
  attn_vocab *v2 = NULL;
  CHECK_OK(attn_vocab_load(&v2, vpath));
  CHECK(v2 && attn_vocab_size(v2) == attn_vocab_size(v), "reloaded size");
  for (int32_t i = 0; v2 && i < attn_vocab_size(v); i++)
    CHECK(!strcmp(attn_vocab_token(v, i), attn_vocab_token(v2, i)), "token %d", (int)i);
  attn_vocab_free(v2);
  write_file(vpath, sizeof vpath, "tabs.tsv", "x\ta\tb\\c\n");
  attn_vocab *v3 = NULL, *l3 = NULL;
  attn_dataset d3;
  CHECK_OK(attn_dataset_build(vpath, &o, &v3, &l3, &d3));
  snprintf(vpath, sizeof vpath, "%s/vocab3.txt", g_root);
  CHECK_OK(attn_vocab_save(v3, vpath));
  v2 = NULL;
  CHECK_OK(attn_vocab_load(&v2, vpath));
  CHECK(v2 && attn_vocab_find(v2, "\t", 1) >= 2 && attn_vocab_find(v2, "\\", 1) >= 2, "escapes");
  attn_vocab_free(v2);
  attn_vocab_free(v3);
  attn_vocab_free(l3);
  attn_dataset_free(&d3);
  write_file(vpath, sizeof vpath, "dup.txt", "<pad>\n<unk>\na\na\n");
  CHECK_STATUS(attn_vocab_load(&v2, vpath), ATTN_STATUS_INVALID_ARGUMENT);
  CHECK(strstr(attn_last_error(), "dup.txt:4: duplicate"), "%s", attn_last_error());

  attn_dataset_free(&ds);
  attn_vocab_free(v);
  attn_vocab_free(l);
}

static void test_tsv_words_min_freq(void) {
  char path[512];
  write_file(path, sizeof path, "words.tsv",
             "a\tthe cat sat\n"
             "b\tthe  dog\tran\n"
             "a\tthe cat\n");
  attn_data_options o = attn_data_options_default();
  o.tokens = ATTN_DATA_WORDS;
  o.min_freq = 2;
  attn_vocab *v = NULL, *l = NULL;
  attn_dataset ds;
  CHECK_OK(attn_dataset_build(path, &o, &v, &l, &ds));
  if (!v) return;
  /* the x3, cat x2 kept; sat, dog, ran below the cut-off */
  CHECK(attn_vocab_size(v) == 4, "vocab %d", (int)attn_vocab_size(v));
  CHECK(attn_vocab_find(v, "the", 3) == 2 && attn_vocab_find(v, "cat", 3) == 3, "order");
  CHECK(attn_vocab_find(v, "dog", 3) < 0, "cut-off");
  CHECK(ds.lens[1] == 3 && ds.ids[3 + 1] == ATTN_DATA_UNK && ds.ids[3 + 2] == ATTN_DATA_UNK,
        "words split at spaces and TABs");
  CHECK(ds.unknown == 3, "unknown %lld", (long long)ds.unknown);
  attn_dataset_free(&ds);
  attn_vocab_free(v);
  attn_vocab_free(l);
}

static void test_conll(void) {
  char path[512];
  write_file(path, sizeof path, "train.conll",
             "-DOCSTART- O\n\n"
             "Paris B-LOC\n"
             "est\tO\n"
             "belle O\n"
             "\n\n"
             "Z\xc3\xbcrich B-LOC\r\n"
             "ist O\n");
  attn_data_options o = attn_data_options_default();
  o.format = ATTN_DATA_CONLL;
  attn_vocab *v = NULL, *l = NULL;
  attn_dataset ds;
  CHECK_OK(attn_dataset_build(path, &o, &v, &l, &ds));
  if (!v) return;
  CHECK(ds.kind == ATTN_TASK_LABELING && ds.n == 2 && ds.seq_len == 3, "n %lld T %d",
        (long long)ds.n, (int)ds.seq_len);
  CHECK(attn_vocab_size(l) == 2 && !strcmp(attn_vocab_token(l, 0), "O"), "labels");
  CHECK(ds.lens[0] == 3 && ds.lens[1] == 2, "lens");
  CHECK(ds.targets[0] == 1 && ds.targets[1] == 0 && ds.targets[2] == 0, "tags");
  CHECK(ds.targets[3 + 0] == 1 && ds.targets[3 + 2] == ATTN_TASK_IGNORE, "tags 2");
  CHECK(ds.ids[3] == attn_vocab_find(v, "Z\xc3\xbcrich", 7), "utf-8 word");
  write_file(path, sizeof path, "val.conll", "Berlin B-LOC\nist O\n");
  attn_data_options ov = o;
  ov.seq_len = ds.seq_len;
  attn_dataset dv;
  CHECK_OK(attn_dataset_load(path, &ov, v, l, &dv));
  CHECK(dv.n == 1 && dv.ids[0] == ATTN_DATA_UNK && dv.targets[0] == 1, "val");
  attn_dataset_free(&dv);
  /* One input text, as predict encodes it. */
  int32_t ids[4], len = 0;
  CHECK_OK(
      attn_data_encode(v, ATTN_DATA_CONLL, ATTN_DATA_CHARS, " Paris  Berlin\test ", ids, 4, &len));
  CHECK(len == 3 && ids[0] == attn_vocab_find(v, "Paris", 5) && ids[1] == ATTN_DATA_UNK &&
            ids[2] == attn_vocab_find(v, "est", 3),
        "encode words: len %d", (int)len);
  CHECK_STATUS(attn_data_encode(v, ATTN_DATA_CONLL, ATTN_DATA_CHARS, "a b c d e", ids, 4, &len),
               ATTN_STATUS_INVALID_ARGUMENT);
  CHECK_STATUS(attn_data_encode(v, ATTN_DATA_CONLL, ATTN_DATA_CHARS, "  ", ids, 4, &len),
               ATTN_STATUS_INVALID_ARGUMENT);
  CHECK_STATUS(attn_data_encode(v, ATTN_DATA_TSV, ATTN_DATA_CHARS, "a\xc3", ids, 4, &len),
               ATTN_STATUS_INVALID_ARGUMENT);
  CHECK_OK(attn_data_encode(v, ATTN_DATA_TSV, ATTN_DATA_CHARS, "Z\xc3\xbc", ids, 4, &len));
  CHECK(len == 2 && ids[0] == ATTN_DATA_UNK, "encode chars: len %d", (int)len);
  attn_dataset_free(&ds);
  attn_vocab_free(v);
  attn_vocab_free(l);
}

typedef struct bad_case {
  attn_data_format format;
  const char *text;
  const char *want; /* after the file name */
} bad_case;

static void test_malformed(void) {
  static const bad_case cases[] = {
      {ATTN_DATA_TSV, "a\tx\nb\tx\nno tab here\n", ":3: no TAB between label and text"},
      {ATTN_DATA_TSV, "a\tx\n\tx\n", ":2: empty label"},
      {ATTN_DATA_TSV, "a\tx\nb\t\n", ":2: empty text"},
      {ATTN_DATA_TSV, "a\tx\nb\tok\nc\tbad \xc3\x28 byte\n", ":3: invalid UTF-8"},
      {ATTN_DATA_TSV, "a\t\xed\xa0\x80\n", ":1: invalid UTF-8"}, /* a surrogate */
      {ATTN_DATA_TSV, "a\tx\nb\tx\x00y\n", ":2: NUL byte"},
      {ATTN_DATA_TSV, "\n\n", ": no examples"},
      {ATTN_DATA_CONLL, "tok O\ntok O extra\n", ":2: 3 fields; want 2"},
      {ATTN_DATA_CONLL, "tok O\n\nlonely\n", ":3: 1 field; want 2"},
      {ATTN_DATA_CONLL, "tok O\n\xff O\n", ":2: invalid UTF-8"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    char path[512], name[32];
    snprintf(name, sizeof name, "bad%zu.%s", i, cases[i].format == ATTN_DATA_TSV ? "tsv" : "conll");
    snprintf(path, sizeof path, "%s/%s", g_root, name);
    FILE *f = fopen(path, "wb");
    const char *t = cases[i].text;
    size_t n = strlen(t);
    if (strstr(cases[i].want, "NUL")) n = 9; /* the text holds a NUL: "a\tx\nb\tx\0y\n" */
    if (f) {
      fwrite(t, 1, n, f);
      fclose(f);
    }
    attn_data_options o = attn_data_options_default();
    o.format = cases[i].format;
    attn_vocab *v = NULL, *l = NULL;
    attn_dataset ds;
    CHECK_STATUS(attn_dataset_build(path, &o, &v, &l, &ds), ATTN_STATUS_INVALID_ARGUMENT);
    char want[128];
    snprintf(want, sizeof want, "%s%s", name, cases[i].want);
    CHECK(strstr(attn_last_error(), want) != NULL, "case %zu: '%s' does not contain '%s'", i,
          attn_last_error(), want);
    CHECK(v == NULL && l == NULL && ds.ids == NULL, "nothing returned");
  }
  char path[512];
  snprintf(path, sizeof path, "%s/missing.tsv", g_root);
  attn_data_options o = attn_data_options_default();
  attn_vocab *v = NULL, *l = NULL;
  attn_dataset ds;
  CHECK_STATUS(attn_dataset_build(path, &o, &v, &l, &ds), ATTN_STATUS_INVALID_ARGUMENT);
  CHECK(strstr(attn_last_error(), "missing.tsv: cannot open"), "%s", attn_last_error());
  o.min_freq = 0;
  CHECK_STATUS(attn_dataset_build(path, &o, &v, &l, &ds), ATTN_STATUS_INVALID_ARGUMENT);
  attn_data_format fmt;
  attn_data_tokens tk;
  CHECK_STATUS(attn_data_format_from_name("csv", &fmt), ATTN_STATUS_INVALID_ARGUMENT);
  CHECK_OK(attn_data_format_from_name("conll", &fmt));
  CHECK_OK(attn_data_tokens_from_name("word", &tk));
  CHECK(fmt == ATTN_DATA_CONLL && tk == ATTN_DATA_WORDS, "names");
}

/* Random files over an alphabet of troublesome bytes: OK or INVALID_ARGUMENT, never a crash, and
 * what loads keeps its invariants. */
static void test_random_files(void) {
  static const char alphabet[] = {'a',    'b',    '\t',   '\n', ' ', '\r',
                                  '\xc3', '\xa9', '\xff', 'B',  '\0'};
  t_rng r = t_rng_make(5);
  char path[512], text[80];
  snprintf(path, sizeof path, "%s/random.txt", g_root);
  const int iters = quick ? 200 : 2000;
  for (int it = 0; it < iters; it++) {
    const int n = (int)t_int(&r, 0, 70);
    for (int i = 0; i < n; i++) text[i] = alphabet[t_int(&r, 0, (int64_t)sizeof alphabet - 1)];
    FILE *f = fopen(path, "wb");
    if (!f) return;
    fwrite(text, 1, (size_t)n, f);
    fclose(f);
    attn_data_options o = attn_data_options_default();
    o.format = (attn_data_format)(it & 1);
    o.tokens = (attn_data_tokens)((it >> 1) & 1);
    o.max_len = (int32_t)t_int(&r, 1, 8);
    o.min_freq = (int32_t)t_int(&r, 1, 3);
    attn_vocab *v = NULL, *l = NULL;
    attn_dataset ds;
    const attn_status st = attn_dataset_build(path, &o, &v, &l, &ds);
    CHECK(st == ATTN_OK || st == ATTN_STATUS_INVALID_ARGUMENT, "iteration %d: %s", it,
          attn_status_str(st));
    if (st != ATTN_OK) continue;
    int ok = ds.n > 0 && ds.seq_len >= 1 && ds.seq_len <= o.max_len;
    for (int64_t i = 0; ok && i < ds.n; i++) {
      ok = ds.lens[i] >= 1 && ds.lens[i] <= ds.seq_len;
      for (int32_t t = 0; ok && t < ds.seq_len; t++) {
        const int32_t id = ds.ids[i * ds.seq_len + t], tg = ds.targets[i * ds.seq_len + t];
        ok = (t < ds.lens[i] ? id >= 1 && id < attn_vocab_size(v) : id == ATTN_TASK_PAD) &&
             (tg == ATTN_TASK_IGNORE || (tg >= 0 && tg < attn_vocab_size(l)));
      }
    }
    CHECK(ok, "iteration %d: invariants", it);
    attn_dataset_free(&ds);
    attn_vocab_free(v);
    attn_vocab_free(l);
  }
}

/* Every allocation of build, load, save/load of a vocabulary fails in turn: an error, no leak. */
static void test_alloc_failures(void) {
  char tsv[512], conll[512], vpath[512];
  write_file(tsv, sizeof tsv, "oom.tsv",
             "x\tab\xc3\xa9 c d e f g h i j k l m n o p q r s t u v w\ny\tba\n");
  write_file(conll, sizeof conll, "oom.conll", "a B\nb I\n\nc O\n");
  snprintf(vpath, sizeof vpath, "%s/oom_vocab.txt", g_root);
  for (int which = 0; which < 2; which++) {
    attn_data_options o = attn_data_options_default();
    o.format = which ? ATTN_DATA_CONLL : ATTN_DATA_TSV;
    const char *path = which ? conll : tsv;
    int64_t ok_at = -1;
    for (int64_t k = 1; k < 2000 && ok_at < 0; k++) {
      t_alloc_install(k);
      attn_vocab *v = NULL, *l = NULL, *v2 = NULL;
      attn_dataset ds, dv;
      attn_status st = attn_dataset_build(path, &o, &v, &l, &ds);
      if (st == ATTN_OK) {
        attn_data_options ov = o;
        ov.seq_len = ds.seq_len;
        st = attn_dataset_load(path, &ov, v, l, &dv);
        if (st == ATTN_OK) {
          attn_dataset_free(&dv);
          st = attn_vocab_save(v, vpath);
          if (st == ATTN_OK) st = attn_vocab_load(&v2, vpath);
          attn_vocab_free(v2);
        }
        attn_dataset_free(&ds);
        attn_vocab_free(v);
        attn_vocab_free(l);
      } else {
        CHECK(st == ATTN_STATUS_OUT_OF_MEMORY, "fail at %lld: %s", (long long)k,
              attn_status_str(st));
      }
      const int64_t count = t_alloc_count();
      CHECK(t_alloc_live() == 0, "format %d, failing allocation %lld: %lld blocks leaked", which,
            (long long)k, (long long)t_alloc_live());
      t_alloc_uninstall();
      if (st == ATTN_OK || count < k) ok_at = k;
    }
    CHECK(ok_at > 5, "format %d: succeeded at %lld", which, (long long)ok_at);
  }
}

/* A separable TSV file: label "A" when the text holds an 'a', else "B". */
static void write_separable(char *path, size_t cap, const char *name, int n, uint64_t seed) {
  t_rng r = t_rng_make(seed);
  size_t sz = (size_t)n * 16 + 1;
  char *text = malloc(sz), *w = text;
  for (int i = 0; i < n; i++) {
    const int has_a = (int)t_int(&r, 0, 1), len = (int)t_int(&r, 3, 8);
    const int at = (int)t_int(&r, 0, len - 1);
    *w++ = has_a ? 'A' : 'B';
    *w++ = '\t';
    for (int j = 0; j < len; j++) *w++ = (has_a && j == at) ? 'a' : (char)('b' + t_int(&r, 0, 3));
    *w++ = '\n';
  }
  *w = '\0';
  write_file(path, cap, name, text);
  free(text);
}

/* attn_data_shuffle_order: a permutation, a pure function of (n, seed, epoch), new for every
 * epoch and seed, and close to uniform (the 6 orders of 3 items over 6000 epochs). */
static void test_shuffle_order(void) {
  static const int64_t sizes[] = {1, 2, 7, 1000};
  int64_t a[1000], b[1000];
  for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
    const int64_t n = sizes[k];
    CHECK_OK(attn_data_shuffle_order(a, n, 5, 3));
    CHECK_OK(attn_data_shuffle_order(b, n, 5, 3));
    CHECK(!memcmp(a, b, (size_t)n * sizeof *a), "n %lld: not deterministic", (long long)n);
    char seen[1000] = {0};
    int ok = 1;
    for (int64_t i = 0; i < n; i++) {
      ok &= a[i] >= 0 && a[i] < n && !seen[a[i]];
      if (a[i] >= 0 && a[i] < n) seen[a[i]] = 1;
    }
    CHECK(ok, "n %lld: not a permutation", (long long)n);
  }
  CHECK_OK(attn_data_shuffle_order(a, 1000, 5, 0));
  CHECK_OK(attn_data_shuffle_order(b, 1000, 5, 1));
  CHECK(memcmp(a, b, sizeof a) != 0, "epochs 0 and 1 have the same order");
  CHECK_OK(attn_data_shuffle_order(b, 1000, 6, 0));
  CHECK(memcmp(a, b, sizeof a) != 0, "seeds 5 and 6 have the same order");
  int fixed = 0;
  for (int i = 0; i < 1000; i++) fixed += a[i] == i;
  CHECK(fixed < 10, "%d of 1000 items kept their place", fixed);
  int count[6] = {0};
  for (int64_t e = 0; e < 6000; e++) {
    int64_t p[3];
    CHECK_OK(attn_data_shuffle_order(p, 3, 9, e));
    count[p[0] * 2 + (p[1] > p[2])]++;
  }
  for (int k = 0; k < 6; k++)
    CHECK(count[k] > 850 && count[k] < 1150, "order %d drawn %d / 6000", k, count[k]);
  a[0] = 42;
  CHECK_STATUS(attn_data_shuffle_order(a, 0, 1, 0), ATTN_STATUS_INVALID_ARGUMENT);
  CHECK_STATUS(attn_data_shuffle_order(a, 3, 1, -1), ATTN_STATUS_INVALID_ARGUMENT);
  CHECK_STATUS(attn_data_shuffle_order(NULL, 3, 1, 0), ATTN_STATUS_NULL_POINTER);
  CHECK(a[0] == 42, "output touched on error");
}

static int stop_at_step(const attn_train_progress *p, void *user) {
  return p->step == *(const int64_t *)user;
}

static void test_training(void) {
  char tr[512], va[512], dir[512];
  write_separable(tr, sizeof tr, "sep_train.tsv", 256, 11);
  write_separable(va, sizeof va, "sep_val.tsv", 64, 12);
  attn_data_options o = attn_data_options_default();
  attn_vocab *v = NULL, *l = NULL;
  attn_dataset dt, dv;
  CHECK_OK(attn_dataset_build(tr, &o, &v, &l, &dt));
  if (!v) return;
  attn_data_options ov = o;
  ov.seq_len = dt.seq_len;
  CHECK_OK(attn_dataset_load(va, &ov, v, l, &dv));
  attn_train_config c = attn_train_config_default(ATTN_TASK_COPY);
  c.data_shape.kind = dt.kind;
  c.data_shape.seq_len = dt.seq_len;
  c.data_shape.vocab = attn_vocab_size(v);
  c.data_shape.n_classes = attn_vocab_size(l);
  c.data_train = &dt;
  c.data_valid = &dv;
  c.dim = 16;
  c.heads = 2;
  c.hidden = 32;
  c.layers = 1;
  c.batch = 16;
  c.steps = quick ? 8 : 150;
  c.warmup = quick ? 2 : 10;
  c.log_every = 1000;
  c.ckpt_every = 0;
  c.eval_examples = 64;
  snprintf(dir, sizeof dir, "%s/ckpt", g_root);
  c.out_dir = dir;
  attn_eval_result before;
  attn_seq_model *m0 = attn_seq_model_new(&c);
  CHECK(m0 != NULL, "%s", attn_last_error());
  if (m0) CHECK_OK(attn_seq_model_eval_data(m0, &dv, 64, &before));
  attn_seq_model_free(m0);
  attn_train_result res;
  CHECK_OK(attn_train_run(&c, NULL, &res));
  CHECK(res.stop == ATTN_TRAIN_DONE && res.valid.examples == 64, "stop %d, %lld examples",
        (int)res.stop, (long long)res.valid.examples);
  CHECK(res.valid.loss < before.loss, "validation loss %.4f -> %.4f", before.loss, res.valid.loss);
  if (!quick) CHECK(res.valid.seq_acc >= 0.95, "validation accuracy %.3f", res.valid.seq_acc);
  printf("test_dataset: %lld steps: validation loss %.4f -> %.4f, accuracy %.3f -> %.3f\n",
         (long long)c.steps, before.loss, res.valid.loss, before.seq_acc, res.valid.seq_acc);
  /* The checkpoint reloads with the data shape and evaluates the same. */
  attn_seq_model *m = NULL;
  attn_train_config lc;
  CHECK_OK(attn_seq_model_load(&m, dir, &lc, NULL));
  if (m) {
    attn_eval_result again;
    CHECK(lc.data_shape.seq_len == dt.seq_len && lc.data_shape.kind == ATTN_TASK_CLASSIFICATION &&
              lc.data_shape.n_classes == 2,
          "reloaded data shape");
    CHECK_OK(attn_seq_model_eval_data(m, &dv, 64, &again));
    CHECK(again.loss == res.valid.loss, "reloaded loss %.6f vs %.6f", again.loss, res.valid.loss);
    attn_task_config task = attn_task_config_default(ATTN_TASK_COPY);
    CHECK_STATUS(attn_seq_model_eval(m, &task, ATTN_SPLIT_VALID, 4, &again),
                 ATTN_STATUS_INVALID_ARGUMENT);
    attn_seq_model_free(m);
  }
  /* Interrupted at step 3 and resumed: the weights of an uninterrupted run, bit for bit (the
   * batches wrap around the 256 examples: 12 steps of 32 pass the end of the file). */
  {
    attn_train_config r = c;
    r.steps = 12;
    r.batch = 32;
    r.warmup = 2;
    r.log_every = 1;
    r.eval_examples = 0;
    char da[512], db[512];
    snprintf(da, sizeof da, "%s/straight", g_root);
    snprintf(db, sizeof db, "%s/resumed", g_root);
    r.out_dir = da;
    CHECK_OK(attn_train_run(&r, NULL, &res));
    r.out_dir = db;
    int64_t stop_at = 3;
    attn_train_callbacks cb = {stop_at_step, &stop_at, NULL};
    CHECK_OK(attn_train_run(&r, &cb, &res));
    CHECK(res.stop == ATTN_TRAIN_INTERRUPTED && res.steps_done == 3, "interrupted at %lld",
          (long long)res.steps_done);
    attn_train_config rr = attn_train_config_default(ATTN_TASK_COPY);
    rr.resume = 1;
    rr.out_dir = db;
    rr.steps = rr.log_every = rr.ckpt_every = rr.eval_examples = 0;
    CHECK_STATUS(attn_train_run(&rr, NULL, &res), ATTN_STATUS_INVALID_ARGUMENT); /* no data */
    rr.data_train = &dt;
    CHECK_OK(attn_train_run(&rr, NULL, &res));
    CHECK(res.steps_done == 12, "resumed to %lld", (long long)res.steps_done);
    attn_seq_model *ma = NULL, *mb = NULL;
    CHECK_OK(attn_seq_model_load(&ma, da, NULL, NULL));
    CHECK_OK(attn_seq_model_load(&mb, db, NULL, NULL));
    if (ma && mb) {
      const attn_nn_params *pa = attn_seq_model_params(ma), *pb = attn_seq_model_params(mb);
      int same = pa->n == pb->n;
      for (int64_t i = 0; same && i < pa->n; i++)
        same = pa->items[i]->numel == pb->items[i]->numel &&
               !memcmp(pa->items[i]->data, pb->items[i]->data,
                       (size_t)pa->items[i]->numel * sizeof(float));
      CHECK(same, "resumed weights differ from an uninterrupted run");
    }
    attn_seq_model_free(ma);
    attn_seq_model_free(mb);
  }
  /* Shuffled training visits epoch e in attn_data_shuffle_order(n, seed, e): the same run on a
   * file laid out as epoch 0's order then epoch 1's, unshuffled, ends with the same weights. */
  {
    attn_train_config r = c;
    r.steps = 12;
    r.batch = 32; /* 384 positions: all of epoch 0 and half of epoch 1 */
    r.warmup = 2;
    r.log_every = 1000;
    r.eval_examples = 0;
    const int64_t n = dt.n, T = dt.seq_len;
    int64_t *perm = malloc((size_t)n * sizeof *perm);
    attn_dataset laid = dt;
    laid.n = 2 * n;
    laid.ids = malloc((size_t)(2 * n * T) * sizeof(int32_t));
    laid.targets = malloc((size_t)(2 * n * T) * sizeof(int32_t));
    laid.lens = malloc((size_t)(2 * n) * sizeof(int32_t));
    for (int64_t e = 0; e < 2; e++) {
      CHECK_OK(attn_data_shuffle_order(perm, n, r.seed, e));
      for (int64_t k = 0; k < n; k++) {
        const int64_t i = perm[k], at = e * n + k;
        memcpy(laid.ids + at * T, dt.ids + i * T, (size_t)T * sizeof(int32_t));
        memcpy(laid.targets + at * T, dt.targets + i * T, (size_t)T * sizeof(int32_t));
        laid.lens[at] = dt.lens[i];
      }
    }
    char da[512], db[512], dc[512];
    snprintf(da, sizeof da, "%s/shuffled", g_root);
    snprintf(db, sizeof db, "%s/laid_out", g_root);
    snprintf(dc, sizeof dc, "%s/file_order", g_root);
    r.out_dir = da;
    CHECK_OK(attn_train_run(&r, NULL, &res));
    r.shuffle = 0;
    r.data_train = &laid;
    r.out_dir = db;
    CHECK_OK(attn_train_run(&r, NULL, &res));
    r.data_train = &dt;
    r.out_dir = dc;
    CHECK_OK(attn_train_run(&r, NULL, &res));
    attn_seq_model *ma = NULL, *mb = NULL, *mc = NULL;
    attn_train_config la, lb;
    CHECK_OK(attn_seq_model_load(&ma, da, &la, NULL));
    CHECK_OK(attn_seq_model_load(&mb, db, &lb, NULL));
    CHECK_OK(attn_seq_model_load(&mc, dc, NULL, NULL));
    CHECK(la.shuffle == 1 && lb.shuffle == 0, "saved shuffle %d %d", la.shuffle, lb.shuffle);
    if (ma && mb && mc) {
      const attn_nn_params *pa = attn_seq_model_params(ma), *pb = attn_seq_model_params(mb);
      const attn_nn_params *pc = attn_seq_model_params(mc);
      int same = pa->n == pb->n, same_c = 1;
      for (int64_t i = 0; same && i < pa->n; i++) {
        const size_t bytes = (size_t)pa->items[i]->numel * sizeof(float);
        same = !memcmp(pa->items[i]->data, pb->items[i]->data, bytes);
        same_c &= !memcmp(pa->items[i]->data, pc->items[i]->data, bytes);
      }
      CHECK(same, "shuffled run differs from the run on the file laid out in its order");
      CHECK(!same_c, "shuffled and file-order runs gave the same weights");
    }
    attn_seq_model_free(ma);
    attn_seq_model_free(mb);
    attn_seq_model_free(mc);
    free(perm);
    free(laid.ids);
    free(laid.targets);
    free(laid.lens);
  }
  /* A failing allocator at every allocation of a shuffled run (model, optimizer, batch, order)
   * gives OUT_OF_MEMORY and leaks nothing. */
  {
    attn_train_config r = c;
    r.steps = 2;
    r.batch = 8;
    r.warmup = 1;
    r.eval_examples = 4;
    r.out_dir = NULL;
    int64_t ok_at = 0;
    for (int64_t k = 1; k < 100000 && !ok_at; k++) {
      t_alloc_install(k);
      const attn_status st = attn_train_run(&r, NULL, &res);
      const int64_t count = t_alloc_count(), live = t_alloc_live();
      t_alloc_uninstall();
      CHECK(live == 0, "failing allocation %lld: %lld blocks leaked", (long long)k,
            (long long)live);
      CHECK(st == ATTN_OK || st == ATTN_STATUS_OUT_OF_MEMORY, "failing allocation %lld: %s",
            (long long)k, attn_status_str(st));
      if (st == ATTN_OK || count < k) ok_at = k;
      if (live != 0) break;
    }
    CHECK(ok_at > 5, "training succeeded at allocation %lld", (long long)ok_at);
  }
  /* An empty dataset is refused. */
  {
    attn_train_config r = c;
    attn_dataset empty = dt;
    empty.n = 0;
    r.data_train = &empty;
    r.out_dir = NULL;
    CHECK_STATUS(attn_train_run(&r, NULL, &res), ATTN_STATUS_INVALID_ARGUMENT);
  }
  /* A dataset of another shape is refused. */
  c.data_shape.seq_len = dt.seq_len + 1;
  c.out_dir = NULL;
  CHECK_STATUS(attn_train_run(&c, NULL, &res), ATTN_STATUS_INVALID_ARGUMENT);
  attn_dataset_free(&dt);
  attn_dataset_free(&dv);
  attn_vocab_free(v);
  attn_vocab_free(l);
}

int main(void) {
  quick = getenv("ATTN_TEST_QUICK") != NULL;
  make_root();
  test_tsv_chars();
  test_tsv_words_min_freq();
  test_conll();
  test_malformed();
  test_random_files();
  test_alloc_failures();
  test_shuffle_order();
  test_training();
  char cmd[600];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_root);
  if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", g_root);
  return t_finish("test_dataset");
}
