/* Monotonic attention (include/attn/monotonic.h): known values, the §3.11 pitfall (p = 1), the
 * p -> {0, 1} limit against the hard alignment, recursive vs parallel where the clamps are idle,
 * fast against the reference (explicit O(Tq Tk^2) sum) with masks, fully masked steps and strided
 * views, every backward against central finite differences, noise, thread and ISA determinism,
 * bad inputs, a failing allocator.
 *
 * Tolerances. Forward: the fast path computes p in f32 (polynomial exp, ~2 ulp) and the
 * recurrence in double; alpha is a sum of products of p's, so |fast - ref| <= 1e-6 + 1e-5 |ref|.
 * Hard alignments are compared exactly. Backward: fast vs reference 1e-5 (1 + max |ref|);
 * reference vs central differences of the reference forward (f32 output) with h = 1e-3:
 * rounding ~ 6e-8 sqrt(Tq Tk) / 2h < 1e-4, truncation O(h^2); bound 1e-3 (1 + max |g|). */
#include "attn/monotonic.h"
#include "common.h"

static bool quick;

static const char *mode_name(attn_monotonic_mode m) {
  return m == ATTN_MONOTONIC_RECURSIVE  ? "recursive"
         : m == ATTN_MONOTONIC_PARALLEL ? "parallel"
                                        : "hard";
}

/* ---- known values --------------------------------------------------------------------------- */

static void test_known_values(void) {
  /* Constant p = sigmoid(e) at every step: alpha_{0,j} = p (1 - p)^j. */
  enum { tq = 3, tk = 6 };
  float e[tq * tk], a[tq * tk];
  int64_t shape[2] = {tq, tk};
  attn_tensor te = attn_tensor_make(e, ATTN_DTYPE_F32, 2, shape);
  attn_tensor ta = attn_tensor_make(a, ATTN_DTYPE_F32, 2, shape);
  for (int i = 0; i < tq * tk; i++) e[i] = 0.4f;
  double p = 1.0 / (1.0 + exp(-0.4));
  for (int mode = 0; mode < 2; mode++)
    for (int use_ref = 0; use_ref < 2; use_ref++) {
      attn_monotonic_params prm = attn_monotonic_params_default();
      prm.mode = (attn_monotonic_mode)mode;
      if (use_ref)
        CHECK_OK(attn_monotonic_forward_ref(&ta, &te, NULL, &prm));
      else
        CHECK_OK(attn_monotonic_forward(&ta, &te, NULL, &prm, NULL, 0));
      for (int j = 0; j < tk; j++) {
        double want = p * pow(1.0 - p, j);
        CHECK(fabs(a[j] - want) < 1e-6, "%s%s: alpha[0][%d] = %g, want %g", mode_name(prm.mode),
              use_ref ? " ref" : "", j, (double)a[j], want);
      }
      /* Step 1: alpha_{1,j} = p q_j, q_j = sum_{k<=j} alpha_{0,k} (1-p)^(j-k) = (j+1) p (1-p)^j. */
      for (int j = 0; j < tk; j++) {
        double want = p * (j + 1) * p * pow(1.0 - p, j);
        CHECK(fabs(a[tk + j] - want) < 1e-6, "%s: alpha[1][%d] = %g, want %g", mode_name(prm.mode),
              j, (double)a[tk + j], want);
      }
    }
  /* The pitfall of §3.11: step 0 stops at position 2 (p = [~0, ~0, 1, ..]); step 1 has p = 1
   * everywhere. The recurrence keeps alpha_1 = alpha_0 = one_hot(2); the clamped closed form
   * divides by cumprod(1 - p) = FLT_MIN^2 clipped to 1e-10 and loses the mass. */
  for (int j = 0; j < tk; j++) {
    e[j] = j < 2 ? -40.0f : 40.0f;
    e[tk + j] = 40.0f;
    e[2 * tk + j] = 40.0f;
  }
  for (int mode = 0; mode < 3; mode++)
    for (int use_ref = 0; use_ref < 2; use_ref++) {
      attn_monotonic_params prm = attn_monotonic_params_default();
      prm.mode = (attn_monotonic_mode)mode;
      if (use_ref)
        CHECK_OK(attn_monotonic_forward_ref(&ta, &te, NULL, &prm));
      else
        CHECK_OK(attn_monotonic_forward(&ta, &te, NULL, &prm, NULL, 0));
      for (int i = 0; i < tq; i++) {
        bool lost = prm.mode == ATTN_MONOTONIC_PARALLEL && i > 0;
        double want = lost ? 0.0 : 1.0;
        CHECK(fabs(a[i * tk + 2] - want) < 1e-6, "%s%s: pitfall: alpha[%d][2] = %g, want %g",
              mode_name(prm.mode), use_ref ? " ref" : "", i, (double)a[i * tk + 2], want);
      }
    }
  /* Hard: one-hot at the first e >= 0 from the previous position; none -> zeros from then on. */
  const float eh[3 * 5] = {-1, -1, 2,  3,  -1,  /* t0 = 2 */
                           5,  -1, -1, 0,  1,   /* scan from 2: first e >= 0 at 3 */
                           9,  9,  9,  -1, -2}; /* scan from 3: none -> attends nowhere */
  float ah[15];
  int64_t sh[2] = {3, 5};
  attn_tensor teh = attn_tensor_make((void *)eh, ATTN_DTYPE_F32, 2, sh);
  attn_tensor tah = attn_tensor_make(ah, ATTN_DTYPE_F32, 2, sh);
  attn_monotonic_params prm = attn_monotonic_params_default();
  prm.mode = ATTN_MONOTONIC_HARD;
  prm.noise_std = 3.0f; /* ignored in hard mode */
  for (int use_ref = 0; use_ref < 2; use_ref++) {
    if (use_ref)
      CHECK_OK(attn_monotonic_forward_ref(&tah, &teh, NULL, &prm));
    else
      CHECK_OK(attn_monotonic_forward(&tah, &teh, NULL, &prm, NULL, 0));
    for (int i = 0; i < 15; i++) {
      float want = (i == 2 || i == 5 + 3) ? 1.0f : 0.0f;
      CHECK(ah[i] == want, "hard%s: alpha[%d][%d] = %g, want %g", use_ref ? " ref" : "", i / 5,
            i % 5, (double)ah[i], (double)want);
    }
  }
}

/* A -inf mask entry blocks its position even where the energy is NaN; NaN at an unblocked
 * position propagates into the alignment. */
static void test_nan(void) {
  float e[2 * 4] = {0.5f, NAN, -1.0f, 2.0f, 1.0f, 0.0f, -0.5f, 0.3f}, m[4] = {0, -INFINITY, 0, 0};
  float a[8], g[8], d[8];
  for (int i = 0; i < 8; i++) g[i] = 1.0f;
  int64_t shape[2] = {2, 4}, mshape[2] = {1, 4};
  attn_tensor te = attn_tensor_make(e, ATTN_DTYPE_F32, 2, shape);
  attn_tensor tm = attn_tensor_make(m, ATTN_DTYPE_F32, 2, mshape);
  attn_tensor ta = attn_tensor_make(a, ATTN_DTYPE_F32, 2, shape);
  attn_tensor tg = attn_tensor_make(g, ATTN_DTYPE_F32, 2, shape);
  attn_tensor td = attn_tensor_make(d, ATTN_DTYPE_F32, 2, shape);
  for (int mode = 0; mode < 3; mode++)
    for (int use_ref = 0; use_ref < 2; use_ref++) {
      attn_monotonic_params p = attn_monotonic_params_default();
      p.mode = (attn_monotonic_mode)mode;
      if (use_ref)
        CHECK_OK(attn_monotonic_forward_ref(&ta, &te, &tm, &p));
      else
        CHECK_OK(attn_monotonic_forward(&ta, &te, &tm, &p, NULL, 0));
      bool finite = true;
      for (int i = 0; i < 8; i++) finite &= isfinite(a[i]) != 0;
      CHECK(finite && a[1] == 0.0f && a[5] == 0.0f, "%s%s: NaN at a blocked position leaked",
            mode_name(p.mode), use_ref ? " ref" : "");
      if (p.mode != ATTN_MONOTONIC_HARD) {
        if (use_ref)
          CHECK_OK(attn_monotonic_backward_ref(&td, &tg, &ta, &te, &tm, &p));
        else
          CHECK_OK(attn_monotonic_backward(&td, &tg, &ta, &te, &tm, &p, NULL, 0));
        finite = true;
        for (int i = 0; i < 8; i++) finite &= isfinite(d[i]) != 0;
        CHECK(finite && d[1] == 0.0f, "%s: gradient with a blocked NaN: %g", mode_name(p.mode),
              (double)d[1]);
      }
      if (p.mode == ATTN_MONOTONIC_HARD) {
        /* Unmasked, HARD passes over a NaN like p < 0.5 (the header): step 0 of {NaN, -1, 2, 0}
         * attends position 2. */
        float hn[4] = {NAN, -1.0f, 2.0f, 0.0f}, ha[4] = {7, 7, 7, 7};
        int64_t hshape[2] = {1, 4};
        attn_tensor th = attn_tensor_make(hn, ATTN_DTYPE_F32, 2, hshape);
        attn_tensor tha = attn_tensor_make(ha, ATTN_DTYPE_F32, 2, hshape);
        if (use_ref)
          CHECK_OK(attn_monotonic_forward_ref(&tha, &th, NULL, &p));
        else
          CHECK_OK(attn_monotonic_forward(&tha, &th, NULL, &p, NULL, 0));
        CHECK(ha[0] == 0.0f && ha[1] == 0.0f && ha[2] == 1.0f && ha[3] == 0.0f,
              "hard%s: unblocked NaN: %g %g %g %g", use_ref ? " ref" : "", (double)ha[0],
              (double)ha[1], (double)ha[2], (double)ha[3]);
        continue;
      }
      CHECK_OK(attn_monotonic_forward(&ta, &te, NULL, &p, NULL, 0));
      CHECK(isnan(a[1]), "%s: NaN energy at an unblocked position gave %g", mode_name(p.mode),
            (double)a[1]);
    }
}

/* As p -> {0, 1} (energies +-s with s growing), the expected alignment approaches the hard one. */
static void test_hard_limit(void) {
  t_rng rng = t_rng_make(3);
  enum { B = 4, tq = 6, tk = 9 };
  float sign[B * tq * tk], e[B * tq * tk], soft[B * tq * tk], hard[B * tq * tk];
  int64_t shape[3] = {B, tq, tk};
  for (int i = 0; i < B * tq * tk; i++) sign[i] = t_uniform(&rng, 0, 1) < 0.35f ? 1.0f : -1.0f;
  attn_tensor te = attn_tensor_make(e, ATTN_DTYPE_F32, 3, shape);
  attn_tensor ts = attn_tensor_make(soft, ATTN_DTYPE_F32, 3, shape);
  attn_tensor th = attn_tensor_make(hard, ATTN_DTYPE_F32, 3, shape);
  attn_monotonic_params ph = attn_monotonic_params_default(), pr = ph;
  ph.mode = ATTN_MONOTONIC_HARD;
  for (int i = 0; i < B * tq * tk; i++) e[i] = sign[i];
  CHECK_OK(attn_monotonic_forward(&th, &te, NULL, &ph, NULL, 0));
  int ones = 0;
  for (int i = 0; i < B * tq * tk; i++) ones += hard[i] == 1.0f;
  CHECK(ones > B, "the hard alignment attends somewhere (%d ones)", ones);
  double prev = 2.0;
  const float scales[] = {1.0f, 2.0f, 4.0f, 8.0f, 16.0f, 24.0f};
  for (size_t s = 0; s < sizeof scales / sizeof scales[0]; s++) {
    for (int i = 0; i < B * tq * tk; i++) e[i] = scales[s] * sign[i];
    CHECK_OK(attn_monotonic_forward(&ts, &te, NULL, &pr, NULL, 0));
    double d = 0.0;
    for (int i = 0; i < B * tq * tk; i++) d = fmax(d, fabs((double)soft[i] - hard[i]));
    CHECK(d < prev, "scale %g: distance to hard %g did not shrink (was %g)", (double)scales[s], d,
          prev);
    prev = d;
  }
  CHECK(prev < 1e-6, "scale 24: distance to hard %g", prev);
}

/* ---- fast against reference, finite differences ---------------------------------------------- */

typedef struct mcase {
  int64_t B, tq, tk, ld;
  int mask_mode; /* 0 none, 1 full with -inf and a fully masked step, 2 (1, 1, Tk), 3 (B, Tq, 1) */
  attn_monotonic_mode mode;
  float noise_std;
  float scale; /* energies ~ N(0, scale^2) */
} mcase;

static void mono_case(const mcase *c, t_rng *rng) {
  int64_t rows = c->B * c->tq, ext = rows * c->ld, n = c->tk;
  t_buf e = t_buf_new(ATTN_DTYPE_F32, ext), a_f = t_buf_new(ATTN_DTYPE_F32, ext),
        a_r = t_buf_new(ATTN_DTYPE_F32, ext), g = t_buf_new(ATTN_DTYPE_F32, ext),
        d_f = t_buf_new(ATTN_DTYPE_F32, ext), d_r = t_buf_new(ATTN_DTYPE_F32, ext),
        tmp = t_buf_new(ATTN_DTYPE_F32, ext);
  t_buf_fill_normal(&e, rng, c->scale);
  t_buf_fill_normal(&g, rng, 1.0f);
  t_buf_fill(&a_f, NAN);
  t_buf_fill(&a_r, NAN);
  t_buf_fill(&d_f, NAN);
  t_buf_fill(&d_r, NAN);
  int64_t mB = c->B, mT = c->tq, mn = c->tk;
  if (c->mask_mode == 2) mB = mT = 1;
  if (c->mask_mode == 3) mn = 1;
  t_buf mb = t_buf_new(ATTN_DTYPE_F32, mB * mT * mn);
  t_buf_fill_normal(&mb, rng, 0.5f);
  if (c->mask_mode == 1 || c->mask_mode == 2)
    for (int64_t i = 0; i < mB * mT * mn; i++)
      if (t_uniform(rng, 0.0f, 1.0f) < 0.25f) t_f32(&mb)[i] = -INFINITY;
  if (c->mask_mode == 1) /* the middle step of the last sequence sees nothing */
    for (int64_t j = 0; j < mn; j++) t_f32(&mb)[((mB - 1) * mT + mT / 2) * mn + j] = -INFINITY;
  if (c->mask_mode == 3) t_f32(&mb)[0] = -INFINITY;
  attn_tensor tm = t_view3(mb.data, mB, mT, mn, mn);
  const attn_tensor *mask = c->mask_mode ? &tm : NULL;
  attn_tensor te = t_view3(e.data, c->B, c->tq, n, c->ld),
              taf = t_view3(a_f.data, c->B, c->tq, n, c->ld),
              tar = t_view3(a_r.data, c->B, c->tq, n, c->ld),
              tg = t_view3(g.data, c->B, c->tq, n, c->ld),
              tdf = t_view3(d_f.data, c->B, c->tq, n, c->ld),
              tdr = t_view3(d_r.data, c->B, c->tq, n, c->ld),
              tt = t_view3(tmp.data, c->B, c->tq, n, c->ld);
  attn_monotonic_params p = attn_monotonic_params_default();
  p.mode = c->mode;
  p.noise_std = c->noise_std;
  p.seed = t_next(rng);
  char what[160];
  snprintf(what, sizeof what, "%s noise %g (B %lld, Tq %lld, Tk %lld) mask %d", mode_name(c->mode),
           (double)c->noise_std, (long long)c->B, (long long)c->tq, (long long)c->tk, c->mask_mode);
  CHECK_OK(attn_monotonic_forward(&taf, &te, mask, &p, NULL, 0));
  CHECK_OK(attn_monotonic_forward_ref(&tar, &te, mask, &p));
  for (int64_t r = 0; r < rows; r++) {
    double sum = 0.0;
    for (int64_t j = 0; j < n; j++) {
      float f = t_f32(&a_f)[r * c->ld + j], h = t_f32(&a_r)[r * c->ld + j];
      if (c->mode == ATTN_MONOTONIC_HARD)
        CHECK(f == h, "%s: alpha[%lld][%lld] fast %g ref %g", what, (long long)r, (long long)j,
              (double)f, (double)h);
      else
        CHECK(fabs(f - h) <= 1e-6 + 1e-5 * fabs(h), "%s: alpha[%lld][%lld] fast %.8g ref %.8g",
              what, (long long)r, (long long)j, (double)f, (double)h);
      CHECK(f >= 0.0f, "%s: negative alpha", what);
      sum += f;
    }
    CHECK(sum <= 1.0 + 1e-5, "%s: row %lld sums to %g > 1", what, (long long)r, sum);
  }
  if (c->mask_mode == 1) /* the fully masked step and every later step of that sequence are 0 */
    for (int64_t i = c->tq / 2; i < c->tq; i++)
      for (int64_t j = 0; j < n; j++) {
        int64_t idx = ((c->B - 1) * c->tq + i) * c->ld + j;
        CHECK(t_f32(&a_f)[idx] == 0.0f && t_f32(&a_r)[idx] == 0.0f,
              "%s: step %lld after a fully masked "
              "step has alpha %g",
              what, (long long)i, (double)t_f32(&a_f)[idx]);
      }
  if (c->mode == ATTN_MONOTONIC_HARD) {
    CHECK_STATUS(attn_monotonic_backward(&tdf, &tg, &taf, &te, mask, &p, NULL, 0),
                 ATTN_STATUS_INVALID_ARGUMENT);
    goto done;
  }
  CHECK_OK(attn_monotonic_backward(&tdf, &tg, &taf, &te, mask, &p, NULL, 0));
  CHECK_OK(attn_monotonic_backward_ref(&tdr, &tg, &tar, &te, mask, &p));
  double gmax = 0.0;
  for (int64_t r = 0; r < rows; r++)
    for (int64_t j = 0; j < n; j++) gmax = fmax(gmax, fabs(t_f32(&d_r)[r * c->ld + j]));
  for (int64_t r = 0; r < rows; r++)
    for (int64_t j = 0; j < n; j++) {
      float f = t_f32(&d_f)[r * c->ld + j], h = t_f32(&d_r)[r * c->ld + j];
      CHECK(fabs(f - h) <= 1e-5 * (1 + gmax), "%s: d_energy[%lld][%lld] fast %g ref %g", what,
            (long long)r, (long long)j, (double)f, (double)h);
      if (mask && c->mask_mode != 3) {
        int64_t bi = r / c->tq, ti = r % c->tq;
        int64_t mi = c->mask_mode == 2 ? j : (bi * c->tq + ti) * n + j;
        if (t_f32(&mb)[mi] == -INFINITY)
          CHECK(f == 0.0f && h == 0.0f, "%s: blocked position has gradient %g", what, (double)f);
      }
    }
  /* Central differences of L = sum g . alpha on the reference, over the first sequence. */
  int64_t probes = quick ? 8 : 24;
  for (int64_t k = 0; k < probes; k++) {
    int64_t r = t_int(rng, 0, c->tq - 1), j = t_int(rng, 0, n - 1);
    float *x = t_f32(&e) + r * c->ld + j, x0 = *x, hs = 1e-3f;
    double lv[2];
    for (int sgn = 0; sgn < 2; sgn++) {
      *x = x0 + (sgn ? -hs : hs);
      CHECK_OK(attn_monotonic_forward_ref(&tt, &te, mask, &p));
      double l = 0.0;
      for (int64_t i = 0; i < c->tq; i++)
        for (int64_t jj = 0; jj < n; jj++)
          l += (double)t_f32(&g)[i * c->ld + jj] * t_f32(&tmp)[i * c->ld + jj];
      lv[sgn] = l;
    }
    *x = x0;
    double num = (lv[0] - lv[1]) / ((double)(x0 + hs) - (double)(x0 - hs));
    double ana = t_f32(&d_r)[r * c->ld + j];
    CHECK(fabs(num - ana) <= 1e-3 * (1 + gmax), "%s: d_energy[%lld][%lld] = %g, FD %g", what,
          (long long)r, (long long)j, ana, num);
  }
done:;
  t_buf *all[] = {&e, &a_f, &a_r, &g, &d_f, &d_r, &tmp, &mb};
  for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) {
    CHECK(t_buf_guard_ok(all[i]), "%s: guard bytes of buffer %zu", what, i);
    t_buf_free(all[i]);
  }
}

static void test_fast_vs_ref(void) {
  t_rng rng = t_rng_make(17);
  const int64_t tks[] = {1, 3, 7, 33, 130};
  const int64_t tqs[] = {1, 4, 9};
  for (size_t a = 0; a < sizeof tks / sizeof tks[0]; a++)
    for (size_t b = 0; b < sizeof tqs / sizeof tqs[0]; b++)
      for (int mm = 0; mm < 4; mm++)
        for (int mode = 0; mode < 3; mode++) {
          if (quick && tks[a] == 130 && tqs[b] == 9) continue;
          mcase c = {2,
                     tqs[b],
                     tks[a],
                     tks[a] + (mm % 2) * 5,
                     mm,
                     (attn_monotonic_mode)mode,
                     mm == 2 ? 0.7f : 0.0f,
                     2.0f};
          mono_case(&c, &rng);
        }
}

/* Where no cumprod falls below the clamp (short memories, moderate p), the closed form and the
 * recurrence agree, forward and backward. */
static void test_parallel_vs_recursive(void) {
  t_rng rng = t_rng_make(8);
  enum { B = 3, tq = 5, tk = 12 };
  int64_t shape[3] = {B, tq, tk};
  float e[B * tq * tk], g[B * tq * tk], a1[B * tq * tk], a2[B * tq * tk], d1[B * tq * tk],
      d2[B * tq * tk];
  for (int i = 0; i < B * tq * tk; i++) {
    e[i] = t_normal(&rng);
    g[i] = t_normal(&rng);
  }
  attn_tensor te = attn_tensor_make(e, ATTN_DTYPE_F32, 3, shape);
  attn_tensor tg = attn_tensor_make(g, ATTN_DTYPE_F32, 3, shape);
  attn_tensor ta1 = attn_tensor_make(a1, ATTN_DTYPE_F32, 3, shape);
  attn_tensor ta2 = attn_tensor_make(a2, ATTN_DTYPE_F32, 3, shape);
  attn_tensor td1 = attn_tensor_make(d1, ATTN_DTYPE_F32, 3, shape);
  attn_tensor td2 = attn_tensor_make(d2, ATTN_DTYPE_F32, 3, shape);
  attn_monotonic_params p1 = attn_monotonic_params_default(), p2 = p1;
  p2.mode = ATTN_MONOTONIC_PARALLEL;
  CHECK_OK(attn_monotonic_forward(&ta1, &te, NULL, &p1, NULL, 0));
  CHECK_OK(attn_monotonic_forward(&ta2, &te, NULL, &p2, NULL, 0));
  CHECK_OK(attn_monotonic_backward(&td1, &tg, &ta1, &te, NULL, &p1, NULL, 0));
  CHECK_OK(attn_monotonic_backward(&td2, &tg, &ta2, &te, NULL, &p2, NULL, 0));
  double da = 0.0, dd = 0.0;
  for (int i = 0; i < B * tq * tk; i++) {
    da = fmax(da, fabs((double)a1[i] - a2[i]));
    dd = fmax(dd, fabs((double)d1[i] - d2[i]));
  }
  CHECK(da < 1e-6 && dd < 1e-5, "parallel vs recursive: alpha %g, gradient %g", da, dd);
}

/* Noise: p = sigmoid(e + s n) with n = attn_monotonic_noise, standard normal. */
static void test_noise(void) {
  enum { B = 2, tq = 4, tk = 50 };
  int64_t shape[3] = {B, tq, tk};
  float e[B * tq * tk], en[B * tq * tk], a1[B * tq * tk], a2[B * tq * tk];
  t_rng rng = t_rng_make(4);
  for (int i = 0; i < B * tq * tk; i++) e[i] = t_normal(&rng);
  attn_monotonic_params p = attn_monotonic_params_default(), p0 = p;
  p.noise_std = 0.5f;
  p.seed = 1234;
  for (int r = 0; r < B * tq; r++)
    for (int j = 0; j < tk; j++)
      en[r * tk + j] = e[r * tk + j] + 0.5f * attn_monotonic_noise(1234, r, j);
  attn_tensor te = attn_tensor_make(e, ATTN_DTYPE_F32, 3, shape);
  attn_tensor ten = attn_tensor_make(en, ATTN_DTYPE_F32, 3, shape);
  attn_tensor ta1 = attn_tensor_make(a1, ATTN_DTYPE_F32, 3, shape);
  attn_tensor ta2 = attn_tensor_make(a2, ATTN_DTYPE_F32, 3, shape);
  CHECK_OK(attn_monotonic_forward(&ta1, &te, NULL, &p, NULL, 0));
  CHECK_OK(attn_monotonic_forward(&ta2, &ten, NULL, &p0, NULL, 0));
  double d = 0.0;
  for (int i = 0; i < B * tq * tk; i++) d = fmax(d, fabs((double)a1[i] - a2[i]));
  CHECK(d < 1e-6, "noisy forward vs noise added by hand: %g", d);
  /* The noise is standard normal: mean and variance over 20000 draws. */
  double s1 = 0.0, s2 = 0.0;
  const int N = 20000;
  for (int i = 0; i < N; i++) {
    double v = attn_monotonic_noise(77, i / 100, i % 100);
    s1 += v;
    s2 += v * v;
  }
  double mean = s1 / N, var = s2 / N - mean * mean;
  CHECK(fabs(mean) < 0.03 && fabs(var - 1.0) < 0.05, "noise mean %g variance %g", mean, var);
}

/* ---- threads, ISAs -------------------------------------------------------------------------- */

static void test_determinism(void) {
  t_rng rng = t_rng_make(21);
  enum { B = 5, tq = 30, tk = 200 };
  int64_t shape[3] = {B, tq, tk};
  size_t bytes = sizeof(float) * B * tq * tk;
  float *e = malloc(bytes), *m = malloc(bytes), *g = malloc(bytes);
  for (int i = 0; i < B * tq * tk; i++) {
    e[i] = 2.0f * t_normal(&rng);
    g[i] = t_normal(&rng);
    m[i] = t_uniform(&rng, 0, 1) < 0.2f ? -INFINITY : 0.0f;
  }
  attn_tensor te = attn_tensor_make(e, ATTN_DTYPE_F32, 3, shape);
  attn_tensor tm = attn_tensor_make(m, ATTN_DTYPE_F32, 3, shape);
  attn_tensor tg = attn_tensor_make(g, ATTN_DTYPE_F32, 3, shape);
  int saved = attn_get_num_threads();
  for (int mode = 0; mode < 3; mode++) {
    attn_monotonic_params p = attn_monotonic_params_default();
    p.mode = (attn_monotonic_mode)mode;
    p.noise_std = 0.3f;
    p.seed = 9;
    float *a0 = NULL, *d0 = NULL;
    for (int run = 0; run < 6; run++) {
      int th = run < 3 ? run + 1 : 2;
      attn_isa isa = run < 3 ? attn_cpu_best_isa() : (attn_isa)(run - 3);
      if (!attn_cpu_supports(isa)) continue;
      CHECK_OK(attn_set_num_threads(th));
      CHECK_OK(attn_set_isa(isa));
      float *a = malloc(bytes), *d = calloc(1, bytes);
      attn_tensor ta = attn_tensor_make(a, ATTN_DTYPE_F32, 3, shape);
      attn_tensor td = attn_tensor_make(d, ATTN_DTYPE_F32, 3, shape);
      CHECK_OK(attn_monotonic_forward(&ta, &te, &tm, &p, NULL, 0));
      if (p.mode != ATTN_MONOTONIC_HARD)
        CHECK_OK(attn_monotonic_backward(&td, &tg, &ta, &te, &tm, &p, NULL, 0));
      if (!a0) {
        a0 = a;
        d0 = d;
        continue;
      }
      CHECK(memcmp(a0, a, bytes) == 0 && memcmp(d0, d, bytes) == 0, "%s differs: %d threads, %s",
            mode_name(p.mode), th, attn_isa_name(isa));
      free(a);
      free(d);
    }
    CHECK_OK(attn_set_isa(attn_cpu_best_isa()));
    /* In place and a caller's workspace. */
    float *y = malloc(bytes);
    memcpy(y, e, bytes);
    attn_tensor ty = attn_tensor_make(y, ATTN_DTYPE_F32, 3, shape);
    CHECK_OK(attn_monotonic_forward(&ty, &ty, &tm, &p, NULL, 0));
    CHECK(memcmp(y, a0, bytes) == 0, "%s: in place differs", mode_name(p.mode));
    size_t ws_size = 0;
    CHECK_OK(attn_monotonic_workspace_size(&ws_size, &te));
    void *ws = aligned_alloc(64, (ws_size + 63) / 64 * 64);
    CHECK_OK(attn_monotonic_forward(&ty, &te, &tm, &p, ws, ws_size));
    CHECK(memcmp(y, a0, bytes) == 0, "%s: with a workspace differs", mode_name(p.mode));
    CHECK_STATUS(attn_monotonic_forward(&ty, &te, &tm, &p, ws, ws_size - 1),
                 ATTN_STATUS_WORKSPACE_TOO_SMALL);
    free(ws);
    free(y);
    free(a0);
    free(d0);
  }
  CHECK_OK(attn_set_num_threads(saved));
  free(e);
  free(m);
  free(g);
}

/* ---- bad inputs ----------------------------------------------------------------------------- */

/* Sizes near the limits: a (1, Tk) energy whose workspace or reference scratch size wraps
 * around size_t must give OVERFLOW (the views are never read: validation comes first). Tk =
 * ceil(2^64 / 264) makes 264 Tk bytes (the fast path's per-thread scratch) wrap to a few bytes;
 * Tk = ceil(2^64 / 9) does that to the reference's count of 9 Tk doubles (Tq = 1). Both views'
 * extents fit int64, so they pass the layout checks. */
static void test_huge_sizes(void) {
  const int64_t tks[2] = {(int64_t)(UINT64_MAX / 264 + 1), (int64_t)(UINT64_MAX / 9 + 1)};
  for (int i = 0; i < 2; i++) {
    const int64_t shape[2] = {1, tks[i]};
    char *base = (char *)(uintptr_t)4096;
    attn_tensor te = attn_tensor_make(base, ATTN_DTYPE_F32, 2, shape);
    attn_tensor ta = attn_tensor_make(base + (size_t)tks[i] * 4 + 64, ATTN_DTYPE_F32, 2, shape);
    attn_monotonic_params p = attn_monotonic_params_default();
    size_t ws = 0;
    char what[64];
    snprintf(what, sizeof what, "Tk = %lld: workspace size", (long long)tks[i]);
    t_expect_error(attn_monotonic_workspace_size(&ws, &te), ATTN_STATUS_OVERFLOW, "overflows",
                   what);
    snprintf(what, sizeof what, "Tk = %lld: fast forward", (long long)tks[i]);
    t_expect_error(attn_monotonic_forward(&ta, &te, NULL, &p, NULL, 0), ATTN_STATUS_OVERFLOW,
                   "overflows", what);
    /* (The first Tk asks the reference for an honest ~5e18 bytes, which the sanitizers' allocator
     * refuses by aborting: only the second goes there.) */
    if (i == 1) {
      snprintf(what, sizeof what, "Tk = %lld: reference forward", (long long)tks[i]);
      t_expect_error(attn_monotonic_forward_ref(&ta, &te, NULL, &p), ATTN_STATUS_OVERFLOW,
                     "overflows", what);
    }
  }
}

static void test_bad_inputs(void) {
  float e[12], a[12], g[12], d[12];
  for (int i = 0; i < 12; i++) {
    e[i] = (float)i - 5.0f;
    a[i] = 42.0f;
    g[i] = 1.0f;
    d[i] = 42.0f;
  }
  int64_t shape[2] = {3, 4};
  attn_tensor te = attn_tensor_make(e, ATTN_DTYPE_F32, 2, shape);
  attn_tensor ta = attn_tensor_make(a, ATTN_DTYPE_F32, 2, shape);
  attn_tensor tg = attn_tensor_make(g, ATTN_DTYPE_F32, 2, shape);
  attn_tensor td = attn_tensor_make(d, ATTN_DTYPE_F32, 2, shape);
  attn_monotonic_params p = attn_monotonic_params_default();
  t_expect_error(attn_monotonic_forward(NULL, &te, NULL, &p, NULL, 0), ATTN_STATUS_NULL_POINTER,
                 "alpha", "NULL alpha");
  t_expect_error(attn_monotonic_forward_ref(&ta, NULL, NULL, &p), ATTN_STATUS_NULL_POINTER,
                 "energy", "NULL energy");
  t_expect_error(attn_monotonic_backward(&td, NULL, &ta, &te, NULL, &p, NULL, 0),
                 ATTN_STATUS_NULL_POINTER, "d_alpha", "NULL d_alpha");
  t_expect_error(attn_monotonic_backward_ref(&td, &tg, NULL, &te, NULL, &p),
                 ATTN_STATUS_NULL_POINTER, "alpha", "NULL alpha (backward)");
  p.noise_std = -1.0f;
  t_expect_error(attn_monotonic_forward(&ta, &te, NULL, &p, NULL, 0), ATTN_STATUS_INVALID_ARGUMENT,
                 "noise_std", "noise_std < 0");
  p.noise_std = NAN;
  t_expect_error(attn_monotonic_forward_ref(&ta, &te, NULL, &p), ATTN_STATUS_INVALID_ARGUMENT,
                 "noise_std", "noise_std NaN");
  p = attn_monotonic_params_default();
  p.mode = (attn_monotonic_mode)7;
  t_expect_error(attn_monotonic_forward(&ta, &te, NULL, &p, NULL, 0), ATTN_STATUS_INVALID_ARGUMENT,
                 "mode", "bad mode");
  p.mode = ATTN_MONOTONIC_HARD;
  t_expect_error(attn_monotonic_backward(&td, &tg, &ta, &te, NULL, &p, NULL, 0),
                 ATTN_STATUS_INVALID_ARGUMENT, "HARD", "backward in hard mode");
  p = attn_monotonic_params_default();
  int64_t shape1[1] = {12};
  attn_tensor t1 = attn_tensor_make(e, ATTN_DTYPE_F32, 1, shape1);
  attn_tensor t1a = attn_tensor_make(a, ATTN_DTYPE_F32, 1, shape1);
  t_expect_error(attn_monotonic_forward(&t1a, &t1, NULL, &p, NULL, 0), ATTN_STATUS_SHAPE_MISMATCH,
                 "energy", "1-d energy");
  int64_t shape_b[2] = {4, 3};
  attn_tensor tb = attn_tensor_make(a, ATTN_DTYPE_F32, 2, shape_b);
  t_expect_error(attn_monotonic_forward(&tb, &te, NULL, &p, NULL, 0), ATTN_STATUS_SHAPE_MISMATCH,
                 "alpha", "alpha shape");
  t_expect_error(attn_monotonic_backward(&td, &tb, &ta, &te, NULL, &p, NULL, 0),
                 ATTN_STATUS_SHAPE_MISMATCH, "d_alpha", "d_alpha shape");
  int64_t shape_m[2] = {2, 4};
  attn_tensor tmb = attn_tensor_make(g, ATTN_DTYPE_F32, 2, shape_m);
  t_expect_error(attn_monotonic_forward(&ta, &te, &tmb, &p, NULL, 0), ATTN_STATUS_SHAPE_MISMATCH,
                 "mask", "mask shape");
  int64_t shape0[2] = {3, 0};
  attn_tensor t0 = attn_tensor_make(e, ATTN_DTYPE_F32, 2, shape0);
  attn_tensor t0a = attn_tensor_make(a, ATTN_DTYPE_F32, 2, shape0);
  t_expect_error(attn_monotonic_forward(&t0a, &t0, NULL, &p, NULL, 0), ATTN_STATUS_INVALID_ARGUMENT,
                 "energy", "Tk = 0");
  t_expect_error(attn_monotonic_backward(&tg, &tg, &ta, &te, NULL, &p, NULL, 0),
                 ATTN_STATUS_ALIASING, "d_energy overlaps d_alpha", "d_energy aliases d_alpha");
  attn_tensor th = te;
  th.dtype = ATTN_DTYPE_F16;
  t_expect_error(attn_monotonic_forward(&ta, &th, NULL, &p, NULL, 0), ATTN_STATUS_UNSUPPORTED_DTYPE,
                 "energy", "f16");
  bool untouched = true;
  for (int i = 0; i < 12; i++) untouched &= a[i] == 42.0f && d[i] == 42.0f;
  CHECK(untouched, "outputs written on error");
  CHECK_OK(attn_monotonic_forward(&ta, &te, NULL, &p, NULL, 0));
  CHECK(attn_last_error()[0] == '\0', "last error not cleared: %s", attn_last_error());
  int64_t shape_z[3] = {0, 3, 4};
  attn_tensor tz = attn_tensor_make(e, ATTN_DTYPE_F32, 3, shape_z);
  attn_tensor tza = attn_tensor_make(a, ATTN_DTYPE_F32, 3, shape_z);
  CHECK_OK(attn_monotonic_forward(&tza, &tz, NULL, &p, NULL, 0));
}

static void test_failing_allocator(void) {
  float e[20], a[20], g[20], d[20];
  for (int i = 0; i < 20; i++) {
    e[i] = (float)(i % 7) - 3.0f;
    g[i] = 1.0f;
  }
  int64_t shape[2] = {4, 5};
  attn_tensor te = attn_tensor_make(e, ATTN_DTYPE_F32, 2, shape);
  attn_tensor ta = attn_tensor_make(a, ATTN_DTYPE_F32, 2, shape);
  attn_tensor tg = attn_tensor_make(g, ATTN_DTYPE_F32, 2, shape);
  attn_tensor td = attn_tensor_make(d, ATTN_DTYPE_F32, 2, shape);
  attn_monotonic_params p = attn_monotonic_params_default();
  CHECK_OK(attn_monotonic_forward(&ta, &te, NULL, &p, NULL, 0));
  for (int which = 0; which < 4; which++) {
    float keep[20];
    memcpy(keep, which % 2 ? d : a, sizeof keep);
    t_alloc_install(1);
    attn_status st = which == 0   ? attn_monotonic_forward(&ta, &te, NULL, &p, NULL, 0)
                     : which == 1 ? attn_monotonic_backward(&td, &tg, &ta, &te, NULL, &p, NULL, 0)
                     : which == 2 ? attn_monotonic_forward_ref(&ta, &te, NULL, &p)
                                  : attn_monotonic_backward_ref(&td, &tg, &ta, &te, NULL, &p);
    CHECK(st == ATTN_STATUS_OUT_OF_MEMORY, "case %d: %s", which, attn_status_str(st));
    CHECK(t_alloc_live() == 0, "case %d: %lld blocks leaked", which, (long long)t_alloc_live());
    t_alloc_uninstall();
    CHECK(memcmp(keep, which % 2 ? d : a, sizeof keep) == 0, "case %d: output written", which);
  }
}

int main(void) {
  quick = getenv("ATTN_TEST_QUICK") != NULL;
  test_known_values();
  test_hard_limit();
  test_nan();
  test_parallel_vs_recursive();
  test_noise();
  test_fast_vs_ref();
  test_determinism();
  test_huge_sizes();
  test_bad_inputs();
  test_failing_allocator();
  return t_finish("test_monotonic");
}
