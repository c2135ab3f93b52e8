/* Score functions, fast path: the additive family's row kernels (additive, concat, location,
 * multidim), written once and compiled for the baseline, AVX2 and AVX-512 with GCC's target
 * attribute, one inlined copy per activation. Drivers, workspace and work split: src/cpu/score.c;
 * contract: include/attn/score.h. */
#include "score_kernels.h"

enum { LANES = ATTN__SCORE_LANES };

/* Forward with F = 1 of item = (batch b, block of RB = 4 query rows), in vectors over the keys
 * of K2 transposed: er_r[j] += w_c act(q_rc + K2T[c][j]) for c in order. No lane reductions,
 * each activation is used where it is made, and the four rows are four independent chains for
 * the long latency of the activation's polynomial. */
ATTN_AI void add_fwd1_impl(const add_job *jb, int64_t item, int tid, const int act) {
  const attn__score_problem *pr = jb->pr;
  const int64_t d = pr->d, Tk = pr->Tk, Tkp = jb->Tkp, Tqo = pr->Tq_out;
  const int64_t nblk = (Tqo + 3) / 4, b = item / nblk, i0 = item % nblk * 4;
  const int64_t nr = Tqo - i0 < 4 ? Tqo - i0 : 4;
  const float slope = jb->slope, it = jb->inv_t;
  const size_t dp = attn__round_up((size_t)d, LANES);
  float *restrict qb = (float *)(jb->ws + (size_t)tid * jb->per_thread);
  float *restrict er = qb + 4 * dp;
  const float *bb = jb->bb + b * d;
  for (int64_t r = 0; r < 4; r++)
    for (int64_t c = 0; c < d; c++)
      qb[r * dp + c] =
          r < nr ? (jb->Q1 ? jb->Q1[(b * pr->Tq + i0 + r) * d + c] : 0.0f) + bb[c] : 0.0f;
  float *restrict e0 = er, *restrict e1 = er + Tkp, *restrict e2 = er + 2 * Tkp,
                  *restrict e3 = er + 3 * Tkp;
  for (int64_t j = 0; j < 4 * Tkp; j++) er[j] = 0.0f;
  const float *W0 = (const float *)pr->Wout.data, *kt = jb->K2T + b * d * Tkp;
  for (int64_t c = 0; c < d; c++) {
    const float wc = W0[c], q0 = qb[c], q1 = qb[dp + c], q2 = qb[2 * dp + c], q3 = qb[3 * dp + c];
    const float *restrict kc = kt + c * Tkp;
    for (int64_t j = 0; j < Tkp; j++) {
      const float k = kc[j];
      e0[j] += wc * act_f(act, slope, q0 + k);
      e1[j] += wc * act_f(act, slope, q1 + k);
      e2[j] += wc * act_f(act, slope, q2 + k);
      e3[j] += wc * act_f(act, slope, q3 + k);
    }
  }
  const attn_tensor *e = jb->e;
  const float *bo =
      pr->p.kind == ATTN_SCORE_MULTIDIM && pr->p.bo ? (const float *)pr->p.bo->data : NULL;
  for (int64_t r = 0; r < nr; r++) {
    float *erow = (float *)e->data + b * e->stride[0] + (i0 + r) * e->stride[1];
    const float *src = er + r * Tkp;
    for (int64_t l = 0; l < Tk; l++) erow[l * e->stride[2]] = (bo ? src[l] + bo[0] : src[l]) * it;
  }
}

/* Forward with F > 1 of row item = b * Tq_out + i. */
ATTN_AI void add_fwd_impl(const add_job *jb, int64_t item, int tid, const int act) {
  const attn__score_problem *pr = jb->pr;
  const int64_t d = pr->d, F = pr->F, Tk = pr->Tk, b = item / pr->Tq_out, i = item % pr->Tq_out;
  const float slope = jb->slope, it = jb->inv_t;
  float *restrict qb = (float *)(jb->ws + (size_t)tid * jb->per_thread);
  float *restrict h = qb + attn__round_up((size_t)d, LANES);
  float *restrict acc = h + attn__round_up((size_t)d, LANES);
  const float *bb = jb->bb + b * d;
  for (int64_t c = 0; c < d; c++)
    qb[c] = (jb->Q1 ? jb->Q1[(b * pr->Tq + i) * d + c] : 0.0f) + bb[c];
  const attn_tensor *e = jb->e;
  float *erow = (float *)e->data + b * e->stride[0] + i * e->stride[1];
  const float *bo =
      pr->p.kind == ATTN_SCORE_MULTIDIM && pr->p.bo ? (const float *)pr->p.bo->data : NULL;
  for (int64_t l = 0; l < Tk; l++) {
    const float *restrict kr = jb->K2 + (b * Tk + l) * d;
    /* The activations of the pair go through a row of d floats (L1): a plain loop over it is
     * what GCC if-converts and vectorises; fused into the lane sums it is not. */
    for (int64_t c = 0; c < d; c++) h[c] = act_f(act, slope, qb[c] + kr[c]);
    float *ef = erow + l * e->stride[2];
    /* F > 1: e = Wout h as axpys over the features (rows of Wout^T), in order of c: vector
     * operations over f, no lane reductions. */
    const float *restrict wt = jb->WoT;
    for (int64_t f = 0; f < F; f++) acc[f] = 0.0f;
    for (int64_t c = 0; c < d; c++) {
      const float hc = h[c];
      for (int64_t f = 0; f < F; f++) acc[f] += hc * wt[c * F + f];
    }
    for (int64_t f = 0; f < F; f++)
      ef[f] = (bo ? acc[f] + bo[f * pr->p.bo->stride[0]] : acc[f]) * it;
  }
}

/* Backward of item = (batch b, block j of query rows): the block's rows of dQ1, and its partials
 * of dK2 (dK2[b] itself when the batch is one block), dWout and dbo, all zeroed by the caller.
 * dbb[b] is the sum of dQ1[b]'s rows, formed afterwards. */
ATTN_AI void add_bwd_impl(const add_job *jb, int64_t item, int tid, const int act) {
  const attn__score_problem *pr = jb->pr;
  const int64_t d = pr->d, F = pr->F, Tk = pr->Tk, Tqo = pr->Tq_out;
  const float slope = jb->slope, it = jb->inv_t;
  const size_t dp = attn__round_up((size_t)d, LANES);
  float *restrict qb = (float *)(jb->ws + (size_t)tid * jb->per_thread);
  const size_t fp = attn__round_up((size_t)F, LANES);
  float *restrict h = qb + dp, *restrict gu = h + dp, *restrict gf = gu + dp;
  float *restrict tWo = gf + fp, *restrict tbo = tWo + (size_t)F * dp;
  const int64_t b = item / jb->nqb, i0 = item % jb->nqb * jb->qblock;
  const int64_t i1 = i0 + jb->qblock < Tqo ? i0 + jb->qblock : Tqo;
  const float *bb = jb->bb + b * d;
  float *dK2 = jb->dK2p ? jb->dK2p + item * Tk * d : jb->dK2 + b * Tk * d;
  double *dWo = jb->dWo + item * F * d, *dbo = jb->dbo + item * F;
  const float *W0 = (const float *)pr->Wout.data;
  const int64_t ldw = pr->Wout.stride[0];
  const attn_tensor *de = jb->e;
  for (int64_t i = i0; i < i1; i++) {
    for (int64_t c = 0; c < d; c++)
      qb[c] = (jb->Q1 ? jb->Q1[(b * pr->Tq + i) * d + c] : 0.0f) + bb[c];
    float *restrict dq1 = jb->dQ1 + (b * Tqo + i) * d;
    const float *drow = (const float *)de->data + b * de->stride[0] + i * de->stride[1];
    /* The row's dWout and dbo terms are summed in f32 over the keys, then in double over rows. */
    for (int64_t f = 0; f < F; f++) {
      tbo[f] = 0.0f;
      for (int64_t c = 0; c < d; c++) tWo[f * dp + c] = 0.0f;
    }
    for (int64_t l = 0; l < Tk; l++) {
      const float *restrict kr = jb->K2 + (b * Tk + l) * d;
      float *restrict dk2 = dK2 + l * d;
      const float *dl = drow + l * de->stride[2];
      for (int64_t f = 0; f < F; f++) gf[f] = dl[f] * it;
      /* gu_c = act'(u_c) sum_f g_f Wout[f][c]; h_c = act(u_c). */
      for (int64_t c = 0; c < d; c++) {
        float u = qb[c] + kr[c];
        h[c] = act_f(act, slope, u);
        gu[c] = gf[0] * W0[c];
      }
      for (int64_t f = 1; f < F; f++) {
        const float g = gf[f], *wr = W0 + f * ldw;
        for (int64_t c = 0; c < d; c++) gu[c] += g * wr[c];
      }
      for (int64_t c = 0; c < d; c++) {
        float u = qb[c] + kr[c];
        gu[c] *= act_grad_f(act, slope, u, h[c]);
        dq1[c] += gu[c];
        dk2[c] += gu[c];
      }
      for (int64_t f = 0; f < F; f++) {
        const float g = gf[f];
        float *dwr = tWo + f * dp;
        for (int64_t c = 0; c < d; c++) dwr[c] += g * h[c];
        tbo[f] += g;
      }
    }
    for (int64_t f = 0; f < F; f++) {
      dbo[f] += (double)tbo[f];
      for (int64_t c = 0; c < d; c++) dWo[f * d + c] += (double)tWo[f * dp + c];
    }
  }
}

#define ACT_SWITCH(call_base)               \
  switch (jb->pr->p.act) {                  \
    case ATTN_SCORE_ACT_TANH:               \
      call_base(ATTN_SCORE_ACT_TANH);       \
      break;                                \
    case ATTN_SCORE_ACT_RELU:               \
      call_base(ATTN_SCORE_ACT_RELU);       \
      break;                                \
    case ATTN_SCORE_ACT_SIGMOID:            \
      call_base(ATTN_SCORE_ACT_SIGMOID);    \
      break;                                \
    case ATTN_SCORE_ACT_LEAKY_RELU:         \
      call_base(ATTN_SCORE_ACT_LEAKY_RELU); \
      break;                                \
    default:                                \
      call_base(ATTN_SCORE_ACT_IDENTITY);   \
      break;                                \
  }

ATTN_AI void add_task_impl(void *ctx, int64_t item, int tid, bool bw) {
  const add_job *jb = (const add_job *)ctx;
#define FWD(a)                         \
  do {                                 \
    if (jb->pr->F == 1)                \
      add_fwd1_impl(jb, item, tid, a); \
    else                               \
      add_fwd_impl(jb, item, tid, a);  \
  } while (0)
#define BWD(a) add_bwd_impl(jb, item, tid, a)
  if (bw) {
    ACT_SWITCH(BWD)
  } else {
    ACT_SWITCH(FWD)
  }
#undef FWD
#undef BWD
}

ATTN__ISA_TASKS(add_fwd, add_task_impl(ctx, item, tid, false))
ATTN__ISA_TASKS(add_bwd, add_task_impl(ctx, item, tid, true))

attn__task_fn attn__score_add_task(bool bw) {
  return bw ? add_bwd_pick() : add_fwd_pick();
}
