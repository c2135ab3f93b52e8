/* Monotonic attention, fast path (attn/monotonic.h): sequences spread over the thread pool.
 *
 * p = sigmoid(e + mask) is computed in f32 with the shared branch-free exp (vectorised); the
 * alignment recurrence is sequential in j and runs in double (as fast as f32 for a dependent
 * chain, and exact enough that long memories do not drift), with the per-step code shared with the
 * reference's backward (src/core/monotonic_internal.h). The backward reads alpha_{i-1} from the
 * forward's output and carries dL/d alpha_{i-1} from step to step, O(Tk) per step. RECURSIVE runs
 * four steps at a time as a wavefront, forward and backward, so their dependent chains overlap. */
#include "monotonic_internal.h"

#include "align_rows.h"

typedef struct mono_job {
  const attn_monotonic_params *p;
  const attn_tensor *energy, *mask, *alpha, *d_energy, *d_alpha;
  int64_t seqs, tq, tk;
  char *ws;
  size_t per_thread;
  bool backward;
} mono_job;

/* Steps of one sequence the recursive forward runs together (see mono_forward_wavefront). */
#define WAVE 4

/* Doubles per thread: p, a, alpha / ga, carry, gp, 3 Tk of step scratch, then 2 Tk floats, then
 * 6 WAVE rows of Tk doubles for the wavefronts. */
static bool per_thread_bytes(int64_t tk, size_t *bytes) {
  const size_t per_key = (8 + 6 * WAVE) * sizeof(double) + 2 * sizeof(float);
  if (!attn__mul_size((size_t)tk, per_key, bytes) || *bytes > SIZE_MAX - ATTN_ALIGN) return false;
  *bytes = attn__round_up(*bytes, ATTN_ALIGN);
  return true;
}

/* p of row r into pd (double) through z (Tk floats of scratch) and pf (Tk floats). */
ATTN_AI void p_row(const mono_job *jb, int64_t r, float *z, float *pf, double *pd) {
  const int64_t n = jb->tk;
  const attn_monotonic_params *prm = jb->p;
  const float *noise = NULL;
  if (prm->noise_std > 0.0f && prm->mode != ATTN_MONOTONIC_HARD) {
    /* The noise goes into pf first (the reference's order: (e + s n) + mask). */
    attn__mono_normal_row(pf, prm->seed, r, n);
    for (int64_t j = 0; j < n; j++) pf[j] *= prm->noise_std;
    noise = pf;
  }
  attn__build_z_row(z, jb->energy, jb->mask, r, n, 1.0f, noise);
  for (int64_t j = 0; j < n; j++) {
    float e = attn__exp_neg(-fabsf(z[j]));
    float inv = 1.0f / (1.0f + e);
    float pj = z[j] >= 0.0f ? inv : e * inv;
    pf[j] = z[j] != z[j] ? z[j] : pj;
  }
  for (int64_t j = 0; j < n; j++) pd[j] = (double)pf[j];
}

/* The recursive forward of steps i0 .. i0 + k - 1 (k <= WAVE) from a = alpha_{i0-1}, as a
 * wavefront: step i0 + w runs position j at time t = j + w, when step i0 + w - 1 has just
 * produced alpha at j. The k recurrences are then independent chains in one loop, which hides
 * the latency of each (q = (1 - p) q + a is a dependent multiply-add per position). Every element
 * is computed by exactly the operations of attn__mono_step_recursive, so the bits are the same.
 * P and A hold k rows of n doubles (p in, alpha out). */
ATTN_AI void mono_forward_wavefront(const double *a, const double *P, double *A, int k, int64_t n) {
  double q[WAVE];
  for (int w = 0; w < WAVE; w++) q[w] = 0.0;
  for (int64_t t = 0; t < n + k - 1; t++)
    for (int w = 0; w < k; w++) {
      int64_t j = t - w;
      if (j < 0 || j >= n) continue;
      const double *av = w == 0 ? a : A + (w - 1) * n, *pw = P + w * n;
      double qv = j == 0 ? av[0] : (1.0 - pw[j - 1]) * q[w] + av[j];
      q[w] = qv;
      A[w * n + j] = pw[j] * qv;
    }
}

/* The recursive backward of steps i_w = i_top - w, w < k (descending), as a wavefront in reverse:
 * step i_w runs position j at time t = (n - 1 - j) + w, when step i_w + 1 (w - 1) has just
 * produced dL/d alpha_{i_w, j} through its q. Per row w: P p, A alpha_{i_w - 1}, D dL/d alpha
 * from the output, Q q (recomputed here), G dq (= the gradient passed to alpha_{i_w - 1}), GP
 * dL/dp. carry: dL/d alpha_{i_top} from the steps after the group. The operations per element
 * are those of attn__mono_step_backward, so the bits are the same. */
ATTN_AI void mono_backward_wavefront(const double *carry, const double *P, const double *A,
                                     const double *D, double *Q, double *G, double *GP, int k,
                                     int64_t n) {
  double acc[WAVE], dq_next[WAVE];
  for (int w = 0; w < WAVE; w++) {
    acc[w] = w < k ? A[w * n] : 0.0;
    dq_next[w] = 0.0;
  }
  /* q of every step: independent chains (alpha_{i-1} is known). */
  for (int64_t j = 0; j < n; j++)
    for (int w = 0; w < k; w++) {
      Q[w * n + j] = acc[w];
      if (j + 1 < n) acc[w] = (1.0 - P[w * n + j]) * acc[w] + A[w * n + j + 1];
    }
  for (int64_t t = 0; t < n + k - 1; t++)
    for (int w = 0; w < k; w++) {
      int64_t j = n - 1 - (t - w);
      if (j < 0 || j >= n) continue;
      const double ga = D[w * n + j] + (w == 0 ? carry[j] : G[(w - 1) * n + j]);
      const double pj = P[w * n + j];
      GP[w * n + j] = (ga - dq_next[w]) * Q[w * n + j];
      const double dq = ga * pj + dq_next[w] * (1.0 - pj);
      G[w * n + j] = dq;
      dq_next[w] = dq;
    }
}

ATTN_AI void mono_task_impl(void *ctx, int64_t s, int thread_id) {
  const mono_job *jb = (const mono_job *)ctx;
  const int64_t tq = jb->tq, n = jb->tk;
  double *p = (double *)(jb->ws + (size_t)thread_id * jb->per_thread);
  double *a = p + n, *cur = a + n, *carry = cur + n, *gp = carry + n, *scratch = gp + n;
  float *z = (float *)(scratch + 3 * n), *pf = z + n;
  const bool parallel = jb->p->mode == ATTN_MONOTONIC_PARALLEL;
  for (int64_t j = 0; j < n; j++) a[j] = j == 0 ? 1.0 : 0.0;
  if (!jb->backward && jb->p->mode == ATTN_MONOTONIC_RECURSIVE) {
    double *P = (double *)(pf + n), *A = P + WAVE * n;
    for (int64_t i0 = 0; i0 < tq; i0 += WAVE) {
      int k = tq - i0 < WAVE ? (int)(tq - i0) : WAVE;
      for (int w = 0; w < k; w++) p_row(jb, s * tq + i0 + w, z, pf, P + w * n);
      mono_forward_wavefront(a, P, A, k, n);
      for (int w = 0; w < k; w++) {
        float *o = (float *)jb->alpha->data +
                   attn__align_row_offset(jb->alpha, jb->energy, s * tq + i0 + w, NULL);
        for (int64_t j = 0; j < n; j++) o[j] = (float)A[w * n + j];
      }
      memcpy(a, A + (k - 1) * n, (size_t)n * sizeof(double));
    }
    return;
  }
  if (!jb->backward) {
    int64_t t = 0;
    bool alive = true;
    for (int64_t i = 0; i < tq; i++) {
      const int64_t r = s * tq + i;
      float *o = (float *)jb->alpha->data + attn__align_row_offset(jb->alpha, jb->energy, r, NULL);
      if (jb->p->mode == ATTN_MONOTONIC_HARD) {
        /* p >= 0.5 exactly when z = e + mask >= 0 (no noise at test time). */
        attn__build_z_row(z, jb->energy, jb->mask, r, n, 1.0f, NULL);
        int64_t j = t;
        if (alive)
          while (j < n && !(z[j] >= 0.0f)) j++;
        fill(o, n, 0.0f);
        if (alive && j < n) {
          o[j] = 1.0f;
          t = j;
        } else {
          alive = false;
        }
        continue;
      }
      p_row(jb, r, z, pf, p);
      if (parallel)
        attn__mono_step_parallel(cur, a, p, n, scratch, NULL);
      else
        attn__mono_step_recursive(cur, a, p, n);
      for (int64_t j = 0; j < n; j++) o[j] = (float)cur[j];
      double *tmp = a; /* alpha_i is the next step's alpha_{i-1} */
      a = cur;
      cur = tmp;
    }
    return;
  }
  /* Backward, steps from last to first. Invariant: carry = dL/d alpha_i through later steps. */
  for (int64_t j = 0; j < n; j++) carry[j] = 0.0;
  if (!parallel) {
    double *P = (double *)(pf + n), *A = P + WAVE * n, *D = A + WAVE * n, *Q = D + WAVE * n;
    double *G = Q + WAVE * n, *GP = G + WAVE * n;
    for (int64_t top = tq - 1; top >= 0; top -= WAVE) {
      int k = top + 1 < WAVE ? (int)(top + 1) : WAVE;
      for (int w = 0; w < k; w++) {
        const int64_t i = top - w, r = s * tq + i;
        p_row(jb, r, z, pf, P + w * n);
        const float *go = (const float *)jb->d_alpha->data +
                          attn__align_row_offset(jb->d_alpha, jb->energy, r, NULL);
        for (int64_t j = 0; j < n; j++) D[w * n + j] = (double)go[j];
        if (i > 0) {
          const float *prev = (const float *)jb->alpha->data +
                              attn__align_row_offset(jb->alpha, jb->energy, r - 1, NULL);
          for (int64_t j = 0; j < n; j++) A[w * n + j] = (double)prev[j];
        } else {
          for (int64_t j = 0; j < n; j++) A[w * n + j] = j == 0 ? 1.0 : 0.0;
        }
      }
      mono_backward_wavefront(carry, P, A, D, Q, G, GP, k, n);
      for (int w = 0; w < k; w++) {
        float *de = (float *)jb->d_energy->data +
                    attn__align_row_offset(jb->d_energy, jb->energy, s * tq + top - w, NULL);
        const double *pw = P + w * n, *gw = GP + w * n;
        for (int64_t j = 0; j < n; j++) de[j] = (float)(gw[j] * pw[j] * (1.0 - pw[j]));
      }
      memcpy(carry, G + (k - 1) * n, (size_t)n * sizeof(double));
    }
    return;
  }
  for (int64_t i = tq - 1; i >= 0; i--) {
    const int64_t r = s * tq + i;
    const float *go =
        (const float *)jb->d_alpha->data + attn__align_row_offset(jb->d_alpha, jb->energy, r, NULL);
    for (int64_t j = 0; j < n; j++) cur[j] = (double)go[j] + carry[j];
    if (i > 0) {
      const float *prev = (const float *)jb->alpha->data +
                          attn__align_row_offset(jb->alpha, jb->energy, r - 1, NULL);
      for (int64_t j = 0; j < n; j++) a[j] = (double)prev[j];
    } else {
      for (int64_t j = 0; j < n; j++) a[j] = j == 0 ? 1.0 : 0.0;
    }
    p_row(jb, r, z, pf, p);
    attn__mono_step_backward(parallel, gp, carry, cur, a, p, n, scratch);
    float *de =
        (float *)jb->d_energy->data + attn__align_row_offset(jb->d_energy, jb->energy, r, NULL);
    for (int64_t j = 0; j < n; j++) de[j] = (float)(gp[j] * p[j] * (1.0 - p[j]));
  }
}

ATTN__ISA_TASKS(mono_task, mono_task_impl(ctx, item, tid))

attn_status attn_monotonic_workspace_size(size_t *size, const attn_tensor *energy) {
  static const char fn[] = "attn_monotonic_workspace_size";
  attn__clear_error();
  if (!size) return attn__fail(ATTN_STATUS_NULL_POINTER, "%s: size is NULL", fn);
  if (!energy) return attn__fail(ATTN_STATUS_NULL_POINTER, "%s: energy is NULL", fn);
  if (energy->ndim < 2 || energy->ndim > ATTN_MAX_DIMS)
    return attn__fail(ATTN_STATUS_SHAPE_MISMATCH, "%s: energy has %d dims, expected 2 to 4", fn,
                      (int)energy->ndim);
  int64_t tk = energy->shape[energy->ndim - 1];
  if (tk < 1)
    return attn__fail(ATTN_STATUS_INVALID_ARGUMENT,
                      "%s: energy: last dim (Tk) is %lld, must be >= 1", fn, (long long)tk);
  size_t per;
  if (!per_thread_bytes(tk, &per) || !attn__mul_size(per, (size_t)attn__pool_size(), size))
    return attn__fail(ATTN_STATUS_OVERFLOW, "%s: size overflows", fn);
  return ATTN_OK;
}

static attn_status run(const char *fn, mono_job *jb, void *workspace, size_t workspace_size) {
  if (jb->seqs == 0) return ATTN_OK;
  size_t need;
  if (!per_thread_bytes(jb->tk, &jb->per_thread) ||
      !attn__mul_size(jb->per_thread, (size_t)attn__pool_size(), &need))
    return attn__fail(ATTN_STATUS_OVERFLOW, "%s: workspace size overflows", fn);
  void *ws, *own;
  ATTN__TRY(attn__workspace_get(fn, need, workspace, workspace_size, &ws, &own));
  jb->ws = (char *)ws;
  /* One item per sequence: its steps depend on each other. */
  attn__parallel_for(jb->seqs, mono_task_pick(), jb);
  attn__free(own);
  return ATTN_OK;
}

attn_status attn_monotonic_forward(const attn_tensor *alpha, const attn_tensor *energy,
                                   const attn_tensor *mask, const attn_monotonic_params *params,
                                   void *workspace, size_t workspace_size) {
  static const char fn[] = "attn_monotonic_forward";
  attn__clear_error();
  attn_monotonic_params p = params ? *params : attn_monotonic_params_default();
  mono_job jb;
  memset(&jb, 0, sizeof jb);
  ATTN__TRY(
      attn__monotonic_check(fn, alpha, NULL, NULL, energy, mask, &p, &jb.seqs, &jb.tq, &jb.tk));
  jb.p = &p;
  jb.energy = energy;
  jb.mask = mask;
  jb.alpha = alpha;
  return run(fn, &jb, workspace, workspace_size);
}

attn_status attn_monotonic_backward(const attn_tensor *d_energy, const attn_tensor *d_alpha,
                                    const attn_tensor *alpha, const attn_tensor *energy,
                                    const attn_tensor *mask, const attn_monotonic_params *params,
                                    void *workspace, size_t workspace_size) {
  static const char fn[] = "attn_monotonic_backward";
  attn__clear_error();
  attn_monotonic_params p = params ? *params : attn_monotonic_params_default();
  if (!d_alpha) return attn__fail(ATTN_STATUS_NULL_POINTER, "%s: d_alpha is NULL", fn);
  mono_job jb;
  memset(&jb, 0, sizeof jb);
  ATTN__TRY(attn__monotonic_check(fn, d_energy, d_alpha, alpha, energy, mask, &p, &jb.seqs, &jb.tq,
                                  &jb.tk));
  jb.p = &p;
  jb.energy = energy;
  jb.mask = mask;
  jb.alpha = alpha;
  jb.d_energy = d_energy;
  jb.d_alpha = d_alpha;
  jb.backward = true;
  return run(fn, &jb, workspace, workspace_size);
}
