/* Score functions: the validated problem shared by src/ref/score_ref.c (validation, reference)
 * and src/cpu/score.c (fast path). Not installed. Contract: include/attn/score.h. */
#ifndef ATTN_SCORE_INTERNAL_H
#define ATTN_SCORE_INTERNAL_H

#include "attn/score.h"
#include "internal.h"

/* The families the kinds fall into. */
typedef enum attn__score_family {
  ATTN__SCORE_BILINEAR, /* DOT, SCALED_DOT, GENERAL, BIASED_GENERAL, ACTIVATED_GENERAL */
  ATTN__SCORE_COS,      /* COSINE */
  ATTN__SCORE_ADD,      /* ADDITIVE, CONCAT, LOCATION, MULTIDIM */
  ATTN__SCORE_LINEAR,   /* LUONG_LOCATION */
} attn__score_family;

/* A validated problem. The additive family is written in one form,
 *   e_f = (sum_c Wout[f][c] act(Q1_c + K2_c + bb_c) + bo_f) * inv_t,
 *   Q1 = Wq q (absent for LOCATION), K2 = Wk k, bb = b + sum_m U_m c_m,
 * where Wq/Wk are W1/W2 (ADDITIVE, MULTIDIM), the two column blocks of W (CONCAT), or W
 * (LOCATION, Wk only), and Wout is Wo or w seen as a (1, d) matrix. The gradient views are
 * resolved the same way (data NULL = not wanted). */
typedef struct attn__score_problem {
  attn_score_params p; /* a copy; act is TANH for CONCAT */
  attn__score_family fam;
  int64_t B, Tq, Tk, dq, dk, d, F;
  int64_t Tq_out;   /* rows of e: Tq, or 1 for LOCATION */
  double inv_t;     /* 1 / T */
  double dot_scale; /* BILINEAR: 1 or 1/sqrt(dk) */
  const attn_tensor *q, *k;
  /* ADD: resolved views; has_wq is false for LOCATION. */
  bool has_wq;
  attn_tensor Wq, Wk, Wout;
  attn_tensor dWq, dWk, dWout; /* data NULL = not wanted */
} attn__score_problem;

/* Validates the operands of `fn` and fills *pr. e: the forward's output (is_backward false) or
 * de (is_backward true); NULL only for the workspace query. dq, dk, g: backward outputs (any may
 * be NULL). */
attn_status attn__score_check(const char *fn, attn__score_problem *pr, bool is_backward,
                              const attn_tensor *e, const attn_tensor *dq, const attn_tensor *dk,
                              const attn_score_grads *g, const attn_tensor *q, const attn_tensor *k,
                              const attn_score_params *params);

#endif
