/* Golden test of a pre-LN Transformer block, forward and backward, against the independent numpy
 * float64 reference of scripts/nn_block_golden.py (fixture tests/fixtures/nn_block_golden.safetensors;
 * regenerate with `python3 scripts/nn_block_golden.py` from the repository root).
 *
 * The block (dim 16, 2 heads, GELU MLP 32, causal, key lengths [5, 3]) is built with
 * attn_nn_block_init, its parameters loaded by name, run in f32 on the fixture's x, and
 * backpropagated from the fixture's dy. Tolerance, per tensor t against reference r:
 * max |t - r| <= 3e-5 * max(1, max |r|). The f32 round-off through ~10 ops measures ~2e-6 here;
 * the reference's own finite-difference error is ~1e-9. */
#include "attn/nn.h"
#include "attn/safetensors.h"
#include "common.h"

static char fixture_path[4096];

static void locate_fixture(void) {
  const char *file = __FILE__;
  const char *slash = strrchr(file, '/');
  int dir_len = slash ? (int)(slash - file) : 1;
  snprintf(fixture_path, sizeof fixture_path, "%.*s/fixtures/nn_block_golden.safetensors", dir_len,
           slash ? file : ".");
}

/* Copies tensor `name` (F64) of f into dst (n floats); false if missing or of another size. */
static bool read_f64(const attn_st_file *f, const char *name, float *dst, int64_t n) {
  const attn_st_tensor *t = attn_st_find(f, name);
  if (!t || t->dtype != ATTN_ST_F64 || attn_st_numel(t) != n) return false;
  for (int64_t i = 0; i < n; i++) {
    double d;
    memcpy(&d, (const char *)t->data + 8 * i, 8);
    dst[i] = (float)d;
  }
  return true;
}

static void compare(const char *what, const float *got, const attn_st_file *f, const char *name, int64_t n) {
  float *want = malloc((size_t)n * sizeof(float));
  CHECK(read_f64(f, name, want, n), "fixture lacks %s", name);
  double max_ref = 0, max_err = 0;
  for (int64_t i = 0; i < n; i++) {
    max_ref = fmax(max_ref, fabs(want[i]));
    max_err = fmax(max_err, fabs((double)got[i] - want[i]));
  }
  const double tol = 3e-5 * fmax(1.0, max_ref);
  CHECK(max_err <= tol, "%s: max error %.3g > %.3g (max |ref| %.3g)", what, max_err, tol, max_ref);
  free(want);
}

int main(void) {
  locate_fixture();
  attn_st_file *f = NULL;
  CHECK_OK(attn_st_open(&f, fixture_path));
  if (!f) return t_finish("test_nn_golden");
  enum { B = 2, N = 5, D = 16 };
  const int32_t key_lens[B] = {5, 3};

  attn_nn_params ps = {0};
  attn_nn_block blk;
  CHECK_OK(attn_nn_block_init(&blk, D, 2, 32, ATTN_NN_ACT_GELU, 1, &ps));
  char name[256];
  for (int64_t i = 0; i < ps.n; i++) {
    snprintf(name, sizeof name, "param.%s", ps.names[i]);
    CHECK(read_f64(f, name, ps.items[i]->data, ps.items[i]->numel), "load %s", name);
  }
  static float x[B * N * D], dy[B * N * D];
  CHECK(read_f64(f, "x", x, B * N * D) && read_f64(f, "dy", dy, B * N * D), "x, dy");

  attn_nn_ctx *ctx = attn_nn_ctx_new();
  attn_var *xv = attn_nn_tensor(ctx, 3, (const int64_t[]){B, N, D}, x, 1);
  attn_var *y = attn_nn_block_forward(ctx, &blk, xv, 1, key_lens);
  CHECK(y != NULL, "forward: %s", attn_nn_ctx_error(ctx));
  if (y) {
    compare("y", y->data, f, "y", B * N * D);
    CHECK_OK(attn_backward_from(y, dy));
    compare("grad x", xv->grad, f, "grad.x", B * N * D);
    for (int64_t i = 0; i < ps.n; i++) {
      snprintf(name, sizeof name, "grad.%s", ps.names[i]);
      compare(name, ps.items[i]->grad, f, name, ps.items[i]->numel);
    }
  }
  attn_nn_ctx_free(ctx);
  attn_nn_block_free(&blk);
  attn_nn_params_clear(&ps);
  attn_st_close(f);
  return t_finish("test_nn_golden");
}
