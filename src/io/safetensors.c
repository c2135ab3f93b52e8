/* The strict safetensors reader and writer: see include/attn/safetensors.h for the format and the
 * checks. The reader maps the file, parses the header with our JSON parser (json.c), then checks
 * every tensor entry and that the byte ranges tile the data region exactly. */
#include "attn/safetensors.h"

#include "json.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

struct attn_st_file {
  const unsigned char *base; /* whole file */
  size_t size;
  int owner;                  /* 0 borrowed, 1 mmap, 2 attn__malloc */
  attn__json_doc doc;         /* names point into its string arena */
  attn_st_tensor *tensors;    /* sorted by data offset */
  const attn_st_tensor **by_name;
  int64_t n;
  const attn__json_node *meta; /* "__metadata__" object or NULL */
};

static const struct {
  const char *name;
  size_t size;
} dtype_info[] = {
    [ATTN_ST_F64] = {"F64", 8}, [ATTN_ST_F32] = {"F32", 4}, [ATTN_ST_F16] = {"F16", 2},
    [ATTN_ST_BF16] = {"BF16", 2}, [ATTN_ST_I64] = {"I64", 8}, [ATTN_ST_I32] = {"I32", 4},
    [ATTN_ST_I16] = {"I16", 2}, [ATTN_ST_I8] = {"I8", 1}, [ATTN_ST_U8] = {"U8", 1},
    [ATTN_ST_BOOL] = {"BOOL", 1},
};
#define N_DTYPES ((int)(sizeof dtype_info / sizeof dtype_info[0]))

size_t attn_st_dtype_size(attn_st_dtype dtype) {
  return (int)dtype >= 0 && (int)dtype < N_DTYPES ? dtype_info[dtype].size : 0;
}

const char *attn_st_dtype_name(attn_st_dtype dtype) {
  return (int)dtype >= 0 && (int)dtype < N_DTYPES ? dtype_info[dtype].name : NULL;
}

int64_t attn_st_numel(const attn_st_tensor *t) {
  int64_t n = 1;
  for (int i = 0; t && i < t->ndim; i++) n *= t->shape[i];
  return n;
}

/* numel x dtype size of a shape with checked arithmetic; false on overflow (or a negative dim). */
static bool shape_bytes(const int64_t *shape, int ndim, size_t elem, int64_t *bytes) {
  int64_t n = 1;
  for (int i = 0; i < ndim; i++) {
    if (shape[i] < 0 || !attn__mul_i64(n, shape[i], &n)) return false;
  }
  return attn__mul_i64(n, (int64_t)elem, bytes);
}

static int cmp_offset(const void *a, const void *b) {
  const attn_st_tensor *x = a, *y = b;
  const unsigned char *px = x->data, *py = y->data;
  if (px != py) return px < py ? -1 : 1;
  return x->nbytes < y->nbytes ? -1 : x->nbytes > y->nbytes;
}

static int cmp_name(const void *a, const void *b) {
  const attn_st_tensor *const *x = a, *const *y = b;
  return strcmp((*x)->name, (*y)->name);
}

void attn_st_close(attn_st_file *f) {
  if (!f) return;
  if (f->owner == 1) munmap((void *)f->base, f->size);
  if (f->owner == 2) attn__free((void *)f->base);
  attn__json_free(&f->doc);
  attn__free(f->tensors);
  attn__free(f->by_name);
  attn__free(f);
}

void attn_st_release(attn_st_file *f, const attn_st_tensor *t) {
  if (!f || !t || f->owner != 1 || !t->data) return;
  const uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
  if (page == 0 || page == (uintptr_t)-1) return;
  const uintptr_t lo = (uintptr_t)t->data, hi = lo + t->nbytes;
  const uintptr_t base = (uintptr_t)f->base, end = base + f->size;
  if (lo < base || hi > end) return; /* not this file's tensor */
  const uintptr_t p0 = (lo + page - 1) / page * page, p1 = hi / page * page;
  if (p1 > p0) madvise((void *)p0, p1 - p0, MADV_DONTNEED);
}

/* Parse one tensor entry `e` (its key is the name) into t. */
static attn_status parse_entry(attn_st_file *f, const attn__json_node *e, const unsigned char *data,
                               uint64_t data_size, attn_st_tensor *t, const char *what) {
  const attn__json_doc *doc = &f->doc;
  const char *name = e->key;
  if (!name[0]) return attn__fail(ATTN_STATUS_INVALID_ARGUMENT, "%s: a tensor has an empty name", what);
  if (e->kind != ATTN__JSON_OBJECT)
    return attn__fail(ATTN_STATUS_INVALID_ARGUMENT, "%s: tensor '%s': entry is not an object", what,
                      name);
  const attn__json_node *dt = NULL, *sh = NULL, *off = NULL;
  for (const attn__json_node *m = attn__json_first(doc, e); m; m = attn__json_next(doc, m)) {
    const attn__json_node **slot = !strcmp(m->key, "dtype")          ? &dt
                                   : !strcmp(m->key, "shape")        ? &sh
                                   : !strcmp(m->key, "data_offsets") ? &off
                                                                     : NULL;
    if (!slot)
      return attn__fail(ATTN_STATUS_INVALID_ARGUMENT, "%s: tensor '%s': unknown field '%s'", what,
                        name, m->key);
    if (*slot)
      return attn__fail(ATTN_STATUS_INVALID_ARGUMENT, "%s: tensor '%s': duplicate field '%s'", what,
                        name, m->key);
    *slot = m;
  }
  if (!dt || !sh || !off)
    return attn__fail(ATTN_STATUS_INVALID_ARGUMENT, "%s: tensor '%s': missing field '%s'", what,
                      name, !dt ? "dtype" : !sh ? "shape" : "data_offsets");
  if (dt->kind != ATTN__JSON_STRING)
    return attn__fail(ATTN_STATUS_INVALID_ARGUMENT, "%s: tensor '%s': dtype is not a string", what,
                      name);
  int d = 0;
  while (d < N_DTYPES && strcmp(dt->str, dtype_info[d].name)) d++;
  if (d == N_DTYPES)
    return attn__fail(ATTN_STATUS_INVALID_ARGUMENT, "%s: tensor '%s': unknown dtype '%s'", what,
                      name, dt->str);
  t->dtype = (attn_st_dtype)d;
  if (sh->kind != ATTN__JSON_ARRAY)
    return attn__fail(ATTN_STATUS_INVALID_ARGUMENT, "%s: tensor '%s': shape is not an array", what,
                      name);
  if (sh->n_children > ATTN_ST_MAX_DIMS)
    return attn__fail(ATTN_STATUS_INVALID_ARGUMENT, "%s: tensor '%s': rank %" PRId64 " > %d", what,
                      name, sh->n_children, ATTN_ST_MAX_DIMS);
  t->ndim = (int)sh->n_children;
  int i = 0;
  for (const attn__json_node *x = attn__json_first(doc, sh); x; x = attn__json_next(doc, x), i++) {
    if (x->kind != ATTN__JSON_NUMBER || !x->is_int || x->ival < 0)
      return attn__fail(ATTN_STATUS_INVALID_ARGUMENT,
                        "%s: tensor '%s': shape[%d] is not an integer >= 0", what, name, i);
    t->shape[i] = x->ival;
  }
  int64_t bytes;
  if (!shape_bytes(t->shape, t->ndim, dtype_info[d].size, &bytes))
    return attn__fail(ATTN_STATUS_OVERFLOW, "%s: tensor '%s': shape size overflows", what, name);
  if (off->kind != ATTN__JSON_ARRAY || off->n_children != 2)
    return attn__fail(ATTN_STATUS_INVALID_ARGUMENT,
                      "%s: tensor '%s': data_offsets is not an array of 2 integers", what, name);
  const attn__json_node *b = attn__json_first(doc, off), *en = attn__json_next(doc, b);
  if (b->kind != ATTN__JSON_NUMBER || !b->is_int || b->ival < 0 || en->kind != ATTN__JSON_NUMBER ||
      !en->is_int || en->ival < 0)
    return attn__fail(ATTN_STATUS_INVALID_ARGUMENT,
                      "%s: tensor '%s': data_offsets are not integers >= 0", what, name);
  if (b->ival > en->ival)
    return attn__fail(ATTN_STATUS_INVALID_ARGUMENT,
                      "%s: tensor '%s': data_offsets [%" PRId64 ", %" PRId64 "] run backwards", what,
                      name, b->ival, en->ival);
  if ((uint64_t)en->ival > data_size)
    return attn__fail(ATTN_STATUS_INVALID_ARGUMENT,
                      "%s: tensor '%s': data_offsets end %" PRId64
                      " is past the data region (%" PRIu64 " bytes; file truncated?)",
                      what, name, en->ival, data_size);
  if (en->ival - b->ival != bytes)
    return attn__fail(ATTN_STATUS_INVALID_ARGUMENT,
                      "%s: tensor '%s': byte span %" PRId64 " != %" PRId64
                      " (element count x %zu-byte %s)",
                      what, name, en->ival - b->ival, bytes, dtype_info[d].size, dtype_info[d].name);
  t->name = name;
  t->data = data + b->ival;
  t->nbytes = (size_t)bytes;
  return ATTN_OK;
}

static attn_status parse_file(attn_st_file *f, const char *what) {
  if (f->size < 8)
    return attn__fail(ATTN_STATUS_INVALID_ARGUMENT,
                      "%s: %zu bytes: too short for a safetensors header length", what, f->size);
  uint64_t hlen = 0;
  for (int i = 7; i >= 0; i--) hlen = hlen << 8 | f->base[i];
  if (hlen > ATTN_ST_MAX_HEADER)
    return attn__fail(ATTN_STATUS_INVALID_ARGUMENT,
                      "%s: header length %" PRIu64 " exceeds the limit of %" PRIu64 " bytes", what,
                      hlen, ATTN_ST_MAX_HEADER);
  if (hlen > f->size - 8)
    return attn__fail(ATTN_STATUS_INVALID_ARGUMENT,
                      "%s: header length %" PRIu64 " runs past the end of the file (%zu bytes)",
                      what, hlen, f->size);
  if (hlen < 2 || f->base[8] != '{')
    return attn__fail(ATTN_STATUS_INVALID_ARGUMENT, "%s: header does not start with '{'", what);
  attn_status st = attn__json_parse(&f->doc, (const char *)f->base + 8, (size_t)hlen, what);
  if (st != ATTN_OK) return st;
  const attn__json_node *root = attn__json_root(&f->doc);
  if (root->kind != ATTN__JSON_OBJECT)
    return attn__fail(ATTN_STATUS_INVALID_ARGUMENT, "%s: header is not a JSON object", what);
  const unsigned char *data = f->base + 8 + hlen;
  uint64_t data_size = f->size - 8 - hlen;

  int64_t n = 0;
  for (const attn__json_node *e = attn__json_first(&f->doc, root); e; e = attn__json_next(&f->doc, e)) {
    if (strcmp(e->key, "__metadata__") != 0) {
      n++;
      continue;
    }
    if (f->meta)
      return attn__fail(ATTN_STATUS_INVALID_ARGUMENT, "%s: duplicate __metadata__", what);
    if (e->kind != ATTN__JSON_OBJECT)
      return attn__fail(ATTN_STATUS_INVALID_ARGUMENT, "%s: __metadata__ is not an object", what);
    for (const attn__json_node *m = attn__json_first(&f->doc, e); m; m = attn__json_next(&f->doc, m))
      if (m->kind != ATTN__JSON_STRING)
        return attn__fail(ATTN_STATUS_INVALID_ARGUMENT, "%s: __metadata__ value of '%s' is not a string",
                          what, m->key);
    f->meta = e;
  }
  f->tensors = attn__malloc((size_t)(n ? n : 1) * sizeof(attn_st_tensor), 64);
  f->by_name = attn__malloc((size_t)(n ? n : 1) * sizeof(attn_st_tensor *), 64);
  if (!f->tensors || !f->by_name)
    return attn__fail(ATTN_STATUS_OUT_OF_MEMORY, "%s: out of memory for %" PRId64 " tensors", what, n);
  int64_t i = 0;
  for (const attn__json_node *e = attn__json_first(&f->doc, root); e; e = attn__json_next(&f->doc, e)) {
    if (!strcmp(e->key, "__metadata__")) continue;
    memset(&f->tensors[i], 0, sizeof f->tensors[i]);
    st = parse_entry(f, e, data, data_size, &f->tensors[i], what);
    if (st != ATTN_OK) return st;
    i++;
  }
  f->n = n;

  /* Byte ranges sorted by (begin, size) must tile [0, data_size) exactly. */
  qsort(f->tensors, (size_t)n, sizeof *f->tensors, cmp_offset);
  uint64_t pos = 0;
  for (i = 0; i < n; i++) {
    const attn_st_tensor *t = &f->tensors[i];
    uint64_t begin = (uint64_t)((const unsigned char *)t->data - data);
    if (begin < pos)
      return attn__fail(ATTN_STATUS_INVALID_ARGUMENT,
                        "%s: tensor '%s' (bytes %" PRIu64 "..%" PRIu64
                        ") overlaps the tensor before it (ends at %" PRIu64 ")",
                        what, t->name, begin, begin + t->nbytes, pos);
    if (begin > pos)
      return attn__fail(ATTN_STATUS_INVALID_ARGUMENT,
                        "%s: gap in the data region: bytes %" PRIu64 "..%" PRIu64
                        " belong to no tensor (before '%s')",
                        what, pos, begin, t->name);
    pos = begin + t->nbytes;
  }
  if (pos != data_size)
    return attn__fail(ATTN_STATUS_INVALID_ARGUMENT,
                      "%s: data region has %" PRIu64 " bytes but the tensors cover %" PRIu64, what,
                      data_size, pos);

  for (i = 0; i < n; i++) f->by_name[i] = &f->tensors[i];
  qsort(f->by_name, (size_t)n, sizeof *f->by_name, cmp_name);
  for (i = 1; i < n; i++)
    if (!strcmp(f->by_name[i - 1]->name, f->by_name[i]->name))
      return attn__fail(ATTN_STATUS_INVALID_ARGUMENT, "%s: duplicate tensor name '%s'", what,
                        f->by_name[i]->name);
  return ATTN_OK;
}

static attn_status finish_open(attn_st_file **out, attn_st_file *f, const char *what) {
  attn_status st = parse_file(f, what);
  if (st != ATTN_OK) {
    attn_st_close(f);
    return st;
  }
  *out = f;
  return ATTN_OK;
}

attn_status attn_st_open_memory(attn_st_file **file, const void *data, size_t size, const char *what) {
  attn__clear_error();
  if (!file) return attn__fail(ATTN_STATUS_NULL_POINTER, "attn_st_open_memory: file is NULL");
  *file = NULL;
  if (!data && size) return attn__fail(ATTN_STATUS_NULL_POINTER, "attn_st_open_memory: data is NULL");
  attn_st_file *f = attn__malloc(sizeof *f, 64);
  if (!f) return attn__fail(ATTN_STATUS_OUT_OF_MEMORY, "attn_st_open_memory: out of memory");
  memset(f, 0, sizeof *f);
  static const unsigned char empty[1];
  f->base = data ? data : empty;
  f->size = size;
  return finish_open(file, f, what ? what : "buffer");
}

attn_status attn_st_open(attn_st_file **file, const char *path) {
  attn__clear_error();
  if (!file) return attn__fail(ATTN_STATUS_NULL_POINTER, "attn_st_open: file is NULL");
  *file = NULL;
  if (!path) return attn__fail(ATTN_STATUS_NULL_POINTER, "attn_st_open: path is NULL");
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return attn__fail(ATTN_STATUS_INVALID_ARGUMENT, "%s: cannot open: %s", path, strerror(errno));
  struct stat sb;
  if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
    close(fd);
    return attn__fail(ATTN_STATUS_INVALID_ARGUMENT, "%s: not a regular file", path);
  }
  if ((uint64_t)sb.st_size > (uint64_t)SIZE_MAX) {
    close(fd);
    return attn__fail(ATTN_STATUS_OVERFLOW, "%s: file too large", path);
  }
  attn_st_file *f = attn__malloc(sizeof *f, 64);
  if (!f) {
    close(fd);
    return attn__fail(ATTN_STATUS_OUT_OF_MEMORY, "attn_st_open: out of memory");
  }
  memset(f, 0, sizeof *f);
  f->size = (size_t)sb.st_size;
  static const unsigned char empty[1];
  f->base = empty;
  if (f->size > 0) {
    void *m = mmap(NULL, f->size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (m != MAP_FAILED) {
      f->base = m;
      f->owner = 1;
    } else {
      /* No mapping (some filesystems): read the whole file instead. */
      unsigned char *buf = attn__malloc(f->size, 64);
      size_t got = 0;
      while (buf && got < f->size) {
        ssize_t r = read(fd, buf + got, f->size - got);
        if (r <= 0) {
          if (r < 0 && errno == EINTR) continue;
          break;
        }
        got += (size_t)r;
      }
      if (!buf || got != f->size) {
        attn__free(buf);
        attn__free(f);
        close(fd);
        return attn__fail(buf ? ATTN_STATUS_INVALID_ARGUMENT : ATTN_STATUS_OUT_OF_MEMORY,
                          "%s: cannot read the file", path);
      }
      f->base = buf;
      f->owner = 2;
    }
  }
  close(fd);
  return finish_open(file, f, path);
}

int64_t attn_st_count(const attn_st_file *f) { return f ? f->n : 0; }

const attn_st_tensor *attn_st_get(const attn_st_file *f, int64_t i) {
  return f && i >= 0 && i < f->n ? &f->tensors[i] : NULL;
}

const attn_st_tensor *attn_st_find(const attn_st_file *f, const char *name) {
  if (!f || !name) return NULL;
  int64_t lo = 0, hi = f->n - 1;
  while (lo <= hi) {
    int64_t mid = lo + (hi - lo) / 2;
    int c = strcmp(f->by_name[mid]->name, name);
    if (c == 0) return f->by_name[mid];
    if (c < 0) lo = mid + 1;
    else hi = mid - 1;
  }
  return NULL;
}

const char *attn_st_metadata(const attn_st_file *f, const char *key) {
  if (!f || !key || !f->meta) return NULL;
  const attn__json_node *v = attn__json_get(&f->doc, f->meta, key);
  return v ? v->str : NULL;
}

/* ---- writer ---------------------------------------------------------------------------------- */

typedef struct sbuf {
  char *p;
  size_t n, cap;
  int oom;
} sbuf;

static void sb_put(sbuf *b, const char *s, size_t len) {
  if (b->oom) return;
  if (b->n + len + 1 > b->cap) {
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->n + len + 1) cap *= 2;
    char *q = attn__malloc(cap, 64);
    if (!q) {
      b->oom = 1;
      return;
    }
    if (b->n) memcpy(q, b->p, b->n);
    attn__free(b->p);
    b->p = q;
    b->cap = cap;
  }
  memcpy(b->p + b->n, s, len);
  b->n += len;
  b->p[b->n] = '\0';
}

static void sb_str(sbuf *b, const char *s) { sb_put(b, s, strlen(s)); }

static void sb_printf(sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_printf(sbuf *b, const char *fmt, ...) {
  char tmp[128];
  va_list ap;
  va_start(ap, fmt);
  int k = vsnprintf(tmp, sizeof tmp, fmt, ap);
  va_end(ap);
  if (k > 0) sb_put(b, tmp, (size_t)k < sizeof tmp ? (size_t)k : sizeof tmp - 1);
}

/* A JSON string literal of s (valid UTF-8, checked by the caller). */
static void sb_json_string(sbuf *b, const char *s) {
  sb_put(b, "\"", 1);
  for (; *s; s++) {
    unsigned char c = (unsigned char)*s;
    if (c == '"' || c == '\\') {
      char e[2] = {'\\', (char)c};
      sb_put(b, e, 2);
    } else if (c < 0x20) {
      sb_printf(b, "\\u%04x", c);
    } else {
      sb_put(b, s, 1);
    }
  }
  sb_put(b, "\"", 1);
}

static bool valid_utf8(const char *s) {
  size_t len = strlen(s), i = 0;
  while (i < len) {
    size_t k = attn__utf8_len((const unsigned char *)s + i, len - i);
    if (!k) return false;
    i += k;
  }
  return true;
}

static int cmp_str_ptr(const void *a, const void *b) {
  return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static attn_status write_all(FILE *fp, const void *p, size_t n, const char *path) {
  if (n && fwrite(p, 1, n, fp) != n)
    return attn__fail(ATTN_STATUS_INVALID_ARGUMENT, "%s: write failed: %s", path, strerror(errno));
  return ATTN_OK;
}

attn_status attn_st_write(const char *path, const attn_st_tensor *tensors, int64_t n,
                          const char *const *meta_kv, int64_t n_meta) {
  attn__clear_error();
  if (!path) return attn__fail(ATTN_STATUS_NULL_POINTER, "attn_st_write: path is NULL");
  if (n < 0 || n_meta < 0)
    return attn__fail(ATTN_STATUS_INVALID_ARGUMENT, "attn_st_write: negative count");
  if (n > 0 && !tensors) return attn__fail(ATTN_STATUS_NULL_POINTER, "attn_st_write: tensors is NULL");
  if (n_meta > 0 && !meta_kv)
    return attn__fail(ATTN_STATUS_NULL_POINTER, "attn_st_write: meta_kv is NULL");
  for (int64_t i = 0; i < 2 * n_meta; i++)
    if (!meta_kv[i] || !valid_utf8(meta_kv[i]))
      return attn__fail(ATTN_STATUS_INVALID_ARGUMENT,
                        "attn_st_write: metadata entry %" PRId64 " is NULL or not UTF-8", i / 2);
  for (int64_t i = 0; i < n; i++) {
    const attn_st_tensor *t = &tensors[i];
    if (!t->name || !t->name[0] || !valid_utf8(t->name) || !strcmp(t->name, "__metadata__"))
      return attn__fail(ATTN_STATUS_INVALID_ARGUMENT,
                        "attn_st_write: tensor %" PRId64 " has a missing, empty, non-UTF-8 or reserved name", i);
    if (!attn_st_dtype_size(t->dtype))
      return attn__fail(ATTN_STATUS_INVALID_ARGUMENT, "attn_st_write: tensor '%s': unknown dtype %d",
                        t->name, (int)t->dtype);
    if (t->ndim < 0 || t->ndim > ATTN_ST_MAX_DIMS)
      return attn__fail(ATTN_STATUS_INVALID_ARGUMENT, "attn_st_write: tensor '%s': rank %d", t->name,
                        t->ndim);
    int64_t bytes;
    if (!shape_bytes(t->shape, t->ndim, attn_st_dtype_size(t->dtype), &bytes))
      return attn__fail(ATTN_STATUS_OVERFLOW, "attn_st_write: tensor '%s': negative dim or size overflow",
                        t->name);
    if ((uint64_t)bytes != t->nbytes)
      return attn__fail(ATTN_STATUS_INVALID_ARGUMENT,
                        "attn_st_write: tensor '%s': nbytes %zu != %" PRId64 " (shape x dtype size)",
                        t->name, t->nbytes, bytes);
    if (bytes > 0 && !t->data)
      return attn__fail(ATTN_STATUS_NULL_POINTER, "attn_st_write: tensor '%s': data is NULL", t->name);
  }
  attn_status st = ATTN_OK;
  const char **names = attn__malloc((size_t)(n ? n : 1) * sizeof(char *), 64);
  if (!names) return attn__fail(ATTN_STATUS_OUT_OF_MEMORY, "attn_st_write: out of memory");
  for (int64_t i = 0; i < n; i++) names[i] = tensors[i].name;
  qsort(names, (size_t)n, sizeof *names, cmp_str_ptr);
  for (int64_t i = 1; i < n; i++)
    if (!strcmp(names[i - 1], names[i])) {
      st = attn__fail(ATTN_STATUS_INVALID_ARGUMENT, "attn_st_write: duplicate tensor name '%s'", names[i]);
      break;
    }
  attn__free(names);
  if (st != ATTN_OK) return st;

  sbuf h = {0};
  sb_str(&h, "{");
  if (n_meta > 0) {
    sb_str(&h, "\"__metadata__\":{");
    for (int64_t i = 0; i < n_meta; i++) {
      if (i) sb_str(&h, ",");
      sb_json_string(&h, meta_kv[2 * i]);
      sb_str(&h, ":");
      sb_json_string(&h, meta_kv[2 * i + 1]);
    }
    sb_str(&h, "}");
  }
  /* Data order: by element size, widest first (stable otherwise), so with the header padded to
   * a multiple of 8 every tensor starts at a multiple of its element size. */
  int64_t *order = attn__malloc((size_t)(n ? n : 1) * sizeof(int64_t), 64);
  if (!order) {
    attn__free(h.p);
    return attn__fail(ATTN_STATUS_OUT_OF_MEMORY, "attn_st_write: out of memory");
  }
  int64_t k = 0;
  for (size_t size = 8; size >= 1; size /= 2)
    for (int64_t i = 0; i < n; i++)
      if (attn_st_dtype_size(tensors[i].dtype) == size) order[k++] = i;
  uint64_t off = 0;
  for (int64_t j = 0; j < n; j++) {
    const attn_st_tensor *t = &tensors[order[j]];
    if (j || n_meta > 0) sb_str(&h, ",");
    sb_json_string(&h, t->name);
    sb_printf(&h, ":{\"dtype\":\"%s\",\"shape\":[", attn_st_dtype_name(t->dtype));
    for (int d = 0; d < t->ndim; d++) sb_printf(&h, d ? ",%" PRId64 : "%" PRId64, t->shape[d]);
    sb_printf(&h, "],\"data_offsets\":[%" PRIu64 ",%" PRIu64 "]}", off, off + t->nbytes);
    off += t->nbytes;
  }
  sb_str(&h, "}");
  while (!h.oom && h.n % 8 != 0) sb_str(&h, " ");
  if (h.oom) {
    attn__free(order);
    attn__free(h.p);
    return attn__fail(ATTN_STATUS_OUT_OF_MEMORY, "attn_st_write: out of memory for the header");
  }

  size_t plen = strlen(path);
  char *tmp = attn__malloc(plen + 5, 64);
  if (!tmp) {
    attn__free(order);
    attn__free(h.p);
    return attn__fail(ATTN_STATUS_OUT_OF_MEMORY, "attn_st_write: out of memory");
  }
  memcpy(tmp, path, plen);
  memcpy(tmp + plen, ".tmp", 5);
  FILE *fp = fopen(tmp, "wb");
  if (!fp) {
    st = attn__fail(ATTN_STATUS_INVALID_ARGUMENT, "%s: cannot create: %s", tmp, strerror(errno));
  } else {
    unsigned char len8[8];
    for (int i = 0; i < 8; i++) len8[i] = (unsigned char)((uint64_t)h.n >> (8 * i));
    st = write_all(fp, len8, 8, tmp);
    if (st == ATTN_OK) st = write_all(fp, h.p, h.n, tmp);
    for (int64_t j = 0; st == ATTN_OK && j < n; j++)
      st = write_all(fp, tensors[order[j]].data, tensors[order[j]].nbytes, tmp);
    if (fclose(fp) != 0 && st == ATTN_OK)
      st = attn__fail(ATTN_STATUS_INVALID_ARGUMENT, "%s: write failed: %s", tmp, strerror(errno));
    if (st == ATTN_OK && rename(tmp, path) != 0)
      st = attn__fail(ATTN_STATUS_INVALID_ARGUMENT, "%s: cannot rename to %s: %s", tmp, path,
                      strerror(errno));
    if (st != ATTN_OK) remove(tmp);
  }
  attn__free(tmp);
  attn__free(order);
  attn__free(h.p);
  return st;
}
