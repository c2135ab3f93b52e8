/* Fused additive attention, fast path: the driver (validation, workspace, work split, the
 * reductions of the partials) and the portable kernels. Contract: include/attn/additive.h; the
 * AVX-512 kernels are in src/cpu/avx512/additive_avx512.c, docs/additive.md describes both.
 *
 * The B x Tq x Tk x d tensor u = q1_i + k2_j + b is never stored. For a block of RB = 4 query
 * rows the kernel keeps K2 of the batch transposed, kT[c][j] (d x Tk, padded to 16 keys), and
 * streams it: each loaded kT vector serves the four rows, and tanh(u) lives only in registers.
 * tanh(a + b) = 1 - 2 / (1 + e^{2a} e^{2b}) with the exps once per row / key and c (aux), the
 * rational tanh_r for blocks holding a value beyond +-20.
 *
 *   forward, item = (batch, up to 512 queries):
 *     e[r][j]  = sum_c w_c tanh(qb[r][c] + kT[c][j])       (vectors over j)
 *     softmax of e + mask per row, lse, out_i = sum_j p_j v_j (vectors over Dv)
 *   backward (portable), item = batch (it owns dk2[b], dv[b], dq1[b]):
 *     recompute e, P = exp(e + mask - lse), dS = P (dout.v_j - dout.out_i), dv_j += P dout_i
 *     then, recomputing t = tanh(u):  g = dS (1 - t^2)
 *       dkT[c][j] += sum_r g,  dq1[r][c] = w_c sum_j g,  dw_c += sum_j dS t,  db_c += w_c sum_j g
 *     dk2 = w * dkT^T; the dw/db partials of each batch are summed in batch order.
 *   backward (AVX-512), item = (batch, block of keys): dq1 partials of blocks 1.. added here in
 *     block order, the (dw, db) partials of the items in item order.
 *
 * Every sum has a fixed order (16 lanes over j, then a fixed tree), so results do not depend on
 * the thread count. The portable kernels are written once in plain C and compiled for AVX2 and
 * the baseline with GCC's target attribute; attn_get_isa() picks them or the AVX-512 ones. The
 * library builds with -ffp-contract=off and no reduction is reassociated, so AVX2 and the
 * baseline agree bit for bit; AVX-512 (FMAs, a reciprocal estimate) differs in the last bits. */
#include "additive_internal.h"

/* Defined in src/ref/additive_ref.c. */
attn_status attn__additive_check(const char *fn, bool backward, const attn_tensor *out,
                                 const attn_tensor *lse, const attn_tensor *weights,
                                 const attn_tensor *q1, const attn_tensor *k2, const attn_tensor *v,
                                 const attn_tensor *w, const attn_tensor *b,
                                 const attn_tensor *mask, const attn_tensor *dq1,
                                 const attn_tensor *dk2, const attn_tensor *dv,
                                 const attn_tensor *dw, const attn_tensor *db,
                                 const attn_tensor *dout, int64_t dims[5]);

/* ---- tanh and exp -------------------------------------------------------------------------- */

/* tanh(x) = x P(x^2) / Q(x^2), degrees 13/6, on x clamped to +-7.9988 (where tanh rounds to 1 in
 * f32 up to 3e-7); |error| < 5e-7 everywhere (tested). Branch-free; NaN stays NaN. */
static inline __attribute__((always_inline)) float tanh_r(float x) {
  /* Clamp |x| on the bits: GCC (with the default -ftrapping-math) vectorises integer selects
   * but not float ones. NaN passes through. */
  const float lim = 7.99881172180175781f;
  int32_t xb, lb;
  memcpy(&xb, &x, 4);
  memcpy(&lb, &lim, 4);
  int32_t ab = xb & 0x7fffffff, cb = ab < lb ? ab : lb;
  cb = ab > 0x7f800000 ? ab : cb;
  cb |= xb & (int32_t)0x80000000;
  float xc;
  memcpy(&xc, &cb, 4);
  float x2 = xc * xc;
  float p = -2.76076847742355e-16f;
  p = p * x2 + 2.00018790482477e-13f;
  p = p * x2 + -8.60467152213735e-11f;
  p = p * x2 + 5.12229709037114e-08f;
  p = p * x2 + 1.48572235717979e-05f;
  p = p * x2 + 6.37261928875436e-04f;
  p = p * x2 + 4.89352455891786e-03f;
  p = p * xc;
  float q = 1.19825839466702e-06f;
  q = q * x2 + 1.18534705686654e-04f;
  q = q * x2 + 2.26843463243900e-03f;
  q = q * x2 + 4.89352518554385e-03f;
  return p / q;
}

float attn_tanh_approx(float x) {
  return tanh_r(x);
}

/* ---- the two inner kernels, written once ------------------------------------------------------
 */

/* The prep of the portable forward, expf once per key and c (O(Tk d) per item), into the aux
 * (layout of add_aux_bytes): ek[c][j] = e^{2 kT[c][j]}, flag[t] = 1 when every |k| of the 16 keys
 * of tile t is <= 20, and m2w[c] = -2 w_c (ea, 4 rows of e^{2 qb}, is the score block's). */
static void prep_keys(float *aux, const float *kT, const float *w, int64_t d, int64_t Tkp) {
  aux_view v = aux_split(aux, d, Tkp);
  for (int64_t t = 0; t < Tkp / LANES; t++) v.flag[t] = 1.0f;
  for (int64_t c = 0; c < d; c++) {
    for (int64_t j = 0; j < Tkp; j++) {
      float k = kT[c * Tkp + j];
      if (!(fabsf(k) <= 20.0f)) v.flag[j / LANES] = 0.0f;
      v.ek[c * Tkp + j] = expf(2.0f * k);
    }
    v.m2w[c] = -2.0f * w[c];
  }
}

/* e[r][j] = sum_c w_c tanh(qb[r][c] + kT[c][j]) for r < RB, j < Tkp (a multiple of LANES).
 * With aux (the forward): tanh(a + b) = 1 - 2 / (1 + e^{2a} e^{2b}) where every |a|, |b| of the
 * 4 rows and the tile of 16 keys is <= 20 (one multiply, add and divide per pair and c, the sum
 * folded as sum_c w_c - 2 sum_c w_c / (1 + A B); see src/cpu/avx512/additive_avx512.c), the
 * rational tanh_r elsewhere. Without aux (the backward's recomputation): tanh_r. */
static inline __attribute__((always_inline)) void score_block_impl(
    float *restrict e, const float *restrict qb, const float *restrict kT, const float *restrict w,
    int64_t d, int64_t Tkp, float *aux) {
  float *e0 = e, *e1 = e + Tkp, *e2 = e + 2 * Tkp, *e3 = e + 3 * Tkp;
  bool rows_ok = aux != NULL;
  aux_view v = {NULL, NULL, NULL, NULL};
  float wsum = 0.0f;
  if (aux) {
    v = aux_split(aux, d, Tkp);
    for (int64_t c = 0; c < RB * d; c++) {
      rows_ok &= fabsf(qb[c]) <= 20.0f;
      v.ea[c] = expf(2.0f * qb[c]);
    }
    for (int64_t c = 0; c < d; c++) wsum += w[c];
  }
  for (int64_t j0 = 0; j0 < Tkp; j0 += LANES) {
    if (rows_ok && v.flag[j0 / LANES] != 0.0f) {
      for (int l = 0; l < LANES; l++) e0[j0 + l] = e1[j0 + l] = e2[j0 + l] = e3[j0 + l] = wsum;
      for (int64_t c = 0; c < d; c++) {
        const float mw = v.m2w[c], A0 = v.ea[c], A1 = v.ea[d + c], A2 = v.ea[2 * d + c],
                    A3 = v.ea[3 * d + c];
        const float *restrict bc = v.ek + c * Tkp + j0;
        for (int l = 0; l < LANES; l++) {
          float B = bc[l];
          e0[j0 + l] += mw / (1.0f + A0 * B);
          e1[j0 + l] += mw / (1.0f + A1 * B);
          e2[j0 + l] += mw / (1.0f + A2 * B);
          e3[j0 + l] += mw / (1.0f + A3 * B);
        }
      }
      continue;
    }
    for (int l = 0; l < LANES; l++) e0[j0 + l] = e1[j0 + l] = e2[j0 + l] = e3[j0 + l] = 0.0f;
    for (int64_t c = 0; c < d; c++) {
      const float wc = w[c], q0 = qb[c], q1 = qb[d + c], q2 = qb[2 * d + c], q3 = qb[3 * d + c];
      const float *restrict kc = kT + c * Tkp + j0;
      for (int l = 0; l < LANES; l++) {
        float k = kc[l];
        e0[j0 + l] += wc * tanh_r(q0 + k);
        e1[j0 + l] += wc * tanh_r(q1 + k);
        e2[j0 + l] += wc * tanh_r(q2 + k);
        e3[j0 + l] += wc * tanh_r(q3 + k);
      }
    }
  }
}

/* 16 f32 lanes as a GCC vector: lowered to one AVX-512 register, two AVX2 ones or four SSE ones
 * by the target of the function it is inlined into. Used where the auto-vectoriser gives up (the
 * lane reductions of the gradient). */
typedef float v16f __attribute__((vector_size(64)));
typedef int32_t v16i __attribute__((vector_size(64)));

/* The helpers work in place through pointers: a 64-byte vector passed by value draws GCC's
 * -Wpsabi warning in targets without AVX-512, even when always inlined. */

/* *xp = tanh_r(*xp) on 16 lanes, the same operations in the same order (so the same bits). */
static inline __attribute__((always_inline)) void tanh_v(v16f *xp) {
  v16f x = *xp;
  /* Same clamp as tanh_r: |x| > lim -> lim, sign kept, NaN passes (its compare is false). */
  const v16f zf = {0}, limv = zf + 7.99881172180175781f;
  v16i xb = (v16i)x;
  v16f ax = (v16f)(xb & 0x7fffffff);
  v16i big = ax > limv;
  v16i cb = ((v16i)ax & ~big) | ((v16i)limv & big);
  cb |= xb & (int32_t)0x80000000;
  v16f xc = (v16f)cb, x2 = xc * xc;
  v16f p = x2 * -2.76076847742355e-16f + 2.00018790482477e-13f;
  p = p * x2 + -8.60467152213735e-11f;
  p = p * x2 + 5.12229709037114e-08f;
  p = p * x2 + 1.48572235717979e-05f;
  p = p * x2 + 6.37261928875436e-04f;
  p = p * x2 + 4.89352455891786e-03f;
  p = p * xc;
  v16f q = x2 * 1.19825839466702e-06f + 1.18534705686654e-04f;
  q = q * x2 + 2.26843463243900e-03f;
  q = q * x2 + 4.89352518554385e-03f;
  *xp = p / q;
}

/* g where s != 0, else exactly 0 (so a NaN g of a pair with s = 0 stays out). */
static inline __attribute__((always_inline)) void keep_v(v16f *g, const v16f *s) {
  const v16i zi = {0};
  v16i m = ((v16i)*s & 0x7fffffff) != zi;
  *g = (v16f)((v16i)*g & m);
}

/* Gradients of one block of RB rows given dS[r][j] (0 on blocked pairs, padding keys and padding
 * rows): dkT[c][j] += sum_r g, dq[r][c] = w_c sum_j g, gw[c] += sum_j sum_r dS t,
 * gb[c] += w_c sum_r sum_j g, with g = dS (1 - t^2), t = tanh(qb[r][c] + kT[c][j]). A pair with
 * dS = 0 adds exactly 0 even if its t is NaN. Sums over j run in 16 lanes (lane l takes the keys
 * j = l mod 16 in order), then over the lanes in order. All rows are 64-byte aligned. */
static inline __attribute__((always_inline)) void grad_block_impl(
    float *restrict dkT, float *restrict dq, float *restrict gw, float *restrict gb,
    const float *restrict dS, const float *restrict qb, const float *restrict kT,
    const float *restrict w, int64_t d, int64_t Tkp, float *aux) {
  const float *s0 = dS, *s1 = dS + Tkp, *s2 = dS + 2 * Tkp, *s3 = dS + 3 * Tkp;
  const v16f zero = {0};
  /* The same tanh as score_block_impl computed for these rows (its ea is still in aux). */
  aux_view v = aux_split(aux, d, Tkp);
  bool rows_ok = true;
  for (int64_t c = 0; c < RB * d; c++) rows_ok &= fabsf(qb[c]) <= 20.0f;
  for (int64_t c = 0; c < d; c++) {
    const float q0 = qb[c], q1 = qb[d + c], q2 = qb[2 * d + c], q3 = qb[3 * d + c];
    const float A0 = v.ea[c], A1 = v.ea[d + c], A2 = v.ea[2 * d + c], A3 = v.ea[3 * d + c];
    const float *restrict kc = kT + c * Tkp;
    const float *restrict bc = v.ek + c * Tkp;
    float *restrict dkc = dkT + c * Tkp;
    v16f a0 = zero, a1 = zero, a2 = zero, a3 = zero, aw = zero;
    for (int64_t j = 0; j < Tkp; j += LANES) {
      v16f t0, t1, t2, t3;
      if (rows_ok && v.flag[j / LANES] != 0.0f) {
        v16f B = *(const v16f *)(bc + j);
        t0 = 1.0f - 2.0f / (1.0f + A0 * B);
        t1 = 1.0f - 2.0f / (1.0f + A1 * B);
        t2 = 1.0f - 2.0f / (1.0f + A2 * B);
        t3 = 1.0f - 2.0f / (1.0f + A3 * B);
      } else {
        v16f k = *(const v16f *)(kc + j);
        t0 = q0 + k;
        t1 = q1 + k;
        t2 = q2 + k;
        t3 = q3 + k;
        tanh_v(&t0);
        tanh_v(&t1);
        tanh_v(&t2);
        tanh_v(&t3);
      }
      v16f d0 = *(const v16f *)(s0 + j), d1 = *(const v16f *)(s1 + j);
      v16f d2 = *(const v16f *)(s2 + j), d3 = *(const v16f *)(s3 + j);
      v16f g0 = d0 * (1.0f - t0 * t0), g1 = d1 * (1.0f - t1 * t1);
      v16f g2 = d2 * (1.0f - t2 * t2), g3 = d3 * (1.0f - t3 * t3);
      v16f h0 = d0 * t0, h1 = d1 * t1, h2 = d2 * t2, h3 = d3 * t3;
      keep_v(&g0, &d0);
      keep_v(&g1, &d1);
      keep_v(&g2, &d2);
      keep_v(&g3, &d3);
      keep_v(&h0, &d0);
      keep_v(&h1, &d1);
      keep_v(&h2, &d2);
      keep_v(&h3, &d3);
      *(v16f *)(dkc + j) += (g0 + g1) + (g2 + g3);
      a0 += g0;
      a1 += g1;
      a2 += g2;
      a3 += g3;
      aw += (h0 + h1) + (h2 + h3);
    }
    float r0 = 0.0f, r1 = 0.0f, r2 = 0.0f, r3 = 0.0f, rw = 0.0f;
    for (int l = 0; l < LANES; l++) {
      r0 += a0[l];
      r1 += a1[l];
      r2 += a2[l];
      r3 += a3[l];
      rw += aw[l];
    }
    const float wc = w[c];
    dq[c] = wc * r0;
    dq[d + c] = wc * r1;
    dq[2 * d + c] = wc * r2;
    dq[3 * d + c] = wc * r3;
    gw[c] += rw;
    gb[c] += wc * ((r0 + r1) + (r2 + r3));
  }
}

/* ---- driver ---------------------------------------------------------------------------------- */

static inline __attribute__((always_inline)) void backward_task_impl(void *ctx, int64_t bi,
                                                                     int thread_id) {
  const add_job *jb = (const add_job *)ctx;
  int64_t d = jb->d, Tk = jb->Tk, Tkp = jb->Tkp, Dv = jb->Dv;
  char *base = jb->ws + (size_t)thread_id * jb->per_thread;
  float *kT = (float *)base;
  float *e = (float *)(base + fl(d * Tkp));
  float *qb = (float *)((char *)e + fl(RB * Tkp));
  float *acc = (float *)((char *)qb + fl(RB * d)); /* unused by the backward */
  float *dkT = (float *)((char *)acc + fl(Dv > 0 ? Dv : 1));
  float *dq = (float *)((char *)dkT + fl(d * Tkp));
  float *aux = (float *)((char *)dq + fl(RB * d));
  float *gw = jb->partials + bi * 2 * d, *gb = gw + d;
  pack_kT(jb, bi, kT);
  prep_keys(aux, kT, jb->wv, d, Tkp);
  for (int64_t i = 0; i < d * Tkp; i++) dkT[i] = 0.0f;
  for (int64_t c = 0; c < 2 * d; c++) gw[c] = 0.0f;
  for (int64_t j = 0; j < Tk; j++) {
    float *g = row3(jb->dv, bi, j);
    for (int64_t c = 0; c < Dv; c++) g[c] = 0.0f;
  }
  for (int64_t i0 = 0; i0 < jb->Tq; i0 += RB) {
    load_qb(jb, bi, i0, qb);
    score_block_impl(e, qb, kT, jb->wv, d, Tkp, aux);
    /* e becomes dS, row by row; padding rows and keys get 0. */
    for (int r = 0; r < RB; r++) {
      int64_t i = i0 + r;
      float *s = e + r * Tkp;
      for (int64_t j = Tk; j < Tkp; j++) s[j] = 0.0f;
      float lse =
          i < jb->Tq
              ? ((const float *)jb->lse->data)[bi * jb->lse->stride[0] + i * jb->lse->stride[1]]
              : -INFINITY;
      if (lse == -INFINITY) {
        for (int64_t j = 0; j < Tk; j++) s[j] = 0.0f;
        continue;
      }
      masked_scores(jb, bi, i, s);
      const float *go = row3(jb->dout, bi, i), *o = row3(jb->out, bi, i);
      float D = 0.0f;
      for (int64_t c = 0; c < Dv; c++) D += go[c] * o[c]; /* once per row: left scalar */
      for (int64_t j = 0; j < Tk; j++) {
        float x = s[j] - lse;
        float pj = attn__exp_neg(x < 0.0f ? x : 0.0f);
        if (s[j] == -INFINITY || pj == 0.0f) {
          s[j] = 0.0f;
          continue;
        }
        const float *vj = row3(jb->v, bi, j);
        float *gv = row3(jb->dv, bi, j);
        /* dP = dout_i . v_j in 16 lanes (c = l mod 16), then the lanes in order. */
        float part[LANES] = {0};
        int64_t c = 0;
        for (; c + LANES <= Dv; c += LANES)
          for (int l = 0; l < LANES; l++) part[l] += go[c + l] * vj[c + l];
        for (; c < Dv; c++) part[c % LANES] += go[c] * vj[c];
        float dp = 0.0f;
        for (int l = 0; l < LANES; l++) dp += part[l];
        for (c = 0; c < Dv; c++) gv[c] += pj * go[c];
        s[j] = pj * (dp - D);
      }
    }
    grad_block_impl(dkT, dq, gw, gb, e, qb, kT, jb->wv, d, Tkp, aux);
    for (int r = 0; r < RB && i0 + r < jb->Tq; r++) {
      float *g = row3(jb->dq1, bi, i0 + r);
      for (int64_t c = 0; c < d; c++) g[c] = dq[r * d + c];
    }
  }
  for (int64_t j = 0; j < Tk; j++) {
    float *g = row3(jb->dk2, bi, j);
    for (int64_t c = 0; c < d; c++) g[c] = jb->wv[c] * dkT[c * Tkp + j];
  }
}

/* The task bodies, with the inner kernels inlined, compiled per ISA: baseline and AVX2 here,
 * AVX-512 in src/cpu/avx512/additive_avx512.c. */
static void forward_task_base(void *ctx, int64_t item, int tid) {
  add_forward_task(ctx, item, tid, score_block_impl, prep_keys);
}
static void backward_task_base(void *ctx, int64_t item, int tid) {
  backward_task_impl(ctx, item, tid);
}
#if ATTN_X86 && defined(__GNUC__)
ATTN__TARGET_AVX2 static void forward_task_avx2(void *ctx, int64_t item, int tid) {
  add_forward_task(ctx, item, tid, score_block_impl, prep_keys);
}
ATTN__TARGET_AVX2 static void backward_task_avx2(void *ctx, int64_t item, int tid) {
  backward_task_impl(ctx, item, tid);
}
#endif

/* Whether the backward runs the AVX-512 kernels (items = (batch, key block)). */
static bool use_avx512(void) {
#if ATTN_X86 && defined(__GNUC__)
  return attn_get_isa() == ATTN_ISA_AVX512;
#else
  return false;
#endif
}

static attn__task_fn pick_task(bool backward) {
#if ATTN_X86 && defined(__GNUC__)
  attn_isa isa = attn_get_isa();
  if (isa == ATTN_ISA_AVX512)
    return backward ? attn__additive_backward_task_avx512 : attn__additive_forward_task_avx512;
  if (isa == ATTN_ISA_AVX2) return backward ? backward_task_avx2 : forward_task_avx2;
#endif
  return backward ? backward_task_base : forward_task_base;
}

/* Workspace: per-thread scratch, then (backward) the (dw, db) partials of every item, then
 * (AVX-512 backward with several key blocks) the dq1 partials of key blocks 1.. */
static attn_status ws_size(size_t *size, bool backward, int64_t B, int64_t Tq, int64_t Tk,
                           int64_t d, int64_t Dv, int threads) {
  /* Each factor is bounded by a tensor's element count (< 2^61), but products are not. */
  int64_t Tkp = (Tk + LANES - 1) / LANES * LANES, cells, nkb = 1, KB = Tkp;
  if (!attn__mul_i64(d, Tkp, &cells) || cells > INT64_MAX / 64 || Dv > INT64_MAX / 64 ||
      B > INT64_MAX / 64 || d > INT64_MAX / 64 / (B > 0 ? B : 1))
    return attn__fail(ATTN_STATUS_OVERFLOW, "additive: workspace size overflows");
  size_t per = per_thread_bytes(backward, Tkp, d, Dv), total, shared = 0;
  if (backward && use_avx512()) {
    add_key_blocks(B, Tk, &nkb, &KB);
    per = add_bwd512_bytes(KB, d);
    int64_t part;
    if (nkb > 1 && (!attn__mul_i64(B * d, Tq, &part) || !attn__mul_i64(part, nkb - 1, &part) ||
                    part > INT64_MAX / 64))
      return attn__fail(ATTN_STATUS_OVERFLOW, "additive: workspace size overflows");
    if (nkb > 1) shared = fl(part);
  }
  if (backward) shared += fl(2 * d * B * nkb);
  if (!attn__mul_size(per, (size_t)threads, &total) ||
      __builtin_add_overflow(total, shared, &total))
    return attn__fail(ATTN_STATUS_OVERFLOW, "additive: workspace size overflows");
  *size = total;
  return ATTN_OK;
}

attn_status attn_additive_workspace_size(size_t *size, int backward, const attn_tensor *q1,
                                         const attn_tensor *k2, const attn_tensor *v) {
  static const char fn[] = "attn_additive_workspace_size";
  attn__clear_error();
  if (!size) return attn__fail(ATTN_STATUS_NULL_POINTER, "%s: size is NULL", fn);
  if (!q1 || !k2 || !v)
    return attn__fail(ATTN_STATUS_NULL_POINTER, "%s: %s is NULL", fn,
                      !q1   ? "q1"
                      : !k2 ? "k2"
                            : "v");
  if (q1->ndim != 3 || k2->ndim != 3 || v->ndim != 3)
    return attn__fail(ATTN_STATUS_SHAPE_MISMATCH, "%s: q1, k2 and v must have 3 dims", fn);
  if (q1->shape[0] < 0 || q1->shape[1] < 0 || k2->shape[1] < 1 || q1->shape[2] < 1 ||
      v->shape[2] < 0)
    return attn__fail(ATTN_STATUS_INVALID_ARGUMENT,
                      "%s: need B >= 0, Tq >= 0, Tk >= 1, d >= 1, Dv >= 0 (q1 %lld x %lld x %lld, "
                      "k2 Tk %lld, v Dv %lld)",
                      fn, (long long)q1->shape[0], (long long)q1->shape[1], (long long)q1->shape[2],
                      (long long)k2->shape[1], (long long)v->shape[2]);
  return ws_size(size, backward != 0, q1->shape[0], q1->shape[1], k2->shape[1], q1->shape[2],
                 v->shape[2], attn__pool_size());
}

static attn_status run(const char *fn, add_job *jb, bool backward, void *workspace,
                       size_t workspace_size) {
  if (jb->B == 0 || (jb->Tq == 0 && !backward)) return ATTN_OK;
  int threads = attn__pool_size();
  size_t need;
  ATTN__TRY(ws_size(&need, backward, jb->B, jb->Tq, jb->Tk, jb->d, jb->Dv, threads));
  void *ws, *own;
  ATTN__TRY(attn__workspace_get(fn, need, workspace, workspace_size, &ws, &own));
  jb->ws = (char *)ws;
  jb->Tkp = (jb->Tk + LANES - 1) / LANES * LANES;
  jb->per_thread = per_thread_bytes(backward, jb->Tkp, jb->d, jb->Dv);
  if (!backward) {
    /* Each item packs K2 (and the AVX-512 kernel its exps) for its batch: the larger the items
     * the less that costs, as long as there are >= 4 per thread. Rows are independent, so the
     * split does not change any result. */
    jb->qblock = QB;
    while (jb->qblock < QB_MAX &&
           jb->B * ((jb->Tq + 2 * jb->qblock - 1) / (2 * jb->qblock)) >= 4 * (int64_t)threads)
      jb->qblock *= 2;
    jb->n_qblocks = (jb->Tq + jb->qblock - 1) / jb->qblock;
    attn__parallel_for(jb->B * jb->n_qblocks, pick_task(false), jb);
  } else {
    jb->partials = (float *)(jb->ws + (size_t)threads * jb->per_thread);
    int64_t items = jb->B, d = jb->d;
    if (use_avx512()) {
      add_key_blocks(jb->B, jb->Tk, &jb->nkb, &jb->KB);
      jb->per_thread = add_bwd512_bytes(jb->KB, d);
      jb->partials = (float *)(jb->ws + (size_t)threads * jb->per_thread);
      jb->dq_part = (float *)((char *)jb->partials + fl(2 * d * jb->B * jb->nkb));
      items = jb->B * jb->nkb;
    }
    attn__parallel_for(items, pick_task(true), jb);
    /* dq1 of key block 0 is in place; add the other blocks' partials in block order. */
    for (int64_t kb = 1; kb < jb->nkb; kb++)
      for (int64_t bi = 0; bi < jb->B; bi++)
        for (int64_t i = 0; i < jb->Tq; i++) {
          float *g = row3(jb->dq1, bi, i);
          const float *p = jb->dq_part + (((kb - 1) * jb->B + bi) * jb->Tq + i) * d;
          for (int64_t c = 0; c < d; c++) g[c] += p[c];
        }
    /* dw and db: the per-item partials summed in item order. */
    for (int64_t c = 0; c < d; c++) {
      float sw = 0.0f, sb = 0.0f;
      for (int64_t it = 0; it < items; it++) {
        sw += jb->partials[it * 2 * d + c];
        sb += jb->partials[it * 2 * d + d + c];
      }
      ((float *)jb->dw->data)[c] = sw;
      if (jb->db) ((float *)jb->db->data)[c] = sb;
    }
  }
  attn__free(own);
  return ATTN_OK;
}

static void fill_job(add_job *jb, const int64_t dims[5], const attn_tensor *w,
                     const attn_tensor *b) {
  jb->B = dims[0];
  jb->Tq = dims[1];
  jb->Tk = dims[2];
  jb->d = dims[3];
  jb->Dv = dims[4];
  jb->wv = (const float *)w->data;
  jb->bv = b ? (const float *)b->data : NULL;
}

attn_status attn_additive_forward(const attn_tensor *out, const attn_tensor *lse,
                                  const attn_tensor *weights, const attn_tensor *q1,
                                  const attn_tensor *k2, const attn_tensor *v, const attn_tensor *w,
                                  const attn_tensor *b, const attn_additive_params *params,
                                  void *workspace, size_t workspace_size) {
  static const char fn[] = "attn_additive_forward";
  attn__clear_error();
  attn_additive_params prm = params ? *params : attn_additive_params_default();
  int64_t dims[5];
  ATTN__TRY(attn__additive_check(fn, false, out, lse, weights, q1, k2, v, w, b, prm.mask, NULL,
                                 NULL, NULL, NULL, NULL, NULL, dims));
  add_job jb;
  memset(&jb, 0, sizeof jb);
  fill_job(&jb, dims, w, b);
  jb.out = out;
  jb.lse = lse;
  jb.weights = weights;
  jb.q1 = q1;
  jb.k2 = k2;
  jb.v = v;
  jb.mask = prm.mask;
  return run(fn, &jb, false, workspace, workspace_size);
}

attn_status attn_additive_backward(const attn_tensor *dq1, const attn_tensor *dk2,
                                   const attn_tensor *dv, const attn_tensor *dw,
                                   const attn_tensor *db, const attn_tensor *dout,
                                   const attn_tensor *q1, const attn_tensor *k2,
                                   const attn_tensor *v, const attn_tensor *w, const attn_tensor *b,
                                   const attn_tensor *out, const attn_tensor *lse,
                                   const attn_additive_params *params, void *workspace,
                                   size_t workspace_size) {
  static const char fn[] = "attn_additive_backward";
  attn__clear_error();
  attn_additive_params prm = params ? *params : attn_additive_params_default();
  int64_t dims[5];
  ATTN__TRY(attn__additive_check(fn, true, out, lse, NULL, q1, k2, v, w, b, prm.mask, dq1, dk2, dv,
                                 dw, db, dout, dims));
  add_job jb;
  memset(&jb, 0, sizeof jb);
  fill_job(&jb, dims, w, b);
  jb.out = out;
  jb.lse = lse;
  jb.q1 = q1;
  jb.k2 = k2;
  jb.v = v;
  jb.mask = prm.mask;
  jb.dq1 = dq1;
  jb.dk2 = dk2;
  jb.dv = dv;
  jb.dout = dout;
  jb.dw = dw;
  jb.db = db;
  if (jb.B == 0) {
    for (int64_t c = 0; c < jb.d; c++) {
      ((float *)dw->data)[c] = 0.0f;
      if (db) ((float *)db->data)[c] = 0.0f;
    }
    return ATTN_OK;
  }
  return run(fn, &jb, true, workspace, workspace_size);
}
