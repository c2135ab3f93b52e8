/* Parameter names and safetensors checkpoints of the training layer: the names a block gives its
 * parameters, a bit-exact save/load round trip, strict all-or-nothing loading, malformed files. */
#include "attn/nn.h"
#include "attn/safetensors.h"
#include "common.h"

#include <unistd.h>

#define S(...) ((const int64_t[]){__VA_ARGS__})

static void tmp_path(char *buf, size_t n, const char *tag) {
  snprintf(buf, n, "/tmp/attn_nn_ckpt_%ld_%s.safetensors", (long)getpid(), tag);
}

static void test_names(void) {
  attn_nn_params ps = {0};
  attn_nn_block blk;
  CHECK_OK(attn_nn_block_init(&blk, 8, 2, 16, ATTN_NN_ACT_GELU, 1, &ps));
  CHECK_OK(attn_nn_params_prefix(&ps, 0, "blocks.0"));
  static const char *want[] = {
      "blocks.0.ln1.gamma", "blocks.0.ln1.beta", "blocks.0.attn.wq.weight", "blocks.0.attn.wq.bias",
      "blocks.0.attn.wk.weight", "blocks.0.attn.wk.bias", "blocks.0.attn.wv.weight", "blocks.0.attn.wv.bias",
      "blocks.0.attn.wo.weight", "blocks.0.attn.wo.bias", "blocks.0.ln2.gamma", "blocks.0.ln2.beta",
      "blocks.0.mlp.fc1.weight", "blocks.0.mlp.fc1.bias", "blocks.0.mlp.fc2.weight", "blocks.0.mlp.fc2.bias"};
  CHECK(ps.n == 16, "block has %lld parameters", (long long)ps.n);
  for (int64_t i = 0; i < ps.n && i < 16; i++) CHECK(strcmp(ps.names[i], want[i]) == 0, "name %lld: %s", (long long)i, ps.names[i]);
  CHECK(attn_nn_params_find(&ps, "blocks.0.mlp.fc2.bias") == blk.mlp.fc2.b, "find");
  CHECK(attn_nn_params_find(&ps, "nope") == NULL, "find missing");
  CHECK(attn_nn_params_numel(&ps) == 2 * 8 + 4 * (64 + 8) + 2 * 8 + (16 * 8 + 16) + (8 * 16 + 8), "numel %lld",
        (long long)attn_nn_params_numel(&ps));
  attn_nn_block_free(&blk);
  attn_nn_params_clear(&ps);
}

static void fill(attn_nn_params *ps, uint64_t seed) {
  for (int64_t i = 0; i < ps->n; i++) attn_nn_init_normal(ps->items[i], 0, 1, seed + (uint64_t)i);
}

static void test_round_trip(void) {
  char path[256];
  tmp_path(path, sizeof path, "rt");
  attn_nn_params a = {0}, b = {0};
  attn_nn_block ba, bb;
  CHECK_OK(attn_nn_block_init(&ba, 8, 2, 16, ATTN_NN_ACT_RELU, 1, &a));
  CHECK_OK(attn_nn_block_init(&bb, 8, 2, 16, ATTN_NN_ACT_RELU, 2, &b));
  fill(&a, 100);
  const char *meta[2] = {"format", "attn-nn"};
  CHECK_OK(attn_nn_save(path, &a, meta, 1));
  CHECK_OK(attn_nn_load(path, &b));
  for (int64_t i = 0; i < a.n; i++)
    CHECK(memcmp(a.items[i]->data, b.items[i]->data, (size_t)a.items[i]->numel * 4) == 0, "tensor %s differs", a.names[i]);
  attn_st_file *f = NULL;
  CHECK_OK(attn_st_open(&f, path));
  CHECK(f && attn_st_metadata(f, "format") && strcmp(attn_st_metadata(f, "format"), "attn-nn") == 0, "metadata");
  attn_st_close(f);

  /* A model with one more parameter: the file lacks it; nothing may change. */
  fill(&b, 7);
  float keep = b.items[0]->data[0];
  attn_var *extra = attn_nn_param_new(1, S(3), "extra");
  CHECK_OK(attn_nn_params_add(&b, extra));
  CHECK_STATUS(attn_nn_load(path, &b), ATTN_STATUS_INVALID_ARGUMENT);
  CHECK(strstr(attn_last_error(), "extra") != NULL, "message names the missing tensor: %s", attn_last_error());
  CHECK(b.items[0]->data[0] == keep, "failed load changed a parameter");
  attn_nn_params_truncate(&b, b.n - 1);
  attn_nn_param_free(extra);

  /* A model with one parameter fewer: the file has a tensor the model lacks. */
  attn_var *last = b.items[b.n - 1];
  attn_nn_params_truncate(&b, b.n - 1);
  CHECK_STATUS(attn_nn_load(path, &b), ATTN_STATUS_INVALID_ARGUMENT);
  CHECK(b.items[0]->data[0] == keep, "failed load changed a parameter");
  CHECK_OK(attn_nn_params_add_named(&b, last, a.names[a.n - 1]));

  /* Another shape under the same name. */
  attn_nn_params c = {0};
  attn_nn_block bc;
  CHECK_OK(attn_nn_block_init(&bc, 8, 2, 24, ATTN_NN_ACT_RELU, 3, &c));
  CHECK_STATUS(attn_nn_load(path, &c), ATTN_STATUS_SHAPE_MISMATCH);
  attn_nn_block_free(&bc);
  attn_nn_params_clear(&c);

  /* Truncated and garbage files are errors, not crashes. */
  FILE *in = fopen(path, "rb");
  fseek(in, 0, SEEK_END);
  long size = ftell(in);
  fseek(in, 0, SEEK_SET);
  unsigned char *bytes = malloc((size_t)size);
  CHECK(fread(bytes, 1, (size_t)size, in) == (size_t)size, "read back");
  fclose(in);
  char bad[256];
  tmp_path(bad, sizeof bad, "bad");
  const long cuts[4] = {0, 5, 20, size - 1};
  for (int i = 0; i < 4; i++) {
    FILE *out = fopen(bad, "wb");
    fwrite(bytes, 1, (size_t)cuts[i], out);
    fclose(out);
    attn_status st = attn_nn_load(bad, &b);
    CHECK(st == ATTN_STATUS_INVALID_ARGUMENT || st == ATTN_STATUS_OVERFLOW, "cut at %ld: %s", cuts[i], attn_status_str(st));
  }
  CHECK(attn_nn_load("/nonexistent/dir/x.safetensors", &b) != ATTN_OK, "missing file");
  remove(bad);
  free(bytes);

  /* Duplicate names cannot be saved. */
  attn_nn_params d = {0};
  CHECK_OK(attn_nn_params_add_named(&d, a.items[0], "same"));
  CHECK_OK(attn_nn_params_add_named(&d, a.items[1], "same"));
  CHECK_STATUS(attn_nn_save(bad, &d, NULL, 0), ATTN_STATUS_INVALID_ARGUMENT);
  attn_nn_params_clear(&d);

  remove(path);
  attn_nn_block_free(&ba);
  attn_nn_block_free(&bb);
  attn_nn_params_clear(&a);
  attn_nn_params_clear(&b);
}

/* F16 tensors load through conversion. */
static void test_f16_load(void) {
  char path[256];
  tmp_path(path, sizeof path, "f16");
  uint16_t h[3] = {attn_f32_to_f16(1.5f), attn_f32_to_f16(-2.0f), attn_f32_to_f16(0.25f)};
  attn_st_tensor t = {.name = "w", .dtype = ATTN_ST_F16, .ndim = 1, .shape = {3}, .data = h, .nbytes = 6};
  CHECK_OK(attn_st_write(path, &t, 1, NULL, 0));
  attn_nn_params ps = {0};
  attn_var *w = attn_nn_param_new(1, S(3), "w");
  CHECK_OK(attn_nn_params_add(&ps, w));
  CHECK_OK(attn_nn_load(path, &ps));
  CHECK(w->data[0] == 1.5f && w->data[1] == -2.0f && w->data[2] == 0.25f, "f16 values");
  attn_nn_params_free_all(&ps);
  remove(path);
}

int main(void) {
  test_names();
  test_round_trip();
  test_f16_load();
  return t_finish("test_nn_ckpt");
}
