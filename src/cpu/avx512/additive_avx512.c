/* Fused additive attention for AVX-512 (F, BW, VL, DQ). Contract: include/attn/additive.h; the
 * portable kernels and the driver are in src/cpu/additive.c.
 *
 * tanh. The same rational as attn_tanh_approx (x P(x^2) / Q(x^2), degrees 13/6, x clamped to
 * +-7.9988), evaluated with FMAs, and the division replaced by vrcp14ps (14 bits) and one
 * correction of the quotient, t = t0 + r (p - q t0) with t0 = p r: 19 uops for add, clamp, tanh
 * and the w_c FMA, against about 30 and a 10-cycle vdivps in the portable code. |error| below
 * 5e-7 like attn_tanh_approx (tests/test_additive.c checks attn__additive_tanh16_avx512).
 *
 * Forward: for 4 query rows and 16 keys the 4 score vectors stay in registers over the whole
 * loop over c (one kT load and 4 broadcasts per 4 tanh); the softmax and a V are the portable
 * code's (src/cpu/additive_internal.h).
 *
 * Backward, item = (batch, block of KB keys), which owns dk2 and dv of its keys and writes dq1
 * (block 0) or a dq1 partial (the driver adds them in block order). For 4 rows and one tile of
 * 16 keys:
 *   pass 1: t = tanh(q1_rc + b_c + k2_jc) for all c, kept in a 4 x 16 x d buffer (32 KB at
 *           d = 128, L1/L2), e_r = sum_c w_c t (registers);
 *   then    P = exp(e + mask - lse), dP = dout_r . v_j, dS = P (dP - dout_r . out_r),
 *           dv_j += P dout_r (vectors over Dv);
 *   pass 2: g = dS (1 - t^2) from the stored t (no second tanh), dkT[c][j] += sum_r g,
 *           aq[c][r] += g (16 lanes; dq1 = w_c times their sum at the end of the rows),
 *           aw[c] += sum_r dS t (dw), and db from the same row sums as dq1.
 * Pairs with dS = 0 (blocked, padding keys and rows) add exactly 0 through zero-masked
 * multiplies, so a NaN k2 of a blocked key stays out. Every sum has a fixed order given by the
 * shape (lanes by key mod 16, tiles in order, lanes summed by _mm512_reduce_add_ps), so results
 * are the same for any thread count. */
#include "../additive_internal.h"

#include <immintrin.h>

/* ---- tanh ------------------------------------------------------------------------------------ */

static inline __attribute__((always_inline)) __m512 tanh16(__m512 x) {
  const __m512 lim = _mm512_set1_ps(7.99881172180175781f);
  const __m512 nlim = _mm512_set1_ps(-7.99881172180175781f);
  /* max/min return their second operand when one is NaN: NaN passes the clamp. */
  x = _mm512_min_ps(lim, _mm512_max_ps(nlim, x));
  __m512 x2 = _mm512_mul_ps(x, x);
  __m512 p = _mm512_fmadd_ps(x2, _mm512_set1_ps(-2.76076847742355e-16f),
                             _mm512_set1_ps(2.00018790482477e-13f));
  p = _mm512_fmadd_ps(p, x2, _mm512_set1_ps(-8.60467152213735e-11f));
  p = _mm512_fmadd_ps(p, x2, _mm512_set1_ps(5.12229709037114e-08f));
  p = _mm512_fmadd_ps(p, x2, _mm512_set1_ps(1.48572235717979e-05f));
  p = _mm512_fmadd_ps(p, x2, _mm512_set1_ps(6.37261928875436e-04f));
  p = _mm512_fmadd_ps(p, x2, _mm512_set1_ps(4.89352455891786e-03f));
  p = _mm512_mul_ps(p, x);
  __m512 q = _mm512_fmadd_ps(x2, _mm512_set1_ps(1.19825839466702e-06f),
                             _mm512_set1_ps(1.18534705686654e-04f));
  q = _mm512_fmadd_ps(q, x2, _mm512_set1_ps(2.26843463243900e-03f));
  q = _mm512_fmadd_ps(q, x2, _mm512_set1_ps(4.89352518554385e-03f));
  /* q >= 4.89e-3, so the reciprocal estimate is finite; one correction of the quotient brings
   * its relative error from 2^-14 to about an ulp. */
  __m512 r = _mm512_rcp14_ps(q);
  __m512 t = _mm512_mul_ps(p, r);
  return _mm512_fmadd_ps(r, _mm512_fnmadd_ps(q, t, p), t);
}

/* The kernel's tanh on 16 values, for the accuracy test. */
void attn__additive_tanh16_avx512(const float *x, float *y);
void attn__additive_tanh16_avx512(const float *x, float *y) {
  _mm512_storeu_ps(y, tanh16(_mm512_loadu_ps(x)));
}

/* ---- forward ---------------------------------------------------------------------------------- */

/* e[r][j] = sum_c w_c tanh(qb[r][c] + kT[c][j]), r < 4, j < Tkp (kT rows 64-byte aligned). */
static void score_rows(float *restrict e, const float *restrict qb, const float *restrict kT,
                       const float *restrict w, int64_t d, int64_t Tkp) {
  const float *q0 = qb, *q1 = qb + d, *q2 = qb + 2 * d, *q3 = qb + 3 * d;
  for (int64_t j = 0; j < Tkp; j += LANES) {
    __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    const float *kc = kT + j;
    for (int64_t c = 0; c < d; c++, kc += Tkp) {
      __m512 k = _mm512_load_ps(kc), wc = _mm512_set1_ps(w[c]);
      a0 = _mm512_fmadd_ps(wc, tanh16(_mm512_add_ps(_mm512_set1_ps(q0[c]), k)), a0);
      a1 = _mm512_fmadd_ps(wc, tanh16(_mm512_add_ps(_mm512_set1_ps(q1[c]), k)), a1);
      a2 = _mm512_fmadd_ps(wc, tanh16(_mm512_add_ps(_mm512_set1_ps(q2[c]), k)), a2);
      a3 = _mm512_fmadd_ps(wc, tanh16(_mm512_add_ps(_mm512_set1_ps(q3[c]), k)), a3);
    }
    _mm512_store_ps(e + j, a0);
    _mm512_store_ps(e + Tkp + j, a1);
    _mm512_store_ps(e + 2 * Tkp + j, a2);
    _mm512_store_ps(e + 3 * Tkp + j, a3);
  }
}

void attn__additive_forward_task_avx512(void *ctx, int64_t item, int thread_id) {
  add_forward_task(ctx, item, thread_id, score_rows);
}

/* ---- backward --------------------------------------------------------------------------------- */

static inline __mmask16 tail_mask(int64_t n) {
  return n >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << n) - 1u);
}

/* a . b over n floats (16 lanes, then _mm512_reduce_add_ps). */
static inline float dot(const float *a, const float *b, int64_t n) {
  __m512 acc = _mm512_setzero_ps();
  for (int64_t c = 0; c < n; c += 16) {
    __mmask16 m = tail_mask(n - c);
    acc = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, a + c), _mm512_maskz_loadu_ps(m, b + c), acc);
  }
  return _mm512_reduce_add_ps(acc);
}

/* y += s x over n floats. */
static inline void axpy(float *y, float s, const float *x, int64_t n) {
  __m512 sv = _mm512_set1_ps(s);
  for (int64_t c = 0; c < n; c += 16) {
    __mmask16 m = tail_mask(n - c);
    __m512 r = _mm512_fmadd_ps(sv, _mm512_maskz_loadu_ps(m, x + c), _mm512_maskz_loadu_ps(m, y + c));
    _mm512_mask_storeu_ps(y + c, m, r);
  }
}

void attn__additive_backward_task_avx512(void *ctx, int64_t item, int thread_id) {
  const add_job *jb = (const add_job *)ctx;
  const int64_t d = jb->d, Dv = jb->Dv, Tq = jb->Tq, B = jb->B;
  const int64_t bi = item / jb->nkb, kb = item % jb->nkb;
  const int64_t j_lo = kb * jb->KB, j_hi = j_lo + jb->KB < jb->Tk ? j_lo + jb->KB : jb->Tk;
  const int64_t nk = j_hi - j_lo, nkp = (nk + LANES - 1) / LANES * LANES, KB = jb->KB;
  char *base = jb->ws + (size_t)thread_id * jb->per_thread;
  float *kT = (float *)base;                                     /* [c][nkp] */
  float *dkT = (float *)(base + fl(d * KB));                     /* [tile][c][16] */
  float *tt = (float *)((char *)dkT + fl(d * KB));               /* [c][r][16] */
  float *aq = (float *)((char *)tt + fl(RB * LANES * d));        /* [c][r][16] */
  float *aw = (float *)((char *)aq + fl(RB * LANES * d));        /* [c][16] */
  float *qb = (float *)((char *)aw + fl(LANES * d));             /* [r][c] */
  float *sc = (float *)((char *)qb + fl(RB * d));                /* [r][16] */
  float *gw = jb->partials + item * 2 * d, *gb = gw + d;
  const float *w = jb->wv;

  for (int64_t c = 0; c < d; c++) {
    float *dst = kT + c * nkp;
    for (int64_t j = 0; j < nk; j++) dst[j] = row3(jb->k2, bi, j_lo + j)[c];
    for (int64_t j = nk; j < nkp; j++) dst[j] = 0.0f;
  }
  memset(dkT, 0, sizeof(float) * (size_t)(nkp * d));
  memset(aw, 0, sizeof(float) * (size_t)(LANES * d));
  for (int64_t c = 0; c < d; c++) gb[c] = 0.0f;
  for (int64_t j = j_lo; j < j_hi; j++) memset(row3(jb->dv, bi, j), 0, sizeof(float) * (size_t)Dv);

  for (int64_t i0 = 0; i0 < Tq; i0 += RB) {
    /* Rows past Tq repeat the last row in qb and get lse = -inf: dS = 0, they add nothing. */
    load_qb(jb, bi, i0, qb);
    float lse[RB], D[RB];
    const float *go[RB];
    bool any = false;
    for (int r = 0; r < RB; r++) {
      int64_t i = i0 + r < Tq ? i0 + r : Tq - 1;
      lse[r] = i0 + r < Tq ? ((const float *)jb->lse->data)[bi * jb->lse->stride[0] +
                                                             i * jb->lse->stride[1]]
                           : -INFINITY;
      go[r] = row3(jb->dout, bi, i);
      D[r] = dot(go[r], row3(jb->out, bi, i), Dv);
      any |= lse[r] != -INFINITY;
    }
    float *dq[RB];
    for (int r = 0; r < RB && i0 + r < Tq; r++)
      dq[r] = kb == 0 ? row3(jb->dq1, bi, i0 + r)
                      : jb->dq_part + (((kb - 1) * B + bi) * Tq + i0 + r) * d;
    if (!any) { /* every row fully masked: zero gradients */
      for (int r = 0; r < RB && i0 + r < Tq; r++) memset(dq[r], 0, sizeof(float) * (size_t)d);
      continue;
    }
    memset(aq, 0, sizeof(float) * (size_t)(RB * LANES * d));
    const float *q0 = qb, *q1 = qb + d, *q2 = qb + 2 * d, *q3 = qb + 3 * d;
    for (int64_t j0 = 0; j0 < nkp; j0 += LANES) {
      /* Pass 1: t for the 4 x 16 tile and every c, scores in registers. */
      __m512 e0 = _mm512_setzero_ps(), e1 = e0, e2 = e0, e3 = e0;
      const float *kc = kT + j0;
      float *tc = tt;
      for (int64_t c = 0; c < d; c++, kc += nkp, tc += RB * LANES) {
        __m512 k = _mm512_load_ps(kc), wc = _mm512_set1_ps(w[c]);
        __m512 t0 = tanh16(_mm512_add_ps(_mm512_set1_ps(q0[c]), k));
        __m512 t1 = tanh16(_mm512_add_ps(_mm512_set1_ps(q1[c]), k));
        __m512 t2 = tanh16(_mm512_add_ps(_mm512_set1_ps(q2[c]), k));
        __m512 t3 = tanh16(_mm512_add_ps(_mm512_set1_ps(q3[c]), k));
        _mm512_store_ps(tc, t0);
        _mm512_store_ps(tc + 16, t1);
        _mm512_store_ps(tc + 32, t2);
        _mm512_store_ps(tc + 48, t3);
        e0 = _mm512_fmadd_ps(wc, t0, e0);
        e1 = _mm512_fmadd_ps(wc, t1, e1);
        e2 = _mm512_fmadd_ps(wc, t2, e2);
        e3 = _mm512_fmadd_ps(wc, t3, e3);
      }
      _mm512_store_ps(sc, e0);
      _mm512_store_ps(sc + 16, e1);
      _mm512_store_ps(sc + 32, e2);
      _mm512_store_ps(sc + 48, e3);
      /* sc becomes dS: P = exp(s - lse) as in the portable backward, 0 where blocked. */
      for (int r = 0; r < RB; r++) {
        float *s = sc + r * LANES;
        int64_t i = i0 + r < Tq ? i0 + r : Tq - 1;
        bool bc = false;
        const float *m = mask_row(jb->mask, bi, i, &bc);
        for (int l = 0; l < LANES; l++) {
          int64_t j = j_lo + j0 + l;
          float x = s[l];
          if (j >= j_hi || lse[r] == -INFINITY) {
            s[l] = 0.0f;
            continue;
          }
          if (m) {
            float mj = m[bc ? 0 : j];
            x = mj == -INFINITY ? -INFINITY : x + mj;
          }
          float z = x - lse[r];
          float pj = attn__exp_neg(z < 0.0f ? z : 0.0f);
          if (x == -INFINITY || pj == 0.0f) {
            s[l] = 0.0f;
            continue;
          }
          const float *vj = row3(jb->v, bi, j);
          axpy(row3(jb->dv, bi, j), pj, go[r], Dv);
          s[l] = pj * (dot(go[r], vj, Dv) - D[r]);
        }
      }
      /* Pass 2: the gradients from the stored t. */
      __m512 s0 = _mm512_load_ps(sc), s1 = _mm512_load_ps(sc + 16);
      __m512 s2 = _mm512_load_ps(sc + 32), s3 = _mm512_load_ps(sc + 48);
      const __m512 zero = _mm512_setzero_ps(), one = _mm512_set1_ps(1.0f);
      __mmask16 m0 = _mm512_cmp_ps_mask(s0, zero, _CMP_NEQ_UQ);
      __mmask16 m1 = _mm512_cmp_ps_mask(s1, zero, _CMP_NEQ_UQ);
      __mmask16 m2 = _mm512_cmp_ps_mask(s2, zero, _CMP_NEQ_UQ);
      __mmask16 m3 = _mm512_cmp_ps_mask(s3, zero, _CMP_NEQ_UQ);
      if (!(m0 | m1 | m2 | m3)) continue;
      float *dk = dkT + j0 * d;
      tc = tt;
      float *ac = aq, *awc = aw;
      for (int64_t c = 0; c < d; c++, tc += RB * LANES, ac += RB * LANES, awc += LANES) {
        __m512 t0 = _mm512_load_ps(tc), t1 = _mm512_load_ps(tc + 16);
        __m512 t2 = _mm512_load_ps(tc + 32), t3 = _mm512_load_ps(tc + 48);
        __m512 g0 = _mm512_maskz_mul_ps(m0, s0, _mm512_fnmadd_ps(t0, t0, one));
        __m512 g1 = _mm512_maskz_mul_ps(m1, s1, _mm512_fnmadd_ps(t1, t1, one));
        __m512 g2 = _mm512_maskz_mul_ps(m2, s2, _mm512_fnmadd_ps(t2, t2, one));
        __m512 g3 = _mm512_maskz_mul_ps(m3, s3, _mm512_fnmadd_ps(t3, t3, one));
        __m512 h0 = _mm512_maskz_mul_ps(m0, s0, t0), h1 = _mm512_maskz_mul_ps(m1, s1, t1);
        __m512 h2 = _mm512_maskz_mul_ps(m2, s2, t2), h3 = _mm512_maskz_mul_ps(m3, s3, t3);
        _mm512_store_ps(ac, _mm512_add_ps(_mm512_load_ps(ac), g0));
        _mm512_store_ps(ac + 16, _mm512_add_ps(_mm512_load_ps(ac + 16), g1));
        _mm512_store_ps(ac + 32, _mm512_add_ps(_mm512_load_ps(ac + 32), g2));
        _mm512_store_ps(ac + 48, _mm512_add_ps(_mm512_load_ps(ac + 48), g3));
        __m512 gs = _mm512_add_ps(_mm512_add_ps(g0, g1), _mm512_add_ps(g2, g3));
        _mm512_store_ps(dk + c * LANES, _mm512_add_ps(_mm512_load_ps(dk + c * LANES), gs));
        __m512 hs = _mm512_add_ps(_mm512_add_ps(h0, h1), _mm512_add_ps(h2, h3));
        _mm512_store_ps(awc, _mm512_add_ps(_mm512_load_ps(awc), hs));
      }
    }
    /* dq1 = w_c times the lane sums; db gets w_c times the four rows' sums. */
    for (int64_t c = 0; c < d; c++) {
      const float *ac = aq + c * RB * LANES;
      float r0 = _mm512_reduce_add_ps(_mm512_load_ps(ac));
      float r1 = _mm512_reduce_add_ps(_mm512_load_ps(ac + 16));
      float r2 = _mm512_reduce_add_ps(_mm512_load_ps(ac + 32));
      float r3 = _mm512_reduce_add_ps(_mm512_load_ps(ac + 48));
      float rr[RB] = {r0, r1, r2, r3};
      for (int r = 0; r < RB && i0 + r < Tq; r++) dq[r][c] = w[c] * rr[r];
      gb[c] += w[c] * ((r0 + r1) + (r2 + r3));
    }
  }
  /* dk2 = w * dkT^T for the block's keys; dw partial = the lane sums of aw. */
  for (int64_t j = 0; j < nk; j++) {
    float *g = row3(jb->dk2, bi, j_lo + j);
    const float *src = dkT + (j / LANES) * LANES * d + j % LANES;
    for (int64_t c = 0; c < d; c++) g[c] = w[c] * src[c * LANES];
  }
  for (int64_t c = 0; c < d; c++) gw[c] = _mm512_reduce_add_ps(_mm512_load_ps(aw + c * LANES));
}
