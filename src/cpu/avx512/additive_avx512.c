/* Fused additive attention for AVX-512 (F, BW, VL, DQ). Contract: include/attn/additive.h; the
 * portable kernels and the driver are in src/cpu/additive.c.
 *
 * tanh of a sum. u = a + b with a = q1_ic + b_c (one per query and c) and b = k2_jc (one per key
 * and c), so e^{2u} = A B with A = e^{2a}, B = e^{2b} computed once per row / key (O((Tq + Tk) d)
 * exps), and
 *     tanh(u) = 1 - 2 / (1 + A B):
 * per pair and c one FMA (1 + A B), vrcp14ps and one Newton step (2 FMAs) for the reciprocal,
 * and the score's FMA: 5 uops, where the rational below needs 19. The product is exact to a few
 * ulps, and tanh moves by at most half the relative error of A B, so |error| < 5e-7 like
 * attn_tanh_approx (tested), though not relative near 0. It needs A B finite and normal: with
 * |a|, |b| <= 20 it lies in [e^-80, e^80]. A tile of 16 keys or a block of 4 rows holding a larger
 * (or NaN) value takes the fallback: the same rational as attn_tanh_approx (x P(x^2) / Q(x^2),
 * degrees 13/6, x clamped to +-7.9988) evaluated with FMAs, the division replaced by vrcp14ps and
 * one correction of the quotient, t = t0 + r (p - q t0) with t0 = p r. tests/test_additive.c checks
 * both (attn__additive_tanh16_avx512, attn__additive_tanh_sum16_avx512).
 *
 * Forward: for 4 query rows and 16 keys the 4 score vectors stay in registers over the whole
 * loop over c (one B load and 4 broadcasts of A per 4 tanh), e = sum_c w_c - 2 sum_c w_c / (1 +
 * A B); the softmax and a V are the portable code's (src/cpu/additive_internal.h).
 *
 * Backward, item = (batch, block of KB keys), which owns dk2 and dv of its keys and writes dq1
 * (block 0) or a dq1 partial (the driver adds them in block order). For 4 rows and one tile of
 * 16 keys:
 *   pass 1: t = tanh(q1_rc + b_c + k2_jc) for all c (as above), kept in a 4 x 16 x d buffer
 *           (32 KB at d = 128), e_r = sum_c w_c t in registers;
 *   then:   P = exp(e + mask - lse), dP = dout_r . v_j, dS = P (dP - dout_r . out_r),
 *           dv_j += sum_r P dout_r (vectors over Dv; v_j and dv_j touched once per 4 rows);
 *   pass 2: from the stored t (no second tanh), g = dS (1 - t^2): dkT[c][j] += g_r row by row,
 *           aq[c][r] += g (16 lanes; dq1 = w_c times their sum at the end of the rows),
 *           aw[c] += dS t (dw), db from the same row sums as dq1; each a masked FMA.
 * Pairs with dS = 0 (blocked, padding keys and rows) add exactly 0 (masked FMAs), so a NaN k2 of a
 * blocked key stays out. Every sum has a fixed order given by the shape (lanes by key mod 16,
 * tiles in order, lanes summed by _mm512_reduce_add_ps), so results are the same for any thread
 * count. */
#include "../additive_internal.h"

#include <immintrin.h>

/* ---- tanh ------------------------------------------------------------------------------------ */

static inline __mmask16 tail_mask(int64_t n) {
  return n >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << n) - 1u);
}

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

/* e^x on 16 lanes for |x| <= 40: x = n ln2 + r, |r| <= ln2/2, e^r by its degree-7 Taylor
 * polynomial (relative error < 5e-9), 2^n by vscalefps; about 1 ulp. */
static inline __attribute__((always_inline)) __m512 exp16(__m512 x) {
  __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                  _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693145751953125f), x);
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(1.42860682030941723e-6f), r);
  __m512 p = _mm512_fmadd_ps(r, _mm512_set1_ps(1.0f / 5040.0f), _mm512_set1_ps(1.0f / 720.0f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 120.0f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 24.0f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 6.0f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
  return _mm512_scalef_ps(p, n);
}

/* 1 / (1 + A B) to about an ulp: the reciprocal estimate and one Newton step. */
static inline __attribute__((always_inline)) __m512 inv1p(__m512 A, __m512 B) {
  const __m512 one = _mm512_set1_ps(1.0f);
  __m512 den = _mm512_fmadd_ps(A, B, one);
  __m512 r = _mm512_rcp14_ps(den);
  return _mm512_fmadd_ps(r, _mm512_fnmadd_ps(den, r, one), r);
}

/* Where the fast tanh applies: |x| <= 20 (false for NaN). */
static inline __mmask16 small16(__m512 x) {
  return _mm512_cmp_ps_mask(_mm512_abs_ps(x), _mm512_set1_ps(20.0f), _CMP_LE_OQ);
}

/* The fast tanh(a + b) on 16 lanes, for the accuracy test (|a|, |b| <= 20). */
void attn__additive_tanh_sum16_avx512(const float *a, const float *b, float *y);
void attn__additive_tanh_sum16_avx512(const float *a, const float *b, float *y) {
  __m512 two = _mm512_set1_ps(2.0f);
  __m512 A = exp16(_mm512_mul_ps(two, _mm512_loadu_ps(a)));
  __m512 B = exp16(_mm512_mul_ps(two, _mm512_loadu_ps(b)));
  _mm512_storeu_ps(y, _mm512_fnmadd_ps(two, inv1p(A, B), _mm512_set1_ps(1.0f)));
}

/* The aux of a block of keys (layout of add_aux_bytes): ek[t][c][l] = e^{2 kT[c][16 t + l]}, tile
 * by tile so the loop over c streams 64-byte lines (in kT's layout, rows Tkp floats apart, a
 * power of two map to one L1 set and thrash it), flag[t] = 1 when every |k| of tile t is <= 20
 * (else 0), m2w[c] = -2 w_c. */
static void prep_keys(float *aux, const float *kT, const float *w, int64_t d, int64_t Tkp) {
  aux_view v = aux_split(aux, d, Tkp);
  const __m512 two = _mm512_set1_ps(2.0f);
  for (int64_t j = 0; j < Tkp; j += LANES) {
    __mmask16 ok = 0xffff;
    for (int64_t c = 0; c < d; c++) {
      __m512 k = _mm512_load_ps(kT + c * Tkp + j);
      ok &= small16(k);
      _mm512_store_ps(v.ek + j * d + c * LANES, exp16(_mm512_mul_ps(two, k)));
    }
    v.flag[j / LANES] = ok == 0xffff ? 1.0f : 0.0f;
  }
  for (int64_t c = 0; c < d; c++) v.m2w[c] = -2.0f * w[c];
}

/* ea[r][c] = e^{2 qb[r][c]} for the 4 rows; whether every |qb| <= 20. */
static bool prep_rows(float *ea, const float *qb, int64_t d) {
  const __m512 two = _mm512_set1_ps(2.0f);
  __mmask16 ok = 0xffff;
  for (int64_t c = 0; c < RB * d; c += LANES) {
    __mmask16 m = tail_mask(RB * d - c);
    __m512 x = _mm512_maskz_loadu_ps(m, qb + c);
    ok &= small16(x) | (__mmask16)~m;
    _mm512_mask_storeu_ps(ea + c, m, exp16(_mm512_mul_ps(two, x)));
  }
  return ok == 0xffff;
}

/* ---- forward ----------------------------------------------------------------------------------
 */

/* e[r][j] = sum_c w_c tanh(qb[r][c] + kT[c][j]), r < 4, j < Tkp (kT rows 64-byte aligned);
 * aux prepared by prep_keys for this kT. */
static void score_rows(float *restrict e, const float *restrict qb, const float *restrict kT,
                       const float *restrict w, int64_t d, int64_t Tkp, float *aux) {
  aux_view v = aux_split(aux, d, Tkp);
  const float *q0 = qb, *q1 = qb + d, *q2 = qb + 2 * d, *q3 = qb + 3 * d;
  const float *A0 = v.ea, *A1 = v.ea + d, *A2 = v.ea + 2 * d, *A3 = v.ea + 3 * d;
  bool rows_ok = prep_rows(v.ea, qb, d);
  float wsum = 0.0f;
  for (int64_t c = 0; c < d; c++) wsum += w[c];
  for (int64_t j = 0; j < Tkp; j += LANES) {
    __m512 a0, a1, a2, a3;
    if (rows_ok && v.flag[j / LANES] != 0.0f) {
      /* e = sum_c w_c (1 - 2 / (1 + A B)) = sum_c w_c - 2 sum_c w_c / (1 + A B). */
      a0 = a1 = a2 = a3 = _mm512_set1_ps(wsum);
      const float *bc = v.ek + j * d;
      for (int64_t c = 0; c < d; c++, bc += LANES) {
        __m512 B = _mm512_load_ps(bc), mw = _mm512_set1_ps(v.m2w[c]);
        a0 = _mm512_fmadd_ps(mw, inv1p(_mm512_set1_ps(A0[c]), B), a0);
        a1 = _mm512_fmadd_ps(mw, inv1p(_mm512_set1_ps(A1[c]), B), a1);
        a2 = _mm512_fmadd_ps(mw, inv1p(_mm512_set1_ps(A2[c]), B), a2);
        a3 = _mm512_fmadd_ps(mw, inv1p(_mm512_set1_ps(A3[c]), B), a3);
      }
    } else {
      a0 = a1 = a2 = a3 = _mm512_setzero_ps();
      const float *kc = kT + j;
      for (int64_t c = 0; c < d; c++, kc += Tkp) {
        __m512 k = _mm512_load_ps(kc), wc = _mm512_set1_ps(w[c]);
        a0 = _mm512_fmadd_ps(wc, tanh16(_mm512_add_ps(_mm512_set1_ps(q0[c]), k)), a0);
        a1 = _mm512_fmadd_ps(wc, tanh16(_mm512_add_ps(_mm512_set1_ps(q1[c]), k)), a1);
        a2 = _mm512_fmadd_ps(wc, tanh16(_mm512_add_ps(_mm512_set1_ps(q2[c]), k)), a2);
        a3 = _mm512_fmadd_ps(wc, tanh16(_mm512_add_ps(_mm512_set1_ps(q3[c]), k)), a3);
      }
    }
    _mm512_store_ps(e + j, a0);
    _mm512_store_ps(e + Tkp + j, a1);
    _mm512_store_ps(e + 2 * Tkp + j, a2);
    _mm512_store_ps(e + 3 * Tkp + j, a3);
  }
}

void attn__additive_forward_task_avx512(void *ctx, int64_t item, int thread_id) {
  add_forward_task(ctx, item, thread_id, score_rows, prep_keys);
}

/* ---- backward ---------------------------------------------------------------------------------
 */

/* a . b over n floats (16 lanes, then _mm512_reduce_add_ps). */
static inline float dot(const float *a, const float *b, int64_t n) {
  __m512 acc = _mm512_setzero_ps();
  for (int64_t c = 0; c < n; c += 16) {
    __mmask16 m = tail_mask(n - c);
    acc = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, a + c), _mm512_maskz_loadu_ps(m, b + c), acc);
  }
  return _mm512_reduce_add_ps(acc);
}

void attn__additive_backward_task_avx512(void *ctx, int64_t item, int thread_id) {
  const add_job *jb = (const add_job *)ctx;
  const int64_t d = jb->d, Dv = jb->Dv, Tq = jb->Tq, B = jb->B;
  const int64_t bi = item / jb->nkb, kb = item % jb->nkb;
  const int64_t j_lo = kb * jb->KB, j_hi = j_lo + jb->KB < jb->Tk ? j_lo + jb->KB : jb->Tk;
  const int64_t nk = j_hi - j_lo, nkp = (nk + LANES - 1) / LANES * LANES, KB = jb->KB;
  char *base = jb->ws + (size_t)thread_id * jb->per_thread;
  float *kT = (float *)base;                              /* [c][nkp] */
  float *dkT = (float *)(base + fl(d * KB));              /* [tile][c][16] */
  float *tt = (float *)((char *)dkT + fl(d * KB));        /* [c][r][16] */
  float *aq = (float *)((char *)tt + fl(RB * LANES * d)); /* [c][r][16] */
  float *aw = (float *)((char *)aq + fl(RB * LANES * d)); /* [c][16] */
  float *qb = (float *)((char *)aw + fl(LANES * d));      /* [r][c] */
  float *sc = (float *)((char *)qb + fl(RB * d));         /* [r][16] */
  float *aux = (float *)((char *)sc + fl(RB * LANES));    /* prep_keys of the block */
  aux_view av = aux_split(aux, d, nkp);
  float *gw = jb->partials + item * 2 * d, *gb = gw + d;
  const float *w = jb->wv;

  for (int64_t c = 0; c < d; c++) {
    float *dst = kT + c * nkp;
    for (int64_t j = 0; j < nk; j++) dst[j] = row3(jb->k2, bi, j_lo + j)[c];
    for (int64_t j = nk; j < nkp; j++) dst[j] = 0.0f;
  }
  prep_keys(aux, kT, w, d, nkp);
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
      lse[r] =
          i0 + r < Tq
              ? ((const float *)jb->lse->data)[bi * jb->lse->stride[0] + i * jb->lse->stride[1]]
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
    const float *A0 = av.ea, *A1 = av.ea + d, *A2 = av.ea + 2 * d, *A3 = av.ea + 3 * d;
    bool rows_ok = prep_rows(av.ea, qb, d);
    for (int64_t j0 = 0; j0 < nkp; j0 += LANES) {
      /* Pass 1: t for the 4 x 16 tile and every c, scores in registers. */
      __m512 e0 = _mm512_setzero_ps(), e1 = e0, e2 = e0, e3 = e0;
      float *tc = tt;
      if (rows_ok && av.flag[j0 / LANES] != 0.0f) {
        const __m512 one = _mm512_set1_ps(1.0f), two = _mm512_set1_ps(2.0f);
        const float *bc = av.ek + j0 * d;
        for (int64_t c = 0; c < d; c++, bc += LANES, tc += RB * LANES) {
          __m512 Bk = _mm512_load_ps(bc), wc = _mm512_set1_ps(w[c]);
          __m512 t0 = _mm512_fnmadd_ps(two, inv1p(_mm512_set1_ps(A0[c]), Bk), one);
          __m512 t1 = _mm512_fnmadd_ps(two, inv1p(_mm512_set1_ps(A1[c]), Bk), one);
          __m512 t2 = _mm512_fnmadd_ps(two, inv1p(_mm512_set1_ps(A2[c]), Bk), one);
          __m512 t3 = _mm512_fnmadd_ps(two, inv1p(_mm512_set1_ps(A3[c]), Bk), one);
          _mm512_store_ps(tc, t0);
          _mm512_store_ps(tc + 16, t1);
          _mm512_store_ps(tc + 32, t2);
          _mm512_store_ps(tc + 48, t3);
          e0 = _mm512_fmadd_ps(wc, t0, e0);
          e1 = _mm512_fmadd_ps(wc, t1, e1);
          e2 = _mm512_fmadd_ps(wc, t2, e2);
          e3 = _mm512_fmadd_ps(wc, t3, e3);
        }
      } else {
        const float *kc = kT + j0;
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
      }
      _mm512_store_ps(sc, e0);
      _mm512_store_ps(sc + 16, e1);
      _mm512_store_ps(sc + 32, e2);
      _mm512_store_ps(sc + 48, e3);
      /* sc becomes dS: P = exp(s - lse) as in the portable backward, 0 where blocked. */
      float P[RB][LANES];
      for (int r = 0; r < RB; r++) {
        float *s = sc + r * LANES;
        int64_t i = i0 + r < Tq ? i0 + r : Tq - 1;
        bool bc = false;
        const float *m = mask_row(jb->mask, bi, i, &bc);
        for (int l = 0; l < LANES; l++) {
          int64_t j = j_lo + j0 + l;
          float x = s[l];
          P[r][l] = 0.0f;
          if (j >= j_hi || lse[r] == -INFINITY) continue;
          if (m) {
            float mj = m[bc ? 0 : j];
            x = mj == -INFINITY ? -INFINITY : x + mj;
          }
          float z = x - lse[r];
          float pj = attn__exp_neg(z < 0.0f ? z : 0.0f);
          if (x != -INFINITY) P[r][l] = pj;
        }
      }
      /* Per key: dP_r = dout_r . v_j and dv_j += sum_r P_r dout_r, v_j and dv_j read once for
       * the 4 rows; a row with P = 0 neither reads v_j nor adds to dv_j. */
      memset(sc, 0, sizeof(float) * RB * LANES);
      for (int l = 0; l < LANES && j_lo + j0 + l < j_hi; l++) {
        int64_t j = j_lo + j0 + l;
        bool on[RB] = {P[0][l] != 0.0f, P[1][l] != 0.0f, P[2][l] != 0.0f, P[3][l] != 0.0f};
        if (!(on[0] | on[1] | on[2] | on[3])) continue;
        const float *vj = row3(jb->v, bi, j);
        float *gv = row3(jb->dv, bi, j);
        __m512 dp[RB] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(),
                         _mm512_setzero_ps()};
        for (int64_t c = 0; c < Dv; c += LANES) {
          __mmask16 mk = tail_mask(Dv - c);
          __m512 vv = _mm512_maskz_loadu_ps(mk, vj + c), g = _mm512_maskz_loadu_ps(mk, gv + c);
          for (int r = 0; r < RB; r++) {
            if (!on[r]) continue;
            __m512 o = _mm512_maskz_loadu_ps(mk, go[r] + c);
            dp[r] = _mm512_fmadd_ps(o, vv, dp[r]);
            g = _mm512_fmadd_ps(_mm512_set1_ps(P[r][l]), o, g);
          }
          _mm512_mask_storeu_ps(gv + c, mk, g);
        }
        for (int r = 0; r < RB; r++)
          if (on[r]) sc[r * LANES + l] = P[r][l] * (_mm512_reduce_add_ps(dp[r]) - D[r]);
      }
      /* Pass 2: the gradients from the stored t. Lanes with dS = 0 are left out by masked FMAs
       * (they add exactly nothing, even where t is NaN). */
      __m512 s0 = _mm512_load_ps(sc), s1 = _mm512_load_ps(sc + 16);
      __m512 s2 = _mm512_load_ps(sc + 32), s3 = _mm512_load_ps(sc + 48);
      const __m512 zero = _mm512_setzero_ps(), one = _mm512_set1_ps(1.0f);
      __mmask16 m0 = _mm512_cmp_ps_mask(s0, zero, _CMP_NEQ_UQ);
      __mmask16 m1 = _mm512_cmp_ps_mask(s1, zero, _CMP_NEQ_UQ);
      __mmask16 m2 = _mm512_cmp_ps_mask(s2, zero, _CMP_NEQ_UQ);
      __mmask16 m3 = _mm512_cmp_ps_mask(s3, zero, _CMP_NEQ_UQ);
      if (!(m0 | m1 | m2 | m3)) continue;
      float *dk = dkT + j0 * d;
      const float *tr = tt;
      float *ac = aq, *awc = aw;
      for (int64_t c = 0; c < d; c++, tr += RB * LANES, ac += RB * LANES, awc += LANES) {
        __m512 t0 = _mm512_load_ps(tr), t1 = _mm512_load_ps(tr + 16);
        __m512 t2 = _mm512_load_ps(tr + 32), t3 = _mm512_load_ps(tr + 48);
        __m512 u0 = _mm512_fnmadd_ps(t0, t0, one), u1 = _mm512_fnmadd_ps(t1, t1, one);
        __m512 u2 = _mm512_fnmadd_ps(t2, t2, one), u3 = _mm512_fnmadd_ps(t3, t3, one);
        /* g_r = dS_r (1 - t_r^2): dq lanes, dkT (rows in order) and dw lanes (dS t). */
        _mm512_store_ps(ac, _mm512_mask3_fmadd_ps(s0, u0, _mm512_load_ps(ac), m0));
        _mm512_store_ps(ac + 16, _mm512_mask3_fmadd_ps(s1, u1, _mm512_load_ps(ac + 16), m1));
        _mm512_store_ps(ac + 32, _mm512_mask3_fmadd_ps(s2, u2, _mm512_load_ps(ac + 32), m2));
        _mm512_store_ps(ac + 48, _mm512_mask3_fmadd_ps(s3, u3, _mm512_load_ps(ac + 48), m3));
        __m512 k = _mm512_load_ps(dk + c * LANES);
        k = _mm512_mask3_fmadd_ps(s0, u0, k, m0);
        k = _mm512_mask3_fmadd_ps(s1, u1, k, m1);
        k = _mm512_mask3_fmadd_ps(s2, u2, k, m2);
        k = _mm512_mask3_fmadd_ps(s3, u3, k, m3);
        _mm512_store_ps(dk + c * LANES, k);
        __m512 h = _mm512_load_ps(awc);
        h = _mm512_mask3_fmadd_ps(s0, t0, h, m0);
        h = _mm512_mask3_fmadd_ps(s1, t1, h, m1);
        h = _mm512_mask3_fmadd_ps(s2, t2, h, m2);
        h = _mm512_mask3_fmadd_ps(s3, t3, h, m3);
        _mm512_store_ps(awc, h);
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
