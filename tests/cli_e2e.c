/* End-to-end tests of the `attn` command (registered as CTest test `cli_e2e` when the tools are
 * built; argv[1] is the attn binary). Every subcommand runs on tiny settings in a temporary
 * directory and its outputs are checked, not only its exit code:
 *   - help: `attn help` and `attn CMD --help` list the commands and options;
 *   - train writes model.safetensors, optim.safetensors, config.json (the step reached),
 *     log.jsonl (one line a logged step), report.html and, with --png, PNG files that parse
 *     (tests/png_check.h: signature, chunk CRC-32s, IHDR, the zlib stream inflating to the right
 *     byte count with the right Adler-32), one per heatmap and curve;
 *   - the report is well formed (balanced tags after the doctype) with one heatmap <svg> per
 *     layer x head x example; eval prints accuracies; predict prints one output of the right form;
 *     --show-attention prints every layer's and head's weights, rows summing to 1;
 *   - SIGINT after the first progress line leaves a loadable checkpoint (exit 130; SIGTERM: 143),
 *     and resuming it ends byte-identical (model.safetensors) to an uninterrupted run, for a
 *     built-in task and for shuffled own data;
 *   - own data (TSV, CoNLL): train, eval --data, predict, report with the data's tokens;
 *   - bench gemm --shapes --packed 0,1 prints one JSON row each for attn_gemm and
 *     attn_gemm_packed with the shape asked; bad --shapes values are usage errors;
 *   - each bad input gives one line on stderr and its exit code (2 usage, 1 runtime). */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif
#include "common.h"
#include "png_check.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

static const char *g_attn;
static char g_root[256];

/* ---- running the command ------------------------------------------------------------------- */

typedef struct run_result {
  int code; /* exit code, or 128 + signal */
  char *out, *err;
} run_result;

static void run_free(run_result *r) {
  free(r->out);
  free(r->err);
  memset(r, 0, sizeof *r);
}

static char *read_all(const char *path, size_t *len) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  size_t cap = 4096, n = 0;
  char *buf = malloc(cap);
  for (;;) {
    if (n + 4096 + 1 > cap) {
      cap *= 2;
      buf = realloc(buf, cap);
    }
    const size_t got = fread(buf + n, 1, cap - n - 1, f);
    n += got;
    if (got == 0) break;
  }
  fclose(f);
  buf[n] = '\0';
  if (len) *len = n;
  return buf;
}

static int exit_code(int status) {
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

/* Runs attn with args (NULL-terminated), stdout and stderr captured. With interrupt_sig, the
 * signal is sent once stdout has shown a progress line ("event":"step"). */
static run_result run_args(const char *const *args, int interrupt_sig) {
  run_result r = {-1, NULL, NULL};
  char out_path[512], err_path[512];
  snprintf(out_path, sizeof out_path, "%s/stdout.txt", g_root);
  snprintf(err_path, sizeof err_path, "%s/stderr.txt", g_root);
  const char *argv[64];
  int n = 0;
  argv[n++] = g_attn;
  for (; args[n - 1] && n < 63; n++) argv[n] = args[n - 1];
  argv[n] = NULL;
  int pipefd[2] = {-1, -1};
  if (interrupt_sig && pipe(pipefd) != 0) return r;
  fflush(stdout);
  const pid_t pid = fork();
  if (pid < 0) return r;
  if (pid == 0) {
    const int fo = open(out_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    const int fe = open(err_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fo < 0 || fe < 0) _exit(127);
    if (interrupt_sig) {
      close(pipefd[0]);
      dup2(pipefd[1], 1);
      close(fo);
    } else {
      dup2(fo, 1);
    }
    dup2(fe, 2);
    execv(g_attn, (char *const *)argv);
    _exit(127);
  }
  if (interrupt_sig) {
    /* Copy the child's stdout into out_path, watching for the first progress line. */
    close(pipefd[1]);
    FILE *copy = fopen(out_path, "wb");
    char buf[4096];
    int sent = 0;
    size_t seen = 0;
    char window[64] = "";
    ssize_t got;
    while ((got = read(pipefd[0], buf, sizeof buf)) > 0) {
      if (copy) fwrite(buf, 1, (size_t)got, copy);
      for (ssize_t i = 0; i < got && !sent; i++) {
        /* a sliding window over the stream finds the marker across reads */
        memmove(window, window + 1, sizeof window - 2);
        window[sizeof window - 2] = buf[i];
        window[sizeof window - 1] = '\0';
        seen++;
        if (strstr(window, "\"event\":\"step\"")) {
          kill(pid, interrupt_sig);
          sent = 1;
        }
      }
    }
    close(pipefd[0]);
    if (copy) fclose(copy);
  }
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  r.code = exit_code(status);
  r.out = read_all(out_path, NULL);
  r.err = read_all(err_path, NULL);
  if (!r.out) r.out = calloc(1, 1);
  if (!r.err) r.err = calloc(1, 1);
  return r;
}

#define RUN(...) run_args((const char *const[]){__VA_ARGS__, NULL}, 0)
#define RUN_INTERRUPTED(sig, ...) run_args((const char *const[]){__VA_ARGS__, NULL}, sig)

static int count_of(const char *s, const char *what) {
  int n = 0;
  const size_t k = strlen(what);
  for (const char *p = s; (p = strstr(p, what)) != NULL; p += k) n++;
  return n;
}

static int count_lines(const char *s) {
  return count_of(s, "\n");
}

static void path_of(char *buf, size_t cap, const char *a, const char *b) {
  if (b)
    snprintf(buf, cap, "%s/%s/%s", g_root, a, b);
  else
    snprintf(buf, cap, "%s/%s", g_root, a);
}

static int file_exists(const char *a, const char *b) {
  char p[600];
  path_of(p, sizeof p, a, b);
  struct stat st;
  return stat(p, &st) == 0 && st.st_size > 0;
}

static char *slurp(const char *a, const char *b) {
  char p[600];
  path_of(p, sizeof p, a, b);
  char *s = read_all(p, NULL);
  return s ? s : calloc(1, 1);
}

static void write_text(const char *name, const char *text) {
  char p[600];
  path_of(p, sizeof p, name, NULL);
  FILE *f = fopen(p, "wb");
  if (f) {
    fputs(text, f);
    fclose(f);
  }
}

static int same_file(const char *a, const char *b) {
  char pa[600], pb[600];
  path_of(pa, sizeof pa, a, "model.safetensors");
  path_of(pb, sizeof pb, b, "model.safetensors");
  size_t na = 0, nb = 0;
  char *x = read_all(pa, &na), *y = read_all(pb, &nb);
  const int same = x && y && na == nb && na > 0 && !memcmp(x, y, na);
  free(x);
  free(y);
  return same;
}

/* One bad input: the exit code, exactly one line on stderr starting with "attn: " and holding
 * `want`. */
#define CHECK_FAILS(code_want, want, ...)                                                         \
  do {                                                                                            \
    run_result r_ = RUN(__VA_ARGS__);                                                             \
    CHECK(r_.code == (code_want) && count_lines(r_.err) == 1 && !strncmp(r_.err, "attn: ", 6) &&  \
              strstr(r_.err, want),                                                               \
          "exit %d (want %d), stderr '%s' (want one line with '%s')", r_.code, code_want, r_.err, \
          want);                                                                                  \
    run_free(&r_);                                                                                \
  } while (0)

/* ---- checking outputs ------------------------------------------------------------------------ */

/* The HTML after its doctype is well formed as XML: every <x ...> is closed by </x> in order or
 * is self-closing; comments and text are skipped. */
static int html_balanced(const char *s) {
  const char *p = strstr(s, "<html");
  if (!p) return 0;
  char stack[64][32];
  int depth = 0, seen = 0;
  while ((p = strchr(p, '<')) != NULL) {
    const char *end = strchr(p, '>');
    if (!end) return 0;
    if (p[1] == '/') {
      char name[32];
      size_t k = strcspn(p + 2, " >");
      if (k >= sizeof name || depth == 0) return 0;
      memcpy(name, p + 2, k);
      name[k] = '\0';
      if (strcmp(stack[--depth], name) != 0) return 0;
    } else if (end[-1] != '/') {
      size_t k = strcspn(p + 1, " >\n");
      if (k >= sizeof stack[0] || depth == 64) return 0;
      memcpy(stack[depth], p + 1, k);
      stack[depth++][k] = '\0';
      seen++;
    }
    p = end + 1;
  }
  return depth == 0 && seen > 0;
}

/* Counts the .png files of a folder and checks each; *bad receives the number that fail. */
static int check_pngs(const char *folder, int *heatmaps, int *bad) {
  char p[600], f[900];
  path_of(p, sizeof p, folder, NULL);
  DIR *dp = opendir(p);
  int n = 0;
  *heatmaps = *bad = 0;
  if (!dp) return 0;
  struct dirent *de;
  while ((de = readdir(dp)) != NULL) {
    const size_t k = strlen(de->d_name);
    if (k < 5 || strcmp(de->d_name + k - 4, ".png") != 0) continue;
    snprintf(f, sizeof f, "%s/%s", p, de->d_name);
    n++;
    if (!strncmp(de->d_name, "example", 7)) (*heatmaps)++;
    char why[128];
    int w = 0, h = 0;
    if (!png_check(f, &w, &h, NULL, why, sizeof why) || w < 16 || h < 16) {
      (*bad)++;
      fprintf(stderr, "bad PNG: %s: %s (%dx%d)\n", f, why, w, h);
    }
  }
  closedir(dp);
  return n;
}

/* The JSON number after "key": in s (NAN when absent). */
static double json_number(const char *s, const char *key) {
  char pat[64];
  snprintf(pat, sizeof pat, "\"%s\":", key);
  const char *p = strstr(s, pat);
  return p ? strtod(p + strlen(pat), NULL) : NAN;
}

/* ---- the tests ----------------------------------------------------------------------------- */

#define TINY "--dim", "16", "--heads", "2", "--layers", "2", "--hidden", "32", "--threads", "1"

static void test_help(void) {
  run_result r = RUN("help");
  CHECK(r.code == 0 && strstr(r.out, "train") && strstr(r.out, "eval") &&
            strstr(r.out, "predict") && strstr(r.out, "report") && strstr(r.out, "demo"),
        "attn help: exit %d, '%s'", r.code, r.out);
  run_free(&r);
  static const char *const cmds[][3] = {{"train", "--steps", "--no-shuffle"},
                                        {"eval", "--data", "--split"},
                                        {"predict", "--show-attention", "--json"},
                                        {"report", "--png", "--examples"},
                                        {"demo", "--png", "--steps"}};
  for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++) {
    r = RUN(cmds[i][0], "--help");
    CHECK(r.code == 0 && strstr(r.out, "usage: attn") && strstr(r.out, cmds[i][1]) &&
              strstr(r.out, cmds[i][2]) && !*r.err,
          "attn %s --help: exit %d", cmds[i][0], r.code);
    run_free(&r);
  }
}

/* A trained built-in task checkpoint in t1 (2 layers x 2 heads), with PNGs. */
static void test_train_task(void) {
  char out[600];
  path_of(out, sizeof out, "t1", NULL);
  run_result r = RUN("train", "--task", "reverse", "--steps", "40", "--log-every", "10",
                     "--eval-examples", "50", "--ckpt-every", "0", TINY, "--out", out, "--png");
  CHECK(r.code == 0, "train: exit %d: %s", r.code, r.err);
  CHECK(strstr(r.out, "\"event\":\"done\"") && json_number(r.out, "steps") == 40 &&
            json_number(r.out, "png") == 14,
        "train's last line: %s", r.out);
  run_free(&r);
  static const char *const files[] = {"model.safetensors", "optim.safetensors", "config.json",
                                      "log.jsonl", "report.html"};
  for (int i = 0; i < 5; i++) CHECK(file_exists("t1", files[i]), "t1/%s missing", files[i]);
  char *cfg = slurp("t1", "config.json"), *log = slurp("t1", "log.jsonl");
  CHECK(strstr(cfg, "\"step\": 40") && strstr(cfg, "\"task\": \"reverse\""), "config: %s", cfg);
  CHECK(count_lines(log) == 4 && count_of(log, "\"loss\":") == 4, "log.jsonl: %s", log);
  free(cfg);
  free(log);
  char *html = slurp("t1", "report.html");
  CHECK(html_balanced(html), "report.html is not well formed");
  CHECK(count_of(html, "class=\"heat\"") == 2 * 2 * 3, "%d heatmaps, want 12",
        count_of(html, "class=\"heat\""));
  CHECK(count_of(html, "<svg") == 12 + 2, "%d svg, want 14", count_of(html, "<svg"));
  free(html);
  int heat, bad;
  const int n = check_pngs("t1/png", &heat, &bad);
  CHECK(n == 14 && heat == 12 && bad == 0, "t1/png: %d files, %d heatmaps, %d bad", n, heat, bad);
}

static void test_eval_predict_report(void) {
  char dir[600], page[600];
  path_of(dir, sizeof dir, "t1", NULL);
  run_result r = RUN("eval", dir, "--examples", "20", "--threads", "1");
  const double acc = json_number(r.out, "seq_acc"), tok = json_number(r.out, "token_acc");
  CHECK(r.code == 0 && json_number(r.out, "examples") == 20 && acc >= 0 && acc <= 1 && tok >= 0 &&
            tok <= 1,
        "eval: exit %d, '%s'", r.code, r.out);
  run_free(&r);

  r = RUN("predict", dir, "3", "1", "4");
  int a = 0, b = 0, c = 0, k = 0;
  const int got = sscanf(r.out, "%d %d %d%n", &a, &b, &c, &k);
  CHECK(r.code == 0 && got == 3 && a >= 1 && a <= 10 && b >= 1 && b <= 10 && c >= 1 && c <= 10 &&
            !strcmp(r.out + k, "\n"),
        "predict: exit %d, '%s'", r.code, r.out);
  run_free(&r);
  r = RUN("predict", dir, "--json", "3,1,4");
  CHECK(r.code == 0 && strstr(r.out, "\"input\":[3,1,4]") &&
            strstr(r.out, "\"expected\":[4,1,3]") && count_lines(r.out) == 1,
        "predict --json: '%s'", r.out);
  run_free(&r);

  r = RUN("predict", dir, "--show-attention", "3", "1", "4");
  CHECK(r.code == 0, "predict --show-attention: exit %d", r.code);
  int heads = 0, rows = 0, rows_ok = 0;
  for (int l = 0; l < 2; l++)
    for (int h = 0; h < 2; h++) {
      char want[64];
      snprintf(want, sizeof want, "layer %d, head %d", l, h);
      const char *p = strstr(r.out, want);
      if (!p) continue;
      heads++;
      p = strchr(p, '\n');            /* title */
      if (p) p = strchr(p + 1, '\n'); /* column labels */
      for (int i = 0; i < 3 && p; i++) {
        char lab[16];
        double w[3];
        if (sscanf(p + 1, "%15s %lf %lf %lf", lab, &w[0], &w[1], &w[2]) == 4) {
          rows++;
          rows_ok += fabs(w[0] + w[1] + w[2] - 1) < 0.02 && w[0] >= 0 && w[1] >= 0 && w[2] >= 0;
        }
        p = strchr(p + 1, '\n');
      }
    }
  CHECK(heads == 4 && rows == 12 && rows_ok == 12, "--show-attention: %d heads, %d rows, %d ok",
        heads, rows, rows_ok);
  run_free(&r);

  path_of(page, sizeof page, "t1", "r2.html");
  r = RUN("report", dir, "--out", page, "--examples", "2");
  CHECK(r.code == 0 && strstr(r.out, "r2.html"), "report: exit %d, %s", r.code, r.err);
  run_free(&r);
  char *html = slurp("t1", "r2.html");
  CHECK(html_balanced(html) && count_of(html, "class=\"heat\"") == 8,
        "report --examples 2: %d heatmaps", count_of(html, "class=\"heat\""));
  free(html);
}

/* SIGINT after the first progress line: exit 130, a loadable checkpoint, and resuming it ends
 * byte-identical to the uninterrupted run. */
static void test_interrupt_resume(void) {
  char a[600], b[600];
  path_of(a, sizeof a, "straight", NULL);
  path_of(b, sizeof b, "stopped", NULL);
  run_result r = RUN("train", "--task", "sort", "--steps", "100", "--log-every", "2",
                     "--eval-examples", "20", TINY, "--out", a);
  CHECK(r.code == 0, "straight run: exit %d %s", r.code, r.err);
  run_free(&r);
  r = RUN_INTERRUPTED(SIGINT, "train", "--task", "sort", "--steps", "100", "--log-every", "2",
                      "--eval-examples", "20", TINY, "--out", b);
  CHECK(r.code == 130 && strstr(r.err, "interrupted at step") &&
            strstr(r.err, "checkpoint saved in") && count_lines(r.err) == 1,
        "SIGINT: exit %d, stderr '%s'", r.code, r.err);
  CHECK(strstr(r.out, "\"event\":\"interrupted\""), "SIGINT: stdout '%s'", r.out);
  run_free(&r);
  char *cfg = slurp("stopped", "config.json");
  const char *st = strstr(cfg, "\"step\": ");
  const long step = st ? strtol(st + 8, NULL, 10) : -1;
  CHECK(step >= 2 && step < 100, "interrupted checkpoint at step %ld", step);
  free(cfg);
  r = RUN("eval", b, "--examples", "5", "--threads", "1");
  CHECK(r.code == 0 && json_number(r.out, "step") == step, "eval of the interrupted checkpoint: %d",
        r.code);
  run_free(&r);
  r = RUN("train", "--resume", b, "--threads", "1");
  CHECK(r.code == 0 && json_number(r.out, "steps") == 100, "resume: exit %d %s", r.code, r.err);
  run_free(&r);
  CHECK(same_file("straight", "stopped"),
        "resumed model.safetensors differs from the straight run");
  /* SIGTERM: the same, with exit 143. */
  path_of(b, sizeof b, "terminated", NULL);
  r = RUN_INTERRUPTED(SIGTERM, "train", "--task", "sort", "--steps", "100", "--log-every", "2",
                      TINY, "--out", b);
  CHECK(r.code == 143 && strstr(r.err, "terminated at step") && count_lines(r.err) == 1,
        "SIGTERM: exit %d, stderr '%s'", r.code, r.err);
  run_free(&r);
  r = RUN("predict", b, "2", "1");
  CHECK(r.code == 0 && count_lines(r.out) == 1, "predict with the SIGTERM checkpoint: exit %d",
        r.code);
  run_free(&r);
}

static void test_own_data(void) {
  /* TSV: label "pos" when the text holds "génial". */
  char *tr = malloc(1 << 16), *va = malloc(1 << 14);
  t_rng rng = t_rng_make(5);
  static const char *const words[] = {"un", "film", "nul", "vu", "le", "<b>&amp;"};
  char *w = tr;
  for (int i = 0; i < 120; i++) {
    const int pos = (int)t_int(&rng, 0, 1), n = (int)t_int(&rng, 2, 5);
    w += sprintf(w, "%s\t", pos ? "pos" : "neg");
    for (int j = 0; j < n; j++) w += sprintf(w, "%s%s", j ? " " : "", words[t_int(&rng, 0, 5)]);
    w += sprintf(w, "%s\n", pos ? " génial" : "");
  }
  write_text("train.tsv", tr);
  w = va;
  for (int i = 0; i < 20; i++)
    w += sprintf(w, "%s\tle film%s\n", i % 2 ? "pos" : "neg", i % 2 ? " génial" : "");
  write_text("val.tsv", va);
  free(tr);
  free(va);
  char trp[600], vap[600], dir[600], a[600], b[600];
  path_of(trp, sizeof trp, "train.tsv", NULL);
  path_of(vap, sizeof vap, "val.tsv", NULL);
  path_of(dir, sizeof dir, "d1", NULL);
  run_result r = RUN("train", "--data-train", trp, "--data-val", vap, "--tokens", "word", "--steps",
                     "30", "--log-every", "10", TINY, "--out", dir, "--png");
  CHECK(r.code == 0 && strstr(r.out, "\"event\":\"data\"") && json_number(r.out, "png") == 14,
        "train on TSV: exit %d %s", r.code, r.err);
  run_free(&r);
  char *meta = slurp("d1", "data.json"), *cfg = slurp("d1", "config.json");
  CHECK(strstr(meta, "\"train\": \"") && strstr(meta, "val.tsv"), "data.json: %s", meta);
  CHECK(strstr(cfg, "\"task\": \"data\"") && strstr(cfg, "\"shuffle\": 1"), "config: %s", cfg);
  free(meta);
  free(cfg);
  char *html = slurp("d1", "report.html");
  CHECK(html_balanced(html) && count_of(html, "class=\"heat\"") == 12 &&
            strstr(html, ">génial</text>") && strstr(html, "expected pos"),
        "own-data report: %d heatmaps", count_of(html, "class=\"heat\""));
  free(html);
  int heat, bad;
  const int n = check_pngs("d1/png", &heat, &bad);
  CHECK(n == 14 && heat == 12 && bad == 0, "d1/png: %d files, %d heatmaps, %d bad", n, heat, bad);

  r = RUN("eval", dir, "--data", vap);
  CHECK(r.code == 0 && json_number(r.out, "examples") == 20 && json_number(r.out, "seq_acc") >= 0,
        "eval --data: exit %d '%s'", r.code, r.out);
  run_free(&r);
  r = RUN("predict", dir, "un", "film", "génial");
  CHECK(r.code == 0 && (!strcmp(r.out, "pos\n") || !strcmp(r.out, "neg\n")), "predict: '%s'",
        r.out);
  run_free(&r);
  r = RUN("predict", dir, "--show-attention", "le", "film");
  CHECK(r.code == 0 && strstr(r.out, "layer 1, head 1") && strstr(r.out, "\nfilm ") &&
            count_of(r.out, "\nle ") == 4,
        "own data --show-attention: '%s'", r.out);
  run_free(&r);
  r = RUN("report", dir, "--data", trp, "--examples", "1");
  html = slurp("d1", "report.html");
  /* The training file's tokens, escaped: "<b>&amp;" is one word token. */
  CHECK(r.code == 0 && html_balanced(html) && count_of(html, "class=\"heat\"") == 4 &&
            strstr(html, "train.tsv") && strstr(html, "&lt;b&gt;&amp;amp;"),
        "report --data: exit %d", r.code);
  free(html);
  run_free(&r);

  /* Shuffled own data: interrupted and resumed equals straight. */
  path_of(a, sizeof a, "d_straight", NULL);
  path_of(b, sizeof b, "d_stopped", NULL);
  r = RUN("train", "--data-train", trp, "--steps", "120", "--log-every", "2", "--batch", "16", TINY,
          "--out", a);
  CHECK(r.code == 0, "own data straight: exit %d %s", r.code, r.err);
  run_free(&r);
  r = RUN_INTERRUPTED(SIGINT, "train", "--data-train", trp, "--steps", "120", "--log-every", "2",
                      "--batch", "16", TINY, "--out", b);
  CHECK(r.code == 130, "own data SIGINT: exit %d %s", r.code, r.err);
  run_free(&r);
  r = RUN("train", "--resume", b, "--data-train", trp, "--threads", "1");
  CHECK(r.code == 0, "own data resume: exit %d %s", r.code, r.err);
  run_free(&r);
  CHECK(same_file("d_straight", "d_stopped"), "own data: resumed model differs from straight");

  /* CoNLL: one tag per token. */
  write_text("ner.conll",
             "-DOCSTART- O\n\nJean B-PER\nva O\nà O\nParis B-LOC\n\nMarie B-PER\nvit O\nà O\n"
             "Lyon B-LOC\n");
  path_of(trp, sizeof trp, "ner.conll", NULL);
  path_of(dir, sizeof dir, "n1", NULL);
  r = RUN("train", "--data-train", trp, "--format", "conll", "--steps", "10", TINY, "--out", dir);
  CHECK(r.code == 0, "train on CoNLL: exit %d %s", r.code, r.err);
  run_free(&r);
  r = RUN("predict", dir, "Jean", "vit", "à", "Paris");
  int tags = 0;
  for (char *p = strtok(r.out, " \n"); p; p = strtok(NULL, " \n"))
    tags += !strcmp(p, "O") || !strcmp(p, "B-PER") || !strcmp(p, "B-LOC");
  CHECK(r.code == 0 && tags == 4, "CoNLL predict: %d tags", tags);
  run_free(&r);
  html = slurp("n1", "report.html");
  CHECK(html_balanced(html) && strstr(html, ">Paris</text>") &&
            count_of(html, "class=\"heat\"") == 2 * 4,
        "CoNLL report: %d heatmaps", count_of(html, "class=\"heat\""));
  free(html);
}

static void test_bad_inputs(void) {
  char t1[600], other[600], mixed[600], src[600], dst[600], missing[600], bad[600], nodir[600];
  path_of(t1, sizeof t1, "t1", NULL);
  path_of(missing, sizeof missing, "missing.tsv", NULL);
  path_of(bad, sizeof bad, "bad.tsv", NULL);
  path_of(nodir, sizeof nodir, "nodir", NULL);
  CHECK_FAILS(2, "unknown command 'frobnicate'", "frobnicate");
  CHECK_FAILS(2, "unknown option '--bogus'", "train", "--bogus");
  CHECK_FAILS(2, "option --steps needs a value", "train", "--steps");
  CHECK_FAILS(2, "--steps: '0' is not an integer in [1, 1000000000]", "train", "--steps", "0");
  CHECK_FAILS(2, "--lr: 'abc' is not a number", "train", "--lr", "abc");
  CHECK_FAILS(2, "--task: unknown task 'fly'", "train", "--task", "fly");
  CHECK_FAILS(2, "--heads 3 does not divide --dim 16", "train", "--dim", "16", "--heads", "3");
  CHECK_FAILS(2, "cannot be combined with --resume", "train", "--resume", t1, "--dim", "8");
  CHECK_FAILS(2, "--no-shuffle applies to --data-train only", "train", "--no-shuffle");
  CHECK_FAILS(2, "unknown option '--bogus'", "eval", t1, "--bogus");
  CHECK_FAILS(2, "missing the checkpoint directory", "eval");
  CHECK_FAILS(2, "token '99' is not a symbol in [1, 10]", "predict", t1, "99");
  CHECK_FAILS(2, "no input tokens", "predict", t1);
  CHECK_FAILS(2, "--examples: '99' is not an integer in [0, 20]", "report", t1, "--examples", "99");
  CHECK_FAILS(2, "missing the checkpoint directory", "report");
  CHECK_FAILS(2, "--data does not apply", "report", t1, "--data", bad);
  CHECK_FAILS(2, "unexpected argument 'x'", "version", "x");
  CHECK_FAILS(2, "was trained on a built-in task", "train", "--resume", t1, "--data-train", bad);
  path_of(src, sizeof src, "d1", NULL);
  CHECK_FAILS(1, "missing.tsv", "report", src, "--data", missing);
  CHECK_FAILS(1, "config.json: cannot open", "eval", nodir);
  CHECK_FAILS(1, "config.json: cannot open", "report", nodir);
  CHECK_FAILS(1, "missing.tsv", "train", "--data-train", missing, "--steps", "1", "--out", nodir);
  write_text("bad.tsv", "pos\tfine\nno tab here\n");
  CHECK_FAILS(1, "bad.tsv:2: no TAB between label and text", "train", "--data-train", bad,
              "--steps", "1", "--out", nodir);
  write_text("bad.conll", "Jean B-PER extra\n");
  path_of(bad, sizeof bad, "bad.conll", NULL);
  CHECK_FAILS(1, "bad.conll:1: 3 fields", "train", "--data-train", bad, "--format", "conll",
              "--steps", "1", "--out", nodir);
  /* A checkpoint whose model.safetensors is another model's (same step, other width). */
  path_of(other, sizeof other, "other", NULL);
  run_result r =
      RUN("train", "--task", "reverse", "--steps", "40", "--dim", "8", "--heads", "2", "--layers",
          "1", "--hidden", "8", "--eval-examples", "0", "--threads", "1", "--out", other);
  CHECK(r.code == 0, "other model: exit %d %s", r.code, r.err);
  run_free(&r);
  path_of(mixed, sizeof mixed, "mixed", NULL);
  mkdir(mixed, 0777);
  static const char *const files[] = {"config.json", "model.safetensors"};
  for (int i = 0; i < 2; i++) {
    path_of(src, sizeof src, i == 0 ? "t1" : "other", files[i]);
    path_of(dst, sizeof dst, "mixed", files[i]);
    size_t n = 0;
    char *data = read_all(src, &n);
    FILE *f = fopen(dst, "wb");
    if (f && data) fwrite(data, 1, n, f);
    if (f) fclose(f);
    free(data);
  }
  CHECK_FAILS(1, "model.safetensors", "eval", mixed);
  CHECK_FAILS(1, "model.safetensors", "predict", mixed, "1", "2");
}

/* `attn bench gemm --shapes ... --packed 0,1`: a tiny Linear-layer shape, one row a kernel. */
static void test_bench_gemm(void) {
  run_result r = RUN("bench", "gemm", "--shapes", "64x48x40", "--packed", "0,1", "--threads", "1",
                     "--reps", "1", "--json");
  CHECK(r.code == 0 && !*r.err, "bench gemm --shapes --packed: exit %d %s", r.code, r.err);
  /* The rows after the peak record, in order: packed false, then true. */
  const char *rows[2] = {NULL, NULL};
  int n = 0;
  for (const char *p = r.out; (p = strstr(p, "{\"kernel\":\"gemm\"")) != NULL; p++)
    if (n++ < 2) rows[n - 1] = p;
  CHECK(n == 2, "bench gemm --packed 0,1: %d gemm rows (want 2): '%s'", n, r.out);
  for (int i = 0; i < 2 && i < n; i++) {
    const char *row = rows[i];
    const char *end = strchr(row, '\n');
    char line[2048];
    size_t len = end ? (size_t)(end - row) : strlen(row);
    if (len >= sizeof line) len = sizeof line - 1;
    memcpy(line, row, len);
    line[len] = '\0';
    CHECK(strstr(line, i ? "\"packed\":true" : "\"packed\":false") &&
              strstr(line, "\"epilogue\":\"none\"") && json_number(line, "M") == 64 &&
              json_number(line, "N") == 48 && json_number(line, "K") == 40 &&
              json_number(line, "gflops") > 0 &&
              (i ? json_number(line, "packed_bytes") > 0 : json_number(line, "packed_bytes") == 0),
          "bench gemm row %d: '%s'", i, line);
  }
  run_free(&r);
  CHECK_FAILS(2, "'10x10' is not MxNxK", "bench", "gemm", "--shapes", "10x10");
  CHECK_FAILS(2, "'0x5x5' is not MxNxK", "bench", "gemm", "--shapes", "0x5x5");
  CHECK_FAILS(2, "'axbxc' is not MxNxK", "bench", "gemm", "--shapes", "axbxc");
  CHECK_FAILS(2, "--sizes and --shapes cannot be combined", "bench", "gemm", "--sizes", "64",
              "--shapes", "64x48x40");
}

static void test_demo(void) {
  char dir[600];
  path_of(dir, sizeof dir, "demo", NULL);
  /* 10 steps log once (every 50 in a pipe): no curves, the heatmaps of 3 examples x 2 x 4. */
  run_result r = RUN("demo", "--steps", "10", "--threads", "1", "--out", dir, "--png");
  CHECK(r.code == 0 && strstr(r.out, "max |out - reference|") && strstr(r.out, "demo done") &&
            strstr(r.out, "validation"),
        "demo: exit %d %s", r.code, r.err);
  run_free(&r);
  int heat, bad;
  const int n = check_pngs("demo/png", &heat, &bad);
  CHECK(heat == 2 * 4 * 3 && n == heat && bad == 0, "demo/png: %d files, %d heatmaps, %d bad", n,
        heat, bad);
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: cli_e2e PATH_TO_ATTN\n");
    return 2;
  }
  g_attn = argv[1];
  if (access(g_attn, X_OK) != 0) {
    fprintf(stderr, "cli_e2e: %s is not executable\n", g_attn);
    return 1;
  }
  const char *tmp = getenv("TMPDIR");
  snprintf(g_root, sizeof g_root, "%s/attn_cli_XXXXXX", tmp && *tmp ? tmp : "/tmp");
  if (!mkdtemp(g_root)) {
    perror("mkdtemp");
    return 1;
  }
  test_help();
  test_train_task();
  test_eval_predict_report();
  test_interrupt_resume();
  test_own_data();
  test_bad_inputs();
  test_bench_gemm();
  test_demo();
  if (t_failures == 0) {
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_root);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", g_root);
  } else {
    fprintf(stderr, "cli_e2e: files kept in %s\n", g_root);
  }
  return t_finish("cli_e2e");
}
