/* Your own data (attn/dataset.h): TSV and CoNLL readers, vocabularies, padded examples. */
#include "attn/dataset.h"

#include "internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_FILE_BYTES ((long)1 << 28) /* 256 MB: spans are 32-bit offsets */

attn_data_options attn_data_options_default(void) {
  attn_data_options o;
  o.format = ATTN_DATA_TSV;
  o.tokens = ATTN_DATA_CHARS;
  o.min_freq = 1;
  o.max_len = 256;
  o.seq_len = 0;
  return o;
}

attn_status attn_data_format_from_name(const char *name, attn_data_format *out) {
  attn__clear_error();
  if (!name || !out) return attn__fail(ATTN_STATUS_NULL_POINTER, "data format: NULL argument");
  if (strcmp(name, "tsv") == 0)
    *out = ATTN_DATA_TSV;
  else if (strcmp(name, "conll") == 0)
    *out = ATTN_DATA_CONLL;
  else
    return attn__fail(ATTN_STATUS_INVALID_ARGUMENT, "unknown data format '%s' (tsv or conll)",
                      name);
  return ATTN_OK;
}

attn_status attn_data_tokens_from_name(const char *name, attn_data_tokens *out) {
  attn__clear_error();
  if (!name || !out) return attn__fail(ATTN_STATUS_NULL_POINTER, "data tokens: NULL argument");
  if (strcmp(name, "char") == 0 || strcmp(name, "chars") == 0)
    *out = ATTN_DATA_CHARS;
  else if (strcmp(name, "word") == 0 || strcmp(name, "words") == 0)
    *out = ATTN_DATA_WORDS;
  else
    return attn__fail(ATTN_STATUS_INVALID_ARGUMENT, "unknown token kind '%s' (char or word)", name);
  return ATTN_OK;
}

/* ---- growable arrays ----------------------------------------------------------------------- */

static int grow(void **p, int64_t *cap, int64_t need, size_t elem) {
  if (need <= *cap) return 1;
  int64_t nc = *cap ? *cap : 16;
  while (nc < need) nc *= 2;
  size_t bytes;
  if (!attn__mul_size((size_t)nc, elem, &bytes)) return 0;
  void *q = attn__malloc(bytes, 16);
  if (!q) return 0;
  if (*p && *cap) memcpy(q, *p, (size_t)*cap * elem);
  attn__free(*p);
  *p = q;
  *cap = nc;
  return 1;
}

/* ---- vocabularies -------------------------------------------------------------------------- */

struct attn_vocab {
  int32_t n;
  int64_t cap;
  char **str;
  size_t *len;
  int64_t *count;
  int64_t cap_len, cap_count;
  int32_t *slots; /* id + 1; 0 = empty */
  size_t nslots;
};

static uint64_t hash_bytes(const char *s, size_t len) {
  uint64_t h = 1469598103934665603ull;
  for (size_t i = 0; i < len; i++) h = (h ^ (unsigned char)s[i]) * 1099511628211ull;
  return h;
}

static attn_vocab *vocab_new(void) {
  attn_vocab *v = attn__malloc(sizeof *v, 16);
  if (v) memset(v, 0, sizeof *v);
  return v;
}

void attn_vocab_free(attn_vocab *v) {
  if (!v) return;
  for (int32_t i = 0; i < v->n; i++) attn__free(v->str[i]);
  attn__free(v->str);
  attn__free(v->len);
  attn__free(v->count);
  attn__free(v->slots);
  attn__free(v);
}

int32_t attn_vocab_size(const attn_vocab *v) {
  return v ? v->n : 0;
}

const char *attn_vocab_token(const attn_vocab *v, int32_t id) {
  return v && id >= 0 && id < v->n ? v->str[id] : NULL;
}

int32_t attn_vocab_find(const attn_vocab *v, const char *s, size_t len) {
  if (!v || !v->nslots || (!s && len)) return -1;
  size_t i = (size_t)hash_bytes(s, len) & (v->nslots - 1);
  for (;;) {
    const int32_t k = v->slots[i];
    if (!k) return -1;
    if (v->len[k - 1] == len && memcmp(v->str[k - 1], s, len) == 0) return k - 1;
    i = (i + 1) & (v->nslots - 1);
  }
}

static int rehash(attn_vocab *v, size_t nslots) {
  int32_t *s = attn__malloc(nslots * sizeof(int32_t), 16);
  if (!s) return 0;
  memset(s, 0, nslots * sizeof(int32_t));
  for (int32_t id = 0; id < v->n; id++) {
    size_t i = (size_t)hash_bytes(v->str[id], v->len[id]) & (nslots - 1);
    while (s[i]) i = (i + 1) & (nslots - 1);
    s[i] = id + 1;
  }
  attn__free(v->slots);
  v->slots = s;
  v->nslots = nslots;
  return 1;
}

/* Adds `count` occurrences of s (added if absent); *id its id. 0 when out of memory. */
static int vocab_add(attn_vocab *v, const char *s, size_t len, int64_t count, int32_t *id) {
  int32_t k = attn_vocab_find(v, s, len);
  if (k >= 0) {
    v->count[k] += count;
    if (id) *id = k;
    return 1;
  }
  if (v->n >= INT32_MAX - 1) return 0;
  if ((size_t)(v->n + 1) * 2 > v->nslots && !rehash(v, v->nslots ? v->nslots * 2 : 64)) return 0;
  int64_t cap = v->cap;
  if (!grow((void **)&v->str, &cap, v->n + 1, sizeof(char *))) return 0;
  v->cap = cap;
  if (!grow((void **)&v->len, &v->cap_len, v->n + 1, sizeof(size_t))) return 0;
  if (!grow((void **)&v->count, &v->cap_count, v->n + 1, sizeof(int64_t))) return 0;
  char *c = attn__malloc(len + 1, 1);
  if (!c) return 0;
  if (len) memcpy(c, s, len);
  c[len] = '\0';
  const int32_t nid = v->n;
  v->str[nid] = c;
  v->len[nid] = len;
  v->count[nid] = count;
  v->n++;
  size_t i = (size_t)hash_bytes(s, len) & (v->nslots - 1);
  while (v->slots[i]) i = (i + 1) & (v->nslots - 1);
  v->slots[i] = nid + 1;
  if (id) *id = nid;
  return 1;
}

static const attn_vocab *g_sort_vocab; /* qsort has no context argument */

static int by_count_then_bytes(const void *pa, const void *pb) {
  const int32_t a = *(const int32_t *)pa, b = *(const int32_t *)pb;
  const attn_vocab *v = g_sort_vocab;
  if (v->count[a] != v->count[b]) return v->count[a] > v->count[b] ? -1 : 1;
  const size_t la = v->len[a], lb = v->len[b];
  const int c = memcmp(v->str[a], v->str[b], la < lb ? la : lb);
  if (c) return c;
  return la < lb ? -1 : la > lb ? 1 : 0;
}

/* A new vocabulary: the first `keep_first` entries of src, then the others seen at least
 * min_count times, most frequent first. NULL when out of memory. */
static attn_vocab *vocab_sorted(const attn_vocab *src, int32_t keep_first, int64_t min_count) {
  attn_vocab *out = vocab_new();
  int32_t *order = attn__malloc((size_t)(src->n > 0 ? src->n : 1) * sizeof(int32_t), 16);
  if (!out || !order) {
    attn__free(order);
    attn_vocab_free(out);
    return NULL;
  }
  int32_t k = 0;
  for (int32_t i = keep_first; i < src->n; i++)
    if (src->count[i] >= min_count) order[k++] = i;
  g_sort_vocab = src;
  qsort(order, (size_t)k, sizeof(int32_t), by_count_then_bytes);
  int ok = 1;
  for (int32_t i = 0; i < keep_first && ok; i++)
    ok = vocab_add(out, src->str[i], src->len[i], src->count[i], NULL);
  for (int32_t i = 0; i < k && ok; i++)
    ok = vocab_add(out, src->str[order[i]], src->len[order[i]], src->count[order[i]], NULL);
  attn__free(order);
  if (!ok) {
    attn_vocab_free(out);
    return NULL;
  }
  return out;
}

/* ---- files --------------------------------------------------------------------------------- */

static attn_status read_whole(const char *path, char **text, size_t *size) {
  FILE *f = fopen(path, "rb");
  if (!f)
    return attn__fail(ATTN_STATUS_INVALID_ARGUMENT, "%s: cannot open: %s", path, strerror(errno));
  long n = -1;
  if (fseek(f, 0, SEEK_END) == 0) n = ftell(f);
  if (n < 0 || n > MAX_FILE_BYTES || fseek(f, 0, SEEK_SET) != 0) {
    fclose(f);
    return attn__fail(ATTN_STATUS_INVALID_ARGUMENT, "%s: cannot read (or larger than 256 MB)",
                      path);
  }
  char *buf = attn__malloc((size_t)n + 1, 16);
  if (!buf) {
    fclose(f);
    return attn__fail(ATTN_STATUS_OUT_OF_MEMORY, "%s: out of memory", path);
  }
  const size_t got = fread(buf, 1, (size_t)n, f);
  const int bad = got != (size_t)n || ferror(f);
  fclose(f);
  if (bad) {
    attn__free(buf);
    return attn__fail(ATTN_STATUS_INVALID_ARGUMENT, "%s: read failed", path);
  }
  buf[n] = '\0';
  *text = buf;
  *size = (size_t)n;
  return ATTN_OK;
}

/* Length of the valid UTF-8 sequence at s[0, n) (n > 0), or 0 if invalid (NUL is invalid). */
static size_t utf8_len(const unsigned char *s, size_t n) {
  const unsigned c = s[0];
  if (c == 0) return 0;
  if (c < 0x80) return 1;
  size_t k;
  unsigned cp;
  if (c >= 0xc2 && c <= 0xdf)
    k = 2, cp = c & 0x1f;
  else if (c >= 0xe0 && c <= 0xef)
    k = 3, cp = c & 0x0f;
  else if (c >= 0xf0 && c <= 0xf4)
    k = 4, cp = c & 0x07;
  else
    return 0;
  if (k > n) return 0;
  for (size_t i = 1; i < k; i++) {
    if ((s[i] & 0xc0) != 0x80) return 0;
    cp = (cp << 6) | (s[i] & 0x3f);
  }
  if ((k == 3 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) ||
      (k == 4 && (cp < 0x10000 || cp > 0x10ffff)))
    return 0;
  return k;
}

typedef struct span {
  uint32_t off, len;
} span;

/* A file cut into examples: tokens and labels as spans of its text. */
typedef struct parsed {
  const char *path;
  char *text;
  size_t size;
  span *tok;
  int64_t ntok, cap_tok;
  span *lab; /* tsv: one per example; conll: one per token */
  int64_t *lab_line;
  int64_t nlab, cap_lab, cap_lab_line;
  int64_t *ex; /* first token of each example; ex[nex] = ntok */
  int64_t nex, cap_ex;
} parsed;

static void parsed_free(parsed *p) {
  attn__free(p->text);
  attn__free(p->tok);
  attn__free(p->lab);
  attn__free(p->lab_line);
  attn__free(p->ex);
  memset(p, 0, sizeof *p);
}

static attn_status oom(const parsed *p) {
  return attn__fail(ATTN_STATUS_OUT_OF_MEMORY, "%s: out of memory", p->path);
}

static int push_tok(parsed *p, size_t off, size_t len) {
  if (!grow((void **)&p->tok, &p->cap_tok, p->ntok + 1, sizeof(span))) return 0;
  p->tok[p->ntok].off = (uint32_t)off;
  p->tok[p->ntok].len = (uint32_t)len;
  p->ntok++;
  return 1;
}

static int push_lab(parsed *p, size_t off, size_t len, int64_t line) {
  if (!grow((void **)&p->lab, &p->cap_lab, p->nlab + 1, sizeof(span))) return 0;
  if (!grow((void **)&p->lab_line, &p->cap_lab_line, p->nlab + 1, sizeof(int64_t))) return 0;
  p->lab[p->nlab].off = (uint32_t)off;
  p->lab[p->nlab].len = (uint32_t)len;
  p->lab_line[p->nlab] = line;
  p->nlab++;
  return 1;
}

static int push_ex(parsed *p) {
  if (!grow((void **)&p->ex, &p->cap_ex, p->nex + 2, sizeof(int64_t))) return 0;
  p->ex[p->nex++] = p->ntok;
  return 1;
}

static int is_space(char c) {
  return c == ' ' || c == '\t';
}

static attn_status parse_tsv_line(parsed *p, size_t b, size_t e, int64_t line,
                                  attn_data_tokens tokens) {
  const char *t = p->text;
  size_t tab = b;
  while (tab < e && t[tab] != '\t') tab++;
  if (tab == e)
    return attn__fail(ATTN_STATUS_INVALID_ARGUMENT, "%s:%lld: no TAB between label and text",
                      p->path, (long long)line);
  if (tab == b)
    return attn__fail(ATTN_STATUS_INVALID_ARGUMENT, "%s:%lld: empty label", p->path,
                      (long long)line);
  if (!push_ex(p) || !push_lab(p, b, tab - b, line)) return oom(p);
  const int64_t first = p->ntok;
  size_t i = tab + 1;
  if (tokens == ATTN_DATA_CHARS) {
    while (i < e) {
      const size_t k = utf8_len((const unsigned char *)t + i, e - i);
      if (!push_tok(p, i, k)) return oom(p);
      i += k;
    }
  } else {
    while (i < e) {
      while (i < e && is_space(t[i])) i++;
      const size_t s = i;
      while (i < e && !is_space(t[i])) i++;
      if (i > s && !push_tok(p, s, i - s)) return oom(p);
    }
  }
  if (p->ntok == first)
    return attn__fail(ATTN_STATUS_INVALID_ARGUMENT, "%s:%lld: empty text", p->path,
                      (long long)line);
  return ATTN_OK;
}

static attn_status parse_conll_line(parsed *p, size_t b, size_t e, int64_t line, int *in_sent) {
  const char *t = p->text;
  size_t fs[3] = {0}, fe[3] = {0};
  int nf = 0;
  for (size_t i = b; i < e;) {
    while (i < e && is_space(t[i])) i++;
    if (i == e) break;
    const size_t s = i;
    while (i < e && !is_space(t[i])) i++;
    if (nf < 3) fs[nf] = s, fe[nf] = i;
    nf++;
  }
  if (nf == 0) { /* blank line: end of a sentence */
    *in_sent = 0;
    return ATTN_OK;
  }
  if (fe[0] - fs[0] == 10 && memcmp(t + fs[0], "-DOCSTART-", 10) == 0) {
    *in_sent = 0;
    return ATTN_OK;
  }
  if (nf != 2)
    return attn__fail(ATTN_STATUS_INVALID_ARGUMENT,
                      "%s:%lld: %d field%s; want 2 (token and tag) separated by spaces or TABs",
                      p->path, (long long)line, nf, nf == 1 ? "" : "s");
  if (!*in_sent && !push_ex(p)) return oom(p);
  *in_sent = 1;
  if (!push_tok(p, fs[0], fe[0] - fs[0]) || !push_lab(p, fs[1], fe[1] - fs[1], line)) return oom(p);
  return ATTN_OK;
}

static attn_status parse_file(parsed *p, const char *path, const attn_data_options *opt) {
  memset(p, 0, sizeof *p);
  p->path = path;
  attn_status st = read_whole(path, &p->text, &p->size);
  if (st != ATTN_OK) return st;
  const char *t = p->text;
  int in_sent = 0;
  int64_t line = 0;
  for (size_t b = 0; b < p->size && st == ATTN_OK;) {
    line++;
    size_t e = b;
    while (e < p->size && t[e] != '\n') e++;
    const size_t next = e < p->size ? e + 1 : e;
    if (e > b && t[e - 1] == '\r') e--;
    for (size_t i = b; i < e;) {
      const size_t k = utf8_len((const unsigned char *)t + i, e - i);
      if (!k) {
        st = attn__fail(ATTN_STATUS_INVALID_ARGUMENT, "%s:%lld: %s at byte %zu of the line", path,
                        (long long)line, t[i] ? "invalid UTF-8" : "NUL byte", i - b + 1);
        break;
      }
      i += k;
    }
    if (st != ATTN_OK) break;
    if (opt->format == ATTN_DATA_TSV) {
      if (e > b) st = parse_tsv_line(p, b, e, line, opt->tokens);
    } else {
      st = parse_conll_line(p, b, e, line, &in_sent);
    }
    b = next;
  }
  if (st == ATTN_OK && p->nex == 0)
    st = attn__fail(ATTN_STATUS_INVALID_ARGUMENT, "%s: no examples", path);
  if (st != ATTN_OK) {
    parsed_free(p);
    return st;
  }
  p->ex[p->nex] = p->ntok;
  return ATTN_OK;
}

static attn_status check_options(const attn_data_options *opt) {
  if (opt->format != ATTN_DATA_TSV && opt->format != ATTN_DATA_CONLL)
    return attn__fail(ATTN_STATUS_INVALID_ARGUMENT, "data options: bad format %d",
                      (int)opt->format);
  if (opt->tokens != ATTN_DATA_CHARS && opt->tokens != ATTN_DATA_WORDS)
    return attn__fail(ATTN_STATUS_INVALID_ARGUMENT, "data options: bad tokens %d",
                      (int)opt->tokens);
  if (opt->min_freq < 1)
    return attn__fail(ATTN_STATUS_INVALID_ARGUMENT, "data options: min_freq %d < 1",
                      (int)opt->min_freq);
  if (opt->max_len < 1 || opt->max_len > ATTN_DATA_MAX_LEN)
    return attn__fail(ATTN_STATUS_INVALID_ARGUMENT, "data options: max_len %d not in [1, %d]",
                      (int)opt->max_len, ATTN_DATA_MAX_LEN);
  if (opt->seq_len < 0 || opt->seq_len > ATTN_DATA_MAX_LEN)
    return attn__fail(ATTN_STATUS_INVALID_ARGUMENT, "data options: seq_len %d not in [0, %d]",
                      (int)opt->seq_len, ATTN_DATA_MAX_LEN);
  return ATTN_OK;
}

void attn_dataset_free(attn_dataset *ds) {
  if (!ds) return;
  attn__free(ds->ids);
  attn__free(ds->lens);
  attn__free(ds->targets);
  memset(ds, 0, sizeof *ds);
}

/* Fills ds from a parsed file with the vocabularies. */
static attn_status map_parsed(const parsed *p, const attn_data_options *opt,
                              const attn_vocab *vocab, const attn_vocab *labels, attn_dataset *ds) {
  memset(ds, 0, sizeof *ds);
  ds->kind = opt->format == ATTN_DATA_TSV ? ATTN_TASK_CLASSIFICATION : ATTN_TASK_LABELING;
  int64_t longest = 1;
  for (int64_t i = 0; i < p->nex; i++)
    if (p->ex[i + 1] - p->ex[i] > longest) longest = p->ex[i + 1] - p->ex[i];
  const int32_t T =
      opt->seq_len > 0 ? opt->seq_len : (int32_t)(longest < opt->max_len ? longest : opt->max_len);
  size_t cells;
  if (!attn__mul_size((size_t)p->nex, (size_t)T, &cells) ||
      !attn__mul_size(cells, sizeof(int32_t), &cells))
    return oom(p);
  ds->n = p->nex;
  ds->seq_len = T;
  ds->ids = attn__malloc(cells, 64);
  ds->targets = attn__malloc(cells, 64);
  ds->lens = attn__malloc((size_t)p->nex * sizeof(int32_t), 64);
  if (!ds->ids || !ds->targets || !ds->lens) {
    attn_dataset_free(ds);
    return oom(p);
  }
  for (int64_t i = 0; i < p->nex; i++) {
    int32_t *ids = ds->ids + i * T, *tg = ds->targets + i * T;
    const int64_t n_in = p->ex[i + 1] - p->ex[i];
    const int32_t len = (int32_t)(n_in < T ? n_in : T);
    if (n_in > T) ds->truncated++;
    ds->lens[i] = len;
    for (int32_t t = 0; t < T; t++) {
      ids[t] = ATTN_TASK_PAD;
      tg[t] = ATTN_TASK_IGNORE;
    }
    for (int32_t t = 0; t < len; t++) {
      const span s = p->tok[p->ex[i] + t];
      int32_t id = attn_vocab_find(vocab, p->text + s.off, s.len);
      if (id < 0 || id == ATTN_TASK_PAD) id = ATTN_DATA_UNK;
      if (id == ATTN_DATA_UNK) ds->unknown++;
      ids[t] = id;
    }
    ds->tokens += len;
    const int64_t nl = ds->kind == ATTN_TASK_CLASSIFICATION ? 1 : len;
    for (int64_t j = 0; j < nl; j++) {
      const int64_t li = ds->kind == ATTN_TASK_CLASSIFICATION ? i : p->ex[i] + j;
      const span s = p->lab[li];
      const int32_t lab = attn_vocab_find(labels, p->text + s.off, s.len);
      if (lab < 0) {
        attn_status st =
            attn__fail(ATTN_STATUS_INVALID_ARGUMENT,
                       "%s:%lld: unknown label '%.*s' (not in the training file)", p->path,
                       (long long)p->lab_line[li], (int)(s.len < 80 ? s.len : 80), p->text + s.off);
        attn_dataset_free(ds);
        return st;
      }
      tg[ds->kind == ATTN_TASK_CLASSIFICATION ? len - 1 : j] = lab;
    }
  }
  return ATTN_OK;
}

attn_status attn_dataset_build(const char *path, const attn_data_options *opt, attn_vocab **vocab,
                               attn_vocab **labels, attn_dataset *ds) {
  attn__clear_error();
  if (!path || !opt || !vocab || !labels || !ds)
    return attn__fail(ATTN_STATUS_NULL_POINTER, "attn_dataset_build: NULL argument");
  *vocab = *labels = NULL;
  memset(ds, 0, sizeof *ds);
  attn_status st = check_options(opt);
  if (st != ATTN_OK) return st;
  parsed p;
  st = parse_file(&p, path, opt);
  if (st != ATTN_OK) return st;
  attn_vocab *tc = vocab_new(), *lc = vocab_new(), *v = NULL, *l = NULL;
  int ok = tc && lc && vocab_add(tc, "<pad>", 5, 0, NULL) && vocab_add(tc, "<unk>", 5, 0, NULL);
  for (int64_t i = 0; i < p.ntok && ok; i++)
    ok = vocab_add(tc, p.text + p.tok[i].off, p.tok[i].len, 1, NULL);
  for (int64_t i = 0; i < p.nlab && ok; i++)
    ok = vocab_add(lc, p.text + p.lab[i].off, p.lab[i].len, 1, NULL);
  if (ok) v = vocab_sorted(tc, 2, opt->min_freq);
  if (v) l = vocab_sorted(lc, 0, 1);
  attn_vocab_free(tc);
  attn_vocab_free(lc);
  if (!v || !l) st = oom(&p);
  if (st == ATTN_OK) st = map_parsed(&p, opt, v, l, ds);
  parsed_free(&p);
  if (st != ATTN_OK) {
    attn_vocab_free(v);
    attn_vocab_free(l);
    return st;
  }
  *vocab = v;
  *labels = l;
  return ATTN_OK;
}

attn_status attn_dataset_load(const char *path, const attn_data_options *opt,
                              const attn_vocab *vocab, const attn_vocab *labels, attn_dataset *ds) {
  attn__clear_error();
  if (!path || !opt || !vocab || !labels || !ds)
    return attn__fail(ATTN_STATUS_NULL_POINTER, "attn_dataset_load: NULL argument");
  memset(ds, 0, sizeof *ds);
  attn_status st = check_options(opt);
  if (st != ATTN_OK) return st;
  if (vocab->n < 2)
    return attn__fail(ATTN_STATUS_INVALID_ARGUMENT,
                      "attn_dataset_load: the vocabulary has no <pad> and <unk>");
  parsed p;
  st = parse_file(&p, path, opt);
  if (st != ATTN_OK) return st;
  st = map_parsed(&p, opt, vocab, labels, ds);
  parsed_free(&p);
  return st;
}

attn_status attn_dataset_batch(const attn_dataset *ds, int64_t first, int64_t n, int32_t *ids,
                               int32_t *lens, int32_t *targets) {
  if (!ds || !ids || !lens || !targets)
    return attn__fail(ATTN_STATUS_NULL_POINTER, "attn_dataset_batch: NULL argument");
  if (ds->n < 1 || first < 0 || n < 0)
    return attn__fail(ATTN_STATUS_INVALID_ARGUMENT, "attn_dataset_batch: bad range");
  const int64_t T = ds->seq_len;
  for (int64_t b = 0; b < n; b++) {
    const int64_t i = (first + b) % ds->n;
    memcpy(ids + b * T, ds->ids + i * T, (size_t)T * sizeof(int32_t));
    memcpy(targets + b * T, ds->targets + i * T, (size_t)T * sizeof(int32_t));
    lens[b] = ds->lens[i];
  }
  return ATTN_OK;
}

static uint64_t splitmix(uint64_t *s) {
  uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

attn_status attn_data_shuffle_order(int64_t *perm, int64_t n, uint64_t seed, int64_t epoch) {
  attn__clear_error();
  if (!perm) return attn__fail(ATTN_STATUS_NULL_POINTER, "attn_data_shuffle_order: perm is NULL");
  if (n < 1 || epoch < 0)
    return attn__fail(ATTN_STATUS_INVALID_ARGUMENT,
                      "attn_data_shuffle_order: n %lld must be >= 1 and epoch %lld >= 0",
                      (long long)n, (long long)epoch);
  /* The stream of epoch e starts from a state mixed from both keys, so neighbouring seeds and
   * epochs give unrelated orders. */
  uint64_t s = seed ^ 0xD1B54A32D192ED03ull;
  s = splitmix(&s) ^ ((uint64_t)epoch * 0x9E3779B97F4A7C15ull);
  (void)splitmix(&s);
  for (int64_t i = 0; i < n; i++) perm[i] = i;
  /* Invariant: after the step of i, perm[i] is drawn uniformly from what perm[0, i] held. */
  for (int64_t i = n - 1; i > 0; i--) {
    const uint64_t range = (uint64_t)i + 1, limit = UINT64_MAX - UINT64_MAX % range;
    uint64_t r;
    do r = splitmix(&s);
    while (r >= limit); /* rejection: no modulo bias */
    const int64_t j = (int64_t)(r % range), t = perm[i];
    perm[i] = perm[j];
    perm[j] = t;
  }
  return ATTN_OK;
}

attn_status attn_data_encode(const attn_vocab *vocab, attn_data_format format,
                             attn_data_tokens tokens, const char *text, int32_t *ids, int32_t cap,
                             int32_t *len) {
  attn__clear_error();
  if (!vocab || !text || !ids || !len)
    return attn__fail(ATTN_STATUS_NULL_POINTER, "attn_data_encode: NULL argument");
  const size_t n = strlen(text);
  const int chars = format == ATTN_DATA_TSV && tokens == ATTN_DATA_CHARS;
  int32_t k = 0;
  for (size_t i = 0; i < n;) {
    size_t s = i, e;
    if (chars) {
      e = i + utf8_len((const unsigned char *)text + i, n - i);
      if (e == i)
        return attn__fail(ATTN_STATUS_INVALID_ARGUMENT, "input: invalid UTF-8 at byte %zu", i + 1);
    } else {
      while (s < n && is_space(text[s])) s++;
      e = s;
      while (e < n && !is_space(text[e])) {
        const size_t u = utf8_len((const unsigned char *)text + e, n - e);
        if (!u)
          return attn__fail(ATTN_STATUS_INVALID_ARGUMENT, "input: invalid UTF-8 at byte %zu",
                            e + 1);
        e += u;
      }
      if (e == s) break;
    }
    if (k >= cap)
      return attn__fail(ATTN_STATUS_INVALID_ARGUMENT, "input: more than %d tokens", (int)cap);
    int32_t id = attn_vocab_find(vocab, text + s, e - s);
    ids[k++] = id < 0 || id == ATTN_TASK_PAD ? ATTN_DATA_UNK : id;
    i = e;
  }
  if (k == 0) return attn__fail(ATTN_STATUS_INVALID_ARGUMENT, "input: no tokens");
  *len = k;
  return ATTN_OK;
}

/* ---- vocabulary files ---------------------------------------------------------------------- */

attn_status attn_vocab_save(const attn_vocab *v, const char *path) {
  attn__clear_error();
  if (!v || !path) return attn__fail(ATTN_STATUS_NULL_POINTER, "attn_vocab_save: NULL argument");
  char tmp[4200];
  snprintf(tmp, sizeof tmp, "%s.tmp", path);
  FILE *f = fopen(tmp, "wb");
  if (!f)
    return attn__fail(ATTN_STATUS_INVALID_ARGUMENT, "%s: cannot write: %s", tmp, strerror(errno));
  for (int32_t i = 0; i < v->n; i++) {
    for (size_t j = 0; j < v->len[i]; j++) {
      const char c = v->str[i][j];
      if (c == '\\')
        fputs("\\\\", f);
      else if (c == '\t')
        fputs("\\t", f);
      else if (c == '\r')
        fputs("\\r", f);
      else if (c == '\n')
        fputs("\\n", f);
      else
        fputc(c, f);
    }
    fputc('\n', f);
  }
  const int bad = ferror(f) != 0;
  if (fclose(f) != 0 || bad || rename(tmp, path) != 0) {
    remove(tmp);
    return attn__fail(ATTN_STATUS_INVALID_ARGUMENT, "%s: write failed", path);
  }
  return ATTN_OK;
}

attn_status attn_vocab_load(attn_vocab **out, const char *path) {
  attn__clear_error();
  if (!out || !path) return attn__fail(ATTN_STATUS_NULL_POINTER, "attn_vocab_load: NULL argument");
  *out = NULL;
  char *text = NULL;
  size_t size = 0;
  attn_status st = read_whole(path, &text, &size);
  if (st != ATTN_OK) return st;
  attn_vocab *v = vocab_new();
  if (!v) st = attn__fail(ATTN_STATUS_OUT_OF_MEMORY, "%s: out of memory", path);
  int64_t line = 0;
  for (size_t b = 0; b < size && st == ATTN_OK;) {
    line++;
    size_t e = b;
    while (e < size && text[e] != '\n') e++;
    const size_t next = e < size ? e + 1 : e;
    /* Unescape in place: the result is never longer. */
    size_t w = b;
    for (size_t i = b; i < e && st == ATTN_OK; i++) {
      char c = text[i];
      if (c == '\\') {
        const char d = i + 1 < e ? text[i + 1] : '\0';
        if (d == '\\')
          c = '\\';
        else if (d == 't')
          c = '\t';
        else if (d == 'r')
          c = '\r';
        else if (d == 'n')
          c = '\n';
        else
          st = attn__fail(ATTN_STATUS_INVALID_ARGUMENT, "%s:%lld: bad escape", path,
                          (long long)line);
        i++;
      }
      text[w++] = c;
    }
    if (st != ATTN_OK) break;
    if (attn_vocab_find(v, text + b, w - b) >= 0)
      st = attn__fail(ATTN_STATUS_INVALID_ARGUMENT, "%s:%lld: duplicate entry", path,
                      (long long)line);
    else if (!vocab_add(v, text + b, w - b, 0, NULL))
      st = attn__fail(ATTN_STATUS_OUT_OF_MEMORY, "%s: out of memory", path);
    b = next;
  }
  if (st == ATTN_OK && v->n == 0) st = attn__fail(ATTN_STATUS_INVALID_ARGUMENT, "%s: empty", path);
  attn__free(text);
  if (st != ATTN_OK) {
    attn_vocab_free(v);
    return st;
  }
  *out = v;
  return ATTN_OK;
}
