/* BERT WordPiece tokenizer, uncased, as HF tokenizers runs it for bert-base-uncased-style models:
 *
 *   normalise (per character): drop NUL, U+FFFD and control/format/private/unassigned characters;
 *     whitespace becomes a word boundary; CJK ideographs become words of their own; then NFD,
 *     nonspacing marks (accents) removed, lower-cased (one table: unicode_tables.inc);
 *   pre-tokenise: split on whitespace, and split every punctuation character (Unicode P* and ASCII
 *     punctuation) into a word of its own;
 *   WordPiece: a word longer than 100 characters is [UNK]; otherwise greedy longest match from the
 *     left, continuation pieces prefixed "##"; a word with an unmatched rest is [UNK] as a whole.
 *
 * All of it is a single pass over the code points, stopping once the id budget is full. */
#include "wordpiece.h"

#include "../io/json.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include "unicode_tables.inc"

#define MAX_WORD_CHARS 100

struct attn__wordpiece {
  char *text;            /* vocab tokens, NUL-terminated, back to back */
  const char **tokens;   /* id -> text */
  uint32_t *token_len;   /* id -> byte length */
  int64_t n;
  int32_t *table; /* open addressing: id or -1 */
  uint64_t mask;
  int32_t cls, sep, unk, pad;
};

static uint64_t hash_bytes(const char *a, size_t na, const char *b, size_t nb) {
  uint64_t h = 1469598103934665603ull;
  for (size_t i = 0; i < na; i++) h = (h ^ (unsigned char)a[i]) * 1099511628211ull;
  for (size_t i = 0; i < nb; i++) h = (h ^ (unsigned char)b[i]) * 1099511628211ull;
  return h ^ (h >> 29);
}

/* id of prefix + s[0, n) or -1. */
static int32_t lookup2(const attn__wordpiece *wp, const char *prefix, size_t np, const char *s,
                       size_t n) {
  uint64_t i = hash_bytes(prefix, np, s, n) & wp->mask;
  for (;; i = (i + 1) & wp->mask) {
    int32_t id = wp->table[i];
    if (id < 0) return -1;
    const char *t = wp->tokens[id];
    if (wp->token_len[id] == np + n && !memcmp(t, prefix, np) && !memcmp(t + np, s, n)) return id;
  }
}

int32_t attn__wordpiece_lookup(const attn__wordpiece *wp, const char *token, size_t len) {
  return lookup2(wp, "", 0, token, len);
}

int64_t attn__wordpiece_vocab_size(const attn__wordpiece *wp) { return wp->n; }

const char *attn__wordpiece_token(const attn__wordpiece *wp, int32_t id) {
  return id >= 0 && id < wp->n ? wp->tokens[id] : NULL;
}

void attn__wordpiece_free(attn__wordpiece *wp) {
  if (!wp) return;
  attn__free(wp->text);
  attn__free(wp->tokens);
  attn__free(wp->token_len);
  attn__free(wp->table);
  attn__free(wp);
}

attn_status attn__wordpiece_load(attn__wordpiece **out, const char *path) {
  *out = NULL;
  FILE *fp = fopen(path, "rb");
  if (!fp) return attn__fail(ATTN_STATUS_INVALID_ARGUMENT, "%s: cannot open: %s", path, strerror(errno));
  attn__wordpiece *wp = attn__malloc(sizeof *wp, 64);
  attn_status st = ATTN_OK;
  if (!wp) {
    fclose(fp);
    return attn__fail(ATTN_STATUS_OUT_OF_MEMORY, "%s: out of memory", path);
  }
  memset(wp, 0, sizeof *wp);
  long size = -1;
  if (fseek(fp, 0, SEEK_END) == 0) size = ftell(fp);
  if (size < 0 || size > (1L << 30) || fseek(fp, 0, SEEK_SET) != 0) {
    st = attn__fail(ATTN_STATUS_INVALID_ARGUMENT, "%s: cannot read the vocabulary", path);
    goto done;
  }
  wp->text = attn__malloc((size_t)size + 2, 64);
  if (!wp->text) {
    st = attn__fail(ATTN_STATUS_OUT_OF_MEMORY, "%s: out of memory", path);
    goto done;
  }
  if (fread(wp->text, 1, (size_t)size, fp) != (size_t)size) {
    st = attn__fail(ATTN_STATUS_INVALID_ARGUMENT, "%s: read failed", path);
    goto done;
  }
  wp->text[size] = '\n';
  wp->text[size + 1] = '\0';
  int64_t lines = 0;
  for (long i = 0; i < size; i++) lines += wp->text[i] == '\n';
  if (size > 0 && wp->text[size - 1] != '\n') lines++;
  uint64_t cap = 1024;
  while (cap < (uint64_t)lines * 2) cap *= 2;
  wp->tokens = attn__malloc((size_t)(lines + 1) * sizeof(char *), 64);
  wp->token_len = attn__malloc((size_t)(lines + 1) * sizeof(uint32_t), 64);
  wp->table = attn__malloc((size_t)cap * sizeof(int32_t), 64);
  if (!wp->tokens || !wp->token_len || !wp->table) {
    st = attn__fail(ATTN_STATUS_OUT_OF_MEMORY, "%s: out of memory", path);
    goto done;
  }
  for (uint64_t i = 0; i < cap; i++) wp->table[i] = -1;
  wp->mask = cap - 1;
  char *p = wp->text, *end = wp->text + size;
  while (p < end) {
    char *nl = memchr(p, '\n', (size_t)(end - p) + 1);
    size_t len = (size_t)(nl - p);
    if (len && p[len - 1] == '\r') len--;
    p[len] = '\0';
    for (size_t k = 0; k < len;) {
      size_t u = attn__utf8_len((const unsigned char *)p + k, len - k);
      if (!u) {
        st = attn__fail(ATTN_STATUS_INVALID_ARGUMENT, "%s: line %lld is not valid UTF-8", path,
                        (long long)wp->n + 1);
        goto done;
      }
      k += u;
    }
    int32_t id = (int32_t)wp->n++;
    wp->tokens[id] = p;
    wp->token_len[id] = (uint32_t)len;
    /* The first occurrence of a duplicated token keeps its id. */
    if (lookup2(wp, "", 0, p, len) < 0) {
      uint64_t i = hash_bytes("", 0, p, len) & wp->mask;
      while (wp->table[i] >= 0) i = (i + 1) & wp->mask;
      wp->table[i] = id;
    }
    p = nl + 1;
  }
  wp->cls = attn__wordpiece_lookup(wp, "[CLS]", 5);
  wp->sep = attn__wordpiece_lookup(wp, "[SEP]", 5);
  wp->unk = attn__wordpiece_lookup(wp, "[UNK]", 5);
  wp->pad = attn__wordpiece_lookup(wp, "[PAD]", 5);
  if (wp->cls < 0 || wp->sep < 0 || wp->unk < 0 || wp->pad < 0)
    st = attn__fail(ATTN_STATUS_INVALID_ARGUMENT, "%s: vocabulary lacks [CLS], [SEP], [UNK] or [PAD]",
                    path);
done:
  fclose(fp);
  if (st != ATTN_OK) {
    attn__wordpiece_free(wp);
    return st;
  }
  *out = wp;
  return ATTN_OK;
}

/* ---- character classes ----------------------------------------------------------------------- */

static bool in_ranges(const uint32_t (*r)[2], size_t n, uint32_t cp) {
  size_t lo = 0, hi = n;
  while (lo < hi) {
    size_t mid = (lo + hi) / 2;
    if (cp < r[mid][0]) hi = mid;
    else if (cp > r[mid][1]) lo = mid + 1;
    else return true;
  }
  return false;
}

static bool is_control(uint32_t cp) {
  return in_ranges(control_ranges, sizeof control_ranges / sizeof control_ranges[0], cp);
}
static bool is_punct(uint32_t cp) {
  return in_ranges(punct_ranges, sizeof punct_ranges / sizeof punct_ranges[0], cp);
}
/* Unicode White_Space (what Rust's char::is_whitespace tests). */
static bool is_space(uint32_t cp) {
  return (cp >= 9 && cp <= 13) || cp == 0x20 || cp == 0x85 || cp == 0xA0 || cp == 0x1680 ||
         (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 || cp == 0x202F ||
         cp == 0x205F || cp == 0x3000;
}
/* The CJK blocks BERT splits into single characters (the ranges HF tokenizers uses). */
static bool is_cjk(uint32_t cp) {
  return (cp >= 0x4E00 && cp <= 0x9FFF) || (cp >= 0x3400 && cp <= 0x4DBF) ||
         (cp >= 0x20000 && cp <= 0x2A6DF) || (cp >= 0x2A700 && cp <= 0x2B73F) ||
         (cp >= 0x2B740 && cp <= 0x2B81F) || (cp >= 0x2B920 && cp <= 0x2CEAF) ||
         (cp >= 0xF900 && cp <= 0xFAFF) || (cp >= 0x2F800 && cp <= 0x2FA1F);
}

/* NFD without nonspacing marks, lower-cased: writes up to 3 code points, returns the count. */
static int fold(uint32_t cp, uint32_t *out) {
  if (cp >= 0xAC00 && cp <= 0xD7A3) { /* Hangul syllable: L V (T) jamo, arithmetically */
    uint32_t s = cp - 0xAC00, t = s % 28;
    out[0] = 0x1100 + s / (21 * 28);
    out[1] = 0x1161 + (s % (21 * 28)) / 28;
    if (!t) return 2;
    out[2] = 0x11A7 + t;
    return 3;
  }
  size_t lo = 0, hi = sizeof fold_cp / sizeof fold_cp[0];
  while (lo < hi) {
    size_t mid = (lo + hi) / 2;
    if (fold_cp[mid] < cp) lo = mid + 1;
    else hi = mid;
  }
  if (lo < sizeof fold_cp / sizeof fold_cp[0] && fold_cp[lo] == cp) {
    int n = fold_off[lo + 1] - fold_off[lo];
    for (int i = 0; i < n && i < 3; i++) out[i] = fold_pool[fold_off[lo] + i];
    return n < 3 ? n : 3;
  }
  out[0] = cp;
  return 1;
}

static size_t put_utf8(char *dst, uint32_t cp) {
  if (cp < 0x80) return dst[0] = (char)cp, 1;
  if (cp < 0x800) return dst[0] = (char)(0xC0 | (cp >> 6)), dst[1] = (char)(0x80 | (cp & 0x3F)), 2;
  if (cp < 0x10000) {
    dst[0] = (char)(0xE0 | (cp >> 12));
    dst[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
    dst[2] = (char)(0x80 | (cp & 0x3F));
    return 3;
  }
  dst[0] = (char)(0xF0 | (cp >> 18));
  dst[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
  dst[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
  dst[3] = (char)(0x80 | (cp & 0x3F));
  return 4;
}

/* ---- encoding -------------------------------------------------------------------------------- */

typedef struct encoder {
  const attn__wordpiece *wp;
  int32_t *ids;
  int64_t n, max; /* ids written, budget for word pieces (excluding [CLS]/[SEP]) */
  /* The word being built: UTF-8 bytes and the byte offset where each character starts. */
  char bytes[MAX_WORD_CHARS * 4 + 8];
  uint16_t starts[MAX_WORD_CHARS + 2];
  int n_chars;  /* characters so far (may exceed MAX_WORD_CHARS: the word is then [UNK]) */
  size_t n_bytes;
} encoder;

static void emit(encoder *e, int32_t id) {
  if (e->n < e->max) e->ids[1 + e->n++] = id;
}

/* Turn the word built so far into pieces. */
static void flush(encoder *e) {
  if (e->n_chars == 0) return;
  const attn__wordpiece *wp = e->wp;
  if (e->n_chars > MAX_WORD_CHARS) {
    emit(e, wp->unk);
  } else {
    e->starts[e->n_chars] = (uint16_t)e->n_bytes;
    int32_t pieces[MAX_WORD_CHARS];
    int n_pieces = 0, start = 0;
    while (start < e->n_chars) {
      int32_t id = -1;
      int end = e->n_chars;
      for (; end > start; end--) {
        size_t b0 = e->starts[start], b1 = e->starts[end];
        id = lookup2(wp, start ? "##" : "", start ? 2 : 0, e->bytes + b0, b1 - b0);
        if (id >= 0) break;
      }
      if (id < 0) {
        n_pieces = -1;
        break;
      }
      pieces[n_pieces++] = id;
      start = end;
    }
    if (n_pieces < 0) emit(e, wp->unk);
    for (int i = 0; i < n_pieces; i++) emit(e, pieces[i]);
  }
  e->n_chars = 0;
  e->n_bytes = 0;
}

static void add_char(encoder *e, uint32_t cp) {
  if (is_space(cp)) {
    flush(e);
  } else if (is_punct(cp)) {
    flush(e);
    e->starts[0] = 0;
    e->n_bytes = put_utf8(e->bytes, cp);
    e->n_chars = 1;
    flush(e);
  } else {
    if (e->n_chars < MAX_WORD_CHARS) {
      e->starts[e->n_chars] = (uint16_t)e->n_bytes;
      e->n_bytes += put_utf8(e->bytes + e->n_bytes, cp);
    }
    e->n_chars++;
  }
}

attn_status attn__wordpiece_encode(const attn__wordpiece *wp, const char *text, size_t len,
                                   int32_t *ids, int64_t max_ids, int64_t *n_ids) {
  *n_ids = 0;
  if (max_ids < 2) return attn__fail(ATTN_STATUS_INVALID_ARGUMENT, "tokenize: max_ids %lld < 2",
                                     (long long)max_ids);
  const unsigned char *s = (const unsigned char *)text;
  for (size_t i = 0; i < len;) {
    size_t k = attn__utf8_len(s + i, len - i);
    if (!k)
      return attn__fail(ATTN_STATUS_INVALID_ARGUMENT,
                        "tokenize: invalid UTF-8 at byte %zu (0x%02x)", i, s[i]);
    i += k;
  }
  encoder e;
  e.wp = wp;
  e.ids = ids;
  e.n = 0;
  e.max = max_ids - 2;
  e.n_chars = 0;
  e.n_bytes = 0;
  ids[0] = wp->cls;
  for (size_t i = 0; i < len && e.n < e.max;) {
    size_t k = attn__utf8_len(s + i, len - i);
    uint32_t cp = k == 1 ? s[i] : k == 2 ? (s[i] & 0x1Fu) : k == 3 ? (s[i] & 0x0Fu) : (s[i] & 0x07u);
    for (size_t j = 1; j < k; j++) cp = (cp << 6) | (s[i + j] & 0x3Fu);
    i += k;
    if (cp == 0 || cp == 0xFFFD || is_control(cp)) continue;
    if (is_space(cp)) {
      flush(&e);
      continue;
    }
    uint32_t f[3];
    int nf = fold(cp, f);
    bool cjk = is_cjk(cp);
    if (cjk) flush(&e);
    for (int j = 0; j < nf; j++) add_char(&e, f[j]);
    if (cjk) flush(&e);
  }
  flush(&e);
  ids[1 + e.n] = wp->sep;
  *n_ids = e.n + 2;
  return ATTN_OK;
}
