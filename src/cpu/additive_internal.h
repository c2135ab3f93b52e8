/* Shared by the fused additive attention's portable kernels (src/cpu/additive.c) and its AVX-512
 * kernels (src/cpu/avx512/additive_avx512.c): the job, the workspace layout and the pieces of the
 * forward that do not depend on the ISA. Contract: include/attn/additive.h. */
#ifndef ATTN_CPU_ADDITIVE_INTERNAL_H
#define ATTN_CPU_ADDITIVE_INTERNAL_H

#include "attn/additive.h"
#include "internal.h"
#include "scalar_math.h"

enum { RB = 4, LANES = 16, QB = 64, QB_MAX = 512 };

typedef struct add_job {
  const attn_tensor *out, *lse, *weights, *q1, *k2, *v, *w, *b, *mask;
  const attn_tensor *dq1, *dk2, *dv, *dout, *dw, *db;
  int64_t B, Tq, Tk, d, Dv, Tkp, n_qblocks;
  int64_t qblock;       /* forward: queries per item (a multiple of RB) */
  const float *wv, *bv; /* w and b (b NULL = 0), contiguous */
  float *partials;      /* backward: one (dw, db) partial of 2d floats per item */
  int64_t nkb, KB;      /* AVX-512 backward: key blocks per batch and keys per block */
  float *dq_part;       /* AVX-512 backward: dq1 partials of key blocks 1.. (nkb - 1, B, Tq, d) */
  char *ws;
  size_t per_thread;
} add_job;

static inline float *row3(const attn_tensor *t, int64_t i, int64_t j) {
  return (float *)t->data + i * t->stride[0] + j * t->stride[1];
}

/* Mask row (b, i): pointer and whether its last dim broadcasts; NULL when there is no mask. */
static inline const float *mask_row(const attn_tensor *m, int64_t bi, int64_t i, bool *bcast) {
  if (!m) return NULL;
  *bcast = m->shape[2] == 1;
  return (const float *)m->data + (m->shape[0] == 1 ? 0 : bi * m->stride[0]) +
         (m->shape[1] == 1 ? 0 : i * m->stride[1]);
}

static inline size_t fl(int64_t n) {
  return attn__round_up((size_t)n * sizeof(float), ATTN_ALIGN);
}

/* Scratch of the score kernels (every ISA): exp(2 k2) of the batch or key block (d x Tkp), one
 * flag per tile of 16 keys, exp(2 (q1 + b)) of 4 rows (4 x d) and -2 w (d). */
static inline size_t add_aux_bytes(int64_t Tkp, int64_t d) {
  return fl(d * Tkp) + fl(Tkp / LANES) + fl(RB * d) + fl(d);
}

/* The four arrays of that scratch. */
typedef struct aux_view {
  float *ek, *flag, *ea, *m2w;
} aux_view;

static inline aux_view aux_split(float *aux, int64_t d, int64_t Tkp) {
  aux_view v;
  v.ek = aux;
  v.flag = (float *)((char *)aux + fl(d * Tkp));
  v.ea = (float *)((char *)v.flag + fl(Tkp / LANES));
  v.m2w = (float *)((char *)v.ea + fl(RB * d));
  return v;
}

static inline size_t per_thread_bytes(bool backward, int64_t Tkp, int64_t d, int64_t Dv) {
  size_t s = fl(d * Tkp) + fl(RB * Tkp) + fl(RB * d) + fl(Dv > 0 ? Dv : 1);
  if (backward) s += fl(d * Tkp) + fl(RB * d);
  s += add_aux_bytes(Tkp, d);
  return s;
}

/* kT[c][j] = k2[b, j, c], zero for the padding keys Tk <= j < Tkp. */
static inline __attribute__((always_inline)) void pack_kT(const add_job *jb, int64_t bi,
                                                          float *kT) {
  for (int64_t c = 0; c < jb->d; c++) {
    float *dst = kT + c * jb->Tkp;
    for (int64_t j = 0; j < jb->Tk; j++) dst[j] = row3(jb->k2, bi, j)[c];
    for (int64_t j = jb->Tk; j < jb->Tkp; j++) dst[j] = 0.0f;
  }
}

/* qb[r][c] = q1[b, i0 + r, c] + b_c; rows past Tq repeat the last row (their results are not
 * used). */
static inline __attribute__((always_inline)) void load_qb(const add_job *jb, int64_t bi, int64_t i0,
                                                          float *qb) {
  for (int r = 0; r < RB; r++) {
    int64_t i = i0 + r < jb->Tq ? i0 + r : jb->Tq - 1;
    const float *q = row3(jb->q1, bi, i);
    for (int64_t c = 0; c < jb->d; c++) qb[r * jb->d + c] = q[c] + (jb->bv ? jb->bv[c] : 0.0f);
  }
}

/* s = e + mask (-inf where blocked, padding keys excluded); returns the row max (-inf if every
 * key is blocked). */
static inline __attribute__((always_inline)) float masked_scores(const add_job *jb, int64_t bi,
                                                                 int64_t i, float *e) {
  bool bc = false;
  const float *m = mask_row(jb->mask, bi, i, &bc);
  if (m)
    for (int64_t j = 0; j < jb->Tk; j++) {
      float mj = m[bc ? 0 : j];
      e[j] = mj == -INFINITY ? -INFINITY : e[j] + mj;
    }
  float mx = -INFINITY;
  for (int64_t j = 0; j < jb->Tk; j++) mx = e[j] > mx ? e[j] : mx;
  return mx;
}

/* e[r][j] = sum_c w_c tanh(qb[r][c] + kT[c][j]) for r < RB, j < Tkp: each ISA's score kernel. */
typedef void (*add_score_fn)(float *restrict e, const float *restrict qb, const float *restrict kT,
                             const float *restrict w, int64_t d, int64_t Tkp, float *aux);
/* Called once per item after kT is packed (NULL: nothing to prepare): fills the kernel's aux. */
typedef void (*add_prep_fn)(float *aux, const float *kT, const float *w, int64_t d, int64_t Tkp);

/* One forward item (batch, jb->qblock queries); always inlined with a constant `score`, so each
 * ISA's task gets its own kernel inlined. */
static inline __attribute__((always_inline)) void add_forward_task(void *ctx, int64_t item,
                                                                   int thread_id,
                                                                   add_score_fn score,
                                                                   add_prep_fn prep) {
  const add_job *jb = (const add_job *)ctx;
  int64_t bi = item / jb->n_qblocks, qblk = item % jb->n_qblocks;
  int64_t d = jb->d, Tk = jb->Tk, Tkp = jb->Tkp, Dv = jb->Dv;
  char *base = jb->ws + (size_t)thread_id * jb->per_thread;
  float *kT = (float *)base;
  float *e = (float *)(base + fl(d * Tkp));
  float *qb = (float *)((char *)e + fl(RB * Tkp));
  float *acc = (float *)((char *)qb + fl(RB * d));
  float *aux = (float *)((char *)acc + fl(Dv > 0 ? Dv : 1));
  pack_kT(jb, bi, kT);
  if (prep) prep(aux, kT, jb->wv, d, Tkp);
  int64_t qblock = jb->qblock;
  int64_t i_end = (qblk + 1) * qblock < jb->Tq ? (qblk + 1) * qblock : jb->Tq;
  for (int64_t i0 = qblk * qblock; i0 < i_end; i0 += RB) {
    load_qb(jb, bi, i0, qb);
    score(e, qb, kT, jb->wv, d, Tkp, aux);
    for (int r = 0; r < RB && i0 + r < i_end; r++) {
      int64_t i = i0 + r;
      float *p = e + r * Tkp;
      float mx = masked_scores(jb, bi, i, p);
      float lse = -INFINITY;
      for (int64_t c = 0; c < Dv; c++) acc[c] = 0.0f;
      if (mx == -INFINITY) {
        for (int64_t j = 0; j < Tk; j++) p[j] = 0.0f;
      } else {
        float part[LANES] = {0};
        for (int64_t j = 0; j < Tk; j++) {
          p[j] = attn__exp_neg(p[j] - mx);
          part[j % LANES] += p[j];
        }
        float sum = 0.0f;
        for (int l = 0; l < LANES; l++) sum += part[l];
        float inv = 1.0f / sum;
        for (int64_t j = 0; j < Tk; j++) p[j] *= inv;
        lse = mx + logf(sum);
        for (int64_t j = 0; j < Tk; j++) {
          if (p[j] == 0.0f) continue; /* blocked keys' v is never read */
          const float *vj = row3(jb->v, bi, j);
          float pj = p[j];
          for (int64_t c = 0; c < Dv; c++) acc[c] += pj * vj[c];
        }
      }
      float *o = row3(jb->out, bi, i);
      for (int64_t c = 0; c < Dv; c++) o[c] = acc[c];
      if (jb->lse) ((float *)jb->lse->data)[bi * jb->lse->stride[0] + i * jb->lse->stride[1]] = lse;
      if (jb->weights) {
        float *wr = row3(jb->weights, bi, i);
        for (int64_t j = 0; j < Tk; j++) wr[j] = p[j];
      }
    }
  }
}

/* AVX-512 tasks (src/cpu/avx512/additive_avx512.c). The backward's items are (batch, key block):
 * jb->nkb blocks of jb->KB keys per batch, a per-thread workspace of add_bwd512_bytes(). */
void attn__additive_forward_task_avx512(void *ctx, int64_t item, int thread_id);
void attn__additive_backward_task_avx512(void *ctx, int64_t item, int thread_id);

/* Per-thread workspace of the AVX-512 backward for blocks of KB keys: kT and dkT of the block
 * (d x KB each), the tanh values of one 4 x 16 tile (4 x 16 x d), the dq1 lane sums of 4 rows
 * (4 x 16 x d), the dw lane sums (16 x d), 4 rows of q1 + b, the tile's scores and the score
 * kernel's aux for the block. */
static inline size_t add_bwd512_bytes(int64_t KB, int64_t d) {
  return 2 * fl(d * KB) + 2 * fl(RB * LANES * d) + fl(LANES * d) + fl(RB * d) + fl(RB * LANES) +
         add_aux_bytes(KB, d);
}

/* The key blocks of the AVX-512 backward, from the shape only (so the sums, hence the bits, do
 * not depend on the thread count): enough blocks that B x nkb >= 16 items, blocks of >= 64 keys,
 * a multiple of 16. */
static inline void add_key_blocks(int64_t B, int64_t Tk, int64_t *nkb, int64_t *KB) {
  int64_t want = B >= 16 ? 1 : (16 + B - 1) / B, most = (Tk + 63) / 64;
  int64_t n = want < most ? want : most;
  if (n < 1) n = 1;
  int64_t kb = (Tk + n - 1) / n;
  kb = (kb + LANES - 1) / LANES * LANES;
  *KB = kb;
  *nkb = (Tk + kb - 1) / kb;
}

#endif /* ATTN_CPU_ADDITIVE_INTERNAL_H */
