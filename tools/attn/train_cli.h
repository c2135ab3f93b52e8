/* The training commands of `attn` (train.c): `attn train`, `attn eval`, `attn predict`, and the
 * training part of `attn demo` (demo.c). */
#ifndef ATTN_TRAIN_CLI_H
#define ATTN_TRAIN_CLI_H

#include "attn/dataset.h"
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

/* Runs one training with live progress (see cli_progress), SIGINT/SIGTERM saving a checkpoint,
 * then writes the report (with PNG pictures when png). `who` prefixes messages ("train", "demo").
 * *valid_seq_acc (may be NULL) receives the final validation sequence accuracy. Returns the exit
 * code. */
int cli_train_session(const char *who, const attn_train_config *cfg, cli_progress mode, int png,
                      double *valid_seq_acc);

/* Your own data as a checkpoint of `attn train --data-train` sees it: its vocabularies and the
 * files read with them. */
typedef struct cli_own_data {
  attn_vocab *vocab, *labels;
  attn_dataset train, valid;
  int have_train, have_valid;
} cli_own_data;

void cli_own_data_free(cli_own_data *d);

/* Loads the vocabularies of checkpoint `dir` trained on your own data (and *dopt, its data
 * options, from dir/data.json) and reads train_file into d->train, val_file into d->valid with
 * them (either may be NULL). Returns 0 or an exit code after a one-line message naming `who`. */
int cli_own_data_from_ckpt(const char *who, const char *dir, const attn_train_config *c,
                           const char *train_file, const char *val_file, cli_own_data *d,
                           attn_data_options *dopt);

/* The path of `key` ("train" or "valid") recorded in dir/data.json by `attn train --data-train`
 * (absolute when it could be resolved) into buf; 0, or -1 when absent. */
int cli_own_data_file(const char *dir, const char *key, char *buf, size_t cap);

int cli_report_main(int argc, char **argv); /* argv[0] == "report" (report.c) */
/* What `attn report` writes. */
typedef struct cli_report_opts {
  const char *out_path;  /* the page; NULL: dir/report.html */
  int n_examples;        /* examples with heatmaps (test split, or the first of the data file) */
  const char *data_file; /* own data: the file evaluated and shown; NULL: data.json's validation
                            file, else its training file */
  int png;               /* also write PNG pictures into the page's folder, in png/ */
} cli_report_opts;

/* Writes the HTML report of checkpoint `dir` (and with o->png its pictures); `written` (cap
 * bytes, may be NULL) receives the page's path, `n_png` (may be NULL) the number of PNG files.
 * Returns 0 or an exit code after a one-line message. */
int cli_write_report(const char *dir, const cli_report_opts *o, char *written, size_t cap,
                     int *n_png);

/* attn demo's options: 0 (config filled), 1 (--help: print cli_demo_options_usage), or an exit
 * code after a one-line message. */
int cli_demo_config(int argc, char **argv, attn_train_config *c, int *json, int *png);
void cli_demo_options_usage(FILE *f);

#endif
