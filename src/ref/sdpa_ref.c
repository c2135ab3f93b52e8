/* Reference exact attention (scaled dot-product attention): the definition of what
 * attn_sdpa_forward and attn_sdpa_backward compute.
 *
 * Plain loops, one query row at a time, everything accumulated in double. Nothing here is tuned:
 * the point is that each line can be checked against MECHANISMS.md §7.1 (the logit pipeline),
 * §3.1 (softmax and its flash-form backward) and §6.4 (GQA) by reading it. The fast kernels are
 * tested against these functions, so every option of attn_sdpa_params is honoured here.
 *
 * Blocking. A pair (i, j) is blocked when j lies outside attn__sdpa_key_range() (causal, window,
 * key length, padding row) or when the bias holds -INFINITY there. A blocked key's K and V are
 * never loaded for that row, so NaN/Inf stored under a mask cannot leak into a result; a row with
 * no open key writes out 0, lse -INFINITY, weights 0 and gets zero gradients. NaN or Inf in an
 * open pair's inputs propagates as IEEE arithmetic dictates.
 */
#include "internal.h"

/* ---- scratch --------------------------------------------------------------------------------- */

/* All scratch of one call lives in a single block carved into 64-byte aligned pieces, so that an
 * allocation failure has exactly one thing to undo and happens before any output is touched. */
typedef struct ref_carve {
  size_t total;
  bool overflow;
} ref_carve;

/* Reserve rows * cols elements of elem bytes; returns the piece's byte offset in the block. */
static size_t ref_reserve(ref_carve *c, size_t rows, size_t cols, size_t elem) {
  size_t n, bytes;
  if (!attn__mul_size(rows, cols, &n) || !attn__mul_size(n, elem, &bytes) ||
      bytes > SIZE_MAX - 2 * ATTN_ALIGN) {
    c->overflow = true;
    return 0;
  }
  bytes = attn__round_up(bytes, ATTN_ALIGN);
  size_t at = c->total;
  if (at > SIZE_MAX - bytes) {
    c->overflow = true;
    return 0;
  }
  c->total = at + bytes;
  return at;
}

/* ---- tensor access --------------------------------------------------------------------------- */

/* Element offset of (a, b, c, d) in a 4-d view whose innermost stride is 1. */
static inline int64_t ref_at4(const attn_tensor *t, int64_t a, int64_t b, int64_t c, int64_t d) {
  return a * t->stride[0] + b * t->stride[1] + c * t->stride[2] + d;
}

/* Element offset of (a, b, c) in a 3-d view (lse, head-mean weights). */
static inline int64_t ref_at3(const attn_tensor *t, int64_t a, int64_t b, int64_t c) {
  return a * t->stride[0] + b * t->stride[1] + c * t->stride[2];
}

/* Bias is broadcast over any dim of size 1; index 0 there so the stride stored for a broadcast
 * dim (0 by convention, but a size-1 dim's stride is arbitrary) never matters. The innermost dim
 * may be broadcast too, so its stride is used rather than assumed to be 1. */
static inline float ref_bias(const attn_tensor *bias, int64_t b, int64_t h, int64_t i, int64_t j) {
  const int64_t idx[4] = {b, h, i, j};
  int64_t o = 0;
  for (int d = 0; d < 4; d++)
    if (bias->shape[d] != 1) o += idx[d] * bias->stride[d];
  return attn__load(bias->data, bias->dtype, o);
}

/* Write x into every element of a 3-d or 4-d view (used for entries no slice covers). */
static void ref_fill(const attn_tensor *t, float x) {
  int64_t shape[4] = {1, 1, 1, 1}, stride[4] = {0, 0, 0, 0};
  const int pad = 4 - (int)t->ndim;
  for (int d = 0; d < (int)t->ndim; d++) {
    shape[pad + d] = t->shape[d];
    stride[pad + d] = t->stride[d];
  }
  for (int64_t a = 0; a < shape[0]; a++)
    for (int64_t b = 0; b < shape[1]; b++)
      for (int64_t c = 0; c < shape[2]; c++)
        for (int64_t d = 0; d < shape[3]; d++)
          attn__store(t->data, t->dtype,
                      a * stride[0] + b * stride[1] + c * stride[2] + d * stride[3], x);
}

/* ---- one query row --------------------------------------------------------------------------- */

/* What the forward and the backward share about row i of query head h in sequence b. */
typedef struct ref_row {
  int64_t lo, hi; /* allowed key interval from attn__sdpa_key_range (empty when lo > hi) */
  int64_t n_open; /* keys of [lo, hi] not blocked by a -inf bias */
  double m;       /* max logit over open keys (NaN logits are skipped, they propagate via sum) */
  double sum;     /* sum over open keys of exp(s - m); set by ref_row_softmax */
} ref_row;

/* Logits of one row, MECHANISMS §7.1 in order. For each key j of [lo, hi]:
 *   open[j] = 0 when the bias blocks it (then K is not read and s[j] = -inf);
 *   s[j]    = the final logit;
 *   t[j]    = tanh(scale * q.k / c) when softcap c > 0 (the backward needs 1 - t^2).
 * q_row holds q_i in double; h is the query head and i the row inside the slice. */
static ref_row ref_row_logits(const attn__sdpa_problem *pr, const attn__slice *sl, int64_t h,
                              int64_t i, const double *q_row, double *s, double *t,
                              unsigned char *open) {
  const attn_sdpa_params *p = pr->p;
  const attn_tensor *k = pr->k;
  const int64_t kvh = h / pr->group;
  const double scale = (double)pr->scale;
  const double cap = (double)p->softcap;
  const double slope = p->alibi_slopes ? (double)p->alibi_slopes[h] : 0.0;
  ref_row r;
  attn__sdpa_key_range(pr, sl, i, &r.lo, &r.hi);
  r.n_open = 0;
  r.m = -INFINITY;
  r.sum = 0.0;
  for (int64_t j = r.lo; j <= r.hi; j++) {
    double bias = 0.0;
    if (p->bias) {
      const int64_t bh = p->bias->shape[1] == 1 ? 0 : h;
      bias = (double)ref_bias(p->bias, sl->tb, bh, sl->q0 + i, sl->k0 + j);
      if (bias == -INFINITY) {
        /* A -inf bias is a mask: the pair is blocked and k_j, v_j are not read for it. */
        open[j] = 0;
        s[j] = -INFINITY;
        t[j] = 0.0;
        continue;
      }
    }
    const int64_t k_row = ref_at4(k, sl->tb, kvh, sl->k0 + j, 0);
    double dot = 0.0;
    for (int64_t d = 0; d < pr->Dk; d++)
      dot += q_row[d] * (double)attn__load(k->data, k->dtype, k_row + d);
    double x = scale * dot;
    t[j] = 0.0;
    if (cap > 0.0) {
      t[j] = tanh(x / cap);
      x = cap * t[j];
    }
    x += bias;
    if (slope != 0.0) x -= slope * fabs((double)(i + sl->off - j));
    open[j] = 1;
    s[j] = x;
    r.n_open++;
    if (x > r.m) r.m = x;
  }
  return r;
}

/* Turn the open logits of a row into unnormalised weights e[j] = exp(s[j] - m) (in place) and
 * set r->sum. Only called for rows with an open key. If every open logit is -inf or NaN (Inf/NaN
 * in unmasked inputs), m stays -inf and exp(-inf - -inf) = NaN spreads, as it should: only
 * masking is promised not to produce NaN. */
static void ref_row_softmax(ref_row *r, double *s, const unsigned char *open) {
  double sum = 0.0;
  for (int64_t j = r->lo; j <= r->hi; j++) {
    if (!open[j]) continue;
    s[j] = exp(s[j] - r->m);
    sum += s[j];
  }
  r->sum = sum;
}

/* Dropout factors Z_ij = keep / (1 - p) of the row's open keys (1 without dropout). b is the
 * sequence index and i, j positions inside the sequence, as attn_dropout_keep defines. */
static void ref_row_dropout(const attn__sdpa_problem *pr, int64_t b, int64_t h, int64_t i,
                            const ref_row *r, const unsigned char *open, double *z) {
  const float p = pr->p->dropout_p;
  const double inv_keep = 1.0 / (1.0 - (double)p);
  for (int64_t j = r->lo; j <= r->hi; j++) {
    if (!open[j]) continue;
    z[j] =
        p > 0.0f ? (attn_dropout_keep(pr->p->dropout_seed, p, b, h, i, j) ? inv_keep : 0.0) : 1.0;
  }
}

static void ref_load_row(const attn_tensor *t, int64_t off, int64_t n, double *dst) {
  for (int64_t d = 0; d < n; d++) dst[d] = (double)attn__load(t->data, t->dtype, off + d);
}

/* ---- forward --------------------------------------------------------------------------------- */

/* q: (B, Hq, Nq, Dk)  k: (B, Hkv, Nk, Dk)  v: (B, Hkv, Nk, Dv)  out: (B, Hq, Nq, Dv)
 * lse: (B, Hq, Nq)  weights: (B, Hq, Nq, Nk) per head or (B, Nq, Nk) head mean. With varlen
 * B = 1 and sequence b occupies a block of rows; see attn__sdpa_slice. */
attn_status attn__sdpa_forward_ref_run(const attn__sdpa_problem *pr) {
  const attn_sdpa_params *p = pr->p;
  const attn_tensor *q = pr->q, *v = pr->v, *out = pr->out, *lse = pr->lse, *w = pr->weights;
  const bool head_mean = w && p->weights_mode == ATTN_WEIGHTS_HEAD_MEAN;
  const size_t nk = (size_t)pr->Nk;

  ref_carve c = {0, false};
  const size_t at_s = ref_reserve(&c, 1, nk, sizeof(double));
  const size_t at_t = ref_reserve(&c, 1, nk, sizeof(double));
  const size_t at_z = ref_reserve(&c, 1, nk, sizeof(double));
  const size_t at_mean = ref_reserve(&c, 1, head_mean ? nk : 0, sizeof(double));
  const size_t at_open = ref_reserve(&c, 1, nk, 1);
  const size_t at_q = ref_reserve(&c, 1, (size_t)pr->Dk, sizeof(double));
  const size_t at_acc = ref_reserve(&c, 1, (size_t)pr->Dv, sizeof(double));
  unsigned char *block = c.overflow ? NULL : attn__malloc(c.total, ATTN_ALIGN);
  if (!block)
    return attn__fail(ATTN_STATUS_OUT_OF_MEMORY,
                      "attn_sdpa_forward_ref: cannot allocate %zu bytes of scratch", c.total);
  double *s = (double *)(block + at_s), *t = (double *)(block + at_t);
  double *z = (double *)(block + at_z), *mean = (double *)(block + at_mean);
  unsigned char *open = block + at_open;
  double *q_row = (double *)(block + at_q), *acc = (double *)(block + at_acc);

  /* Packed sequences only cover the diagonal blocks of the (Nq, Nk) weights; the pairs between
   * different sequences are defined as 0. */
  if (w && pr->varlen) ref_fill(w, 0.0f);

  for (int64_t b = 0; b < pr->n_batch; b++) {
    attn__slice sl;
    attn__sdpa_slice(pr, b, &sl);
    for (int64_t i = 0; i < sl.nq; i++) {
      if (head_mean)
        for (int64_t j = 0; j < sl.nk; j++) mean[j] = 0.0;
      /* Heads in order 0..Hq-1: the head mean is a sum in this fixed order. */
      for (int64_t h = 0; h < pr->Hq; h++) {
        const int64_t kvh = h / pr->group;
        ref_load_row(q, ref_at4(q, sl.tb, h, sl.q0 + i, 0), pr->Dk, q_row);
        ref_row r = ref_row_logits(pr, &sl, h, i, q_row, s, t, open);
        for (int64_t d = 0; d < pr->Dv; d++) acc[d] = 0.0;
        double row_lse = -INFINITY;
        if (r.n_open > 0) {
          ref_row_softmax(&r, s, open);
          ref_row_dropout(pr, b, h, i, &r, open, z);
          row_lse = r.m + log(r.sum);
          for (int64_t j = r.lo; j <= r.hi; j++) {
            if (!open[j]) continue;
            s[j] /= r.sum; /* s now holds a_ij, the pre-dropout weight */
            const double a = s[j] * z[j];
            const int64_t v_row = ref_at4(v, sl.tb, kvh, sl.k0 + j, 0);
            for (int64_t d = 0; d < pr->Dv; d++)
              acc[d] += a * (double)attn__load(v->data, v->dtype, v_row + d);
          }
        }
        const int64_t o_row = ref_at4(out, sl.tb, h, sl.q0 + i, 0);
        for (int64_t d = 0; d < pr->Dv; d++)
          attn__store(out->data, out->dtype, o_row + d, (float)acc[d]);
        if (lse)
          attn__store(lse->data, lse->dtype, ref_at3(lse, sl.tb, h, sl.q0 + i), (float)row_lse);
        if (!w) continue;
        /* Weights of this row: a_ij on open keys, 0 on every blocked pair. */
        for (int64_t j = 0; j < sl.nk; j++) {
          const double a = (r.n_open > 0 && j >= r.lo && j <= r.hi && open[j]) ? s[j] : 0.0;
          if (head_mean)
            mean[j] += a;
          else
            attn__store(w->data, w->dtype, ref_at4(w, sl.tb, h, sl.q0 + i, sl.k0 + j), (float)a);
        }
      }
      if (head_mean)
        for (int64_t j = 0; j < sl.nk; j++)
          attn__store(w->data, w->dtype, ref_at3(w, sl.tb, sl.q0 + i, sl.k0 + j),
                      (float)(mean[j] / (double)pr->Hq));
    }
  }
  attn__free(block);
  return ATTN_OK;
}

/* ---- backward -------------------------------------------------------------------------------- */

/* dout, out: (B, Hq, Nq, Dv)  lse: (B, Hq, Nq)  dq: like q, dk: like k, dv: like v.
 * Overwrites dq, dk, dv. The softmax is recomputed from q and k in double rather than taken from
 * out/lse, so the reference does not inherit the rounding of whichever forward produced them.
 * Flash form (MECHANISMS §3.1) per row i of head h, over its open keys j:
 *   P_ij = softmax,  Z_ij = dropout factor,  dA_ij = Z_ij (dO_i . v_j),  D_i = sum_j P_ij dA_ij
 *   dS_ij = P_ij (dA_ij - D_i) * (1 - t_ij^2 if softcap)
 *   dq_i = scale sum_j dS_ij k_j,  dk_j += scale dS_ij q_i,  dv_j += P_ij Z_ij dO_i
 * Bias and ALiBi are additive constants and drop out of the gradient. dk/dv of a kv head sum
 * over the group's query heads (§6.4). */
attn_status attn__sdpa_backward_ref_run(const attn__sdpa_problem *pr) {
  const attn_tensor *q = pr->q, *k = pr->k, *v = pr->v, *dout = pr->dout;
  const attn_tensor *dq = pr->dq, *dk = pr->dk, *dv = pr->dv;
  const size_t nk = (size_t)pr->Nk;
  const double scale = (double)pr->scale;
  const bool capped = pr->p->softcap > 0.0f;

  ref_carve c = {0, false};
  const size_t at_s = ref_reserve(&c, 1, nk, sizeof(double));
  const size_t at_t = ref_reserve(&c, 1, nk, sizeof(double));
  const size_t at_z = ref_reserve(&c, 1, nk, sizeof(double));
  const size_t at_da = ref_reserve(&c, 1, nk, sizeof(double));
  const size_t at_open = ref_reserve(&c, 1, nk, 1);
  const size_t at_q = ref_reserve(&c, 1, (size_t)pr->Dk, sizeof(double));
  const size_t at_dq = ref_reserve(&c, 1, (size_t)pr->Dk, sizeof(double));
  const size_t at_do = ref_reserve(&c, 1, (size_t)pr->Dv, sizeof(double));
  const size_t at_dk = ref_reserve(&c, nk, (size_t)pr->Dk, sizeof(double));
  const size_t at_dv = ref_reserve(&c, nk, (size_t)pr->Dv, sizeof(double));
  unsigned char *block = c.overflow ? NULL : attn__malloc(c.total, ATTN_ALIGN);
  if (!block)
    return attn__fail(ATTN_STATUS_OUT_OF_MEMORY,
                      "attn_sdpa_backward_ref: cannot allocate %zu bytes of scratch", c.total);
  double *s = (double *)(block + at_s), *t = (double *)(block + at_t);
  double *z = (double *)(block + at_z), *da = (double *)(block + at_da);
  unsigned char *open = block + at_open;
  double *q_row = (double *)(block + at_q), *dq_acc = (double *)(block + at_dq);
  double *do_row = (double *)(block + at_do);
  double *dk_acc = (double *)(block + at_dk), *dv_acc = (double *)(block + at_dv);

  /* With packed sequences a k/v row past the last sequence would otherwise never be written;
   * zeroing first makes "overwrite" hold for every element whatever the slices cover. */
  if (pr->varlen) {
    ref_fill(dq, 0.0f);
    ref_fill(dk, 0.0f);
    ref_fill(dv, 0.0f);
  }

  for (int64_t b = 0; b < pr->n_batch; b++) {
    attn__slice sl;
    attn__sdpa_slice(pr, b, &sl);
    for (int64_t kvh = 0; kvh < pr->Hkv; kvh++) {
      for (int64_t x = 0; x < sl.nk * pr->Dk; x++) dk_acc[x] = 0.0;
      for (int64_t x = 0; x < sl.nk * pr->Dv; x++) dv_acc[x] = 0.0;
      for (int64_t h = kvh * pr->group; h < (kvh + 1) * pr->group; h++) {
        for (int64_t i = 0; i < sl.nq; i++) {
          ref_load_row(q, ref_at4(q, sl.tb, h, sl.q0 + i, 0), pr->Dk, q_row);
          ref_row r = ref_row_logits(pr, &sl, h, i, q_row, s, t, open);
          for (int64_t d = 0; d < pr->Dk; d++) dq_acc[d] = 0.0;
          if (r.n_open > 0) {
            ref_row_softmax(&r, s, open);
            ref_row_dropout(pr, b, h, i, &r, open, z);
            ref_load_row(dout, ref_at4(dout, sl.tb, h, sl.q0 + i, 0), pr->Dv, do_row);
            /* First pass: P (in s), dA and the row's D = sum_j P_ij dA_ij. */
            double d_row = 0.0;
            for (int64_t j = r.lo; j <= r.hi; j++) {
              if (!open[j]) continue;
              s[j] /= r.sum;
              const int64_t v_row = ref_at4(v, sl.tb, kvh, sl.k0 + j, 0);
              double dot = 0.0;
              for (int64_t d = 0; d < pr->Dv; d++)
                dot += do_row[d] * (double)attn__load(v->data, v->dtype, v_row + d);
              da[j] = z[j] * dot;
              d_row += s[j] * da[j];
            }
            /* Second pass: dS through the softcap, then the three products. */
            for (int64_t j = r.lo; j <= r.hi; j++) {
              if (!open[j]) continue;
              double ds = s[j] * (da[j] - d_row);
              if (capped) ds *= 1.0 - t[j] * t[j];
              const int64_t k_row = ref_at4(k, sl.tb, kvh, sl.k0 + j, 0);
              double *dk_j = dk_acc + j * pr->Dk, *dv_j = dv_acc + j * pr->Dv;
              for (int64_t d = 0; d < pr->Dk; d++) {
                dq_acc[d] += ds * (double)attn__load(k->data, k->dtype, k_row + d);
                dk_j[d] += ds * q_row[d];
              }
              const double pz = s[j] * z[j];
              for (int64_t d = 0; d < pr->Dv; d++) dv_j[d] += pz * do_row[d];
            }
          }
          const int64_t dq_row = ref_at4(dq, sl.tb, h, sl.q0 + i, 0);
          for (int64_t d = 0; d < pr->Dk; d++)
            attn__store(dq->data, dq->dtype, dq_row + d, (float)(scale * dq_acc[d]));
        }
      }
      for (int64_t j = 0; j < sl.nk; j++) {
        const int64_t dk_row = ref_at4(dk, sl.tb, kvh, sl.k0 + j, 0);
        const int64_t dv_row = ref_at4(dv, sl.tb, kvh, sl.k0 + j, 0);
        for (int64_t d = 0; d < pr->Dk; d++)
          attn__store(dk->data, dk->dtype, dk_row + d, (float)(scale * dk_acc[j * pr->Dk + d]));
        for (int64_t d = 0; d < pr->Dv; d++)
          attn__store(dv->data, dv->dtype, dv_row + d, (float)dv_acc[j * pr->Dv + d]);
      }
    }
  }
  attn__free(block);
  return ATTN_OK;
}
