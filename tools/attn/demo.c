/* `attn demo`: what `make run` shows. A short header (the machine as libattn sees it, one small
 * causal attention worked through and checked against the reference kernel), then a small
 * Transformer trained from scratch on a built-in task (reverse by default) with live progress,
 * ending with its validation accuracy and a checkpoint. Well under a minute on 2 cores. */
#include "cli.h"
#include "train_cli.h"

#include <math.h>
#include <string.h>

enum { DEMO_H = 2, DEMO_N = 8, DEMO_D = 4 };

static void demo_usage(FILE *f) {
  fputs(
      "usage: attn demo [options]\n"
      "  Prints the version, the CPU ISA libattn dispatches to and the thread count, runs a\n"
      "  2-head x 8-token causal attention (d = 4) and checks it against attn_sdpa_forward_ref,\n"
      "  then trains a small Transformer (2 blocks, d 64, 4 heads) from scratch on a built-in\n"
      "  task, shows live progress, and prints its validation accuracy (the bar: >= 95% of\n"
      "  sequences exactly right). The benchmarks are 'attn bench sdpa' and 'attn bench gemm'.\n"
      "options:\n",
      f);
  cli_demo_options_usage(f);
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

int cli_demo_main(int argc, char **argv) {
  attn_train_config cfg;
  int json = 0, png = 0;
  int rc = cli_demo_config(argc, argv, &cfg, &json, &png);
  if (rc == 1) {
    demo_usage(stdout);
    return CLI_EXIT_OK;
  }
  if (rc) return rc;
  const double t0 = cli_now();
  if (!json) {
    attn_isa best = attn_cpu_best_isa(), isa = attn_get_isa();
    printf("attn %s\n", attn_version());
    printf("cpu: best ISA %s, kernels use %s%s; %d CPUs, %d threads\n\n", attn_isa_name(best),
           attn_isa_name(isa), isa != best ? " (forced by ATTN_ISA)" : "", cli_online_cpus(),
           attn_get_num_threads());
    fflush(stdout);
    rc = demo_example();
    if (rc) return rc;
    attn_task_shape sh;
    attn_task_get_shape(&cfg.task, &sh);
    printf(
        "training: a Transformer encoder (%lld blocks, d %lld, %lld heads, MLP %lld) learns to %s\n"
        "sequences of %d to %d tokens over %d symbols (%s), %lld steps of %lld examples,\n"
        "AdamW with warmup + cosine decay. Ctrl-C stops and saves a checkpoint.\n",
        (long long)cfg.layers, (long long)cfg.dim, (long long)cfg.heads, (long long)cfg.hidden,
        cfg.task.id == ATTN_TASK_RECALL    ? "recall the value of a queried key in"
        : cfg.task.id == ATTN_TASK_LISTOPS ? "evaluate ListOps expressions as"
                                           : attn_task_name(cfg.task.id),
        (int)(cfg.task.id == ATTN_TASK_RECALL ? 2 * cfg.task.min_len + 2 : cfg.task.min_len),
        (int)sh.seq_len, (int)cfg.task.n_symbols, attn_task_kind_name(sh.kind),
        (long long)cfg.steps, (long long)cfg.batch);
    fflush(stdout);
  }
  double acc = 0;
  rc = cli_train_session("demo", &cfg, json ? CLI_PROGRESS_JSON : CLI_PROGRESS_TEXT, png, &acc);
  if (rc) return rc;
  if (!json) {
    printf("\n%s: %.1f%% of validation sequences exactly right (bar: 95%%) - %s\n",
           attn_task_name(cfg.task.id), 100 * acc, acc >= 0.95 ? "ok" : "BELOW THE BAR");
    printf("try: attn predict %s 3 1 4 1 5 9 2 6    |    attn eval %s\n", cfg.out_dir, cfg.out_dir);
    printf("demo done in %.1f s\n", cli_now() - t0);
  }
  return CLI_EXIT_OK;
}
