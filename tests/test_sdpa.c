/* Fused attention (attn_sdpa_forward/backward) against the reference (attn_sdpa_*_ref) on random
 * shapes, every mask kind alone and combined, fully masked rows, strided views, all three dtypes,
 * every ISA path and 1/2/3 threads (bitwise equal), with guard bytes after every output.
 *
 * Tolerance: for each output tensor, max |fused - ref| <= tol * max(1, max |ref|), with tol = 1e-5
 * for f32 storage (f32 accumulation and a 2e-7 polynomial exp2 against double), 2e-3 for f16 and
 * 1.6e-2 for bf16 storage (one rounding of the output: 2^-11 and 2^-8 relative, with margin). */
#include "common.h"

typedef struct cfg {
  const char *name;
  int64_t B, Hq, Hkv, Nq, Nk, Dk, Dv;
  attn_dtype dt;      /* q, k, v, out, dout, grads */
  bool packed;        /* q, k, v as views into one [B, N, (Hq + 2 Hkv), D] buffer */
  bool causal, bottom_right;
  bool win;       /* window (wl, wr) with -1 = unbounded; off when !win */
  int64_t wl, wr;
  bool key_lens, query_lens, bias, bias_bcast, alibi;
  float softcap, dropout;
  bool weights, weights_mean;
  bool varlen;
  bool backward;
  bool nan_in_blocked; /* NaN in K/V rows past key_lens */
  float ramp;          /* K row j scaled by 1 + ramp * j / Nk: logits that keep growing along the
                        * keys, so later tiles exceed the running max (the lazy-rescale paths) */
} cfg;

static bool quick;

static float tol_for(attn_dtype dt) {
  return dt == ATTN_DTYPE_F32 ? 1e-5f : dt == ATTN_DTYPE_F16 ? 2e-3f : 1.6e-2f;
}

typedef struct tens {
  t_buf buf;
  attn_tensor t;
} tens;

static tens tens_new(attn_dtype dt, int ndim, const int64_t *shape) {
  tens x;
  int64_t n = 1;
  for (int d = 0; d < ndim; d++) n *= shape[d];
  x.buf = t_buf_new(dt, n);
  x.t = attn_tensor_make(x.buf.data, dt, ndim, shape);
  return x;
}

static double max_abs(const t_buf *b) {
  double m = 0;
  for (int64_t i = 0; i < b->n; i++) {
    double v = fabs((double)t_buf_get(b, i));
    if (v > m) m = v;
  }
  return m;
}

/* max |a - b| relative to max(1, max |b|); NaN anywhere -> +inf. */
static double rel_err(const t_buf *a, const t_buf *b) {
  double scale = max_abs(b);
  if (scale < 1) scale = 1;
  double e = 0;
  for (int64_t i = 0; i < a->n; i++) {
    float x = t_buf_get(a, i), y = t_buf_get(b, i);
    if (isnan(x) != isnan(y)) return INFINITY;
    if (isinf(y) || isinf(x)) {
      if (x != y) return INFINITY;
      continue;
    }
    double d = fabs((double)x - (double)y) / scale;
    if (d > e) e = d;
  }
  return e;
}

static bool bits_equal(const t_buf *a, const t_buf *b) { return memcmp(a->data, b->data, a->bytes) == 0; }

typedef struct run_out {
  tens out, lse, w, dq, dk, dv;
} run_out;

static void run_free(run_out *r, const cfg *c) {
  t_buf_free(&r->out.buf);
  t_buf_free(&r->lse.buf);
  if (c->weights) t_buf_free(&r->w.buf);
  if (c->backward) {
    t_buf_free(&r->dq.buf);
    t_buf_free(&r->dk.buf);
    t_buf_free(&r->dv.buf);
  }
}

typedef struct inputs {
  t_buf qkv; /* packed storage, or q */
  t_buf kb, vb;
  attn_tensor q, k, v;
  tens dout, bias;
  int32_t klen[8], qlen[8], cuq[9], cuk[9];
  float slopes[16];
  attn_sdpa_params p;
  int64_t Bt, Nqt, Nkt; /* tensor dims (B = 1 and N = totals when varlen) */
} inputs;

static void make_inputs(inputs *in, const cfg *c, t_rng *rng) {
  memset(in, 0, sizeof *in);
  in->p = attn_sdpa_params_default();
  in->Bt = c->varlen ? 1 : c->B;
  in->Nqt = c->Nq;
  in->Nkt = c->Nk;
  if (c->varlen) {
    /* B sequences of random lengths summing to the totals. */
    in->cuq[0] = in->cuk[0] = 0;
    for (int64_t s = 0; s < c->B; s++) {
      int32_t lq = (int32_t)t_int(rng, 0, c->Nq), lk = (int32_t)t_int(rng, 0, c->Nk);
      if (s == 1) lq = 0; /* an empty sequence */
      in->cuq[s + 1] = in->cuq[s] + lq;
      in->cuk[s + 1] = in->cuk[s] + lk;
    }
    in->Nqt = in->cuq[c->B];
    in->Nkt = in->cuk[c->B];
    in->p.cu_seqlens_q = in->cuq;
    in->p.cu_seqlens_k = in->cuk;
    in->p.n_seqs = c->B;
  }
  int64_t B = in->Bt, Nq = in->Nqt, Nk = in->Nkt;
  if (c->packed) {
    /* One buffer [B, N, Hq + 2 Hkv, D] (self-attention: Nq == Nk, Dk == Dv). */
    int64_t H3 = c->Hq + 2 * c->Hkv, D = c->Dk;
    in->qkv = t_buf_new(c->dt, B * Nq * H3 * D);
    t_buf_fill_normal(&in->qkv, rng, 1.0f);
    int64_t st[4] = {Nq * H3 * D, D, H3 * D, 1};
    in->q = (attn_tensor){in->qkv.data, c->dt, 4, {B, c->Hq, Nq, D}, {st[0], st[1], st[2], 1}};
    size_t es = attn_dtype_size(c->dt);
    in->k = (attn_tensor){(char *)in->qkv.data + (size_t)(c->Hq * D) * es, c->dt, 4, {B, c->Hkv, Nk, D}, {st[0], st[1], st[2], 1}};
    in->v = (attn_tensor){(char *)in->qkv.data + (size_t)((c->Hq + c->Hkv) * D) * es, c->dt, 4, {B, c->Hkv, Nk, D}, {st[0], st[1], st[2], 1}};
  } else {
    int64_t qs[4] = {B, c->Hq, Nq, c->Dk}, ks[4] = {B, c->Hkv, Nk, c->Dk}, vs[4] = {B, c->Hkv, Nk, c->Dv};
    in->qkv = t_buf_new(c->dt, B * c->Hq * Nq * c->Dk);
    in->kb = t_buf_new(c->dt, B * c->Hkv * Nk * c->Dk);
    in->vb = t_buf_new(c->dt, B * c->Hkv * Nk * c->Dv);
    t_buf_fill_normal(&in->qkv, rng, 1.0f);
    t_buf_fill_normal(&in->kb, rng, 1.0f);
    t_buf_fill_normal(&in->vb, rng, 1.0f);
    in->q = attn_tensor_make(in->qkv.data, c->dt, 4, qs);
    in->k = attn_tensor_make(in->kb.data, c->dt, 4, ks);
    in->v = attn_tensor_make(in->vb.data, c->dt, 4, vs);
  }
  if (c->ramp > 0 && !c->packed)
    for (int64_t b = 0; b < B; b++)
      for (int64_t h = 0; h < c->Hkv; h++)
        for (int64_t j = 0; j < Nk; j++)
          for (int64_t d = 0; d < c->Dk; d++) {
            int64_t e = ((b * c->Hkv + h) * Nk + j) * c->Dk + d;
            t_buf_set(&in->kb, e, t_buf_get(&in->kb, e) * (1.0f + c->ramp * (float)j / (float)Nk));
          }
  if (c->causal) in->p.causal = 1;
  if (c->bottom_right) in->p.align = ATTN_MASK_ALIGN_BOTTOM_RIGHT;
  in->p.window_left = c->win ? c->wl : -1;
  in->p.window_right = c->win ? c->wr : -1;
  if (c->key_lens) {
    for (int64_t b = 0; b < c->B; b++) in->klen[b] = (int32_t)t_int(rng, 0, Nk);
    in->klen[0] = (int32_t)Nk;
    if (c->B > 1) in->klen[1] = 0; /* fully masked batch */
    in->p.key_lens = in->klen;
  }
  if (c->query_lens) {
    for (int64_t b = 0; b < c->B; b++) in->qlen[b] = (int32_t)t_int(rng, 0, Nq);
    in->p.query_lens = in->qlen;
  }
  if (c->nan_in_blocked && c->key_lens && !c->packed && c->dt == ATTN_DTYPE_F32) {
    /* Rows past key_lens hold NaN; they must never reach a result. */
    for (int64_t b = 0; b < c->B; b++)
      for (int64_t h = 0; h < c->Hkv; h++)
        for (int64_t j = in->klen[b]; j < Nk; j++) {
          for (int64_t d = 0; d < c->Dk; d++) t_buf_set(&in->kb, ((b * c->Hkv + h) * Nk + j) * c->Dk + d, NAN);
          for (int64_t d = 0; d < c->Dv; d++) t_buf_set(&in->vb, ((b * c->Hkv + h) * Nk + j) * c->Dv + d, NAN);
        }
  }
  if (c->bias) {
    int64_t bs[4] = {c->bias_bcast ? 1 : B, c->bias_bcast ? 1 : c->Hq, Nq, Nk};
    in->bias = tens_new(ATTN_DTYPE_F32, 4, bs);
    t_buf_fill_normal(&in->bias.buf, rng, 1.0f);
    /* Block a few pairs through the bias too. */
    for (int64_t i = 0; i < in->bias.buf.n; i += 7) t_buf_set(&in->bias.buf, i, -INFINITY);
    if (c->nan_in_blocked && !c->packed && !c->bias_bcast) {
      /* Key 3 is blocked for every query through the bias; its K and V rows hold NaN. */
      for (int64_t e = 3; e < in->bias.buf.n; e += Nk) t_buf_set(&in->bias.buf, e, -INFINITY);
      for (int64_t bh = 0; bh < B * c->Hkv; bh++) {
        for (int64_t d = 0; d < c->Dk; d++) t_buf_set(&in->kb, (bh * Nk + 3) * c->Dk + d, NAN);
        for (int64_t d = 0; d < c->Dv; d++) t_buf_set(&in->vb, (bh * Nk + 3) * c->Dv + d, NAN);
      }
    }
    if (c->bias_bcast) in->bias.t.stride[0] = in->bias.t.stride[1] = 0;
    in->p.bias = &in->bias.t;
  }
  if (c->alibi) {
    attn_alibi_slopes(in->slopes, c->Hq);
    in->p.alibi_slopes = in->slopes;
  }
  in->p.softcap = c->softcap;
  in->p.dropout_p = c->dropout;
  in->p.dropout_seed = 0x1234abcdull;
  if (c->weights_mean) in->p.weights_mode = ATTN_WEIGHTS_HEAD_MEAN;
  int64_t os[4] = {B, c->Hq, Nq, c->Dv};
  in->dout = tens_new(c->dt, 4, os);
  t_buf_fill_normal(&in->dout.buf, rng, 1.0f);
}

static void inputs_free(inputs *in, const cfg *c) {
  t_buf_free(&in->qkv);
  if (!c->packed) {
    t_buf_free(&in->kb);
    t_buf_free(&in->vb);
  }
  t_buf_free(&in->dout.buf);
  if (c->bias) t_buf_free(&in->bias.buf);
}

/* Runs forward (+ backward) with the fused kernel (fused = true) or the reference. */
static attn_status run(run_out *r, const inputs *in, const cfg *c, bool fused) {
  int64_t B = in->Bt, Nq = in->Nqt, Nk = in->Nkt;
  int64_t os[4] = {B, c->Hq, Nq, c->Dv}, ls[3] = {B, c->Hq, Nq};
  r->out = tens_new(c->dt, 4, os);
  r->lse = tens_new(ATTN_DTYPE_F32, 3, ls);
  t_buf_fill(&r->out.buf, 777.0f); /* every element must be written */
  t_buf_fill(&r->lse.buf, 777.0f);
  const attn_tensor *wt = NULL;
  if (c->weights) {
    int64_t ws4[4] = {B, c->Hq, Nq, Nk}, ws3[3] = {B, Nq, Nk};
    r->w = c->weights_mean ? tens_new(c->dt, 3, ws3) : tens_new(c->dt, 4, ws4);
    t_buf_fill(&r->w.buf, 777.0f);
    wt = &r->w.t;
  }
  attn_status st = fused ? attn_sdpa_forward(&r->out.t, &r->lse.t, wt, &in->q, &in->k, &in->v, &in->p, NULL, 0)
                         : attn_sdpa_forward_ref(&r->out.t, &r->lse.t, wt, &in->q, &in->k, &in->v, &in->p);
  if (st != ATTN_OK || !c->backward) return st;
  int64_t qs[4] = {in->q.shape[0], in->q.shape[1], in->q.shape[2], in->q.shape[3]};
  int64_t ks[4] = {in->k.shape[0], in->k.shape[1], in->k.shape[2], in->k.shape[3]};
  int64_t vs[4] = {in->v.shape[0], in->v.shape[1], in->v.shape[2], in->v.shape[3]};
  r->dq = tens_new(c->dt, 4, qs);
  r->dk = tens_new(c->dt, 4, ks);
  r->dv = tens_new(c->dt, 4, vs);
  t_buf_fill(&r->dq.buf, 777.0f);
  t_buf_fill(&r->dk.buf, 777.0f);
  t_buf_fill(&r->dv.buf, 777.0f);
  return fused ? attn_sdpa_backward(&r->dq.t, &r->dk.t, &r->dv.t, &in->dout.t, &in->q, &in->k, &in->v,
                                    &r->out.t, &r->lse.t, &in->p, NULL, 0)
               : attn_sdpa_backward_ref(&r->dq.t, &r->dk.t, &r->dv.t, &in->dout.t, &in->q, &in->k, &in->v,
                                        &r->out.t, &r->lse.t, &in->p);
}

static void compare(const char *what, const cfg *c, const char *isa, const t_buf *got, const t_buf *want, float tol) {
  double e = rel_err(got, want);
  CHECK(e <= tol, "%s [%s, %s]: rel err %.3g > %.3g", c->name, isa, what, e, (double)tol);
  CHECK(t_buf_guard_ok(got), "%s [%s, %s]: guard bytes overwritten", c->name, isa, what);
  for (int64_t i = 0; i < got->n; i++)
    if (t_buf_get(got, i) == 777.0f) {
      CHECK(false, "%s [%s, %s]: element %lld not written", c->name, isa, what, (long long)i);
      break;
    }
}

static bool any_nan(const t_buf *b) {
  for (int64_t i = 0; i < b->n; i++)
    if (isnan(t_buf_get(b, i))) return true;
  return false;
}

static void check_case(const cfg *c, uint64_t seed) {
  t_rng rng = t_rng_make(seed);
  inputs in;
  make_inputs(&in, c, &rng);
  run_out ref;
  attn_set_num_threads(1);
  CHECK_OK(run(&ref, &in, c, false));
  float tol = tol_for(c->dt);
  /* The backward reference is computed from the reference forward's out/lse; the fused backward
   * from its own, as a user would. */
  for (int isa = ATTN_ISA_SCALAR; isa <= ATTN_ISA_AVX512; isa++) {
    if (!attn_cpu_supports((attn_isa)isa)) {
      printf("  %s: skipping ISA %s (not supported by this CPU)\n", c->name, attn_isa_name((attn_isa)isa));
      continue;
    }
    if (quick && isa == ATTN_ISA_SCALAR && c->Nq * c->Nk * c->Dk > 200000) continue;
    attn_set_isa((attn_isa)isa);
    const char *iname = attn_isa_name((attn_isa)isa);
    run_out got[3];
    int nthreads = (quick || c->Nq * c->Nk > 300000) ? 2 : 3;
    for (int t = 0; t < nthreads; t++) {
      attn_set_num_threads(t + 1);
      CHECK_OK(run(&got[t], &in, c, true));
    }
    compare("out", c, iname, &got[0].out.buf, &ref.out.buf, tol);
    compare("lse", c, iname, &got[0].lse.buf, &ref.lse.buf, 1e-5f);
    if (c->weights) compare("weights", c, iname, &got[0].w.buf, &ref.w.buf, tol);
    if (c->backward) {
      float gtol = c->dt == ATTN_DTYPE_F32 ? 2e-5f : tol * 2;
      compare("dq", c, iname, &got[0].dq.buf, &ref.dq.buf, gtol);
      compare("dk", c, iname, &got[0].dk.buf, &ref.dk.buf, gtol);
      compare("dv", c, iname, &got[0].dv.buf, &ref.dv.buf, gtol);
    }
    if (c->nan_in_blocked) {
      CHECK(!any_nan(&got[0].out.buf), "%s [%s]: NaN from a blocked key reached out", c->name, iname);
      if (c->backward) {
        CHECK(!any_nan(&got[0].dq.buf), "%s [%s]: NaN from a blocked key reached dq", c->name, iname);
        CHECK(!any_nan(&got[0].dv.buf), "%s [%s]: NaN reached dv", c->name, iname);
      }
    }
    for (int t = 1; t < nthreads; t++) {
      CHECK(bits_equal(&got[t].out.buf, &got[0].out.buf), "%s [%s]: out differs between 1 and %d threads", c->name, iname, t + 1);
      CHECK(bits_equal(&got[t].lse.buf, &got[0].lse.buf), "%s [%s]: lse differs between 1 and %d threads", c->name, iname, t + 1);
      if (c->weights) CHECK(bits_equal(&got[t].w.buf, &got[0].w.buf), "%s [%s]: weights differ with %d threads", c->name, iname, t + 1);
      if (c->backward) {
        CHECK(bits_equal(&got[t].dq.buf, &got[0].dq.buf), "%s [%s]: dq differs between 1 and %d threads", c->name, iname, t + 1);
        CHECK(bits_equal(&got[t].dk.buf, &got[0].dk.buf), "%s [%s]: dk differs between 1 and %d threads", c->name, iname, t + 1);
        CHECK(bits_equal(&got[t].dv.buf, &got[0].dv.buf), "%s [%s]: dv differs between 1 and %d threads", c->name, iname, t + 1);
      }
    }
    for (int t = 0; t < nthreads; t++) run_free(&got[t], c);
  }
  attn_set_isa(attn_cpu_best_isa());
  run_free(&ref, c);
  inputs_free(&in, c);
}

#define BASE .backward = true

static const cfg cases[] = {
    {.name = "N1 D1", .B = 1, .Hq = 1, .Hkv = 1, .Nq = 1, .Nk = 1, .Dk = 1, .Dv = 1, BASE},
    {.name = "N7 D40", .B = 2, .Hq = 2, .Hkv = 2, .Nq = 7, .Nk = 7, .Dk = 40, .Dv = 40, BASE},
    {.name = "N127 D64 causal", .B = 1, .Hq = 2, .Hkv = 2, .Nq = 127, .Nk = 127, .Dk = 64, .Dv = 64, BASE, .causal = true},
    {.name = "N1000 D64", .B = 1, .Hq = 1, .Hkv = 1, .Nq = 1000, .Nk = 1000, .Dk = 64, .Dv = 64, BASE},
    {.name = "N1000 D128 causal", .B = 1, .Hq = 1, .Hkv = 1, .Nq = 1000, .Nk = 1000, .Dk = 128, .Dv = 128, BASE, .causal = true},
    {.name = "ramp mild", .B = 1, .Hq = 2, .Hkv = 2, .Nq = 300, .Nk = 1000, .Dk = 64, .Dv = 64, BASE, .ramp = 6.0f},
    {.name = "ramp steep", .B = 1, .Hq = 2, .Hkv = 1, .Nq = 100, .Nk = 1000, .Dk = 64, .Dv = 32, BASE, .ramp = 80.0f, .causal = true, .bottom_right = true},
    {.name = "N127 D80", .B = 1, .Hq = 2, .Hkv = 1, .Nq = 127, .Nk = 127, .Dk = 80, .Dv = 80, BASE},
    {.name = "N127 D256", .B = 1, .Hq = 1, .Hkv = 1, .Nq = 127, .Nk = 127, .Dk = 256, .Dv = 256, BASE},
    {.name = "Nq!=Nk Dk!=Dv", .B = 2, .Hq = 2, .Hkv = 2, .Nq = 33, .Nk = 71, .Dk = 40, .Dv = 24, BASE},
    {.name = "GQA", .B = 2, .Hq = 6, .Hkv = 2, .Nq = 45, .Nk = 45, .Dk = 32, .Dv = 32, BASE, .causal = true},
    {.name = "MQA", .B = 1, .Hq = 4, .Hkv = 1, .Nq = 50, .Nk = 64, .Dk = 16, .Dv = 16, BASE},
    {.name = "causal TL Nq<Nk", .B = 1, .Hq = 2, .Hkv = 2, .Nq = 20, .Nk = 70, .Dk = 16, .Dv = 16, BASE, .causal = true},
    {.name = "causal BR Nq<Nk", .B = 1, .Hq = 2, .Hkv = 2, .Nq = 20, .Nk = 70, .Dk = 16, .Dv = 16, BASE, .causal = true, .bottom_right = true},
    {.name = "causal BR Nq>Nk", .B = 1, .Hq = 2, .Hkv = 2, .Nq = 70, .Nk = 20, .Dk = 16, .Dv = 16, BASE, .causal = true, .bottom_right = true},
    {.name = "window", .B = 1, .Hq = 2, .Hkv = 2, .Nq = 150, .Nk = 150, .Dk = 32, .Dv = 32, BASE, .win = true, .wl = 37, .wr = 5},
    {.name = "window+causal BR", .B = 1, .Hq = 1, .Hkv = 1, .Nq = 60, .Nk = 130, .Dk = 32, .Dv = 32, BASE, .causal = true, .bottom_right = true, .win = true, .wl = 40, .wr = -1},
    {.name = "key_lens", .B = 3, .Hq = 2, .Hkv = 2, .Nq = 40, .Nk = 90, .Dk = 32, .Dv = 32, BASE, .key_lens = true, .nan_in_blocked = true},
    {.name = "query_lens", .B = 3, .Hq = 2, .Hkv = 1, .Nq = 70, .Nk = 40, .Dk = 32, .Dv = 32, BASE, .query_lens = true},
    {.name = "lens+causal BR", .B = 3, .Hq = 2, .Hkv = 2, .Nq = 50, .Nk = 80, .Dk = 32, .Dv = 32, BASE, .key_lens = true, .query_lens = true, .causal = true, .bottom_right = true, .nan_in_blocked = true},
    {.name = "bias", .B = 2, .Hq = 2, .Hkv = 2, .Nq = 33, .Nk = 47, .Dk = 16, .Dv = 16, BASE, .bias = true},
    {.name = "bias -inf NaN key", .B = 2, .Hq = 2, .Hkv = 1, .Nq = 40, .Nk = 47, .Dk = 16, .Dv = 16, BASE, .bias = true, .nan_in_blocked = true, .causal = true},
    {.name = "bias broadcast", .B = 2, .Hq = 2, .Hkv = 2, .Nq = 33, .Nk = 47, .Dk = 16, .Dv = 16, BASE, .bias = true, .bias_bcast = true},
    {.name = "alibi causal", .B = 1, .Hq = 4, .Hkv = 4, .Nq = 64, .Nk = 64, .Dk = 16, .Dv = 16, BASE, .alibi = true, .causal = true},
    {.name = "softcap", .B = 1, .Hq = 2, .Hkv = 2, .Nq = 40, .Nk = 40, .Dk = 64, .Dv = 64, BASE, .softcap = 2.0f},
    {.name = "dropout", .B = 2, .Hq = 2, .Hkv = 1, .Nq = 40, .Nk = 50, .Dk = 16, .Dv = 16, BASE, .dropout = 0.3f},
    {.name = "everything", .B = 2, .Hq = 4, .Hkv = 2, .Nq = 37, .Nk = 53, .Dk = 24, .Dv = 40, BASE, .causal = true, .bottom_right = true, .win = true, .wl = 20, .wr = 3, .key_lens = true, .query_lens = true, .bias = true, .alibi = true, .softcap = 5.0f, .dropout = 0.2f},
    {.name = "weights per head", .B = 2, .Hq = 3, .Hkv = 1, .Nq = 35, .Nk = 45, .Dk = 16, .Dv = 16, BASE, .weights = true, .causal = true, .key_lens = true},
    {.name = "weights mean", .B = 2, .Hq = 3, .Hkv = 3, .Nq = 35, .Nk = 45, .Dk = 16, .Dv = 16, BASE, .weights = true, .weights_mean = true, .bias = true},
    {.name = "packed qkv", .B = 2, .Hq = 4, .Hkv = 2, .Nq = 77, .Nk = 77, .Dk = 32, .Dv = 32, BASE, .packed = true, .causal = true},
    {.name = "varlen", .B = 4, .Hq = 2, .Hkv = 1, .Nq = 40, .Nk = 50, .Dk = 32, .Dv = 32, BASE, .varlen = true, .causal = true, .bottom_right = true},
    {.name = "varlen weights", .B = 3, .Hq = 2, .Hkv = 2, .Nq = 30, .Nk = 30, .Dk = 16, .Dv = 16, BASE, .varlen = true, .weights = true},
    {.name = "f16", .B = 1, .Hq = 2, .Hkv = 1, .Nq = 100, .Nk = 100, .Dk = 64, .Dv = 64, BASE, .dt = ATTN_DTYPE_F16, .causal = true},
    {.name = "bf16", .B = 1, .Hq = 2, .Hkv = 2, .Nq = 100, .Nk = 90, .Dk = 64, .Dv = 64, BASE, .dt = ATTN_DTYPE_BF16, .key_lens = true},
    {.name = "bf16 packed dropout", .B = 1, .Hq = 2, .Hkv = 2, .Nq = 50, .Nk = 50, .Dk = 32, .Dv = 32, BASE, .dt = ATTN_DTYPE_BF16, .packed = true, .dropout = 0.1f},
};

/* Central finite differences of the fused forward check the fused backward directly. */
static void fd_check(void) {
  t_rng rng = t_rng_make(99);
  cfg c = {.name = "fd", .B = 1, .Hq = 2, .Hkv = 1, .Nq = 9, .Nk = 11, .Dk = 5, .Dv = 3, BASE, .causal = true, .bottom_right = true};
  inputs in;
  make_inputs(&in, &c, &rng);
  run_out r;
  CHECK_OK(run(&r, &in, &c, true));
  t_buf *srcs[3] = {&in.qkv, &in.kb, &in.vb};
  t_buf *grads[3] = {&r.dq.buf, &r.dk.buf, &r.dv.buf};
  const char *names[3] = {"q", "k", "v"};
  int64_t os[4] = {1, c.Hq, c.Nq, c.Dv}, ls[3] = {1, c.Hq, c.Nq};
  tens o = tens_new(ATTN_DTYPE_F32, 4, os), l = tens_new(ATTN_DTYPE_F32, 3, ls);
  for (int s = 0; s < 3; s++) {
    for (int64_t i = 0; i < srcs[s]->n; i++) {
      float x0 = t_buf_get(srcs[s], i), h = 1e-2f;
      double f[2];
      for (int side = 0; side < 2; side++) {
        t_buf_set(srcs[s], i, x0 + (side ? -h : h));
        CHECK_OK(attn_sdpa_forward(&o.t, &l.t, NULL, &in.q, &in.k, &in.v, &in.p, NULL, 0));
        double L = 0;
        for (int64_t e = 0; e < o.buf.n; e++) L += (double)t_buf_get(&o.buf, e) * t_buf_get(&in.dout.buf, e);
        f[side] = L;
      }
      t_buf_set(srcs[s], i, x0);
      double fd = (f[0] - f[1]) / (2.0 * h), g = t_buf_get(grads[s], i);
      CHECK(fabs(fd - g) <= 2e-3 * (1 + fabs(g)), "fd d%s[%lld]: analytic %.6g vs numeric %.6g", names[s], (long long)i, g, fd);
    }
  }
  t_buf_free(&o.buf);
  t_buf_free(&l.buf);
  run_free(&r, &c);
  inputs_free(&in, &c);
}

int main(void) {
  quick = getenv("ATTN_TEST_QUICK") != NULL;
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    int before = t_failures;
    check_case(&cases[i], 1000 + i);
    printf("%-22s %s\n", cases[i].name, t_failures == before ? "ok" : "FAILED");
    fflush(stdout);
  }
  fd_check();
  return t_finish("test_sdpa");
}
