/* attn_gemm against attn_gemm_ref: awkward shapes, both layouts, all transpose combinations,
 * alpha/beta including 0, padded leading dimensions, every ISA this CPU has, 1/2/3 threads (bitwise
 * equal), guard bytes, bad arguments and a failing allocator.
 *
 * Tolerance. Each element is a sum of K products plus beta * c0. Let
 *     bound = |alpha| * sum_k |a_ik| |b_kj| + |beta| |c0_ij|
 * (computed with attn_gemm_ref on |A|, |B|, |C0|). The f32 kernels sum over K in blocks of kc
 * terms and add each block, times alpha, into C. A term passes through at most K + 2 + n_blocks
 * roundings (its product, the additions inside its block, the alpha product, one addition into C
 * per block; beta c0 has its product and the additions into C), each of relative size
 * <= u = 2^-24, and n_blocks <= 6 for every K here, so
 *     |c - ref| <= max(1e-5, (K + 8) u) * bound + 1e-30
 * to first order, where 1e-5 is the nominal figure and (K + 8) u (> 1e-5 once K > 160) the worst
 * case; ref is the double-accumulated result rounded once. */
#include "common.h"

static bool quick; /* ATTN_TEST_QUICK=1: smaller sizes (sanitizers) */

/* ---- matrices in either layout ---- */

/* A stored matrix: op(X) is r x c; in memory it has `outer` lines of `inner` contiguous elements
 * at stride ld. */
typedef struct mat {
  bool trans, col_major;
  int64_t r, c, outer, inner, ld;
  t_buf buf;
} mat;

static mat mat_new(attn_layout layout, bool trans, int64_t r, int64_t c, int64_t ld_pad) {
  mat m;
  m.trans = trans;
  m.col_major = layout == ATTN_COL_MAJOR;
  m.r = r;
  m.c = c;
  /* Stored shape: (r x c), or (c x r) when transposed; a column-major matrix has its columns as
   * the contiguous lines. */
  int64_t sr = trans ? c : r, sc = trans ? r : c;
  m.outer = m.col_major ? sc : sr;
  m.inner = m.col_major ? sr : sc;
  m.ld = (m.inner > 0 ? m.inner : 1) + ld_pad;
  int64_t extent = (m.outer == 0 || m.inner == 0) ? 0 : (m.outer - 1) * m.ld + m.inner;
  m.buf = t_buf_new(ATTN_DTYPE_F32, extent);
  return m;
}

static bool is_padding(const mat *m, int64_t idx) {
  return idx % m->ld >= m->inner;
}

static float *mat_data(const mat *m) {
  return (float *)m->buf.data;
}

static void mat_free(mat *m) {
  t_buf_free(&m->buf);
}

/* ---- one case ---- */

typedef struct gemm_case {
  attn_layout layout;
  bool ta, tb;
  int64_t M, N, K;
  float alpha, beta;
  int64_t pad_a, pad_b, pad_c;
} gemm_case;

static const int thread_counts[3] = {1, 2, 3};

static void describe(const gemm_case *gc, char *out, size_t n) {
  snprintf(out, n, "%s ta=%d tb=%d M=%lld N=%lld K=%lld alpha=%g beta=%g pads=%lld/%lld/%lld",
           gc->layout == ATTN_ROW_MAJOR ? "row" : "col", (int)gc->ta, (int)gc->tb, (long long)gc->M,
           (long long)gc->N, (long long)gc->K, (double)gc->alpha, (double)gc->beta,
           (long long)gc->pad_a, (long long)gc->pad_b, (long long)gc->pad_c);
}

static void run_case(const gemm_case *gc, t_rng *rng) {
  char what[256];
  describe(gc, what, sizeof what);
  attn_trans ta = gc->ta ? ATTN_TRANS : ATTN_NO_TRANS, tb = gc->tb ? ATTN_TRANS : ATTN_NO_TRANS;
  mat A = mat_new(gc->layout, gc->ta, gc->M, gc->K, gc->pad_a);
  mat B = mat_new(gc->layout, gc->tb, gc->K, gc->N, gc->pad_b);
  mat C = mat_new(gc->layout, false, gc->M, gc->N, gc->pad_c);
  t_buf_fill_normal(&A.buf, rng, 1.0f);
  t_buf_fill_normal(&B.buf, rng, 1.0f);
  t_buf_fill_normal(&C.buf, rng, 1.0f);
  /* beta == 0 must not read C: NaN there has to be overwritten. Padding keeps its values. */
  if (gc->beta == 0.0f)
    for (int64_t i = 0; i < C.buf.n; i++)
      if (!is_padding(&C, i)) mat_data(&C)[i] = NAN;
  int64_t nc = C.buf.n;
  size_t c_bytes = (size_t)nc * sizeof(float);
  float *c0 = malloc(c_bytes + 4), *ref = malloc(c_bytes + 4), *bound = malloc(c_bytes + 4);
  float *first = malloc(c_bytes + 4);
  memcpy(c0, C.buf.data, c_bytes);

  /* Reference and the error bound (see the top of the file). */
  memcpy(ref, c0, c_bytes);
  CHECK_OK(attn_gemm_ref(gc->layout, ta, tb, gc->M, gc->N, gc->K, gc->alpha, mat_data(&A), A.ld,
                         mat_data(&B), B.ld, gc->beta, ref, C.ld));
  {
    mat absA = mat_new(gc->layout, gc->ta, gc->M, gc->K, gc->pad_a);
    mat absB = mat_new(gc->layout, gc->tb, gc->K, gc->N, gc->pad_b);
    for (int64_t i = 0; i < A.buf.n; i++) mat_data(&absA)[i] = fabsf(mat_data(&A)[i]);
    for (int64_t i = 0; i < B.buf.n; i++) mat_data(&absB)[i] = fabsf(mat_data(&B)[i]);
    for (int64_t i = 0; i < nc; i++) bound[i] = gc->beta == 0.0f ? 0.0f : fabsf(c0[i]);
    CHECK_OK(attn_gemm_ref(gc->layout, ta, tb, gc->M, gc->N, gc->K, fabsf(gc->alpha),
                           mat_data(&absA), absA.ld, mat_data(&absB), absB.ld, fabsf(gc->beta),
                           bound, C.ld));
    mat_free(&absA);
    mat_free(&absB);
  }
  double rel = (double)(gc->K + 8) * 0x1p-24;
  if (rel < 1e-5) rel = 1e-5;

  for (int isa = ATTN_ISA_SCALAR; isa <= ATTN_ISA_AVX512; isa++) {
    if (!attn_cpu_supports((attn_isa)isa)) continue;
    CHECK_OK(attn_set_isa((attn_isa)isa));
    for (int t = 0; t < 3; t++) {
      CHECK_OK(attn_set_num_threads(thread_counts[t]));
      memcpy(C.buf.data, c0, c_bytes);
      attn_status st = attn_gemm(gc->layout, ta, tb, gc->M, gc->N, gc->K, gc->alpha, mat_data(&A),
                                 A.ld, mat_data(&B), B.ld, gc->beta, mat_data(&C), C.ld);
      CHECK(st == ATTN_OK, "%s isa=%s: %s (%s)", what, attn_isa_name((attn_isa)isa),
            attn_status_str(st), attn_last_error());
      CHECK(attn_last_error()[0] == '\0', "%s: last error not cleared", what);
      CHECK(t_buf_guard_ok(&C.buf), "%s isa=%s threads=%d: guard bytes after C overwritten", what,
            attn_isa_name((attn_isa)isa), thread_counts[t]);
      int64_t bad = 0, first_bad = -1;
      for (int64_t i = 0; i < nc; i++) {
        float got = mat_data(&C)[i];
        bool ok;
        if (is_padding(&C, i)) {
          ok = memcmp(&got, &c0[i], sizeof got) == 0;
        } else {
          double err = fabs((double)got - (double)ref[i]);
          ok = isfinite(got) && err <= rel * (double)bound[i] + 1e-30;
        }
        if (!ok && bad++ == 0) first_bad = i;
      }
      CHECK(bad == 0,
            "%s isa=%s threads=%d: %lld elements wrong, first at %lld: got %.9g want %.9g "
            "(bound %.3g)",
            what, attn_isa_name((attn_isa)isa), thread_counts[t], (long long)bad,
            (long long)first_bad, bad ? (double)mat_data(&C)[first_bad] : 0.0,
            bad ? (double)ref[first_bad] : 0.0, bad ? (double)bound[first_bad] : 0.0);
      if (t == 0)
        memcpy(first, C.buf.data, c_bytes);
      else
        CHECK(memcmp(first, C.buf.data, c_bytes) == 0,
              "%s isa=%s: %d threads differ bitwise from 1 thread", what,
              attn_isa_name((attn_isa)isa), thread_counts[t]);
    }
  }
  CHECK(t_buf_guard_ok(&A.buf) && t_buf_guard_ok(&B.buf), "%s: guards of A/B changed", what);
  free(c0);
  free(ref);
  free(bound);
  free(first);
  mat_free(&A);
  mat_free(&B);
  mat_free(&C);
}

static const float alphas[] = {1.0f, -0.5f, 0.0f, 2.5f};
static const float betas[] = {0.0f, 1.0f, -1.5f, 0.25f};
static const int64_t sizes[] = {0, 1, 2, 3, 7, 15, 16, 17, 31, 33, 63, 65, 100, 127, 129, 257};
#define N_SIZES ((int)(sizeof sizes / sizeof sizes[0]))

static int64_t pick_size(t_rng *r) {
  /* Quick mode keeps sizes <= 129. */
  return sizes[t_int(r, 0, quick ? N_SIZES - 2 : N_SIZES - 1)];
}

static gemm_case random_case(t_rng *r) {
  gemm_case gc;
  gc.layout = t_int(r, 0, 1) ? ATTN_COL_MAJOR : ATTN_ROW_MAJOR;
  gc.ta = t_int(r, 0, 1);
  gc.tb = t_int(r, 0, 1);
  gc.M = pick_size(r);
  gc.N = pick_size(r);
  gc.K = pick_size(r);
  gc.alpha = alphas[t_int(r, 0, 3)];
  gc.beta = betas[t_int(r, 0, 3)];
  gc.pad_a = t_int(r, 0, 2) ? 0 : t_int(r, 1, 9);
  gc.pad_b = t_int(r, 0, 2) ? 0 : t_int(r, 1, 9);
  gc.pad_c = t_int(r, 0, 2) ? 0 : t_int(r, 1, 9);
  return gc;
}

static void test_shapes(void) {
  t_rng rng = t_rng_make(1);
  /* Every layout x transpose combination on a few fixed shapes, padded and not. */
  const int64_t fixed[][3] = {{1, 1, 1}, {17, 33, 15}, {65, 31, 129}, {100, 127, 63}};
  for (int layout = 0; layout < 2; layout++)
    for (int tr = 0; tr < 4; tr++)
      for (int s = 0; s < 4; s++) {
        gemm_case gc = {layout ? ATTN_COL_MAJOR : ATTN_ROW_MAJOR,
                        tr & 1,
                        (tr >> 1) & 1,
                        fixed[s][0],
                        fixed[s][1],
                        fixed[s][2],
                        1.0f,
                        0.5f,
                        s,
                        2 * s,
                        3 * s};
        if (s == 2) gc.alpha = -2.0f, gc.beta = 0.0f;
        run_case(&gc, &rng);
      }
  /* Every M x N pair of the size list (K, layout and the rest random). */
  int step = quick ? 3 : 1;
  for (int i = 0; i < N_SIZES; i += step)
    for (int j = 0; j < N_SIZES; j += step) {
      gemm_case gc = random_case(&rng);
      gc.M = sizes[i];
      gc.N = sizes[j];
      if (quick && gc.M * gc.N * gc.K > 100 * 100 * 100) gc.K = 17;
      run_case(&gc, &rng);
    }
  /* Random combinations. */
  int n_random = quick ? 30 : 200;
  for (int i = 0; i < n_random; i++) {
    gemm_case gc = random_case(&rng);
    run_case(&gc, &rng);
  }
  /* Several K blocks and column tiles (K > KC, N > NC of every kernel), tiles split over threads.
   */
  gemm_case big = {ATTN_ROW_MAJOR,
                   false,
                   false,
                   quick ? 40 : 97,
                   quick ? 1100 : 1300,
                   quick ? 520 : 900,
                   0.75f,
                   -1.0f,
                   3,
                   0,
                   5};
  run_case(&big, &rng);
  gemm_case big_t = {
      ATTN_COL_MAJOR, true, true, quick ? 300 : 700, 40, quick ? 400 : 800, 1.0f, 0.0f, 0, 1, 0};
  run_case(&big_t, &rng);
}

/* alpha == 0 and K == 0 read neither A nor B: C = beta C. */
static void test_no_read(void) {
  float A[6], B[6], C[4] = {1, 2, 3, 4};
  for (int i = 0; i < 6; i++) A[i] = B[i] = NAN;
  CHECK_OK(attn_gemm(ATTN_ROW_MAJOR, ATTN_NO_TRANS, ATTN_NO_TRANS, 2, 2, 3, 0.0f, A, 3, B, 2, 2.0f,
                     C, 2));
  CHECK(C[0] == 2 && C[1] == 4 && C[2] == 6 && C[3] == 8, "alpha = 0: C = %g %g %g %g",
        (double)C[0], (double)C[1], (double)C[2], (double)C[3]);
  CHECK_OK(attn_gemm(ATTN_COL_MAJOR, ATTN_TRANS, ATTN_NO_TRANS, 2, 2, 0, 1.0f, NULL, 1, NULL, 1,
                     0.5f, C, 2));
  CHECK(C[0] == 1 && C[3] == 4, "K = 0: C = %g .. %g", (double)C[0], (double)C[3]);
  C[1] = NAN;
  CHECK_OK(attn_gemm_ref(ATTN_ROW_MAJOR, ATTN_NO_TRANS, ATTN_NO_TRANS, 2, 2, 0, 1.0f, NULL, 1, NULL,
                         1, 0.0f, C, 2));
  CHECK(C[0] == 0 && C[1] == 0 && C[3] == 0, "K = 0, beta = 0 (ref): C[1] = %g", (double)C[1]);
  C[2] = NAN;
  CHECK_OK(attn_gemm(ATTN_ROW_MAJOR, ATTN_NO_TRANS, ATTN_NO_TRANS, 2, 2, 3, 0.0f, A, 3, B, 2, 0.0f,
                     C, 2));
  CHECK(C[2] == 0, "alpha = 0, beta = 0: C[2] = %g", (double)C[2]);
  /* Empty C: NULL pointers are fine. */
  CHECK_OK(attn_gemm(ATTN_ROW_MAJOR, ATTN_NO_TRANS, ATTN_NO_TRANS, 0, 5, 5, 1.0f, NULL, 5, NULL, 5,
                     0.0f, NULL, 5));
  CHECK_OK(attn_gemm(ATTN_COL_MAJOR, ATTN_NO_TRANS, ATTN_NO_TRANS, 5, 0, 5, 1.0f, NULL, 5, NULL, 5,
                     0.0f, NULL, 5));
}

/* ---- bad arguments ---- */

typedef attn_status (*gemm_fn)(attn_layout, attn_trans, attn_trans, int64_t, int64_t, int64_t,
                               float, const float *, int64_t, const float *, int64_t, float,
                               float *, int64_t);

typedef struct bad_call {
  const char *what;
  attn_layout layout;
  attn_trans ta, tb;
  int64_t M, N, K;
  int a_null, b_null, c_null; /* 1: pass NULL */
  int64_t lda, ldb, ldc;
  int c_at; /* 0: C is its own buffer; 1: C points into A; 2: into B */
  attn_status want;
  const char *needle; /* must appear in attn_last_error() */
} bad_call;

static void test_bad_args(void) {
  enum { CAP = 64 * 64 };
  static float A[CAP], B[CAP], C[CAP], saved[CAP];
  t_rng rng = t_rng_make(7);
  for (int i = 0; i < CAP; i++) {
    A[i] = t_normal(&rng);
    B[i] = t_normal(&rng);
    C[i] = t_normal(&rng);
  }
  const int64_t big = INT64_MAX / 2;
  const bad_call calls[] = {
      {"A NULL", ATTN_ROW_MAJOR, ATTN_NO_TRANS, ATTN_NO_TRANS, 4, 5, 6, 1, 0, 0, 6, 5, 5, 0,
       ATTN_STATUS_NULL_POINTER, "A is NULL"},
      {"B NULL", ATTN_COL_MAJOR, ATTN_NO_TRANS, ATTN_NO_TRANS, 4, 5, 6, 0, 1, 0, 4, 6, 4, 0,
       ATTN_STATUS_NULL_POINTER, "B is NULL"},
      {"C NULL", ATTN_ROW_MAJOR, ATTN_TRANS, ATTN_TRANS, 4, 5, 6, 0, 0, 1, 4, 6, 5, 0,
       ATTN_STATUS_NULL_POINTER, "C is NULL"},
      {"C NULL, K 0", ATTN_ROW_MAJOR, ATTN_NO_TRANS, ATTN_NO_TRANS, 4, 5, 0, 1, 1, 1, 1, 5, 5, 0,
       ATTN_STATUS_NULL_POINTER, "C is NULL"},
      {"M < 0", ATTN_ROW_MAJOR, ATTN_NO_TRANS, ATTN_NO_TRANS, -1, 5, 6, 0, 0, 0, 6, 5, 5, 0,
       ATTN_STATUS_INVALID_ARGUMENT, "M = -1"},
      {"N < 0", ATTN_ROW_MAJOR, ATTN_NO_TRANS, ATTN_NO_TRANS, 4, -3, 6, 0, 0, 0, 6, 5, 5, 0,
       ATTN_STATUS_INVALID_ARGUMENT, "N = -3"},
      {"K < 0", ATTN_COL_MAJOR, ATTN_NO_TRANS, ATTN_NO_TRANS, 4, 5, -2, 0, 0, 0, 4, 6, 4, 0,
       ATTN_STATUS_INVALID_ARGUMENT, "K = -2"},
      {"layout", (attn_layout)7, ATTN_NO_TRANS, ATTN_NO_TRANS, 4, 5, 6, 0, 0, 0, 6, 5, 5, 0,
       ATTN_STATUS_INVALID_ARGUMENT, "layout"},
      {"trans_a", ATTN_ROW_MAJOR, (attn_trans)2, ATTN_NO_TRANS, 4, 5, 6, 0, 0, 0, 6, 5, 5, 0,
       ATTN_STATUS_INVALID_ARGUMENT, "trans_a"},
      {"trans_b", ATTN_ROW_MAJOR, ATTN_NO_TRANS, (attn_trans)-1, 4, 5, 6, 0, 0, 0, 6, 5, 5, 0,
       ATTN_STATUS_INVALID_ARGUMENT, "trans_b"},
      {"lda row", ATTN_ROW_MAJOR, ATTN_NO_TRANS, ATTN_NO_TRANS, 4, 5, 6, 0, 0, 0, 5, 5, 5, 0,
       ATTN_STATUS_INVALID_ARGUMENT, "lda"},
      {"lda row trans", ATTN_ROW_MAJOR, ATTN_TRANS, ATTN_NO_TRANS, 4, 5, 6, 0, 0, 0, 3, 5, 5, 0,
       ATTN_STATUS_INVALID_ARGUMENT, "lda"},
      {"lda col", ATTN_COL_MAJOR, ATTN_NO_TRANS, ATTN_NO_TRANS, 4, 5, 6, 0, 0, 0, 3, 6, 4, 0,
       ATTN_STATUS_INVALID_ARGUMENT, "lda"},
      {"lda col trans", ATTN_COL_MAJOR, ATTN_TRANS, ATTN_NO_TRANS, 4, 5, 6, 0, 0, 0, 5, 6, 4, 0,
       ATTN_STATUS_INVALID_ARGUMENT, "lda"},
      {"ldb row", ATTN_ROW_MAJOR, ATTN_NO_TRANS, ATTN_NO_TRANS, 4, 5, 6, 0, 0, 0, 6, 4, 5, 0,
       ATTN_STATUS_INVALID_ARGUMENT, "ldb"},
      {"ldb col trans", ATTN_COL_MAJOR, ATTN_NO_TRANS, ATTN_TRANS, 4, 5, 6, 0, 0, 0, 4, 4, 4, 0,
       ATTN_STATUS_INVALID_ARGUMENT, "ldb"},
      {"ldc row", ATTN_ROW_MAJOR, ATTN_NO_TRANS, ATTN_NO_TRANS, 4, 5, 6, 0, 0, 0, 6, 5, 4, 0,
       ATTN_STATUS_INVALID_ARGUMENT, "ldc"},
      {"ldc col", ATTN_COL_MAJOR, ATTN_NO_TRANS, ATTN_NO_TRANS, 4, 5, 6, 0, 0, 0, 4, 6, 3, 0,
       ATTN_STATUS_INVALID_ARGUMENT, "ldc"},
      {"lda 0, A empty", ATTN_ROW_MAJOR, ATTN_NO_TRANS, ATTN_NO_TRANS, 4, 5, 0, 0, 0, 0, 0, 5, 5, 0,
       ATTN_STATUS_INVALID_ARGUMENT, "lda"},
      {"overflow", ATTN_ROW_MAJOR, ATTN_NO_TRANS, ATTN_NO_TRANS, big, big, big, 0, 0, 0, big, big,
       big, 0, ATTN_STATUS_OVERFLOW, "A ("},
      {"overflow C", ATTN_ROW_MAJOR, ATTN_NO_TRANS, ATTN_NO_TRANS, 3, 2, 1, 0, 0, 0, 1, 2, big, 0,
       ATTN_STATUS_OVERFLOW, "C ("},
      {"C overlaps A", ATTN_ROW_MAJOR, ATTN_NO_TRANS, ATTN_NO_TRANS, 4, 5, 6, 0, 0, 0, 6, 5, 5, 1,
       ATTN_STATUS_ALIASING, "C overlaps A"},
      {"C overlaps B", ATTN_COL_MAJOR, ATTN_TRANS, ATTN_TRANS, 4, 5, 6, 0, 0, 0, 6, 5, 4, 2,
       ATTN_STATUS_ALIASING, "C overlaps B"},
  };
  const gemm_fn fns[2] = {attn_gemm, attn_gemm_ref};
  const char *names[2] = {"attn_gemm", "attn_gemm_ref"};
  for (int f = 0; f < 2; f++)
    for (size_t i = 0; i < sizeof calls / sizeof calls[0]; i++) {
      const bad_call *bc = &calls[i];
      float *c = bc->c_at == 1 ? A + 7 : (bc->c_at == 2 ? B + 3 : C);
      memcpy(saved, C, sizeof C);
      float sa = A[7], sb = B[3];
      attn_status st =
          fns[f](bc->layout, bc->ta, bc->tb, bc->M, bc->N, bc->K, 1.0f, bc->a_null ? NULL : A,
                 bc->lda, bc->b_null ? NULL : B, bc->ldb, 0.5f, bc->c_null ? NULL : c, bc->ldc);
      const char *msg = attn_last_error();
      CHECK(st == bc->want, "%s %s: got %s, want %s (%s)", names[f], bc->what, attn_status_str(st),
            attn_status_str(bc->want), msg);
      CHECK(msg[0] != '\0' && strstr(msg, bc->needle) && strstr(msg, names[f]),
            "%s %s: message \"%s\" should name \"%s\"", names[f], bc->what, msg, bc->needle);
      CHECK(memcmp(saved, C, sizeof C) == 0 && A[7] == sa && B[3] == sb, "%s %s: C was written",
            names[f], bc->what);
    }
  /* A later success clears the message. */
  CHECK_OK(attn_gemm(ATTN_ROW_MAJOR, ATTN_NO_TRANS, ATTN_NO_TRANS, 2, 2, 2, 1.0f, A, 2, B, 2, 0.0f,
                     C, 2));
  CHECK(attn_last_error()[0] == '\0', "last error not cleared: %s", attn_last_error());
}

/* ---- failing allocator ---- */

static void test_alloc_failures(void) {
  const int64_t M = 150, N = 140, K = 130;
  t_rng rng = t_rng_make(3);
  t_buf A = t_buf_new(ATTN_DTYPE_F32, M * K), B = t_buf_new(ATTN_DTYPE_F32, K * N);
  t_buf C = t_buf_new(ATTN_DTYPE_F32, M * N);
  t_buf_fill_normal(&A, &rng, 1.0f);
  t_buf_fill_normal(&B, &rng, 1.0f);
  t_buf_fill_normal(&C, &rng, 1.0f);
  float *saved = malloc((size_t)(M * N) * sizeof(float));
  memcpy(saved, C.data, (size_t)(M * N) * sizeof(float));
  for (int isa = ATTN_ISA_SCALAR; isa <= ATTN_ISA_AVX512; isa++) {
    if (!attn_cpu_supports((attn_isa)isa)) continue;
    CHECK_OK(attn_set_isa((attn_isa)isa));
    for (int threads = 1; threads <= 3; threads += 2) {
      CHECK_OK(attn_set_num_threads(threads));
      /* Count the allocations of a successful call, then fail each in turn. */
      t_alloc_install(0);
      attn_status st =
          attn_gemm(ATTN_ROW_MAJOR, ATTN_TRANS, ATTN_NO_TRANS, M, N, K, 1.0f, (const float *)A.data,
                    M, (const float *)B.data, N, 0.5f, (float *)C.data, N);
      int64_t count = t_alloc_count();
      CHECK(st == ATTN_OK && t_alloc_live() == 0, "counting run: %s, %lld live",
            attn_status_str(st), (long long)t_alloc_live());
      CHECK(count >= 1, "attn_gemm made no allocation to fail");
      for (int64_t k = 1; k <= count; k++) {
        memcpy(C.data, saved, (size_t)(M * N) * sizeof(float));
        t_alloc_install(k);
        st =
            attn_gemm(ATTN_ROW_MAJOR, ATTN_TRANS, ATTN_NO_TRANS, M, N, K, 1.0f,
                      (const float *)A.data, M, (const float *)B.data, N, 0.5f, (float *)C.data, N);
        CHECK(st == ATTN_STATUS_OUT_OF_MEMORY,
              "isa=%s threads=%d: failing allocation %lld of %lld"
              " gave %s",
              attn_isa_name((attn_isa)isa), threads, (long long)k, (long long)count,
              attn_status_str(st));
        CHECK(attn_last_error()[0] != '\0', "OOM without a message");
        CHECK(t_alloc_live() == 0, "isa=%s: %lld blocks leaked after failing allocation %lld",
              attn_isa_name((attn_isa)isa), (long long)t_alloc_live(), (long long)k);
        CHECK(memcmp(C.data, saved, (size_t)(M * N) * sizeof(float)) == 0,
              "isa=%s: C written although allocation %lld failed", attn_isa_name((attn_isa)isa),
              (long long)k);
      }
      t_alloc_uninstall();
    }
  }
  free(saved);
  t_buf_free(&A);
  t_buf_free(&B);
  t_buf_free(&C);
}

/* A product too small to split (M N K < 64^3) that is still several column tiles wide, with a
 * 3-thread pool: the driver keeps one packing slot and must not let the pool run two tiles at once
 * (it aborted on "slot != NULL" before). Every ISA, against the reference. */
static void test_small_wide(void) {
  const int64_t M = 1, N = 2100, K = 1;
  float A[1] = {1.5f}, B[2100], C[2100], R[2100];
  for (int64_t j = 0; j < N; j++) B[j] = (float)(j % 97) - 48.0f;
  const int saved_threads = attn_get_num_threads();
  CHECK_OK(attn_set_num_threads(3));
  for (int isa = ATTN_ISA_SCALAR; isa <= ATTN_ISA_AVX512; isa++) {
    if (!attn_cpu_supports((attn_isa)isa)) continue;
    attn_set_isa((attn_isa)isa);
    CHECK_OK(attn_gemm_ref(ATTN_ROW_MAJOR, ATTN_NO_TRANS, ATTN_NO_TRANS, M, N, K, 1.0f, A, K, B, N,
                           0.0f, R, N));
    for (int rep = 0; rep < 200; rep++) {
      CHECK_OK(attn_gemm(ATTN_ROW_MAJOR, ATTN_NO_TRANS, ATTN_NO_TRANS, M, N, K, 1.0f, A, K, B, N,
                         0.0f, C, N));
      if (memcmp(C, R, sizeof C) != 0) {
        CHECK(false, "isa=%s: M=1 N=2100 K=1 differs from the reference", attn_isa_name((attn_isa)isa));
        break;
      }
    }
  }
  CHECK_OK(attn_set_num_threads(saved_threads));
}

int main(void) {
  const char *q = getenv("ATTN_TEST_QUICK");
  quick = q && *q && strcmp(q, "0") != 0;
  for (int isa = ATTN_ISA_SCALAR; isa <= ATTN_ISA_AVX512; isa++)
    if (!attn_cpu_supports((attn_isa)isa))
      printf("test_gemm: %s not supported on this CPU, skipped\n", attn_isa_name((attn_isa)isa));
  attn_isa best = attn_get_isa();
  test_no_read();
  test_bad_args();
  test_alloc_failures();
  test_shapes();
  test_small_wide();
  attn_set_isa(best);
  return t_finish("test_gemm");
}
