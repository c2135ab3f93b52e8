/* attn_nn_score (attn/nn.h): a finite-difference gradient check of every score kind through the
 * training layer, gradients accumulating (+=) into q, k and every parameter, and errors.
 *
 * Each case builds e = attn_nn_score(q, k, spec) in f32 on small random inputs and takes
 * L = sum_i r_i e_i with a fixed random r, accumulated in double. The analytic gradient comes from
 * attn_backward_from(e, r); the numerical one is the central difference with h = 1e-2 (the step
 * actually representable in f32). Tolerance, as in test_nn_grad: |analytic - numeric| <=
 * 3e-3 + 3e-2 |numeric| per element (the f32 forward's round-off divided by h dominates; a wrong
 * backward misses by O(1)). Activations are the smooth ones (tanh, sigmoid, identity). */
#include "attn/nn.h"
#include "common.h"

enum { P_Q, P_K, P_W, P_B, P_SW, P_W1, P_W2, P_WO, P_BO, P_C0, P_U0, NP };
static const char *const pname[NP] = {"q", "k", "W", "b", "w", "W1", "W2", "Wo", "bo", "c0", "U0"};

typedef struct gcase {
  attn_var *v[NP];
  attn_nn_score_spec spec;
  attn_var *ctxs[1], *us[1];
} gcase;

static attn_var *mk(t_rng *r, int nd, int64_t a, int64_t b, int64_t c, const char *name) {
  int64_t shape[3] = {a, b, c};
  attn_var *p = attn_nn_param_new(nd, shape, name);
  for (int64_t i = 0; i < p->numel; i++) p->data[i] = 0.8f * t_normal(r);
  return p;
}

static void case_make(gcase *g, attn_score_kind kind, attn_score_act act, t_rng *r) {
  memset(g, 0, sizeof *g);
  const int64_t B = 2, Tq = 3, Tk = 4, dq = 3, d = 4, F = 2;
  const int64_t dk =
      (kind == ATTN_SCORE_DOT || kind == ATTN_SCORE_SCALED_DOT || kind == ATTN_SCORE_COSINE) ? dq
                                                                                             : 2;
  g->spec = attn_nn_score_spec_default(kind);
  g->spec.act = act;
  g->spec.temperature = 0.8f;
  if (kind != ATTN_SCORE_LOCATION) g->v[P_Q] = mk(r, 3, B, Tq, dq, "q");
  if (kind != ATTN_SCORE_LUONG_LOCATION) g->v[P_K] = mk(r, 3, B, Tk, dk, "k");
  switch (kind) {
    case ATTN_SCORE_GENERAL:
      g->v[P_W] = mk(r, 2, dk, dq, 0, "W");
      break;
    case ATTN_SCORE_BIASED_GENERAL:
      g->v[P_W] = mk(r, 2, dk, dq, 0, "W");
      g->v[P_B] = mk(r, 1, dk, 0, 0, "b");
      break;
    case ATTN_SCORE_ACTIVATED_GENERAL:
      g->v[P_W] = mk(r, 2, dk, dq, 0, "W");
      g->v[P_B] = mk(r, 1, 1, 0, 0, "b");
      break;
    case ATTN_SCORE_ADDITIVE:
      g->v[P_W1] = mk(r, 2, d, dq, 0, "W1");
      g->v[P_W2] = mk(r, 2, d, dk, 0, "W2");
      g->v[P_SW] = mk(r, 1, d, 0, 0, "w");
      g->v[P_B] = mk(r, 1, d, 0, 0, "b");
      g->v[P_C0] = mk(r, 2, B, 3, 0, "c0");
      g->v[P_U0] = mk(r, 2, d, 3, 0, "U0");
      break;
    case ATTN_SCORE_MULTIDIM:
      g->v[P_W1] = mk(r, 2, d, dq, 0, "W1");
      g->v[P_W2] = mk(r, 2, d, dk, 0, "W2");
      g->v[P_WO] = mk(r, 2, F, d, 0, "Wo");
      g->v[P_B] = mk(r, 1, d, 0, 0, "b");
      g->v[P_BO] = mk(r, 1, F, 0, 0, "bo");
      break;
    case ATTN_SCORE_CONCAT:
      g->v[P_W] = mk(r, 2, d, dq + dk, 0, "W");
      g->v[P_SW] = mk(r, 1, d, 0, 0, "w");
      break;
    case ATTN_SCORE_LOCATION:
      g->v[P_W] = mk(r, 2, d, dk, 0, "W");
      g->v[P_SW] = mk(r, 1, d, 0, 0, "w");
      g->v[P_B] = mk(r, 1, d, 0, 0, "b");
      break;
    case ATTN_SCORE_LUONG_LOCATION:
      g->v[P_W] = mk(r, 2, Tk, dq, 0, "W");
      g->v[P_B] = mk(r, 1, Tk, 0, 0, "b");
      break;
    default:
      break;
  }
  g->spec.W = g->v[P_W];
  g->spec.b = g->v[P_B];
  g->spec.w = g->v[P_SW];
  g->spec.W1 = g->v[P_W1];
  g->spec.W2 = g->v[P_W2];
  g->spec.Wo = g->v[P_WO];
  g->spec.bo = g->v[P_BO];
  if (g->v[P_C0]) {
    g->ctxs[0] = g->v[P_C0];
    g->us[0] = g->v[P_U0];
    g->spec.n_contexts = 1;
    g->spec.contexts = g->ctxs;
    g->spec.U = g->us;
  }
}

static void case_free(gcase *g) {
  for (int i = 0; i < NP; i++)
    if (g->v[i]) attn_nn_param_free(g->v[i]);
}

static double weighted(attn_nn_ctx *ctx, gcase *g, const float *r, int64_t *n) {
  attn_nn_ctx_reset(ctx);
  attn_var *e = attn_nn_score(ctx, g->v[P_Q], g->v[P_K], &g->spec);
  CHECK(e != NULL, "forward: %s", attn_nn_ctx_error(ctx));
  if (!e) return NAN;
  double s = 0.0;
  for (int64_t i = 0; i < e->numel; i++) s += (double)r[i] * e->data[i];
  if (n) *n = e->numel;
  return s;
}

static void test_gradcheck(void) {
  attn_nn_ctx *ctx = attn_nn_ctx_new();
  t_rng r = t_rng_make(11);
  float rr[4096];
  for (int i = 0; i < 4096; i++) rr[i] = t_normal(&r);
  for (int kind = 0; kind <= ATTN_SCORE_MULTIDIM; kind++)
    for (int act = 0; act <= ATTN_SCORE_ACT_SIGMOID; act++) {
      if (act == ATTN_SCORE_ACT_RELU) continue;
      bool has_act = kind == ATTN_SCORE_ACTIVATED_GENERAL || kind == ATTN_SCORE_ADDITIVE ||
                     kind == ATTN_SCORE_LOCATION || kind == ATTN_SCORE_MULTIDIM;
      if (!has_act && act != ATTN_SCORE_ACT_TANH) continue;
      const char *kn = attn_score_kind_name((attn_score_kind)kind);
      gcase g;
      case_make(&g, (attn_score_kind)kind, (attn_score_act)act, &r);
      attn_nn_ctx_reset(ctx);
      attn_var *e = attn_nn_score(ctx, g.v[P_Q], g.v[P_K], &g.spec);
      CHECK(e != NULL, "%s: %s", kn, attn_nn_ctx_error(ctx));
      if (!e) {
        case_free(&g);
        continue;
      }
      CHECK_OK(attn_backward_from(e, rr));
      for (int i = 0; i < NP; i++) {
        attn_var *p = g.v[i];
        if (!p) continue;
        CHECK(p->grad != NULL, "%s: no gradient for %s", kn, pname[i]);
        if (!p->grad) continue;
        for (int64_t x = 0; x < p->numel; x++) {
          float keep = p->data[x];
          float xp = keep + 1e-2f, xm = keep - 1e-2f;
          p->data[x] = xp;
          double lp = weighted(ctx, &g, rr, NULL);
          p->data[x] = xm;
          double lm = weighted(ctx, &g, rr, NULL);
          p->data[x] = keep;
          double num = (lp - lm) / ((double)xp - (double)xm);
          double ana = (double)p->grad[x];
          CHECK(fabs(ana - num) <= 3e-3 + 3e-2 * fabs(num), "%s/%d: d%s[%lld] = %.6g, numeric %.6g",
                kn, act, pname[i], (long long)x, ana, num);
        }
      }
      /* Gradients accumulate: a second backward on a new tape doubles them. */
      attn_var *pw = g.v[P_K] ? g.v[P_K] : g.v[P_Q];
      float first = pw->grad[0];
      attn_nn_ctx_reset(ctx);
      e = attn_nn_score(ctx, g.v[P_Q], g.v[P_K], &g.spec);
      CHECK_OK(attn_backward_from(e, rr));
      CHECK(fabsf(pw->grad[0] - 2.0f * first) <= 1e-5f * (1.0f + fabsf(first)),
            "%s: gradient did not accumulate: %g then %g", kn, (double)first, (double)pw->grad[0]);
      case_free(&g);
    }
  attn_nn_ctx_free(ctx);
}

static void test_errors(void) {
  attn_nn_ctx *ctx = attn_nn_ctx_new();
  t_rng r = t_rng_make(3);
  gcase g;
  case_make(&g, ATTN_SCORE_GENERAL, ATTN_SCORE_ACT_TANH, &r);
  attn_nn_score_spec s = g.spec;
  s.W = NULL;
  CHECK(attn_nn_score(ctx, g.v[P_Q], g.v[P_K], &s) == NULL, "missing W accepted");
  CHECK(attn_nn_ctx_status(ctx) == ATTN_STATUS_NULL_POINTER, "status %s",
        attn_status_str(attn_nn_ctx_status(ctx)));
  CHECK(strstr(attn_nn_ctx_error(ctx), "params->W") != NULL, "message: %s", attn_nn_ctx_error(ctx));
  /* Sticky: a good call after an error still returns NULL. */
  CHECK(attn_nn_score(ctx, g.v[P_Q], g.v[P_K], &g.spec) == NULL, "sticky error ignored");
  attn_nn_ctx_reset(ctx);
  s = g.spec;
  s.temperature = 0.0f;
  CHECK(attn_nn_score(ctx, g.v[P_Q], g.v[P_K], &s) == NULL, "temperature 0 accepted");
  CHECK(attn_nn_ctx_status(ctx) == ATTN_STATUS_INVALID_ARGUMENT, "status %s",
        attn_status_str(attn_nn_ctx_status(ctx)));
  attn_nn_ctx_reset(ctx);
  CHECK(attn_nn_score(ctx, g.v[P_Q], g.v[P_K], NULL) == NULL, "NULL spec accepted");
  CHECK(attn_nn_ctx_status(ctx) == ATTN_STATUS_NULL_POINTER, "status %s",
        attn_status_str(attn_nn_ctx_status(ctx)));
  attn_nn_ctx_reset(ctx);
  /* A tensor of another context. */
  attn_nn_ctx *other = attn_nn_ctx_new();
  int64_t shape[3] = {2, 3, 3};
  attn_var *foreign = attn_nn_full(other, 3, shape, 1.0f);
  CHECK(attn_nn_score(ctx, foreign, g.v[P_K], &g.spec) == NULL, "foreign tensor accepted");
  CHECK(attn_nn_ctx_status(ctx) == ATTN_STATUS_INVALID_ARGUMENT, "status %s",
        attn_status_str(attn_nn_ctx_status(ctx)));
  attn_nn_ctx_free(other);
  attn_nn_ctx_reset(ctx);
  /* no_grad: nothing recorded. */
  attn_nn_set_grad_enabled(ctx, 0);
  attn_var *e = attn_nn_score(ctx, g.v[P_Q], g.v[P_K], &g.spec);
  CHECK(e != NULL && attn_nn_tape_size(ctx) == 0, "no_grad recorded a tape entry");
  case_free(&g);
  attn_nn_ctx_free(ctx);
}

/* ---- score -> softmax -> context ------------------------------------------------------------ */

static attn_var *attend(attn_nn_ctx *ctx, gcase *g, attn_var *v, const int32_t *lens, int fused) {
  attn_nn_ctx_reset(ctx);
  return attn_nn_score_attention(ctx, g->v[P_Q], g->v[P_K], v, &g->spec, lens, fused);
}

static void zero_all(gcase *g, attn_var *v) {
  for (int i = 0; i < NP; i++)
    if (g->v[i]) attn_nn_zero_grad(g->v[i]);
  attn_nn_zero_grad(v);
}

/* Fused (attn_nn_sdpa) and unfused (score -> softmax -> matmul) routes: same values and
 * gradients within 1e-5 (1 + max |.|), with and without key lengths (a row with no key too). */
static void test_routes_agree(void) {
  attn_nn_ctx *ctx = attn_nn_ctx_new();
  t_rng r = t_rng_make(21);
  float rr[256];
  for (int i = 0; i < 256; i++) rr[i] = t_normal(&r);
  const int32_t lens[2] = {3, 0};
  const attn_score_kind kinds[4] = {ATTN_SCORE_DOT, ATTN_SCORE_SCALED_DOT, ATTN_SCORE_GENERAL,
                                    ATTN_SCORE_BIASED_GENERAL};
  for (int kk = 0; kk < 4; kk++)
    for (int with_lens = 0; with_lens < 2; with_lens++) {
      const char *kn = attn_score_kind_name(kinds[kk]);
      gcase g;
      case_make(&g, kinds[kk], ATTN_SCORE_ACT_TANH, &r);
      attn_var *v = mk(&r, 3, 2, 4, 5, "v");
      const int32_t *kl = with_lens ? lens : NULL;
      float *res[2], *grads[2];
      int64_t n_out = 0, n_grad = 0;
      for (int i = 0; i < NP; i++) n_grad += g.v[i] ? g.v[i]->numel : 0;
      n_grad += v->numel;
      for (int fused = 1; fused >= 0; fused--) {
        zero_all(&g, v);
        attn_var *o = attend(ctx, &g, v, kl, fused);
        CHECK(o != NULL, "%s fused %d: %s", kn, fused, attn_nn_ctx_error(ctx));
        if (!o) return;
        CHECK(o->ndim == 3 && o->shape[0] == 2 && o->shape[1] == 3 && o->shape[2] == 5,
              "%s: out shape", kn);
        /* The fused route records no Tq x Tk score tensor: its tape is projection + sdpa. */
        if (fused)
          CHECK(attn_nn_tape_size(ctx) <= 6, "%s: fused tape has %lld records", kn,
                (long long)attn_nn_tape_size(ctx));
        n_out = o->numel;
        res[fused] = malloc((size_t)n_out * sizeof(float));
        memcpy(res[fused], o->data, (size_t)n_out * sizeof(float));
        CHECK_OK(attn_backward_from(o, rr));
        grads[fused] = malloc((size_t)n_grad * sizeof(float));
        float *at = grads[fused];
        for (int i = 0; i < NP; i++)
          if (g.v[i]) {
            memcpy(at, g.v[i]->grad, (size_t)g.v[i]->numel * sizeof(float));
            at += g.v[i]->numel;
          }
        memcpy(at, v->grad, (size_t)v->numel * sizeof(float));
      }
      double mo = 0.0, mg = 0.0;
      for (int64_t i = 0; i < n_out; i++) mo = fmax(mo, fabs(res[0][i]));
      for (int64_t i = 0; i < n_grad; i++) mg = fmax(mg, fabs(grads[0][i]));
      for (int64_t i = 0; i < n_out; i++)
        CHECK(fabs(res[1][i] - res[0][i]) <= 1e-5 * (1.0 + mo), "%s lens %d: out[%lld] %g vs %g",
              kn, with_lens, (long long)i, (double)res[1][i], (double)res[0][i]);
      for (int64_t i = 0; i < n_grad; i++)
        CHECK(fabs(grads[1][i] - grads[0][i]) <= 1e-5 * (1.0 + mg),
              "%s lens %d: grad[%lld] %g vs %g", kn, with_lens, (long long)i, (double)grads[1][i],
              (double)grads[0][i]);
      if (with_lens)
        for (int64_t i = 15; i < 30; i++)
          CHECK(res[1][i] == 0.0f, "%s: a row with no key gives %g", kn, (double)res[1][i]);
      for (int f = 0; f < 2; f++) {
        free(res[f]);
        free(grads[f]);
      }
      attn_nn_param_free(v);
      case_free(&g);
    }
  attn_nn_ctx_free(ctx);
}

/* The unfused route of the other kinds, against finite differences (v included). */
static void test_attention_gradcheck(void) {
  attn_nn_ctx *ctx = attn_nn_ctx_new();
  t_rng r = t_rng_make(31);
  float rr[256];
  for (int i = 0; i < 256; i++) rr[i] = t_normal(&r);
  const int32_t lens[2] = {2, 4};
  const attn_score_kind kinds[4] = {ATTN_SCORE_ADDITIVE, ATTN_SCORE_MULTIDIM, ATTN_SCORE_LOCATION,
                                    ATTN_SCORE_COSINE};
  for (int kk = 0; kk < 4; kk++) {
    const char *kn = attn_score_kind_name(kinds[kk]);
    gcase g;
    case_make(&g, kinds[kk], ATTN_SCORE_ACT_TANH, &r);
    attn_var *v = mk(&r, 3, 2, 4, kinds[kk] == ATTN_SCORE_MULTIDIM ? 2 : 3, "v");
    zero_all(&g, v);
    attn_var *o = attend(ctx, &g, v, lens, 1);
    CHECK(o != NULL, "%s: %s", kn, attn_nn_ctx_error(ctx));
    if (!o) continue;
    CHECK_OK(attn_backward_from(o, rr));
    attn_var *all[NP + 1];
    int n = 0;
    for (int i = 0; i < NP; i++)
      if (g.v[i]) all[n++] = g.v[i];
    all[n++] = v;
    for (int i = 0; i < n; i++) {
      attn_var *p = all[i];
      for (int64_t x = 0; x < p->numel; x++) {
        float keep = p->data[x], xp = keep + 1e-2f, xm = keep - 1e-2f;
        double l[2];
        for (int s = 0; s < 2; s++) {
          p->data[x] = s ? xm : xp;
          attn_var *y = attend(ctx, &g, v, lens, 1);
          l[s] = 0.0;
          for (int64_t j = 0; y && j < y->numel; j++) l[s] += (double)rr[j] * y->data[j];
        }
        p->data[x] = keep;
        double num = (l[0] - l[1]) / ((double)xp - (double)xm), ana = (double)p->grad[x];
        CHECK(fabs(ana - num) <= 3e-3 + 3e-2 * fabs(num),
              "%s attention: d%s[%lld] = %.6g, numeric %.6g", kn, p->name ? p->name : "?",
              (long long)x, ana, num);
      }
    }
    attn_nn_param_free(v);
    case_free(&g);
  }
  /* v of the wrong shape. */
  gcase g;
  case_make(&g, ATTN_SCORE_DOT, ATTN_SCORE_ACT_TANH, &r);
  attn_var *bad = mk(&r, 3, 2, 5, 3, "v");
  for (int fused = 0; fused < 2; fused++) {
    CHECK(attend(ctx, &g, bad, NULL, fused) == NULL, "v with 5 keys accepted");
    CHECK(attn_nn_ctx_status(ctx) == ATTN_STATUS_SHAPE_MISMATCH, "status %s",
          attn_status_str(attn_nn_ctx_status(ctx)));
  }
  attn_nn_param_free(bad);
  case_free(&g);
  attn_nn_ctx_free(ctx);
}

/* Keys at or past key_lens[b] are blocked: what their rows of k and v hold never reaches the
 * output or a gradient (DESIGN.md: a NaN there stays out), on both routes. Batch 0 has 3 of its 4
 * keys; its key 3 gets NaN in k and v, and everything must match the run with finite values there
 * (within 1e-6 relative: only the blocked scores change). */
static void test_nan_padding(void) {
  attn_nn_ctx *ctx = attn_nn_ctx_new();
  t_rng r = t_rng_make(51);
  const int32_t lens[2] = {3, 4};
  float rr[64];
  for (int i = 0; i < 64; i++) rr[i] = t_normal(&r);
  for (int kind = 0; kind <= ATTN_SCORE_MULTIDIM; kind++)
    for (int fused = 0; fused < 2; fused++) {
      const char *kn = attn_score_kind_name((attn_score_kind)kind);
      gcase g;
      case_make(&g, (attn_score_kind)kind, ATTN_SCORE_ACT_TANH, &r);
      attn_var *v = mk(&r, 3, 2, 4, kind == ATTN_SCORE_MULTIDIM ? 2 : 3, "v");
      attn_var *all[NP + 1];
      int n = 0;
      int64_t total = 0;
      for (int i = 0; i < NP; i++)
        if (g.v[i]) all[n++] = g.v[i];
      all[n++] = v;
      for (int i = 0; i < n; i++) total += all[i]->numel;
      float *res[2] = {NULL, NULL};
      int64_t nres = 0;
      for (int poisoned = 0; poisoned < 2; poisoned++) {
        if (poisoned) {
          attn_var *kv[2] = {g.v[P_K], v};
          for (int t = 0; t < 2; t++)
            if (kv[t])
              for (int64_t c = 0; c < kv[t]->shape[2]; c++)
                kv[t]->data[3 * kv[t]->shape[2] + c] = NAN; /* batch 0, key 3 */
        }
        zero_all(&g, v);
        attn_var *o = attend(ctx, &g, v, lens, fused);
        CHECK(o != NULL, "%s fused %d: %s", kn, fused, attn_nn_ctx_error(ctx));
        if (!o) break;
        CHECK_OK(attn_backward_from(o, rr));
        nres = o->numel + total;
        res[poisoned] = malloc((size_t)nres * sizeof(float));
        memcpy(res[poisoned], o->data, (size_t)o->numel * sizeof(float));
        float *at = res[poisoned] + o->numel;
        for (int i = 0; i < n; i++) {
          memcpy(at, all[i]->grad, (size_t)all[i]->numel * sizeof(float));
          at += all[i]->numel;
        }
      }
      if (res[0] && res[1]) {
        int64_t bad = 0, first = -1;
        for (int64_t i = 0; i < nres; i++) {
          const float a = res[0][i], b = res[1][i];
          if (!(isfinite(b) && fabsf(a - b) <= 1e-6f * (1.0f + fabsf(a)))) {
            if (first < 0) first = i;
            bad++;
          }
        }
        CHECK(bad == 0,
              "%s fused %d: %lld values or gradients moved by NaN at a blocked key "
              "(first at %lld: %g vs %g)",
              kn, fused, (long long)bad, (long long)first, first >= 0 ? (double)res[0][first] : 0.0,
              first >= 0 ? (double)res[1][first] : 0.0);
      }
      free(res[0]);
      free(res[1]);
      attn_nn_param_free(v);
      case_free(&g);
    }
  attn_nn_ctx_free(ctx);
}

/* A failing allocator at every allocation of a forward (the score, and score -> softmax ->
 * context with key lengths) and backward of each kind, both routes: OUT_OF_MEMORY or success,
 * nothing left allocated. The parameters and their gradients are made before the sweep. */
typedef struct alloc_case {
  gcase *g;
  attn_var *v;
  int fused;
} alloc_case;

static attn_status alloc_run(void *arg) {
  alloc_case *a = arg;
  const int32_t lens[2] = {3, 4};
  attn_nn_ctx *c = attn_nn_ctx_new();
  if (!c) return ATTN_STATUS_OUT_OF_MEMORY;
  attn_var *e = attn_nn_score(c, a->g->v[P_Q], a->g->v[P_K], &a->g->spec);
  attn_var *o =
      attn_nn_score_attention(c, a->g->v[P_Q], a->g->v[P_K], a->v, &a->g->spec, lens, a->fused);
  attn_var *loss = attn_nn_add(c, attn_nn_sum_all(c, attn_nn_mul(c, e, e)), attn_nn_sum_all(c, o));
  attn_status st = attn_nn_ctx_status(c);
  if (st == ATTN_OK) st = attn_backward(loss);
  attn_nn_ctx_free(c);
  return st;
}

static void test_failing_allocator(void) {
  t_rng r = t_rng_make(41);
  for (int kind = 0; kind <= ATTN_SCORE_MULTIDIM; kind++)
    for (int fused = 0; fused < 2; fused++) {
      gcase g;
      case_make(&g, (attn_score_kind)kind, ATTN_SCORE_ACT_TANH, &r);
      attn_var *v = mk(&r, 3, 2, 4, kind == ATTN_SCORE_MULTIDIM ? 2 : 3, "v");
      alloc_case a = {&g, v, fused};
      CHECK_OK(alloc_run(&a)); /* makes the parameters' gradient buffers */
      char what[64];
      snprintf(what, sizeof what, "%s fused %d", attn_score_kind_name((attn_score_kind)kind),
               fused);
      t_alloc_sweep(what, alloc_run, &a, 2000);
      attn_nn_param_free(v);
      case_free(&g);
    }
}

int main(void) {
  test_gradcheck();
  test_errors();
  test_routes_agree();
  test_attention_gradcheck();
  test_nan_padding();
  test_failing_allocator();
  return t_finish("test_nn_score");
}
