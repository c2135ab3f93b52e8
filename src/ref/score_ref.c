/* Score functions: validation shared with src/cpu/score.c, and the reference loops (double,
 * single-threaded). Contract: include/attn/score.h. */
#include "score_internal.h"

#include <stdio.h>

attn_score_params attn_score_params_default(void) {
  attn_score_params p;
  memset(&p, 0, sizeof p);
  p.kind = ATTN_SCORE_DOT;
  p.act = ATTN_SCORE_ACT_TANH;
  p.leaky_slope = 0.01f;
  p.temperature = 1.0f;
  return p;
}

attn_score_grads attn_score_grads_default(void) {
  attn_score_grads g;
  memset(&g, 0, sizeof g);
  return g;
}

const char *attn_score_kind_name(attn_score_kind kind) {
  static const char *const names[] = {
      "dot",    "scaled_dot", "general",  "biased_general", "activated_general", "additive",
      "concat", "cosine",     "location", "luong_location", "multidim"};
  if ((unsigned)kind < sizeof names / sizeof names[0]) return names[kind];
  return "unknown";
}

/* ---- validation ------------------------------------------------------------------------------ */

/* Inputs and outputs seen so far, for the aliasing checks. At most q, k, e or de, 7 parameters
 * (or their gradients) and a context and its U_m (or their gradients) per context on each side. */
#define RANGES_MAX (10 + 2 * ATTN_SCORE_MAX_CONTEXTS)
typedef struct ranges {
  const char *in_name[RANGES_MAX], *out_name[RANGES_MAX];
  attn__range in[RANGES_MAX], out[RANGES_MAX];
  int n_in, n_out;
} ranges;

/* An f32 operand of `nd` dims: the shared layout rules, then its shape against want (want[i] < 0
 * accepts any size). */
static attn_status check_op(const char *fn, const char *name, const attn_tensor *t, int nd,
                            const int64_t *want, bool is_output, ranges *rg) {
  if (t->ndim != nd)
    return attn__fail(ATTN_STATUS_SHAPE_MISMATCH, "%s: %s has %d dims, expected %d", fn, name,
                      (int)t->ndim, nd);
  if (t->dtype != ATTN_DTYPE_F32)
    return attn__fail(ATTN_STATUS_UNSUPPORTED_DTYPE, "%s: %s has dtype %d, only f32 is supported",
                      fn, name, (int)t->dtype);
  attn__range r;
  ATTN__TRY(attn__check_view_layout(fn, name, t, is_output, &r));
  for (int i = 0; want && i < nd; i++)
    if (want[i] >= 0 && t->shape[i] != want[i])
      return attn__fail(ATTN_STATUS_SHAPE_MISMATCH, "%s: %s: dim %d is %lld, expected %lld", fn,
                        name, i, (long long)t->shape[i], (long long)want[i]);
  ATTN_ASSERT(rg->n_out < RANGES_MAX && rg->n_in < RANGES_MAX);
  if (is_output) {
    rg->out_name[rg->n_out] = name;
    rg->out[rg->n_out++] = r;
  } else {
    rg->in_name[rg->n_in] = name;
    rg->in[rg->n_in++] = r;
  }
  return ATTN_OK;
}

/* A required parameter tensor of the kind. */
static attn_status need(const char *fn, const char *name, const attn_tensor *t, int nd,
                        const int64_t *want, ranges *rg) {
  if (!t) return attn__fail(ATTN_STATUS_NULL_POINTER, "%s: %s is NULL", fn, name);
  return check_op(fn, name, t, nd, want, false, rg);
}

/* An optional gradient output: NULL or a view like want. */
static attn_status grad_op(const char *fn, const char *name, const attn_tensor *t, int nd,
                           const int64_t *want, ranges *rg) {
  if (!t) return ATTN_OK;
  return check_op(fn, name, t, nd, want, true, rg);
}

/* Columns [c0, c0 + n) of a 2-d view. */
static attn_tensor cols(const attn_tensor *t, int64_t c0, int64_t n) {
  attn_tensor v = *t;
  v.data = (float *)t->data + c0 * t->stride[1];
  v.shape[1] = n;
  return v;
}
/* A 1-d view (d) as a (1, d) matrix. */
static attn_tensor as_row(const attn_tensor *t) {
  attn_tensor v;
  memset(&v, 0, sizeof v);
  v.data = t->data;
  v.dtype = t->dtype;
  v.ndim = 2;
  v.shape[0] = 1;
  v.shape[1] = t->shape[0];
  v.stride[0] = t->shape[0];
  v.stride[1] = 1;
  return v;
}

attn_status attn__score_check(const char *fn, attn__score_problem *pr, bool is_backward,
                              const attn_tensor *e, const attn_tensor *dq, const attn_tensor *dk,
                              const attn_score_grads *g, const attn_tensor *q, const attn_tensor *k,
                              const attn_score_params *params) {
  memset(pr, 0, sizeof *pr);
  if (!params) return attn__fail(ATTN_STATUS_NULL_POINTER, "%s: params is NULL", fn);
  const attn_score_params p = *params;
  const attn_score_kind kind = p.kind;
  if ((unsigned)kind > (unsigned)ATTN_SCORE_MULTIDIM)
    return attn__fail(ATTN_STATUS_INVALID_ARGUMENT, "%s: params->kind %d is unknown", fn,
                      (int)kind);
  if ((unsigned)p.act > (unsigned)ATTN_SCORE_ACT_LEAKY_RELU)
    return attn__fail(ATTN_STATUS_INVALID_ARGUMENT, "%s: params->act %d is unknown", fn,
                      (int)p.act);
  if (!(p.temperature > 0.0f) || !isfinite(p.temperature))
    return attn__fail(ATTN_STATUS_INVALID_ARGUMENT,
                      "%s: params->temperature is %g, must be finite and > 0", fn,
                      (double)p.temperature);
  if (!isfinite(p.leaky_slope))
    return attn__fail(ATTN_STATUS_INVALID_ARGUMENT, "%s: params->leaky_slope is not finite", fn);
  const bool uses_q = kind != ATTN_SCORE_LOCATION, uses_k = kind != ATTN_SCORE_LUONG_LOCATION;
  if (uses_q && !q) return attn__fail(ATTN_STATUS_NULL_POINTER, "%s: q is NULL", fn);
  if (uses_k && !k) return attn__fail(ATTN_STATUS_NULL_POINTER, "%s: k is NULL", fn);
  if (is_backward && !e) return attn__fail(ATTN_STATUS_NULL_POINTER, "%s: de is NULL", fn);
  ranges rgs;
  ranges *rg = &rgs;
  /* Names of the context operands for the messages; rg keeps pointers to them until the end. */
  char cn[ATTN_SCORE_MAX_CONTEXTS][32], un[ATTN_SCORE_MAX_CONTEXTS][32],
      dcn[ATTN_SCORE_MAX_CONTEXTS][32], dun[ATTN_SCORE_MAX_CONTEXTS][32];
  rg->n_in = rg->n_out = 0;
  attn_status st = ATTN_OK;
#define CK(expr)                  \
  do {                            \
    st = (expr);                  \
    if (st != ATTN_OK) goto done; \
  } while (0)
  int64_t B = -1, Tq = 1, Tk = 0, dqn = 0, dkn = 0, d = 1, F = 1;
  if (uses_q) {
    CK(check_op(fn, "q", q, 3, NULL, false, rg));
    B = q->shape[0];
    Tq = q->shape[1];
    dqn = q->shape[2];
    if (dqn == 0) CK(attn__fail(ATTN_STATUS_INVALID_ARGUMENT, "%s: q: dim 2 (dq) is 0", fn));
  }
  if (uses_k) {
    CK(check_op(fn, "k", k, 3, (int64_t[3]){B, -1, -1}, false, rg));
    B = k->shape[0];
    Tk = k->shape[1];
    dkn = k->shape[2];
    if (dkn == 0) CK(attn__fail(ATTN_STATUS_INVALID_ARGUMENT, "%s: k: dim 2 (dk) is 0", fn));
  }
  if ((kind == ATTN_SCORE_DOT || kind == ATTN_SCORE_SCALED_DOT || kind == ATTN_SCORE_COSINE) &&
      dqn != dkn)
    CK(attn__fail(ATTN_STATUS_SHAPE_MISMATCH, "%s: k: dim 2 (dk) is %lld but q has %lld", fn,
                  (long long)dkn, (long long)dqn));
  const attn_score_grads gr = g ? *g : attn_score_grads_default();
  pr->fam = ATTN__SCORE_BILINEAR;
  switch (kind) {
    case ATTN_SCORE_DOT:
    case ATTN_SCORE_SCALED_DOT:
      break;
    case ATTN_SCORE_COSINE:
      pr->fam = ATTN__SCORE_COS;
      break;
    case ATTN_SCORE_GENERAL:
    case ATTN_SCORE_BIASED_GENERAL:
    case ATTN_SCORE_ACTIVATED_GENERAL: {
      int64_t ws[2] = {dkn, dqn}, bs[1] = {kind == ATTN_SCORE_BIASED_GENERAL ? dkn : 1};
      CK(need(fn, "params->W", p.W, 2, ws, rg));
      CK(grad_op(fn, "grads->dW", gr.dW, 2, ws, rg));
      if (kind != ATTN_SCORE_GENERAL) {
        CK(need(fn, "params->b", p.b, 1, bs, rg));
        CK(grad_op(fn, "grads->db", gr.db, 1, bs, rg));
      }
      break;
    }
    case ATTN_SCORE_LUONG_LOCATION: {
      pr->fam = ATTN__SCORE_LINEAR;
      CK(need(fn, "params->W", p.W, 2, (int64_t[2]){-1, dqn}, rg));
      Tk = p.W->shape[0];
      CK(grad_op(fn, "grads->dW", gr.dW, 2, (int64_t[2]){Tk, dqn}, rg));
      if (p.b) {
        CK(check_op(fn, "params->b", p.b, 1, (int64_t[1]){Tk}, false, rg));
        CK(grad_op(fn, "grads->db", gr.db, 1, (int64_t[1]){Tk}, rg));
      }
      break;
    }
    default: { /* the additive family */
      pr->fam = ATTN__SCORE_ADD;
      if (kind == ATTN_SCORE_CONCAT) {
        CK(need(fn, "params->W", p.W, 2, (int64_t[2]){-1, dqn + dkn}, rg));
        d = p.W->shape[0];
        CK(grad_op(fn, "grads->dW", gr.dW, 2, (int64_t[2]){d, dqn + dkn}, rg));
        pr->has_wq = true;
        pr->Wq = cols(p.W, 0, dqn);
        pr->Wk = cols(p.W, dqn, dkn);
        if (gr.dW) {
          pr->dWq = cols(gr.dW, 0, dqn);
          pr->dWk = cols(gr.dW, dqn, dkn);
        }
      } else if (kind == ATTN_SCORE_LOCATION) {
        CK(need(fn, "params->W", p.W, 2, (int64_t[2]){-1, dkn}, rg));
        d = p.W->shape[0];
        CK(grad_op(fn, "grads->dW", gr.dW, 2, (int64_t[2]){d, dkn}, rg));
        pr->Wk = *p.W;
        if (gr.dW) pr->dWk = *gr.dW;
      } else {
        CK(need(fn, "params->W1", p.W1, 2, (int64_t[2]){-1, dqn}, rg));
        d = p.W1->shape[0];
        CK(need(fn, "params->W2", p.W2, 2, (int64_t[2]){d, dkn}, rg));
        CK(grad_op(fn, "grads->dW1", gr.dW1, 2, (int64_t[2]){d, dqn}, rg));
        CK(grad_op(fn, "grads->dW2", gr.dW2, 2, (int64_t[2]){d, dkn}, rg));
        pr->has_wq = true;
        pr->Wq = *p.W1;
        pr->Wk = *p.W2;
        if (gr.dW1) pr->dWq = *gr.dW1;
        if (gr.dW2) pr->dWk = *gr.dW2;
      }
      if (d == 0) CK(attn__fail(ATTN_STATUS_INVALID_ARGUMENT, "%s: the score width d is 0", fn));
      if (kind == ATTN_SCORE_MULTIDIM) {
        CK(need(fn, "params->Wo", p.Wo, 2, (int64_t[2]){-1, d}, rg));
        F = p.Wo->shape[0];
        if (F == 0) CK(attn__fail(ATTN_STATUS_INVALID_ARGUMENT, "%s: params->Wo: F is 0", fn));
        CK(grad_op(fn, "grads->dWo", gr.dWo, 2, (int64_t[2]){F, d}, rg));
        pr->Wout = *p.Wo;
        if (gr.dWo) pr->dWout = *gr.dWo;
        if (p.bo) {
          CK(check_op(fn, "params->bo", p.bo, 1, (int64_t[1]){F}, false, rg));
          CK(grad_op(fn, "grads->dbo", gr.dbo, 1, (int64_t[1]){F}, rg));
        }
      } else {
        CK(need(fn, "params->w", p.w, 1, (int64_t[1]){d}, rg));
        CK(grad_op(fn, "grads->dw", gr.dw, 1, (int64_t[1]){d}, rg));
        pr->Wout = as_row(p.w);
        if (gr.dw) pr->dWout = as_row(gr.dw);
      }
      if (kind != ATTN_SCORE_CONCAT && p.b) {
        CK(check_op(fn, "params->b", p.b, 1, (int64_t[1]){d}, false, rg));
        CK(grad_op(fn, "grads->db", gr.db, 1, (int64_t[1]){d}, rg));
      }
      if (kind == ATTN_SCORE_ADDITIVE && p.n_contexts != 0) {
        if (p.n_contexts < 0 || p.n_contexts > ATTN_SCORE_MAX_CONTEXTS)
          CK(attn__fail(ATTN_STATUS_INVALID_ARGUMENT,
                        "%s: params->n_contexts is %d, must be in [0, %d]", fn, p.n_contexts,
                        ATTN_SCORE_MAX_CONTEXTS));
        if (!p.contexts || !p.U)
          CK(attn__fail(ATTN_STATUS_NULL_POINTER, "%s: params->%s is NULL", fn,
                        p.contexts ? "U" : "contexts"));
        for (int m = 0; m < p.n_contexts; m++) {
          snprintf(cn[m], sizeof cn[m], "params->contexts[%d]", m);
          snprintf(un[m], sizeof un[m], "params->U[%d]", m);
          snprintf(dcn[m], sizeof dcn[m], "grads->dcontexts[%d]", m);
          snprintf(dun[m], sizeof dun[m], "grads->dU[%d]", m);
        }
        for (int m = 0; m < p.n_contexts; m++) {
          CK(need(fn, cn[m], p.contexts[m], 2, (int64_t[2]){B, -1}, rg));
          int64_t dc = p.contexts[m]->shape[1];
          if (dc == 0)
            CK(attn__fail(ATTN_STATUS_INVALID_ARGUMENT, "%s: %s: dim 1 is 0", fn, cn[m]));
          CK(need(fn, un[m], p.U[m], 2, (int64_t[2]){d, dc}, rg));
          if (gr.dcontexts && gr.dcontexts[m])
            CK(grad_op(fn, dcn[m], gr.dcontexts[m], 2, (int64_t[2]){B, dc}, rg));
          if (gr.dU && gr.dU[m]) CK(grad_op(fn, dun[m], gr.dU[m], 2, (int64_t[2]){d, dc}, rg));
        }
      }
      break;
    }
  }
  const int64_t Tq_out = kind == ATTN_SCORE_LOCATION ? 1 : Tq;
  if (e) {
    const char *en = is_backward ? "de" : "e";
    if (kind == ATTN_SCORE_MULTIDIM)
      CK(check_op(fn, en, e, 4, (int64_t[4]){B, Tq_out, Tk, F}, !is_backward, rg));
    else
      CK(check_op(fn, en, e, 3, (int64_t[3]){B, Tq_out, Tk}, !is_backward, rg));
  }
  if (dq && uses_q) CK(check_op(fn, "dq", dq, 3, (int64_t[3]){B, Tq, dqn}, true, rg));
  if (dk && uses_k) CK(check_op(fn, "dk", dk, 3, (int64_t[3]){B, Tk, dkn}, true, rg));
  for (int i = 0; i < rg->n_out; i++) {
    for (int j = 0; j < rg->n_in; j++)
      if (attn__ranges_overlap(rg->out[i], rg->in[j]))
        CK(attn__fail(ATTN_STATUS_ALIASING, "%s: %s overlaps %s", fn, rg->out_name[i],
                      rg->in_name[j]));
    for (int j = i + 1; j < rg->n_out; j++)
      if (attn__ranges_overlap(rg->out[i], rg->out[j]))
        CK(attn__fail(ATTN_STATUS_ALIASING, "%s: %s overlaps %s", fn, rg->out_name[i],
                      rg->out_name[j]));
  }
  pr->p = p;
  if (kind == ATTN_SCORE_CONCAT) pr->p.act = ATTN_SCORE_ACT_TANH;
  pr->B = B;
  pr->Tq = Tq;
  pr->Tk = Tk;
  pr->dq = dqn;
  pr->dk = dkn;
  pr->d = d;
  pr->F = F;
  pr->Tq_out = Tq_out;
  pr->inv_t = 1.0 / (double)p.temperature;
  pr->dot_scale = kind == ATTN_SCORE_SCALED_DOT ? 1.0 / sqrt((double)dkn) : 1.0;
  pr->q = uses_q ? q : NULL;
  pr->k = uses_k ? k : NULL;
#undef CK
done:
  return st;
}

/* ---- reference ------------------------------------------------------------------------------- */

static inline double g1(const attn_tensor *t, int64_t i) {
  return (double)((const float *)t->data)[i * t->stride[0]];
}
static inline double g2(const attn_tensor *t, int64_t i, int64_t j) {
  return (double)((const float *)t->data)[i * t->stride[0] + j * t->stride[1]];
}
static inline double g3(const attn_tensor *t, int64_t i, int64_t j, int64_t c) {
  return (double)((const float *)t->data)[i * t->stride[0] + j * t->stride[1] + c * t->stride[2]];
}
static inline float *p_at(const attn_tensor *t, const int64_t *idx) {
  int64_t o = 0;
  for (int i = 0; i < t->ndim; i++) o += idx[i] * t->stride[i];
  return (float *)t->data + o;
}

static double act_ref(attn_score_act act, double slope, double x) {
  switch (act) {
    case ATTN_SCORE_ACT_TANH:
      return tanh(x);
    case ATTN_SCORE_ACT_RELU:
      return x > 0.0 ? x : 0.0 * x; /* NaN kept */
    case ATTN_SCORE_ACT_SIGMOID:
      return 1.0 / (1.0 + exp(-x));
    case ATTN_SCORE_ACT_LEAKY_RELU:
      return x > 0.0 ? x : slope * x;
    default:
      return x;
  }
}
/* d act / dx at x, given y = act(x). */
static double act_grad_ref(attn_score_act act, double slope, double x, double y) {
  switch (act) {
    case ATTN_SCORE_ACT_TANH:
      return 1.0 - y * y;
    case ATTN_SCORE_ACT_RELU:
      return x > 0.0 ? 1.0 : 0.0;
    case ATTN_SCORE_ACT_SIGMOID:
      return y * (1.0 - y);
    case ATTN_SCORE_ACT_LEAKY_RELU:
      return x > 0.0 ? 1.0 : slope;
    default:
      return 1.0;
  }
}

/* Writes the double buffer src (row-major over t's shape) into the f32 view t. */
static void put(const attn_tensor *t, const double *src) {
  int64_t idx[4] = {0, 0, 0, 0}, n = 1;
  for (int i = 0; i < t->ndim; i++) n *= t->shape[i];
  for (int64_t x = 0; x < n; x++) {
    int64_t r = x;
    for (int i = t->ndim - 1; i >= 0; i--) {
      idx[i] = r % t->shape[i];
      r /= t->shape[i];
    }
    *p_at(t, idx) = (float)src[x];
  }
}

/* A bump allocator over one zeroed double block. */
typedef struct bump {
  double *base;
  size_t used, cap;
  bool overflow;
} bump;
static double *take(bump *b, int64_t n1, int64_t n2, int64_t n3) {
  int64_t n;
  if (!attn__mul_i64(n1, n2, &n) || !attn__mul_i64(n, n3, &n) || (uint64_t)n > SIZE_MAX / 16) {
    b->overflow = true;
    return NULL;
  }
  size_t at = b->used;
  if (!b->base) { /* sizing pass */
    if (b->used > SIZE_MAX / 16 - (size_t)n) b->overflow = true;
    b->used += (size_t)n;
    return NULL;
  }
  b->used += (size_t)n;
  return b->base + at;
}

/* Everything the reference keeps in double. */
typedef struct ref_bufs {
  double *qt, *Q1, *K2, *bb, *h, *u, *gf, *nq, *nk;                          /* forward */
  double *gq, *gk, *gqt, *gW, *gb, *gQ1, *gK2, *gbb, *gWo, *gbo, *gWq, *gWk; /* backward */
  double *gU[ATTN_SCORE_MAX_CONTEXTS], *gc[ATTN_SCORE_MAX_CONTEXTS];
  double *ebuf;
} ref_bufs;

static void carve(const attn__score_problem *pr, bool bw, bump *bp, ref_bufs *r) {
  const int64_t B = pr->B, Tq = pr->Tq, Tk = pr->Tk, d = pr->d, F = pr->F;
  const attn_score_params *p = &pr->p;
  memset(r, 0, sizeof *r);
  r->ebuf = take(bp, 1, 1, F);
  switch (pr->fam) {
    case ATTN__SCORE_BILINEAR:
      r->qt = take(bp, B, Tq, pr->dk);
      break;
    case ATTN__SCORE_COS:
      r->nq = take(bp, B, Tq, 1);
      r->nk = take(bp, B, Tk, 1);
      break;
    case ATTN__SCORE_ADD:
      r->Q1 = take(bp, B, Tq, d);
      r->K2 = take(bp, B, Tk, d);
      r->bb = take(bp, B, d, 1);
      r->h = take(bp, d, 1, 1);
      r->u = take(bp, d, 1, 1);
      r->gf = take(bp, F, 1, 1);
      break;
    default:
      break;
  }
  if (!bw) return;
  r->gq = take(bp, B, Tq, pr->dq);
  r->gk = take(bp, B, Tk, pr->dk);
  switch (pr->fam) {
    case ATTN__SCORE_BILINEAR:
      r->gqt = take(bp, B, Tq, pr->dk);
      r->gW = take(bp, pr->dk, pr->dq, 1);
      r->gb = take(bp, pr->dk, 1, 1);
      break;
    case ATTN__SCORE_LINEAR:
      r->gW = take(bp, Tk, pr->dq, 1);
      r->gb = take(bp, Tk, 1, 1);
      break;
    case ATTN__SCORE_ADD:
      r->gQ1 = take(bp, B, Tq, d);
      r->gK2 = take(bp, B, Tk, d);
      r->gbb = take(bp, B, d, 1);
      r->gWo = take(bp, F, d, 1);
      r->gbo = take(bp, F, 1, 1);
      r->gWq = take(bp, d, pr->dq, 1);
      r->gWk = take(bp, d, pr->dk, 1);
      r->gb = take(bp, d, 1, 1);
      for (int m = 0; m < p->n_contexts; m++) {
        r->gU[m] = take(bp, d, p->contexts[m]->shape[1], 1);
        r->gc[m] = take(bp, B, p->contexts[m]->shape[1], 1);
      }
      break;
    default:
      break;
  }
}

/* Forward (de == NULL: writes e) or backward (reads de, writes the gradients). */
static attn_status ref_run(const char *fn, const attn__score_problem *pr, const attn_tensor *e,
                           const attn_tensor *de, const attn_tensor *dq, const attn_tensor *dk,
                           const attn_score_grads *grads) {
  const bool bw = de != NULL;
  const attn_score_params *p = &pr->p;
  const attn_score_kind kind = p->kind;
  const int64_t B = pr->B, Tq = pr->Tq, Tk = pr->Tk, dqn = pr->dq, dkn = pr->dk, d = pr->d,
                F = pr->F;
  const attn_tensor *q = pr->q, *k = pr->k;
  const double slope = (double)p->leaky_slope, it = pr->inv_t;
  bump bp = {NULL, 0, 0, false};
  ref_bufs r;
  carve(pr, bw, &bp, &r);
  if (bp.overflow) return attn__fail(ATTN_STATUS_OVERFLOW, "%s: scratch size overflows", fn);
  size_t n = bp.used;
  double *mem = (double *)attn__malloc((n ? n : 1) * sizeof(double), ATTN_ALIGN);
  if (!mem) return attn__fail(ATTN_STATUS_OUT_OF_MEMORY, "%s: scratch", fn);
  memset(mem, 0, (n ? n : 1) * sizeof(double));
  bp.base = mem;
  bp.used = 0;
  carve(pr, bw, &bp, &r);
  double *eb = r.ebuf;
  const int64_t Tqo = pr->Tq_out;
  /* Pre-computation in double: q~ (bilinear), Q1, K2, bb (additive), norms (cosine). */
  if (pr->fam == ATTN__SCORE_BILINEAR)
    for (int64_t b = 0; b < B; b++)
      for (int64_t i = 0; i < Tq; i++)
        for (int64_t c = 0; c < dkn; c++) {
          double s = 0.0;
          if (kind == ATTN_SCORE_DOT || kind == ATTN_SCORE_SCALED_DOT)
            s = g3(q, b, i, c);
          else {
            for (int64_t j = 0; j < dqn; j++) s += g2(p->W, c, j) * g3(q, b, i, j);
            if (kind == ATTN_SCORE_BIASED_GENERAL) s += g1(p->b, c);
          }
          r.qt[(b * Tq + i) * dkn + c] = s;
        }
  if (pr->fam == ATTN__SCORE_COS)
    for (int64_t b = 0; b < B; b++) {
      for (int64_t i = 0; i < Tq; i++) {
        double s = 0.0;
        for (int64_t c = 0; c < dqn; c++) s += g3(q, b, i, c) * g3(q, b, i, c);
        r.nq[b * Tq + i] = sqrt(s);
      }
      for (int64_t l = 0; l < Tk; l++) {
        double s = 0.0;
        for (int64_t c = 0; c < dkn; c++) s += g3(k, b, l, c) * g3(k, b, l, c);
        r.nk[b * Tk + l] = sqrt(s);
      }
    }
  if (pr->fam == ATTN__SCORE_ADD)
    for (int64_t b = 0; b < B; b++) {
      for (int64_t c = 0; c < d; c++) {
        double s = p->b && kind != ATTN_SCORE_CONCAT ? g1(p->b, c) : 0.0;
        for (int m = 0; m < (kind == ATTN_SCORE_ADDITIVE ? p->n_contexts : 0); m++)
          for (int64_t j = 0; j < p->contexts[m]->shape[1]; j++)
            s += g2(p->U[m], c, j) * g2(p->contexts[m], b, j);
        r.bb[b * d + c] = s;
      }
      for (int64_t i = 0; i < Tq && pr->has_wq; i++)
        for (int64_t c = 0; c < d; c++) {
          double s = 0.0;
          for (int64_t j = 0; j < dqn; j++) s += g2(&pr->Wq, c, j) * g3(q, b, i, j);
          r.Q1[(b * Tq + i) * d + c] = s;
        }
      for (int64_t l = 0; l < Tk; l++)
        for (int64_t c = 0; c < d; c++) {
          double s = 0.0;
          for (int64_t j = 0; j < dkn; j++) s += g2(&pr->Wk, c, j) * g3(k, b, l, j);
          r.K2[(b * Tk + l) * d + c] = s;
        }
    }
  /* Every pair. */
  for (int64_t b = 0; b < B; b++)
    for (int64_t i = 0; i < Tqo; i++)
      for (int64_t l = 0; l < Tk; l++) {
        int64_t idx[4] = {b, i, l, 0};
        if (pr->fam == ATTN__SCORE_BILINEAR) {
          const double *qt = r.qt + (b * Tq + i) * dkn;
          double z = 0.0;
          for (int64_t c = 0; c < dkn; c++) z += qt[c] * g3(k, b, l, c);
          z *= pr->dot_scale;
          if (kind == ATTN_SCORE_ACTIVATED_GENERAL) z = act_ref(p->act, slope, z + g1(p->b, 0));
          eb[0] = z * it;
          if (bw) {
            double gz = (double)*p_at(de, idx) * it;
            if (kind == ATTN_SCORE_ACTIVATED_GENERAL) {
              double x = 0.0;
              for (int64_t c = 0; c < dkn; c++) x += qt[c] * g3(k, b, l, c);
              x += g1(p->b, 0);
              gz *= act_grad_ref(p->act, slope, x, z);
              r.gb[0] += gz;
            }
            gz *= pr->dot_scale;
            for (int64_t c = 0; c < dkn; c++) {
              r.gqt[(b * Tq + i) * dkn + c] += gz * g3(k, b, l, c);
              r.gk[(b * Tk + l) * dkn + c] += gz * qt[c];
            }
          }
        } else if (pr->fam == ATTN__SCORE_COS) {
          double dot = 0.0, nq = r.nq[b * Tq + i], nk = r.nk[b * Tk + l];
          for (int64_t c = 0; c < dqn; c++) dot += g3(q, b, i, c) * g3(k, b, l, c);
          double den = nq * nk > 1e-8 ? nq * nk : 1e-8;
          double cs = dot / den;
          eb[0] = cs * it;
          if (bw) {
            double g = (double)*p_at(de, idx) * it;
            bool normed = nq * nk > 1e-8;
            for (int64_t c = 0; c < dqn; c++) {
              double qc = g3(q, b, i, c), kc = g3(k, b, l, c);
              r.gq[(b * Tq + i) * dqn + c] += g * (kc / den - (normed ? cs * qc / (nq * nq) : 0.0));
              r.gk[(b * Tk + l) * dkn + c] += g * (qc / den - (normed ? cs * kc / (nk * nk) : 0.0));
            }
          }
        } else if (pr->fam == ATTN__SCORE_LINEAR) {
          double s = p->b ? g1(p->b, l) : 0.0;
          for (int64_t j = 0; j < dqn; j++) s += g2(p->W, l, j) * g3(q, b, i, j);
          eb[0] = s * it;
          if (bw) {
            double g = (double)*p_at(de, idx) * it;
            for (int64_t j = 0; j < dqn; j++) {
              r.gq[(b * Tq + i) * dqn + j] += g * g2(p->W, l, j);
              r.gW[l * dqn + j] += g * g3(q, b, i, j);
            }
            r.gb[l] += g;
          }
        } else {
          const double *Q1 = r.Q1 + (b * Tq + i) * d, *K2 = r.K2 + (b * Tk + l) * d,
                       *bb = r.bb + b * d;
          for (int64_t c = 0; c < d; c++) {
            r.u[c] = (pr->has_wq ? Q1[c] : 0.0) + K2[c] + bb[c];
            r.h[c] = act_ref(p->act, slope, r.u[c]);
          }
          for (int64_t f = 0; f < F; f++) {
            double s = kind == ATTN_SCORE_MULTIDIM && p->bo ? g1(p->bo, f) : 0.0;
            for (int64_t c = 0; c < d; c++) s += g2(&pr->Wout, f, c) * r.h[c];
            eb[f] = s * it;
            if (bw) {
              idx[3] = f;
              r.gf[f] = (double)*p_at(de, idx) * it;
            }
          }
          if (bw)
            for (int64_t c = 0; c < d; c++) {
              double gh = 0.0;
              for (int64_t f = 0; f < F; f++) {
                gh += r.gf[f] * g2(&pr->Wout, f, c);
                r.gWo[f * d + c] += r.gf[f] * r.h[c];
              }
              double gu = gh * act_grad_ref(p->act, slope, r.u[c], r.h[c]);
              r.gQ1[(b * Tq + i) * d + c] += gu;
              r.gK2[(b * Tk + l) * d + c] += gu;
              r.gbb[b * d + c] += gu;
            }
          if (bw)
            for (int64_t f = 0; f < F; f++) r.gbo[f] += r.gf[f];
        }
        if (!bw)
          for (int64_t f = 0; f < F; f++) {
            idx[3] = f;
            *p_at(e, idx) = (float)eb[f];
          }
      }
  if (!bw) {
    attn__free(mem);
    return ATTN_OK;
  }
  /* Chain the intermediate gradients back to q, k and the parameters. */
  const attn_score_grads gr = grads ? *grads : attn_score_grads_default();
  if (pr->fam == ATTN__SCORE_BILINEAR) {
    for (int64_t b = 0; b < B; b++)
      for (int64_t i = 0; i < Tq; i++) {
        const double *gqt = r.gqt + (b * Tq + i) * dkn;
        double *gq = r.gq + (b * Tq + i) * dqn;
        if (kind == ATTN_SCORE_DOT || kind == ATTN_SCORE_SCALED_DOT) {
          for (int64_t c = 0; c < dkn; c++) gq[c] += gqt[c];
          continue;
        }
        for (int64_t c = 0; c < dkn; c++)
          for (int64_t j = 0; j < dqn; j++) {
            gq[j] += gqt[c] * g2(p->W, c, j);
            r.gW[c * dqn + j] += gqt[c] * g3(q, b, i, j);
          }
        if (kind == ATTN_SCORE_BIASED_GENERAL)
          for (int64_t c = 0; c < dkn; c++) r.gb[c] += gqt[c];
      }
    if (gr.dW) put(gr.dW, r.gW);
    if (gr.db) put(gr.db, r.gb);
  } else if (pr->fam == ATTN__SCORE_LINEAR) {
    if (gr.dW) put(gr.dW, r.gW);
    if (gr.db) put(gr.db, r.gb);
  } else if (pr->fam == ATTN__SCORE_ADD) {
    for (int64_t b = 0; b < B; b++) {
      for (int64_t i = 0; i < Tq && pr->has_wq; i++)
        for (int64_t c = 0; c < d; c++) {
          double g = r.gQ1[(b * Tq + i) * d + c];
          for (int64_t j = 0; j < dqn; j++) {
            r.gq[(b * Tq + i) * dqn + j] += g * g2(&pr->Wq, c, j);
            r.gWq[c * dqn + j] += g * g3(q, b, i, j);
          }
        }
      for (int64_t l = 0; l < Tk; l++)
        for (int64_t c = 0; c < d; c++) {
          double g = r.gK2[(b * Tk + l) * d + c];
          for (int64_t j = 0; j < dkn; j++) {
            r.gk[(b * Tk + l) * dkn + j] += g * g2(&pr->Wk, c, j);
            r.gWk[c * dkn + j] += g * g3(k, b, l, j);
          }
        }
      for (int64_t c = 0; c < d; c++) {
        double g = r.gbb[b * d + c];
        r.gb[c] += g;
        for (int m = 0; m < (kind == ATTN_SCORE_ADDITIVE ? p->n_contexts : 0); m++)
          for (int64_t j = 0; j < p->contexts[m]->shape[1]; j++) {
            int64_t dc = p->contexts[m]->shape[1];
            r.gU[m][c * dc + j] += g * g2(p->contexts[m], b, j);
            r.gc[m][b * dc + j] += g * g2(p->U[m], c, j);
          }
      }
    }
    if (pr->dWq.data) put(&pr->dWq, r.gWq);
    if (pr->dWk.data) put(&pr->dWk, r.gWk);
    if (pr->dWout.data) put(&pr->dWout, r.gWo);
    if (kind == ATTN_SCORE_MULTIDIM && p->bo && gr.dbo) put(gr.dbo, r.gbo);
    if (kind != ATTN_SCORE_CONCAT && p->b && gr.db) put(gr.db, r.gb);
    for (int m = 0; m < (kind == ATTN_SCORE_ADDITIVE ? p->n_contexts : 0); m++) {
      if (gr.dU && gr.dU[m]) put(gr.dU[m], r.gU[m]);
      if (gr.dcontexts && gr.dcontexts[m]) put(gr.dcontexts[m], r.gc[m]);
    }
  }
  if (dq && q) put(dq, r.gq);
  if (dk && k) put(dk, r.gk);
  attn__free(mem);
  return ATTN_OK;
}

attn_status attn_score_forward_ref(const attn_tensor *e, const attn_tensor *q, const attn_tensor *k,
                                   const attn_score_params *params) {
  static const char fn[] = "attn_score_forward_ref";
  attn__clear_error();
  attn__score_problem pr;
  if (!e) return attn__fail(ATTN_STATUS_NULL_POINTER, "%s: e is NULL", fn);
  ATTN__TRY(attn__score_check(fn, &pr, false, e, NULL, NULL, NULL, q, k, params));
  return ref_run(fn, &pr, e, NULL, NULL, NULL, NULL);
}

attn_status attn_score_backward_ref(const attn_tensor *dq, const attn_tensor *dk,
                                    const attn_score_grads *grads, const attn_tensor *de,
                                    const attn_tensor *q, const attn_tensor *k,
                                    const attn_score_params *params) {
  static const char fn[] = "attn_score_backward_ref";
  attn__clear_error();
  attn__score_problem pr;
  ATTN__TRY(attn__score_check(fn, &pr, true, de, dq, dk, grads, q, k, params));
  return ref_run(fn, &pr, NULL, de, dq, dk, grads);
}
