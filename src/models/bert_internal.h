/* Internal to the BERT encoder (src/models/bert.c), declared for the tests. */
#ifndef ATTN_BERT_INTERNAL_H
#define ATTN_BERT_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>

#include "attn/bert.h"

/* How attn_bert_encode cuts a batch of n_seqs sentences (offsets as there) over `parts` threads:
 * true, with first[p] the first sentence of part p (first[0] = 0, first[parts] = n_seqs, each part
 * non-empty and contiguous), when no part's estimated cost (projection FLOPs linear in a
 * sentence's length, attention quadratic) exceeds 1/parts of the batch's by more than 5%; false
 * (first undefined) when parts < 2, n_seqs < parts or the sentences do not split that evenly. */
bool attn__bert_split_batch(const attn_bert_config *c, const int64_t *offsets, int64_t n_seqs,
                            int parts, int64_t *first);

#endif
