/* Alignment functions (include/attn/align.h): known values, simplex properties, limits
 * (temperature -> 0, alpha-entmax at 1.5 and 2), fast against reference on random shapes with
 * masks, fully masked rows, strided views and local windows, every backward against central
 * finite differences, thread-count determinism, guard bytes, bad inputs, a failing allocator.
 *
 * Tolerances. Forward: the fast path computes in f32 (polynomial exp, f32 scores), the reference
 * in double; |fast - ref| <= 2e-6 + 2e-5 |ref| for the closed forms. alpha-entmax bisects in f32:
 * for 1 < alpha <= 2 the map tau -> p is Lipschitz (exponent 1/(alpha-1) >= 1) and 1e-4 holds;
 * for alpha > 2 p = x^(1/(alpha-1)) has an infinite slope at the support's edge, so only 5e-3.
 * Backward: 1e-4 (1 + max |ref|). Finite differences on the reference (double inside, rounded to
 * f32 outputs) with h = 3e-3: rounding noise ~ 6e-8 sqrt(n) |w| / 2h < 1e-4, truncation O(h^2)
 * for the smooth kinds and none for the piecewise-linear/quadratic ones; the bound is
 * 1e-3 (1 + max |g|). Coordinates where a step crosses a kink of sparsemax/entmax/hardmax (the
 * support or the argmax changes between x - h and x + h) are skipped. */
#include "attn/align.h"
#include "common.h"

static bool quick;

static const char *kind_name(attn_align_kind k) {
  static const char *names[] = {"softmax", "sigmoid", "hardmax", "sparsemax", "entmax15", "bisect"};
  return names[k];
}

/* ---- known values --------------------------------------------------------------------------- */

static void test_known_values(void) {
  float x[3] = {-2.0f, 0.0f, 0.5f}, a[3], b[3];
  attn_tensor tx = t_vec(x, 3), ta = t_vec(a, 3), tb = t_vec(b, 3);
  struct {
    attn_align_kind kind;
    float alpha;
    float want[3];
  } cases[] = {
      {ATTN_ALIGN_SOFTMAX, 1.5f, {0.0486f, 0.3592f, 0.5922f}},
      {ATTN_ALIGN_SPARSEMAX, 1.5f, {0.0f, 0.25f, 0.75f}},
      {ATTN_ALIGN_ENTMAX15, 1.5f, {0.0f, 0.3260f, 0.6740f}},
      {ATTN_ALIGN_ENTMAX_BISECT, 1.5f, {0.0f, 0.3260f, 0.6740f}},
      {ATTN_ALIGN_ENTMAX_BISECT, 2.0f, {0.0f, 0.25f, 0.75f}},
      {ATTN_ALIGN_HARDMAX, 1.5f, {0.0f, 0.0f, 1.0f}},
  };
  for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
    attn_align_params p = attn_align_params_default();
    p.kind = cases[c].kind;
    p.alpha = cases[c].alpha;
    CHECK_OK(attn_align_forward(&ta, &tx, NULL, &p, NULL, 0));
    CHECK_OK(attn_align_forward_ref(&tb, &tx, NULL, &p));
    for (int j = 0; j < 3; j++) {
      CHECK(fabsf(a[j] - cases[c].want[j]) < 5e-5f, "%s alpha %g: a[%d] = %.6f, want %.4f",
            kind_name(p.kind), (double)p.alpha, j, (double)a[j], (double)cases[c].want[j]);
      CHECK(fabsf(b[j] - cases[c].want[j]) < 5e-5f, "%s ref: a[%d] = %.6f, want %.4f",
            kind_name(p.kind), j, (double)b[j], (double)cases[c].want[j]);
    }
    if (p.kind != ATTN_ALIGN_SOFTMAX) {
      CHECK(a[0] == 0.0f && b[0] == 0.0f, "%s: a[0] = %g / %g, want an exact 0", kind_name(p.kind),
            (double)a[0], (double)b[0]);
    }
  }
  /* Sigmoid: independent gates. */
  attn_align_params p = attn_align_params_default();
  p.kind = ATTN_ALIGN_SIGMOID;
  CHECK_OK(attn_align_forward(&ta, &tx, NULL, &p, NULL, 0));
  for (int j = 0; j < 3; j++) {
    double want = 1.0 / (1.0 + exp(-(double)x[j]));
    CHECK(fabs(a[j] - want) < 1e-6, "sigmoid a[%d] = %g, want %g", j, (double)a[j], want);
  }
}

/* Sums to 1 and has exact zeros: sparsemax and entmax on wide random rows. */
static void test_simplex(void) {
  t_rng rng = t_rng_make(11);
  enum { n = 50 };
  float x[n], a[n];
  attn_tensor tx = t_vec(x, n), ta = t_vec(a, n);
  attn_align_kind kinds[] = {ATTN_ALIGN_SOFTMAX, ATTN_ALIGN_SPARSEMAX, ATTN_ALIGN_ENTMAX15,
                             ATTN_ALIGN_ENTMAX_BISECT};
  for (int rep = 0; rep < 20; rep++) {
    for (int j = 0; j < n; j++) x[j] = 3.0f * t_normal(&rng);
    for (size_t k = 0; k < sizeof kinds / sizeof kinds[0]; k++) {
      for (int use_ref = 0; use_ref < 2; use_ref++) {
        attn_align_params p = attn_align_params_default();
        p.kind = kinds[k];
        p.alpha = rep % 2 ? 1.5f : 1.3f;
        if (use_ref)
          CHECK_OK(attn_align_forward_ref(&ta, &tx, NULL, &p));
        else
          CHECK_OK(attn_align_forward(&ta, &tx, NULL, &p, NULL, 0));
        double sum = 0.0;
        int zeros = 0, neg = 0;
        for (int j = 0; j < n; j++) {
          sum += a[j];
          zeros += a[j] == 0.0f;
          neg += a[j] < 0.0f;
        }
        CHECK(fabs(sum - 1.0) < 2e-6, "%s%s: sum = %.9f", kind_name(p.kind), use_ref ? " ref" : "",
              sum);
        CHECK(neg == 0, "%s: %d negative weights", kind_name(p.kind), neg);
        if (p.kind != ATTN_ALIGN_SOFTMAX)
          CHECK(zeros > n / 4, "%s%s: only %d exact zeros of %d", kind_name(p.kind),
                use_ref ? " ref" : "", zeros, n);
      }
    }
  }
}

/* softmax(x / T) -> hardmax(x) as T -> 0, monotonically. */
static void test_temperature_limit(void) {
  float x[5] = {-2.0f, 0.0f, 0.5f, 0.3f, 0.45f}, a[5], h[5];
  attn_tensor tx = t_vec(x, 5), ta = t_vec(a, 5), th = t_vec(h, 5);
  attn_align_params p = attn_align_params_default();
  p.kind = ATTN_ALIGN_HARDMAX;
  CHECK_OK(attn_align_forward(&th, &tx, NULL, &p, NULL, 0));
  CHECK(h[2] == 1.0f, "hardmax picks index 2");
  p.kind = ATTN_ALIGN_SOFTMAX;
  double prev = 2.0;
  float temps[] = {1.0f, 0.3f, 0.1f, 0.03f, 0.01f, 0.003f, 0.001f};
  for (size_t i = 0; i < sizeof temps / sizeof temps[0]; i++) {
    p.temperature = temps[i];
    CHECK_OK(attn_align_forward(&ta, &tx, NULL, &p, NULL, 0));
    double d = 0.0;
    for (int j = 0; j < 5; j++) d = fmax(d, fabs((double)a[j] - (double)h[j]));
    CHECK(d < prev, "T = %g: distance to hardmax %g did not shrink (was %g)", (double)temps[i], d,
          prev);
    prev = d;
  }
  CHECK(prev < 1e-6, "T = 0.001: distance to hardmax %g", prev);
  /* Ties go to the lowest index; blocked positions are never chosen. */
  float y[4] = {1.0f, 3.0f, 3.0f, 5.0f}, m[4] = {0.0f, 0.0f, 0.0f, -INFINITY};
  attn_tensor ty = t_vec(y, 4), tm = t_vec(m, 4), tb = t_vec(a, 4);
  p.kind = ATTN_ALIGN_HARDMAX;
  p.temperature = 1.0f;
  CHECK_OK(attn_align_forward(&tb, &ty, &tm, &p, NULL, 0));
  CHECK(a[0] == 0.0f && a[1] == 1.0f && a[2] == 0.0f && a[3] == 0.0f,
        "hardmax tie/mask: %g %g %g %g", (double)a[0], (double)a[1], (double)a[2], (double)a[3]);
}

/* alpha-entmax by bisection equals entmax-1.5 at alpha = 1.5 and sparsemax at alpha = 2. */
static void test_bisect_limits(void) {
  t_rng rng = t_rng_make(5);
  enum { n = 37 };
  float x[n], a[n], b[n];
  attn_tensor tx = t_vec(x, n), ta = t_vec(a, n), tb = t_vec(b, n);
  for (int rep = 0; rep < 20; rep++) {
    for (int j = 0; j < n; j++) x[j] = 2.0f * t_normal(&rng);
    for (int which = 0; which < 2; which++) {
      attn_align_params p = attn_align_params_default(), q = p;
      p.kind = ATTN_ALIGN_ENTMAX_BISECT;
      p.alpha = which ? 2.0f : 1.5f;
      q.kind = which ? ATTN_ALIGN_SPARSEMAX : ATTN_ALIGN_ENTMAX15;
      for (int use_ref = 0; use_ref < 2; use_ref++) {
        if (use_ref) {
          CHECK_OK(attn_align_forward_ref(&ta, &tx, NULL, &p));
          CHECK_OK(attn_align_forward_ref(&tb, &tx, NULL, &q));
        } else {
          CHECK_OK(attn_align_forward(&ta, &tx, NULL, &p, NULL, 0));
          CHECK_OK(attn_align_forward(&tb, &tx, NULL, &q, NULL, 0));
        }
        double d = 0.0;
        for (int j = 0; j < n; j++) d = fmax(d, fabs((double)a[j] - (double)b[j]));
        CHECK(d < (use_ref ? 1e-6 : 2e-5), "bisect alpha %g vs %s%s: max diff %g",
              (double)p.alpha, kind_name(q.kind), use_ref ? " (ref)" : "", d);
      }
    }
  }
}

/* ---- fast against reference ----------------------------------------------------------------- */

typedef struct rcase {
  attn_align_params p;
  int64_t B, T, n, ld;
  int mask_mode; /* 0 none, 1 full with -inf and a fully masked row, 2 (1, 1, n), 3 (B, T, 1) */
} rcase;

typedef struct rbufs {
  t_buf in, mask, out_f, out_r, dout, din_f, din_r, pos, dpos_f, dpos_r;
  attn_tensor tin, tmask, tout_f, tout_r, tdout, tdin_f, tdin_r;
  int64_t rows;
} rbufs;

static void rbufs_make(rbufs *b, const rcase *c, t_rng *rng) {
  int64_t ext = c->B * c->T * c->ld;
  b->rows = c->B * c->T;
  b->in = t_buf_new(ATTN_DTYPE_F32, ext);
  b->out_f = t_buf_new(ATTN_DTYPE_F32, ext);
  b->out_r = t_buf_new(ATTN_DTYPE_F32, ext);
  b->dout = t_buf_new(ATTN_DTYPE_F32, ext);
  b->din_f = t_buf_new(ATTN_DTYPE_F32, ext);
  b->din_r = t_buf_new(ATTN_DTYPE_F32, ext);
  b->pos = t_buf_new(ATTN_DTYPE_F32, b->rows);
  b->dpos_f = t_buf_new(ATTN_DTYPE_F32, b->rows);
  b->dpos_r = t_buf_new(ATTN_DTYPE_F32, b->rows);
  t_buf_fill_normal(&b->in, rng, 2.0f);
  t_buf_fill_normal(&b->dout, rng, 1.0f);
  t_buf_fill(&b->out_f, NAN);
  t_buf_fill(&b->out_r, NAN);
  t_buf_fill(&b->din_f, NAN);
  t_buf_fill(&b->din_r, NAN);
  t_buf_fill(&b->dpos_f, NAN);
  t_buf_fill(&b->dpos_r, NAN);
  b->tin = t_view3(b->in.data, c->B, c->T, c->n, c->ld);
  b->tout_f = t_view3(b->out_f.data, c->B, c->T, c->n, c->ld);
  b->tout_r = t_view3(b->out_r.data, c->B, c->T, c->n, c->ld);
  b->tdout = t_view3(b->dout.data, c->B, c->T, c->n, c->ld);
  b->tdin_f = t_view3(b->din_f.data, c->B, c->T, c->n, c->ld);
  b->tdin_r = t_view3(b->din_r.data, c->B, c->T, c->n, c->ld);
  /* Positions k + u with |u| <= 0.4, so round() is stable under the finite-difference step. */
  for (int64_t r = 0; r < b->rows; r++)
    t_f32(&b->pos)[r] = (float)t_int(rng, 0, c->n - 1) + t_uniform(rng, -0.4f, 0.4f);
  int64_t mB = c->B, mT = c->T, mn = c->n;
  if (c->mask_mode == 2) mB = mT = 1;
  if (c->mask_mode == 3) mn = 1;
  b->mask = t_buf_new(ATTN_DTYPE_F32, mB * mT * mn);
  t_buf_fill_normal(&b->mask, rng, 0.5f);
  if (c->mask_mode == 1 || c->mask_mode == 2)
    for (int64_t i = 0; i < mB * mT * mn; i++)
      if (t_uniform(rng, 0.0f, 1.0f) < 0.25f) t_f32(&b->mask)[i] = -INFINITY;
  if (c->mask_mode == 1)
    for (int64_t j = 0; j < mn; j++) t_f32(&b->mask)[(mB * mT - 1) * mn + j] = -INFINITY;
  if (c->mask_mode == 3) t_f32(&b->mask)[0] = -INFINITY; /* row 0 fully blocked */
  b->tmask = t_view3(b->mask.data, mB, mT, mn, mn);
}

static void rbufs_free(rbufs *b) {
  t_buf *all[] = {&b->in, &b->mask, &b->out_f, &b->out_r, &b->dout, &b->din_f,
                  &b->din_r, &b->pos, &b->dpos_f, &b->dpos_r};
  for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) {
    CHECK(t_buf_guard_ok(all[i]), "guard bytes of buffer %zu overwritten", i);
    t_buf_free(all[i]);
  }
}

/* Whether row r of view t is fully blocked by the mask or the window (every mask entry -inf). */
static bool row_blocked(const rcase *c, const rbufs *b, int64_t r) {
  if (c->mask_mode == 0) return false;
  for (int64_t j = 0; j < c->n; j++) {
    int64_t bi = r / c->T, ti = r % c->T;
    int64_t idx = c->mask_mode == 2 ? j
                  : c->mask_mode == 3 ? bi * c->T + ti
                                      : (bi * c->T + ti) * c->n + j;
    if (t_f32(&b->mask)[idx] != -INFINITY) return false;
  }
  return true;
}

static void compare_case(const rcase *c, t_rng *rng, int *n_cases) {
  rbufs b;
  rbufs_make(&b, c, rng);
  attn_align_params p = c->p;
  p.positions = t_f32(&b.pos);
  const attn_tensor *mask = c->mask_mode ? &b.tmask : NULL;
  char what[200];
  snprintf(what, sizeof what, "%s alpha %g st %d T %g local %d D %lld (B %lld, T %lld, n %lld) mask %d",
           kind_name(p.kind), (double)p.alpha, p.straight_through, (double)p.temperature,
           (int)p.local, (long long)p.window, (long long)c->B, (long long)c->T, (long long)c->n,
           c->mask_mode);
  CHECK_OK(attn_align_forward(&b.tout_f, &b.tin, mask, &p, NULL, 0));
  CHECK_OK(attn_align_forward_ref(&b.tout_r, &b.tin, mask, &p));
  bool loose = p.kind == ATTN_ALIGN_ENTMAX_BISECT && p.alpha > 2.0f;
  double ftol_abs = p.kind == ATTN_ALIGN_ENTMAX_BISECT ? (loose ? 5e-3 : 1e-4) : 2e-6;
  double worst = 0.0;
  for (int64_t r = 0; r < b.rows; r++) {
    bool blocked = row_blocked(c, &b, r);
    for (int64_t j = 0; j < c->n; j++) {
      int64_t i = r * c->ld + j;
      float f = t_f32(&b.out_f)[i], g = t_f32(&b.out_r)[i];
      double err = fabs((double)f - (double)g);
      CHECK(err <= ftol_abs + 2e-5 * fabs(g) && !isnan(f), "%s: out[%lld,%lld] fast %.8g ref %.8g",
            what, (long long)r, (long long)j, (double)f, (double)g);
      worst = fmax(worst, err);
      if (blocked) CHECK(f == 0.0f && g == 0.0f, "%s: fully masked row %lld has %g / %g", what,
                         (long long)r, (double)f, (double)g);
    }
  }
  if (!loose) {
    CHECK_OK(attn_align_backward(&b.tdin_f, t_f32(&b.dpos_f), &b.tdout, &b.tout_f, &b.tin, mask, &p,
                                 NULL, 0));
    CHECK_OK(attn_align_backward_ref(&b.tdin_r, t_f32(&b.dpos_r), &b.tdout, &b.tout_r, &b.tin, mask,
                                     &p));
    double mx = 0.0;
    for (int64_t i = 0; i < b.rows * c->ld; i++)
      if (i % c->ld < c->n) mx = fmax(mx, fabs((double)t_f32(&b.din_r)[i]));
    for (int64_t r = 0; r < b.rows; r++) {
      bool blocked = row_blocked(c, &b, r);
      for (int64_t j = 0; j < c->n; j++) {
        int64_t i = r * c->ld + j;
        float f = t_f32(&b.din_f)[i], g = t_f32(&b.din_r)[i];
        CHECK(fabs((double)f - (double)g) <= 1e-4 * (1.0 + mx) && !isnan(f),
              "%s: d_in[%lld,%lld] fast %.8g ref %.8g", what, (long long)r, (long long)j,
              (double)f, (double)g);
        if (blocked) CHECK(f == 0.0f && g == 0.0f, "%s: fully masked row %lld: d_in %g / %g", what,
                           (long long)r, (double)f, (double)g);
      }
      /* Padding between rows is never written. */
      for (int64_t j = c->n; j < c->ld; j++)
        CHECK(isnan(t_f32(&b.din_f)[r * c->ld + j]) && isnan(t_f32(&b.out_f)[r * c->ld + j]),
              "%s: padding of row %lld written", what, (long long)r);
      if (p.local == ATTN_ALIGN_LOCAL_P) {
        float f = t_f32(&b.dpos_f)[r], g = t_f32(&b.dpos_r)[r];
        CHECK(fabs((double)f - (double)g) <= 1e-4 * (1.0 + fabs((double)g)),
              "%s: d_positions[%lld] fast %.8g ref %.8g", what, (long long)r, (double)f,
              (double)g);
      } else {
        CHECK(isnan(t_f32(&b.dpos_f)[r]), "%s: d_positions written without local-p", what);
      }
    }
  }
  rbufs_free(&b);
  (*n_cases)++;
}

static void test_fast_vs_ref(void) {
  t_rng rng = t_rng_make(2024);
  int64_t ns[] = {1, 3, 7, 33, 130};
  float alphas[] = {1.25f, 1.5f, 1.75f, 2.0f, 3.0f};
  int n_cases = 0;
  for (int kind = 0; kind <= ATTN_ALIGN_ENTMAX_BISECT; kind++)
    for (int variant = 0; variant < 5; variant++)
      for (int local = 0; local < 3; local++)
        for (size_t ni = 0; ni < sizeof ns / sizeof ns[0]; ni++) {
          if (quick && ni % 2) continue;
          if (kind != ATTN_ALIGN_ENTMAX_BISECT && kind != ATTN_ALIGN_HARDMAX && variant > 1)
            continue;
          rcase c;
          c.p = attn_align_params_default();
          c.p.kind = (attn_align_kind)kind;
          c.p.alpha = alphas[variant];
          c.p.straight_through = variant % 2;
          float temps[] = {1.0f, 0.5f, 2.3f};
          c.p.temperature = temps[t_int(&rng, 0, 2)];
          c.p.local = (attn_align_local)local;
          c.B = 2;
          c.T = 3;
          c.n = ns[ni];
          c.ld = c.n + t_int(&rng, 0, 3);
          c.p.window = t_int(&rng, 0, 4);
          if (local == ATTN_ALIGN_LOCAL_M && c.T - 1 > c.n - 1 + c.p.window) c.p.window = c.T - c.n;
          c.mask_mode = (int)t_int(&rng, 0, 3);
          compare_case(&c, &rng, &n_cases);
        }
  CHECK(n_cases > 100, "only %d cases", n_cases);
}

/* ---- finite differences --------------------------------------------------------------------- */

/* L = sum_j w_j a_j(x) for one row, through the reference (double inside). */
static double loss(const attn_align_params *p, float *x, const float *m, const float *w, float *a,
                   int64_t n) {
  attn_tensor tx = t_vec(x, n), ta = t_vec(a, n), tm = t_vec((float *)m, n);
  attn_status st = attn_align_forward_ref(&ta, &tx, m ? &tm : NULL, p);
  CHECK(st == ATTN_OK, "loss: %s", attn_last_error());
  double l = 0.0;
  for (int64_t j = 0; j < n; j++) l += (double)w[j] * (double)a[j];
  return l;
}

/* Zero pattern and argmax the same at x - h, x, x + h (no kink crossed). */
static bool same_pattern(const float *a, const float *b, int64_t n) {
  for (int64_t j = 0; j < n; j++)
    if ((a[j] == 0.0f) != (b[j] == 0.0f)) return false;
  return true;
}

static void fd_case(attn_align_params p, int64_t n, bool masked, t_rng *rng) {
  enum { NMAX = 16 };
  float x[NMAX], m[NMAX], w[NMAX], a[NMAX], ap[NMAX], am[NMAX], dx_f[NMAX], dx_r[NMAX];
  float pos[1], dpos_f[1] = {NAN}, dpos_r[1] = {NAN};
  for (int64_t j = 0; j < n; j++) {
    x[j] = 1.5f * t_normal(rng);
    m[j] = masked && j % 3 == 1 ? -INFINITY : 0.0f;
    w[j] = t_normal(rng);
  }
  pos[0] = (float)t_int(rng, 0, n - 1) + t_uniform(rng, -0.35f, 0.35f);
  p.positions = pos;
  const float *mk = masked ? m : NULL;
  attn_tensor tx = t_vec(x, n), ta = t_vec(a, n), tw = t_vec(w, n), tm = t_vec(m, n);
  attn_tensor tdf = t_vec(dx_f, n), tdr = t_vec(dx_r, n);
  CHECK_OK(attn_align_forward_ref(&ta, &tx, mk ? &tm : NULL, &p));
  CHECK_OK(attn_align_backward(&tdf, dpos_f, &tw, &ta, &tx, mk ? &tm : NULL, &p, NULL, 0));
  CHECK_OK(attn_align_backward_ref(&tdr, dpos_r, &tw, &ta, &tx, mk ? &tm : NULL, &p));
  /* The straight-through hardmax's gradient for the scores is the softmax's. */
  attn_align_params pf = p;
  if (p.kind == ATTN_ALIGN_HARDMAX && p.straight_through) pf.kind = ATTN_ALIGN_SOFTMAX;
  const float h = 3e-3f;
  double gmax = 0.0;
  for (int64_t j = 0; j < n; j++) gmax = fmax(gmax, fabs((double)dx_r[j]));
  for (int64_t j = 0; j < n; j++) {
    float x0 = x[j];
    x[j] = x0 + h;
    double lp = loss(&pf, x, mk, w, ap, n);
    x[j] = x0 - h;
    double lm = loss(&pf, x, mk, w, am, n);
    x[j] = x0;
    if (!same_pattern(ap, am, n)) continue;
    if (pf.kind == ATTN_ALIGN_HARDMAX && !same_pattern(ap, a, n)) continue;
    double fd = (lp - lm) / (2.0 * (double)h);
    CHECK(fabs(fd - dx_r[j]) <= 1e-3 * (1.0 + gmax), "%s st %d alpha %g T %g local %d n %lld: "
          "d_in[%lld] ref %.6g, finite difference %.6g", kind_name(p.kind), p.straight_through,
          (double)p.alpha, (double)p.temperature, (int)p.local, (long long)n, (long long)j,
          (double)dx_r[j], fd);
    CHECK(fabs(fd - dx_f[j]) <= 1e-3 * (1.0 + gmax), "%s st %d alpha %g local %d: d_in[%lld] "
          "fast %.6g, finite difference %.6g", kind_name(p.kind), p.straight_through,
          (double)p.alpha, (int)p.local, (long long)j, (double)dx_f[j], fd);
  }
  if (p.local == ATTN_ALIGN_LOCAL_P) {
    float p0 = pos[0];
    pos[0] = p0 + h;
    double lp = loss(&p, x, mk, w, ap, n);
    pos[0] = p0 - h;
    double lm = loss(&p, x, mk, w, am, n);
    pos[0] = p0;
    double fd = (lp - lm) / (2.0 * (double)h);
    CHECK(fabs(fd - dpos_r[0]) <= 1e-3 * (1.0 + fabs(fd)) &&
              fabs(fd - dpos_f[0]) <= 1e-3 * (1.0 + fabs(fd)),
          "%s local-p D %lld: d_position ref %.6g fast %.6g, finite difference %.6g",
          kind_name(p.kind), (long long)p.window, (double)dpos_r[0], (double)dpos_f[0], fd);
  }
  (void)tw;
}

static void test_finite_differences(void) {
  t_rng rng = t_rng_make(77);
  float alphas[] = {1.25f, 1.5f, 2.0f, 3.0f};
  for (int kind = 0; kind <= ATTN_ALIGN_ENTMAX_BISECT; kind++)
    for (int variant = 0; variant < 4; variant++)
      for (int local = 0; local < 3; local++)
        for (int rep = 0; rep < 3; rep++) {
          if (kind != ATTN_ALIGN_ENTMAX_BISECT && kind != ATTN_ALIGN_HARDMAX && variant > 0)
            continue;
          if (kind == ATTN_ALIGN_HARDMAX && variant > 1) continue;
          attn_align_params p = attn_align_params_default();
          p.kind = (attn_align_kind)kind;
          p.alpha = alphas[variant];
          p.straight_through = variant;
          p.temperature = rep == 1 ? 0.7f : 1.0f;
          p.local = (attn_align_local)local;
          p.window = 1 + rep;
          int64_t n = 5 + 3 * rep;
          fd_case(p, n, rep == 2, &rng);
        }
}

/* ---- local windows -------------------------------------------------------------------------- */

static void test_local(void) {
  t_rng rng = t_rng_make(3);
  enum { T = 6, n = 9 };
  float x[T * n], a[T * n], b[T * n], m[T * n], pos[T], dpos[T];
  for (int i = 0; i < T * n; i++) x[i] = t_normal(&rng);
  int64_t shape[2] = {T, n};
  attn_tensor tx = attn_tensor_make(x, ATTN_DTYPE_F32, 2, shape);
  attn_tensor ta = attn_tensor_make(a, ATTN_DTYPE_F32, 2, shape);
  attn_tensor tb = attn_tensor_make(b, ATTN_DTYPE_F32, 2, shape);
  attn_tensor tm = attn_tensor_make(m, ATTN_DTYPE_F32, 2, shape);
  /* local-m equals softmax under the band mask |j - t| <= D. */
  for (int64_t D = 0; D <= 3; D++) {
    attn_align_params p = attn_align_params_default();
    p.local = ATTN_ALIGN_LOCAL_M;
    p.window = D;
    for (int t = 0; t < T; t++)
      for (int j = 0; j < n; j++) m[t * n + j] = (j < t - D || j > t + D) ? -INFINITY : 0.0f;
    CHECK_OK(attn_align_forward(&ta, &tx, NULL, &p, NULL, 0));
    p.local = ATTN_ALIGN_LOCAL_NONE;
    CHECK_OK(attn_align_forward(&tb, &tx, &tm, &p, NULL, 0));
    CHECK(memcmp(a, b, sizeof a) == 0, "local-m D = %lld differs from the band mask", (long long)D);
  }
  /* local-p with D = 0 is hard attention at round(p_t), whatever the kind. */
  for (int t = 0; t < T; t++) pos[t] = t_uniform(&rng, -0.49f, (float)n - 0.51f);
  pos[0] = 2.5f; /* rounds half up: position 3 */
  int kinds[] = {ATTN_ALIGN_SOFTMAX, ATTN_ALIGN_SPARSEMAX, ATTN_ALIGN_ENTMAX15, ATTN_ALIGN_HARDMAX};
  for (size_t k = 0; k < sizeof kinds / sizeof kinds[0]; k++)
    for (int use_ref = 0; use_ref < 2; use_ref++) {
      attn_align_params p = attn_align_params_default();
      p.kind = (attn_align_kind)kinds[k];
      p.local = ATTN_ALIGN_LOCAL_P;
      p.window = 0;
      p.positions = pos;
      if (use_ref)
        CHECK_OK(attn_align_forward_ref(&ta, &tx, NULL, &p));
      else
        CHECK_OK(attn_align_forward(&ta, &tx, NULL, &p, NULL, 0));
      for (int t = 0; t < T; t++) {
        int c = (int)floorf(pos[t] + 0.5f);
        for (int j = 0; j < n; j++)
          CHECK(a[t * n + j] == (j == c ? 1.0f : 0.0f), "local-p D = 0 %s%s: row %d (p %g) a[%d] = %g",
                kind_name(p.kind), use_ref ? " ref" : "", t, (double)pos[t], j,
                (double)a[t * n + j]);
      }
      float ones[T * n];
      for (int i = 0; i < T * n; i++) ones[i] = 1.0f;
      attn_tensor tg = attn_tensor_make(ones, ATTN_DTYPE_F32, 2, shape);
      CHECK_OK(attn_align_backward(&tb, dpos, &tg, &ta, &tx, NULL, &p, NULL, 0));
      for (int t = 0; t < T; t++) CHECK(dpos[t] == 0.0f, "local-p D = 0: d_position %g", (double)dpos[t]);
    }
  /* local-p factor: weights are the windowed softmax times the Gaussian, not renormalised. */
  {
    attn_align_params p = attn_align_params_default();
    p.local = ATTN_ALIGN_LOCAL_P;
    p.window = 2;
    p.positions = pos;
    CHECK_OK(attn_align_forward(&ta, &tx, NULL, &p, NULL, 0));
    for (int t = 0; t < T; t++) {
      int c = (int)floorf(pos[t] + 0.5f);
      double sum = 0.0, den = 0.0;
      for (int j = c - 2; j <= c + 2; j++)
        if (j >= 0 && j < n) den += exp((double)x[t * n + j]);
      for (int j = 0; j < n; j++) {
        double want = 0.0;
        if (j >= c - 2 && j <= c + 2) {
          double d = j - (double)pos[t];
          want = exp((double)x[t * n + j]) / den * exp(-d * d / 2.0); /* sigma = 1 */
        }
        CHECK(fabs(a[t * n + j] - want) < 1e-6, "local-p row %d a[%d] = %g want %g", t, j,
              (double)a[t * n + j], want);
        sum += a[t * n + j];
      }
      CHECK(sum < 1.0, "local-p row %d sums to %g", t, sum);
    }
  }
}

/* ---- threads, strides, in place -------------------------------------------------------------- */

static void test_threads_and_in_place(void) {
  t_rng rng = t_rng_make(9);
  enum { B = 3, T = 50, n = 300 };
  int64_t shape[3] = {B, T, n};
  size_t bytes = sizeof(float) * B * T * n;
  float *x = malloc(bytes), *m = malloc(bytes), *g = malloc(bytes), *o[3], *d[3];
  for (int i = 0; i < B * T * n; i++) {
    x[i] = 2.0f * t_normal(&rng);
    g[i] = t_normal(&rng);
    m[i] = t_uniform(&rng, 0, 1) < 0.3f ? -INFINITY : 0.0f;
  }
  attn_tensor tx = attn_tensor_make(x, ATTN_DTYPE_F32, 3, shape);
  attn_tensor tm = attn_tensor_make(m, ATTN_DTYPE_F32, 3, shape);
  attn_tensor tg = attn_tensor_make(g, ATTN_DTYPE_F32, 3, shape);
  int saved = attn_get_num_threads();
  for (int kind = 0; kind <= ATTN_ALIGN_ENTMAX_BISECT; kind++) {
    attn_align_params p = attn_align_params_default();
    p.kind = (attn_align_kind)kind;
    p.straight_through = 1;
    for (int th = 1; th <= 3; th++) {
      CHECK_OK(attn_set_num_threads(th));
      o[th - 1] = malloc(bytes);
      d[th - 1] = malloc(bytes);
      attn_tensor to = attn_tensor_make(o[th - 1], ATTN_DTYPE_F32, 3, shape);
      attn_tensor td = attn_tensor_make(d[th - 1], ATTN_DTYPE_F32, 3, shape);
      CHECK_OK(attn_align_forward(&to, &tx, &tm, &p, NULL, 0));
      CHECK_OK(attn_align_backward(&td, NULL, &tg, &to, &tx, &tm, &p, NULL, 0));
    }
    for (int th = 1; th < 3; th++) {
      CHECK(memcmp(o[0], o[th], bytes) == 0, "%s: forward differs with %d threads",
            kind_name(p.kind), th + 1);
      CHECK(memcmp(d[0], d[th], bytes) == 0, "%s: backward differs with %d threads",
            kind_name(p.kind), th + 1);
    }
    /* Every ISA gives the same bits (elementwise operations, fixed-lane sums, no contraction). */
    for (int isa = ATTN_ISA_SCALAR; isa <= ATTN_ISA_AVX512; isa++) {
      if (!attn_cpu_supports((attn_isa)isa)) continue;
      CHECK_OK(attn_set_isa((attn_isa)isa));
      float *oi = malloc(bytes), *di = malloc(bytes);
      attn_tensor to = attn_tensor_make(oi, ATTN_DTYPE_F32, 3, shape);
      attn_tensor td = attn_tensor_make(di, ATTN_DTYPE_F32, 3, shape);
      CHECK_OK(attn_align_forward(&to, &tx, &tm, &p, NULL, 0));
      CHECK_OK(attn_align_backward(&td, NULL, &tg, &to, &tx, &tm, &p, NULL, 0));
      CHECK(memcmp(o[0], oi, bytes) == 0, "%s: forward differs on %s", kind_name(p.kind),
            attn_isa_name((attn_isa)isa));
      CHECK(memcmp(d[0], di, bytes) == 0, "%s: backward differs on %s", kind_name(p.kind),
            attn_isa_name((attn_isa)isa));
      free(oi);
      free(di);
    }
    CHECK_OK(attn_set_isa(attn_cpu_best_isa()));
    /* In place: out is the very same view as in. */
    float *y = malloc(bytes);
    memcpy(y, x, bytes);
    attn_tensor ty = attn_tensor_make(y, ATTN_DTYPE_F32, 3, shape);
    CHECK_OK(attn_align_forward(&ty, &ty, &tm, &p, NULL, 0));
    CHECK(memcmp(y, o[0], bytes) == 0, "%s: in place differs", kind_name(p.kind));
    /* Caller's workspace. */
    size_t ws_size = 0;
    CHECK_OK(attn_align_workspace_size(&ws_size, &tx, &p));
    void *ws = aligned_alloc(64, (ws_size + 63) / 64 * 64);
    CHECK_OK(attn_align_forward(&ty, &tx, &tm, &p, ws, ws_size));
    CHECK(memcmp(y, o[0], bytes) == 0, "%s: with a workspace differs", kind_name(p.kind));
    CHECK_STATUS(attn_align_forward(&ty, &tx, &tm, &p, ws, ws_size - 1),
                 ATTN_STATUS_WORKSPACE_TOO_SMALL);
    free(ws);
    free(y);
    for (int th = 0; th < 3; th++) {
      free(o[th]);
      free(d[th]);
    }
  }
  CHECK_OK(attn_set_num_threads(saved));
  free(x);
  free(m);
  free(g);
}

/* NaN in a blocked score stays out; NaN or +inf in an unblocked one makes the row NaN. */
static void test_nan(void) {
  float x[4] = {0.5f, NAN, 1.0f, -1.0f}, m[4] = {0.0f, -INFINITY, 0.0f, 0.0f}, a[4];
  attn_tensor tx = t_vec(x, 4), tm = t_vec(m, 4), ta = t_vec(a, 4);
  for (int kind = 0; kind <= ATTN_ALIGN_ENTMAX_BISECT; kind++)
    for (int use_ref = 0; use_ref < 2; use_ref++) {
      attn_align_params p = attn_align_params_default();
      p.kind = (attn_align_kind)kind;
      x[1] = NAN;
      if (use_ref)
        CHECK_OK(attn_align_forward_ref(&ta, &tx, &tm, &p));
      else
        CHECK_OK(attn_align_forward(&ta, &tx, &tm, &p, NULL, 0));
      bool finite = true;
      for (int j = 0; j < 4; j++) finite &= isfinite(a[j]) != 0;
      CHECK(finite && a[1] == 0.0f, "%s%s: NaN at a blocked position leaked", kind_name(p.kind),
            use_ref ? " ref" : "");
      for (int bad = 0; bad < 2; bad++) {
        x[1] = 0.0f;
        x[2] = bad ? INFINITY : NAN;
        if (use_ref)
          CHECK_OK(attn_align_forward_ref(&ta, &tx, NULL, &p));
        else
          CHECK_OK(attn_align_forward(&ta, &tx, NULL, &p, NULL, 0));
        if (kind == ATTN_ALIGN_SIGMOID)
          CHECK(bad ? a[2] == 1.0f : isnan(a[2]), "sigmoid of %g: %g", (double)x[2], (double)a[2]);
        else
          CHECK(isnan(a[0]) && isnan(a[3]), "%s%s: %g in a score did not give a NaN row",
                kind_name(p.kind), use_ref ? " ref" : "", (double)x[2]);
        x[2] = 1.0f;
      }
    }
}

/* ---- bad inputs ----------------------------------------------------------------------------- */

static void test_bad_inputs(void) {
  float x[12], o[12], g[12], pos[3];
  for (int i = 0; i < 12; i++) {
    x[i] = (float)i;
    o[i] = 42.0f;
    g[i] = 1.0f;
  }
  int64_t shape[2] = {3, 4};
  attn_tensor tx = attn_tensor_make(x, ATTN_DTYPE_F32, 2, shape);
  attn_tensor to = attn_tensor_make(o, ATTN_DTYPE_F32, 2, shape);
  attn_tensor tg = attn_tensor_make(g, ATTN_DTYPE_F32, 2, shape);
  attn_align_params p = attn_align_params_default();
  t_expect_error(attn_align_forward(NULL, &tx, NULL, &p, NULL, 0), ATTN_STATUS_NULL_POINTER, "out",
                 "NULL out");
  t_expect_error(attn_align_forward(&to, NULL, NULL, &p, NULL, 0), ATTN_STATUS_NULL_POINTER, "in",
                 "NULL in");
  t_expect_error(attn_align_forward_ref(&to, NULL, NULL, &p), ATTN_STATUS_NULL_POINTER, "in",
                 "NULL in (ref)");
  p.temperature = 0.0f;
  t_expect_error(attn_align_forward(&to, &tx, NULL, &p, NULL, 0), ATTN_STATUS_INVALID_ARGUMENT,
                 "temperature", "temperature 0");
  p.temperature = -1.0f;
  t_expect_error(attn_align_forward_ref(&to, &tx, NULL, &p), ATTN_STATUS_INVALID_ARGUMENT,
                 "temperature", "temperature -1");
  p.temperature = NAN;
  t_expect_error(attn_align_forward(&to, &tx, NULL, &p, NULL, 0), ATTN_STATUS_INVALID_ARGUMENT,
                 "temperature", "temperature NaN");
  p = attn_align_params_default();
  p.kind = ATTN_ALIGN_ENTMAX_BISECT;
  p.alpha = 1.0f;
  t_expect_error(attn_align_forward(&to, &tx, NULL, &p, NULL, 0), ATTN_STATUS_INVALID_ARGUMENT,
                 "alpha", "alpha 1");
  p.alpha = 0.5f;
  t_expect_error(attn_align_backward(&tg, NULL, &tx, &tx, &tx, NULL, &p, NULL, 0),
                 ATTN_STATUS_INVALID_ARGUMENT, "alpha", "alpha 0.5 (backward)");
  p.alpha = 1.5f;
  p.n_iter = 0;
  t_expect_error(attn_align_forward(&to, &tx, NULL, &p, NULL, 0), ATTN_STATUS_INVALID_ARGUMENT,
                 "n_iter", "n_iter 0");
  p = attn_align_params_default();
  p.kind = (attn_align_kind)17;
  t_expect_error(attn_align_forward(&to, &tx, NULL, &p, NULL, 0), ATTN_STATUS_INVALID_ARGUMENT,
                 "kind", "bad kind");
  p = attn_align_params_default();
  /* Shapes. */
  int64_t shape_b[2] = {3, 5};
  attn_tensor tbad = attn_tensor_make(o, ATTN_DTYPE_F32, 2, shape_b);
  t_expect_error(attn_align_forward(&tbad, &tx, NULL, &p, NULL, 0), ATTN_STATUS_SHAPE_MISMATCH,
                 "out", "out shape");
  int64_t shape_m[2] = {2, 4};
  attn_tensor tmb = attn_tensor_make(g, ATTN_DTYPE_F32, 2, shape_m);
  t_expect_error(attn_align_forward(&to, &tx, &tmb, &p, NULL, 0), ATTN_STATUS_SHAPE_MISMATCH,
                 "mask", "mask shape");
  int64_t shape_0[2] = {3, 0};
  attn_tensor t0 = attn_tensor_make(x, ATTN_DTYPE_F32, 2, shape_0);
  attn_tensor t0o = attn_tensor_make(o, ATTN_DTYPE_F32, 2, shape_0);
  t_expect_error(attn_align_forward(&t0o, &t0, NULL, &p, NULL, 0), ATTN_STATUS_INVALID_ARGUMENT,
                 "no positions", "empty keys");
  attn_tensor th = tx;
  th.dtype = ATTN_DTYPE_F16;
  t_expect_error(attn_align_forward(&to, &th, NULL, &p, NULL, 0), ATTN_STATUS_UNSUPPORTED_DTYPE,
                 "in", "f16");
  attn_tensor ts = tx;
  ts.stride[1] = 2;
  t_expect_error(attn_align_forward(&to, &ts, NULL, &p, NULL, 0), ATTN_STATUS_BAD_STRIDE, "in",
                 "stride");
  /* Aliasing: a shifted view of in. */
  int64_t shape_s[2] = {2, 4};
  attn_tensor txs = attn_tensor_make(x, ATTN_DTYPE_F32, 2, shape_s);
  attn_tensor txs2 = attn_tensor_make(x + 4, ATTN_DTYPE_F32, 2, shape_s);
  t_expect_error(attn_align_forward(&txs2, &txs, NULL, &p, NULL, 0), ATTN_STATUS_ALIASING,
                 "overlaps", "partial overlap");
  t_expect_error(attn_align_backward(&tx, NULL, &tg, &to, &tx, NULL, &p, NULL, 0),
                 ATTN_STATUS_ALIASING, "d_in", "d_in aliases in");
  t_expect_error(attn_align_backward(&to, NULL, NULL, &to, &tx, NULL, &p, NULL, 0),
                 ATTN_STATUS_NULL_POINTER, "d_out", "NULL d_out");
  /* Local windows. */
  p.local = ATTN_ALIGN_LOCAL_M;
  p.window = -1;
  t_expect_error(attn_align_forward(&to, &tx, NULL, &p, NULL, 0), ATTN_STATUS_INVALID_ARGUMENT,
                 "window", "D < 0");
  int64_t shape_l[2] = {6, 2}; /* rows t = 0..5 over n = 2 keys: t = 3 sees nothing with D = 1 */
  attn_tensor tl = attn_tensor_make(x, ATTN_DTYPE_F32, 2, shape_l);
  attn_tensor tlo = attn_tensor_make(o, ATTN_DTYPE_F32, 2, shape_l);
  p.window = 1;
  t_expect_error(attn_align_forward(&tlo, &tl, NULL, &p, NULL, 0), ATTN_STATUS_INVALID_ARGUMENT,
                 "outside the sequence", "local-m window outside");
  p.window = 4;
  CHECK_OK(attn_align_forward(&tlo, &tl, NULL, &p, NULL, 0));
  for (int i = 0; i < 12; i++) o[i] = 42.0f;
  p.local = ATTN_ALIGN_LOCAL_P;
  p.window = 1;
  p.positions = NULL;
  t_expect_error(attn_align_forward(&to, &tx, NULL, &p, NULL, 0), ATTN_STATUS_NULL_POINTER,
                 "positions", "NULL positions");
  pos[0] = 1.0f;
  pos[1] = 5.6f; /* centre 6, window [5, 7] misses [0, 3] */
  pos[2] = 0.0f;
  p.positions = pos;
  t_expect_error(attn_align_forward(&to, &tx, NULL, &p, NULL, 0), ATTN_STATUS_INVALID_ARGUMENT,
                 "positions[1]", "local-p window outside");
  pos[1] = NAN;
  t_expect_error(attn_align_forward_ref(&to, &tx, NULL, &p), ATTN_STATUS_INVALID_ARGUMENT,
                 "positions[1]", "NaN position");
  pos[1] = 4.4f; /* centre 4, window [3, 5] meets [0, 3]: allowed */
  CHECK_OK(attn_align_forward(&to, &tx, NULL, &p, NULL, 0));
  CHECK(o[4 + 3] > 0.0f && o[4 + 0] == 0.0f, "edge window: %g %g", (double)o[7], (double)o[4]);
  /* Outputs untouched on error. */
  for (int i = 0; i < 12; i++) o[i] = 42.0f;
  p.window = -3;
  CHECK(attn_align_forward(&to, &tx, NULL, &p, NULL, 0) == ATTN_STATUS_INVALID_ARGUMENT, "D < 0");
  bool untouched = true;
  for (int i = 0; i < 12; i++) untouched &= o[i] == 42.0f;
  CHECK(untouched, "output written on error");
  /* Success clears the last error. */
  p = attn_align_params_default();
  CHECK_OK(attn_align_forward(&to, &tx, NULL, &p, NULL, 0));
  CHECK(attn_last_error()[0] == '\0', "last error not cleared: %s", attn_last_error());
  /* Zero rows: nothing to do. */
  int64_t shape_z[2] = {0, 4};
  attn_tensor tz = attn_tensor_make(x, ATTN_DTYPE_F32, 2, shape_z);
  attn_tensor tzo = attn_tensor_make(o, ATTN_DTYPE_F32, 2, shape_z);
  CHECK_OK(attn_align_forward(&tzo, &tz, NULL, &p, NULL, 0));
}

/* Allocation failures: OUT_OF_MEMORY, outputs untouched, nothing leaked. */
static void test_failing_allocator(void) {
  float x[20], o[20], g[20], d[20];
  for (int i = 0; i < 20; i++) {
    x[i] = (float)(i % 7);
    g[i] = 1.0f;
  }
  int64_t shape[2] = {4, 5};
  attn_tensor tx = attn_tensor_make(x, ATTN_DTYPE_F32, 2, shape);
  attn_tensor to = attn_tensor_make(o, ATTN_DTYPE_F32, 2, shape);
  attn_tensor tg = attn_tensor_make(g, ATTN_DTYPE_F32, 2, shape);
  attn_tensor td = attn_tensor_make(d, ATTN_DTYPE_F32, 2, shape);
  attn_align_params p = attn_align_params_default();
  CHECK_OK(attn_align_forward(&to, &tx, NULL, &p, NULL, 0));
  for (int which = 0; which < 4; which++) {
    float keep[20];
    memcpy(keep, which % 2 ? d : o, sizeof keep);
    t_alloc_install(1);
    attn_status st = which == 0   ? attn_align_forward(&to, &tx, NULL, &p, NULL, 0)
                     : which == 1 ? attn_align_backward(&td, NULL, &tg, &to, &tx, NULL, &p, NULL, 0)
                     : which == 2 ? attn_align_forward_ref(&to, &tx, NULL, &p)
                                  : attn_align_backward_ref(&td, NULL, &tg, &to, &tx, NULL, &p);
    CHECK(st == ATTN_STATUS_OUT_OF_MEMORY, "case %d: %s", which, attn_status_str(st));
    CHECK(t_alloc_live() == 0, "case %d: %lld blocks leaked", which, (long long)t_alloc_live());
    t_alloc_uninstall();
    CHECK(memcmp(keep, which % 2 ? d : o, sizeof keep) == 0, "case %d: output written", which);
  }
}

int main(void) {
  quick = getenv("ATTN_TEST_QUICK") != NULL;
  test_known_values();
  test_simplex();
  test_temperature_limit();
  test_bisect_limits();
  test_local();
  test_fast_vs_ref();
  test_finite_differences();
  test_threads_and_in_place();
  test_nan();
  test_bad_inputs();
  test_failing_allocator();
  return t_finish("test_align");
}
