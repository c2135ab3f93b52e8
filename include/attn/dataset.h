/*
 * attn/dataset.h — your own data: text classification from TSV, sequence labeling from CoNLL.
 *
 * Formats (UTF-8; a trailing "\r" of a line is dropped; invalid UTF-8 or a NUL byte is an error):
 *   tsv    one example a line, `label<TAB>text` (the first TAB separates; later TABs belong to
 *          the text). Blank lines are skipped. Kind: ATTN_TASK_CLASSIFICATION.
 *   conll  one token a line, `token<whitespace>tag` (exactly two fields separated by spaces or
 *          TABs), a blank line between sentences, "-DOCSTART-" lines skipped. Kind:
 *          ATTN_TASK_LABELING (the tag of each token).
 * A malformed line is INVALID_ARGUMENT with a message "FILE:LINE: what", e.g.
 * "data/train.tsv:17: no TAB between label and text".
 *
 * Vocabularies. attn_dataset_build reads a training file and builds the token vocabulary
 * (id 0 "<pad>" = ATTN_TASK_PAD, id 1 "<unk>", then every token seen at least min_freq times,
 * most frequent first, ties by byte order) and the label set (every label of the file, most
 * frequent first, ties by byte order; ids 0..n-1). Tokens of a TSV text are its UTF-8 characters
 * (ATTN_DATA_CHARS, spaces included) or its runs of non-space characters (ATTN_DATA_WORDS, split
 * at spaces and TABs); the tokens of a CoNLL file are its first fields. attn_dataset_load maps
 * another file (validation, test) with given vocabularies: an unknown token becomes "<unk>", an
 * unknown label is an error naming the file, line and label.
 *
 * Examples (as attn/tasks.h): ids (n, seq_len) right-padded with 0 after lens[i] tokens, targets
 * (n, seq_len) with ATTN_TASK_IGNORE (-100) at positions without a label: for classification
 * the label is the target of the last token (len - 1); for labeling each token's tag is its
 * target. A sequence longer than seq_len is cut to seq_len (counted in `truncated`).
 */
#ifndef ATTN_DATASET_H
#define ATTN_DATASET_H

#include "attn.h"
#include "attn/tasks.h"

#ifdef __cplusplus
extern "C" {
#endif

#define ATTN_DATA_UNK 1
#define ATTN_DATA_MAX_LEN 1024

typedef enum attn_data_format { ATTN_DATA_TSV = 0, ATTN_DATA_CONLL = 1 } attn_data_format;
typedef enum attn_data_tokens { ATTN_DATA_CHARS = 0, ATTN_DATA_WORDS = 1 } attn_data_tokens;

typedef struct attn_data_options {
  attn_data_format format; /* ATTN_DATA_TSV */
  attn_data_tokens tokens; /* ATTN_DATA_CHARS (TSV only) */
  int32_t min_freq;        /* tokens seen fewer times in the training file are "<unk>"; 1 */
  int32_t max_len;         /* longest sequence kept (longer ones are cut); 1..1024; 256 */
  int32_t seq_len;         /* 0: the longest sequence of the file (at most max_len); > 0: this
                              (a validation file takes the training file's) */
} attn_data_options;

ATTN_API attn_data_options attn_data_options_default(void);
/* "tsv" / "conll", "char" / "word" (also "chars", "words"); INVALID_ARGUMENT otherwise. */
ATTN_API attn_status attn_data_format_from_name(const char *name, attn_data_format *out);
ATTN_API attn_status attn_data_tokens_from_name(const char *name, attn_data_tokens *out);

/* A list of distinct strings with ids 0..size-1. */
typedef struct attn_vocab attn_vocab;

ATTN_API int32_t attn_vocab_size(const attn_vocab *v);
/* The string of an id (NUL-terminated); NULL when out of range. */
ATTN_API const char *attn_vocab_token(const attn_vocab *v, int32_t id);
/* The id of a string of `len` bytes, or -1 when absent. */
ATTN_API int32_t attn_vocab_find(const attn_vocab *v, const char *s, size_t len);
ATTN_API void attn_vocab_free(attn_vocab *v);
/* One string a line ("\\", TAB, CR and LF escaped as \\ \t \r \n), written to path.tmp and
 * renamed. */
ATTN_API attn_status attn_vocab_save(const attn_vocab *v, const char *path);
/* Reads a file of attn_vocab_save; INVALID_ARGUMENT "FILE:LINE: ..." for a duplicate or a bad
 * escape. */
ATTN_API attn_status attn_vocab_load(attn_vocab **v, const char *path);

typedef struct attn_dataset {
  attn_task_kind kind; /* CLASSIFICATION (tsv) or LABELING (conll) */
  int64_t n;           /* examples */
  int32_t seq_len;
  int32_t *ids;      /* (n, seq_len) */
  int32_t *lens;     /* (n) */
  int32_t *targets;  /* (n, seq_len) */
  int64_t tokens;    /* tokens kept in total */
  int64_t unknown;   /* of which "<unk>" */
  int64_t truncated; /* sequences cut to seq_len */
} attn_dataset;

/* Reads a training file, builds *vocab and *labels (freed with attn_vocab_free) and fills *ds
 * (freed with attn_dataset_free). On error nothing is left allocated. */
ATTN_API attn_status attn_dataset_build(const char *path, const attn_data_options *opt,
                                        attn_vocab **vocab, attn_vocab **labels, attn_dataset *ds);
/* Reads a file with the given vocabularies (unknown token -> <unk>, unknown label -> error). */
ATTN_API attn_status attn_dataset_load(const char *path, const attn_data_options *opt,
                                       const attn_vocab *vocab, const attn_vocab *labels,
                                       attn_dataset *ds);
ATTN_API void attn_dataset_free(attn_dataset *ds);

/* Tokenizes one text as a TSV text (`tokens`) or, for CoNLL, as words separated by spaces and
 * TABs, mapping tokens with vocab (unknown -> <unk>): ids[0, *len), at most cap tokens (more is
 * INVALID_ARGUMENT); invalid UTF-8 or no token is INVALID_ARGUMENT. */
ATTN_API attn_status attn_data_encode(const attn_vocab *vocab, attn_data_format format,
                                      attn_data_tokens tokens, const char *text, int32_t *ids,
                                      int32_t cap, int32_t *len);

/* Examples first .. first + n - 1, taken modulo ds->n (so a training loop may run past the end
 * of the file): ids (n, seq_len), lens[n], targets (n, seq_len). */
ATTN_API attn_status attn_dataset_batch(const attn_dataset *ds, int64_t first, int64_t n,
                                        int32_t *ids, int32_t *lens, int32_t *targets);

/* The order in which epoch `epoch` (>= 0) of a shuffled training run visits n (>= 1) examples:
 * perm[0, n) receives a permutation of 0..n-1, a pure function of (n, seed, epoch) (a
 * Fisher-Yates shuffle driven by a splitmix64 stream keyed by seed and epoch, with rejection
 * sampling, so every permutation is equally likely). INVALID_ARGUMENT for n < 1 or epoch < 0.
 * Used by attn_train_run when attn_train_config.shuffle is set: position p of the training stream
 * (step s covers positions [s batch, (s + 1) batch)) is example perm[p mod n] of epoch p / n. */
ATTN_API attn_status attn_data_shuffle_order(int64_t *perm, int64_t n, uint64_t seed,
                                             int64_t epoch);

#ifdef __cplusplus
}
#endif

#endif /* ATTN_DATASET_H */
