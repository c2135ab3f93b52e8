/* The training layer's ops that split over the thread pool, on shapes large enough to split (512
 * rows of 256): LayerNorm (rows; column blocks for dgamma / dbeta), linear's bias add and bias
 * gradient, same-shape add / mul, GELU, softmax and log_softmax with a broadcast mask. Each against
 * a plain double reference, forward and backward, and bitwise the same on 1, 2 and 3 threads. Also:
 * the gradient of an op result is released once its record has run, a leaf's is kept, and a step
 * with buffer reuse gives the same gradients as the first step of a fresh context.
 *
 * Tolerances: forward and backward in f32 against double, |got - ref| <= 1e-5 (1 + |ref|) for
 * the row-local values (LayerNorm's y and dx, the add / mul) and 1e-5 (1 + sum |terms|) for the
 * 512-term column sums (dgamma, dbeta, dbias): f32 accumulation of n terms errs by at most
 * ~n eps sum |terms| in the worst case, ~sqrt(n) eps in practice. */
#include "attn/nn.h"
#include "common.h"

enum { R = 512, D = 256, OUT = 192 };

static double worst_rel(const float *got, const double *ref, const double *scale, int64_t n) {
  double w = 0;
  for (int64_t i = 0; i < n; i++) {
    const double e = fabs((double)got[i] - ref[i]) / (1.0 + (scale ? scale[i] : fabs(ref[i])));
    if (e > w || e != e) w = e;
  }
  return w;
}

typedef struct result {
  float *y, *gx, *gg, *gb, *gw, *gbias, *gz;
} result;

static float *copy_of(const float *p, int64_t n) {
  float *c = malloc((size_t)n * sizeof(float));
  if (p)
    memcpy(c, p, (size_t)n * sizeof(float));
  else
    memset(c, 0xff, (size_t)n * sizeof(float)); /* NaN: compared as a failure */
  return c;
}

/* y = gelu(linear(layernorm(x) * z + x, W, bias)); backward from dy. */
static void run(const float *x, const float *gamma, const float *beta, const float *w,
                const float *bias, const float *z, const float *dy, result *res) {
  attn_nn_ctx *ctx = attn_nn_ctx_new();
  int64_t sx[2] = {R, D}, sg[1] = {D}, sw[2] = {OUT, D}, sb[1] = {OUT};
  attn_var *xv = attn_nn_tensor(ctx, 2, sx, x, 1), *zv = attn_nn_tensor(ctx, 2, sx, z, 1);
  attn_var *gv = attn_nn_tensor(ctx, 1, sg, gamma, 1), *bv = attn_nn_tensor(ctx, 1, sg, beta, 1);
  attn_var *wv = attn_nn_tensor(ctx, 2, sw, w, 1), *biv = attn_nn_tensor(ctx, 1, sb, bias, 1);
  attn_var *h = attn_nn_layernorm(ctx, xv, gv, bv, 1e-5f);
  h = attn_nn_add(ctx, attn_nn_mul(ctx, h, zv), xv);
  attn_var *y = attn_nn_gelu(ctx, attn_nn_linear(ctx, h, wv, biv), 0);
  CHECK(y != NULL, "forward: %s", attn_nn_ctx_error(ctx));
  if (y) CHECK_OK(attn_backward_from(y, dy));
  CHECK(!y || y->grad == NULL, "the output's gradient is released after its record ran");
  CHECK(!h || h->grad == NULL, "an intermediate's gradient is released after its record ran");
  res->y = copy_of(y ? y->data : NULL, (int64_t)R * OUT);
  res->gx = copy_of(xv->grad, (int64_t)R * D);
  res->gz = copy_of(zv->grad, (int64_t)R * D);
  res->gg = copy_of(gv->grad, D);
  res->gb = copy_of(bv->grad, D);
  res->gw = copy_of(wv->grad, (int64_t)OUT * D);
  res->gbias = copy_of(biv->grad, OUT);
  attn_nn_ctx_free(ctx);
}

static void result_free(result *r) {
  free(r->y);
  free(r->gx);
  free(r->gz);
  free(r->gg);
  free(r->gb);
  free(r->gw);
  free(r->gbias);
}

static bool same(const float *a, const float *b, int64_t n) {
  return memcmp(a, b, (size_t)n * sizeof(float)) == 0;
}

/* The double reference of the same composite, forward and backward. */
static void reference(const float *x, const float *gamma, const float *beta, const float *w,
                      const float *bias, const float *z, const float *dy, result *got) {
  double *xh = malloc(sizeof(double) * R * D), *h = malloc(sizeof(double) * R * D);
  double *rstd = malloc(sizeof(double) * R), *pre = malloc(sizeof(double) * R * OUT);
  for (int r = 0; r < R; r++) {
    double m = 0, v = 0;
    for (int c = 0; c < D; c++) m += x[r * D + c];
    m /= D;
    for (int c = 0; c < D; c++) v += (x[r * D + c] - m) * (x[r * D + c] - m);
    rstd[r] = 1.0 / sqrt(v / D + 1e-5);
    for (int c = 0; c < D; c++) {
      xh[r * D + c] = (x[r * D + c] - m) * rstd[r];
      h[r * D + c] = (xh[r * D + c] * gamma[c] + beta[c]) * z[r * D + c] + x[r * D + c];
    }
  }
  double *yref = malloc(sizeof(double) * R * OUT), *dpre = malloc(sizeof(double) * R * OUT);
  for (int r = 0; r < R; r++)
    for (int o = 0; o < OUT; o++) {
      double s = bias[o];
      for (int c = 0; c < D; c++) s += h[r * D + c] * w[o * D + c];
      pre[r * OUT + o] = s;
      const double cdf = 0.5 * erfc(-s / sqrt(2.0)), pdf = exp(-0.5 * s * s) / sqrt(2.0 * M_PI);
      yref[r * OUT + o] = s * cdf;
      dpre[r * OUT + o] = dy[r * OUT + o] * (cdf + s * pdf);
    }
  /* dbias, dW, dh; then dz, dx through the residual, LayerNorm's backward. */
  double *dbias = calloc(OUT, sizeof(double)), *dbias_s = calloc(OUT, sizeof(double));
  double *dw = calloc((size_t)OUT * D, sizeof(double)), *dh = calloc((size_t)R * D, sizeof(double));
  for (int r = 0; r < R; r++)
    for (int o = 0; o < OUT; o++) {
      dbias[o] += dpre[r * OUT + o];
      dbias_s[o] += fabs(dpre[r * OUT + o]);
      for (int c = 0; c < D; c++) {
        dw[o * D + c] += dpre[r * OUT + o] * h[r * D + c];
        dh[r * D + c] += dpre[r * OUT + o] * w[o * D + c];
      }
    }
  double *dx = malloc(sizeof(double) * R * D), *dz = malloc(sizeof(double) * R * D);
  double *dg = calloc(D, sizeof(double)), *db = calloc(D, sizeof(double));
  double *dg_s = calloc(D, sizeof(double)), *db_s = calloc(D, sizeof(double));
  for (int r = 0; r < R; r++) {
    double s1 = 0, s2 = 0;
    for (int c = 0; c < D; c++) {
      const double dln = dh[r * D + c] * z[r * D + c];
      dz[r * D + c] = dh[r * D + c] * (xh[r * D + c] * gamma[c] + beta[c]);
      dg[c] += dln * xh[r * D + c];
      dg_s[c] += fabs(dln * xh[r * D + c]);
      db[c] += dln;
      db_s[c] += fabs(dln);
      s1 += dln * gamma[c];
      s2 += dln * gamma[c] * xh[r * D + c];
    }
    for (int c = 0; c < D; c++) {
      const double dxh = dh[r * D + c] * z[r * D + c] * gamma[c];
      dx[r * D + c] = dh[r * D + c] + rstd[r] * (dxh - s1 / D - xh[r * D + c] * s2 / D);
    }
  }
  double e;
  printf(
      "errors vs double: y %.2g, dbias %.2g, dgamma %.2g, dbeta %.2g, dz %.2g, dx %.2g, dW %.2g\n",
      worst_rel(got->y, yref, NULL, (int64_t)R * OUT), worst_rel(got->gbias, dbias, dbias_s, OUT),
      worst_rel(got->gg, dg, dg_s, D), worst_rel(got->gb, db, db_s, D),
      worst_rel(got->gz, dz, NULL, (int64_t)R * D), worst_rel(got->gx, dx, NULL, (int64_t)R * D),
      worst_rel(got->gw, dw, NULL, (int64_t)OUT * D));
  CHECK((e = worst_rel(got->y, yref, NULL, (int64_t)R * OUT)) <= 1e-5, "y error %.3g", e);
  CHECK((e = worst_rel(got->gbias, dbias, dbias_s, OUT)) <= 1e-5, "dbias error %.3g", e);
  CHECK((e = worst_rel(got->gg, dg, dg_s, D)) <= 1e-5, "dgamma error %.3g", e);
  CHECK((e = worst_rel(got->gb, db, db_s, D)) <= 1e-5, "dbeta error %.3g", e);
  CHECK((e = worst_rel(got->gz, dz, NULL, (int64_t)R * D)) <= 1e-5, "dz error %.3g", e);
  CHECK((e = worst_rel(got->gx, dx, NULL, (int64_t)R * D)) <= 1e-4, "dx error %.3g", e);
  CHECK((e = worst_rel(got->gw, dw, NULL, (int64_t)OUT * D)) <= 1e-4, "dW error %.3g", e);
  free(xh);
  free(h);
  free(rstd);
  free(pre);
  free(yref);
  free(dpre);
  free(dbias);
  free(dbias_s);
  free(dw);
  free(dh);
  free(dx);
  free(dz);
  free(dg);
  free(db);
  free(dg_s);
  free(db_s);
}

/* Two steps in one context (the second reuses the arena and released buffers) give the first
 * step's gradients; a leaf's gradient survives the walk. */
static void test_reuse(void) {
  attn_nn_ctx *ctx = attn_nn_ctx_new();
  int64_t s[2] = {64, 300};
  float *g1 = malloc(64 * 300 * sizeof(float));
  t_rng rng = t_rng_make(5);
  float *xd = malloc(64 * 300 * sizeof(float));
  for (int i = 0; i < 64 * 300; i++) xd[i] = t_normal(&rng);
  for (int step = 0; step < 2; step++) {
    attn_var *x = attn_nn_tensor(ctx, 2, s, xd, 1);
    attn_var *a = attn_nn_gelu(ctx, x, 0);
    attn_var *b = attn_nn_mul(ctx, a, attn_nn_tanh(ctx, x));
    attn_var *c = attn_nn_add(ctx, b, attn_nn_sigmoid(ctx, b));
    attn_var *loss = attn_nn_sum(ctx, attn_nn_mul(ctx, c, c), -1, 0);
    loss = attn_nn_sum(ctx, loss, -1, 0);
    CHECK(loss != NULL, "reuse forward: %s", attn_nn_ctx_error(ctx));
    if (!loss) break;
    CHECK_OK(attn_backward(loss));
    CHECK(x->grad != NULL, "a leaf keeps its gradient");
    CHECK(a->grad == NULL && b->grad == NULL && c->grad == NULL, "results' gradients are released");
    if (step == 0)
      memcpy(g1, x->grad, 64 * 300 * sizeof(float));
    else
      CHECK(same(g1, x->grad, 64 * 300), "second step's gradient differs from the first");
    attn_nn_ctx_reset(ctx);
  }
  attn_nn_ctx_free(ctx);
  free(g1);
  free(xd);
}

/* softmax / log_softmax with a broadcast mask over 240 rows of 100 (3 chunks whose boundaries
 * fall inside a dim, so each chunk finds its mask offset from its first row's index): forward and
 * backward against double, bitwise across 1-3 threads. */
static void test_softmax(void) {
  enum { A = 6, B = 40, N = 100 };
  t_rng rng = t_rng_make(3);
  float *x = malloc(sizeof(float) * A * B * N), *dy = malloc(sizeof(float) * A * B * N);
  float mask[A * N];
  for (int i = 0; i < A * B * N; i++) {
    x[i] = 3.0f * t_normal(&rng);
    dy[i] = t_normal(&rng);
  }
  for (int i = 0; i < A * N; i++) mask[i] = (i % 7 == 3) ? -INFINITY : 0.25f * (float)(i % 5);
  const int saved = attn_get_num_threads();
  for (int logsm = 0; logsm < 2; logsm++) {
    float *ys[3], *gs[3];
    for (int t = 0; t < 3; t++) {
      CHECK_OK(attn_set_num_threads(t + 1));
      attn_nn_ctx *ctx = attn_nn_ctx_new();
      int64_t sx[3] = {A, B, N}, sm[3] = {A, 1, N};
      attn_var *xv = attn_nn_tensor(ctx, 3, sx, x, 1), *mv = attn_nn_tensor(ctx, 3, sm, mask, 0);
      attn_var *y = logsm ? attn_nn_log_softmax(ctx, xv, mv) : attn_nn_softmax(ctx, xv, mv);
      CHECK(y != NULL, "softmax: %s", attn_nn_ctx_error(ctx));
      if (y) CHECK_OK(attn_backward_from(y, dy));
      ys[t] = copy_of(y ? y->data : NULL, (int64_t)A * B * N);
      gs[t] = copy_of(xv->grad, (int64_t)A * B * N);
      attn_nn_ctx_free(ctx);
    }
    CHECK_OK(attn_set_num_threads(saved));
    for (int t = 1; t < 3; t++) {
      CHECK(same(ys[0], ys[t], (int64_t)A * B * N), "%s %d threads: forward differs",
            logsm ? "log_softmax" : "softmax", t + 1);
      CHECK(same(gs[0], gs[t], (int64_t)A * B * N), "%s %d threads: backward differs",
            logsm ? "log_softmax" : "softmax", t + 1);
    }
    double wy = 0, wg = 0;
    for (int a = 0; a < A; a++)
      for (int b = 0; b < B; b++) {
        const int64_t r = ((int64_t)a * B + b) * N;
        double m = -INFINITY, s = 0, sdy = 0, sdyp = 0, p[N];
        for (int c = 0; c < N; c++) m = fmax(m, (double)x[r + c] + mask[a * N + c]);
        for (int c = 0; c < N; c++) s += exp((double)x[r + c] + mask[a * N + c] - m);
        for (int c = 0; c < N; c++) {
          p[c] = exp((double)x[r + c] + mask[a * N + c] - m) / s;
          if (mask[a * N + c] != -INFINITY) sdy += dy[r + c];
          sdyp += dy[r + c] * p[c];
        }
        for (int c = 0; c < N; c++) {
          const bool blocked = mask[a * N + c] == -INFINITY;
          const double yref = logsm ? (blocked ? -INFINITY : log(p[c])) : p[c];
          const double gref = blocked ? 0.0
                              : logsm ? dy[r + c] - p[c] * sdy
                                      : p[c] * (dy[r + c] - sdyp);
          if (blocked)
            wy = fmax(wy, ys[0][r + c] == (float)yref ? 0.0 : 1.0);
          else
            wy = fmax(wy, fabs(ys[0][r + c] - yref) / (1.0 + fabs(yref)));
          wg = fmax(wg, fabs(gs[0][r + c] - gref) / (1.0 + fabs(gref)));
        }
      }
    CHECK(wy <= 1e-6, "%s forward error %.3g", logsm ? "log_softmax" : "softmax", wy);
    CHECK(wg <= 1e-5, "%s backward error %.3g", logsm ? "log_softmax" : "softmax", wg);
    for (int t = 0; t < 3; t++) {
      free(ys[t]);
      free(gs[t]);
    }
  }
  free(x);
  free(dy);
}

int main(void) {
  t_rng rng = t_rng_make(11);
  float *x = malloc(sizeof(float) * R * D), *z = malloc(sizeof(float) * R * D);
  float *gamma = malloc(sizeof(float) * D), *beta = malloc(sizeof(float) * D);
  float *w = malloc(sizeof(float) * OUT * D), *bias = malloc(sizeof(float) * OUT);
  float *dy = malloc(sizeof(float) * R * OUT);
  for (int i = 0; i < R * D; i++) {
    x[i] = 2.0f * t_normal(&rng) + 0.5f;
    z[i] = t_normal(&rng);
  }
  for (int i = 0; i < D; i++) {
    gamma[i] = 1.0f + 0.2f * t_normal(&rng);
    beta[i] = 0.1f * t_normal(&rng);
  }
  for (int i = 0; i < OUT * D; i++) w[i] = 0.06f * t_normal(&rng);
  for (int i = 0; i < OUT; i++) bias[i] = 0.1f * t_normal(&rng);
  for (int i = 0; i < R * OUT; i++) dy[i] = t_normal(&rng);

  const int saved = attn_get_num_threads();
  result res[3];
  for (int t = 0; t < 3; t++) {
    CHECK_OK(attn_set_num_threads(t + 1));
    run(x, gamma, beta, w, bias, z, dy, &res[t]);
  }
  CHECK_OK(attn_set_num_threads(saved));
  reference(x, gamma, beta, w, bias, z, dy, &res[0]);
  for (int t = 1; t < 3; t++) {
    CHECK(same(res[0].y, res[t].y, (int64_t)R * OUT), "%d threads: y differs", t + 1);
    CHECK(same(res[0].gx, res[t].gx, (int64_t)R * D), "%d threads: dx differs", t + 1);
    CHECK(same(res[0].gz, res[t].gz, (int64_t)R * D), "%d threads: dz differs", t + 1);
    CHECK(same(res[0].gg, res[t].gg, D), "%d threads: dgamma differs", t + 1);
    CHECK(same(res[0].gb, res[t].gb, D), "%d threads: dbeta differs", t + 1);
    CHECK(same(res[0].gw, res[t].gw, (int64_t)OUT * D), "%d threads: dW differs", t + 1);
    CHECK(same(res[0].gbias, res[t].gbias, OUT), "%d threads: dbias differs", t + 1);
  }
  for (int t = 0; t < 3; t++) result_free(&res[t]);
  test_reuse();
  test_softmax();
  free(x);
  free(z);
  free(gamma);
  free(beta);
  free(w);
  free(bias);
  free(dy);
  return t_finish("test_nn_parallel");
}
