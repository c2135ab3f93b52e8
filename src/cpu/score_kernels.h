/* Score functions, fast path: what the drivers (src/cpu/score.c) and the additive family's row
 * kernels (src/cpu/score_rows.c) share: the f32 activations and the row kernels' job. Not
 * installed. */
#ifndef ATTN_CPU_SCORE_KERNELS_H
#define ATTN_CPU_SCORE_KERNELS_H

#include "score_internal.h"

#include "scalar_math.h"

#define ATTN_AI static inline __attribute__((always_inline))

enum { ATTN__SCORE_LANES = 16 };

/* ---- activations in f32, branch-free (integer selects vectorise, float ones do not) ---------- */

ATTN_AI float sel_bits(bool c, float a, float b) {
  int32_t ab, bb;
  memcpy(&ab, &a, 4);
  memcpy(&bb, &b, 4);
  /* A mask, not a conditional: GCC would sink a float computation of one arm into a branch,
   * which then cannot be if-converted. */
  int32_t m = -(int32_t)c, r = (ab & m) | (bb & ~m);
  float y;
  memcpy(&y, &r, 4);
  return y;
}

/* tanh: for |x| >= 0.3, (1 - e) / (1 + e) with e = exp(-2|x|) (no cancellation there: e <= 0.55);
 * below, the odd Taylor polynomial to x^9 (truncation < 2e-8 relative). Sign restored on the
 * bits; NaN stays NaN. */
ATTN_AI float tanh_f(float x) {
  int32_t xb;
  memcpy(&xb, &x, 4);
  int32_t ab = xb & 0x7fffffff;
  float ax;
  memcpy(&ax, &ab, 4);
  float e = attn__exp_neg(-2.0f * ax);
  float big = (1.0f - e) / (1.0f + e);
  float x2 = ax * ax;
  float p = 62.0f / 2835.0f;
  p = p * x2 - 17.0f / 315.0f;
  p = p * x2 + 2.0f / 15.0f;
  p = p * x2 - 1.0f / 3.0f;
  p = p * x2 + 1.0f;
  float small = ax * p;
  float t = sel_bits(ab < 0x3e99999a /* 0.3f */, small, big);
  int32_t tb;
  memcpy(&tb, &t, 4);
  tb |= xb & (int32_t)0x80000000;
  memcpy(&t, &tb, 4);
  return t;
}

/* sigmoid(x) = 1 / (1 + e) for x >= 0, e / (1 + e) below, e = exp(-|x|): no overflow. */
ATTN_AI float sigmoid_f(float x) {
  int32_t xb;
  memcpy(&xb, &x, 4);
  int32_t ab = xb & 0x7fffffff;
  float ax;
  memcpy(&ax, &ab, 4);
  float e = attn__exp_neg(-ax);
  float r = 1.0f / (1.0f + e);
  return sel_bits(xb >= 0, r, e * r);
}

ATTN_AI float act_f(const int act, float slope, float x) {
  int32_t xb;
  memcpy(&xb, &x, 4);
  switch (act) {
    case ATTN_SCORE_ACT_TANH:
      return tanh_f(x);
    case ATTN_SCORE_ACT_RELU:
      return sel_bits(xb > 0, x, 0.0f);
    case ATTN_SCORE_ACT_SIGMOID:
      return sigmoid_f(x);
    case ATTN_SCORE_ACT_LEAKY_RELU:
      return sel_bits(xb > 0, x, slope * x);
    default:
      return x;
  }
}
/* d act / dx given x and y = act(x); relu and leaky relu take the left derivative at 0. */
ATTN_AI float act_grad_f(const int act, float slope, float x, float y) {
  int32_t xb;
  memcpy(&xb, &x, 4);
  switch (act) {
    case ATTN_SCORE_ACT_TANH:
      return 1.0f - y * y;
    case ATTN_SCORE_ACT_RELU:
      return sel_bits(xb > 0, 1.0f, 0.0f);
    case ATTN_SCORE_ACT_SIGMOID:
      return y * (1.0f - y);
    case ATTN_SCORE_ACT_LEAKY_RELU:
      return sel_bits(xb > 0, 1.0f, slope);
    default:
      return 1.0f;
  }
}

/* The additive family's row kernels (src/cpu/score_rows.c). Forward: item = b * Tq_out + i writes
 * row i of e[b]. Backward: item = (batch, block of query rows), see add_bwd_impl. */
typedef struct add_job {
  const attn__score_problem *pr;
  const float *Q1, *K2, *bb; /* (B, Tq, d), (B, Tk, d), (B, d); Q1 NULL for LOCATION */
  const float *WoT;          /* forward, F > 1: Wout transposed, (d, F) */
  const float *K2T;          /* forward, F == 1: K2 transposed per batch, (B, d, Tkp) */
  int64_t Tkp;               /* Tk rounded up to 16 (K2T's padding keys are 0) */
  const attn_tensor *e;      /* forward output, or de */
  float inv_t, slope;
  /* backward */
  float *dQ1, *dK2;    /* like Q1 (B, Tq_out, d) and K2 */
  float *dK2p;         /* nqb > 1: per item dK2 partials (B nqb, Tk, d); else NULL */
  int64_t nqb, qblock; /* backward items: nqb blocks of qblock query rows per batch */
  double *dWo, *dbo;   /* per item: dWo (F, d), dbo (F) */
  char *ws;            /* per-thread scratch */
  size_t per_thread;
} add_job;

/* The task function for the ISA in force (attn_get_isa()): forward or backward. */
attn__task_fn attn__score_add_task(bool backward);

#endif
