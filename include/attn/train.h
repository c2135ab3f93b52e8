/*
 * attn/train.h — the training loop behind `attn train` / `eval` / `predict` / `demo`: a small
 * Transformer encoder on a built-in task (attn/tasks.h), checkpoints in a directory, resume.
 *
 * The model (the recipe of tests/test_nn_train.c): token embedding + learned position embedding +
 * learned position-from-the-end embedding, `layers` pre-LN blocks (dim, heads, GELU MLP hidden)
 * over the key-padded sequence, a final layernorm and a linear head giving one distribution over
 * the task's output classes at every position. Trained with cross-entropy on the task's targets
 * (ignore -100), AdamW (its own implementation here, so its state can be checkpointed), linear
 * warmup + cosine decay, global-norm gradient clipping.
 *
 * A checkpoint directory holds
 *   model.safetensors  the parameters (F32, names as the layers give them)
 *   optim.safetensors  AdamW moments "m.<name>", "v.<name>"
 *   config.json        the task, the model, the training settings, the step reached, metrics
 *   log.jsonl          one line a logged step, appended: {"step", "loss", "token_acc",
 *                      "seq_acc", "lr", "tokens_per_s"} (a resumed run appends; readers keep
 *                      the last line of a step)
 * each written to a temporary file and renamed into place (never half-written).
 *
 * Determinism: the batch of step s is examples [s batch, (s + 1) batch) of the train split (of
 * your own data: of the seeded per-epoch order, see `shuffle`), the
 * learning rate is a function of s, and every op gives results independent of the thread count,
 * so a run resumed from a checkpoint ends with weights bit-identical to an uninterrupted run of
 * the same configuration.
 */
#ifndef ATTN_TRAIN_H
#define ATTN_TRAIN_H

#include "attn/nn.h"
#include "attn/tasks.h"

#include <signal.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct attn_train_config {
  attn_task_config task;
  /* model */
  int64_t dim, heads, hidden, layers; /* 64, 4, 128, 2 */
  uint64_t seed;                      /* parameter initialisation; 1 */
  /* training */
  int64_t steps;          /* total optimizer steps; 600 */
  int64_t batch;          /* examples per step; 64 */
  int64_t warmup;         /* linear warmup steps; 50 */
  float lr, min_lr;       /* peak and final learning rate; 3e-3, 1e-4 */
  float weight_decay;     /* AdamW decoupled decay; 0.01 */
  float clip;             /* global gradient norm; 1.0 (0 = no clipping) */
  int64_t log_every;      /* call on_log every this many steps (and at the last one); 20 */
  int64_t ckpt_every;     /* save a checkpoint every this many steps (0 = only at the end); 200 */
  int64_t eval_examples;  /* validation examples evaluated at the end; 500 */
  const char *out_dir;    /* checkpoint directory (created if missing); NULL = none */
  int resume;             /* 1: continue from the checkpoint in out_dir (its config is used; only
                             steps, log_every, ckpt_every and eval_examples are taken from here
                             when > 0) */
  int64_t fault_nan_step; /* testing hook: make the loss of this step NaN; -1 = never */
  /* Your own data (attn/dataset.h). With data_shape.seq_len > 0 the model has this shape (kind,
   * seq_len, vocab, n_classes) instead of the task's, training batch s is examples
   * [s batch, (s + 1) batch) of data_train (modulo its size; required) and the final validation
   * uses the first min(eval_examples, n) examples of data_valid (none when NULL). Checkpoints
   * record the shape as "task": "data"; the caller keeps the vocabularies beside them. */
  attn_task_shape data_shape;
  const struct attn_dataset *data_train, *data_valid;
  /* Own data only: 1 (the default) visits data_train in a new seeded order every epoch:
   * position p = s batch + b of the training stream is example perm_e[p mod n] of epoch
   * e = p / n, perm_e = attn_data_shuffle_order(n, seed, e) (attn/dataset.h), so the order is a
   * function of (seed, epoch) and a resumed run stays bit-identical; 0 keeps the file's order.
   * Saved in config.json ("shuffle"; a checkpoint without it was trained in file order). */
  int shuffle;
} attn_train_config;

/* The defaults above for a task. */
ATTN_API attn_train_config attn_train_config_default(attn_task_id task);

/* Accuracy and loss on examples of a split. */
typedef struct attn_eval_result {
  int64_t examples;
  double loss;      /* mean cross-entropy over target positions */
  double token_acc; /* fraction of target positions right */
  double seq_acc;   /* fraction of examples with every target position right */
} attn_eval_result;

/* What on_log receives. */
typedef struct attn_train_progress {
  int64_t step, total; /* steps done (1-based) and the run's total */
  double loss;         /* mean training loss over the steps since the last log */
  double token_acc;    /* on the training batches since the last log */
  double seq_acc;
  double lr;           /* learning rate of the last step */
  double tokens_per_s; /* input tokens (non-padding) per second since the last log */
  double elapsed_s;    /* since this run (or resume) started */
  double eta_s;        /* estimated seconds to the end of training */
} attn_train_progress;

typedef struct attn_train_callbacks {
  /* Called every log_every steps and at the last step; a non-zero return stops training as an
   * interruption (a checkpoint is saved). May be NULL. */
  int (*on_log)(const attn_train_progress *p, void *user);
  void *user;
  /* Checked before every step: when it points to a non-zero value, training stops, a checkpoint
   * is saved and the run returns with stop == ATTN_TRAIN_INTERRUPTED (a signal handler sets it).
   * May be NULL. */
  const volatile sig_atomic_t *stop;
} attn_train_callbacks;

typedef enum attn_train_stop {
  ATTN_TRAIN_DONE = 0,        /* every step ran; validation evaluated */
  ATTN_TRAIN_INTERRUPTED = 1, /* stop flag or on_log: checkpoint saved at the step reached */
  ATTN_TRAIN_NONFINITE = 2,   /* a NaN/Inf loss or gradient: nothing saved after it */
} attn_train_stop;

typedef struct attn_train_result {
  attn_train_stop stop;
  int64_t start_step;     /* 0, or the step a resume started from */
  int64_t steps_done;     /* optimizer steps applied in total (including before a resume) */
  int64_t last_ckpt_step; /* the step of the last checkpoint written; -1 if none */
  double final_loss;      /* the last finite training loss */
  double seconds;
  int64_t n_params;
  attn_eval_result valid; /* when stop == DONE and eval_examples > 0 */
} attn_train_result;

/* Trains as configured. Returns ATTN_OK when the run ended as result->stop says (a NaN stop is
 * ATTN_OK with stop == NONFINITE), or an error status with attn_last_error (bad configuration,
 * an unreadable or mismatched checkpoint to resume, I/O). */
ATTN_API attn_status attn_train_run(const attn_train_config *cfg, const attn_train_callbacks *cb,
                                    attn_train_result *result);

/* ---- a trained model ------------------------------------------------------------------------ */

typedef struct attn_seq_model attn_seq_model;

/* A fresh model for cfg (initialised from cfg->seed). NULL on error (attn_last_error). */
ATTN_API attn_seq_model *attn_seq_model_new(const attn_train_config *cfg);
/* Loads dir/config.json and dir/model.safetensors. *cfg_out (may be NULL) receives the saved
 * configuration (out_dir NULL, resume 0); *step_out (may be NULL) the step it was saved at.
 * INVALID_ARGUMENT naming the file for a missing, malformed or mismatched checkpoint. */
ATTN_API attn_status attn_seq_model_load(attn_seq_model **model, const char *dir,
                                         attn_train_config *cfg_out, int64_t *step_out);
ATTN_API void attn_seq_model_free(attn_seq_model *m);
ATTN_API int64_t attn_seq_model_numel(const attn_seq_model *m);
/* The parameters (names are the checkpoint's keys). */
ATTN_API const attn_nn_params *attn_seq_model_params(const attn_seq_model *m);

/* Evaluates n examples [0, n) of `split` of `task` (a task with the model's shape: same sequence
 * length and vocabulary; INVALID_ARGUMENT otherwise). */
ATTN_API attn_status attn_seq_model_eval(attn_seq_model *m, const attn_task_config *task,
                                         attn_split split, int64_t n, attn_eval_result *res);
/* Evaluates the first n examples of a dataset (n clipped to ds->n) with the model's shape. */
ATTN_API attn_status attn_seq_model_eval_data(attn_seq_model *m, const struct attn_dataset *ds,
                                              int64_t n, attn_eval_result *res);
/* The argmax output at every position of one input ids[0, len) (len <= the model's sequence
 * length, tokens in [0, vocab)): out[0, len). */
ATTN_API attn_status attn_seq_model_predict(attn_seq_model *m, const int32_t *ids, int32_t len,
                                            int32_t *out);

/* Attention weights of every layer and head for one input ids[0, len): weights receives
 * (layers, heads, len, len) floats, row i of a head being query position i's softmax over keys
 * 0..len-1 (the padding keys are masked, as in training). */
ATTN_API attn_status attn_seq_model_attention(attn_seq_model *m, const int32_t *ids, int32_t len,
                                              float *weights);

#ifdef __cplusplus
}
#endif

#endif /* ATTN_TRAIN_H */
