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
  const int64_t dk = (kind == ATTN_SCORE_DOT || kind == ATTN_SCORE_SCALED_DOT ||
                      kind == ATTN_SCORE_COSINE)
                         ? dq
                         : 2;
  g->spec = attn_nn_score_spec_default(kind);
  g->spec.act = act;
  g->spec.temperature = 0.8f;
  if (kind != ATTN_SCORE_LOCATION) g->v[P_Q] = mk(r, 3, B, Tq, dq, "q");
  if (kind != ATTN_SCORE_LUONG_LOCATION) g->v[P_K] = mk(r, 3, B, Tk, dk, "k");
  switch (kind) {
    case ATTN_SCORE_GENERAL: g->v[P_W] = mk(r, 2, dk, dq, 0, "W"); break;
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
    default: break;
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
            "%s: gradient did not accumulate: %g then %g", kn, (double)first,
            (double)pw->grad[0]);
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
  CHECK(strstr(attn_nn_ctx_error(ctx), "params->W") != NULL, "message: %s",
        attn_nn_ctx_error(ctx));
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

int main(void) {
  test_gradcheck();
  test_errors();
  return t_finish("test_nn_score");
}
