/* `attn report CKPT`: a self-contained HTML page (no scripts, no network) for a checkpoint: the
 * run's settings and metrics, the training loss and accuracy curves from CKPT/log.jsonl, and
 * attention heatmaps (every layer and head) for a few test examples, axes labelled with the input
 * tokens, all as inline SVG. `attn train` and `attn demo` write it at the end of a run. */
#include "cli.h"
#include "train_cli.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define MAX_POINTS 100000
#define MAX_SHOWN 64 /* heatmaps show at most this many positions */

typedef struct curve {
  double *step, *loss, *tok, *seq;
  int n;
} curve;

static double json_num(const char *line, const char *key, int *ok) {
  char pat[64];
  snprintf(pat, sizeof pat, "\"%s\":", key);
  const char *p = strstr(line, pat);
  if (!p) {
    *ok = 0;
    return 0;
  }
  char *end = NULL;
  const double v = strtod(p + strlen(pat), &end);
  if (end == p + strlen(pat)) *ok = 0;
  return v;
}

/* Reads dir/log.jsonl; a step that appears again (a resumed run) replaces the later ones. */
static void read_curve(const char *dir, curve *c) {
  memset(c, 0, sizeof *c);
  char path[4200];
  snprintf(path, sizeof path, "%s/log.jsonl", dir);
  FILE *f = fopen(path, "r");
  if (!f) return;
  c->step = malloc(MAX_POINTS * sizeof(double));
  c->loss = malloc(MAX_POINTS * sizeof(double));
  c->tok = malloc(MAX_POINTS * sizeof(double));
  c->seq = malloc(MAX_POINTS * sizeof(double));
  if (!c->step || !c->loss || !c->tok || !c->seq) {
    fclose(f);
    return;
  }
  char line[1024];
  while (fgets(line, sizeof line, f)) {
    int ok = 1;
    const double st = json_num(line, "step", &ok), lo = json_num(line, "loss", &ok);
    const double tk = json_num(line, "token_acc", &ok), sq = json_num(line, "seq_acc", &ok);
    if (!ok || !isfinite(lo)) continue;
    while (c->n > 0 && c->step[c->n - 1] >= st) c->n--;
    if (c->n >= MAX_POINTS) break;
    c->step[c->n] = st;
    c->loss[c->n] = lo;
    c->tok[c->n] = tk;
    c->seq[c->n] = sq;
    c->n++;
  }
  fclose(f);
}

static void free_curve(curve *c) {
  free(c->step);
  free(c->loss);
  free(c->tok);
  free(c->seq);
}

static void html_text(FILE *f, const char *s) {
  for (; *s; s++) {
    if (*s == '<')
      fputs("&lt;", f);
    else if (*s == '>')
      fputs("&gt;", f);
    else if (*s == '&')
      fputs("&amp;", f);
    else if (*s == '"')
      fputs("&quot;", f);
    else
      fputc(*s, f);
  }
}

/* A line chart of up to 2 series over steps; log10 y when logy. */
static void svg_chart(FILE *f, const char *title, const curve *c, const double *ys[],
                      const char *names[], const char *colors[], int n_series, int logy) {
  const double W = 520, H = 260, L = 60, R = 20, T = 30, B = 40;
  double x0 = c->step[0], x1 = c->step[c->n - 1];
  if (x1 <= x0) x1 = x0 + 1;
  double y0 = logy ? INFINITY : 0, y1 = logy ? -INFINITY : 1;
  if (logy)
    for (int s = 0; s < n_series; s++)
      for (int i = 0; i < c->n; i++) {
        const double v = log10(fmax(ys[s][i], 1e-6));
        y0 = fmin(y0, floor(v));
        y1 = fmax(y1, ceil(v));
      }
  if (y1 <= y0) y1 = y0 + 1;
  fprintf(f,
          "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" height=\"%.0f\" "
          "viewBox=\"0 0 %.0f %.0f\" role=\"img\">\n",
          W, H, W, H);
  fprintf(f, "<text x=\"%.0f\" y=\"18\" font-size=\"14\" text-anchor=\"middle\">%s</text>\n", W / 2,
          title);
  fprintf(f,
          "<rect x=\"%.0f\" y=\"%.0f\" width=\"%.0f\" height=\"%.0f\" fill=\"none\" "
          "stroke=\"#888\"/>\n",
          L, T, W - L - R, H - T - B);
  /* y ticks */
  const int ny = logy ? (int)(y1 - y0) : 4;
  for (int k = 0; k <= ny; k++) {
    const double v = y0 + (y1 - y0) * k / ny, y = H - B - (H - T - B) * k / ny;
    fprintf(f, "<line x1=\"%.0f\" y1=\"%.1f\" x2=\"%.0f\" y2=\"%.1f\" stroke=\"#ddd\"/>\n", L, y,
            W - R, y);
    if (logy)
      fprintf(f, "<text x=\"%.0f\" y=\"%.1f\" font-size=\"11\" text-anchor=\"end\">1e%d</text>\n",
              L - 4, y + 4, (int)v);
    else
      fprintf(f, "<text x=\"%.0f\" y=\"%.1f\" font-size=\"11\" text-anchor=\"end\">%.0f%%</text>\n",
              L - 4, y + 4, 100 * v);
  }
  for (int k = 0; k <= 4; k++) {
    const double v = x0 + (x1 - x0) * k / 4, x = L + (W - L - R) * k / 4;
    fprintf(f, "<text x=\"%.1f\" y=\"%.0f\" font-size=\"11\" text-anchor=\"middle\">%.0f</text>\n",
            x, H - B + 15, v);
  }
  fprintf(f, "<text x=\"%.0f\" y=\"%.0f\" font-size=\"12\" text-anchor=\"middle\">step</text>\n",
          (L + W - R) / 2, H - 6);
  for (int s = 0; s < n_series; s++) {
    fprintf(f, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"1.5\" points=\"", colors[s]);
    for (int i = 0; i < c->n; i++) {
      double v = logy ? log10(fmax(ys[s][i], 1e-6)) : ys[s][i];
      const double x = L + (W - L - R) * (c->step[i] - x0) / (x1 - x0);
      const double y = H - B - (H - T - B) * (v - y0) / (y1 - y0);
      fprintf(f, "%.1f,%.1f ", x, y);
    }
    fputs("\"/>\n", f);
    fprintf(f, "<text x=\"%.0f\" y=\"%.0f\" font-size=\"12\" fill=\"%s\">%s</text>\n",
            L + 8 + 130 * s, T + 16, colors[s], names[s]);
  }
  fputs("</svg>\n", f);
}

static void token_label(char *buf, size_t cap, const attn_task_config *t, int32_t id) {
  if (id == ATTN_TASK_PAD)
    snprintf(buf, cap, "_");
  else if (t->id == ATTN_TASK_RECALL && id == ATTN_TASK_QUERY(t))
    snprintf(buf, cap, "?");
  else if (t->id == ATTN_TASK_LISTOPS && id >= 1 && id <= 10)
    snprintf(buf, cap, "%d", (int)id - 1);
  else if (t->id == ATTN_TASK_LISTOPS && id >= 11 && id <= 15)
    snprintf(buf, cap, "%s", (const char *const[]){"[MAX", "[MIN", "[MED", "[SM", "]"}[id - 11]);
  else
    snprintf(buf, cap, "%d", (int)id);
}

/* One heatmap: w (len, len) with row stride `stride`, rows = queries, columns = keys. */
static void svg_heatmap(FILE *f, const char *title, const float *w, int32_t len, int32_t stride,
                        const int32_t *ids, const attn_task_config *t) {
  const double cell = len <= 12 ? 18 : len <= 24 ? 12 : 300.0 / len;
  const double L = 28, T = 34, W = L + cell * len + 6, H = T + cell * len + 6;
  char lab[32];
  fprintf(f,
          "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" height=\"%.0f\" "
          "viewBox=\"0 0 %.0f %.0f\" role=\"img\" class=\"heat\">\n",
          W, H, W, H);
  fprintf(f, "<text x=\"%.0f\" y=\"12\" font-size=\"11\">%s</text>\n", L, title);
  for (int32_t j = 0; j < len; j++) {
    token_label(lab, sizeof lab, t, ids[j]);
    fprintf(f, "<text x=\"%.1f\" y=\"%.0f\" font-size=\"9\" text-anchor=\"middle\">%s</text>\n",
            L + cell * (j + 0.5), T - 4, lab);
    fprintf(f, "<text x=\"%.0f\" y=\"%.1f\" font-size=\"9\" text-anchor=\"end\">%s</text>\n", L - 3,
            T + cell * (j + 0.5) + 3, lab);
  }
  for (int32_t i = 0; i < len; i++)
    for (int32_t j = 0; j < len; j++) {
      double v = w[(int64_t)i * stride + j];
      if (!(v >= 0)) v = 0;
      if (v > 1) v = 1;
      const int r = (int)(255 - 225 * v), g = (int)(255 - 175 * v), b = (int)(255 - 80 * v);
      fprintf(f,
              "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"rgb(%d,%d,%d)\">"
              "<title>query %d, key %d: %.3f</title></rect>\n",
              L + cell * j, T + cell * i, cell, cell, r, g, b, (int)i, (int)j, v);
    }
  fputs("</svg>\n", f);
}

int cli_write_report(const char *dir, const char *out_path, int n_examples, char *written,
                     size_t cap) {
  attn_seq_model *m = NULL;
  attn_train_config c;
  int64_t step = 0;
  if (attn_seq_model_load(&m, dir, &c, &step) != ATTN_OK) {
    cli_errorf("report: %s", attn_last_error());
    return CLI_EXIT_RUNTIME;
  }
  attn_eval_result ev;
  attn_task_shape sh;
  attn_task_get_shape(&c.task, &sh);
  const int64_t n_eval = c.eval_examples > 0 ? c.eval_examples : 500;
  if (attn_seq_model_eval(m, &c.task, ATTN_SPLIT_VALID, n_eval, &ev) != ATTN_OK) {
    cli_errorf("report: %s", attn_last_error());
    attn_seq_model_free(m);
    return CLI_EXIT_RUNTIME;
  }
  char path[4200], tmp[4300];
  if (out_path)
    snprintf(path, sizeof path, "%s", out_path);
  else
    snprintf(path, sizeof path, "%s/report.html", dir);
  snprintf(tmp, sizeof tmp, "%s.tmp", path);
  FILE *f = fopen(tmp, "w");
  if (!f) {
    cli_errorf("report: cannot write %s", tmp);
    attn_seq_model_free(m);
    return CLI_EXIT_RUNTIME;
  }
  fputs(
      "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\"/>\n<title>attn "
      "report: ",
      f);
  html_text(f, dir);
  fputs(
      "</title>\n<style>body{font-family:sans-serif;margin:2em;max-width:1100px}"
      "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 8px;text-align:left}"
      "svg.heat{margin:4px}.ex{margin-bottom:1.5em}</style>\n</head>\n<body>\n",
      f);
  fputs("<h1>attn report: ", f);
  html_text(f, dir);
  fputs("</h1>\n", f);
  fprintf(f, "<table>\n<tr><th>task</th><td>%s (%s), %d symbols, lengths %d..%d%s</td></tr>\n",
          attn_task_name(c.task.id), attn_task_kind_name(sh.kind), (int)c.task.n_symbols,
          (int)c.task.min_len, (int)c.task.max_len, c.task.id == ATTN_TASK_RECALL ? " pairs" : "");
  fprintf(f,
          "<tr><th>model</th><td>Transformer encoder: %lld blocks, d %lld, %lld heads, MLP %lld, "
          "%lld parameters</td></tr>\n",
          (long long)c.layers, (long long)c.dim, (long long)c.heads, (long long)c.hidden,
          (long long)attn_seq_model_numel(m));
  fprintf(f,
          "<tr><th>training</th><td>%lld of %lld steps, batch %lld, AdamW lr %g (warmup %lld, "
          "cosine to %g), "
          "seed %llu</td></tr>\n",
          (long long)step, (long long)c.steps, (long long)c.batch, (double)c.lr,
          (long long)c.warmup, (double)c.min_lr, (unsigned long long)c.seed);
  fprintf(f,
          "<tr><th>validation</th><td>sequence accuracy %.1f%%, token accuracy %.1f%%, loss %.4f "
          "(%lld examples)</td></tr>\n</table>\n",
          100 * ev.seq_acc, 100 * ev.token_acc, ev.loss, (long long)ev.examples);

  curve cv;
  read_curve(dir, &cv);
  fputs("<h2>Training curves</h2>\n", f);
  if (cv.n >= 2) {
    const double *ys1[1] = {cv.loss};
    const char *n1[1] = {"loss"}, *c1[1] = {"#c0392b"};
    svg_chart(f, "training loss (log scale)", &cv, ys1, n1, c1, 1, 1);
    const double *ys2[2] = {cv.tok, cv.seq};
    const char *n2[2] = {"token accuracy", "sequence accuracy"}, *c2[2] = {"#2471a3", "#229954"};
    svg_chart(f, "training accuracy", &cv, ys2, n2, c2, 2, 0);
  } else {
    fputs("<p>No training log (log.jsonl) with two points or more.</p>\n", f);
  }
  free_curve(&cv);

  fprintf(f, "<h2>Attention (test examples; rows: queries, columns: keys)</h2>\n");
  int32_t *ids = malloc((size_t)sh.seq_len * sizeof *ids),
          *tg = malloc((size_t)sh.seq_len * sizeof *tg);
  int32_t *pred = malloc((size_t)sh.seq_len * sizeof *pred);
  float *w = malloc((size_t)(c.layers * c.heads * sh.seq_len * sh.seq_len) * sizeof *w);
  int rc = 0;
  for (int e = 0; e < n_examples && ids && tg && pred && w && !rc; e++) {
    int32_t len;
    if (attn_task_example(&c.task, ATTN_SPLIT_TEST, e, ids, &len, tg) != ATTN_OK ||
        attn_seq_model_predict(m, ids, len, pred) != ATTN_OK ||
        attn_seq_model_attention(m, ids, len, w) != ATTN_OK) {
      cli_errorf("report: %s", attn_last_error());
      rc = CLI_EXIT_RUNTIME;
      break;
    }
    char lab[32];
    fprintf(f, "<div class=\"ex\">\n<p>example %d: input", e);
    for (int32_t t = 0; t < len; t++) {
      token_label(lab, sizeof lab, &c.task, ids[t]);
      fprintf(f, " %s", lab);
    }
    fputs("<br/>expected", f);
    int right = 1;
    for (int32_t t = 0; t < len; t++)
      if (tg[t] != ATTN_TASK_IGNORE) {
        token_label(lab, sizeof lab, &c.task, tg[t]);
        fprintf(f, " %s", lab);
        right &= pred[t] == tg[t];
      }
    fputs("<br/>predicted", f);
    for (int32_t t = 0; t < len; t++)
      if (tg[t] != ATTN_TASK_IGNORE) {
        token_label(lab, sizeof lab, &c.task, pred[t]);
        fprintf(f, " %s", lab);
      }
    fprintf(f, " (%s)</p>\n", right ? "right" : "wrong");
    const int32_t shown = len < MAX_SHOWN ? len : MAX_SHOWN;
    if (shown < len)
      fprintf(f, "<p>(heatmaps of the first %d positions of %d)</p>\n", (int)shown, (int)len);
    for (int64_t l = 0; l < c.layers; l++)
      for (int64_t h = 0; h < c.heads; h++) {
        char title[64];
        snprintf(title, sizeof title, "layer %lld, head %lld", (long long)l, (long long)h);
        svg_heatmap(f, title, w + (l * c.heads + h) * len * len, shown, len, ids, &c.task);
      }
    fputs("</div>\n", f);
  }
  if (!ids || !tg || !pred || !w) {
    cli_errorf("report: out of memory");
    rc = CLI_EXIT_RUNTIME;
  }
  free(ids);
  free(tg);
  free(pred);
  free(w);
  attn_seq_model_free(m);
  fputs("</body>\n</html>\n", f);
  const int bad = ferror(f) != 0;
  if (fclose(f) != 0 || bad || rc) {
    remove(tmp);
    if (!rc) cli_errorf("report: write failed: %s", tmp);
    return rc ? rc : CLI_EXIT_RUNTIME;
  }
  if (rename(tmp, path) != 0) {
    remove(tmp);
    cli_errorf("report: cannot rename %s to %s", tmp, path);
    return CLI_EXIT_RUNTIME;
  }
  if (written) snprintf(written, cap, "%s", path);
  return 0;
}

static void report_usage(FILE *f) {
  fputs(
      "usage: attn report CKPT_DIR [--out FILE] [--examples N]\n"
      "  Writes a self-contained HTML page (inline SVG, no scripts): the run's settings and\n"
      "  validation metrics, the training loss and accuracy curves (from CKPT_DIR/log.jsonl), and\n"
      "  attention heatmaps of every layer and head for N test examples.\n"
      "options:\n"
      "  --out FILE             the page (default: CKPT_DIR/report.html)\n"
      "  --examples N           test examples with heatmaps, 0..20 (default: 3)\n"
      "  --help                 this text\n",
      f);
}

int cli_report_main(int argc, char **argv) {
  const char *dir = NULL, *out = NULL;
  long n = 3;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
      report_usage(stdout);
      return CLI_EXIT_OK;
    }
    if (!strcmp(a, "--out") || !strcmp(a, "--examples")) {
      if (i + 1 >= argc) {
        cli_errorf("report: option %s needs a value", a);
        return CLI_EXIT_USAGE;
      }
      const char *v = argv[++i];
      if (!strcmp(a, "--out"))
        out = v;
      else if (cli_parse_int(v, 0, 20, &n) != 0) {
        cli_errorf("report: --examples: '%s' is not an integer in [0, 20]", v);
        return CLI_EXIT_USAGE;
      }
    } else if (a[0] == '-' && a[1]) {
      cli_errorf("report: unknown option '%s' (see 'attn report --help')", a);
      return CLI_EXIT_USAGE;
    } else if (!dir) {
      dir = a;
    } else {
      cli_errorf("report: unexpected argument '%s' (see 'attn report --help')", a);
      return CLI_EXIT_USAGE;
    }
  }
  if (!dir) {
    cli_errorf("report: missing the checkpoint directory (usage: attn report CKPT_DIR)");
    return CLI_EXIT_USAGE;
  }
  char written[4200];
  const int rc = cli_write_report(dir, out, (int)n, written, sizeof written);
  if (!rc) printf("report: %s\n", written);
  return rc;
}
