/* Alignment functions, fast path: f32 rows spread over the thread pool.
 *
 * Each row is computed by one thread with f32 loops the compiler vectorises (a polynomial exp,
 * fixed-width partial sums) and double only where a few scalars are accumulated (the sums that
 * fix the sparsemax/entmax threshold). Sparsemax finds its threshold by Michelot's fixed point
 * (each pass drops the entries below the current threshold, O(n) per pass, exact), entmax-1.5
 * sorts, alpha-entmax bisects. The semantics are the reference's (src/ref/align_ref.c). */
#include "align_internal.h"

#include <stdlib.h>

/* Every row kernel is inlined into align_task_impl, which is compiled three times (baseline,
 * AVX2, AVX-512) through GCC's target attribute; attn_get_isa() picks one. */
#include "align_rows.h"

/* ---- one row, in f32 ------------------------------------------------------------------------ */

typedef struct row_scratch {
  float *z, *a, *g, *s; /* n floats each */
} row_scratch;

static int cmp_desc_f(const void *a, const void *b) {
  float x = *(const float *)a, y = *(const float *)b;
  return (x < y) - (x > y);
}

/* a = align(z); s is n floats of scratch. */
ATTN_AI void fast_row_forward(const attn_align_params *p, const float *z, float *a, float *s,
                             int64_t n) {
  if (p->kind == ATTN_ALIGN_SIGMOID) {
    for (int64_t j = 0; j < n; j++) {
      float e = attn__exp_neg(-fabsf(z[j]));
      float inv = 1.0f / (1.0f + e);
      a[j] = z[j] >= 0.0f ? inv : e * inv;
      if (z[j] != z[j]) a[j] = z[j];
    }
    return;
  }
  int64_t count;
  bool has_nan;
  float m = row_max(z, n, &count, &has_nan);
  if (has_nan || count == 0) {
    fill(a, n, has_nan ? NAN : 0.0f);
    return;
  }
  switch (p->kind) {
    case ATTN_ALIGN_SOFTMAX: softmax_row(z, a, n, m); break;
    case ATTN_ALIGN_HARDMAX: {
      int64_t best = 0;
      while (!(z[best] == m)) best++;
      fill(a, n, 0.0f);
      a[best] = 1.0f;
      break;
    }
    case ATTN_ALIGN_SPARSEMAX: {
      /* Michelot: with S the entries above tau, tau = (sum_S z - 1)/|S|; repeat until S stops
       * shrinking. tau only grows, and the fixed point is the sparsemax threshold. The first
       * pass starts from tau = m - 1, below which no entry can be in the support. */
      double tau = (double)m - 1.0;
      int64_t prev = -1;
      /* k shrinks at every pass but the last; the cap only guards against rounding cycles. */
      for (int64_t pass = 0; pass <= n + 1; pass++) {
        double sum = 0.0;
        int64_t k = 0;
        for (int64_t j = 0; j < n; j++)
          if ((double)z[j] > tau) {
            sum += (double)z[j];
            k++;
          }
        double t_new = (sum - 1.0) / (double)k;
        if (k == prev) break;
        prev = k;
        tau = t_new;
      }
      for (int64_t j = 0; j < n; j++) {
        double d = (double)z[j] - tau;
        a[j] = d > 0.0 ? (float)d : 0.0f;
      }
      break;
    }
    case ATTN_ALIGN_ENTMAX15: {
      /* Only x > -1 can be in the support (tau >= -1, where the top entry alone has p = 1),
       * so only those are sorted. */
      int64_t k = 0;
      for (int64_t j = 0; j < n; j++) {
        float x = (z[j] - m) * 0.5f;
        if (x > -1.0f) s[k++] = x;
      }
      qsort(s, (size_t)k, sizeof(float), cmp_desc_f);
      /* Support size k* = #{k : tau_k <= x_(k)}, then tau = tau_{k*} (MECHANISMS.md §3.9). */
      double s1 = 0.0, s2 = 0.0, tau;
      int64_t support = 0;
      for (int64_t i = 0; i < k; i++) {
        double x = (double)s[i], kk = (double)(i + 1);
        s1 += x;
        s2 += x * x;
        double mu = s1 / kk, delta = (1.0 - (s2 - s1 * mu)) / kk;
        support += mu - sqrt(delta > 0.0 ? delta : 0.0) <= x;
      }
      s1 = s2 = 0.0;
      for (int64_t i = 0; i < support; i++) {
        s1 += (double)s[i];
        s2 += (double)s[i] * (double)s[i];
      }
      {
        double kk = (double)support, mu = s1 / kk, delta = (1.0 - (s2 - s1 * mu)) / kk;
        tau = mu - sqrt(delta > 0.0 ? delta : 0.0);
      }
      for (int64_t j = 0; j < n; j++) {
        double x = z[j] > -INFINITY ? (double)((z[j] - m) * 0.5f) - tau : 0.0;
        a[j] = x > 0.0 ? (float)(x * x) : 0.0f;
      }
      break;
    }
    case ATTN_ALIGN_ENTMAX_BISECT: {
      float am1 = p->alpha - 1.0f, inv = 1.0f / am1;
      int pw = p->alpha == 2.0f ? 1 : p->alpha == 1.5f ? 2 : 0;
      /* s_j = (alpha - 1) z_j, blocked -> -inf. */
      for (int64_t j = 0; j < n; j++) s[j] = z[j] > -INFINITY ? am1 * z[j] : -INFINITY;
      float xmax = am1 * m;
      double tau_lo = (double)xmax - 1.0, tau_hi = (double)xmax - pow(1.0 / (double)count, am1);
      double dm = tau_hi - tau_lo, tau_m = tau_lo;
      for (int it = 0; it < p->n_iter; it++) {
        dm /= 2.0;
        tau_m = tau_lo + dm;
        float tf = (float)tau_m;
        float part[8] = {0, 0, 0, 0, 0, 0, 0, 0};
        /* y = max(s - tau, 0)^(1/(alpha-1)); the max on the bits (vectorises); blocked s = -inf
         * gives 0. Sums in 8 lanes, j = l mod 8. */
        int64_t j = 0;
        if (pw != 0) {
          for (; j + 8 <= n; j += 8)
            for (int l = 0; l < 8; l++) {
              float x = s[j + l] - tf;
              int32_t xb;
              memcpy(&xb, &x, 4);
              xb = xb < 0 ? 0 : xb;
              memcpy(&x, &xb, 4);
              float y = pw == 1 ? x : x * x;
              a[j + l] = y;
              part[l] += y;
            }
        }
        for (; j < n; j++) {
          float x = s[j] - tf;
          float y = x > 0.0f ? (pw == 1 ? x : pw == 2 ? x * x : powf(x, inv)) : 0.0f;
          a[j] = y;
          part[j & 7] += y;
        }
        double f = -1.0;
        for (int l = 0; l < 8; l++) f += (double)part[l];
        /* f(tau_lo) >= 0 throughout; see the reference for why not f * f_lo >= 0. */
        if (f >= 0.0) tau_lo = tau_m;
      }
      /* a holds p(tau_m) of the last step: renormalise. */
      double sum = 0.0;
      for (int64_t j = 0; j < n; j++) sum += (double)a[j];
      float is = (float)(1.0 / sum);
      for (int64_t j = 0; j < n; j++) a[j] *= is;
      break;
    }
    default: break;
  }
}

/* dz = J^T g from a (and z for the straight-through hardmax); s is n floats of scratch. */
ATTN_AI void fast_row_backward(const attn_align_params *p, const float *z, const float *a,
                              const float *g, float *dz, float *s, int64_t n) {
  switch (p->kind) {
    case ATTN_ALIGN_SIGMOID:
      for (int64_t j = 0; j < n; j++) dz[j] = a[j] * (1.0f - a[j]) * g[j];
      return;
    case ATTN_ALIGN_HARDMAX:
      if (!p->straight_through) {
        fill(dz, n, 0.0f);
        return;
      }
      {
        /* Straight-through: the softmax gradient at the same temperature. */
        attn_align_params sp = *p;
        sp.kind = ATTN_ALIGN_SOFTMAX;
        fast_row_forward(&sp, z, s, dz, n);
        softmax_grad(s, g, dz, n);
      }
      return;
    case ATTN_ALIGN_SOFTMAX: softmax_grad(a, g, dz, n); return;
    default: {
      bool sparse = p->kind == ATTN_ALIGN_SPARSEMAX ||
                    (p->kind == ATTN_ALIGN_ENTMAX_BISECT && p->alpha == 2.0f);
      bool sq = p->kind == ATTN_ALIGN_ENTMAX15 ||
                (p->kind == ATTN_ALIGN_ENTMAX_BISECT && p->alpha == 1.5f);
      float ex = 2.0f - p->alpha;
      double ssum = 0.0, sg = 0.0;
      for (int64_t j = 0; j < n; j++) {
        float v = a[j] > 0.0f ? (sparse ? 1.0f : sq ? sqrtf(a[j]) : powf(a[j], ex)) : 0.0f;
        s[j] = v;
        ssum += (double)v;
        sg += (double)v * (double)g[j];
      }
      float c = ssum > 0.0 ? (float)(sg / ssum) : 0.0f;
      for (int64_t j = 0; j < n; j++) dz[j] = s[j] * (g[j] - c);
      return;
    }
  }
}

/* ---- driver --------------------------------------------------------------------------------- */

#define row_offset attn__align_row_offset

typedef struct align_job {
  const attn_align_params *p;
  const attn_tensor *out, *in, *mask, *d_in, *d_out;
  float *d_positions;
  int64_t rows, n, rows_per_item;
  char *ws;
  size_t per_thread;
  bool backward;
} align_job;

/* Floats of per-thread scratch per element of a row: z, a, g and s (row_scratch). */
#define ALIGN_FLOATS 4

bool attn__align_rows_bytes(int64_t n, size_t floats_per_elem, size_t *per_thread, size_t *total) {
  size_t bytes;
  if (!attn__mul_size((size_t)n, floats_per_elem * sizeof(float), &bytes) ||
      bytes > SIZE_MAX - ATTN_ALIGN)
    return false;
  *per_thread = attn__round_up(bytes, ATTN_ALIGN);
  return attn__mul_size(*per_thread, (size_t)attn__pool_size(), total);
}

attn_status attn__align_rows_run(const char *fn, int64_t rows, int64_t n, size_t floats_per_elem,
                                 attn__task_fn task, void *job, char **ws, size_t *per_thread,
                                 int64_t *rows_per_item, void *workspace, size_t workspace_size) {
  size_t need;
  if (!attn__align_rows_bytes(n, floats_per_elem, per_thread, &need))
    return attn__fail(ATTN_STATUS_OVERFLOW, "%s: workspace size overflows", fn);
  void *scratch, *own;
  ATTN__TRY(attn__workspace_get(fn, need, workspace, workspace_size, &scratch, &own));
  *ws = (char *)scratch;
  /* About 16K elements per item, so small rows are batched and long ones spread. */
  *rows_per_item = n >= 16384 ? 1 : 16384 / n;
  attn__parallel_for((rows + *rows_per_item - 1) / *rows_per_item, task, job);
  attn__free(own);
  return ATTN_OK;
}

/* z = in / T + mask with the local window; returns [lo, hi] of the window (clipped to the row). */
ATTN_AI void build_z(const align_job *jb, int64_t r, float *z, int64_t *lo_out, int64_t *hi_out) {
  const attn_align_params *p = jb->p;
  int64_t n = jb->n, pos;
  row_offset(jb->in, jb->in, r, &pos);
  attn__build_z_row(z, jb->in, jb->mask, r, n, p->temperature, NULL);
  int64_t lo = 0, hi = n - 1;
  if (p->local != ATTN_ALIGN_LOCAL_NONE) {
    int64_t c = p->local == ATTN_ALIGN_LOCAL_M ? pos
                                                : (int64_t)floor((double)p->positions[r] + 0.5);
    lo = c - p->window > 0 ? c - p->window : 0;
    hi = c + p->window < n - 1 ? c + p->window : n - 1;
    for (int64_t j = 0; j < lo; j++) z[j] = -INFINITY;
    for (int64_t j = hi + 1; j < n; j++) z[j] = -INFINITY;
  }
  *lo_out = lo;
  *hi_out = hi;
}

ATTN_AI void align_task_impl(void *ctx, int64_t item, int thread_id) {
  const align_job *jb = (const align_job *)ctx;
  const attn_align_params *p = jb->p;
  int64_t n = jb->n;
  float *base = (float *)(jb->ws + (size_t)thread_id * jb->per_thread);
  row_scratch w = {base, base + n, base + 2 * n, base + 3 * n};
  bool local_p = p->local == ATTN_ALIGN_LOCAL_P && p->window > 0;
  float sigma2 = (float)((double)p->window * (double)p->window / 4.0);
  int64_t r0 = item * jb->rows_per_item;
  int64_t r1 = r0 + jb->rows_per_item < jb->rows ? r0 + jb->rows_per_item : jb->rows;
  for (int64_t r = r0; r < r1; r++) {
    int64_t lo = 0, hi = n - 1;
    if (!jb->backward) {
      build_z(jb, r, w.z, &lo, &hi);
      float *o = (float *)jb->out->data + row_offset(jb->out, jb->in, r, NULL);
      fast_row_forward(p, w.z, o, w.s, n);
      if (local_p) {
        float pr = p->positions[r];
        for (int64_t j = lo; j <= hi; j++) {
          float d = (float)j - pr;
          o[j] *= attn__exp_neg(-d * d / (2.0f * sigma2));
        }
      }
      continue;
    }
    const float *go = (const float *)jb->d_out->data + row_offset(jb->d_out, jb->in, r, NULL);
    float *di = (float *)jb->d_in->data + row_offset(jb->d_in, jb->in, r, NULL);
    const float *a;
    bool recompute = p->local == ATTN_ALIGN_LOCAL_P ||
                     (p->kind == ATTN_ALIGN_HARDMAX && p->straight_through);
    if (recompute) {
      build_z(jb, r, w.z, &lo, &hi);
      fast_row_forward(p, w.z, w.a, w.s, n);
      a = w.a;
    } else {
      a = (const float *)jb->out->data + row_offset(jb->out, jb->in, r, NULL);
    }
    const float *g = go;
    if (p->local == ATTN_ALIGN_LOCAL_P) {
      /* a = ã f, f_j = exp(-(j - p)^2 / (2 sigma^2)): dL/dp = sum_j ã_j f_j (j - p)/sigma^2 g_j
       * and ã receives f g (inside the window; z = -inf outside, so nothing flows there). */
      float pr = p->positions[r];
      double dp = 0.0;
      fill(w.g, n, 0.0f);
      for (int64_t j = lo; j <= hi; j++) {
        float f = 1.0f;
        if (local_p) {
          float d = (float)j - pr;
          f = attn__exp_neg(-d * d / (2.0f * sigma2));
          dp += (double)(a[j] * f * d / sigma2 * go[j]);
        }
        w.g[j] = f * go[j];
      }
      if (jb->d_positions) jb->d_positions[r] = (float)dp;
      g = w.g;
    }
    fast_row_backward(p, w.z, a, g, di, w.s, n);
    if (p->temperature != 1.0f) {
      float inv_t = 1.0f / p->temperature;
      for (int64_t j = 0; j < n; j++) di[j] *= inv_t;
    }
  }
}

ATTN__ISA_TASKS(align_task, align_task_impl(ctx, item, tid))

attn_status attn_align_workspace_size(size_t *size, const attn_tensor *in,
                                      const attn_align_params *params) {
  attn__clear_error();
  (void)params;
  if (!size) return attn__fail(ATTN_STATUS_NULL_POINTER, "attn_align_workspace_size: size is NULL");
  if (!in) return attn__fail(ATTN_STATUS_NULL_POINTER, "attn_align_workspace_size: in is NULL");
  if (in->ndim < 1 || in->ndim > ATTN_MAX_DIMS)
    return attn__fail(ATTN_STATUS_SHAPE_MISMATCH,
                      "attn_align_workspace_size: in has %d dims, expected 1 to 4", (int)in->ndim);
  int64_t n = in->shape[in->ndim - 1];
  if (n < 1)
    return attn__fail(ATTN_STATUS_INVALID_ARGUMENT,
                      "attn_align_workspace_size: in: last dim (n) is %lld, must be >= 1",
                      (long long)n);
  size_t per_thread;
  if (!attn__align_rows_bytes(n, ALIGN_FLOATS, &per_thread, size))
    return attn__fail(ATTN_STATUS_OVERFLOW, "attn_align_workspace_size: size overflows");
  return ATTN_OK;
}

static attn_status run(const char *fn, align_job *jb, void *workspace, size_t workspace_size) {
  if (jb->rows == 0) return ATTN_OK;
  return attn__align_rows_run(fn, jb->rows, jb->n, ALIGN_FLOATS, align_task_pick(), jb, &jb->ws,
                              &jb->per_thread, &jb->rows_per_item, workspace, workspace_size);
}

attn_status attn_align_forward(const attn_tensor *out, const attn_tensor *in,
                               const attn_tensor *mask, const attn_align_params *params,
                               void *workspace, size_t workspace_size) {
  static const char fn[] = "attn_align_forward";
  attn__clear_error();
  attn_align_params p = params ? *params : attn_align_params_default();
  align_job jb;
  memset(&jb, 0, sizeof jb);
  ATTN__TRY(attn__align_check(fn, NULL, out, NULL, NULL, NULL, in, mask, &p, &jb.rows, &jb.n));
  jb.p = &p;
  jb.out = out;
  jb.in = in;
  jb.mask = mask;
  return run(fn, &jb, workspace, workspace_size);
}

attn_status attn_align_backward(const attn_tensor *d_in, float *d_positions,
                                const attn_tensor *d_out, const attn_tensor *out,
                                const attn_tensor *in, const attn_tensor *mask,
                                const attn_align_params *params, void *workspace,
                                size_t workspace_size) {
  static const char fn[] = "attn_align_backward";
  attn__clear_error();
  attn_align_params p = params ? *params : attn_align_params_default();
  if (!d_out) return attn__fail(ATTN_STATUS_NULL_POINTER, "%s: d_out is NULL", fn);
  if (!out) return attn__fail(ATTN_STATUS_NULL_POINTER, "%s: out is NULL", fn);
  align_job jb;
  memset(&jb, 0, sizeof jb);
  ATTN__TRY(
      attn__align_check(fn, NULL, d_in, d_positions, d_out, out, in, mask, &p, &jb.rows, &jb.n));
  jb.p = &p;
  jb.out = out;
  jb.in = in;
  jb.mask = mask;
  jb.d_in = d_in;
  jb.d_out = d_out;
  jb.d_positions = p.local == ATTN_ALIGN_LOCAL_P ? d_positions : NULL;
  jb.backward = true;
  return run(fn, &jb, workspace, workspace_size);
}
