/* dev: process CPU time of attn_additive_forward and _backward on one thread, for before/after
 * comparisons on a shared machine (wall time there counts other processes' turns on the core;
 * CPU time does not). Link against two builds of libattn.a and alternate the runs:
 *
 *   gcc -O2 -I../include 05_additive_cputime.c ../build/libattn.a -lm -lpthread -o /tmp/add_new
 *   /tmp/add_new B T d Dv REPS [THREADS]      e.g. /tmp/add_new 8 1024 128 128 3
 *
 * prints the best (minimum) CPU and wall seconds per call of REPS forward and backward calls,
 * with pair-dims/s (B T T d per second), and dq1[0], dw[0] as a sanity check. */
#include "attn/additive.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <math.h>
static double cpu(void) {
  struct timespec t;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
  return t.tv_sec + 1e-9 * t.tv_nsec;
}
static double wall(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec + 1e-9 * t.tv_nsec;
}
static float *R(size_t n, unsigned *s, float sc) {
  float *p = aligned_alloc(64, (n * 4 + 63) / 64 * 64);
  for (size_t i = 0; i < n; i++) {
    *s = *s * 1664525u + 1013904223u;
    p[i] = sc * ((*s >> 8) / 8388608.0f - 1.0f);
  }
  return p;
}
int main(int argc, char **argv) {
  int64_t B = atoi(argv[1]), T = atoi(argv[2]), d = atoi(argv[3]), Dv = atoi(argv[4]);
  int reps = atoi(argv[5]);
  attn_set_num_threads(argc > 6 ? atoi(argv[6]) : 1);
  unsigned s = 1;
  float *q = R(B * T * d, &s, 1), *k = R(B * T * d, &s, 1), *v = R(B * T * Dv, &s, 1),
        *w = R(d, &s, 1 / sqrtf(d)), *b = R(d, &s, 1), *o = R(B * T * Dv, &s, 1),
        *l = R(B * T, &s, 1), *go = R(B * T * Dv, &s, 1), *dq = R(B * T * d, &s, 1),
        *dk = R(B * T * d, &s, 1), *dv = R(B * T * Dv, &s, 1), *dw = R(d, &s, 1), *db = R(d, &s, 1);
  int64_t sq[3] = {B, T, d}, sv[3] = {B, T, Dv}, sl[2] = {B, T}, sw[1] = {d};
  attn_tensor tq = attn_tensor_make(q, ATTN_DTYPE_F32, 3, sq),
              tk = attn_tensor_make(k, ATTN_DTYPE_F32, 3, sq),
              tv = attn_tensor_make(v, ATTN_DTYPE_F32, 3, sv),
              tw = attn_tensor_make(w, ATTN_DTYPE_F32, 1, sw),
              tb = attn_tensor_make(b, ATTN_DTYPE_F32, 1, sw),
              to = attn_tensor_make(o, ATTN_DTYPE_F32, 3, sv),
              tl = attn_tensor_make(l, ATTN_DTYPE_F32, 2, sl),
              tgo = attn_tensor_make(go, ATTN_DTYPE_F32, 3, sv),
              tdq = attn_tensor_make(dq, ATTN_DTYPE_F32, 3, sq),
              tdk = attn_tensor_make(dk, ATTN_DTYPE_F32, 3, sq),
              tdv = attn_tensor_make(dv, ATTN_DTYPE_F32, 3, sv),
              tdw = attn_tensor_make(dw, ATTN_DTYPE_F32, 1, sw),
              tdb = attn_tensor_make(db, ATTN_DTYPE_F32, 1, sw);
  double bf = 1e9, bb = 1e9, wf = 1e9, wb = 1e9;
  for (int r = 0; r < reps; r++) {
    double c0 = cpu(), w0 = wall();
    if (attn_additive_forward(&to, &tl, NULL, &tq, &tk, &tv, &tw, &tb, NULL, NULL, 0)) {
      printf("err %s\n", attn_last_error());
      return 1;
    }
    double c1 = cpu(), w1 = wall();
    if (attn_additive_backward(&tdq, &tdk, &tdv, &tdw, &tdb, &tgo, &tq, &tk, &tv, &tw, &tb, &to,
                               &tl, NULL, NULL, 0)) {
      printf("err %s\n", attn_last_error());
      return 1;
    }
    double c2 = cpu(), w2 = wall();
    if (c1 - c0 < bf) bf = c1 - c0;
    if (c2 - c1 < bb) bb = c2 - c1;
    if (w1 - w0 < wf) wf = w1 - w0;
    if (w2 - w1 < wb) wb = w2 - w1;
  }
  double pd = (double)B * T * T * d;
  printf(
      "fwd cpu %.3f s (%.3g pd/s) wall %.3f | bwd cpu %.3f s (%.3g pd/s) wall %.3f | dq[0]=%g "
      "dw[0]=%g\n",
      bf, pd / bf, wf, bb, pd / bb, wb, dq[0], dw[0]);
  return 0;
}
