/*
 * attn/tasks.h — built-in synthetic tasks with seeded train / validation / test splits.
 *
 * Every task is a pure function of its configuration: example `index` of split `split` is the
 * same on every machine and every run for the same config (seed included), so a batch is
 * described by (split, first index, count) and never stored.
 *
 * Tokens. 0 is padding (ATTN_TASK_PAD); content symbols are 1..n_symbols; ATTN_TASK_QUERY(cfg) =
 * n_symbols + 1 marks the query of associative recall. The input vocabulary is n_symbols + 2 for
 * every task, and so is the number of output classes (outputs are tokens of the same vocabulary).
 *
 * Examples. ids[0, seq_len) holds the input, right-padded with 0 after `len` tokens. targets[0,
 * seq_len) holds the wanted output token at each position that has one and ATTN_TASK_IGNORE (-100)
 * elsewhere, so one cross-entropy with ignore_index -100 trains every kind:
 *   copy     sequence-to-sequence (output length = input length): target[t] = ids[t]
 *   reverse  sequence-to-sequence: target[t] = ids[len - 1 - t]
 *   sort     sequence-to-sequence: target = the input sorted ascending
 *   recall   sequence classification (one label): input k1 v1 k2 v2 ... kn vn QUERY k, keys
 *            distinct, n pairs in [min_len, max_len]; the label (a value token) is the target of
 *            the last position, len - 1; every other position is ignored.
 *   listops  sequence classification: ListOps as generated for Long Range Arena (Tay et al.
 *            2021): a random tree of operators MAX, MIN, MED (median, rounded down), SM (sum mod
 *            10) over digits 0..9 and nested lists, depth <= 10, 2..10 arguments a list, drawn
 *            until its length in tokens is in [min_len, max_len]; the label (the tree's value,
 *            as the token of its digit) is the target of the last position. Tokens: digit d is
 *            d + 1 (1..10), "[MAX" 11, "[MIN" 12, "[MED" 13, "[SM" 14, "]" 15; n_symbols must be
 *            15.
 * For copy, reverse, sort and listops, min_len / max_len bound the sequence length (seq_len =
 * max_len); for recall they bound the number of pairs (seq_len = 2 max_len + 2).
 *
 * Splits. An example belongs to the split its content hashes to (about 80 % of the space of
 * inputs is train, 10 % validation, 10 % test; the hash does not depend on the seed), so the
 * three splits never share an input. Example i of a split is drawn from a splitmix64
 * stream keyed by (seed, split, i) and redrawn until it falls in its split.
 */
#ifndef ATTN_TASKS_H
#define ATTN_TASKS_H

#include "attn.h"

#ifdef __cplusplus
extern "C" {
#endif

#define ATTN_TASK_PAD 0
#define ATTN_TASK_IGNORE (-100)
#define ATTN_TASK_QUERY(cfg) ((cfg)->n_symbols + 1)

typedef enum attn_task_id {
  ATTN_TASK_COPY = 0,
  ATTN_TASK_REVERSE = 1,
  ATTN_TASK_SORT = 2,
  ATTN_TASK_RECALL = 3, /* associative recall */
  ATTN_TASK_LISTOPS = 4,
  ATTN_TASK_COUNT_ = 5
} attn_task_id;

/* What the output of a task is (the three kinds of the training layer's seeds). */
typedef enum attn_task_kind {
  ATTN_TASK_LABELING = 0,       /* one label per input position */
  ATTN_TASK_CLASSIFICATION = 1, /* one label per sequence */
  ATTN_TASK_SEQ2SEQ = 2,        /* an output sequence (here aligned with the input) */
} attn_task_kind;

typedef enum attn_split {
  ATTN_SPLIT_TRAIN = 0,
  ATTN_SPLIT_VALID = 1,
  ATTN_SPLIT_TEST = 2,
} attn_split;

typedef struct attn_task_config {
  attn_task_id id;
  int32_t n_symbols;        /* content symbols 1..n_symbols; 2..4096 */
  int32_t min_len, max_len; /* lengths (pairs for recall); 1 <= min_len <= max_len <= 1024 */
  uint64_t seed;
} attn_task_config;

/* Shapes implied by a config. */
typedef struct attn_task_shape {
  attn_task_kind kind;
  int32_t seq_len;   /* positions of ids / targets */
  int32_t vocab;     /* input vocabulary: n_symbols + 2 */
  int32_t n_classes; /* output classes: n_symbols + 2 */
} attn_task_shape;

/* Defaults: copy / reverse / sort 10 symbols, lengths 8..16; recall 16 symbols, 2..6 pairs;
 * listops 15 symbols, lengths 32..512; seed 1. */
ATTN_API attn_task_config attn_task_config_default(attn_task_id id);
/* "copy", "reverse", "sort", "recall", "listops"; NULL for an unknown id. */
ATTN_API const char *attn_task_name(attn_task_id id);
/* The id of a name (also "assoc-recall" / "associative-recall" for recall); INVALID_ARGUMENT. */
ATTN_API attn_status attn_task_from_name(const char *name, attn_task_id *id);
ATTN_API const char *attn_task_kind_name(attn_task_kind kind);
/* Validates cfg and fills *shape. INVALID_ARGUMENT names the field at fault (recall also needs
 * max_len <= n_symbols: keys are distinct). */
ATTN_API attn_status attn_task_get_shape(const attn_task_config *cfg, attn_task_shape *shape);

/* Example `index` (>= 0) of `split`: ids[seq_len], *len, targets[seq_len] (see above).
 * INVALID_ARGUMENT for a bad config, split or index, or when the space of inputs is too small
 * to hold the split (no example found after 100000 draws). */
ATTN_API attn_status attn_task_example(const attn_task_config *cfg, attn_split split, int64_t index,
                                       int32_t *ids, int32_t *len, int32_t *targets);
/* n examples first .. first + n - 1: ids (n, seq_len), lens[n], targets (n, seq_len). */
ATTN_API attn_status attn_task_batch(const attn_task_config *cfg, attn_split split, int64_t first,
                                     int64_t n, int32_t *ids, int32_t *lens, int32_t *targets);
/* The split an input belongs to (ids[0, len)): the partition behind the splits. */
ATTN_API attn_split attn_task_split_of(const int32_t *ids, int32_t len);
/* Fills targets[0, seq_len) for the input ids[0, len) (the task's answer; ignored positions
 * -100). INVALID_ARGUMENT if the input is not one of the task's (a token out of range, a bad
 * length, for recall a malformed query). */
ATTN_API attn_status attn_task_targets(const attn_task_config *cfg, const int32_t *ids, int32_t len,
                                       int32_t *targets);

#ifdef __cplusplus
}
#endif

#endif /* ATTN_TASKS_H */
