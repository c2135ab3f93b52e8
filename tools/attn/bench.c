/* `attn bench sdpa`, `attn bench gemm` and `attn bench additive`: measure this machine's FMA peak,
 * then time the kernels on a grid of shapes and report GFLOP/s (additive: pair-dims per second),
 * % of peak and extra memory (DESIGN.md section 6). */
#include "attn/additive.h"
#include "bench_train.h"
#include "bert_cli.h"
#include "cli.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_LIST 32

void cli_bench_usage(FILE *f) {
  fputs(
      "usage: attn bench sdpa [options]    fused attention forward/backward\n"
      "       attn bench gemm [options]    attn_gemm and attn_gemm_packed, row-major C = A B\n"
      "       attn bench additive [options] fused additive (Bahdanau) attention\n"
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
      "  --sizes LIST       M = N = K values (default 256,512,1024,2048; --quick: 512,1024);\n"
      "                     attn_gemm reads B stored K x N (NO_TRANS, NO_TRANS)\n"
      "  --shapes LIST      MxNxK triples instead of --sizes, e.g. 2048x1152x384,2048x384x1536\n"
      "                     (each in 1..65536): A is M x K, B is stored N x K (a Linear\n"
      "                     layer's weights) and attn_gemm runs NO_TRANS, TRANS\n"
      "  --packed LIST      0 and/or 1 (default 0): 1 runs attn_gemm_packed instead of\n"
      "                     attn_gemm, with B (stored N x K) packed once by attn_gemm_pack_b\n"
      "                     before the warm-ups, outside the timing\n"
      "  --epilogue NAME    none|bias|bias_gelu|bias_relu (default none): the packed runs'\n"
      "                     epilogue, on a random bias vector; the FLOP count stays 2*M*N*K\n"
      "  Rows: for each shape, for each --packed value, for each thread count. kernel column:\n"
      "  gemm, gemm_packed or gemm_packed+bias|gelu|relu. extra_mem: the library's own peak\n"
      "  allocation in the first warm-up call, plus for gemm_packed the packed B it holds\n"
      "  (JSON: extra_bytes and packed_bytes apart).\n"
      "\n"
      "additive options (e_ij = w . tanh(q1_i + k2_j + b), softmax, out = a V):\n"
      "  --b LIST           batch sizes B (default 8; --quick: 2)\n"
      "  --n LIST           Tq = Tk (default 256,1024; --quick: 256)\n"
      "  --d LIST           score width d (default 128; --quick: 64)\n"
      "  --dv N             value width Dv, 1..4096 (default 128)\n"
      "  --pass LIST        fwd, bwd and/or fwd+bwd (default all three)\n"
      "  The issue's bar shape is the default's B = 8, N = 1024, d = Dv = 128.\n"
      "\n"
      "FLOPs: sdpa forward 4*B*H*pairs*D over the allowed (unmasked) query-key pairs,\n"
      "backward 2.5x the forward; gemm 2*M*N*K (the epilogue not counted). A timed sample\n"
      "repeats the call until it lasts >= 10 ms (calls_per_rep) and times are per call.\n"
      "JSON fields: kernel, pass, dtype, B, H, Hkv, Nq, Nk, D, causal, threads, isa, reps,\n"
      "calls_per_rep, median_s, min_s, max_s, gflop, gflops, peak_gflops, pct_peak,\n"
      "extra_bytes, workspace_bytes, speedup_vs_1t (gemm: M, N, K instead of the shape,\n"
      "packed (true/false), epilogue, packed_bytes (the packed B; 0 for attn_gemm), no\n"
      "workspace_bytes).\n"
      "additive: B*Tq*Tk*d pair-dims per second instead of FLOPs (one tanh each), no %% of\n"
      "peak; JSON fields kernel, pass, B, Tq, Tk, d, Dv, threads, isa, reps, calls_per_rep,\n"
      "median_s, min_s, max_s, cpu_s (median process CPU seconds per call, all threads:\n"
      "on a shared machine the fairer 1-thread time), pair_dims, pair_dim_per_s,\n"
      "extra_bytes (the library's own\n"
      "peak allocation through the allocator hook in a NULL-workspace call; fwd+bwd: both\n"
      "calls), workspace_bytes, speedup_vs_1t.\n",
      f);
}

typedef struct bench_opts {
  int json, quick, help;
  long threads[MAX_LIST];
  int n_threads;
  long reps; /* 0 = default */
  long d[MAX_LIST], n[MAX_LIST], causal[MAX_LIST], sizes[MAX_LIST], b[MAX_LIST];
  int n_d, n_n, n_causal, n_sizes, n_b;
  long shapes[MAX_LIST][3]; /* --shapes: M, N, K */
  int n_shapes;
  long packed[MAX_LIST];
  int n_packed;
  attn_epilogue epilogue;
  int pass_fwd, pass_bwd, pass_both, pass_given;
  long dv;
  long bh;
  attn_dtype dtype;
  const char *isa;
} bench_opts;

/* "fwd,bwd" (and "fwd+bwd" when both != NULL) into the flags; -1 on a bad list. */
static int parse_passes(const char *text, int *fwd, int *bwd, int *both) {
  *fwd = *bwd = 0;
  if (both) *both = 0;
  const char *p = text;
  if (!*p) return -1;
  for (;;) {
    const char *comma = strchr(p, ',');
    size_t len = comma ? (size_t)(comma - p) : strlen(p);
    if (len == 3 && !strncmp(p, "fwd", 3))
      *fwd = 1;
    else if (len == 3 && !strncmp(p, "bwd", 3))
      *bwd = 1;
    else if (both && len == 7 && !strncmp(p, "fwd+bwd", 7))
      *both = 1;
    else
      return -1;
    if (!comma) return 0;
    p = comma + 1;
  }
}

/* "MxNxK,MxNxK,..." into shapes[0..max), each of M, N, K in 1..65536. Returns the count, or -1
 * after printing which item is bad. */
static int parse_shapes(const char *text, long (*shapes)[3], int max) {
  int count = 0;
  const char *p = text;
  for (;;) {
    const char *comma = strchr(p, ',');
    size_t len = comma ? (size_t)(comma - p) : strlen(p);
    char item[64];
    int ok = len > 0 && len < sizeof item && count < max;
    if (ok) {
      memcpy(item, p, len);
      item[len] = '\0';
      char *dims[3];
      char *rest = item;
      for (int k = 0; k < 3 && ok; k++) {
        dims[k] = rest;
        char *x = strchr(rest, 'x');
        if (k < 2) {
          ok = x != NULL;
          if (ok) {
            *x = '\0';
            rest = x + 1;
          }
        } else {
          ok = x == NULL;
        }
      }
      for (int k = 0; k < 3 && ok; k++)
        ok = cli_parse_int(dims[k], 1, 65536, &shapes[count][k]) == 0;
    }
    if (!ok) {
      if (count >= max)
        cli_errorf("bench gemm: --shapes: more than %d shapes", max);
      else
        cli_errorf(
            "bench gemm: --shapes: '%.*s' is not MxNxK with M, N and K integers in 1..65536 "
            "(e.g. 2048x1152x384)",
            (int)(len < 64 ? len : 64), p);
      return -1;
    }
    count++;
    if (!comma) return count;
    p = comma + 1;
  }
}

/* Parse argv[first..argc) of `attn bench <kernel>`. Returns 0, or CLI_EXIT_USAGE after printing
 * the problem. */
static int parse_bench_opts(const char *kernel, int argc, char **argv, int first, bench_opts *o) {
  int is_sdpa = !strcmp(kernel, "sdpa"), is_additive = !strcmp(kernel, "additive");
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
    static const char *const gemm_only[] = {"--sizes", "--shapes", "--packed", "--epilogue"};
    static const char *const additive_only[] = {"--b", "--n", "--d", "--dv", "--pass"};
    int known = 0;
    for (size_t j = 0; j < sizeof common / sizeof common[0]; j++) known |= !strcmp(name, common[j]);
    if (is_additive)
      for (size_t j = 0; j < sizeof additive_only / sizeof additive_only[0]; j++)
        known |= !strcmp(name, additive_only[j]);
    else if (is_sdpa)
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
      bad =
          parse_passes(value, &o->pass_fwd, &o->pass_bwd, is_additive ? &o->pass_both : NULL) != 0;
      o->pass_given = 1;
      expect = is_additive ? "a list of fwd, bwd and fwd+bwd" : "a list of fwd and bwd";
    } else if (!strcmp(name, "--b")) {
      o->n_b = cli_parse_int_list(value, 1, 65536, o->b, MAX_LIST);
      bad = o->n_b < 0;
      expect = "a list of batch sizes in 1..65536";
    } else if (!strcmp(name, "--dv")) {
      bad = cli_parse_int(value, 1, 4096, &o->dv) != 0;
      expect = "an integer in 1..4096";
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
    } else if (!strcmp(name, "--shapes")) {
      o->n_shapes = parse_shapes(value, o->shapes, MAX_LIST);
      if (o->n_shapes < 0) return CLI_EXIT_USAGE; /* parse_shapes said which item */
    } else if (!strcmp(name, "--packed")) {
      o->n_packed = cli_parse_int_list(value, 0, 1, o->packed, MAX_LIST);
      bad = o->n_packed < 0;
      expect = "a list of 0 and 1";
    } else if (!strcmp(name, "--epilogue")) {
      bad = cli_epilogue_parse(value, &o->epilogue) != 0;
      expect = "none, bias, bias_gelu or bias_relu";
    }
    if (bad) {
      cli_errorf("bench %s: bad value '%s' for %s (expected %s)", kernel, value, name, expect);
      return CLI_EXIT_USAGE;
    }
  }
  if (o->n_sizes > 0 && o->n_shapes > 0) {
    cli_errorf("bench gemm: --sizes and --shapes cannot be combined (give one of them)");
    return CLI_EXIT_USAGE;
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
  cli_track_install(false);
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
  static const long def_packed[] = {0};
  if (o->n_shapes == 0) {
    if (o->quick)
      set_default_list(o->sizes, &o->n_sizes, quick_sizes, 2);
    else
      set_default_list(o->sizes, &o->n_sizes, def_sizes, 4);
  }
  set_default_list(o->packed, &o->n_packed, def_packed, 1);
  int reps = o->reps ? (int)o->reps : (o->quick ? 3 : 7);

  cli_peak peak;
  int all_threads;
  int rc = bench_setup(o, &peak, &all_threads);
  if (rc) return rc;
  int threads[MAX_LIST];
  int n_thr = thread_list(o, all_threads, threads);
  if (!o->json) cli_print_gemm_header(stdout);
  int n_cases = o->n_shapes > 0 ? o->n_shapes : o->n_sizes;
  for (int is = 0; is < n_cases && !rc; is++) {
    cli_gemm_case c = {.reps = reps};
    if (o->n_shapes > 0) {
      c.M = o->shapes[is][0];
      c.N = o->shapes[is][1];
      c.K = o->shapes[is][2];
      c.trans_b = ATTN_TRANS; /* B stored N x K, like the packed runs' */
    } else {
      c.M = c.N = c.K = o->sizes[is];
      c.trans_b = ATTN_NO_TRANS; /* the square case as it always was */
    }
    for (int ip = 0; ip < o->n_packed && !rc; ip++) {
      c.packed = (int)o->packed[ip];
      c.epilogue = c.packed ? o->epilogue : ATTN_EPILOGUE_NONE;
      double one_thread = 0;
      for (int it = 0; it < n_thr && !rc; it++) {
        c.threads = threads[it];
        cli_result r;
        rc = cli_run_gemm_case(&c, &peak, &r);
        if (rc) break;
        if (threads[it] == 1) one_thread = r.gflops;
        if (threads[it] > 1 && one_thread > 0) r.speedup = r.gflops / one_thread;
        if (o->json)
          cli_print_gemm_json(stdout, &c, &r, &peak);
        else
          cli_print_gemm_row(stdout, &c, &r);
      }
    }
  }
  return rc;
}

/* ---- additive ---------------------------------------------------------------------------------
 */

/* One additive case's buffers (B, T, d, Dv): inputs random in [-1, 1), w scaled by 1/sqrt(d) so
 * the scores stay O(1) like a trained layer's. */
typedef struct add_bufs {
  float *q1, *k2, *v, *w, *b, *out, *lse, *dout, *dq1, *dk2, *dv, *dw, *db;
  attn_tensor tq1, tk2, tv, tw, tb, tout, tlse, tdout, tdq1, tdk2, tdv, tdw, tdb;
} add_bufs;

static void add_bufs_free(add_bufs *a) {
  float *all[] = {a->q1,   a->k2,  a->v,   a->w,  a->b,  a->out, a->lse,
                  a->dout, a->dq1, a->dk2, a->dv, a->dw, a->db};
  for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) cli_free(all[i]);
  memset(a, 0, sizeof *a);
}

static int add_bufs_make(add_bufs *a, int64_t B, int64_t T, int64_t d, int64_t Dv) {
  memset(a, 0, sizeof *a);
  size_t nq = (size_t)(B * T * d), nv = (size_t)(B * T * Dv), nl = (size_t)(B * T);
  size_t total = (4 * nq + 4 * nv + nl + 4 * (size_t)d) * sizeof(float);
  if (cli_check_fits(total, "additive case") != 0) return CLI_EXIT_RUNTIME;
  a->q1 = cli_alloc(nq * 4);
  a->k2 = cli_alloc(nq * 4);
  a->dq1 = cli_alloc(nq * 4);
  a->dk2 = cli_alloc(nq * 4);
  a->v = cli_alloc(nv * 4);
  a->out = cli_alloc(nv * 4);
  a->dout = cli_alloc(nv * 4);
  a->dv = cli_alloc(nv * 4);
  a->lse = cli_alloc(nl * 4);
  a->w = cli_alloc((size_t)d * 4);
  a->b = cli_alloc((size_t)d * 4);
  a->dw = cli_alloc((size_t)d * 4);
  a->db = cli_alloc((size_t)d * 4);
  if (!a->q1 || !a->k2 || !a->dq1 || !a->dk2 || !a->v || !a->out || !a->dout || !a->dv || !a->lse ||
      !a->w || !a->b || !a->dw || !a->db) {
    add_bufs_free(a);
    cli_errorf("out of memory allocating an additive case of %zu bytes", total);
    return CLI_EXIT_RUNTIME;
  }
  uint64_t seed = 0x9e3779b97f4a7c15ull;
  cli_fill_random(a->q1, ATTN_DTYPE_F32, nq, &seed);
  cli_fill_random(a->k2, ATTN_DTYPE_F32, nq, &seed);
  cli_fill_random(a->v, ATTN_DTYPE_F32, nv, &seed);
  cli_fill_random(a->dout, ATTN_DTYPE_F32, nv, &seed);
  cli_fill_random(a->w, ATTN_DTYPE_F32, (size_t)d, &seed);
  cli_fill_random(a->b, ATTN_DTYPE_F32, (size_t)d, &seed);
  for (int64_t c = 0; c < d; c++) a->w[c] /= sqrtf((float)d);
  int64_t sq[3] = {B, T, d}, sv[3] = {B, T, Dv}, sl[2] = {B, T}, sw[1] = {d};
  a->tq1 = attn_tensor_make(a->q1, ATTN_DTYPE_F32, 3, sq);
  a->tk2 = attn_tensor_make(a->k2, ATTN_DTYPE_F32, 3, sq);
  a->tdq1 = attn_tensor_make(a->dq1, ATTN_DTYPE_F32, 3, sq);
  a->tdk2 = attn_tensor_make(a->dk2, ATTN_DTYPE_F32, 3, sq);
  a->tv = attn_tensor_make(a->v, ATTN_DTYPE_F32, 3, sv);
  a->tout = attn_tensor_make(a->out, ATTN_DTYPE_F32, 3, sv);
  a->tdout = attn_tensor_make(a->dout, ATTN_DTYPE_F32, 3, sv);
  a->tdv = attn_tensor_make(a->dv, ATTN_DTYPE_F32, 3, sv);
  a->tlse = attn_tensor_make(a->lse, ATTN_DTYPE_F32, 2, sl);
  a->tw = attn_tensor_make(a->w, ATTN_DTYPE_F32, 1, sw);
  a->tb = attn_tensor_make(a->b, ATTN_DTYPE_F32, 1, sw);
  a->tdw = attn_tensor_make(a->dw, ATTN_DTYPE_F32, 1, sw);
  a->tdb = attn_tensor_make(a->db, ATTN_DTYPE_F32, 1, sw);
  return 0;
}

/* pass: 0 forward, 1 backward, 2 forward then backward. ws/ws_bwd: the two workspaces (NULL =
 * the library allocates). */
static attn_status additive_call(add_bufs *a, int pass, void *ws, size_t ws_size, void *ws_bwd,
                                 size_t ws_bwd_size, const char **what) {
  attn_status s = ATTN_OK;
  if (pass != 1) {
    *what = "attn_additive_forward";
    s = attn_additive_forward(&a->tout, &a->tlse, NULL, &a->tq1, &a->tk2, &a->tv, &a->tw, &a->tb,
                              NULL, ws, ws_size);
    if (s != ATTN_OK) return s;
  }
  if (pass != 0) {
    *what = "attn_additive_backward";
    s = attn_additive_backward(&a->tdq1, &a->tdk2, &a->tdv, &a->tdw, &a->tdb, &a->tdout, &a->tq1,
                               &a->tk2, &a->tv, &a->tw, &a->tb, &a->tout, &a->tlse, NULL, ws_bwd,
                               ws_bwd_size);
  }
  return s;
}

static const char *const additive_pass_name[3] = {"fwd", "bwd", "fwd+bwd"};

/* CPU seconds of the whole process (every thread): on a shared machine a 1-thread call's CPU time
 * does not count the time other processes held the core, its wall time does. */
static double cpu_now(void) {
  struct timespec t;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
  return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static int cmp_dbl(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

/* Time one additive case at `threads` threads, the way cli_run_sdpa_case does. r->flop holds the
 * pair-dims of one call (B Tq Tk d; fwd+bwd counts them once) and r->gflops pair-dims / s / 1e9;
 * *cpu_s the median CPU seconds per call (all threads). */
static int run_additive_case(add_bufs *a, int pass, int threads, int reps, cli_result *r,
                             double *cpu_s) {
  memset(r, 0, sizeof *r);
  cli_unpin_main_thread(); /* until this thread count's pool has started (see cli.h) */
  attn_status s = attn_set_num_threads(threads);
  if (s != ATTN_OK) {
    cli_status_error("attn_set_num_threads", s);
    return CLI_EXIT_RUNTIME;
  }
  size_t wf = 0, wb = 0;
  const char *what = "attn_additive_workspace_size";
  s = attn_additive_workspace_size(&wf, 0, &a->tq1, &a->tk2, &a->tv);
  if (s == ATTN_OK) s = attn_additive_workspace_size(&wb, 1, &a->tq1, &a->tk2, &a->tv);
  if (s != ATTN_OK) {
    cli_status_error(what, s);
    return CLI_EXIT_RUNTIME;
  }
  void *ws = wf ? cli_alloc(wf) : NULL, *ws_bwd = wb ? cli_alloc(wb) : NULL;
  double *times = calloc((size_t)reps, sizeof *times), *cpus = calloc((size_t)reps, sizeof *cpus);
  int rc = 0;
  if ((wf && !ws) || (wb && !ws_bwd) || !times || !cpus) {
    cli_errorf("out of memory allocating the additive workspaces (%zu + %zu bytes)", wf, wb);
    rc = CLI_EXIT_RUNTIME;
    goto done;
  }
  /* The backward reads out and lse of a forward with the same inputs. */
  if (pass == 1 && (s = additive_call(a, 0, ws, wf, NULL, 0, &what)) != ATTN_OK) goto fail;
  /* Warm-up 1 with NULL workspaces: the tracking allocator's high-water mark above the live
   * baseline is what the library allocated for itself (fwd+bwd: the larger of the two calls',
   * as the forward frees its workspace before the backward allocates). */
  size_t base = cli_track_reset();
  if ((s = additive_call(a, pass, NULL, 0, NULL, 0, &what)) != ATTN_OK) goto fail;
  r->extra_bytes = cli_track_peak() - base;
  cli_pin_main_thread();
  double t0 = cli_now();
  if ((s = additive_call(a, pass, ws, wf, ws_bwd, wb, &what)) != ATTN_OK) goto fail;
  r->calls_per_rep = cli_calls_per_sample(cli_now() - t0);
  for (int i = 0; i < reps; i++) {
    double c0 = cpu_now();
    t0 = cli_now();
    for (int j = 0; j < r->calls_per_rep && s == ATTN_OK; j++)
      s = additive_call(a, pass, ws, wf, ws_bwd, wb, &what);
    times[i] = (cli_now() - t0) / r->calls_per_rep;
    cpus[i] = (cpu_now() - c0) / r->calls_per_rep;
    if (s != ATTN_OK) goto fail;
  }
  cli_summarize(times, reps, r);
  qsort(cpus, (size_t)reps, sizeof *cpus, cmp_dbl);
  *cpu_s = reps % 2 ? cpus[reps / 2] : 0.5 * (cpus[reps / 2 - 1] + cpus[reps / 2]);
  r->flop = (double)a->tq1.shape[0] * (double)a->tq1.shape[1] * (double)a->tk2.shape[1] *
            (double)a->tq1.shape[2];
  r->gflops = r->median_s > 0 ? r->flop / r->median_s * 1e-9 : 0;
  r->workspace_bytes = pass == 0 ? wf : pass == 1 ? wb : (wf > wb ? wf : wb);
  goto done;
fail:
  cli_status_error(what, s);
  rc = CLI_EXIT_RUNTIME;
done:
  free(times);
  free(cpus);
  cli_free(ws);
  cli_free(ws_bwd);
  return rc;
}

static void print_additive_header(FILE *f) {
  fprintf(f, "%-8s %4s %6s %5s %5s %4s %10s %10s %10s %10s %12s %11s %11s %6s\n", "pass", "B", "T",
          "d", "Dv", "thr", "median_ms", "min_ms", "max_ms", "cpu_ms", "pairdim/s", "extra_mem",
          "workspace", "vs_1t");
}

static void print_additive_row(FILE *f, int pass, const add_bufs *a, int64_t Dv, int threads,
                               const cli_result *r, double cpu_s) {
  char mem[32], ws[32], sp[16];
  cli_format_bytes(mem, sizeof mem, r->extra_bytes);
  cli_format_bytes(ws, sizeof ws, r->workspace_bytes);
  if (r->speedup > 0)
    snprintf(sp, sizeof sp, "%.2fx", r->speedup);
  else
    snprintf(sp, sizeof sp, "-");
  fprintf(f, "%-8s %4lld %6lld %5lld %5lld %4d %10.3f %10.3f %10.3f %10.3f %12.3e %11s %11s %6s\n",
          additive_pass_name[pass], (long long)a->tq1.shape[0], (long long)a->tq1.shape[1],
          (long long)a->tq1.shape[2], (long long)Dv, threads, 1e3 * r->median_s, 1e3 * r->min_s,
          1e3 * r->max_s, 1e3 * cpu_s, r->gflops * 1e9, mem, ws, sp);
  fflush(f);
}

static void print_additive_json(FILE *f, int pass, const add_bufs *a, int64_t Dv, int threads,
                                int reps, const cli_result *r, double cpu_s, const cli_peak *pk) {
  fprintf(f,
          "{\"kernel\":\"additive\",\"pass\":\"%s\",\"B\":%lld,\"Tq\":%lld,\"Tk\":%lld,\"d\":%lld,"
          "\"Dv\":%lld,\"threads\":%d,\"isa\":\"%s\",\"reps\":%d,\"calls_per_rep\":%d,"
          "\"median_s\":%.6e,\"min_s\":%.6e,\"max_s\":%.6e,\"cpu_s\":%.6e,\"pair_dims\":%.0f,"
          "\"pair_dim_per_s\":%.6e,\"extra_bytes\":%zu,\"workspace_bytes\":%zu",
          additive_pass_name[pass], (long long)a->tq1.shape[0], (long long)a->tq1.shape[1],
          (long long)a->tk2.shape[1], (long long)a->tq1.shape[2], (long long)Dv, threads,
          attn_isa_name(pk->isa), reps, r->calls_per_rep, r->median_s, r->min_s, r->max_s, cpu_s,
          r->flop, r->gflops * 1e9, r->extra_bytes, r->workspace_bytes);
  if (r->speedup > 0) fprintf(f, ",\"speedup_vs_1t\":%.3f", r->speedup);
  fputs("}\n", f);
  fflush(f);
}

static int bench_additive(bench_opts *o) {
  static const long def_b[] = {8}, quick_b[] = {2};
  static const long def_n[] = {256, 1024}, quick_n[] = {256};
  static const long def_d[] = {128}, quick_d[] = {64};
  if (o->quick) {
    set_default_list(o->b, &o->n_b, quick_b, 1);
    set_default_list(o->n, &o->n_n, quick_n, 1);
    set_default_list(o->d, &o->n_d, quick_d, 1);
  } else {
    set_default_list(o->b, &o->n_b, def_b, 1);
    set_default_list(o->n, &o->n_n, def_n, 2);
    set_default_list(o->d, &o->n_d, def_d, 1);
  }
  if (!o->pass_given) o->pass_fwd = o->pass_bwd = o->pass_both = 1;
  int64_t Dv = o->dv > 0 ? o->dv : 128;
  int reps = o->reps ? (int)o->reps : (o->quick ? 3 : 7);

  cli_peak peak;
  int all_threads;
  int rc = bench_setup(o, &peak, &all_threads);
  if (rc) return rc;
  int threads[MAX_LIST];
  int n_thr = thread_list(o, all_threads, threads);
  if (!o->json) print_additive_header(stdout);
  for (int ib = 0; ib < o->n_b && !rc; ib++)
    for (int id = 0; id < o->n_d && !rc; id++)
      for (int in = 0; in < o->n_n && !rc; in++) {
        add_bufs a;
        rc = add_bufs_make(&a, o->b[ib], o->n[in], o->d[id], Dv);
        if (rc) break;
        double one_thread[3] = {0, 0, 0};
        for (int it = 0; it < n_thr && !rc; it++)
          for (int pass = 0; pass < 3 && !rc; pass++) {
            int on[3] = {o->pass_fwd, o->pass_bwd, o->pass_both};
            if (!on[pass]) continue;
            cli_result r;
            double cpu_s = 0;
            rc = run_additive_case(&a, pass, threads[it], reps, &r, &cpu_s);
            if (rc) break;
            if (threads[it] == 1) one_thread[pass] = r.gflops;
            if (threads[it] > 1 && one_thread[pass] > 0) r.speedup = r.gflops / one_thread[pass];
            if (o->json)
              print_additive_json(stdout, pass, &a, Dv, threads[it], reps, &r, cpu_s, &peak);
            else
              print_additive_row(stdout, pass, &a, Dv, threads[it], &r, cpu_s);
          }
        add_bufs_free(&a);
      }
  return rc;
}

int cli_bench_main(int argc, char **argv) {
  if (argc < 2) {
    cli_errorf("bench: missing kernel name (sdpa, gemm or additive; see 'attn bench --help')");
    return CLI_EXIT_USAGE;
  }
  if (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help") || !strcmp(argv[1], "help")) {
    cli_bench_usage(stdout);
    return CLI_EXIT_OK;
  }
  const char *kernel = argv[1];
  if (!strcmp(kernel, "bert")) return cli_bench_bert_main(argc - 1, argv + 1);
  if (!strcmp(kernel, "train")) return cli_bench_train_main(argc - 1, argv + 1);
  if (strcmp(kernel, "sdpa") != 0 && strcmp(kernel, "gemm") != 0 &&
      strcmp(kernel, "additive") != 0) {
    cli_errorf(
        "bench: unknown kernel '%s' (expected sdpa, gemm, additive, bert or train; see "
        "'attn bench --help')",
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
  if (!strcmp(kernel, "additive")) return bench_additive(&o);
  return !strcmp(kernel, "sdpa") ? bench_sdpa(&o) : bench_gemm(&o);
}
