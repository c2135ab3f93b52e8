/* The vectorised LayerNorm row of the BERT encoder (src/cpu/layernorm.c): against LayerNorm in
 * double, on every ISA the CPU has, for lengths around the 16-lane blocking (tails of every size);
 * every ISA gives the same bits (layernorm.h promises it: no fused multiply-add, one summation
 * order); the bias is added as if in a separate pass; a constant row gives b exactly. */
#include "../src/cpu/layernorm.h"
#include "common.h"

/* float32 LayerNorm has error ~ n ulp of the sums relative to the row's spread; the check is
 * relative to max |y| of the row. */
#define TOL 2e-6

/* LayerNorm in double of v = x + bias (the sum rounded to float, as the kernel stores it). */
static void ref_ln(double *y, const float *x, const float *bias, const float *g, const float *b,
                   int64_t n, double eps) {
  double mean = 0, var = 0;
  for (int64_t i = 0; i < n; i++) mean += bias ? (double)(float)(x[i] + bias[i]) : (double)x[i];
  mean /= (double)n;
  for (int64_t i = 0; i < n; i++) {
    const double v = bias ? (double)(float)(x[i] + bias[i]) : (double)x[i];
    var += (v - mean) * (v - mean);
  }
  var /= (double)n;
  for (int64_t i = 0; i < n; i++) {
    const double v = bias ? (double)(float)(x[i] + bias[i]) : (double)x[i];
    y[i] = (v - mean) / sqrt(var + eps) * g[i] + b[i];
  }
}

int main(void) {
  const attn_isa isas[] = {ATTN_ISA_SCALAR, ATTN_ISA_AVX2, ATTN_ISA_AVX512};
  const attn_isa best = attn_get_isa();
  const int64_t lens[] = {1, 2, 15, 16, 17, 31, 32, 33, 100, 384, 385, 399, 768, 1024};
  const int n_lens = (int)(sizeof lens / sizeof lens[0]);
  t_rng rng = t_rng_make(7);
  for (int li = 0; li < n_lens; li++) {
    const int64_t n = lens[li];
    float *x = malloc((size_t)n * sizeof(float)), *bias = malloc((size_t)n * sizeof(float));
    float *g = malloc((size_t)n * sizeof(float)), *b = malloc((size_t)n * sizeof(float));
    float *y[3] = {0}, *yb = malloc((size_t)n * sizeof(float)), *ysep = malloc((size_t)n * sizeof(float));
    double *ref = malloc((size_t)n * sizeof(double)), *refb = malloc((size_t)n * sizeof(double));
    for (int64_t i = 0; i < n; i++) {
      x[i] = (float)(3.0 * t_normal(&rng) + 0.7); /* an offset mean, as residual sums have */
      bias[i] = (float)(0.1 * t_normal(&rng));
      g[i] = (float)(1.0 + 0.2 * t_normal(&rng));
      b[i] = (float)(0.05 * t_normal(&rng));
    }
    const float eps = 1e-12f;
    ref_ln(ref, x, NULL, g, b, n, eps);
    ref_ln(refb, x, bias, g, b, n, eps);
    for (int k = 0; k < 3; k++) {
      if (!attn_cpu_supports(isas[k])) continue;
      CHECK_OK(attn_set_isa(isas[k]));
      const char *name = attn_isa_name(isas[k]);
      y[k] = malloc((size_t)n * sizeof(float));
      memcpy(y[k], x, (size_t)n * sizeof(float));
      attn__layer_norm_row(y[k], NULL, g, b, n, eps);
      memcpy(yb, x, (size_t)n * sizeof(float));
      attn__layer_norm_row(yb, bias, g, b, n, eps);
      /* the bias as a separate pass first: the same bits */
      for (int64_t i = 0; i < n; i++) ysep[i] = x[i] + bias[i];
      attn__layer_norm_row(ysep, NULL, g, b, n, eps);
      double scale = 0, err = 0, scaleb = 0, errb = 0;
      for (int64_t i = 0; i < n; i++) {
        scale = fmax(scale, fabs(ref[i]));
        scaleb = fmax(scaleb, fabs(refb[i]));
      }
      for (int64_t i = 0; i < n; i++) {
        err = fmax(err, fabs(y[k][i] - ref[i]));
        errb = fmax(errb, fabs(yb[i] - refb[i]));
      }
      /* n = 1: var 0, y = b exactly */
      CHECK(err <= TOL * fmax(scale, 1e-30), "%s n=%lld: error %.3g of %.3g", name, (long long)n, err, scale);
      CHECK(errb <= TOL * fmax(scaleb, 1e-30), "%s n=%lld bias: error %.3g of %.3g", name, (long long)n, errb, scaleb);
      CHECK(memcmp(yb, ysep, (size_t)n * sizeof(float)) == 0, "%s n=%lld: fused bias differs from a separate add", name, (long long)n);
      if (k > 0 && y[0])
        CHECK(memcmp(y[k], y[0], (size_t)n * sizeof(float)) == 0, "%s n=%lld: differs from scalar", name, (long long)n);
    }
    /* A constant row: x - mean is 0 exactly, so y = b whatever g is. */
    for (int64_t i = 0; i < n; i++) yb[i] = 2.5f;
    CHECK_OK(attn_set_isa(best));
    attn__layer_norm_row(yb, NULL, g, b, n, eps);
    CHECK(memcmp(yb, b, (size_t)n * sizeof(float)) == 0, "n=%lld: constant row is not b", (long long)n);
    for (int k = 0; k < 3; k++) free(y[k]);
    free(x), free(bias), free(g), free(b), free(yb), free(ysep), free(ref), free(refb);
  }
  CHECK_OK(attn_set_isa(best));
  return t_finish("test_layernorm");
}
