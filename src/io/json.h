/* A minimal, strict JSON parser (RFC 8259) for the safetensors header and a model's config.json.
 * Internal to libattn; not installed.
 *
 * attn__json_parse() builds a read-only tree in two arenas owned by one attn__json_doc: nodes
 * (linked by index: first child, next sibling) and decoded strings (NUL-terminated, valid UTF-8;
 * a string holding "\u0000" is rejected so every string is a plain C string). Numbers keep their
 * double value and, when the literal is an integer that fits, its exact int64 value. Nesting is
 * limited to ATTN__JSON_MAX_DEPTH; duplicate keys are kept (callers that care check them). */
#ifndef ATTN_IO_JSON_H
#define ATTN_IO_JSON_H

#include "internal.h"

#include <stddef.h>
#include <stdint.h>

#define ATTN__JSON_MAX_DEPTH 64

typedef enum attn__json_kind {
  ATTN__JSON_NULL = 0,
  ATTN__JSON_FALSE,
  ATTN__JSON_TRUE,
  ATTN__JSON_NUMBER,
  ATTN__JSON_STRING,
  ATTN__JSON_ARRAY,
  ATTN__JSON_OBJECT,
} attn__json_kind;

typedef struct attn__json_node {
  attn__json_kind kind;
  int is_int;          /* NUMBER: the literal is an integer that fits int64 */
  int64_t ival;        /* NUMBER with is_int */
  double num;          /* NUMBER */
  const char *str;     /* STRING: decoded value */
  const char *key;     /* member of an OBJECT: its decoded key; NULL otherwise */
  int64_t n_children;  /* ARRAY / OBJECT */
  int64_t first_child; /* index of the first child, -1 if none */
  int64_t next;        /* index of the next sibling, -1 if last */
} attn__json_node;

typedef struct attn__json_doc {
  attn__json_node *nodes; /* nodes[0] is the root */
  int64_t n_nodes, cap_nodes;
  char *strings; /* arena of decoded strings */
  size_t strings_used, strings_cap;
} attn__json_doc;

/* Parse text[0, len) (need not be NUL-terminated) into *doc. Trailing whitespace is allowed,
 * anything else after the value is an error. On error returns INVALID_ARGUMENT (or OUT_OF_MEMORY)
 * with a message "<what>: JSON error at byte <offset>: <problem>" and leaves *doc empty. */
attn_status attn__json_parse(attn__json_doc *doc, const char *text, size_t len, const char *what);
void attn__json_free(attn__json_doc *doc);

static inline const attn__json_node *attn__json_root(const attn__json_doc *doc) {
  return doc->n_nodes > 0 ? &doc->nodes[0] : NULL;
}
/* The child after `node` (NULL at the end) and the first child of an array/object (NULL if none). */
const attn__json_node *attn__json_next(const attn__json_doc *doc, const attn__json_node *node);
const attn__json_node *attn__json_first(const attn__json_doc *doc, const attn__json_node *node);
/* The first member of object `obj` named `key`, or NULL (also when obj is not an object). */
const attn__json_node *attn__json_get(const attn__json_doc *doc, const attn__json_node *obj,
                                      const char *key);

/* Length (1-4) of the valid UTF-8 sequence at s[0, avail), avail >= 1, or 0 if it is invalid
 * (bad lead or continuation byte, overlong form, surrogate, above U+10FFFF, truncated). */
size_t attn__utf8_len(const unsigned char *s, size_t avail);

#endif
