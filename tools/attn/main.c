/* The `attn` command: dispatch to its subcommands.
 *
 *   attn demo                 what `make run` runs: what libattn found on this machine, a worked
 *                             example, then a small Transformer trained live on a built-in task
 *   attn train / eval / predict  training on built-in tasks, checkpoints (train.c)
 *   attn bench sdpa|gemm ...  the benchmarks (bench.c)
 *   attn embed / similarity   BERT sentence embeddings (embed.c; `attn bench bert` too)
 *   attn version              the library version
 *   attn help                 the list of commands
 *
 * Exit codes: 0 success, 1 a runtime failure (a libattn status, out of memory), 2 bad usage. */
#include "bert_cli.h"
#include "cli.h"
#include "train_cli.h"

#include <string.h>

static void usage(FILE *f) {
  fprintf(f,
          "attn %s: attention mechanisms in C\n"
          "\n"
          "usage: attn <command> [options]\n"
          "\n"
          "commands:\n"
          "  demo [opts]          what libattn found on this machine (version, ISA, threads), a\n"
          "                       worked example checked against the reference, then a small\n"
          "                       Transformer trained live on a task (see 'attn demo --help')\n"
          "  train [opts]         train a Transformer on a built-in task (copy, reverse, sort,\n"
          "                       recall, listops) or on your own TSV / CoNLL files\n"
          "                       (--data-train); writes a checkpoint ('attn train --help')\n"
          "  eval CKPT [opts]     accuracy and loss of a checkpoint on held-out examples\n"
          "  predict CKPT TOK...  the model's output for one input\n"
          "  report CKPT [opts]   rebuild a checkpoint's HTML report (curves, attention heatmaps)\n"
          "  bench sdpa [opts]    benchmark fused attention forward/backward (see 'attn bench "
          "--help')\n"
          "  bench gemm [opts]    benchmark attn_gemm\n"
          "  bench bert [opts]    benchmark BERT sentence embeddings (all-MiniLM-L6-v2)\n"
          "  embed [opts] TEXT... sentence embeddings ('-': one sentence a line on stdin;\n"
          "                       see 'attn embed --help')\n"
          "  similarity A B       cosine similarity of two sentences' embeddings\n"
          "  version              print the version\n"
          "  help                 this text\n"
          "\n"
          "environment: ATTN_MODEL_DIR (model directory for embed/similarity/bench bert),\n"
          "ATTN_NUM_THREADS (default thread count: all CPUs), ATTN_ISA\n"
          "(scalar|avx2|avx512: force a kernel path).\n"
          "exit codes: 0 success, 1 runtime error, 2 bad usage.\n",
          attn_version());
}

int main(int argc, char **argv) {
  if (argc < 2) {
    usage(stdout);
    return CLI_EXIT_OK;
  }
  const char *cmd = argv[1];
  if (!strcmp(cmd, "help") || !strcmp(cmd, "--help") || !strcmp(cmd, "-h")) {
    usage(stdout);
    return CLI_EXIT_OK;
  }
  if (!strcmp(cmd, "version") || !strcmp(cmd, "--version")) {
    if (argc > 2) {
      cli_errorf("version: unexpected argument '%s'", argv[2]);
      return CLI_EXIT_USAGE;
    }
    printf("attn %s\n", attn_version());
    return CLI_EXIT_OK;
  }
  if (!strcmp(cmd, "bench")) return cli_bench_main(argc - 1, argv + 1);
  if (!strcmp(cmd, "demo")) return cli_demo_main(argc - 1, argv + 1);
  if (!strcmp(cmd, "train")) return cli_train_main(argc - 1, argv + 1);
  if (!strcmp(cmd, "eval")) return cli_eval_main(argc - 1, argv + 1);
  if (!strcmp(cmd, "predict")) return cli_predict_main(argc - 1, argv + 1);
  if (!strcmp(cmd, "report")) return cli_report_main(argc - 1, argv + 1);
  if (!strcmp(cmd, "embed")) return cli_embed_main(argc - 1, argv + 1);
  if (!strcmp(cmd, "similarity")) return cli_similarity_main(argc - 1, argv + 1);
  cli_errorf("unknown command '%s' (see 'attn help')", cmd);
  return CLI_EXIT_USAGE;
}
