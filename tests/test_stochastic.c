/* Stochastic alignment (include/attn/stochastic.h): stochastic hard attention with REINFORCE and
 * Gumbel-softmax. Known values, sampled frequencies against p (chi-square bound), the REINFORCE
 * estimator against the exact gradient of the expected reward, fast against reference with masks,
 * fully masked rows and strided views, every backward against central finite differences of an
 * independent double computation, thread and ISA determinism, seeds, bad inputs, a failing
 * allocator.
 *
 * Tolerances. log_prob and entropy: fast (f32 softmax, double sums) against the double reference,
 * |d| <= 1e-5 (1 + |ref|). Gradients: fast against reference 1e-5 (1 + max |ref|); the reference
 * (double, rounded to f32) against central differences of the surrogate computed in double by the
 * test itself (h = 1e-4, truncation ~1e-8): 1e-5 (1 + |numeric|); Gumbel: differences of the
 * f32 reference output with h = 3e-3, bound 1e-3 (1 + max |g|) as in tests/test_align.c. Samples:
 * the fast path and the reference draw the same index except where u lies within 1e-5 of a
 * cumulative boundary (checked). */
#include "attn/align.h"
#include "attn/stochastic.h"
#include "common.h"

static bool quick;

/* Softmax of z = x / T + m in double: p, lse, entropy; returns the unblocked count. */
static int64_t dsoftmax(const float *x, const float *m, int64_t n, double T, double *p, double *lse,
                        double *h) {
  double mx = -INFINITY;
  int64_t c = 0;
  for (int64_t j = 0; j < n; j++) {
    double z = m && m[j] == -INFINITY ? -INFINITY : (double)x[j] / T + (m ? m[j] : 0.0);
    p[j] = z;
    if (z > -INFINITY) {
      c++;
      mx = fmax(mx, z);
    }
  }
  if (!c) return 0;
  double s = 0.0;
  for (int64_t j = 0; j < n; j++) s += p[j] > -INFINITY ? exp(p[j] - mx) : 0.0;
  *lse = mx + log(s);
  double pz = 0.0;
  for (int64_t j = 0; j < n; j++) {
    double z = p[j];
    p[j] = z > -INFINITY ? exp(z - *lse) : 0.0;
    if (z > -INFINITY) pz += p[j] * z;
  }
  *h = *lse - pz;
  return c;
}

/* ---- known values --------------------------------------------------------------------------- */

static void test_known_values(void) {
  float x[8] = {-2.0f, 0.0f, 0.5f, 1.0f, 3.0f, 3.0f, 3.0f, 3.0f};
  float m[8] = {0.0f, 0.0f, 0.0f, 0.0f, -INFINITY, -INFINITY, -INFINITY, -INFINITY};
  int64_t shape[2] = {2, 4};
  attn_tensor tx = attn_tensor_make(x, ATTN_DTYPE_F32, 2, shape);
  attn_tensor tm = attn_tensor_make(m, ATTN_DTYPE_F32, 2, shape);
  float w[8], lp[2], h[2];
  int32_t idx[2];
  attn_tensor tw = attn_tensor_make(w, ATTN_DTYPE_F32, 2, shape);
  for (int use_ref = 0; use_ref < 2; use_ref++) {
    for (int seed = 0; seed < 20; seed++) {
      attn_stochastic_params p = attn_stochastic_params_default();
      p.seed = (uint64_t)seed * 7919u;
      p.temperature = 0.7f;
      if (use_ref)
        CHECK_OK(attn_hard_sample_forward_ref(&tw, idx, lp, h, &tx, &tm, &p));
      else
        CHECK_OK(attn_hard_sample_forward(&tw, idx, lp, h, &tx, &tm, &p, NULL, 0));
      double pd[4], lse, hh;
      dsoftmax(x, NULL, 4, 0.7, pd, &lse, &hh);
      CHECK(idx[0] >= 0 && idx[0] < 4, "index %d", idx[0]);
      if (idx[0] < 0 || idx[0] >= 4) continue;
      CHECK(fabs(lp[0] - log(pd[idx[0]])) < 1e-5, "log_prob %g want %g", (double)lp[0],
            log(pd[idx[0]]));
      CHECK(fabs(h[0] - hh) < 1e-5, "entropy %g want %g", (double)h[0], hh);
      for (int j = 0; j < 4; j++) CHECK(w[j] == (j == idx[0] ? 1.0f : 0.0f), "one-hot");
      /* The index is the inverse CDF at the documented uniform. */
      double u = attn_hard_sample_uniform(p.seed, 0), cum = 0.0;
      int want = -1;
      for (int j = 0; j < 4 && want < 0; j++)
        if ((cum += pd[j]) > u) want = j;
      CHECK(want == idx[0], "seed %d: index %d, inverse CDF at u = %g gives %d", seed, idx[0], u,
            want);
      /* Row 1 is fully masked. */
      CHECK(idx[1] == -1 && lp[1] == 0.0f && h[1] == 0.0f, "masked row: %d %g %g", idx[1],
            (double)lp[1], (double)h[1]);
      for (int j = 4; j < 8; j++) CHECK(w[j] == 0.0f, "masked row weights");
    }
  }
  /* Uniform scores: entropy log n. */
  float u[6] = {1, 1, 1, 1, 1, 1}, hu;
  int32_t iu;
  attn_tensor tu = t_vec(u, 6);
  CHECK_OK(attn_hard_sample_forward(NULL, &iu, NULL, &hu, &tu, NULL, NULL, NULL, 0));
  CHECK(fabs(hu - log(6.0)) < 1e-6, "uniform entropy %g", (double)hu);
  /* A NaN among the unblocked scores. */
  float xn[3] = {0.0f, NAN, 1.0f}, wn[3], lpn;
  attn_tensor txn = t_vec(xn, 3), twn = t_vec(wn, 3);
  CHECK_OK(attn_hard_sample_forward(&twn, &iu, &lpn, &hu, &txn, NULL, NULL, NULL, 0));
  CHECK(iu == -1 && isnan(lpn) && isnan(hu) && isnan(wn[0]), "NaN row: %d %g", iu, (double)lpn);
  /* The Gumbel forward uses attn_gumbel_noise's numbers at every position (the kernels draw
   * them 32 at a time): soft weights of a 77-wide row, and of row 3 of a batch, against softmax
   * of x + g computed here. */
  {
    enum { W = 77 };
    float xw[4 * W], aw[4 * W], yw[W], bw[W];
    int64_t s4[2] = {4, W};
    for (int i = 0; i < 4 * W; i++) xw[i] = 0.01f * (float)(i % 13);
    attn_tensor txw = attn_tensor_make(xw, ATTN_DTYPE_F32, 2, s4);
    attn_tensor taw = attn_tensor_make(aw, ATTN_DTYPE_F32, 2, s4);
    attn_stochastic_params pw = attn_stochastic_params_default();
    pw.seed = 0x123456789abcULL;
    CHECK_OK(attn_gumbel_softmax_forward(&taw, &txw, NULL, &pw, NULL, 0));
    for (int j = 0; j < W; j++) yw[j] = xw[3 * W + j] + attn_gumbel_noise(pw.seed, 3, j);
    attn_tensor tyw = t_vec(yw, W), tbw = t_vec(bw, W);
    attn_align_params apw = attn_align_params_default();
    CHECK_OK(attn_align_forward_ref(&tbw, &tyw, NULL, &apw));
    for (int j = 0; j < W; j++)
      CHECK(fabsf(aw[3 * W + j] - bw[j]) < 1e-6f, "gumbel noise at j = %d: %g vs %g", j,
            (double)aw[3 * W + j], (double)bw[j]);
  }
  /* Gumbel: a NaN score at a blocked position stays out; at an unblocked one the row is NaN. */
  {
    float xg[4] = {0.5f, NAN, 1.0f, -1.0f}, mg[4] = {0, -INFINITY, 0, 0}, ag[4];
    attn_tensor txg = t_vec(xg, 4), tmg = t_vec(mg, 4), tag = t_vec(ag, 4);
    attn_stochastic_params pg = attn_stochastic_params_default();
    for (int use_ref = 0; use_ref < 2; use_ref++) {
      if (use_ref)
        CHECK_OK(attn_gumbel_softmax_forward_ref(&tag, &txg, &tmg, &pg));
      else
        CHECK_OK(attn_gumbel_softmax_forward(&tag, &txg, &tmg, &pg, NULL, 0));
      CHECK(isfinite(ag[0]) && ag[1] == 0.0f && isfinite(ag[2]), "gumbel: blocked NaN leaked");
      if (use_ref)
        CHECK_OK(attn_gumbel_softmax_forward_ref(&tag, &txg, NULL, &pg));
      else
        CHECK_OK(attn_gumbel_softmax_forward(&tag, &txg, NULL, &pg, NULL, 0));
      CHECK(isnan(ag[0]) && isnan(ag[3]), "gumbel: NaN score did not give a NaN row");
    }
  }
  /* Gumbel: the noise of the documented function, y = (x + g) / T. */
  float x3[5] = {0.1f, -0.3f, 2.0f, 0.0f, 1.0f}, a[5], y[5], b[5];
  attn_tensor t5 = t_vec(x3, 5), ta = t_vec(a, 5), ty = t_vec(y, 5), tb = t_vec(b, 5);
  attn_stochastic_params p = attn_stochastic_params_default();
  p.seed = 99;
  p.temperature = 0.5f;
  for (int j = 0; j < 5; j++) {
    float g = attn_gumbel_noise(99, 0, j);
    CHECK(g > -2.82f && g < 16.7f, "gumbel %g", (double)g);
    y[j] = x3[j] + g;
  }
  attn_align_params ap = attn_align_params_default();
  ap.temperature = 0.5f;
  CHECK_OK(attn_align_forward_ref(&tb, &ty, NULL, &ap));
  for (int hard = 0; hard < 2; hard++) {
    p.hard = hard;
    CHECK_OK(attn_gumbel_softmax_forward(&ta, &t5, NULL, &p, NULL, 0));
    int best = 0;
    for (int j = 1; j < 5; j++)
      if (y[j] > y[best]) best = j;
    for (int j = 0; j < 5; j++) {
      double want = hard ? (j == best ? 1.0 : 0.0) : b[j];
      CHECK(fabs(a[j] - want) < 1e-5, "gumbel hard %d: a[%d] = %g want %g", hard, j, (double)a[j],
            want);
    }
  }
}

/* ---- sampled frequencies -------------------------------------------------------------------- */

/* Gumbel(0, 1) has mean gamma = 0.5772 and variance pi^2 / 6: 200000 draws, standard errors
 * 0.0029 and about 0.0066 (excess kurtosis 2.4). Also P(g <= 0) = exp(-1). */
static void test_gumbel_distribution(void) {
  const int64_t N = 200000;
  double s1 = 0.0, s2 = 0.0;
  int64_t below = 0;
  for (int64_t i = 0; i < N; i++) {
    double g = attn_gumbel_noise(31337, i / 1000, i % 1000);
    s1 += g;
    s2 += g * g;
    below += g <= 0.0;
  }
  double mean = s1 / (double)N, var = s2 / (double)N - mean * mean;
  double frac = (double)below / (double)N;
  CHECK(fabs(mean - 0.5772157) < 0.012, "Gumbel mean %g", mean);
  CHECK(fabs(var - 1.6449341) < 0.03, "Gumbel variance %g", var);
  CHECK(fabs(frac - exp(-1.0)) < 0.005, "P(g <= 0) = %g, want %g", frac, exp(-1.0));
}

static void test_frequencies(void) {
  enum { n = 5 };
  const int64_t rows = 20000;
  float x[n] = {0.3f, -1.0f, 1.2f, 0.0f, 0.5f}, m[n] = {0, 0, 0, -INFINITY, 0};
  /* Every row reads the same scores: a stride-0 leading dim on the input. */
  attn_tensor tx, tm;
  memset(&tx, 0, sizeof tx);
  tx.data = x;
  tx.dtype = ATTN_DTYPE_F32;
  tx.ndim = 2;
  tx.shape[0] = rows;
  tx.shape[1] = n;
  tx.stride[0] = 0;
  tx.stride[1] = 1;
  int64_t mshape[2] = {1, n};
  tm = attn_tensor_make(m, ATTN_DTYPE_F32, 2, mshape);
  int32_t *idx = malloc((size_t)rows * sizeof(int32_t)), *idx_r = malloc((size_t)rows * 4);
  attn_stochastic_params p = attn_stochastic_params_default();
  p.seed = 2024;
  CHECK_OK(attn_hard_sample_forward(NULL, idx, NULL, NULL, &tx, &tm, &p, NULL, 0));
  CHECK_OK(attn_hard_sample_forward_ref(NULL, idx_r, NULL, NULL, &tx, &tm, &p));
  double pd[n], lse, h;
  dsoftmax(x, m, n, 1.0, pd, &lse, &h);
  int64_t count[n] = {0}, diff = 0;
  for (int64_t r = 0; r < rows; r++) {
    if (idx[r] >= 0 && idx[r] < n) count[idx[r]]++;
    diff += idx[r] != idx_r[r];
  }
  double chi2 = 0.0;
  for (int j = 0; j < n; j++) {
    if (pd[j] == 0.0) {
      CHECK(count[j] == 0, "blocked position drawn %lld times", (long long)count[j]);
      continue;
    }
    double e = pd[j] * (double)rows;
    chi2 += ((double)count[j] - e) * ((double)count[j] - e) / e;
  }
  /* 3 degrees of freedom (4 cells): P(chi2 > 16.3) = 0.001. */
  CHECK(chi2 < 16.3, "chi-square %g over %lld draws", chi2, (long long)rows);
  CHECK(diff == 0, "fast and reference draws differ on %lld rows", (long long)diff);
  free(idx);
  free(idx_r);
}

/* E_s[R] = sum_s p_s r_s has gradient dE/dz_j = p_j (r_j - E[R]). The REINFORCE estimate
 * mean_r (R_r - b) (onehot(s_r) - p) = -mean d_in with coef = -(R - b) must match it within
 * sampling error, and the baseline lowers the variance without moving the mean. */
static void test_reinforce_estimator(void) {
  enum { n = 4 };
  const int64_t rows = 20000;
  float x[n] = {0.5f, -0.5f, 1.0f, 0.0f};
  const float rew[n] = {1.0f, -2.0f, 0.5f, 3.0f};
  attn_tensor tx;
  memset(&tx, 0, sizeof tx);
  tx.data = x;
  tx.dtype = ATTN_DTYPE_F32;
  tx.ndim = 2;
  tx.shape[0] = rows;
  tx.shape[1] = n;
  tx.stride[1] = 1;
  int32_t *idx = malloc((size_t)rows * 4);
  float *reward = malloc((size_t)rows * 4), *coef = malloc((size_t)rows * 4);
  float *d = malloc((size_t)rows * n * 4);
  int64_t shape[2] = {rows, n};
  attn_tensor td = attn_tensor_make(d, ATTN_DTYPE_F32, 2, shape);
  attn_stochastic_params p = attn_stochastic_params_default();
  p.seed = 77;
  CHECK_OK(attn_hard_sample_forward(NULL, idx, NULL, NULL, &tx, NULL, &p, NULL, 0));
  double pd[n], lse, h, er = 0.0;
  dsoftmax(x, NULL, n, 1.0, pd, &lse, &h);
  for (int j = 0; j < n; j++) er += pd[j] * rew[j];
  for (int64_t r = 0; r < rows; r++) reward[r] = idx[r] >= 0 ? rew[idx[r]] : 0.0f;
  double se_sum[2] = {0.0, 0.0};
  for (int use_baseline = 0; use_baseline < 2; use_baseline++) {
    float baseline = use_baseline ? (float)er : 0.0f;
    CHECK_OK(attn_reinforce_coef(coef, &baseline, reward, rows, 0.9f));
    CHECK_OK(attn_hard_sample_backward(&td, coef, NULL, idx, &tx, NULL, &p, NULL, 0));
    for (int j = 0; j < n; j++) {
      double mean = 0.0, sq = 0.0;
      for (int64_t r = 0; r < rows; r++) {
        double v = -(double)d[r * n + j];
        mean += v;
        sq += v * v;
      }
      mean /= (double)rows;
      double se = sqrt((sq / (double)rows - mean * mean) / (double)rows);
      se_sum[use_baseline] += se;
      double want = pd[j] * (rew[j] - er);
      CHECK(fabs(mean - want) < 4.0 * se + 1e-4,
            "baseline %d: REINFORCE estimate %g vs exact %g (standard error %g)", use_baseline,
            mean, want, se);
    }
  }
  printf("REINFORCE standard errors summed over the positions: %.4g without, %.4g with baseline\n",
         se_sum[0], se_sum[1]);
  CHECK(se_sum[1] < 0.95 * se_sum[0], "the baseline did not lower the variance: %g vs %g",
        se_sum[1], se_sum[0]);
  free(idx);
  free(reward);
  free(coef);
  free(d);
}

static void test_reinforce_coef(void) {
  float coef[3] = {7, 7, 7}, b = 0.0f;
  const float r1[3] = {1, 2, 3}, r2[3] = {2, 2, 2};
  CHECK_OK(attn_reinforce_coef(coef, &b, r1, 3, 0.9f));
  CHECK(coef[0] == -1.0f && coef[1] == -2.0f && coef[2] == -3.0f, "coef %g %g %g", (double)coef[0],
        (double)coef[1], (double)coef[2]);
  CHECK(fabsf(b - 0.2f) < 1e-7f, "baseline %g, want 0.2", (double)b);
  CHECK_OK(attn_reinforce_coef(coef, &b, r2, 3, 0.9f));
  CHECK(fabsf(coef[0] + 1.8f) < 1e-6f, "coef %g, want -1.8", (double)coef[0]);
  CHECK(fabsf(b - 0.38f) < 1e-6f, "baseline %g, want 0.38", (double)b);
  /* beta = 1 freezes the baseline, beta = 0 follows the last mean; rows = 0 changes nothing. */
  CHECK_OK(attn_reinforce_coef(coef, &b, r1, 3, 1.0f));
  CHECK(fabsf(b - 0.38f) < 1e-6f, "beta 1: baseline %g", (double)b);
  CHECK_OK(attn_reinforce_coef(coef, &b, r1, 3, 0.0f));
  CHECK(b == 2.0f, "beta 0: baseline %g", (double)b);
  CHECK_OK(attn_reinforce_coef(NULL, &b, NULL, 0, 0.5f));
  CHECK(b == 2.0f, "rows 0: baseline %g", (double)b);
  /* Bad inputs: nothing written. */
  float keep[3] = {coef[0], coef[1], coef[2]}, bad_r[3] = {1, NAN, 2};
  const float betas[3] = {-0.1f, 1.5f, NAN};
  for (int i = 0; i < 3; i++) {
    CHECK_STATUS(attn_reinforce_coef(coef, &b, r1, 3, betas[i]), ATTN_STATUS_INVALID_ARGUMENT);
    CHECK(strstr(attn_last_error(), "beta") != NULL, "message: %s", attn_last_error());
  }
  CHECK_STATUS(attn_reinforce_coef(coef, &b, bad_r, 3, 0.9f), ATTN_STATUS_INVALID_ARGUMENT);
  CHECK(strstr(attn_last_error(), "reward[1]") != NULL, "message: %s", attn_last_error());
  CHECK_STATUS(attn_reinforce_coef(coef, NULL, r1, 3, 0.9f), ATTN_STATUS_NULL_POINTER);
  CHECK_STATUS(attn_reinforce_coef(NULL, &b, r1, 3, 0.9f), ATTN_STATUS_NULL_POINTER);
  CHECK_STATUS(attn_reinforce_coef(coef, &b, r1, -1, 0.9f), ATTN_STATUS_INVALID_ARGUMENT);
  CHECK_STATUS(attn_reinforce_coef(coef, &b, coef, 3, 0.9f), ATTN_STATUS_ALIASING);
  float nb = INFINITY;
  CHECK_STATUS(attn_reinforce_coef(coef, &nb, r1, 3, 0.9f), ATTN_STATUS_INVALID_ARGUMENT);
  CHECK(memcmp(keep, coef, sizeof keep) == 0 && b == 2.0f, "written on error");
}

/* ---- fast against reference, finite differences ---------------------------------------------- */

typedef struct scase {
  int64_t B, T, n, ld;
  int mask_mode; /* 0 none, 1 full with -inf and a fully masked row, 2 (1, 1, n), 3 (B, T, 1) */
  float temperature;
  int hard;
} scase;

static void make_mask(t_buf *mb, attn_tensor *tm, const scase *c, t_rng *rng) {
  int64_t mB = c->B, mT = c->T, mn = c->n;
  if (c->mask_mode == 2) mB = mT = 1;
  if (c->mask_mode == 3) mn = 1;
  *mb = t_buf_new(ATTN_DTYPE_F32, mB * mT * mn);
  t_buf_fill_normal(mb, rng, 0.5f);
  if (c->mask_mode == 1 || c->mask_mode == 2)
    for (int64_t i = 0; i < mB * mT * mn; i++)
      if (t_uniform(rng, 0.0f, 1.0f) < 0.25f) t_f32(mb)[i] = -INFINITY;
  if (c->mask_mode == 1)
    for (int64_t j = 0; j < mn; j++) t_f32(mb)[(mB * mT - 1) * mn + j] = -INFINITY;
  if (c->mask_mode == 3) t_f32(mb)[0] = -INFINITY;
  *tm = t_view3(mb->data, mB, mT, mn, mn);
}

/* The mask entry of (row r, position j) for case c, or 0 without a mask. */
static float mask_at(const scase *c, const t_buf *mb, int64_t r, int64_t j) {
  if (!c->mask_mode) return 0.0f;
  int64_t idx = c->mask_mode == 2 ? j : c->mask_mode == 3 ? r : r * c->n + j;
  return t_f32(mb)[idx];
}

/* The sampler's surrogate coef log p_s + lam H of one row, in double, with x_j moved by dx
 * (0 for a fully masked row or s = -1). */
static double surrogate(const float *x, const float *m, int64_t n, double T, int64_t j, double dx,
                        int32_t s, double coef, double lam) {
  double *z = malloc((size_t)n * sizeof(double)), mx = -INFINITY, sum = 0.0, pz = 0.0;
  for (int64_t k = 0; k < n; k++) {
    double mk = m ? m[k] : 0.0;
    z[k] = mk == -INFINITY ? -INFINITY : ((double)x[k] + (k == j ? dx : 0.0)) / T + mk;
    mx = fmax(mx, z[k]);
  }
  double out = 0.0;
  if (mx > -INFINITY && s >= 0) {
    for (int64_t k = 0; k < n; k++) sum += z[k] > -INFINITY ? exp(z[k] - mx) : 0.0;
    double lse = mx + log(sum);
    for (int64_t k = 0; k < n; k++)
      if (z[k] > -INFINITY) pz += exp(z[k] - lse) * z[k];
    out = coef * (z[s] - lse) + lam * (lse - pz);
  }
  free(z);
  return out;
}

static void sample_case(const scase *c, t_rng *rng) {
  int64_t rows = c->B * c->T, ext = rows * c->ld, n = c->n;
  t_buf in = t_buf_new(ATTN_DTYPE_F32, ext), w_f = t_buf_new(ATTN_DTYPE_F32, ext),
        w_r = t_buf_new(ATTN_DTYPE_F32, ext), d_f = t_buf_new(ATTN_DTYPE_F32, ext),
        d_r = t_buf_new(ATTN_DTYPE_F32, ext), mb;
  t_buf_fill_normal(&in, rng, 2.0f);
  t_buf_fill(&w_f, NAN);
  t_buf_fill(&w_r, NAN);
  t_buf_fill(&d_f, NAN);
  t_buf_fill(&d_r, NAN);
  attn_tensor tm, tin = t_view3(in.data, c->B, c->T, n, c->ld);
  make_mask(&mb, &tm, c, rng);
  attn_tensor twf = t_view3(w_f.data, c->B, c->T, n, c->ld),
              twr = t_view3(w_r.data, c->B, c->T, n, c->ld);
  attn_tensor tdf = t_view3(d_f.data, c->B, c->T, n, c->ld),
              tdr = t_view3(d_r.data, c->B, c->T, n, c->ld);
  const attn_tensor *mask = c->mask_mode ? &tm : NULL;
  int32_t *i_f = malloc((size_t)rows * 4), *i_r = malloc((size_t)rows * 4);
  float *lp_f = malloc((size_t)rows * 4), *lp_r = malloc((size_t)rows * 4);
  float *h_f = malloc((size_t)rows * 4), *h_r = malloc((size_t)rows * 4);
  float *coef = malloc((size_t)rows * 4), *lam = malloc((size_t)rows * 4);
  for (int64_t r = 0; r < rows; r++) {
    coef[r] = t_normal(rng);
    lam[r] = t_normal(rng);
  }
  attn_stochastic_params p = attn_stochastic_params_default();
  p.temperature = c->temperature;
  p.seed = t_next(rng);
  CHECK_OK(attn_hard_sample_forward(&twf, i_f, lp_f, h_f, &tin, mask, &p, NULL, 0));
  CHECK_OK(attn_hard_sample_forward_ref(&twr, i_r, lp_r, h_r, &tin, mask, &p));
  double *pd = malloc((size_t)n * sizeof(double));
  float *mrow = malloc((size_t)n * 4);
  for (int64_t r = 0; r < rows; r++) {
    const float *x = t_f32(&in) + r * c->ld;
    for (int64_t j = 0; j < n; j++) mrow[j] = mask_at(c, &mb, r, j);
    double lse = 0, h = 0;
    int64_t cnt = dsoftmax(x, c->mask_mode ? mrow : NULL, n, c->temperature, pd, &lse, &h);
    if (cnt == 0) {
      CHECK(i_f[r] == -1 && i_r[r] == -1 && lp_f[r] == 0.0f && h_f[r] == 0.0f,
            "fully masked row %lld: %d %d %g %g", (long long)r, i_f[r], i_r[r], (double)lp_f[r],
            (double)h_f[r]);
    } else {
      if (i_f[r] != i_r[r]) {
        /* Allowed only when u sits on the boundary between the two draws. */
        int64_t lo = i_f[r] < i_r[r] ? i_f[r] : i_r[r];
        double cum = 0.0, u = attn_hard_sample_uniform(p.seed, r);
        for (int64_t j = 0; j <= lo; j++) cum += pd[j];
        CHECK(fabs(cum - u) < 1e-5, "row %lld: fast draws %d, reference %d (u %g, boundary %g)",
              (long long)r, i_f[r], i_r[r], u, cum);
      }
      CHECK(i_f[r] >= 0 && i_f[r] < n && pd[i_f[r]] > 0.0, "row %lld: index %d", (long long)r,
            i_f[r]);
      if (i_f[r] >= 0 && i_f[r] < n) {
        double want_lp = log(pd[i_f[r]]);
        CHECK(fabs(lp_f[r] - want_lp) <= 1e-5 * (1 + fabs(want_lp)),
              "row %lld: log_prob %g want %g", (long long)r, (double)lp_f[r], want_lp);
      }
      CHECK(fabs(h_f[r] - h) <= 1e-5 * (1 + h), "row %lld: entropy %g want %g", (long long)r,
            (double)h_f[r], h);
      CHECK(fabs(h_r[r] - h) <= 1e-6 * (1 + h), "row %lld: ref entropy %g want %g", (long long)r,
            (double)h_r[r], h);
    }
    for (int64_t j = 0; j < n; j++) {
      CHECK(t_f32(&w_f)[r * c->ld + j] == (j == i_f[r] ? 1.0f : 0.0f), "weights not one-hot");
      CHECK(t_f32(&w_r)[r * c->ld + j] == (j == i_r[r] ? 1.0f : 0.0f), "ref weights not one-hot");
    }
  }
  /* Backward: fast vs reference (same indices), and the reference vs finite differences of the
   * loss computed here in double. */
  CHECK_OK(attn_hard_sample_backward(&tdf, coef, lam, i_r, &tin, mask, &p, NULL, 0));
  CHECK_OK(attn_hard_sample_backward_ref(&tdr, coef, lam, i_r, &tin, mask, &p));
  double gmax = 0.0;
  for (int64_t i = 0; i < ext; i++)
    if ((i % c->ld) < n) gmax = fmax(gmax, fabs(t_f32(&d_r)[i]));
  for (int64_t r = 0; r < rows; r++)
    for (int64_t j = 0; j < n; j++) {
      float a = t_f32(&d_f)[r * c->ld + j], b = t_f32(&d_r)[r * c->ld + j];
      CHECK(fabs(a - b) <= 1e-5 * (1 + gmax), "row %lld j %lld: d_in fast %g ref %g", (long long)r,
            (long long)j, (double)a, (double)b);
    }
  int64_t fd_rows = rows < 6 ? rows : 6;
  for (int64_t r = 0; r < fd_rows; r++) {
    const float *x = t_f32(&in) + r * c->ld;
    for (int64_t j = 0; j < n; j++) mrow[j] = mask_at(c, &mb, r, j);
    const float *m = c->mask_mode ? mrow : NULL;
    for (int64_t j = 0; j < n; j++) {
      const double hstep = 1e-4;
      double lp = surrogate(x, m, n, c->temperature, j, hstep, i_r[r], coef[r], lam[r]);
      double lm = surrogate(x, m, n, c->temperature, j, -hstep, i_r[r], coef[r], lam[r]);
      double num = (lp - lm) / (2 * hstep), ana = t_f32(&d_r)[r * c->ld + j];
      CHECK(fabs(num - ana) <= 1e-5 * (1 + fabs(num)),
            "row %lld j %lld: d_in %g, finite difference %g", (long long)r, (long long)j, ana, num);
    }
  }
  free(pd);
  free(mrow);
  t_buf *all[] = {&in, &w_f, &w_r, &d_f, &d_r, &mb};
  for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) {
    CHECK(t_buf_guard_ok(all[i]), "guard bytes of buffer %zu", i);
    t_buf_free(all[i]);
  }
  free(i_f);
  free(i_r);
  free(lp_f);
  free(lp_r);
  free(h_f);
  free(h_r);
  free(coef);
  free(lam);
}

/* Gumbel: fast vs reference forward and backward; the reference's backward vs finite
 * differences of its forward (the noise is fixed by the seed). */
static void gumbel_case(const scase *c, t_rng *rng) {
  int64_t rows = c->B * c->T, ext = rows * c->ld, n = c->n;
  t_buf in = t_buf_new(ATTN_DTYPE_F32, ext), o_f = t_buf_new(ATTN_DTYPE_F32, ext),
        o_r = t_buf_new(ATTN_DTYPE_F32, ext), g = t_buf_new(ATTN_DTYPE_F32, ext),
        d_f = t_buf_new(ATTN_DTYPE_F32, ext), d_r = t_buf_new(ATTN_DTYPE_F32, ext), mb;
  t_buf_fill_normal(&in, rng, 2.0f);
  t_buf_fill_normal(&g, rng, 1.0f);
  t_buf_fill(&o_f, NAN);
  t_buf_fill(&o_r, NAN);
  t_buf_fill(&d_f, NAN);
  t_buf_fill(&d_r, NAN);
  attn_tensor tm;
  make_mask(&mb, &tm, c, rng);
  const attn_tensor *mask = c->mask_mode ? &tm : NULL;
  attn_tensor tin = t_view3(in.data, c->B, c->T, n, c->ld),
              tof = t_view3(o_f.data, c->B, c->T, n, c->ld),
              tor = t_view3(o_r.data, c->B, c->T, n, c->ld),
              tg = t_view3(g.data, c->B, c->T, n, c->ld),
              tdf = t_view3(d_f.data, c->B, c->T, n, c->ld),
              tdr = t_view3(d_r.data, c->B, c->T, n, c->ld);
  attn_stochastic_params p = attn_stochastic_params_default();
  p.temperature = c->temperature;
  p.hard = c->hard;
  p.seed = t_next(rng);
  CHECK_OK(attn_gumbel_softmax_forward(&tof, &tin, mask, &p, NULL, 0));
  CHECK_OK(attn_gumbel_softmax_forward_ref(&tor, &tin, mask, &p));
  for (int64_t r = 0; r < rows; r++) {
    bool blocked = true;
    for (int64_t j = 0; j < n; j++) blocked &= mask_at(c, &mb, r, j) == -INFINITY;
    double sum = 0.0;
    for (int64_t j = 0; j < n; j++) {
      float a = t_f32(&o_f)[r * c->ld + j], b = t_f32(&o_r)[r * c->ld + j];
      CHECK(fabs(a - b) <= 2e-6 + 2e-5 * fabs(b), "gumbel row %lld j %lld: fast %g ref %g",
            (long long)r, (long long)j, (double)a, (double)b);
      sum += a;
    }
    CHECK(blocked ? sum == 0.0 : fabs(sum - 1.0) < 1e-5, "gumbel row %lld sums to %g", (long long)r,
          sum);
  }
  CHECK_OK(attn_gumbel_softmax_backward(&tdf, &tg, &tof, &tin, mask, &p, NULL, 0));
  CHECK_OK(attn_gumbel_softmax_backward_ref(&tdr, &tg, &tor, &tin, mask, &p));
  double gmax = 0.0;
  for (int64_t r = 0; r < rows; r++)
    for (int64_t j = 0; j < n; j++) gmax = fmax(gmax, fabs(t_f32(&d_r)[r * c->ld + j]));
  for (int64_t r = 0; r < rows; r++)
    for (int64_t j = 0; j < n; j++) {
      float a = t_f32(&d_f)[r * c->ld + j], b = t_f32(&d_r)[r * c->ld + j];
      CHECK(fabs(a - b) <= 1e-5 * (1 + gmax), "gumbel d_in fast %g ref %g", (double)a, (double)b);
    }
  /* Finite differences of L = sum g . softmax(y) (the soft forward, also for hard: the
   * straight-through gradient is the soft one). */
  attn_stochastic_params ps = p;
  ps.hard = 0;
  int64_t fd_rows = rows < 4 ? rows : 4;
  float *tmp = malloc((size_t)ext * 4);
  attn_tensor tt = t_view3(tmp, c->B, c->T, n, c->ld);
  for (int64_t r = 0; r < fd_rows; r++)
    for (int64_t j = 0; j < n; j++) {
      float *x = t_f32(&in) + r * c->ld + j, x0 = *x, hs = 3e-3f;
      double lv[2];
      for (int sgn = 0; sgn < 2; sgn++) {
        *x = x0 + (sgn ? -hs : hs);
        CHECK_OK(attn_gumbel_softmax_forward_ref(&tt, &tin, mask, &ps));
        double l = 0.0;
        for (int64_t k = 0; k < n; k++) l += (double)t_f32(&g)[r * c->ld + k] * tmp[r * c->ld + k];
        lv[sgn] = l;
      }
      *x = x0;
      double num = (lv[0] - lv[1]) / (2.0 * hs), ana = t_f32(&d_r)[r * c->ld + j];
      CHECK(fabs(num - ana) <= 1e-3 * (1 + gmax), "gumbel hard %d row %lld j %lld: d_in %g, FD %g",
            c->hard, (long long)r, (long long)j, ana, num);
    }
  free(tmp);
  t_buf *all[] = {&in, &o_f, &o_r, &g, &d_f, &d_r, &mb};
  for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) {
    CHECK(t_buf_guard_ok(all[i]), "guard bytes of buffer %zu", i);
    t_buf_free(all[i]);
  }
}

static void test_fast_vs_ref(void) {
  t_rng rng = t_rng_make(31);
  const int64_t ns[] = {1, 3, 7, 33, 130};
  for (size_t k = 0; k < sizeof ns / sizeof ns[0]; k++)
    for (int mm = 0; mm < 4; mm++)
      for (int hard = 0; hard < 2; hard++) {
        scase c = {2, quick ? 3 : 5, ns[k], ns[k] + (mm % 2) * 3, mm, hard ? 0.6f : 1.0f, hard};
        sample_case(&c, &rng);
        gumbel_case(&c, &rng);
      }
}

/* ---- threads, ISAs, seeds ------------------------------------------------------------------- */

static void test_determinism(void) {
  t_rng rng = t_rng_make(12);
  enum { B = 3, T = 40, n = 200 };
  int64_t shape[3] = {B, T, n}, rows = B * T;
  size_t bytes = sizeof(float) * B * T * n;
  float *x = malloc(bytes), *m = malloc(bytes), *g = malloc(bytes), *coef = malloc(rows * 4);
  for (int i = 0; i < B * T * n; i++) {
    x[i] = 2.0f * t_normal(&rng);
    g[i] = t_normal(&rng);
    m[i] = t_uniform(&rng, 0, 1) < 0.3f ? -INFINITY : 0.0f;
  }
  for (int64_t r = 0; r < rows; r++) coef[r] = t_normal(&rng);
  attn_tensor tx = attn_tensor_make(x, ATTN_DTYPE_F32, 3, shape);
  attn_tensor tm = attn_tensor_make(m, ATTN_DTYPE_F32, 3, shape);
  attn_tensor tg = attn_tensor_make(g, ATTN_DTYPE_F32, 3, shape);
  int saved = attn_get_num_threads();
  /* Runs 0-2: 1, 2, 3 threads on the best ISA; then one run per supported ISA. */
  float *w0 = NULL, *d0 = NULL, *gs0 = NULL, *gd0 = NULL;
  int32_t *i0 = NULL;
  for (int run = 0; run < 6; run++) {
    int th = run < 3 ? run + 1 : 2;
    attn_isa isa = run < 3 ? attn_cpu_best_isa() : (attn_isa)(run - 3);
    if (!attn_cpu_supports(isa)) continue;
    CHECK_OK(attn_set_num_threads(th));
    CHECK_OK(attn_set_isa(isa));
    float *w = malloc(bytes), *d = malloc(bytes), *gs = malloc(bytes), *gd = malloc(bytes);
    int32_t *idx = malloc(rows * 4);
    attn_tensor tw = attn_tensor_make(w, ATTN_DTYPE_F32, 3, shape);
    attn_tensor td = attn_tensor_make(d, ATTN_DTYPE_F32, 3, shape);
    attn_tensor tgs = attn_tensor_make(gs, ATTN_DTYPE_F32, 3, shape);
    attn_tensor tgd = attn_tensor_make(gd, ATTN_DTYPE_F32, 3, shape);
    attn_stochastic_params p = attn_stochastic_params_default();
    p.seed = 5;
    p.temperature = 0.8f;
    CHECK_OK(attn_hard_sample_forward(&tw, idx, NULL, NULL, &tx, &tm, &p, NULL, 0));
    CHECK_OK(attn_hard_sample_backward(&td, coef, coef, idx, &tx, &tm, &p, NULL, 0));
    p.hard = 1;
    CHECK_OK(attn_gumbel_softmax_forward(&tgs, &tx, &tm, &p, NULL, 0));
    CHECK_OK(attn_gumbel_softmax_backward(&tgd, &tg, &tgs, &tx, &tm, &p, NULL, 0));
    if (!w0) {
      w0 = w, d0 = d, gs0 = gs, gd0 = gd, i0 = idx;
      continue;
    }
    CHECK(memcmp(i0, idx, rows * 4) == 0 && memcmp(w0, w, bytes) == 0,
          "samples differ: %d threads, %s", th, attn_isa_name(isa));
    CHECK(memcmp(d0, d, bytes) == 0, "sampler backward differs: %d threads, %s", th,
          attn_isa_name(isa));
    CHECK(memcmp(gs0, gs, bytes) == 0 && memcmp(gd0, gd, bytes) == 0,
          "gumbel differs: %d threads, %s", th, attn_isa_name(isa));
    free(w);
    free(d);
    free(gs);
    free(gd);
    free(idx);
  }
  CHECK_OK(attn_set_isa(attn_cpu_best_isa()));
  CHECK_OK(attn_set_num_threads(saved));
  /* Another seed draws other samples; the same seed the same ones. */
  int32_t *i1 = malloc(rows * 4), *i2 = malloc(rows * 4);
  attn_stochastic_params p = attn_stochastic_params_default();
  p.seed = 5;
  p.temperature = 0.8f;
  CHECK_OK(attn_hard_sample_forward(NULL, i1, NULL, NULL, &tx, &tm, &p, NULL, 0));
  int64_t same = 0;
  for (int64_t r = 0; r < rows; r++) same += i1[r] == i0[r];
  CHECK(same == rows, "same seed, %lld of %lld samples equal", (long long)same, (long long)rows);
  p.seed = 6;
  CHECK_OK(attn_hard_sample_forward(NULL, i2, NULL, NULL, &tx, &tm, &p, NULL, 0));
  same = 0;
  for (int64_t r = 0; r < rows; r++) same += i1[r] == i2[r];
  CHECK(same < rows / 2, "seed 6 repeats %lld of %lld samples of seed 5", (long long)same,
        (long long)rows);
  /* The sampler's backward in place (d_in is in itself) equals the out-of-place one. */
  {
    float *xi = malloc(bytes);
    memcpy(xi, x, bytes);
    attn_tensor txi = attn_tensor_make(xi, ATTN_DTYPE_F32, 3, shape);
    attn_stochastic_params pi = attn_stochastic_params_default();
    pi.seed = 5;
    pi.temperature = 0.8f;
    CHECK_OK(attn_hard_sample_backward(&txi, coef, coef, i0, &txi, &tm, &pi, NULL, 0));
    CHECK(memcmp(xi, d0, bytes) == 0, "sampler backward in place differs");
    free(xi);
  }
  /* In place (Gumbel) and a caller's workspace. */
  float *y = malloc(bytes);
  memcpy(y, x, bytes);
  attn_tensor ty = attn_tensor_make(y, ATTN_DTYPE_F32, 3, shape);
  p.seed = 5;
  p.hard = 1;
  CHECK_OK(attn_gumbel_softmax_forward(&ty, &ty, &tm, &p, NULL, 0));
  CHECK(memcmp(y, gs0, bytes) == 0, "gumbel in place differs");
  size_t ws_size = 0;
  CHECK_OK(attn_stochastic_workspace_size(&ws_size, &tx));
  void *ws = aligned_alloc(64, (ws_size + 63) / 64 * 64);
  CHECK_OK(attn_gumbel_softmax_forward(&ty, &tx, &tm, &p, ws, ws_size));
  CHECK(memcmp(y, gs0, bytes) == 0, "gumbel with a workspace differs");
  CHECK_STATUS(attn_gumbel_softmax_forward(&ty, &tx, &tm, &p, ws, ws_size - 1),
               ATTN_STATUS_WORKSPACE_TOO_SMALL);
  free(ws);
  free(y);
  free(i1);
  free(i2);
  free(w0);
  free(d0);
  free(gs0);
  free(gd0);
  free(i0);
  free(x);
  free(m);
  free(g);
  free(coef);
}

/* ---- bad inputs ----------------------------------------------------------------------------- */

static void test_bad_inputs(void) {
  float x[12], o[12], g[12], lp[3], h[3], coef[3];
  int32_t idx[3] = {0, 1, 2};
  for (int i = 0; i < 12; i++) {
    x[i] = (float)i;
    o[i] = 42.0f;
    g[i] = 1.0f;
  }
  int64_t shape[2] = {3, 4};
  attn_tensor tx = attn_tensor_make(x, ATTN_DTYPE_F32, 2, shape);
  attn_tensor to = attn_tensor_make(o, ATTN_DTYPE_F32, 2, shape);
  attn_tensor tg = attn_tensor_make(g, ATTN_DTYPE_F32, 2, shape);
  attn_stochastic_params p = attn_stochastic_params_default();
  const float temps[3] = {0.0f, -1.0f, NAN};
  for (int i = 0; i < 3; i++) {
    p.temperature = temps[i];
    t_expect_error(attn_hard_sample_forward(&to, idx, lp, h, &tx, NULL, &p, NULL, 0),
                   ATTN_STATUS_INVALID_ARGUMENT, "temperature", "sampler temperature");
    t_expect_error(attn_hard_sample_backward_ref(&to, coef, NULL, idx, &tx, NULL, &p),
                   ATTN_STATUS_INVALID_ARGUMENT, "temperature", "sampler backward temperature");
    t_expect_error(attn_gumbel_softmax_forward(&to, &tx, NULL, &p, NULL, 0),
                   ATTN_STATUS_INVALID_ARGUMENT, "temperature", "gumbel temperature");
    t_expect_error(attn_gumbel_softmax_backward_ref(&to, &tg, &tg, &tx, NULL, &p),
                   ATTN_STATUS_INVALID_ARGUMENT, "temperature", "gumbel backward temperature");
  }
  p = attn_stochastic_params_default();
  t_expect_error(attn_hard_sample_forward(&to, NULL, lp, h, &tx, NULL, &p, NULL, 0),
                 ATTN_STATUS_NULL_POINTER, "index", "NULL index");
  t_expect_error(attn_hard_sample_forward_ref(&to, idx, lp, h, NULL, NULL, &p),
                 ATTN_STATUS_NULL_POINTER, "in", "NULL in");
  t_expect_error(attn_gumbel_softmax_forward(NULL, &tx, NULL, &p, NULL, 0),
                 ATTN_STATUS_NULL_POINTER, "out", "NULL out");
  t_expect_error(attn_gumbel_softmax_backward(&to, NULL, &tg, &tx, NULL, &p, NULL, 0),
                 ATTN_STATUS_NULL_POINTER, "d_out", "NULL d_out");
  t_expect_error(attn_hard_sample_backward(NULL, coef, NULL, idx, &tx, NULL, &p, NULL, 0),
                 ATTN_STATUS_NULL_POINTER, "d_in", "NULL d_in");
  int64_t shape_b[2] = {3, 5};
  attn_tensor tbad = attn_tensor_make(o, ATTN_DTYPE_F32, 2, shape_b);
  t_expect_error(attn_hard_sample_forward(&tbad, idx, lp, h, &tx, NULL, &p, NULL, 0),
                 ATTN_STATUS_SHAPE_MISMATCH, "weights", "weights shape");
  t_expect_error(attn_gumbel_softmax_forward_ref(&tbad, &tx, NULL, &p), ATTN_STATUS_SHAPE_MISMATCH,
                 "out", "gumbel out shape");
  attn_tensor th = tx;
  th.dtype = ATTN_DTYPE_BF16;
  t_expect_error(attn_hard_sample_forward(&to, idx, lp, h, &th, NULL, &p, NULL, 0),
                 ATTN_STATUS_UNSUPPORTED_DTYPE, "in", "bf16");
  /* Aliasing: per-row outputs with each other and with tensors. */
  t_expect_error(attn_hard_sample_forward(&to, idx, (float *)idx, h, &tx, NULL, &p, NULL, 0),
                 ATTN_STATUS_ALIASING, "overlaps", "log_prob over index");
  t_expect_error(attn_hard_sample_forward(&to, idx, x, h, &tx, NULL, &p, NULL, 0),
                 ATTN_STATUS_ALIASING, "log_prob overlaps in", "log_prob over in");
  t_expect_error(attn_hard_sample_backward(&to, o, NULL, idx, &tx, NULL, &p, NULL, 0),
                 ATTN_STATUS_ALIASING, "coef", "d_in over coef");
  int64_t shape_s[2] = {2, 4};
  attn_tensor txs = attn_tensor_make(x, ATTN_DTYPE_F32, 2, shape_s);
  attn_tensor txs2 = attn_tensor_make(x + 4, ATTN_DTYPE_F32, 2, shape_s);
  t_expect_error(attn_gumbel_softmax_forward(&txs2, &txs, NULL, &p, NULL, 0), ATTN_STATUS_ALIASING,
                 "overlaps", "gumbel partial overlap");
  /* Indices out of range. */
  int32_t bad_idx[3] = {0, 4, 1};
  t_expect_error(attn_hard_sample_backward(&to, coef, NULL, bad_idx, &tx, NULL, &p, NULL, 0),
                 ATTN_STATUS_INVALID_ARGUMENT, "index[1]", "index out of range");
  bad_idx[1] = -2;
  t_expect_error(attn_hard_sample_backward_ref(&to, coef, NULL, bad_idx, &tx, NULL, &p),
                 ATTN_STATUS_INVALID_ARGUMENT, "index[1]", "index -2");
  t_expect_error(attn_hard_sample_backward(&to, coef, NULL, NULL, &tx, NULL, &p, NULL, 0),
                 ATTN_STATUS_NULL_POINTER, "index", "NULL index (backward)");
  int64_t shape_0[2] = {3, 0};
  attn_tensor t0 = attn_tensor_make(x, ATTN_DTYPE_F32, 2, shape_0);
  t_expect_error(attn_hard_sample_forward(NULL, idx, NULL, NULL, &t0, NULL, &p, NULL, 0),
                 ATTN_STATUS_INVALID_ARGUMENT, "no positions", "n = 0");
  /* A row longer than an int32 index can address (a view only: nothing is read). */
  int64_t shape_big[2] = {1, (int64_t)INT32_MAX + 1};
  attn_tensor tbig = attn_tensor_make(x, ATTN_DTYPE_F32, 2, shape_big);
  t_expect_error(attn_hard_sample_forward(NULL, idx, NULL, NULL, &tbig, NULL, &p, NULL, 0),
                 ATTN_STATUS_INVALID_ARGUMENT, "int32", "n > INT32_MAX");
  t_expect_error(attn_hard_sample_forward_ref(NULL, idx, NULL, NULL, &tbig, NULL, &p),
                 ATTN_STATUS_INVALID_ARGUMENT, "int32", "n > INT32_MAX (ref)");
  bool untouched = true;
  for (int i = 0; i < 12; i++) untouched &= o[i] == 42.0f;
  CHECK(untouched && idx[0] == 0 && idx[1] == 1, "outputs written on error");
  /* Success clears the last error; zero rows is a no-op. */
  CHECK_OK(attn_gumbel_softmax_forward(&to, &tx, NULL, &p, NULL, 0));
  CHECK(attn_last_error()[0] == '\0', "last error not cleared: %s", attn_last_error());
  int64_t shape_z[2] = {0, 4};
  attn_tensor tz = attn_tensor_make(x, ATTN_DTYPE_F32, 2, shape_z);
  CHECK_OK(attn_hard_sample_forward(NULL, NULL, NULL, NULL, &tz, NULL, &p, NULL, 0));
}

/* Allocation failures: OUT_OF_MEMORY, outputs untouched, nothing leaked. */
static void test_failing_allocator(void) {
  float x[20], o[20], g[20], d[20], coef[4];
  int32_t idx[4] = {0, 1, 2, 3}, idx2[4];
  for (int i = 0; i < 20; i++) {
    x[i] = (float)(i % 7);
    g[i] = 1.0f;
  }
  for (int i = 0; i < 4; i++) coef[i] = 1.0f;
  int64_t shape[2] = {4, 5};
  attn_tensor tx = attn_tensor_make(x, ATTN_DTYPE_F32, 2, shape);
  attn_tensor to = attn_tensor_make(o, ATTN_DTYPE_F32, 2, shape);
  attn_tensor tg = attn_tensor_make(g, ATTN_DTYPE_F32, 2, shape);
  attn_tensor td = attn_tensor_make(d, ATTN_DTYPE_F32, 2, shape);
  attn_stochastic_params p = attn_stochastic_params_default();
  CHECK_OK(attn_gumbel_softmax_forward(&to, &tx, NULL, &p, NULL, 0));
  for (int which = 0; which < 8; which++) {
    float keep_o[20], keep_d[20];
    int32_t keep_i[4];
    memcpy(keep_o, o, sizeof keep_o);
    memcpy(keep_d, d, sizeof keep_d);
    memcpy(idx2, idx, sizeof idx2);
    memcpy(keep_i, idx2, sizeof keep_i);
    t_alloc_install(1);
    attn_status st;
    switch (which) {
      case 0:
        st = attn_hard_sample_forward(&to, idx2, NULL, NULL, &tx, NULL, &p, NULL, 0);
        break;
      case 1:
        st = attn_hard_sample_forward_ref(&to, idx2, NULL, NULL, &tx, NULL, &p);
        break;
      case 2:
        st = attn_hard_sample_backward(&td, coef, NULL, idx, &tx, NULL, &p, NULL, 0);
        break;
      case 3:
        st = attn_hard_sample_backward_ref(&td, coef, NULL, idx, &tx, NULL, &p);
        break;
      case 4:
        st = attn_gumbel_softmax_forward(&to, &tx, NULL, &p, NULL, 0);
        break;
      case 5:
        st = attn_gumbel_softmax_forward_ref(&to, &tx, NULL, &p);
        break;
      case 6:
        st = attn_gumbel_softmax_backward(&td, &tg, &to, &tx, NULL, &p, NULL, 0);
        break;
      default:
        st = attn_gumbel_softmax_backward_ref(&td, &tg, &to, &tx, NULL, &p);
        break;
    }
    CHECK(st == ATTN_STATUS_OUT_OF_MEMORY, "case %d: %s", which, attn_status_str(st));
    CHECK(t_alloc_live() == 0, "case %d: %lld blocks leaked", which, (long long)t_alloc_live());
    t_alloc_uninstall();
    CHECK(memcmp(keep_o, o, sizeof keep_o) == 0 && memcmp(keep_d, d, sizeof keep_d) == 0 &&
              memcmp(keep_i, idx2, sizeof keep_i) == 0,
          "case %d: output written", which);
  }
}

int main(void) {
  quick = getenv("ATTN_TEST_QUICK") != NULL;
  test_known_values();
  test_gumbel_distribution();
  test_frequencies();
  test_reinforce_estimator();
  test_reinforce_coef();
  test_fast_vs_ref();
  test_determinism();
  test_bad_inputs();
  test_failing_allocator();
  return t_finish("test_stochastic");
}
