/* Score functions, fast path. Contract: include/attn/score.h; semantics: src/ref/score_ref.c.
 *
 *   bilinear (dot, scaled, general, biased, activated): q~ = W q + b by one attn_gemm over all
 *     rows (general kinds), then e_b = alpha q~_b k_b^T per batch by attn_gemm, then the
 *     activation in place. Backward: G = de / T (times act'(z + b) for the activated kind, z
 *     recomputed by attn_gemm), dq~ = G k, dk = G^T q~, dq = dq~ W, dW = sum_b dq~_b^T q_b.
 *   cosine: the dot products by attn_gemm, then divided by max(|q| |k|, 1e-8) T.
 *   Luong location: e = (q W^T + b) / T by attn_gemm.
 *   additive family (additive, concat, location, multidim): Q1 = q Wq^T and K2 = k Wk^T by
 *     attn_gemm, bb = b + sum_m U_m c_m per batch, then a row kernel computes
 *     e_il = sum_c Wout[f][c] act(Q1_ic + bb_c + K2_lc): for F = 1 four query rows per item in
 *     vectors over the keys of K2 transposed, for F > 1 one row per item through a row of d
 *     activations (no B x Tq x Tk x d tensor). The
 * backward's items are (batch, block of query rows), about 16 in all when B is small (one block per
 * batch when B >= 16): each recomputes u = Q1 + bb + K2 pair by pair and accumulates its rows of
 * dQ1 and its partials of dK2, dWout and dbo (rows summed in double), which are then summed in item
 * order; dbb is the row sums of dQ1; attn_gemm chains dQ1, dK2 back to q, k, Wq, Wk.
 *
 * The row kernels live in src/cpu/score_rows.c (compiled per ISA), the f32 activations in
 * src/cpu/score_kernels.h. Sums run in a fixed order and the work split depends on the shapes
 * only, so results are the same bits for any thread count. */
#include "score_kernels.h"

enum { LANES = ATTN__SCORE_LANES };

/* ---- workspace ------------------------------------------------------------------------------- */

/* Offsets (in floats, each rounded to 16) of the buffers of one call. */
typedef struct ws_layout {
  size_t qt, G, dqt, acc, nq, nk, cq, ck, Q1, K2, K2T, bb, WoT, dQ1, dK2, dK2p, dbb, dWo, dbo, thr;
  size_t per_thread; /* bytes */
  size_t total;      /* floats */
  bool overflow;
} ws_layout;

static size_t lay(ws_layout *L, int64_t a, int64_t b, int64_t c) {
  int64_t n;
  if (!attn__mul_i64(a, b, &n) || !attn__mul_i64(n, c, &n) || (uint64_t)n > SIZE_MAX / 64 ||
      L->total > SIZE_MAX / 64 - (size_t)n - LANES) {
    L->overflow = true;
    return 0;
  }
  size_t at = L->total;
  L->total += attn__round_up((size_t)n, LANES);
  return at;
}

/* The backward's work split of the additive family: with few batches, each batch's query rows are
 * cut into blocks (about 16 items in all) with their own dK2 partials, so a small batch still
 * spreads over the threads. It depends on B and Tq only, never on the thread count. */
static void qsplit(int64_t B, int64_t Tqo, int64_t *nqb, int64_t *qblock) {
  int64_t n = B < 1 || B >= 16 || Tqo <= 1 ? 1 : (16 + B - 1) / B;
  if (n > Tqo) n = Tqo > 0 ? Tqo : 1;
  int64_t blk = Tqo > 0 ? (Tqo + n - 1) / n : 1;
  *qblock = blk;
  *nqb = Tqo > 0 ? (Tqo + blk - 1) / blk : 1;
}

static void layout(const attn__score_problem *pr, bool bw, int threads, ws_layout *L) {
  memset(L, 0, sizeof *L);
  const int64_t B = pr->B, Tq = pr->Tq, Tk = pr->Tk, d = pr->d, F = pr->F;
  const attn_score_kind kind = pr->p.kind;
  const bool gen = kind == ATTN_SCORE_GENERAL || kind == ATTN_SCORE_BIASED_GENERAL ||
                   kind == ATTN_SCORE_ACTIVATED_GENERAL;
  switch (pr->fam) {
    case ATTN__SCORE_BILINEAR:
      if (gen) L->qt = lay(L, B, Tq, pr->dk);
      if (bw) {
        L->G = lay(L, Tq, Tk, 1);
        if (gen) L->dqt = lay(L, Tq, pr->dk, 1);
        L->acc = lay(L, pr->dk, 2, 1); /* doubles */
      }
      break;
    case ATTN__SCORE_COS:
      L->nq = lay(L, B, Tq, 1);
      L->nk = lay(L, B, Tk, 1);
      if (bw) {
        L->G = lay(L, Tq, Tk, 1);
        L->cq = lay(L, Tq, 1, 1);
        L->ck = lay(L, Tk, 1, 1);
      }
      break;
    case ATTN__SCORE_LINEAR:
      if (bw) L->acc = lay(L, Tk, 2, 1); /* doubles */
      break;
    case ATTN__SCORE_ADD: {
      if (pr->has_wq) L->Q1 = lay(L, B, Tq, d);
      L->K2 = lay(L, B, Tk, d);
      L->bb = lay(L, B, d, 1);
      if (bw) {
        L->dQ1 = lay(L, B, pr->Tq_out, d);
        L->dK2 = lay(L, B, Tk, d);
        L->dbb = lay(L, B, d, 2); /* doubles */
        int64_t nqb, qblock;
        qsplit(B, pr->Tq_out, &nqb, &qblock);
        if (nqb > 1) L->dK2p = lay(L, B * nqb, Tk, d);
        L->dWo = lay(L, B * nqb, F, 2 * d); /* doubles */
        L->dbo = lay(L, B * nqb, F, 2);
      }
      /* Per thread: qb, h and a row of F scores (forward); qb, h, gu, gf and the row's dWout, dbo
       * (backward). */
      int64_t dp = (int64_t)attn__round_up((size_t)d, LANES),
              fp = (int64_t)attn__round_up((size_t)F, LANES);
      int64_t per;
      if (!attn__mul_i64(F, dp, &per) || !attn__add_i64(per, 3 * dp + 2 * fp, &per)) {
        L->overflow = true;
        return;
      }
      const int64_t Tkp = (int64_t)attn__round_up((size_t)Tk, LANES);
      if (!bw) per = F == 1 ? 4 * (dp + Tkp) : 2 * dp + fp;
      if (!bw && F > 1) L->WoT = lay(L, d, F, 1);
      if (!bw && F == 1) L->K2T = lay(L, B, d, Tkp);
      L->per_thread = (size_t)per * sizeof(float);
      L->thr = lay(L, threads, per, 1);
      break;
    }
  }
}

static attn_status get_ws(const char *fn, const ws_layout *L, void *workspace,
                          size_t workspace_size, float **base, void **own) {
  *own = NULL;
  if (L->overflow || L->total > SIZE_MAX / sizeof(float))
    return attn__fail(ATTN_STATUS_OVERFLOW, "%s: workspace size overflows", fn);
  void *ws;
  attn_status st =
      attn__workspace_get(fn, L->total * sizeof(float), workspace, workspace_size, &ws, own);
  *base = (float *)ws;
  return st;
}

attn_status attn_score_workspace_size(size_t *size, int backward, const attn_tensor *q,
                                      const attn_tensor *k, const attn_score_params *params) {
  static const char fn[] = "attn_score_workspace_size";
  attn__clear_error();
  if (!size) return attn__fail(ATTN_STATUS_NULL_POINTER, "%s: size is NULL", fn);
  attn__score_problem pr;
  ATTN__TRY(attn__score_check(fn, &pr, false, NULL, NULL, NULL, NULL, q, k, params));
  ws_layout L;
  layout(&pr, backward != 0, attn__pool_size(), &L);
  if (L.overflow || L.total > SIZE_MAX / sizeof(float))
    return attn__fail(ATTN_STATUS_OVERFLOW, "%s: workspace size overflows", fn);
  *size = L.total * sizeof(float);
  return ATTN_OK;
}

/* ---- helpers --------------------------------------------------------------------------------- */

/* Batch b of a 3-d view as a row-major matrix pointer (its row stride is stride[1]). */
static inline float *bat(const attn_tensor *t, int64_t b) {
  return (float *)t->data + b * t->stride[0];
}

/* The Euclidean norm of each of the T rows (D wide) of every batch of t, accumulated in double:
 * norms[b T + i] (the cosine score's denominators). */
static void row_norms(float *norms, const attn_tensor *t, int64_t B, int64_t T, int64_t D) {
  for (int64_t b = 0; b < B; b++)
    for (int64_t i = 0; i < T; i++) {
      const float *r = bat(t, b) + i * t->stride[1];
      double s = 0.0;
      for (int64_t c = 0; c < D; c++) s += (double)r[c] * r[c];
      norms[b * T + i] = (float)sqrt(s);
    }
}

static attn_status gemm(const char *fn, bool ta, bool tb, int64_t M, int64_t N, int64_t K,
                        float alpha, const float *A, int64_t lda, const float *B, int64_t ldb,
                        float beta, float *C, int64_t ldc) {
  if (M == 0 || N == 0) return ATTN_OK;
  attn_status st = attn_gemm(ATTN_ROW_MAJOR, ta ? ATTN_TRANS : ATTN_NO_TRANS,
                             tb ? ATTN_TRANS : ATTN_NO_TRANS, M, N, K, alpha, A, lda > 0 ? lda : 1,
                             B, ldb > 0 ? ldb : 1, beta, C, ldc > 0 ? ldc : 1);
  if (st != ATTN_OK) return attn__fail(st, "%s: %s", fn, attn_last_error());
  return ATTN_OK;
}

/* Sets a 1- or 2-d view to 0. */
static void zero_view(const attn_tensor *t) {
  if (!t || !t->data) return;
  int64_t rows = t->ndim == 2 ? t->shape[0] : 1, n = t->shape[t->ndim - 1];
  for (int64_t r = 0; r < rows; r++) {
    float *p = (float *)t->data + r * (t->ndim == 2 ? t->stride[0] : 0);
    for (int64_t c = 0; c < n; c++) p[c] = 0.0f;
  }
}

/* q~ of the general kinds: qt[b] = q[b] W^T (+ b), (B, Tq, dk) contiguous. */
static attn_status project_general(const char *fn, const attn__score_problem *pr, float *qt) {
  const int64_t Tq = pr->Tq, dk = pr->dk;
  for (int64_t b = 0; b < pr->B; b++) {
    float *dst = qt + b * Tq * dk;
    ATTN__TRY(gemm(fn, false, true, Tq, dk, pr->dq, 1.0f, bat(pr->q, b), pr->q->stride[1],
                   (const float *)pr->p.W->data, pr->p.W->stride[0], 0.0f, dst, dk));
    if (pr->p.kind == ATTN_SCORE_BIASED_GENERAL)
      for (int64_t i = 0; i < Tq; i++)
        for (int64_t c = 0; c < dk; c++)
          dst[i * dk + c] += ((const float *)pr->p.b->data)[c * pr->p.b->stride[0]];
  }
  return ATTN_OK;
}

/* Q1 = q Wq^T, K2 = k Wk^T, bb = b + sum_m U_m c_m (additive family). */
static attn_status project_add(const char *fn, const attn__score_problem *pr, float *Q1, float *K2,
                               float *bb) {
  const int64_t B = pr->B, Tq = pr->Tq, Tk = pr->Tk, d = pr->d;
  const attn_score_params *p = &pr->p;
  for (int64_t b = 0; b < B; b++) {
    if (pr->has_wq)
      ATTN__TRY(gemm(fn, false, true, Tq, d, pr->dq, 1.0f, bat(pr->q, b), pr->q->stride[1],
                     (const float *)pr->Wq.data, pr->Wq.stride[0], 0.0f, Q1 + b * Tq * d, d));
    ATTN__TRY(gemm(fn, false, true, Tk, d, pr->dk, 1.0f, bat(pr->k, b), pr->k->stride[1],
                   (const float *)pr->Wk.data, pr->Wk.stride[0], 0.0f, K2 + b * Tk * d, d));
    const int nc = p->kind == ATTN_SCORE_ADDITIVE ? p->n_contexts : 0;
    for (int64_t c = 0; c < d; c++) {
      double s = p->b && p->kind != ATTN_SCORE_CONCAT
                     ? (double)((const float *)p->b->data)[c * p->b->stride[0]]
                     : 0.0;
      for (int m = 0; m < nc; m++) {
        const attn_tensor *cm = p->contexts[m], *um = p->U[m];
        const float *cr = (const float *)cm->data + b * cm->stride[0],
                    *ur = (const float *)um->data + c * um->stride[0];
        for (int64_t j = 0; j < cm->shape[1]; j++) s += (double)ur[j] * (double)cr[j];
      }
      bb[b * d + c] = (float)s;
    }
  }
  return ATTN_OK;
}

static void act_rows(const attn__score_problem *pr, const attn_tensor *e, float bias) {
  const float it = (float)pr->inv_t, slope = pr->p.leaky_slope;
  const int act = (int)pr->p.act;
  for (int64_t b = 0; b < pr->B; b++)
    for (int64_t i = 0; i < pr->Tq; i++) {
      float *row = bat(e, b) + i * e->stride[1];
      for (int64_t l = 0; l < pr->Tk; l++) row[l] = act_f(act, slope, row[l] + bias) * it;
    }
}

/* ---- forward --------------------------------------------------------------------------------- */

static attn_status forward_run(const char *fn, const attn__score_problem *pr, const attn_tensor *e,
                               float *ws, const ws_layout *L) {
  const int64_t B = pr->B, Tq = pr->Tq, Tk = pr->Tk, dk = pr->dk;
  const attn_score_params *p = &pr->p;
  const float it = (float)pr->inv_t;
  switch (pr->fam) {
    case ATTN__SCORE_BILINEAR: {
      const bool gen = p->kind != ATTN_SCORE_DOT && p->kind != ATTN_SCORE_SCALED_DOT;
      if (gen) ATTN__TRY(project_general(fn, pr, ws + L->qt));
      const bool act = p->kind == ATTN_SCORE_ACTIVATED_GENERAL;
      const float alpha = (float)(pr->dot_scale * (act ? 1.0 : pr->inv_t));
      for (int64_t b = 0; b < B; b++) {
        const float *qt = gen ? ws + L->qt + b * Tq * dk : bat(pr->q, b);
        ATTN__TRY(gemm(fn, false, true, Tq, Tk, dk, alpha, qt, gen ? dk : pr->q->stride[1],
                       bat(pr->k, b), pr->k->stride[1], 0.0f, bat(e, b), e->stride[1]));
      }
      if (act) act_rows(pr, e, ((const float *)p->b->data)[0]);
      return ATTN_OK;
    }
    case ATTN__SCORE_COS: {
      float *nq = ws + L->nq, *nk = ws + L->nk;
      row_norms(nq, pr->q, B, Tq, dk);
      row_norms(nk, pr->k, B, Tk, dk);
      for (int64_t b = 0; b < B; b++) {
        ATTN__TRY(gemm(fn, false, true, Tq, Tk, dk, 1.0f, bat(pr->q, b), pr->q->stride[1],
                       bat(pr->k, b), pr->k->stride[1], 0.0f, bat(e, b), e->stride[1]));
        for (int64_t i = 0; i < Tq; i++) {
          float *row = bat(e, b) + i * e->stride[1];
          for (int64_t l = 0; l < Tk; l++) {
            float den = nq[b * Tq + i] * nk[b * Tk + l];
            den = den > 1e-8f ? den : 1e-8f;
            row[l] = row[l] / den * it;
          }
        }
      }
      return ATTN_OK;
    }
    case ATTN__SCORE_LINEAR:
      for (int64_t b = 0; b < B; b++) {
        ATTN__TRY(gemm(fn, false, true, Tq, Tk, pr->dq, it, bat(pr->q, b), pr->q->stride[1],
                       (const float *)p->W->data, p->W->stride[0], 0.0f, bat(e, b), e->stride[1]));
        if (p->b)
          for (int64_t i = 0; i < Tq; i++) {
            float *row = bat(e, b) + i * e->stride[1];
            for (int64_t l = 0; l < Tk; l++)
              row[l] += ((const float *)p->b->data)[l * p->b->stride[0]] * it;
          }
      }
      return ATTN_OK;
    case ATTN__SCORE_ADD: {
      float *Q1 = pr->has_wq ? ws + L->Q1 : NULL, *K2 = ws + L->K2, *bb = ws + L->bb;
      ATTN__TRY(project_add(fn, pr, Q1, K2, bb));
      add_job jb;
      memset(&jb, 0, sizeof jb);
      jb.pr = pr;
      jb.Q1 = Q1;
      jb.K2 = K2;
      jb.bb = bb;
      if (pr->F > 1) {
        float *wt = ws + L->WoT;
        const int64_t F = pr->F, d = pr->d;
        for (int64_t f = 0; f < F; f++)
          for (int64_t c = 0; c < d; c++)
            wt[c * F + f] = ((const float *)pr->Wout.data)[f * pr->Wout.stride[0] + c];
        jb.WoT = wt;
      } else {
        const int64_t d = pr->d, Tkp = (int64_t)attn__round_up((size_t)Tk, LANES);
        float *kt = ws + L->K2T;
        for (int64_t b = 0; b < B; b++)
          for (int64_t c = 0; c < d; c++) {
            float *row = kt + (b * d + c) * Tkp;
            for (int64_t l = 0; l < Tk; l++) row[l] = K2[(b * Tk + l) * d + c];
            for (int64_t l = Tk; l < Tkp; l++) row[l] = 0.0f;
          }
        jb.K2T = kt;
        jb.Tkp = Tkp;
      }
      jb.e = e;
      jb.inv_t = it;
      jb.slope = p->leaky_slope;
      jb.ws = (char *)(ws + L->thr);
      jb.per_thread = L->per_thread;
      /* F = 1: blocks of 4 query rows; F > 1: single rows. */
      const int64_t items = pr->F == 1 ? B * ((pr->Tq_out + 3) / 4) : B * pr->Tq_out;
      attn__parallel_for(items, attn__score_add_task(false), &jb);
      return ATTN_OK;
    }
  }
  return ATTN_OK;
}

attn_status attn_score_forward(const attn_tensor *e, const attn_tensor *q, const attn_tensor *k,
                               const attn_score_params *params, void *workspace,
                               size_t workspace_size) {
  static const char fn[] = "attn_score_forward";
  attn__clear_error();
  if (!e) return attn__fail(ATTN_STATUS_NULL_POINTER, "%s: e is NULL", fn);
  attn__score_problem pr;
  ATTN__TRY(attn__score_check(fn, &pr, false, e, NULL, NULL, NULL, q, k, params));
  ws_layout L;
  layout(&pr, false, attn__pool_size(), &L);
  float *ws = NULL;
  void *own;
  ATTN__TRY(get_ws(fn, &L, workspace, workspace_size, &ws, &own));
  attn_status st = forward_run(fn, &pr, e, ws, &L);
  attn__free(own);
  return st;
}

/* ---- backward -------------------------------------------------------------------------------- */

static attn_status backward_bilinear(const char *fn, const attn__score_problem *pr,
                                     const attn_tensor *dq, const attn_tensor *dk,
                                     const attn_score_grads *g, const attn_tensor *de, float *ws,
                                     const ws_layout *L) {
  const int64_t B = pr->B, Tq = pr->Tq, Tk = pr->Tk, dkn = pr->dk, dqn = pr->dq;
  const attn_score_params *p = &pr->p;
  const bool gen = p->kind != ATTN_SCORE_DOT && p->kind != ATTN_SCORE_SCALED_DOT;
  const bool act = p->kind == ATTN_SCORE_ACTIVATED_GENERAL;
  const float it = (float)pr->inv_t, ds = (float)pr->dot_scale, slope = p->leaky_slope;
  const bool want_dW = gen && g->dW, want_db = p->kind != ATTN_SCORE_GENERAL && gen && g->db;
  if (gen) ATTN__TRY(project_general(fn, pr, ws + L->qt));
  float *G = ws + L->G;
  double *acc = (double *)(ws + L->acc);
  for (int64_t c = 0; c < dkn; c++) acc[c] = 0.0;
  double db0 = 0.0;
  if (want_dW) zero_view(g->dW);
  for (int64_t b = 0; b < B; b++) {
    const float *qt = gen ? ws + L->qt + b * Tq * dkn : bat(pr->q, b);
    const int64_t ldq = gen ? dkn : pr->q->stride[1];
    if (act) {
      /* G = de / T act'(z + b), z recomputed. */
      const float b0 = ((const float *)p->b->data)[0];
      ATTN__TRY(gemm(fn, false, true, Tq, Tk, dkn, ds, qt, ldq, bat(pr->k, b), pr->k->stride[1],
                     0.0f, G, Tk));
      for (int64_t i = 0; i < Tq; i++) {
        const float *dr = bat(de, b) + i * de->stride[1];
        for (int64_t l = 0; l < Tk; l++) {
          float x = G[i * Tk + l] + b0, y = act_f((int)p->act, slope, x);
          float gz = dr[l] * it * act_grad_f((int)p->act, slope, x, y);
          G[i * Tk + l] = gz;
          db0 += (double)gz;
        }
      }
    } else {
      for (int64_t i = 0; i < Tq; i++) {
        const float *dr = bat(de, b) + i * de->stride[1];
        for (int64_t l = 0; l < Tk; l++) G[i * Tk + l] = dr[l] * it;
      }
    }
    if (dk)
      ATTN__TRY(
          gemm(fn, true, false, Tk, dkn, Tq, ds, G, Tk, qt, ldq, 0.0f, bat(dk, b), dk->stride[1]));
    if (!gen) {
      if (dq)
        ATTN__TRY(gemm(fn, false, false, Tq, dkn, Tk, ds, G, Tk, bat(pr->k, b), pr->k->stride[1],
                       0.0f, bat(dq, b), dq->stride[1]));
      continue;
    }
    if (!dq && !want_dW && !want_db) continue;
    float *dqt = ws + L->dqt;
    ATTN__TRY(gemm(fn, false, false, Tq, dkn, Tk, ds, G, Tk, bat(pr->k, b), pr->k->stride[1], 0.0f,
                   dqt, dkn));
    const float *W = (const float *)p->W->data;
    if (dq)
      ATTN__TRY(gemm(fn, false, false, Tq, dqn, dkn, 1.0f, dqt, dkn, W, p->W->stride[0], 0.0f,
                     bat(dq, b), dq->stride[1]));
    if (want_dW)
      ATTN__TRY(gemm(fn, true, false, dkn, dqn, Tq, 1.0f, dqt, dkn, bat(pr->q, b), pr->q->stride[1],
                     1.0f, (float *)g->dW->data, g->dW->stride[0]));
    if (p->kind == ATTN_SCORE_BIASED_GENERAL)
      for (int64_t i = 0; i < Tq; i++)
        for (int64_t c = 0; c < dkn; c++) acc[c] += (double)dqt[i * dkn + c];
  }
  if (want_db) {
    float *db = (float *)g->db->data;
    if (act)
      db[0] = (float)db0;
    else
      for (int64_t c = 0; c < dkn; c++) db[c * g->db->stride[0]] = (float)acc[c];
  }
  return ATTN_OK;
}

static attn_status backward_cos(const char *fn, const attn__score_problem *pr,
                                const attn_tensor *dq, const attn_tensor *dk, const attn_tensor *de,
                                float *ws, const ws_layout *L) {
  const int64_t B = pr->B, Tq = pr->Tq, Tk = pr->Tk, D = pr->dk;
  const float it = (float)pr->inv_t;
  float *nq = ws + L->nq, *nk = ws + L->nk, *A = ws + L->G, *cq = ws + L->cq, *ck = ws + L->ck;
  row_norms(nq, pr->q, B, Tq, D);
  row_norms(nk, pr->k, B, Tk, D);
  for (int64_t b = 0; b < B; b++) {
    ATTN__TRY(gemm(fn, false, true, Tq, Tk, D, 1.0f, bat(pr->q, b), pr->q->stride[1], bat(pr->k, b),
                   pr->k->stride[1], 0.0f, A, Tk));
    /* A_il = g / den; cq_i = sum_l g cos, ck_l = sum_i g cos over pairs with |q||k| > eps. */
    for (int64_t l = 0; l < Tk; l++) ck[l] = 0.0f;
    for (int64_t i = 0; i < Tq; i++) {
      const float *dr = bat(de, b) + i * de->stride[1];
      float s = 0.0f;
      for (int64_t l = 0; l < Tk; l++) {
        float prod = nq[b * Tq + i] * nk[b * Tk + l];
        bool normed = prod > 1e-8f;
        float den = normed ? prod : 1e-8f, gg = dr[l] * it, cs = A[i * Tk + l] / den;
        float c = normed ? gg * cs : 0.0f;
        A[i * Tk + l] = gg / den;
        s += c;
        ck[l] += c;
      }
      cq[i] = s;
    }
    if (dq) {
      ATTN__TRY(gemm(fn, false, false, Tq, D, Tk, 1.0f, A, Tk, bat(pr->k, b), pr->k->stride[1],
                     0.0f, bat(dq, b), dq->stride[1]));
      for (int64_t i = 0; i < Tq; i++) {
        if (cq[i] == 0.0f) continue;
        float n = nq[b * Tq + i], f = cq[i] / (n * n);
        const float *qr = bat(pr->q, b) + i * pr->q->stride[1];
        float *o = bat(dq, b) + i * dq->stride[1];
        for (int64_t c = 0; c < D; c++) o[c] -= f * qr[c];
      }
    }
    if (dk) {
      ATTN__TRY(gemm(fn, true, false, Tk, D, Tq, 1.0f, A, Tk, bat(pr->q, b), pr->q->stride[1], 0.0f,
                     bat(dk, b), dk->stride[1]));
      for (int64_t l = 0; l < Tk; l++) {
        if (ck[l] == 0.0f) continue;
        float n = nk[b * Tk + l], f = ck[l] / (n * n);
        const float *kr = bat(pr->k, b) + l * pr->k->stride[1];
        float *o = bat(dk, b) + l * dk->stride[1];
        for (int64_t c = 0; c < D; c++) o[c] -= f * kr[c];
      }
    }
  }
  return ATTN_OK;
}

static attn_status backward_linear(const char *fn, const attn__score_problem *pr,
                                   const attn_tensor *dq, const attn_score_grads *g,
                                   const attn_tensor *de, float *ws, const ws_layout *L) {
  const int64_t B = pr->B, Tq = pr->Tq, Tk = pr->Tk, dqn = pr->dq;
  const attn_score_params *p = &pr->p;
  const float it = (float)pr->inv_t;
  double *acc = (double *)(ws + L->acc);
  for (int64_t l = 0; l < Tk; l++) acc[l] = 0.0;
  if (g->dW) zero_view(g->dW);
  for (int64_t b = 0; b < B; b++) {
    if (dq)
      ATTN__TRY(gemm(fn, false, false, Tq, dqn, Tk, it, bat(de, b), de->stride[1],
                     (const float *)p->W->data, p->W->stride[0], 0.0f, bat(dq, b), dq->stride[1]));
    if (g->dW)
      ATTN__TRY(gemm(fn, true, false, Tk, dqn, Tq, it, bat(de, b), de->stride[1], bat(pr->q, b),
                     pr->q->stride[1], 1.0f, (float *)g->dW->data, g->dW->stride[0]));
    for (int64_t i = 0; i < Tq; i++) {
      const float *dr = bat(de, b) + i * de->stride[1];
      for (int64_t l = 0; l < Tk; l++) acc[l] += (double)(dr[l] * it);
    }
  }
  if (p->b && g->db)
    for (int64_t l = 0; l < Tk; l++) ((float *)g->db->data)[l * g->db->stride[0]] = (float)acc[l];
  return ATTN_OK;
}

static attn_status backward_add(const char *fn, const attn__score_problem *pr,
                                const attn_tensor *dq, const attn_tensor *dk,
                                const attn_score_grads *g, const attn_tensor *de, float *ws,
                                const ws_layout *L) {
  const int64_t B = pr->B, Tq = pr->Tq, Tk = pr->Tk, d = pr->d, F = pr->F;
  const attn_score_params *p = &pr->p;
  float *Q1 = pr->has_wq ? ws + L->Q1 : NULL, *K2 = ws + L->K2, *bb = ws + L->bb;
  ATTN__TRY(project_add(fn, pr, Q1, K2, bb));
  float *dQ1 = ws + L->dQ1, *dK2 = ws + L->dK2;
  double *dbb = (double *)(ws + L->dbb);
  double *dWo = (double *)(ws + L->dWo), *dbo = (double *)(ws + L->dbo);
  int64_t nqb, qblock;
  qsplit(B, pr->Tq_out, &nqb, &qblock);
  const int64_t items = B * nqb;
  float *dK2p = nqb > 1 ? ws + L->dK2p : NULL;
  memset(dQ1, 0, (size_t)(B * pr->Tq_out * d) * sizeof(float));
  memset(nqb > 1 ? dK2p : dK2, 0, (size_t)(items * Tk * d) * sizeof(float));
  memset(dWo, 0, (size_t)(items * F * d) * sizeof(double));
  memset(dbo, 0, (size_t)(items * F) * sizeof(double));
  add_job jb;
  memset(&jb, 0, sizeof jb);
  jb.pr = pr;
  jb.Q1 = Q1;
  jb.K2 = K2;
  jb.bb = bb;
  jb.e = de;
  jb.inv_t = (float)pr->inv_t;
  jb.slope = p->leaky_slope;
  jb.dQ1 = dQ1;
  jb.dK2 = dK2;
  jb.dK2p = dK2p;
  jb.nqb = nqb;
  jb.qblock = qblock;
  jb.dWo = dWo;
  jb.dbo = dbo;
  jb.ws = (char *)(ws + L->thr);
  jb.per_thread = L->per_thread;
  attn__parallel_for(items, attn__score_add_task(true), &jb);
  const int64_t Tqo = pr->Tq_out;
  if (dK2p) /* the blocks' dK2 partials, in block order */
    for (int64_t b = 0; b < B; b++) {
      float *o = dK2 + b * Tk * d;
      memcpy(o, dK2p + b * nqb * Tk * d, (size_t)(Tk * d) * sizeof(float));
      for (int64_t j = 1; j < nqb; j++) {
        const float *src = dK2p + (b * nqb + j) * Tk * d;
        for (int64_t x = 0; x < Tk * d; x++) o[x] += src[x];
      }
    }
  for (int64_t b = 0; b < B; b++)
    for (int64_t c = 0; c < d; c++) {
      double s = 0.0;
      for (int64_t i = 0; i < Tqo; i++) s += (double)dQ1[(b * Tqo + i) * d + c];
      dbb[b * d + c] = s;
    }
  /* Chain dQ1 and dK2 back through the projections. */
  if (pr->dWq.data) zero_view(&pr->dWq);
  if (pr->dWk.data) zero_view(&pr->dWk);
  for (int64_t b = 0; b < B; b++) {
    if (pr->has_wq && dq)
      ATTN__TRY(gemm(fn, false, false, Tq, pr->dq, d, 1.0f, dQ1 + b * Tq * d, d,
                     (const float *)pr->Wq.data, pr->Wq.stride[0], 0.0f, bat(dq, b),
                     dq->stride[1]));
    if (pr->has_wq && pr->dWq.data)
      ATTN__TRY(gemm(fn, true, false, d, pr->dq, Tq, 1.0f, dQ1 + b * Tq * d, d, bat(pr->q, b),
                     pr->q->stride[1], 1.0f, (float *)pr->dWq.data, pr->dWq.stride[0]));
    if (dk)
      ATTN__TRY(gemm(fn, false, false, Tk, pr->dk, d, 1.0f, dK2 + b * Tk * d, d,
                     (const float *)pr->Wk.data, pr->Wk.stride[0], 0.0f, bat(dk, b),
                     dk->stride[1]));
    if (pr->dWk.data)
      ATTN__TRY(gemm(fn, true, false, d, pr->dk, Tk, 1.0f, dK2 + b * Tk * d, d, bat(pr->k, b),
                     pr->k->stride[1], 1.0f, (float *)pr->dWk.data, pr->dWk.stride[0]));
  }
  /* The per-item partials, summed in item order. */
  if (pr->dWout.data)
    for (int64_t f = 0; f < F; f++) {
      float *o = (float *)pr->dWout.data + f * pr->dWout.stride[0];
      for (int64_t c = 0; c < d; c++) {
        double s = 0.0;
        for (int64_t it = 0; it < items; it++) s += dWo[(it * F + f) * d + c];
        o[c] = (float)s;
      }
    }
  if (p->kind == ATTN_SCORE_MULTIDIM && p->bo && g->dbo)
    for (int64_t f = 0; f < F; f++) {
      double s = 0.0;
      for (int64_t it = 0; it < items; it++) s += dbo[it * F + f];
      ((float *)g->dbo->data)[f * g->dbo->stride[0]] = (float)s;
    }
  if (p->kind != ATTN_SCORE_CONCAT && p->b && g->db)
    for (int64_t c = 0; c < d; c++) {
      double s = 0.0;
      for (int64_t b = 0; b < B; b++) s += dbb[b * d + c];
      ((float *)g->db->data)[c * g->db->stride[0]] = (float)s;
    }
  for (int m = 0; m < (p->kind == ATTN_SCORE_ADDITIVE ? p->n_contexts : 0); m++) {
    const attn_tensor *cm = p->contexts[m], *um = p->U[m];
    const int64_t dc = cm->shape[1];
    const attn_tensor *gU = g->dU ? g->dU[m] : NULL, *gc = g->dcontexts ? g->dcontexts[m] : NULL;
    if (gU)
      for (int64_t c = 0; c < d; c++)
        for (int64_t j = 0; j < dc; j++) {
          double s = 0.0;
          for (int64_t b = 0; b < B; b++)
            s += dbb[b * d + c] * ((const float *)cm->data)[b * cm->stride[0] + j];
          ((float *)gU->data)[c * gU->stride[0] + j] = (float)s;
        }
    if (gc)
      for (int64_t b = 0; b < B; b++)
        for (int64_t j = 0; j < dc; j++) {
          double s = 0.0;
          for (int64_t c = 0; c < d; c++)
            s += dbb[b * d + c] * ((const float *)um->data)[c * um->stride[0] + j];
          ((float *)gc->data)[b * gc->stride[0] + j] = (float)s;
        }
  }
  return ATTN_OK;
}

attn_status attn_score_backward(const attn_tensor *dq, const attn_tensor *dk,
                                const attn_score_grads *grads, const attn_tensor *de,
                                const attn_tensor *q, const attn_tensor *k,
                                const attn_score_params *params, void *workspace,
                                size_t workspace_size) {
  static const char fn[] = "attn_score_backward";
  attn__clear_error();
  attn__score_problem pr;
  ATTN__TRY(attn__score_check(fn, &pr, true, de, dq, dk, grads, q, k, params));
  const attn_score_grads g = grads ? *grads : attn_score_grads_default();
  if (!pr.q) dq = NULL;
  if (!pr.k) dk = NULL;
  ws_layout L;
  layout(&pr, true, attn__pool_size(), &L);
  float *ws = NULL;
  void *own;
  ATTN__TRY(get_ws(fn, &L, workspace, workspace_size, &ws, &own));
  attn_status st = ATTN_OK;
  switch (pr.fam) {
    case ATTN__SCORE_BILINEAR:
      st = backward_bilinear(fn, &pr, dq, dk, &g, de, ws, &L);
      break;
    case ATTN__SCORE_COS:
      st = backward_cos(fn, &pr, dq, dk, de, ws, &L);
      break;
    case ATTN__SCORE_LINEAR:
      st = backward_linear(fn, &pr, dq, &g, de, ws, &L);
      break;
    case ATTN__SCORE_ADD:
      st = backward_add(fn, &pr, dq, dk, &g, de, ws, &L);
      break;
  }
  attn__free(own);
  return st;
}
