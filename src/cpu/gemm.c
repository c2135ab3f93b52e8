/* Single-precision GEMM: argument validation, the public attn_gemm, and the blocked driver that
 * every ISA's micro-kernel plugs into.
 *
 * Blocking (Goto/van de Geijn, with the roles chosen for broadcast-FMA micro-kernels): C is cut
 * into tiles of whole rows x NC columns that are spread over the thread pool. A tile walks K in
 * blocks of KC; for each K block it packs its KC x NC block of op(B) into column panels of NR
 * (kept in L2), then for each MR rows packs an MR x KC panel of op(A) (kept in L1) and sweeps the
 * micro-kernel along the B panels. Every buffer is private to a thread slot, so the only
 * synchronisation is the one fork-join of attn__parallel_for_shared (called from inside another
 * parallel item, e.g. one part of a BERT batch, idle threads may still help with the tiles).
 *
 * Determinism: an element of C is computed by one micro-kernel call per K block, the K blocks
 * depend only on K (never on the thread count or the tiling), each call sums its block in
 * increasing k and the blocks are added to C in increasing order. Tiling therefore changes only
 * which thread does the work, never the arithmetic, and C is bitwise identical for any thread
 * count. */
#include "gemm_internal.h"

#include <stdatomic.h>

#include "gelu.h"

/* ---- validation ------------------------------------------------------------------------------ */

/* Extent in elements of a stored matrix of `rows` x `cols` in its own layout with leading
 * dimension ld (the last element's offset + 1); false when it overflows or exceeds what a byte
 * offset can address. An empty matrix has extent 0. */
static bool stored_extent(int64_t rows, int64_t cols, int64_t ld, int64_t *extent) {
  if (rows == 0 || cols == 0) {
    *extent = 0;
    return true;
  }
  int64_t off;
  if (!attn__mul_i64(rows - 1, ld, &off) || !attn__add_i64(off, cols, &off)) return false;
  if (off > INT64_MAX / (int64_t)sizeof(float)) return false;
  *extent = off;
  return true;
}

static bool ranges_overlap(const float *p, int64_t np, const float *q, int64_t nq) {
  if (np == 0 || nq == 0 || !p || !q) return false;
  uintptr_t p0 = (uintptr_t)p, p1 = p0 + (uintptr_t)np * sizeof(float);
  uintptr_t q0 = (uintptr_t)q, q1 = q0 + (uintptr_t)nq * sizeof(float);
  return p0 < q1 && q0 < p1;
}

/* Check one operand: its stored shape (rows x cols in row-major terms of its own layout, i.e.
 * ld must be >= cols), NULL when it will be read, the leading dimension and the extent. */
static attn_status check_operand(const char *fn, const char *name, const char *ld_name,
                                 const float *p, bool needed, int64_t rows, int64_t cols,
                                 int64_t ld, int64_t *extent) {
  if (needed && !p) return attn__fail(ATTN_STATUS_NULL_POINTER, "%s: %s is NULL", fn, name);
  bool empty = rows == 0 || cols == 0;
  int64_t ld_min = empty ? 1 : (cols > 1 ? cols : 1);
  if (ld < ld_min)
    return attn__fail(ATTN_STATUS_INVALID_ARGUMENT,
                      "%s: %s = %lld is too small for %s (%lld x %lld stored, needs >= %lld)", fn,
                      ld_name, (long long)ld, name, (long long)rows, (long long)cols,
                      (long long)ld_min);
  if (!stored_extent(rows, cols, ld, extent))
    return attn__fail(ATTN_STATUS_OVERFLOW,
                      "%s: %s (%lld x %lld, %s = %lld) spans more than int64 bytes", fn, name,
                      (long long)rows, (long long)cols, ld_name, (long long)ld);
  return ATTN_OK;
}

attn_status attn__sgemm_validate(const char *fn, attn_layout layout, attn_trans trans_a,
                                 attn_trans trans_b, int64_t M, int64_t N, int64_t K,
                                 const float *A, int64_t lda, const float *B, int64_t ldb,
                                 const float *C, int64_t ldc) {
  if (layout != ATTN_ROW_MAJOR && layout != ATTN_COL_MAJOR)
    return attn__fail(ATTN_STATUS_INVALID_ARGUMENT, "%s: layout = %d is not an attn_layout", fn,
                      (int)layout);
  if (trans_a != ATTN_NO_TRANS && trans_a != ATTN_TRANS)
    return attn__fail(ATTN_STATUS_INVALID_ARGUMENT, "%s: trans_a = %d is not an attn_trans", fn,
                      (int)trans_a);
  if (trans_b != ATTN_NO_TRANS && trans_b != ATTN_TRANS)
    return attn__fail(ATTN_STATUS_INVALID_ARGUMENT, "%s: trans_b = %d is not an attn_trans", fn,
                      (int)trans_b);
  if (M < 0 || N < 0 || K < 0) {
    const char *which = M < 0 ? "M" : (N < 0 ? "N" : "K");
    int64_t v = M < 0 ? M : (N < 0 ? N : K);
    return attn__fail(ATTN_STATUS_INVALID_ARGUMENT, "%s: %s = %lld is negative", fn, which,
                      (long long)v);
  }
  /* Stored shapes. op(A) is M x K: A is stored M x K, or K x M when transposed. In column-major
   * a stored r x c matrix is, for addressing, a row-major c x r one. */
  bool ta = trans_a == ATTN_TRANS, tb = trans_b == ATTN_TRANS;
  int64_t a_rows = ta ? K : M, a_cols = ta ? M : K;
  int64_t b_rows = tb ? N : K, b_cols = tb ? K : N;
  int64_t c_rows = M, c_cols = N;
  if (layout == ATTN_COL_MAJOR) {
    int64_t t;
    t = a_rows, a_rows = a_cols, a_cols = t;
    t = b_rows, b_rows = b_cols, b_cols = t;
    t = c_rows, c_rows = c_cols, c_cols = t;
  }
  bool reads_ab = M > 0 && N > 0 && K > 0;
  int64_t ea, eb, ec;
  attn_status st;
  if ((st = check_operand(fn, "A", "lda", A, reads_ab, a_rows, a_cols, lda, &ea)) != ATTN_OK)
    return st;
  if ((st = check_operand(fn, "B", "ldb", B, reads_ab, b_rows, b_cols, ldb, &eb)) != ATTN_OK)
    return st;
  if ((st = check_operand(fn, "C", "ldc", C, M > 0 && N > 0, c_rows, c_cols, ldc, &ec)) != ATTN_OK)
    return st;
  if (reads_ab && ranges_overlap(C, ec, A, ea))
    return attn__fail(ATTN_STATUS_ALIASING, "%s: C overlaps A", fn);
  if (reads_ab && ranges_overlap(C, ec, B, eb))
    return attn__fail(ATTN_STATUS_ALIASING, "%s: C overlaps B", fn);
  return ATTN_OK;
}

/* ---- public entry ---------------------------------------------------------------------------- */

attn_status attn_gemm(attn_layout layout, attn_trans trans_a, attn_trans trans_b, int64_t M,
                      int64_t N, int64_t K, float alpha, const float *A, int64_t lda,
                      const float *B, int64_t ldb, float beta, float *C, int64_t ldc) {
  attn__clear_error();
  attn_status st =
      attn__sgemm_validate("attn_gemm", layout, trans_a, trans_b, M, N, K, A, lda, B, ldb, C, ldc);
  if (st != ATTN_OK) return st;
  if (M == 0 || N == 0) return ATTN_OK;
  bool ta = trans_a == ATTN_TRANS, tb = trans_b == ATTN_TRANS;
  const attn__kernels *kern = attn__kernels_get();
  attn_status (*sgemm)(bool, bool, int64_t, int64_t, int64_t, float, const float *, int64_t,
                       const float *, int64_t, float, float *, int64_t) = kern->sgemm;
  if (!sgemm) sgemm = attn__sgemm_scalar;
  if (layout == ATTN_COL_MAJOR) {
    /* A column-major r x c matrix is the row-major c x r matrix of its transpose, so
     * C^T = op(B)^T op(A)^T is a row-major N x M product with the operands swapped. */
    return sgemm(tb, ta, N, M, K, alpha, B, ldb, A, lda, beta, C, ldc);
  }
  return sgemm(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

/* ---- packing --------------------------------------------------------------------------------- */

/* dst[k * MR + i] = op(A)[row0 + i][k0 + k] for i < rows, 0 for rows <= i < MR; k < kb.
 * op(A)[i][k] is A[i * lda + k], or A[k * lda + i] when transposed. Always inlined with a constant
 * MR so the loops are specialised per micro-kernel shape. */
static inline __attribute__((always_inline)) void pack_a_panel(const int MR, bool ta,
                                                               const float *A, int64_t lda,
                                                               int64_t row0, int64_t rows,
                                                               int64_t k0, int64_t kb,
                                                               float *restrict dst) {
  if (!ta) {
    /* Across the rows for each k, so dst is written contiguously. */
    const float *src = A + row0 * lda + k0;
    if (rows == MR) {
      for (int64_t k = 0; k < kb; k++)
        for (int i = 0; i < MR; i++) dst[k * MR + i] = src[i * lda + k];
    } else {
      for (int64_t k = 0; k < kb; k++)
        for (int i = 0; i < MR; i++) dst[k * MR + i] = i < rows ? src[i * lda + k] : 0.0f;
    }
  } else {
    for (int64_t k = 0; k < kb; k++) {
      const float *src = A + (k0 + k) * lda + row0;
      if (rows == MR) {
        for (int i = 0; i < MR; i++) dst[k * MR + i] = src[i];
      } else {
        for (int64_t i = 0; i < rows; i++) dst[k * MR + i] = src[i];
        for (int64_t i = rows; i < MR; i++) dst[k * MR + i] = 0.0f;
      }
    }
  }
}

/* Pack op(B)[k0 .. k0 + kb)[col0 .. col0 + cols) into ceil(cols / NR) panels of kb x NR, panel q
 * at dst + q * kb * NR with dst_q[k * NR + j] = op(B)[k0 + k][col0 + q * NR + j], zero past cols.
 * op(B)[k][j] is B[k * ldb + j], or B[j * ldb + k] when transposed. */
static inline __attribute__((always_inline)) void pack_b_block(const int NR, bool tb,
                                                               const float *B, int64_t ldb,
                                                               int64_t k0, int64_t kb, int64_t col0,
                                                               int64_t cols, float *restrict dst) {
  int64_t full = cols / NR, tail = cols - full * NR;
  if (!tb) {
    /* Row by row of B, so B is read contiguously. */
    for (int64_t k = 0; k < kb; k++) {
      const float *src = B + (k0 + k) * ldb + col0;
      for (int64_t q = 0; q < full; q++) {
        float *d = dst + q * kb * NR + k * NR;
        for (int j = 0; j < NR; j++) d[j] = src[q * NR + j];
      }
      if (tail) {
        float *d = dst + full * kb * NR + k * NR;
        for (int64_t j = 0; j < tail; j++) d[j] = src[full * NR + j];
        for (int64_t j = tail; j < NR; j++) d[j] = 0.0f;
      }
    }
  } else {
    for (int64_t q = 0; q * NR < cols; q++) {
      int64_t w = q < full ? NR : tail;
      float *d = dst + q * kb * NR;
      for (int64_t j = 0; j < w; j++) {
        const float *src = B + (col0 + q * NR + j) * ldb + k0;
        for (int64_t k = 0; k < kb; k++) d[k * NR + j] = src[k];
      }
      for (int64_t j = w; j < NR; j++)
        for (int64_t k = 0; k < kb; k++) d[k * NR + j] = 0.0f;
    }
  }
}

/* The arch's own packing when it has one; else a specialisation of the portable loops for the
 * micro-kernel shapes in use, and for others the generic loop (MR/NR as variables), only slower. */
static void pack_a_any(const attn__sgemm_arch *arch, bool ta, const float *A, int64_t lda,
                       int64_t row0, int64_t rows, int64_t k0, int64_t kb, float *dst) {
  if (arch->pack_a) {
    arch->pack_a(ta, A, lda, row0, rows, k0, kb, dst);
    return;
  }
  const int mr = arch->mr;
  switch (mr) {
    case 6:
      pack_a_panel(6, ta, A, lda, row0, rows, k0, kb, dst);
      break;
    case 14:
      pack_a_panel(14, ta, A, lda, row0, rows, k0, kb, dst);
      break;
    default:
      pack_a_panel(mr, ta, A, lda, row0, rows, k0, kb, dst);
      break;
  }
}

static void pack_b_any(const attn__sgemm_arch *arch, bool tb, const float *B, int64_t ldb,
                       int64_t k0, int64_t kb, int64_t col0, int64_t cols, float *dst) {
  if (arch->pack_b) {
    arch->pack_b(tb, B, ldb, k0, kb, col0, cols, dst);
    return;
  }
  const int nr = arch->nr;
  switch (nr) {
    case 8:
      pack_b_block(8, tb, B, ldb, k0, kb, col0, cols, dst);
      break;
    case 16:
      pack_b_block(16, tb, B, ldb, k0, kb, col0, cols, dst);
      break;
    case 32:
      pack_b_block(32, tb, B, ldb, k0, kb, col0, cols, dst);
      break;
    default:
      pack_b_block(nr, tb, B, ldb, k0, kb, col0, cols, dst);
      break;
  }
}

/* ---- driver ---------------------------------------------------------------------------------- */

/* One thread slot's packing buffers; `busy` is claimed by the item using it. */
typedef struct gemm_slot {
  float *a_panel; /* MR x KC */
  float *b_block; /* KC x NC, in NR-wide panels */
  atomic_int busy;
} gemm_slot;

typedef struct gemm_job {
  const attn__sgemm_arch *arch;
  bool ta, tb;
  int64_t M, N, K;
  float alpha, beta;
  const float *A, *B;
  int64_t lda, ldb, ldc;
  float *C;
  int64_t kc;          /* K block length (the last block may be shorter) */
  int64_t tile_rows;   /* rows of C per tile, a multiple of MR (when row_start is NULL) */
  int64_t tile_cols;   /* columns of C per tile, a multiple of NR */
  int64_t n_col_tiles; /* tiles along N */
  int64_t n_row_tiles; /* tiles along M */
  const int64_t *row_start; /* row tile t is rows [row_start[t], row_start[t + 1]), or NULL:
                               tiles of tile_rows */
  const float *packed; /* pre-packed op(B) (attn_gemm_packed), or NULL: pack per tile */
  int64_t n_pad;       /* packed: N rounded up to NR (a K block starts at k0 * n_pad) */
  attn_epilogue epilogue;
  const float *bias;
  attn__gemm_row_epilogue row_epi; /* on whole rows, or NULL */
  void *row_ctx;
  atomic_int *tiles_done; /* row_epi over several column tiles: finished tiles per row tile */
  gemm_slot *slots;
  int n_slots;
} gemm_job;

static gemm_slot *claim_slot(const gemm_job *job) {
  for (int s = 0; s < job->n_slots; s++) {
    int expected = 0;
    if (atomic_compare_exchange_strong(&job->slots[s].busy, &expected, 1)) return &job->slots[s];
  }
  return NULL;
}

/* Whether a full panel followed by r (0 < r < MR) leftover rows runs as two halves of the small
 * micro-kernel: MR + r <= 2 small_mr (16 = 8 + 8 instead of 14 + 2). */
static bool small_pair(const attn__sgemm_arch *arch, int64_t r) {
  return arch->ukernel_small && r > 0 && r < arch->mr && arch->mr + r <= 2 * arch->small_mr;
}

/* Rows of the next panel when `left` rows of the tile remain: MR, except at the end, where MR + r
 * rows that make a small pair go as two halves, and r < MR rows as one panel (the small
 * micro-kernel's when r <= small_mr; see attn__sgemm_arch). */
static int64_t panel_rows(const attn__sgemm_arch *arch, int64_t left) {
  const int64_t mr = arch->mr;
  if (left > mr && small_pair(arch, left - mr)) return (left + 1) / 2;
  return left < mr ? left : mr;
}

/* One tile of C: rows [r0, r1) x columns [c0, c1), the whole K. */
static void gemm_tile(void *ctx, int64_t item, int thread_id) {
  (void)thread_id;
  const gemm_job *job = ctx;
  const attn__sgemm_arch *arch = job->arch;
  const int mr = arch->mr, nr = arch->nr;
  /* Packed B: row tiles vary fastest, so a thread's next item is usually the same column tile
   * (its B still in L2). Packing per tile: column tiles vary fastest, as they always have. */
  int64_t rt = job->packed ? item % job->n_row_tiles : item / job->n_col_tiles;
  int64_t ct = job->packed ? item / job->n_row_tiles : item % job->n_col_tiles;
  int64_t r0, r1, c0 = ct * job->tile_cols;
  if (job->row_start) {
    r0 = job->row_start[rt];
    r1 = job->row_start[rt + 1];
  } else {
    r0 = rt * job->tile_rows;
    r1 = r0 + job->tile_rows < job->M ? r0 + job->tile_rows : job->M;
  }
  int64_t c1 = c0 + job->tile_cols < job->N ? c0 + job->tile_cols : job->N;
  /* At most min(threads, items) items run at once and there are that many slots. */
  gemm_slot *slot = claim_slot(job);
  ATTN_ASSERT(slot != NULL);
  float *a_panel = slot->a_panel, *b_block = slot->b_block;

  for (int64_t k0 = 0; k0 < job->K; k0 += job->kc) {
    int64_t kb = job->K - k0 < job->kc ? job->K - k0 : job->kc;
    bool first = k0 == 0;
    /* The first K block applies beta (and reads C only if beta != 0); later ones accumulate. */
    float beta = first ? job->beta : 1.0f;
    bool load_c = !first || job->beta != 0.0f;
    bool last = k0 + kb >= job->K;
    const float *bb = b_block;
    if (job->packed) /* panel c0 / NR of this K block, each panel kb x NR */
      bb = job->packed + k0 * job->n_pad + c0 * kb;
    else
      pack_b_any(arch, job->tb, job->B, job->ldb, k0, kb, c0, c1 - c0, b_block);
    for (int64_t i = r0, m; i < r1; i += m) {
      m = panel_rows(arch, r1 - i);
      const bool small = arch->ukernel_small && m <= arch->small_mr;
      float *c_row = job->C + i * job->ldc;
      /* A full panel of a row-major A is read where it lies (the same bits as packing it). */
      const float *a_rows = !job->ta && m == mr && arch->ukernel_rows
                                ? job->A + i * job->lda + k0
                                : NULL;
      if (!a_rows) pack_a_any(arch, job->ta, job->A, job->lda, i, m, k0, kb, a_panel);
      for (int64_t j = c0; j < c1; j += nr) {
        int64_t n = c1 - j < nr ? c1 - j : nr;
        if (a_rows)
          arch->ukernel_rows(kb, a_rows, job->lda, bb + (j - c0) * kb, c_row + j, job->ldc, n,
                             job->alpha, beta, load_c);
        else
          (small ? arch->ukernel_small : arch->ukernel)(kb, a_panel, bb + (j - c0) * kb, c_row + j,
                                                         job->ldc, m, n, job->alpha, beta, load_c);
      }
      /* These m rows of the tile are final: the epilogue runs on them while they are in cache. */
      if (last && job->epilogue != ATTN_EPILOGUE_NONE)
        for (int64_t r = 0; r < m; r++)
          attn__bias_epilogue(job->epilogue, c_row + r * job->ldc + c0, job->bias + c0, c1 - c0);
      if (last && job->row_epi && job->n_col_tiles == 1)
        job->row_epi(job->row_ctx, c_row, job->ldc, i, m);
    }
  }
  atomic_store(&slot->busy, 0);
  /* Rows split over column tiles are whole once their last tile is done: whichever item finishes
   * it runs the epilogue (the acq_rel increment orders the other tiles' writes before it). */
  if (job->row_epi && job->n_col_tiles > 1 &&
      atomic_fetch_add_explicit(&job->tiles_done[rt], 1, memory_order_acq_rel) + 1 ==
          job->n_col_tiles)
    for (int64_t i = r0; i < r1; i += mr)
      job->row_epi(job->row_ctx, job->C + i * job->ldc, job->ldc, i, r1 - i < mr ? r1 - i : mr);
}

static int64_t ceil_div(int64_t a, int64_t b) {
  return (a + b - 1) / b;
}
static int64_t round_up_i64(int64_t a, int64_t b) {
  return ceil_div(a, b) * b;
}

/* C = beta C over M x N (row-major), without reading C when beta == 0. */
static void scale_c(int64_t M, int64_t N, float beta, float *C, int64_t ldc) {
  if (beta == 1.0f) return;
  for (int64_t i = 0; i < M; i++) {
    float *c = C + i * ldc;
    if (beta == 0.0f)
      for (int64_t j = 0; j < N; j++) c[j] = 0.0f;
    else
      for (int64_t j = 0; j < N; j++) c[j] *= beta;
  }
}

/* Allocate one slot of packing buffers per item that can run at once (every buffer before C is
 * written), then run the job's items over the pool. b_block is sized only when B is packed per
 * tile. */
static attn_status run_job(gemm_job *job, int threads) {
  const int mr = job->arch->mr;
  int64_t n_items = job->n_col_tiles * job->n_row_tiles;
  int n_slots = n_items < threads ? (int)n_items : threads;
  size_t a_bytes = attn__round_up((size_t)mr * (size_t)job->kc * sizeof(float), ATTN_ALIGN);
  size_t b_bytes = job->packed ? 0 : (size_t)job->tile_cols * (size_t)job->kc * sizeof(float);
  gemm_slot *slots = attn__malloc((size_t)n_slots * sizeof *slots, ATTN_ALIGN);
  if (!slots)
    return attn__fail(ATTN_STATUS_OUT_OF_MEMORY, "attn_gemm: packing slots (%zu bytes)",
                      (size_t)n_slots * sizeof *slots);
  attn_status st = ATTN_OK;
  int made = 0;
  for (; made < n_slots; made++) {
    gemm_slot *s = &slots[made];
    s->a_panel = attn__malloc(a_bytes + b_bytes, ATTN_ALIGN);
    if (!s->a_panel) {
      st = attn__fail(ATTN_STATUS_OUT_OF_MEMORY, "attn_gemm: packing buffer (%zu bytes)",
                      a_bytes + b_bytes);
      break;
    }
    s->b_block = (float *)((char *)s->a_panel + a_bytes);
    atomic_init(&s->busy, 0);
  }
  if (st == ATTN_OK) {
    job->slots = slots;
    job->n_slots = n_slots;
    /* One slot means one thread: run the items here, or the pool could run two at once (a small
     * product that is still several column tiles wide) and the second would find no slot. */
    if (threads == 1)
      for (int64_t i = 0; i < n_items; i++) gemm_tile(job, i, 0);
    else
      attn__parallel_for_shared(n_items, gemm_tile, job);
  }
  for (int s = 0; s < made; s++) attn__free(slots[s].a_panel);
  attn__free(slots);
  return st;
}

/* K blocks of equal length, a function of K and the arch alone (see the determinism note). */
static int64_t k_block(const attn__sgemm_arch *arch, int64_t K) {
  return ceil_div(K, ceil_div(K, arch->kc));
}

attn_status attn__sgemm_run(const attn__sgemm_arch *arch, bool trans_a, bool trans_b, int64_t M,
                            int64_t N, int64_t K, float alpha, const float *A, int64_t lda,
                            const float *B, int64_t ldb, float beta, float *C, int64_t ldc) {
  if (M == 0 || N == 0) return ATTN_OK;
  if (K == 0 || alpha == 0.0f) {
    scale_c(M, N, beta, C, ldc);
    return ATTN_OK;
  }
  const int mr = arch->mr, nr = arch->nr;
  gemm_job job = {.arch = arch,
                  .ta = trans_a,
                  .tb = trans_b,
                  .M = M,
                  .N = N,
                  .K = K,
                  .alpha = alpha,
                  .beta = beta,
                  .A = A,
                  .B = B,
                  .lda = lda,
                  .ldb = ldb,
                  .ldc = ldc,
                  .C = C,
                  .kc = k_block(arch, K),
                  .epilogue = ATTN_EPILOGUE_NONE};

  /* Tiles. Small problems stay on one thread. Otherwise aim for a multiple of the thread count
   * of equal tiles, cutting N first (each tile packs its own B block, so cutting M repeats that
   * packing) while a tile keeps >= 128 columns, then M. */
  int threads = attn__team_size();
  double work = (double)M * (double)N * (double)K;
  if (work < 64.0 * 64.0 * 64.0) threads = 1;
  int64_t col_tiles = ceil_div(N, arch->nc), row_tiles = 1;
  if (threads > 1) {
    int64_t want = round_up_i64(col_tiles, threads);
    int64_t most_cols = N / 128 > col_tiles ? N / 128 : col_tiles;
    if (want <= most_cols) {
      col_tiles = want;
    } else {
      row_tiles = ceil_div(want, col_tiles);
      int64_t most_rows = ceil_div(M, mr);
      if (row_tiles > most_rows) row_tiles = most_rows;
    }
  }
  job.tile_cols = round_up_i64(ceil_div(N, col_tiles), nr);
  job.n_col_tiles = ceil_div(N, job.tile_cols);
  job.tile_rows = round_up_i64(ceil_div(M, row_tiles), mr);
  job.n_row_tiles = ceil_div(M, job.tile_rows);
  return run_job(&job, threads);
}

const attn__sgemm_arch *attn__sgemm_arch_get(void) {
#if ATTN_X86
  switch (attn__kernels_get()->isa) {
    case ATTN_ISA_AVX512:
      return &attn__sgemm_arch_avx512;
    case ATTN_ISA_AVX2:
      return &attn__sgemm_arch_avx2;
    default:
      break;
  }
#endif
  return &attn__sgemm_arch_scalar;
}

/* ---- pre-packed B ---------------------------------------------------------------------------- */

struct attn_gemm_packed_b {
  const attn__sgemm_arch *arch; /* the ISA in force when packed */
  int64_t K, N, n_pad, kc;
  size_t bytes; /* of data */
  float *data;  /* K block at k0: n_pad / NR panels of kb x NR, at data + k0 * n_pad */
};

/* A packed K block's columns are read from L2 by every row panel of a tile: keep kc x tile_cols
 * within this many bytes (L2 is 1-2 MB per core on the CPUs the kernels are tuned for). */
#define PACKED_L2_BYTES ((size_t)1280 * 1024)
#ifndef ROW_TILE_PANELS
#define ROW_TILE_PANELS 4
#endif

attn_status attn_gemm_pack_b(attn_gemm_packed_b **out, attn_trans trans_b, int64_t K, int64_t N,
                             const float *B, int64_t ldb) {
  attn__clear_error();
  if (!out) return attn__fail(ATTN_STATUS_NULL_POINTER, "attn_gemm_pack_b: out is NULL");
  *out = NULL;
  if (trans_b != ATTN_NO_TRANS && trans_b != ATTN_TRANS)
    return attn__fail(ATTN_STATUS_INVALID_ARGUMENT,
                      "attn_gemm_pack_b: trans_b = %d is not an attn_trans", (int)trans_b);
  if (K < 1 || N < 1)
    return attn__fail(ATTN_STATUS_INVALID_ARGUMENT,
                      "attn_gemm_pack_b: K = %lld and N = %lld must be >= 1", (long long)K,
                      (long long)N);
  const bool tb = trans_b == ATTN_TRANS;
  int64_t extent;
  attn_status st =
      check_operand("attn_gemm_pack_b", "B", "ldb", B, true, tb ? N : K, tb ? K : N, ldb, &extent);
  if (st != ATTN_OK) return st;
  const attn__sgemm_arch *arch = attn__sgemm_arch_get();
  const int64_t nr = arch->nr;
  int64_t n_pad, elems;
  size_t bytes;
  if (!attn__add_i64(N, nr - 1, &n_pad) || !attn__mul_i64(n_pad / nr * nr, K, &elems) ||
      !attn__mul_size((size_t)elems, sizeof(float), &bytes))
    return attn__fail(ATTN_STATUS_OVERFLOW, "attn_gemm_pack_b: K x N = %lld x %lld is too large",
                      (long long)K, (long long)N);
  n_pad = n_pad / nr * nr;
  attn_gemm_packed_b *p = attn__malloc(sizeof *p, ATTN_ALIGN);
  float *data = p ? attn__malloc_large(bytes) : NULL;
  if (!data) {
    attn__free(p);
    return attn__fail(ATTN_STATUS_OUT_OF_MEMORY, "attn_gemm_pack_b: out of memory (%zu bytes)",
                      bytes);
  }
  p->arch = arch;
  p->K = K;
  p->N = N;
  p->n_pad = n_pad;
  p->kc = k_block(arch, K);
  p->bytes = bytes;
  p->data = data;
  for (int64_t k0 = 0; k0 < K; k0 += p->kc) {
    int64_t kb = K - k0 < p->kc ? K - k0 : p->kc;
    pack_b_any(arch, tb, B, ldb, k0, kb, 0, N, data + k0 * n_pad);
  }
  *out = p;
  return ATTN_OK;
}

size_t attn_gemm_packed_bytes(const attn_gemm_packed_b *b) {
  return b ? b->bytes + sizeof *b : 0;
}

void attn_gemm_packed_free(attn_gemm_packed_b *b) {
  if (!b) return;
  attn__free(b->data);
  attn__free(b);
}

/* attn_gemm_packed and attn__gemm_packed_rows: the built-in epilogue, or row_epi on whole rows. */
static attn_status packed_run(const char *fn, attn_trans trans_a, int64_t M, float alpha,
                              const float *A, int64_t lda, const attn_gemm_packed_b *b, float beta,
                              float *C, int64_t ldc, attn_epilogue epilogue, const float *bias,
                              attn__gemm_row_epilogue row_epi, void *row_ctx) {
  attn__clear_error();
  if (!b) return attn__fail(ATTN_STATUS_NULL_POINTER, "%s: b is NULL", fn);
  if (epilogue < ATTN_EPILOGUE_NONE || epilogue > ATTN_EPILOGUE_BIAS_RELU)
    return attn__fail(ATTN_STATUS_INVALID_ARGUMENT, "%s: epilogue = %d is not an attn_epilogue", fn,
                      (int)epilogue);
  const int64_t K = b->K, N = b->N;
  const bool ta = trans_a == ATTN_TRANS, uses_bias = epilogue != ATTN_EPILOGUE_NONE;
  /* attn_gemm's checks, with the packed data as a K x n_pad B (C must not overlap it either). */
  attn_status st = attn__sgemm_validate(fn, ATTN_ROW_MAJOR, trans_a, ATTN_NO_TRANS, M, N, K, A,
                                        lda, b->data, b->n_pad, C, ldc);
  if (st != ATTN_OK) return st;
  if (uses_bias && !bias) return attn__fail(ATTN_STATUS_NULL_POINTER, "%s: bias is NULL", fn);
  if (M == 0) return ATTN_OK;
  if (uses_bias && ranges_overlap(C, (M - 1) * ldc + N, bias, N))
    return attn__fail(ATTN_STATUS_ALIASING, "%s: C overlaps bias", fn);

  const attn__sgemm_arch *arch = b->arch;
  const int64_t mr = arch->mr, nr = arch->nr;
  gemm_job job = {.arch = arch,
                  .ta = ta,
                  .M = M,
                  .N = N,
                  .K = K,
                  .alpha = alpha,
                  .beta = beta,
                  .A = A,
                  .lda = lda,
                  .ldc = ldc,
                  .C = C,
                  .kc = b->kc,
                  .packed = b->data,
                  .n_pad = b->n_pad,
                  .epilogue = epilogue,
                  .bias = bias,
                  .row_epi = row_epi,
                  .row_ctx = row_ctx};
  if (alpha == 0.0f) {
    /* C = beta C, then the epilogue (no A or B read, as attn_gemm). */
    scale_c(M, N, beta, C, ldc);
    if (uses_bias)
      for (int64_t i = 0; i < M; i++) attn__bias_epilogue(epilogue, C + i * ldc, bias, N);
    for (int64_t i = 0; row_epi && i < M; i += mr)
      row_epi(row_ctx, C + i * ldc, ldc, i, M - i < mr ? M - i : mr);
    return ATTN_OK;
  }
  /* Columns: tiles whose whole K x tile_cols block of B fits the L2 budget, so a thread that
   * goes on to the next row tile of the same column tile (items run rows first) finds all of its
   * B in L2 and only A streams in; row tiles of ROW_TILE_PANELS MR-row panels then cost nothing
   * and balance the load dynamically (a thread that finishes early idles for at most one tile).
   * One column tile per K block instead (the first version) streamed all of W1's 2.4 MB from L3
   * again for every 56-row tile. Cutting N reads A once more per column tile (repacked it, when
   * full panels were still packed), which cost more than it saved when K is long (more than two K
   * blocks, e.g. 2048 x 384 x 1536: 17.5 against 16.4 ms, dev/07, measured with packing): there
   * the budget applies to one K block and row tiles are 4x taller, so B comes from L3 once per 224
   * rows. Row tiles on one thread too: C of a tile stays in cache across the K blocks (the
   * whole-M tile re-read C from L3 once per K block). */
  int threads = attn__team_size();
  double work = (double)M * (double)N * (double)K;
  if (work < 64.0 * 64.0 * 64.0) threads = 1;
  const int64_t n_kb = ceil_div(K, job.kc);
  int64_t most_cols = (int64_t)(PACKED_L2_BYTES / ((size_t)K * sizeof(float))) / nr * nr;
  int64_t tile_panels = ROW_TILE_PANELS;
  if (n_kb > 2 || most_cols < 4 * nr) {
    most_cols = (int64_t)(PACKED_L2_BYTES / ((size_t)job.kc * sizeof(float))) / nr * nr;
    tile_panels = 4 * ROW_TILE_PANELS;
  }
  if (most_cols < nr) most_cols = nr;
  int64_t col_tiles = ceil_div(b->n_pad, most_cols);
  job.tile_cols = round_up_i64(ceil_div(N, col_tiles), nr);
  job.n_col_tiles = ceil_div(N, job.tile_cols);
  /* Row tiles: the panels split evenly into tiles of about tile_panels, except that on several
   * threads the last threads x tile_panels panels go in tiles a quarter as tall. Items are
   * handed out in order, so the last ones are short and a thread that finishes first waits for
   * at most a short tile: with W2's 16-panel tiles (1.6 ms each at 2048 x 384 x 1536) a thread
   * used to wait most of one for the other at every call. */
  /* A short last panel that the small micro-kernel takes together with the one before it (MR + r
   * <= 2 small_mr rows, as two halves: panel_rows) joins that panel's tile. */
  int64_t panels = ceil_div(M, mr);
  if (panels > 1 && small_pair(arch, M % mr)) panels--;
  const int64_t piece = tile_panels / 4 > 1 ? tile_panels / 4 : 1;
  int64_t tail = threads > 1 && piece < tile_panels ? threads * tile_panels : 0;
  if (tail > panels) tail = panels;
  const int64_t body = panels - tail, body_tiles = ceil_div(body, tile_panels);
  const int64_t tail_tiles = ceil_div(tail, piece);
  job.n_row_tiles = body_tiles + tail_tiles;
  size_t starts_bytes = attn__round_up((size_t)(job.n_row_tiles + 1) * sizeof(int64_t), ATTN_ALIGN);
  size_t done_bytes = row_epi && job.n_col_tiles > 1 ? (size_t)job.n_row_tiles * sizeof(atomic_int) : 0;
  int64_t *starts = attn__malloc(starts_bytes + done_bytes, ATTN_ALIGN);
  if (!starts)
    return attn__fail(ATTN_STATUS_OUT_OF_MEMORY, "%s: out of memory for %lld row tiles", fn,
                      (long long)job.n_row_tiles);
  /* body tile t starts at panel t * base + min(t, extra): sizes base or base + 1 */
  const int64_t base = body_tiles ? body / body_tiles : 0, extra = body_tiles ? body % body_tiles : 0;
  for (int64_t t = 0; t <= job.n_row_tiles; t++) {
    const int64_t p = t <= body_tiles ? t * base + (t < extra ? t : extra)
                                      : body + (t - body_tiles) * piece;
    starts[t] = p < panels ? p * mr : M;
  }
  job.row_start = starts;
  if (done_bytes) {
    job.tiles_done = (atomic_int *)((char *)starts + starts_bytes);
    for (int64_t t = 0; t < job.n_row_tiles; t++) atomic_init(&job.tiles_done[t], 0);
  }
  st = run_job(&job, threads);
  attn__free(starts);
  return st;
}

attn_status attn_gemm_packed(attn_trans trans_a, int64_t M, float alpha, const float *A,
                             int64_t lda, const attn_gemm_packed_b *b, float beta, float *C,
                             int64_t ldc, attn_epilogue epilogue, const float *bias) {
  return packed_run("attn_gemm_packed", trans_a, M, alpha, A, lda, b, beta, C, ldc, epilogue, bias,
                    NULL, NULL);
}

attn_status attn__gemm_packed_rows(attn_trans trans_a, int64_t M, float alpha, const float *A,
                                   int64_t lda, const attn_gemm_packed_b *b, float beta, float *C,
                                   int64_t ldc, attn__gemm_row_epilogue epi, void *ctx) {
  return packed_run("attn__gemm_packed_rows", trans_a, M, alpha, A, lda, b, beta, C, ldc,
                    ATTN_EPILOGUE_NONE, NULL, epi, ctx);
}
