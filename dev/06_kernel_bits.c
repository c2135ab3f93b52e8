/* Bit-for-bit output dump of the align, stochastic, monotonic, score and additive kernels (forward
 * and backward, every kind and mode, masks, every ISA the CPU has, 1 and 3 threads), for checking
 * that a refactor changed no result: build it against two libraries and compare the files.
 *
 *   gcc -O1 -w -Iinclude dev/06_kernel_bits.c build/libattn.a -lm -lpthread -o /tmp/bits_new
 *   gcc -O1 -w -I<old>/include dev/06_kernel_bits.c <old>/build/libattn.a -lm -lpthread -o /tmp/bits_old
 *   /tmp/bits_new new.bin && /tmp/bits_old old.bin && cmp new.bin old.bin
 *
 * Inputs come from a fixed xorshift stream, so both runs see the same numbers. */
#include "attn.h"
#include "attn/additive.h"
#include "attn/align.h"
#include "attn/monotonic.h"
#include "attn/score.h"
#include "attn/stochastic.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
static FILE *out;
static uint64_t st = 88172645463325252ull;
static float rnd(void) { st ^= st << 13; st ^= st >> 7; st ^= st << 17; return (float)((st >> 11) * (1.0 / 9007199254740992.0)) * 2.0f - 1.0f; }
static float *buf(int64_t n) { float *p = malloc((size_t)n * 4 + 64); for (int64_t i = 0; i < n; i++) p[i] = rnd(); return p; }
static void dump(const void *p, size_t bytes) { fwrite(p, 1, bytes, out); }
#define T(p, nd, ...) attn_tensor_make(p, ATTN_DTYPE_F32, nd, (const int64_t[]){__VA_ARGS__})
int main(int argc, char **argv) {
  out = fopen(argv[1], "wb");
  for (int isa = 0; isa < 3; isa++) {
    if (!attn_cpu_supports((attn_isa)isa)) continue;
    attn_set_isa((attn_isa)isa);
    for (int th = 1; th <= 3; th += 2) {
      attn_set_num_threads(th);
      st = 12345;
      /* align: every kind, masked, backward */
      const int64_t B = 3, Tq = 5, Tk = 37, n = B * Tq * Tk;
      float *x = buf(n), *m = buf(n), *o = buf(n), *g = buf(n), *d = buf(n);
      for (int64_t i = 0; i < n; i++) m[i] = m[i] < -0.6f ? -INFINITY : 0.0f;
      attn_tensor tx = T(x, 3, B, Tq, Tk), tm = T(m, 3, B, Tq, Tk), to = T(o, 3, B, Tq, Tk), tg = T(g, 3, B, Tq, Tk), td = T(d, 3, B, Tq, Tk);
      for (int kind = 0; kind <= ATTN_ALIGN_ENTMAX_BISECT; kind++) {
        attn_align_params p = attn_align_params_default();
        p.kind = kind; p.temperature = 0.7f;
        attn_align_forward(&to, &tx, &tm, &p, NULL, 0); dump(o, n * 4);
        attn_align_backward(&td, NULL, &tg, &to, &tx, &tm, &p, NULL, 0); dump(d, n * 4);
      }
      /* stochastic */
      attn_stochastic_params sp = attn_stochastic_params_default();
      sp.seed = 9; sp.temperature = 0.8f;
      int32_t idx[64]; float lp[64], h[64], coef[64];
      for (int i = 0; i < 64; i++) coef[i] = rnd();
      attn_hard_sample_forward(&to, idx, lp, h, &tx, &tm, &sp, NULL, 0); dump(o, n * 4); dump(idx, B * Tq * 4); dump(lp, B * Tq * 4); dump(h, B * Tq * 4);
      attn_hard_sample_backward(&td, coef, coef, idx, &tx, &tm, &sp, NULL, 0); dump(d, n * 4);
      for (int hard = 0; hard < 2; hard++) {
        sp.hard = hard;
        attn_gumbel_softmax_forward(&to, &tx, &tm, &sp, NULL, 0); dump(o, n * 4);
        attn_gumbel_softmax_backward(&td, &tg, &to, &tx, &tm, &sp, NULL, 0); dump(d, n * 4);
      }
      /* monotonic */
      for (int mode = 0; mode < 3; mode++) {
        attn_monotonic_params mp = attn_monotonic_params_default();
        mp.mode = mode; mp.noise_std = mode == 0 ? 0.5f : 0.0f; mp.seed = 4;
        attn_monotonic_forward(&to, &tx, &tm, &mp, NULL, 0); dump(o, n * 4);
        if (mode < 2) { attn_monotonic_backward(&td, &tg, &to, &tx, &tm, &mp, NULL, 0); dump(d, n * 4); }
      }
      /* score: every kind */
      const int64_t dq = 6, dk = 5, dd = 7, F = 3;
      for (int kind = 0; kind <= ATTN_SCORE_MULTIDIM; kind++) {
        int64_t dkk = (kind == 0 || kind == 1 || kind == 7) ? dq : dk;
        float *q = buf(B * Tq * dq), *k = buf(B * Tk * dkk), *W = buf(64 * 64), *b = buf(64), *w = buf(64), *W1 = buf(dd * dq), *W2 = buf(dd * dkk), *Wo = buf(F * dd), *bo = buf(F);
        float *c0 = buf(B * 3), *U0 = buf(dd * 3);
        attn_tensor tq = T(q, 3, B, Tq, dq), tk = T(k, 3, B, Tk, dkk), tW, tb, tw = T(w, 1, dd), tW1 = T(W1, 2, dd, dq), tW2 = T(W2, 2, dd, dkk), tWo = T(Wo, 2, F, dd), tbo = T(bo, 1, F), tc0 = T(c0, 2, B, 3), tU0 = T(U0, 2, dd, 3);
        attn_score_params p = attn_score_params_default();
        p.kind = kind; p.temperature = 0.9f; p.act = ATTN_SCORE_ACT_TANH;
        if (kind == 2 || kind == 3 || kind == 4) { tW = T(W, 2, dkk, dq); p.W = &tW; }
        if (kind == 3) { tb = T(b, 1, dkk); p.b = &tb; }
        if (kind == 4) { tb = T(b, 1, 1); p.b = &tb; }
        const attn_tensor *pc[1] = {&tc0}, *pu[1] = {&tU0};
        if (kind == 5 || kind == 10) { p.W1 = &tW1; p.W2 = &tW2; tb = T(b, 1, dd); p.b = &tb; }
        if (kind == 5) { p.w = &tw; p.n_contexts = 1; p.contexts = pc; p.U = pu; }
        if (kind == 10) { p.Wo = &tWo; p.bo = &tbo; }
        if (kind == 6) { tW = T(W, 2, dd, dq + dkk); p.W = &tW; p.w = &tw; }
        if (kind == 8) { tW = T(W, 2, dd, dkk); p.W = &tW; p.w = &tw; tb = T(b, 1, dd); p.b = &tb; }
        if (kind == 9) { tW = T(W, 2, Tk, dq); p.W = &tW; tb = T(b, 1, Tk); p.b = &tb; }
        int64_t tqo = kind == 8 ? 1 : Tq, ne = B * tqo * Tk * (kind == 10 ? F : 1);
        float *e = buf(ne), *de = buf(ne), *gq = buf(B * Tq * dq), *gk = buf(B * Tk * dkk), *gall = calloc(8192, 4);
        attn_tensor te = kind == 10 ? T(e, 4, B, tqo, Tk, F) : T(e, 3, B, tqo, Tk), tde = kind == 10 ? T(de, 4, B, tqo, Tk, F) : T(de, 3, B, tqo, Tk);
        attn_tensor tgq = T(gq, 3, B, Tq, dq), tgk = T(gk, 3, B, Tk, dkk);
        attn_tensor gW, gb, gw, gW1, gW2, gWo, gbo, gc0, gU0;
        attn_score_grads gr = attn_score_grads_default();
        float *ga = gall;
        if (p.W) { gW = T(ga, 2, p.W->shape[0], p.W->shape[1]); gr.dW = &gW; ga += 4096; }
        if (p.b) { gb = T(ga, 1, p.b->shape[0]); gr.db = &gb; ga += 64; }
        if (p.w) { gw = T(ga, 1, dd); gr.dw = &gw; ga += 64; }
        if (p.W1) { gW1 = T(ga, 2, dd, dq); gr.dW1 = &gW1; ga += 64; gW2 = T(ga, 2, dd, dkk); gr.dW2 = &gW2; ga += 64; }
        if (p.Wo) { gWo = T(ga, 2, F, dd); gr.dWo = &gWo; ga += 64; gbo = T(ga, 1, F); gr.dbo = &gbo; ga += 64; }
        const attn_tensor *pdc[1] = {&gc0}, *pdu[1] = {&gU0};
        if (p.n_contexts) { gc0 = T(ga, 2, B, 3); ga += 64; gU0 = T(ga, 2, dd, 3); ga += 64; gr.dcontexts = pdc; gr.dU = pdu; }
        int s1 = attn_score_forward(&te, kind == 8 ? NULL : &tq, kind == 9 ? NULL : &tk, &p, NULL, 0);
        int s2 = attn_score_backward(kind == 8 ? NULL : &tgq, kind == 9 ? NULL : &tgk, &gr, &tde, kind == 8 ? NULL : &tq, kind == 9 ? NULL : &tk, &p, NULL, 0);
        if (s1 || s2) fprintf(stderr, "score kind %d: %d %d %s\n", kind, s1, s2, attn_last_error());
        dump(e, ne * 4); dump(gq, B * Tq * dq * 4); dump(gk, B * Tk * dkk * 4); dump(gall, 8192 * 4);
      }
      /* additive */
      {
        const int64_t D = 16, Dv = 8;
        float *q1 = buf(B * Tq * D), *k2 = buf(B * Tk * D), *v = buf(B * Tk * Dv), *w = buf(D), *b = buf(D), *o2 = buf(B * Tq * Dv), *l = buf(B * Tq), *wt = buf(B * Tq * Tk);
        float *dq1 = buf(B * Tq * D), *dk2 = buf(B * Tk * D), *dv = buf(B * Tk * Dv), *dw = buf(D), *db = buf(D), *dout = buf(B * Tq * Dv);
        attn_tensor a1 = T(q1, 3, B, Tq, D), a2 = T(k2, 3, B, Tk, D), av = T(v, 3, B, Tk, Dv), aw = T(w, 1, D), ab = T(b, 1, D), ao = T(o2, 3, B, Tq, Dv), al = T(l, 2, B, Tq), awt = T(wt, 3, B, Tq, Tk);
        attn_tensor g1 = T(dq1, 3, B, Tq, D), g2 = T(dk2, 3, B, Tk, D), gv = T(dv, 3, B, Tk, Dv), gw = T(dw, 1, D), gb = T(db, 1, D), gdo = T(dout, 3, B, Tq, Dv);
        attn_additive_params ap = attn_additive_params_default();
        ap.mask = &tm;
        int s1 = attn_additive_forward(&ao, &al, &awt, &a1, &a2, &av, &aw, &ab, &ap, NULL, 0);
        int s2 = attn_additive_backward(&g1, &g2, &gv, &gw, &gb, &gdo, &a1, &a2, &av, &aw, &ab, &ao, &al, &ap, NULL, 0);
        if (s1 || s2) fprintf(stderr, "additive %d %d %s\n", s1, s2, attn_last_error());
        dump(o2, B * Tq * Dv * 4); dump(l, B * Tq * 4); dump(wt, n * 4); dump(dq1, B * Tq * D * 4); dump(dk2, B * Tk * D * 4); dump(dv, B * Tk * Dv * 4); dump(dw, D * 4); dump(db, D * 4);
      }
    }
  }
  fclose(out);
  return 0;
}
