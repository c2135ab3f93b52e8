/* Public entry points of exact attention: argument validation shared by the reference and the fast
 * kernels, the slice geometry, workspace handling and dispatch. */
#include "internal.h"

attn_sdpa_params attn_sdpa_params_default(void) {
  attn_sdpa_params p;
  memset(&p, 0, sizeof p);
  p.scale = 0.0f;
  p.causal = 0;
  p.align = ATTN_MASK_ALIGN_TOP_LEFT;
  p.window_left = -1;
  p.window_right = -1;
  p.weights_mode = ATTN_WEIGHTS_PER_HEAD;
  return p;
}

/* Slopes of Press et al. (2022), in the ggml form with max_bias = 8 (MECHANISMS.md 7.5). */
attn_status attn_alibi_slopes(float *slopes, int64_t n_heads) {
  attn__clear_error();
  if (!slopes) return attn__fail(ATTN_STATUS_NULL_POINTER, "attn_alibi_slopes: slopes is NULL");
  if (n_heads < 1)
    return attn__fail(ATTN_STATUS_INVALID_ARGUMENT, "attn_alibi_slopes: n_heads = %lld < 1",
                      (long long)n_heads);
  int64_t pow2 = 1;
  while (pow2 * 2 <= n_heads) pow2 *= 2;
  double m0 = pow(2.0, -8.0 / (double)pow2), m1 = pow(2.0, -4.0 / (double)pow2);
  for (int64_t h = 0; h < n_heads; h++)
    slopes[h] = (float)(h < pow2 ? pow(m0, (double)(h + 1)) : pow(m1, (double)(2 * (h - pow2) + 1)));
  return ATTN_OK;
}

void attn__sdpa_slice(const attn__sdpa_problem *pr, int64_t b, attn__slice *s) {
  const attn_sdpa_params *p = pr->p;
  if (pr->varlen) {
    s->tb = 0;
    s->q0 = p->cu_seqlens_q[b];
    s->k0 = p->cu_seqlens_k[b];
    s->nq = p->cu_seqlens_q[b + 1] - s->q0;
    s->nk = p->cu_seqlens_k[b + 1] - s->k0;
    s->nq_valid = s->nq;
    s->nk_valid = s->nk;
  } else {
    s->tb = b;
    s->q0 = 0;
    s->k0 = 0;
    s->nq = pr->Nq;
    s->nk = pr->Nk;
    s->nq_valid = p->query_lens ? p->query_lens[b] : pr->Nq;
    s->nk_valid = p->key_lens ? p->key_lens[b] : pr->Nk;
  }
  s->off = p->align == ATTN_MASK_ALIGN_BOTTOM_RIGHT ? s->nk_valid - s->nq_valid : 0;
}

/* ---- validation ------------------------------------------------------------------------------ */

/* One operand: rank, a known dtype, then the shared layout rules (attn__check_view_layout). */
static attn_status check_tensor(const char *fn, const char *name, const attn_tensor *t, int ndim,
                                bool is_output, attn__range *r) {
  if (t->ndim != ndim)
    return attn__fail(ATTN_STATUS_SHAPE_MISMATCH, "%s: %s has %d dims, expected %d", fn, name,
                      (int)t->ndim, ndim);
  if (!attn_dtype_size(t->dtype))
    return attn__fail(ATTN_STATUS_UNSUPPORTED_DTYPE, "%s: %s has unknown dtype %d", fn, name,
                      (int)t->dtype);
  return attn__check_view_layout(fn, name, t, is_output, r);
}

static attn_status check_dim(const char *fn, const char *name, const attn_tensor *t, int d,
                             const char *dim_name, int64_t want, const char *ref_name) {
  if (t->shape[d] != want)
    return attn__fail(ATTN_STATUS_SHAPE_MISMATCH, "%s: %s: dim %d (%s) is %lld but %s has %lld", fn,
                      name, d, dim_name, (long long)t->shape[d], ref_name, (long long)want);
  return ATTN_OK;
}

typedef struct named_range {
  const char *name;
  attn__range r;
} named_range;

/* Validates everything and fills `pr`. `params_store` holds the defaults when params is NULL.
 * Backward-only operands are NULL in the forward. */
static attn_status validate(const char *fn, attn__sdpa_problem *pr, attn_sdpa_params *params_store,
                            const attn_tensor *out, const attn_tensor *lse,
                            const attn_tensor *weights, const attn_tensor *q, const attn_tensor *k,
                            const attn_tensor *v, const attn_sdpa_params *params,
                            const attn_tensor *dq, const attn_tensor *dk, const attn_tensor *dv,
                            const attn_tensor *dout, bool backward) {
  memset(pr, 0, sizeof *pr);
  if (!q) return attn__fail(ATTN_STATUS_NULL_POINTER, "%s: q is NULL", fn);
  if (!k) return attn__fail(ATTN_STATUS_NULL_POINTER, "%s: k is NULL", fn);
  if (!v) return attn__fail(ATTN_STATUS_NULL_POINTER, "%s: v is NULL", fn);
  if (!out) return attn__fail(ATTN_STATUS_NULL_POINTER, "%s: out is NULL", fn);
  if (backward) {
    if (!lse) return attn__fail(ATTN_STATUS_NULL_POINTER, "%s: lse is NULL", fn);
    if (!dout) return attn__fail(ATTN_STATUS_NULL_POINTER, "%s: dout is NULL", fn);
    if (!dq) return attn__fail(ATTN_STATUS_NULL_POINTER, "%s: dq is NULL", fn);
    if (!dk) return attn__fail(ATTN_STATUS_NULL_POINTER, "%s: dk is NULL", fn);
    if (!dv) return attn__fail(ATTN_STATUS_NULL_POINTER, "%s: dv is NULL", fn);
  }
  if (!params) {
    *params_store = attn_sdpa_params_default();
    params = params_store;
  }
  const attn_sdpa_params *p = params;

  named_range in[8], outs[5];
  int n_in = 0, n_out = 0;
  attn__range r;
  ATTN__TRY(check_tensor(fn, "q", q, 4, false, &r));
  in[n_in++] = (named_range){"q", r};
  ATTN__TRY(check_tensor(fn, "k", k, 4, false, &r));
  in[n_in++] = (named_range){"k", r};
  ATTN__TRY(check_tensor(fn, "v", v, 4, false, &r));
  in[n_in++] = (named_range){"v", r};
  ATTN__TRY(check_tensor(fn, "out", out, 4, !backward, &r));
  if (backward)
    in[n_in++] = (named_range){"out", r};
  else
    outs[n_out++] = (named_range){"out", r};

  int64_t B = q->shape[0], Hq = q->shape[1], Nq = q->shape[2], Dk = q->shape[3];
  int64_t Hkv = k->shape[1], Nk = k->shape[2], Dv = v->shape[3];
  ATTN__TRY(check_dim(fn, "k", k, 0, "B", B, "q"));
  ATTN__TRY(check_dim(fn, "k", k, 3, "Dk", Dk, "q"));
  ATTN__TRY(check_dim(fn, "v", v, 0, "B", B, "q"));
  ATTN__TRY(check_dim(fn, "v", v, 1, "Hkv", Hkv, "k"));
  ATTN__TRY(check_dim(fn, "v", v, 2, "Nk", Nk, "k"));
  ATTN__TRY(check_dim(fn, "out", out, 0, "B", B, "q"));
  ATTN__TRY(check_dim(fn, "out", out, 1, "Hq", Hq, "q"));
  ATTN__TRY(check_dim(fn, "out", out, 2, "Nq", Nq, "q"));
  ATTN__TRY(check_dim(fn, "out", out, 3, "Dv", Dv, "v"));
  if (Dk < 1 || Dv < 1)
    return attn__fail(ATTN_STATUS_INVALID_ARGUMENT, "%s: head dims must be >= 1 (Dk = %lld, Dv = %lld)",
                      fn, (long long)Dk, (long long)Dv);
  if (Hkv < 1 || Hq < 1)
    return attn__fail(ATTN_STATUS_INVALID_ARGUMENT, "%s: head counts must be >= 1 (Hq = %lld, Hkv = %lld)",
                      fn, (long long)Hq, (long long)Hkv);
  if (Hq % Hkv != 0)
    return attn__fail(ATTN_STATUS_INVALID_ARGUMENT,
                      "%s: Hq %% Hkv != 0 (q has %lld heads, k has %lld)", fn, (long long)Hq,
                      (long long)Hkv);

  if (lse) {
    ATTN__TRY(check_tensor(fn, "lse", lse, 3, !backward, &r));
    if (lse->dtype != ATTN_DTYPE_F32)
      return attn__fail(ATTN_STATUS_UNSUPPORTED_DTYPE, "%s: lse must be f32", fn);
    ATTN__TRY(check_dim(fn, "lse", lse, 0, "B", B, "q"));
    ATTN__TRY(check_dim(fn, "lse", lse, 1, "Hq", Hq, "q"));
    ATTN__TRY(check_dim(fn, "lse", lse, 2, "Nq", Nq, "q"));
    if (backward)
      in[n_in++] = (named_range){"lse", r};
    else
      outs[n_out++] = (named_range){"lse", r};
  }
  if (weights) {
    if (backward) return attn__fail(ATTN_STATUS_INTERNAL, "%s: weights in backward", fn);
    if (p->weights_mode == ATTN_WEIGHTS_PER_HEAD) {
      ATTN__TRY(check_tensor(fn, "weights", weights, 4, true, &r));
      ATTN__TRY(check_dim(fn, "weights", weights, 0, "B", B, "q"));
      ATTN__TRY(check_dim(fn, "weights", weights, 1, "Hq", Hq, "q"));
      ATTN__TRY(check_dim(fn, "weights", weights, 2, "Nq", Nq, "q"));
      ATTN__TRY(check_dim(fn, "weights", weights, 3, "Nk", Nk, "k"));
    } else if (p->weights_mode == ATTN_WEIGHTS_HEAD_MEAN) {
      ATTN__TRY(check_tensor(fn, "weights", weights, 3, true, &r));
      ATTN__TRY(check_dim(fn, "weights", weights, 0, "B", B, "q"));
      ATTN__TRY(check_dim(fn, "weights", weights, 1, "Nq", Nq, "q"));
      ATTN__TRY(check_dim(fn, "weights", weights, 2, "Nk", Nk, "k"));
    } else {
      return attn__fail(ATTN_STATUS_INVALID_ARGUMENT, "%s: params->weights_mode = %d is unknown", fn,
                        (int)p->weights_mode);
    }
    outs[n_out++] = (named_range){"weights", r};
  }
  if (backward) {
    ATTN__TRY(check_tensor(fn, "dout", dout, 4, false, &r));
    in[n_in++] = (named_range){"dout", r};
    for (int d = 0; d < 4; d++)
      ATTN__TRY(check_dim(fn, "dout", dout, d,
                          d == 3   ? "Dv"
                          : d == 2 ? "Nq"
                          : d == 1 ? "Hq"
                                   : "B",
                          out->shape[d], "out"));
    const attn_tensor *grads[3] = {dq, dk, dv}, *like[3] = {q, k, v};
    const char *gname[3] = {"dq", "dk", "dv"}, *lname[3] = {"q", "k", "v"};
    for (int g = 0; g < 3; g++) {
      ATTN__TRY(check_tensor(fn, gname[g], grads[g], 4, true, &r));
      for (int d = 0; d < 4; d++)
        ATTN__TRY(check_dim(fn, gname[g], grads[g], d, "shape", like[g]->shape[d], lname[g]));
      outs[n_out++] = (named_range){gname[g], r};
    }
  }

  /* Parameters. */
  if (!(isfinite(p->scale) && p->scale >= 0.0f))
    return attn__fail(ATTN_STATUS_INVALID_ARGUMENT, "%s: params->scale = %g must be finite and >= 0",
                      fn, (double)p->scale);
  if (!(isfinite(p->softcap) && p->softcap >= 0.0f))
    return attn__fail(ATTN_STATUS_INVALID_ARGUMENT,
                      "%s: params->softcap = %g must be finite and >= 0", fn, (double)p->softcap);
  if (!(p->dropout_p >= 0.0f && p->dropout_p < 1.0f))
    return attn__fail(ATTN_STATUS_INVALID_ARGUMENT, "%s: params->dropout_p = %g outside [0, 1)", fn,
                      (double)p->dropout_p);
  if (p->window_left < -1 || p->window_right < -1)
    return attn__fail(ATTN_STATUS_INVALID_ARGUMENT,
                      "%s: params->window (%lld, %lld): each side must be >= -1", fn,
                      (long long)p->window_left, (long long)p->window_right);
  if (p->align != ATTN_MASK_ALIGN_TOP_LEFT && p->align != ATTN_MASK_ALIGN_BOTTOM_RIGHT)
    return attn__fail(ATTN_STATUS_INVALID_ARGUMENT, "%s: params->align = %d is unknown", fn,
                      (int)p->align);
  if (p->causal != 0 && p->causal != 1)
    return attn__fail(ATTN_STATUS_INVALID_ARGUMENT, "%s: params->causal = %d must be 0 or 1", fn,
                      p->causal);

  bool varlen = p->cu_seqlens_q || p->cu_seqlens_k;
  int64_t n_batch = B;
  if (varlen) {
    if (!p->cu_seqlens_q || !p->cu_seqlens_k)
      return attn__fail(ATTN_STATUS_NULL_POINTER, "%s: params->%s is NULL (cu_seqlens_q and cu_seqlens_k go together)",
                        fn, p->cu_seqlens_q ? "cu_seqlens_k" : "cu_seqlens_q");
    if (B != 1)
      return attn__fail(ATTN_STATUS_SHAPE_MISMATCH, "%s: q: dim 0 (B) is %lld but must be 1 with cu_seqlens",
                        fn, (long long)B);
    if (p->key_lens || p->query_lens || p->bias)
      return attn__fail(ATTN_STATUS_INVALID_ARGUMENT,
                        "%s: params->%s must be NULL with cu_seqlens", fn,
                        p->key_lens ? "key_lens" : p->query_lens ? "query_lens" : "bias");
    if (p->n_seqs < 0 || p->n_seqs > INT32_MAX)
      return attn__fail(ATTN_STATUS_INVALID_ARGUMENT, "%s: params->n_seqs = %lld is invalid", fn,
                        (long long)p->n_seqs);
    const int32_t *cu[2] = {p->cu_seqlens_q, p->cu_seqlens_k};
    const char *cname[2] = {"cu_seqlens_q", "cu_seqlens_k"};
    int64_t total[2] = {Nq, Nk};
    for (int c = 0; c < 2; c++) {
      if (cu[c][0] != 0)
        return attn__fail(ATTN_STATUS_INVALID_ARGUMENT, "%s: params->%s[0] = %d, must be 0", fn,
                          cname[c], cu[c][0]);
      for (int64_t s = 0; s < p->n_seqs; s++)
        if (cu[c][s + 1] < cu[c][s])
          return attn__fail(ATTN_STATUS_INVALID_ARGUMENT, "%s: params->%s decreases at %lld", fn,
                            cname[c], (long long)(s + 1));
      if (cu[c][p->n_seqs] != total[c])
        return attn__fail(ATTN_STATUS_SHAPE_MISMATCH, "%s: params->%s[n_seqs] = %d but N is %lld",
                          fn, cname[c], cu[c][p->n_seqs], (long long)total[c]);
    }
    n_batch = p->n_seqs;
  } else {
    const int32_t *lens[2] = {p->query_lens, p->key_lens};
    const char *lname2[2] = {"query_lens", "key_lens"};
    int64_t lim[2] = {Nq, Nk};
    for (int c = 0; c < 2; c++)
      if (lens[c])
        for (int64_t b = 0; b < B; b++)
          if (lens[c][b] < 0 || lens[c][b] > lim[c])
            return attn__fail(ATTN_STATUS_INVALID_ARGUMENT, "%s: params->%s[%lld] = %d outside 0..%lld",
                              fn, lname2[c], (long long)b, lens[c][b], (long long)lim[c]);
  }
  if (p->bias) {
    const attn_tensor *bt = p->bias;
    if (bt->ndim != 4)
      return attn__fail(ATTN_STATUS_SHAPE_MISMATCH, "%s: params->bias has %d dims, expected 4", fn,
                        (int)bt->ndim);
    int64_t full[4] = {B, Hq, Nq, Nk};
    const char *dn[4] = {"B", "H", "Nq", "Nk"};
    for (int d = 0; d < 4; d++)
      if (bt->shape[d] != 1 && bt->shape[d] != full[d])
        return attn__fail(ATTN_STATUS_SHAPE_MISMATCH,
                          "%s: params->bias: dim %d (%s) is %lld, must be 1 or %lld", fn, d, dn[d],
                          (long long)bt->shape[d], (long long)full[d]);
    /* The innermost dim may be broadcast with stride 0 (a per-query bias). */
    attn_tensor tmp = *bt;
    if (tmp.stride[3] == 0) tmp.stride[3] = 1, tmp.shape[3] = 1;
    ATTN__TRY(check_tensor(fn, "params->bias", &tmp, 4, false, &r));
    in[n_in++] = (named_range){"params->bias", r};
  }
  /* Aliasing: outputs must not overlap inputs or each other. */
  for (int o = 0; o < n_out; o++) {
    for (int i = 0; i < n_in; i++)
      if (attn__ranges_overlap(outs[o].r, in[i].r))
        return attn__fail(ATTN_STATUS_ALIASING, "%s: %s overlaps input %s", fn, outs[o].name,
                          in[i].name);
    for (int o2 = 0; o2 < o; o2++)
      if (attn__ranges_overlap(outs[o].r, outs[o2].r))
        return attn__fail(ATTN_STATUS_ALIASING, "%s: %s overlaps %s", fn, outs[o].name,
                          outs[o2].name);
  }

  pr->B = B;
  pr->Hq = Hq;
  pr->Hkv = Hkv;
  pr->Nq = Nq;
  pr->Nk = Nk;
  pr->Dk = Dk;
  pr->Dv = Dv;
  pr->group = Hq / Hkv;
  pr->scale = p->scale > 0.0f ? p->scale : (float)(1.0 / sqrt((double)Dk));
  pr->p = p;
  pr->q = q;
  pr->k = k;
  pr->v = v;
  pr->out = out;
  pr->lse = lse;
  pr->weights = weights;
  pr->dq = dq;
  pr->dk = dk;
  pr->dv = dv;
  pr->dout = dout;
  pr->varlen = varlen;
  pr->n_batch = n_batch;
  return ATTN_OK;
}

/* ---- entry points ---------------------------------------------------------------------------- */

attn_status attn_sdpa_forward_ref(const attn_tensor *out, const attn_tensor *lse,
                                  const attn_tensor *weights, const attn_tensor *q,
                                  const attn_tensor *k, const attn_tensor *v,
                                  const attn_sdpa_params *params) {
  attn__clear_error();
  attn__sdpa_problem pr;
  attn_sdpa_params defaults;
  ATTN__TRY(validate("attn_sdpa_forward_ref", &pr, &defaults, out, lse, weights, q, k, v, params,
                     NULL, NULL, NULL, NULL, false));
  return attn__sdpa_forward_ref_run(&pr);
}

attn_status attn_sdpa_backward_ref(const attn_tensor *dq, const attn_tensor *dk,
                                   const attn_tensor *dv, const attn_tensor *dout,
                                   const attn_tensor *q, const attn_tensor *k, const attn_tensor *v,
                                   const attn_tensor *out, const attn_tensor *lse,
                                   const attn_sdpa_params *params) {
  attn__clear_error();
  attn__sdpa_problem pr;
  attn_sdpa_params defaults;
  ATTN__TRY(validate("attn_sdpa_backward_ref", &pr, &defaults, out, lse, NULL, q, k, v, params, dq,
                     dk, dv, dout, true));
  return attn__sdpa_backward_ref_run(&pr);
}

/* The fast tables fall back to the scalar entries for what they leave NULL. */
static const attn__kernels *sdpa_table(bool backward) {
  const attn__kernels *t = attn__kernels_get();
  if (backward ? !t->sdpa_backward : !t->sdpa_forward) t = &attn__kernels_scalar;
  return t;
}

static attn_status run_with_workspace(const char *fn, const attn__sdpa_problem *pr, bool backward,
                                      void *workspace, size_t workspace_size) {
  const attn__kernels *t = sdpa_table(backward);
  int threads = attn__pool_size();
  size_t need = backward ? t->sdpa_backward_ws(pr, threads) : t->sdpa_forward_ws(pr, threads);
  void *ws = workspace;
  if (ws) {
    if (workspace_size < need)
      return attn__fail(ATTN_STATUS_WORKSPACE_TOO_SMALL, "%s: workspace_size = %zu, need %zu", fn,
                        workspace_size, need);
    if ((uintptr_t)ws % ATTN_ALIGN)
      return attn__fail(ATTN_STATUS_INVALID_ARGUMENT, "%s: workspace is not 64-byte aligned", fn);
  } else if (need) {
    ws = attn__malloc(need, ATTN_ALIGN);
    if (!ws)
      return attn__fail(ATTN_STATUS_OUT_OF_MEMORY, "%s: cannot allocate a %zu-byte workspace", fn,
                        need);
  }
  attn_status st = backward ? t->sdpa_backward(pr, ws, need) : t->sdpa_forward(pr, ws, need);
  if (ws != workspace) attn__free(ws);
  return st;
}

attn_status attn_sdpa_forward(const attn_tensor *out, const attn_tensor *lse,
                              const attn_tensor *weights, const attn_tensor *q,
                              const attn_tensor *k, const attn_tensor *v,
                              const attn_sdpa_params *params, void *workspace,
                              size_t workspace_size) {
  attn__clear_error();
  attn__sdpa_problem pr;
  attn_sdpa_params defaults;
  ATTN__TRY(validate("attn_sdpa_forward", &pr, &defaults, out, lse, weights, q, k, v, params, NULL,
                     NULL, NULL, NULL, false));
  return run_with_workspace("attn_sdpa_forward", &pr, false, workspace, workspace_size);
}

attn_status attn_sdpa_forward_workspace_size(size_t *size, const attn_tensor *out,
                                             const attn_tensor *lse, const attn_tensor *weights,
                                             const attn_tensor *q, const attn_tensor *k,
                                             const attn_tensor *v,
                                             const attn_sdpa_params *params) {
  attn__clear_error();
  if (!size)
    return attn__fail(ATTN_STATUS_NULL_POINTER, "attn_sdpa_forward_workspace_size: size is NULL");
  attn__sdpa_problem pr;
  attn_sdpa_params defaults;
  ATTN__TRY(validate("attn_sdpa_forward_workspace_size", &pr, &defaults, out, lse, weights, q, k, v,
                     params, NULL, NULL, NULL, NULL, false));
  *size = sdpa_table(false)->sdpa_forward_ws(&pr, attn__pool_size());
  return ATTN_OK;
}

attn_status attn_sdpa_backward(const attn_tensor *dq, const attn_tensor *dk, const attn_tensor *dv,
                               const attn_tensor *dout, const attn_tensor *q, const attn_tensor *k,
                               const attn_tensor *v, const attn_tensor *out,
                               const attn_tensor *lse, const attn_sdpa_params *params,
                               void *workspace, size_t workspace_size) {
  attn__clear_error();
  attn__sdpa_problem pr;
  attn_sdpa_params defaults;
  ATTN__TRY(validate("attn_sdpa_backward", &pr, &defaults, out, lse, NULL, q, k, v, params, dq, dk,
                     dv, dout, true));
  return run_with_workspace("attn_sdpa_backward", &pr, true, workspace, workspace_size);
}

attn_status attn_sdpa_backward_workspace_size(size_t *size, const attn_tensor *dq,
                                              const attn_tensor *dk, const attn_tensor *dv,
                                              const attn_tensor *dout, const attn_tensor *q,
                                              const attn_tensor *k, const attn_tensor *v,
                                              const attn_tensor *out, const attn_tensor *lse,
                                              const attn_sdpa_params *params) {
  attn__clear_error();
  if (!size)
    return attn__fail(ATTN_STATUS_NULL_POINTER, "attn_sdpa_backward_workspace_size: size is NULL");
  attn__sdpa_problem pr;
  attn_sdpa_params defaults;
  ATTN__TRY(validate("attn_sdpa_backward_workspace_size", &pr, &defaults, out, lse, NULL, q, k, v,
                     params, dq, dk, dv, dout, true));
  *size = sdpa_table(true)->sdpa_backward_ws(&pr, attn__pool_size());
  return ATTN_OK;
}
