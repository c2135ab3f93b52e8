/* BERT WordPiece tokenizer (uncased): internal interface used by bert.c. See bert.h for the
 * behaviour (it is the one of HF tokenizers' BertNormalizer + BertPreTokenizer + WordPiece). */
#ifndef ATTN_MODELS_WORDPIECE_H
#define ATTN_MODELS_WORDPIECE_H

#include "internal.h"

typedef struct attn__wordpiece attn__wordpiece;

/* Load vocab.txt (one token per line, id = line number). Needs [CLS], [SEP], [UNK] and [PAD]. */
attn_status attn__wordpiece_load(attn__wordpiece **out, const char *vocab_path);
void attn__wordpiece_free(attn__wordpiece *wp);

int64_t attn__wordpiece_vocab_size(const attn__wordpiece *wp);
/* Token text of id (NULL when out of range). */
const char *attn__wordpiece_token(const attn__wordpiece *wp, int32_t id);
/* id of a token's exact text, -1 if absent. */
int32_t attn__wordpiece_lookup(const attn__wordpiece *wp, const char *token, size_t len);

/* Tokenize text[0, len) to [CLS] pieces... [SEP], keeping at most max_ids ids (>= 2): pieces past
 * max_ids - 2 are dropped. INVALID_ARGUMENT for invalid UTF-8 (the whole text is checked). */
attn_status attn__wordpiece_encode(const attn__wordpiece *wp, const char *text, size_t len,
                                   int32_t *ids, int64_t max_ids, int64_t *n_ids);

#endif
