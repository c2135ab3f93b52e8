/* Fused additive attention: validation shared with src/cpu/additive.c, and the reference loops
 * (double, single-threaded). Contract: include/attn/additive.h. */
#include "attn/additive.h"
#include "internal.h"

/* Declared here and in src/cpu/additive.c, which uses it. dims = {B, Tq, Tk, d, Dv}. Forward:
 * the gradient tensors are NULL and backward is false. */
attn_status attn__additive_check(const char *fn, bool backward, const attn_tensor *out,
                                 const attn_tensor *lse, const attn_tensor *weights,
                                 const attn_tensor *q1, const attn_tensor *k2,
                                 const attn_tensor *v, const attn_tensor *w, const attn_tensor *b,
                                 const attn_tensor *mask, const attn_tensor *dq1,
                                 const attn_tensor *dk2, const attn_tensor *dv,
                                 const attn_tensor *dw, const attn_tensor *db,
                                 const attn_tensor *dout, int64_t dims[5]);

attn_additive_params attn_additive_params_default(void) {
  attn_additive_params p;
  memset(&p, 0, sizeof p);
  return p;
}

/* An f32 operand of `nd` dims: the shared layout rules, then its shape against `want` (a dim of
 * size 1 passes against anything when broadcast is set; want[d] < 0 accepts any size). */
static attn_status check_op(const char *fn, const char *name, const attn_tensor *t, int nd,
                            const int64_t *want, const char *const *dim_names, bool broadcast,
                            bool is_output, attn__range *r) {
  if (t->ndim != nd)
    return attn__fail(ATTN_STATUS_SHAPE_MISMATCH, "%s: %s has %d dims, expected %d", fn, name,
                      (int)t->ndim, nd);
  if (t->dtype != ATTN_DTYPE_F32)
    return attn__fail(ATTN_STATUS_UNSUPPORTED_DTYPE, "%s: %s has dtype %d, only f32 is supported",
                      fn, name, (int)t->dtype);
  attn_status st = attn__check_view_layout(fn, name, t, is_output, r);
  if (st != ATTN_OK) return st;
  for (int d = 0; want && d < nd; d++)
    if (want[d] >= 0 && t->shape[d] != want[d] && !(broadcast && t->shape[d] == 1))
      return attn__fail(ATTN_STATUS_SHAPE_MISMATCH, "%s: %s: dim %d (%s) is %lld, expected %lld", fn,
                        name, d, dim_names[d], (long long)t->shape[d], (long long)want[d]);
  return ATTN_OK;
}

attn_status attn__additive_check(const char *fn, bool backward, const attn_tensor *out,
                                 const attn_tensor *lse, const attn_tensor *weights,
                                 const attn_tensor *q1, const attn_tensor *k2,
                                 const attn_tensor *v, const attn_tensor *w, const attn_tensor *b,
                                 const attn_tensor *mask, const attn_tensor *dq1,
                                 const attn_tensor *dk2, const attn_tensor *dv,
                                 const attn_tensor *dw, const attn_tensor *db,
                                 const attn_tensor *dout, int64_t dims[5]) {
  static const char *const n_q[] = {"B", "Tq", "d"}, *const n_k[] = {"B", "Tk", "d"},
                           *const n_v[] = {"B", "Tk", "Dv"}, *const n_o[] = {"B", "Tq", "Dv"},
                           *const n_l[] = {"B", "Tq"}, *const n_w[] = {"d"},
                           *const n_a[] = {"B", "Tq", "Tk"};
  const struct {
    const char *name;
    const attn_tensor *t;
    bool required;
  } req[] = {{"q1", q1, true}, {"k2", k2, true}, {"v", v, true}, {"w", w, true},
             {"out", out, true}, {"lse", lse, backward}, {"dq1", dq1, backward},
             {"dk2", dk2, backward}, {"dv", dv, backward}, {"dw", dw, backward},
             {"dout", dout, backward}};
  for (size_t i = 0; i < sizeof req / sizeof req[0]; i++)
    if (req[i].required && !req[i].t)
      return attn__fail(ATTN_STATUS_NULL_POINTER, "%s: %s is NULL", fn, req[i].name);
  attn__range rq, rk, rv, rw, rb = {0, 0}, rm = {0, 0}, ro, rl = {0, 0}, ra = {0, 0};
  ATTN__TRY(check_op(fn, "q1", q1, 3, NULL, n_q, false, false, &rq));
  int64_t B = q1->shape[0], Tq = q1->shape[1], d = q1->shape[2];
  int64_t wk[3] = {B, -1, d};
  ATTN__TRY(check_op(fn, "k2", k2, 3, wk, n_k, false, false, &rk));
  int64_t Tk = k2->shape[1];
  int64_t wv[3] = {B, Tk, -1};
  ATTN__TRY(check_op(fn, "v", v, 3, wv, n_v, false, false, &rv));
  int64_t Dv = v->shape[2];
  if (Tk == 0)
    return attn__fail(ATTN_STATUS_INVALID_ARGUMENT, "%s: k2: Tk is 0: there are no keys to attend",
                      fn);
  if (d == 0) return attn__fail(ATTN_STATUS_INVALID_ARGUMENT, "%s: q1: d is 0", fn);
  int64_t wd[1] = {d}, wo[3] = {B, Tq, Dv}, wl[2] = {B, Tq}, wa[3] = {B, Tq, Tk};
  ATTN__TRY(check_op(fn, "w", w, 1, wd, n_w, false, false, &rw));
  if (b) ATTN__TRY(check_op(fn, "b", b, 1, wd, n_w, false, false, &rb));
  if (mask) ATTN__TRY(check_op(fn, "params->mask", mask, 3, wa, n_a, true, false, &rm));
  ATTN__TRY(check_op(fn, "out", out, 3, wo, n_o, false, !backward, &ro));
  if (lse) ATTN__TRY(check_op(fn, "lse", lse, 2, wl, n_l, false, !backward, &rl));
  if (weights) ATTN__TRY(check_op(fn, "weights", weights, 3, wa, n_a, false, true, &ra));
  struct {
    const char *name;
    attn__range r;
  } ins[16], outs[8];
  int n_in = 0, n_out = 0;
#define ADD(arr, cnt, nm, rr) (arr[cnt].name = nm, arr[cnt].r = rr, cnt++)
  ADD(ins, n_in, "q1", rq);
  ADD(ins, n_in, "k2", rk);
  ADD(ins, n_in, "v", rv);
  ADD(ins, n_in, "w", rw);
  ADD(ins, n_in, "b", rb);
  ADD(ins, n_in, "params->mask", rm);
  if (!backward) {
    ADD(outs, n_out, "out", ro);
    ADD(outs, n_out, "lse", rl);
    ADD(outs, n_out, "weights", ra);
  } else {
    attn__range rdq, rdk, rdv, rdw, rdb = {0, 0}, rdo;
    ATTN__TRY(check_op(fn, "dout", dout, 3, wo, n_o, false, false, &rdo));
    ATTN__TRY(check_op(fn, "dq1", dq1, 3, (int64_t[3]){B, Tq, d}, n_q, false, true, &rdq));
    ATTN__TRY(check_op(fn, "dk2", dk2, 3, (int64_t[3]){B, Tk, d}, n_k, false, true, &rdk));
    ATTN__TRY(check_op(fn, "dv", dv, 3, (int64_t[3]){B, Tk, Dv}, n_v, false, true, &rdv));
    ATTN__TRY(check_op(fn, "dw", dw, 1, wd, n_w, false, true, &rdw));
    if (db) ATTN__TRY(check_op(fn, "db", db, 1, wd, n_w, false, true, &rdb));
    ADD(ins, n_in, "out", ro);
    ADD(ins, n_in, "lse", rl);
    ADD(ins, n_in, "dout", rdo);
    ADD(outs, n_out, "dq1", rdq);
    ADD(outs, n_out, "dk2", rdk);
    ADD(outs, n_out, "dv", rdv);
    ADD(outs, n_out, "dw", rdw);
    ADD(outs, n_out, "db", rdb);
  }
#undef ADD
  for (int i = 0; i < n_out; i++) {
    for (int j = 0; j < n_in; j++)
      if (attn__ranges_overlap(outs[i].r, ins[j].r))
        return attn__fail(ATTN_STATUS_ALIASING, "%s: %s overlaps %s", fn, outs[i].name,
                          ins[j].name);
    for (int j = i + 1; j < n_out; j++)
      if (attn__ranges_overlap(outs[i].r, outs[j].r))
        return attn__fail(ATTN_STATUS_ALIASING, "%s: %s overlaps %s", fn, outs[i].name,
                          outs[j].name);
  }
  dims[0] = B;
  dims[1] = Tq;
  dims[2] = Tk;
  dims[3] = d;
  dims[4] = Dv;
  return ATTN_OK;
}

/* ---- reference ------------------------------------------------------------------------------- */

static inline float at3(const attn_tensor *t, int64_t i, int64_t j, int64_t k) {
  /* Dims of size 1 broadcast (used for the mask). */
  int64_t o = (t->shape[0] == 1 ? 0 : i * t->stride[0]) + (t->shape[1] == 1 ? 0 : j * t->stride[1]) +
              (t->shape[2] == 1 ? 0 : k * t->stride[2]);
  return ((const float *)t->data)[o];
}
static inline float *p3(const attn_tensor *t, int64_t i, int64_t j, int64_t k) {
  return (float *)t->data + i * t->stride[0] + j * t->stride[1] + k * t->stride[2];
}
static inline float at1(const attn_tensor *t, int64_t c) {
  return ((const float *)t->data)[c * t->stride[0]];
}

/* s[j] = e_ij + mask_ij (-inf when blocked) and the row's softmax p[j]; returns lse (-inf when
 * every key is blocked; p is then 0). */
static double ref_row(const attn_tensor *q1, const attn_tensor *k2, const attn_tensor *w,
                      const attn_tensor *b, const attn_tensor *mask, int64_t bi, int64_t i,
                      int64_t Tk, int64_t d, double *s, double *p) {
  double m = -INFINITY;
  bool any = false;
  for (int64_t j = 0; j < Tk; j++) {
    double mk = mask ? (double)at3(mask, bi, i, j) : 0.0;
    if (mk == -INFINITY) { /* blocked, whatever k2 holds */
      s[j] = -INFINITY;
      continue;
    }
    double e = 0.0;
    for (int64_t c = 0; c < d; c++) {
      double u = (double)*p3(q1, bi, i, c) + (double)*p3(k2, bi, j, c) + (b ? (double)at1(b, c) : 0.0);
      e += (double)at1(w, c) * tanh(u);
    }
    s[j] = e + mk;
    any |= s[j] != -INFINITY;
    if (s[j] > m) m = s[j];
  }
  if (!any) {
    for (int64_t j = 0; j < Tk; j++) p[j] = 0.0;
    return -INFINITY;
  }
  /* NaN scores propagate through exp and the sum. */
  double sum = 0.0;
  for (int64_t j = 0; j < Tk; j++) {
    p[j] = s[j] == -INFINITY ? 0.0 : exp(s[j] - m);
    sum += p[j];
  }
  for (int64_t j = 0; j < Tk; j++) p[j] /= sum;
  return m + log(sum);
}

attn_status attn_additive_forward_ref(const attn_tensor *out, const attn_tensor *lse,
                                      const attn_tensor *weights, const attn_tensor *q1,
                                      const attn_tensor *k2, const attn_tensor *v,
                                      const attn_tensor *w, const attn_tensor *b,
                                      const attn_additive_params *params) {
  static const char fn[] = "attn_additive_forward_ref";
  attn__clear_error();
  attn_additive_params prm = params ? *params : attn_additive_params_default();
  int64_t dims[5];
  ATTN__TRY(attn__additive_check(fn, false, out, lse, weights, q1, k2, v, w, b, prm.mask, NULL,
                                 NULL, NULL, NULL, NULL, NULL, dims));
  int64_t B = dims[0], Tq = dims[1], Tk = dims[2], d = dims[3], Dv = dims[4];
  double *s = (double *)attn__malloc(sizeof(double) * (size_t)(2 * Tk + Dv), ATTN_ALIGN);
  if (!s) return attn__fail(ATTN_STATUS_OUT_OF_MEMORY, "%s: scratch", fn);
  double *p = s + Tk, *acc = s + 2 * Tk;
  for (int64_t bi = 0; bi < B; bi++)
    for (int64_t i = 0; i < Tq; i++) {
      double l = ref_row(q1, k2, w, b, prm.mask, bi, i, Tk, d, s, p);
      for (int64_t c = 0; c < Dv; c++) acc[c] = 0.0;
      for (int64_t j = 0; j < Tk; j++)
        if (p[j] != 0.0)
          for (int64_t c = 0; c < Dv; c++) acc[c] += p[j] * (double)*p3(v, bi, j, c);
      for (int64_t c = 0; c < Dv; c++) *p3(out, bi, i, c) = (float)acc[c];
      if (lse) ((float *)lse->data)[bi * lse->stride[0] + i * lse->stride[1]] = (float)l;
      if (weights)
        for (int64_t j = 0; j < Tk; j++) *p3(weights, bi, i, j) = (float)p[j];
    }
  attn__free(s);
  return ATTN_OK;
}

attn_status attn_additive_backward_ref(const attn_tensor *dq1, const attn_tensor *dk2,
                                       const attn_tensor *dv, const attn_tensor *dw,
                                       const attn_tensor *db, const attn_tensor *dout,
                                       const attn_tensor *q1, const attn_tensor *k2,
                                       const attn_tensor *v, const attn_tensor *w,
                                       const attn_tensor *b, const attn_tensor *out,
                                       const attn_tensor *lse, const attn_additive_params *params) {
  static const char fn[] = "attn_additive_backward_ref";
  attn__clear_error();
  attn_additive_params prm = params ? *params : attn_additive_params_default();
  int64_t dims[5];
  ATTN__TRY(attn__additive_check(fn, true, out, lse, NULL, q1, k2, v, w, b, prm.mask, dq1, dk2, dv,
                                 dw, db, dout, dims));
  int64_t B = dims[0], Tq = dims[1], Tk = dims[2], d = dims[3], Dv = dims[4];
  /* Double accumulators for every gradient, then one rounding each. */
  size_t n_acc = (size_t)(B * Tq * d + B * Tk * d + B * Tk * Dv + 2 * d + 3 * Tk + Dv), bytes;
  if (!attn__mul_size(n_acc, sizeof(double), &bytes))
    return attn__fail(ATTN_STATUS_OVERFLOW, "%s: scratch size overflows", fn);
  double *mem = (double *)attn__malloc(bytes, ATTN_ALIGN);
  if (!mem) return attn__fail(ATTN_STATUS_OUT_OF_MEMORY, "%s: scratch", fn);
  memset(mem, 0, bytes);
  double *gq = mem, *gk = gq + B * Tq * d, *gv = gk + B * Tk * d, *gw = gv + B * Tk * Dv,
         *gb = gw + d, *s = gb + d, *p = s + Tk, *ds = p + Tk, *o = ds + Tk;
  for (int64_t bi = 0; bi < B; bi++)
    for (int64_t i = 0; i < Tq; i++) {
      ref_row(q1, k2, w, b, prm.mask, bi, i, Tk, d, s, p);
      /* o = sum_j p_j v_j (recomputed), D = dout . o, dS_j = p_j (dout . v_j - D). */
      for (int64_t c = 0; c < Dv; c++) o[c] = 0.0;
      for (int64_t j = 0; j < Tk; j++)
        if (p[j] != 0.0)
          for (int64_t c = 0; c < Dv; c++) o[c] += p[j] * (double)*p3(v, bi, j, c);
      double D = 0.0;
      for (int64_t c = 0; c < Dv; c++) D += (double)*p3(dout, bi, i, c) * o[c];
      for (int64_t j = 0; j < Tk; j++) {
        ds[j] = 0.0;
        if (p[j] == 0.0) continue;
        double dp = 0.0;
        for (int64_t c = 0; c < Dv; c++) {
          double g = (double)*p3(dout, bi, i, c);
          dp += g * (double)*p3(v, bi, j, c);
          gv[(bi * Tk + j) * Dv + c] += p[j] * g;
        }
        ds[j] = p[j] * (dp - D);
      }
      for (int64_t j = 0; j < Tk; j++) {
        if (ds[j] == 0.0) continue;
        for (int64_t c = 0; c < d; c++) {
          double u = (double)*p3(q1, bi, i, c) + (double)*p3(k2, bi, j, c) + (b ? (double)at1(b, c) : 0.0);
          double t = tanh(u), du = ds[j] * (double)at1(w, c) * (1.0 - t * t);
          gw[c] += ds[j] * t;
          gq[(bi * Tq + i) * d + c] += du;
          gk[(bi * Tk + j) * d + c] += du;
          gb[c] += du;
        }
      }
    }
  for (int64_t bi = 0; bi < B; bi++) {
    for (int64_t i = 0; i < Tq; i++)
      for (int64_t c = 0; c < d; c++) *p3(dq1, bi, i, c) = (float)gq[(bi * Tq + i) * d + c];
    for (int64_t j = 0; j < Tk; j++) {
      for (int64_t c = 0; c < d; c++) *p3(dk2, bi, j, c) = (float)gk[(bi * Tk + j) * d + c];
      for (int64_t c = 0; c < Dv; c++) *p3(dv, bi, j, c) = (float)gv[(bi * Tk + j) * Dv + c];
    }
  }
  for (int64_t c = 0; c < d; c++) {
    ((float *)dw->data)[c * dw->stride[0]] = (float)gw[c];
    if (db) ((float *)db->data)[c * db->stride[0]] = (float)gb[c];
  }
  attn__free(mem);
  return ATTN_OK;
}
