/* Internal interfaces shared across libattn's source files. Not installed. */
#ifndef ATTN_INTERNAL_H
#define ATTN_INTERNAL_H

#include "attn.h"

#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#if defined(__x86_64__) || defined(_M_X64) || defined(__i386__)
#define ATTN_X86 1
#else
#define ATTN_X86 0
#endif

#define ATTN_LIKELY(x) __builtin_expect(!!(x), 1)
#define ATTN_UNLIKELY(x) __builtin_expect(!!(x), 0)
#define ATTN_ALIGN 64

/* Internal invariant check: aborts with file/line. Never used for caller mistakes. */
#define ATTN_ASSERT(cond)                                                                          \
  do {                                                                                             \
    if (ATTN_UNLIKELY(!(cond))) attn__assert_fail(#cond, __FILE__, __LINE__);                      \
  } while (0)
void attn__assert_fail(const char *cond, const char *file, int line);

/* ---- errors ---------------------------------------------------------------------------------- */

/* Returns the status of `expr` from the calling function when it is not ATTN_OK. */
#define ATTN__TRY(expr)             \
  do {                              \
    attn_status st_ = (expr);       \
    if (st_ != ATTN_OK) return st_; \
  } while (0)

/* Record `fmt` as this thread's last error and return `status`. */
attn_status attn__fail(attn_status status, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Clear this thread's last error (called on entry of every public call). */
void attn__clear_error(void);

/* ---- tensor view validation (src/core/validate.c) -------------------------------------------- */

/* Byte range [lo, hi) a view touches; empty when lo == hi. */
typedef struct attn__range {
  uintptr_t lo, hi;
} attn__range;
bool attn__ranges_overlap(attn__range a, attn__range b);

/* The layout rules every kernel operand follows, on a view whose ndim (1..4) and dtype the caller
 * has already checked: non-negative shape and strides, element count and extent without int64
 * overflow, innermost stride 1 (unless that dim is 1), no zero stride on an output dim of size > 1,
 * non-NULL data when it has elements. *r receives its byte range for the aliasing checks. Errors
 * name `fn` and `name`. */
attn_status attn__check_view_layout(const char *fn, const char *name, const attn_tensor *t,
                                    bool is_output, attn__range *r);

/* ---- memory ---------------------------------------------------------------------------------- */

/* Allocate through the allocator hook; NULL on failure (and for size 0 returns a valid pointer
 * that must still be freed). align is a power of two <= 4096. */
void *attn__malloc(size_t size, size_t align);
void attn__free(void *ptr);

/* The size of a transparent huge page on x86-64 Linux: the alignment and granule of the advice
 * below, and the size from which a buffer counts as large. */
#define ATTN__HUGE_PAGE ((size_t)2 << 20)

/* A large buffer that kernels stream through again and again (packed weights, a model's
 * activations), 4096-byte aligned, freed with attn__free. With the default allocator a buffer of
 * ATTN__HUGE_PAGE or more is aligned to it and, on Linux, its whole 2 MB pages are advised for
 * transparent huge pages (MADV_HUGEPAGE): fewer TLB misses in the GEMM's streams (a BERT batch 1-3%
 * faster in one A/B, within 1% in a later one; bench notes); pages past the last whole 2 MB keep
 * the base size, so nothing is resident that was not before. Through a custom allocator: a plain
 * allocation. */
void *attn__malloc_large(size_t size);
/* The advice attn__malloc_large gives its buffers: on Linux, MADV_HUGEPAGE on the whole 2 MB
 * pages inside [p, p + size); elsewhere nothing. For an allocator that wraps the default one (the
 * attn command's byte counter) to give the same memory as the default allocator would. */
void attn__huge_page_hint(void *p, size_t size);

/* A kernel's scratch: the caller's `workspace` when it is not NULL (it must hold `need` bytes,
 * WORKSPACE_TOO_SMALL otherwise, and be 64-byte aligned, INVALID_ARGUMENT otherwise), else `need`
 * bytes allocated through the hook (OUT_OF_MEMORY when that fails). *ws receives the scratch;
 * *own the allocation to attn__free when the call is done (NULL when the caller's is used). On
 * error *ws and *own are NULL and the message names `fn`. */
attn_status attn__workspace_get(const char *fn, size_t need, void *workspace, size_t workspace_size,
                                void **ws, void **own);

/* Checked arithmetic: return false on overflow of int64 / size_t. */
static inline bool attn__mul_i64(int64_t a, int64_t b, int64_t *out) {
  return !__builtin_mul_overflow(a, b, out);
}
static inline bool attn__add_i64(int64_t a, int64_t b, int64_t *out) {
  return !__builtin_add_overflow(a, b, out);
}
static inline bool attn__mul_size(size_t a, size_t b, size_t *out) {
  return !__builtin_mul_overflow(a, b, out);
}
static inline size_t attn__round_up(size_t x, size_t a) { return (x + a - 1) / a * a; }

/* ---- half-precision conversion (bit-exact, round to nearest even) ---------------------------- */

static inline float attn__bits_to_f32(uint32_t u) {
  float f;
  memcpy(&f, &u, 4);
  return f;
}
static inline uint32_t attn__f32_to_bits(float f) {
  uint32_t u;
  memcpy(&u, &f, 4);
  return u;
}
static inline float attn__bf16_to_f32(uint16_t h) { return attn__bits_to_f32((uint32_t)h << 16); }
static inline uint16_t attn__f32_to_bf16(float x) {
  uint32_t u = attn__f32_to_bits(x);
  if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40); /* quiet NaN */
  u += 0x7fffu + ((u >> 16) & 1u);
  return (uint16_t)(u >> 16);
}
float attn__f16_to_f32_slow(uint16_t h);
uint16_t attn__f32_to_f16_slow(float x);

/* Load element `idx` (in elements) of a buffer of `dtype` as f32; store likewise. */
static inline float attn__load(const void *base, attn_dtype dtype, int64_t idx) {
  switch (dtype) {
    case ATTN_DTYPE_F32: return ((const float *)base)[idx];
    case ATTN_DTYPE_BF16: return attn__bf16_to_f32(((const uint16_t *)base)[idx]);
    default: return attn__f16_to_f32_slow(((const uint16_t *)base)[idx]);
  }
}
static inline void attn__store(void *base, attn_dtype dtype, int64_t idx, float x) {
  switch (dtype) {
    case ATTN_DTYPE_F32: ((float *)base)[idx] = x; break;
    case ATTN_DTYPE_BF16: ((uint16_t *)base)[idx] = attn__f32_to_bf16(x); break;
    default: ((uint16_t *)base)[idx] = attn__f32_to_f16_slow(x); break;
  }
}

/* Convert n contiguous elements of `dtype` to f32 (dst may not alias src). */
void attn__convert_to_f32(float *dst, const void *src, attn_dtype dtype, int64_t n);
/* Convert n contiguous f32 to `dtype`. */
void attn__convert_from_f32(void *dst, attn_dtype dtype, const float *src, int64_t n);

/* ---- thread pool ----------------------------------------------------------------------------- */

/* fn(ctx, item, thread_id) for item in [0, n_items), spread over the pool. Items are handed out
 * dynamically in increasing order; thread_id is in [0, attn__pool_size()) and identifies the
 * per-thread scratch slot. Returns when all items are done. Callers must make every item's result
 * independent of which thread ran it (that is what makes results thread-count independent).
 * Nested calls from inside an item run serially on the calling thread with its thread_id. */
typedef void (*attn__task_fn)(void *ctx, int64_t item, int thread_id);
void attn__parallel_for(int64_t n_items, attn__task_fn fn, void *ctx);
/* Number of thread slots the next attn__parallel_for will use (>= 1). */
int attn__pool_size(void);

/* attn__parallel_for whose items other threads may help with even when called from inside an
 * item of an outer job (attn__parallel_for runs those serially): the pool's threads that have run
 * out of outer items take items of it while the outer job is unfinished. fn must not use
 * thread_id (several threads may run items of one call at once, with any ids), and per-thread
 * resources are to be sized by attn__team_size(). Outside a job it is attn__parallel_for. */
void attn__parallel_for_shared(int64_t n_items, attn__task_fn fn, void *ctx);
/* How many threads may run items of an attn__parallel_for_shared call from here at once. */
int attn__team_size(void);

/* ATTN__ISA_TASKS(name, call) defines the task functions name##_base, name##_avx2 and
 * name##_avx512, with the attn__task_fn parameters (ctx, item, tid), each of which runs `call`;
 * the last two are compiled with GCC target attributes (x86 GCC/Clang only), so an always-inlined
 * body called there is vectorised for that ISA. It also defines `static attn__task_fn
 * name##_pick(void)`, the clone for attn_get_isa(). ATTN__TARGET_AVX2 / ATTN__TARGET_AVX512 are
 * the attributes, for clones written by hand (ATTN__TARGET_AVX512_VEC where the clone's body is
 * auto-vectorised: src/cpu/gelu.c, src/cpu/layernorm.c). */
#if ATTN_X86 && defined(__GNUC__)
#define ATTN__TARGET_AVX2 __attribute__((target("avx2,fma")))
#define ATTN__TARGET_AVX512 __attribute__((target("avx512f,avx512vl,avx512bw,avx512dq,avx2,fma")))
/* ATTN__TARGET_AVX512 for bodies left to the auto-vectoriser: GCC prefers 256-bit vectors there
 * unless told otherwise. */
#if defined(__clang__)
#define ATTN__TARGET_AVX512_VEC ATTN__TARGET_AVX512
#else
#define ATTN__TARGET_AVX512_VEC \
  __attribute__((target("avx512f,avx512vl,avx512bw,avx512dq,avx2,fma,prefer-vector-width=512")))
#endif
#define ATTN__ISA_TASKS(name, call)                                                 \
  static void name##_base(void *ctx, int64_t item, int tid) {                       \
    call;                                                                           \
  }                                                                                 \
  ATTN__TARGET_AVX2 static void name##_avx2(void *ctx, int64_t item, int tid) {     \
    call;                                                                           \
  }                                                                                 \
  ATTN__TARGET_AVX512 static void name##_avx512(void *ctx, int64_t item, int tid) { \
    call;                                                                           \
  }                                                                                 \
  static attn__task_fn name##_pick(void) {                                          \
    attn_isa isa_ = attn_get_isa();                                                 \
    if (isa_ == ATTN_ISA_AVX512) return name##_avx512;                              \
    if (isa_ == ATTN_ISA_AVX2) return name##_avx2;                                  \
    return name##_base;                                                             \
  }
#else
#define ATTN__ISA_TASKS(name, call)                           \
  static void name##_base(void *ctx, int64_t item, int tid) { \
    call;                                                     \
  }                                                           \
  static attn__task_fn name##_pick(void) {                    \
    return name##_base;                                       \
  }
#endif

/* ---- Philox 4x32-10 (src/core/rng.c) ------------------------------------------------------------ */

/* Constants of Salmon et al. (SC'11): multipliers and the Weyl key increments. */
#define ATTN__PHILOX_M0 0xD2511F53u
#define ATTN__PHILOX_M1 0xCD9E8D57u
#define ATTN__PHILOX_W0 0x9E3779B9u
#define ATTN__PHILOX_W1 0xBB67AE85u

/* One round on the counter words (c0, c1, c2, c3) with round key (k0, k1). attn_philox4x32 runs
 * ten with the key bumped by (W0, W1) after each; callers that need many blocks run the rounds
 * over arrays of counters so the compiler vectorises the 32x32->64 products. */
static inline __attribute__((always_inline)) void attn__philox_round(uint32_t *c0, uint32_t *c1,
                                                                     uint32_t *c2, uint32_t *c3,
                                                                     uint32_t k0, uint32_t k1) {
  uint64_t p0 = (uint64_t)ATTN__PHILOX_M0 * *c0;
  uint64_t p1 = (uint64_t)ATTN__PHILOX_M1 * *c2;
  uint32_t n0 = (uint32_t)(p1 >> 32) ^ *c1 ^ k0;
  uint32_t n2 = (uint32_t)(p0 >> 32) ^ *c3 ^ k1;
  *c1 = (uint32_t)p1;
  *c3 = (uint32_t)p0;
  *c0 = n0;
  *c2 = n2;
}

/* ---- dispatch -------------------------------------------------------------------------------- */

/* Description of one SDPA problem after validation, shared by the reference and fast kernels.
 * All pointers are to element 0; strides in elements. */
typedef struct attn__sdpa_problem {
  int64_t B, Hq, Hkv, Nq, Nk, Dk, Dv;
  int64_t group; /* Hq / Hkv */
  float scale;
  const attn_sdpa_params *p; /* never NULL (defaults substituted) */
  /* Tensors (views validated; data pointers non-NULL where required). */
  const attn_tensor *q, *k, *v, *out, *lse, *weights;
  const attn_tensor *dq, *dk, *dv, *dout; /* backward only */
  bool varlen;                            /* cu_seqlens given */
  int64_t n_batch;                        /* B, or n_seqs when varlen */
} attn__sdpa_problem;

/* One (batch or sequence, query head) slice's geometry: rows of q/out in [q0, q0 + nq), rows of
 * k/v in [k0, k0 + nk) along the N axis of tensor batch index tb. nq_valid/nk_valid are the query
 * and key counts after lengths; off is the alignment offset. */
typedef struct attn__slice {
  int64_t tb;        /* batch index into the tensors (0 when varlen) */
  int64_t q0, k0;    /* first row along N */
  int64_t nq, nk;    /* rows of this slice (padding rows included) */
  int64_t nq_valid;  /* rows >= nq_valid are padding */
  int64_t nk_valid;  /* keys >= nk_valid are blocked */
  int64_t off;       /* i' = i + off */
} attn__slice;

/* Geometry of batch/sequence b. */
void attn__sdpa_slice(const attn__sdpa_problem *pr, int64_t b, attn__slice *s);

/* Allowed key interval [lo, hi] (inclusive; empty when lo > hi) of query i from causal, window
 * and key length. Padding rows (i >= nq_valid) return an empty interval. */
static inline void attn__sdpa_key_range(const attn__sdpa_problem *pr, const attn__slice *s,
                                        int64_t i, int64_t *lo, int64_t *hi) {
  const attn_sdpa_params *p = pr->p;
  int64_t l = 0, h = s->nk_valid - 1;
  if (i >= s->nq_valid) {
    *lo = 0;
    *hi = -1;
    return;
  }
  int64_t ip = i + s->off;
  if (p->causal && ip < h) h = ip;
  if (p->window_right >= 0 && ip + p->window_right < h) h = ip + p->window_right;
  if (p->window_left >= 0 && ip - p->window_left > l) l = ip - p->window_left;
  *lo = l;
  *hi = h;
}

/* The fast kernels of one ISA. A NULL entry falls back to the scalar table's entry. */
typedef struct attn__kernels {
  attn_isa isa;
  attn_status (*sdpa_forward)(const attn__sdpa_problem *pr, void *ws, size_t ws_size);
  size_t (*sdpa_forward_ws)(const attn__sdpa_problem *pr, int n_threads);
  attn_status (*sdpa_backward)(const attn__sdpa_problem *pr, void *ws, size_t ws_size);
  size_t (*sdpa_backward_ws)(const attn__sdpa_problem *pr, int n_threads);
  /* Single-precision GEMM on validated arguments, row-major C = alpha op(A) op(B) + beta C
   * (column-major calls are mapped onto this by the caller). */
  attn_status (*sgemm)(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                       const float *A, int64_t lda, const float *B, int64_t ldb, float beta,
                       float *C, int64_t ldc);
} attn__kernels;

/* The table for the ISA in force (attn_get_isa()). Never NULL. */
const attn__kernels *attn__kernels_get(void);

/* Per-ISA tables (defined only when that ISA is compiled in). */
extern const attn__kernels attn__kernels_scalar;
#if ATTN_X86
extern const attn__kernels attn__kernels_avx2;
extern const attn__kernels attn__kernels_avx512;
#endif

/* ---- kernels implemented in src/ref and src/cpu, named for the tables ------------------------- */

/* Reference SDPA loops (src/ref/sdpa_ref.c) on a validated problem: double accumulation, every
 * option, single-threaded. The forward writes out, lse (if any), weights (if any); the backward
 * overwrites dq, dk, dv. Scratch comes from attn__malloc (OUT_OF_MEMORY if it fails, outputs then
 * untouched). */
attn_status attn__sdpa_forward_ref_run(const attn__sdpa_problem *pr);
attn_status attn__sdpa_backward_ref_run(const attn__sdpa_problem *pr);

/* GEMM kernels (src/cpu/gemm*.c), same contract as attn__kernels.sgemm. */
attn_status attn__sgemm_scalar(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K,
                               float alpha, const float *A, int64_t lda, const float *B,
                               int64_t ldb, float beta, float *C, int64_t ldc);
#if ATTN_X86
attn_status attn__sgemm_avx2(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K,
                             float alpha, const float *A, int64_t lda, const float *B, int64_t ldb,
                             float beta, float *C, int64_t ldc);
attn_status attn__sgemm_avx512(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K,
                               float alpha, const float *A, int64_t lda, const float *B,
                               int64_t ldb, float beta, float *C, int64_t ldc);
#endif

#endif /* ATTN_INTERNAL_H */
