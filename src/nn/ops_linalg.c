/* matmul and linear on attn_gemm. */
#include "nn_internal.h"

/* ---- matmul ------------------------------------------------------------------------------------ */

/* iarg: 0 trans_a, 1 trans_b, 2 batch, 3 M, 4 N, 5 K, 6 b shared (2-d). */
static attn_status mm_gemm(attn_trans ta, attn_trans tb, int64_t M, int64_t N, int64_t K,
                           const float *A, int64_t lda, const float *B, int64_t ldb, float *C,
                           int64_t ldc) {
  return attn_gemm(ATTN_ROW_MAJOR, ta, tb, M, N, K, 1.0f, A, lda, B, ldb, 1.0f, C, ldc);
}

static attn_status matmul_backward(attn_nn_node *n) {
  attn_var *a = n->in[0], *b = n->in[1];
  const int ta = (int)n->iarg[0], tb = (int)n->iarg[1];
  const int64_t batch = n->iarg[2], M = n->iarg[3], N = n->iarg[4], K = n->iarg[5];
  const bool shared = n->iarg[6] != 0;
  bool oom = false;
  float *da = attn__nn_in_grad(n, 0, &oom), *db = attn__nn_in_grad(n, 1, &oom);
  if (oom) return ATTN_STATUS_OUT_OF_MEMORY;
  const float *dc = n->out->grad;
  const int64_t lda = a->shape[a->ndim - 1], ldb = b->shape[b->ndim - 1];
  /* With a shared b and a untransposed, the batch folds into M (one GEMM per product). */
  const bool fold = shared && !ta;
  const int64_t nb = fold ? 1 : batch, Mb = fold ? batch * M : M;
  for (int64_t i = 0; i < nb; i++) {
    const float *A = a->data + i * Mb * K, *B = b->data + (shared ? 0 : i * K * N);
    const float *dC = dc + i * Mb * N;
    attn_status st = ATTN_OK;
    if (da) {
      float *dA = da + i * Mb * K;
      if (!ta) /* dA (M x K) += dC (M x N) op(B)^T */
        st = mm_gemm(ATTN_NO_TRANS, tb ? ATTN_NO_TRANS : ATTN_TRANS, Mb, K, N, dC, N, B, ldb, dA, K);
      else /* A stored K x M: dA += op(B) dC^T */
        st = mm_gemm(tb ? ATTN_TRANS : ATTN_NO_TRANS, ATTN_TRANS, K, Mb, N, B, ldb, dC, N, dA, Mb);
      if (st != ATTN_OK) return st;
    }
    if (db) {
      float *dB = db + (shared ? 0 : i * K * N);
      if (!tb) /* dB (K x N) += op(A)^T dC */
        st = mm_gemm(ta ? ATTN_NO_TRANS : ATTN_TRANS, ATTN_NO_TRANS, K, N, Mb, A, lda, dC, N, dB, N);
      else /* B stored N x K: dB += dC^T op(A) */
        st = mm_gemm(ATTN_TRANS, ta ? ATTN_TRANS : ATTN_NO_TRANS, N, K, Mb, dC, N, A, lda, dB, K);
      if (st != ATTN_OK) return st;
    }
  }
  return ATTN_OK;
}

attn_var *attn_nn_matmul(attn_nn_ctx *ctx, attn_var *a, attn_var *b, int trans_a, int trans_b) {
  static const char *op = "attn_nn_matmul";
  attn_var *ins[2] = {a, b};
  if (!attn__nn_check(ctx, op, 2, ins, 0)) return NULL;
  char sa[96], sb[96];
  if (a->ndim < 2 || b->ndim < 2)
    return attn__nn_fail(ctx, ATTN_STATUS_SHAPE_MISMATCH, "%s: a %s and b %s need >= 2 dims", op,
                         attn__nn_shape_str(a, sa, sizeof sa), attn__nn_shape_str(b, sb, sizeof sb));
  const int64_t M = trans_a ? a->shape[a->ndim - 1] : a->shape[a->ndim - 2];
  const int64_t Ka = trans_a ? a->shape[a->ndim - 2] : a->shape[a->ndim - 1];
  const int64_t Kb = trans_b ? b->shape[b->ndim - 1] : b->shape[b->ndim - 2];
  const int64_t N = trans_b ? b->shape[b->ndim - 2] : b->shape[b->ndim - 1];
  bool shared = b->ndim == 2 && a->ndim > 2;
  bool batch_ok = shared || a->ndim == b->ndim;
  for (int d = 0; batch_ok && !shared && d < a->ndim - 2; d++)
    if (a->shape[d] != b->shape[d]) batch_ok = false;
  if (Ka != Kb || !batch_ok)
    return attn__nn_fail(ctx, ATTN_STATUS_SHAPE_MISMATCH,
                         "%s: a %s (trans %d) and b %s (trans %d) do not multiply", op,
                         attn__nn_shape_str(a, sa, sizeof sa), trans_a ? 1 : 0,
                         attn__nn_shape_str(b, sb, sizeof sb), trans_b ? 1 : 0);
  int64_t shape[ATTN_NN_MAX_DIMS], batch = 1;
  for (int d = 0; d < a->ndim - 2; d++) {
    shape[d] = a->shape[d];
    batch *= a->shape[d];
  }
  shape[a->ndim - 2] = M;
  shape[a->ndim - 1] = N;
  attn_var *c = attn__nn_new(ctx, op, a->ndim, shape);
  if (!c) return NULL;
  const int64_t K = Ka, lda = a->shape[a->ndim - 1], ldb = b->shape[b->ndim - 1];
  const bool fold = shared && !trans_a;
  const int64_t nb = fold ? 1 : batch, Mb = fold ? batch * M : M;
  for (int64_t i = 0; i < nb; i++) {
    attn_status st = attn_gemm(ATTN_ROW_MAJOR, trans_a ? ATTN_TRANS : ATTN_NO_TRANS,
                               trans_b ? ATTN_TRANS : ATTN_NO_TRANS, Mb, N, K, 1.0f,
                               a->data + i * Mb * K, lda, b->data + (shared ? 0 : i * K * N), ldb,
                               0.0f, c->data + i * Mb * N, N);
    if (st != ATTN_OK) return attn__nn_fail(ctx, st, "%s: %s", op, attn_last_error());
  }
  attn_nn_node *node;
  if (!attn__nn_record(ctx, op, c, matmul_backward, 2, ins, &node)) return NULL;
  if (node) {
    node->iarg[0] = trans_a ? 1 : 0;
    node->iarg[1] = trans_b ? 1 : 0;
    node->iarg[2] = batch;
    node->iarg[3] = M;
    node->iarg[4] = N;
    node->iarg[5] = K;
    node->iarg[6] = shared;
  }
  return c;
}

/* ---- linear ------------------------------------------------------------------------------------ */

/* y (R x out) += b per row, or db += column sums of dy: rows (column blocks for db) split over the
 * pool in chunks fixed by the shape, so the result does not depend on the thread count. */
typedef struct bias_job {
  float *y;
  const float *b;
  int64_t R, out;
} bias_job;

static void bias_add_rows(void *arg, int64_t r0, int64_t r1) {
  const bias_job *j = arg;
  for (int64_t r = r0; r < r1; r++)
    for (int64_t c = 0; c < j->out; c++) j->y[r * j->out + c] += j->b[c];
}

/* Columns per chunk of the bias gradient; each chunk sums its columns over all rows in row order
 * into a local block, then adds the block to db. */
#define BIAS_COLS 64
static void bias_grad_cols(void *arg, int64_t c0, int64_t c1) {
  const bias_job *j = arg; /* y is db, b is dy */
  float acc[BIAS_COLS] = {0};
  const int64_t w = c1 - c0;
  for (int64_t r = 0; r < j->R; r++) {
    const float *d = j->b + r * j->out + c0;
    for (int64_t c = 0; c < w; c++) acc[c] += d[c];
  }
  for (int64_t c = 0; c < w; c++) j->y[c0 + c] += acc[c];
}

static int64_t bias_rows_grain(int64_t out) { return out >= 8192 ? 1 : 8192 / (out ? out : 1); }

/* iarg: 0 rows R, 1 in, 2 out. */
static attn_status linear_backward(attn_nn_node *n) {
  attn_var *x = n->in[0], *w = n->in[1];
  const int64_t R = n->iarg[0], in = n->iarg[1], out = n->iarg[2];
  bool oom = false, dx_fresh;
  float *dx = attn__nn_in_grad_fresh(n, 0, &oom, &dx_fresh), *dw = attn__nn_in_grad(n, 1, &oom);
  float *db = n->n_in > 2 ? attn__nn_in_grad(n, 2, &oom) : NULL;
  if (oom) return ATTN_STATUS_OUT_OF_MEMORY;
  const float *dy = n->out->grad;
  attn_status st;
  if (dx) { /* dx (R x in) += dy (R x out) W (out x in); a new dx is written, not zeroed first */
    st = attn_gemm(ATTN_ROW_MAJOR, ATTN_NO_TRANS, ATTN_NO_TRANS, R, in, out, 1.0f, dy, out, w->data,
                   in, dx_fresh ? 0.0f : 1.0f, dx, in);
    if (st != ATTN_OK) return st;
  }
  if (dw) { /* dW (out x in) += dy^T x */
    st = mm_gemm(ATTN_TRANS, ATTN_NO_TRANS, out, in, R, dy, out, x->data, in, dw, in);
    if (st != ATTN_OK) return st;
  }
  if (db) {
    bias_job j = {db, dy, R, out};
    attn__nn_parallel_range(out, BIAS_COLS, bias_grad_cols, &j);
  }
  return ATTN_OK;
}

attn_var *attn_nn_linear(attn_nn_ctx *ctx, attn_var *x, attn_var *w, attn_var *b) {
  static const char *op = "attn_nn_linear";
  attn_var *ins[3] = {x, w, b};
  if (!attn__nn_check(ctx, op, 3, ins, 4u)) return NULL;
  char sx[96], sw[96];
  if (x->ndim < 1 || w->ndim != 2 || x->shape[x->ndim - 1] != w->shape[1] ||
      (b && (b->ndim != 1 || b->shape[0] != w->shape[0])))
    return attn__nn_fail(ctx, ATTN_STATUS_SHAPE_MISMATCH,
                         "%s: x %s, w %s (want (out, in) with in = x's last dim), bias (out)", op,
                         attn__nn_shape_str(x, sx, sizeof sx), attn__nn_shape_str(w, sw, sizeof sw));
  const int64_t in = w->shape[1], out = w->shape[0];
  int64_t shape[ATTN_NN_MAX_DIMS];
  for (int d = 0; d < x->ndim; d++) shape[d] = x->shape[d];
  shape[x->ndim - 1] = out;
  attn_var *y = attn__nn_new(ctx, op, x->ndim, shape);
  if (!y) return NULL;
  int64_t rows = 1;
  for (int d = 0; d < x->ndim - 1; d++) rows *= x->shape[d];
  attn_status st = attn_gemm(ATTN_ROW_MAJOR, ATTN_NO_TRANS, ATTN_TRANS, rows, out, in, 1.0f,
                             x->data, in, w->data, in, 0.0f, y->data, out);
  if (st != ATTN_OK) return attn__nn_fail(ctx, st, "%s: %s", op, attn_last_error());
  if (b) {
    bias_job j = {y->data, b->data, rows, out};
    attn__nn_parallel_range(rows, bias_rows_grain(out), bias_add_rows, &j);
  }
  attn_nn_node *node;
  if (!attn__nn_record(ctx, op, y, linear_backward, b ? 3 : 2, ins, &node)) return NULL;
  if (node) {
    node->iarg[0] = rows;
    node->iarg[1] = in;
    node->iarg[2] = out;
  }
  return y;
}
