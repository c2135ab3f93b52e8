/* The training commands of `attn` (train.c): `attn train`, `attn eval`, `attn predict`, and the
 * training part of `attn demo` (demo.c). */
#ifndef ATTN_TRAIN_CLI_H
#define ATTN_TRAIN_CLI_H

#include "attn/train.h"

#include <stdio.h>

int cli_train_main(int argc, char **argv);   /* argv[0] == "train" */
int cli_eval_main(int argc, char **argv);    /* argv[0] == "eval" */
int cli_predict_main(int argc, char **argv); /* argv[0] == "predict" */

/* How progress is shown: AUTO = a line updated in place on a terminal, one JSON object a logged
 * step otherwise; JSON = always JSON; TEXT = a line in place on a terminal, a plain line a logged
 * step otherwise. */
typedef enum cli_progress {
  CLI_PROGRESS_AUTO = 0,
  CLI_PROGRESS_JSON = 1,
  CLI_PROGRESS_TEXT = 2
} cli_progress;

/* Runs one training with live progress (see cli_progress), SIGINT/SIGTERM saving a checkpoint.
 * `who` prefixes messages ("train", "demo"). *valid_seq_acc (may be NULL) receives the final
 * validation sequence accuracy. Returns the exit code. */
int cli_train_session(const char *who, const attn_train_config *cfg, cli_progress mode,
                      double *valid_seq_acc);

int cli_report_main(int argc, char **argv); /* argv[0] == "report" (report.c) */
/* Writes the HTML report of checkpoint `dir` to out_path (NULL: dir/report.html) with heatmaps of
 * n_examples test examples; `written` (cap bytes, may be NULL) receives the path. Returns 0 or an
 * exit code after a one-line message. */
int cli_write_report(const char *dir, const char *out_path, int n_examples, char *written,
                     size_t cap);

/* attn demo's options: 0 (config filled), 1 (--help: print cli_demo_options_usage), or an exit
 * code after a one-line message. */
int cli_demo_config(int argc, char **argv, attn_train_config *c, int *json);
void cli_demo_options_usage(FILE *f);

#endif
