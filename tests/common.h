/* Shared helpers of the C tests: assertions that count failures, a seeded RNG, tensors with guard
 * bytes, and an allocator that can fail the k-th allocation and counts what is still live. */
#ifndef ATTN_TEST_COMMON_H
#define ATTN_TEST_COMMON_H

#include "attn.h"

#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

extern int t_failures;
extern int t_checks;

#define CHECK(cond, ...)                                                      \
  do {                                                                        \
    t_checks++;                                                               \
    if (!(cond)) {                                                            \
      t_failures++;                                                           \
      fprintf(stderr, "%s:%d: CHECK(%s) failed: ", __FILE__, __LINE__, #cond); \
      fprintf(stderr, __VA_ARGS__);                                           \
      fprintf(stderr, "\n");                                                  \
    }                                                                         \
  } while (0)

#define CHECK_STATUS(expr, want)                                                              \
  do {                                                                                        \
    attn_status got_ = (expr);                                                                \
    CHECK(got_ == (want), "%s returned %s, want %s (%s)", #expr, attn_status_str(got_),       \
          attn_status_str(want), attn_last_error());                                         \
  } while (0)

#define CHECK_OK(expr) CHECK_STATUS(expr, ATTN_OK)

/* Prints "N passed, M failed" and returns the exit code. */
int t_finish(const char *name);

/* xorshift64* seeded RNG. */
typedef struct t_rng {
  uint64_t s;
} t_rng;
t_rng t_rng_make(uint64_t seed);
uint64_t t_next(t_rng *r);
float t_uniform(t_rng *r, float lo, float hi); /* [lo, hi) */
float t_normal(t_rng *r);
int64_t t_int(t_rng *r, int64_t lo, int64_t hi); /* [lo, hi] */

/* A buffer of n elements of `dtype` with 64 guard bytes after it (and before it) filled with a
 * pattern; t_buf_guard_ok() checks they are intact. */
typedef struct t_buf {
  unsigned char *raw;
  void *data;
  size_t bytes;
  attn_dtype dtype;
  int64_t n;
} t_buf;
t_buf t_buf_new(attn_dtype dtype, int64_t n);
void t_buf_free(t_buf *b);
bool t_buf_guard_ok(const t_buf *b);
void t_buf_fill_normal(t_buf *b, t_rng *r, float scale);
void t_buf_fill(t_buf *b, float value);
float t_buf_get(const t_buf *b, int64_t i);
void t_buf_set(t_buf *b, int64_t i, float x);

static inline float *t_f32(const t_buf *b) {
  return (float *)b->data;
}

/* An f32 view of nd dims over data, row-major, the innermost rows ld (>= shape[nd - 1]) elements
 * apart. */
attn_tensor t_view_ld(void *data, int nd, const int64_t *shape, int64_t ld);
/* A (B, T, n) f32 view with row stride ld >= n. */
attn_tensor t_view3(void *data, int64_t B, int64_t T, int64_t n, int64_t ld);
/* A contiguous 1-d f32 view of n elements. */
attn_tensor t_vec(float *x, int64_t n);

/* CHECKs that `got` is `want` and, when needle is not NULL, that attn_last_error() contains it;
 * `what` names the case in the failure message. */
void t_expect_error(attn_status got, attn_status want, const char *needle, const char *what);

/* Allocator that fails allocation number `fail_at` (1-based; 0 = never) and tracks live blocks. */
void t_alloc_install(int64_t fail_at);
void t_alloc_uninstall(void);
int64_t t_alloc_live(void);  /* blocks allocated and not freed */
int64_t t_alloc_count(void); /* allocations attempted since install */

/* The failing-allocator sweep: runs run(arg) once with allocation k failing, for k = 1, 2, ...
 * until a run makes no more than k - 1 allocations and succeeds (at most max_k runs). CHECKs that
 * each run before that returns OUT_OF_MEMORY, that no run leaves a block live, and that there was
 * at least one allocation point. run must free everything it made, success or not. Returns the
 * number of allocation points (-1 when max_k was reached first). */
int64_t t_alloc_sweep(const char *what, attn_status (*run)(void *arg), void *arg, int64_t max_k);

#endif
