/* The alignment and additive attention ops and layers of the training layer (attn/nn.h, issue 4):
 *
 *   - finite-difference gradient checks of attn_nn_align for every kind (softmax with a
 *     temperature and a mask holding a fully blocked row, sigmoid, straight-through hardmax against
 *     the softmax's differences, exact hardmax (zero), sparsemax, entmax-1.5, alpha-entmax by
 *     bisection), local-m, and local-p including d/dp_t; of attn_nn_additive_attention in every
 *     input and parameter with a mask and a fully masked row; of the Bahdanau and Luong layers
 *     (global, local-m, local-p with key lengths);
 *   - the ops' values against the kernels' references, and the returned weights;
 *   - bad inputs: each returns its status and names the argument;
 *   - a failing allocator at every allocation of init + forward + backward leaks nothing;
 *   - training (see each test for its bars): an attention-pooling classifier on a seeded synthetic
 * task (the label is the token after a marker), trained with softmax, sparsemax, entmax-1.5 and the
 * fused additive layer (300 Adam steps of 64), must reach >= 95 % accuracy on 1000 fresh sequences,
 * while the same model with uniform weights stays below 60 %; Luong local-p learns its centres
 * through d/dp_t; a GRU encoder-decoder with the Bahdanau layer (RNNsearch) learns to reverse.
 *
 * Gradient checks: L = sum_i r_i y_i with a fixed random r, accumulated in double; analytic from
 * attn_backward_from(y, r); numeric (L(x + h) - L(x - h)) / (x+h - x-h) with the step actually
 * representable in f32. Tolerance |analytic - numeric| <= 3e-3 + 3e-2 |numeric| per element, as in
 * test_nn_grad. Piecewise-linear maps (sparsemax, and local-p windows moving with p_t) may meet a
 * kink: up to two elements per case may match a one-sided difference instead. */
#include "attn/additive.h"
#include "attn/align.h"
#include "nn_gradcheck.h"

#define MAX_IN 8
#define MAX_PROBE 40

#define S(...) ((const int64_t[]){__VA_ARGS__})

static t_rng rng;
static attn_nn_ctx *ctx;
static bool quick; /* ATTN_TEST_QUICK: the RNNsearch run trains 60 steps and checks the loss */

/* ---- gradient checker (tests/nn_gradcheck.h) ---- */

static double gradcheck(gc_case *c) {
  return gc_check(ctx, &rng, c, MAX_PROBE);
}
static attn_var *run_forward(gc_case *c, build_fn f, attn_var **vars) {
  return gc_run_forward(ctx, c, f, vars);
}
static gc_input *host_in(gc_case *c, int ndim, const int64_t *shape, float lo, float hi, bool wrt) {
  return gc_host_in(c, &rng, ndim, shape, lo, hi, wrt);
}

static void params_in(gc_case *c, const attn_nn_params *ps, int64_t first) {
  for (int64_t i = first; i < ps->n && c->n_in < MAX_IN; i++) {
    gc_input *g = &c->in[c->n_in++];
    memset(g, 0, sizeof *g);
    g->param = ps->items[i];
    g->wrt = true;
  }
}

#define case_free gc_case_free

/* Perturbs parameters that init to constants (biases) so the check is not at a special point. */
static void jitter(const attn_nn_params *ps) {
  for (int64_t i = 0; i < ps->n; i++)
    for (int64_t j = 0; j < ps->items[i]->numel; j++)
      ps->items[i]->data[j] += t_uniform(&rng, -0.3f, 0.3f);
}

/* ---- the align op ---- */

/* arg: attn_align_params. in[0] x, in[1] mask (constant), in[2] positions (LOCAL_P). */
static attn_var *b_align(attn_nn_ctx *cx, attn_var **in, void *arg) {
  const attn_align_params *p = arg;
  return attn_nn_align(cx, in[0], in[1], p, p->local == ATTN_ALIGN_LOCAL_P ? in[2] : NULL);
}
/* The same rows through the softmax with the hardmax's temperature: the straight-through
 * hardmax's backward is this function's gradient. */
static attn_var *b_align_as_softmax(attn_nn_ctx *cx, attn_var **in, void *arg) {
  attn_align_params p = *(const attn_align_params *)arg;
  p.kind = ATTN_ALIGN_SOFTMAX;
  p.straight_through = 0;
  return attn_nn_align(cx, in[0], in[1], &p, NULL);
}

/* x (2, 3, 7) with a mask (3, 7) broadcast over the batch: row 1 fully blocked, two more blocked
 * entries elsewhere. Scores are spread out (spacing >= 0.05) so argmax and supports do not
 * change within a step. */
static void align_case(const char *name, attn_align_params p, build_fn numeric, float h,
                       bool kinks) {
  gc_case c = {
      .name = name, .build = b_align, .numeric = numeric, .arg = &p, .h = h, .allow_kinks = kinks};
  gc_input *x = host_in(&c, 3, S(2, 3, 7), -2, 2, true);
  for (int64_t r = 0; r < 6; r++) {
    /* A random permutation of a spread grid per row. */
    for (int j = 0; j < 7; j++)
      x->data[r * 7 + j] = -1.5f + 0.5f * (float)j + t_uniform(&rng, -0.1f, 0.1f);
    for (int j = 6; j > 0; j--) {
      const int k = (int)t_int(&rng, 0, j);
      const float t = x->data[r * 7 + j];
      x->data[r * 7 + j] = x->data[r * 7 + k];
      x->data[r * 7 + k] = t;
    }
  }
  gc_input *m = host_in(&c, 2, S(3, 7), 0, 0, false);
  for (int j = 0; j < 7; j++) m->data[7 + j] = -INFINITY;
  m->data[2] = -INFINITY;
  m->data[14 + 5] = -INFINITY;
  host_in(&c, 1, S(1), 0, 0, false); /* unused positions slot */
  gradcheck(&c);
  /* The fully blocked row gives zeros. */
  attn_var *vars[MAX_IN];
  attn_var *y = run_forward(&c, b_align, vars);
  bool zero = y != NULL;
  for (int b = 0; y && b < 2; b++)
    for (int j = 0; j < 7; j++) zero = zero && y->data[(b * 3 + 1) * 7 + j] == 0.0f;
  CHECK(zero, "%s: the fully blocked row must be 0", name);
  case_free(&c);
}

/* x (2, 6, 9), window 2. LOCAL_M: centres t = 0..5. LOCAL_P: positions (2, 6) with fractional
 * parts in [0.15, 0.35], away from the rounding boundary, so the window is fixed within a step;
 * d/dp is checked. */
static void local_case(const char *name, attn_align_params p) {
  gc_case c = {.name = name, .build = b_align, .arg = &p, .h = 1e-2f};
  host_in(&c, 3, S(2, 6, 9), -1.5f, 1.5f, true);
  host_in(&c, 3, S(1, 1, 9), 0, 0, false);
  gc_input *pos = host_in(&c, 2, S(2, 6), 0, 0, p.local == ATTN_ALIGN_LOCAL_P);
  for (int64_t r = 0; r < 12; r++)
    pos->data[r] = (float)t_int(&rng, 0, 8) + t_uniform(&rng, 0.15f, 0.35f);
  const double big = gradcheck(&c);
  CHECK(big > 1e-3, "%s: gradients are all ~0", name);
  if (p.local == ATTN_ALIGN_LOCAL_P) {
    /* d/dp itself must be nonzero somewhere (the Gaussian factor's path). */
    attn_var *vars[MAX_IN];
    attn_var *y = run_forward(&c, b_align, vars);
    float *ones = malloc((size_t)y->numel * sizeof(float));
    for (int64_t i = 0; i < y->numel; i++) ones[i] = (float)(i % 5) - 2.0f;
    CHECK_OK(attn_backward_from(y, ones));
    double s = 0;
    for (int64_t i = 0; vars[2]->grad && i < vars[2]->numel; i++) s += fabs(vars[2]->grad[i]);
    CHECK(s > 1e-3, "%s: d/dp_t is zero", name);
    free(ones);
  }
  case_free(&c);
}

static void test_align_grads(void) {
  attn_align_params p = attn_align_params_default();
  p.temperature = 0.7f;
  align_case("align softmax T=0.7 masked", p, NULL, 0, false);
  p = attn_align_params_default();
  p.kind = ATTN_ALIGN_SIGMOID;
  align_case("align sigmoid masked", p, NULL, 0, false);
  p = attn_align_params_default();
  p.kind = ATTN_ALIGN_HARDMAX;
  p.straight_through = 1;
  p.temperature = 1.3f;
  align_case("align hardmax straight-through (vs softmax differences)", p, b_align_as_softmax, 0,
             false);
  p.straight_through = 0;
  align_case("align hardmax exact (zero gradient)", p, NULL, 0, false);
  p = attn_align_params_default();
  p.kind = ATTN_ALIGN_SPARSEMAX;
  align_case("align sparsemax masked", p, NULL, 1e-3f, true);
  p.kind = ATTN_ALIGN_ENTMAX15;
  p.temperature = 0.8f;
  align_case("align entmax-1.5 masked", p, NULL, 1e-3f, false);
  p = attn_align_params_default();
  p.kind = ATTN_ALIGN_ENTMAX_BISECT;
  p.alpha = 1.3f;
  align_case("align entmax bisection alpha=1.3", p, NULL, 1e-3f, false);
  p.alpha = 2.0f;
  align_case("align entmax bisection alpha=2", p, NULL, 1e-3f, true);

  p = attn_align_params_default();
  p.local = ATTN_ALIGN_LOCAL_M;
  p.window = 2;
  local_case("align local-m softmax D=2", p);
  p.kind = ATTN_ALIGN_ENTMAX15;
  local_case("align local-m entmax-1.5 D=2", p);
  p = attn_align_params_default();
  p.local = ATTN_ALIGN_LOCAL_P;
  p.window = 2;
  local_case("align local-p softmax D=2 (x and p_t)", p);
  p.window = 3;
  p.kind = ATTN_ALIGN_SPARSEMAX;
  p.temperature = 0.5f;
  local_case("align local-p sparsemax D=3 (x and p_t)", p);
}

/* The op's values equal the kernel reference's, and the backward into x equals
 * attn_align_backward_ref's (the op accumulates; a fresh leaf starts at 0). */
static void test_align_values(void) {
  attn_align_params p = attn_align_params_default();
  p.kind = ATTN_ALIGN_ENTMAX15;
  p.local = ATTN_ALIGN_LOCAL_P;
  p.window = 2;
  float x[4 * 10], pos[4], y_ref[40], g[40], dx_ref[40], dp_ref[4];
  for (int i = 0; i < 40; i++) {
    x[i] = t_uniform(&rng, -2, 2);
    g[i] = t_uniform(&rng, -1, 1);
  }
  for (int r = 0; r < 4; r++) pos[r] = 1.3f + 2.1f * (float)r;
  attn_nn_ctx_reset(ctx);
  attn_var *vx = attn_nn_tensor(ctx, 2, S(4, 10), x, 1);
  attn_var *vp = attn_nn_tensor(ctx, 2, S(4, 1), pos, 1);
  attn_var *y = attn_nn_align(ctx, vx, NULL, &p, vp);
  CHECK(y != NULL, "align local-p entmax: %s", attn_nn_ctx_error(ctx));
  if (!y) return;
  attn_align_params pr = p;
  pr.positions = pos;
  attn_tensor tx = attn_tensor_make(x, ATTN_DTYPE_F32, 2, S(4, 10)),
              ty = attn_tensor_make(y_ref, ATTN_DTYPE_F32, 2, S(4, 10));
  CHECK_OK(attn_align_forward_ref(&ty, &tx, NULL, &pr));
  double e = 0;
  for (int i = 0; i < 40; i++) e = fmax(e, fabs(y->data[i] - y_ref[i]));
  CHECK(e < 1e-5, "align op vs reference: max error %g", e);
  CHECK_OK(attn_backward_from(y, g));
  attn_tensor tg = attn_tensor_make(g, ATTN_DTYPE_F32, 2, S(4, 10)),
              tdx = attn_tensor_make(dx_ref, ATTN_DTYPE_F32, 2, S(4, 10));
  CHECK_OK(attn_align_backward_ref(&tdx, dp_ref, &tg, &ty, &tx, NULL, &pr));
  double ex = 0, ep = 0;
  for (int i = 0; i < 40; i++) ex = fmax(ex, fabs(vx->grad[i] - dx_ref[i]));
  for (int r = 0; r < 4; r++) ep = fmax(ep, fabs(vp->grad[r] - dp_ref[r]));
  CHECK(ex < 1e-5 && ep < 1e-5, "align op backward vs reference: dx %g dp %g", ex, ep);
}

/* ---- the additive op ---- */

static attn_var *b_additive(attn_nn_ctx *cx, attn_var **in, void *arg) {
  return attn_nn_additive_attention(cx, in[0], in[1], in[2], in[3], arg ? in[4] : NULL, in[5],
                                    NULL);
}

static void test_additive(void) {
  /* B 2, Tq 3, Tk 5, d 4, Dv 3. Mask (2, 3, 5): row (1, 2) fully blocked, keys blocked here and
   * there. */
  for (int with_b = 0; with_b < 2; with_b++) {
    gc_case c = {.name = with_b ? "additive op (q1, k2, v, w, b; masked)" : "additive op without b",
                 .build = b_additive,
                 .arg = with_b ? (void *)1 : NULL};
    host_in(&c, 3, S(2, 3, 4), -1, 1, true);
    host_in(&c, 3, S(2, 5, 4), -1, 1, true);
    host_in(&c, 3, S(2, 5, 3), -1, 1, true);
    host_in(&c, 1, S(4), -1.5f, 1.5f, true);
    host_in(&c, 1, S(4), -0.5f, 0.5f, with_b != 0);
    gc_input *m = host_in(&c, 3, S(2, 3, 5), 0, 0, false);
    for (int j = 0; j < 5; j++) m->data[(1 * 3 + 2) * 5 + j] = -INFINITY;
    m->data[1] = m->data[5 + 4] = m->data[15 + 0] = -INFINITY;
    gradcheck(&c);
    case_free(&c);
  }
  /* Values and weights against the reference, mask broadcast (1, 1, Tk) -> (B, Tq, Tk). */
  float q1[2 * 3 * 4], k2[2 * 5 * 4], v[2 * 5 * 3], w[4], b[4], mk[5] = {0, -INFINITY, 0, 0, 0};
  float out_ref[18], lse_ref[6], wt_ref[30];
  for (int i = 0; i < 24; i++) q1[i] = t_uniform(&rng, -1, 1);
  for (int i = 0; i < 40; i++) k2[i] = t_uniform(&rng, -1, 1);
  for (int i = 0; i < 30; i++) v[i] = t_uniform(&rng, -1, 1);
  for (int i = 0; i < 4; i++) w[i] = t_uniform(&rng, -1, 1), b[i] = t_uniform(&rng, -1, 1);
  attn_nn_ctx_reset(ctx);
  attn_var *vq = attn_nn_tensor(ctx, 3, S(2, 3, 4), q1, 1),
           *vk = attn_nn_tensor(ctx, 3, S(2, 5, 4), k2, 0);
  attn_var *vv = attn_nn_tensor(ctx, 3, S(2, 5, 3), v, 0), *vw = attn_nn_tensor(ctx, 1, S(4), w, 0);
  attn_var *vb = attn_nn_tensor(ctx, 1, S(4), b, 0), *vm = attn_nn_tensor(ctx, 1, S(5), mk, 0);
  attn_var *wt = NULL;
  attn_var *out = attn_nn_additive_attention(ctx, vq, vk, vv, vw, vb, vm, &wt);
  CHECK(out && wt, "additive op with weights: %s", attn_nn_ctx_error(ctx));
  if (!out || !wt) return;
  attn_tensor tq = attn_tensor_make(q1, ATTN_DTYPE_F32, 3, S(2, 3, 4)),
              tk = attn_tensor_make(k2, ATTN_DTYPE_F32, 3, S(2, 5, 4));
  attn_tensor tv = attn_tensor_make(v, ATTN_DTYPE_F32, 3, S(2, 5, 3)),
              tw = attn_tensor_make(w, ATTN_DTYPE_F32, 1, S(4));
  attn_tensor tb = attn_tensor_make(b, ATTN_DTYPE_F32, 1, S(4)),
              tm = attn_tensor_make(mk, ATTN_DTYPE_F32, 3, S(1, 1, 5));
  attn_tensor to = attn_tensor_make(out_ref, ATTN_DTYPE_F32, 3, S(2, 3, 3)),
              tl = attn_tensor_make(lse_ref, ATTN_DTYPE_F32, 2, S(2, 3));
  attn_tensor twt = attn_tensor_make(wt_ref, ATTN_DTYPE_F32, 3, S(2, 3, 5));
  attn_additive_params ap = attn_additive_params_default();
  ap.mask = &tm;
  CHECK_OK(attn_additive_forward_ref(&to, &tl, &twt, &tq, &tk, &tv, &tw, &tb, &ap));
  double eo = 0, ew = 0;
  for (int i = 0; i < 18; i++) eo = fmax(eo, fabs(out->data[i] - out_ref[i]));
  for (int i = 0; i < 30; i++) ew = fmax(ew, fabs(wt->data[i] - wt_ref[i]));
  CHECK(eo < 1e-5 && ew < 1e-5, "additive op vs reference: out %g weights %g", eo, ew);
  CHECK(!wt->requires_grad && wt->node == NULL, "returned weights carry no gradient");
  for (int r = 0; r < 6; r++) CHECK(wt->data[r * 5 + 1] == 0.0f, "blocked key has weight 0");
}

/* ---- layers ---- */

typedef struct layer_arg {
  const void *layer;
  const int32_t *key_lens;
} layer_arg;

static attn_var *b_bahdanau(attn_nn_ctx *cx, attn_var **in, void *arg) {
  const layer_arg *a = arg;
  return attn_nn_bahdanau_forward(cx, a->layer, in[0], in[1], in[2], a->key_lens, NULL);
}
static attn_var *b_luong(attn_nn_ctx *cx, attn_var **in, void *arg) {
  const layer_arg *a = arg;
  return attn_nn_luong_forward(cx, a->layer, in[0], in[1], a->key_lens, NULL);
}

/* Keys past key_lens are blocked: NaN in their rows of keys / values (Bahdanau) or hs (Luong)
 * must not reach the output or any gradient (DESIGN.md). Batch 0 has 4 of its 6 keys; the run
 * with NaN in keys 4 and 5 must match the run with finite values there (1e-6 relative). */
static void test_nan_padding_layers(void) {
  const int32_t lens[2] = {4, 6};
  for (int which = 0; which < 2; which++) {
    attn_nn_params ps = {0};
    attn_nn_bahdanau bl;
    attn_nn_luong ll;
    memset(&ll, 0, sizeof ll);
    if (which == 0) {
      CHECK_OK(attn_nn_bahdanau_init(&bl, 3, 4, 5, 21, &ps));
    } else {
      attn_nn_luong_config cfg = attn_nn_luong_config_default(3, 4);
      cfg.out_dim = 3;
      CHECK_OK(attn_nn_luong_init(&ll, &cfg, 22, &ps));
    }
    jitter(&ps);
    float h[2 * 3 * 3], k[2 * 6 * 4], v[2 * 6 * 2], r[64];
    for (int i = 0; i < 18; i++) h[i] = t_uniform(&rng, -1, 1);
    for (int i = 0; i < 48; i++) k[i] = t_uniform(&rng, -1, 1);
    for (int i = 0; i < 24; i++) v[i] = t_uniform(&rng, -1, 1);
    for (int i = 0; i < 64; i++) r[i] = t_uniform(&rng, -1, 1);
    float *res[2] = {NULL, NULL};
    int64_t nres = 0;
    for (int poisoned = 0; poisoned < 2; poisoned++) {
      if (poisoned)
        for (int t = 4; t < 6; t++) {
          for (int c = 0; c < 4; c++) k[t * 4 + c] = NAN;
          for (int c = 0; c < 2; c++) v[t * 2 + c] = NAN;
        }
      for (int64_t i = 0; i < ps.n; i++) attn_nn_zero_grad(ps.items[i]);
      attn_nn_ctx_reset(ctx);
      attn_var *vh = attn_nn_tensor(ctx, 3, S(2, 3, 3), h, 1);
      attn_var *vk = attn_nn_tensor(ctx, 3, S(2, 6, 4), k, 1);
      attn_var *vv = attn_nn_tensor(ctx, 3, S(2, 6, 2), v, 1);
      attn_var *y = which == 0 ? attn_nn_bahdanau_forward(ctx, &bl, vh, vk, vv, lens, NULL)
                               : attn_nn_luong_forward(ctx, &ll, vh, vk, lens, NULL);
      CHECK(y != NULL, "%s: %s", which ? "Luong" : "Bahdanau", attn_nn_ctx_error(ctx));
      if (!y) break;
      CHECK_OK(attn_backward_from(y, r));
      int64_t n = y->numel + vh->numel;
      for (int64_t i = 0; i < ps.n; i++) n += ps.items[i]->numel;
      float *o = res[poisoned] = malloc((size_t)n * sizeof(float));
      memcpy(o, y->data, (size_t)y->numel * sizeof(float));
      o += y->numel;
      memcpy(o, vh->grad, (size_t)vh->numel * sizeof(float));
      o += vh->numel;
      for (int64_t i = 0; i < ps.n; i++) {
        memcpy(o, ps.items[i]->grad, (size_t)ps.items[i]->numel * sizeof(float));
        o += ps.items[i]->numel;
      }
      nres = n;
    }
    if (res[0] && res[1]) {
      int64_t bad = 0;
      for (int64_t i = 0; i < nres; i++)
        bad += !(isfinite(res[1][i]) &&
                 fabsf(res[0][i] - res[1][i]) <= 1e-6f * (1.0f + fabsf(res[0][i])));
      CHECK(bad == 0, "%s: %lld of %lld values and gradients moved by NaN at blocked keys",
            which ? "Luong" : "Bahdanau", (long long)bad, (long long)nres);
    }
    free(res[0]);
    free(res[1]);
    if (which == 0)
      attn_nn_bahdanau_free(&bl);
    else
      attn_nn_luong_free(&ll);
    attn_nn_params_clear(&ps);
  }
}

static void test_layers(void) {
  {
    attn_nn_params ps = {0};
    attn_nn_bahdanau l;
    CHECK_OK(attn_nn_bahdanau_init(&l, 3, 4, 5, 11, &ps));
    CHECK(ps.n == 4 && attn_nn_params_find(&ps, "w1.weight") &&
              attn_nn_params_find(&ps, "w2.weight") && attn_nn_params_find(&ps, "w") &&
              attn_nn_params_find(&ps, "b"),
          "Bahdanau parameter names");
    jitter(&ps);
    const int32_t lens[2] = {4, 0};
    layer_arg a = {&l, lens};
    gc_case c = {.name = "Bahdanau layer (key_lens 4, 0)", .build = b_bahdanau, .arg = &a};
    host_in(&c, 3, S(2, 3, 3), -1, 1, true);
    host_in(&c, 3, S(2, 6, 4), -1, 1, true);
    host_in(&c, 3, S(2, 6, 2), -1, 1, true);
    params_in(&c, &ps, 0);
    gradcheck(&c);
    case_free(&c);
    attn_nn_bahdanau_free(&l);
    attn_nn_params_clear(&ps);
  }
  struct {
    const char *name;
    attn_nn_luong_score score;
    attn_align_kind kind;
    attn_align_local local;
    int64_t window, out_dim, qd;
    bool lens, kinks;
  } cases[] = {
      {"Luong general softmax + W_c", ATTN_NN_LUONG_GENERAL, ATTN_ALIGN_SOFTMAX,
       ATTN_ALIGN_LOCAL_NONE, 0, 3, 3, true, false},
      {"Luong dot sparsemax local-m", ATTN_NN_LUONG_DOT, ATTN_ALIGN_SPARSEMAX, ATTN_ALIGN_LOCAL_M,
       2, 0, 4, false, true},
      {"Luong general softmax local-p", ATTN_NN_LUONG_GENERAL, ATTN_ALIGN_SOFTMAX,
       ATTN_ALIGN_LOCAL_P, 2, 0, 3, false, true},
      {"Luong general entmax-1.5 local-p, key_lens + W_c", ATTN_NN_LUONG_GENERAL,
       ATTN_ALIGN_ENTMAX15, ATTN_ALIGN_LOCAL_P, 3, 2, 3, true, true},
  };
  for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
    attn_nn_params ps = {0};
    attn_nn_luong l;
    attn_nn_luong_config cfg = attn_nn_luong_config_default(cases[k].qd, 4);
    cfg.score = cases[k].score;
    cfg.align.kind = cases[k].kind;
    cfg.align.local = cases[k].local;
    cfg.align.window = cases[k].window;
    cfg.out_dim = cases[k].out_dim;
    CHECK_OK(attn_nn_luong_init(&l, &cfg, 21 + k, &ps));
    const int32_t lens[2] = {5, 3};
    layer_arg a = {&l, cases[k].lens ? lens : NULL};
    /* S = 6 keeps p_t = S sigmoid(z) near 3 (z small), away from a rounding boundary. */
    gc_case c = {.name = cases[k].name, .build = b_luong, .arg = &a, .allow_kinks = cases[k].kinks};
    host_in(&c, 3, S(2, 4, cases[k].qd), -1, 1, true);
    host_in(&c, 3, S(2, 6, 4), -1, 1, true);
    params_in(&c, &ps, 0);
    const double big = gradcheck(&c);
    CHECK(big > 1e-3, "%s: gradients are all ~0", cases[k].name);
    if (cases[k].local == ATTN_ALIGN_LOCAL_P) {
      /* The predictor trains: W_p and v_p get gradients through p_t. */
      double s = 0;
      for (int64_t i = 0; i < l.vp.w->numel; i++) s += fabs(l.vp.w->grad[i]);
      CHECK(s > 1e-4, "%s: v_p has no gradient", cases[k].name);
    }
    case_free(&c);
    attn_nn_luong_free(&l);
    attn_nn_params_clear(&ps);
  }
}

/* ---- bad inputs ---- */

#define EXPECT_FAIL(expr, want, needle)                                                            \
  do {                                                                                             \
    attn_nn_ctx_reset(ctx);                                                                        \
    setup;                                                                                         \
    attn_var *r_ = (expr);                                                                         \
    CHECK(                                                                                         \
        r_ == NULL && attn_nn_ctx_status(ctx) == (want) && strstr(attn_nn_ctx_error(ctx), needle), \
        "%s: got %s (%s), want %s naming '%s'", #expr, attn_status_str(attn_nn_ctx_status(ctx)),   \
        attn_nn_ctx_error(ctx), attn_status_str(want), needle);                                    \
  } while (0)

static void test_bad_inputs(void) {
  attn_var *x, *m, *p, *q, *k, *v, *w;
#define setup                                                    \
  x = attn_nn_tensor(ctx, 2, S(3, 5), NULL, 1);                  \
  m = attn_nn_tensor(ctx, 2, S(2, 5), NULL, 0);                  \
  p = attn_nn_tensor(ctx, 1, S(3), (const float[]){1, 2, 3}, 1); \
  q = attn_nn_tensor(ctx, 3, S(2, 3, 4), NULL, 1);               \
  k = attn_nn_tensor(ctx, 3, S(2, 5, 4), NULL, 1);               \
  v = attn_nn_tensor(ctx, 3, S(2, 5, 2), NULL, 1);               \
  w = attn_nn_tensor(ctx, 1, S(4), NULL, 1)
  attn_align_params lp = attn_align_params_default();
  lp.local = ATTN_ALIGN_LOCAL_P;
  lp.window = 1;
  attn_align_params bad_t = attn_align_params_default();
  bad_t.temperature = 0.0f;
  attn_align_params bad_kind = attn_align_params_default();
  bad_kind.kind = (attn_align_kind)42;
  EXPECT_FAIL(attn_nn_align(ctx, x, NULL, &lp, NULL), ATTN_STATUS_NULL_POINTER, "positions");
  EXPECT_FAIL(attn_nn_align(ctx, x, NULL, NULL, p), ATTN_STATUS_INVALID_ARGUMENT, "positions");
  EXPECT_FAIL(attn_nn_align(ctx, x, NULL, &lp, q), ATTN_STATUS_SHAPE_MISMATCH, "positions");
  EXPECT_FAIL(attn_nn_align(ctx, x, m, NULL, NULL), ATTN_STATUS_SHAPE_MISMATCH, "mask");
  EXPECT_FAIL(attn_nn_align(ctx, x, NULL, &bad_t, NULL), ATTN_STATUS_INVALID_ARGUMENT,
              "temperature");
  EXPECT_FAIL(attn_nn_align(ctx, x, NULL, &bad_kind, NULL), ATTN_STATUS_INVALID_ARGUMENT, "kind");
  EXPECT_FAIL(attn_nn_align(ctx, NULL, NULL, NULL, NULL), ATTN_STATUS_NULL_POINTER, "input 0");
  EXPECT_FAIL(attn_nn_align(ctx, attn_nn_reshape(ctx, x, 5, S(1, 1, 1, 3, 5)), NULL, NULL, NULL),
              ATTN_STATUS_SHAPE_MISMATCH, "1 to 4 dims");
  /* p = 30 puts the window outside a row of 5: the kernel's error, named. */
  {
    attn_nn_ctx_reset(ctx);
    setup;
    p->data[1] = 30.0f;
    CHECK(attn_nn_align(ctx, x, NULL, &lp, p) == NULL &&
              attn_nn_ctx_status(ctx) == ATTN_STATUS_INVALID_ARGUMENT,
          "window outside the sequence: %s", attn_nn_ctx_error(ctx));
  }
  EXPECT_FAIL(attn_nn_additive_attention(ctx, x, k, v, w, NULL, NULL, NULL),
              ATTN_STATUS_SHAPE_MISMATCH, "3-d");
  EXPECT_FAIL(attn_nn_additive_attention(ctx, q, k, q, w, NULL, NULL, NULL),
              ATTN_STATUS_SHAPE_MISMATCH, "v");
  EXPECT_FAIL(attn_nn_additive_attention(ctx, q, k, v, x, NULL, NULL, NULL),
              ATTN_STATUS_SHAPE_MISMATCH, "w");
  EXPECT_FAIL(attn_nn_additive_attention(ctx, q, k, v, w, NULL, m, NULL),
              ATTN_STATUS_SHAPE_MISMATCH, "mask");
  EXPECT_FAIL(attn_nn_additive_attention(ctx, q, k, v, NULL, NULL, NULL, NULL),
              ATTN_STATUS_NULL_POINTER, "input 3");
  /* Sticky: after an error every op returns NULL and the first error stays. */
  {
    attn_nn_ctx_reset(ctx);
    setup;
    attn_nn_align(ctx, x, NULL, &lp, NULL);
    CHECK(attn_nn_additive_attention(ctx, q, k, v, w, NULL, NULL, NULL) == NULL &&
              attn_nn_ctx_status(ctx) == ATTN_STATUS_NULL_POINTER,
          "errors are sticky");
  }
#undef setup
  /* Layers. */
  attn_nn_bahdanau bl;
  CHECK_STATUS(attn_nn_bahdanau_init(NULL, 1, 1, 1, 0, NULL), ATTN_STATUS_NULL_POINTER);
  CHECK_STATUS(attn_nn_bahdanau_init(&bl, 3, 0, 4, 0, NULL), ATTN_STATUS_INVALID_ARGUMENT);
  CHECK(bl.w == NULL && bl.w1.w == NULL, "failed init leaves the layer empty");
  attn_nn_luong ll;
  attn_nn_luong_config cfg = attn_nn_luong_config_default(3, 4);
  cfg.score = ATTN_NN_LUONG_DOT;
  CHECK_STATUS(attn_nn_luong_init(&ll, &cfg, 0, NULL), ATTN_STATUS_INVALID_ARGUMENT);
  CHECK(strstr(attn_last_error(), "dot"), "names the dot score: %s", attn_last_error());
  cfg = attn_nn_luong_config_default(3, 4);
  cfg.align.local = ATTN_ALIGN_LOCAL_P;
  cfg.align.window = 0;
  CHECK_STATUS(attn_nn_luong_init(&ll, &cfg, 0, NULL), ATTN_STATUS_INVALID_ARGUMENT);
  CHECK(strstr(attn_last_error(), "window"), "names the window: %s", attn_last_error());
  CHECK_STATUS(attn_nn_luong_init(&ll, NULL, 0, NULL), ATTN_STATUS_NULL_POINTER);

  attn_nn_params ps = {0};
  CHECK_OK(attn_nn_bahdanau_init(&bl, 4, 4, 3, 1, &ps));
  CHECK_OK(attn_nn_luong_init(
      &ll,
      &(attn_nn_luong_config){.query_dim = 4, .key_dim = 4, .align = attn_align_params_default()},
      1, &ps));
  const int32_t bad_lens[2] = {2, 6};
  attn_nn_ctx_reset(ctx);
  q = attn_nn_tensor(ctx, 3, S(2, 3, 4), NULL, 1);
  k = attn_nn_tensor(ctx, 3, S(2, 5, 4), NULL, 1);
  CHECK(attn_nn_bahdanau_forward(ctx, &bl, q, k, NULL, bad_lens, NULL) == NULL &&
            attn_nn_ctx_status(ctx) == ATTN_STATUS_INVALID_ARGUMENT &&
            strstr(attn_nn_ctx_error(ctx), "key_lens[1]"),
        "Bahdanau key_lens out of range: %s", attn_nn_ctx_error(ctx));
  attn_nn_ctx_reset(ctx);
  q = attn_nn_tensor(ctx, 3, S(2, 3, 5), NULL, 1);
  k = attn_nn_tensor(ctx, 3, S(2, 5, 4), NULL, 1);
  CHECK(attn_nn_luong_forward(ctx, &ll, q, k, NULL, NULL) == NULL &&
            attn_nn_ctx_status(ctx) == ATTN_STATUS_SHAPE_MISMATCH,
        "Luong h width: %s", attn_nn_ctx_error(ctx));
  attn_nn_bahdanau_free(&bl);
  attn_nn_luong_free(&ll);
  attn_nn_params_clear(&ps);
}

/* ---- failing allocator ---- */

/* Init both layers, then one forward + backward through every new op (align of each kind,
 * additive, Bahdanau, Luong local-p). */
static attn_status alloc_run(void *arg) {
  (void)arg;
  attn_nn_params ps = {0};
  attn_nn_bahdanau bl;
  attn_nn_luong ll;
  memset(&ll, 0, sizeof ll);
  attn_nn_ctx *cx = NULL;
  attn_status st = attn_nn_bahdanau_init(&bl, 3, 4, 5, 1, &ps);
  if (st != ATTN_OK) goto done;
  attn_nn_luong_config cfg = attn_nn_luong_config_default(3, 4);
  cfg.align.kind = ATTN_ALIGN_ENTMAX15;
  cfg.align.local = ATTN_ALIGN_LOCAL_P;
  cfg.align.window = 2;
  cfg.out_dim = 3;
  if ((st = attn_nn_luong_init(&ll, &cfg, 2, &ps)) != ATTN_OK) goto done;
  if (!(cx = attn_nn_ctx_new())) {
    st = ATTN_STATUS_OUT_OF_MEMORY;
    goto done;
  }
  float hq[2 * 3 * 3], hk[2 * 6 * 4];
  for (int i = 0; i < 18; i++) hq[i] = 0.1f * (float)(i % 7) - 0.3f;
  for (int i = 0; i < 48; i++) hk[i] = 0.05f * (float)(i % 11) - 0.25f;
  const int32_t lens[2] = {6, 4};
  attn_var *q = attn_nn_tensor(cx, 3, S(2, 3, 3), hq, 1),
           *k = attn_nn_tensor(cx, 3, S(2, 6, 4), hk, 1);
  attn_var *y1 = attn_nn_bahdanau_forward(cx, &bl, q, k, NULL, lens, NULL);
  attn_var *y2 = attn_nn_luong_forward(cx, &ll, q, k, lens, NULL);
  attn_var *loss =
      attn_nn_add(cx, attn_nn_sum_all(cx, attn_nn_mul(cx, y1, y1)), attn_nn_sum_all(cx, y2));
  for (int kind = 0; kind <= ATTN_ALIGN_ENTMAX_BISECT; kind++) {
    attn_align_params p = attn_align_params_default();
    p.kind = (attn_align_kind)kind;
    p.straight_through = 1;
    attn_var *a = attn_nn_align(cx, attn_nn_reshape(cx, k, 2, S(12, 4)), NULL, &p, NULL);
    loss = attn_nn_add(cx, loss, attn_nn_sum_all(cx, attn_nn_mul(cx, a, a)));
  }
  if (!loss) {
    st = attn_nn_ctx_status(cx);
    goto done;
  }
  st = attn_backward(loss);
done:
  attn_nn_ctx_free(cx);
  attn_nn_bahdanau_free(&bl);
  attn_nn_luong_free(&ll);
  attn_nn_params_clear(&ps);
  return st;
}

static void test_failing_allocator(void) {
  CHECK_OK(alloc_run(NULL));
  int64_t total = t_alloc_sweep("nn align", alloc_run, NULL, 5000);
  printf("failing-allocator sweep: %lld allocation points, each failed once, nothing leaked\n",
         (long long)total);
  CHECK(total > 10, "allocation points %lld", (long long)total);
}

/* ---- training ---- */

/* The task: sequences of TR_T tokens over {0..3 (classes), 4 (noise), 5 (marker)}; one marker at
 * a random position m < TR_T - 1, the label is the token after it (0..3); the other tokens are
 * random in 0..4. Features of position j: one_hot(x_j) ++ one_hot(x_{j-1}) (a start symbol
 * for j = 0). Attention must find the position whose predecessor is the marker: the same model
 * with uniform weights (mean pooling, a softmax at temperature 1e6) is the control and must stay
 * below 60 %. */
#define TR_T 8
#define TR_V 6
#define TR_F (2 * TR_V + 1)
#define TR_C 4
#define TR_D 16
#define TR_B 64

static void tr_batch(t_rng *r, int64_t B, float *feat, int32_t *label) {
  memset(feat, 0, (size_t)(B * TR_T * TR_F) * sizeof(float));
  for (int64_t b = 0; b < B; b++) {
    int tok[TR_T];
    const int m = (int)t_int(r, 0, TR_T - 2);
    for (int j = 0; j < TR_T; j++) tok[j] = (int)t_int(r, 0, 4);
    tok[m] = 5;
    tok[m + 1] = (int)t_int(r, 0, TR_C - 1);
    label[b] = tok[m + 1];
    for (int j = 0; j < TR_T; j++) {
      float *f = feat + (b * TR_T + j) * TR_F;
      f[tok[j]] = 1.0f;
      f[TR_V + (j ? tok[j - 1] : TR_V)] = 1.0f;
    }
  }
}

typedef struct tr_model {
  attn_nn_params ps;
  attn_nn_linear_layer wk, wv, out;
  attn_var *u; /* (D, 1): the learned query */
  attn_nn_bahdanau add;
  int additive;
  attn_align_params align;
} tr_model;

static attn_status tr_init(tr_model *m, int additive, attn_align_kind kind, uint64_t seed) {
  memset(m, 0, sizeof *m);
  m->additive = additive;
  m->align = attn_align_params_default();
  m->align.kind = kind;
  attn_status st = attn_nn_linear_init(&m->wv, TR_F, TR_D, 1, seed, &m->ps);
  if (st == ATTN_OK) st = attn_nn_linear_init(&m->out, TR_D, TR_C, 1, seed + 1, &m->ps);
  if (st == ATTN_OK && additive)
    st = attn_nn_bahdanau_init(&m->add, 1, TR_F, TR_D, seed + 2, &m->ps);
  if (st == ATTN_OK && !additive) {
    st = attn_nn_linear_init(&m->wk, TR_F, TR_D, 0, seed + 3, &m->ps);
    m->u = st == ATTN_OK ? attn_nn_param_new(2, S(TR_D, 1), "u") : NULL;
    if (st == ATTN_OK && !m->u) st = ATTN_STATUS_OUT_OF_MEMORY;
    if (st == ATTN_OK) {
      attn_nn_init_normal(m->u, 0.0f, 0.1f, seed + 4);
      st = attn_nn_params_add(&m->ps, m->u);
    }
  }
  return st;
}

static void tr_free(tr_model *m) {
  attn_nn_linear_free(&m->wk);
  attn_nn_linear_free(&m->wv);
  attn_nn_linear_free(&m->out);
  attn_nn_bahdanau_free(&m->add);
  attn_nn_param_free(m->u);
  attn_nn_params_clear(&m->ps);
}

/* logits (B, TR_C). */
static attn_var *tr_forward(attn_nn_ctx *cx, const tr_model *m, const float *feat, int64_t B) {
  attn_var *f = attn_nn_tensor(cx, 3, S(B, TR_T, TR_F), feat, 0);
  attn_var *v = attn_nn_linear_forward(cx, &m->wv, f), *c;
  if (m->additive) {
    /* A constant query of ones: W1 (D, 1) is the learned query vector. */
    c = attn_nn_bahdanau_forward(cx, &m->add, attn_nn_full(cx, 3, S(B, 1, 1), 1.0f), f, v, NULL,
                                 NULL);
  } else {
    attn_var *e =
        attn_nn_matmul(cx, attn_nn_linear_forward(cx, &m->wk, f), m->u, 0, 0); /* (B, T, 1) */
    attn_var *a =
        attn_nn_align(cx, attn_nn_reshape(cx, e, 3, S(B, 1, TR_T)), NULL, &m->align, NULL);
    c = attn_nn_matmul(cx, a, v, 0, 0); /* (B, 1, D) */
  }
  return attn_nn_linear_forward(cx, &m->out, attn_nn_reshape(cx, c, 2, S(B, TR_D)));
}

static void test_training(void) {
  static const struct {
    const char *name;
    int additive;
    attn_align_kind kind;
    float temperature;
  } runs[] = {{"softmax", 0, ATTN_ALIGN_SOFTMAX, 1.0f},
              {"sparsemax", 0, ATTN_ALIGN_SPARSEMAX, 1.0f},
              {"entmax-1.5", 0, ATTN_ALIGN_ENTMAX15, 1.0f},
              {"additive (fused Bahdanau layer)", 1, ATTN_ALIGN_SOFTMAX, 1.0f},
              {"control: uniform weights (T=1e6)", 0, ATTN_ALIGN_SOFTMAX, 1e6f}};
  const int steps = 300, n_test = 1000;
  float *feat = malloc((size_t)n_test * TR_T * TR_F * sizeof(float));
  int32_t *label = malloc((size_t)n_test * sizeof(int32_t));
  for (size_t k = 0; k < sizeof runs / sizeof runs[0]; k++) {
    tr_model m;
    CHECK_OK(tr_init(&m, runs[k].additive, runs[k].kind, 77));
    m.align.temperature = runs[k].temperature;
    attn_nn_optim_config oc = attn_nn_optim_config_default(ATTN_NN_OPTIM_ADAM);
    oc.lr = 0.02f;
    attn_nn_optim *opt = attn_nn_optim_new(&oc, &m.ps);
    attn_nn_ctx *cx = attn_nn_ctx_new();
    t_rng data = t_rng_make(1000 + k);
    float first = 0, last = 0;
    for (int s = 0; s < steps; s++) {
      tr_batch(&data, TR_B, feat, label);
      attn_nn_ctx_reset(cx);
      attn_nn_params_zero_grad(&m.ps);
      attn_var *loss = attn_nn_cross_entropy(cx, tr_forward(cx, &m, feat, TR_B), label, -100, 0.0f);
      CHECK(loss != NULL, "%s: step %d: %s", runs[k].name, s, attn_nn_ctx_error(cx));
      if (!loss) break;
      if (s == 0) first = loss->data[0];
      last = loss->data[0];
      CHECK_OK(attn_backward(loss));
      CHECK_OK(attn_nn_optim_step(opt));
    }
    /* Accuracy on fresh sequences from another stream. */
    t_rng test = t_rng_make(99);
    tr_batch(&test, n_test, feat, label);
    attn_nn_ctx_reset(cx);
    attn_nn_set_grad_enabled(cx, 0);
    attn_var *logits = tr_forward(cx, &m, feat, n_test);
    int correct = 0;
    for (int64_t i = 0; logits && i < n_test; i++) {
      int best = 0;
      for (int c = 1; c < TR_C; c++)
        if (logits->data[i * TR_C + c] > logits->data[i * TR_C + best]) best = c;
      correct += best == label[i];
    }
    const double acc = (double)correct / n_test;
    printf("training %-32s %d steps of %d: loss %.3f -> %.3f, test accuracy %.1f %%\n",
           runs[k].name, steps, TR_B, first, last, 100.0 * acc);
    if (runs[k].temperature > 1.0f) /* mean pooling must fail, or the task proves nothing */
      CHECK(acc < 0.6, "%s: test accuracy %.3f: the task does not need attention", runs[k].name,
            acc);
    else
      CHECK(acc >= 0.95, "%s: test accuracy %.3f < 0.95", runs[k].name, acc);
    attn_nn_ctx_free(cx);
    attn_nn_optim_free(opt);
    tr_free(&m);
  }
  free(feat);
  free(label);
}

/* Local-p learns where to look: the query is one_hot(k), k in [0, LP_S), the source states are
 * one-hot tokens (no position information), the label is the token at position k. Content scores
 * cannot find k; only the predicted centre p_k = S sigmoid(v_p^T tanh(W_p h)) can, and it trains
 * only through d/dp_t (the Gaussian factor). The untrained centres are unordered and up to 3
 * positions off; after 400 Adam steps they must be in increasing order of k and each within 1.0 of
 * k, and the accuracy must rise by 25 points to >= 50 %. The window is D = S: a target outside
 * the window gets no gradient to p (membership is piecewise constant), and with D = 4 about half
 * the seeds lost one centre that way for good. The best centre is not exactly k: with no
 * renormalisation, moving away from the inner neighbours lowers their weight more than the
 * target's, so the edge centres settle outward (max |p_k - k| ~ 0.84 on every seed tried). The
 * Gaussian of sigma = D/2 = 3 is flat, which caps the accuracy near 56 %. */
#define LP_S 6
#define LP_V 4
#define LP_B 64

static attn_var *lp_forward(attn_nn_ctx *cx, const attn_nn_luong *l,
                            const attn_nn_linear_layer *head, const float *q, const float *src,
                            int64_t B, attn_var **w) {
  attn_var *h = attn_nn_tensor(cx, 3, S(B, 1, LP_S), q, 0),
           *hs = attn_nn_tensor(cx, 3, S(B, LP_S, LP_V), src, 0);
  attn_var *c = attn_nn_luong_forward(cx, l, h, hs, NULL, w);
  return attn_nn_linear_forward(cx, head, attn_nn_reshape(cx, c, 2, S(B, LP_V)));
}

static void lp_batch(t_rng *r, int64_t B, float *q, float *src, int32_t *label, int32_t *target) {
  memset(q, 0, (size_t)(B * LP_S) * sizeof(float));
  memset(src, 0, (size_t)(B * LP_S * LP_V) * sizeof(float));
  for (int64_t b = 0; b < B; b++) {
    const int k = (int)t_int(r, 0, LP_S - 1);
    q[b * LP_S + k] = 1.0f;
    for (int s = 0; s < LP_S; s++) {
      const int tok = (int)t_int(r, 0, LP_V - 1);
      src[(b * LP_S + s) * LP_V + tok] = 1.0f;
      if (s == k) label[b] = tok;
    }
    if (target) target[b] = k;
  }
}

/* The predicted centre of each k and the accuracy on n fresh examples. */
static void lp_eval(attn_nn_ctx *cx, const attn_nn_luong *l, const attn_nn_linear_layer *head,
                    double *max_err, double *acc, bool *ordered) {
  enum { N = 1000 };
  static float q[N * LP_S], src[N * LP_S * LP_V];
  static int32_t label[N], target[N];
  t_rng r = t_rng_make(4242);
  lp_batch(&r, N, q, src, label, target);
  attn_nn_ctx_reset(cx);
  attn_nn_set_grad_enabled(cx, 0);
  attn_var *logits = lp_forward(cx, l, head, q, src, N, NULL);
  int correct = 0;
  for (int64_t i = 0; logits && i < N; i++) {
    int best = 0;
    for (int c = 1; c < LP_V; c++)
      if (logits->data[i * LP_V + c] > logits->data[i * LP_V + best]) best = c;
    correct += best == label[i];
  }
  *acc = (double)correct / N;
  /* p_k from the predictor's parameters: S sigmoid(v_p . tanh(W_p[:, k])). */
  *max_err = 0;
  *ordered = true;
  double prev = 0;
  const int64_t P = l->wp.w->shape[0];
  for (int k = 0; k < LP_S; k++) {
    double z = 0;
    for (int64_t j = 0; j < P; j++) z += l->vp.w->data[j] * tanh(l->wp.w->data[j * LP_S + k]);
    const double p = LP_S / (1.0 + exp(-z));
    *max_err = fmax(*max_err, fabs(p - k));
    if (k > 0 && !(p > prev)) *ordered = false;
    prev = p;
  }
  attn_nn_set_grad_enabled(cx, 1);
}

static void test_training_local_p(void) {
  attn_nn_params ps = {0};
  attn_nn_luong l;
  attn_nn_linear_layer head;
  attn_nn_luong_config cfg = attn_nn_luong_config_default(LP_S, LP_V);
  cfg.align.local = ATTN_ALIGN_LOCAL_P;
  cfg.align.window = LP_S; /* every target always inside the window: see above */
  cfg.pred_dim = 16;
  CHECK_OK(attn_nn_luong_init(&l, &cfg, 5, &ps));
  CHECK_OK(attn_nn_linear_init(&head, LP_V, LP_V, 1, 6, &ps));
  attn_nn_ctx *cx = attn_nn_ctx_new();
  double err0, acc0, err, acc;
  bool ord0, ord;
  lp_eval(cx, &l, &head, &err0, &acc0, &ord0);
  attn_nn_optim_config oc = attn_nn_optim_config_default(ATTN_NN_OPTIM_ADAM);
  oc.lr = 0.01f;
  attn_nn_optim *opt = attn_nn_optim_new(&oc, &ps);
  static float q[LP_B * LP_S], src[LP_B * LP_S * LP_V];
  int32_t label[LP_B];
  t_rng data = t_rng_make(31342);
  const int steps = 400;
  for (int s = 0; s < steps; s++) {
    lp_batch(&data, LP_B, q, src, label, NULL);
    attn_nn_ctx_reset(cx);
    attn_nn_params_zero_grad(&ps);
    attn_var *loss =
        attn_nn_cross_entropy(cx, lp_forward(cx, &l, &head, q, src, LP_B, NULL), label, -100, 0.0f);
    CHECK(loss != NULL, "local-p training step %d: %s", s, attn_nn_ctx_error(cx));
    if (!loss) break;
    CHECK_OK(attn_backward(loss));
    CHECK_OK(attn_nn_optim_step(opt));
  }
  lp_eval(cx, &l, &head, &err, &acc, &ord);
  printf(
      "training Luong local-p (D = S = %d) %d steps of %d: max |p_k - k| %.2f -> %.2f, accuracy "
      "%.1f %% -> %.1f %%\n",
      LP_S, steps, LP_B, err0, err, 100 * acc0, 100 * acc);
  CHECK(err0 > 1.5 && !ord0, "the untrained centres should be far off and unordered");
  CHECK(err < 1.0 && ord, "local-p centres did not learn: max |p_k - k| %.2f -> %.2f, ordered %d",
        err0, err, (int)ord);
  CHECK(acc >= 0.5 && acc > acc0 + 0.25, "local-p accuracy %.3f -> %.3f", acc0, acc);
  attn_nn_optim_free(opt);
  attn_nn_ctx_free(cx);
  attn_nn_luong_free(&l);
  attn_nn_linear_free(&head);
  attn_nn_params_clear(&ps);
}

/* ---- thread determinism ---- */

/* Every gradient of a Bahdanau and a local-p Luong layer and of the align op over several kinds,
 * concatenated into g (returns the count). Shapes large enough to split over the pool. */
static int64_t det_run(float *g, int64_t cap) {
  enum { B = 4, T = 16, SK = 33, DQ = 8, DK = 12 };
  attn_nn_params ps = {0};
  attn_nn_bahdanau bl;
  attn_nn_luong ll;
  CHECK_OK(attn_nn_bahdanau_init(&bl, DQ, DK, 24, 3, &ps));
  attn_nn_luong_config cfg = attn_nn_luong_config_default(DQ, DK);
  cfg.align.kind = ATTN_ALIGN_ENTMAX15;
  cfg.align.local = ATTN_ALIGN_LOCAL_P;
  cfg.align.window = 5;
  CHECK_OK(attn_nn_luong_init(&ll, &cfg, 4, &ps));
  t_rng r = t_rng_make(555);
  static float hq[B * T * DQ], hk[B * SK * DK];
  for (int i = 0; i < B * T * DQ; i++) hq[i] = t_uniform(&r, -1, 1);
  for (int i = 0; i < B * SK * DK; i++) hk[i] = t_uniform(&r, -1, 1);
  const int32_t lens[B] = {33, 20, 1, 30};
  attn_nn_ctx_reset(ctx);
  attn_var *q = attn_nn_tensor(ctx, 3, S(B, T, DQ), hq, 1),
           *k = attn_nn_tensor(ctx, 3, S(B, SK, DK), hk, 1);
  attn_var *loss = attn_nn_add(
      ctx, attn_nn_sum_all(ctx, attn_nn_bahdanau_forward(ctx, &bl, q, k, NULL, lens, NULL)),
      attn_nn_sum_all(ctx, attn_nn_luong_forward(ctx, &ll, q, k, lens, NULL)));
  for (int kind = 0; kind <= ATTN_ALIGN_ENTMAX_BISECT; kind++) {
    attn_align_params p = attn_align_params_default();
    p.kind = (attn_align_kind)kind;
    p.straight_through = 1;
    attn_var *a = attn_nn_align(ctx, attn_nn_reshape(ctx, k, 2, S(B * SK, DK)), NULL, &p, NULL);
    loss = attn_nn_add(ctx, loss, attn_nn_sum_all(ctx, attn_nn_mul(ctx, a, a)));
  }
  CHECK(loss != NULL, "determinism run: %s", attn_nn_ctx_error(ctx));
  int64_t n = 0;
  if (loss && attn_backward(loss) == ATTN_OK) {
    attn_var *vs[2] = {q, k};
    for (int i = 0; i < 2; i++)
      for (int64_t j = 0; j < vs[i]->numel && n < cap; j++) g[n++] = vs[i]->grad[j];
    for (int64_t i = 0; i < ps.n; i++)
      for (int64_t j = 0; j < ps.items[i]->numel && n < cap; j++) g[n++] = ps.items[i]->grad[j];
  }
  attn_nn_bahdanau_free(&bl);
  attn_nn_luong_free(&ll);
  attn_nn_params_clear(&ps);
  return n;
}

static void test_thread_determinism(void) {
  enum { CAP = 1 << 16 };
  static float ref[CAP], got[CAP];
  const int saved = attn_get_num_threads();
  CHECK_OK(attn_set_num_threads(1));
  const int64_t n = det_run(ref, CAP);
  CHECK(n > 1000, "determinism: %lld gradient values", (long long)n);
  for (int threads = 2; threads <= 3; threads++) {
    CHECK_OK(attn_set_num_threads(threads));
    const int64_t m = det_run(got, CAP);
    CHECK(m == n && memcmp(ref, got, (size_t)n * sizeof(float)) == 0,
          "gradients with %d threads differ from 1 thread", threads);
  }
  attn_set_num_threads(saved);
}

/* ---- RNNsearch: a GRU encoder-decoder with the Bahdanau layer ---- */

/* Bahdanau et al. 2015 in small (MECHANISMS.md §11.1): a GRU encoder over the source, a GRU
 * decoder whose attention query is the previous state s_{i-1}, input [emb(y_{i-1}); c_i], output
 * linear([s_i; c_i]). Task: reverse SQ_T tokens of SQ_V. Accuracy is per token, decoded greedily
 * (each prediction fed back) on 500 fresh sequences: >= 92 % after 400 Adam steps of 32 (it
 * reaches 97 %; about 3 s here). With ATTN_TEST_QUICK (the sanitizer run) it trains 60 steps and
 * checks that the loss halves. */
#define SQ_T 5
#define SQ_V 8
#define SQ_E 16
#define SQ_H 24
#define SQ_B 32

typedef struct seq2seq {
  attn_nn_params ps;
  attn_nn_embedding_layer src, tgt; /* tgt has SQ_V + 1 rows: the last is BOS */
  attn_nn_rnn enc, dec;
  attn_nn_bahdanau att;
  attn_nn_linear_layer out;
} seq2seq;

static attn_status sq_init(seq2seq *m) {
  memset(m, 0, sizeof *m);
  attn_status st = attn_nn_embedding_init(&m->src, SQ_V, SQ_E, 1.0f, 1, &m->ps);
  if (st == ATTN_OK) st = attn_nn_embedding_init(&m->tgt, SQ_V + 1, SQ_E, 1.0f, 2, &m->ps);
  if (st == ATTN_OK) st = attn_nn_rnn_init(&m->enc, ATTN_NN_RNN_GRU, SQ_E, SQ_H, 3, &m->ps);
  if (st == ATTN_OK) st = attn_nn_rnn_init(&m->dec, ATTN_NN_RNN_GRU, SQ_E + SQ_H, SQ_H, 4, &m->ps);
  if (st == ATTN_OK) st = attn_nn_bahdanau_init(&m->att, SQ_H, SQ_H, SQ_H, 5, &m->ps);
  if (st == ATTN_OK) st = attn_nn_linear_init(&m->out, 2 * SQ_H, SQ_V, 1, 6, &m->ps);
  return st;
}

static void sq_free(seq2seq *m) {
  attn_nn_embedding_free(&m->src);
  attn_nn_embedding_free(&m->tgt);
  attn_nn_rnn_free(&m->enc);
  attn_nn_rnn_free(&m->dec);
  attn_nn_bahdanau_free(&m->att);
  attn_nn_linear_free(&m->out);
  attn_nn_params_clear(&m->ps);
}

/* logits (B, SQ_T, SQ_V). teacher: the targets fed back (training), or NULL to feed back the
 * argmax (greedy decoding; pred receives it). */
static attn_var *sq_forward(attn_nn_ctx *cx, const seq2seq *m, const int32_t *x,
                            const int32_t *teacher, int32_t *pred, int64_t B) {
  attn_var *h_last = NULL;
  attn_var *enc = attn_nn_rnn_forward(
      cx, &m->enc, attn_nn_embedding_forward(cx, &m->src, x, 2, S(B, SQ_T)), NULL, 0, &h_last);
  attn_var *s = h_last, *steps[SQ_T];
  int32_t *prev = malloc((size_t)B * sizeof(int32_t));
  for (int64_t b = 0; b < B; b++) prev[b] = SQ_V; /* BOS */
  for (int i = 0; i < SQ_T; i++) {
    attn_var *c = attn_nn_bahdanau_forward(cx, &m->att, attn_nn_reshape(cx, s, 3, S(B, 1, SQ_H)),
                                           enc, NULL, NULL, NULL);
    c = attn_nn_reshape(cx, c, 2, S(B, SQ_H));
    attn_var *in[2] = {attn_nn_embedding_forward(cx, &m->tgt, prev, 1, S(B)), c};
    s = attn_nn_rnn_cell(cx, &m->dec, attn_nn_concat(cx, in, 2, 1), s, NULL, NULL);
    attn_var *sc[2] = {s, c};
    attn_var *logits = attn_nn_linear_forward(cx, &m->out, attn_nn_concat(cx, sc, 2, 1));
    steps[i] = attn_nn_reshape(cx, logits, 3, S(B, 1, SQ_V));
    for (int64_t b = 0; b < B; b++) {
      if (teacher) {
        prev[b] = teacher[b * SQ_T + i];
      } else if (logits) {
        int best = 0;
        for (int v = 1; v < SQ_V; v++)
          if (logits->data[b * SQ_V + v] > logits->data[b * SQ_V + best]) best = v;
        prev[b] = best;
        pred[b * SQ_T + i] = best;
      }
    }
  }
  free(prev);
  return attn_nn_concat(cx, steps, SQ_T, 1);
}

static void sq_batch(t_rng *r, int64_t B, int32_t *x, int32_t *y) {
  for (int64_t b = 0; b < B; b++)
    for (int t = 0; t < SQ_T; t++) x[b * SQ_T + t] = (int32_t)t_int(r, 0, SQ_V - 1);
  for (int64_t b = 0; b < B; b++)
    for (int t = 0; t < SQ_T; t++) y[b * SQ_T + t] = x[b * SQ_T + SQ_T - 1 - t];
}

static void test_training_rnnsearch(void) {
  seq2seq m;
  CHECK_OK(sq_init(&m));
  attn_nn_optim_config oc = attn_nn_optim_config_default(ATTN_NN_OPTIM_ADAM);
  oc.lr = 0.01f;
  attn_nn_optim *opt = attn_nn_optim_new(&oc, &m.ps);
  attn_nn_ctx *cx = attn_nn_ctx_new();
  int32_t x[SQ_B * SQ_T], y[SQ_B * SQ_T];
  t_rng data = t_rng_make(2015);
  const int steps = quick ? 60 : 400;
  float first = 0, last = 0;
  for (int s = 0; s < steps; s++) {
    sq_batch(&data, SQ_B, x, y);
    attn_nn_ctx_reset(cx);
    attn_nn_params_zero_grad(&m.ps);
    attn_var *loss = attn_nn_cross_entropy(cx, sq_forward(cx, &m, x, y, NULL, SQ_B), y, -100, 0.0f);
    CHECK(loss != NULL, "RNNsearch step %d: %s", s, attn_nn_ctx_error(cx));
    if (!loss) break;
    if (s == 0) first = loss->data[0];
    last = loss->data[0];
    CHECK_OK(attn_backward(loss));
    CHECK_OK(attn_nn_clip_grad_norm(&m.ps, 1.0f, NULL));
    CHECK_OK(attn_nn_optim_step(opt));
  }
  enum { N = 500 };
  static int32_t tx[N * SQ_T], ty[N * SQ_T], pred[N * SQ_T];
  t_rng test = t_rng_make(7);
  sq_batch(&test, N, tx, ty);
  attn_nn_ctx_reset(cx);
  attn_nn_set_grad_enabled(cx, 0);
  sq_forward(cx, &m, tx, NULL, pred, N);
  int correct = 0;
  for (int i = 0; i < N * SQ_T; i++) correct += pred[i] == ty[i];
  const double acc = (double)correct / (N * SQ_T);
  printf(
      "training RNNsearch (GRU + Bahdanau) reversal of %d, %d steps of %d: loss %.3f -> %.3f, "
      "greedy token "
      "accuracy %.1f %%\n",
      SQ_T, steps, SQ_B, first, last, 100 * acc);
  if (quick)
    CHECK(last < 0.5f * first, "RNNsearch loss %.3f -> %.3f should halve in %d steps", first, last,
          steps);
  else
    CHECK(acc >= 0.92, "RNNsearch token accuracy %.3f < 0.92", acc);
  attn_nn_ctx_free(cx);
  attn_nn_optim_free(opt);
  sq_free(&m);
}

int main(void) {
  quick = getenv("ATTN_TEST_QUICK") != NULL;
  rng = t_rng_make(20260411);
  ctx = attn_nn_ctx_new();
  test_align_grads();
  test_align_values();
  test_additive();
  test_layers();
  test_nan_padding_layers();
  test_bad_inputs();
  test_failing_allocator();
  test_thread_determinism();
  test_training();
  test_training_local_p();
  test_training_rnnsearch();
  attn_nn_ctx_free(ctx);
  return t_finish("test_nn_align");
}
