/* Shared pieces of the `attn` command: exit codes, option parsing helpers, timing, the tracking
 * allocator, the FMA peak probe and the benchmark cases that both `attn bench` and `attn demo` run.
 * Not part of the library; nothing here is installed. */
#ifndef ATTN_CLI_H
#define ATTN_CLI_H

#include "attn.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* Exit codes: 0 success, 1 a runtime failure (a libattn status, out of memory), 2 bad usage. */
enum { CLI_EXIT_OK = 0, CLI_EXIT_RUNTIME = 1, CLI_EXIT_USAGE = 2 };

/* ---- commands (main.c dispatches to these) ----------------------------------------------------
 */

int cli_bench_main(int argc, char **argv); /* argv[0] == "bench" */
int cli_demo_main(int argc, char **argv);  /* argv[0] == "demo" */
void cli_bench_usage(FILE *f);

/* ---- errors ------------------------------------------------------------------------------------
 */

/* Print "attn: <message>" on stderr (one line). */
void cli_errorf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Print "attn: <what>: <ATTN_STATUS_...> (<sentence>): <last error detail>" on stderr. */
void cli_status_error(const char *what, attn_status s);

/* ---- option values -----------------------------------------------------------------------------
 */

/* Parse a decimal integer in [lo, hi] from the whole of `text`. 0 on success, -1 otherwise. */
int cli_parse_int(const char *text, long lo, long hi, long *value);

/* Parse a comma-separated list of integers in [lo, hi] into values[0..max). Returns the count
 * (>= 1) or -1 on a bad list (empty, non-numeric, out of range, too many). */
int cli_parse_int_list(const char *text, long lo, long hi, long *values, int max);

/* ---- time, memory, randomness ------------------------------------------------------------------
 */

double cli_now(void); /* seconds on a monotonic clock */

/* Pin the calling thread to the first CPU of the process's original affinity mask (best effort);
 * the pool pins its worker t to the t-th CPU of the mask it inherits, so the two never share a
 * core. Workers inherit the creating thread's mask, so unpin (restore the original mask) before any
 * call that may create the pool (a change of thread count) and pin again after it. */
void cli_pin_main_thread(void);
void cli_unpin_main_thread(void);

/* Number of CPUs this process may run on (>= 1), from the original affinity mask. */
int cli_online_cpus(void);

/* Physical memory in bytes (0 if unknown). */
uint64_t cli_physical_memory(void);

/* The tracking allocator: forwards to posix_memalign/free and keeps the number of live bytes and
 * its high-water mark. cli_track_install() makes it libattn's allocator (once, at start-up, before
 * any libattn call that allocates, so every block is freed by the allocator that made it).
 * huge_pages: blocks of 2 MB or more get what libattn's default allocator gives its large buffers
 * (2 MB alignment, transparent huge pages advised): for a benchmark whose large blocks are all
 * such buffers (BERT's packed weights and activations), so it times what a program on the
 * default allocator gets. */
void cli_track_install(bool huge_pages);
/* Reset the high-water mark to the bytes live now and return that baseline. */
size_t cli_track_reset(void);
/* High-water mark of live bytes since the last reset. */
size_t cli_track_peak(void);

/* 64-byte aligned, zeroed memory for the benchmark's own buffers (not through libattn's hook).
 * NULL on failure or size overflow. Free with cli_free. */
void *cli_alloc(size_t size);
void cli_free(void *p);

/* Fill n elements of `dtype` with uniform values in [-1, 1) from a small xorshift generator. */
void cli_fill_random(void *data, attn_dtype dtype, size_t n, uint64_t *state);

/* ---- FMA peak (peak.c)
 * --------------------------------------------------------------------------- */

typedef struct cli_peak {
  attn_isa isa;           /* the ISA whose FMA loop was timed */
  const char *loop;       /* "avx512-fma", "avx2-fma" or "vec128-muladd" */
  int vector_bits;        /* 512, 256 or 128 */
  int accumulators;       /* independent accumulator chains in the loop */
  double gflops_per_core; /* best of the trials */
  double seconds;         /* time the probe took */
} cli_peak;

/* Measure the single-core FMA peak for the ISA libattn dispatches to (attn_get_isa()): a
 * register-resident loop of independent fused multiply-adds, calibrated to ~60 ms a trial, best of
 * five trials, on the calling thread, pinned for the measurement and unpinned after. */
void cli_measure_peak(cli_peak *peak);

/* ---- benchmark cases (bench.c), also used by demo.c
 * ---------------------------------------------- */

typedef struct cli_sdpa_case {
  const char *pass; /* "fwd" or "bwd" */
  int64_t B, H, Nq, Nk, D;
  int causal;
  attn_dtype dtype;
  int threads;
  int reps;
} cli_sdpa_case;

typedef struct cli_result {
  double median_s, min_s, max_s; /* per call */
  int calls_per_rep;             /* calls in one timed sample (>1 only for calls under 10 ms) */
  double flop;        /* floating-point operations one call does (counted as documented) */
  double gflops;      /* flop / median_s / 1e9 */
  double peak_gflops; /* per-core peak x threads (threads capped at the CPUs available) */
  double pct_peak;    /* 100 * gflops / peak_gflops */
  size_t extra_bytes; /* high-water mark of libattn's own allocations in a NULL-workspace call */
  size_t workspace_bytes; /* what the *_workspace_size call asked for */
  size_t packed_bytes;    /* gemm_packed: the packed B (allocated before the warm-ups), else 0 */
  double speedup;         /* gflops / the 1-thread gflops of the same case; 0 when not measured */
} cli_result;

/* H for a B=1 case of (N, D, causal): the smallest power of two in [8, 1024] that makes a forward
 * call >= ~2 GFLOP, so every case runs >= ~10 ms and B*H = 8 at N = 2048 and 8192. */
int64_t cli_sdpa_default_heads(int64_t N, int64_t D, int causal);

/* Run one SDPA case (forward, or forward then backward). Returns 0, or an exit code after having
 * printed the problem (CLI_EXIT_RUNTIME). */
int cli_run_sdpa_case(const cli_sdpa_case *c, const cli_peak *peak, cli_result *r);

/* Free the buffers the SDPA cases keep between calls of the same shape. */
void cli_cases_release(void);

/* One GEMM case: row-major C = A B, A M x K. attn_gemm reads B as stored K x N (trans_b
 * ATTN_NO_TRANS, `bench gemm --sizes`) or N x K (ATTN_TRANS, `--shapes`: a Linear layer's
 * weights). packed: attn_gemm_packed instead, with B stored N x K packed once by attn_gemm_pack_b
 * (ATTN_TRANS) before the warm-ups, and the epilogue (a random bias vector). */
typedef struct cli_gemm_case {
  int64_t M, N, K;
  attn_trans trans_b; /* attn_gemm only */
  int packed;
  attn_epilogue epilogue; /* packed only */
  int threads;
  int reps;
} cli_gemm_case;

/* Run one GEMM case; FLOPs 2 M N K whatever the epilogue. */
int cli_run_gemm_case(const cli_gemm_case *c, const cli_peak *peak, cli_result *r);

/* Name of an epilogue ("none", "bias", "bias_gelu", "bias_relu"); and the reverse (-1 if
 * unknown). */
const char *cli_epilogue_name(attn_epilogue e);
int cli_epilogue_parse(const char *text, attn_epilogue *e);

/* Pieces of the cases above, shared with the cases in bench.c. */
/* Per-core peak x threads (threads capped at the CPUs available). */
double cli_peak_for_threads(const cli_peak *pk, int threads);
/* Fill r's median/min/max from `reps` per-call times (sorted in place). */
void cli_summarize(double *times, int reps, cli_result *r);
/* Calls per timed sample so one sample lasts >= ~10 ms (timer resolution and the pool's wake-up
 * matter less), from the duration of one warm-up call. */
int cli_calls_per_sample(double warm_s);
/* Refuse a case that would not fit in memory instead of letting the OS kill us mid-run: -1 (after
 * printing why) when `bytes` exceeds 80% of physical memory, else 0. */
int cli_check_fits(size_t bytes, const char *what);
/* "123 B", "1.5 KiB" or "2.0 MiB". */
void cli_format_bytes(char *buf, size_t len, size_t bytes);

/* Output of one result: a human table row or a JSON object on one line. */
void cli_print_sdpa_header(FILE *f);
void cli_print_sdpa_row(FILE *f, const cli_sdpa_case *c, const cli_result *r);
void cli_print_sdpa_json(FILE *f, const cli_sdpa_case *c, const cli_result *r, const cli_peak *pk);
void cli_print_gemm_header(FILE *f);
void cli_print_gemm_row(FILE *f, const cli_gemm_case *c, const cli_result *r);
void cli_print_gemm_json(FILE *f, const cli_gemm_case *c, const cli_result *r, const cli_peak *pk);
void cli_print_peak_json(FILE *f, const cli_peak *pk, int all_threads);

/* Name of a dtype ("f32", "f16", "bf16"); and the reverse (-1 if unknown). */
const char *cli_dtype_name(attn_dtype dtype);
int cli_dtype_parse(const char *text, attn_dtype *dtype);

#endif /* ATTN_CLI_H */
