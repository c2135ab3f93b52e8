/* `attn demo`: what `make run` shows. The machine as libattn sees it, one small causal attention
 * worked through and checked against the reference kernel, then a short benchmark. Well under
 * 30 seconds on a 2-core machine. */
#include "cli.h"

#include <math.h>
#include <string.h>

enum { DEMO_H = 2, DEMO_N = 8, DEMO_D = 4 };

static void demo_usage(FILE *f) {
  fputs(
      "usage: attn demo\n"
      "  Prints the version, the CPU ISA libattn dispatches to and the thread count, runs a\n"
      "  2-head x 8-token causal attention (d = 4) and checks it against attn_sdpa_forward_ref,\n"
      "  then benchmarks sdpa forward (N = 1024, d = 64, B*H = 8) and gemm 512^3 on 1 and all\n"
      "  threads. No options.\n",
      f);
}

/* The worked example. Returns 0 or an exit code. */
static int demo_example(void) {
  /* q, k, v: (1, 2, 8, 4) filled with small deterministic values; out, ref: (1, 2, 8, 4). */
  float q[DEMO_H * DEMO_N * DEMO_D], k[DEMO_H * DEMO_N * DEMO_D], v[DEMO_H * DEMO_N * DEMO_D];
  float out[DEMO_H * DEMO_N * DEMO_D], ref[DEMO_H * DEMO_N * DEMO_D];
  float lse[DEMO_H * DEMO_N], lse_ref[DEMO_H * DEMO_N];
  uint64_t seed = 42;
  cli_fill_random(q, ATTN_DTYPE_F32, DEMO_H * DEMO_N * DEMO_D, &seed);
  cli_fill_random(k, ATTN_DTYPE_F32, DEMO_H * DEMO_N * DEMO_D, &seed);
  for (int i = 0; i < DEMO_H * DEMO_N; i++)
    for (int d = 0; d < DEMO_D; d++) /* v row j of each head is (j, j, j, j) + a small wobble */
      v[i * DEMO_D + d] = (float)(i % DEMO_N) + 0.1f * (float)d;

  int64_t shape[4] = {1, DEMO_H, DEMO_N, DEMO_D};
  attn_tensor tq = attn_tensor_make(q, ATTN_DTYPE_F32, 4, shape);
  attn_tensor tk = attn_tensor_make(k, ATTN_DTYPE_F32, 4, shape);
  attn_tensor tv = attn_tensor_make(v, ATTN_DTYPE_F32, 4, shape);
  attn_tensor tout = attn_tensor_make(out, ATTN_DTYPE_F32, 4, shape);
  attn_tensor tref = attn_tensor_make(ref, ATTN_DTYPE_F32, 4, shape);
  attn_tensor tlse = attn_tensor_make(lse, ATTN_DTYPE_F32, 3, shape);
  attn_tensor tlse_ref = attn_tensor_make(lse_ref, ATTN_DTYPE_F32, 3, shape);
  attn_sdpa_params p = attn_sdpa_params_default();
  p.causal = 1;

  attn_status s = attn_sdpa_forward(&tout, &tlse, NULL, &tq, &tk, &tv, &p, NULL, 0);
  if (s != ATTN_OK) {
    cli_status_error("attn_sdpa_forward", s);
    return CLI_EXIT_RUNTIME;
  }
  s = attn_sdpa_forward_ref(&tref, &tlse_ref, NULL, &tq, &tk, &tv, &p);
  if (s != ATTN_OK) {
    cli_status_error("attn_sdpa_forward_ref", s);
    return CLI_EXIT_RUNTIME;
  }

  printf(
      "example: causal attention, B=1, H=%d, N=%d, d=%d, scale 1/sqrt(d); value row j is\n"
      "(j, j+0.1, j+0.2, j+0.3), so the first column of an output row is the mean key position\n"
      "it attended to (row i can only see keys 0..i).\n",
      DEMO_H, DEMO_N, DEMO_D);
  double max_diff = 0, max_lse_diff = 0;
  for (int h = 0; h < DEMO_H; h++) {
    printf("  head %d          out[i, :]                              lse\n", h);
    for (int i = 0; i < DEMO_N; i++) {
      const float *row = out + (h * DEMO_N + i) * DEMO_D;
      const float *rrow = ref + (h * DEMO_N + i) * DEMO_D;
      printf("    i=%d  ", i);
      for (int d = 0; d < DEMO_D; d++) {
        printf(" %8.4f", row[d]);
        double diff = fabs((double)row[d] - (double)rrow[d]);
        if (diff > max_diff || diff != diff) max_diff = diff;
      }
      double ld = fabs((double)lse[h * DEMO_N + i] - (double)lse_ref[h * DEMO_N + i]);
      if (ld > max_lse_diff || ld != ld) max_lse_diff = ld;
      printf("   %8.4f\n", lse[h * DEMO_N + i]);
    }
  }
  int ok = max_diff <= 1e-5 && max_lse_diff <= 1e-5;
  printf("max |out - reference| = %.3g, max |lse - reference| = %.3g: %s\n\n", max_diff,
         max_lse_diff, ok ? "ok" : "MISMATCH");
  fflush(stdout);
  if (!ok) {
    cli_errorf("demo: attn_sdpa_forward disagrees with the reference (max diff %.3g)", max_diff);
    return CLI_EXIT_RUNTIME;
  }
  return 0;
}

/* The short benchmark. Returns 0 or an exit code. */
static int demo_bench(int all_threads) {
  cli_peak peak;
  cli_measure_peak(&peak);
  printf(
      "short benchmark (median of 7 after 2 warm-ups; the full one is 'attn bench sdpa')\n"
      "peak: %.1f GFLOP/s per core (%s loop)\n\n",
      peak.gflops_per_core, peak.loop);
  int threads[2] = {1, all_threads};
  int n_thr = all_threads > 1 ? 2 : 1;

  cli_print_sdpa_header(stdout);
  double one_thread = 0;
  for (int it = 0; it < n_thr; it++) {
    cli_sdpa_case c = {.pass = "fwd",
                       .B = 1,
                       .H = 8,
                       .Nq = 1024,
                       .Nk = 1024,
                       .D = 64,
                       .causal = 0,
                       .dtype = ATTN_DTYPE_F32,
                       .threads = threads[it],
                       .reps = 7};
    cli_result r;
    int rc = cli_run_sdpa_case(&c, &peak, &r);
    if (rc) return rc;
    if (threads[it] == 1) one_thread = r.gflops;
    if (threads[it] > 1 && one_thread > 0) r.speedup = r.gflops / one_thread;
    cli_print_sdpa_row(stdout, &c, &r);
  }
  cli_cases_release();
  printf("\n");
  cli_print_gemm_header(stdout);
  one_thread = 0;
  for (int it = 0; it < n_thr; it++) {
    cli_result r;
    int rc = cli_run_gemm_case(512, threads[it], 7, &peak, &r);
    if (rc) return rc;
    if (threads[it] == 1) one_thread = r.gflops;
    if (threads[it] > 1 && one_thread > 0) r.speedup = r.gflops / one_thread;
    cli_print_gemm_row(stdout, 512, threads[it], 7, &r);
  }
  return 0;
}

int cli_demo_main(int argc, char **argv) {
  if (argc > 1) {
    if (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
      demo_usage(stdout);
      return CLI_EXIT_OK;
    }
    cli_errorf("demo: unknown argument '%s' (see 'attn demo --help')", argv[1]);
    return CLI_EXIT_USAGE;
  }
  double t0 = cli_now();
  int all_threads = attn_get_num_threads();
  attn_isa best = attn_cpu_best_isa(), isa = attn_get_isa();
  printf("attn %s\n", attn_version());
  printf("cpu: best ISA %s, kernels use %s%s; %d CPUs, %d threads\n\n", attn_isa_name(best),
         attn_isa_name(isa), isa != best ? " (forced by ATTN_ISA)" : "", cli_online_cpus(),
         all_threads);
  fflush(stdout);
  cli_track_install();

  int rc = demo_example();
  if (!rc) rc = demo_bench(all_threads);
  if (!rc) printf("\ndone in %.1f s\n", cli_now() - t0);
  return rc;
}
