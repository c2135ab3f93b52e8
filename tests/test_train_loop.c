/* The training loop of attn/train.h on tiny settings: the loss falls, a checkpoint reloaded
 * evaluates identically, a run interrupted and resumed ends bit-identical to an uninterrupted one,
 * the stop flag saves a loadable checkpoint, a NaN loss stops and keeps the last good checkpoint,
 * bad configurations and checkpoints are errors with messages. Without ATTN_TEST_QUICK it also
 * trains reversal to >= 95 % sequence accuracy (the demo's bar). */
#include "attn/train.h"
#include "common.h"

#include <signal.h>
#include <stdlib.h>
#include <unistd.h>

static char g_root[256];

static void make_root(void) {
  const char *tmp = getenv("TMPDIR");
  snprintf(g_root, sizeof g_root, "%s/attn_train_XXXXXX", tmp && *tmp ? tmp : "/tmp");
  if (!mkdtemp(g_root)) {
    perror("mkdtemp");
    exit(1);
  }
}

static void rm_ckpt(const char *dir) {
  static const char *const files[] = {"model.safetensors", "optim.safetensors", "config.json",
                                      "log.jsonl"};
  char p[512];
  for (int i = 0; i < 4; i++) {
    snprintf(p, sizeof p, "%s/%s", dir, files[i]);
    remove(p);
  }
  rmdir(dir);
}

static void subdir(char *buf, size_t cap, const char *name) {
  snprintf(buf, cap, "%s/%s", g_root, name);
}

static attn_train_config tiny(void) {
  attn_train_config c = attn_train_config_default(ATTN_TASK_REVERSE);
  c.task.min_len = 3;
  c.task.max_len = 6;
  c.task.n_symbols = 6;
  c.dim = 16;
  c.heads = 2;
  c.hidden = 32;
  c.layers = 1;
  c.batch = 8;
  c.steps = 12;
  c.warmup = 3;
  c.log_every = 1;
  c.ckpt_every = 0;
  c.eval_examples = 30;
  return c;
}

typedef struct log_rec {
  double first, last;
  int64_t n, stop_at;
  volatile sig_atomic_t *flag;
  int64_t flag_at;
} log_rec;

static volatile sig_atomic_t g_flag = 0;
static void on_sigint(int sig) {
  (void)sig;
  g_flag = 1;
}

static int on_log(const attn_train_progress *p, void *user) {
  log_rec *r = user;
  if (r->n == 0) r->first = p->loss;
  r->last = p->loss;
  r->n++;
  CHECK(p->step >= 1 && p->step <= p->total && isfinite(p->loss) && p->token_acc >= 0 &&
            p->token_acc <= 1 && p->tokens_per_s >= 0 && p->eta_s >= 0,
        "progress fields");
  if (r->flag && p->step == r->flag_at) {
    if (r->flag == &g_flag)
      raise(SIGINT); /* a real signal through the handler */
    else
      *r->flag = 1;
  }
  return r->stop_at > 0 && p->step == r->stop_at;
}

static int same_params(const attn_seq_model *a, const attn_seq_model *b) {
  const attn_nn_params *pa = attn_seq_model_params(a), *pb = attn_seq_model_params(b);
  if (pa->n != pb->n) return 0;
  for (int64_t i = 0; i < pa->n; i++)
    if (pa->items[i]->numel != pb->items[i]->numel ||
        memcmp(pa->items[i]->data, pb->items[i]->data, (size_t)pa->items[i]->numel * sizeof(float)))
      return 0;
  return 1;
}

static void test_learns(void) {
  attn_train_config c = tiny();
  c.steps = 40;
  c.log_every = 10;
  c.task.id = ATTN_TASK_COPY;
  log_rec r = {0};
  attn_train_callbacks cb = {on_log, &r, NULL};
  attn_train_result res;
  CHECK_OK(attn_train_run(&c, &cb, &res));
  CHECK(res.stop == ATTN_TRAIN_DONE && res.steps_done == 40 && r.n == 4,
        "stop %d steps %lld logs %lld", (int)res.stop, (long long)res.steps_done, (long long)r.n);
  CHECK(r.last < r.first, "loss %g -> %g", r.first, r.last);
  CHECK(res.valid.examples == 30 && res.valid.token_acc > 0, "valid");
}

static void test_ckpt_resume(void) {
  char a[300], b[300];
  subdir(a, sizeof a, "a");
  subdir(b, sizeof b, "b");
  attn_train_config c = tiny();
  attn_train_result ra, rb, rc;
  /* Uninterrupted. */
  c.out_dir = a;
  CHECK_OK(attn_train_run(&c, NULL, &ra));
  CHECK(ra.stop == ATTN_TRAIN_DONE && ra.last_ckpt_step == c.steps, "run a: stop %d ckpt %lld",
        (int)ra.stop, (long long)ra.last_ckpt_step);
  /* The checkpoint reloaded evaluates exactly as at the end of training. */
  attn_seq_model *ma = NULL;
  attn_train_config loaded;
  int64_t step = -1;
  CHECK_OK(attn_seq_model_load(&ma, a, &loaded, &step));
  if (ma) {
    attn_eval_result ev;
    CHECK_OK(attn_seq_model_eval(ma, &loaded.task, ATTN_SPLIT_VALID, c.eval_examples, &ev));
    CHECK(
        step == c.steps && loaded.task.id == c.task.id && loaded.dim == c.dim && loaded.lr == c.lr,
        "loaded config");
    CHECK(ev.loss == ra.valid.loss && ev.seq_acc == ra.valid.seq_acc &&
              ev.token_acc == ra.valid.token_acc,
          "reloaded eval loss %.9g vs %.9g", ev.loss, ra.valid.loss);
    int32_t in[4] = {1, 2, 3, 4}, out[4] = {-1, -1, -1, -1};
    CHECK_OK(attn_seq_model_predict(ma, in, 4, out));
    CHECK(out[0] >= 0 && out[0] < c.task.n_symbols + 2, "predict");
    CHECK_STATUS(attn_seq_model_predict(ma, in, 0, out), ATTN_STATUS_INVALID_ARGUMENT);
    /* Attention weights: (layers, heads, 4, 4), each row a distribution over the 4 keys. */
    float w[1 * 2 * 4 * 4];
    CHECK_OK(attn_seq_model_attention(ma, in, 4, w));
    for (int r = 0; r < 2 * 4; r++) {
      double sum = 0;
      for (int k = 0; k < 4; k++) sum += w[r * 4 + k];
      CHECK(fabs(sum - 1) < 1e-5 && w[r * 4] >= 0, "attention row %d sums to %g", r, sum);
    }
    CHECK_STATUS(attn_seq_model_attention(ma, in, 99, w), ATTN_STATUS_INVALID_ARGUMENT);
    /* Another task's shape does not fit this model. */
    attn_task_config other = loaded.task;
    other.max_len = 9;
    CHECK_STATUS(attn_seq_model_eval(ma, &other, ATTN_SPLIT_TEST, 10, &ev),
                 ATTN_STATUS_INVALID_ARGUMENT);
  }
  /* Interrupted at step 5 through on_log, then resumed. */
  log_rec r = {0};
  r.stop_at = 5;
  attn_train_callbacks cb = {on_log, &r, NULL};
  c.out_dir = b;
  CHECK_OK(attn_train_run(&c, &cb, &rb));
  CHECK(rb.stop == ATTN_TRAIN_INTERRUPTED && rb.steps_done == 5 && rb.last_ckpt_step == 5,
        "run b: stop %d at %lld", (int)rb.stop, (long long)rb.steps_done);
  attn_train_config rcfg =
      attn_train_config_default(ATTN_TASK_COPY); /* ignored but for steps etc. */
  rcfg.steps = rcfg.log_every = rcfg.ckpt_every = rcfg.eval_examples = 0;
  rcfg.out_dir = b;
  rcfg.resume = 1;
  CHECK_OK(attn_train_run(&rcfg, NULL, &rc));
  CHECK(rc.stop == ATTN_TRAIN_DONE && rc.start_step == 5 && rc.steps_done == c.steps,
        "resume: %d %lld %lld", (int)rc.stop, (long long)rc.start_step, (long long)rc.steps_done);
  attn_seq_model *mb = NULL;
  CHECK_OK(attn_seq_model_load(&mb, b, NULL, NULL));
  if (ma && mb) CHECK(same_params(ma, mb), "resumed weights differ from the uninterrupted run");
  CHECK(rc.valid.loss == ra.valid.loss, "resumed valid loss %.9g vs %.9g", rc.valid.loss,
        ra.valid.loss);
  attn_seq_model_free(mb);
  rm_ckpt(b);

  /* The stop flag (what the CLI's signal handler sets): a loadable checkpoint at the step reached.
   */
  volatile sig_atomic_t flag = 0;
  log_rec r2 = {0};
  r2.flag = &flag;
  r2.flag_at = 4;
  attn_train_callbacks cb2 = {on_log, &r2, &flag};
  CHECK_OK(attn_train_run(&c, &cb2, &rb));
  CHECK(rb.stop == ATTN_TRAIN_INTERRUPTED && rb.last_ckpt_step == 4, "flag stop %d at %lld",
        (int)rb.stop, (long long)rb.last_ckpt_step);
  CHECK_OK(attn_seq_model_load(&mb, b, NULL, &step));
  CHECK(step == 4, "flag checkpoint step %lld", (long long)step);
  attn_seq_model_free(mb);
  rm_ckpt(b);

  /* A real SIGINT (raised at step 3, as Ctrl-C would): the handler sets the flag, the run stops
   * after the step in flight and leaves a loadable checkpoint. */
  void (*old)(int) = signal(SIGINT, on_sigint);
  log_rec r3 = {0};
  r3.flag = &g_flag;
  r3.flag_at = 3;
  attn_train_callbacks cb3 = {on_log, &r3, &g_flag};
  CHECK_OK(attn_train_run(&c, &cb3, &rb));
  signal(SIGINT, old);
  CHECK(rb.stop == ATTN_TRAIN_INTERRUPTED && rb.last_ckpt_step == 3, "sigint stop %d at %lld",
        (int)rb.stop, (long long)rb.last_ckpt_step);
  CHECK_OK(attn_seq_model_load(&mb, b, NULL, &step));
  CHECK(step == 3, "sigint checkpoint step %lld", (long long)step);
  attn_seq_model_free(mb);
  rm_ckpt(b);

  /* A NaN loss at step 8 with checkpoints every 3 steps: stops, keeps the step-6 checkpoint. */
  c.ckpt_every = 3;
  c.fault_nan_step = 7; /* 0-based: the 8th step */
  CHECK_OK(attn_train_run(&c, NULL, &rb));
  CHECK(rb.stop == ATTN_TRAIN_NONFINITE && rb.steps_done == 7 && rb.last_ckpt_step == 6,
        "nan: %d %lld %lld", (int)rb.stop, (long long)rb.steps_done, (long long)rb.last_ckpt_step);
  CHECK_OK(attn_seq_model_load(&mb, b, NULL, &step));
  CHECK(step == 6, "nan checkpoint step %lld", (long long)step);
  attn_seq_model_free(mb);

  /* Mismatched checkpoint files: a model from run a with the config of run b. */
  char p1[400], p2[400];
  snprintf(p1, sizeof p1, "%s/model.safetensors", a);
  snprintf(p2, sizeof p2, "%s/model.safetensors", b);
  FILE *fi = fopen(p1, "rb"), *fo = fopen(p2, "wb");
  if (fi && fo) {
    char buf[4096];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, fi)) > 0) fwrite(buf, 1, n, fo);
  }
  if (fi) fclose(fi);
  if (fo) fclose(fo);
  CHECK_STATUS(attn_seq_model_load(&mb, b, NULL, NULL), ATTN_STATUS_INVALID_ARGUMENT);
  CHECK(strstr(attn_last_error(), "step") != NULL, "message: %s", attn_last_error());
  /* A missing checkpoint and a malformed config. */
  char missing[300];
  subdir(missing, sizeof missing, "nothing");
  CHECK_STATUS(attn_seq_model_load(&mb, missing, NULL, NULL), ATTN_STATUS_INVALID_ARGUMENT);
  CHECK(strstr(attn_last_error(), "config.json") != NULL, "message: %s", attn_last_error());
  snprintf(p2, sizeof p2, "%s/config.json", b);
  fo = fopen(p2, "w");
  if (fo) {
    fputs("{\"format\": \"attn-seq-model\", \"task\": \"reverse\"", fo);
    fclose(fo);
  }
  CHECK_STATUS(attn_seq_model_load(&mb, b, NULL, NULL), ATTN_STATUS_INVALID_ARGUMENT);
  CHECK(mb == NULL, "no model on error");
  rm_ckpt(b);
  attn_seq_model_free(ma);
  rm_ckpt(a);
}

static void test_bad_config(void) {
  attn_train_config c = tiny();
  attn_train_result r;
  c.heads = 3; /* 16 % 3 != 0 */
  CHECK_STATUS(attn_train_run(&c, NULL, &r), ATTN_STATUS_INVALID_ARGUMENT);
  CHECK(strstr(attn_last_error(), "heads") != NULL, "message: %s", attn_last_error());
  c = tiny();
  c.lr = -1;
  CHECK_STATUS(attn_train_run(&c, NULL, &r), ATTN_STATUS_INVALID_ARGUMENT);
  c = tiny();
  c.task.n_symbols = 0;
  CHECK_STATUS(attn_train_run(&c, NULL, &r), ATTN_STATUS_INVALID_ARGUMENT);
  c = tiny();
  c.resume = 1; /* no directory */
  CHECK_STATUS(attn_train_run(&c, NULL, &r), ATTN_STATUS_INVALID_ARGUMENT);
}

/* The demo's bar: the default configuration reverses >= 95 % of validation sequences. */
static void test_demo_bar(void) {
  attn_train_config c = attn_train_config_default(ATTN_TASK_REVERSE);
  attn_train_result r;
  CHECK_OK(attn_train_run(&c, NULL, &r));
  printf("reverse, %lld steps: validation sequence accuracy %.1f%% in %.1f s\n",
         (long long)r.steps_done, 100 * r.valid.seq_acc, r.seconds);
  CHECK(r.valid.seq_acc >= 0.95, "sequence accuracy %.3f", r.valid.seq_acc);
}

int main(void) {
  const char *q = getenv("ATTN_TEST_QUICK");
  const int quick = q && q[0] && strcmp(q, "0");
  make_root();
  test_learns();
  test_ckpt_resume();
  test_bad_config();
  if (!quick) test_demo_bar();
  rmdir(g_root);
  return t_finish("test_train_loop");
}
