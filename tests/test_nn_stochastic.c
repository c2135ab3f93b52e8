/* Training-layer ops of stochastic and monotonic alignment (attn/nn.h): gradient checks.
 *
 *   - Gumbel-softmax (soft) and monotonic attention (recursive and parallel), with masks: the
 *     analytic gradient of L = sum r . y (attn_backward_from) against central differences of the
 *     op's forward; the noise is fixed by the seed, so the forward is a deterministic function.
 *     h = 1e-2 in f32, tolerance 3e-3 + 3e-2 |numeric| (as tests/test_nn_grad.c).
 *   - Hard Gumbel: the straight-through gradient equals the soft op's gradient (same seed).
 *   - Stochastic hard attention: loss = sum(coef * log_prob) + lambda * sum(entropy) built from
 *     ordinary ops; scores.grad against the REINFORCE expression
 *     coef (onehot(s) - p) - lambda p (log p + H), computed here in double (1e-5), and against
 *     central differences of the loss with the drawn positions unchanged.
 *   - Results match the kernels; bad inputs set the context's sticky error; no-grad records
 *     nothing; HARD monotonic records nothing. */
#include "attn/monotonic.h"
#include "attn/nn.h"
#include "attn/stochastic.h"
#include "common.h"

static t_rng rng;
static attn_nn_ctx *ctx;

typedef attn_var *(*build_fn)(attn_var *x, attn_var *mask, const void *arg);

/* Gradient check of y = build(x) with L = sum r y over all of x's elements. */
static void gradcheck(const char *name, build_fn build, const void *arg, int ndim,
                      const int64_t *shape, const float *mask_data, int mask_ndim,
                      const int64_t *mask_shape) {
  int64_t n = 1;
  for (int d = 0; d < ndim; d++) n *= shape[d];
  float *x = malloc((size_t)n * 4);
  for (int64_t i = 0; i < n; i++) x[i] = 1.5f * t_normal(&rng);
  attn_nn_ctx_reset(ctx);
  attn_var *vx = attn_nn_tensor(ctx, ndim, shape, x, 1);
  attn_var *vm = mask_data ? attn_nn_tensor(ctx, mask_ndim, mask_shape, mask_data, 0) : NULL;
  attn_var *y = build(vx, vm, arg);
  CHECK(y != NULL, "%s: forward failed: %s", name, attn_nn_ctx_error(ctx));
  if (!y) {
    free(x);
    return;
  }
  float *r = malloc((size_t)y->numel * 4), *grad = malloc((size_t)n * 4);
  for (int64_t i = 0; i < y->numel; i++) r[i] = t_uniform(&rng, -1.0f, 1.0f);
  CHECK_OK(attn_backward_from(y, r));
  for (int64_t i = 0; i < n; i++) grad[i] = vx->grad ? vx->grad[i] : 0.0f;
  int bad = 0;
  for (int64_t e = 0; e < n; e++) {
    const float x0 = x[e], h = 1e-2f;
    double l[2];
    for (int s = 0; s < 2; s++) {
      x[e] = x0 + (s ? -h : h);
      attn_nn_ctx_reset(ctx);
      attn_var *px = attn_nn_tensor(ctx, ndim, shape, x, 0);
      attn_var *pm = mask_data ? attn_nn_tensor(ctx, mask_ndim, mask_shape, mask_data, 0) : NULL;
      attn_var *py = build(px, pm, arg);
      double acc = 0.0;
      for (int64_t i = 0; py && i < py->numel; i++) acc += (double)r[i] * py->data[i];
      l[s] = acc;
    }
    x[e] = x0;
    const double num = (l[0] - l[1]) / ((double)(x0 + h) - (double)(x0 - h)), ana = grad[e];
    if (!(fabs(num - ana) <= 3e-3 + 3e-2 * fabs(num)) && bad++ < 5)
      fprintf(stderr, "%s: elem %lld: analytic %.6g numeric %.6g\n", name, (long long)e, ana, num);
  }
  CHECK(bad == 0, "%s: %d gradient elements out of tolerance", name, bad);
  free(x);
  free(r);
  free(grad);
}

typedef struct gumbel_arg {
  float temperature;
  int hard;
  uint64_t seed;
} gumbel_arg;

static attn_var *build_gumbel(attn_var *x, attn_var *mask, const void *arg) {
  const gumbel_arg *a = arg;
  return attn_nn_gumbel_softmax(ctx, x, mask, a->temperature, a->hard, a->seed);
}

static attn_var *build_monotonic(attn_var *x, attn_var *mask, const void *arg) {
  return attn_nn_monotonic(ctx, x, mask, arg);
}

static void test_gumbel(void) {
  const int64_t shape[3] = {2, 3, 6}, mshape[1] = {6};
  const float mask[6] = {0, -INFINITY, 0, 0.5f, 0, 0};
  gumbel_arg a = {0.7f, 0, 42};
  gradcheck("gumbel soft", build_gumbel, &a, 3, shape, NULL, 0, NULL);
  gradcheck("gumbel soft masked", build_gumbel, &a, 3, shape, mask, 1, mshape);
  /* Hard: one-hot forward, the soft gradient backward. */
  float x[36], r[36], g_soft[36];
  for (int i = 0; i < 36; i++) {
    x[i] = t_normal(&rng);
    r[i] = t_normal(&rng);
  }
  for (int hard = 0; hard < 2; hard++) {
    attn_nn_ctx_reset(ctx);
    attn_var *vx = attn_nn_tensor(ctx, 3, shape, x, 1);
    attn_var *y = attn_nn_gumbel_softmax(ctx, vx, NULL, 0.7f, hard, 42);
    CHECK(y != NULL, "gumbel hard %d: %s", hard, attn_nn_ctx_error(ctx));
    if (!y) return;
    if (hard) {
      for (int rr = 0; rr < 6; rr++) {
        int ones = 0;
        for (int j = 0; j < 6; j++) ones += y->data[rr * 6 + j] == 1.0f;
        CHECK(ones == 1, "hard gumbel row %d has %d ones", rr, ones);
      }
    }
    CHECK_OK(attn_backward_from(y, r));
    for (int i = 0; i < 36; i++) {
      if (!hard)
        g_soft[i] = vx->grad[i];
      else
        CHECK(vx->grad[i] == g_soft[i], "straight-through grad[%d] %g, soft %g", i,
              (double)vx->grad[i], (double)g_soft[i]);
    }
  }
}

static void test_monotonic(void) {
  const int64_t shape[3] = {2, 4, 7}, mshape[3] = {2, 1, 7};
  float mask[14];
  for (int i = 0; i < 14; i++) mask[i] = i % 5 == 3 ? -INFINITY : 0.0f;
  attn_monotonic_params p = attn_monotonic_params_default();
  gradcheck("monotonic recursive", build_monotonic, &p, 3, shape, NULL, 0, NULL);
  gradcheck("monotonic recursive masked", build_monotonic, &p, 3, shape, mask, 3, mshape);
  p.noise_std = 0.5f;
  p.seed = 3;
  gradcheck("monotonic recursive noisy", build_monotonic, &p, 3, shape, mask, 3, mshape);
  p = attn_monotonic_params_default();
  p.mode = ATTN_MONOTONIC_PARALLEL;
  gradcheck("monotonic parallel", build_monotonic, &p, 3, shape, mask, 3, mshape);
  /* NULL params = recursive; HARD records nothing and matches the kernel. */
  float e[56], a[56];
  for (int i = 0; i < 56; i++) e[i] = t_normal(&rng);
  attn_nn_ctx_reset(ctx);
  attn_var *ve = attn_nn_tensor(ctx, 3, shape, e, 1);
  attn_var *y0 = attn_nn_monotonic(ctx, ve, NULL, NULL);
  p.mode = ATTN_MONOTONIC_HARD;
  int64_t before = attn_nn_tape_size(ctx);
  attn_var *yh = attn_nn_monotonic(ctx, ve, NULL, &p);
  CHECK(y0 && yh && attn_nn_tape_size(ctx) == before && !yh->requires_grad,
        "hard monotonic recorded a tape entry");
  attn_tensor te = attn_tensor_make(e, ATTN_DTYPE_F32, 3, shape);
  attn_tensor ta = attn_tensor_make(a, ATTN_DTYPE_F32, 3, shape);
  CHECK_OK(attn_monotonic_forward(&ta, &te, NULL, &p, NULL, 0));
  CHECK(yh && memcmp(a, yh->data, sizeof a) == 0, "hard monotonic differs from the kernel");
  p.mode = ATTN_MONOTONIC_RECURSIVE;
  CHECK_OK(attn_monotonic_forward(&ta, &te, NULL, &p, NULL, 0));
  CHECK(y0 && memcmp(a, y0->data, sizeof a) == 0, "monotonic op differs from the kernel");
}

/* The REINFORCE surrogate built from ops: its gradient is the score-function expression. */
static void test_hard_sample(void) {
  enum { R = 6, n = 5 };
  const int64_t shape[2] = {R, n}, rshape[1] = {R}, mshape[1] = {n};
  const float T = 0.8f, lambda = 0.3f;
  float x[R * n], coef[R], mask[n] = {0, 0, -INFINITY, 0, 0};
  for (int i = 0; i < R * n; i++) x[i] = t_normal(&rng);
  for (int r = 0; r < R; r++) coef[r] = t_normal(&rng);
  int32_t idx[R], idx2[R];
  attn_var *vx = NULL, *lp = NULL, *ent = NULL, *w = NULL;
  /* loss(x) = sum(coef * log_prob) + lambda * sum(entropy), with idx the drawn positions. */
  double loss_at[2];
  attn_nn_ctx_reset(ctx);
  vx = attn_nn_tensor(ctx, 2, shape, x, 1);
  attn_var *vm = attn_nn_tensor(ctx, 1, mshape, mask, 0);
  w = attn_nn_hard_sample(ctx, vx, vm, T, 11, idx, &lp, &ent);
  attn_var *vc = attn_nn_tensor(ctx, 1, rshape, coef, 0);
  attn_var *loss = attn_nn_add(ctx, attn_nn_sum_all(ctx, attn_nn_mul(ctx, vc, lp)),
                               attn_nn_scale(ctx, attn_nn_sum_all(ctx, ent), lambda, 0.0f));
  CHECK(loss != NULL, "hard sample loss: %s", attn_nn_ctx_error(ctx));
  if (!loss) return;
  CHECK_OK(attn_backward(loss));
  CHECK(!w->requires_grad, "the one-hot weights must not require a gradient");
  /* The kernel's outputs. */
  float lp_k[R], h_k[R], w_k[R * n];
  int32_t idx_k[R];
  attn_tensor tx = attn_tensor_make(x, ATTN_DTYPE_F32, 2, shape);
  attn_tensor tw = attn_tensor_make(w_k, ATTN_DTYPE_F32, 2, shape);
  int64_t m2[2] = {1, n};
  attn_tensor tm = attn_tensor_make(mask, ATTN_DTYPE_F32, 2, m2);
  attn_stochastic_params sp = attn_stochastic_params_default();
  sp.temperature = T;
  sp.seed = 11;
  CHECK_OK(attn_hard_sample_forward(&tw, idx_k, lp_k, h_k, &tx, &tm, &sp, NULL, 0));
  CHECK(memcmp(idx_k, idx, sizeof idx) == 0 && memcmp(w_k, w->data, sizeof w_k) == 0 &&
            memcmp(lp_k, lp->data, sizeof lp_k) == 0 && memcmp(h_k, ent->data, sizeof h_k) == 0,
        "op differs from the kernel");
  /* The REINFORCE expression in double. */
  for (int r = 0; r < R; r++) {
    double z[n], p[n], mx = -INFINITY, s = 0.0, pz = 0.0;
    for (int j = 0; j < n; j++) {
      z[j] = mask[j] == -INFINITY ? -INFINITY : (double)x[r * n + j] / T;
      mx = fmax(mx, z[j]);
    }
    for (int j = 0; j < n; j++) s += exp(z[j] - mx);
    double lse = mx + log(s);
    for (int j = 0; j < n; j++) {
      p[j] = exp(z[j] - lse);
      if (p[j] > 0) pz += p[j] * z[j];
    }
    double H = lse - pz;
    CHECK(idx[r] >= 0 && idx[r] < n && mask[idx[r]] == 0.0f, "row %d drew %d", r, idx[r]);
    for (int j = 0; j < n; j++) {
      double want = 0.0;
      if (p[j] > 0)
        want = (coef[r] * ((j == idx[r]) - p[j]) - lambda * p[j] * (z[j] - lse + H)) / T;
      CHECK(fabs(vx->grad[r * n + j] - want) < 1e-5, "row %d j %d: grad %g, REINFORCE %g", r, j,
            (double)vx->grad[r * n + j], want);
    }
  }
  /* Central differences of the loss where the drawn positions do not change. */
  int checked = 0;
  float g0[R * n];
  memcpy(g0, vx->grad, sizeof g0);
  for (int e = 0; e < R * n; e++) {
    const float x0 = x[e], h = 1e-2f;
    bool same = true;
    for (int s = 0; s < 2; s++) {
      x[e] = x0 + (s ? -h : h);
      attn_nn_ctx_reset(ctx);
      attn_var *px = attn_nn_tensor(ctx, 2, shape, x, 0);
      attn_var *pm = attn_nn_tensor(ctx, 1, mshape, mask, 0);
      attn_var *plp = NULL, *pe = NULL;
      attn_nn_hard_sample(ctx, px, pm, T, 11, idx2, &plp, &pe);
      double l = 0.0;
      for (int r = 0; r < R && plp; r++) l += (double)coef[r] * plp->data[r] + lambda * pe->data[r];
      loss_at[s] = l;
      same &= memcmp(idx2, idx, sizeof idx) == 0;
    }
    x[e] = x0;
    if (!same) continue;
    checked++;
    const double num = (loss_at[0] - loss_at[1]) / ((double)(x0 + h) - (double)(x0 - h));
    CHECK(fabs(num - g0[e]) <= 3e-3 + 3e-2 * fabs(num), "elem %d: grad %g, numeric %g", e,
          (double)g0[e], num);
  }
  CHECK(checked > R * n / 2, "only %d of %d probes kept their samples", checked, R * n);
  /* A fully masked row: index -1, log_prob and entropy 0, zero gradient. */
  float xm[n] = {1, 2, 3, 4, 5}, mm[n] = {-INFINITY, -INFINITY, -INFINITY, -INFINITY, -INFINITY};
  const int64_t s1[1] = {n};
  attn_nn_ctx_reset(ctx);
  attn_var *vxm = attn_nn_tensor(ctx, 1, s1, xm, 1);
  attn_var *vmm = attn_nn_tensor(ctx, 1, s1, mm, 0);
  int32_t im = 7;
  attn_nn_hard_sample(ctx, vxm, vmm, 1.0f, 1, &im, &lp, &ent);
  CHECK(lp && ent && lp->ndim == 0 && im == -1 && lp->data[0] == 0.0f && ent->data[0] == 0.0f,
        "fully masked: index %d", im);
  if (lp && ent) {
    CHECK_OK(attn_backward(attn_nn_add(ctx, lp, ent)));
    bool zero = true;
    for (int j = 0; j < n; j++) zero &= vxm->grad[j] == 0.0f;
    CHECK(zero, "fully masked row has a gradient");
  }
}

static void test_bad_inputs(void) {
  const int64_t shape[2] = {3, 4}, bad_m[1] = {3}, s0[1] = {4};
  float x[12] = {0};
  attn_nn_ctx_reset(ctx);
  attn_var *vx = attn_nn_tensor(ctx, 2, shape, x, 1);
  CHECK(attn_nn_gumbel_softmax(ctx, vx, NULL, 0.0f, 0, 1) == NULL &&
            attn_nn_ctx_status(ctx) == ATTN_STATUS_INVALID_ARGUMENT &&
            strstr(attn_nn_ctx_error(ctx), "temperature") != NULL,
        "temperature 0: %s", attn_nn_ctx_error(ctx));
  attn_nn_ctx_reset(ctx);
  vx = attn_nn_tensor(ctx, 2, shape, x, 1);
  attn_var *vm = attn_nn_tensor(ctx, 1, bad_m, x, 0);
  CHECK(attn_nn_hard_sample(ctx, vx, vm, 1.0f, 1, NULL, NULL, NULL) == NULL &&
            attn_nn_ctx_status(ctx) == ATTN_STATUS_SHAPE_MISMATCH,
        "mask shape: %s", attn_nn_ctx_error(ctx));
  attn_nn_ctx_reset(ctx);
  CHECK(attn_nn_monotonic(ctx, NULL, NULL, NULL) == NULL &&
            attn_nn_ctx_status(ctx) == ATTN_STATUS_NULL_POINTER,
        "NULL energy: %s", attn_nn_ctx_error(ctx));
  attn_nn_ctx_reset(ctx);
  attn_var *v1 = attn_nn_tensor(ctx, 1, s0, x, 1);
  CHECK(attn_nn_monotonic(ctx, v1, NULL, NULL) == NULL &&
            attn_nn_ctx_status(ctx) == ATTN_STATUS_SHAPE_MISMATCH,
        "1-d energy: %s", attn_nn_ctx_error(ctx));
  attn_nn_ctx_reset(ctx);
  vx = attn_nn_tensor(ctx, 2, shape, x, 1);
  attn_monotonic_params p = attn_monotonic_params_default();
  p.noise_std = -1.0f;
  CHECK(attn_nn_monotonic(ctx, vx, NULL, &p) == NULL &&
            attn_nn_ctx_status(ctx) == ATTN_STATUS_INVALID_ARGUMENT,
        "noise_std: %s", attn_nn_ctx_error(ctx));
  /* no_grad records nothing. */
  attn_nn_ctx_reset(ctx);
  vx = attn_nn_tensor(ctx, 2, shape, x, 1);
  attn_nn_set_grad_enabled(ctx, 0);
  attn_var *y = attn_nn_gumbel_softmax(ctx, vx, NULL, 1.0f, 0, 1);
  CHECK(y && !y->requires_grad && attn_nn_tape_size(ctx) == 0, "no_grad recorded");
  attn_nn_set_grad_enabled(ctx, 1);
}

/* Learning. REINFORCE: logits (R, n), reward 1 when the draw hits the row's target; with the
 * moving-average baseline and Adam the target's probability must pass 0.9 in 300 steps (it starts
 * at 1/n). Gumbel: the hard straight-through op trained to output one_hot(target). Monotonic:
 * energies trained to put the expected alignment on the diagonal, after which the hard decoding
 * is the diagonal too. */
static void test_learning(void) {
  enum { R = 4, n = 8, steps = 300 };
  const int32_t target[R] = {3, 0, 7, 5};
  const int64_t shape[2] = {R, n}, rshape[1] = {R};
  for (int which = 0; which < 2; which++) {
    attn_var *logits = attn_nn_param_new(2, shape, "logits");
    attn_nn_params params = {0};
    CHECK_OK(attn_nn_params_add(&params, logits));
    attn_nn_optim_config cfg = attn_nn_optim_config_default(ATTN_NN_OPTIM_ADAM);
    cfg.lr = 0.1f;
    attn_nn_optim *opt = attn_nn_optim_new(&cfg, &params);
    float baseline = 0.0f, reward[R], coef[R], onehot[R * n] = {0};
    for (int r = 0; r < R; r++) onehot[r * n + target[r]] = 1.0f;
    for (int step = 0; step < steps; step++) {
      attn_nn_ctx_reset(ctx);
      attn_nn_params_zero_grad(&params);
      attn_var *loss;
      if (which == 0) {
        int32_t idx[R];
        attn_var *lp = NULL;
        attn_nn_hard_sample(ctx, logits, NULL, 1.0f, (uint64_t)step, idx, &lp, NULL);
        for (int r = 0; r < R; r++) reward[r] = idx[r] == target[r] ? 1.0f : 0.0f;
        CHECK_OK(attn_reinforce_coef(coef, &baseline, reward, R, 0.9f));
        loss = attn_nn_sum_all(ctx, attn_nn_mul(ctx, attn_nn_tensor(ctx, 1, rshape, coef, 0), lp));
      } else {
        attn_var *y = attn_nn_gumbel_softmax(ctx, logits, NULL, 1.0f, 1, (uint64_t)step);
        loss = attn_nn_scale(
            ctx,
            attn_nn_sum_all(ctx, attn_nn_mul(ctx, y, attn_nn_tensor(ctx, 2, shape, onehot, 0))),
            -1.0f, 0.0f);
      }
      CHECK(loss != NULL, "learning %d: %s", which, attn_nn_ctx_error(ctx));
      if (!loss) break;
      CHECK_OK(attn_backward(loss));
      CHECK_OK(attn_nn_optim_step(opt));
    }
    for (int r = 0; r < R; r++) {
      double m = -INFINITY, sum = 0.0;
      for (int j = 0; j < n; j++) m = fmax(m, logits->data[r * n + j]);
      for (int j = 0; j < n; j++) sum += exp(logits->data[r * n + j] - m);
      double pt = exp(logits->data[r * n + target[r]] - m) / sum;
      CHECK(pt > 0.9, "%s: row %d: p(target) = %g after %d steps",
            which ? "gumbel straight-through" : "REINFORCE", r, pt, steps);
    }
    attn_nn_optim_free(opt);
    attn_nn_params_free_all(&params);
  }
  /* Monotonic: maximise sum_i log alpha_{i,i}. */
  enum { T = 6 };
  const int64_t eshape[2] = {T, T};
  attn_var *energy = attn_nn_param_new(2, eshape, "energy");
  attn_nn_params params = {0};
  CHECK_OK(attn_nn_params_add(&params, energy));
  attn_nn_optim_config cfg = attn_nn_optim_config_default(ATTN_NN_OPTIM_ADAM);
  cfg.lr = 0.1f;
  attn_nn_optim *opt = attn_nn_optim_new(&cfg, &params);
  float diag[T * T] = {0};
  for (int i = 0; i < T; i++) diag[i * T + i] = 1.0f;
  attn_var *alpha = NULL;
  for (int step = 0; step < 200; step++) {
    attn_nn_ctx_reset(ctx);
    attn_nn_params_zero_grad(&params);
    alpha = attn_nn_monotonic(ctx, energy, NULL, NULL);
    attn_var *on_diag =
        attn_nn_sum(ctx, attn_nn_mul(ctx, alpha, attn_nn_tensor(ctx, 2, eshape, diag, 0)), -1, 0);
    attn_var *loss =
        attn_nn_scale(ctx, attn_nn_sum_all(ctx, attn_nn_log(ctx, on_diag)), -1.0f, 0.0f);
    CHECK(loss != NULL, "monotonic learning: %s", attn_nn_ctx_error(ctx));
    if (!loss) break;
    CHECK_OK(attn_backward(loss));
    CHECK_OK(attn_nn_optim_step(opt));
  }
  for (int i = 0; alpha && i < T; i++)
    CHECK(alpha->data[i * T + i] > 0.9f, "monotonic: alpha[%d][%d] = %g", i, i,
          (double)alpha->data[i * T + i]);
  attn_monotonic_params hp = attn_monotonic_params_default();
  hp.mode = ATTN_MONOTONIC_HARD;
  attn_nn_ctx_reset(ctx);
  attn_var *hard = attn_nn_monotonic(ctx, energy, NULL, &hp);
  for (int k = 0; hard && k < T * T; k++)
    CHECK(hard->data[k] == diag[k], "monotonic hard decoding [%d][%d] = %g", k / T, k % T,
          (double)hard->data[k]);
  attn_nn_optim_free(opt);
  attn_nn_params_free_all(&params);
}

/* Allocation failures at every step of a forward and backward through the three ops: each run
 * either succeeds or reports OUT_OF_MEMORY, and frees everything. */
/* One forward and backward through the three ops. */
static attn_status alloc_run(void *arg) {
  const float *x = arg;
  const int64_t shape[3] = {2, 3, 5};
  attn_nn_ctx *c = attn_nn_ctx_new();
  if (!c) return ATTN_STATUS_OUT_OF_MEMORY;
  attn_var *vx = attn_nn_tensor(c, 3, shape, x, 1);
  attn_var *lp = NULL, *ent = NULL;
  attn_nn_hard_sample(c, vx, NULL, 1.0f, 3, NULL, &lp, &ent);
  attn_var *g = attn_nn_gumbel_softmax(c, vx, NULL, 0.5f, 1, 4);
  attn_var *m = attn_nn_monotonic(c, vx, NULL, NULL);
  attn_var *loss =
      attn_nn_add(c, attn_nn_add(c, attn_nn_sum_all(c, lp), attn_nn_sum_all(c, ent)),
                  attn_nn_add(c, attn_nn_sum_all(c, attn_nn_mul(c, g, vx)), attn_nn_sum_all(c, m)));
  attn_status st = attn_nn_ctx_status(c);
  if (st == ATTN_OK) st = attn_backward(loss);
  attn_nn_ctx_free(c);
  return st;
}

static void test_failing_allocator(void) {
  float x[30];
  for (int i = 0; i < 30; i++) x[i] = t_normal(&rng);
  t_alloc_sweep("nn stochastic", alloc_run, x, 10000);
}

int main(void) {
  rng = t_rng_make(2027);
  ctx = attn_nn_ctx_new();
  test_gumbel();
  test_monotonic();
  test_hard_sample();
  test_bad_inputs();
  test_learning();
  test_failing_allocator();
  attn_nn_ctx_free(ctx);
  return t_finish("test_nn_stochastic");
}
