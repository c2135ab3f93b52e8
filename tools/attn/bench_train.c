/* `attn bench train`: full training steps of a GPT-like decoder built from attn/nn.h layers
 * (issue 3, item 7): tokens/s for 1 and all threads, and the step's peak memory against the sum of
 * parameters, gradients, AdamW state and the activations the forward pass keeps. */
#include "bench_train.h"

#include "attn/nn.h"
#include "cli.h"

#include <stdlib.h>
#include <string.h>

/* The model of the issue: 4 pre-LN layers, d_model 256, 4 heads, FFN 1024 (GELU, erf form),
 * vocab 256, T = 128, batch 16; learned token and position embeddings, a final layernorm and an
 * untied linear head without bias; dropout 0. */
enum {
  TR_LAYERS = 4,
  TR_DIM = 256,
  TR_HEADS = 4,
  TR_FFN = 1024,
  TR_VOCAB = 256,
  TR_SEQ = 128,
  TR_BATCH = 16,
  TR_WARMUP = 2,
  TR_DATA_BATCHES = 4, /* distinct random batches, used in turn */
  TR_MAX_LIST = 32,
};
#define TR_LR 3e-4f
#define TR_WD 0.01f
#define TR_CLIP 1.0f

void cli_bench_train_usage(FILE *f) {
  fputs(
      "usage: attn bench train [options]\n"
      "\n"
      "Full training steps of a GPT-like decoder built from attn/nn.h layers: 4 pre-LN layers,\n"
      "d_model 256, 4 heads, FFN 1024 (GELU), vocab 256, T = 128, batch 16, causal attention,\n"
      "learned position embeddings, untied head; AdamW (lr 3e-4, weight decay 0.01), gradient\n"
      "clipping at global norm 1. The data are random tokens; the target is the next token.\n"
      "A step: zero_grad, forward, cross-entropy, backward, clip, AdamW, context reset.\n"
      "Per thread count: 2 warm-up steps, then the timed steps; the median is reported and\n"
      "tokens/s = batch * T / median.\n"
      "\n"
      "options:\n"
      "  --json             one JSON object per line\n"
      "  --threads LIST     thread counts, e.g. 1,2 (default: 1 and all CPUs)\n"
      "  --steps N          timed steps, 1..1000 (default 7)\n"
      "  --isa NAME         force scalar|avx2|avx512 (default: ATTN_ISA or the best)\n"
      "  -h, --help         this text\n"
      "\n"
      "Memory (through the command's tracking allocator, every block libattn allocates):\n"
      "peak_bytes is the high-water mark of live library memory during a timed step (parameters,\n"
      "gradients, AdamW state, the context's arena and any scratch); mem_sum_bytes is\n"
      "param_bytes + grad_bytes + optim_bytes + arena_fwd_bytes, where arena_fwd_bytes (the\n"
      "saved activations) is the arena in use after the forward pass and the loss: every\n"
      "tensor the forward made and the tape records, whether or not a backward reads it.\n"
      "JSON fields: kernel (\"train\"), threads, isa, batch, seq, layers, d_model, heads, ffn,\n"
      "vocab, params, steps, warmup, median_s, min_s, max_s, tokens_per_s, speedup_vs_1t,\n"
      "loss_first, loss_last, param_bytes, grad_bytes, optim_bytes, arena_fwd_bytes,\n"
      "arena_step_bytes, peak_bytes, first_step_peak_bytes, mem_sum_bytes, peak_over_sum.\n",
      f);
}

typedef struct train_opts {
  int json, help;
  long threads[TR_MAX_LIST];
  int n_threads;
  long steps;
  const char *isa;
} train_opts;

static int parse_train_opts(int argc, char **argv, train_opts *o) {
  for (int i = 1; i < argc; i++) {
    const char *arg = argv[i];
    if (!strcmp(arg, "-h") || !strcmp(arg, "--help")) {
      o->help = 1;
      continue;
    }
    if (!strcmp(arg, "--json")) {
      o->json = 1;
      continue;
    }
    if (strncmp(arg, "--", 2) != 0) {
      cli_errorf("bench train: unexpected argument '%s' (see 'attn bench train --help')", arg);
      return CLI_EXIT_USAGE;
    }
    char name[32];
    const char *value = NULL;
    const char *eq = strchr(arg, '=');
    size_t len = eq ? (size_t)(eq - arg) : strlen(arg);
    if (len >= sizeof name) len = sizeof name - 1;
    memcpy(name, arg, len);
    name[len] = '\0';
    if (eq) value = eq + 1;
    if (strcmp(name, "--threads") && strcmp(name, "--steps") && strcmp(name, "--isa")) {
      cli_errorf("bench train: unknown option '%s' (see 'attn bench train --help')", name);
      return CLI_EXIT_USAGE;
    }
    if (!value) {
      if (i + 1 >= argc) {
        cli_errorf("bench train: option '%s' needs a value", name);
        return CLI_EXIT_USAGE;
      }
      value = argv[++i];
    }
    int bad;
    const char *expect;
    if (!strcmp(name, "--threads")) {
      o->n_threads = cli_parse_int_list(value, 1, 1024, o->threads, TR_MAX_LIST);
      bad = o->n_threads < 0;
      expect = "a list of thread counts in 1..1024";
    } else if (!strcmp(name, "--steps")) {
      bad = cli_parse_int(value, 1, 1000, &o->steps) != 0;
      expect = "an integer in 1..1000";
    } else {
      bad = strcmp(value, "scalar") && strcmp(value, "avx2") && strcmp(value, "avx512");
      o->isa = value;
      expect = "scalar, avx2 or avx512";
    }
    if (bad) {
      cli_errorf("bench train: bad value '%s' for %s (expected %s)", value, name, expect);
      return CLI_EXIT_USAGE;
    }
  }
  return 0;
}

/* ---- the model ------------------------------------------------------------------------------ */

typedef struct gpt {
  attn_nn_params params; /* owns every parameter (freed with attn_nn_params_free_all) */
  attn_nn_embedding_layer tok, pos;
  attn_nn_block blk[TR_LAYERS];
  attn_nn_layernorm_layer lnf;
  attn_nn_linear_layer head;
} gpt;

static attn_status gpt_init(gpt *m, uint64_t seed) {
  memset(m, 0, sizeof *m);
  attn_status st = attn_nn_embedding_init(&m->tok, TR_VOCAB, TR_DIM, 0.02f, seed, &m->params);
  if (st == ATTN_OK)
    st = attn_nn_embedding_init(&m->pos, TR_SEQ, TR_DIM, 0.02f, seed + 1, &m->params);
  for (int l = 0; l < TR_LAYERS && st == ATTN_OK; l++) {
    attn_nn_block_config cfg = attn_nn_block_config_default(TR_DIM, TR_HEADS, TR_FFN);
    cfg.act = ATTN_NN_ACT_GELU;
    st = attn_nn_block_init_ex(&m->blk[l], &cfg, seed + 10 + (uint64_t)l, &m->params);
  }
  if (st == ATTN_OK) st = attn_nn_layernorm_init(&m->lnf, TR_DIM, 1e-5f, &m->params);
  if (st == ATTN_OK) st = attn_nn_linear_init(&m->head, TR_DIM, TR_VOCAB, 0, seed + 2, &m->params);
  return st;
}

/* Mean next-token cross-entropy of one batch: ids and targets (TR_BATCH, TR_SEQ). */
static attn_var *gpt_loss(attn_nn_ctx *ctx, const gpt *m, const int32_t *ids,
                          const int32_t *targets, const int32_t *positions) {
  const int64_t bt[2] = {TR_BATCH, TR_SEQ}, t[1] = {TR_SEQ};
  attn_var *x = attn_nn_embedding_forward(ctx, &m->tok, ids, 2, bt);
  x = attn_nn_add(ctx, x, attn_nn_embedding_forward(ctx, &m->pos, positions, 1, t));
  for (int l = 0; l < TR_LAYERS; l++) x = attn_nn_block_forward(ctx, &m->blk[l], x, 1, NULL);
  x = attn_nn_layernorm_forward(ctx, &m->lnf, x);
  attn_var *logits = attn_nn_linear_forward(ctx, &m->head, x);
  return attn_nn_cross_entropy(ctx, logits, targets, -1, 0.0f);
}

typedef struct step_info {
  size_t arena_fwd, arena_step;
  float loss;
} step_info;

/* One full step. Returns the status (the context's error is in attn_last_error). */
static attn_status train_step(attn_nn_ctx *ctx, gpt *m, attn_nn_optim *opt, const int32_t *ids,
                              const int32_t *targets, const int32_t *positions, step_info *info) {
  attn_nn_params_zero_grad(&m->params);
  attn_var *loss = gpt_loss(ctx, m, ids, targets, positions);
  attn_status st = loss ? ATTN_OK : attn_nn_ctx_status(ctx);
  if (st == ATTN_OK) {
    info->arena_fwd = attn_nn_arena_used(ctx);
    info->loss = loss->data[0];
    st = attn_backward(loss);
  }
  if (st == ATTN_OK) {
    info->arena_step = attn_nn_arena_used(ctx);
    st = attn_nn_clip_grad_norm(&m->params, TR_CLIP, NULL);
  }
  if (st == ATTN_OK) st = attn_nn_optim_step(opt);
  attn_nn_ctx_reset(ctx);
  return st;
}

/* ---- one thread count ----------------------------------------------------------------------- */

typedef struct train_result {
  int threads, steps;
  int64_t n_params;
  double median_s, min_s, max_s, tokens_per_s, speedup;
  float loss_first, loss_last;
  size_t param_bytes, grad_bytes, optim_bytes, arena_fwd, arena_step, peak, first_peak, sum;
} train_result;

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

static int run_threads(int threads, int steps, const int32_t *data, train_result *r) {
  memset(r, 0, sizeof *r);
  r->threads = threads;
  r->steps = steps;
  int32_t positions[TR_SEQ];
  for (int t = 0; t < TR_SEQ; t++) positions[t] = t;

  /* Workers inherit the creating thread's affinity: unpin until this count's pool has started. */
  cli_unpin_main_thread();
  attn_status st = attn_set_num_threads(threads);
  if (st != ATTN_OK) {
    cli_status_error("attn_set_num_threads", st);
    return CLI_EXIT_RUNTIME;
  }
  gpt m;
  attn_nn_optim *opt = NULL;
  attn_nn_ctx *ctx = NULL;
  double *times = calloc((size_t)steps, sizeof *times);
  const char *what = "gpt_init";
  int rc = CLI_EXIT_RUNTIME;
  if (!times) {
    cli_errorf("out of memory");
    return CLI_EXIT_RUNTIME;
  }
  st = gpt_init(&m, 0x5eed);
  if (st != ATTN_OK) goto fail;
  r->n_params = attn_nn_params_numel(&m.params);
  r->param_bytes = r->grad_bytes = (size_t)r->n_params * sizeof(float);
  attn_nn_optim_config cfg = attn_nn_optim_config_default(ATTN_NN_OPTIM_ADAMW);
  cfg.lr = TR_LR;
  cfg.weight_decay = TR_WD;
  size_t before = cli_track_reset();
  opt = attn_nn_optim_new(&cfg, &m.params);
  r->optim_bytes = cli_track_reset() - before; /* AdamW's two moments, as allocated */
  ctx = attn_nn_ctx_new();
  what = "attn_nn_optim_new / attn_nn_ctx_new";
  if (!opt || !ctx) {
    st = ATTN_STATUS_OUT_OF_MEMORY;
    goto fail;
  }
  what = "training step";
  const size_t per_batch = (size_t)TR_BATCH * TR_SEQ;
  for (int i = -TR_WARMUP; i < steps; i++) {
    int b = (i + TR_WARMUP) % TR_DATA_BATCHES;
    const int32_t *ids = data + (size_t)b * 2 * per_batch, *tg = ids + per_batch;
    step_info info = {0, 0, 0};
    cli_track_reset();
    double t0 = cli_now();
    st = train_step(ctx, &m, opt, ids, tg, positions, &info);
    double t = cli_now() - t0;
    size_t peak = cli_track_peak();
    if (st != ATTN_OK) goto fail;
    if (i == -TR_WARMUP) {
      r->first_peak = peak;
      r->loss_first = info.loss;
      cli_pin_main_thread(); /* the pool for this count runs now */
    }
    if (i >= 0) {
      times[i] = t;
      if (peak > r->peak) r->peak = peak;
      r->arena_fwd = info.arena_fwd;
      r->arena_step = info.arena_step;
      r->loss_last = info.loss;
    }
  }
  qsort(times, (size_t)steps, sizeof *times, cmp_double);
  r->min_s = times[0];
  r->max_s = times[steps - 1];
  r->median_s = steps % 2 ? times[steps / 2] : 0.5 * (times[steps / 2 - 1] + times[steps / 2]);
  r->tokens_per_s = r->median_s > 0 ? (double)per_batch / r->median_s : 0;
  r->sum = r->param_bytes + r->grad_bytes + r->optim_bytes + r->arena_fwd;
  rc = 0;
  goto done;
fail:
  cli_status_error(what, st);
done:
  attn_nn_ctx_free(ctx);
  attn_nn_optim_free(opt);
  attn_nn_params_free_all(&m.params);
  free(times);
  return rc;
}

/* ---- output --------------------------------------------------------------------------------- */

static double mib(size_t bytes) {
  return (double)bytes / 1048576.0;
}

static void print_header(int all_threads, const train_opts *o, int steps) {
  (void)o;
  printf("attn %s, isa %s, %d CPUs, default threads %d\n", attn_version(),
         attn_isa_name(attn_get_isa()), cli_online_cpus(), all_threads);
  printf("model: GPT-like decoder, %d pre-LN layers, d_model %d, %d heads, FFN %d (GELU), "
         "vocab %d, T %d, batch %d; AdamW lr %g wd %g, clip %g\n",
         TR_LAYERS, TR_DIM, TR_HEADS, TR_FFN, TR_VOCAB, TR_SEQ, TR_BATCH, (double)TR_LR,
         (double)TR_WD, (double)TR_CLIP);
  printf("step: zero_grad, forward, loss, backward, clip, AdamW, ctx reset; %d warm-up, %d timed "
         "steps, median\n\n",
         TR_WARMUP, steps);
  printf("%4s %10s %10s %10s %10s %6s %10s %10s %10s %10s %8s\n", "thr", "median_ms", "min_ms",
         "max_ms", "tokens/s", "vs_1t", "loss0", "lossN", "peak_MiB", "sum_MiB", "peak/sum");
  fflush(stdout);
}

static void print_row(const train_result *r) {
  char sp[16];
  if (r->speedup > 0)
    snprintf(sp, sizeof sp, "%.2fx", r->speedup);
  else
    snprintf(sp, sizeof sp, "-");
  printf("%4d %10.1f %10.1f %10.1f %10.0f %6s %10.4f %10.4f %10.1f %10.1f %7.2fx\n", r->threads,
         1e3 * r->median_s, 1e3 * r->min_s, 1e3 * r->max_s, r->tokens_per_s, sp,
         (double)r->loss_first, (double)r->loss_last, mib(r->peak), mib(r->sum),
         r->sum ? (double)r->peak / (double)r->sum : 0.0);
  fflush(stdout);
}

static void print_memory(const train_result *r) {
  printf("  memory (%d threads): %lld parameters; params %.1f MiB + grads %.1f + AdamW %.1f + "
         "arena after forward %.1f = %.1f MiB; arena after backward %.1f MiB; step peak %.1f MiB "
         "(first step %.1f)\n",
         r->threads, (long long)r->n_params, mib(r->param_bytes), mib(r->grad_bytes),
         mib(r->optim_bytes), mib(r->arena_fwd), mib(r->sum), mib(r->arena_step), mib(r->peak),
         mib(r->first_peak));
  fflush(stdout);
}

static void print_json(const train_result *r) {
  printf("{\"kernel\":\"train\",\"threads\":%d,\"isa\":\"%s\",\"batch\":%d,\"seq\":%d,"
         "\"layers\":%d,\"d_model\":%d,\"heads\":%d,\"ffn\":%d,\"vocab\":%d,\"params\":%lld,"
         "\"steps\":%d,\"warmup\":%d,\"median_s\":%.6e,\"min_s\":%.6e,\"max_s\":%.6e,"
         "\"tokens_per_s\":%.2f,",
         r->threads, attn_isa_name(attn_get_isa()), TR_BATCH, TR_SEQ, TR_LAYERS, TR_DIM, TR_HEADS,
         TR_FFN, TR_VOCAB, (long long)r->n_params, r->steps, TR_WARMUP, r->median_s, r->min_s,
         r->max_s, r->tokens_per_s);
  if (r->speedup > 0) printf("\"speedup_vs_1t\":%.3f,", r->speedup);
  printf("\"loss_first\":%.6f,\"loss_last\":%.6f,\"param_bytes\":%zu,\"grad_bytes\":%zu,"
         "\"optim_bytes\":%zu,\"arena_fwd_bytes\":%zu,\"arena_step_bytes\":%zu,\"peak_bytes\":%zu,"
         "\"first_step_peak_bytes\":%zu,\"mem_sum_bytes\":%zu,\"peak_over_sum\":%.4f}\n",
         (double)r->loss_first, (double)r->loss_last, r->param_bytes, r->grad_bytes,
         r->optim_bytes, r->arena_fwd, r->arena_step, r->peak, r->first_peak, r->sum,
         r->sum ? (double)r->peak / (double)r->sum : 0.0);
  fflush(stdout);
}

/* ---- entry ---------------------------------------------------------------------------------- */

static uint32_t next_token(uint64_t *s) {
  uint64_t x = *s;
  x ^= x << 13;
  x ^= x >> 7;
  x ^= x << 17;
  *s = x;
  return (uint32_t)(x >> 32) % TR_VOCAB;
}

int cli_bench_train_main(int argc, char **argv) {
  train_opts o;
  memset(&o, 0, sizeof o);
  int rc = parse_train_opts(argc, argv, &o);
  if (rc) return rc;
  if (o.help) {
    cli_bench_train_usage(stdout);
    return CLI_EXIT_OK;
  }
  cli_track_install(false); /* before any allocation of libattn */
  if (o.isa) {
    attn_isa isa = !strcmp(o.isa, "avx512") ? ATTN_ISA_AVX512
                   : !strcmp(o.isa, "avx2") ? ATTN_ISA_AVX2
                                            : ATTN_ISA_SCALAR;
    attn_status s = attn_set_isa(isa);
    if (s != ATTN_OK) {
      cli_status_error("attn_set_isa", s);
      return CLI_EXIT_RUNTIME;
    }
  }
  int steps = o.steps ? (int)o.steps : 7;
  int all_threads = attn_get_num_threads();
  int threads[TR_MAX_LIST], n_thr = 0;
  if (o.n_threads > 0) {
    for (int i = 0; i < o.n_threads; i++) threads[n_thr++] = (int)o.threads[i];
  } else {
    threads[n_thr++] = 1;
    if (all_threads > 1) threads[n_thr++] = all_threads;
  }

  /* Random tokens: each batch holds TR_BATCH sequences of TR_SEQ + 1 tokens, stored as the inputs
   * (the first TR_SEQ) followed by the targets (the last TR_SEQ, the next token of each input). */
  const size_t per_batch = (size_t)TR_BATCH * TR_SEQ;
  int32_t *data = malloc(TR_DATA_BATCHES * 2 * per_batch * sizeof *data);
  if (!data) {
    cli_errorf("out of memory");
    return CLI_EXIT_RUNTIME;
  }
  uint64_t seed = 0x9e3779b97f4a7c15ull;
  for (int b = 0; b < TR_DATA_BATCHES; b++) {
    int32_t *ids = data + (size_t)b * 2 * per_batch, *tg = ids + per_batch;
    for (int s = 0; s < TR_BATCH; s++) {
      int32_t prev = (int32_t)next_token(&seed);
      for (int t = 0; t < TR_SEQ; t++) {
        int32_t next = (int32_t)next_token(&seed);
        ids[s * TR_SEQ + t] = prev;
        tg[s * TR_SEQ + t] = next;
        prev = next;
      }
    }
  }

  if (!o.json) print_header(all_threads, &o, steps);
  train_result res[TR_MAX_LIST];
  double one_thread = 0;
  for (int i = 0; i < n_thr && !rc; i++) {
    rc = run_threads(threads[i], steps, data, &res[i]);
    if (rc) break;
    if (threads[i] == 1) one_thread = res[i].tokens_per_s;
    if (threads[i] > 1 && one_thread > 0) res[i].speedup = res[i].tokens_per_s / one_thread;
    if (o.json)
      print_json(&res[i]);
    else
      print_row(&res[i]);
  }
  if (!rc && !o.json)
    for (int i = 0; i < n_thr; i++) print_memory(&res[i]);
  cli_unpin_main_thread();
  free(data);
  return rc;
}
