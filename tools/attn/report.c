/* `attn report CKPT`: a self-contained HTML page (no scripts, no network) for a checkpoint: the
 * run's settings and metrics, the training loss and accuracy curves from CKPT/log.jsonl, and
 * attention heatmaps (every layer and head) for a few examples, axes labelled with the input
 * tokens (a built-in task's symbols, or your own data's tokens through its vocabulary), all as
 * inline SVG; with --png the same curves and heatmaps as PNG files too. `attn train` and `attn
 * demo` write it at the end of a run. */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif
#include "cli.h"
#include "png.h"
#include "train_cli.h"

#include <dirent.h>
#include <errno.h>
#include <sys/stat.h>

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

/* Where the tokens of the report come from: a built-in task's symbols, or the vocabularies of
 * your own data (d not NULL). */
typedef struct rep {
  const attn_train_config *c;
  const cli_own_data *d;
} rep;

static void task_label(char *buf, size_t cap, const attn_task_config *t, int32_t id) {
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

#define MAX_LABEL_CHARS 10 /* a longer token is cut, ending with an ellipsis ('~' in a PNG) */

/* A vocabulary string as a label: a space is shown as U+2423 (PNG: '_'), a TAB as U+21E5 (PNG:
 * '>'), at most MAX_LABEL_CHARS UTF-8 characters. Not escaped. */
static void vocab_label(char *buf, size_t cap, const char *s, int png) {
  size_t k = 0;
  int chars = 0;
  buf[0] = '\0';
  if (!s) s = "?";
  while (*s && k + 8 < cap) {
    if (chars == MAX_LABEL_CHARS) {
      const char *more = png ? "~" : "\xe2\x80\xa6";
      memcpy(buf + k, more, strlen(more));
      k += strlen(more);
      break;
    }
    const char *rep_str = *s == ' '    ? (png ? "_" : "\xe2\x90\xa3")
                          : *s == '\t' ? (png ? ">" : "\xe2\x87\xa5")
                                       : NULL;
    if (rep_str) {
      memcpy(buf + k, rep_str, strlen(rep_str));
      k += strlen(rep_str);
      s++;
    } else {
      do buf[k++] = *s++;
      while ((((unsigned char)*s) & 0xc0) == 0x80 && k + 1 < cap);
    }
    chars++;
  }
  buf[k] = '\0';
}

/* The label of input token `id` and of output class `id` (not escaped). */
static void in_label(char *buf, size_t cap, const rep *r, int32_t id, int png) {
  if (r->d)
    vocab_label(buf, cap, attn_vocab_token(r->d->vocab, id), png);
  else
    task_label(buf, cap, &r->c->task, id);
}
static void out_label(char *buf, size_t cap, const rep *r, int32_t id) {
  if (r->d)
    vocab_label(buf, cap, attn_vocab_token(r->d->labels, id), 0);
  else
    task_label(buf, cap, &r->c->task, id);
}

/* One heatmap: w (len, len) with row stride `stride`, rows = queries, columns = keys. */
static void svg_heatmap(FILE *f, const char *title, const float *w, int32_t len, int32_t stride,
                        const int32_t *ids, const rep *r) {
  const double cell = len <= 12 ? 18 : len <= 24 ? 12 : 300.0 / len;
  const double L = r->d ? 64 : 28, T = 34, W = L + cell * len + 6, H = T + cell * len + 6;
  char lab[64];
  fprintf(f,
          "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" height=\"%.0f\" "
          "viewBox=\"0 0 %.0f %.0f\" role=\"img\" class=\"heat\">\n",
          W, H, W, H);
  fprintf(f, "<text x=\"%.0f\" y=\"12\" font-size=\"11\">%s</text>\n", L, title);
  for (int32_t j = 0; j < len; j++) {
    in_label(lab, sizeof lab, r, ids[j], 0);
    fprintf(f, "<text x=\"%.1f\" y=\"%.0f\" font-size=\"9\" text-anchor=\"middle\">",
            L + cell * (j + 0.5), T - 4);
    html_text(f, lab);
    fprintf(f, "</text>\n<text x=\"%.0f\" y=\"%.1f\" font-size=\"9\" text-anchor=\"end\">", L - 3,
            T + cell * (j + 0.5) + 3);
    html_text(f, lab);
    fputs("</text>\n", f);
  }
  for (int32_t i = 0; i < len; i++)
    for (int32_t j = 0; j < len; j++) {
      double v = w[(int64_t)i * stride + j];
      if (!(v >= 0)) v = 0;
      if (v > 1) v = 1;
      const int cr = (int)(255 - 225 * v), cg = (int)(255 - 175 * v), cb = (int)(255 - 80 * v);
      fprintf(f,
              "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"rgb(%d,%d,%d)\">"
              "<title>query %d, key %d: %.3f</title></rect>\n",
              L + cell * j, T + cell * i, cell, cell, cr, cg, cb, (int)i, (int)j, v);
    }
  fputs("</svg>\n", f);
}

/* ---- PNG pictures -------------------------------------------------------------------------- */

/* The heatmap as a PNG: cells of 4..24 pixels (about 512 pixels in all), the title on top, the
 * key tokens written downwards above the columns and the query tokens left of the rows when a
 * cell is tall and wide enough for a character (8 pixels). */
static int png_heatmap(const char *path, const char *title, const float *w, int32_t len,
                       int32_t stride, const int32_t *ids, const rep *r) {
  int cell = 512 / len;
  cell = cell < 4 ? 4 : cell > 24 ? 24 : cell;
  const int labels = cell >= 8;
  int maxc = 1;
  char lab[64];
  for (int32_t j = 0; labels && j < len; j++) {
    in_label(lab, sizeof lab, r, ids[j], 1);
    const int n = cli_text_chars(lab);
    if (n > maxc) maxc = n;
  }
  const int L = 4 + (labels ? maxc * CLI_FONT_W + 4 : 0),
            T = 16 + (labels ? maxc * CLI_FONT_H + 2 : 0);
  int W = L + cell * len + 4;
  const int tw = 4 + cli_text_chars(title) * CLI_FONT_W + 4;
  if (W < tw) W = tw;
  cli_image img;
  if (cli_image_init(&img, W, T + cell * len + 4) != 0) return -1;
  cli_image_text(&img, 4, 4, title, 0x000000, 1);
  for (int32_t j = 0; labels && j < len; j++) {
    in_label(lab, sizeof lab, r, ids[j], 1);
    const int n = cli_text_chars(lab);
    cli_image_text_down(&img, L + cell * j + (cell - 5) / 2, T - 2 - n * CLI_FONT_H, lab, 0x333333,
                        1);
    cli_image_text(&img, L - 4 - n * CLI_FONT_W, T + cell * j + (cell - 7) / 2, lab, 0x333333, 1);
  }
  for (int32_t i = 0; i < len; i++)
    for (int32_t j = 0; j < len; j++) {
      double v = w[(int64_t)i * stride + j];
      if (!(v >= 0)) v = 0;
      if (v > 1) v = 1;
      const uint32_t cr = (uint32_t)(255 - 225 * v), cg = (uint32_t)(255 - 175 * v),
                     cb = (uint32_t)(255 - 80 * v);
      cli_image_rect(&img, L + cell * j, T + cell * i, cell, cell, cr << 16 | cg << 8 | cb);
    }
  const int rc = cli_png_write(path, &img);
  cli_image_free(&img);
  return rc;
}

/* A line chart as a PNG, as svg_chart draws it (640 x 320). */
static int png_chart(const char *path, const char *title, const curve *c, const double *ys[],
                     const char *names[], const uint32_t colors[], int n_series, int logy) {
  const int W = 640, H = 320, L = 56, R = 16, T = 28, B = 40;
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
  cli_image img;
  if (cli_image_init(&img, W, H) != 0) return -1;
  char lab[64];
  cli_image_text(&img, (W - cli_text_chars(title) * CLI_FONT_W) / 2, 8, title, 0x000000, 1);
  const int ny = logy ? (int)(y1 - y0) : 4;
  for (int k = 0; k <= ny; k++) {
    const int y = H - B - (H - T - B) * k / ny;
    cli_image_line(&img, L, y, W - R, y, 0xdddddd);
    if (logy)
      snprintf(lab, sizeof lab, "1e%d", (int)(y0 + (y1 - y0) * k / ny));
    else
      snprintf(lab, sizeof lab, "%d%%", 100 * k / ny);
    cli_image_text(&img, L - 4 - cli_text_chars(lab) * CLI_FONT_W, y - 3, lab, 0x333333, 1);
  }
  for (int k = 0; k <= 4; k++) {
    const int x = L + (W - L - R) * k / 4;
    snprintf(lab, sizeof lab, "%.0f", x0 + (x1 - x0) * k / 4);
    cli_image_text(&img, x - cli_text_chars(lab) * CLI_FONT_W / 2, H - B + 6, lab, 0x333333, 1);
  }
  cli_image_text(&img, (L + W - R) / 2 - 12, H - 14, "step", 0x000000, 1);
  cli_image_line(&img, L, T, W - R, T, 0x888888);
  cli_image_line(&img, L, H - B, W - R, H - B, 0x888888);
  cli_image_line(&img, L, T, L, H - B, 0x888888);
  cli_image_line(&img, W - R, T, W - R, H - B, 0x888888);
  for (int s = 0; s < n_series; s++) {
    int px = 0, py = 0;
    for (int i = 0; i < c->n; i++) {
      const double v = logy ? log10(fmax(ys[s][i], 1e-6)) : ys[s][i];
      const int x = L + (int)lround((W - L - R) * (c->step[i] - x0) / (x1 - x0));
      const int y = H - B - (int)lround((H - T - B) * (v - y0) / (y1 - y0));
      if (i > 0) cli_image_line(&img, px, py, x, y, colors[s]);
      px = x;
      py = y;
    }
    cli_image_text(&img, L + 8 + 150 * s, T + 6, names[s], colors[s], 1);
  }
  const int rc = cli_png_write(path, &img);
  cli_image_free(&img);
  return rc;
}

/* The folder of PNG pictures: png/ beside the page. */
static void png_folder(char *buf, size_t cap, const char *page) {
  const char *slash = strrchr(page, '/');
  if (slash)
    snprintf(buf, cap, "%.*s/png", (int)(slash - page), page);
  else
    snprintf(buf, cap, "png");
}

/* Removes the heatmap pictures of an earlier report from the folder (exampleE_layerL_headH.png),
 * so that the folder holds exactly this report's pictures. */
static void remove_old_heatmaps(const char *folder) {
  DIR *dp = opendir(folder);
  if (!dp) return;
  struct dirent *de;
  char path[4600];
  while ((de = readdir(dp)) != NULL) {
    int e, l, h, end = 0;
    if (sscanf(de->d_name, "example%d_layer%d_head%d.png%n", &e, &l, &h, &end) == 3 && end > 0 &&
        de->d_name[end] == '\0') {
      snprintf(path, sizeof path, "%s/%s", folder, de->d_name);
      remove(path);
    }
  }
  closedir(dp);
}

int cli_write_report(const char *dir, const cli_report_opts *o, char *written, size_t cap,
                     int *n_png) {
  attn_seq_model *m = NULL;
  attn_train_config c;
  int64_t step = 0;
  if (n_png) *n_png = 0;
  if (attn_seq_model_load(&m, dir, &c, &step) != ATTN_OK) {
    cli_errorf("report: %s", attn_last_error());
    return CLI_EXIT_RUNTIME;
  }
  /* Own data: the examples and metrics come from a file read with the checkpoint's vocabulary. */
  const int own = c.data_shape.seq_len > 0;
  cli_own_data d;
  memset(&d, 0, sizeof d);
  char data_file[4200] = "";
  if (own) {
    if (o->data_file)
      snprintf(data_file, sizeof data_file, "%s", o->data_file);
    else if (cli_own_data_file(dir, "valid", data_file, sizeof data_file) != 0 &&
             cli_own_data_file(dir, "train", data_file, sizeof data_file) != 0) {
      cli_errorf("report: %s/data.json names no data file: give --data FILE", dir);
      attn_seq_model_free(m);
      return CLI_EXIT_RUNTIME;
    }
    attn_data_options dopt;
    const int rc = cli_own_data_from_ckpt("report", dir, &c, NULL, data_file, &d, &dopt);
    if (rc) {
      attn_seq_model_free(m);
      return rc;
    }
  } else if (o->data_file) {
    cli_errorf("report: %s was trained on a built-in task: --data does not apply", dir);
    attn_seq_model_free(m);
    return CLI_EXIT_USAGE;
  }
  const rep rp = {&c, own ? &d : NULL};
  attn_eval_result ev;
  attn_task_shape sh;
  if (own)
    sh = c.data_shape;
  else
    attn_task_get_shape(&c.task, &sh);
  const int64_t n_eval = c.eval_examples > 0 ? c.eval_examples : 500;
  if ((own ? attn_seq_model_eval_data(m, &d.valid, n_eval, &ev)
           : attn_seq_model_eval(m, &c.task, ATTN_SPLIT_VALID, n_eval, &ev)) != ATTN_OK) {
    cli_errorf("report: %s", attn_last_error());
    cli_own_data_free(&d);
    attn_seq_model_free(m);
    return CLI_EXIT_RUNTIME;
  }
  char path[4200], tmp[4300], pngdir[4300] = "", pngpath[4600];
  if (o->out_path)
    snprintf(path, sizeof path, "%s", o->out_path);
  else
    snprintf(path, sizeof path, "%s/report.html", dir);
  snprintf(tmp, sizeof tmp, "%s.tmp", path);
  if (o->png) {
    png_folder(pngdir, sizeof pngdir, path);
    if (mkdir(pngdir, 0777) != 0 && errno != EEXIST) {
      cli_errorf("report: %s: cannot create the directory: %s", pngdir, strerror(errno));
      cli_own_data_free(&d);
      attn_seq_model_free(m);
      return CLI_EXIT_RUNTIME;
    }
    remove_old_heatmaps(pngdir);
  }
  FILE *f = fopen(tmp, "w");
  if (!f) {
    cli_errorf("report: cannot write %s", tmp);
    cli_own_data_free(&d);
    attn_seq_model_free(m);
    return CLI_EXIT_RUNTIME;
  }
  int rc = 0, pngs = 0;
#define PNG_OR_FAIL(call)                                                  \
  do {                                                                     \
    if (!rc && (call) != 0) {                                              \
      cli_errorf("report: cannot write %s: %s", pngpath, strerror(errno)); \
      rc = CLI_EXIT_RUNTIME;                                               \
    } else if (!rc) {                                                      \
      pngs++;                                                              \
    }                                                                      \
  } while (0)
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
  if (own) {
    fprintf(f,
            "<table>\n<tr><th>data</th><td>your own data (%s, %s): %d positions, %d tokens in "
            "the vocabulary, %d labels</td></tr>\n",
            c.data_shape.kind == ATTN_TASK_LABELING ? "CoNLL" : "TSV", attn_task_kind_name(sh.kind),
            (int)sh.seq_len, (int)sh.vocab, (int)sh.n_classes);
  } else {
    fprintf(f, "<table>\n<tr><th>task</th><td>%s (%s), %d symbols, lengths %d..%d%s</td></tr>\n",
            attn_task_name(c.task.id), attn_task_kind_name(sh.kind), (int)c.task.n_symbols,
            (int)c.task.min_len, (int)c.task.max_len,
            c.task.id == ATTN_TASK_RECALL ? " pairs" : "");
  }
  fprintf(f,
          "<tr><th>model</th><td>Transformer encoder: %lld blocks, d %lld, %lld heads, MLP %lld, "
          "%lld parameters</td></tr>\n",
          (long long)c.layers, (long long)c.dim, (long long)c.heads, (long long)c.hidden,
          (long long)attn_seq_model_numel(m));
  fprintf(f,
          "<tr><th>training</th><td>%lld of %lld steps, batch %lld, AdamW lr %g (warmup %lld, "
          "cosine to %g), "
          "seed %llu%s</td></tr>\n",
          (long long)step, (long long)c.steps, (long long)c.batch, (double)c.lr,
          (long long)c.warmup, (double)c.min_lr, (unsigned long long)c.seed,
          own ? (c.shuffle ? ", shuffled every epoch" : ", in file order") : "");
  if (own) {
    fputs("<tr><th>evaluated on</th><td>", f);
    html_text(f, data_file);
    fprintf(f, " (%lld examples, %lld unknown tokens)</td></tr>\n", (long long)d.valid.n,
            (long long)d.valid.unknown);
  }
  fprintf(f,
          "<tr><th>%s</th><td>sequence accuracy %.1f%%, token accuracy %.1f%%, loss %.4f "
          "(%lld examples)</td></tr>\n</table>\n",
          own ? "metrics" : "validation", 100 * ev.seq_acc, 100 * ev.token_acc, ev.loss,
          (long long)ev.examples);

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
    if (o->png) {
      const uint32_t p1[1] = {0xc0392b}, p2[2] = {0x2471a3, 0x229954};
      snprintf(pngpath, sizeof pngpath, "%s/loss.png", pngdir);
      PNG_OR_FAIL(png_chart(pngpath, "training loss (log scale)", &cv, ys1, n1, p1, 1, 1));
      snprintf(pngpath, sizeof pngpath, "%s/accuracy.png", pngdir);
      PNG_OR_FAIL(png_chart(pngpath, "training accuracy", &cv, ys2, n2, p2, 2, 0));
    }
  } else {
    fputs("<p>No training log (log.jsonl) with two points or more.</p>\n", f);
  }
  free_curve(&cv);

  if (own) {
    fputs("<h2>Attention (the first examples of ", f);
    html_text(f, data_file);
    fputs("; rows: queries, columns: keys)</h2>\n", f);
  } else {
    fputs("<h2>Attention (test examples; rows: queries, columns: keys)</h2>\n", f);
  }
  int32_t *ids = malloc((size_t)sh.seq_len * sizeof *ids),
          *tg = malloc((size_t)sh.seq_len * sizeof *tg);
  int32_t *pred = malloc((size_t)sh.seq_len * sizeof *pred);
  float *w = malloc((size_t)(c.layers * c.heads * sh.seq_len * sh.seq_len) * sizeof *w);
  const int n_examples = own && o->n_examples > d.valid.n ? (int)d.valid.n : o->n_examples;
  for (int e = 0; e < n_examples && ids && tg && pred && w && !rc; e++) {
    int32_t len;
    attn_status st = ATTN_OK;
    if (own) {
      len = d.valid.lens[e];
      memcpy(ids, d.valid.ids + (int64_t)e * sh.seq_len, (size_t)sh.seq_len * sizeof *ids);
      memcpy(tg, d.valid.targets + (int64_t)e * sh.seq_len, (size_t)sh.seq_len * sizeof *tg);
    } else {
      st = attn_task_example(&c.task, ATTN_SPLIT_TEST, e, ids, &len, tg);
    }
    if (st != ATTN_OK || attn_seq_model_predict(m, ids, len, pred) != ATTN_OK ||
        attn_seq_model_attention(m, ids, len, w) != ATTN_OK) {
      cli_errorf("report: %s", attn_last_error());
      rc = CLI_EXIT_RUNTIME;
      break;
    }
    char lab[64];
    fprintf(f, "<div class=\"ex\">\n<p>example %d: input", e);
    for (int32_t t = 0; t < len; t++) {
      in_label(lab, sizeof lab, &rp, ids[t], 0);
      fputc(' ', f);
      html_text(f, lab);
    }
    fputs("<br/>expected", f);
    int right = 1;
    for (int32_t t = 0; t < len; t++)
      if (tg[t] != ATTN_TASK_IGNORE) {
        out_label(lab, sizeof lab, &rp, tg[t]);
        fputc(' ', f);
        html_text(f, lab);
        right &= pred[t] == tg[t];
      }
    fputs("<br/>predicted", f);
    for (int32_t t = 0; t < len; t++)
      if (tg[t] != ATTN_TASK_IGNORE) {
        out_label(lab, sizeof lab, &rp, pred[t]);
        fputc(' ', f);
        html_text(f, lab);
      }
    fprintf(f, " (%s)</p>\n", right ? "right" : "wrong");
    const int32_t shown = len < MAX_SHOWN ? len : MAX_SHOWN;
    if (shown < len)
      fprintf(f, "<p>(heatmaps of the first %d positions of %d)</p>\n", (int)shown, (int)len);
    for (int64_t l = 0; l < c.layers && !rc; l++)
      for (int64_t h = 0; h < c.heads && !rc; h++) {
        char title[96];
        snprintf(title, sizeof title, "layer %lld, head %lld", (long long)l, (long long)h);
        const float *wh = w + (l * c.heads + h) * len * len;
        svg_heatmap(f, title, wh, shown, len, ids, &rp);
        if (o->png) {
          snprintf(title, sizeof title, "example %d, layer %lld, head %lld", e, (long long)l,
                   (long long)h);
          snprintf(pngpath, sizeof pngpath, "%s/example%d_layer%lld_head%lld.png", pngdir, e,
                   (long long)l, (long long)h);
          PNG_OR_FAIL(png_heatmap(pngpath, title, wh, shown, len, ids, &rp));
        }
      }
    fputs("</div>\n", f);
  }
#undef PNG_OR_FAIL
  if (!rc && (!ids || !tg || !pred || !w)) {
    cli_errorf("report: out of memory");
    rc = CLI_EXIT_RUNTIME;
  }
  free(ids);
  free(tg);
  free(pred);
  free(w);
  cli_own_data_free(&d);
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
  if (n_png) *n_png = pngs;
  return 0;
}

static void report_usage(FILE *f) {
  fputs(
      "usage: attn report CKPT_DIR [--out FILE] [--examples N] [--data FILE] [--png]\n"
      "  Writes a self-contained HTML page (inline SVG, no scripts): the run's settings and\n"
      "  validation metrics, the training loss and accuracy curves (from CKPT_DIR/log.jsonl), and\n"
      "  attention heatmaps of every layer and head for N examples: test examples of a built-in\n"
      "  task, or the first examples of your own data's file (tokens from the checkpoint's\n"
      "  vocabulary).\n"
      "options:\n"
      "  --out FILE             the page (default: CKPT_DIR/report.html)\n"
      "  --examples N           examples with heatmaps, 0..20 (default: 3)\n"
      "  --data FILE            own data: the file evaluated and shown (default: the validation\n"
      "                         file of 'attn train', else its training file, from data.json)\n"
      "  --png                  also write PNG pictures in png/ beside the page: loss.png,\n"
      "                         accuracy.png, exampleE_layerL_headH.png\n"
      "  --help                 this text\n",
      f);
}

int cli_report_main(int argc, char **argv) {
  const char *dir = NULL;
  cli_report_opts o = {NULL, 3, NULL, 0};
  long n = 3;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
      report_usage(stdout);
      return CLI_EXIT_OK;
    }
    if (!strcmp(a, "--png")) {
      o.png = 1;
    } else if (!strcmp(a, "--out") || !strcmp(a, "--examples") || !strcmp(a, "--data")) {
      if (i + 1 >= argc) {
        cli_errorf("report: option %s needs a value", a);
        return CLI_EXIT_USAGE;
      }
      const char *v = argv[++i];
      if (!*v) {
        cli_errorf("report: %s: empty value", a);
        return CLI_EXIT_USAGE;
      }
      if (!strcmp(a, "--out"))
        o.out_path = v;
      else if (!strcmp(a, "--data"))
        o.data_file = v;
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
  o.n_examples = (int)n;
  char written[4200];
  int n_png = 0;
  const int rc = cli_write_report(dir, &o, written, sizeof written, &n_png);
  if (!rc) printf("report: %s\n", written);
  if (!rc && o.png) {
    char folder[4300];
    png_folder(folder, sizeof folder, written);
    printf("png: %d pictures in %s/\n", n_png, folder);
  }
  return rc;
}
