/* A minimal, strict JSON parser: see json.h. Recursive descent over the bytes, with the nesting
 * depth bounded so a hostile header cannot exhaust the stack. */
#include "json.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

typedef struct parser {
  attn__json_doc *doc;
  const char *s;
  size_t len, pos;
  const char *what;
  attn_status status; /* first error, ATTN_OK while parsing goes well */
} parser;

static int fail_at(parser *p, const char *problem) {
  if (p->status == ATTN_OK)
    p->status = attn__fail(ATTN_STATUS_INVALID_ARGUMENT, "%s: JSON error at byte %zu: %s", p->what,
                           p->pos, problem);
  return -1;
}

static int oom(parser *p) {
  if (p->status == ATTN_OK)
    p->status = attn__fail(ATTN_STATUS_OUT_OF_MEMORY, "%s: out of memory parsing JSON", p->what);
  return -1;
}

static void skip_ws(parser *p) {
  while (p->pos < p->len) {
    char c = p->s[p->pos];
    if (c != ' ' && c != '\t' && c != '\n' && c != '\r') break;
    p->pos++;
  }
}

/* Append a node; returns its index or -1. */
static int64_t new_node(parser *p, attn__json_kind kind) {
  attn__json_doc *d = p->doc;
  if (d->n_nodes == d->cap_nodes) {
    int64_t cap = d->cap_nodes ? d->cap_nodes * 2 : 64;
    size_t bytes;
    if (!attn__mul_size((size_t)cap, sizeof(attn__json_node), &bytes)) return oom(p);
    attn__json_node *n = attn__malloc(bytes, 64);
    if (!n) return oom(p);
    if (d->n_nodes) memcpy(n, d->nodes, (size_t)d->n_nodes * sizeof(attn__json_node));
    attn__free(d->nodes);
    d->nodes = n;
    d->cap_nodes = cap;
  }
  attn__json_node *n = &d->nodes[d->n_nodes];
  memset(n, 0, sizeof *n);
  n->kind = kind;
  n->first_child = -1;
  n->next = -1;
  return d->n_nodes++;
}

static int hex4(parser *p, uint32_t *out) {
  if (p->len - p->pos < 4) return fail_at(p, "truncated \\u escape");
  uint32_t v = 0;
  for (int i = 0; i < 4; i++) {
    char c = p->s[p->pos++];
    v <<= 4;
    if (c >= '0' && c <= '9') v |= (uint32_t)(c - '0');
    else if (c >= 'a' && c <= 'f') v |= (uint32_t)(c - 'a' + 10);
    else if (c >= 'A' && c <= 'F') v |= (uint32_t)(c - 'A' + 10);
    else return fail_at(p, "bad hex digit in \\u escape");
  }
  *out = v;
  return 0;
}

static void put_utf8(char *dst, size_t *n, uint32_t cp) {
  if (cp < 0x80) {
    dst[(*n)++] = (char)cp;
  } else if (cp < 0x800) {
    dst[(*n)++] = (char)(0xC0 | (cp >> 6));
    dst[(*n)++] = (char)(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    dst[(*n)++] = (char)(0xE0 | (cp >> 12));
    dst[(*n)++] = (char)(0x80 | ((cp >> 6) & 0x3F));
    dst[(*n)++] = (char)(0x80 | (cp & 0x3F));
  } else {
    dst[(*n)++] = (char)(0xF0 | (cp >> 18));
    dst[(*n)++] = (char)(0x80 | ((cp >> 12) & 0x3F));
    dst[(*n)++] = (char)(0x80 | ((cp >> 6) & 0x3F));
    dst[(*n)++] = (char)(0x80 | (cp & 0x3F));
  }
}

size_t attn__utf8_len(const unsigned char *s, size_t avail) {
  unsigned c = s[0];
  if (c < 0x80) return 1;
  size_t n;
  uint32_t cp, min;
  if ((c & 0xE0) == 0xC0) n = 2, cp = c & 0x1F, min = 0x80;
  else if ((c & 0xF0) == 0xE0) n = 3, cp = c & 0x0F, min = 0x800;
  else if ((c & 0xF8) == 0xF0) n = 4, cp = c & 0x07, min = 0x10000;
  else return 0;
  if (avail < n) return 0;
  for (size_t i = 1; i < n; i++) {
    if ((s[i] & 0xC0) != 0x80) return 0;
    cp = (cp << 6) | (s[i] & 0x3F);
  }
  if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
  return n;
}

/* Parse a string at p->pos (on the opening quote) into the string arena. */
static int parse_string(parser *p, const char **out) {
  attn__json_doc *d = p->doc;
  p->pos++; /* opening quote */
  char *dst = d->strings + d->strings_used;
  size_t n = 0;
  for (;;) {
    if (p->pos >= p->len) return fail_at(p, "unterminated string");
    unsigned char c = (unsigned char)p->s[p->pos];
    if (c == '"') {
      p->pos++;
      break;
    }
    if (c < 0x20) return fail_at(p, "control character in string");
    if (c == '\\') {
      if (p->pos + 1 >= p->len) return fail_at(p, "unterminated string");
      char e = p->s[p->pos + 1];
      p->pos += 2;
      switch (e) {
        case '"': dst[n++] = '"'; break;
        case '\\': dst[n++] = '\\'; break;
        case '/': dst[n++] = '/'; break;
        case 'b': dst[n++] = '\b'; break;
        case 'f': dst[n++] = '\f'; break;
        case 'n': dst[n++] = '\n'; break;
        case 'r': dst[n++] = '\r'; break;
        case 't': dst[n++] = '\t'; break;
        case 'u': {
          uint32_t cp;
          if (hex4(p, &cp)) return -1;
          if (cp >= 0xDC00 && cp <= 0xDFFF) return fail_at(p, "lone low surrogate in \\u escape");
          if (cp >= 0xD800 && cp <= 0xDBFF) {
            uint32_t lo;
            if (p->len - p->pos < 2 || p->s[p->pos] != '\\' || p->s[p->pos + 1] != 'u')
              return fail_at(p, "lone high surrogate in \\u escape");
            p->pos += 2;
            if (hex4(p, &lo)) return -1;
            if (lo < 0xDC00 || lo > 0xDFFF) return fail_at(p, "bad surrogate pair in \\u escape");
            cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
          }
          if (cp == 0) return fail_at(p, "\\u0000 in string");
          put_utf8(dst, &n, cp); /* never longer than the escape it replaces */
          break;
        }
        default: p->pos--; return fail_at(p, "bad escape in string");
      }
      continue;
    }
    size_t k = attn__utf8_len((const unsigned char *)p->s + p->pos, p->len - p->pos);
    if (!k) return fail_at(p, "invalid UTF-8 in string");
    memcpy(dst + n, p->s + p->pos, k);
    n += k;
    p->pos += k;
  }
  dst[n] = '\0';
  d->strings_used += n + 1;
  *out = dst;
  return 0;
}

static int parse_number(parser *p, attn__json_node *node) {
  size_t start = p->pos;
  int neg = 0, is_int = 1;
  if (p->s[p->pos] == '-') neg = 1, p->pos++;
  if (p->pos >= p->len || p->s[p->pos] < '0' || p->s[p->pos] > '9') return fail_at(p, "bad number");
  if (p->s[p->pos] == '0' && p->pos + 1 < p->len && p->s[p->pos + 1] >= '0' && p->s[p->pos + 1] <= '9')
    return fail_at(p, "leading zero in number");
  uint64_t mag = 0;
  int fits = 1;
  while (p->pos < p->len && p->s[p->pos] >= '0' && p->s[p->pos] <= '9') {
    unsigned dgt = (unsigned)(p->s[p->pos] - '0');
    if (mag > (UINT64_MAX - dgt) / 10) fits = 0;
    else mag = mag * 10 + dgt;
    p->pos++;
  }
  if (p->pos < p->len && p->s[p->pos] == '.') {
    is_int = 0;
    p->pos++;
    if (p->pos >= p->len || p->s[p->pos] < '0' || p->s[p->pos] > '9') return fail_at(p, "bad fraction");
    while (p->pos < p->len && p->s[p->pos] >= '0' && p->s[p->pos] <= '9') p->pos++;
  }
  if (p->pos < p->len && (p->s[p->pos] == 'e' || p->s[p->pos] == 'E')) {
    is_int = 0;
    p->pos++;
    if (p->pos < p->len && (p->s[p->pos] == '+' || p->s[p->pos] == '-')) p->pos++;
    if (p->pos >= p->len || p->s[p->pos] < '0' || p->s[p->pos] > '9') return fail_at(p, "bad exponent");
    while (p->pos < p->len && p->s[p->pos] >= '0' && p->s[p->pos] <= '9') p->pos++;
  }
  char buf[64];
  size_t n = p->pos - start;
  if (n < sizeof buf) {
    memcpy(buf, p->s + start, n);
    buf[n] = '\0';
    node->num = strtod(buf, NULL);
  } else {
    node->num = is_int ? (neg ? -1.0 : 1.0) * (double)mag : 0.0; /* absurdly long literal */
    if (!is_int) return fail_at(p, "number literal too long");
  }
  if (is_int && fits && (neg ? mag <= (uint64_t)INT64_MAX + 1 : mag <= (uint64_t)INT64_MAX)) {
    node->is_int = 1;
    node->ival = neg ? (int64_t)(0 - mag) : (int64_t)mag;
  }
  return 0;
}

static int match_word(parser *p, const char *w) {
  size_t n = strlen(w);
  if (p->len - p->pos < n || memcmp(p->s + p->pos, w, n) != 0) return fail_at(p, "unexpected token");
  p->pos += n;
  return 0;
}

static int64_t parse_value(parser *p, int depth);

/* Parse the members (object) or elements (array) after the opening bracket. */
static int parse_container(parser *p, int64_t idx, int is_object, int depth) {
  char close = is_object ? '}' : ']';
  p->pos++;
  skip_ws(p);
  if (p->pos < p->len && p->s[p->pos] == close) {
    p->pos++;
    return 0;
  }
  int64_t last = -1, count = 0;
  for (;;) {
    const char *key = NULL;
    skip_ws(p);
    if (is_object) {
      if (p->pos >= p->len || p->s[p->pos] != '"') return fail_at(p, "expected a string key");
      if (parse_string(p, &key)) return -1;
      skip_ws(p);
      if (p->pos >= p->len || p->s[p->pos] != ':') return fail_at(p, "expected ':'");
      p->pos++;
    }
    int64_t child = parse_value(p, depth + 1);
    if (child < 0) return -1;
    p->doc->nodes[child].key = key;
    if (last < 0) p->doc->nodes[idx].first_child = child;
    else p->doc->nodes[last].next = child;
    last = child;
    count++;
    skip_ws(p);
    if (p->pos >= p->len) return fail_at(p, is_object ? "unterminated object" : "unterminated array");
    char c = p->s[p->pos++];
    if (c == close) break;
    if (c != ',') {
      p->pos--;
      return fail_at(p, is_object ? "expected ',' or '}'" : "expected ',' or ']'");
    }
  }
  p->doc->nodes[idx].n_children = count;
  return 0;
}

static int64_t parse_value(parser *p, int depth) {
  if (depth > ATTN__JSON_MAX_DEPTH) return fail_at(p, "nesting too deep");
  skip_ws(p);
  if (p->pos >= p->len) return fail_at(p, "unexpected end of input");
  char c = p->s[p->pos];
  int64_t idx;
  switch (c) {
    case '{':
    case '[':
      idx = new_node(p, c == '{' ? ATTN__JSON_OBJECT : ATTN__JSON_ARRAY);
      if (idx < 0 || parse_container(p, idx, c == '{', depth)) return -1;
      return idx;
    case '"': {
      const char *str;
      idx = new_node(p, ATTN__JSON_STRING);
      if (idx < 0 || parse_string(p, &str)) return -1;
      p->doc->nodes[idx].str = str;
      return idx;
    }
    case 't':
      idx = new_node(p, ATTN__JSON_TRUE);
      return idx < 0 || match_word(p, "true") ? -1 : idx;
    case 'f':
      idx = new_node(p, ATTN__JSON_FALSE);
      return idx < 0 || match_word(p, "false") ? -1 : idx;
    case 'n':
      idx = new_node(p, ATTN__JSON_NULL);
      return idx < 0 || match_word(p, "null") ? -1 : idx;
    default:
      if (c == '-' || (c >= '0' && c <= '9')) {
        idx = new_node(p, ATTN__JSON_NUMBER);
        if (idx < 0 || parse_number(p, &p->doc->nodes[idx])) return -1;
        return idx;
      }
      return fail_at(p, "unexpected character");
  }
}

attn_status attn__json_parse(attn__json_doc *doc, const char *text, size_t len, const char *what) {
  memset(doc, 0, sizeof *doc);
  /* Decoded strings never exceed their quoted source, so len + 1 bytes hold them all. */
  doc->strings_cap = len + 1;
  doc->strings = attn__malloc(doc->strings_cap, 64);
  if (!doc->strings)
    return attn__fail(ATTN_STATUS_OUT_OF_MEMORY, "%s: out of memory parsing JSON", what);
  parser p = {doc, text, len, 0, what, ATTN_OK};
  int64_t root = parse_value(&p, 0);
  if (root >= 0) {
    skip_ws(&p);
    if (p.pos != p.len) fail_at(&p, "trailing characters after the JSON value");
  }
  if (p.status != ATTN_OK) {
    attn__json_free(doc);
    return p.status;
  }
  return ATTN_OK;
}

void attn__json_free(attn__json_doc *doc) {
  if (!doc) return;
  attn__free(doc->nodes);
  attn__free(doc->strings);
  memset(doc, 0, sizeof *doc);
}

const attn__json_node *attn__json_next(const attn__json_doc *doc, const attn__json_node *node) {
  return node && node->next >= 0 ? &doc->nodes[node->next] : NULL;
}

const attn__json_node *attn__json_first(const attn__json_doc *doc, const attn__json_node *node) {
  return node && node->first_child >= 0 ? &doc->nodes[node->first_child] : NULL;
}

const attn__json_node *attn__json_get(const attn__json_doc *doc, const attn__json_node *obj,
                                      const char *key) {
  if (!obj || obj->kind != ATTN__JSON_OBJECT) return NULL;
  for (const attn__json_node *c = attn__json_first(doc, obj); c; c = attn__json_next(doc, c))
    if (!strcmp(c->key, key)) return c;
  return NULL;
}
