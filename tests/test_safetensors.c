/* The safetensors reader and writer: a bit-exact round trip of every dtype, and malformed files of
 * every kind (truncated, bad header length, overlapping or gapped offsets, wrong byte spans,
 * duplicate names, unknown dtypes, huge headers, bad JSON, random corruption), each of which must
 * be a clear error, never a crash (the suite also runs under ASan/UBSan), and must leak nothing. */
#include "common.h"

#include "attn/safetensors.h"

#include <unistd.h>

static char tmp_dir[256];

static void tmp_path(char *out, size_t n, const char *name) {
  snprintf(out, n, "%s/attn_st_%ld_%s", tmp_dir, (long)getpid(), name);
}

/* A file image: 8-byte length, header, `data_len` bytes of pattern data. */
static unsigned char *image(const char *header, size_t data_len, size_t *size) {
  size_t h = strlen(header);
  *size = 8 + h + data_len;
  unsigned char *b = malloc(*size ? *size : 1);
  for (int i = 0; i < 8; i++) b[i] = (unsigned char)((uint64_t)h >> (8 * i));
  memcpy(b + 8, header, h);
  for (size_t i = 0; i < data_len; i++) b[8 + h + i] = (unsigned char)(i * 37 + 1);
  return b;
}

/* Open a header + data image from memory; return the status and check the error mentions `want`. */
static attn_status open_bad(const char *header, size_t data_len, const char *want) {
  size_t size;
  unsigned char *b = image(header, data_len, &size);
  attn_st_file *f = (attn_st_file *)1;
  attn_status st = attn_st_open_memory(&f, b, size, "bad.safetensors");
  CHECK(st != ATTN_OK, "accepted a malformed header: %s", header);
  CHECK(f == NULL, "file handle not NULL on error");
  if (st != ATTN_OK && want)
    CHECK(strstr(attn_last_error(), want) != NULL, "error '%s' does not mention '%s' (header %s)",
          attn_last_error(), want, header);
  if (st == ATTN_OK) attn_st_close(f);
  free(b);
  return st;
}

static void test_round_trip(void) {
  float f32[6] = {1.0f, -0.0f, 1e-40f, NAN, INFINITY, 3.14159265f};
  uint16_t f16[3] = {0x3c00, 0x8001, 0x7e00};
  uint16_t bf16[2] = {0x3f80, 0xff80};
  double f64[2] = {1.0 / 3.0, -1e300};
  int64_t i64[2] = {INT64_MIN, INT64_MAX};
  int32_t i32[3] = {-1, 0, 7};
  int16_t i16[1] = {-300};
  int8_t i8[3] = {-128, 0, 127};
  uint8_t u8[5] = {0, 1, 2, 254, 255};
  uint8_t bools[2] = {0, 1};
  float scalar = 42.0f;
  attn_st_tensor ts[] = {
      {"a.f32", ATTN_ST_F32, 2, {2, 3}, f32, sizeof f32},
      {"b.f16", ATTN_ST_F16, 1, {3}, f16, sizeof f16},
      {"c.bf16", ATTN_ST_BF16, 2, {1, 2}, bf16, sizeof bf16},
      {"d.f64", ATTN_ST_F64, 1, {2}, f64, sizeof f64},
      {"e.i64", ATTN_ST_I64, 1, {2}, i64, sizeof i64},
      {"f.i32", ATTN_ST_I32, 3, {1, 1, 3}, i32, sizeof i32},
      {"g.i16", ATTN_ST_I16, 1, {1}, i16, sizeof i16},
      {"h.i8", ATTN_ST_I8, 1, {3}, i8, sizeof i8},
      {"i.u8", ATTN_ST_U8, 1, {5}, u8, sizeof u8},
      {"j.bool", ATTN_ST_BOOL, 1, {2}, bools, sizeof bools},
      {"k.scalar", ATTN_ST_F32, 0, {0}, &scalar, sizeof scalar},
      {"l.empty", ATTN_ST_F32, 2, {0, 4}, NULL, 0},
      {"m \"quoted\\ \xc3\xa9\xe4\xb8\xad", ATTN_ST_U8, 1, {1}, u8, 1},
  };
  int64_t n = (int64_t)(sizeof ts / sizeof ts[0]);
  const char *meta[] = {"format", "pt", "step", "12\n\"x\""};
  char path[512];
  tmp_path(path, sizeof path, "rt.safetensors");
  CHECK_OK(attn_st_write(path, ts, n, meta, 2));
  attn_st_file *f = NULL;
  CHECK_OK(attn_st_open(&f, path));
  if (!f) return;
  CHECK(attn_st_count(f) == n, "count %lld", (long long)attn_st_count(f));
  for (int64_t i = 0; i < n; i++) {
    const attn_st_tensor *t = attn_st_find(f, ts[i].name);
    CHECK(t != NULL, "tensor '%s' not found", ts[i].name);
    if (!t) continue;
    CHECK(t->dtype == ts[i].dtype && t->ndim == ts[i].ndim && t->nbytes == ts[i].nbytes,
          "tensor '%s' metadata differs", ts[i].name);
    for (int d = 0; d < t->ndim; d++) CHECK(t->shape[d] == ts[i].shape[d], "shape of %s", ts[i].name);
    CHECK(ts[i].nbytes == 0 || memcmp(t->data, ts[i].data, ts[i].nbytes) == 0,
          "tensor '%s' bytes differ", ts[i].name);
  }
  CHECK(attn_st_find(f, "nope") == NULL, "found a missing tensor");
  CHECK(attn_st_metadata(f, "format") && !strcmp(attn_st_metadata(f, "format"), "pt"), "metadata");
  CHECK(attn_st_metadata(f, "step") && !strcmp(attn_st_metadata(f, "step"), "12\n\"x\""),
        "metadata escape");
  CHECK(attn_st_metadata(f, "absent") == NULL, "metadata absent");
  /* Tensors come back in offset order; the writer aligned each to its element size (the file is
   * mapped at a page boundary, so file offsets and addresses agree modulo 8). */
  for (int64_t i = 0; i < n; i++) {
    const attn_st_tensor *t = attn_st_get(f, i);
    CHECK((uintptr_t)t->data % attn_st_dtype_size(t->dtype) == 0, "tensor '%s' misaligned", t->name);
    if (i) CHECK((const char *)t->data >= (const char *)attn_st_get(f, i - 1)->data, "offset order");
  }
  CHECK(attn_st_get(f, n) == NULL && attn_st_get(f, -1) == NULL, "get out of range");
  attn_st_close(f);

  /* Every truncation of the file is rejected, and the error names the file. */
  FILE *fp = fopen(path, "rb");
  CHECK(fp != NULL, "reopen");
  unsigned char buf[4096];
  size_t full = fp ? fread(buf, 1, sizeof buf, fp) : 0;
  if (fp) fclose(fp);
  CHECK(full > 8 && full < sizeof buf, "file size %zu", full);
  int accepted = 0;
  for (size_t len = 0; len < full; len++) {
    attn_st_file *g = NULL;
    if (attn_st_open_memory(&g, buf, len, "truncated") == ATTN_OK) accepted++, attn_st_close(g);
  }
  CHECK(accepted == 0, "%d truncations accepted", accepted);
  char cut[512];
  tmp_path(cut, sizeof cut, "cut.safetensors");
  fp = fopen(cut, "wb");
  if (fp) fwrite(buf, 1, full - 3, fp), fclose(fp);
  attn_st_file *g = NULL;
  CHECK_STATUS(attn_st_open(&g, cut), ATTN_STATUS_INVALID_ARGUMENT);
  CHECK(strstr(attn_last_error(), "cut.safetensors") != NULL, "error does not name the file: %s",
        attn_last_error());

  /* Random corruption of the header: never a crash; whatever is accepted still validates. */
  t_rng r = t_rng_make(7);
  for (int trial = 0; trial < 3000; trial++) {
    unsigned char b2[4096];
    memcpy(b2, buf, full);
    int flips = 1 + (int)t_int(&r, 0, 3);
    for (int k = 0; k < flips; k++) {
      size_t at = (size_t)t_int(&r, 0, (int64_t)full - 1);
      if (at >= 8 + 400) at = (size_t)t_int(&r, 0, 400); /* mostly the header */
      b2[at] = (unsigned char)t_int(&r, 0, 255);
    }
    attn_st_file *h = NULL;
    if (attn_st_open_memory(&h, b2, full, "fuzz") == ATTN_OK) {
      for (int64_t i = 0; i < attn_st_count(h); i++) {
        const attn_st_tensor *t = attn_st_get(h, i);
        CHECK((const unsigned char *)t->data + t->nbytes <= b2 + full, "tensor past the end");
      }
      attn_st_close(h);
    }
  }
  remove(path);
  remove(cut);
}

static void test_writer_errors(void) {
  float x[4] = {0};
  char path[512];
  tmp_path(path, sizeof path, "w.safetensors");
  attn_st_tensor dup[2] = {{"w", ATTN_ST_F32, 1, {4}, x, 16}, {"w", ATTN_ST_F32, 1, {4}, x, 16}};
  CHECK_STATUS(attn_st_write(path, dup, 2, NULL, 0), ATTN_STATUS_INVALID_ARGUMENT);
  CHECK(strstr(attn_last_error(), "duplicate") != NULL, "%s", attn_last_error());
  attn_st_tensor span = {"w", ATTN_ST_F32, 1, {4}, x, 12};
  CHECK_STATUS(attn_st_write(path, &span, 1, NULL, 0), ATTN_STATUS_INVALID_ARGUMENT);
  attn_st_tensor neg = {"w", ATTN_ST_F32, 1, {-4}, x, 16};
  CHECK_STATUS(attn_st_write(path, &neg, 1, NULL, 0), ATTN_STATUS_OVERFLOW);
  attn_st_tensor bad_dt = {"w", (attn_st_dtype)99, 1, {4}, x, 16};
  CHECK_STATUS(attn_st_write(path, &bad_dt, 1, NULL, 0), ATTN_STATUS_INVALID_ARGUMENT);
  attn_st_tensor bad_name = {"\xff\xfe", ATTN_ST_F32, 1, {4}, x, 16};
  CHECK_STATUS(attn_st_write(path, &bad_name, 1, NULL, 0), ATTN_STATUS_INVALID_ARGUMENT);
  attn_st_tensor reserved = {"__metadata__", ATTN_ST_F32, 1, {4}, x, 16};
  CHECK_STATUS(attn_st_write(path, &reserved, 1, NULL, 0), ATTN_STATUS_INVALID_ARGUMENT);
  attn_st_tensor no_data = {"w", ATTN_ST_F32, 1, {4}, NULL, 16};
  CHECK_STATUS(attn_st_write(path, &no_data, 1, NULL, 0), ATTN_STATUS_NULL_POINTER);
  CHECK_STATUS(attn_st_write(NULL, &span, 1, NULL, 0), ATTN_STATUS_NULL_POINTER);
  CHECK_STATUS(attn_st_write("/nonexistent-dir/x.safetensors", dup, 1, NULL, 0),
               ATTN_STATUS_INVALID_ARGUMENT);
  CHECK(access(path, F_OK) != 0, "a failed write left a file");
  /* An empty file (no tensors) round-trips. */
  CHECK_OK(attn_st_write(path, NULL, 0, NULL, 0));
  attn_st_file *f = NULL;
  CHECK_OK(attn_st_open(&f, path));
  CHECK(f && attn_st_count(f) == 0, "empty file");
  attn_st_close(f);
  remove(path);
}

static void test_malformed(void) {
  const char *ok = "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}";
  size_t size;
  unsigned char *b = image(ok, 8, &size);
  attn_st_file *f = NULL;
  CHECK_OK(attn_st_open_memory(&f, b, size, NULL));
  attn_st_close(f);
  free(b);

  /* Header length: larger than the file, larger than the limit, absurd. */
  unsigned char small[16] = {0};
  small[0] = 100;
  CHECK_STATUS(attn_st_open_memory(&f, small, sizeof small, "x"), ATTN_STATUS_INVALID_ARGUMENT);
  CHECK(strstr(attn_last_error(), "past the end") != NULL, "%s", attn_last_error());
  uint64_t huge = ATTN_ST_MAX_HEADER + 1;
  for (int i = 0; i < 8; i++) small[i] = (unsigned char)(huge >> (8 * i));
  CHECK_STATUS(attn_st_open_memory(&f, small, sizeof small, "x"), ATTN_STATUS_INVALID_ARGUMENT);
  CHECK(strstr(attn_last_error(), "limit") != NULL, "%s", attn_last_error());
  memset(small, 0xff, 8);
  CHECK_STATUS(attn_st_open_memory(&f, small, sizeof small, "x"), ATTN_STATUS_INVALID_ARGUMENT);
  CHECK_STATUS(attn_st_open_memory(&f, small, 7, "x"), ATTN_STATUS_INVALID_ARGUMENT);
  CHECK_STATUS(attn_st_open_memory(&f, NULL, 0, "x"), ATTN_STATUS_INVALID_ARGUMENT);
  CHECK_STATUS(attn_st_open_memory(NULL, small, 16, "x"), ATTN_STATUS_NULL_POINTER);

  open_bad(ok, 4, "past the data region");  /* data truncated */
  open_bad(ok, 12, "cover");                 /* trailing bytes */
  open_bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
           "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}",
           12, "overlaps");
  open_bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
           "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}",
           8, "overlaps");
  open_bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8, "gap");
  open_bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", 8, "byte span");
  open_bad("{\"a\":{\"dtype\":\"F16\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8, "byte span");
  open_bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
           "\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,16]}}",
           16, "duplicate tensor name 'a'");
  open_bad("{\"a\":{\"dtype\":\"F8_E4M3\",\"shape\":[8],\"data_offsets\":[0,8]}}", 8, "unknown dtype");
  open_bad("{\"a\":{\"dtype\":\"f32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8, "unknown dtype");
  open_bad("{\"a\":{\"dtype\":3,\"shape\":[2],\"data_offsets\":[0,8]}}", 8, "dtype");
  open_bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[-2],\"data_offsets\":[0,8]}}", 8, "shape[0]");
  open_bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[2.5],\"data_offsets\":[0,8]}}", 8, "shape[0]");
  open_bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296],\"data_offsets\":[0,8]}}", 8,
           "overflow");
  open_bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[99999999999999999999],\"data_offsets\":[0,8]}}", 8,
           "shape[0]");
  open_bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,2],\"data_offsets\":[0,8]}}", 8, "rank");
  open_bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,0]}}", 8, "backwards");
  open_bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0]}}", 8, "data_offsets");
  open_bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[-8,0]}}", 8, "data_offsets");
  open_bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,18446744073709551615]}}", 8,
           "data_offsets");
  open_bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[2]}}", 8, "missing field 'data_offsets'");
  open_bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8],\"x\":1}}", 8, "unknown field");
  open_bad("{\"a\":{\"dtype\":\"F32\",\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8,
           "duplicate field");
  open_bad("{\"a\":[1,2]}", 8, "not an object");
  open_bad("{\"\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8, "empty name");
  open_bad("{\"__metadata__\":{\"k\":1}}", 0, "__metadata__");
  open_bad("{\"__metadata__\":[]}", 0, "__metadata__");
  open_bad("[1,2]", 0, "start with '{'");
  open_bad(" {}", 0, "start with '{'");
  open_bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}", 8, "JSON");
  open_bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}} x", 8, "trailing");
  open_bad("{\"a\xff\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8, "UTF-8");
  open_bad("{\"a\xc0\xaf\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8, "UTF-8");
  open_bad("{\"a\\ud800\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8, "surrogate");
  open_bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[02],\"data_offsets\":[0,8]}}", 8, "leading zero");
  open_bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[2,],\"data_offsets\":[0,8]}}", 8, "JSON");
  open_bad("{'a':1}", 0, "JSON");
  /* Deep nesting stops at the depth limit instead of exhausting the stack. */
  char deep[2 * 200000 + 16];
  size_t k = 0;
  deep[k++] = '{';
  deep[k++] = '"';
  deep[k++] = 'a';
  deep[k++] = '"';
  deep[k++] = ':';
  for (int i = 0; i < 200000; i++) deep[k++] = '[';
  deep[k] = '\0';
  open_bad(deep, 0, "nesting");

  /* A header larger than the limit is refused before it is read. */
  size_t big = (size_t)ATTN_ST_MAX_HEADER + 64;
  unsigned char *hb = calloc(1, big + 8);
  if (hb) {
    uint64_t hl = big;
    for (int i = 0; i < 8; i++) hb[i] = (unsigned char)(hl >> (8 * i));
    hb[8] = '{';
    CHECK_STATUS(attn_st_open_memory(&f, hb, big + 8, "huge"), ATTN_STATUS_INVALID_ARGUMENT);
    CHECK(strstr(attn_last_error(), "limit") != NULL, "%s", attn_last_error());
    free(hb);
  }

  CHECK_STATUS(attn_st_open(&f, "/nonexistent/model.safetensors"), ATTN_STATUS_INVALID_ARGUMENT);
  CHECK(strstr(attn_last_error(), "cannot open") != NULL, "%s", attn_last_error());
  CHECK_STATUS(attn_st_open(&f, "/"), ATTN_STATUS_INVALID_ARGUMENT);
  CHECK_STATUS(attn_st_open(&f, NULL), ATTN_STATUS_NULL_POINTER);
  attn_st_close(NULL);
}

/* Every allocation of open and write may fail: an error, and nothing leaks. */
static void test_alloc_failures(void) {
  float x[8] = {1, 2, 3, 4, 5, 6, 7, 8};
  attn_st_tensor ts[2] = {{"x", ATTN_ST_F32, 1, {8}, x, 32}, {"y", ATTN_ST_F32, 2, {2, 2}, x, 16}};
  const char *meta[] = {"k", "v"};
  char path[512];
  tmp_path(path, sizeof path, "oom.safetensors");
  for (int64_t k = 1; k < 40; k++) {
    t_alloc_install(k);
    attn_status st = attn_st_write(path, ts, 2, meta, 1);
    CHECK(st == ATTN_OK || st == ATTN_STATUS_OUT_OF_MEMORY, "write: %s", attn_status_str(st));
    attn_st_file *f = NULL;
    if (st == ATTN_OK) {
      t_alloc_uninstall();
      t_alloc_install(k);
      st = attn_st_open(&f, path);
      CHECK(st == ATTN_OK || st == ATTN_STATUS_OUT_OF_MEMORY, "open: %s", attn_status_str(st));
      attn_st_close(f);
    }
    CHECK(t_alloc_live() == 0, "k=%lld: %lld blocks leaked", (long long)k, (long long)t_alloc_live());
    t_alloc_uninstall();
  }
  remove(path);
}

/* Resident pages of this process (/proc/self/statm, second field), or -1. */
static long resident_pages(void) {
  FILE *fp = fopen("/proc/self/statm", "r");
  long size = 0, rss = -1;
  if (fp) {
    if (fscanf(fp, "%ld %ld", &size, &rss) != 2) rss = -1;
    fclose(fp);
  }
  return rss;
}

static double sum_floats(const float *x, int64_t n) {
  double acc = 0;
  for (int64_t i = 0; i < n; i++) acc += x[i];
  return acc;
}

/* attn_st_release: the pages inside a mapped tensor leave the resident set, the tensor still reads
 * the same values (re-faulted from the file), neighbours are untouched, and it is a no-op for a
 * buffer opened from memory (whose bytes must survive) and for NULL or foreign tensors. */
static void test_release(void) {
  enum { N_BIG = 1 << 18 }; /* 1 MiB of F32 */
  float *big = malloc(N_BIG * sizeof(float)), small[3] = {1.5f, -2.0f, 3.25f};
  for (int64_t i = 0; i < N_BIG; i++) big[i] = (float)((i * 7919) % 1000) - 500.0f;
  attn_st_tensor ts[] = {{"a.small", ATTN_ST_F32, 1, {3}, small, sizeof small},
                         {"b.big", ATTN_ST_F32, 1, {N_BIG}, big, N_BIG * sizeof(float)},
                         {"c.small", ATTN_ST_F32, 1, {3}, small, sizeof small}};
  char path[512];
  tmp_path(path, sizeof path, "release.safetensors");
  CHECK_OK(attn_st_write(path, ts, 3, NULL, 0));
  const double want = sum_floats(big, N_BIG);
  attn_st_file *f = NULL;
  CHECK_OK(attn_st_open(&f, path));
  if (f) {
    const attn_st_tensor *t = attn_st_find(f, "b.big"), *a = attn_st_find(f, "a.small");
    CHECK(t && a, "tensors not found");
    if (t && a) {
      CHECK(sum_floats(t->data, N_BIG) == want, "mapped values differ before release");
      const long before = resident_pages();
      attn_st_release(f, t);
      const long after = resident_pages();
      const long page = sysconf(_SC_PAGESIZE);
      /* Most of the 1 MiB: the kernel may map the file in large folios, whose parts at the
       * tensor's ends can stay mapped (measured here: 239 of 256 pages dropped). */
      const long expect = (long)(N_BIG * sizeof(float)) / page / 2;
      if (before > 0 && after > 0)
        CHECK(before - after >= expect, "resident pages %ld -> %ld, want a drop of >= %ld", before,
              after, expect);
      CHECK(sum_floats(t->data, N_BIG) == want, "values differ after release");
      CHECK(memcmp(a->data, small, sizeof small) == 0, "neighbour tensor changed");
      attn_st_release(f, NULL);
      attn_st_release(NULL, t);
    }
    attn_st_close(f);
  }
  /* A file opened from memory: the caller's bytes stay (MADV_DONTNEED would zero anonymous pages). */
  FILE *fp = fopen(path, "rb");
  CHECK(fp != NULL, "reopen %s", path);
  if (fp) {
    fseek(fp, 0, SEEK_END);
    long n = ftell(fp);
    fseek(fp, 0, SEEK_SET);
    unsigned char *buf = malloc((size_t)n);
    CHECK(fread(buf, 1, (size_t)n, fp) == (size_t)n, "read %s", path);
    fclose(fp);
    attn_st_file *m = NULL;
    CHECK_OK(attn_st_open_memory(&m, buf, (size_t)n, "release buffer"));
    if (m) {
      const attn_st_tensor *t = attn_st_find(m, "b.big");
      attn_st_release(m, t);
      CHECK(t && sum_floats(t->data, N_BIG) == want, "memory-opened tensor changed by release");
      attn_st_file *g = NULL;
      CHECK_OK(attn_st_open(&g, path));
      attn_st_release(g, t); /* a tensor of another file: no-op */
      CHECK(t && sum_floats(t->data, N_BIG) == want, "foreign release changed the buffer");
      attn_st_close(g);
      attn_st_close(m);
    }
    free(buf);
  }
  free(big);
  remove(path);
}

int main(void) {
  const char *t = getenv("TMPDIR");
  snprintf(tmp_dir, sizeof tmp_dir, "%s", t && t[0] ? t : "/tmp");
  test_round_trip();
  test_writer_errors();
  test_malformed();
  test_alloc_failures();
  test_release();
  return t_finish("test_safetensors");
}
