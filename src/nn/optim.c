/* Optimizers (SGD with momentum / Nesterov, Adam, AdamW), global-norm clipping, schedules. */
#include "nn_internal.h"

struct attn_nn_optim {
  attn_nn_optim_config cfg;
  attn_var **items;      /* own copy of the list's parameter pointers */
  int64_t n;
  float **m, **v;        /* per parameter: momentum / first moment, second moment (or NULL) */
  int64_t t;             /* steps taken */
};

attn_nn_optim_config attn_nn_optim_config_default(attn_nn_optim_kind kind) {
  attn_nn_optim_config c;
  memset(&c, 0, sizeof c);
  c.kind = kind;
  c.lr = 1e-3f;
  c.beta1 = 0.9f;
  c.beta2 = 0.999f;
  c.eps = 1e-8f;
  c.weight_decay = kind == ATTN_NN_OPTIM_ADAMW ? 0.01f : 0.0f;
  return c;
}

void attn_nn_optim_free(attn_nn_optim *opt) {
  if (!opt) return;
  for (int64_t i = 0; i < opt->n; i++) {
    if (opt->m) attn__free(opt->m[i]);
    if (opt->v) attn__free(opt->v[i]);
  }
  attn__free(opt->m);
  attn__free(opt->v);
  attn__free(opt->items);
  attn__free(opt);
}

attn_nn_optim *attn_nn_optim_new(const attn_nn_optim_config *cfg, const attn_nn_params *params) {
  attn__clear_error();
  if (!cfg || !params) {
    attn__fail(ATTN_STATUS_NULL_POINTER, "attn_nn_optim_new: cfg or params is NULL");
    return NULL;
  }
  if ((int)cfg->kind < ATTN_NN_OPTIM_SGD || (int)cfg->kind > ATTN_NN_OPTIM_ADAMW ||
      !(cfg->lr >= 0.0f) || !(cfg->momentum >= 0.0f) || !(cfg->weight_decay >= 0.0f) ||
      !(cfg->beta1 >= 0.0f && cfg->beta1 < 1.0f) || !(cfg->beta2 >= 0.0f && cfg->beta2 < 1.0f) ||
      !(cfg->eps >= 0.0f)) {
    attn__fail(ATTN_STATUS_INVALID_ARGUMENT, "attn_nn_optim_new: invalid configuration");
    return NULL;
  }
  for (int64_t i = 0; i < params->n; i++)
    if (!params->items[i] || !params->items[i]->grad) {
      attn__fail(ATTN_STATUS_INVALID_ARGUMENT, "attn_nn_optim_new: parameter %lld has no gradient",
                 (long long)i);
      return NULL;
    }
  attn_nn_optim *opt = attn__malloc(sizeof *opt, ATTN_ALIGN);
  if (!opt) goto oom;
  memset(opt, 0, sizeof *opt);
  opt->cfg = *cfg;
  const int64_t n = params->n;
  opt->items = attn__malloc((size_t)(n ? n : 1) * sizeof(attn_var *), 16);
  if (!opt->items) goto oom;
  if (n) memcpy(opt->items, params->items, (size_t)n * sizeof(attn_var *));
  opt->n = n;
  const bool adam = cfg->kind != ATTN_NN_OPTIM_SGD;
  if (n && (adam || cfg->momentum > 0.0f)) {
    opt->m = attn__malloc((size_t)n * sizeof(float *), 16);
    if (!opt->m) goto oom;
    memset(opt->m, 0, (size_t)n * sizeof(float *));
  }
  if (n && adam) {
    opt->v = attn__malloc((size_t)n * sizeof(float *), 16);
    if (!opt->v) goto oom;
    memset(opt->v, 0, (size_t)n * sizeof(float *));
  }
  for (int64_t i = 0; i < n; i++) {
    const size_t bytes = (size_t)params->items[i]->numel * sizeof(float);
    if (opt->m) {
      if (!(opt->m[i] = attn__malloc(bytes, ATTN_ALIGN))) goto oom;
      memset(opt->m[i], 0, bytes);
    }
    if (opt->v) {
      if (!(opt->v[i] = attn__malloc(bytes, ATTN_ALIGN))) goto oom;
      memset(opt->v[i], 0, bytes);
    }
  }
  return opt;
oom:
  attn_nn_optim_free(opt);
  attn__fail(ATTN_STATUS_OUT_OF_MEMORY, "attn_nn_optim_new: out of memory");
  return NULL;
}

void attn_nn_optim_set_lr(attn_nn_optim *opt, float lr) {
  if (opt) opt->cfg.lr = lr;
}

attn_status attn_nn_optim_step(attn_nn_optim *opt) {
  attn__clear_error();
  if (!opt) return attn__fail(ATTN_STATUS_NULL_POINTER, "attn_nn_optim_step: opt is NULL");
  const attn_nn_optim_config *c = &opt->cfg;
  opt->t++;
  const float lr = c->lr, wd = c->weight_decay;
  /* Bias corrections of Adam, in double so early steps are exact. */
  const double bc1 = 1.0 - pow((double)c->beta1, (double)opt->t);
  const double bc2 = 1.0 - pow((double)c->beta2, (double)opt->t);
  const float step_size = (float)((double)lr / bc1), inv_sqrt_bc2 = (float)(1.0 / sqrt(bc2));
  for (int64_t i = 0; i < opt->n; i++) {
    attn_var *p = opt->items[i];
    float *w = p->data, *g = p->grad;
    const int64_t n = p->numel;
    if (c->kind == ATTN_NN_OPTIM_SGD) {
      float *m = opt->m ? opt->m[i] : NULL;
      for (int64_t j = 0; j < n; j++) {
        float gj = g[j] + wd * w[j];
        if (m) {
          m[j] = c->momentum * m[j] + gj;
          gj = c->nesterov ? gj + c->momentum * m[j] : m[j];
        }
        w[j] -= lr * gj;
      }
    } else {
      float *m = opt->m[i], *v = opt->v[i];
      const bool decoupled = c->kind == ATTN_NN_OPTIM_ADAMW;
      for (int64_t j = 0; j < n; j++) {
        float gj = g[j];
        if (decoupled)
          w[j] -= lr * wd * w[j];
        else
          gj += wd * w[j];
        m[j] = c->beta1 * m[j] + (1.0f - c->beta1) * gj;
        v[j] = c->beta2 * v[j] + (1.0f - c->beta2) * gj * gj;
        w[j] -= step_size * m[j] / (sqrtf(v[j]) * inv_sqrt_bc2 + c->eps);
      }
    }
  }
  return ATTN_OK;
}

attn_status attn_nn_clip_grad_norm(const attn_nn_params *params, float max_norm, float *norm_out) {
  attn__clear_error();
  if (!params) return attn__fail(ATTN_STATUS_NULL_POINTER, "attn_nn_clip_grad_norm: params is NULL");
  if (!(max_norm > 0.0f))
    return attn__fail(ATTN_STATUS_INVALID_ARGUMENT, "attn_nn_clip_grad_norm: max_norm must be > 0");
  double ss = 0;
  for (int64_t i = 0; i < params->n; i++) {
    const attn_var *p = params->items[i];
    if (!p || !p->grad) continue;
    for (int64_t j = 0; j < p->numel; j++) ss += (double)p->grad[j] * p->grad[j];
  }
  const double norm = sqrt(ss);
  if (norm_out) *norm_out = (float)norm;
  const double coef = (double)max_norm / (norm + 1e-6);
  if (coef < 1.0)
    for (int64_t i = 0; i < params->n; i++) {
      attn_var *p = params->items[i];
      if (!p || !p->grad) continue;
      for (int64_t j = 0; j < p->numel; j++) p->grad[j] = (float)(p->grad[j] * coef);
    }
  return ATTN_OK;
}

float attn_nn_lr_warmup_cosine(int64_t step, int64_t warmup, int64_t total_steps, float base_lr,
                               float min_lr) {
  if (step < 0) step = 0;
  if (warmup > 0 && step < warmup) return base_lr * (float)(step + 1) / (float)warmup;
  if (step >= total_steps || total_steps <= warmup) return min_lr;
  const double progress = (double)(step - warmup) / (double)(total_steps - warmup);
  return min_lr + (base_lr - min_lr) * (float)(0.5 * (1.0 + cos(3.141592653589793 * progress)));
}

float attn_nn_lr_step(int64_t step, int64_t step_size, float gamma, float base_lr) {
  if (step < 0) step = 0;
  if (step_size < 1) step_size = 1;
  return base_lr * (float)pow((double)gamma, (double)(step / step_size));
}
