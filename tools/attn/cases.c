/* Benchmark cases shared by `attn bench` and `attn demo`: one SDPA or GEMM case timed the way
 * DESIGN.md section 6 says (two warm-up calls, `reps` timed calls, median/min/max), its FLOP count,
 * GFLOP/s, percentage of the measured peak and the library's own peak memory, and the printers for
 * the human table and the JSON lines. */
#include "cli.h"

#include <stdlib.h>
#include <string.h>

/* ---- shapes and counts ---------------------------------------------------------------------- */

/* Query-key pairs a top-left causal mask (or no mask) allows: sum over i of min(i + 1, Nk). */
static double allowed_pairs(int64_t Nq, int64_t Nk, int causal) {
  if (!causal) return (double)Nq * (double)Nk;
  double full = (double)(Nq < Nk ? Nq : Nk); /* rows i < Nk see i + 1 keys */
  double pairs = full * (full + 1) / 2;
  if (Nq > Nk) pairs += (double)(Nq - Nk) * (double)Nk;
  return pairs;
}

int64_t cli_sdpa_default_heads(int64_t N, int64_t D, int causal) {
  /* Enough heads that one forward call is >= ~2 GFLOP (>= ~10 ms at this machine's peak), at
   * least 8 (the B*H = 8 for N = 2048 and 8192), at most 1024. */
  double per_head = 4.0 * allowed_pairs(N, N, causal) * (double)D;
  int64_t h = 8;
  while (h < 1024 && per_head * (double)h < 2e9) h *= 2;
  return h;
}

double cli_peak_for_threads(const cli_peak *pk, int threads) {
  int cpus = cli_online_cpus();
  int used = threads < cpus ? threads : cpus;
  return pk->gflops_per_core * (double)used;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

void cli_summarize(double *times, int reps, cli_result *r) {
  qsort(times, (size_t)reps, sizeof *times, cmp_double);
  r->min_s = times[0];
  r->max_s = times[reps - 1];
  r->median_s = reps % 2 ? times[reps / 2] : 0.5 * (times[reps / 2 - 1] + times[reps / 2]);
}

int cli_calls_per_sample(double warm_s) {
  if (warm_s >= 0.01) return 1;
  double n = warm_s > 0 ? 0.01 / warm_s : 1000;
  return n >= 1000 ? 1000 : (int)n + 1;
}

/* Checked a * b for sizes; returns 0 on overflow. */
static int mul_size(size_t a, size_t b, size_t *out) {
  return !__builtin_mul_overflow(a, b, out);
}

int cli_check_fits(size_t bytes, const char *what) {
  uint64_t phys = cli_physical_memory();
  if (phys && (double)bytes > 0.8 * (double)phys) {
    cli_errorf("%s needs %.1f GiB of buffers, more than 80%% of this machine's %.1f GiB", what,
               (double)bytes / 1073741824.0, (double)phys / 1073741824.0);
    return -1;
  }
  return 0;
}

/* ---- SDPA ----------------------------------------------------------------------------------- */

/* The buffers of the last SDPA shape, kept so the passes and thread counts of one shape share them
 * (filling a 300 MB case with random numbers costs more than timing it). */
typedef struct sdpa_bufs {
  int64_t B, H, N, D;
  attn_dtype dtype;
  void *q, *k, *v, *out;
  float *lse;
  void *dout, *dq, *dk, *dv; /* backward buffers, allocated on first use */
  attn_tensor tq, tk, tv, tout, tlse, tdout, tdq, tdk, tdv;
} sdpa_bufs;

static sdpa_bufs cache;

static void sdpa_bufs_free(sdpa_bufs *b) {
  void *all[] = {b->q, b->k, b->v, b->out, b->lse, b->dout, b->dq, b->dk, b->dv};
  for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) cli_free(all[i]);
  memset(b, 0, sizeof *b);
}

void cli_cases_release(void) {
  sdpa_bufs_free(&cache);
}

static int sdpa_bufs_get(const cli_sdpa_case *c, int need_bwd, sdpa_bufs **out) {
  sdpa_bufs *b = &cache;
  int same =
      b->q && b->B == c->B && b->H == c->H && b->N == c->Nq && b->D == c->D && b->dtype == c->dtype;
  if (!same) {
    sdpa_bufs_free(b);
    size_t elems, bytes, lse_bytes, total;
    size_t es = attn_dtype_size(c->dtype);
    if (!mul_size((size_t)c->B * (size_t)c->H, (size_t)c->Nq, &lse_bytes) ||
        !mul_size(lse_bytes, (size_t)c->D, &elems) || !mul_size(elems, es, &bytes) ||
        !mul_size(bytes, need_bwd ? 8 : 4, &total) || !mul_size(lse_bytes, 4, &lse_bytes)) {
      cli_errorf("sdpa case B=%lld H=%lld N=%lld D=%lld: buffer size overflows", (long long)c->B,
                 (long long)c->H, (long long)c->Nq, (long long)c->D);
      return CLI_EXIT_RUNTIME;
    }
    if (cli_check_fits(total + lse_bytes, "sdpa case") != 0) return CLI_EXIT_RUNTIME;
    b->B = c->B;
    b->H = c->H;
    b->N = c->Nq;
    b->D = c->D;
    b->dtype = c->dtype;
    b->q = cli_alloc(bytes);
    b->k = cli_alloc(bytes);
    b->v = cli_alloc(bytes);
    b->out = cli_alloc(bytes);
    b->lse = cli_alloc(lse_bytes);
    if (!b->q || !b->k || !b->v || !b->out || !b->lse) {
      sdpa_bufs_free(b);
      cli_errorf("out of memory allocating an sdpa case of %zu bytes", 4 * bytes + lse_bytes);
      return CLI_EXIT_RUNTIME;
    }
    uint64_t seed = 0x9e3779b97f4a7c15ull;
    cli_fill_random(b->q, c->dtype, elems, &seed);
    cli_fill_random(b->k, c->dtype, elems, &seed);
    cli_fill_random(b->v, c->dtype, elems, &seed);
    int64_t shape[4] = {c->B, c->H, c->Nq, c->D};
    b->tq = attn_tensor_make(b->q, c->dtype, 4, shape);
    b->tk = attn_tensor_make(b->k, c->dtype, 4, shape);
    b->tv = attn_tensor_make(b->v, c->dtype, 4, shape);
    b->tout = attn_tensor_make(b->out, c->dtype, 4, shape);
    b->tlse = attn_tensor_make(b->lse, ATTN_DTYPE_F32, 3, shape);
  }
  if (need_bwd && !b->dout) {
    size_t elems = (size_t)(c->B * c->H * c->Nq * c->D), bytes = elems * attn_dtype_size(c->dtype);
    if (cli_check_fits(8 * bytes, "sdpa backward case") != 0) return CLI_EXIT_RUNTIME;
    b->dout = cli_alloc(bytes);
    b->dq = cli_alloc(bytes);
    b->dk = cli_alloc(bytes);
    b->dv = cli_alloc(bytes);
    if (!b->dout || !b->dq || !b->dk || !b->dv) {
      sdpa_bufs_free(b);
      cli_errorf("out of memory allocating the backward buffers (%zu bytes)", 4 * bytes);
      return CLI_EXIT_RUNTIME;
    }
    uint64_t seed = 0x2545f4914f6cdd1dull;
    cli_fill_random(b->dout, c->dtype, elems, &seed);
    int64_t shape[4] = {c->B, c->H, c->Nq, c->D};
    b->tdout = attn_tensor_make(b->dout, c->dtype, 4, shape);
    b->tdq = attn_tensor_make(b->dq, c->dtype, 4, shape);
    b->tdk = attn_tensor_make(b->dk, c->dtype, 4, shape);
    b->tdv = attn_tensor_make(b->dv, c->dtype, 4, shape);
  }
  *out = b;
  return 0;
}

static attn_status sdpa_call(const sdpa_bufs *b, int bwd, const attn_sdpa_params *p, void *ws,
                             size_t ws_size) {
  if (bwd)
    return attn_sdpa_backward(&b->tdq, &b->tdk, &b->tdv, &b->tdout, &b->tq, &b->tk, &b->tv,
                              &b->tout, &b->tlse, p, ws, ws_size);
  return attn_sdpa_forward(&b->tout, &b->tlse, NULL, &b->tq, &b->tk, &b->tv, p, ws, ws_size);
}

int cli_run_sdpa_case(const cli_sdpa_case *c, const cli_peak *peak, cli_result *r) {
  memset(r, 0, sizeof *r);
  int bwd = strcmp(c->pass, "bwd") == 0;
  if (c->Nq != c->Nk) {
    cli_errorf("sdpa case: Nq != Nk is not benchmarked");
    return CLI_EXIT_RUNTIME;
  }
  sdpa_bufs *b;
  int rc = sdpa_bufs_get(c, bwd, &b);
  if (rc) return rc;

  /* Workers inherit the creating thread's affinity: unpin until this thread count's pool runs. */
  cli_unpin_main_thread();
  attn_status s = attn_set_num_threads(c->threads);
  if (s != ATTN_OK) {
    cli_status_error("attn_set_num_threads", s);
    return CLI_EXIT_RUNTIME;
  }
  attn_sdpa_params p = attn_sdpa_params_default();
  p.causal = c->causal;

  size_t ws_size = 0;
  s = bwd ? attn_sdpa_backward_workspace_size(&ws_size, &b->tdq, &b->tdk, &b->tdv, &b->tdout,
                                              &b->tq, &b->tk, &b->tv, &b->tout, &b->tlse, &p)
          : attn_sdpa_forward_workspace_size(&ws_size, &b->tout, &b->tlse, NULL, &b->tq, &b->tk,
                                             &b->tv, &p);
  if (s != ATTN_OK) {
    cli_status_error(bwd ? "attn_sdpa_backward_workspace_size" : "attn_sdpa_forward_workspace_size",
                     s);
    return CLI_EXIT_RUNTIME;
  }
  void *ws = NULL;
  if (ws_size) {
    ws = cli_alloc(ws_size);
    if (!ws) {
      cli_errorf("out of memory allocating a %zu-byte workspace", ws_size);
      return CLI_EXIT_RUNTIME;
    }
  }
  const char *what = bwd ? "attn_sdpa_backward" : "attn_sdpa_forward";
  double *times = calloc((size_t)c->reps, sizeof *times);
  if (!times) {
    cli_free(ws);
    cli_errorf("out of memory");
    return CLI_EXIT_RUNTIME;
  }

  /* The backward reads out and lse of a forward with the same options. */
  if (bwd) {
    s = sdpa_call(b, 0, &p, NULL, 0);
    if (s != ATTN_OK) {
      what = "attn_sdpa_forward";
      goto fail;
    }
  }
  /* Warm-up 1, with a NULL workspace: the library allocates what it needs through the hook, and
   * the tracking allocator's high-water mark above the live baseline is the call's extra memory.
   * It also starts the pool for this thread count, after which the calling thread is pinned. */
  size_t base = cli_track_reset();
  s = sdpa_call(b, bwd, &p, NULL, 0);
  if (s != ATTN_OK) goto fail;
  r->extra_bytes = cli_track_peak() - base;
  cli_pin_main_thread();
  /* Warm-up 2, then the timed samples, with the preallocated workspace. */
  double t0 = cli_now();
  s = sdpa_call(b, bwd, &p, ws, ws_size);
  if (s != ATTN_OK) goto fail;
  r->calls_per_rep = cli_calls_per_sample(cli_now() - t0);
  for (int i = 0; i < c->reps; i++) {
    t0 = cli_now();
    for (int j = 0; j < r->calls_per_rep && s == ATTN_OK; j++)
      s = sdpa_call(b, bwd, &p, ws, ws_size);
    times[i] = (cli_now() - t0) / r->calls_per_rep;
    if (s != ATTN_OK) goto fail;
  }
  cli_summarize(times, c->reps, r);
  free(times);
  cli_free(ws);

  double fwd_flop =
      4.0 * (double)c->B * (double)c->H * allowed_pairs(c->Nq, c->Nk, c->causal) * (double)c->D;
  r->flop = bwd ? 2.5 * fwd_flop : fwd_flop;
  r->gflops = r->median_s > 0 ? r->flop / r->median_s * 1e-9 : 0;
  r->peak_gflops = cli_peak_for_threads(peak, c->threads);
  r->pct_peak = r->peak_gflops > 0 ? 100.0 * r->gflops / r->peak_gflops : 0;
  r->workspace_bytes = ws_size;
  return 0;

fail:
  cli_status_error(what, s);
  free(times);
  cli_free(ws);
  return CLI_EXIT_RUNTIME;
}

/* ---- GEMM ----------------------------------------------------------------------------------- */

const char *cli_epilogue_name(attn_epilogue e) {
  switch (e) {
    case ATTN_EPILOGUE_NONE:
      return "none";
    case ATTN_EPILOGUE_BIAS:
      return "bias";
    case ATTN_EPILOGUE_BIAS_GELU:
      return "bias_gelu";
    case ATTN_EPILOGUE_BIAS_RELU:
      return "bias_relu";
  }
  return "?";
}

int cli_epilogue_parse(const char *text, attn_epilogue *e) {
  static const attn_epilogue all[] = {ATTN_EPILOGUE_NONE, ATTN_EPILOGUE_BIAS,
                                      ATTN_EPILOGUE_BIAS_GELU, ATTN_EPILOGUE_BIAS_RELU};
  for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
    if (!strcmp(text, cli_epilogue_name(all[i]))) {
      *e = all[i];
      return 0;
    }
  return -1;
}

/* One call of the case: attn_gemm, or attn_gemm_packed with the packed B. */
static attn_status gemm_call(const cli_gemm_case *c, const float *A, const float *B,
                             const attn_gemm_packed_b *pb, const float *bias, float *C) {
  if (c->packed)
    return attn_gemm_packed(ATTN_NO_TRANS, c->M, 1.0f, A, c->K, pb, 0.0f, C, c->N, c->epilogue,
                            bias);
  return attn_gemm(ATTN_ROW_MAJOR, ATTN_NO_TRANS, c->trans_b, c->M, c->N, c->K, 1.0f, A, c->K, B,
                   c->trans_b == ATTN_TRANS ? c->K : c->N, 0.0f, C, c->N);
}

int cli_run_gemm_case(const cli_gemm_case *c, const cli_peak *peak, cli_result *r) {
  memset(r, 0, sizeof *r);
  int64_t M = c->M, N = c->N, K = c->K;
  int reps = c->reps;
  size_t na, nb, nc, bytes;
  if (!mul_size((size_t)M, (size_t)K, &na) || !mul_size((size_t)N, (size_t)K, &nb) ||
      !mul_size((size_t)M, (size_t)N, &nc) || na > SIZE_MAX / 4 - nb ||
      na + nb > SIZE_MAX / 4 - nc ||
      !mul_size(na + nb + nc + (c->packed ? (size_t)N : 0), sizeof(float), &bytes)) {
    cli_errorf("gemm case %lldx%lldx%lld: buffer size overflows", (long long)M, (long long)N,
               (long long)K);
    return CLI_EXIT_RUNTIME;
  }
  if (cli_check_fits(bytes, "gemm case") != 0) return CLI_EXIT_RUNTIME;
  float *A = cli_alloc(na * sizeof(float)), *B = cli_alloc(nb * sizeof(float));
  float *C = cli_alloc(nc * sizeof(float));
  float *bias = c->packed ? cli_alloc((size_t)N * sizeof(float)) : NULL;
  double *times = calloc((size_t)reps, sizeof *times);
  attn_gemm_packed_b *pb = NULL;
  int rc = 0;
  if (!A || !B || !C || (c->packed && !bias) || !times) {
    cli_errorf("out of memory allocating a gemm case of %zu bytes", bytes);
    rc = CLI_EXIT_RUNTIME;
    goto done;
  }
  uint64_t seed = 0x853c49e6748fea9bull;
  cli_fill_random(A, ATTN_DTYPE_F32, na, &seed);
  cli_fill_random(B, ATTN_DTYPE_F32, nb, &seed);
  if (bias) cli_fill_random(bias, ATTN_DTYPE_F32, (size_t)N, &seed);
  cli_unpin_main_thread(); /* until this thread count's pool has started (see cli.h) */
  attn_status s = attn_set_num_threads(c->threads);
  if (s != ATTN_OK) {
    cli_status_error("attn_set_num_threads", s);
    rc = CLI_EXIT_RUNTIME;
    goto done;
  }
  const char *what = c->packed ? "attn_gemm_packed" : "attn_gemm";
  if (c->packed) {
    /* B stored N x K (a Linear layer's weights), packed once, outside the warm-ups and timing. */
    s = attn_gemm_pack_b(&pb, ATTN_TRANS, K, N, B, K);
    if (s != ATTN_OK) {
      cli_status_error("attn_gemm_pack_b", s);
      rc = CLI_EXIT_RUNTIME;
      goto done;
    }
    r->packed_bytes = attn_gemm_packed_bytes(pb);
  }
  /* Two warm-ups (the first measures the library's allocations and starts the pool), then
   * `reps` timed samples of calls_per_rep calls each. */
  r->calls_per_rep = 1;
  for (int i = -2; i < reps; i++) {
    size_t base = i == -2 ? cli_track_reset() : 0;
    double t0 = cli_now();
    for (int j = 0; j < r->calls_per_rep && s == ATTN_OK; j++) s = gemm_call(c, A, B, pb, bias, C);
    double t = (cli_now() - t0) / r->calls_per_rep;
    if (s != ATTN_OK) {
      cli_status_error(what, s);
      rc = CLI_EXIT_RUNTIME;
      goto done;
    }
    if (i == -2) {
      r->extra_bytes = cli_track_peak() - base;
      cli_pin_main_thread();
    }
    if (i == -1) r->calls_per_rep = cli_calls_per_sample(t);
    if (i >= 0) times[i] = t;
  }
  cli_summarize(times, reps, r);
  r->flop = 2.0 * (double)M * (double)N * (double)K; /* the epilogue is not counted */
  r->gflops = r->median_s > 0 ? r->flop / r->median_s * 1e-9 : 0;
  r->peak_gflops = cli_peak_for_threads(peak, c->threads);
  r->pct_peak = r->peak_gflops > 0 ? 100.0 * r->gflops / r->peak_gflops : 0;
done:
  attn_gemm_packed_free(pb);
  cli_free(A);
  cli_free(B);
  cli_free(C);
  cli_free(bias);
  free(times);
  return rc;
}

/* ---- output --------------------------------------------------------------------------------- */

static void format_speedup(char *buf, size_t len, double speedup) {
  if (speedup > 0)
    snprintf(buf, len, "%.2fx", speedup);
  else
    snprintf(buf, len, "-");
}

/* ",\"speedup_vs_1t\":x" when measured, else nothing. */
static void json_speedup(FILE *f, double speedup) {
  if (speedup > 0) fprintf(f, ",\"speedup_vs_1t\":%.3f", speedup);
}

void cli_format_bytes(char *buf, size_t len, size_t bytes) {
  if (bytes < 1024)
    snprintf(buf, len, "%zu B", bytes);
  else if (bytes < 1024 * 1024)
    snprintf(buf, len, "%.1f KiB", (double)bytes / 1024.0);
  else
    snprintf(buf, len, "%.1f MiB", (double)bytes / 1048576.0);
}

void cli_print_sdpa_header(FILE *f) {
  fprintf(f, "%-4s %-5s %5s %6s %6s %3s %5s %4s %10s %10s %10s %9s %7s %11s %6s\n", "pass", "dtype",
          "D", "N", "causal", "B", "H", "thr", "median_ms", "min_ms", "max_ms", "GFLOP/s", "%peak",
          "extra_mem", "vs_1t");
}

void cli_print_sdpa_row(FILE *f, const cli_sdpa_case *c, const cli_result *r) {
  char mem[32], sp[16];
  cli_format_bytes(mem, sizeof mem, r->extra_bytes);
  format_speedup(sp, sizeof sp, r->speedup);
  fprintf(f,
          "%-4s %-5s %5lld %6lld %6d %3lld %5lld %4d %10.3f %10.3f %10.3f %9.1f %6.1f%% %11s %6s\n",
          c->pass, cli_dtype_name(c->dtype), (long long)c->D, (long long)c->Nq, c->causal,
          (long long)c->B, (long long)c->H, c->threads, 1e3 * r->median_s, 1e3 * r->min_s,
          1e3 * r->max_s, r->gflops, r->pct_peak, mem, sp);
  fflush(f);
}

void cli_print_sdpa_json(FILE *f, const cli_sdpa_case *c, const cli_result *r, const cli_peak *pk) {
  fprintf(
      f,
      "{\"kernel\":\"sdpa\",\"pass\":\"%s\",\"dtype\":\"%s\",\"B\":%lld,\"H\":%lld,\"Hkv\":%lld,"
      "\"Nq\":%lld,\"Nk\":%lld,\"D\":%lld,\"causal\":%d,\"threads\":%d,\"isa\":\"%s\","
      "\"reps\":%d,\"calls_per_rep\":%d,\"median_s\":%.6e,\"min_s\":%.6e,\"max_s\":%.6e,"
      "\"gflop\":%.6f,\"gflops\":%.3f,\"peak_gflops\":%.3f,\"pct_peak\":%.2f,\"extra_bytes\":%zu,"
      "\"workspace_bytes\":%zu",
      c->pass, cli_dtype_name(c->dtype), (long long)c->B, (long long)c->H, (long long)c->H,
      (long long)c->Nq, (long long)c->Nk, (long long)c->D, c->causal, c->threads,
      attn_isa_name(pk->isa), c->reps, r->calls_per_rep, r->median_s, r->min_s, r->max_s,
      r->flop * 1e-9, r->gflops, r->peak_gflops, r->pct_peak, r->extra_bytes, r->workspace_bytes);
  json_speedup(f, r->speedup);
  fputs("}\n", f);
  fflush(f);
}

/* "gemm", "gemm_packed" or "gemm_packed+bias|gelu|relu" (the GELU and ReLU epilogues add the
 * bias first). */
static const char *gemm_kernel_name(const cli_gemm_case *c) {
  if (!c->packed) return "gemm";
  switch (c->epilogue) {
    case ATTN_EPILOGUE_BIAS:
      return "gemm_packed+bias";
    case ATTN_EPILOGUE_BIAS_GELU:
      return "gemm_packed+gelu";
    case ATTN_EPILOGUE_BIAS_RELU:
      return "gemm_packed+relu";
    default:
      return "gemm_packed";
  }
}

void cli_print_gemm_header(FILE *f) {
  fprintf(f, "%-16s %6s %6s %6s %4s %10s %10s %10s %9s %7s %11s %6s\n", "kernel", "M", "N", "K",
          "thr", "median_ms", "min_ms", "max_ms", "GFLOP/s", "%peak", "extra_mem", "vs_1t");
}

void cli_print_gemm_row(FILE *f, const cli_gemm_case *c, const cli_result *r) {
  char mem[32], sp[16];
  /* extra_mem: the call's own peak allocation plus, for a packed run, the packed B it reads. */
  cli_format_bytes(mem, sizeof mem, r->extra_bytes + r->packed_bytes);
  format_speedup(sp, sizeof sp, r->speedup);
  fprintf(f, "%-16s %6lld %6lld %6lld %4d %10.3f %10.3f %10.3f %9.1f %6.1f%% %11s %6s\n",
          gemm_kernel_name(c), (long long)c->M, (long long)c->N, (long long)c->K, c->threads,
          1e3 * r->median_s, 1e3 * r->min_s, 1e3 * r->max_s, r->gflops, r->pct_peak, mem, sp);
  fflush(f);
}

void cli_print_gemm_json(FILE *f, const cli_gemm_case *c, const cli_result *r, const cli_peak *pk) {
  fprintf(
      f,
      "{\"kernel\":\"gemm\",\"pass\":\"fwd\",\"dtype\":\"f32\",\"M\":%lld,\"N\":%lld,\"K\":%lld,"
      "\"packed\":%s,\"epilogue\":\"%s\","
      "\"threads\":%d,\"isa\":\"%s\",\"reps\":%d,\"calls_per_rep\":%d,\"median_s\":%.6e,\"min_s\":%"
      ".6e,"
      "\"max_s\":%.6e,\"gflop\":%.6f,\"gflops\":%.3f,\"peak_gflops\":%.3f,\"pct_peak\":%.2f,"
      "\"extra_bytes\":%zu,\"packed_bytes\":%zu",
      (long long)c->M, (long long)c->N, (long long)c->K, c->packed ? "true" : "false",
      cli_epilogue_name(c->packed ? c->epilogue : ATTN_EPILOGUE_NONE), c->threads,
      attn_isa_name(pk->isa), c->reps, r->calls_per_rep, r->median_s, r->min_s, r->max_s,
      r->flop * 1e-9, r->gflops, r->peak_gflops, r->pct_peak, r->extra_bytes, r->packed_bytes);
  json_speedup(f, r->speedup);
  fputs("}\n", f);
  fflush(f);
}

void cli_print_peak_json(FILE *f, const cli_peak *pk, int all_threads) {
  fprintf(f,
          "{\"kernel\":\"peak\",\"isa\":\"%s\",\"loop\":\"%s\",\"vector_bits\":%d,"
          "\"accumulators\":%d,\"peak_gflops\":%.3f,\"peak_gflops_all\":%.3f,\"cpus\":%d,"
          "\"threads_all\":%d,\"version\":\"%s\"}\n",
          attn_isa_name(pk->isa), pk->loop, pk->vector_bits, pk->accumulators, pk->gflops_per_core,
          cli_peak_for_threads(pk, all_threads), cli_online_cpus(), all_threads, attn_version());
  fflush(f);
}
