/* The built-in tasks (attn/tasks.h): deterministic for a seed, different across seeds, splits
 * disjoint, labels right for every task, bad configs rejected with a message. */
#include "attn/tasks.h"
#include "common.h"

#define MAXT 600

static int cmp_i32(const void *a, const void *b) {
  const int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
  return (x > y) - (x < y);
}

/* An independent ListOps evaluator (np.median semantics, values as a list): the value of the
 * tree at ids[*pos], or -1. */
static int lo_eval(const int32_t *ids, int32_t len, int32_t *pos, int *depth_max, int depth) {
  if (*pos >= len) return -1;
  if (depth > *depth_max) *depth_max = depth;
  const int32_t t = ids[(*pos)++];
  if (t >= 1 && t <= 10) return t - 1;
  if (t < 11 || t > 14) return -1;
  int32_t vals[MAXT];
  int n = 0;
  while (*pos < len && ids[*pos] != 15) {
    const int v = lo_eval(ids, len, pos, depth_max, depth + 1);
    if (v < 0) return -1;
    vals[n++] = v;
  }
  if (*pos >= len || n < 2 || n > 10) return -1; /* the generator makes 2..10 arguments */
  (*pos)++;
  qsort(vals, (size_t)n, sizeof *vals, cmp_i32);
  int sum = 0;
  for (int i = 0; i < n; i++) sum += vals[i];
  switch (t) {
    case 11:
      return vals[n - 1];
    case 12:
      return vals[0];
    case 13:
      return (int)floor((vals[(n - 1) / 2] + vals[n / 2]) / 2.0);
    default:
      return sum % 10;
  }
}

/* Checks one example against the task's definition. */
static void check_example(const attn_task_config *c, const attn_task_shape *sh, const int32_t *ids,
                          int32_t len, const int32_t *tg) {
  CHECK(len >= 1 && len <= sh->seq_len, "len %d", (int)len);
  for (int32_t t = len; t < sh->seq_len; t++) {
    CHECK(ids[t] == ATTN_TASK_PAD, "padding at %d is %d", (int)t, (int)ids[t]);
    CHECK(tg[t] == ATTN_TASK_IGNORE, "target at padding %d is %d", (int)t, (int)tg[t]);
  }
  int32_t sorted[MAXT];
  switch (c->id) {
    case ATTN_TASK_COPY:
    case ATTN_TASK_REVERSE:
    case ATTN_TASK_SORT:
      CHECK(len >= c->min_len && len <= c->max_len, "len %d out of %d..%d", (int)len,
            (int)c->min_len, (int)c->max_len);
      memcpy(sorted, ids, (size_t)len * sizeof *ids);
      qsort(sorted, (size_t)len, sizeof *sorted, cmp_i32);
      for (int32_t t = 0; t < len; t++) {
        CHECK(ids[t] >= 1 && ids[t] <= c->n_symbols, "token %d", (int)ids[t]);
        const int32_t want = c->id == ATTN_TASK_COPY      ? ids[t]
                             : c->id == ATTN_TASK_REVERSE ? ids[len - 1 - t]
                                                          : sorted[t];
        CHECK(tg[t] == want, "%s target[%d] = %d, want %d", attn_task_name(c->id), (int)t,
              (int)tg[t], (int)want);
      }
      break;
    case ATTN_TASK_LISTOPS: {
      CHECK(len >= c->min_len && len <= c->max_len, "listops len %d", (int)len);
      int32_t pos = 0;
      int depth = 0;
      const int v = lo_eval(ids, len, &pos, &depth, 1);
      CHECK(v >= 0 && pos == len && depth <= 10,
            "listops: malformed (value %d, %d of %d, depth %d)", v, (int)pos, (int)len, depth);
      for (int32_t t = 0; t < len - 1; t++) CHECK(tg[t] == ATTN_TASK_IGNORE, "listops target");
      CHECK(tg[len - 1] == v + 1, "listops label %d, want %d", (int)tg[len - 1], v + 1);
      break;
    }
    case ATTN_TASK_RECALL: {
      const int32_t pairs = (len - 2) / 2;
      CHECK(len % 2 == 0 && pairs >= c->min_len && pairs <= c->max_len, "recall len %d", (int)len);
      CHECK(ids[len - 2] == ATTN_TASK_QUERY(c), "query marker %d", (int)ids[len - 2]);
      int32_t answer = -1, hits = 0;
      for (int32_t p = 0; p < pairs; p++) {
        for (int32_t q = 0; q < p; q++)
          CHECK(ids[2 * q] != ids[2 * p], "repeated key %d", (int)ids[2 * p]);
        if (ids[2 * p] == ids[len - 1]) {
          answer = ids[2 * p + 1];
          hits++;
        }
      }
      CHECK(hits == 1, "query key found %d times", (int)hits);
      for (int32_t t = 0; t < len - 1; t++)
        CHECK(tg[t] == ATTN_TASK_IGNORE, "recall target at %d", (int)t);
      CHECK(tg[len - 1] == answer, "recall label %d, want %d", (int)tg[len - 1], (int)answer);
      break;
    }
    default:
      CHECK(0, "unknown task");
  }
  /* attn_task_targets gives the same answer, and the example is in the split it hashes to. */
  int32_t tg2[MAXT];
  CHECK_OK(attn_task_targets(c, ids, len, tg2));
  CHECK(!memcmp(tg, tg2, (size_t)sh->seq_len * sizeof *tg), "attn_task_targets differs");
}

static uint64_t hash_input(const int32_t *ids, int32_t len) {
  uint64_t h = 1469598103934665603ull ^ (uint64_t)len;
  for (int32_t i = 0; i < len; i++) h = (h ^ (uint64_t)(uint32_t)ids[i]) * 1099511628211ull;
  return h;
}

static int cmp_u64(const void *a, const void *b) {
  const uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
  return (x > y) - (x < y);
}

static void test_task(attn_task_id id, int n) {
  attn_task_config c = attn_task_config_default(id);
  if (id == ATTN_TASK_SORT) c.n_symbols = 5; /* repeats */
  attn_task_shape sh;
  CHECK_OK(attn_task_get_shape(&c, &sh));
  CHECK(sh.kind == (id == ATTN_TASK_RECALL || id == ATTN_TASK_LISTOPS ? ATTN_TASK_CLASSIFICATION
                                                                      : ATTN_TASK_SEQ2SEQ),
        "kind");
  CHECK(sh.vocab == c.n_symbols + 2 && sh.n_classes == sh.vocab, "vocab");
  const int64_t T = sh.seq_len;
  int32_t *ids = calloc((size_t)(3 * n * T), sizeof *ids),
          *tg = calloc((size_t)(3 * n * T), sizeof *tg);
  int32_t *lens = calloc((size_t)(3 * n), sizeof *lens);
  uint64_t *hashes = calloc((size_t)(3 * n), sizeof *hashes);
  int32_t ids2[MAXT], tg2[MAXT], len2;
  for (int s = 0; s < 3; s++) {
    CHECK_OK(
        attn_task_batch(&c, (attn_split)s, 0, n, ids + s * n * T, lens + s * n, tg + s * n * T));
    for (int i = 0; i < n; i++) {
      const int32_t *e = ids + (s * n + i) * T;
      check_example(&c, &sh, e, lens[s * n + i], tg + (s * n + i) * T);
      CHECK(attn_task_split_of(e, lens[s * n + i]) == (attn_split)s, "split of example");
      hashes[s * n + i] = hash_input(e, lens[s * n + i]) * 4 + (uint64_t)s;
    }
    /* Determinism: example i alone equals example i of the batch. */
    CHECK_OK(attn_task_example(&c, (attn_split)s, n - 1, ids2, &len2, tg2));
    CHECK(len2 == lens[s * n + n - 1] && !memcmp(ids2, ids + (s * n + n - 1) * T, (size_t)T * 4) &&
              !memcmp(tg2, tg + (s * n + n - 1) * T, (size_t)T * 4),
          "example %d of split %d not reproducible", n - 1, s);
  }
  /* Disjoint: equal inputs (equal hash / 4) never come from different splits. */
  qsort(hashes, (size_t)(3 * n), sizeof *hashes, cmp_u64);
  int shared = 0;
  for (int i = 1; i < 3 * n; i++)
    shared += hashes[i] / 4 == hashes[i - 1] / 4 && hashes[i] % 4 != hashes[i - 1] % 4;
  CHECK(shared == 0, "%s: %d inputs shared across splits", attn_task_name(id), shared);
  /* Another seed gives other examples. */
  attn_task_config c2 = c;
  c2.seed = c.seed + 1;
  CHECK_OK(attn_task_example(&c2, ATTN_SPLIT_TRAIN, 0, ids2, &len2, tg2));
  int32_t ids3[MAXT], tg3[MAXT], len3;
  CHECK_OK(attn_task_example(&c2, ATTN_SPLIT_TRAIN, 1, ids3, &len3, tg3));
  CHECK(len2 != lens[0] || memcmp(ids2, ids, (size_t)T * 4) || len3 != lens[1] ||
            memcmp(ids3, ids + T, (size_t)T * 4),
        "seed does not change the examples");
  free(ids);
  free(tg);
  free(lens);
  free(hashes);
}

static void test_errors(void) {
  attn_task_config c = attn_task_config_default(ATTN_TASK_REVERSE);
  attn_task_shape sh;
  int32_t ids[MAXT], tg[MAXT], len;
  c.n_symbols = 1;
  CHECK_STATUS(attn_task_get_shape(&c, &sh), ATTN_STATUS_INVALID_ARGUMENT);
  CHECK(strstr(attn_last_error(), "n_symbols") != NULL, "message: %s", attn_last_error());
  c = attn_task_config_default(ATTN_TASK_REVERSE);
  c.min_len = 5;
  c.max_len = 4;
  CHECK_STATUS(attn_task_example(&c, ATTN_SPLIT_TRAIN, 0, ids, &len, tg),
               ATTN_STATUS_INVALID_ARGUMENT);
  c = attn_task_config_default(ATTN_TASK_RECALL);
  c.max_len = c.n_symbols + 1;
  CHECK_STATUS(attn_task_get_shape(&c, &sh), ATTN_STATUS_INVALID_ARGUMENT);
  c = attn_task_config_default(ATTN_TASK_COPY);
  CHECK_STATUS(attn_task_example(&c, ATTN_SPLIT_TRAIN, -1, ids, &len, tg),
               ATTN_STATUS_INVALID_ARGUMENT);
  CHECK_STATUS(attn_task_example(&c, (attn_split)7, 0, ids, &len, tg),
               ATTN_STATUS_INVALID_ARGUMENT);
  CHECK_STATUS(attn_task_example(&c, ATTN_SPLIT_TRAIN, 0, NULL, &len, tg),
               ATTN_STATUS_NULL_POINTER);
  /* A space of 2 inputs cannot hold three splits: an error, not a hang. */
  c.n_symbols = 2;
  c.min_len = c.max_len = 1;
  attn_status st = ATTN_OK;
  for (int s = 0; s < 3 && st == ATTN_OK; s++)
    st = attn_task_example(&c, (attn_split)s, 0, ids, &len, tg);
  CHECK_STATUS(st, ATTN_STATUS_INVALID_ARGUMENT);
  attn_task_id id;
  CHECK_STATUS(attn_task_from_name("nope", &id), ATTN_STATUS_INVALID_ARGUMENT);
  CHECK_OK(attn_task_from_name("sort", &id));
  CHECK(id == ATTN_TASK_SORT, "from_name");
  c = attn_task_config_default(ATTN_TASK_RECALL);
  const int32_t bad[6] = {1, 2, 3, 4, ATTN_TASK_QUERY(&c), 5}; /* 5 is not a key */
  CHECK_STATUS(attn_task_targets(&c, bad, 6, tg), ATTN_STATUS_INVALID_ARGUMENT);
  const int32_t good[6] = {1, 2, 3, 4, ATTN_TASK_QUERY(&c), 3};
  CHECK_OK(attn_task_targets(&c, good, 6, tg));
  CHECK(tg[5] == 4 && tg[4] == ATTN_TASK_IGNORE, "recall targets");
}

int main(void) {
  const char *q = getenv("ATTN_TEST_QUICK");
  const int n = q && q[0] && strcmp(q, "0") ? 50 : 400;
  for (int id = 0; id < ATTN_TASK_COUNT_; id++) test_task((attn_task_id)id, n);
  {
    /* Known ListOps values, and malformed inputs rejected. */
    attn_task_config c = attn_task_config_default(ATTN_TASK_LISTOPS);
    int32_t tg[MAXT];
    /* [MAX 2 9 [MIN 4 7 ] 0 ] = 9;  [MED 1 2 3 4 ] = 2;  [SM 9 8 [MED 5 6 7 ] ] = 3 */
    const int32_t a[] = {11, 3, 10, 12, 5, 8, 15, 1, 15};
    const int32_t b[] = {13, 2, 3, 4, 5, 15};
    const int32_t d[] = {14, 10, 9, 13, 6, 7, 8, 15, 15};
    CHECK_OK(attn_task_targets(&c, a, 9, tg));
    CHECK(tg[8] == 9 + 1, "[MAX 2 9 [MIN 4 7] 0] = %d", (int)tg[8] - 1);
    CHECK_OK(attn_task_targets(&c, b, 6, tg));
    CHECK(tg[5] == 2 + 1, "[MED 1 2 3 4] = %d", (int)tg[5] - 1);
    CHECK_OK(attn_task_targets(&c, d, 9, tg));
    CHECK(tg[8] == 3 + 1, "[SM 9 8 [MED 5 6 7]] = %d", (int)tg[8] - 1);
    CHECK_STATUS(attn_task_targets(&c, a, 8, tg), ATTN_STATUS_INVALID_ARGUMENT); /* unclosed */
    const int32_t e[] = {11, 15};
    CHECK_STATUS(attn_task_targets(&c, e, 2, tg), ATTN_STATUS_INVALID_ARGUMENT); /* empty list */
    c.n_symbols = 10;
    attn_task_shape sh;
    CHECK_STATUS(attn_task_get_shape(&c, &sh), ATTN_STATUS_INVALID_ARGUMENT);
  }
  test_errors();
  return t_finish("test_tasks");
}
