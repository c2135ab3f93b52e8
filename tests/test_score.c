/* Score functions (include/attn/score.h): known values, fast against reference for every kind and
 * activation on several shapes (odd sizes, Tq != Tk, d = 1, padded row strides, zero rows), every
 * ISA and 1/2/3 threads (bitwise equal across thread counts), every gradient of the reference
 * against central finite differences in double, guard bytes, bad inputs, a failing allocator.
 *
 * Tolerances. Fast against reference: the fast path computes in f32 (attn_gemm, a polynomial exp
 * for tanh and sigmoid), the reference in double; |fast - ref| <= 1e-5 (1 + max |ref|) over each
 * output tensor (scores and every gradient). Finite differences on the reference (double inside,
 * f32 outputs) of L = sum e * R with h = 3e-3: rounding noise ~ 6e-8 |e| sqrt(n) / 2h ~ 1e-4,
 * truncation O(h^2); bound 2e-3 (1 + max |g|). relu and leaky relu are not differentiated
 * numerically (a step can cross their kink); their backward is checked against the reference. */
#include "attn/score.h"
#include "common.h"

static bool quick;

enum { S_Q, S_K, S_W, S_B, S_SW, S_W1, S_W2, S_WO, S_BO, S_C0, S_U0, S_C1, S_U1, NS };
static const char *const slot_name[NS] = {"q",  "k",  "W",  "b",  "w",  "W1", "W2",
                                          "Wo", "bo", "c0", "U0", "c1", "U1"};

typedef struct slot {
  bool used;
  t_buf val, grad;
  attn_tensor v, g;
  int64_t n; /* elements of the (unpadded) tensor */
} slot;

typedef struct inst {
  attn_score_params p;
  attn_score_grads gr;
  slot s[NS];
  const attn_tensor *pc[2], *pU[2], *pdc[2], *pdU[2];
  int64_t eshape[4];
  int end;
  int64_t ne;
  t_buf e, e2, de;
  attn_tensor te, te2, tde;
} inst;

static void slot_make(slot *s, int nd, int64_t a, int64_t b, int64_t c, int64_t pad, t_rng *r) {
  int64_t shape[3] = {a, b, c}, last = shape[nd - 1], rows = 1;
  for (int i = 0; i < nd - 1; i++) rows *= shape[i];
  s->used = true;
  s->n = rows * last;
  s->val = t_buf_new(ATTN_DTYPE_F32, rows * (last + pad) + 1);
  t_buf_fill_normal(&s->val, r, 0.7f);
  /* Gradients of 2-d and 3-d operands have padded rows too (1 float, checked untouched). */
  const int64_t gpad = nd >= 2 ? 1 : 0;
  s->grad = t_buf_new(ATTN_DTYPE_F32, rows * (last + gpad) + 1);
  t_buf_fill(&s->grad, 12345.0f);
  s->v = t_view_ld(s->val.data, nd, shape, last + pad);
  s->g = t_view_ld(s->grad.data, nd, shape, last + gpad);
}

/* Element x (row-major over the shape) of a slot's value. */
static float *slot_at(slot *s, int64_t x) {
  const attn_tensor *t = &s->v;
  int64_t last = t->shape[t->ndim - 1];
  int64_t row = x / last, col = x % last;
  return (float *)t->data + row * (t->ndim >= 2 ? t->stride[t->ndim - 2] : 0) + col;
}

static bool uses_q(attn_score_kind k) {
  return k != ATTN_SCORE_LOCATION;
}
static bool uses_k(attn_score_kind k) {
  return k != ATTN_SCORE_LUONG_LOCATION;
}
static bool same_dim(attn_score_kind k) {
  return k == ATTN_SCORE_DOT || k == ATTN_SCORE_SCALED_DOT || k == ATTN_SCORE_COSINE;
}

typedef struct shape_cfg {
  int64_t B, Tq, Tk, dq, dk, d, F;
} shape_cfg;

static void inst_make(inst *I, attn_score_kind kind, attn_score_act act, shape_cfg c, bool optional,
                      int nctx, float temperature, t_rng *r) {
  memset(I, 0, sizeof *I);
  if (same_dim(kind)) c.dk = c.dq;
  attn_score_params *p = &I->p;
  *p = attn_score_params_default();
  p->kind = kind;
  p->act = act;
  p->leaky_slope = 0.1f;
  p->temperature = temperature;
  I->gr = attn_score_grads_default();
  if (uses_q(kind)) slot_make(&I->s[S_Q], 3, c.B, c.Tq, c.dq, 3, r);
  if (uses_k(kind)) slot_make(&I->s[S_K], 3, c.B, c.Tk, c.dk, 2, r);
  switch (kind) {
    case ATTN_SCORE_GENERAL:
      slot_make(&I->s[S_W], 2, c.dk, c.dq, 0, 1, r);
      break;
    case ATTN_SCORE_BIASED_GENERAL:
      slot_make(&I->s[S_W], 2, c.dk, c.dq, 0, 1, r);
      slot_make(&I->s[S_B], 1, c.dk, 0, 0, 0, r);
      break;
    case ATTN_SCORE_ACTIVATED_GENERAL:
      slot_make(&I->s[S_W], 2, c.dk, c.dq, 0, 1, r);
      slot_make(&I->s[S_B], 1, 1, 0, 0, 0, r);
      break;
    case ATTN_SCORE_ADDITIVE:
    case ATTN_SCORE_MULTIDIM:
      slot_make(&I->s[S_W1], 2, c.d, c.dq, 0, 2, r);
      slot_make(&I->s[S_W2], 2, c.d, c.dk, 0, 0, r);
      if (kind == ATTN_SCORE_ADDITIVE)
        slot_make(&I->s[S_SW], 1, c.d, 0, 0, 0, r);
      else
        slot_make(&I->s[S_WO], 2, c.F, c.d, 0, 1, r);
      if (optional) slot_make(&I->s[S_B], 1, c.d, 0, 0, 0, r);
      if (optional && kind == ATTN_SCORE_MULTIDIM) slot_make(&I->s[S_BO], 1, c.F, 0, 0, 0, r);
      if (kind == ATTN_SCORE_ADDITIVE)
        for (int m = 0; m < nctx; m++) {
          slot_make(&I->s[S_C0 + 2 * m], 2, c.B, 2 + m, 0, 1, r);
          slot_make(&I->s[S_U0 + 2 * m], 2, c.d, 2 + m, 0, 0, r);
        }
      break;
    case ATTN_SCORE_CONCAT:
      slot_make(&I->s[S_W], 2, c.d, c.dq + c.dk, 0, 1, r);
      slot_make(&I->s[S_SW], 1, c.d, 0, 0, 0, r);
      break;
    case ATTN_SCORE_LOCATION:
      slot_make(&I->s[S_W], 2, c.d, c.dk, 0, 0, r);
      slot_make(&I->s[S_SW], 1, c.d, 0, 0, 0, r);
      if (optional) slot_make(&I->s[S_B], 1, c.d, 0, 0, 0, r);
      break;
    case ATTN_SCORE_LUONG_LOCATION:
      slot_make(&I->s[S_W], 2, c.Tk, c.dq, 0, 2, r);
      if (optional) slot_make(&I->s[S_B], 1, c.Tk, 0, 0, 0, r);
      break;
    default:
      break;
  }
  slot *s = I->s;
  if (s[S_W].used) p->W = &s[S_W].v, I->gr.dW = &s[S_W].g;
  if (s[S_B].used) p->b = &s[S_B].v, I->gr.db = &s[S_B].g;
  if (s[S_SW].used) p->w = &s[S_SW].v, I->gr.dw = &s[S_SW].g;
  if (s[S_W1].used) p->W1 = &s[S_W1].v, I->gr.dW1 = &s[S_W1].g;
  if (s[S_W2].used) p->W2 = &s[S_W2].v, I->gr.dW2 = &s[S_W2].g;
  if (s[S_WO].used) p->Wo = &s[S_WO].v, I->gr.dWo = &s[S_WO].g;
  if (s[S_BO].used) p->bo = &s[S_BO].v, I->gr.dbo = &s[S_BO].g;
  if (kind == ATTN_SCORE_ADDITIVE && nctx > 0) {
    for (int m = 0; m < nctx; m++) {
      I->pc[m] = &s[S_C0 + 2 * m].v;
      I->pU[m] = &s[S_U0 + 2 * m].v;
      I->pdc[m] = &s[S_C0 + 2 * m].g;
      I->pdU[m] = &s[S_U0 + 2 * m].g;
    }
    p->n_contexts = nctx;
    p->contexts = I->pc;
    p->U = I->pU;
    I->gr.dcontexts = I->pdc;
    I->gr.dU = I->pdU;
  }
  I->end = kind == ATTN_SCORE_MULTIDIM ? 4 : 3;
  I->eshape[0] = c.B;
  I->eshape[1] = kind == ATTN_SCORE_LOCATION ? 1 : c.Tq;
  I->eshape[2] = c.Tk;
  I->eshape[3] = c.F;
  I->ne = I->eshape[0] * I->eshape[1] * I->eshape[2] * (I->end == 4 ? c.F : 1);
  /* The fast path's e and de have padded rows (2 floats after each row of the last dim); the
   * reference's e2 is contiguous. */
  const int64_t last = I->eshape[I->end - 1], rows = last ? I->ne / last : 0;
  I->e = t_buf_new(ATTN_DTYPE_F32, rows * (last + 2) + 1);
  I->e2 = t_buf_new(ATTN_DTYPE_F32, I->ne + 1);
  I->de = t_buf_new(ATTN_DTYPE_F32, rows * (last + 2) + 1);
  t_buf_fill(&I->e, 777.0f);
  t_buf_fill(&I->e2, 777.0f);
  t_buf_fill_normal(&I->de, r, 1.0f);
  I->te = t_view_ld(I->e.data, I->end, I->eshape, last + 2);
  I->te2 = t_view_ld(I->e2.data, I->end, I->eshape, last);
  I->tde = t_view_ld(I->de.data, I->end, I->eshape, last + 2);
}

static void inst_free(inst *I) {
  for (int i = 0; i < NS; i++)
    if (I->s[i].used) {
      t_buf_free(&I->s[i].val);
      t_buf_free(&I->s[i].grad);
    }
  t_buf_free(&I->e);
  t_buf_free(&I->e2);
  t_buf_free(&I->de);
}

/* The elements of a (padded) view in row-major order. */
static float *gather(const attn_tensor *t, int64_t n) {
  float *o = malloc((size_t)(n + 1) * sizeof(float));
  const int64_t last = t->shape[t->ndim - 1], ld = t->ndim >= 2 ? t->stride[t->ndim - 2] : last;
  for (int64_t x = 0; x < n; x++) o[x] = ((const float *)t->data)[(x / last) * ld + x % last];
  return o;
}

static const attn_tensor *Q(inst *I) {
  return I->s[S_Q].used ? &I->s[S_Q].v : NULL;
}
static const attn_tensor *K(inst *I) {
  return I->s[S_K].used ? &I->s[S_K].v : NULL;
}
static const attn_tensor *DQ(inst *I) {
  return I->s[S_Q].used ? &I->s[S_Q].g : NULL;
}
static const attn_tensor *DK(inst *I) {
  return I->s[S_K].used ? &I->s[S_K].g : NULL;
}

static attn_status bwd(inst *I, bool fast) {
  if (fast) return attn_score_backward(DQ(I), DK(I), &I->gr, &I->tde, Q(I), K(I), &I->p, NULL, 0);
  return attn_score_backward_ref(DQ(I), DK(I), &I->gr, &I->tde, Q(I), K(I), &I->p);
}

/* Copies of every gradient, slot after slot. */
static float *grads_copy(inst *I) {
  int64_t n = 0;
  for (int i = 0; i < NS; i++) n += I->s[i].used ? I->s[i].n : 0;
  float *g = malloc((size_t)(n + 1) * sizeof(float)), *o = g;
  for (int i = 0; i < NS; i++)
    if (I->s[i].used) {
      float *gi = gather(&I->s[i].g, I->s[i].n);
      memcpy(o, gi, (size_t)I->s[i].n * sizeof(float));
      free(gi);
      o += I->s[i].n;
    }
  return g;
}

static double max_abs(const float *a, int64_t n) {
  double m = 0.0;
  for (int64_t i = 0; i < n; i++) m = fmax(m, fabs((double)a[i]));
  return m;
}

/* |a - b| <= tol (1 + max |b|) over n elements; returns the worst ratio. */
static bool close_to(const char *what, const char *ctx, const float *a, const float *b, int64_t n,
                     double tol) {
  double bound = tol * (1.0 + max_abs(b, n));
  for (int64_t i = 0; i < n; i++) {
    double diff = fabs((double)a[i] - (double)b[i]);
    if (!(diff <= bound)) {
      CHECK(false, "%s %s: [%lld] fast %.9g ref %.9g (bound %.3g)", ctx, what, (long long)i,
            (double)a[i], (double)b[i], bound);
      return false;
    }
  }
  t_checks++;
  return true;
}

static const char *act_name(attn_score_act a) {
  static const char *const n[] = {"identity", "tanh", "relu", "sigmoid", "leaky_relu"};
  return n[a];
}

static bool has_act(attn_score_kind k) {
  return k == ATTN_SCORE_ACTIVATED_GENERAL || k == ATTN_SCORE_ADDITIVE ||
         k == ATTN_SCORE_LOCATION || k == ATTN_SCORE_MULTIDIM;
}

static bool guards_ok(inst *I) {
  bool ok = t_buf_guard_ok(&I->e) && t_buf_guard_ok(&I->e2);
  for (int i = 0; i < NS; i++)
    if (I->s[i].used) ok = ok && t_buf_guard_ok(&I->s[i].grad) && t_buf_guard_ok(&I->s[i].val);
  return ok;
}

/* ---- known values ---------------------------------------------------------------------------- */

static void test_known_values(void) {
  /* q = (1, 2), k0 = (3, 4), k1 = (-2, 1): dot 11 and 0; scaled 11/sqrt2; cosine 11/(sqrt5 5) and
   * 0; general with W = [[1, 0], [1, 1]]: Wq = (1, 3), e = 15 and 1. */
  float q[2] = {1, 2}, k[4] = {3, 4, -2, 1}, W[4] = {1, 0, 1, 1}, e[2], e2[2];
  int64_t sq[3] = {1, 1, 2}, sk[3] = {1, 2, 2}, se[3] = {1, 1, 2}, sw[2] = {2, 2};
  attn_tensor tq = attn_tensor_make(q, ATTN_DTYPE_F32, 3, sq),
              tk = attn_tensor_make(k, ATTN_DTYPE_F32, 3, sk),
              te = attn_tensor_make(e, ATTN_DTYPE_F32, 3, se),
              te2 = attn_tensor_make(e2, ATTN_DTYPE_F32, 3, se),
              tw = attn_tensor_make(W, ATTN_DTYPE_F32, 2, sw);
  struct {
    attn_score_kind kind;
    float T, want0, want1;
  } cases[] = {
      {ATTN_SCORE_DOT, 1.0f, 11.0f, 0.0f},
      {ATTN_SCORE_DOT, 2.0f, 5.5f, 0.0f},
      {ATTN_SCORE_SCALED_DOT, 1.0f, 11.0f / sqrtf(2.0f), 0.0f},
      {ATTN_SCORE_COSINE, 0.5f, 2.0f * 11.0f / (sqrtf(5.0f) * 5.0f), 0.0f},
      {ATTN_SCORE_GENERAL, 1.0f, 15.0f, 1.0f},
  };
  for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
    attn_score_params p = attn_score_params_default();
    p.kind = cases[c].kind;
    p.temperature = cases[c].T;
    p.W = &tw;
    CHECK_OK(attn_score_forward(&te, &tq, &tk, &p, NULL, 0));
    CHECK_OK(attn_score_forward_ref(&te2, &tq, &tk, &p));
    CHECK(fabsf(e[0] - cases[c].want0) < 1e-5f && fabsf(e[1] - cases[c].want1) < 1e-5f,
          "%s: e = (%g, %g), want (%g, %g)", attn_score_kind_name(p.kind), (double)e[0],
          (double)e[1], (double)cases[c].want0, (double)cases[c].want1);
    CHECK(fabsf(e2[0] - cases[c].want0) < 1e-6f && fabsf(e2[1] - cases[c].want1) < 1e-6f,
          "%s ref: e = (%g, %g)", attn_score_kind_name(p.kind), (double)e2[0], (double)e2[1]);
  }
  /* Additive with d = 1: e = w tanh(W1 q + W2 k + b) = 2 tanh(0.5 * 1 - 1 * 3 + 0.25). */
  {
    float w1[2] = {0.5f, 0.0f}, w2[2] = {-1.0f, 0.0f}, w[1] = {2.0f}, b[1] = {0.25f};
    int64_t s12[2] = {1, 2}, s1[1] = {1};
    attn_tensor tw1 = attn_tensor_make(w1, ATTN_DTYPE_F32, 2, s12),
                tw2 = attn_tensor_make(w2, ATTN_DTYPE_F32, 2, s12),
                tsw = attn_tensor_make(w, ATTN_DTYPE_F32, 1, s1),
                tb = attn_tensor_make(b, ATTN_DTYPE_F32, 1, s1);
    attn_score_params p = attn_score_params_default();
    p.kind = ATTN_SCORE_ADDITIVE;
    p.W1 = &tw1;
    p.W2 = &tw2;
    p.w = &tsw;
    p.b = &tb;
    CHECK_OK(attn_score_forward(&te, &tq, &tk, &p, NULL, 0));
    double want0 = 2.0 * tanh(0.5 - 3.0 + 0.25), want1 = 2.0 * tanh(0.5 + 2.0 + 0.25);
    CHECK(fabs(e[0] - want0) < 2e-6 && fabs(e[1] - want1) < 2e-6, "additive: e = (%g, %g)",
          (double)e[0], (double)e[1]);
  }
  /* Cosine of a zero vector is 0, with finite gradients. */
  {
    float z[2] = {0, 0}, dz[2], dkk[4], g[2] = {1, 1};
    attn_tensor tz = attn_tensor_make(z, ATTN_DTYPE_F32, 3, sq),
                tdz = attn_tensor_make(dz, ATTN_DTYPE_F32, 3, sq),
                tdk = attn_tensor_make(dkk, ATTN_DTYPE_F32, 3, sk),
                tg = attn_tensor_make(g, ATTN_DTYPE_F32, 3, se);
    attn_score_params p = attn_score_params_default();
    p.kind = ATTN_SCORE_COSINE;
    CHECK_OK(attn_score_forward(&te, &tz, &tk, &p, NULL, 0));
    CHECK(e[0] == 0.0f && e[1] == 0.0f, "cosine of 0: (%g, %g)", (double)e[0], (double)e[1]);
    CHECK_OK(attn_score_backward(&tdz, &tdk, NULL, &tg, &tz, &tk, &p, NULL, 0));
    CHECK(isfinite(dz[0]) && isfinite(dz[1]) && dkk[0] == 0.0f, "cosine of 0: gradients %g %g %g",
          (double)dz[0], (double)dz[1], (double)dkk[0]);
  }
}

/* ---- fast against reference ------------------------------------------------------------------ */

static const shape_cfg shapes[] = {
    {2, 3, 5, 4, 5, 6, 3}, {1, 1, 1, 1, 1, 1, 1}, {3, 7, 33, 17, 9, 19, 5},  {2, 4, 3, 1, 2, 1, 2},
    {1, 0, 4, 3, 3, 3, 2}, {0, 2, 2, 2, 2, 2, 2}, {2, 17, 6, 40, 24, 37, 1},
};

static void one_fast_vs_ref(attn_score_kind kind, attn_score_act act, shape_cfg c, bool optional,
                            int nctx, uint64_t seed) {
  t_rng r = t_rng_make(seed);
  inst I;
  inst_make(&I, kind, act, c, optional, nctx, 0.7f, &r);
  char ctx[160];
  snprintf(ctx, sizeof ctx,
           "%s/%s B%lld Tq%lld Tk%lld dq%lld dk%lld d%lld F%lld opt%d ctx%d isa %s thr %d",
           attn_score_kind_name(kind), act_name(act), (long long)c.B, (long long)c.Tq,
           (long long)c.Tk, (long long)c.dq, (long long)c.dk, (long long)c.d, (long long)c.F,
           optional, nctx, attn_isa_name(attn_get_isa()), attn_get_num_threads());
  CHECK_OK(attn_score_forward_ref(&I.te2, Q(&I), K(&I), &I.p));
  CHECK_OK(bwd(&I, false));
  float *gref = grads_copy(&I);
  /* Threads 1, 2, 3: the same bits. */
  float *e1 = NULL, *g1 = NULL;
  for (int th = 1; th <= 3; th++) {
    CHECK_OK(attn_set_num_threads(th));
    t_buf_fill(&I.e, 777.0f);
    CHECK_OK(attn_score_forward(&I.te, Q(&I), K(&I), &I.p, NULL, 0));
    CHECK_OK(bwd(&I, true));
    float *g = grads_copy(&I);
    int64_t ng = 0;
    for (int i = 0; i < NS; i++) ng += I.s[i].used ? I.s[i].n : 0;
    if (th == 1) {
      float *eg = gather(&I.te, I.ne);
      close_to("e", ctx, eg, (const float *)I.e2.data, I.ne, 1e-5);
      free(eg);
      int64_t off = 0;
      for (int i = 0; i < NS; i++)
        if (I.s[i].used) {
          char what[32];
          snprintf(what, sizeof what, "d%s", slot_name[i]);
          close_to(what, ctx, g + off, gref + off, I.s[i].n, 1e-5);
          off += I.s[i].n;
        }
      e1 = gather(&I.te, I.ne);
      g1 = g;
    } else {
      float *eg = gather(&I.te, I.ne);
      CHECK(memcmp(e1, eg, (size_t)I.ne * sizeof(float)) == 0, "%s: e differs at %d threads", ctx,
            th);
      CHECK(memcmp(g1, g, (size_t)ng * sizeof(float)) == 0, "%s: grads differ at %d threads", ctx,
            th);
      free(eg);
      free(g);
    }
  }
  CHECK(guards_ok(&I), "%s: guard bytes", ctx);
  {
    const int64_t last = I.eshape[I.end - 1];
    bool pad_ok = true;
    for (int64_t x = 0; last && x < I.e.n - 1; x++)
      if (x % (last + 2) >= last) pad_ok &= ((float *)I.e.data)[x] == 777.0f;
    CHECK(pad_ok, "%s: the padding between rows of e was written", ctx);
    for (int i = 0; i < NS; i++) {
      const slot *sl = &I.s[i];
      if (!sl->used || sl->g.ndim < 2) continue;
      const int64_t gl = sl->g.shape[sl->g.ndim - 1];
      bool ok = true;
      for (int64_t x = 0; x < sl->grad.n - 1; x++)
        if (x % (gl + 1) == gl) ok &= ((const float *)sl->grad.data)[x] == 12345.0f;
      CHECK(ok, "%s: the padding between rows of d%s was written", ctx, slot_name[i]);
    }
  }
  free(e1);
  free(g1);
  free(gref);
  inst_free(&I);
}

static void test_fast_vs_ref(void) {
  int saved = attn_get_num_threads();
  uint64_t seed = 1;
  for (int isa = 0; isa <= 2; isa++) {
    if (!attn_cpu_supports((attn_isa)isa)) continue;
    CHECK_OK(attn_set_isa((attn_isa)isa));
    for (int kind = 0; kind <= ATTN_SCORE_MULTIDIM; kind++)
      for (int act = 0; act <= ATTN_SCORE_ACT_LEAKY_RELU; act++) {
        if (!has_act((attn_score_kind)kind) && act != ATTN_SCORE_ACT_TANH) continue;
        for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
          if (quick && s >= 3 && s != 6) continue;
          if (quick && isa != 2 && s > 0) continue;
          bool optional = (s % 2) == 0;
          int nctx = kind == ATTN_SCORE_ADDITIVE ? (int)(s % 3) : 0;
          one_fast_vs_ref((attn_score_kind)kind, (attn_score_act)act, shapes[s], optional, nctx,
                          seed++);
        }
      }
  }
  CHECK_OK(attn_set_isa(attn_cpu_best_isa()));
  CHECK_OK(attn_set_num_threads(saved));
}

/* ---- finite differences of the reference ------------------------------------------------------
 */

static double loss(inst *I) {
  CHECK_OK(attn_score_forward_ref(&I->te2, Q(I), K(I), &I->p));
  float *de = gather(&I->tde, I->ne);
  double s = 0.0;
  for (int64_t x = 0; x < I->ne; x++) s += (double)((float *)I->e2.data)[x] * (double)de[x];
  free(de);
  return s;
}

static void test_finite_differences(void) {
  const shape_cfg c = {2, 3, 4, 3, 2, 5, 3};
  uint64_t seed = 100;
  for (int kind = 0; kind <= ATTN_SCORE_MULTIDIM; kind++)
    for (int act = 0; act <= ATTN_SCORE_ACT_SIGMOID; act++) {
      if (act == ATTN_SCORE_ACT_RELU) continue;
      if (!has_act((attn_score_kind)kind) && act != ATTN_SCORE_ACT_TANH) continue;
      t_rng r = t_rng_make(seed++);
      inst I;
      inst_make(&I, (attn_score_kind)kind, (attn_score_act)act, c, true,
                kind == ATTN_SCORE_ADDITIVE ? 2 : 0, 1.3f, &r);
      CHECK_OK(bwd(&I, false));
      const double h = 3e-3;
      for (int i = 0; i < NS; i++) {
        if (!I.s[i].used) continue;
        float *g = gather(&I.s[i].g, I.s[i].n);
        double bound = 2e-3 * (1.0 + max_abs(g, I.s[i].n));
        for (int64_t x = 0; x < I.s[i].n; x++) {
          float *v = slot_at(&I.s[i], x), keep = *v;
          *v = keep + (float)h;
          double lp = loss(&I);
          *v = keep - (float)h;
          double lm = loss(&I);
          *v = keep;
          double num = (lp - lm) / (2.0 * h);
          CHECK(fabs(num - (double)g[x]) <= bound, "%s/%s: d%s[%lld] = %.6g, numeric %.6g",
                attn_score_kind_name((attn_score_kind)kind), act_name((attn_score_act)act),
                slot_name[i], (long long)x, (double)g[x], num);
        }
        free(g);
      }
      inst_free(&I);
    }
}

/* ---- bad inputs ------------------------------------------------------------------------------ */

/* ADDITIVE with the most contexts the header allows, every gradient wanted: 38 outputs and 37
 * inputs go through the aliasing checks (the validator once kept room for 32 outputs only). The
 * fast and reference backward must succeed and agree. */
static void test_max_contexts(void) {
  enum { M = ATTN_SCORE_MAX_CONTEXTS, B = 2, TQ = 3, TK = 4, DQ = 3, DK = 2, D = 4 };
  t_rng r = t_rng_make(77);
  float q[B * TQ * DQ], k[B * TK * DK], W1[D * DQ], W2[D * DK], w[D], b[D], de[B * TQ * TK];
  float *all[] = {q, k, W1, W2, w, b, de};
  const int n_all[] = {B * TQ * DQ, B * TK * DK, D * DQ, D * DK, D, D, B * TQ * TK};
  for (int i = 0; i < 7; i++)
    for (int j = 0; j < n_all[i]; j++) all[i][j] = 0.5f * t_normal(&r);
  float cv[M][B * 3], uv[M][D * 3], gbuf[2][2 * M + 6][B * TK * 4];
  attn_tensor tc[M], tu[M], tdc[2][M], tdu[2][M];
  const attn_tensor *pc[M], *pu[M], *pdc[2][M], *pdu[2][M];
  for (int m = 0; m < M; m++) {
    const int64_t dc = 1 + m % 3;
    for (int j = 0; j < B * dc; j++) cv[m][j] = t_normal(&r);
    for (int j = 0; j < D * dc; j++) uv[m][j] = 0.3f * t_normal(&r);
    tc[m] = t_view_ld(cv[m], 2, (int64_t[2]){B, dc}, dc);
    tu[m] = t_view_ld(uv[m], 2, (int64_t[2]){D, dc}, dc);
    pc[m] = &tc[m];
    pu[m] = &tu[m];
    for (int f = 0; f < 2; f++) {
      tdc[f][m] = t_view_ld(gbuf[f][2 * m], 2, (int64_t[2]){B, dc}, dc);
      tdu[f][m] = t_view_ld(gbuf[f][2 * m + 1], 2, (int64_t[2]){D, dc}, dc);
      pdc[f][m] = &tdc[f][m];
      pdu[f][m] = &tdu[f][m];
    }
  }
  attn_tensor tq = t_view_ld(q, 3, (int64_t[3]){B, TQ, DQ}, DQ);
  attn_tensor tk = t_view_ld(k, 3, (int64_t[3]){B, TK, DK}, DK);
  attn_tensor tW1 = t_view_ld(W1, 2, (int64_t[2]){D, DQ}, DQ);
  attn_tensor tW2 = t_view_ld(W2, 2, (int64_t[2]){D, DK}, DK);
  attn_tensor tw = t_vec(w, D), tb = t_vec(b, D);
  attn_tensor tde = t_view_ld(de, 3, (int64_t[3]){B, TQ, TK}, TK);
  attn_score_params p = attn_score_params_default();
  p.kind = ATTN_SCORE_ADDITIVE;
  p.W1 = &tW1;
  p.W2 = &tW2;
  p.w = &tw;
  p.b = &tb;
  p.n_contexts = M;
  p.contexts = pc;
  p.U = pu;
  attn_tensor g[2][6];
  for (int f = 0; f < 2; f++) {
    float *const *base =
        (float *const[6]){gbuf[f][2 * M],     gbuf[f][2 * M + 1], gbuf[f][2 * M + 2],
                          gbuf[f][2 * M + 3], gbuf[f][2 * M + 4], gbuf[f][2 * M + 5]};
    g[f][0] = t_view_ld(base[0], 3, (int64_t[3]){B, TQ, DQ}, DQ);
    g[f][1] = t_view_ld(base[1], 3, (int64_t[3]){B, TK, DK}, DK);
    g[f][2] = t_view_ld(base[2], 2, (int64_t[2]){D, DQ}, DQ);
    g[f][3] = t_view_ld(base[3], 2, (int64_t[2]){D, DK}, DK);
    g[f][4] = t_vec(base[4], D);
    g[f][5] = t_vec(base[5], D);
  }
  memset(gbuf, 0, sizeof gbuf);
  for (int f = 0; f < 2; f++) {
    attn_score_grads gr = attn_score_grads_default();
    gr.dW1 = &g[f][2];
    gr.dW2 = &g[f][3];
    gr.dw = &g[f][4];
    gr.db = &g[f][5];
    gr.dcontexts = pdc[f];
    gr.dU = pdu[f];
    if (f == 0)
      CHECK_OK(attn_score_backward(&g[f][0], &g[f][1], &gr, &tde, &tq, &tk, &p, NULL, 0));
    else
      CHECK_OK(attn_score_backward_ref(&g[f][0], &g[f][1], &gr, &tde, &tq, &tk, &p));
  }
  double worst = 0, big = 0;
  for (size_t i = 0; i < sizeof gbuf[0] / sizeof(float); i++) {
    const float a = (&gbuf[0][0][0])[i], c = (&gbuf[1][0][0])[i];
    worst = fmax(worst, fabs((double)a - c));
    big = fmax(big, fabs((double)c));
  }
  CHECK(big > 0.1 && worst <= 1e-5 * (1 + big), "%d contexts: fast vs ref %g (max |ref| %g)", M,
        worst, big);
}

static void test_bad_inputs(void) {
  t_rng r = t_rng_make(7);
  const shape_cfg c = {2, 3, 4, 3, 3, 5, 2};
  inst I;
  inst_make(&I, ATTN_SCORE_GENERAL, ATTN_SCORE_ACT_TANH, c, false, 0, 1.0f, &r);
  const attn_tensor *q = Q(&I), *k = K(&I);
  attn_score_params p = I.p;
  t_buf_fill(&I.e, 5.0f);
  /* Missing W, named. */
  p.W = NULL;
  CHECK_STATUS(attn_score_forward(&I.te, q, k, &p, NULL, 0), ATTN_STATUS_NULL_POINTER);
  CHECK(strstr(attn_last_error(), "params->W") != NULL, "message: %s", attn_last_error());
  CHECK_STATUS(attn_score_forward_ref(&I.te, q, k, &p), ATTN_STATUS_NULL_POINTER);
  /* Misshaped W. */
  int64_t bad_shape[2] = {3, 4};
  attn_tensor bad = attn_tensor_make(I.s[S_W].val.data, ATTN_DTYPE_F32, 2, bad_shape);
  p = I.p;
  p.W = &bad;
  CHECK_STATUS(attn_score_forward(&I.te, q, k, &p, NULL, 0), ATTN_STATUS_SHAPE_MISMATCH);
  CHECK(strstr(attn_last_error(), "params->W") != NULL, "message: %s", attn_last_error());
  /* Temperature <= 0, NaN. */
  p = I.p;
  p.temperature = 0.0f;
  CHECK_STATUS(attn_score_forward(&I.te, q, k, &p, NULL, 0), ATTN_STATUS_INVALID_ARGUMENT);
  p.temperature = -1.0f;
  CHECK_STATUS(attn_score_forward(&I.te, q, k, &p, NULL, 0), ATTN_STATUS_INVALID_ARGUMENT);
  p.temperature = NAN;
  CHECK_STATUS(attn_score_backward(NULL, NULL, NULL, &I.tde, q, k, &p, NULL, 0),
               ATTN_STATUS_INVALID_ARGUMENT);
  /* Unknown kind and act. */
  p = I.p;
  p.kind = (attn_score_kind)99;
  CHECK_STATUS(attn_score_forward(&I.te, q, k, &p, NULL, 0), ATTN_STATUS_INVALID_ARGUMENT);
  p = I.p;
  p.act = (attn_score_act)9;
  CHECK_STATUS(attn_score_forward(&I.te, q, k, &p, NULL, 0), ATTN_STATUS_INVALID_ARGUMENT);
  /* NULLs. */
  CHECK_STATUS(attn_score_forward(NULL, q, k, &I.p, NULL, 0), ATTN_STATUS_NULL_POINTER);
  CHECK_STATUS(attn_score_forward(&I.te, NULL, k, &I.p, NULL, 0), ATTN_STATUS_NULL_POINTER);
  CHECK_STATUS(attn_score_forward(&I.te, q, NULL, &I.p, NULL, 0), ATTN_STATUS_NULL_POINTER);
  CHECK_STATUS(attn_score_forward(&I.te, q, k, NULL, NULL, 0), ATTN_STATUS_NULL_POINTER);
  CHECK_STATUS(attn_score_backward(NULL, NULL, NULL, NULL, q, k, &I.p, NULL, 0),
               ATTN_STATUS_NULL_POINTER);
  /* Wrong e shape, wrong batch of k, wrong dtype. */
  attn_tensor te = I.te;
  te.shape[2] = 5;
  CHECK_STATUS(attn_score_forward(&te, q, k, &I.p, NULL, 0), ATTN_STATUS_SHAPE_MISMATCH);
  attn_tensor tk = *k;
  tk.shape[0] = 1;
  CHECK_STATUS(attn_score_forward(&I.te, q, &tk, &I.p, NULL, 0), ATTN_STATUS_SHAPE_MISMATCH);
  tk = *k;
  tk.dtype = ATTN_DTYPE_F16;
  CHECK_STATUS(attn_score_forward(&I.te, q, &tk, &I.p, NULL, 0), ATTN_STATUS_UNSUPPORTED_DTYPE);
  tk = *k;
  tk.stride[2] = 2;
  CHECK_STATUS(attn_score_forward(&I.te, q, &tk, &I.p, NULL, 0), ATTN_STATUS_BAD_STRIDE);
  /* dot needs dq == dk. */
  p = I.p;
  p.kind = ATTN_SCORE_DOT;
  tk = *k;
  tk.shape[2] = 2;
  CHECK_STATUS(attn_score_forward(&I.te, q, &tk, &p, NULL, 0), ATTN_STATUS_SHAPE_MISMATCH);
  /* Aliasing: e over q; a gradient over an input. */
  attn_tensor ta = I.te;
  ta.data = q->data;
  CHECK_STATUS(attn_score_forward(&ta, q, k, &I.p, NULL, 0), ATTN_STATUS_ALIASING);
  attn_score_grads g = I.gr;
  attn_tensor gw = I.s[S_W].g;
  gw.data = I.s[S_W].val.data;
  g.dW = &gw;
  CHECK_STATUS(attn_score_backward(NULL, NULL, &g, &I.tde, q, k, &I.p, NULL, 0),
               ATTN_STATUS_ALIASING);
  /* Workspace too small. */
  size_t need = 0;
  CHECK_OK(attn_score_workspace_size(&need, 1, q, k, &I.p));
  CHECK(need > 0, "general backward needs a workspace");
  void *ws = aligned_alloc(64, (need + 63) / 64 * 64);
  CHECK_STATUS(attn_score_backward(DQ(&I), DK(&I), &I.gr, &I.tde, q, k, &I.p, ws, need - 4),
               ATTN_STATUS_WORKSPACE_TOO_SMALL);
  CHECK_OK(attn_score_backward(DQ(&I), DK(&I), &I.gr, &I.tde, q, k, &I.p, ws, need));
  free(ws);
  /* Additive: missing w, contexts without U. */
  inst A;
  inst_make(&A, ATTN_SCORE_ADDITIVE, ATTN_SCORE_ACT_TANH, c, true, 1, 1.0f, &r);
  p = A.p;
  p.w = NULL;
  CHECK_STATUS(attn_score_forward(&A.te, Q(&A), K(&A), &p, NULL, 0), ATTN_STATUS_NULL_POINTER);
  CHECK(strstr(attn_last_error(), "params->w") != NULL, "message: %s", attn_last_error());
  p = A.p;
  p.U = NULL;
  CHECK_STATUS(attn_score_forward(&A.te, Q(&A), K(&A), &p, NULL, 0), ATTN_STATUS_NULL_POINTER);
  attn_tensor badU = *A.pU[0];
  badU.shape[1] = 1;
  const attn_tensor *pbu[1] = {&badU};
  p = A.p;
  p.U = pbu;
  CHECK_STATUS(attn_score_forward(&A.te, Q(&A), K(&A), &p, NULL, 0), ATTN_STATUS_SHAPE_MISMATCH);
  CHECK(strstr(attn_last_error(), "params->U[0]") != NULL, "message: %s", attn_last_error());
  p = A.p;
  p.n_contexts = 17;
  CHECK_STATUS(attn_score_forward(&A.te, Q(&A), K(&A), &p, NULL, 0), ATTN_STATUS_INVALID_ARGUMENT);
  /* Outputs untouched by every failure above. */
  bool untouched = true;
  for (int64_t x = 0; x < I.e.n; x++) untouched &= ((float *)I.e.data)[x] == 5.0f;
  CHECK(untouched, "e written by a failing call");
  inst_free(&A);
  inst_free(&I);
}

/* ---- failing allocator ----------------------------------------------------------------------- */

static void test_failing_allocator(void) {
  const shape_cfg c = {2, 3, 4, 3, 3, 5, 2};
  for (int kind = 0; kind <= ATTN_SCORE_MULTIDIM; kind++)
    for (int which = 0; which < 4; which++) {
      t_rng r = t_rng_make(50 + (uint64_t)kind);
      inst I;
      inst_make(&I, (attn_score_kind)kind, ATTN_SCORE_ACT_TANH, c, true,
                kind == ATTN_SCORE_ADDITIVE ? 1 : 0, 1.0f, &r);
      t_buf_fill(&I.e, 5.0f);
      float *gkeep = grads_copy(&I);
      for (int64_t fail_at = 1; fail_at < 200; fail_at++) {
        t_alloc_install(fail_at);
        attn_status st = which == 0   ? attn_score_forward(&I.te, Q(&I), K(&I), &I.p, NULL, 0)
                         : which == 1 ? bwd(&I, true)
                         : which == 2 ? attn_score_forward_ref(&I.te, Q(&I), K(&I), &I.p)
                                      : bwd(&I, false);
        int64_t live = t_alloc_live();
        t_alloc_uninstall();
        CHECK(st == ATTN_OK || st == ATTN_STATUS_OUT_OF_MEMORY, "%s case %d at %lld: %s",
              attn_score_kind_name((attn_score_kind)kind), which, (long long)fail_at,
              attn_status_str(st));
        CHECK(live == 0, "%s case %d at %lld: %lld blocks leaked",
              attn_score_kind_name((attn_score_kind)kind), which, (long long)fail_at,
              (long long)live);
        if (fail_at == 1 && st != ATTN_OK) {
          /* The first allocation is the workspace (or the reference's scratch): nothing written. */
          bool same = true;
          if (which % 2 == 0)
            for (int64_t x = 0; x < I.e.n; x++) same &= ((float *)I.e.data)[x] == 5.0f;
          else {
            float *g = grads_copy(&I);
            int64_t ng = 0;
            for (int i = 0; i < NS; i++) ng += I.s[i].used ? I.s[i].n : 0;
            same = memcmp(g, gkeep, (size_t)ng * sizeof(float)) == 0;
            free(g);
          }
          CHECK(same, "%s case %d: output written on OUT_OF_MEMORY",
                attn_score_kind_name((attn_score_kind)kind), which);
        }
        if (st == ATTN_OK) break;
      }
      free(gkeep);
      inst_free(&I);
    }
}

int main(void) {
  quick = getenv("ATTN_TEST_QUICK") != NULL;
  test_known_values();
  test_fast_vs_ref();
  test_finite_differences();
  test_max_contexts();
  test_bad_inputs();
  test_failing_allocator();
  return t_finish("test_score");
}
