/* Score functions, fast path. Contract: include/attn/score.h; semantics: src/ref/score_ref.c.
 *
 *   bilinear (dot, scaled, general, biased, activated): q~ = W q + b by one attn_gemm over all
 *     rows (general kinds), then e_b = alpha q~_b k_b^T per batch by attn_gemm, then the
 *     activation in place. Backward: G = de / T (times act'(z + b) for the activated kind, z
 *     recomputed by attn_gemm), dq~ = G k, dk = G^T q~, dq = dq~ W, dW = sum_b dq~_b^T q_b.
 *   cosine: the dot products by attn_gemm, then divided by max(|q| |k|, 1e-8) T.
 *   Luong location: e = (q W^T + b) / T by attn_gemm.
 *   additive family (additive, concat, location, multidim): Q1 = q Wq^T and K2 = k Wk^T by
 *     attn_gemm, bb = b + sum_m U_m c_m per batch, then a row kernel: item (b, i) computes
 *     e_il = sum_c Wout[f][c] act(Q1_ic + bb_c + K2_lc) through one row of d activations (no
 *     B x Tq x Tk x d tensor). The backward's items are (batch, block of query rows), about 16
 *     in all when B is small (one block per batch when B >= 16): each recomputes
 *     u = Q1 + bb + K2 pair by pair and accumulates its rows of dQ1 and its partials of dK2,
 *     dWout and dbo (rows summed in double), which are then summed in item order; dbb is the row
 *     sums of dQ1; attn_gemm chains dQ1, dK2 back to q, k, Wq, Wk.
 *
 * Sums over d run in 16 fixed lanes then a fixed tree, so the row kernels vectorise without
 * reassociation; the work split depends on the shapes only, so results are the same bits for any
 * thread count. The row kernels are
 * written once and compiled three times (baseline, AVX2, AVX-512) with GCC's target attribute,
 * the activation being a constant of each inlined copy. tanh and sigmoid are built on the shared
 * polynomial exp of scalar_math.h. */
#include "score_internal.h"

#include "scalar_math.h"

#define TRY(expr)                   \
  do {                              \
    attn_status st_ = (expr);       \
    if (st_ != ATTN_OK) return st_; \
  } while (0)

#define ATTN_AI static inline __attribute__((always_inline))

enum { LANES = 16 };

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

/* ---- the additive family's row kernels --------------------------------------------------------
 */

typedef struct add_job {
  const attn__score_problem *pr;
  const float *Q1, *K2, *bb; /* (B, Tq, d), (B, Tk, d), (B, d); Q1 NULL for LOCATION */
  const float *WoT;          /* forward, F > 1: Wout transposed, (d, F) */
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

/* Sum of the 16 lanes in a fixed tree. */
ATTN_AI float lane_sum(const float *a) {
  float s8[8], s4[4];
  for (int t = 0; t < 8; t++) s8[t] = a[t] + a[t + 8];
  for (int t = 0; t < 4; t++) s4[t] = s8[t] + s8[t + 4];
  return (s4[0] + s4[2]) + (s4[1] + s4[3]);
}

/* sum_c wr[c] * h[c] in 16 lanes (lane t takes c = t mod 16). */
ATTN_AI float dot_lanes(const float *restrict wr, const float *restrict h, int64_t d) {
  float acc[LANES];
  for (int t = 0; t < LANES; t++) acc[t] = 0.0f;
  int64_t c = 0;
  for (; c + LANES <= d; c += LANES)
    for (int t = 0; t < LANES; t++) acc[t] += wr[c + t] * h[c + t];
  for (int t = 0; c + t < d; t++) acc[t] += wr[c + t] * h[c + t];
  return lane_sum(acc);
}

/* Forward of row item = b * Tq_out + i. */
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
  const float *W0 = (const float *)pr->Wout.data;
  const float *bo =
      pr->p.kind == ATTN_SCORE_MULTIDIM && pr->p.bo ? (const float *)pr->p.bo->data : NULL;
  for (int64_t l = 0; l < Tk; l++) {
    const float *restrict kr = jb->K2 + (b * Tk + l) * d;
    /* The activations of the pair go through a row of d floats (L1): a plain loop over it is
     * what GCC if-converts and vectorises; fused into the lane sums it is not. */
    for (int64_t c = 0; c < d; c++) h[c] = act_f(act, slope, qb[c] + kr[c]);
    float *ef = erow + l * e->stride[2];
    if (F == 1) {
      const float s = dot_lanes(W0, h, d);
      ef[0] = (bo ? s + bo[0] : s) * it;
      continue;
    }
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
#define FWD(a) add_fwd_impl(jb, item, tid, a)
#define BWD(a) add_bwd_impl(jb, item, tid, a)
  if (bw) {
    ACT_SWITCH(BWD)
  } else {
    ACT_SWITCH(FWD)
  }
#undef FWD
#undef BWD
}

static void add_fwd_base(void *ctx, int64_t item, int tid) {
  add_task_impl(ctx, item, tid, false);
}
static void add_bwd_base(void *ctx, int64_t item, int tid) {
  add_task_impl(ctx, item, tid, true);
}
#if ATTN_X86 && defined(__GNUC__)
__attribute__((target("avx2,fma"))) static void add_fwd_avx2(void *ctx, int64_t item, int tid) {
  add_task_impl(ctx, item, tid, false);
}
__attribute__((target("avx2,fma"))) static void add_bwd_avx2(void *ctx, int64_t item, int tid) {
  add_task_impl(ctx, item, tid, true);
}
__attribute__((target("avx512f,avx512vl,avx512bw,avx512dq,avx2,fma"))) static void add_fwd_avx512(
    void *ctx, int64_t item, int tid) {
  add_task_impl(ctx, item, tid, false);
}
__attribute__((target("avx512f,avx512vl,avx512bw,avx512dq,avx2,fma"))) static void add_bwd_avx512(
    void *ctx, int64_t item, int tid) {
  add_task_impl(ctx, item, tid, true);
}
#endif

static attn__task_fn pick_task(bool bw) {
#if ATTN_X86 && defined(__GNUC__)
  attn_isa isa = attn_get_isa();
  if (isa == ATTN_ISA_AVX512) return bw ? add_bwd_avx512 : add_fwd_avx512;
  if (isa == ATTN_ISA_AVX2) return bw ? add_bwd_avx2 : add_fwd_avx2;
#endif
  return bw ? add_bwd_base : add_fwd_base;
}

/* ---- workspace ------------------------------------------------------------------------------- */

/* Offsets (in floats, each rounded to 16) of the buffers of one call. */
typedef struct ws_layout {
  size_t qt, G, dqt, acc, nq, nk, cq, ck, Q1, K2, bb, WoT, dQ1, dK2, dK2p, dbb, dWo, dbo, thr;
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
      if (!bw) per = 2 * dp + fp;
      if (!bw && F > 1) L->WoT = lay(L, d, F, 1);
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
  size_t need = L->total * sizeof(float);
  if (workspace) {
    if (workspace_size < need)
      return attn__fail(ATTN_STATUS_WORKSPACE_TOO_SMALL, "%s: workspace is %zu bytes, needs %zu",
                        fn, workspace_size, need);
    if ((uintptr_t)workspace % ATTN_ALIGN)
      return attn__fail(ATTN_STATUS_INVALID_ARGUMENT, "%s: workspace is not 64-byte aligned", fn);
    *base = (float *)workspace;
    return ATTN_OK;
  }
  *own = attn__malloc(need ? need : 64, ATTN_ALIGN);
  if (!*own) return attn__fail(ATTN_STATUS_OUT_OF_MEMORY, "%s: %zu bytes of workspace", fn, need);
  *base = (float *)*own;
  return ATTN_OK;
}

attn_status attn_score_workspace_size(size_t *size, int backward, const attn_tensor *q,
                                      const attn_tensor *k, const attn_score_params *params) {
  static const char fn[] = "attn_score_workspace_size";
  attn__clear_error();
  if (!size) return attn__fail(ATTN_STATUS_NULL_POINTER, "%s: size is NULL", fn);
  attn__score_problem pr;
  TRY(attn__score_check(fn, &pr, false, NULL, NULL, NULL, NULL, q, k, params));
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
    TRY(gemm(fn, false, true, Tq, dk, pr->dq, 1.0f, bat(pr->q, b), pr->q->stride[1],
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
      TRY(gemm(fn, false, true, Tq, d, pr->dq, 1.0f, bat(pr->q, b), pr->q->stride[1],
               (const float *)pr->Wq.data, pr->Wq.stride[0], 0.0f, Q1 + b * Tq * d, d));
    TRY(gemm(fn, false, true, Tk, d, pr->dk, 1.0f, bat(pr->k, b), pr->k->stride[1],
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
      if (gen) TRY(project_general(fn, pr, ws + L->qt));
      const bool act = p->kind == ATTN_SCORE_ACTIVATED_GENERAL;
      const float alpha = (float)(pr->dot_scale * (act ? 1.0 : pr->inv_t));
      for (int64_t b = 0; b < B; b++) {
        const float *qt = gen ? ws + L->qt + b * Tq * dk : bat(pr->q, b);
        TRY(gemm(fn, false, true, Tq, Tk, dk, alpha, qt, gen ? dk : pr->q->stride[1], bat(pr->k, b),
                 pr->k->stride[1], 0.0f, bat(e, b), e->stride[1]));
      }
      if (act) act_rows(pr, e, ((const float *)p->b->data)[0]);
      return ATTN_OK;
    }
    case ATTN__SCORE_COS: {
      float *nq = ws + L->nq, *nk = ws + L->nk;
      for (int64_t b = 0; b < B; b++) {
        for (int64_t i = 0; i < Tq; i++) {
          const float *r = bat(pr->q, b) + i * pr->q->stride[1];
          double s = 0.0;
          for (int64_t c = 0; c < dk; c++) s += (double)r[c] * r[c];
          nq[b * Tq + i] = (float)sqrt(s);
        }
        for (int64_t l = 0; l < Tk; l++) {
          const float *r = bat(pr->k, b) + l * pr->k->stride[1];
          double s = 0.0;
          for (int64_t c = 0; c < dk; c++) s += (double)r[c] * r[c];
          nk[b * Tk + l] = (float)sqrt(s);
        }
      }
      for (int64_t b = 0; b < B; b++) {
        TRY(gemm(fn, false, true, Tq, Tk, dk, 1.0f, bat(pr->q, b), pr->q->stride[1], bat(pr->k, b),
                 pr->k->stride[1], 0.0f, bat(e, b), e->stride[1]));
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
        TRY(gemm(fn, false, true, Tq, Tk, pr->dq, it, bat(pr->q, b), pr->q->stride[1],
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
      TRY(project_add(fn, pr, Q1, K2, bb));
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
      }
      jb.e = e;
      jb.inv_t = it;
      jb.slope = p->leaky_slope;
      jb.ws = (char *)(ws + L->thr);
      jb.per_thread = L->per_thread;
      attn__parallel_for(B * pr->Tq_out, pick_task(false), &jb);
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
  TRY(attn__score_check(fn, &pr, false, e, NULL, NULL, NULL, q, k, params));
  ws_layout L;
  layout(&pr, false, attn__pool_size(), &L);
  float *ws = NULL;
  void *own;
  TRY(get_ws(fn, &L, workspace, workspace_size, &ws, &own));
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
  if (gen) TRY(project_general(fn, pr, ws + L->qt));
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
      TRY(gemm(fn, false, true, Tq, Tk, dkn, ds, qt, ldq, bat(pr->k, b), pr->k->stride[1], 0.0f, G,
               Tk));
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
      TRY(gemm(fn, true, false, Tk, dkn, Tq, ds, G, Tk, qt, ldq, 0.0f, bat(dk, b), dk->stride[1]));
    if (!gen) {
      if (dq)
        TRY(gemm(fn, false, false, Tq, dkn, Tk, ds, G, Tk, bat(pr->k, b), pr->k->stride[1], 0.0f,
                 bat(dq, b), dq->stride[1]));
      continue;
    }
    if (!dq && !want_dW && !want_db) continue;
    float *dqt = ws + L->dqt;
    TRY(gemm(fn, false, false, Tq, dkn, Tk, ds, G, Tk, bat(pr->k, b), pr->k->stride[1], 0.0f, dqt,
             dkn));
    const float *W = (const float *)p->W->data;
    if (dq)
      TRY(gemm(fn, false, false, Tq, dqn, dkn, 1.0f, dqt, dkn, W, p->W->stride[0], 0.0f, bat(dq, b),
               dq->stride[1]));
    if (want_dW)
      TRY(gemm(fn, true, false, dkn, dqn, Tq, 1.0f, dqt, dkn, bat(pr->q, b), pr->q->stride[1], 1.0f,
               (float *)g->dW->data, g->dW->stride[0]));
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
  for (int64_t b = 0; b < B; b++) {
    for (int64_t i = 0; i < Tq; i++) {
      const float *r = bat(pr->q, b) + i * pr->q->stride[1];
      double s = 0.0;
      for (int64_t c = 0; c < D; c++) s += (double)r[c] * r[c];
      nq[b * Tq + i] = (float)sqrt(s);
    }
    for (int64_t l = 0; l < Tk; l++) {
      const float *r = bat(pr->k, b) + l * pr->k->stride[1];
      double s = 0.0;
      for (int64_t c = 0; c < D; c++) s += (double)r[c] * r[c];
      nk[b * Tk + l] = (float)sqrt(s);
    }
  }
  for (int64_t b = 0; b < B; b++) {
    TRY(gemm(fn, false, true, Tq, Tk, D, 1.0f, bat(pr->q, b), pr->q->stride[1], bat(pr->k, b),
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
      TRY(gemm(fn, false, false, Tq, D, Tk, 1.0f, A, Tk, bat(pr->k, b), pr->k->stride[1], 0.0f,
               bat(dq, b), dq->stride[1]));
      for (int64_t i = 0; i < Tq; i++) {
        if (cq[i] == 0.0f) continue;
        float n = nq[b * Tq + i], f = cq[i] / (n * n);
        const float *qr = bat(pr->q, b) + i * pr->q->stride[1];
        float *o = bat(dq, b) + i * dq->stride[1];
        for (int64_t c = 0; c < D; c++) o[c] -= f * qr[c];
      }
    }
    if (dk) {
      TRY(gemm(fn, true, false, Tk, D, Tq, 1.0f, A, Tk, bat(pr->q, b), pr->q->stride[1], 0.0f,
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
      TRY(gemm(fn, false, false, Tq, dqn, Tk, it, bat(de, b), de->stride[1],
               (const float *)p->W->data, p->W->stride[0], 0.0f, bat(dq, b), dq->stride[1]));
    if (g->dW)
      TRY(gemm(fn, true, false, Tk, dqn, Tq, it, bat(de, b), de->stride[1], bat(pr->q, b),
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
  TRY(project_add(fn, pr, Q1, K2, bb));
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
  attn__parallel_for(items, pick_task(true), &jb);
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
      TRY(gemm(fn, false, false, Tq, pr->dq, d, 1.0f, dQ1 + b * Tq * d, d,
               (const float *)pr->Wq.data, pr->Wq.stride[0], 0.0f, bat(dq, b), dq->stride[1]));
    if (pr->has_wq && pr->dWq.data)
      TRY(gemm(fn, true, false, d, pr->dq, Tq, 1.0f, dQ1 + b * Tq * d, d, bat(pr->q, b),
               pr->q->stride[1], 1.0f, (float *)pr->dWq.data, pr->dWq.stride[0]));
    if (dk)
      TRY(gemm(fn, false, false, Tk, pr->dk, d, 1.0f, dK2 + b * Tk * d, d,
               (const float *)pr->Wk.data, pr->Wk.stride[0], 0.0f, bat(dk, b), dk->stride[1]));
    if (pr->dWk.data)
      TRY(gemm(fn, true, false, d, pr->dk, Tk, 1.0f, dK2 + b * Tk * d, d, bat(pr->k, b),
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
  TRY(attn__score_check(fn, &pr, true, de, dq, dk, grads, q, k, params));
  const attn_score_grads g = grads ? *grads : attn_score_grads_default();
  if (!pr.q) dq = NULL;
  if (!pr.k) dk = NULL;
  ws_layout L;
  layout(&pr, true, attn__pool_size(), &L);
  float *ws = NULL;
  void *own;
  TRY(get_ws(fn, &L, workspace, workspace_size, &ws, &own));
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
