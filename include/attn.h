/*
 * attn.h — the public contract of libattn.
 *
 * libattn is a C11 library of attention mechanisms. This header is the single source of truth for
 * what every public call does: shapes, ownership, what may alias, thread safety and errors.
 *
 * Conventions (see also docs/ and the project's DESIGN.md):
 *   - Every call that can fail returns attn_status. ATTN_STATUS_OK (== 0) is success; errors are
 *     negative. attn_status_str() names a code; attn_last_error() gives the detail of the last error
 *     raised on the calling thread (which argument, which dimension).
 *   - A caller's mistake is an error code with a message, never a crash. On error, outputs are left
 *     untouched and nothing is leaked.
 *   - Tensors crossing the API are views (attn_tensor): data, dtype, up to 4 dims, strides in
 *     elements. The innermost dimension of every kernel operand must be contiguous (stride 1); other
 *     strides are free, so views into a packed QKV buffer work without copies.
 *   - Calls are reentrant and keep no hidden global scratch. The allocator hook, the thread count and
 *     the forced ISA are process-wide settings: change them while no other thread is inside libattn.
 */
#ifndef ATTN_H
#define ATTN_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(_WIN32) && defined(ATTN_SHARED_BUILD)
#define ATTN_API __declspec(dllexport)
#elif defined(__GNUC__)
#define ATTN_API __attribute__((visibility("default")))
#else
#define ATTN_API
#endif

#define ATTN_VERSION_MAJOR 0
#define ATTN_VERSION_MINOR 1
#define ATTN_VERSION_PATCH 0

/* ---------------------------------------------------------------------------------------------
 * Status codes
 * ------------------------------------------------------------------------------------------- */

/* X(name, value, message). One list drives the enum and attn_status_str(). */
#define ATTN_STATUS_LIST(X)                                                                        \
  X(ATTN_STATUS_OK, 0, "success")                                                                  \
  X(ATTN_STATUS_NULL_POINTER, -1, "a required pointer is NULL")                                    \
  X(ATTN_STATUS_INVALID_ARGUMENT, -2, "an argument has an invalid value")                          \
  X(ATTN_STATUS_SHAPE_MISMATCH, -3, "tensor shapes do not agree")                                  \
  X(ATTN_STATUS_OVERFLOW, -4, "a size or offset overflows int64")                                  \
  X(ATTN_STATUS_BAD_STRIDE, -5, "a stride is invalid for this operand")                            \
  X(ATTN_STATUS_ALIASING, -6, "an output overlaps an input or another output")                     \
  X(ATTN_STATUS_UNSUPPORTED_DTYPE, -7, "the dtype is not supported here")                          \
  X(ATTN_STATUS_OUT_OF_MEMORY, -8, "an allocation failed")                                         \
  X(ATTN_STATUS_UNSUPPORTED, -9, "the request is not supported on this build or CPU")              \
  X(ATTN_STATUS_WORKSPACE_TOO_SMALL, -10, "the workspace is smaller than required")                \
  X(ATTN_STATUS_INTERNAL, -11, "internal error")

typedef enum attn_status {
#define ATTN_X_ENUM(name, value, msg) name = value,
  ATTN_STATUS_LIST(ATTN_X_ENUM)
#undef ATTN_X_ENUM
} attn_status;

/* Short alias for success, used everywhere. */
#define ATTN_OK ATTN_STATUS_OK

/* The constant name of a status ("ATTN_STATUS_SHAPE_MISMATCH"); "ATTN_STATUS_UNKNOWN" otherwise.
 * Never NULL; the string is static. */
ATTN_API const char *attn_status_str(attn_status s);

/* A human sentence describing a status ("tensor shapes do not agree"). Never NULL. */
ATTN_API const char *attn_status_message(attn_status s);

/* Detail of the last error raised on the calling thread, e.g.
 * "attn_sdpa_forward: k: dim 3 (Dk) is 32 but q has 64". Empty string when the last call on this
 * thread succeeded. The pointer is valid until the next libattn call on this thread. */
ATTN_API const char *attn_last_error(void);

/* Version string "MAJOR.MINOR.PATCH". */
ATTN_API const char *attn_version(void);

/* ---------------------------------------------------------------------------------------------
 * Tensor views
 * ------------------------------------------------------------------------------------------- */

typedef enum attn_dtype {
  ATTN_DTYPE_F32 = 0,  /* IEEE binary32 */
  ATTN_DTYPE_F16 = 1,  /* IEEE binary16 */
  ATTN_DTYPE_BF16 = 2, /* bfloat16: the upper 16 bits of a binary32 */
} attn_dtype;

#define ATTN_MAX_DIMS 4

/* A non-owning strided view. shape[d] >= 0; stride[d] is in elements (not bytes) and may be 0 for
 * broadcast inputs where the kernel allows it. Dims past ndim are ignored. */
typedef struct attn_tensor {
  void *data;
  attn_dtype dtype;
  int32_t ndim;
  int64_t shape[ATTN_MAX_DIMS];
  int64_t stride[ATTN_MAX_DIMS];
} attn_tensor;

/* A contiguous row-major view of `ndim` (1..4) dims. Does not validate; kernels do. */
ATTN_API attn_tensor attn_tensor_make(void *data, attn_dtype dtype, int ndim, const int64_t *shape);

/* Size in bytes of one element of dtype (4 or 2); 0 for an unknown dtype. */
ATTN_API size_t attn_dtype_size(attn_dtype dtype);

/* Number of elements (product of the shape) into *count, checked for int64 overflow. */
ATTN_API attn_status attn_tensor_numel(const attn_tensor *t, int64_t *count);

/* Conversions between f32 and the 16-bit storage types (round to nearest even; NaN stays NaN). */
ATTN_API uint16_t attn_f32_to_f16(float x);
ATTN_API float attn_f16_to_f32(uint16_t h);
ATTN_API uint16_t attn_f32_to_bf16(float x);
ATTN_API float attn_bf16_to_f32(uint16_t h);

/* ---------------------------------------------------------------------------------------------
 * Allocator
 * ------------------------------------------------------------------------------------------- */

/* Every allocation libattn makes goes through this hook. alloc returns memory aligned to at least
 * `align` bytes (a power of two <= 4096) or NULL; free accepts NULL. Both may be called from any
 * thread, the pool's workers included, and concurrently, so they must be thread-safe. */
typedef struct attn_allocator {
  void *(*alloc)(void *ctx, size_t size, size_t align);
  void (*free)(void *ctx, void *ptr);
  void *ctx;
} attn_allocator;

/* Replace the process-wide allocator; NULL restores the default (aligned malloc). Memory allocated
 * by one allocator is always freed by the same one, so swap only while libattn holds no memory
 * (before the first call, or after attn_shutdown()). Returns ATTN_STATUS_NULL_POINTER if a
 * function pointer is NULL. */
ATTN_API attn_status attn_set_allocator(const attn_allocator *allocator);

/* The allocator in force (a copy). */
ATTN_API attn_allocator attn_get_allocator(void);

/* ---------------------------------------------------------------------------------------------
 * Threads
 * ------------------------------------------------------------------------------------------- */

/* Number of threads parallel kernels use (n >= 1; the caller's thread counts as one). The pool is
 * persistent and created lazily; workers are pinned to cores where the OS allows. Default: the
 * ATTN_NUM_THREADS environment variable, else the number of online CPUs. Results never depend on
 * the thread count (bitwise). ATTN_STATUS_INVALID_ARGUMENT for n < 1 or n > 1024. */
ATTN_API attn_status attn_set_num_threads(int n);
ATTN_API int attn_get_num_threads(void);

/* Stops the worker threads and frees the pool. Safe to call more than once; the next parallel call
 * starts the pool again. */
ATTN_API void attn_shutdown(void);

/* ---------------------------------------------------------------------------------------------
 * CPU features and dispatch
 * ------------------------------------------------------------------------------------------- */

typedef enum attn_isa {
  ATTN_ISA_SCALAR = 0, /* portable C, any x86-64 or other CPU */
  ATTN_ISA_AVX2 = 1,   /* AVX2 + FMA */
  ATTN_ISA_AVX512 = 2, /* AVX-512 F + BW + VL + DQ */
} attn_isa;

/* The best ISA this CPU and OS support (cpuid + xgetbv). */
ATTN_API attn_isa attn_cpu_best_isa(void);

/* 1 if the CPU and OS support `isa`, else 0. */
ATTN_API int attn_cpu_supports(attn_isa isa);

/* The ISA kernels dispatch to now. Default: the ATTN_ISA environment variable
 * (scalar|avx2|avx512) if set and supported, else attn_cpu_best_isa(). */
ATTN_API attn_isa attn_get_isa(void);

/* Force kernels onto `isa`. ATTN_STATUS_UNSUPPORTED if the CPU lacks it, INVALID_ARGUMENT for an
 * unknown value. */
ATTN_API attn_status attn_set_isa(attn_isa isa);

/* "scalar", "avx2", "avx512". */
ATTN_API const char *attn_isa_name(attn_isa isa);

/* ---------------------------------------------------------------------------------------------
 * Counter-based RNG: Philox 4x32-10 (Salmon et al., SC'11)
 * ------------------------------------------------------------------------------------------- */

/* out = Philox4x32-10(counter, key). Pure function: the same inputs always give the same outputs,
 * on every thread and ISA. */
ATTN_API void attn_philox4x32(const uint32_t counter[4], const uint32_t key[2], uint32_t out[4]);

/* Uniform float in [0, 1) from a 32-bit word (uses the top 24 bits). */
ATTN_API float attn_uniform_from_u32(uint32_t x);

/* The dropout mask of attn_sdpa_*: 1 if the weight at (b, h, i, j) is kept for this seed and
 * drop probability p. i and j are positions within the sequence (for packed variable-length
 * batches, b is the sequence index and i, j are positions inside it). */
ATTN_API int attn_dropout_keep(uint64_t seed, float p, int64_t b, int64_t h, int64_t i, int64_t j);

/* ---------------------------------------------------------------------------------------------
 * Fused exact attention (scaled dot-product attention)
 * ------------------------------------------------------------------------------------------- */

/* Where the causal diagonal, the window and ALiBi's distance are anchored: query i sits at key
 * position i' = i + off, with off = 0 (top-left, PyTorch is_causal) or off = Nk - Nq (bottom-right,
 * FlashAttention-2, KV-cache decoding). With key/query lengths, off_b = key_len[b] - query_len[b]. */
typedef enum attn_mask_align {
  ATTN_MASK_ALIGN_TOP_LEFT = 0,
  ATTN_MASK_ALIGN_BOTTOM_RIGHT = 1,
} attn_mask_align;

/* What attn_sdpa_forward writes into `weights` when one is given. */
typedef enum attn_weights_mode {
  ATTN_WEIGHTS_PER_HEAD = 0, /* weights (B, Hq, Nq, Nk) */
  ATTN_WEIGHTS_HEAD_MEAN = 1, /* weights (B, Nq, Nk): mean over the Hq heads */
} attn_weights_mode;

/* Options of attn_sdpa_forward/backward. Initialise with attn_sdpa_params_default() and set what
 * you need, so fields added later keep their defaults.
 *
 * The logit of query i and key j of head h in batch b is built in this order:
 *   s = scale * q_i . k_j
 *   s = softcap * tanh(s / softcap)          if softcap > 0
 *   s = s + bias[b, h, i, j]                 if bias
 *   s = s - alibi_slopes[h] * |i + off - j|  if alibi_slopes
 *   s = -inf                                 if blocked by causal / window / key or query length
 * then a = softmax_j(s), out_i = sum_j drop(a_ij) v_j, lse_i = log sum_j exp(s_ij).
 * A row with no allowed key (or a padding query row) has out = 0, lse = -INFINITY and zero
 * gradients; masking never produces NaN, and a blocked key's values are never read into a result.
 */
typedef struct attn_sdpa_params {
  /* Scale of q.k. 0 selects the default 1/sqrt(Dk). Must be finite and >= 0. */
  float scale;

  /* Causal mask: key j allowed for query i only if j <= i + off. */
  int causal;
  /* Anchor of causal, window and ALiBi (see attn_mask_align). */
  attn_mask_align align;
  /* Sliding window: allowed iff i' - window_left <= j <= i' + window_right; -1 = unbounded on that
   * side. Values < -1 are invalid. */
  int64_t window_left, window_right;

  /* Per-sequence lengths, int32[B] each, or NULL. Keys j >= key_lens[b] are blocked; query rows
   * i >= query_lens[b] are padding (out 0, lse -inf, zero gradient). 0 <= len <= N. */
  const int32_t *key_lens;
  const int32_t *query_lens;

  /* Packed variable-length batch: int32 prefix sums of length n_seqs + 1 (cu_seqlens_q[0] = 0,
   * non-decreasing, last entry = Nq). When set, q/k/v/out have B = 1, sequences are laid end to
   * end along the N axis, and sequence s spans rows [cu_seqlens_q[s], cu_seqlens_q[s+1]) of q and
   * [cu_seqlens_k[s], cu_seqlens_k[s+1]) of k/v. Both must be set together; key_lens, query_lens
   * and bias must then be NULL. Positions (causal, window, ALiBi, dropout) are relative to the
   * sequence start; lse has shape (1, Hq, Nq). */
  const int32_t *cu_seqlens_q;
  const int32_t *cu_seqlens_k;
  int64_t n_seqs;

  /* Dense additive bias, 4-d (B, H, Nq, Nk), each dim either full size or 1 with stride 0 (H may
   * be Hq or 1). f32, f16 or bf16; innermost stride 1 unless that dim is broadcast. NULL = none.
   * May hold -INFINITY to block pairs. Not differentiated by attn_sdpa_backward. */
  const attn_tensor *bias;

  /* ALiBi slopes, f32[Hq], or NULL. Adds -slope[h] * |i + off - j|. attn_alibi_slopes() gives
   * the paper's values. */
  const float *alibi_slopes;

  /* Logit soft-cap c > 0 (0 = off); must be finite and >= 0. */
  float softcap;

  /* Dropout on the attention weights, p in [0, 1). Inverted: kept weights are scaled by
   * 1/(1 - p). The mask is attn_dropout_keep(seed, p, b, h, i, j); the backward regenerates it
   * from the same params. lse is the pre-dropout value. */
  float dropout_p;
  uint64_t dropout_seed;

  /* How attention weights are written when the caller passes a weights tensor. Weights are the
   * softmax probabilities before dropout; blocked pairs and padding rows get 0. */
  attn_weights_mode weights_mode;
} attn_sdpa_params;

ATTN_API attn_sdpa_params attn_sdpa_params_default(void);

/* ALiBi slopes of the paper for n_heads heads (any n_heads >= 1) into slopes[n_heads]. */
ATTN_API attn_status attn_alibi_slopes(float *slopes, int64_t n_heads);

/* Forward pass.
 *   q:   (B, Hq, Nq, Dk)      k: (B, Hkv, Nk, Dk)      v: (B, Hkv, Nk, Dv)
 *   out: (B, Hq, Nq, Dv)      lse: (B, Hq, Nq) f32, may be NULL (needed by the backward)
 *   weights: NULL, or (B, Hq, Nq, Nk) / (B, Nq, Nk) by params->weights_mode, any dtype;
 *            O(Nq*Nk) output, for inspection only.
 * Hq % Hkv == 0: query head h reads kv head h / (Hq / Hkv). Dk != Dv allowed; D >= 1.
 * dtypes: q, k, v, out, weights each f32, f16 or bf16 (compute in f32); lse f32.
 * Innermost stride of every tensor is 1; outer strides free. q, k, v may alias each other (views of
 * one packed buffer); out, lse and weights must not overlap any input or each other.
 * params NULL = defaults. workspace: NULL to allocate through the allocator hook, else at least
 * attn_sdpa_forward_workspace_size() bytes, 64-byte aligned.
 * Extra memory: O(per-thread tiles) for f32 inputs; K and V of one head converted to f32 per
 * thread for f16/bf16. Never O(Nq*Nk) unless weights are requested (they are then recomputed in a
 * second pass that needs no extra memory either).
 * Results are bitwise identical for any thread count.
 * Errors: NULL_POINTER (q, k, v, out), SHAPE_MISMATCH, INVALID_ARGUMENT (scale, softcap, dropout_p,
 * window, lengths, Hq % Hkv), BAD_STRIDE (innermost stride != 1, zero stride on an output dim of
 * size > 1), OVERFLOW, ALIASING, UNSUPPORTED_DTYPE, WORKSPACE_TOO_SMALL, OUT_OF_MEMORY. */
ATTN_API attn_status attn_sdpa_forward(const attn_tensor *out, const attn_tensor *lse,
                                       const attn_tensor *weights, const attn_tensor *q,
                                       const attn_tensor *k, const attn_tensor *v,
                                       const attn_sdpa_params *params, void *workspace,
                                       size_t workspace_size);

/* Workspace bytes attn_sdpa_forward needs for these operands at the current thread count and ISA
 * (0 is a valid answer). Validates the operands like the forward and returns the same errors. */
ATTN_API attn_status attn_sdpa_forward_workspace_size(size_t *size, const attn_tensor *out,
                                                      const attn_tensor *lse,
                                                      const attn_tensor *weights,
                                                      const attn_tensor *q, const attn_tensor *k,
                                                      const attn_tensor *v,
                                                      const attn_sdpa_params *params);

/* Backward pass. Overwrites (=) dq, dk, dv.
 *   dout: (B, Hq, Nq, Dv)  out: (B, Hq, Nq, Dv) and lse: (B, Hq, Nq) from the forward with the
 *   same q, k, v, params.   dq: like q, dk: like k, dv: like v (any of the three dtypes).
 * GQA: dk/dv of a kv head sum the contributions of its query heads.
 * dq, dk, dv must not overlap each other or any input. Same workspace rules as the forward.
 * Results are bitwise identical for any thread count. */
ATTN_API attn_status attn_sdpa_backward(const attn_tensor *dq, const attn_tensor *dk,
                                        const attn_tensor *dv, const attn_tensor *dout,
                                        const attn_tensor *q, const attn_tensor *k,
                                        const attn_tensor *v, const attn_tensor *out,
                                        const attn_tensor *lse, const attn_sdpa_params *params,
                                        void *workspace, size_t workspace_size);

ATTN_API attn_status attn_sdpa_backward_workspace_size(size_t *size, const attn_tensor *dq,
                                                       const attn_tensor *dk,
                                                       const attn_tensor *dv,
                                                       const attn_tensor *dout,
                                                       const attn_tensor *q, const attn_tensor *k,
                                                       const attn_tensor *v,
                                                       const attn_tensor *out,
                                                       const attn_tensor *lse,
                                                       const attn_sdpa_params *params);

/* Reference implementations: plain loops accumulating in double, every option above, same
 * signature and validation. They define the semantics and are the oracle of the tests; they are
 * O(Nq*Nk) in time and O(Nk) in scratch per row, and single-threaded. */
ATTN_API attn_status attn_sdpa_forward_ref(const attn_tensor *out, const attn_tensor *lse,
                                           const attn_tensor *weights, const attn_tensor *q,
                                           const attn_tensor *k, const attn_tensor *v,
                                           const attn_sdpa_params *params);
ATTN_API attn_status attn_sdpa_backward_ref(const attn_tensor *dq, const attn_tensor *dk,
                                            const attn_tensor *dv, const attn_tensor *dout,
                                            const attn_tensor *q, const attn_tensor *k,
                                            const attn_tensor *v, const attn_tensor *out,
                                            const attn_tensor *lse,
                                            const attn_sdpa_params *params);

/* ---------------------------------------------------------------------------------------------
 * GEMM
 * ------------------------------------------------------------------------------------------- */

typedef enum attn_layout {
  ATTN_ROW_MAJOR = 0,
  ATTN_COL_MAJOR = 1,
} attn_layout;

typedef enum attn_trans {
  ATTN_NO_TRANS = 0,
  ATTN_TRANS = 1,
} attn_trans;

/* C = alpha * op(A) * op(B) + beta * C, single precision, BLAS conventions:
 * op(A) is M x K, op(B) is K x N, C is M x N in `layout`; lda/ldb/ldc are leading dimensions in
 * elements (>= the stored row length for row-major, column length for column-major; may be any
 * value >= 1 when that matrix is empty). beta == 0 means C is not read (NaN in C is overwritten).
 * M, N, K >= 0. C must not overlap A or B. Multithreaded over the thread pool; the result is
 * bitwise identical for any thread count. Packing buffers come from the allocator hook
 * (ATTN_STATUS_OUT_OF_MEMORY if it fails; C is then untouched).
 * Errors: NULL_POINTER (A/B when M*N*K > 0, C when M*N > 0), INVALID_ARGUMENT (negative sizes,
 * leading dimensions too small, unknown enums), OVERFLOW, ALIASING. Any alpha/beta is allowed. */
ATTN_API attn_status attn_gemm(attn_layout layout, attn_trans trans_a, attn_trans trans_b,
                               int64_t M, int64_t N, int64_t K, float alpha, const float *A,
                               int64_t lda, const float *B, int64_t ldb, float beta, float *C,
                               int64_t ldc);

/* Reference: triple loop accumulating in double. Same contract, single-threaded. */
ATTN_API attn_status attn_gemm_ref(attn_layout layout, attn_trans trans_a, attn_trans trans_b,
                                   int64_t M, int64_t N, int64_t K, float alpha, const float *A,
                                   int64_t lda, const float *B, int64_t ldb, float beta, float *C,
                                   int64_t ldc);

/* ---- pre-packed right-hand operand (weights) --------------------------------------------------
 * attn_gemm repacks op(B) into the micro-kernel's panel layout on every call. When the same B is
 * multiplied many times (a layer's weights), pack it once with attn_gemm_pack_b and run
 * attn_gemm_packed: no B packing per call, the rows of C are spread over the threads in small
 * tiles (dynamic load balance at no packing cost), and an optional epilogue adds a bias and applies
 * an activation to each tile of C while it is still in cache.
 *
 * Row-major only. The packed operand keeps the micro-kernel of the ISA in force when it was
 * packed (attn_get_isa(); later attn_set_isa calls do not change it) and uses it on every run, so
 * attn_gemm_packed's C is bitwise identical to attn_gemm's under that ISA, for any thread count,
 * followed by the epilogue applied to the final C (the epilogue's GELU is that of the ISA in force
 * when the product runs; ISAs may differ in its last bit, never thread counts). Memory: K x round_up(N, 32) floats for AVX-512
 * (attn_gemm_packed_bytes tells), from the allocator hook. A packed operand is read-only once made:
 * any number of threads may run products with it at once. */
typedef struct attn_gemm_packed_b attn_gemm_packed_b;

typedef enum attn_epilogue {
  ATTN_EPILOGUE_NONE = 0,      /* C = alpha op(A) B + beta C */
  ATTN_EPILOGUE_BIAS = 1,      /* then C[i][j] += bias[j] */
  ATTN_EPILOGUE_BIAS_GELU = 2, /* then C[i][j] = gelu(C[i][j] + bias[j]), GELU in its erf form
                                  x Phi(x) (a few ulp, the kernel of the nn GELU op) */
  ATTN_EPILOGUE_BIAS_RELU = 3, /* then C[i][j] = max(C[i][j] + bias[j], 0); NaN stays NaN */
} attn_epilogue;

/* Pack op(B), K x N (B stored K x N with ldb >= N, or N x K with ldb >= K when trans_b), into a
 * new operand in *out. K, N >= 1. Errors: NULL_POINTER (out, B), INVALID_ARGUMENT (K or N < 1,
 * ldb too small, unknown trans_b), OVERFLOW, OUT_OF_MEMORY (*out is then NULL). */
ATTN_API attn_status attn_gemm_pack_b(attn_gemm_packed_b **out, attn_trans trans_b, int64_t K,
                                      int64_t N, const float *B, int64_t ldb);

/* Bytes held by a packed operand (0 for NULL). */
ATTN_API size_t attn_gemm_packed_bytes(const attn_gemm_packed_b *b);

/* Frees a packed operand; NULL is a no-op. */
ATTN_API void attn_gemm_packed_free(attn_gemm_packed_b *b);

/* Row-major C = epilogue(alpha op(A) B + beta C) with B packed by attn_gemm_pack_b (its K and N):
 * op(A) is M x K (A stored M x K with lda >= K, or K x M with lda >= M when trans_a), C is M x N
 * with ldc >= N; beta == 0 means C is not read. bias (N floats) is read by the BIAS epilogues and
 * ignored (may be NULL) by ATTN_EPILOGUE_NONE. M >= 0 (M == 0 does nothing). Errors: NULL_POINTER
 * (b, A when M > 0, C when M > 0, bias when the epilogue reads it), INVALID_ARGUMENT (M < 0, lda
 * or ldc too small, unknown trans_a or epilogue), OVERFLOW, ALIASING (C overlaps A or bias),
 * OUT_OF_MEMORY (A-packing buffers; C is then untouched). */
ATTN_API attn_status attn_gemm_packed(attn_trans trans_a, int64_t M, float alpha, const float *A,
                                      int64_t lda, const attn_gemm_packed_b *b, float beta, float *C,
                                      int64_t ldc, attn_epilogue epilogue, const float *bias);

#ifdef __cplusplus
}
#endif

#endif /* ATTN_H */
