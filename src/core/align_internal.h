/* Internal interfaces shared by the alignment code: validation and row geometry of
 * src/ref/align_ref.c and src/cpu/align.c (attn/align.h), src/ref/stochastic_ref.c and
 * src/cpu/stochastic.c (attn/stochastic.h). Random streams: stream_internal.h; the monotonic
 * recurrences: monotonic_internal.h. Not installed. */
#ifndef ATTN_ALIGN_INTERNAL_H
#define ATTN_ALIGN_INTERNAL_H

#include "attn/align.h"
#include "attn/stochastic.h"
#include "internal.h"

/* Validation of an alignment call (src/ref/align_ref.c): `in` (f32, 1..4 dims, n >= 1), `dst`
 * of in's shape, an optional mask broadcastable to in, the params (temperature, kind, local
 * window), and for a backward (d_out or out not NULL) d_out and out of in's shape; then the
 * aliasing rules of attn/align.h. Messages name `fn` and the operands as names[0..3] = {dst, in,
 * out, d_out}; names NULL = {"out" or "d_in", "in", "out", "d_out"}; names[0] NULL = no
 * destination (dst is then ignored and may be NULL). *rows is the product of the
 * leading dims, *n the last dim. */
attn_status attn__align_check(const char *fn, const char *const *names, const attn_tensor *dst,
                              const float *d_positions, const attn_tensor *d_out,
                              const attn_tensor *out, const attn_tensor *in,
                              const attn_tensor *mask, const attn_align_params *p, int64_t *rows,
                              int64_t *n);

/* Element offset of row r of t, rows numbered in row-major order over ref's leading dims; dims
 * of size 1 in t are broadcast. *pos (when not NULL) receives the row's index along dim
 * ndim - 2 (0 for 1-d views). */
static inline int64_t attn__align_row_offset(const attn_tensor *t, const attn_tensor *ref,
                                             int64_t r, int64_t *pos) {
  int64_t off = 0;
  int nd = ref->ndim;
  if (pos) *pos = 0;
  for (int d = nd - 2; d >= 0; d--) {
    int64_t idx = r % ref->shape[d];
    r /= ref->shape[d];
    if (d == nd - 2 && pos) *pos = idx;
    if (t->shape[d] != 1) off += idx * t->stride[d];
  }
  return off;
}

/* Byte range of a per-row array of `rows` elements of `size` bytes (empty for NULL). */
static inline attn__range attn__align_rows_range(const void *p, int64_t rows, size_t size) {
  uintptr_t lo = (uintptr_t)p;
  if (!p || rows <= 0) return (attn__range){0, 0};
  return (attn__range){lo, lo + (uintptr_t)rows * size};
}

/* ---- the fast row driver (src/cpu/align.c, used by src/cpu/stochastic.c) -------------------- */

/* Scratch of the fast row kernels: floats_per_elem * n floats per thread, rounded up to 64 bytes
 * (*per_thread), times the pool size (*total). False when either overflows size_t. */
bool attn__align_rows_bytes(int64_t n, size_t floats_per_elem, size_t *per_thread, size_t *total);

/* Runs `task` on `job` over rows of n elements (rows > 0), about 16K elements per item
 * (*rows_per_item rows each), with the scratch of attn__align_rows_bytes (*ws, *per_thread bytes
 * per thread slot) from the caller's workspace or the allocator hook, freed at the end. The
 * outputs are set before the task runs. Errors (OVERFLOW and those of attn__workspace_get) name
 * fn. */
attn_status attn__align_rows_run(const char *fn, int64_t rows, int64_t n, size_t floats_per_elem,
                                 attn__task_fn task, void *job, char **ws, size_t *per_thread,
                                 int64_t *rows_per_item, void *workspace, size_t workspace_size);

/* ---- stochastic alignment (src/ref/stochastic_ref.c) ---------------------------------------- */

/* Validation of the calls of attn/stochastic.h that take tensors: attn__align_check with a
 * softmax at params->temperature (dst may be NULL: only `in` and `mask` are then checked), then
 * the per-row arrays (4 bytes per row each): `outs` (n_outs arrays written) must not overlap each
 * other, dst, in, mask or the `ins` arrays (NULL entries are skipped). Names come in `out_names` /
 * `in_names`. */
attn_status attn__stochastic_check(const char *fn, const char *dst_name, const attn_tensor *dst,
                                   const attn_tensor *d_out, const attn_tensor *out,
                                   const attn_tensor *in, const attn_tensor *mask,
                                   const attn_stochastic_params *p, int n_outs, void *const *outs,
                                   const char *const *out_names, int n_ins, const void *const *ins,
                                   const char *const *in_names, int64_t *rows, int64_t *n);

/* index[r] in [-1, n) for every row, else INVALID_ARGUMENT naming index[r]. */
attn_status attn__hard_index_check(const char *fn, const int32_t *index, int64_t rows, int64_t n);

#endif
