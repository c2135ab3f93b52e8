/* The finite-difference gradient checker of the training-layer tests (test_nn_grad, test_nn_align),
 * header-only like png_check.h: each including test gets its own static copy.
 *
 * A case builds y = f(inputs) in f32 and takes L = sum_i r_i y_i with a random r in [-1, 1)
 * (0 where y is not finite, e.g. blocked log-softmax entries), accumulated in double. The analytic
 * gradient comes from attn_backward_from(y, r); the numerical one is the central difference
 * (L(x + h) - L(x - h)) / (x+h - x-h) with the step actually representable in f32 (h = 1e-2
 * unless the case sets one), computed through `numeric` when the case gives one (a function whose
 * differences the op's backward must match, e.g. softmax for a straight-through hardmax).
 * Tolerance |analytic - numeric| <= GC_ATOL + GC_RTOL |numeric| per element. Inputs with more
 * than max_probe elements are checked on max_probe random elements. With allow_kinks, up to two
 * elements per case may match a one-sided difference instead (a step across a relu or sparsemax
 * kink blurs the central one). */
#ifndef ATTN_TEST_NN_GRADCHECK_H
#define ATTN_TEST_NN_GRADCHECK_H

#include "attn/nn.h"
#include "common.h"

#define GC_ATOL 3e-3
#define GC_RTOL 3e-2
#define GC_MAX_IN 8

typedef struct gc_input {
  attn_var *param; /* an existing parameter, or NULL for a host array */
  int ndim;
  int64_t shape[ATTN_NN_MAX_DIMS];
  float *data; /* host data (owned by the case) */
  int64_t n;
  bool wrt; /* differentiate with respect to this input */
} gc_input;

typedef attn_var *(*build_fn)(attn_nn_ctx *ctx, attn_var **in, void *arg);

typedef struct gc_case {
  const char *name;
  build_fn build;   /* the op whose backward is checked */
  build_fn numeric; /* the function whose differences it must match; NULL = build */
  void *arg;
  int n_in;
  gc_input in[GC_MAX_IN];
  float h;          /* finite-difference step; 0 = 1e-2 */
  bool allow_kinks; /* piecewise-linear inside (relu, sparsemax): see above */
} gc_case;

static inline float *gc_in_data(gc_input *g) {
  return g->param ? g->param->data : g->data;
}
static inline int64_t gc_in_numel(gc_input *g) {
  return g->param ? g->param->numel : g->n;
}

/* Resets ctx and runs f on the case's inputs (host arrays become new tensors). */
static inline attn_var *gc_run_forward(attn_nn_ctx *ctx, gc_case *c, build_fn f, attn_var **vars) {
  attn_nn_ctx_reset(ctx);
  for (int i = 0; i < c->n_in; i++) {
    gc_input *g = &c->in[i];
    vars[i] = g->param ? g->param : attn_nn_tensor(ctx, g->ndim, g->shape, g->data, g->wrt);
  }
  return f(ctx, vars, c->arg);
}

static inline double gc_weighted(const attn_var *y, const float *r) {
  double s = 0;
  for (int64_t i = 0; i < y->numel; i++)
    if (r[i] != 0.0f) s += (double)r[i] * y->data[i];
  return s;
}

/* Checks the case (CHECK per case); returns the largest |analytic gradient| seen, so callers can
 * check that a gradient is not identically 0. */
static inline double gc_check(attn_nn_ctx *ctx, t_rng *rng, gc_case *c, int64_t max_probe) {
  attn_var *vars[GC_MAX_IN];
  attn_var *y = gc_run_forward(ctx, c, c->build, vars);
  CHECK(y != NULL, "%s: forward failed: %s", c->name, attn_nn_ctx_error(ctx));
  if (!y) return 0;
  float *r = malloc((size_t)(y->numel ? y->numel : 1) * sizeof(float));
  for (int64_t i = 0; i < y->numel; i++) r[i] = t_uniform(rng, -1.0f, 1.0f);
  for (int64_t i = 0; i < y->numel; i++)
    if (!isfinite(y->data[i])) r[i] = 0.0f;
  for (int i = 0; i < c->n_in; i++)
    if (c->in[i].param) attn_nn_zero_grad(c->in[i].param);
  CHECK_OK(attn_backward_from(y, r));
  float *grads[GC_MAX_IN] = {0};
  double biggest = 0;
  for (int i = 0; i < c->n_in; i++) {
    if (!c->in[i].wrt) continue;
    const int64_t n = gc_in_numel(&c->in[i]);
    grads[i] = calloc((size_t)(n ? n : 1), sizeof(float));
    if (vars[i]->grad) memcpy(grads[i], vars[i]->grad, (size_t)n * sizeof(float));
    for (int64_t e = 0; e < n; e++) biggest = fmax(biggest, fabs(grads[i][e]));
  }
  build_fn num_f = c->numeric ? c->numeric : c->build;
  double worst = 0;
  int bad = 0, kinks = 0;
  for (int i = 0; i < c->n_in; i++) {
    if (!c->in[i].wrt) continue;
    float *x = gc_in_data(&c->in[i]);
    const int64_t n = gc_in_numel(&c->in[i]), probes = n > max_probe ? max_probe : n;
    for (int64_t p = 0; p < probes; p++) {
      const int64_t e = n > max_probe ? t_int(rng, 0, n - 1) : p;
      const float step = c->h > 0 ? c->h : 1e-2f, x0 = x[e], xp = x0 + step, xm = x0 - step;
      x[e] = xp;
      attn_var *yp = gc_run_forward(ctx, c, num_f, vars);
      const double lp = yp ? gc_weighted(yp, r) : NAN;
      x[e] = xm;
      attn_var *ym = gc_run_forward(ctx, c, num_f, vars);
      const double lm = ym ? gc_weighted(ym, r) : NAN;
      x[e] = x0;
      const double num = (lp - lm) / ((double)xp - (double)xm), ana = grads[i][e];
      const double err = fabs(ana - num), tol = GC_ATOL + GC_RTOL * fabs(num);
      if (!(err <= tol) && c->allow_kinks && kinks < 2) {
        attn_var *y0 = gc_run_forward(ctx, c, num_f, vars);
        const double l0 = y0 ? gc_weighted(y0, r) : NAN;
        const double right = (lp - l0) / ((double)xp - x0), left = (l0 - lm) / (x0 - (double)xm);
        if (fabs(ana - right) <= GC_ATOL + GC_RTOL * fabs(right) ||
            fabs(ana - left) <= GC_ATOL + GC_RTOL * fabs(left)) {
          kinks++;
          continue;
        }
      }
      if (err / tol > worst) worst = err / tol;
      if (!(err <= tol) && bad++ < 5)
        fprintf(stderr, "%s: input %d elem %lld: analytic %.6g numeric %.6g\n", c->name, i,
                (long long)e, ana, num);
    }
  }
  CHECK(bad == 0, "%s: %d gradient elements out of tolerance (worst err/tol %.3g)", c->name, bad,
        worst);
  for (int i = 0; i < c->n_in; i++) free(grads[i]);
  free(r);
  return biggest;
}

/* A host input of the case with uniform values in [lo, hi). */
static inline gc_input *gc_host_in(gc_case *c, t_rng *rng, int ndim, const int64_t *shape, float lo,
                                   float hi, bool wrt) {
  gc_input *g = &c->in[c->n_in++];
  memset(g, 0, sizeof *g);
  g->ndim = ndim;
  g->n = 1;
  for (int d = 0; d < ndim; d++) {
    g->shape[d] = shape[d];
    g->n *= shape[d];
  }
  g->data = malloc((size_t)(g->n ? g->n : 1) * sizeof(float));
  for (int64_t i = 0; i < g->n; i++) g->data[i] = t_uniform(rng, lo, hi);
  g->wrt = wrt;
  return g;
}

/* A parameter input of the case (differentiated). */
static inline void gc_param_in(gc_case *c, attn_var *p) {
  gc_input *g = &c->in[c->n_in++];
  memset(g, 0, sizeof *g);
  g->param = p;
  g->wrt = true;
}

static inline void gc_case_free(gc_case *c) {
  for (int i = 0; i < c->n_in; i++) free(c->in[i].data);
}

#endif
