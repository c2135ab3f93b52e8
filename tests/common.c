#include "common.h"

#include <stdatomic.h>

int t_failures = 0;
int t_checks = 0;

int t_finish(const char *name) {
  printf("%s: %d passed, %d failed\n", name, t_checks - t_failures, t_failures);
  attn_shutdown();
  return t_failures ? 1 : 0;
}

t_rng t_rng_make(uint64_t seed) {
  t_rng r = {seed * 0x9E3779B97F4A7C15ull + 0x1234567ull};
  if (!r.s) r.s = 1;
  return r;
}

uint64_t t_next(t_rng *r) {
  r->s ^= r->s >> 12;
  r->s ^= r->s << 25;
  r->s ^= r->s >> 27;
  return r->s * 2685821657736338717ull;
}

float t_uniform(t_rng *r, float lo, float hi) {
  return lo + (hi - lo) * (float)((t_next(r) >> 40) * (1.0 / 16777216.0));
}

float t_normal(t_rng *r) {
  double u1 = ((t_next(r) >> 11) + 1.0) * (1.0 / 9007199254740993.0);
  double u2 = (t_next(r) >> 11) * (1.0 / 9007199254740992.0);
  return (float)(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
}

int64_t t_int(t_rng *r, int64_t lo, int64_t hi) {
  return lo + (int64_t)(t_next(r) % (uint64_t)(hi - lo + 1));
}

#define GUARD 64
static const unsigned char guard_byte = 0xA5;

t_buf t_buf_new(attn_dtype dtype, int64_t n) {
  t_buf b;
  b.dtype = dtype;
  b.n = n;
  b.bytes = (size_t)n * attn_dtype_size(dtype);
  b.raw = malloc(b.bytes + 2 * GUARD);
  if (!b.raw) {
    fprintf(stderr, "test: out of memory\n");
    exit(2);
  }
  memset(b.raw, guard_byte, GUARD);
  memset(b.raw + GUARD + b.bytes, guard_byte, GUARD);
  b.data = b.raw + GUARD;
  memset(b.data, 0, b.bytes);
  return b;
}

void t_buf_free(t_buf *b) {
  free(b->raw);
  b->raw = NULL;
  b->data = NULL;
}

bool t_buf_guard_ok(const t_buf *b) {
  for (int i = 0; i < GUARD; i++)
    if (b->raw[i] != guard_byte || b->raw[GUARD + b->bytes + i] != guard_byte) return false;
  return true;
}

float t_buf_get(const t_buf *b, int64_t i) {
  switch (b->dtype) {
    case ATTN_DTYPE_F32: return ((float *)b->data)[i];
    case ATTN_DTYPE_F16: return attn_f16_to_f32(((uint16_t *)b->data)[i]);
    default: return attn_bf16_to_f32(((uint16_t *)b->data)[i]);
  }
}

void t_buf_set(t_buf *b, int64_t i, float x) {
  switch (b->dtype) {
    case ATTN_DTYPE_F32: ((float *)b->data)[i] = x; break;
    case ATTN_DTYPE_F16: ((uint16_t *)b->data)[i] = attn_f32_to_f16(x); break;
    default: ((uint16_t *)b->data)[i] = attn_f32_to_bf16(x); break;
  }
}

void t_buf_fill_normal(t_buf *b, t_rng *r, float scale) {
  for (int64_t i = 0; i < b->n; i++) t_buf_set(b, i, scale * t_normal(r));
}

void t_buf_fill(t_buf *b, float value) {
  for (int64_t i = 0; i < b->n; i++) t_buf_set(b, i, value);
}

/* ---- failing allocator ---- */
/* Atomic: the library may allocate from several pool threads at once (attn_bert_encode). */
static int64_t alloc_fail_at;
static _Atomic int64_t alloc_count, alloc_live;

static void *failing_alloc(void *ctx, size_t size, size_t align) {
  (void)ctx;
  const int64_t n = atomic_fetch_add(&alloc_count, 1) + 1;
  if (alloc_fail_at && n == alloc_fail_at) return NULL;
  void *p = NULL;
  if (align < sizeof(void *)) align = sizeof(void *);
  if (posix_memalign(&p, align, size ? size : 1) != 0) return NULL;
  atomic_fetch_add(&alloc_live, 1);
  return p;
}

static void failing_free(void *ctx, void *p) {
  (void)ctx;
  if (!p) return;
  atomic_fetch_sub(&alloc_live, 1);
  free(p);
}

void t_alloc_install(int64_t fail_at) {
  alloc_fail_at = fail_at;
  atomic_store(&alloc_count, 0);
  atomic_store(&alloc_live, 0);
  attn_allocator a = {failing_alloc, failing_free, NULL};
  attn_set_allocator(&a);
}

void t_alloc_uninstall(void) { attn_set_allocator(NULL); }
int64_t t_alloc_live(void) { return alloc_live; }
int64_t t_alloc_count(void) { return alloc_count; }

attn_tensor t_view_ld(void *data, int nd, const int64_t *shape, int64_t ld) {
  attn_tensor t;
  memset(&t, 0, sizeof t);
  t.data = data;
  t.dtype = ATTN_DTYPE_F32;
  t.ndim = nd;
  int64_t st = 1;
  for (int i = nd - 1; i >= 0; i--) {
    t.shape[i] = shape[i];
    t.stride[i] = st;
    st *= i == nd - 1 ? ld : shape[i];
  }
  return t;
}

attn_tensor t_view3(void *data, int64_t B, int64_t T, int64_t n, int64_t ld) {
  const int64_t shape[3] = {B, T, n};
  return t_view_ld(data, 3, shape, ld);
}

attn_tensor t_vec(float *x, int64_t n) {
  int64_t shape[1] = {n};
  return attn_tensor_make(x, ATTN_DTYPE_F32, 1, shape);
}

void t_expect_error(attn_status got, attn_status want, const char *needle, const char *what) {
  CHECK(got == want, "%s: got %s, want %s (%s)", what, attn_status_str(got), attn_status_str(want),
        attn_last_error());
  if (needle)
    CHECK(strstr(attn_last_error(), needle) != NULL, "%s: message '%s' does not name '%s'", what,
          attn_last_error(), needle);
}

int64_t t_alloc_sweep(const char *what, attn_status (*run)(void *arg), void *arg, int64_t max_k) {
  int64_t total = -1, failures = 0;
  for (int64_t k = 1; k <= max_k; k++) {
    t_alloc_install(k);
    attn_status st = run(arg);
    const int64_t live = t_alloc_live();
    t_alloc_uninstall();
    CHECK(live == 0, "%s: fail at %lld: %lld blocks leaked", what, (long long)k, (long long)live);
    if (st == ATTN_OK) {
      total = k - 1;
      break;
    }
    failures++;
    CHECK(st == ATTN_STATUS_OUT_OF_MEMORY, "%s: fail at %lld: %s (%s)", what, (long long)k,
          attn_status_str(st), attn_last_error());
    if (st != ATTN_STATUS_OUT_OF_MEMORY) break;
  }
  CHECK(total > 0 && failures == total, "%s: %lld allocation points, %lld failures", what,
        (long long)total, (long long)failures);
  return total;
}
