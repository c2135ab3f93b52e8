/* Tests of the reference exact attention (attn_sdpa_forward_ref / attn_sdpa_backward_ref), the
 * oracle every fast kernel is compared with. The reference itself is checked against things that
 * do not share its code: numbers worked by hand, the mask pictures of MECHANISMS §7.2 and §7.4,
 * the ALiBi values of §7.5, algebraic identities (GQA = repeated heads, head mean = mean of heads,
 * varlen = padded batch with lengths, a per-row constant bias changes nothing) and, for the
 * backward, central finite differences of the forward under every option.
 *
 * ATTN_TEST_QUICK=1 (sanitizer builds) only thins the finite-difference sweep. */
#include "common.h"

static bool quick;

typedef struct dims {
  int64_t B, Hq, Hkv, Nq, Nk, Dk, Dv;
} dims;

/* Contiguous f32 operands of one problem plus the gradients' buffers. */
typedef struct fx {
  dims d;
  t_buf q, k, v, out, lse, dout, dq, dk, dv;
  attn_tensor tq, tk, tv, tout, tlse, tdout, tdq, tdk, tdv;
} fx;

static attn_tensor mk4(const t_buf *b, int64_t a0, int64_t a1, int64_t a2, int64_t a3) {
  const int64_t sh[4] = {a0, a1, a2, a3};
  return attn_tensor_make(b->data, b->dtype, 4, sh);
}

static attn_tensor mk3(const t_buf *b, int64_t a0, int64_t a1, int64_t a2) {
  const int64_t sh[3] = {a0, a1, a2};
  return attn_tensor_make(b->data, b->dtype, 3, sh);
}

/* Flat index of (a, b, c, d) in a contiguous (., n1, n2, n3) tensor. */
static int64_t ix4(int64_t n1, int64_t n2, int64_t n3, int64_t a, int64_t b, int64_t c, int64_t d) {
  return ((a * n1 + b) * n2 + c) * n3 + d;
}

static void fx_init(fx *f, dims d, t_rng *r) {
  f->d = d;
  f->q = t_buf_new(ATTN_DTYPE_F32, d.B * d.Hq * d.Nq * d.Dk);
  f->k = t_buf_new(ATTN_DTYPE_F32, d.B * d.Hkv * d.Nk * d.Dk);
  f->v = t_buf_new(ATTN_DTYPE_F32, d.B * d.Hkv * d.Nk * d.Dv);
  f->out = t_buf_new(ATTN_DTYPE_F32, d.B * d.Hq * d.Nq * d.Dv);
  f->lse = t_buf_new(ATTN_DTYPE_F32, d.B * d.Hq * d.Nq);
  f->dout = t_buf_new(ATTN_DTYPE_F32, d.B * d.Hq * d.Nq * d.Dv);
  f->dq = t_buf_new(ATTN_DTYPE_F32, d.B * d.Hq * d.Nq * d.Dk);
  f->dk = t_buf_new(ATTN_DTYPE_F32, d.B * d.Hkv * d.Nk * d.Dk);
  f->dv = t_buf_new(ATTN_DTYPE_F32, d.B * d.Hkv * d.Nk * d.Dv);
  t_buf_fill_normal(&f->q, r, 1.0f);
  t_buf_fill_normal(&f->k, r, 1.0f);
  t_buf_fill_normal(&f->v, r, 1.0f);
  t_buf_fill_normal(&f->dout, r, 1.0f);
  f->tq = mk4(&f->q, d.B, d.Hq, d.Nq, d.Dk);
  f->tk = mk4(&f->k, d.B, d.Hkv, d.Nk, d.Dk);
  f->tv = mk4(&f->v, d.B, d.Hkv, d.Nk, d.Dv);
  f->tout = mk4(&f->out, d.B, d.Hq, d.Nq, d.Dv);
  f->tlse = mk3(&f->lse, d.B, d.Hq, d.Nq);
  f->tdout = mk4(&f->dout, d.B, d.Hq, d.Nq, d.Dv);
  f->tdq = mk4(&f->dq, d.B, d.Hq, d.Nq, d.Dk);
  f->tdk = mk4(&f->dk, d.B, d.Hkv, d.Nk, d.Dk);
  f->tdv = mk4(&f->dv, d.B, d.Hkv, d.Nk, d.Dv);
}

static void fx_free(fx *f) {
  t_buf *all[] = {&f->q, &f->k, &f->v, &f->out, &f->lse, &f->dout, &f->dq, &f->dk, &f->dv};
  for (size_t n = 0; n < sizeof all / sizeof all[0]; n++) {
    CHECK(t_buf_guard_ok(all[n]), "guard bytes of buffer %zu overwritten", n);
    t_buf_free(all[n]);
  }
}

static attn_status fx_fwd(fx *f, const attn_sdpa_params *p, const attn_tensor *w) {
  return attn_sdpa_forward_ref(&f->tout, &f->tlse, w, &f->tq, &f->tk, &f->tv, p);
}

static attn_status fx_bwd(fx *f, const attn_sdpa_params *p) {
  return attn_sdpa_backward_ref(&f->tdq, &f->tdk, &f->tdv, &f->tdout, &f->tq, &f->tk, &f->tv,
                                &f->tout, &f->tlse, p);
}

static bool has_nan(const t_buf *b) {
  for (int64_t n = 0; n < b->n; n++)
    if (isnan(t_buf_get(b, n))) return true;
  return false;
}

static double max_abs_diff(const t_buf *a, const t_buf *b) {
  double m = 0.0;
  for (int64_t n = 0; n < a->n; n++) {
    const double x = t_buf_get(a, n), y = t_buf_get(b, n);
    if (x == y) continue; /* also equal infinities */
    const double e = fabs(x - y);
    if (!(e <= m)) m = e; /* NaN wins */
  }
  return m;
}

/* ---- hand-computed oracle -------------------------------------------------------------------- */

/* Nq = 1, two keys: q = (1, 0.5), k0 = (1, 0), k1 = (0, -2), v0 = (1, 2), v1 = (3, -4). */
static void test_hand_two_keys(void) {
  t_rng r = t_rng_make(1);
  fx f;
  fx_init(&f, (dims){1, 1, 1, 1, 2, 2, 2}, &r);
  const float qv[2] = {1, 0.5f}, kv[4] = {1, 0, 0, -2}, vv[4] = {1, 2, 3, -4};
  for (int n = 0; n < 2; n++) t_buf_set(&f.q, n, qv[n]);
  for (int n = 0; n < 4; n++) {
    t_buf_set(&f.k, n, kv[n]);
    t_buf_set(&f.v, n, vv[n]);
  }
  /* q.k0 = 1, q.k1 = -1. */
  const double scales[2] = {1.0, 1.0 / sqrt(2.0)};
  for (int c = 0; c < 2; c++) {
    attn_sdpa_params p = attn_sdpa_params_default();
    p.scale = c == 0 ? 1.0f : 0.0f; /* 0 = default 1/sqrt(Dk) */
    t_buf wb = t_buf_new(ATTN_DTYPE_F32, 2);
    attn_tensor w = mk4(&wb, 1, 1, 1, 2);
    CHECK_OK(fx_fwd(&f, &p, &w));
    const double s0 = scales[c], s1 = -scales[c];
    const double a0 = exp(s0) / (exp(s0) + exp(s1)), a1 = 1.0 - a0;
    const double want_out[2] = {a0 * 1 + a1 * 3, a0 * 2 + a1 * -4};
    const double want_lse = log(exp(s0) + exp(s1));
    for (int d = 0; d < 2; d++)
      CHECK(fabs(t_buf_get(&f.out, d) - want_out[d]) < 1e-6, "scale case %d out[%d] = %g, want %g",
            c, d, t_buf_get(&f.out, d), want_out[d]);
    CHECK(fabs(t_buf_get(&f.lse, 0) - want_lse) < 1e-6, "lse %g, want %g", t_buf_get(&f.lse, 0),
          want_lse);
    CHECK(fabs(t_buf_get(&wb, 0) - a0) < 1e-7 && fabs(t_buf_get(&wb, 1) - a1) < 1e-7,
          "weights %g %g, want %g %g", t_buf_get(&wb, 0), t_buf_get(&wb, 1), a0, a1);

    /* Backward by hand with dout = (1, 0): L = out_0 = a0 v00 + a1 v10.
     * dL/ds0 = a0 a1 (v00 - v10), dL/ds1 = -dL/ds0; dq = scale (ds0 k0 + ds1 k1),
     * dk0 = scale ds0 q, dk1 = scale ds1 q, dv0 = (a0, 0), dv1 = (a1, 0). */
    t_buf_set(&f.dout, 0, 1.0f);
    t_buf_set(&f.dout, 1, 0.0f);
    CHECK_OK(fx_bwd(&f, &p));
    const double ds0 = a0 * a1 * (1.0 - 3.0), sc = scales[c];
    const double want_dq[2] = {sc * ds0 * 1.0, sc * (-ds0) * -2.0};
    const double want_dk[4] = {sc * ds0 * 1.0, sc * ds0 * 0.5, -sc * ds0 * 1.0, -sc * ds0 * 0.5};
    const double want_dv[4] = {a0, 0, a1, 0};
    for (int n = 0; n < 2; n++)
      CHECK(fabs(t_buf_get(&f.dq, n) - want_dq[n]) < 1e-6, "dq[%d] = %g, want %g", n,
            t_buf_get(&f.dq, n), want_dq[n]);
    for (int n = 0; n < 4; n++) {
      CHECK(fabs(t_buf_get(&f.dk, n) - want_dk[n]) < 1e-6, "dk[%d] = %g, want %g", n,
            t_buf_get(&f.dk, n), want_dk[n]);
      CHECK(fabs(t_buf_get(&f.dv, n) - want_dv[n]) < 1e-6, "dv[%d] = %g, want %g", n,
            t_buf_get(&f.dv, n), want_dv[n]);
    }
    t_buf_free(&wb);
  }
  fx_free(&f);
}

/* ---- mask pictures --------------------------------------------------------------------------- */

/* Runs one head with per-head weights and compares (weight > 0) with `pattern` ('1' = allowed,
 * rows of Nk characters). Also checks the row sums and that fully blocked rows write out 0,
 * lse -inf, and zero gradients. */
static void check_pattern(const char *name, int64_t Nq, int64_t Nk, const attn_sdpa_params *p,
                          const char *pattern) {
  t_rng r = t_rng_make(2);
  fx f;
  fx_init(&f, (dims){1, 1, 1, Nq, Nk, 2, 3}, &r);
  /* Small logits so that no allowed weight underflows to 0. */
  for (int64_t n = 0; n < f.q.n; n++) t_buf_set(&f.q, n, 0.3f * t_buf_get(&f.q, n));
  t_buf wb = t_buf_new(ATTN_DTYPE_F32, Nq * Nk);
  t_buf_fill(&wb, NAN);
  attn_tensor w = mk4(&wb, 1, 1, Nq, Nk);
  CHECK_OK(fx_fwd(&f, p, &w));
  CHECK_OK(fx_bwd(&f, p));
  for (int64_t i = 0; i < Nq; i++) {
    double sum = 0.0;
    int any = 0;
    for (int64_t j = 0; j < Nk; j++) {
      const float a = t_buf_get(&wb, i * Nk + j);
      const int allowed = pattern[i * Nk + j] == '1';
      any |= allowed;
      CHECK((a > 0.0f) == allowed && (allowed || a == 0.0f),
            "%s: weight (%lld, %lld) = %g, want %s", name, (long long)i, (long long)j, a,
            allowed ? "> 0" : "0");
      sum += a;
    }
    CHECK(fabs(sum - (any ? 1.0 : 0.0)) < 1e-6, "%s: row %lld sums to %g", name, (long long)i, sum);
    if (!any) {
      const float l = t_buf_get(&f.lse, i);
      CHECK(isinf(l) && l < 0, "%s: blocked row %lld lse %g, want -inf", name, (long long)i, l);
      for (int64_t d = 0; d < 3; d++)
        CHECK(t_buf_get(&f.out, i * 3 + d) == 0.0f, "%s: blocked row %lld out not 0", name,
              (long long)i);
      for (int64_t d = 0; d < 2; d++)
        CHECK(t_buf_get(&f.dq, i * 2 + d) == 0.0f, "%s: blocked row %lld dq not 0", name,
              (long long)i);
    }
  }
  /* A key no row may see has zero gradients. */
  for (int64_t j = 0; j < Nk; j++) {
    int seen = 0;
    for (int64_t i = 0; i < Nq; i++) seen |= pattern[i * Nk + j] == '1';
    if (seen) continue;
    for (int64_t d = 0; d < 2; d++)
      CHECK(t_buf_get(&f.dk, j * 2 + d) == 0.0f, "%s: unseen key %lld dk not 0", name,
            (long long)j);
    for (int64_t d = 0; d < 3; d++)
      CHECK(t_buf_get(&f.dv, j * 3 + d) == 0.0f, "%s: unseen key %lld dv not 0", name,
            (long long)j);
  }
  CHECK(!has_nan(&f.out) && !has_nan(&f.dq) && !has_nan(&f.dk) && !has_nan(&f.dv),
        "%s: NaN in a result", name);
  t_buf_free(&wb);
  fx_free(&f);
}

static void test_causal_patterns(void) {
  attn_sdpa_params p = attn_sdpa_params_default();
  p.causal = 1;
  p.align = ATTN_MASK_ALIGN_TOP_LEFT;
  check_pattern("causal TL 2x5", 2, 5, &p,
                "10000"
                "11000");
  check_pattern("causal TL 5x2", 5, 2, &p,
                "10"
                "11"
                "11"
                "11"
                "11");
  p.align = ATTN_MASK_ALIGN_BOTTOM_RIGHT;
  check_pattern("causal BR 2x5", 2, 5, &p,
                "11110"
                "11111");
  check_pattern("causal BR 5x2", 5, 2, &p,
                "00"
                "00"
                "00"
                "10"
                "11");
  /* Nq == Nk: both alignments give the same triangle. */
  check_pattern("causal BR 3x3", 3, 3, &p,
                "100"
                "110"
                "111");
}

static void test_window_patterns(void) {
  attn_sdpa_params p = attn_sdpa_params_default();
  p.causal = 1;
  p.window_left = 2;
  check_pattern("causal window left 2, 5x5", 5, 5, &p,
                "10000"
                "11000"
                "11100"
                "01110"
                "00111");
  p = attn_sdpa_params_default();
  p.align = ATTN_MASK_ALIGN_BOTTOM_RIGHT;
  p.window_left = 1;
  p.window_right = 0;
  check_pattern("BR window (1, 0), 2x5", 2, 5, &p,
                "00110"
                "00011");
  /* Two-sided band without causal, top-left: |i - j| <= 1. */
  p = attn_sdpa_params_default();
  p.window_left = 1;
  p.window_right = 1;
  check_pattern("band (1, 1), 4x4", 4, 4, &p,
                "1100"
                "1110"
                "0111"
                "0011");
  /* causal + window right 2: the causal side wins (effective right = min(right, 0)). */
  p.causal = 1;
  p.window_right = 2;
  check_pattern("causal + (1, 2), 4x4", 4, 4, &p,
                "1000"
                "1100"
                "0110"
                "0011");
}

/* ---- fully blocked rows and NaN under masks -------------------------------------------------- */

static void test_fully_blocked(void) {
  t_rng r = t_rng_make(3);
  const dims d = {2, 2, 1, 3, 4, 2, 3};
  fx f;
  fx_init(&f, d, &r);
  /* Batch 0 has no keys at all; batch 1 has 2 real queries (row 2 is padding) and its row 1 is
   * blocked by a -inf bias on all keys. */
  const int32_t key_lens[2] = {0, 4}, query_lens[2] = {3, 2};
  t_buf bb = t_buf_new(ATTN_DTYPE_F32, d.B * d.Nq * d.Nk);
  t_buf_fill_normal(&bb, &r, 1.0f);
  for (int64_t j = 0; j < d.Nk; j++) t_buf_set(&bb, ix4(1, d.Nq, d.Nk, 1, 0, 1, j), -INFINITY);
  /* bias (B, 1, Nq, Nk): the head dim is broadcast. */
  attn_tensor bias = mk4(&bb, d.B, 1, d.Nq, d.Nk);
  bias.stride[1] = 0;
  attn_sdpa_params p = attn_sdpa_params_default();
  p.key_lens = key_lens;
  p.query_lens = query_lens;
  p.bias = &bias;
  t_buf wb = t_buf_new(ATTN_DTYPE_F32, d.B * d.Hq * d.Nq * d.Nk);
  t_buf_fill(&wb, NAN);
  attn_tensor w = mk4(&wb, d.B, d.Hq, d.Nq, d.Nk);
  t_buf_fill(&f.out, NAN);
  t_buf_fill(&f.dq, NAN);
  t_buf_fill(&f.dk, NAN);
  t_buf_fill(&f.dv, NAN);
  CHECK_OK(fx_fwd(&f, &p, &w));
  CHECK_OK(fx_bwd(&f, &p));
  for (int64_t b = 0; b < d.B; b++)
    for (int64_t h = 0; h < d.Hq; h++)
      for (int64_t i = 0; i < d.Nq; i++) {
        const bool blocked = b == 0 || i >= 1;
        const float l = t_buf_get(&f.lse, (b * d.Hq + h) * d.Nq + i);
        double wsum = 0.0;
        for (int64_t j = 0; j < d.Nk; j++)
          wsum += t_buf_get(&wb, ix4(d.Hq, d.Nq, d.Nk, b, h, i, j));
        if (blocked) {
          CHECK(isinf(l) && l < 0, "b%lld h%lld row %lld: lse %g, want -inf", (long long)b,
                (long long)h, (long long)i, l);
          CHECK(wsum == 0.0, "blocked row weights sum %g", wsum);
          for (int64_t x = 0; x < d.Dv; x++)
            CHECK(t_buf_get(&f.out, ix4(d.Hq, d.Nq, d.Dv, b, h, i, x)) == 0.0f, "blocked out != 0");
          for (int64_t x = 0; x < d.Dk; x++)
            CHECK(t_buf_get(&f.dq, ix4(d.Hq, d.Nq, d.Dk, b, h, i, x)) == 0.0f, "blocked dq != 0");
        } else {
          CHECK(isfinite(l), "open row lse %g", l);
          CHECK(fabs(wsum - 1.0) < 1e-6, "open row weights sum %g", wsum);
        }
      }
  /* Batch 0 sees no key: its dk/dv are exactly 0. */
  for (int64_t n = 0; n < d.Hkv * d.Nk * d.Dk; n++)
    CHECK(t_buf_get(&f.dk, n) == 0.0f, "batch 0 dk[%lld] != 0", (long long)n);
  for (int64_t n = 0; n < d.Hkv * d.Nk * d.Dv; n++)
    CHECK(t_buf_get(&f.dv, n) == 0.0f, "batch 0 dv[%lld] != 0", (long long)n);
  CHECK(!has_nan(&f.out) && !has_nan(&f.lse) && !has_nan(&wb), "NaN in forward results");
  CHECK(!has_nan(&f.dq) && !has_nan(&f.dk) && !has_nan(&f.dv), "NaN in gradients");
  t_buf_free(&wb);
  t_buf_free(&bb);
  fx_free(&f);
}

/* NaN in keys blocked by key length, by the window and by a -inf bias column must not reach any
 * result: everything equals a run where those keys hold ordinary numbers, and their gradients
 * are 0. Nq = 2, Nk = 6, window right 1 (top-left): row 0 may see keys 0..1, row 1 keys 0..2;
 * key_lens 5 blocks key 5; the bias blocks key 0 for every row. Open: row 0 {1}, row 1 {1, 2}. */
static void test_nan_in_blocked_keys(void) {
  t_rng r = t_rng_make(4);
  const dims d = {1, 2, 1, 2, 6, 3, 2};
  fx clean, dirty;
  fx_init(&clean, d, &r);
  fx_init(&dirty, d, &r);
  memcpy(dirty.q.data, clean.q.data, clean.q.bytes);
  memcpy(dirty.k.data, clean.k.data, clean.k.bytes);
  memcpy(dirty.v.data, clean.v.data, clean.v.bytes);
  memcpy(dirty.dout.data, clean.dout.data, clean.dout.bytes);
  const int64_t blocked_keys[4] = {0, 3, 4, 5};
  for (int n = 0; n < 4; n++) {
    const int64_t j = blocked_keys[n];
    for (int64_t x = 0; x < d.Dk; x++) t_buf_set(&dirty.k, j * d.Dk + x, NAN);
    for (int64_t x = 0; x < d.Dv; x++) t_buf_set(&dirty.v, j * d.Dv + x, NAN);
  }
  const int32_t key_lens[1] = {5};
  t_buf bb = t_buf_new(ATTN_DTYPE_F32, d.Nk);
  t_buf_fill_normal(&bb, &r, 1.0f);
  t_buf_set(&bb, 0, -INFINITY);
  /* bias (1, 1, 1, Nk): one row broadcast over batch, head and query. */
  attn_tensor bias = mk4(&bb, 1, 1, 1, d.Nk);
  bias.stride[0] = bias.stride[1] = bias.stride[2] = 0;
  attn_sdpa_params p = attn_sdpa_params_default();
  p.key_lens = key_lens;
  p.window_right = 1;
  p.bias = &bias;
  p.dropout_p = 0.25f;
  p.dropout_seed = 99;
  t_buf w_clean = t_buf_new(ATTN_DTYPE_F32, d.Hq * d.Nq * d.Nk);
  t_buf w_dirty = t_buf_new(ATTN_DTYPE_F32, d.Hq * d.Nq * d.Nk);
  attn_tensor wc = mk4(&w_clean, 1, d.Hq, d.Nq, d.Nk), wd = mk4(&w_dirty, 1, d.Hq, d.Nq, d.Nk);
  CHECK_OK(fx_fwd(&clean, &p, &wc));
  CHECK_OK(fx_fwd(&dirty, &p, &wd));
  CHECK_OK(fx_bwd(&clean, &p));
  CHECK_OK(fx_bwd(&dirty, &p));
  CHECK(max_abs_diff(&clean.out, &dirty.out) == 0.0, "out differs with NaN in blocked keys");
  CHECK(max_abs_diff(&clean.lse, &dirty.lse) == 0.0, "lse differs with NaN in blocked keys");
  CHECK(max_abs_diff(&w_clean, &w_dirty) == 0.0, "weights differ with NaN in blocked keys");
  CHECK(max_abs_diff(&clean.dq, &dirty.dq) == 0.0, "dq differs with NaN in blocked keys");
  CHECK(!has_nan(&dirty.out) && !has_nan(&dirty.dq), "NaN leaked from a blocked key");
  for (int n = 0; n < 4; n++) {
    const int64_t j = blocked_keys[n];
    for (int64_t x = 0; x < d.Dk; x++)
      CHECK(t_buf_get(&dirty.dk, j * d.Dk + x) == 0.0f, "blocked key %lld dk != 0", (long long)j);
    for (int64_t x = 0; x < d.Dv; x++)
      CHECK(t_buf_get(&dirty.dv, j * d.Dv + x) == 0.0f, "blocked key %lld dv != 0", (long long)j);
  }
  for (int64_t j = 1; j <= 2; j++)
    for (int64_t x = 0; x < d.Dk; x++)
      CHECK(t_buf_get(&dirty.dk, j * d.Dk + x) == t_buf_get(&clean.dk, j * d.Dk + x),
            "open key %lld dk differs", (long long)j);
  /* NaN in an open key does propagate (masking is the only thing promised not to make NaN). */
  t_buf_set(&dirty.v, 1 * d.Dv, NAN);
  CHECK_OK(fx_fwd(&dirty, &p, NULL));
  CHECK(isnan(t_buf_get(&dirty.out, 0)), "NaN in an open value did not propagate");
  t_buf_free(&w_clean);
  t_buf_free(&w_dirty);
  t_buf_free(&bb);
  fx_free(&clean);
  fx_free(&dirty);
}

/* ---- ALiBi ----------------------------------------------------------------------------------- */

static void test_alibi(void) {
  float s8[8], s12[12];
  CHECK_OK(attn_alibi_slopes(s8, 8));
  CHECK_OK(attn_alibi_slopes(s12, 12));
  for (int h = 0; h < 8; h++) {
    const double want = pow(2.0, -(h + 1));
    CHECK(fabs(s8[h] - want) <= 1e-7 * want, "H=8 slope %d = %.9g, want %.9g", h, s8[h], want);
    CHECK(fabs(s12[h] - want) <= 1e-7 * want, "H=12 slope %d = %.9g, want %.9g", h, s12[h], want);
  }
  for (int h = 8; h < 12; h++) {
    const double want = pow(2.0, -0.5 - (h - 8));
    CHECK(fabs(s12[h] - want) <= 1e-7 * want, "H=12 slope %d = %.9g, want %.9g", h, s12[h], want);
  }

  /* With q = 0 every dot product is 0, so the weights are softmax_j(-m_h |i + off - j|) exactly:
   * a closed form in the distances only. Bottom-right with Nq = 3, Nk = 5 (off = 2), no causal,
   * so distances on both sides count. */
  t_rng r = t_rng_make(5);
  const dims d = {1, 2, 2, 3, 5, 4, 3};
  fx f;
  fx_init(&f, d, &r);
  t_buf_fill(&f.q, 0.0f);
  const float slopes[2] = {0.5f, 0.125f};
  for (int a = 0; a < 2; a++) {
    attn_sdpa_params p = attn_sdpa_params_default();
    p.alibi_slopes = slopes;
    p.align = a ? ATTN_MASK_ALIGN_BOTTOM_RIGHT : ATTN_MASK_ALIGN_TOP_LEFT;
    const int64_t off = a ? d.Nk - d.Nq : 0;
    t_buf wb = t_buf_new(ATTN_DTYPE_F32, d.Hq * d.Nq * d.Nk);
    attn_tensor w = mk4(&wb, 1, d.Hq, d.Nq, d.Nk);
    CHECK_OK(fx_fwd(&f, &p, &w));
    for (int64_t h = 0; h < d.Hq; h++)
      for (int64_t i = 0; i < d.Nq; i++) {
        double e[5], sum = 0.0;
        for (int64_t j = 0; j < d.Nk; j++) {
          e[j] = exp(-slopes[h] * fabs((double)(i + off - j)));
          sum += e[j];
        }
        for (int64_t j = 0; j < d.Nk; j++) {
          const double got = t_buf_get(&wb, ix4(d.Hq, d.Nq, d.Nk, 0, h, i, j));
          CHECK(fabs(got - e[j] / sum) < 1e-6, "alibi align %d h%lld (%lld,%lld): %g, want %g", a,
                (long long)h, (long long)i, (long long)j, got, e[j] / sum);
        }
        const double want_lse = log(sum);
        CHECK(fabs(t_buf_get(&f.lse, h * d.Nq + i) - want_lse) < 1e-6, "alibi lse %g, want %g",
              t_buf_get(&f.lse, h * d.Nq + i), want_lse);
      }
    t_buf_free(&wb);
  }
  fx_free(&f);
}

/* ---- softcap --------------------------------------------------------------------------------- */

/* One query, three keys with raw logits 10, -3, 30 (scale 1), cap 5, bias (2, 0, 0). The cap
 * applies to the scaled product before the bias: s0 = 5 tanh(2) + 2, not 5 tanh(12/5). */
static void test_softcap(void) {
  t_rng r = t_rng_make(6);
  const dims d = {1, 1, 1, 1, 3, 1, 2};
  fx f;
  fx_init(&f, d, &r);
  t_buf_set(&f.q, 0, 1.0f);
  const float raw[3] = {10, -3, 30};
  for (int j = 0; j < 3; j++) t_buf_set(&f.k, j, raw[j]);
  t_buf bb = t_buf_new(ATTN_DTYPE_F32, 3);
  t_buf_set(&bb, 0, 2.0f);
  attn_tensor bias = mk4(&bb, 1, 1, 1, 3);
  attn_sdpa_params p = attn_sdpa_params_default();
  p.scale = 1.0f;
  p.softcap = 5.0f;
  p.bias = &bias;
  t_buf wb = t_buf_new(ATTN_DTYPE_F32, 3);
  attn_tensor w = mk4(&wb, 1, 1, 1, 3);
  CHECK_OK(fx_fwd(&f, &p, &w));
  double s[3], m = -INFINITY, sum = 0.0;
  for (int j = 0; j < 3; j++) {
    s[j] = 5.0 * tanh(raw[j] / 5.0) + (j == 0 ? 2.0 : 0.0);
    if (s[j] > m) m = s[j];
  }
  for (int j = 0; j < 3; j++) sum += exp(s[j] - m);
  for (int j = 0; j < 3; j++) {
    const double want = exp(s[j] - m) / sum;
    CHECK(fabs(t_buf_get(&wb, j) - want) < 1e-6, "softcap weight %d = %g, want %g", j,
          t_buf_get(&wb, j), want);
  }
  CHECK(fabs(t_buf_get(&f.lse, 0) - (m + log(sum))) < 1e-5, "softcap lse %g, want %g",
        t_buf_get(&f.lse, 0), m + log(sum));
  for (int64_t x = 0; x < d.Dv; x++) {
    double want = 0.0;
    for (int j = 0; j < 3; j++) want += exp(s[j] - m) / sum * t_buf_get(&f.v, j * d.Dv + x);
    CHECK(fabs(t_buf_get(&f.out, x) - want) < 1e-6, "softcap out %g, want %g", t_buf_get(&f.out, x),
          want);
  }
  t_buf_free(&wb);
  t_buf_free(&bb);
  fx_free(&f);
}

/* ---- bias broadcast -------------------------------------------------------------------------- */

/* A broadcast bias gives the same results as the same values materialised at full size, and a
 * bias constant along j (innermost dim broadcast, stride 0) shifts lse and leaves out alone. */
static void test_bias_broadcast(void) {
  t_rng r = t_rng_make(7);
  const dims d = {2, 4, 2, 3, 5, 4, 3};
  fx f;
  fx_init(&f, d, &r);
  t_buf small = t_buf_new(ATTN_DTYPE_BF16, d.Nq * d.Nk);
  t_buf_fill_normal(&small, &r, 1.0f);
  t_buf full = t_buf_new(ATTN_DTYPE_F32, d.B * d.Hq * d.Nq * d.Nk);
  for (int64_t b = 0; b < d.B; b++)
    for (int64_t h = 0; h < d.Hq; h++)
      for (int64_t n = 0; n < d.Nq * d.Nk; n++)
        t_buf_set(&full, (b * d.Hq + h) * d.Nq * d.Nk + n, t_buf_get(&small, n));
  attn_tensor tb_small = mk4(&small, 1, 1, d.Nq, d.Nk);
  tb_small.stride[0] = tb_small.stride[1] = 0;
  attn_tensor tb_full = mk4(&full, d.B, d.Hq, d.Nq, d.Nk);
  attn_sdpa_params p = attn_sdpa_params_default();
  p.causal = 1;
  p.bias = &tb_full;
  CHECK_OK(fx_fwd(&f, &p, NULL));
  t_buf out_full = t_buf_new(ATTN_DTYPE_F32, f.out.n);
  memcpy(out_full.data, f.out.data, f.out.bytes);
  p.bias = &tb_small;
  CHECK_OK(fx_fwd(&f, &p, NULL));
  CHECK(max_abs_diff(&out_full, &f.out) == 0.0, "broadcast bias differs from materialised");

  /* Row-constant bias c_bhi = 0.5 * (b + h + i), innermost dim broadcast. */
  t_buf rowc = t_buf_new(ATTN_DTYPE_F32, d.B * d.Hq * d.Nq);
  for (int64_t b = 0; b < d.B; b++)
    for (int64_t h = 0; h < d.Hq; h++)
      for (int64_t i = 0; i < d.Nq; i++)
        t_buf_set(&rowc, (b * d.Hq + h) * d.Nq + i, 0.5f * (float)(b + h + i));
  attn_tensor tb_row = mk4(&rowc, d.B, d.Hq, d.Nq, 1);
  tb_row.stride[3] = 0;
  p.bias = NULL;
  CHECK_OK(fx_fwd(&f, &p, NULL));
  t_buf out0 = t_buf_new(ATTN_DTYPE_F32, f.out.n), lse0 = t_buf_new(ATTN_DTYPE_F32, f.lse.n);
  memcpy(out0.data, f.out.data, f.out.bytes);
  memcpy(lse0.data, f.lse.data, f.lse.bytes);
  p.bias = &tb_row;
  CHECK_OK(fx_fwd(&f, &p, NULL));
  CHECK(max_abs_diff(&out0, &f.out) < 1e-6, "row-constant bias changed out by %g",
        max_abs_diff(&out0, &f.out));
  for (int64_t n = 0; n < f.lse.n; n++) {
    const double want = t_buf_get(&lse0, n) + t_buf_get(&rowc, n);
    CHECK(fabs(t_buf_get(&f.lse, n) - want) < 1e-5, "row-constant bias lse %g, want %g",
          t_buf_get(&f.lse, n), want);
  }
  t_buf_free(&out0);
  t_buf_free(&lse0);
  t_buf_free(&rowc);
  t_buf_free(&out_full);
  t_buf_free(&small);
  t_buf_free(&full);
  fx_free(&f);
}

/* ---- weights: head mean ---------------------------------------------------------------------- */

static void test_head_mean(void) {
  t_rng r = t_rng_make(8);
  const dims d = {2, 6, 3, 4, 6, 5, 3};
  fx f;
  fx_init(&f, d, &r);
  const int32_t key_lens[2] = {6, 3};
  attn_sdpa_params p = attn_sdpa_params_default();
  p.causal = 1;
  p.align = ATTN_MASK_ALIGN_BOTTOM_RIGHT;
  p.key_lens = key_lens;
  t_buf per = t_buf_new(ATTN_DTYPE_F32, d.B * d.Hq * d.Nq * d.Nk);
  t_buf mean = t_buf_new(ATTN_DTYPE_F32, d.B * d.Nq * d.Nk);
  attn_tensor tper = mk4(&per, d.B, d.Hq, d.Nq, d.Nk), tmean = mk3(&mean, d.B, d.Nq, d.Nk);
  CHECK_OK(fx_fwd(&f, &p, &tper));
  p.weights_mode = ATTN_WEIGHTS_HEAD_MEAN;
  t_buf_fill(&mean, NAN);
  CHECK_OK(fx_fwd(&f, &p, &tmean));
  for (int64_t b = 0; b < d.B; b++)
    for (int64_t i = 0; i < d.Nq; i++)
      for (int64_t j = 0; j < d.Nk; j++) {
        double want = 0.0;
        for (int64_t h = 0; h < d.Hq; h++)
          want += t_buf_get(&per, ix4(d.Hq, d.Nq, d.Nk, b, h, i, j));
        want /= (double)d.Hq;
        const float got = t_buf_get(&mean, (b * d.Nq + i) * d.Nk + j);
        CHECK(fabs(got - want) < 1e-6, "head mean (%lld,%lld,%lld) = %g, want %g", (long long)b,
              (long long)i, (long long)j, got, want);
      }
  CHECK(t_buf_guard_ok(&per) && t_buf_guard_ok(&mean), "weights guard bytes");
  t_buf_free(&per);
  t_buf_free(&mean);
  fx_free(&f);
}

/* ---- dropout --------------------------------------------------------------------------------- */

static void test_dropout_forward(void) {
  /* The mask itself keeps about 1 - p. */
  int64_t kept = 0, total = 0;
  for (int64_t b = 0; b < 4; b++)
    for (int64_t h = 0; h < 4; h++)
      for (int64_t i = 0; i < 32; i++)
        for (int64_t j = 0; j < 32; j++, total++) kept += attn_dropout_keep(77, 0.5f, b, h, i, j);
  const double frac = (double)kept / (double)total;
  CHECK(fabs(frac - 0.5) < 0.02, "dropout p=0.5 kept fraction %g", frac);

  /* out_i = sum_j a_ij keep_ij / (1 - p) v_j with a the (pre-dropout) weights of the same call,
   * and lse is the pre-dropout value. */
  t_rng r = t_rng_make(9);
  const dims d = {2, 4, 2, 5, 7, 3, 4};
  fx f;
  fx_init(&f, d, &r);
  attn_sdpa_params p = attn_sdpa_params_default();
  p.causal = 1;
  CHECK_OK(fx_fwd(&f, &p, NULL));
  t_buf lse0 = t_buf_new(ATTN_DTYPE_F32, f.lse.n);
  memcpy(lse0.data, f.lse.data, f.lse.bytes);
  p.dropout_p = 0.5f;
  p.dropout_seed = 0x123456789abcdefull;
  t_buf wb = t_buf_new(ATTN_DTYPE_F32, d.B * d.Hq * d.Nq * d.Nk);
  attn_tensor w = mk4(&wb, d.B, d.Hq, d.Nq, d.Nk);
  CHECK_OK(fx_fwd(&f, &p, &w));
  CHECK(max_abs_diff(&lse0, &f.lse) == 0.0, "lse changed with dropout");
  for (int64_t b = 0; b < d.B; b++)
    for (int64_t h = 0; h < d.Hq; h++)
      for (int64_t i = 0; i < d.Nq; i++)
        for (int64_t x = 0; x < d.Dv; x++) {
          double want = 0.0;
          for (int64_t j = 0; j < d.Nk; j++) {
            const double a = t_buf_get(&wb, ix4(d.Hq, d.Nq, d.Nk, b, h, i, j));
            const int keep = attn_dropout_keep(p.dropout_seed, p.dropout_p, b, h, i, j);
            want += a * keep * 2.0 * t_buf_get(&f.v, ix4(d.Hkv, d.Nk, d.Dv, b, h / 2, j, x));
          }
          const float got = t_buf_get(&f.out, ix4(d.Hq, d.Nq, d.Dv, b, h, i, x));
          CHECK(fabs(got - want) < 1e-5, "dropout out (%lld,%lld,%lld,%lld) = %g, want %g",
                (long long)b, (long long)h, (long long)i, (long long)x, got, want);
        }
  t_buf_free(&lse0);
  t_buf_free(&wb);
  fx_free(&f);
}

/* ---- GQA = MHA with repeated kv heads -------------------------------------------------------- */

static void test_gqa_equals_repeat(void) {
  t_rng r = t_rng_make(10);
  const dims dg = {2, 6, 2, 4, 5, 3, 4}, dm = {2, 6, 6, 4, 5, 3, 4};
  fx g, m;
  fx_init(&g, dg, &r);
  fx_init(&m, dm, &r);
  memcpy(m.q.data, g.q.data, g.q.bytes);
  memcpy(m.dout.data, g.dout.data, g.dout.bytes);
  const int64_t G = dg.Hq / dg.Hkv;
  for (int64_t b = 0; b < dg.B; b++)
    for (int64_t h = 0; h < dm.Hkv; h++)
      for (int64_t j = 0; j < dg.Nk; j++) {
        for (int64_t x = 0; x < dg.Dk; x++)
          t_buf_set(&m.k, ix4(dm.Hkv, dm.Nk, dm.Dk, b, h, j, x),
                    t_buf_get(&g.k, ix4(dg.Hkv, dg.Nk, dg.Dk, b, h / G, j, x)));
        for (int64_t x = 0; x < dg.Dv; x++)
          t_buf_set(&m.v, ix4(dm.Hkv, dm.Nk, dm.Dv, b, h, j, x),
                    t_buf_get(&g.v, ix4(dg.Hkv, dg.Nk, dg.Dv, b, h / G, j, x)));
      }
  const float slopes[6] = {0.5f, 0.25f, 0.125f, 0.0625f, 0.7f, 0.3f};
  attn_sdpa_params p = attn_sdpa_params_default();
  p.causal = 1;
  p.align = ATTN_MASK_ALIGN_BOTTOM_RIGHT;
  p.alibi_slopes = slopes;
  p.dropout_p = 0.2f;
  p.dropout_seed = 5;
  CHECK_OK(fx_fwd(&g, &p, NULL));
  CHECK_OK(fx_fwd(&m, &p, NULL));
  CHECK_OK(fx_bwd(&g, &p));
  CHECK_OK(fx_bwd(&m, &p));
  CHECK(max_abs_diff(&g.out, &m.out) == 0.0, "GQA out differs from repeated MHA");
  CHECK(max_abs_diff(&g.dq, &m.dq) == 0.0, "GQA dq differs from repeated MHA");
  for (int64_t b = 0; b < dg.B; b++)
    for (int64_t kv = 0; kv < dg.Hkv; kv++)
      for (int64_t j = 0; j < dg.Nk; j++) {
        for (int64_t x = 0; x < dg.Dk; x++) {
          double want = 0.0;
          for (int64_t h = kv * G; h < (kv + 1) * G; h++)
            want += t_buf_get(&m.dk, ix4(dm.Hkv, dm.Nk, dm.Dk, b, h, j, x));
          const float got = t_buf_get(&g.dk, ix4(dg.Hkv, dg.Nk, dg.Dk, b, kv, j, x));
          CHECK(fabs(got - want) < 1e-5 * (1 + fabs(want)), "GQA dk %g, want %g", got, want);
        }
        for (int64_t x = 0; x < dg.Dv; x++) {
          double want = 0.0;
          for (int64_t h = kv * G; h < (kv + 1) * G; h++)
            want += t_buf_get(&m.dv, ix4(dm.Hkv, dm.Nk, dm.Dv, b, h, j, x));
          const float got = t_buf_get(&g.dv, ix4(dg.Hkv, dg.Nk, dg.Dv, b, kv, j, x));
          CHECK(fabs(got - want) < 1e-5 * (1 + fabs(want)), "GQA dv %g, want %g", got, want);
        }
      }
  fx_free(&g);
  fx_free(&m);
}

/* ---- varlen = padded batch with lengths ------------------------------------------------------ */

/* Three sequences packed end to end give the same results as a padded batch with key_lens and
 * query_lens: the same offsets (off_b = Lk - Lq bottom-right), the same dropout counters (b is the
 * sequence index, i/j positions inside it). Cross-sequence weights are 0. */
static void test_varlen_equals_padded(void) {
  t_rng r = t_rng_make(11);
  const int64_t S = 3, Hq = 4, Hkv = 2, Dk = 3, Dv = 2;
  const int32_t lq[3] = {3, 1, 4}, lk[3] = {5, 2, 0};
  const int32_t cu_q[4] = {0, 3, 4, 8}, cu_k[4] = {0, 5, 7, 7};
  const int64_t Tq = 8, Tk = 7, Pq = 4, Pk = 5;
  fx pk, pd;
  fx_init(&pk, (dims){1, Hq, Hkv, Tq, Tk, Dk, Dv}, &r);
  fx_init(&pd, (dims){S, Hq, Hkv, Pq, Pk, Dk, Dv}, &r);
  /* Copy each sequence of the packed operands into its padded slot. */
  for (int64_t s = 0; s < S; s++)
    for (int64_t h = 0; h < Hq; h++) {
      for (int64_t i = 0; i < lq[s]; i++) {
        for (int64_t x = 0; x < Dk; x++)
          t_buf_set(&pd.q, ix4(Hq, Pq, Dk, s, h, i, x),
                    t_buf_get(&pk.q, ix4(Hq, Tq, Dk, 0, h, cu_q[s] + i, x)));
        for (int64_t x = 0; x < Dv; x++)
          t_buf_set(&pd.dout, ix4(Hq, Pq, Dv, s, h, i, x),
                    t_buf_get(&pk.dout, ix4(Hq, Tq, Dv, 0, h, cu_q[s] + i, x)));
      }
      if (h >= Hkv) continue;
      for (int64_t j = 0; j < lk[s]; j++) {
        for (int64_t x = 0; x < Dk; x++)
          t_buf_set(&pd.k, ix4(Hkv, Pk, Dk, s, h, j, x),
                    t_buf_get(&pk.k, ix4(Hkv, Tk, Dk, 0, h, cu_k[s] + j, x)));
        for (int64_t x = 0; x < Dv; x++)
          t_buf_set(&pd.v, ix4(Hkv, Pk, Dv, s, h, j, x),
                    t_buf_get(&pk.v, ix4(Hkv, Tk, Dv, 0, h, cu_k[s] + j, x)));
      }
    }
  const float slopes[4] = {0.5f, 0.25f, 0.125f, 0.0625f};
  attn_sdpa_params pp = attn_sdpa_params_default();
  pp.causal = 1;
  pp.align = ATTN_MASK_ALIGN_BOTTOM_RIGHT;
  pp.window_left = 2;
  pp.alibi_slopes = slopes;
  pp.softcap = 3.0f;
  pp.dropout_p = 0.3f;
  pp.dropout_seed = 2024;
  attn_sdpa_params pv = pp;
  pv.cu_seqlens_q = cu_q;
  pv.cu_seqlens_k = cu_k;
  pv.n_seqs = S;
  pp.key_lens = lk;
  pp.query_lens = lq;

  t_buf wk = t_buf_new(ATTN_DTYPE_F32, Hq * Tq * Tk),
        wd = t_buf_new(ATTN_DTYPE_F32, S * Hq * Pq * Pk);
  t_buf_fill(&wk, NAN);
  attn_tensor twk = mk4(&wk, 1, Hq, Tq, Tk), twd = mk4(&wd, S, Hq, Pq, Pk);
  CHECK_OK(fx_fwd(&pk, &pv, &twk));
  CHECK_OK(fx_fwd(&pd, &pp, &twd));
  CHECK_OK(fx_bwd(&pk, &pv));
  CHECK_OK(fx_bwd(&pd, &pp));
  for (int64_t s = 0; s < S; s++)
    for (int64_t h = 0; h < Hq; h++) {
      for (int64_t i = 0; i < lq[s]; i++) {
        const float a = t_buf_get(&pk.lse, h * Tq + cu_q[s] + i);
        const float b = t_buf_get(&pd.lse, (s * Hq + h) * Pq + i);
        CHECK(a == b || (isinf(a) && isinf(b)), "varlen lse s%lld h%lld i%lld: %g vs %g",
              (long long)s, (long long)h, (long long)i, a, b);
        for (int64_t x = 0; x < Dv; x++)
          CHECK(t_buf_get(&pk.out, ix4(Hq, Tq, Dv, 0, h, cu_q[s] + i, x)) ==
                    t_buf_get(&pd.out, ix4(Hq, Pq, Dv, s, h, i, x)),
                "varlen out differs at s%lld h%lld i%lld", (long long)s, (long long)h,
                (long long)i);
        for (int64_t x = 0; x < Dk; x++)
          CHECK(t_buf_get(&pk.dq, ix4(Hq, Tq, Dk, 0, h, cu_q[s] + i, x)) ==
                    t_buf_get(&pd.dq, ix4(Hq, Pq, Dk, s, h, i, x)),
                "varlen dq differs at s%lld h%lld i%lld", (long long)s, (long long)h, (long long)i);
      }
      /* Weights: equal inside the sequence's block, 0 towards other sequences. */
      for (int64_t i = 0; i < lq[s]; i++)
        for (int64_t j = 0; j < Tk; j++) {
          const float a = t_buf_get(&wk, ix4(Hq, Tq, Tk, 0, h, cu_q[s] + i, j));
          const bool inside = j >= cu_k[s] && j < cu_k[s + 1];
          const float want = inside ? t_buf_get(&wd, ix4(Hq, Pq, Pk, s, h, i, j - cu_k[s])) : 0.0f;
          CHECK(a == want, "varlen weight s%lld h%lld (%lld,%lld) = %g, want %g", (long long)s,
                (long long)h, (long long)i, (long long)j, a, want);
        }
      if (h >= Hkv) continue;
      for (int64_t j = 0; j < lk[s]; j++) {
        for (int64_t x = 0; x < Dk; x++)
          CHECK(t_buf_get(&pk.dk, ix4(Hkv, Tk, Dk, 0, h, cu_k[s] + j, x)) ==
                    t_buf_get(&pd.dk, ix4(Hkv, Pk, Dk, s, h, j, x)),
                "varlen dk differs at s%lld kv%lld j%lld", (long long)s, (long long)h,
                (long long)j);
        for (int64_t x = 0; x < Dv; x++)
          CHECK(t_buf_get(&pk.dv, ix4(Hkv, Tk, Dv, 0, h, cu_k[s] + j, x)) ==
                    t_buf_get(&pd.dv, ix4(Hkv, Pk, Dv, s, h, j, x)),
                "varlen dv differs at s%lld kv%lld j%lld", (long long)s, (long long)h,
                (long long)j);
      }
    }
  /* Sequence 2 has no keys: its rows are fully blocked. */
  for (int64_t h = 0; h < Hq; h++)
    for (int64_t i = cu_q[2]; i < cu_q[3]; i++) {
      const float l = t_buf_get(&pk.lse, h * Tq + i);
      CHECK(isinf(l) && l < 0, "keyless sequence lse %g", l);
    }
  CHECK(!has_nan(&pk.out) && !has_nan(&pk.dq) && !has_nan(&pk.dk) && !has_nan(&pk.dv) &&
            !has_nan(&wk),
        "NaN in varlen results");
  t_buf_free(&wk);
  t_buf_free(&wd);
  fx_free(&pk);
  fx_free(&pd);
}

/* ---- dtypes and strided views ---------------------------------------------------------------- */

/* f16/bf16 operands are read exactly, so the result equals the f32 run on the rounded values; a
 * bf16 output is the rounded f32 output. q, k and v are views into one packed (B, N, 3, H, D)
 * buffer, and out has a padded row stride, so the strides are exercised too. */
static void test_dtypes_and_views(void) {
  t_rng r = t_rng_make(12);
  const int64_t B = 2, H = 2, N = 5, D = 4;
  t_buf qkv = t_buf_new(ATTN_DTYPE_F16, B * N * 3 * H * D);
  t_buf_fill_normal(&qkv, &r, 1.0f);
  attn_tensor views[3];
  for (int c = 0; c < 3; c++) {
    attn_tensor t;
    memset(&t, 0, sizeof t);
    t.data = (uint16_t *)qkv.data + c * H * D;
    t.dtype = ATTN_DTYPE_F16;
    t.ndim = 4;
    const int64_t shape[4] = {B, H, N, D}, stride[4] = {N * 3 * H * D, D, 3 * H * D, 1};
    memcpy(t.shape, shape, sizeof shape);
    memcpy(t.stride, stride, sizeof stride);
    views[c] = t;
  }
  const int64_t row = D + 3; /* padded out rows */
  t_buf outb = t_buf_new(ATTN_DTYPE_BF16, B * H * N * row);
  t_buf_fill(&outb, 7.0f);
  attn_tensor tout;
  memset(&tout, 0, sizeof tout);
  tout.data = outb.data;
  tout.dtype = ATTN_DTYPE_BF16;
  tout.ndim = 4;
  const int64_t oshape[4] = {B, H, N, D}, ostride[4] = {H * N * row, N * row, row, 1};
  memcpy(tout.shape, oshape, sizeof oshape);
  memcpy(tout.stride, ostride, sizeof ostride);

  fx f;
  fx_init(&f, (dims){B, H, H, N, N, D, D}, &r);
  for (int64_t b = 0; b < B; b++)
    for (int64_t h = 0; h < H; h++)
      for (int64_t n = 0; n < N; n++)
        for (int64_t x = 0; x < D; x++) {
          const int64_t src = ((b * N + n) * 3 * H + h) * D + x, dst = ix4(H, N, D, b, h, n, x);
          t_buf_set(&f.q, dst, t_buf_get(&qkv, src));
          t_buf_set(&f.k, dst, t_buf_get(&qkv, src + H * D));
          t_buf_set(&f.v, dst, t_buf_get(&qkv, src + 2 * H * D));
        }
  attn_sdpa_params p = attn_sdpa_params_default();
  p.causal = 1;
  CHECK_OK(fx_fwd(&f, &p, NULL));
  CHECK_OK(attn_sdpa_forward_ref(&tout, NULL, NULL, &views[0], &views[1], &views[2], &p));
  for (int64_t b = 0; b < B; b++)
    for (int64_t h = 0; h < H; h++)
      for (int64_t n = 0; n < N; n++)
        for (int64_t x = 0; x < row; x++) {
          const float got = t_buf_get(&outb, ((b * H + h) * N + n) * row + x);
          if (x >= D) {
            CHECK(got == 7.0f, "padding of out overwritten");
            continue;
          }
          const float want =
              attn_bf16_to_f32(attn_f32_to_bf16(t_buf_get(&f.out, ix4(H, N, D, b, h, n, x))));
          CHECK(got == want, "f16 view run: out %g, want %g", got, want);
        }
  CHECK(t_buf_guard_ok(&outb), "out guard bytes");
  t_buf_free(&qkv);
  t_buf_free(&outb);
  fx_free(&f);
}

/* ---- allocation failure ---------------------------------------------------------------------- */

/* Failing each allocation in turn gives OUT_OF_MEMORY with outputs untouched and nothing leaked;
 * once no allocation fails the call succeeds. */
static void test_out_of_memory(void) {
  t_rng r = t_rng_make(13);
  fx f;
  fx_init(&f, (dims){1, 2, 1, 3, 4, 2, 2}, &r);
  attn_sdpa_params p = attn_sdpa_params_default();
  for (int pass = 0; pass < 2; pass++) {
    bool ok = false;
    for (int64_t k = 1; k <= 16 && !ok; k++) {
      t_buf_fill(&f.out, 42.0f);
      t_buf_fill(&f.dq, 42.0f);
      t_alloc_install(k);
      const attn_status st = pass == 0 ? fx_fwd(&f, &p, NULL) : fx_bwd(&f, &p);
      const int64_t live = t_alloc_live(), count = t_alloc_count();
      t_alloc_uninstall();
      CHECK(live == 0, "pass %d fail-at %lld: %lld blocks leaked", pass, (long long)k,
            (long long)live);
      if (st == ATTN_OK) {
        ok = true;
        CHECK(count < k, "pass %d: succeeded although allocation %lld failed", pass, (long long)k);
        continue;
      }
      CHECK(st == ATTN_STATUS_OUT_OF_MEMORY, "pass %d fail-at %lld: %s", pass, (long long)k,
            attn_status_str(st));
      const t_buf *o = pass == 0 ? &f.out : &f.dq;
      bool untouched = true;
      for (int64_t n = 0; n < o->n; n++) untouched &= t_buf_get(o, n) == 42.0f;
      CHECK(untouched, "pass %d fail-at %lld: output written despite OUT_OF_MEMORY", pass,
            (long long)k);
    }
    CHECK(ok, "pass %d never succeeded", pass);
    if (pass == 0) CHECK_OK(fx_fwd(&f, &p, NULL)); /* the backward below needs out and lse */
  }
  fx_free(&f);
}

/* ---- backward against central finite differences --------------------------------------------- */

/* L = sum(out * R) with R = dout, so dL/dX is what the backward returns for X in {q, k, v}. The
 * forward is run at x +- eps (in f32; the realised step is used as the denominator) and the
 * difference quotient compared with the analytic gradient: |g - fd| <= 2e-3 (1 + |g|). */
static double fd_loss(const fx *f) {
  double L = 0.0;
  for (int64_t n = 0; n < f->out.n; n++)
    L += (double)t_buf_get(&f->out, n) * t_buf_get(&f->dout, n);
  return L;
}

static void fd_check(const char *name, dims d, const attn_sdpa_params *p, uint64_t seed) {
  t_rng r = t_rng_make(seed);
  fx f;
  fx_init(&f, d, &r);
  CHECK_OK(fx_fwd(&f, p, NULL));
  CHECK_OK(fx_bwd(&f, p));
  t_buf *xs[3] = {&f.q, &f.k, &f.v};
  const t_buf *gs[3] = {&f.dq, &f.dk, &f.dv};
  const char *names[3] = {"dq", "dk", "dv"};
  const double eps = 1e-3;
  const int64_t stride = quick ? 3 : 1;
  for (int t = 0; t < 3; t++) {
    int64_t bad = 0, nonzero = 0, worst_at = -1;
    double worst = 0.0, worst_g = 0.0, worst_fd = 0.0;
    for (int64_t n = (int64_t)(seed % (uint64_t)stride); n < xs[t]->n; n += stride) {
      const float x0 = t_buf_get(xs[t], n);
      const float xp = (float)(x0 + eps), xm = (float)(x0 - eps);
      t_buf_set(xs[t], n, xp);
      CHECK_OK(fx_fwd(&f, p, NULL));
      const double Lp = fd_loss(&f);
      t_buf_set(xs[t], n, xm);
      CHECK_OK(fx_fwd(&f, p, NULL));
      const double Lm = fd_loss(&f);
      t_buf_set(xs[t], n, x0);
      const double fd = (Lp - Lm) / ((double)xp - (double)xm);
      const double g = t_buf_get(gs[t], n);
      const double err = fabs(g - fd) / (1.0 + fabs(g));
      if (g != 0.0) nonzero++;
      if (!(err <= 2e-3)) bad++;
      if (!(err <= worst)) {
        worst = err;
        worst_at = n;
        worst_g = g;
        worst_fd = fd;
      }
    }
    CHECK(bad == 0, "%s: %s has %lld elements off; worst at %lld: analytic %.7g, fd %.7g", name,
          names[t], (long long)bad, (long long)worst_at, worst_g, worst_fd);
    CHECK(nonzero > 0, "%s: %s is all zero (test cannot fail)", name, names[t]);
  }
  fx_free(&f);
}

static void test_backward_fd(void) {
  const dims d = {2, 4, 2, 5, 7, 3, 4};
  const dims tall = {2, 4, 2, 7, 5, 3, 4}; /* Nq > Nk: bottom-right blocks the first rows */
  const dims mqa = {2, 4, 1, 5, 7, 3, 4};
  attn_sdpa_params p = attn_sdpa_params_default();
  fd_check("plain", d, &p, 100);
  fd_check("MQA", mqa, &p, 101);

  p.causal = 1;
  fd_check("causal top-left", d, &p, 102);
  p.align = ATTN_MASK_ALIGN_BOTTOM_RIGHT;
  fd_check("causal bottom-right 5x7", d, &p, 103);
  fd_check("causal bottom-right 7x5", tall, &p, 104);

  p = attn_sdpa_params_default();
  p.align = ATTN_MASK_ALIGN_BOTTOM_RIGHT;
  p.window_left = 2;
  p.window_right = 1;
  fd_check("window (2, 1) bottom-right", d, &p, 105);

  const int32_t key_lens[2] = {7, 4}, query_lens[2] = {5, 3};
  p = attn_sdpa_params_default();
  p.key_lens = key_lens;
  p.query_lens = query_lens;
  p.causal = 1;
  p.align = ATTN_MASK_ALIGN_BOTTOM_RIGHT;
  fd_check("key/query lengths + causal BR", d, &p, 106);

  t_rng r = t_rng_make(107);
  t_buf bb = t_buf_new(ATTN_DTYPE_F32, d.B * d.Hq * d.Nq * d.Nk);
  t_buf_fill_normal(&bb, &r, 1.0f);
  for (int64_t n = 0; n < bb.n; n += 5) t_buf_set(&bb, n, -INFINITY);
  const attn_tensor bias = mk4(&bb, d.B, d.Hq, d.Nq, d.Nk);
  p = attn_sdpa_params_default();
  p.bias = &bias;
  fd_check("bias with -inf entries", d, &p, 107);

  const float slopes[4] = {0.5f, 0.25f, 0.125f, 0.0625f};
  p = attn_sdpa_params_default();
  p.alibi_slopes = slopes;
  p.align = ATTN_MASK_ALIGN_BOTTOM_RIGHT;
  fd_check("alibi", d, &p, 108);

  p = attn_sdpa_params_default();
  p.scale = 1.5f; /* logits of several units so the cap bends them */
  p.softcap = 1.5f;
  fd_check("softcap", d, &p, 109);

  p = attn_sdpa_params_default();
  p.dropout_p = 0.5f;
  p.dropout_seed = 31337;
  fd_check("dropout 0.5", d, &p, 110);

  /* Everything at once, with a bias broadcast over batch and head. */
  t_buf bs = t_buf_new(ATTN_DTYPE_F32, d.Nq * d.Nk);
  t_buf_fill_normal(&bs, &r, 0.5f);
  attn_tensor bias_b = mk4(&bs, 1, 1, d.Nq, d.Nk);
  bias_b.stride[0] = bias_b.stride[1] = 0;
  p = attn_sdpa_params_default();
  p.causal = 1;
  p.align = ATTN_MASK_ALIGN_BOTTOM_RIGHT;
  p.window_left = 3;
  p.key_lens = key_lens;
  p.query_lens = query_lens;
  p.bias = &bias_b;
  p.alibi_slopes = slopes;
  p.softcap = 2.0f;
  p.dropout_p = 0.3f;
  p.dropout_seed = 4;
  fd_check("all options", d, &p, 111);

  /* Packed sequences (lengths 2+3 queries, 4+3 keys) with causal BR and dropout. */
  const int32_t cu_q[3] = {0, 2, 5}, cu_k[3] = {0, 4, 7};
  p = attn_sdpa_params_default();
  p.cu_seqlens_q = cu_q;
  p.cu_seqlens_k = cu_k;
  p.n_seqs = 2;
  p.causal = 1;
  p.align = ATTN_MASK_ALIGN_BOTTOM_RIGHT;
  p.alibi_slopes = slopes;
  p.dropout_p = 0.25f;
  p.dropout_seed = 8;
  fd_check("varlen", (dims){1, 4, 2, 5, 7, 3, 4}, &p, 112);
  t_buf_free(&bb);
  t_buf_free(&bs);
}

int main(void) {
  const char *qe = getenv("ATTN_TEST_QUICK");
  quick = qe && *qe && strcmp(qe, "0") != 0;
  test_hand_two_keys();
  test_causal_patterns();
  test_window_patterns();
  test_fully_blocked();
  test_nan_in_blocked_keys();
  test_alibi();
  test_softcap();
  test_bias_broadcast();
  test_head_mean();
  test_dropout_forward();
  test_gqa_equals_repeat();
  test_varlen_equals_padded();
  test_dtypes_and_views();
  test_out_of_memory();
  test_backward_fd();
  return t_finish("test_sdpa_ref");
}
