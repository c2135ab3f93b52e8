/* Named parameter lists and safetensors checkpoints of them. */
#include "nn_internal.h"

#include "attn/safetensors.h"

static char *str_dup(const char *a, const char *b) {
  /* a + (b ? "." b : ""), through the allocator hook */
  const size_t la = strlen(a), lb = b ? strlen(b) + 1 : 0;
  char *s = attn__malloc(la + lb + 1, 16);
  if (!s) return NULL;
  memcpy(s, a, la);
  if (b) {
    s[la] = '.';
    memcpy(s + la + 1, b, lb - 1);
  }
  s[la + lb] = '\0';
  return s;
}

attn_status attn_nn_params_add_named(attn_nn_params *list, attn_var *p, const char *name) {
  attn__clear_error();
  if (!list || !p) return attn__fail(ATTN_STATUS_NULL_POINTER, "attn_nn_params_add: NULL argument");
  if (!name) name = p->name ? p->name : "";
  if (list->n == list->cap) {
    int64_t cap = list->cap ? list->cap * 2 : 16;
    attn_var **items = attn__malloc((size_t)cap * sizeof *items, 16);
    char **names = items ? attn__malloc((size_t)cap * sizeof *names, 16) : NULL;
    if (!names) {
      attn__free(items);
      return attn__fail(ATTN_STATUS_OUT_OF_MEMORY, "attn_nn_params_add: out of memory");
    }
    if (list->n) {
      memcpy(items, list->items, (size_t)list->n * sizeof *items);
      memcpy(names, list->names, (size_t)list->n * sizeof *names);
    }
    attn__free(list->items);
    attn__free(list->names);
    list->items = items;
    list->names = names;
    list->cap = cap;
  }
  char *copy = str_dup(name, NULL);
  if (!copy) return attn__fail(ATTN_STATUS_OUT_OF_MEMORY, "attn_nn_params_add: out of memory");
  list->items[list->n] = p;
  list->names[list->n] = copy;
  list->n++;
  return ATTN_OK;
}

attn_status attn_nn_params_add(attn_nn_params *list, attn_var *p) {
  return attn_nn_params_add_named(list, p, NULL);
}

attn_status attn_nn_params_prefix(attn_nn_params *list, int64_t first, const char *prefix) {
  attn__clear_error();
  if (!list || !prefix) return attn__fail(ATTN_STATUS_NULL_POINTER, "attn_nn_params_prefix: NULL argument");
  if (first < 0 || first > list->n)
    return attn__fail(ATTN_STATUS_INVALID_ARGUMENT, "attn_nn_params_prefix: first %lld outside [0, %lld]",
                      (long long)first, (long long)list->n);
  const int64_t count = list->n - first;
  if (count == 0) return ATTN_OK;
  /* Build every new name first, so a failure changes nothing. */
  char **fresh = attn__malloc((size_t)count * sizeof *fresh, 16);
  if (!fresh) return attn__fail(ATTN_STATUS_OUT_OF_MEMORY, "attn_nn_params_prefix: out of memory");
  for (int64_t i = 0; i < count; i++) {
    fresh[i] = str_dup(prefix, list->names[first + i]);
    if (!fresh[i]) {
      for (int64_t j = 0; j < i; j++) attn__free(fresh[j]);
      attn__free(fresh);
      return attn__fail(ATTN_STATUS_OUT_OF_MEMORY, "attn_nn_params_prefix: out of memory");
    }
  }
  for (int64_t i = 0; i < count; i++) {
    attn__free(list->names[first + i]);
    list->names[first + i] = fresh[i];
  }
  attn__free(fresh);
  return ATTN_OK;
}

void attn_nn_params_truncate(attn_nn_params *list, int64_t n_keep) {
  if (!list || n_keep < 0) return;
  while (list->n > n_keep) attn__free(list->names[--list->n]);
}

attn_var *attn_nn_params_find(const attn_nn_params *list, const char *name) {
  if (!list || !name) return NULL;
  for (int64_t i = 0; i < list->n; i++)
    if (strcmp(list->names[i], name) == 0) return list->items[i];
  return NULL;
}

void attn_nn_params_clear(attn_nn_params *list) {
  if (!list) return;
  attn_nn_params_truncate(list, 0);
  attn__free(list->items);
  attn__free(list->names);
  list->items = NULL;
  list->names = NULL;
  list->n = list->cap = 0;
}

void attn_nn_params_free_all(attn_nn_params *list) {
  if (!list) return;
  for (int64_t i = 0; i < list->n; i++) attn_nn_param_free(list->items[i]);
  attn_nn_params_clear(list);
}

void attn_nn_params_zero_grad(const attn_nn_params *list) {
  if (!list) return;
  for (int64_t i = 0; i < list->n; i++) attn_nn_zero_grad(list->items[i]);
}

int64_t attn_nn_params_numel(const attn_nn_params *list) {
  int64_t n = 0;
  if (list)
    for (int64_t i = 0; i < list->n; i++) n += list->items[i]->numel;
  return n;
}

/* ---- checkpoints ------------------------------------------------------------------------------ */

attn_status attn_nn_save(const char *path, const attn_nn_params *list, const char *const *meta_kv,
                         int64_t n_meta) {
  attn__clear_error();
  if (!path || !list) return attn__fail(ATTN_STATUS_NULL_POINTER, "attn_nn_save: path or list is NULL");
  attn_st_tensor *ts = attn__malloc((size_t)(list->n ? list->n : 1) * sizeof *ts, 16);
  if (!ts) return attn__fail(ATTN_STATUS_OUT_OF_MEMORY, "attn_nn_save: out of memory");
  for (int64_t i = 0; i < list->n; i++) {
    const attn_var *p = list->items[i];
    memset(&ts[i], 0, sizeof ts[i]);
    ts[i].name = list->names[i];
    ts[i].dtype = ATTN_ST_F32;
    ts[i].ndim = p->ndim;
    for (int d = 0; d < p->ndim; d++) ts[i].shape[d] = p->shape[d];
    ts[i].data = p->data;
    ts[i].nbytes = (size_t)p->numel * sizeof(float);
  }
  attn_status st = attn_st_write(path, ts, list->n, meta_kv, n_meta);
  attn__free(ts);
  return st;
}

/* Element i of a tensor of a float dtype as f32. */
static float st_load(const attn_st_tensor *t, int64_t i) {
  switch (t->dtype) {
    case ATTN_ST_F32: { float f; memcpy(&f, (const char *)t->data + 4 * i, 4); return f; }
    case ATTN_ST_F64: { double d; memcpy(&d, (const char *)t->data + 8 * i, 8); return (float)d; }
    case ATTN_ST_F16: { uint16_t h; memcpy(&h, (const char *)t->data + 2 * i, 2); return attn_f16_to_f32(h); }
    default: { uint16_t h; memcpy(&h, (const char *)t->data + 2 * i, 2); return attn_bf16_to_f32(h); }
  }
}

attn_status attn_nn_load(const char *path, const attn_nn_params *list) {
  attn__clear_error();
  if (!path || !list) return attn__fail(ATTN_STATUS_NULL_POINTER, "attn_nn_load: path or list is NULL");
  attn_st_file *f = NULL;
  attn_status st = attn_st_open(&f, path);
  if (st != ATTN_OK) return st;
  /* Validate everything before changing anything. */
  if (attn_st_count(f) != list->n) {
    for (int64_t i = 0; i < attn_st_count(f); i++) {
      const attn_st_tensor *t = attn_st_get(f, i);
      if (!attn_nn_params_find(list, t->name)) {
        st = attn__fail(ATTN_STATUS_INVALID_ARGUMENT, "attn_nn_load: %s: tensor \"%s\" is not a parameter of the model",
                        path, t->name);
        break;
      }
    }
    if (st == ATTN_OK) /* the file lacks some name; the loop below names it */
      st = ATTN_STATUS_INVALID_ARGUMENT;
  }
  for (int64_t i = 0; i < list->n; i++) {
    const attn_st_tensor *t = attn_st_find(f, list->names[i]);
    const attn_var *p = list->items[i];
    if (!t) {
      st = attn__fail(ATTN_STATUS_INVALID_ARGUMENT, "attn_nn_load: %s has no tensor \"%s\"", path, list->names[i]);
      break;
    }
    if (st != ATTN_OK) continue; /* extra tensor already reported; keep looking for a missing one */
    if (t->dtype != ATTN_ST_F32 && t->dtype != ATTN_ST_F16 && t->dtype != ATTN_ST_BF16 && t->dtype != ATTN_ST_F64) {
      st = attn__fail(ATTN_STATUS_INVALID_ARGUMENT, "attn_nn_load: %s: \"%s\" has dtype %s, want a float type",
                      path, t->name, attn_st_dtype_name(t->dtype));
      break;
    }
    bool same = t->ndim == p->ndim;
    for (int d = 0; same && d < p->ndim; d++) same = t->shape[d] == p->shape[d];
    if (!same) {
      st = attn__fail(ATTN_STATUS_SHAPE_MISMATCH, "attn_nn_load: %s: \"%s\" has another shape than the parameter",
                      path, t->name);
      break;
    }
  }
  if (st == ATTN_OK)
    for (int64_t i = 0; i < list->n; i++) {
      const attn_st_tensor *t = attn_st_find(f, list->names[i]);
      attn_var *p = list->items[i];
      if (t->dtype == ATTN_ST_F32)
        memcpy(p->data, t->data, (size_t)p->numel * sizeof(float));
      else
        for (int64_t j = 0; j < p->numel; j++) p->data[j] = st_load(t, j);
    }
  attn_st_close(f);
  return st;
}
