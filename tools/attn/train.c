/* `attn train`, `attn eval`, `attn predict`: a small Transformer on a built-in task, through the
 * library's training loop (attn/train.h). This file parses options, shows progress and handles
 * signals; the loop, checkpoints and evaluation are in src/data/train.c. */
#ifndef _XOPEN_SOURCE
#define _XOPEN_SOURCE 700 /* sigaction, realpath */
#endif
#include "cli.h"
#include "train_cli.h"

#include "attn/dataset.h"

#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- a small option table ------------------------------------------------------------------ */

typedef enum opt_kind { OPT_INT, OPT_FLOAT, OPT_STR, OPT_FLAG } opt_kind;

typedef struct opt {
  const char *name; /* without "--" */
  opt_kind kind;
  double lo, hi;   /* numbers: the accepted range */
  const char *def; /* the default, as shown by --help */
  const char *help;
  const char *value; /* parsed: the text given (NULL = not given; "1" for a flag) */
} opt;

static opt *opt_find(opt *opts, int n, const char *name, size_t len) {
  for (int i = 0; i < n; i++)
    if (strlen(opts[i].name) == len && !strncmp(opts[i].name, name, len)) return &opts[i];
  return NULL;
}

static void opt_usage(FILE *f, const opt *opts, int n) {
  for (int i = 0; i < n; i++) {
    char left[64];
    snprintf(left, sizeof left, "--%s%s", opts[i].name,
             opts[i].kind == OPT_FLAG                                          ? ""
             : opts[i].kind == OPT_FLOAT                                       ? " X"
             : opts[i].kind == OPT_INT                                         ? " N"
             : !strcmp(opts[i].name, "out") || !strcmp(opts[i].name, "resume") ? " DIR"
             : !strcmp(opts[i].name, "task")                                   ? " T"
             : !strncmp(opts[i].name, "data", 4)                               ? " FILE"
                                                                               : " NAME");
    fprintf(f, "  %-22s %s", left, opts[i].help);
    if (opts[i].def) fprintf(f, " (default: %s)", opts[i].def);
    fputc('\n', f);
  }
  fputs("  --help                 this text\n", f);
}

/* Parses argv[1..argc) into opts and positional arguments (pos[0..*n_pos), at most max_pos).
 * Returns 0, 1 when --help was given (usage printed by the caller), or CLI_EXIT_USAGE after
 * printing a one-line message. */
static int opt_parse(const char *cmd, int argc, char **argv, opt *opts, int n, const char **pos,
                     int max_pos, int *n_pos) {
  *n_pos = 0;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (!strcmp(a, "--help") || !strcmp(a, "-h")) return 1;
    if (a[0] == '-' && a[1] == '-' && a[2]) {
      const char *name = a + 2, *eq = strchr(name, '=');
      size_t len = eq ? (size_t)(eq - name) : strlen(name);
      opt *o = opt_find(opts, n, name, len);
      if (!o) {
        cli_errorf("%s: unknown option '--%.*s' (see 'attn %s --help')", cmd, (int)len, name, cmd);
        return CLI_EXIT_USAGE;
      }
      const char *v = NULL;
      if (o->kind == OPT_FLAG) {
        if (eq) {
          cli_errorf("%s: option --%s takes no value", cmd, o->name);
          return CLI_EXIT_USAGE;
        }
        v = "1";
      } else if (eq) {
        v = eq + 1;
      } else if (i + 1 < argc) {
        v = argv[++i];
      } else {
        cli_errorf("%s: option --%s needs a value", cmd, o->name);
        return CLI_EXIT_USAGE;
      }
      if (o->kind == OPT_INT) {
        long x;
        if (cli_parse_int(v, (long)o->lo, (long)o->hi, &x) != 0) {
          cli_errorf("%s: --%s: '%s' is not an integer in [%ld, %ld]", cmd, o->name, v, (long)o->lo,
                     (long)o->hi);
          return CLI_EXIT_USAGE;
        }
      } else if (o->kind == OPT_FLOAT) {
        char *end = NULL;
        errno = 0;
        double x = strtod(v, &end);
        if (!*v || errno || *end || !isfinite(x) || x < o->lo || x > o->hi) {
          cli_errorf("%s: --%s: '%s' is not a number in [%g, %g]", cmd, o->name, v, o->lo, o->hi);
          return CLI_EXIT_USAGE;
        }
      } else if (o->kind == OPT_STR && !*v) {
        cli_errorf("%s: --%s: empty value", cmd, o->name);
        return CLI_EXIT_USAGE;
      }
      o->value = v;
    } else if (a[0] == '-' && a[1] && !(a[1] >= '0' && a[1] <= '9')) {
      cli_errorf("%s: unknown option '%s' (see 'attn %s --help')", cmd, a, cmd);
      return CLI_EXIT_USAGE;
    } else {
      if (*n_pos >= max_pos) {
        cli_errorf("%s: unexpected argument '%s' (see 'attn %s --help')", cmd, a, cmd);
        return CLI_EXIT_USAGE;
      }
      pos[(*n_pos)++] = a;
    }
  }
  return 0;
}

static const char *opt_str(const opt *opts, int n, const char *name) {
  for (int i = 0; i < n; i++)
    if (!strcmp(opts[i].name, name)) return opts[i].value ? opts[i].value : opts[i].def;
  return NULL;
}
static int opt_given(const opt *opts, int n, const char *name) {
  for (int i = 0; i < n; i++)
    if (!strcmp(opts[i].name, name)) return opts[i].value != NULL;
  return 0;
}
static long opt_int(const opt *opts, int n, const char *name) {
  const char *s = opt_str(opts, n, name);
  return s ? strtol(s, NULL, 10) : 0;
}
static double opt_float(const opt *opts, int n, const char *name) {
  const char *s = opt_str(opts, n, name);
  return s ? strtod(s, NULL) : 0;
}

/* ---- shared pieces ------------------------------------------------------------------------- */

static int set_threads(const char *who, long threads) {
  if (threads <= 0) return 0;
  attn_status st = attn_set_num_threads((int)threads);
  if (st != ATTN_OK) {
    cli_status_error(who, st);
    return CLI_EXIT_RUNTIME;
  }
  return 0;
}

static void json_string(FILE *f, const char *s) {
  fputc('"', f);
  for (; *s; s++) {
    const unsigned char c = (unsigned char)*s;
    if (c == '"' || c == '\\')
      fprintf(f, "\\%c", c);
    else if (c < 0x20)
      fprintf(f, "\\u%04x", c);
    else
      fputc(c, f);
  }
  fputc('"', f);
}

static void fmt_duration(char *buf, size_t cap, double s) {
  if (!(s >= 0) || s > 1e7) s = 0;
  const long t = (long)(s + 0.5);
  if (t >= 3600)
    snprintf(buf, cap, "%ld:%02ld:%02ld", t / 3600, t / 60 % 60, t % 60);
  else
    snprintf(buf, cap, "%ld:%02ld", t / 60, t % 60);
}

static volatile sig_atomic_t g_stop = 0;
static volatile sig_atomic_t g_signal = 0;

static void on_signal(int sig) {
  g_stop = 1;
  g_signal = sig;
}

typedef struct session {
  int json, tty;
  double best;
} session;

static int on_log(const attn_train_progress *p, void *user) {
  session *s = user;
  if (s->json) {
    printf(
        "{\"event\":\"step\",\"step\":%lld,\"total\":%lld,\"loss\":%.6g,\"token_acc\":%.6g,\"seq_"
        "acc\":%.6g,"
        "\"lr\":%.6g,\"tokens_per_s\":%.1f,\"elapsed_s\":%.3f,\"eta_s\":%.3f}\n",
        (long long)p->step, (long long)p->total, p->loss, p->token_acc, p->seq_acc, p->lr,
        p->tokens_per_s, p->elapsed_s, p->eta_s);
  } else {
    char eta[32], el[32];
    fmt_duration(eta, sizeof eta, p->eta_s);
    fmt_duration(el, sizeof el, p->elapsed_s);
    const int w = p->total >= 100000 ? 7 : p->total >= 1000 ? 5 : 3;
    printf(
        "%sstep %*lld/%lld  loss %.4f  acc %5.1f%% (seq %5.1f%%)  %6.1fk tok/s  %s elapsed, ETA "
        "%s%s",
        s->tty ? "\r\033[K" : "", w, (long long)p->step, (long long)p->total, p->loss,
        100 * p->token_acc, 100 * p->seq_acc, p->tokens_per_s / 1000, el, eta, s->tty ? "" : "\n");
  }
  fflush(stdout);
  return 0;
}

int cli_train_session(const char *who, const attn_train_config *cfg, cli_progress mode, int png,
                      double *valid_seq_acc) {
  const int tty = isatty(STDOUT_FILENO);
  session s = {.json = mode == CLI_PROGRESS_JSON || (mode == CLI_PROGRESS_AUTO && !tty),
               .tty = tty};
  if (s.json) s.tty = 0;
  struct sigaction sa, old_int, old_term;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_signal;
  sa.sa_flags = SA_RESETHAND; /* a second Ctrl-C kills at once */
  sigemptyset(&sa.sa_mask);
  g_stop = 0;
  g_signal = 0;
  sigaction(SIGINT, &sa, &old_int);
  sigaction(SIGTERM, &sa, &old_term);
  attn_train_callbacks cb = {on_log, &s, &g_stop};
  attn_train_result r;
  attn_status st = attn_train_run(cfg, &cb, &r);
  sigaction(SIGINT, &old_int, NULL);
  sigaction(SIGTERM, &old_term, NULL);
  if (s.tty) fputc('\n', stdout);
  fflush(stdout);
  if (st != ATTN_OK) {
    cli_errorf("%s: %s", who, attn_last_error());
    return CLI_EXIT_RUNTIME;
  }
  const char *dir = cfg->out_dir;
  if (r.stop == ATTN_TRAIN_NONFINITE) {
    if (r.last_ckpt_step >= 0)
      cli_errorf(
          "%s: the loss became NaN or infinite at step %lld; stopped, the last good checkpoint is "
          "%s "
          "(step %lld)",
          who, (long long)r.steps_done + 1, dir, (long long)r.last_ckpt_step);
    else
      cli_errorf(
          "%s: the loss became NaN or infinite at step %lld; stopped (no checkpoint had been "
          "written)",
          who, (long long)r.steps_done + 1);
    if (s.json)
      printf("{\"event\":\"nonfinite\",\"step\":%lld,\"last_checkpoint_step\":%lld}\n",
             (long long)r.steps_done + 1, (long long)r.last_ckpt_step);
    return CLI_EXIT_RUNTIME;
  }
  if (r.stop == ATTN_TRAIN_INTERRUPTED) {
    const int sig = (int)g_signal;
    if (dir)
      cli_errorf(
          "%s: %s at step %lld: checkpoint saved in %s (continue with 'attn train --resume %s')",
          who, sig == SIGTERM ? "terminated" : "interrupted", (long long)r.steps_done, dir, dir);
    else
      cli_errorf("%s: %s at step %lld (no checkpoint directory)", who,
                 sig == SIGTERM ? "terminated" : "interrupted", (long long)r.steps_done);
    if (s.json) {
      printf("{\"event\":\"interrupted\",\"step\":%lld,\"checkpoint\":", (long long)r.steps_done);
      if (dir)
        json_string(stdout, dir);
      else
        fputs("null", stdout);
      fputs("}\n", stdout);
    }
    return sig == SIGTERM ? 128 + SIGTERM : 128 + SIGINT;
  }
  if (valid_seq_acc) *valid_seq_acc = r.valid.seq_acc;
  char report[4200] = "";
  int n_png = 0;
  if (dir) {
    const cli_report_opts ro = {NULL, 3, NULL, png};
    const int rrc = cli_write_report(dir, &ro, report, sizeof report, &n_png);
    if (rrc) return rrc;
  }
  if (s.json) {
    printf(
        "{\"event\":\"done\",\"steps\":%lld,\"seconds\":%.3f,\"params\":%lld,\"final_loss\":%.6g,"
        "\"valid_examples\":%lld,\"valid_loss\":%.6g,\"valid_token_acc\":%.6g,\"valid_seq_acc\":%."
        "6g,"
        "\"checkpoint\":",
        (long long)r.steps_done, r.seconds, (long long)r.n_params, r.final_loss,
        (long long)r.valid.examples, r.valid.loss, r.valid.token_acc, r.valid.seq_acc);
    if (dir)
      json_string(stdout, dir);
    else
      fputs("null", stdout);
    fputs(",\"report\":", stdout);
    if (dir && *report)
      json_string(stdout, report);
    else
      fputs("null", stdout);
    if (png) printf(",\"png\":%d", n_png);
    fputs("}\n", stdout);
  } else {
    printf("trained %lld steps in %.1f s (%lld parameters)\n",
           (long long)(r.steps_done - r.start_step), r.seconds, (long long)r.n_params);
    if (r.valid.examples > 0)
      printf(
          "validation (%lld examples): sequence accuracy %.1f%%, token accuracy %.1f%%, loss "
          "%.4f\n",
          (long long)r.valid.examples, 100 * r.valid.seq_acc, 100 * r.valid.token_acc,
          r.valid.loss);
    if (dir) printf("checkpoint: %s/model.safetensors, %s/config.json\n", dir, dir);
    if (dir && *report)
      printf("report: %s (loss and accuracy curves, attention heatmaps)\n", report);
    if (dir && *report && png) printf("png: %d pictures in the png folder beside it\n", n_png);
  }
  fflush(stdout);
  return CLI_EXIT_OK;
}

/* ---- attn train ---------------------------------------------------------------------------- */

#define BIG 1000000000.0

static opt train_opts[] = {
    {"task", OPT_STR, 0, 0, "reverse", "built-in task: copy, reverse, sort, recall, listops", NULL},
    {"model", OPT_STR, 0, 0, "transformer", "model (transformer)", NULL},
    {"steps", OPT_INT, 1, BIG, "600 (listops: 2000)", "optimizer steps", NULL},
    {"batch", OPT_INT, 1, 65536, "64", "examples per step", NULL},
    {"lr", OPT_FLOAT, 1e-8, 10, "0.003", "peak learning rate (AdamW, warmup + cosine)", NULL},
    {"min-lr", OPT_FLOAT, 0, 10, "0.0001", "final learning rate", NULL},
    {"warmup", OPT_INT, 0, BIG, "50", "warmup steps", NULL},
    {"weight-decay", OPT_FLOAT, 0, 10, "0.01", "AdamW decoupled weight decay", NULL},
    {"clip", OPT_FLOAT, 0, 1e6, "1", "global gradient-norm clip (0 = none)", NULL},
    {"dim", OPT_INT, 4, 4096, "64", "model width", NULL},
    {"heads", OPT_INT, 1, 256, "4", "attention heads (must divide dim)", NULL},
    {"layers", OPT_INT, 1, 16, "2", "Transformer blocks", NULL},
    {"hidden", OPT_INT, 1, 65536, "128", "MLP width", NULL},
    {"symbols", OPT_INT, 2, 4096, "10 (recall: 16, listops: 15)",
     "content symbols of the task (tokens 1..N)", NULL},
    {"min-len", OPT_INT, 1, 1024, "8 (recall: 2 pairs, listops: 32)", "shortest sequence", NULL},
    {"max-len", OPT_INT, 1, 1024, "16 (recall: 6 pairs, listops: 512)", "longest sequence", NULL},
    {"seed", OPT_INT, 0, 2147483647, "1", "seed of the data and the initialisation", NULL},
    {"threads", OPT_INT, 0, 1024, "0 = ATTN_NUM_THREADS or all CPUs", "threads", NULL},
    {"out", OPT_STR, 0, 0, "attn-TASK", "checkpoint directory", NULL},
    {"resume", OPT_STR, 0, 0, NULL, "continue the run whose checkpoint is in DIR", NULL},
    {"log-every", OPT_INT, 1, BIG, "20", "progress every N steps", NULL},
    {"ckpt-every", OPT_INT, 0, BIG, "200", "checkpoint every N steps (0 = at the end only)", NULL},
    {"eval-examples", OPT_INT, 0, 10000000, "500", "validation examples evaluated at the end",
     NULL},
    {"json", OPT_FLAG, 0, 0, NULL,
     "one JSON object per logged step (also when stdout is not a terminal)", NULL},
    {"data-train", OPT_STR, 0, 0, NULL,
     "train on your own data instead of --task (tsv: label<TAB>text; conll: token tag)", NULL},
    {"data-val", OPT_STR, 0, 0, NULL, "validation file of your own data (same format)", NULL},
    {"format", OPT_STR, 0, 0, "tsv", "format of --data-train/--data-val: tsv or conll", NULL},
    {"tokens", OPT_STR, 0, 0, "char", "tsv text tokens: char (UTF-8 characters) or word", NULL},
    {"min-freq", OPT_INT, 1, BIG, "1", "rarer tokens of --data-train become <unk>", NULL},
    {"no-shuffle", OPT_FLAG, 0, 0, NULL,
     "train on --data-train in the file's order (default: a new seeded order every epoch)", NULL},
    {"png", OPT_FLAG, 0, 0, NULL,
     "also write the report's curves and heatmaps as PNG files in DIR/png/", NULL},
};
#define N_TRAIN_OPTS ((int)(sizeof train_opts / sizeof train_opts[0]))

static void train_usage(FILE *f) {
  fputs(
      "usage: attn train [--task T | --data-train FILE [--data-val FILE]] [options]\n"
      "  Trains a small Transformer encoder on a built-in task or on your own data (TSV\n"
      "  label<TAB>text, or CoNLL token/tag lines; see docs/cli.md) and writes\n"
      "  DIR/model.safetensors\n"
      "  and DIR/config.json (and DIR/optim.safetensors, to resume). Progress: a line updated in\n"
      "  place on a terminal, else one JSON object per logged step. Ctrl-C / SIGTERM saves a\n"
      "  checkpoint and exits (130 / 143); 'attn train --resume DIR' continues it, ending with "
      "the\n"
      "  weights an uninterrupted run would have. A NaN/Inf loss stops the run (exit 1), keeping "
      "the\n"
      "  last good checkpoint.\n"
      "options:\n",
      f);
  opt_usage(f, train_opts, N_TRAIN_OPTS);
}

/* Fills a config from the parsed options. Returns 0 or an exit code (message printed). */
static int train_config_from_opts(const char *cmd, const opt *o, int n, attn_train_config *c,
                                  char *out_buf, size_t out_cap) {
  attn_task_id id;
  const char *task = opt_str(o, n, "task");
  if (attn_task_from_name(task, &id) != ATTN_OK) {
    cli_errorf("%s: --task: unknown task '%s' (copy, reverse, sort, recall, listops)", cmd, task);
    return CLI_EXIT_USAGE;
  }
  if (strcmp(opt_str(o, n, "model"), "transformer") != 0) {
    cli_errorf("%s: --model: unknown model '%s' (transformer)", cmd, opt_str(o, n, "model"));
    return CLI_EXIT_USAGE;
  }
  *c = attn_train_config_default(id);
  /* ListOps needs longer: 2000 steps reached 37.7 % test accuracy in 15 minutes here. */
  c->steps =
      opt_given(o, n, "steps") ? opt_int(o, n, "steps") : (id == ATTN_TASK_LISTOPS ? 2000 : 600);
  c->batch = opt_int(o, n, "batch");
  c->lr = (float)opt_float(o, n, "lr");
  c->min_lr = (float)opt_float(o, n, "min-lr");
  c->warmup = opt_int(o, n, "warmup");
  c->weight_decay = (float)opt_float(o, n, "weight-decay");
  c->clip = (float)opt_float(o, n, "clip");
  c->dim = opt_int(o, n, "dim");
  c->heads = opt_int(o, n, "heads");
  c->layers = opt_int(o, n, "layers");
  c->hidden = opt_int(o, n, "hidden");
  if (opt_given(o, n, "symbols")) c->task.n_symbols = (int32_t)opt_int(o, n, "symbols");
  if (opt_given(o, n, "min-len")) c->task.min_len = (int32_t)opt_int(o, n, "min-len");
  if (opt_given(o, n, "max-len")) c->task.max_len = (int32_t)opt_int(o, n, "max-len");
  c->seed = c->task.seed = (uint64_t)opt_int(o, n, "seed");
  c->log_every = opt_int(o, n, "log-every");
  c->ckpt_every = opt_int(o, n, "ckpt-every");
  c->eval_examples = opt_int(o, n, "eval-examples");
  c->shuffle = !opt_given(o, n, "no-shuffle");
  if (opt_given(o, n, "no-shuffle") && !opt_given(o, n, "data-train")) {
    cli_errorf("%s: --no-shuffle applies to --data-train only", cmd);
    return CLI_EXIT_USAGE;
  }
  if (c->dim % c->heads != 0) {
    cli_errorf("%s: --heads %lld does not divide --dim %lld", cmd, (long long)c->heads,
               (long long)c->dim);
    return CLI_EXIT_USAGE;
  }
  attn_task_shape sh;
  if (opt_given(o, n, "data-train")) {
    c->task = attn_task_config_default(ATTN_TASK_COPY); /* unused: the data give the shape */
  } else if (attn_task_get_shape(&c->task, &sh) != ATTN_OK) {
    cli_errorf("%s: %s", cmd, attn_last_error());
    return CLI_EXIT_USAGE;
  }
  if (opt_given(o, n, "out"))
    snprintf(out_buf, out_cap, "%s", opt_str(o, n, "out"));
  else
    snprintf(out_buf, out_cap, "attn-%s", attn_task_name(id));
  c->out_dir = out_buf;
  return 0;
}

/* ---- your own data ------------------------------------------------------------------------- */

/* What a checkpoint trained on your own data keeps beside config.json. */
#define DATA_META "data.json"

void cli_own_data_free(cli_own_data *d) {
  attn_vocab_free(d->vocab);
  attn_vocab_free(d->labels);
  if (d->have_train) attn_dataset_free(&d->train);
  if (d->have_valid) attn_dataset_free(&d->valid);
  memset(d, 0, sizeof *d);
}

/* A file's path as a JSON string, absolute when realpath resolves it. */
static void json_path(FILE *f, const char *file) {
  char *abs = realpath(file, NULL);
  json_string(f, abs ? abs : file);
  free(abs);
}

int cli_own_data_file(const char *dir, const char *key, char *buf, size_t cap) {
  char path[4200], meta[16384];
  snprintf(path, sizeof path, "%s/" DATA_META, dir);
  FILE *f = fopen(path, "r");
  if (!f) return -1;
  const size_t got = fread(meta, 1, sizeof meta - 1, f);
  fclose(f);
  meta[got] = '\0';
  char pat[64];
  snprintf(pat, sizeof pat, "\"%s\": \"", key);
  const char *p = strstr(meta, pat);
  if (!p || cap == 0) return -1;
  p += strlen(pat);
  size_t k = 0;
  /* The writer (json_string) escapes only '"', '\\' and control characters (\\u00XX). */
  for (; *p && *p != '"'; p++) {
    char ch = *p;
    if (ch == '\\') {
      p++;
      if (*p == 'u' && strlen(p) >= 5) {
        ch = (char)strtol((char[]){p[3], p[4], 0}, NULL, 16);
        p += 4;
      } else if (*p) {
        ch = *p;
      } else {
        return -1;
      }
    }
    if (k + 1 >= cap) return -1;
    buf[k++] = ch;
  }
  if (*p != '"') return -1;
  buf[k] = '\0';
  return 0;
}

/* Reads --data-train / --data-val into d and c (the model's shape), and writes vocab.txt,
 * labels.txt and data.json into out_dir. Returns 0 or an exit code after a message. */
static int own_data_setup(const opt *o, int n, const char *out_dir, attn_train_config *c,
                          cli_own_data *d) {
  memset(d, 0, sizeof *d);
  attn_data_options dopt = attn_data_options_default();
  if (attn_data_format_from_name(opt_str(o, n, "format"), &dopt.format) != ATTN_OK ||
      attn_data_tokens_from_name(opt_str(o, n, "tokens"), &dopt.tokens) != ATTN_OK) {
    cli_errorf("train: %s", attn_last_error());
    return CLI_EXIT_USAGE;
  }
  if (opt_given(o, n, "task") || opt_given(o, n, "symbols") || opt_given(o, n, "min-len")) {
    cli_errorf("train: --task, --symbols and --min-len do not apply to --data-train");
    return CLI_EXIT_USAGE;
  }
  dopt.min_freq = (int32_t)opt_int(o, n, "min-freq");
  if (opt_given(o, n, "max-len")) dopt.max_len = (int32_t)opt_int(o, n, "max-len");
  if (attn_dataset_build(opt_str(o, n, "data-train"), &dopt, &d->vocab, &d->labels, &d->train) !=
      ATTN_OK) {
    cli_errorf("train: %s", attn_last_error());
    return CLI_EXIT_RUNTIME;
  }
  d->have_train = 1;
  if (opt_given(o, n, "data-val")) {
    attn_data_options vopt = dopt;
    vopt.seq_len = d->train.seq_len;
    if (attn_dataset_load(opt_str(o, n, "data-val"), &vopt, d->vocab, d->labels, &d->valid) !=
        ATTN_OK) {
      cli_errorf("train: %s", attn_last_error());
      cli_own_data_free(d);
      return CLI_EXIT_RUNTIME;
    }
    d->have_valid = 1;
  }
  c->data_shape.kind = d->train.kind;
  c->data_shape.seq_len = d->train.seq_len;
  c->data_shape.vocab = attn_vocab_size(d->vocab);
  c->data_shape.n_classes = attn_vocab_size(d->labels);
  c->data_train = &d->train;
  c->data_valid = d->have_valid ? &d->valid : NULL;
  char path[4200];
  int rc = 0;
  if (mkdir(out_dir, 0777) != 0 && errno != EEXIST) {
    cli_errorf("train: %s: cannot create the directory: %s", out_dir, strerror(errno));
    rc = CLI_EXIT_RUNTIME;
  }
  snprintf(path, sizeof path, "%s/vocab.txt", out_dir);
  if (!rc && attn_vocab_save(d->vocab, path) != ATTN_OK) rc = CLI_EXIT_RUNTIME;
  snprintf(path, sizeof path, "%s/labels.txt", out_dir);
  if (!rc && attn_vocab_save(d->labels, path) != ATTN_OK) rc = CLI_EXIT_RUNTIME;
  if (rc == CLI_EXIT_RUNTIME && attn_last_error()[0]) cli_errorf("train: %s", attn_last_error());
  /* data.json: the reading options, and the files (absolute paths when they resolve) so that
   * `attn report` can show examples of the data later. */
  char tmp[4300];
  snprintf(path, sizeof path, "%s/" DATA_META, out_dir);
  snprintf(tmp, sizeof tmp, "%s.tmp", path);
  FILE *f = rc ? NULL : fopen(tmp, "w");
  if (f) {
    fprintf(f, "{\"format\": \"%s\", \"tokens\": \"%s\", \"min_freq\": %d, \"train\": ",
            dopt.format == ATTN_DATA_TSV ? "tsv" : "conll",
            dopt.tokens == ATTN_DATA_CHARS ? "char" : "word", (int)dopt.min_freq);
    json_path(f, opt_str(o, n, "data-train"));
    fputs(", \"valid\": ", f);
    if (opt_given(o, n, "data-val"))
      json_path(f, opt_str(o, n, "data-val"));
    else
      fputs("null", f);
    fputs("}\n", f);
  }
  if (!rc && (!f || ferror(f) | (fclose(f) != 0) || rename(tmp, path) != 0)) {
    cli_errorf("train: %s: cannot write", path);
    remove(tmp);
    rc = CLI_EXIT_RUNTIME;
  }
  if (rc)
    cli_own_data_free(d);
  else if (opt_given(o, n, "json") || !isatty(STDOUT_FILENO))
    printf(
        "{\"event\":\"data\",\"train_examples\":%lld,\"tokens\":%lld,\"unknown\":%lld,"
        "\"truncated\":%lld,\"seq_len\":%d,\"vocab\":%d,\"labels\":%d,"
        "\"valid_examples\":%lld}\n",
        (long long)d->train.n, (long long)d->train.tokens, (long long)d->train.unknown,
        (long long)d->train.truncated, (int)d->train.seq_len, (int)attn_vocab_size(d->vocab),
        (int)attn_vocab_size(d->labels), d->have_valid ? (long long)d->valid.n : 0LL);
  else
    printf(
        "data: %lld training examples (%lld tokens, %lld unknown, %lld cut to %d), %d tokens "
        "in the vocabulary, %d labels, %s%lld validation examples\n",
        (long long)d->train.n, (long long)d->train.tokens, (long long)d->train.unknown,
        (long long)d->train.truncated, (int)d->train.seq_len, (int)attn_vocab_size(d->vocab),
        (int)attn_vocab_size(d->labels), d->have_valid ? "" : "no ",
        d->have_valid ? (long long)d->valid.n : 0LL);
  return rc;
}

/* Loads the vocabularies of a checkpoint trained on your own data (and *dopt, its data options)
 * and reads train_file into d->train, val_file into d->valid with them (either may be NULL). */
int cli_own_data_from_ckpt(const char *who, const char *dir, const attn_train_config *c,
                           const char *train_file, const char *val_file, cli_own_data *d,
                           attn_data_options *dopt) {
  memset(d, 0, sizeof *d);
  char path[4200];
  *dopt = attn_data_options_default();
  dopt->format = c->data_shape.kind == ATTN_TASK_LABELING ? ATTN_DATA_CONLL : ATTN_DATA_TSV;
  dopt->seq_len = c->data_shape.seq_len;
  snprintf(path, sizeof path, "%s/" DATA_META, dir);
  FILE *f = fopen(path, "r");
  char meta[512] = "";
  if (f) {
    size_t got = fread(meta, 1, sizeof meta - 1, f);
    meta[got] = '\0';
    fclose(f);
  }
  if (!f || !strstr(meta, "\"tokens\"")) {
    cli_errorf("%s: %s: missing or unreadable (written by 'attn train --data-train')", who, path);
    return CLI_EXIT_RUNTIME;
  }
  dopt->tokens = strstr(meta, "\"tokens\": \"word\"") ? ATTN_DATA_WORDS : ATTN_DATA_CHARS;
  attn_status st;
  snprintf(path, sizeof path, "%s/vocab.txt", dir);
  st = attn_vocab_load(&d->vocab, path);
  snprintf(path, sizeof path, "%s/labels.txt", dir);
  if (st == ATTN_OK) st = attn_vocab_load(&d->labels, path);
  if (st == ATTN_OK && (attn_vocab_size(d->vocab) != c->data_shape.vocab ||
                        attn_vocab_size(d->labels) != c->data_shape.n_classes)) {
    cli_errorf("%s: %s: vocab.txt / labels.txt do not match config.json (%d tokens, %d labels)",
               who, dir, (int)c->data_shape.vocab, (int)c->data_shape.n_classes);
    cli_own_data_free(d);
    return CLI_EXIT_RUNTIME;
  }
  if (st == ATTN_OK && train_file) {
    st = attn_dataset_load(train_file, dopt, d->vocab, d->labels, &d->train);
    d->have_train = st == ATTN_OK;
  }
  if (st == ATTN_OK && val_file) {
    st = attn_dataset_load(val_file, dopt, d->vocab, d->labels, &d->valid);
    d->have_valid = st == ATTN_OK;
  }
  if (st != ATTN_OK) {
    cli_errorf("%s: %s", who, attn_last_error());
    cli_own_data_free(d);
    return CLI_EXIT_RUNTIME;
  }
  return 0;
}

int cli_train_main(int argc, char **argv) {
  const char *pos[1];
  int n_pos;
  int rc = opt_parse("train", argc, argv, train_opts, N_TRAIN_OPTS, pos, 0, &n_pos);
  if (rc == 1) {
    train_usage(stdout);
    return CLI_EXIT_OK;
  }
  if (rc) return rc;
  static char out_dir[4096];
  attn_train_config c;
  if (opt_given(train_opts, N_TRAIN_OPTS, "resume")) {
    static const char *const allowed[] = {"resume",        "steps",   "log-every", "ckpt-every",
                                          "eval-examples", "threads", "json",      "data-train",
                                          "data-val",      "png"};
    for (int i = 0; i < N_TRAIN_OPTS; i++) {
      if (!train_opts[i].value) continue;
      int ok = 0;
      for (size_t k = 0; k < sizeof allowed / sizeof allowed[0]; k++)
        ok |= !strcmp(train_opts[i].name, allowed[k]);
      if (!ok) {
        cli_errorf(
            "train: --%s cannot be combined with --resume (the checkpoint's configuration is used)",
            train_opts[i].name);
        return CLI_EXIT_USAGE;
      }
    }
    c = attn_train_config_default(ATTN_TASK_REVERSE);
    c.resume = 1;
    snprintf(out_dir, sizeof out_dir, "%s", opt_str(train_opts, N_TRAIN_OPTS, "resume"));
    c.out_dir = out_dir;
    c.steps = opt_given(train_opts, N_TRAIN_OPTS, "steps")
                  ? opt_int(train_opts, N_TRAIN_OPTS, "steps")
                  : 0;
    c.log_every = opt_given(train_opts, N_TRAIN_OPTS, "log-every")
                      ? opt_int(train_opts, N_TRAIN_OPTS, "log-every")
                      : 0;
    c.ckpt_every = opt_given(train_opts, N_TRAIN_OPTS, "ckpt-every")
                       ? opt_int(train_opts, N_TRAIN_OPTS, "ckpt-every")
                       : 0;
    c.eval_examples = opt_given(train_opts, N_TRAIN_OPTS, "eval-examples")
                          ? opt_int(train_opts, N_TRAIN_OPTS, "eval-examples")
                          : 0;
    /* A run on your own data resumes with its files read through the saved vocabularies. */
    attn_seq_model *peek = NULL;
    attn_train_config saved;
    if (attn_seq_model_load(&peek, out_dir, &saved, NULL) != ATTN_OK) {
      cli_errorf("train: %s", attn_last_error());
      return CLI_EXIT_RUNTIME;
    }
    attn_seq_model_free(peek);
    if ((saved.data_shape.seq_len > 0) != opt_given(train_opts, N_TRAIN_OPTS, "data-train")) {
      cli_errorf(saved.data_shape.seq_len > 0
                     ? "train: %s was trained on your own data: resume with --data-train FILE"
                     : "train: %s was trained on a built-in task: --data-train does not apply",
                 out_dir);
      return CLI_EXIT_USAGE;
    }
    if (saved.data_shape.seq_len > 0) {
      cli_own_data d;
      attn_data_options dopt;
      rc = cli_own_data_from_ckpt("train", out_dir, &saved,
                                  opt_str(train_opts, N_TRAIN_OPTS, "data-train"),
                                  opt_given(train_opts, N_TRAIN_OPTS, "data-val")
                                      ? opt_str(train_opts, N_TRAIN_OPTS, "data-val")
                                      : NULL,
                                  &d, &dopt);
      if (rc) return rc;
      c.data_shape = saved.data_shape;
      c.data_train = &d.train;
      c.data_valid = d.have_valid ? &d.valid : NULL;
      rc = set_threads("train", opt_int(train_opts, N_TRAIN_OPTS, "threads"));
      if (!rc)
        rc = cli_train_session(
            "train", &c,
            opt_given(train_opts, N_TRAIN_OPTS, "json") ? CLI_PROGRESS_JSON : CLI_PROGRESS_AUTO,
            opt_given(train_opts, N_TRAIN_OPTS, "png"), NULL);
      cli_own_data_free(&d);
      return rc;
    }
  } else if (opt_given(train_opts, N_TRAIN_OPTS, "data-train")) {
    rc = train_config_from_opts("train", train_opts, N_TRAIN_OPTS, &c, out_dir, sizeof out_dir);
    if (rc) return rc;
    if (!opt_given(train_opts, N_TRAIN_OPTS, "out")) snprintf(out_dir, sizeof out_dir, "attn-data");
    cli_own_data d;
    rc = own_data_setup(train_opts, N_TRAIN_OPTS, out_dir, &c, &d);
    if (rc) return rc;
    rc = set_threads("train", opt_int(train_opts, N_TRAIN_OPTS, "threads"));
    if (!rc)
      rc = cli_train_session(
          "train", &c,
          opt_given(train_opts, N_TRAIN_OPTS, "json") ? CLI_PROGRESS_JSON : CLI_PROGRESS_AUTO,
          opt_given(train_opts, N_TRAIN_OPTS, "png"), NULL);
    cli_own_data_free(&d);
    return rc;
  } else {
    if (opt_given(train_opts, N_TRAIN_OPTS, "data-val")) {
      cli_errorf("train: --data-val needs --data-train");
      return CLI_EXIT_USAGE;
    }
    rc = train_config_from_opts("train", train_opts, N_TRAIN_OPTS, &c, out_dir, sizeof out_dir);
    if (rc) return rc;
  }
  rc = set_threads("train", opt_int(train_opts, N_TRAIN_OPTS, "threads"));
  if (rc) return rc;
  return cli_train_session(
      "train", &c,
      opt_given(train_opts, N_TRAIN_OPTS, "json") ? CLI_PROGRESS_JSON : CLI_PROGRESS_AUTO,
      opt_given(train_opts, N_TRAIN_OPTS, "png"), NULL);
}

/* ---- attn eval ----------------------------------------------------------------------------- */

static opt eval_opts[] = {
    {"task", OPT_STR, 0, 0, "the checkpoint's", "evaluate on this task (same lengths and symbols)",
     NULL},
    {"split", OPT_STR, 0, 0, "test", "test or valid", NULL},
    {"examples", OPT_INT, 1, 10000000, "1000 (--data: all)", "examples evaluated", NULL},
    {"data", OPT_STR, 0, 0, NULL,
     "evaluate on this file of your own data (a checkpoint of 'attn train --data-train')", NULL},
    {"threads", OPT_INT, 0, 1024, "0 = ATTN_NUM_THREADS or all CPUs", "threads", NULL},
    {"json", OPT_FLAG, 0, 0, NULL, "print one JSON object", NULL},
};
#define N_EVAL_OPTS ((int)(sizeof eval_opts / sizeof eval_opts[0]))

static void eval_usage(FILE *f) {
  fputs(
      "usage: attn eval CKPT_DIR [--task T | --data FILE] [options]\n"
      "  Accuracy (per sequence and per token) and loss of a checkpoint on held-out examples.\n"
      "options:\n",
      f);
  opt_usage(f, eval_opts, N_EVAL_OPTS);
}

int cli_eval_main(int argc, char **argv) {
  const char *pos[1];
  int n_pos;
  int rc = opt_parse("eval", argc, argv, eval_opts, N_EVAL_OPTS, pos, 1, &n_pos);
  if (rc == 1) {
    eval_usage(stdout);
    return CLI_EXIT_OK;
  }
  if (rc) return rc;
  if (n_pos != 1) {
    cli_errorf("eval: missing the checkpoint directory (usage: attn eval CKPT_DIR [options])");
    return CLI_EXIT_USAGE;
  }
  const char *split_name = opt_str(eval_opts, N_EVAL_OPTS, "split");
  attn_split split;
  if (!strcmp(split_name, "test"))
    split = ATTN_SPLIT_TEST;
  else if (!strcmp(split_name, "valid") || !strcmp(split_name, "validation"))
    split = ATTN_SPLIT_VALID;
  else {
    cli_errorf("eval: --split: '%s' is not test or valid", split_name);
    return CLI_EXIT_USAGE;
  }
  attn_task_id id = ATTN_TASK_COPY;
  const int have_task = opt_given(eval_opts, N_EVAL_OPTS, "task");
  if (have_task && attn_task_from_name(opt_str(eval_opts, N_EVAL_OPTS, "task"), &id) != ATTN_OK) {
    cli_errorf("eval: --task: unknown task '%s' (copy, reverse, sort, recall, listops)",
               opt_str(eval_opts, N_EVAL_OPTS, "task"));
    return CLI_EXIT_USAGE;
  }
  rc = set_threads("eval", opt_int(eval_opts, N_EVAL_OPTS, "threads"));
  if (rc) return rc;
  attn_seq_model *m = NULL;
  attn_train_config c;
  int64_t step = 0;
  if (attn_seq_model_load(&m, pos[0], &c, &step) != ATTN_OK) {
    cli_errorf("eval: %s", attn_last_error());
    return CLI_EXIT_RUNTIME;
  }
  const int own = c.data_shape.seq_len > 0;
  if (own != opt_given(eval_opts, N_EVAL_OPTS, "data") || (own && have_task)) {
    cli_errorf(own ? "eval: %s was trained on your own data: give --data FILE (not --task)"
                   : "eval: %s was trained on a built-in task: --data does not apply",
               pos[0]);
    attn_seq_model_free(m);
    return CLI_EXIT_USAGE;
  }
  if (own) {
    cli_own_data d;
    attn_eval_result dev;
    attn_data_options dopt;
    rc = cli_own_data_from_ckpt("eval", pos[0], &c, NULL, opt_str(eval_opts, N_EVAL_OPTS, "data"),
                                &d, &dopt);
    if (!rc) {
      const long nd = opt_given(eval_opts, N_EVAL_OPTS, "examples")
                          ? opt_int(eval_opts, N_EVAL_OPTS, "examples")
                          : (long)d.valid.n;
      if (attn_seq_model_eval_data(m, &d.valid, nd, &dev) != ATTN_OK) {
        cli_errorf("eval: %s", attn_last_error());
        rc = CLI_EXIT_RUNTIME;
      }
    }
    attn_seq_model_free(m);
    if (!rc && (opt_given(eval_opts, N_EVAL_OPTS, "json") || !isatty(STDOUT_FILENO))) {
      printf("{\"event\":\"eval\",\"checkpoint\":");
      json_string(stdout, pos[0]);
      printf(",\"data\":");
      json_string(stdout, opt_str(eval_opts, N_EVAL_OPTS, "data"));
      printf(
          ",\"step\":%lld,\"examples\":%lld,\"unknown_tokens\":%lld,\"loss\":%.6g,"
          "\"token_acc\":%.6g,\"seq_acc\":%.6g}\n",
          (long long)step, (long long)dev.examples, (long long)d.valid.unknown, dev.loss,
          dev.token_acc, dev.seq_acc);
    } else if (!rc) {
      printf(
          "%s on %s (%lld examples, %lld unknown tokens; checkpoint at step %lld):\n"
          "  %s accuracy %.1f%%, token accuracy %.1f%%, loss %.4f\n",
          pos[0], opt_str(eval_opts, N_EVAL_OPTS, "data"), (long long)dev.examples,
          (long long)d.valid.unknown, (long long)step,
          c.data_shape.kind == ATTN_TASK_CLASSIFICATION ? "classification" : "sentence",
          100 * dev.seq_acc, 100 * dev.token_acc, dev.loss);
    }
    if (!rc) cli_own_data_free(&d);
    return rc;
  }
  attn_task_config task = c.task;
  if (have_task) {
    task.id = id;
    attn_task_shape want, got;
    attn_task_get_shape(&c.task, &want);
    if (attn_task_get_shape(&task, &got) != ATTN_OK || got.seq_len != want.seq_len ||
        got.vocab != want.vocab) {
      cli_errorf(
          "eval: task %s does not fit this checkpoint (a %s model: %d positions, %d symbols)",
          attn_task_name(id), attn_task_name(c.task.id), (int)want.seq_len, (int)c.task.n_symbols);
      attn_seq_model_free(m);
      return CLI_EXIT_RUNTIME;
    }
  }
  attn_eval_result ev;
  const long n = opt_int(eval_opts, N_EVAL_OPTS, "examples");
  if (attn_seq_model_eval(m, &task, split, n, &ev) != ATTN_OK) {
    cli_errorf("eval: %s", attn_last_error());
    attn_seq_model_free(m);
    return CLI_EXIT_RUNTIME;
  }
  attn_seq_model_free(m);
  if (opt_given(eval_opts, N_EVAL_OPTS, "json") || !isatty(STDOUT_FILENO)) {
    printf("{\"event\":\"eval\",\"checkpoint\":");
    json_string(stdout, pos[0]);
    printf(
        ",\"task\":\"%s\",\"split\":\"%s\",\"step\":%lld,\"examples\":%lld,\"loss\":%.6g,\"token_"
        "acc\":%.6g,"
        "\"seq_acc\":%.6g}\n",
        attn_task_name(task.id), split == ATTN_SPLIT_TEST ? "test" : "valid", (long long)step,
        (long long)ev.examples, ev.loss, ev.token_acc, ev.seq_acc);
  } else {
    printf(
        "%s on %s (%s split, %lld examples; checkpoint at step %lld):\n"
        "  sequence accuracy %.1f%%, token accuracy %.1f%%, loss %.4f\n",
        pos[0], attn_task_name(task.id), split == ATTN_SPLIT_TEST ? "test" : "validation",
        (long long)ev.examples, (long long)step, 100 * ev.seq_acc, 100 * ev.token_acc, ev.loss);
  }
  return CLI_EXIT_OK;
}

static const char *const listops_ops[5] = {"[MAX", "[MIN", "[MED", "[SM", "]"};

static void token_text(char *buf, size_t cap, const attn_task_config *t, int32_t id) {
  if (t->id == ATTN_TASK_RECALL && id == ATTN_TASK_QUERY(t))
    snprintf(buf, cap, "?");
  else if (t->id == ATTN_TASK_LISTOPS && id >= 1 && id <= 10)
    snprintf(buf, cap, "%d", (int)id - 1);
  else if (t->id == ATTN_TASK_LISTOPS && id >= 11 && id <= 15)
    snprintf(buf, cap, "%s", listops_ops[id - 11]);
  else
    snprintf(buf, cap, "%d", (int)id);
}

/* The token of a word of `attn predict`'s input; -1 if it is none. */
static long token_parse(const attn_task_config *t, const char *w) {
  long v;
  if (t->id == ATTN_TASK_RECALL && !strcmp(w, "?")) return ATTN_TASK_QUERY(t);
  if (t->id == ATTN_TASK_LISTOPS) {
    for (int k = 0; k < 5; k++)
      if (!strcmp(w, listops_ops[k])) return 11 + k;
    return cli_parse_int(w, 0, 9, &v) == 0 ? v + 1 : -1;
  }
  return cli_parse_int(w, 1, t->n_symbols, &v) == 0 ? v : -1;
}

/* ---- attn predict -------------------------------------------------------------------------- */

static opt predict_opts[] = {
    {"json", OPT_FLAG, 0, 0, NULL,
     "print one JSON object with the input, the prediction and the task's answer", NULL},
    {"show-attention", OPT_FLAG, 0, 0, NULL,
     "also print the attention weights of every layer and head (rows: queries, columns: keys)",
     NULL},
};
#define N_PREDICT_OPTS ((int)(sizeof predict_opts / sizeof predict_opts[0]))
#define MAX_TOKENS 4096

static void predict_usage(FILE *f) {
  fputs(
      "usage: attn predict CKPT_DIR TOKEN...\n"
      "  Prints the model's output for one input: tokens are the task's symbols 1..N (separate\n"
      "  arguments, or one argument with spaces or commas); for recall write the query marker as\n"
      "  '?' (k1 v1 k2 v2 ... ? k). Sequence tasks print one token per input token, recall prints\n"
      "  the recalled value.\n"
      "options:\n",
      f);
  opt_usage(f, predict_opts, N_PREDICT_OPTS);
}

/* `attn predict` for a checkpoint trained on your own data: the arguments are one text. */
static int predict_own_data(const char **pos, int n_pos, attn_seq_model *m,
                            const attn_train_config *c) {
  cli_own_data d;
  attn_data_options dopt;
  int rc = cli_own_data_from_ckpt("predict", pos[0], c, NULL, NULL, &d, &dopt);
  if (rc) return rc;
  size_t total = 1;
  for (int i = 1; i < n_pos; i++) total += strlen(pos[i]) + 1;
  char *text = malloc(total);
  const int32_t T = c->data_shape.seq_len;
  int32_t *ids = malloc((size_t)T * sizeof *ids), *out = malloc((size_t)T * sizeof *out);
  float *w = NULL;
  int32_t len = 0;
  if (!text || !ids || !out) {
    cli_errorf("predict: out of memory");
    rc = CLI_EXIT_RUNTIME;
  } else {
    text[0] = '\0';
    for (int i = 1; i < n_pos; i++) {
      if (i > 1) strcat(text, " ");
      strcat(text, pos[i]);
    }
    if (attn_data_encode(d.vocab, dopt.format, dopt.tokens, text, ids, T, &len) != ATTN_OK) {
      cli_errorf("predict: %s", attn_last_error());
      rc = CLI_EXIT_USAGE;
    } else if (attn_seq_model_predict(m, ids, len, out) != ATTN_OK) {
      cli_errorf("predict: %s", attn_last_error());
      rc = CLI_EXIT_RUNTIME;
    }
  }
  const int show = opt_given(predict_opts, N_PREDICT_OPTS, "show-attention");
  if (!rc && show) {
    w = malloc((size_t)(c->layers * c->heads * len * len) * sizeof *w);
    if (!w || attn_seq_model_attention(m, ids, len, w) != ATTN_OK) {
      cli_errorf("predict: %s", w ? attn_last_error() : "out of memory");
      rc = CLI_EXIT_RUNTIME;
    }
  }
  const int first = c->data_shape.kind == ATTN_TASK_CLASSIFICATION ? len - 1 : 0;
  const int json = opt_given(predict_opts, N_PREDICT_OPTS, "json");
  if (!rc && json) {
    printf("{\"input\":[");
    for (int32_t t = 0; t < len; t++) {
      printf("%s", t ? "," : "");
      json_string(stdout, attn_vocab_token(d.vocab, ids[t]));
    }
    printf("],\"output\":[");
    for (int32_t t = first; t < len; t++) {
      printf("%s", t > first ? "," : "");
      json_string(stdout, attn_vocab_token(d.labels, out[t]));
    }
    printf("]");
    if (w) { /* [layer][head][query][key] */
      printf(",\"attention\":[");
      for (int64_t l = 0; l < c->layers; l++) {
        printf("%s[", l ? "," : "");
        for (int64_t h = 0; h < c->heads; h++) {
          printf("%s[", h ? "," : "");
          for (int32_t i = 0; i < len; i++) {
            printf("%s[", i ? "," : "");
            for (int32_t j = 0; j < len; j++)
              printf("%s%.4f", j ? "," : "", (double)w[((l * c->heads + h) * len + i) * len + j]);
            printf("]");
          }
          printf("]");
        }
        printf("]");
      }
      printf("]");
    }
    printf("}\n");
  } else if (!rc) {
    for (int32_t t = first; t < len; t++)
      printf("%s%s", t > first ? " " : "", attn_vocab_token(d.labels, out[t]));
    printf("\n");
  }
  for (int64_t l = 0; !rc && !json && w && l < c->layers; l++)
    for (int64_t h = 0; h < c->heads; h++) {
      printf("\nlayer %lld, head %lld (row i: query token i, columns: keys 0..%d)\n", (long long)l,
             (long long)h, (int)len - 1);
      for (int32_t i = 0; i < len; i++) {
        printf("%-8.8s", attn_vocab_token(d.vocab, ids[i]));
        for (int32_t j = 0; j < len; j++)
          printf(" %5.2f", (double)w[((l * c->heads + h) * len + i) * len + j]);
        printf("\n");
      }
    }
  free(w);
  free(text);
  free(ids);
  free(out);
  cli_own_data_free(&d);
  return rc;
}

int cli_predict_main(int argc, char **argv) {
  const char *pos[MAX_TOKENS + 1];
  int n_pos;
  int rc =
      opt_parse("predict", argc, argv, predict_opts, N_PREDICT_OPTS, pos, MAX_TOKENS + 1, &n_pos);
  if (rc == 1) {
    predict_usage(stdout);
    return CLI_EXIT_OK;
  }
  if (rc) return rc;
  if (n_pos < 1) {
    cli_errorf("predict: missing the checkpoint directory (usage: attn predict CKPT_DIR TOKEN...)");
    return CLI_EXIT_USAGE;
  }
  if (n_pos < 2) {
    cli_errorf("predict: no input tokens (usage: attn predict CKPT_DIR TOKEN...)");
    return CLI_EXIT_USAGE;
  }
  attn_seq_model *m = NULL;
  attn_train_config c;
  if (attn_seq_model_load(&m, pos[0], &c, NULL) != ATTN_OK) {
    cli_errorf("predict: %s", attn_last_error());
    return CLI_EXIT_RUNTIME;
  }
  static int32_t ids[MAX_TOKENS], out[MAX_TOKENS], want[MAX_TOKENS];
  int32_t len = 0;
  if (c.data_shape.seq_len > 0) {
    rc = predict_own_data(pos, n_pos, m, &c);
    attn_seq_model_free(m);
    return rc;
  }
  attn_task_shape sh;
  attn_task_get_shape(&c.task, &sh);
  rc = 0;
  for (int i = 1; i < n_pos && !rc; i++) {
    char buf[256];
    const char *p = pos[i];
    while (*p && !rc) {
      while (*p == ' ' || *p == ',' || *p == '\t') p++;
      if (!*p) break;
      size_t k = strcspn(p, " ,\t");
      if (k >= sizeof buf) k = sizeof buf - 1;
      memcpy(buf, p, k);
      buf[k] = '\0';
      p += strcspn(p, " ,\t");
      const long v = token_parse(&c.task, buf);
      if (v < 0) {
        if (c.task.id == ATTN_TASK_LISTOPS)
          cli_errorf("predict: token '%s' is not a digit 0..9, [MAX, [MIN, [MED, [SM or ]", buf);
        else
          cli_errorf("predict: token '%s' is not a symbol in [1, %d]%s", buf, (int)c.task.n_symbols,
                     c.task.id == ATTN_TASK_RECALL ? " or '?'" : "");
        rc = CLI_EXIT_USAGE;
        break;
      }
      if (len >= sh.seq_len) {
        cli_errorf("predict: more than %d tokens (the model's length)", (int)sh.seq_len);
        rc = CLI_EXIT_USAGE;
        break;
      }
      ids[len++] = (int32_t)v;
    }
  }
  if (!rc && len == 0) {
    cli_errorf("predict: no input tokens");
    rc = CLI_EXIT_USAGE;
  }
  if (!rc && attn_seq_model_predict(m, ids, len, out) != ATTN_OK) {
    cli_errorf("predict: %s", attn_last_error());
    rc = CLI_EXIT_RUNTIME;
  }
  const int show = opt_given(predict_opts, N_PREDICT_OPTS, "show-attention");
  float *w = NULL;
  if (!rc && show) {
    w = malloc((size_t)(c.layers * c.heads * len * len) * sizeof *w);
    if (!w) {
      cli_errorf("predict: out of memory");
      rc = CLI_EXIT_RUNTIME;
    } else if (attn_seq_model_attention(m, ids, len, w) != ATTN_OK) {
      cli_errorf("predict: %s", attn_last_error());
      rc = CLI_EXIT_RUNTIME;
    }
  }
  attn_seq_model_free(m);
  if (rc) {
    free(w);
    return rc;
  }
  const int have_want = attn_task_targets(&c.task, ids, len, want) == ATTN_OK;
  const int first = sh.kind == ATTN_TASK_CLASSIFICATION ? len - 1 : 0;
  if (opt_given(predict_opts, N_PREDICT_OPTS, "json")) {
    printf("{\"task\":\"%s\",\"input\":[", attn_task_name(c.task.id));
    for (int32_t t = 0; t < len; t++) printf("%s%d", t ? "," : "", (int)ids[t]);
    printf("],\"output\":[");
    for (int32_t t = first; t < len; t++) printf("%s%d", t > first ? "," : "", (int)out[t]);
    printf("],\"expected\":");
    if (have_want) {
      printf("[");
      for (int32_t t = first; t < len; t++) printf("%s%d", t > first ? "," : "", (int)want[t]);
      printf("]");
    } else {
      printf("null");
    }
    if (w) { /* [layer][head][query][key] */
      printf(",\"attention\":[");
      for (int64_t l = 0; l < c.layers; l++) {
        printf("%s[", l ? "," : "");
        for (int64_t h = 0; h < c.heads; h++) {
          printf("%s[", h ? "," : "");
          for (int32_t i = 0; i < len; i++) {
            printf("%s[", i ? "," : "");
            for (int32_t j = 0; j < len; j++)
              printf("%s%.4f", j ? "," : "", (double)w[((l * c.heads + h) * len + i) * len + j]);
            printf("]");
          }
          printf("]");
        }
        printf("]");
      }
      printf("]");
    }
    printf("}\n");
  } else {
    char lab[16];
    for (int32_t t = first; t < len; t++) {
      token_text(lab, sizeof lab, &c.task, out[t]);
      printf("%s%s", t > first ? " " : "", lab);
    }
    printf("\n");
    for (int64_t l = 0; w && l < c.layers; l++)
      for (int64_t h = 0; h < c.heads; h++) {
        printf("\nlayer %lld, head %lld (rows: queries, columns: keys)\n     ", (long long)l,
               (long long)h);
        for (int32_t j = 0; j < len; j++) {
          token_text(lab, sizeof lab, &c.task, ids[j]);
          printf(" %5s", lab);
        }
        printf("\n");
        for (int32_t i = 0; i < len; i++) {
          token_text(lab, sizeof lab, &c.task, ids[i]);
          printf("%5s", lab);
          for (int32_t j = 0; j < len; j++)
            printf(" %5.2f", (double)w[((l * c.heads + h) * len + i) * len + j]);
          printf("\n");
        }
      }
  }
  free(w);
  return CLI_EXIT_OK;
}

/* ---- attn demo's options ------------------------------------------------------------------- */

static opt demo_opts[] = {
    {"task", OPT_STR, 0, 0, "reverse", "built-in task: reverse, sort, copy, recall, listops", NULL},
    {"steps", OPT_INT, 1, BIG, "400", "optimizer steps", NULL},
    {"seed", OPT_INT, 0, 2147483647, "1", "seed of the data and the initialisation", NULL},
    {"threads", OPT_INT, 0, 1024, "0 = ATTN_NUM_THREADS or all CPUs", "threads", NULL},
    {"out", OPT_STR, 0, 0, "attn-demo", "checkpoint directory", NULL},
    {"json", OPT_FLAG, 0, 0, NULL,
     "only JSON: one object per logged step and one at the end (no header)", NULL},
    {"png", OPT_FLAG, 0, 0, NULL,
     "also write the report's curves and heatmaps as PNG files in DIR/png/", NULL},
};
#define N_DEMO_OPTS ((int)(sizeof demo_opts / sizeof demo_opts[0]))

void cli_demo_options_usage(FILE *f) {
  opt_usage(f, demo_opts, N_DEMO_OPTS);
}

int cli_demo_config(int argc, char **argv, attn_train_config *c, int *json, int *png) {
  const char *pos[1];
  int n_pos;
  int rc = opt_parse("demo", argc, argv, demo_opts, N_DEMO_OPTS, pos, 0, &n_pos);
  if (rc) return rc;
  attn_task_id id;
  const char *task = opt_str(demo_opts, N_DEMO_OPTS, "task");
  if (attn_task_from_name(task, &id) != ATTN_OK) {
    cli_errorf("demo: --task: unknown task '%s' (reverse, sort, copy, recall, listops)", task);
    return CLI_EXIT_USAGE;
  }
  *c = attn_train_config_default(id);
  c->steps = opt_int(demo_opts, N_DEMO_OPTS, "steps");
  c->seed = c->task.seed = (uint64_t)opt_int(demo_opts, N_DEMO_OPTS, "seed");
  c->ckpt_every = 0;
  c->log_every = isatty(STDOUT_FILENO) ? 10 : 50;
  static char out_dir[4096];
  snprintf(out_dir, sizeof out_dir, "%s", opt_str(demo_opts, N_DEMO_OPTS, "out"));
  c->out_dir = out_dir;
  *json = opt_given(demo_opts, N_DEMO_OPTS, "json");
  *png = opt_given(demo_opts, N_DEMO_OPTS, "png");
  return set_threads("demo", opt_int(demo_opts, N_DEMO_OPTS, "threads"));
}
