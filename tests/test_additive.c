/* Fused additive attention (include/attn/additive.h): the tanh approximation's accuracy, fast
 * against reference (out, lse, weights, every gradient) on awkward shapes with masks, fully
 * masked rows, broadcast masks, strided views, every ISA and 1/2/3 threads (bitwise equal),
 * the reference's backward against central finite differences, NaN in blocked keys, the
 * workspace bound, bad inputs and a failing allocator.
 *
 * Tolerances. Each score e = sum_c w_c tanh(u_c) carries the tanh error (< 5e-7, tested) and f32
 * rounding, so |e - e_ref| <= 1e-6 W with W = 1 + sum_c |w_c|; softmax turns that into a relative
 * error <= 2e-6 W of each weight, and out into <= 2e-6 W max|v| plus rounding of the sum over
 * keys: we allow 1e-5 W (1 + max|v|). Gradients: 1e-4 (1 + max |ref|) per tensor (two more
 * products and sums over Tq or Tk keys in f32). Finite differences on the reference (double
 * inside, f32 outputs) with h = 3e-3: noise ~ 1e-7 / h, truncation O(h^2); bound
 * 2e-3 (1 + max |g|). */
#include "attn/additive.h"
#include "common.h"

static bool quick;

/* Row-major with the innermost rows padded by `pad` elements. */
static attn_tensor view(t_buf *b, int nd, const int64_t *shape, int64_t pad) {
  return t_view_ld(b->data, nd, shape, shape[nd - 1] + pad);
}

static int64_t extent(int nd, const int64_t *shape, int64_t pad) {
  int64_t s = 1;
  for (int d = nd - 1; d >= 0; d--) s *= d == nd - 1 ? shape[d] + pad : shape[d];
  return s;
}

static void test_tanh(void) {
  double worst = 0.0, where = 0.0;
  for (double x = -20.0; x <= 20.0; x += 1.0 / 1024.0 + 1e-7) {
    float xf = (float)x;
    double err = fabs((double)attn_tanh_approx(xf) - tanh((double)xf));
    if (err > worst) {
      worst = err;
      where = x;
    }
    CHECK(attn_tanh_approx(-xf) == -attn_tanh_approx(xf), "tanh not odd at %g", x);
  }
  /* Small arguments: relative accuracy. */
  for (float x = 1e-30f; x < 1e-2f; x *= 1.7f) {
    double rel = fabs((double)attn_tanh_approx(x) - tanh((double)x)) / tanh((double)x);
    CHECK(rel < 1e-6, "tanh(%g): relative error %g", (double)x, rel);
  }
  CHECK(worst < 5e-7, "tanh: max |error| %g at %g", worst, where);
  CHECK(fabsf(attn_tanh_approx(INFINITY) - 1.0f) < 5e-7f &&
            fabsf(attn_tanh_approx(-INFINITY) + 1.0f) < 5e-7f,
        "tanh(+-inf)");
  CHECK(isnan(attn_tanh_approx(NAN)), "tanh(NaN) is not NaN");
  CHECK(attn_tanh_approx(0.0f) == 0.0f, "tanh(0)");
  printf("tanh approximation: max |error| %.3g at x = %.4f\n", worst, where);
}

#if defined(__x86_64__) && defined(__GNUC__)
/* The AVX-512 kernels' tanh (src/cpu/avx512/additive_avx512.c): the same rational evaluated with
 * FMAs and a refined reciprocal estimate; the same bounds as attn_tanh_approx. */
void attn__additive_tanh16_avx512(const float *x, float *y);

static void test_tanh_avx512(void) {
  if (!attn_cpu_supports(ATTN_ISA_AVX512)) {
    printf("tanh (AVX-512): skipped, the CPU lacks AVX-512\n");
    return;
  }
  double worst = 0.0, where = 0.0, worst_rel = 0.0;
  float x[16], y[16];
  int n = 0;
  for (double v = -20.0; v <= 20.0; v += 1.0 / 4096.0 + 1e-7) {
    x[n++] = (float)v;
    if (n < 16) continue;
    attn__additive_tanh16_avx512(x, y);
    for (int l = 0; l < 16; l++) {
      double err = fabs((double)y[l] - tanh((double)x[l]));
      if (err > worst) {
        worst = err;
        where = x[l];
      }
    }
    n = 0;
  }
  for (float v = 1e-30f; v < 1e-2f; v *= 1.7f) {
    for (int l = 0; l < 16; l++) x[l] = v * (1.0f + (float)l / 16.0f);
    attn__additive_tanh16_avx512(x, y);
    for (int l = 0; l < 16; l++)
      worst_rel = fmax(worst_rel, fabs((double)y[l] - tanh((double)x[l])) / tanh((double)x[l]));
  }
  CHECK(worst < 5e-7, "tanh (AVX-512): max |error| %g at %g", worst, where);
  CHECK(worst_rel < 1e-6, "tanh (AVX-512): small arguments, relative error %g", worst_rel);
  float sp[16] = {INFINITY, -INFINITY, NAN,   0.0f, -0.0f, 1e30f, -1e30f, 7.9f,
                  -7.9f,    8.5f,      -8.5f, 0.5f, -0.5f, 3.0f,  -3.0f,  1e-3f};
  attn__additive_tanh16_avx512(sp, y);
  CHECK(fabsf(y[0] - 1.0f) < 5e-7f && fabsf(y[1] + 1.0f) < 5e-7f, "tanh (AVX-512): +-inf");
  CHECK(isnan(y[2]), "tanh (AVX-512): NaN gives %g", (double)y[2]);
  CHECK(y[3] == 0.0f && y[4] == 0.0f, "tanh (AVX-512): +-0");
  for (int l = 5; l < 15; l += 2)
    CHECK(y[l] == -y[l + 1], "tanh (AVX-512): not odd at %g", (double)sp[l]);
  printf("tanh (AVX-512 kernels): max |error| %.3g at x = %.4f, small-x relative %.3g\n", worst,
         where, worst_rel);
}

/* The AVX-512 kernels' fast tanh(a + b) = 1 - 2 / (1 + e^{2a} e^{2b}), |a|, |b| <= 20. */
void attn__additive_tanh_sum16_avx512(const float *a, const float *b, float *y);

static void test_tanh_sum_avx512(void) {
  if (!attn_cpu_supports(ATTN_ISA_AVX512)) return;
  double worst = 0.0, wa = 0.0, wb = 0.0;
  float a[16], b[16], y[16];
  t_rng rng = t_rng_make(5);
  for (int it = 0; it < 40000; it++) {
    for (int l = 0; l < 16; l++) {
      /* Half the lanes anywhere in [-20, 20]^2, half near the diagonal a + b ~ 0 where tanh
       * is steepest and the terms cancel. */
      a[l] = t_uniform(&rng, -20.0f, 20.0f);
      b[l] = l % 2 ? t_uniform(&rng, -20.0f, 20.0f) : -a[l] + t_uniform(&rng, -3.0f, 3.0f);
      if (fabsf(b[l]) > 20.0f) b[l] = copysignf(20.0f, b[l]);
    }
    attn__additive_tanh_sum16_avx512(a, b, y);
    for (int l = 0; l < 16; l++) {
      double err = fabs((double)y[l] - tanh((double)a[l] + (double)b[l]));
      if (err > worst) {
        worst = err;
        wa = a[l];
        wb = b[l];
      }
    }
  }
  CHECK(worst < 5e-7, "tanh(a + b) (AVX-512): max |error| %g at a = %g, b = %g", worst, wa, wb);
  printf("tanh(a + b) (AVX-512 product form): max |error| %.3g at a = %.4f, b = %.4f\n", worst, wa,
         wb);
}
#else
static void test_tanh_avx512(void) {}
static void test_tanh_sum_avx512(void) {}
#endif

/* ---- one problem --------------------------------------------------------------------------- */

typedef struct prob {
  int64_t B, Tq, Tk, d, Dv, pad;
  int mask_mode; /* 0 none, 1 full with -inf and a fully masked row, 2 (1, 1, Tk), 3 (B, Tq, 1) */
  bool has_b;
  bool big; /* a few q1 and k2 entries of magnitude 21..40 (the AVX-512 fallback tanh) */
  t_buf q1, k2, v, w, b, mask, out, lse, wts, dout, dq1, dk2, dv, dw, db;
  attn_tensor tq1, tk2, tv, tw, tb, tmask, tout, tlse, twts, tdout, tdq1, tdk2, tdv, tdw, tdb;
  attn_additive_params prm;
} prob;

static void prob_make(prob *p, t_rng *rng) {
  int64_t sq[3] = {p->B, p->Tq, p->d}, sk[3] = {p->B, p->Tk, p->d}, sv[3] = {p->B, p->Tk, p->Dv};
  int64_t so[3] = {p->B, p->Tq, p->Dv}, sl[2] = {p->B, p->Tq}, sa[3] = {p->B, p->Tq, p->Tk};
  int64_t sw[1] = {p->d};
  int64_t sm[3] = {p->B, p->Tq, p->Tk};
  if (p->mask_mode == 2) sm[0] = sm[1] = 1;
  if (p->mask_mode == 3) sm[2] = 1;
#define MK(buf, t, nd, shape, pad)                              \
  do {                                                          \
    p->buf = t_buf_new(ATTN_DTYPE_F32, extent(nd, shape, pad)); \
    t_buf_fill(&p->buf, NAN);                                   \
    p->t = view(&p->buf, nd, shape, pad);                       \
  } while (0)
  MK(q1, tq1, 3, sq, p->pad);
  MK(k2, tk2, 3, sk, p->pad);
  MK(v, tv, 3, sv, p->pad);
  MK(w, tw, 1, sw, 0);
  MK(b, tb, 1, sw, 0);
  MK(mask, tmask, 3, sm, 0);
  MK(out, tout, 3, so, p->pad);
  MK(lse, tlse, 2, sl, 0);
  MK(wts, twts, 3, sa, p->pad);
  MK(dout, tdout, 3, so, p->pad);
  MK(dq1, tdq1, 3, sq, p->pad);
  MK(dk2, tdk2, 3, sk, p->pad);
  MK(dv, tdv, 3, sv, p->pad);
  MK(dw, tdw, 1, sw, 0);
  MK(db, tdb, 1, sw, 0);
#undef MK
  /* Inputs: fill the logical elements (padding stays NaN, so reading it shows). */
  t_buf *ins[] = {&p->q1, &p->k2, &p->v, &p->dout};
  attn_tensor *tins[] = {&p->tq1, &p->tk2, &p->tv, &p->tdout};
  for (int k = 0; k < 4; k++) {
    attn_tensor *t = tins[k];
    for (int64_t i = 0; i < t->shape[0]; i++)
      for (int64_t j = 0; j < t->shape[1]; j++)
        for (int64_t c = 0; c < t->shape[2]; c++)
          t_f32(ins[k])[i * t->stride[0] + j * t->stride[1] + c] = t_normal(rng);
  }
  for (int64_t c = 0; c < p->d; c++) {
    t_f32(&p->w)[c] = t_normal(rng);
    t_f32(&p->b)[c] = 0.5f * t_normal(rng);
  }
  if (p->big) /* in the first rows of q1 and every 40th key of k2: some tiles fall back */
    for (int64_t n = 0; n < 2 * p->d; n++) {
      float x = t_uniform(rng, 21.0f, 40.0f) * (n % 2 ? -1.0f : 1.0f);
      int64_t c = t_int(rng, 0, p->d - 1);
      t_f32(&p->q1)[(n % (p->Tq < 3 ? p->Tq : 3)) * p->tq1.stride[1] + c] = x;
      t_f32(&p->k2)[((n * 40) % p->Tk) * p->tk2.stride[1] + c] = -x;
    }
  int64_t nm = sm[0] * sm[1] * sm[2];
  for (int64_t i = 0; i < nm; i++)
    t_f32(&p->mask)[i] = t_uniform(rng, 0.0f, 1.0f) < 0.25f ? -INFINITY : 0.3f * t_normal(rng);
  if (p->mask_mode == 1)
    for (int64_t j = 0; j < p->Tk; j++) t_f32(&p->mask)[(p->B * p->Tq - 1) * p->Tk + j] = -INFINITY;
  if (p->mask_mode == 3) t_f32(&p->mask)[0] = -INFINITY;
  p->prm = attn_additive_params_default();
  p->prm.mask = p->mask_mode ? &p->tmask : NULL;
}

static void prob_free(prob *p) {
  t_buf *all[] = {&p->q1,  &p->k2,   &p->v,   &p->w,   &p->b,  &p->mask, &p->out, &p->lse,
                  &p->wts, &p->dout, &p->dq1, &p->dk2, &p->dv, &p->dw,   &p->db};
  for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) {
    CHECK(t_buf_guard_ok(all[i]), "guard bytes of buffer %zu", i);
    t_buf_free(all[i]);
  }
}

/* Copies of the logical elements of a view (padding skipped), to compare runs. */
static void gather(const attn_tensor *t, float *dst) {
  int64_t n0 = t->ndim == 1 ? 1 : t->shape[0], n1 = t->ndim == 3 ? t->shape[1] : 1,
          n2 = t->shape[t->ndim - 1], k = 0;
  for (int64_t i = 0; i < n0; i++)
    for (int64_t j = 0; j < n1; j++)
      for (int64_t c = 0; c < n2; c++) {
        int64_t off = t->ndim == 1   ? c
                      : t->ndim == 2 ? i * t->stride[0] + c
                                     : i * t->stride[0] + j * t->stride[1] + c;
        dst[k++] = ((const float *)t->data)[off];
      }
}

static int64_t numel(const attn_tensor *t) {
  int64_t n = 1;
  for (int d = 0; d < t->ndim; d++) n *= t->shape[d];
  return n;
}

static attn_status fwd(prob *p, bool ref) {
  const attn_tensor *b = p->has_b ? &p->tb : NULL;
  return ref ? attn_additive_forward_ref(&p->tout, &p->tlse, &p->twts, &p->tq1, &p->tk2, &p->tv,
                                         &p->tw, b, &p->prm)
             : attn_additive_forward(&p->tout, &p->tlse, &p->twts, &p->tq1, &p->tk2, &p->tv, &p->tw,
                                     b, &p->prm, NULL, 0);
}

static attn_status bwd(prob *p, bool ref) {
  const attn_tensor *b = p->has_b ? &p->tb : NULL;
  const attn_tensor *db = p->has_b ? &p->tdb : NULL;
  return ref ? attn_additive_backward_ref(&p->tdq1, &p->tdk2, &p->tdv, &p->tdw, db, &p->tdout,
                                          &p->tq1, &p->tk2, &p->tv, &p->tw, b, &p->tout, &p->tlse,
                                          &p->prm)
             : attn_additive_backward(&p->tdq1, &p->tdk2, &p->tdv, &p->tdw, db, &p->tdout, &p->tq1,
                                      &p->tk2, &p->tv, &p->tw, b, &p->tout, &p->tlse, &p->prm, NULL,
                                      0);
}

enum { N_RES = 8 };
/* Results of one run: out, lse, weights, dq1, dk2, dv, dw, db. */
typedef struct results {
  float *r[N_RES];
  int64_t n[N_RES];
} results;

static void collect(prob *p, results *res) {
  attn_tensor *ts[N_RES] = {&p->tout, &p->tlse, &p->twts, &p->tdq1,
                            &p->tdk2, &p->tdv,  &p->tdw,  &p->tdb};
  for (int k = 0; k < N_RES; k++) {
    res->n[k] = numel(ts[k]);
    res->r[k] = malloc(sizeof(float) * (size_t)(res->n[k] + 1));
    gather(ts[k], res->r[k]);
  }
}

static void results_free(results *res) {
  for (int k = 0; k < N_RES; k++) free(res->r[k]);
}

static const char *res_name[N_RES] = {"out", "lse", "weights", "dq1", "dk2", "dv", "dw", "db"};

static void run_both(prob *p, bool ref, results *res) {
  CHECK_OK(fwd(p, ref));
  CHECK_OK(bwd(p, ref));
  collect(p, res);
}

static void check_masked_rows(const prob *p, const results *res, const char *what) {
  /* Fully masked rows: out 0, lse -inf, weights 0, dq1 0. */
  if (p->mask_mode == 1 || p->mask_mode == 3) {
    int64_t row = p->mask_mode == 1 ? p->B * p->Tq - 1 : 0; /* flattened (b, i) */
    for (int64_t c = 0; c < p->Dv; c++)
      CHECK(res->r[0][row * p->Dv + c] == 0.0f, "%s: masked row out %g", what,
            (double)res->r[0][row * p->Dv + c]);
    CHECK(res->r[1][row] == -INFINITY, "%s: masked row lse %g", what, (double)res->r[1][row]);
    for (int64_t c = 0; c < p->d; c++)
      CHECK(res->r[3][row * p->d + c] == 0.0f, "%s: masked row dq1 %g", what,
            (double)res->r[3][row * p->d + c]);
  }
}

static void compare_case(prob *p, t_rng *rng) {
  prob_make(p, rng);
  char what[160];
  snprintf(what, sizeof what, "B %lld Tq %lld Tk %lld d %lld Dv %lld pad %lld mask %d b %d big %d",
           (long long)p->B, (long long)p->Tq, (long long)p->Tk, (long long)p->d, (long long)p->Dv,
           (long long)p->pad, p->mask_mode, p->has_b, p->big);
  results ref, fast;
  run_both(p, true, &ref);
  /* Each ISA and thread count: the fast forward, then the fast backward from its out and lse.
   * Each ISA's 1-thread run is checked against the reference; 2 and 3 threads must give its very
   * bits. (ISAs differ in their bits: the AVX-512 kernels use FMAs and a reciprocal estimate.) */
  results first, base;
  memset(&base, 0, sizeof base);
  double W = 1.0, vmax = 0.0;
  for (int64_t c = 0; c < p->d; c++) W += fabs((double)t_f32(&p->w)[c]);
  for (int64_t i = 0; i < p->v.n; i++)
    if (!isnan(t_f32(&p->v)[i])) vmax = fmax(vmax, fabs((double)t_f32(&p->v)[i]));
  for (int isa = ATTN_ISA_SCALAR; isa <= ATTN_ISA_AVX512; isa++) {
    if (!attn_cpu_supports((attn_isa)isa)) continue;
    CHECK_OK(attn_set_isa((attn_isa)isa));
    for (int th = 1; th <= 3; th++) {
      if (quick && th == 2) continue;
      CHECK_OK(attn_set_num_threads(th));
      CHECK_OK(fwd(p, false));
      CHECK_OK(bwd(p, false));
      collect(p, &fast);
      if (th == 1) {
        first = fast;
        for (int k = 0; k < N_RES; k++) {
          if (k == 7 && !p->has_b) continue;
          double mx = 0.0, tol;
          for (int64_t i = 0; i < ref.n[k]; i++)
            if (isfinite(ref.r[k][i])) mx = fmax(mx, fabs((double)ref.r[k][i]));
          tol = k < 3 ? 1e-5 * W * (1.0 + (k == 0 ? vmax : 1.0)) : 1e-4 * (1.0 + mx);
          for (int64_t i = 0; i < ref.n[k]; i++) {
            float a = fast.r[k][i], b = ref.r[k][i];
            bool ok = (a == b) || fabs((double)a - (double)b) <= tol;
            CHECK(ok, "%s: isa %d: %s[%lld] fast %.8g ref %.8g (tol %g)", what, isa, res_name[k],
                  (long long)i, (double)a, (double)b, tol);
            if (!ok) break;
          }
        }
        continue;
      }
      for (int k = 0; k < N_RES; k++) {
        if (k == 7 && !p->has_b) continue;
        CHECK(memcmp(first.r[k], fast.r[k], sizeof(float) * (size_t)fast.n[k]) == 0,
              "%s: %s differs between thread counts (isa %d, %d threads)", what, res_name[k], isa,
              th);
      }
      results_free(&fast);
    }
    check_masked_rows(p, &first, what);
    /* The portable kernels (baseline, AVX2) run the same operations in the same order. */
    if (isa == ATTN_ISA_SCALAR) {
      base = first;
      continue;
    }
    if (isa == ATTN_ISA_AVX2 && base.r[0])
      for (int k = 0; k < N_RES; k++) {
        if (k == 7 && !p->has_b) continue;
        CHECK(memcmp(base.r[k], first.r[k], sizeof(float) * (size_t)first.n[k]) == 0,
              "%s: %s differs between the baseline and AVX2 kernels", what, res_name[k]);
      }
    results_free(&first);
  }
  if (base.r[0]) results_free(&base);
  CHECK_OK(attn_set_isa(attn_cpu_best_isa()));
  results_free(&ref);
  prob_free(p);
}

static void test_fast_vs_ref(void) {
  t_rng rng = t_rng_make(31);
  int64_t Tqs[] = {1, 5, 17}, Tks[] = {1, 7, 16, 33}, ds[] = {1, 3, 8, 40}, Dvs[] = {1, 5, 16};
  int cases = 0;
  int saved = attn_get_num_threads();
  for (size_t a = 0; a < 3; a++)
    for (size_t k = 0; k < 4; k++)
      for (size_t c = 0; c < 4; c++) {
        if (quick && (a + k + c) % 3) continue;
        prob p;
        memset(&p, 0, sizeof p);
        p.B = 1 + (int64_t)((a + k + c) % 3);
        p.Tq = Tqs[a];
        p.Tk = Tks[k];
        p.d = ds[c];
        p.Dv = Dvs[(a + c) % 3];
        p.pad = t_int(&rng, 0, 2);
        p.mask_mode = (int)t_int(&rng, 0, 3);
        p.has_b = t_int(&rng, 0, 1);
        compare_case(&p, &rng);
        cases++;
      }
  /* Longer key axes with small B: the AVX-512 backward splits each batch into key blocks (here
   * 4, 8 and 2, the last one partial) whose dq1 partials the driver adds in block order. The
   * third has inputs beyond +-20, where the AVX-512 kernels fall back to the rational tanh. */
  static const int64_t longer[][5] = {
      {2, 9, 200, 40, 24}, {1, 37, 1000, 64, 16}, {3, 6, 90, 17, 5}};
  for (size_t n = 0; n < sizeof longer / sizeof longer[0]; n++) {
    if (quick && n == 1) continue;
    prob p;
    memset(&p, 0, sizeof p);
    p.B = longer[n][0];
    p.Tq = longer[n][1];
    p.Tk = longer[n][2];
    p.d = longer[n][3];
    p.Dv = longer[n][4];
    p.pad = (int64_t)n;
    p.mask_mode = n == 0 ? 1 : 2;
    p.has_b = true;
    p.big = n == 2;
    compare_case(&p, &rng);
    cases++;
  }
  CHECK_OK(attn_set_num_threads(saved));
  printf("fast vs reference: %d cases\n", cases);
}

/* ---- finite differences --------------------------------------------------------------------- */

static double loss(prob *p) {
  /* L = sum dout . out, through the reference. */
  CHECK_OK(attn_additive_forward_ref(&p->tout, &p->tlse, NULL, &p->tq1, &p->tk2, &p->tv, &p->tw,
                                     p->has_b ? &p->tb : NULL, &p->prm));
  double l = 0.0;
  for (int64_t i = 0; i < p->out.n; i++)
    if (!isnan(t_f32(&p->out)[i]) && !isnan(t_f32(&p->dout)[i]))
      l += (double)t_f32(&p->out)[i] * (double)t_f32(&p->dout)[i];
  return l;
}

static void test_finite_differences(void) {
  t_rng rng = t_rng_make(8);
  for (int rep = 0; rep < 3; rep++) {
    prob p;
    memset(&p, 0, sizeof p);
    p.B = 2;
    p.Tq = 3;
    p.Tk = 4;
    p.d = 3;
    p.Dv = 2;
    p.pad = rep;
    p.mask_mode = rep;
    p.has_b = true;
    prob_make(&p, &rng);
    CHECK_OK(fwd(&p, true));
    CHECK_OK(bwd(&p, true));
    results g;
    collect(&p, &g);
    CHECK_OK(bwd(&p, false)); /* the fast backward too, from the reference's out and lse */
    results gf;
    collect(&p, &gf);
    t_buf *ins[] = {&p.q1, &p.k2, &p.v, &p.w, &p.b};
    attn_tensor *tins[] = {&p.tq1, &p.tk2, &p.tv, &p.tw, &p.tb};
    const float h = 3e-3f;
    for (int k = 0; k < 5; k++) {
      int rk = 3 + k; /* dq1, dk2, dv, dw, db */
      double gmax = 0.0;
      for (int64_t i = 0; i < g.n[rk]; i++) gmax = fmax(gmax, fabs((double)g.r[rk][i]));
      int64_t n = numel(tins[k]);
      float *vals = malloc(sizeof(float) * (size_t)n);
      gather(tins[k], vals);
      /* Walk the logical elements in the order gather() uses. */
      int64_t idx = 0;
      for (int64_t e = 0; e < ins[k]->n; e++) {
        if (isnan(t_f32(ins[k])[e])) continue; /* padding */
        float x0 = t_f32(ins[k])[e];
        t_f32(ins[k])[e] = x0 + h;
        double lp = loss(&p);
        t_f32(ins[k])[e] = x0 - h;
        double lm = loss(&p);
        t_f32(ins[k])[e] = x0;
        double fd = (lp - lm) / (2.0 * (double)h);
        CHECK(fabs(fd - g.r[rk][idx]) <= 2e-3 * (1.0 + gmax),
              "rep %d: %s[%lld] ref %.6g, finite "
              "difference %.6g",
              rep, res_name[rk], (long long)idx, (double)g.r[rk][idx], fd);
        CHECK(fabs(fd - gf.r[rk][idx]) <= 2e-3 * (1.0 + gmax),
              "rep %d: %s[%lld] fast %.6g, "
              "finite difference %.6g",
              rep, res_name[rk], (long long)idx, (double)gf.r[rk][idx], fd);
        idx++;
      }
      CHECK(idx == n, "walked %lld of %lld elements", (long long)idx, (long long)n);
      free(vals);
    }
    results_free(&g);
    results_free(&gf);
    prob_free(&p);
  }
}

/* NaN in a blocked key's k2 or v never reaches a result. */
static void test_nan_blocked(void) {
  t_rng rng = t_rng_make(4);
  prob p;
  memset(&p, 0, sizeof p);
  p.B = 1;
  p.Tq = 6;
  p.Tk = 20;
  p.d = 8;
  p.Dv = 4;
  p.mask_mode = 2; /* (1, 1, Tk) */
  p.has_b = true;
  prob_make(&p, &rng);
  for (int64_t j = 0; j < p.Tk; j++) t_f32(&p.mask)[j] = j == 3 ? -INFINITY : 0.0f;
  for (int64_t c = 0; c < p.d; c++) t_f32(&p.k2)[3 * p.d + c] = NAN;
  for (int64_t c = 0; c < p.Dv; c++) t_f32(&p.v)[3 * p.Dv + c] = NAN;
  /* The reference, then the fast path on each ISA (its kernels differ: AVX-512 has its own). */
  for (int run = -1; run <= ATTN_ISA_AVX512; run++) {
    if (run >= 0 && !attn_cpu_supports((attn_isa)run)) continue;
    if (run >= 0) CHECK_OK(attn_set_isa((attn_isa)run));
    results r;
    run_both(&p, run < 0, &r);
    for (int k = 0; k < N_RES; k++)
      for (int64_t i = 0; i < r.n[k]; i++) {
        bool blocked_k = (k == 4 && i / p.d == 3) || (k == 5 && i / p.Dv == 3);
        float x = r.r[k][i];
        CHECK(blocked_k ? x == 0.0f : isfinite(x), "%s (isa %d): %s[%lld] = %g",
              run < 0 ? "ref" : "fast", run, res_name[k], (long long)i, (double)x);
      }
    results_free(&r);
  }
  CHECK_OK(attn_set_isa(attn_cpu_best_isa()));
  prob_free(&p);
}

static void test_workspace_bound(void) {
  /* The bar shape: B = 8, Tq = Tk = 1024, d = 128. The broadcast formulation stores
   * B Tq Tk d floats = 4 GiB; we need O((Tq_block + Tk) d) per thread. */
  float dummy = 0.0f;
  int64_t sq[3] = {8, 1024, 128}, sv[3] = {8, 1024, 128};
  attn_tensor q = attn_tensor_make(&dummy, ATTN_DTYPE_F32, 3, sq);
  attn_tensor v = attn_tensor_make(&dummy, ATTN_DTYPE_F32, 3, sv);
  size_t f = 0, b = 0;
  CHECK_OK(attn_additive_workspace_size(&f, 0, &q, &q, &v));
  CHECK_OK(attn_additive_workspace_size(&b, 1, &q, &q, &v));
  /* 3 (Tk d) floats (K2 transposed, its exps, dK2 or the portable forward's) and small rows. */
  size_t per_thread_limit = (size_t)3 * 1024 * 128 * 4 + 65536;
  /* The AVX-512 backward also keeps dq1 partials of its key blocks past the first: at B = 8 two
   * blocks, so one more dq1 (B Tq d floats); plus the w/b partials (64 KB is plenty). */
  size_t shared = (size_t)8 * 1024 * 128 * 4 + 65536;
  int th = attn_get_num_threads();
  CHECK(f <= per_thread_limit * (size_t)th && b <= per_thread_limit * (size_t)th + shared,
        "workspace forward %zu, backward %zu bytes for %d threads", f, b, th);
  printf("workspace at B 8, T 1024, d 128, %d threads: forward %zu, backward %zu bytes\n", th, f,
         b);
  /* A negative dim is not a size (the backward's partials scale with Tq). */
  const int64_t bad[3][3] = {{-1, 1024, 128}, {8, -1, 128}, {8, 1024, 0}};
  for (int i = 0; i < 3; i++) {
    attn_tensor qb = attn_tensor_make(&dummy, ATTN_DTYPE_F32, 3, bad[i]);
    for (int bw = 0; bw < 2; bw++) {
      size_t got = 7;
      t_expect_error(attn_additive_workspace_size(&got, bw, &qb, &q, &v),
                     ATTN_STATUS_INVALID_ARGUMENT, "Tq >= 0", "workspace size of a bad q1");
      CHECK(got == 7, "size written on error: %zu", got);
    }
  }
}

static void test_bad_inputs(void) {
  t_rng rng = t_rng_make(1);
  prob p;
  memset(&p, 0, sizeof p);
  p.B = 2;
  p.Tq = 3;
  p.Tk = 4;
  p.d = 5;
  p.Dv = 2;
  p.has_b = true;
  prob_make(&p, &rng);
  attn_tensor *b = &p.tb;
  CHECK_STATUS(
      attn_additive_forward(NULL, NULL, NULL, &p.tq1, &p.tk2, &p.tv, &p.tw, b, NULL, NULL, 0),
      ATTN_STATUS_NULL_POINTER);
  CHECK(strstr(attn_last_error(), "out") != NULL, "message: %s", attn_last_error());
  CHECK_STATUS(
      attn_additive_forward(&p.tout, NULL, NULL, &p.tq1, &p.tk2, &p.tv, NULL, b, NULL, NULL, 0),
      ATTN_STATUS_NULL_POINTER);
  CHECK(strstr(attn_last_error(), "w is NULL") != NULL, "message: %s", attn_last_error());
  attn_tensor k_bad = p.tk2;
  k_bad.shape[2] = 4;
  CHECK_STATUS(
      attn_additive_forward(&p.tout, NULL, NULL, &p.tq1, &k_bad, &p.tv, &p.tw, b, NULL, NULL, 0),
      ATTN_STATUS_SHAPE_MISMATCH);
  CHECK(strstr(attn_last_error(), "k2") != NULL, "message: %s", attn_last_error());
  attn_tensor k0 = p.tk2, v0 = p.tv;
  k0.shape[1] = 0;
  v0.shape[1] = 0;
  CHECK_STATUS(
      attn_additive_forward(&p.tout, NULL, NULL, &p.tq1, &k0, &v0, &p.tw, b, NULL, NULL, 0),
      ATTN_STATUS_INVALID_ARGUMENT);
  CHECK(strstr(attn_last_error(), "no keys") != NULL, "message: %s", attn_last_error());
  attn_tensor o_alias = p.tout;
  o_alias.data = p.q1.data;
  CHECK_STATUS(
      attn_additive_forward(&o_alias, NULL, NULL, &p.tq1, &p.tk2, &p.tv, &p.tw, b, NULL, NULL, 0),
      ATTN_STATUS_ALIASING);
  attn_tensor h = p.tq1;
  h.dtype = ATTN_DTYPE_BF16;
  CHECK_STATUS(
      attn_additive_forward(&p.tout, NULL, NULL, &h, &p.tk2, &p.tv, &p.tw, b, NULL, NULL, 0),
      ATTN_STATUS_UNSUPPORTED_DTYPE);
  int64_t sm[3] = {2, 2, 4};
  attn_tensor mbad = view(&p.mask, 3, sm, 0);
  attn_additive_params prm = attn_additive_params_default();
  prm.mask = &mbad;
  CHECK_STATUS(
      attn_additive_forward(&p.tout, NULL, NULL, &p.tq1, &p.tk2, &p.tv, &p.tw, b, &prm, NULL, 0),
      ATTN_STATUS_SHAPE_MISMATCH);
  CHECK(strstr(attn_last_error(), "mask") != NULL, "message: %s", attn_last_error());
  CHECK_STATUS(attn_additive_backward(&p.tdq1, &p.tdk2, &p.tdv, &p.tdw, NULL, &p.tdout, &p.tq1,
                                      &p.tk2, &p.tv, &p.tw, b, &p.tout, NULL, NULL, NULL, 0),
               ATTN_STATUS_NULL_POINTER);
  CHECK(strstr(attn_last_error(), "lse") != NULL, "message: %s", attn_last_error());
  CHECK_STATUS(attn_additive_backward(&p.tdq1, &p.tdq1, &p.tdv, &p.tdw, NULL, &p.tdout, &p.tq1,
                                      &p.tk2, &p.tv, &p.tw, b, &p.tout, &p.tlse, NULL, NULL, 0),
               ATTN_STATUS_SHAPE_MISMATCH);
  attn_tensor dk_alias = p.tdk2;
  dk_alias.data = p.dq1.data;
  CHECK_STATUS(attn_additive_backward(&p.tdq1, &dk_alias, &p.tdv, &p.tdw, NULL, &p.tdout, &p.tq1,
                                      &p.tk2, &p.tv, &p.tw, b, &p.tout, &p.tlse, NULL, NULL, 0),
               ATTN_STATUS_ALIASING);
  /* Workspace too small; then a good run with the caller's workspace. */
  size_t ws = 0;
  CHECK_OK(attn_additive_workspace_size(&ws, 0, &p.tq1, &p.tk2, &p.tv));
  void *buf = aligned_alloc(64, (ws + 63) / 64 * 64);
  CHECK_STATUS(attn_additive_forward(&p.tout, &p.tlse, NULL, &p.tq1, &p.tk2, &p.tv, &p.tw, b, NULL,
                                     buf, ws - 1),
               ATTN_STATUS_WORKSPACE_TOO_SMALL);
  CHECK_OK(attn_additive_forward(&p.tout, &p.tlse, NULL, &p.tq1, &p.tk2, &p.tv, &p.tw, b, NULL, buf,
                                 ws));
  free(buf);
  /* Failing allocator: OUT_OF_MEMORY, outputs untouched, nothing leaked. */
  for (int which = 0; which < 4; which++) {
    float keep[64];
    t_buf *o = which % 2 ? &p.dq1 : &p.out;
    memcpy(keep, o->data, sizeof(float) * (size_t)(o->n < 64 ? o->n : 64));
    t_alloc_install(1);
    attn_status st =
        which == 0 ? attn_additive_forward(&p.tout, &p.tlse, NULL, &p.tq1, &p.tk2, &p.tv, &p.tw, b,
                                           NULL, NULL, 0)
        : which == 1
            ? attn_additive_backward(&p.tdq1, &p.tdk2, &p.tdv, &p.tdw, NULL, &p.tdout, &p.tq1,
                                     &p.tk2, &p.tv, &p.tw, b, &p.tout, &p.tlse, NULL, NULL, 0)
        : which == 2
            ? attn_additive_forward_ref(&p.tout, &p.tlse, NULL, &p.tq1, &p.tk2, &p.tv, &p.tw, b,
                                        NULL)
            : attn_additive_backward_ref(&p.tdq1, &p.tdk2, &p.tdv, &p.tdw, NULL, &p.tdout, &p.tq1,
                                         &p.tk2, &p.tv, &p.tw, b, &p.tout, &p.tlse, NULL);
    CHECK(st == ATTN_STATUS_OUT_OF_MEMORY, "case %d: %s", which, attn_status_str(st));
    CHECK(t_alloc_live() == 0, "case %d: leak", which);
    t_alloc_uninstall();
    CHECK(memcmp(keep, o->data, sizeof(float) * (size_t)(o->n < 64 ? o->n : 64)) == 0,
          "case %d: output written", which);
  }
  prob_free(&p);
}

int main(void) {
  quick = getenv("ATTN_TEST_QUICK") != NULL;
  test_tanh();
  test_tanh_avx512();
  test_tanh_sum_avx512();
  test_fast_vs_ref();
  test_finite_differences();
  test_nan_blocked();
  test_workspace_bound();
  test_bad_inputs();
  return t_finish("test_additive");
}
