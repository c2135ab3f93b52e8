/* A persistent thread pool. Workers sleep on a condition variable between jobs and spin briefly
 * before sleeping so back-to-back kernels do not pay a wake-up each. Work is handed out as item
 * indices from an atomic counter; results must not depend on which thread ran an item.
 *
 * The caller runs items too and returns once every item has finished and no worker is inside the
 * job: it never waits for a worker that has not started yet (one whose core another process
 * holds); the caller just takes that worker's share. A worker joins a job by announcing itself
 * (`inside`) and then checking that the job is still open; the caller closes the job before its
 * last check of `inside`, so a worker either is counted or sees the job closed (both sides use
 * sequentially consistent atomics). A late worker may instead see the next job open, and then
 * simply helps with that one: the job's state is published before it is opened.
 *
 * Shared nested jobs (attn__parallel_for_shared): an item of a job may publish its own items in
 * its thread's team slot; threads that have run out of items of the outer job, while it is not
 * finished, help with them instead of waiting. The slot uses the same protocol (open, inside)
 * as the outer job, so its owner returns only when every helper that joined has left. */
#define _GNU_SOURCE
#include "internal.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <unistd.h>

#define MAX_THREADS 1024

/* A thread's shared nested job (see the top). Fields are written by the owner before `open`. */
typedef struct team_job {
  attn__task_fn fn;
  void *ctx;
  int64_t n_items;
  atomic_int_fast64_t next;
  atomic_int open;
  atomic_int inside;
  char pad[64]; /* one slot per cache line or two: owners write their own slot only */
} team_job;

typedef struct pool {
  pthread_mutex_t mu;
  pthread_cond_t wake;
  pthread_cond_t done;
  pthread_t *workers;
  int n_workers; /* threads besides the caller */
  bool stop;
  /* current job */
  atomic_uint_fast64_t generation;
  attn__task_fn fn;
  void *ctx;
  int64_t n_items;
  atomic_int_fast64_t next;
  atomic_int_fast64_t finished; /* items done (workers add their count when they leave) */
  atomic_int open;              /* 1 while the current job accepts workers */
  atomic_int inside;            /* workers that joined the current job and have not left */
  team_job *team;               /* n_workers + 1 slots, by thread id */
} pool;

static pthread_mutex_t pool_lock = PTHREAD_MUTEX_INITIALIZER; /* one job at a time */
static pool *the_pool;
static int requested_threads; /* 0 = not set yet */
static _Thread_local bool inside_pool_job;
static _Thread_local int pool_tid; /* this thread's id in the job it is inside */

static int online_cpus(void) {
  long n = sysconf(_SC_NPROCESSORS_ONLN);
  return n < 1 ? 1 : (n > MAX_THREADS ? MAX_THREADS : (int)n);
}

static int default_threads(void) {
  const char *env = getenv("ATTN_NUM_THREADS");
  if (env && *env) {
    char *end;
    long n = strtol(env, &end, 10);
    if (*end == '\0' && n >= 1 && n <= MAX_THREADS) return (int)n;
  }
  return online_cpus();
}

attn_status attn_set_num_threads(int n) {
  attn__clear_error();
  if (n < 1 || n > MAX_THREADS)
    return attn__fail(ATTN_STATUS_INVALID_ARGUMENT, "attn_set_num_threads: n = %d outside 1..%d", n,
                      MAX_THREADS);
  pthread_mutex_lock(&pool_lock);
  requested_threads = n;
  pthread_mutex_unlock(&pool_lock);
  return ATTN_OK;
}

int attn_get_num_threads(void) {
  pthread_mutex_lock(&pool_lock);
  if (!requested_threads) requested_threads = default_threads();
  int n = requested_threads;
  pthread_mutex_unlock(&pool_lock);
  return n;
}

int attn__pool_size(void) { return inside_pool_job ? 1 : attn_get_num_threads(); }

/* One spin of a busy wait. */
static inline void cpu_relax(void) {
#if ATTN_X86
  __builtin_ia32_pause();
#endif
}

/* Claim items of [0, n) from *next and run them until none is left; returns how many ran here. */
static int64_t claim_and_run(atomic_int_fast64_t *next, int64_t n, attn__task_fn fn, void *ctx,
                             int tid) {
  int64_t done = 0;
  for (;;) {
    int64_t item = atomic_fetch_add_explicit(next, 1, memory_order_relaxed);
    if (item >= n) break;
    fn(ctx, item, tid);
    done++;
  }
  return done;
}

static int64_t run_items(pool *p, int tid) {
  return claim_and_run(&p->next, p->n_items, p->fn, p->ctx, tid);
}

int attn__team_size(void) {
  if (!inside_pool_job) return attn_get_num_threads();
  return the_pool ? the_pool->n_workers + 1 : 1;
}

/* Run items of team slot j's job if it is open (the outer job's `inside` protocol, per slot). */
static bool team_help(team_job *j, int tid) {
  if (!atomic_load(&j->open)) return false;
  atomic_fetch_add(&j->inside, 1);
  bool helped =
      atomic_load(&j->open) && claim_and_run(&j->next, j->n_items, j->fn, j->ctx, tid) > 0;
  atomic_fetch_sub(&j->inside, 1);
  return helped;
}

/* Out of items of the outer job: help the other threads' shared jobs until it finishes, giving
 * up after a while without work (the caller then waits as usual, sleeping if need be). */
static void help_until_finished(pool *p, int tid, int64_t n_items) {
  int idle = 0;
  while (idle < 200000 && atomic_load(&p->finished) < n_items) {
    bool helped = false;
    for (int t = 0; t <= p->n_workers; t++)
      if (t != tid && team_help(&p->team[t], tid)) helped = true;
    if (helped) {
      idle = 0;
    } else {
      idle++;
      cpu_relax();
    }
  }
}

void attn__parallel_for_shared(int64_t n_items, attn__task_fn fn, void *ctx) {
  if (n_items <= 0) return;
  pool *p = the_pool;
  if (!inside_pool_job || !p || n_items == 1) {
    attn__parallel_for(n_items, fn, ctx);
    return;
  }
  team_job *j = &p->team[pool_tid];
  j->fn = fn;
  j->ctx = ctx;
  j->n_items = n_items;
  atomic_store(&j->next, 0);
  atomic_store(&j->open, 1);
  claim_and_run(&j->next, n_items, fn, ctx, pool_tid);
  /* Close, then wait for helpers still inside (each finishes the item it holds). */
  atomic_store(&j->open, 0);
  while (atomic_load(&j->inside) > 0) cpu_relax();
}

/* A worker's part of the current job (if it is still open). */
static void worker_join(pool *p, int tid) {
  atomic_fetch_add(&p->inside, 1);
  int64_t done = 0;
  bool joined = atomic_load(&p->open);
  if (joined) done = run_items(p, tid);
  bool last_item =
      done > 0 && atomic_fetch_add(&p->finished, done) + done == p->n_items;
  if (joined && !last_item) help_until_finished(p, tid, p->n_items);
  bool last_out = atomic_fetch_sub(&p->inside, 1) == 1;
  if (last_item || last_out) {
    pthread_mutex_lock(&p->mu);
    pthread_cond_signal(&p->done);
    pthread_mutex_unlock(&p->mu);
  }
}

typedef struct worker_arg {
  pool *p;
  int tid;
} worker_arg;

static void pin_to_cpu(int index) {
#ifdef __linux__
  cpu_set_t allowed;
  if (sched_getaffinity(0, sizeof allowed, &allowed) != 0) return;
  int count = CPU_COUNT(&allowed);
  if (count <= 1) return;
  int want = index % count, seen = 0;
  for (int c = 0; c < CPU_SETSIZE; c++) {
    if (!CPU_ISSET(c, &allowed)) continue;
    if (seen++ == want) {
      cpu_set_t one;
      CPU_ZERO(&one);
      CPU_SET(c, &one);
      pthread_setaffinity_np(pthread_self(), sizeof one, &one); /* best effort */
      return;
    }
  }
#else
  (void)index;
#endif
}

static void *worker_main(void *argp) {
  worker_arg arg = *(worker_arg *)argp;
  free(argp);
  pool *p = arg.p;
  inside_pool_job = true;
  pool_tid = arg.tid;
  pin_to_cpu(arg.tid);
  uint64_t seen = 0;
  for (;;) {
    /* Spin a little for the next job, then sleep. */
    uint64_t gen = atomic_load_explicit(&p->generation, memory_order_acquire);
    for (int spin = 0; gen == seen && spin < 20000; spin++) {
      cpu_relax();
      gen = atomic_load_explicit(&p->generation, memory_order_acquire);
    }
    if (gen == seen) {
      pthread_mutex_lock(&p->mu);
      while (!p->stop && atomic_load(&p->generation) == seen) pthread_cond_wait(&p->wake, &p->mu);
      bool stop = p->stop;
      pthread_mutex_unlock(&p->mu);
      if (stop) return NULL;
      gen = atomic_load(&p->generation);
    }
    if (p->stop) return NULL;
    seen = gen;
    worker_join(p, arg.tid);
  }
}

static void pool_destroy(pool *p) {
  if (!p) return;
  pthread_mutex_lock(&p->mu);
  p->stop = true;
  atomic_fetch_add(&p->generation, 1);
  pthread_cond_broadcast(&p->wake);
  pthread_mutex_unlock(&p->mu);
  for (int i = 0; i < p->n_workers; i++) pthread_join(p->workers[i], NULL);
  pthread_mutex_destroy(&p->mu);
  pthread_cond_destroy(&p->wake);
  pthread_cond_destroy(&p->done);
  free(p->workers);
  free(p->team);
  free(p);
}

/* The pool's own bookkeeping uses malloc, not the allocator hook: it lives across calls and must
 * not be charged to (or fail with) a caller's allocator. If it cannot be created, work runs
 * serially, which gives the same results. */
static pool *pool_create(int n_workers) {
  pool *p = calloc(1, sizeof *p);
  if (!p) return NULL;
  p->workers = calloc((size_t)n_workers, sizeof *p->workers);
  p->team = calloc((size_t)n_workers + 1, sizeof *p->team);
  if (!p->workers || !p->team) {
    free(p->workers);
    free(p->team);
    free(p);
    return NULL;
  }
  for (int i = 0; i <= n_workers; i++) {
    atomic_init(&p->team[i].next, 0);
    atomic_init(&p->team[i].open, 0);
    atomic_init(&p->team[i].inside, 0);
  }
  pthread_mutex_init(&p->mu, NULL);
  pthread_cond_init(&p->wake, NULL);
  pthread_cond_init(&p->done, NULL);
  atomic_init(&p->generation, 0);
  atomic_init(&p->next, 0);
  atomic_init(&p->finished, 0);
  atomic_init(&p->open, 0);
  atomic_init(&p->inside, 0);
  for (int i = 0; i < n_workers; i++) {
    worker_arg *arg = malloc(sizeof *arg);
    if (!arg || (arg->p = p, arg->tid = i + 1,
                 pthread_create(&p->workers[i], NULL, worker_main, arg) != 0)) {
      free(arg);
      p->n_workers = i;
      pool_destroy(p);
      return NULL;
    }
    p->n_workers = i + 1;
  }
  return p;
}

/* The caller's wait: while items of the job are unfinished (leaving = false) or while workers are
 * inside it (leaving = true). Spin briefly, then sleep on `done` (workers signal both events). */
static bool still(pool *p, int64_t n_items, bool leaving) {
  return leaving ? atomic_load(&p->inside) > 0 : atomic_load(&p->finished) < n_items;
}

static void wait_while(pool *p, int64_t n_items, bool leaving) {
  for (int spin = 0; spin < 200000 && still(p, n_items, leaving); spin++) {
    cpu_relax();
  }
  if (!still(p, n_items, leaving)) return;
  pthread_mutex_lock(&p->mu);
  while (still(p, n_items, leaving)) pthread_cond_wait(&p->done, &p->mu);
  pthread_mutex_unlock(&p->mu);
}

void attn__parallel_for(int64_t n_items, attn__task_fn fn, void *ctx) {
  if (n_items <= 0) return;
  int threads = attn__pool_size();
  if (inside_pool_job || threads == 1 || n_items == 1 || pthread_mutex_trylock(&pool_lock) != 0) {
    /* Serial: nested call, one thread, or another caller holds the pool. */
    for (int64_t i = 0; i < n_items; i++) fn(ctx, i, 0);
    return;
  }
  threads = requested_threads;
  if (the_pool && the_pool->n_workers != threads - 1) {
    pool_destroy(the_pool);
    the_pool = NULL;
  }
  if (!the_pool) the_pool = pool_create(threads - 1);
  pool *p = the_pool;
  if (!p) {
    pthread_mutex_unlock(&pool_lock);
    for (int64_t i = 0; i < n_items; i++) fn(ctx, i, 0);
    return;
  }
  /* Publish the job (no worker is inside: the previous call waited for that), then open it. */
  p->fn = fn;
  p->ctx = ctx;
  p->n_items = n_items;
  atomic_store(&p->next, 0);
  atomic_store(&p->finished, 0);
  atomic_store(&p->open, 1);
  pthread_mutex_lock(&p->mu);
  atomic_fetch_add_explicit(&p->generation, 1, memory_order_release);
  pthread_cond_broadcast(&p->wake);
  pthread_mutex_unlock(&p->mu);

  inside_pool_job = true;
  pool_tid = 0;
  int64_t mine = run_items(p, 0);
  if (atomic_fetch_add(&p->finished, mine) + mine < n_items) help_until_finished(p, 0, n_items);
  inside_pool_job = false;

  /* Wait until every item has finished, close the job, then wait for the workers that joined it
   * to leave (they have no items left, so this is short). */
  wait_while(p, n_items, false);
  atomic_store(&p->open, 0);
  wait_while(p, n_items, true);
  pthread_mutex_unlock(&pool_lock);
}

void attn_shutdown(void) {
  pthread_mutex_lock(&pool_lock);
  pool_destroy(the_pool);
  the_pool = NULL;
  pthread_mutex_unlock(&pool_lock);
}
