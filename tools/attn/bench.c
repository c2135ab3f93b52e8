/* `attn bench sdpa` and `attn bench gemm`: measure this machine's FMA peak, then time the kernels
 * on a grid of shapes and report GFLOP/s, % of peak and extra memory (DESIGN.md section 6). */
#include "bench_train.h"
#include "bert_cli.h"
#include "cli.h"

#include <stdlib.h>
#include <string.h>

#define MAX_LIST 32

void cli_bench_usage(FILE *f) {
  fputs(
      "usage: attn bench sdpa [options]    fused attention forward/backward\n"
      "       attn bench gemm [options]    attn_gemm, square row-major C = A B\n"
      "       attn bench bert [options]    BERT sentence embeddings (attn bench bert --help)\n"
      "       attn bench train [options]   GPT-like training steps (attn bench train --help)\n"
      "\n"
      "Every run first measures the FMA peak of one core (a register-resident FMA loop of\n"
      "the ISA libattn dispatches to); a T-thread figure is compared with T x that peak.\n"
      "Each case: two warm-up calls (the first with a NULL workspace, to measure the\n"
      "library's own peak memory), then the timed calls with a preallocated workspace;\n"
      "the median is reported, min and max too.\n"
      "\n"
      "common options:\n"
      "  --json             one JSON object per line (first line: the peak record)\n"
      "  --threads LIST     thread counts, e.g. 1,2 (default: 1 and all CPUs)\n"
      "  --reps N           timed samples per case, 1..1000 (default 7; --quick: 3)\n"
      "  --isa NAME         force scalar|avx2|avx512 (default: ATTN_ISA or the best)\n"
      "  --quick            a small subset for a fast check\n"
      "  -h, --help         this text\n"
      "\n"
      "sdpa options:\n"
      "  --d LIST           head dims (default 64,128; --quick: 64)\n"
      "  --n LIST           sequence lengths Nq = Nk (default 128,512,2048,8192;\n"
      "                     --quick: 512,2048)\n"
      "  --causal LIST      0 and/or 1 (default 0,1)\n"
      "  --pass LIST        fwd and/or bwd (default fwd,bwd)\n"
      "  --bh N             B*H of every case, 1..65536 (default: B=1 and H = the power of\n"
      "                     two in [8, 1024] that makes a forward call >= 2 GFLOP; 8 for\n"
      "                     N >= 2048)\n"
      "  --dtype NAME       f32|f16|bf16 storage (default f32; compute is f32)\n"
      "\n"
      "gemm options:\n"
      "  --sizes LIST       M = N = K values (default 256,512,1024,2048; --quick: 512,1024)\n"
      "\n"
      "FLOPs: sdpa forward 4*B*H*pairs*D over the allowed (unmasked) query-key pairs,\n"
      "backward 2.5x the forward; gemm 2*M*N*K. A timed sample repeats the call until it\n"
      "lasts >= 10 ms (calls_per_rep) and times are per call.\n"
      "JSON fields: kernel, pass, dtype, B, H, Hkv, Nq, Nk, D, causal, threads, isa, reps,\n"
      "calls_per_rep, median_s, min_s, max_s, gflop, gflops, peak_gflops, pct_peak,\n"
      "extra_bytes, workspace_bytes, speedup_vs_1t (gemm: M, N, K instead of the shape).\n",
      f);
}

typedef struct bench_opts {
  int json, quick, help;
  long threads[MAX_LIST];
  int n_threads;
  long reps; /* 0 = default */
  long d[MAX_LIST], n[MAX_LIST], causal[MAX_LIST], sizes[MAX_LIST];
  int n_d, n_n, n_causal, n_sizes;
  int pass_fwd, pass_bwd, pass_given;
  long bh;
  attn_dtype dtype;
  const char *isa;
} bench_opts;

/* "fwd,bwd" into the two flags; -1 on a bad list. */
static int parse_passes(const char *text, int *fwd, int *bwd) {
  *fwd = *bwd = 0;
  const char *p = text;
  if (!*p) return -1;
  for (;;) {
    const char *comma = strchr(p, ',');
    size_t len = comma ? (size_t)(comma - p) : strlen(p);
    if (len == 3 && !strncmp(p, "fwd", 3))
      *fwd = 1;
    else if (len == 3 && !strncmp(p, "bwd", 3))
      *bwd = 1;
    else
      return -1;
    if (!comma) return 0;
    p = comma + 1;
  }
}

/* Parse argv[first..argc) of `attn bench <kernel>`. Returns 0, or CLI_EXIT_USAGE after printing
 * the problem. */
static int parse_bench_opts(const char *kernel, int argc, char **argv, int first, bench_opts *o) {
  int is_sdpa = !strcmp(kernel, "sdpa");
  for (int i = first; i < argc; i++) {
    const char *arg = argv[i];
    if (!strcmp(arg, "-h") || !strcmp(arg, "--help")) {
      o->help = 1;
      continue;
    }
    if (!strcmp(arg, "--json")) {
      o->json = 1;
      continue;
    }
    if (!strcmp(arg, "--quick")) {
      o->quick = 1;
      continue;
    }
    if (strncmp(arg, "--", 2) != 0) {
      cli_errorf("bench %s: unexpected argument '%s' (see 'attn bench --help')", kernel, arg);
      return CLI_EXIT_USAGE;
    }
    /* Options with a value: "--name value" or "--name=value". */
    char name[32];
    const char *value;
    const char *eq = strchr(arg, '=');
    if (eq) {
      size_t len = (size_t)(eq - arg);
      if (len >= sizeof name) len = sizeof name - 1;
      memcpy(name, arg, len);
      name[len] = '\0';
      value = eq + 1;
    } else {
      snprintf(name, sizeof name, "%s", arg);
      value = NULL;
    }
    static const char *const common[] = {"--threads", "--reps", "--isa"};
    static const char *const sdpa_only[] = {"--d", "--n", "--causal", "--pass", "--bh", "--dtype"};
    static const char *const gemm_only[] = {"--sizes"};
    int known = 0;
    for (size_t j = 0; j < sizeof common / sizeof common[0]; j++) known |= !strcmp(name, common[j]);
    if (is_sdpa)
      for (size_t j = 0; j < sizeof sdpa_only / sizeof sdpa_only[0]; j++)
        known |= !strcmp(name, sdpa_only[j]);
    else
      for (size_t j = 0; j < sizeof gemm_only / sizeof gemm_only[0]; j++)
        known |= !strcmp(name, gemm_only[j]);
    if (!known) {
      cli_errorf("bench %s: unknown option '%s' (see 'attn bench --help')", kernel, name);
      return CLI_EXIT_USAGE;
    }
    if (!value) {
      if (i + 1 >= argc) {
        cli_errorf("bench %s: option '%s' needs a value", kernel, name);
        return CLI_EXIT_USAGE;
      }
      value = argv[++i];
    }
    int bad = 0;
    const char *expect = "";
    if (!strcmp(name, "--threads")) {
      o->n_threads = cli_parse_int_list(value, 1, 1024, o->threads, MAX_LIST);
      bad = o->n_threads < 0;
      expect = "a list of thread counts in 1..1024";
    } else if (!strcmp(name, "--reps")) {
      bad = cli_parse_int(value, 1, 1000, &o->reps) != 0;
      expect = "an integer in 1..1000";
    } else if (!strcmp(name, "--isa")) {
      bad = strcmp(value, "scalar") && strcmp(value, "avx2") && strcmp(value, "avx512");
      o->isa = value;
      expect = "scalar, avx2 or avx512";
    } else if (!strcmp(name, "--d")) {
      o->n_d = cli_parse_int_list(value, 1, 4096, o->d, MAX_LIST);
      bad = o->n_d < 0;
      expect = "a list of head dims in 1..4096";
    } else if (!strcmp(name, "--n")) {
      o->n_n = cli_parse_int_list(value, 1, 1048576, o->n, MAX_LIST);
      bad = o->n_n < 0;
      expect = "a list of sequence lengths in 1..1048576";
    } else if (!strcmp(name, "--causal")) {
      o->n_causal = cli_parse_int_list(value, 0, 1, o->causal, MAX_LIST);
      bad = o->n_causal < 0;
      expect = "a list of 0 and 1";
    } else if (!strcmp(name, "--pass")) {
      bad = parse_passes(value, &o->pass_fwd, &o->pass_bwd) != 0;
      o->pass_given = 1;
      expect = "a list of fwd and bwd";
    } else if (!strcmp(name, "--bh")) {
      bad = cli_parse_int(value, 1, 65536, &o->bh) != 0;
      expect = "an integer in 1..65536";
    } else if (!strcmp(name, "--dtype")) {
      bad = cli_dtype_parse(value, &o->dtype) != 0;
      expect = "f32, f16 or bf16";
    } else if (!strcmp(name, "--sizes")) {
      o->n_sizes = cli_parse_int_list(value, 1, 32768, o->sizes, MAX_LIST);
      bad = o->n_sizes < 0;
      expect = "a list of sizes in 1..32768";
    }
    if (bad) {
      cli_errorf("bench %s: bad value '%s' for %s (expected %s)", kernel, value, name, expect);
      return CLI_EXIT_USAGE;
    }
  }
  return 0;
}

static void set_default_list(long *dst, int *count, const long *src, int n) {
  if (*count > 0) return;
  memcpy(dst, src, (size_t)n * sizeof *src);
  *count = n;
}

/* Apply --isa, install the tracking allocator, measure the peak; print it. Returns 0 or an
 * exit code. */
static int bench_setup(const bench_opts *o, cli_peak *peak, int *all_threads) {
  if (o->isa) {
    attn_isa isa = !strcmp(o->isa, "avx512") ? ATTN_ISA_AVX512
                   : !strcmp(o->isa, "avx2") ? ATTN_ISA_AVX2
                                             : ATTN_ISA_SCALAR;
    attn_status s = attn_set_isa(isa);
    if (s != ATTN_OK) {
      cli_status_error("attn_set_isa", s);
      return CLI_EXIT_RUNTIME;
    }
  }
  *all_threads = attn_get_num_threads();
  cli_track_install();
  cli_measure_peak(peak);
  if (o->json) {
    cli_print_peak_json(stdout, peak, *all_threads);
  } else {
    printf("attn %s, isa %s, %d CPUs, default threads %d\n", attn_version(),
           attn_isa_name(peak->isa), cli_online_cpus(), *all_threads);
    printf("peak: %.1f GFLOP/s per core (%s loop, %d accumulators, best of 5 trials)\n\n",
           peak->gflops_per_core, peak->loop, peak->accumulators);
    fflush(stdout);
  }
  return 0;
}

/* The thread counts to run: --threads, else 1 and the default (all CPUs). */
static int thread_list(const bench_opts *o, int all_threads, int *out) {
  if (o->n_threads > 0) {
    for (int i = 0; i < o->n_threads; i++) out[i] = (int)o->threads[i];
    return o->n_threads;
  }
  out[0] = 1;
  if (all_threads > 1) {
    out[1] = all_threads;
    return 2;
  }
  return 1;
}

static int bench_sdpa(bench_opts *o) {
  static const long def_d[] = {64, 128}, quick_d[] = {64};
  static const long def_n[] = {128, 512, 2048, 8192}, quick_n[] = {512, 2048};
  static const long def_causal[] = {0, 1};
  if (o->quick) {
    set_default_list(o->d, &o->n_d, quick_d, 1);
    set_default_list(o->n, &o->n_n, quick_n, 2);
  } else {
    set_default_list(o->d, &o->n_d, def_d, 2);
    set_default_list(o->n, &o->n_n, def_n, 4);
  }
  set_default_list(o->causal, &o->n_causal, def_causal, 2);
  if (!o->pass_given) o->pass_fwd = o->pass_bwd = 1;
  int reps = o->reps ? (int)o->reps : (o->quick ? 3 : 7);

  cli_peak peak;
  int all_threads;
  int rc = bench_setup(o, &peak, &all_threads);
  if (rc) return rc;
  int threads[MAX_LIST];
  int n_thr = thread_list(o, all_threads, threads);
  if (!o->json) cli_print_sdpa_header(stdout);

  for (int id = 0; id < o->n_d && !rc; id++) {
    for (int in = 0; in < o->n_n && !rc; in++) {
      for (int ic = 0; ic < o->n_causal && !rc; ic++) {
        int64_t D = o->d[id], N = o->n[in];
        int causal = (int)o->causal[ic];
        cli_sdpa_case c = {
            .B = 1, .Nq = N, .Nk = N, .D = D, .causal = causal, .dtype = o->dtype, .reps = reps};
        c.H = o->bh > 0 ? o->bh : cli_sdpa_default_heads(N, D, causal);
        double one_thread[2] = {0, 0}; /* 1-thread GFLOP/s of fwd, bwd for the scaling column */
        for (int it = 0; it < n_thr && !rc; it++) {
          c.threads = threads[it];
          for (int pass = 0; pass < 2 && !rc; pass++) {
            if ((pass == 0 && !o->pass_fwd) || (pass == 1 && !o->pass_bwd)) continue;
            c.pass = pass ? "bwd" : "fwd";
            cli_result r;
            rc = cli_run_sdpa_case(&c, &peak, &r);
            if (rc) break;
            if (c.threads == 1) one_thread[pass] = r.gflops;
            if (c.threads > 1 && one_thread[pass] > 0) r.speedup = r.gflops / one_thread[pass];
            if (o->json)
              cli_print_sdpa_json(stdout, &c, &r, &peak);
            else
              cli_print_sdpa_row(stdout, &c, &r);
          }
        }
      }
    }
  }
  cli_cases_release();
  return rc;
}

static int bench_gemm(bench_opts *o) {
  static const long def_sizes[] = {256, 512, 1024, 2048}, quick_sizes[] = {512, 1024};
  if (o->quick)
    set_default_list(o->sizes, &o->n_sizes, quick_sizes, 2);
  else
    set_default_list(o->sizes, &o->n_sizes, def_sizes, 4);
  int reps = o->reps ? (int)o->reps : (o->quick ? 3 : 7);

  cli_peak peak;
  int all_threads;
  int rc = bench_setup(o, &peak, &all_threads);
  if (rc) return rc;
  int threads[MAX_LIST];
  int n_thr = thread_list(o, all_threads, threads);
  if (!o->json) cli_print_gemm_header(stdout);
  for (int is = 0; is < o->n_sizes && !rc; is++) {
    double one_thread = 0;
    for (int it = 0; it < n_thr && !rc; it++) {
      cli_result r;
      rc = cli_run_gemm_case(o->sizes[is], threads[it], reps, &peak, &r);
      if (rc) break;
      if (threads[it] == 1) one_thread = r.gflops;
      if (threads[it] > 1 && one_thread > 0) r.speedup = r.gflops / one_thread;
      if (o->json)
        cli_print_gemm_json(stdout, o->sizes[is], threads[it], reps, &r, &peak);
      else
        cli_print_gemm_row(stdout, o->sizes[is], threads[it], reps, &r);
    }
  }
  return rc;
}

int cli_bench_main(int argc, char **argv) {
  if (argc < 2) {
    cli_errorf("bench: missing kernel name (sdpa or gemm; see 'attn bench --help')");
    return CLI_EXIT_USAGE;
  }
  if (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help") || !strcmp(argv[1], "help")) {
    cli_bench_usage(stdout);
    return CLI_EXIT_OK;
  }
  const char *kernel = argv[1];
  if (!strcmp(kernel, "bert")) return cli_bench_bert_main(argc - 1, argv + 1);
  if (!strcmp(kernel, "train")) return cli_bench_train_main(argc - 1, argv + 1);
  if (strcmp(kernel, "sdpa") != 0 && strcmp(kernel, "gemm") != 0) {
    cli_errorf("bench: unknown kernel '%s' (expected sdpa, gemm, bert or train; see 'attn bench --help')",
               kernel);
    return CLI_EXIT_USAGE;
  }
  bench_opts o;
  memset(&o, 0, sizeof o);
  o.dtype = ATTN_DTYPE_F32;
  int rc = parse_bench_opts(kernel, argc, argv, 2, &o);
  if (rc) return rc;
  if (o.help) {
    cli_bench_usage(stdout);
    return CLI_EXIT_OK;
  }
  return !strcmp(kernel, "sdpa") ? bench_sdpa(&o) : bench_gemm(&o);
}
