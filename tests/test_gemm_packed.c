/* The pre-packed GEMM operand: attn_gemm_pack_b, attn_gemm_packed, attn_gemm_packed_bytes,
 * attn_gemm_packed_free and the bias / bias+ReLU / bias+GELU epilogues.
 *
 *  - attn_gemm_packed with ATTN_EPILOGUE_NONE is bitwise attn_gemm (row-major) under the ISA the
 *    operand was packed with, for every ISA this CPU has and 1, 2 and 3 threads: sampled shapes
 *    (several column tiles when a K block of N columns exceeds the L2 budget), both transposes,
 *    padded lda / ldb / ldc, alpha and beta (beta = 0 over NaN), a short last K block with
 *    several column tiles; padding and guard bytes intact.
 *  - BIAS and BIAS_RELU are bitwise attn_gemm followed by c + bias[j] (then v < 0 ? 0 : v, NaN
 *    kept); BIAS_GELU is v Phi(v) computed in double within 1e-6 relative + 1e-30 absolute, with
 *    columns whose bias pushes |v| up to ~15.
 *  - The ISA is fixed when packing: a later attn_set_isa does not change the product.
 *  - M == 0 (nothing written, A may be NULL), alpha == 0 (A not read, then the epilogue).
 *  - attn_gemm_packed_bytes / attn_gemm_packed_free on NULL and on an operand.
 *  - Bad arguments: status, a message naming the function and the argument, outputs untouched.
 *  - A failing allocator over packing and over a 2-thread product (nothing leaked, C untouched).
 *  - Two application threads sharing one packed operand at once. */
#include <pthread.h>

#include "common.h"

#include "../src/cpu/gemm_internal.h" /* attn__gemm_packed_rows, the internal row epilogue */

#include <stdatomic.h>

static bool quick; /* ATTN_TEST_QUICK=1: smaller sizes (sanitizers) */

static attn_isa isas[3];
static int n_isas;

static double gelu_ref(float v) {
  const double x = v;
  return x * 0.5 * erfc(-x / sqrt(2.0));
}

/* The GELU epilogue's tolerance: relative 1e-6 plus absolute 1e-30. */
static bool gelu_ok(float got, float v) {
  const double want = gelu_ref(v);
  if (isnan(v)) return isnan(got);
  return isfinite(got) && fabs((double)got - want) <= 1e-6 * fabs(want) + 1e-30;
}

/* ---- one case: attn_gemm_packed against attn_gemm ---- */

typedef struct pcase {
  bool ta, tb;
  int64_t M, N, K;
  float alpha, beta;
  int64_t pad_a, pad_b, pad_c;
} pcase;

typedef struct operands {
  int64_t lda, ldb, ldc;
  t_buf A, B, C, bias;
  float *c0; /* C before the product (NaN outside the padding when beta == 0) */
  size_t c_bytes;
} operands;

static bool c_padding(const operands *o, int64_t N, int64_t idx) {
  return idx % o->ldc >= N;
}

static operands operands_new(const pcase *pc, t_rng *rng) {
  operands o;
  const int64_t M = pc->M, N = pc->N, K = pc->K;
  o.lda = (pc->ta ? M : K) + pc->pad_a;
  o.ldb = (pc->tb ? K : N) + pc->pad_b;
  o.ldc = N + pc->pad_c;
  const int64_t a_rows = pc->ta ? K : M, a_cols = pc->ta ? M : K;
  const int64_t b_rows = pc->tb ? N : K, b_cols = pc->tb ? K : N;
  o.A = t_buf_new(ATTN_DTYPE_F32, (a_rows - 1) * o.lda + a_cols);
  o.B = t_buf_new(ATTN_DTYPE_F32, (b_rows - 1) * o.ldb + b_cols);
  o.C = t_buf_new(ATTN_DTYPE_F32, (M - 1) * o.ldc + N);
  o.bias = t_buf_new(ATTN_DTYPE_F32, N);
  /* Products of order 1 so that a bias of +-15 decides the sign and size of v. */
  t_buf_fill_normal(&o.A, rng, 1.0f / sqrtf((float)K));
  t_buf_fill_normal(&o.B, rng, 1.0f);
  t_buf_fill_normal(&o.C, rng, 1.0f);
  float *bias = t_f32(&o.bias);
  for (int64_t j = 0; j < N; j++) {
    bias[j] = t_normal(rng);
    if (j % 5 == 3) bias[j] = t_uniform(rng, 4.0f, 15.0f) * (j % 2 ? -1.0f : 1.0f);
  }
  if (pc->beta == 0.0f)
    for (int64_t i = 0; i < o.C.n; i++)
      if (!c_padding(&o, N, i)) t_f32(&o.C)[i] = NAN;
  o.c_bytes = (size_t)o.C.n * sizeof(float);
  o.c0 = malloc(o.c_bytes);
  memcpy(o.c0, o.C.data, o.c_bytes);
  return o;
}

static void operands_free(operands *o) {
  t_buf_free(&o->A);
  t_buf_free(&o->B);
  t_buf_free(&o->C);
  t_buf_free(&o->bias);
  free(o->c0);
}

static void describe(const pcase *pc, char *out, size_t n) {
  snprintf(out, n, "ta=%d tb=%d M=%lld N=%lld K=%lld alpha=%g beta=%g pads=%lld/%lld/%lld",
           (int)pc->ta, (int)pc->tb, (long long)pc->M, (long long)pc->N, (long long)pc->K,
           (double)pc->alpha, (double)pc->beta, (long long)pc->pad_a, (long long)pc->pad_b,
           (long long)pc->pad_c);
}

static attn_trans tr(bool t) {
  return t ? ATTN_TRANS : ATTN_NO_TRANS;
}

static attn_status run_packed(const pcase *pc, operands *o, const attn_gemm_packed_b *pb,
                              attn_epilogue epi, const float *bias) {
  return attn_gemm_packed(tr(pc->ta), pc->M, pc->alpha, t_f32(&o->A), o->lda, pb, pc->beta,
                          t_f32(&o->C), o->ldc, epi, bias);
}

/* Padding of C and the guard bytes around it as they were. */
static void check_c_frame(const pcase *pc, const operands *o, const char *what, const char *isa,
                          int threads, const char *epi) {
  int64_t bad = 0;
  for (int64_t i = 0; i < o->C.n; i++)
    if (c_padding(o, pc->N, i) && memcmp(&t_f32(&o->C)[i], &o->c0[i], sizeof(float)) != 0) bad++;
  CHECK(bad == 0, "%s isa=%s threads=%d %s: %lld padding elements of C written", what, isa, threads,
        epi, (long long)bad);
  CHECK(t_buf_guard_ok(&o->C), "%s isa=%s threads=%d %s: guard bytes around C written", what, isa,
        threads, epi);
}

static int64_t first_diff(const float *a, const float *b, int64_t n) {
  for (int64_t i = 0; i < n; i++)
    if (memcmp(&a[i], &b[i], sizeof(float)) != 0) return i;
  return -1;
}

static void run_case(const pcase *pc, int case_no, t_rng *rng) {
  char what[200];
  describe(pc, what, sizeof what);
  operands o = operands_new(pc, rng);
  const int64_t M = pc->M, N = pc->N, nc = o.C.n;
  float *ref = malloc(o.c_bytes), *want = malloc(o.c_bytes);
  float *bias = t_f32(&o.bias);
  /* The ReLU epilogue's bias has a NaN in one column: that column must come out NaN. */
  float *bias_nan = malloc((size_t)N * sizeof(float));
  memcpy(bias_nan, bias, (size_t)N * sizeof(float));
  const int64_t j_nan = N / 2;
  bias_nan[j_nan] = NAN;

  for (int s = 0; s < n_isas; s++) {
    const attn_isa isa = isas[s];
    const char *iname = attn_isa_name(isa);
    CHECK_OK(attn_set_isa(isa));
    CHECK_OK(attn_set_num_threads(1));
    memcpy(ref, o.c0, o.c_bytes);
    CHECK_OK(attn_gemm(ATTN_ROW_MAJOR, tr(pc->ta), tr(pc->tb), M, N, pc->K, pc->alpha, t_f32(&o.A),
                       o.lda, t_f32(&o.B), o.ldb, pc->beta, ref, o.ldc));
    attn_gemm_packed_b *pb = NULL;
    attn_status st = attn_gemm_pack_b(&pb, tr(pc->tb), pc->K, N, t_f32(&o.B), o.ldb);
    CHECK(st == ATTN_OK && pb != NULL, "%s isa=%s: pack: %s (%s)", what, iname, attn_status_str(st),
          attn_last_error());
    if (!pb) continue;
    CHECK(attn_gemm_packed_bytes(pb) >= (size_t)(pc->K * N) * sizeof(float),
          "%s isa=%s: packed bytes %zu < K N 4", what, iname, attn_gemm_packed_bytes(pb));

    /* No epilogue: bitwise attn_gemm for every thread count. */
    for (int threads = 1; threads <= 3; threads++) {
      CHECK_OK(attn_set_num_threads(threads));
      memcpy(o.C.data, o.c0, o.c_bytes);
      st = run_packed(pc, &o, pb, ATTN_EPILOGUE_NONE, NULL);
      CHECK(st == ATTN_OK, "%s isa=%s threads=%d: %s (%s)", what, iname, threads,
            attn_status_str(st), attn_last_error());
      CHECK(attn_last_error()[0] == '\0', "%s: last error not cleared", what);
      int64_t d = first_diff(t_f32(&o.C), ref, nc);
      CHECK(d < 0, "%s isa=%s threads=%d: differs from attn_gemm at %lld: %.9g vs %.9g", what,
            iname, threads, (long long)d, d < 0 ? 0.0 : (double)t_f32(&o.C)[d],
            d < 0 ? 0.0 : (double)ref[d]);
      check_c_frame(pc, &o, what, iname, threads, "none");
      if (pc->beta == 0.0f) {
        int64_t nans = 0;
        for (int64_t i = 0; i < nc; i++)
          if (!c_padding(&o, N, i) && isnan(t_f32(&o.C)[i])) nans++;
        CHECK(nans == 0, "%s isa=%s threads=%d: beta = 0 left %lld NaN in C", what, iname, threads,
              (long long)nans);
      }
    }

    /* Epilogues, each at a thread count that rotates with the case. */
    for (int e = 0; e < 3; e++) {
      const attn_epilogue epi = (attn_epilogue)(ATTN_EPILOGUE_BIAS + e);
      const char *ename = e == 0 ? "bias" : (e == 1 ? "bias_gelu" : "bias_relu");
      const int threads = 1 + (case_no + e) % 3;
      const float *b_used = epi == ATTN_EPILOGUE_BIAS_RELU ? bias_nan : bias;
      CHECK_OK(attn_set_num_threads(threads));
      memcpy(o.C.data, o.c0, o.c_bytes);
      st = run_packed(pc, &o, pb, epi, b_used);
      CHECK(st == ATTN_OK, "%s isa=%s threads=%d %s: %s (%s)", what, iname, threads, ename,
            attn_status_str(st), attn_last_error());
      check_c_frame(pc, &o, what, iname, threads, ename);
      const float *got = t_f32(&o.C);
      if (epi == ATTN_EPILOGUE_BIAS_GELU) {
        int64_t bad = 0, first = -1;
        for (int64_t i = 0; i < M; i++)
          for (int64_t j = 0; j < N; j++) {
            const int64_t x = i * o.ldc + j;
            const float v = ref[x] + bias[j];
            if (!gelu_ok(got[x], v) && bad++ == 0) first = x;
          }
        CHECK(bad == 0, "%s isa=%s threads=%d gelu: %lld wrong, first at %lld: got %.9g want %.9g",
              what, iname, threads, (long long)bad, (long long)first,
              bad ? (double)got[first] : 0.0,
              bad ? gelu_ref(ref[first] + bias[first % o.ldc]) : 0.0);
      } else {
        memcpy(want, o.c0, o.c_bytes);
        for (int64_t i = 0; i < M; i++)
          for (int64_t j = 0; j < N; j++) {
            const float v = ref[i * o.ldc + j] + b_used[j];
            want[i * o.ldc + j] = epi == ATTN_EPILOGUE_BIAS_RELU ? (v < 0.0f ? 0.0f : v) : v;
          }
        int64_t d = first_diff(got, want, nc);
        CHECK(d < 0, "%s isa=%s threads=%d %s: differs at %lld: %.9g vs %.9g", what, iname, threads,
              ename, (long long)d, d < 0 ? 0.0 : (double)got[d], d < 0 ? 0.0 : (double)want[d]);
        if (epi == ATTN_EPILOGUE_BIAS_RELU) {
          int64_t not_nan = 0, negative = 0;
          for (int64_t i = 0; i < M; i++) {
            if (!isnan(got[i * o.ldc + j_nan])) not_nan++;
            for (int64_t j = 0; j < N; j++)
              if (got[i * o.ldc + j] < 0.0f) negative++;
          }
          CHECK(not_nan == 0, "%s isa=%s relu: %lld rows of the NaN-bias column are not NaN", what,
                iname, (long long)not_nan);
          CHECK(negative == 0, "%s isa=%s relu: %lld negative outputs", what, iname,
                (long long)negative);
        }
      }
    }
    attn_gemm_packed_free(pb);
  }
  CHECK(t_buf_guard_ok(&o.A) && t_buf_guard_ok(&o.B) && t_buf_guard_ok(&o.bias),
        "%s: guards of A/B/bias changed", what);
  free(ref);
  free(want);
  free(bias_nan);
  operands_free(&o);
}

static const int64_t Ms[] = {1, 2, 13, 14, 15, 29, 100, 257};
static const int64_t Ns[] = {1, 7, 16, 31, 32, 33, 100, 384, 1536, 2100};
static const int64_t Ks[] = {1, 5, 31, 256, 257, 600};
static const float alphas[] = {1.0f, -0.5f, 2.5f};
static const float betas[] = {0.0f, 1.0f, -1.5f};
#define COUNT(a) ((int)(sizeof(a) / sizeof((a)[0])))

static void test_shapes(void) {
  t_rng rng = t_rng_make(11);
  int case_no = 0;
  /* Fixed: several column tiles (a K block of 2100 columns exceeds the L2 budget for K = 384 and
   * 600), many row tiles, every transpose combination, padded leading dimensions. */
  const pcase fixed[] = {
      {false, false, quick ? 13 : 29, 2100, 384, 1.0f, 0.0f, 3, 0, 5},
      {true, true, quick ? 2 : 14, 2100, 600, -0.5f, -1.5f, 0, 7, 0},
      {false, true, quick ? 29 : 257, quick ? 100 : 384, 257, 2.5f, 1.0f, 1, 1, 1},
      {true, false, quick ? 15 : 100, quick ? 384 : 1536, 31, 1.0f, 0.0f, 9, 2, 4},
      /* K = 514: K blocks of 172, 172, 170 (a short last block) with two column tiles. */
      {false, true, quick ? 2 : 15, 2100, 514, -0.5f, 1.0f, 0, 3, 2},
  };
  for (int i = 0; i < COUNT(fixed); i++) run_case(&fixed[i], case_no++, &rng);
  /* Random combinations, the larger ones cut down to keep the run short. */
  const double cap = quick ? 1e6 : 3e6;
  const int n_random = quick ? 40 : 56;
  for (int c = 0; c < n_random; c++) {
    int im = (int)t_int(&rng, 0, COUNT(Ms) - 1), in = (int)t_int(&rng, 0, COUNT(Ns) - 1);
    int ik = (int)t_int(&rng, 0, COUNT(Ks) - 1);
    while ((double)Ms[im] * Ns[in] * Ks[ik] > cap && ik > 0) ik--;
    while ((double)Ms[im] * Ns[in] * Ks[ik] > cap && im > 0) im--;
    pcase pc = {t_int(&rng, 0, 1) == 1,
                t_int(&rng, 0, 1) == 1,
                Ms[im],
                Ns[in],
                Ks[ik],
                alphas[t_int(&rng, 0, 2)],
                betas[t_int(&rng, 0, 2)],
                t_int(&rng, 0, 1) ? t_int(&rng, 1, 9) : 0,
                t_int(&rng, 0, 1) ? t_int(&rng, 1, 9) : 0,
                t_int(&rng, 0, 1) ? t_int(&rng, 1, 9) : 0};
    run_case(&pc, case_no++, &rng);
  }
}

/* ---- the ISA is fixed at packing ---- */

static void isa_fixed_case(attn_isa pack_isa, attn_isa run_isa) {
  const int64_t M = 37, N = 150, K = 300;
  t_rng rng = t_rng_make(5);
  t_buf A = t_buf_new(ATTN_DTYPE_F32, M * K), B = t_buf_new(ATTN_DTYPE_F32, K * N);
  t_buf C = t_buf_new(ATTN_DTYPE_F32, M * N), bias = t_buf_new(ATTN_DTYPE_F32, N);
  t_buf_fill_normal(&A, &rng, 1.0f);
  t_buf_fill_normal(&B, &rng, 1.0f);
  t_buf_fill_normal(&C, &rng, 1.0f);
  t_buf_fill_normal(&bias, &rng, 1.0f);
  const size_t cb = (size_t)(M * N) * sizeof(float);
  float *c0 = malloc(cb), *ref = malloc(cb), *other = malloc(cb);
  memcpy(c0, C.data, cb);
  const char *pn = attn_isa_name(pack_isa), *rn = attn_isa_name(run_isa);

  CHECK_OK(attn_set_isa(pack_isa));
  memcpy(ref, c0, cb);
  CHECK_OK(attn_gemm(ATTN_ROW_MAJOR, ATTN_NO_TRANS, ATTN_NO_TRANS, M, N, K, 1.0f, t_f32(&A), K,
                     t_f32(&B), N, 0.5f, ref, N));
  attn_gemm_packed_b *pb = NULL;
  CHECK_OK(attn_gemm_pack_b(&pb, ATTN_NO_TRANS, K, N, t_f32(&B), N));
  CHECK_OK(attn_set_isa(run_isa));
  memcpy(other, c0, cb);
  CHECK_OK(attn_gemm(ATTN_ROW_MAJOR, ATTN_NO_TRANS, ATTN_NO_TRANS, M, N, K, 1.0f, t_f32(&A), K,
                     t_f32(&B), N, 0.5f, other, N));
  if (memcmp(other, ref, cb) == 0)
    printf(
        "test_gemm_packed: note: attn_gemm under %s and %s agree bitwise here, so %s -> %s "
        "checks that the %s layout is run with the %s kernel, not which kernel's rounding\n",
        pn, rn, pn, rn, pn, pn);
  for (int threads = 1; threads <= 2 && pb; threads++) {
    CHECK_OK(attn_set_num_threads(threads));
    memcpy(C.data, c0, cb);
    CHECK_OK(attn_gemm_packed(ATTN_NO_TRANS, M, 1.0f, t_f32(&A), K, pb, 0.5f, t_f32(&C), N,
                              ATTN_EPILOGUE_NONE, NULL));
    int64_t d = first_diff(t_f32(&C), ref, M * N);
    CHECK(d < 0,
          "packed under %s, run under %s, threads=%d: differs from attn_gemm under %s at %lld", pn,
          rn, threads, pn, (long long)d);
    /* The bias epilogue is exact in any ISA: still attn_gemm under the packing ISA + bias. */
    memcpy(C.data, c0, cb);
    CHECK_OK(attn_gemm_packed(ATTN_NO_TRANS, M, 1.0f, t_f32(&A), K, pb, 0.5f, t_f32(&C), N,
                              ATTN_EPILOGUE_BIAS, t_f32(&bias)));
    int64_t bad = 0;
    for (int64_t i = 0; i < M; i++)
      for (int64_t j = 0; j < N; j++) {
        const float v = ref[i * N + j] + t_f32(&bias)[j];
        if (memcmp(&t_f32(&C)[i * N + j], &v, sizeof v) != 0) bad++;
      }
    CHECK(bad == 0, "packed under %s, run under %s, threads=%d, bias: %lld elements differ", pn, rn,
          threads, (long long)bad);
  }
  attn_gemm_packed_free(pb);
  free(c0);
  free(ref);
  free(other);
  t_buf_free(&A);
  t_buf_free(&B);
  t_buf_free(&C);
  t_buf_free(&bias);
}

static void test_isa_fixed(attn_isa restore) {
  if (attn_cpu_supports(ATTN_ISA_AVX2) && attn_cpu_supports(ATTN_ISA_AVX512))
    isa_fixed_case(ATTN_ISA_AVX2, ATTN_ISA_AVX512);
  else
    printf("test_gemm_packed: avx2 -> avx512 pack-ISA check skipped (CPU lacks one)\n");
  /* Scalar (no FMA) against the best vector ISA: these differ in the last bits. */
  if (attn_cpu_supports(ATTN_ISA_AVX2)) isa_fixed_case(ATTN_ISA_SCALAR, attn_cpu_best_isa());
  CHECK_OK(attn_set_isa(restore));
  CHECK(attn_get_isa() == restore, "ISA not restored: %s", attn_isa_name(attn_get_isa()));
}

/* ---- M == 0, alpha == 0 ---- */

static void test_degenerate(void) {
  const int64_t K = 7, N = 9, M = 5;
  float B[7 * 9], C[5 * 9], c0[5 * 9], A[5 * 7], bias[9];
  t_rng rng = t_rng_make(9);
  for (int i = 0; i < K * N; i++) B[i] = t_normal(&rng);
  for (int i = 0; i < M * N; i++) c0[i] = t_normal(&rng);
  for (int j = 0; j < N; j++) bias[j] = t_normal(&rng);
  bias[2] = 14.0f; /* large v for the GELU case */
  bias[5] = -13.0f;
  for (int i = 0; i < M * K; i++) A[i] = NAN;
  attn_gemm_packed_b *pb = NULL;
  CHECK_OK(attn_gemm_pack_b(&pb, ATTN_NO_TRANS, K, N, B, N));
  if (!pb) return;

  /* M == 0: nothing written, A may be NULL (every epilogue). */
  for (int e = 0; e <= 3; e++) {
    memcpy(C, c0, sizeof C);
    CHECK_OK(
        attn_gemm_packed(ATTN_NO_TRANS, 0, 1.0f, NULL, K, pb, 0.0f, C, N, (attn_epilogue)e, bias));
    CHECK(memcmp(C, c0, sizeof C) == 0, "M = 0, epilogue %d: C written", e);
    CHECK_OK(
        attn_gemm_packed(ATTN_TRANS, 0, 2.0f, NULL, 1, pb, 1.0f, C, N, (attn_epilogue)e, bias));
    CHECK(memcmp(C, c0, sizeof C) == 0, "M = 0 trans, epilogue %d: C written", e);
  }

  /* alpha == 0: C = beta C, then the epilogue; A (all NaN) is not read. */
  const float betas0[] = {-1.5f, 0.0f, 1.0f};
  for (int bi = 0; bi < 3; bi++)
    for (int e = 0; e <= 3; e++)
      for (int threads = 1; threads <= 2; threads++) {
        const float beta = betas0[bi];
        CHECK_OK(attn_set_num_threads(threads));
        memcpy(C, c0, sizeof C);
        if (beta == 0.0f)
          for (int i = 0; i < M * N; i++) C[i] = NAN;
        CHECK_OK(
            attn_gemm_packed(ATTN_NO_TRANS, M, 0.0f, A, K, pb, beta, C, N, (attn_epilogue)e, bias));
        int64_t bad = 0, nans = 0;
        for (int i = 0; i < M; i++)
          for (int j = 0; j < N; j++) {
            const float got = C[i * N + j];
            if (isnan(got)) nans++;
            const float s = beta == 0.0f ? 0.0f : c0[i * N + j] * beta;
            const float v = s + bias[j];
            bool ok;
            if (e == ATTN_EPILOGUE_BIAS_GELU) {
              ok = gelu_ok(got, v);
            } else {
              const float w = e == ATTN_EPILOGUE_NONE
                                  ? s
                                  : (e == ATTN_EPILOGUE_BIAS ? v : (v < 0.0f ? 0.0f : v));
              ok = memcmp(&got, &w, sizeof w) == 0;
            }
            if (!ok) bad++;
          }
        CHECK(nans == 0, "alpha = 0, beta = %g, epilogue %d, threads %d: %lld NaN in C",
              (double)beta, e, threads, (long long)nans);
        CHECK(bad == 0, "alpha = 0, beta = %g, epilogue %d, threads %d: %lld elements wrong",
              (double)beta, e, threads, (long long)bad);
      }
  attn_gemm_packed_free(pb);
}

/* ---- bytes, free ---- */

static void test_bytes_free(void) {
  CHECK(attn_gemm_packed_bytes(NULL) == 0, "bytes(NULL) = %zu", attn_gemm_packed_bytes(NULL));
  attn_gemm_packed_free(NULL); /* no-op: must not crash */
  const int64_t shapes[][2] = {{1, 1}, {3, 33}, {257, 100}, {31, 2100}};
  for (int s = 0; s < 4; s++) {
    const int64_t K = shapes[s][0], N = shapes[s][1];
    float *B = calloc((size_t)(K * N), sizeof(float));
    for (int tb = 0; tb < 2; tb++) {
      attn_gemm_packed_b *pb = NULL;
      CHECK_OK(attn_gemm_pack_b(&pb, tr(tb), K, N, B, tb ? K : N));
      const size_t bytes = attn_gemm_packed_bytes(pb);
      CHECK(pb != NULL && bytes >= (size_t)(K * N) * sizeof(float),
            "K=%lld N=%lld tb=%d: bytes %zu < %zu", (long long)K, (long long)N, tb, bytes,
            (size_t)(K * N) * sizeof(float));
      /* At most K x round_up(N, 32) floats plus a small header. */
      CHECK(bytes <= (size_t)(K * ((N + 31) / 32 * 32)) * sizeof(float) + 4096,
            "K=%lld N=%lld: bytes %zu more than the header says", (long long)K, (long long)N,
            bytes);
      attn_gemm_packed_free(pb);
    }
    free(B);
  }
}

/* ---- bad arguments ---- */

static void expect(attn_status got, attn_status want, const char *fn, const char *needle,
                   const char *what) {
  t_expect_error(got, want, fn, what);
  CHECK(strstr(attn_last_error(), needle) != NULL, "%s: message '%s' does not name '%s'", what,
        attn_last_error(), needle);
}

static void test_bad_pack(void) {
  static const char fn[] = "attn_gemm_pack_b";
  enum { CAP = 32 * 32 };
  static float B[CAP], saved[CAP];
  t_rng rng = t_rng_make(21);
  for (int i = 0; i < CAP; i++) B[i] = t_normal(&rng);
  memcpy(saved, B, sizeof B);
  const int64_t huge = INT64_MAX / 4;
  struct {
    const char *what;
    attn_trans tb;
    int64_t K, N;
    int b_null;
    int64_t ldb;
    attn_status want;
    const char *needle;
  } calls[] = {
      {"B NULL", ATTN_NO_TRANS, 6, 5, 1, 5, ATTN_STATUS_NULL_POINTER, "B is NULL"},
      {"K 0", ATTN_NO_TRANS, 0, 5, 0, 5, ATTN_STATUS_INVALID_ARGUMENT, "K = 0"},
      {"K < 0", ATTN_TRANS, -3, 5, 0, 5, ATTN_STATUS_INVALID_ARGUMENT, "K = -3"},
      {"N 0", ATTN_NO_TRANS, 6, 0, 0, 5, ATTN_STATUS_INVALID_ARGUMENT, "N = 0"},
      {"N < 0", ATTN_NO_TRANS, 6, -1, 0, 5, ATTN_STATUS_INVALID_ARGUMENT, "N = -1"},
      {"trans_b 7", (attn_trans)7, 6, 5, 0, 5, ATTN_STATUS_INVALID_ARGUMENT, "trans_b"},
      {"trans_b -1", (attn_trans)-1, 6, 5, 0, 5, ATTN_STATUS_INVALID_ARGUMENT, "trans_b"},
      {"ldb < N", ATTN_NO_TRANS, 6, 5, 0, 4, ATTN_STATUS_INVALID_ARGUMENT, "ldb"},
      {"ldb < K trans", ATTN_TRANS, 6, 5, 0, 5, ATTN_STATUS_INVALID_ARGUMENT, "ldb"},
      {"ldb 0", ATTN_NO_TRANS, 1, 1, 0, 0, ATTN_STATUS_INVALID_ARGUMENT, "ldb"},
      {"overflow", ATTN_NO_TRANS, huge, huge, 0, huge, ATTN_STATUS_OVERFLOW, "B ("},
      {"overflow trans", ATTN_TRANS, huge, huge, 0, huge, ATTN_STATUS_OVERFLOW, "B ("},
  };
  static int sentinel;
  for (size_t i = 0; i < sizeof calls / sizeof calls[0]; i++) {
    attn_gemm_packed_b *out = (attn_gemm_packed_b *)(void *)&sentinel;
    attn_status st = attn_gemm_pack_b(&out, calls[i].tb, calls[i].K, calls[i].N,
                                      calls[i].b_null ? NULL : B, calls[i].ldb);
    char what[96];
    snprintf(what, sizeof what, "pack %s", calls[i].what);
    expect(st, calls[i].want, fn, calls[i].needle, what);
    CHECK(out == NULL, "%s: *out not NULL after failure", what);
    if (st == ATTN_OK && out != (attn_gemm_packed_b *)(void *)&sentinel) attn_gemm_packed_free(out);
    CHECK(memcmp(B, saved, sizeof B) == 0, "%s: B written", what);
  }
  expect(attn_gemm_pack_b(NULL, ATTN_NO_TRANS, 6, 5, B, 5), ATTN_STATUS_NULL_POINTER, fn,
         "out is NULL", "pack out NULL");
  /* A success clears the message. */
  attn_gemm_packed_b *pb = NULL;
  CHECK_OK(attn_gemm_pack_b(&pb, ATTN_NO_TRANS, 6, 5, B, 5));
  CHECK(attn_last_error()[0] == '\0', "pack: last error not cleared: %s", attn_last_error());
  attn_gemm_packed_free(pb);
}

static void test_bad_run(void) {
  static const char fn[] = "attn_gemm_packed";
  enum { CAP = 32 * 32 };
  static float A[CAP], B[CAP], C[CAP], bias[CAP], sA[CAP], sC[CAP], sbias[CAP];
  t_rng rng = t_rng_make(22);
  for (int i = 0; i < CAP; i++) {
    A[i] = t_normal(&rng);
    B[i] = t_normal(&rng);
    C[i] = t_normal(&rng);
    bias[i] = t_normal(&rng);
  }
  const int64_t K = 6, N = 5;
  attn_gemm_packed_b *pb = NULL;
  CHECK_OK(attn_gemm_pack_b(&pb, ATTN_NO_TRANS, K, N, B, N));
  if (!pb) return;
  const int64_t big = INT64_MAX / 2;
  struct {
    const char *what;
    attn_trans ta;
    int64_t M;
    int b_null, a_null, c_null, bias_null;
    int64_t lda, ldc;
    attn_epilogue epi;
    int c_at; /* 0: C; 1: into A; 2: bias into C */
    attn_status want;
    const char *needle;
  } calls[] = {
      {"b NULL", ATTN_NO_TRANS, 4, 1, 0, 0, 0, 6, 5, ATTN_EPILOGUE_NONE, 0,
       ATTN_STATUS_NULL_POINTER, "b is NULL"},
      {"A NULL", ATTN_NO_TRANS, 4, 0, 1, 0, 0, 6, 5, ATTN_EPILOGUE_NONE, 0,
       ATTN_STATUS_NULL_POINTER, "A is NULL"},
      {"A NULL trans", ATTN_TRANS, 1, 0, 1, 0, 0, 1, 5, ATTN_EPILOGUE_BIAS, 0,
       ATTN_STATUS_NULL_POINTER, "A is NULL"},
      {"C NULL", ATTN_NO_TRANS, 4, 0, 0, 1, 0, 6, 5, ATTN_EPILOGUE_NONE, 0,
       ATTN_STATUS_NULL_POINTER, "C is NULL"},
      {"bias NULL, BIAS", ATTN_NO_TRANS, 4, 0, 0, 0, 1, 6, 5, ATTN_EPILOGUE_BIAS, 0,
       ATTN_STATUS_NULL_POINTER, "bias is NULL"},
      {"bias NULL, GELU", ATTN_NO_TRANS, 4, 0, 0, 0, 1, 6, 5, ATTN_EPILOGUE_BIAS_GELU, 0,
       ATTN_STATUS_NULL_POINTER, "bias is NULL"},
      {"bias NULL, RELU", ATTN_NO_TRANS, 4, 0, 0, 0, 1, 6, 5, ATTN_EPILOGUE_BIAS_RELU, 0,
       ATTN_STATUS_NULL_POINTER, "bias is NULL"},
      {"M < 0", ATTN_NO_TRANS, -1, 0, 0, 0, 0, 6, 5, ATTN_EPILOGUE_NONE, 0,
       ATTN_STATUS_INVALID_ARGUMENT, "M = -1"},
      {"trans_a 7", (attn_trans)7, 4, 0, 0, 0, 0, 6, 5, ATTN_EPILOGUE_NONE, 0,
       ATTN_STATUS_INVALID_ARGUMENT, "trans_a"},
      {"epilogue 9", ATTN_NO_TRANS, 4, 0, 0, 0, 0, 6, 5, (attn_epilogue)9, 0,
       ATTN_STATUS_INVALID_ARGUMENT, "epilogue"},
      {"epilogue -1", ATTN_NO_TRANS, 4, 0, 0, 0, 0, 6, 5, (attn_epilogue)-1, 0,
       ATTN_STATUS_INVALID_ARGUMENT, "epilogue"},
      {"epilogue 4", ATTN_NO_TRANS, 4, 0, 0, 0, 0, 6, 5, (attn_epilogue)4, 0,
       ATTN_STATUS_INVALID_ARGUMENT, "epilogue"},
      {"lda < K", ATTN_NO_TRANS, 4, 0, 0, 0, 0, 5, 5, ATTN_EPILOGUE_NONE, 0,
       ATTN_STATUS_INVALID_ARGUMENT, "lda"},
      {"lda < M trans", ATTN_TRANS, 4, 0, 0, 0, 0, 3, 5, ATTN_EPILOGUE_BIAS, 0,
       ATTN_STATUS_INVALID_ARGUMENT, "lda"},
      {"ldc < N", ATTN_NO_TRANS, 4, 0, 0, 0, 0, 6, 4, ATTN_EPILOGUE_NONE, 0,
       ATTN_STATUS_INVALID_ARGUMENT, "ldc"},
      {"ldc overflow", ATTN_NO_TRANS, 3, 0, 0, 0, 0, 6, big, ATTN_EPILOGUE_NONE, 0,
       ATTN_STATUS_OVERFLOW, "C ("},
      {"C overlaps A", ATTN_NO_TRANS, 4, 0, 0, 0, 0, 6, 5, ATTN_EPILOGUE_NONE, 1,
       ATTN_STATUS_ALIASING, "C overlaps A"},
      {"C overlaps A, GELU", ATTN_TRANS, 4, 0, 0, 0, 0, 4, 5, ATTN_EPILOGUE_BIAS_GELU, 1,
       ATTN_STATUS_ALIASING, "C overlaps A"},
      {"C overlaps bias", ATTN_NO_TRANS, 4, 0, 0, 0, 0, 6, 5, ATTN_EPILOGUE_BIAS, 2,
       ATTN_STATUS_ALIASING, "C overlaps bias"},
      {"C overlaps bias, RELU", ATTN_NO_TRANS, 4, 0, 0, 0, 0, 6, 7, ATTN_EPILOGUE_BIAS_RELU, 2,
       ATTN_STATUS_ALIASING, "C overlaps bias"},
  };
  for (size_t i = 0; i < sizeof calls / sizeof calls[0]; i++) {
    memcpy(sA, A, sizeof A);
    memcpy(sC, C, sizeof C);
    memcpy(sbias, bias, sizeof bias);
    float *c = calls[i].c_at == 1 ? A + 7 : C;
    const float *bi = calls[i].c_at == 2 ? C + 2 * calls[i].ldc + 3 : bias;
    attn_status st =
        attn_gemm_packed(calls[i].ta, calls[i].M, 1.0f, calls[i].a_null ? NULL : A, calls[i].lda,
                         calls[i].b_null ? NULL : pb, 0.5f, calls[i].c_null ? NULL : c,
                         calls[i].ldc, calls[i].epi, calls[i].bias_null ? NULL : bi);
    char what[96];
    snprintf(what, sizeof what, "run %s", calls[i].what);
    expect(st, calls[i].want, fn, calls[i].needle, what);
    CHECK(memcmp(A, sA, sizeof A) == 0 && memcmp(C, sC, sizeof C) == 0 &&
              memcmp(bias, sbias, sizeof bias) == 0,
          "%s: an operand was written", what);
  }
  /* bias NULL is fine without an epilogue that reads it. */
  CHECK_OK(
      attn_gemm_packed(ATTN_NO_TRANS, 4, 1.0f, A, K, pb, 0.0f, C, N, ATTN_EPILOGUE_NONE, NULL));
  CHECK(attn_last_error()[0] == '\0', "run: last error not cleared: %s", attn_last_error());
  attn_gemm_packed_free(pb);
}

/* ---- failing allocator ---- */

typedef struct alloc_ctx {
  int64_t M, N, K;
  const float *A, *B, *bias, *saved;
  float *C;
  attn_gemm_packed_b *pb;
} alloc_ctx;

static attn_status sweep_pack(void *arg) {
  alloc_ctx *x = arg;
  attn_gemm_packed_b *out = NULL;
  attn_status st = attn_gemm_pack_b(&out, ATTN_TRANS, x->K, x->N, x->B, x->K);
  if (st != ATTN_OK)
    CHECK(out == NULL, "pack under a failing allocator: %s but *out not NULL", attn_status_str(st));
  else
    CHECK(out != NULL, "pack: OK but *out NULL");
  attn_gemm_packed_free(out);
  return st;
}

static attn_status sweep_run(void *arg) {
  alloc_ctx *x = arg;
  const size_t cb = (size_t)(x->M * x->N) * sizeof(float);
  memcpy(x->C, x->saved, cb);
  attn_status st = attn_gemm_packed(ATTN_NO_TRANS, x->M, 1.0f, x->A, x->K, x->pb, 0.5f, x->C, x->N,
                                    ATTN_EPILOGUE_BIAS_GELU, x->bias);
  if (st != ATTN_OK) {
    CHECK(memcmp(x->C, x->saved, cb) == 0, "run under a failing allocator: %s and C written",
          attn_status_str(st));
    CHECK(attn_last_error()[0] != '\0' && strstr(attn_last_error(), "attn_gemm") != NULL,
          "run under a failing allocator: message '%s'", attn_last_error());
  }
  return st;
}

static void test_alloc(void) {
  const int64_t M = 100, N = 90, K = 80;
  t_rng rng = t_rng_make(31);
  t_buf A = t_buf_new(ATTN_DTYPE_F32, M * K), B = t_buf_new(ATTN_DTYPE_F32, K * N);
  t_buf C = t_buf_new(ATTN_DTYPE_F32, M * N), bias = t_buf_new(ATTN_DTYPE_F32, N);
  t_buf_fill_normal(&A, &rng, 0.2f);
  t_buf_fill_normal(&B, &rng, 1.0f);
  t_buf_fill_normal(&C, &rng, 1.0f);
  t_buf_fill_normal(&bias, &rng, 1.0f);
  float *saved = malloc((size_t)(M * N) * sizeof(float));
  memcpy(saved, C.data, (size_t)(M * N) * sizeof(float));
  alloc_ctx x = {M, N, K, t_f32(&A), t_f32(&B), t_f32(&bias), saved, t_f32(&C), NULL};
  for (int s = 0; s < n_isas; s++) {
    CHECK_OK(attn_set_isa(isas[s]));
    CHECK_OK(attn_set_num_threads(2));
    char what[64];
    snprintf(what, sizeof what, "attn_gemm_pack_b (%s)", attn_isa_name(isas[s]));
    int64_t n = t_alloc_sweep(what, sweep_pack, &x, 20);
    CHECK(n >= 1, "%s: %lld allocation points", what, (long long)n);
    /* Packed with the default allocator (it outlives the sweep's allocators); the pool is warmed
     * first so that its start is not one of the sweep's allocations. */
    CHECK_OK(attn_gemm_pack_b(&x.pb, ATTN_TRANS, K, N, t_f32(&B), K));
    CHECK_OK(sweep_run(&x));
    float *good = malloc((size_t)(M * N) * sizeof(float));
    memcpy(good, C.data, (size_t)(M * N) * sizeof(float));
    snprintf(what, sizeof what, "attn_gemm_packed 2 threads (%s)", attn_isa_name(isas[s]));
    n = t_alloc_sweep(what, sweep_run, &x, 20);
    CHECK(n >= 2, "%s: %lld allocation points (expected slots + a buffer per thread)", what,
          (long long)n);
    /* The sweep's last, successful run gives the same C as with the default allocator. */
    CHECK(memcmp(good, C.data, (size_t)(M * N) * sizeof(float)) == 0,
          "%s: result under the counting allocator differs", what);
    free(good);
    attn_gemm_packed_free(x.pb);
    x.pb = NULL;
  }
  free(saved);
  t_buf_free(&A);
  t_buf_free(&B);
  t_buf_free(&C);
  t_buf_free(&bias);
}

/* ---- two application threads on one packed operand ---- */

typedef struct conc_arg {
  const attn_gemm_packed_b *pb;
  int64_t M, N, K;
  const float *A, *bias;
  float *C;
  const float *c0, *want;
  attn_epilogue epi;
  int reps, mismatches;
  attn_status st;
} conc_arg;

static void *conc_worker(void *p) {
  conc_arg *a = p;
  const size_t cb = (size_t)(a->M * a->N) * sizeof(float);
  a->st = ATTN_OK;
  a->mismatches = 0;
  for (int r = 0; r < a->reps; r++) {
    memcpy(a->C, a->c0, cb);
    attn_status st = attn_gemm_packed(ATTN_NO_TRANS, a->M, 1.0f, a->A, a->K, a->pb, -1.5f, a->C,
                                      a->N, a->epi, a->bias);
    if (st != ATTN_OK) a->st = st;
    if (memcmp(a->C, a->want, cb) != 0) a->mismatches++;
  }
  return NULL;
}

static void test_concurrent(void) {
  const int64_t M = quick ? 40 : 120, N = quick ? 96 : 300, K = quick ? 64 : 200;
  const size_t cb = (size_t)(M * N) * sizeof(float);
  t_rng rng = t_rng_make(41);
  float *B = malloc((size_t)(K * N) * sizeof(float)), *bias = malloc((size_t)N * sizeof(float));
  for (int64_t i = 0; i < K * N; i++) B[i] = t_normal(&rng);
  for (int64_t j = 0; j < N; j++) bias[j] = t_normal(&rng);
  attn_gemm_packed_b *pb = NULL;
  CHECK_OK(attn_gemm_pack_b(&pb, ATTN_NO_TRANS, K, N, B, N));
  if (!pb) return;
  conc_arg args[2];
  float *bufs[2][4];
  for (int t = 0; t < 2; t++) {
    float *A = malloc((size_t)(M * K) * sizeof(float)), *C = malloc(cb), *c0 = malloc(cb);
    float *want = malloc(cb);
    for (int64_t i = 0; i < M * K; i++) A[i] = 0.1f * t_normal(&rng);
    for (int64_t i = 0; i < M * N; i++) c0[i] = t_normal(&rng);
    bufs[t][0] = A, bufs[t][1] = C, bufs[t][2] = c0, bufs[t][3] = want;
    const attn_epilogue epi = t == 0 ? ATTN_EPILOGUE_BIAS_GELU : ATTN_EPILOGUE_NONE;
    /* The single-threaded result. */
    CHECK_OK(attn_set_num_threads(1));
    memcpy(want, c0, cb);
    CHECK_OK(attn_gemm_packed(ATTN_NO_TRANS, M, 1.0f, A, K, pb, -1.5f, want, N, epi, bias));
    args[t] = (conc_arg){pb, M, N, K, A, bias, C, c0, want, epi, quick ? 4 : 20, 0, ATTN_OK};
  }
  /* Two library threads, so each call tries the pool (one of the two gets it at a time). */
  CHECK_OK(attn_set_num_threads(2));
  pthread_t th[2];
  int made[2];
  for (int t = 0; t < 2; t++) {
    made[t] = pthread_create(&th[t], NULL, conc_worker, &args[t]) == 0;
    CHECK(made[t], "pthread_create failed");
  }
  for (int t = 0; t < 2; t++) {
    if (!made[t]) continue;
    pthread_join(th[t], NULL);
    CHECK(args[t].st == ATTN_OK, "concurrent thread %d: %s", t, attn_status_str(args[t].st));
    CHECK(args[t].mismatches == 0, "concurrent thread %d: %d of %d results differ from 1 thread", t,
          args[t].mismatches, args[t].reps);
  }
  for (int t = 0; t < 2; t++)
    for (int k = 0; k < 4; k++) free(bufs[t][k]);
  attn_gemm_packed_free(pb);
  free(B);
  free(bias);
}

/* attn__gemm_packed_rows: every row reaches the epilogue exactly once, with all of its columns
 * final (equal to attn_gemm's row), for one column tile (N = 384) and for several (K = 384,
 * N = 1536: two tiles under the L2 budget, the multi-tile completion count) and a long K (1536,
 * one tile per K block), 1 to 3 threads. */
typedef struct row_epi_ctx {
  const float *want; /* attn_gemm's C */
  int64_t N;
  atomic_int *seen; /* per row */
  atomic_int bad;
} row_epi_ctx;

static void row_epi_check(void *ctxp, float *c, int64_t ldc, int64_t row0, int64_t m) {
  row_epi_ctx *x = ctxp;
  for (int64_t r = 0; r < m; r++) {
    atomic_fetch_add(&x->seen[row0 + r], 1);
    if (memcmp(c + r * ldc, x->want + (row0 + r) * x->N, (size_t)x->N * sizeof(float)) != 0)
      atomic_fetch_add(&x->bad, 1);
    c[r * ldc] += 1.0f; /* the epilogue's writes stay */
  }
}

static void test_row_epilogue(void) {
  static const int64_t shapes[3][2] = {{384, 384}, {384, 1536}, {1536, 384}}; /* K, N */
  /* 701 rows: on several threads the row tiles are even tiles then a tail of short ones, and at
   * K = 1536 (16-panel tiles, tail pieces of 4) both parts are there */
  const int64_t rows[2] = {quick ? 61 : 203, 701};
  for (int ik = 0; ik < 6; ik++) {
    const int64_t K = shapes[ik % 3][0], N = shapes[ik % 3][1], M = rows[ik / 3];
    float *A = malloc((size_t)(M * K) * sizeof(float)), *B = malloc((size_t)(N * K) * sizeof(float));
    float *want = malloc((size_t)(M * N) * sizeof(float)), *C = malloc((size_t)(M * N) * sizeof(float));
    atomic_int *seen = malloc((size_t)M * sizeof(atomic_int));
    t_rng rng = t_rng_make(77 + (uint64_t)K);
    for (int64_t i = 0; i < M * K; i++) A[i] = t_uniform(&rng, -1, 1);
    for (int64_t i = 0; i < N * K; i++) B[i] = t_uniform(&rng, -1, 1);
    attn_gemm_packed_b *pb = NULL;
    CHECK_OK(attn_gemm_pack_b(&pb, ATTN_TRANS, K, N, B, K));
    for (int th = 1; th <= 3 && pb; th++) {
      CHECK_OK(attn_set_num_threads(th));
      CHECK_OK(attn_gemm(ATTN_ROW_MAJOR, ATTN_NO_TRANS, ATTN_TRANS, M, N, K, 1.0f, A, K, B, K, 0.0f,
                         want, N));
      for (int64_t i = 0; i < M; i++) atomic_init(&seen[i], 0);
      row_epi_ctx x = {want, N, seen, 0};
      atomic_init(&x.bad, 0);
      CHECK_OK(attn__gemm_packed_rows(ATTN_NO_TRANS, M, 1.0f, A, K, pb, 0.0f, C, N, row_epi_check, &x));
      int64_t twice = 0;
      for (int64_t i = 0; i < M; i++) twice += atomic_load(&seen[i]) != 1;
      CHECK(twice == 0, "K=%lld threads=%d: %lld rows not seen exactly once", (long long)K, th,
            (long long)twice);
      CHECK(atomic_load(&x.bad) == 0, "K=%lld threads=%d: %d rows not final in the epilogue",
            (long long)K, th, atomic_load(&x.bad));
      CHECK(C[0] == want[0] + 1.0f && C[(M - 1) * N] == want[(M - 1) * N] + 1.0f,
            "K=%lld threads=%d: the epilogue's writes were lost", (long long)K, th);
    }
    attn_gemm_packed_free(pb);
    free(A), free(B), free(want), free(C), free(seen);
  }
}

/* The micro-kernel that reads a full panel of a row-major A in place (arch->ukernel_rows) gives
 * bitwise what the packed micro-kernel gives on the same panel packed, and so does the small
 * kernel (arch->ukernel_small) on the panel's first m <= small_mr rows (it writes no other row): K lengths around the
 * vector width and the K blocks, lda equal to K, padded and long (rows 6 KB apart), every column
 * count of the last panel, alpha and beta (beta = 0 over a NaN C), a few infinities and NaNs in A.
 * A is allocated to its last element, so under AddressSanitizer a read past row MR - 1 or column
 * kc - 1 is caught; columns of C past n and the padding past ldc stay untouched. */
static float *alloc64(int64_t n) { /* packed panels are read with aligned loads */
  return aligned_alloc(64, ((size_t)n * sizeof(float) + 63) / 64 * 64);
}

static void test_a_in_place(void) {
  const attn__sgemm_arch *arches[1];
  int n_arch = 0;
#if ATTN_X86
  if (attn_cpu_supports(ATTN_ISA_AVX512)) arches[n_arch++] = &attn__sgemm_arch_avx512;
#endif
  if (n_arch == 0) printf("test_gemm_packed: no micro-kernel reads A in place here, skipped\n");
  static const int64_t kcs[] = {1, 2, 15, 16, 17, 100, 192, 256};
  static const float ip_alpha[] = {1.0f, -0.75f}, ip_beta[] = {0.0f, 1.0f, 0.5f};
  t_rng rng = t_rng_make(2026);
  int checked = 0;
  for (int ai = 0; ai < n_arch; ai++) {
    const attn__sgemm_arch *arch = arches[ai];
    CHECK(arch->ukernel_rows != NULL && arch->pack_a != NULL, "arch without ukernel_rows");
    if (!arch->ukernel_rows || !arch->pack_a) continue;
    const int64_t mr = arch->mr, nr = arch->nr;
    for (size_t ki = 0; ki < sizeof kcs / sizeof kcs[0]; ki++) {
      const int64_t kc = kcs[ki];
      const int64_t ldas[3] = {kc, kc + 3, 1536};
      for (int li = 0; li < 3; li++) {
        const int64_t lda = ldas[li], a_len = (mr - 1) * lda + kc;
        float *A = malloc((size_t)a_len * sizeof(float));
        float *panel = alloc64(mr * kc);
        float *bp = alloc64(kc * nr);
        for (int64_t i = 0; i < a_len; i++) A[i] = t_uniform(&rng, -2, 2);
        A[t_int(&rng, 0, a_len - 1)] = INFINITY;
        A[t_int(&rng, 0, a_len - 1)] = NAN;
        for (int64_t i = 0; i < kc * nr; i++) bp[i] = t_uniform(&rng, -1, 1);
        arch->pack_a(false, A, lda, 0, mr, 0, kc, panel);
        const int64_t ldc = nr + 5;
        float *c0 = malloc((size_t)(mr * ldc) * sizeof(float));
        float *c_packed = malloc((size_t)(mr * ldc) * sizeof(float));
        float *c_place = malloc((size_t)(mr * ldc) * sizeof(float));
        for (int64_t n = 1; n <= nr; n++)
          for (int x = 0; x < 2; x++)
            for (int y = 0; y < 3; y++)
              for (int load = 0; load < 2; load++) {
                const float beta = ip_beta[y];
                const bool load_c = load == 1 && beta != 0.0f;
                for (int64_t i = 0; i < mr * ldc; i++)
                  c0[i] = load_c ? t_uniform(&rng, -1, 1) : NAN;
                memcpy(c_packed, c0, (size_t)(mr * ldc) * sizeof(float));
                memcpy(c_place, c0, (size_t)(mr * ldc) * sizeof(float));
                arch->ukernel(kc, panel, bp, c_packed, ldc, mr, n, ip_alpha[x], beta, load_c);
                arch->ukernel_rows(kc, A, lda, bp, c_place, ldc, n, ip_alpha[x], beta, load_c);
                bool same = memcmp(c_packed, c_place, (size_t)(mr * ldc) * sizeof(float)) == 0;
                /* The small kernel on the first m rows of the same panel: those rows bitwise,
                 * the rest of C untouched. */
                if (arch->ukernel_small && li == 0) {
                  const int64_t m = 1 + (n - 1) % arch->small_mr;
                  memcpy(c_place, c0, (size_t)(mr * ldc) * sizeof(float));
                  arch->ukernel_small(kc, panel, bp, c_place, ldc, m, n, ip_alpha[x], beta, load_c);
                  CHECK(memcmp(c_place, c_packed, (size_t)(m * ldc) * sizeof(float)) == 0 &&
                            memcmp(c_place + m * ldc, c0 + m * ldc,
                                   (size_t)((mr - m) * ldc) * sizeof(float)) == 0,
                        "kc=%lld m=%lld n=%lld alpha=%g beta=%g load_c=%d: the small kernel "
                        "differs from the full one", (long long)kc, (long long)m, (long long)n,
                        (double)ip_alpha[x], (double)beta, (int)load_c);
                  memcpy(c_place, c0, (size_t)(mr * ldc) * sizeof(float));
                  arch->ukernel_rows(kc, A, lda, bp, c_place, ldc, n, ip_alpha[x], beta, load_c);
                }
                bool frame = true;
                for (int64_t i = 0; i < mr; i++)
                  for (int64_t j = n; j < ldc; j++)
                    frame = frame && memcmp(&c_place[i * ldc + j], &c0[i * ldc + j], 4) == 0;
                CHECK(same, "kc=%lld lda=%lld n=%lld alpha=%g beta=%g load_c=%d: in place differs "
                      "from packed", (long long)kc, (long long)lda, (long long)n,
                      (double)ip_alpha[x], (double)beta, (int)load_c);
                CHECK(frame, "kc=%lld lda=%lld n=%lld: columns past n written", (long long)kc,
                      (long long)lda, (long long)n);
                checked++;
              }
        free(c0), free(c_packed), free(c_place), free(A);
        free(panel), free(bp);
      }
    }
  }
  if (n_arch) CHECK(checked > 0, "no in-place case ran");
}

int main(void) {
  const char *q = getenv("ATTN_TEST_QUICK");
  quick = q && *q && strcmp(q, "0") != 0;
  for (int isa = ATTN_ISA_SCALAR; isa <= ATTN_ISA_AVX512; isa++) {
    if (attn_cpu_supports((attn_isa)isa))
      isas[n_isas++] = (attn_isa)isa;
    else
      printf("test_gemm_packed: %s not supported on this CPU, skipped\n",
             attn_isa_name((attn_isa)isa));
  }
  const attn_isa best = attn_get_isa();
  const int threads0 = attn_get_num_threads();
  test_bytes_free();
  test_bad_pack();
  test_bad_run();
  test_degenerate();
  test_alloc();
  CHECK_OK(attn_set_isa(best));
  test_concurrent();
  test_isa_fixed(best);
  test_shapes();
  CHECK_OK(attn_set_isa(best));
  test_row_epilogue();
  test_a_in_place();
  CHECK_OK(attn_set_num_threads(threads0));
  return t_finish("test_gemm_packed");
}
