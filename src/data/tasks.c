/* Built-in synthetic tasks (attn/tasks.h): copy, reverse, sort, associative recall. */
#include "attn/tasks.h"

#include "internal.h"

#include <stdlib.h>
#include <string.h>

#define MAX_SYMBOLS 4096
#define MAX_LEN 1024
#define MAX_DRAWS 100000

static const char *const task_names[ATTN_TASK_COUNT_] = {"copy", "reverse", "sort", "recall",
                                                         "listops"};

/* ListOps tokens (digit d is d + 1). */
enum { LO_MAX = 11, LO_MIN = 12, LO_MED = 13, LO_SM = 14, LO_END = 15, LO_SYMBOLS = 15 };
enum { LO_MAX_DEPTH = 10, LO_MAX_ARGS = 10 };

attn_task_config attn_task_config_default(attn_task_id id) {
  attn_task_config c;
  memset(&c, 0, sizeof c);
  c.id = id;
  c.seed = 1;
  if (id == ATTN_TASK_RECALL) {
    c.n_symbols = 16;
    c.min_len = 2;
    c.max_len = 6;
  } else if (id == ATTN_TASK_LISTOPS) {
    c.n_symbols = LO_SYMBOLS;
    c.min_len = 32;
    c.max_len = 512;
  } else {
    c.n_symbols = 10;
    c.min_len = 8;
    c.max_len = 16;
  }
  return c;
}

const char *attn_task_name(attn_task_id id) {
  return (int)id >= 0 && id < ATTN_TASK_COUNT_ ? task_names[id] : NULL;
}

attn_status attn_task_from_name(const char *name, attn_task_id *id) {
  attn__clear_error();
  if (!name || !id)
    return attn__fail(ATTN_STATUS_NULL_POINTER, "attn_task_from_name: NULL argument");
  for (int i = 0; i < ATTN_TASK_COUNT_; i++)
    if (!strcmp(name, task_names[i])) {
      *id = (attn_task_id)i;
      return ATTN_OK;
    }
  if (!strcmp(name, "assoc-recall") || !strcmp(name, "associative-recall")) {
    *id = ATTN_TASK_RECALL;
    return ATTN_OK;
  }
  return attn__fail(ATTN_STATUS_INVALID_ARGUMENT,
                    "unknown task '%s' (tasks: copy, reverse, sort, recall, listops)", name);
}

const char *attn_task_kind_name(attn_task_kind kind) {
  switch (kind) {
    case ATTN_TASK_LABELING:
      return "sequence labeling";
    case ATTN_TASK_CLASSIFICATION:
      return "sequence classification";
    case ATTN_TASK_SEQ2SEQ:
      return "sequence-to-sequence";
  }
  return "?";
}

static attn_status check_config(const attn_task_config *cfg, attn_task_shape *shape) {
  if (!cfg) return attn__fail(ATTN_STATUS_NULL_POINTER, "task config is NULL");
  if ((int)cfg->id < 0 || cfg->id >= ATTN_TASK_COUNT_)
    return attn__fail(ATTN_STATUS_INVALID_ARGUMENT, "task id %d is not a task", (int)cfg->id);
  if (cfg->n_symbols < 2 || cfg->n_symbols > MAX_SYMBOLS)
    return attn__fail(ATTN_STATUS_INVALID_ARGUMENT, "task %s: n_symbols %d not in [2, %d]",
                      task_names[cfg->id], (int)cfg->n_symbols, MAX_SYMBOLS);
  if (cfg->min_len < 1 || cfg->max_len < cfg->min_len || cfg->max_len > MAX_LEN)
    return attn__fail(ATTN_STATUS_INVALID_ARGUMENT,
                      "task %s: lengths %d..%d not in 1 <= min_len <= max_len <= %d",
                      task_names[cfg->id], (int)cfg->min_len, (int)cfg->max_len, MAX_LEN);
  if (cfg->id == ATTN_TASK_RECALL && cfg->max_len > cfg->n_symbols)
    return attn__fail(
        ATTN_STATUS_INVALID_ARGUMENT,
        "task recall: %d pairs need at least as many symbols (distinct keys), have %d",
        (int)cfg->max_len, (int)cfg->n_symbols);
  if (cfg->id == ATTN_TASK_LISTOPS && cfg->n_symbols != LO_SYMBOLS)
    return attn__fail(ATTN_STATUS_INVALID_ARGUMENT,
                      "task listops: n_symbols is %d, must be %d (10 digits, 4 operators, ']')",
                      (int)cfg->n_symbols, LO_SYMBOLS);
  if (shape) {
    shape->kind = cfg->id == ATTN_TASK_RECALL || cfg->id == ATTN_TASK_LISTOPS
                      ? ATTN_TASK_CLASSIFICATION
                      : ATTN_TASK_SEQ2SEQ;
    shape->seq_len = cfg->id == ATTN_TASK_RECALL ? 2 * cfg->max_len + 2 : cfg->max_len;
    shape->vocab = cfg->n_symbols + 2;
    shape->n_classes = cfg->n_symbols + 2;
  }
  return ATTN_OK;
}

attn_status attn_task_get_shape(const attn_task_config *cfg, attn_task_shape *shape) {
  attn__clear_error();
  if (!shape) return attn__fail(ATTN_STATUS_NULL_POINTER, "attn_task_get_shape: shape is NULL");
  return check_config(cfg, shape);
}

static uint64_t splitmix(uint64_t *s) {
  uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

/* Uniform in [lo, hi] (hi - lo < 2^32; the modulo bias is below 2^-32). */
static int32_t draw(uint64_t *s, int32_t lo, int32_t hi) {
  return lo + (int32_t)(splitmix(s) % (uint64_t)(hi - lo + 1));
}

attn_split attn_task_split_of(const int32_t *ids, int32_t len) {
  uint64_t h = 0x6A09E667F3BCC908ull ^ (uint64_t)(uint32_t)len;
  for (int32_t i = 0; i < len && ids; i++) {
    uint64_t s = h ^ ((uint64_t)(uint32_t)ids[i] * 0x9E3779B97F4A7C15ull);
    h = splitmix(&s);
  }
  uint64_t s = h;
  const uint64_t bucket = splitmix(&s) % 10;
  return bucket < 8 ? ATTN_SPLIT_TRAIN : bucket == 8 ? ATTN_SPLIT_VALID : ATTN_SPLIT_TEST;
}

static double uniform01(uint64_t *s) {
  return (double)(splitmix(s) >> 11) * 0x1.0p-53;
}

/* The value of a ListOps list from the counts of its argument values (n >= 1 arguments). */
static int32_t lo_apply(int32_t op, const int32_t counts[10], int32_t n) {
  int32_t lo = -1, hi = -1, sum = 0, seen = 0, a = -1, b = -1;
  for (int32_t d = 0; d < 10; d++) {
    if (counts[d] && lo < 0) lo = d;
    if (counts[d]) hi = d;
    sum += d * counts[d];
    /* the elements at sorted positions (n - 1) / 2 and n / 2 */
    if (a < 0 && seen + counts[d] > (n - 1) / 2) a = d;
    if (b < 0 && seen + counts[d] > n / 2) b = d;
    seen += counts[d];
  }
  switch (op) {
    case LO_MAX:
      return hi;
    case LO_MIN:
      return lo;
    case LO_MED:
      return (a + b) / 2; /* int(np.median(...)) of non-negative values */
    default:
      return sum % 10;
  }
}

/* Parses one ListOps tree at ids[*pos] (a digit or a list); its value, or -1 if malformed. */
static int32_t lo_parse(const int32_t *ids, int32_t len, int32_t *pos, int depth) {
  if (*pos >= len || depth > 64) return -1;
  const int32_t t = ids[(*pos)++];
  if (t >= 1 && t <= 10) return t - 1;
  if (t < LO_MAX || t > LO_SM) return -1;
  int32_t counts[10] = {0}, n = 0;
  while (*pos < len && ids[*pos] != LO_END) {
    const int32_t v = lo_parse(ids, len, pos, depth + 1);
    if (v < 0) return -1;
    counts[v]++;
    n++;
  }
  if (*pos >= len || n == 0) return -1;
  (*pos)++; /* ']' */
  return lo_apply(t, counts, n);
}

/* Generates a tree as LRA's listops.py does (a leaf with probability 0.75 above the maximum
 * depth, always at it) into ids[*pos..cap); sets *over when it does not fit. */
static void lo_gen(uint64_t *s, int depth, int32_t *ids, int32_t *pos, int32_t cap, int *over) {
  if (*over) return;
  const double r = depth < LO_MAX_DEPTH ? uniform01(s) : 1.0;
  if (*pos >= cap) {
    *over = 1;
    return;
  }
  if (r > 0.25) {
    ids[(*pos)++] = 1 + (int32_t)(splitmix(s) % 10);
    return;
  }
  const int32_t nargs = 2 + (int32_t)(splitmix(s) % (LO_MAX_ARGS - 1));
  ids[(*pos)++] = LO_MAX + (int32_t)(splitmix(s) % 4);
  for (int32_t i = 0; i < nargs && !*over; i++) lo_gen(s, depth + 1, ids, pos, cap, over);
  if (*over) return;
  if (*pos >= cap) {
    *over = 1;
    return;
  }
  ids[(*pos)++] = LO_END;
}

static int cmp_i32(const void *a, const void *b) {
  const int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
  return (x > y) - (x < y);
}

/* targets for a valid input (no checks). */
static void fill_targets(const attn_task_config *cfg, int32_t T, const int32_t *ids, int32_t len,
                         int32_t *targets) {
  for (int32_t t = 0; t < T; t++) targets[t] = ATTN_TASK_IGNORE;
  switch (cfg->id) {
    case ATTN_TASK_COPY:
      for (int32_t t = 0; t < len; t++) targets[t] = ids[t];
      break;
    case ATTN_TASK_REVERSE:
      for (int32_t t = 0; t < len; t++) targets[t] = ids[len - 1 - t];
      break;
    case ATTN_TASK_SORT:
      memcpy(targets, ids, (size_t)len * sizeof *ids);
      qsort(targets, (size_t)len, sizeof *targets, cmp_i32);
      break;
    case ATTN_TASK_RECALL: {
      const int32_t q = ids[len - 1];
      for (int32_t p = 0; p + 1 < len - 2; p += 2)
        if (ids[p] == q) targets[len - 1] = ids[p + 1];
      break;
    }
    case ATTN_TASK_LISTOPS: {
      int32_t pos = 0;
      const int32_t v = lo_parse(ids, len, &pos, 0);
      if (v >= 0) targets[len - 1] = v + 1;
      break;
    }
    default:
      break;
  }
}

/* One candidate input from the stream s. */
static int32_t draw_input(const attn_task_config *cfg, uint64_t *s, int32_t *ids) {
  if (cfg->id == ATTN_TASK_LISTOPS) {
    int32_t pos = 0;
    int over = 0;
    lo_gen(s, 1, ids, &pos, cfg->max_len, &over);
    return over || pos < cfg->min_len ? -1 : pos;
  }
  if (cfg->id != ATTN_TASK_RECALL) {
    const int32_t len = draw(s, cfg->min_len, cfg->max_len);
    for (int32_t t = 0; t < len; t++) ids[t] = draw(s, 1, cfg->n_symbols);
    return len;
  }
  const int32_t pairs = draw(s, cfg->min_len, cfg->max_len);
  for (int32_t p = 0; p < pairs; p++) {
    int32_t k;
    for (;;) { /* distinct keys: pairs <= n_symbols, so this ends */
      k = draw(s, 1, cfg->n_symbols);
      int dup = 0;
      for (int32_t j = 0; j < p && !dup; j++) dup = ids[2 * j] == k;
      if (!dup) break;
    }
    ids[2 * p] = k;
    ids[2 * p + 1] = draw(s, 1, cfg->n_symbols);
  }
  ids[2 * pairs] = ATTN_TASK_QUERY(cfg);
  ids[2 * pairs + 1] = ids[2 * draw(s, 0, pairs - 1)];
  return 2 * pairs + 2;
}

static attn_status example(const attn_task_config *cfg, const attn_task_shape *sh, attn_split split,
                           int64_t index, int32_t *ids, int32_t *len, int32_t *targets) {
  uint64_t s = cfg->seed * 0xD1B54A32D192ED03ull ^ ((uint64_t)split + 1) * 0xA0761D6478BD642Full ^
               (uint64_t)index * 0xE7037ED1A0B428DBull;
  (void)splitmix(&s);
  for (int draws = 0; draws < MAX_DRAWS; draws++) {
    for (int32_t t = 0; t < sh->seq_len; t++) ids[t] = ATTN_TASK_PAD;
    const int32_t L = draw_input(cfg, &s, ids);
    if (L < 0) continue; /* listops: a tree out of the length range */
    for (int32_t t = L; t < sh->seq_len; t++) ids[t] = ATTN_TASK_PAD;
    if (attn_task_split_of(ids, L) != split) continue;
    *len = L;
    fill_targets(cfg, sh->seq_len, ids, L, targets);
    return ATTN_OK;
  }
  return attn__fail(ATTN_STATUS_INVALID_ARGUMENT,
                    "task %s: the space of inputs is too small to hold a %s split (no example in "
                    "%d draws): use more symbols or longer sequences",
                    task_names[cfg->id],
                    split == ATTN_SPLIT_TRAIN   ? "train"
                    : split == ATTN_SPLIT_VALID ? "validation"
                                                : "test",
                    MAX_DRAWS);
}

static attn_status check_call(const attn_task_config *cfg, attn_split split, int64_t index,
                              const void *ids, const void *len, const void *targets,
                              attn_task_shape *sh) {
  attn_status st = check_config(cfg, sh);
  if (st != ATTN_OK) return st;
  if (!ids || !len || !targets)
    return attn__fail(ATTN_STATUS_NULL_POINTER, "task example: NULL output");
  if ((int)split < 0 || split > ATTN_SPLIT_TEST)
    return attn__fail(ATTN_STATUS_INVALID_ARGUMENT, "split %d is not train/valid/test", (int)split);
  if (index < 0)
    return attn__fail(ATTN_STATUS_INVALID_ARGUMENT, "example index %lld < 0", (long long)index);
  return ATTN_OK;
}

attn_status attn_task_example(const attn_task_config *cfg, attn_split split, int64_t index,
                              int32_t *ids, int32_t *len, int32_t *targets) {
  attn__clear_error();
  attn_task_shape sh = {0};
  attn_status st = check_call(cfg, split, index, ids, len, targets, &sh);
  if (st != ATTN_OK) return st;
  return example(cfg, &sh, split, index, ids, len, targets);
}

attn_status attn_task_batch(const attn_task_config *cfg, attn_split split, int64_t first, int64_t n,
                            int32_t *ids, int32_t *lens, int32_t *targets) {
  attn__clear_error();
  attn_task_shape sh = {0};
  attn_status st = check_call(cfg, split, first, ids, lens, targets, &sh);
  if (st != ATTN_OK) return st;
  if (n < 0)
    return attn__fail(ATTN_STATUS_INVALID_ARGUMENT, "batch of %lld examples", (long long)n);
  for (int64_t i = 0; i < n && st == ATTN_OK; i++)
    st = example(cfg, &sh, split, first + i, ids + i * sh.seq_len, lens + i,
                 targets + i * sh.seq_len);
  return st;
}

attn_status attn_task_targets(const attn_task_config *cfg, const int32_t *ids, int32_t len,
                              int32_t *targets) {
  attn__clear_error();
  attn_task_shape sh = {0};
  attn_status st = check_config(cfg, &sh);
  if (st != ATTN_OK) return st;
  if (!ids || !targets)
    return attn__fail(ATTN_STATUS_NULL_POINTER, "attn_task_targets: NULL argument");
  const char *name = task_names[cfg->id];
  if (cfg->id == ATTN_TASK_LISTOPS) {
    int32_t pos = 0;
    if (len < 1 || len > sh.seq_len)
      return attn__fail(ATTN_STATUS_INVALID_ARGUMENT, "listops: %d tokens, the model takes 1..%d",
                        (int)len, (int)sh.seq_len);
    if (lo_parse(ids, len, &pos, 0) < 0 || pos != len)
      return attn__fail(ATTN_STATUS_INVALID_ARGUMENT,
                        "listops: not one well-formed expression (error near token %d)", (int)pos);
  } else if (cfg->id != ATTN_TASK_RECALL) {
    if (len < 1 || len > sh.seq_len)
      return attn__fail(ATTN_STATUS_INVALID_ARGUMENT, "%s: %d tokens, the model takes 1..%d", name,
                        (int)len, (int)sh.seq_len);
    for (int32_t t = 0; t < len; t++)
      if (ids[t] < 1 || ids[t] > cfg->n_symbols)
        return attn__fail(ATTN_STATUS_INVALID_ARGUMENT,
                          "%s: token %d at position %d not in [1, %d]", name, (int)ids[t], (int)t,
                          (int)cfg->n_symbols);
  } else {
    if (len < 4 || len > sh.seq_len || len % 2 != 0)
      return attn__fail(ATTN_STATUS_INVALID_ARGUMENT,
                        "recall: %d tokens; want k1 v1 ... kn vn ? k (n in 1..%d pairs)", (int)len,
                        (int)cfg->max_len);
    for (int32_t t = 0; t < len; t++) {
      const int32_t want_query = t == len - 2;
      if (want_query ? ids[t] != ATTN_TASK_QUERY(cfg) : (ids[t] < 1 || ids[t] > cfg->n_symbols))
        return attn__fail(ATTN_STATUS_INVALID_ARGUMENT, "recall: token %d at position %d: want %s",
                          (int)ids[t], (int)t, want_query ? "the query marker" : "a symbol");
    }
    int found = 0;
    for (int32_t p = 0; p + 1 < len - 2; p += 2) found |= ids[p] == ids[len - 1];
    if (!found)
      return attn__fail(ATTN_STATUS_INVALID_ARGUMENT, "recall: the query key %d is not a key",
                        (int)ids[len - 1]);
  }
  fill_targets(cfg, sh.seq_len, ids, len, targets);
  return ATTN_OK;
}
