/* Positional encodings (RoPE, sinusoidal, T5 buckets, Shaw relative ids) and attention written
 * with ops, for score terms the fused kernel does not differentiate. */
#include "nn_internal.h"

/* ---- RoPE -------------------------------------------------------------------------------------- */

/* saved: cos/sin table (N x rot/2 pairs, interleaved cos, sin). iarg: 0 N, 1 D, 2 rot, 3 interleaved. */
static void rope_apply(float *dst, const float *src, const float *cs, int64_t rows, int64_t N, int64_t D,
                       int64_t rot, bool interleaved, bool inverse, bool accumulate) {
  const int64_t half = rot / 2;
  for (int64_t r = 0; r < rows; r++) {
    const float *tab = cs + (r % N) * half * 2;
    const float *x = src + r * D;
    float *y = dst + r * D;
    for (int64_t k = 0; k < half; k++) {
      const int64_t i1 = interleaved ? 2 * k : k, i2 = interleaved ? 2 * k + 1 : k + half;
      const float c = tab[2 * k], s = inverse ? -tab[2 * k + 1] : tab[2 * k + 1];
      const float a = x[i1], b = x[i2];
      const float y1 = a * c - b * s, y2 = a * s + b * c;
      if (accumulate) {
        y[i1] += y1;
        y[i2] += y2;
      } else {
        y[i1] = y1;
        y[i2] = y2;
      }
    }
    for (int64_t d = rot; d < D; d++) y[d] = accumulate ? y[d] + x[d] : x[d];
  }
}

static attn_status rope_backward(attn_nn_node *n) {
  bool oom = false;
  float *gx = attn__nn_in_grad(n, 0, &oom);
  if (oom) return ATTN_STATUS_OUT_OF_MEMORY;
  const int64_t N = n->iarg[0], D = n->iarg[1], rot = n->iarg[2];
  const int64_t rows = D ? n->out->numel / D : 0;
  /* A rotation's transpose is the rotation by the opposite angle. */
  rope_apply(gx, n->out->grad, n->saved, rows, N, D, rot, n->iarg[3] != 0, true, true);
  return ATTN_OK;
}

attn_var *attn_nn_rope(attn_nn_ctx *ctx, attn_var *x, const int32_t *positions, float base,
                       int64_t rotary_dims, int interleaved) {
  static const char *op = "attn_nn_rope";
  if (!attn__nn_check(ctx, op, 1, &x, 0)) return NULL;
  if (x->ndim < 2) return attn__nn_fail(ctx, ATTN_STATUS_SHAPE_MISMATCH, "%s: x must be (..., N, D)", op);
  const int64_t N = x->shape[x->ndim - 2], D = x->shape[x->ndim - 1];
  const int64_t rot = rotary_dims ? rotary_dims : D;
  if (rot < 2 || rot > D || rot % 2 || !(base > 0.0f))
    return attn__nn_fail(ctx, ATTN_STATUS_INVALID_ARGUMENT,
                         "%s: rotary_dims %lld must be even and in [2, D = %lld], base > 0", op,
                         (long long)rot, (long long)D);
  attn_var *y = attn__nn_new(ctx, op, x->ndim, x->shape);
  const int64_t half = rot / 2;
  float *cs = y ? attn__nn_alloc(ctx, (size_t)(N * half * 2 + 1) * sizeof(float)) : NULL;
  if (!cs) return y ? attn__nn_fail(ctx, ATTN_STATUS_OUT_OF_MEMORY, "%s: out of memory", op) : NULL;
  for (int64_t p = 0; p < N; p++) {
    const double pos = positions ? (double)positions[p] : (double)p;
    for (int64_t k = 0; k < half; k++) {
      /* angle in double: positions of thousands times frequencies near 1 lose f32 digits */
      const double ang = pos * pow((double)base, -2.0 * (double)k / (double)rot);
      cs[(p * half + k) * 2] = (float)cos(ang);
      cs[(p * half + k) * 2 + 1] = (float)sin(ang);
    }
  }
  const int64_t rows = D ? x->numel / D : 0;
  rope_apply(y->data, x->data, cs, rows, N, D, rot, interleaved != 0, false, false);
  attn_nn_node *node;
  if (!attn__nn_record(ctx, op, y, rope_backward, 1, &x, &node)) return NULL;
  if (node) {
    node->saved = cs;
    node->iarg[0] = N;
    node->iarg[1] = D;
    node->iarg[2] = rot;
    node->iarg[3] = interleaved != 0;
  }
  return y;
}

/* ---- sinusoidal -------------------------------------------------------------------------------- */

attn_var *attn_nn_sinusoidal(attn_nn_ctx *ctx, int64_t n, int64_t dim, float base) {
  static const char *op = "attn_nn_sinusoidal";
  if (!attn__nn_check(ctx, op, 0, NULL, 0)) return NULL;
  if (n < 0 || dim < 1 || !(base > 0.0f))
    return attn__nn_fail(ctx, ATTN_STATUS_INVALID_ARGUMENT, "%s: n >= 0, dim >= 1, base > 0", op);
  int64_t shape[2] = {n, dim};
  attn_var *y = attn__nn_new(ctx, op, 2, shape);
  if (!y) return NULL;
  for (int64_t p = 0; p < n; p++)
    for (int64_t i = 0; i < dim; i++) {
      const double ang = (double)p * pow((double)base, -(double)(i & ~(int64_t)1) / (double)dim);
      y->data[p * dim + i] = (float)((i & 1) ? cos(ang) : sin(ang));
    }
  return y;
}

/* ---- T5 buckets -------------------------------------------------------------------------------- */

int32_t attn_nn_t5_bucket(int64_t rel, int bidirectional, int32_t num_buckets, int32_t max_distance) {
  int32_t bucket = 0;
  int64_t nb = num_buckets, n;
  if (bidirectional) {
    nb /= 2;
    if (rel > 0) bucket += (int32_t)nb;
    n = rel < 0 ? -rel : rel;
  } else {
    n = rel < 0 ? -rel : 0;
  }
  const int64_t max_exact = nb / 2;
  if (n < max_exact) return bucket + (int32_t)n;
  int64_t large = max_exact + (int64_t)(log((double)n / (double)max_exact) /
                                        log((double)max_distance / (double)max_exact) * (double)(nb - max_exact));
  if (large > nb - 1) large = nb - 1;
  return bucket + (int32_t)large;
}

attn_var *attn_nn_t5_bias(attn_nn_ctx *ctx, attn_var *table, int64_t nq, int64_t nk, int bidirectional,
                          int32_t max_distance) {
  static const char *op = "attn_nn_t5_bias";
  if (!attn__nn_check(ctx, op, 1, &table, 0)) return NULL;
  if (table->ndim != 2 || table->shape[0] < 2 || nq < 0 || nk < 0 || max_distance < 1 ||
      table->shape[0] > INT32_MAX)
    return attn__nn_fail(ctx, ATTN_STATUS_INVALID_ARGUMENT,
                         "%s: table must be (num_buckets >= 2, H); nq, nk >= 0; max_distance >= 1", op);
  const int32_t nb = (int32_t)table->shape[0];
  int32_t *ids = attn__nn_alloc(ctx, (size_t)(nq * nk + 1) * sizeof(int32_t));
  if (!ids) return attn__nn_fail(ctx, ATTN_STATUS_OUT_OF_MEMORY, "%s: out of memory", op);
  for (int64_t i = 0; i < nq; i++)
    for (int64_t j = 0; j < nk; j++) ids[i * nk + j] = attn_nn_t5_bucket(j - i, bidirectional, nb, max_distance);
  attn_var *e = attn_nn_embedding(ctx, table, ids, 2, (const int64_t[]){nq, nk}); /* (nq, nk, H) */
  static const int perm[3] = {2, 0, 1};
  return attn_nn_reshape(ctx, attn_nn_permute(ctx, e, perm), 4, (const int64_t[]){1, table->shape[1], nq, nk});
}

/* ---- unfused attention ------------------------------------------------------------------------- */

void attn_nn_shaw_ids(int32_t *ids, int64_t nq, int64_t nk, int64_t max_rel) {
  if (!ids) return;
  for (int64_t i = 0; i < nq; i++)
    for (int64_t j = 0; j < nk; j++) {
      int64_t r = j - i;
      r = r < -max_rel ? -max_rel : r > max_rel ? max_rel : r;
      ids[i * nk + j] = (int32_t)(r + max_rel);
    }
}

/* x (B, H, Nq, C) -> (Nq, B*H, C), the layout for a per-query batched matmul. */
static attn_var *to_query_major(attn_nn_ctx *ctx, attn_var *x) {
  if (!x) return NULL;
  static const int perm[3] = {1, 0, 2};
  const int64_t s[3] = {x->shape[0] * x->shape[1], x->shape[2], x->shape[3]};
  return attn_nn_permute(ctx, attn_nn_reshape(ctx, x, 3, s), perm);
}

static attn_var *from_query_major(attn_nn_ctx *ctx, attn_var *x, int64_t B, int64_t H) {
  if (!x) return NULL;
  static const int perm[3] = {1, 0, 2};
  const int64_t s[4] = {B, H, x->shape[0], x->shape[2]};
  return attn_nn_reshape(ctx, attn_nn_permute(ctx, x, perm), 4, s);
}

attn_var *attn_nn_attention_unfused(attn_nn_ctx *ctx, attn_var *q, attn_var *k, attn_var *v,
                                    attn_var *bias, attn_var *mask, attn_var *rel_k, attn_var *rel_v,
                                    float scale) {
  static const char *op = "attn_nn_attention_unfused";
  attn_var *ins[7] = {q, k, v, bias, mask, rel_k, rel_v};
  if (!attn__nn_check(ctx, op, 7, ins, 0x78u)) return NULL;
  if (q->ndim != 4 || k->ndim != 4 || v->ndim != 4 || k->shape[0] != q->shape[0] || v->shape[0] != q->shape[0] ||
      k->shape[1] != q->shape[1] || v->shape[1] != q->shape[1] || k->shape[3] != q->shape[3] ||
      v->shape[2] != k->shape[2])
    return attn__nn_fail(ctx, ATTN_STATUS_SHAPE_MISMATCH,
                         "%s: need q (B, H, Nq, Dk), k (B, H, Nk, Dk), v (B, H, Nk, Dv)", op);
  const int64_t B = q->shape[0], H = q->shape[1], Nq = q->shape[2], Nk = k->shape[2];
  if ((rel_k && (rel_k->ndim != 3 || rel_k->shape[0] != Nq || rel_k->shape[1] != Nk || rel_k->shape[2] != q->shape[3])) ||
      (rel_v && (rel_v->ndim != 3 || rel_v->shape[0] != Nq || rel_v->shape[1] != Nk || rel_v->shape[2] != v->shape[3])))
    return attn__nn_fail(ctx, ATTN_STATUS_SHAPE_MISMATCH, "%s: rel_k must be (Nq, Nk, Dk), rel_v (Nq, Nk, Dv)", op);
  if (scale == 0.0f) scale = 1.0f / sqrtf((float)q->shape[3]);
  attn_var *s = attn_nn_matmul(ctx, q, k, 0, 1); /* (B, H, Nq, Nk) */
  if (rel_k) /* q_i . rel_k[i, j]: per query, (B*H, Dk) x (Dk, Nk) */
    s = attn_nn_add(ctx, s, from_query_major(ctx, attn_nn_matmul(ctx, to_query_major(ctx, q), rel_k, 0, 1), B, H));
  s = attn_nn_scale(ctx, s, scale, 0.0f);
  if (bias) s = attn_nn_add(ctx, s, bias);
  attn_var *a = attn_nn_softmax(ctx, s, mask);
  attn_var *out = attn_nn_matmul(ctx, a, v, 0, 0);
  if (rel_v) out = attn_nn_add(ctx, out, from_query_major(ctx, attn_nn_matmul(ctx, to_query_major(ctx, a), rel_v, 0, 0), B, H));
  return out;
}
