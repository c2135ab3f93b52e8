/* The thread pool's shared nested jobs (attn__parallel_for_shared, src/core/threadpool.c): every
 * item runs exactly once, outside a job, nested in one item of an outer job, and nested in every
 * item at once; a thread that has run out of outer items helps with another item's shared job;
 * the caller sees every helper's writes when the call returns. Run at 2, 3 and 4 threads
 * whatever the core count (the pool makes that many threads). */
#include "common.h"
#include "internal.h"

#include <stdatomic.h>
#include <time.h>

#define N_INNER 256

typedef struct inner {
  atomic_int runs[N_INNER];    /* how often each item ran */
  atomic_int by_owner;         /* items run by the thread that made the call */
  int owner;                   /* thread_id the owner's items get */
  int64_t value[N_INNER];      /* written by whichever thread runs the item (plain stores) */
  double spin_us;              /* busy time per item */
} inner;

static double now_us(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec * 1e6 + (double)t.tv_nsec * 1e-3;
}

static void inner_item(void *ctx, int64_t item, int thread_id) {
  inner *in = ctx;
  atomic_fetch_add(&in->runs[item], 1);
  if (thread_id == in->owner) atomic_fetch_add(&in->by_owner, 1);
  double t0 = now_us();
  while (in->spin_us > 0 && now_us() - t0 < in->spin_us) {
  }
  in->value[item] = item * item + 7;
}

static void inner_reset(inner *in, int owner, double spin_us) {
  for (int i = 0; i < N_INNER; i++) {
    atomic_init(&in->runs[i], 0);
    in->value[i] = -1;
  }
  atomic_init(&in->by_owner, 0);
  in->owner = owner;
  in->spin_us = spin_us;
}

/* Items that did not run exactly once or whose value is not visible here. */
static int64_t inner_bad(inner *in) {
  int64_t bad = 0;
  for (int i = 0; i < N_INNER; i++)
    if (atomic_load(&in->runs[i]) != 1 || in->value[i] != (int64_t)i * i + 7) bad++;
  return bad;
}

/* Outer job: item `busy` (or every item when busy < 0) runs a shared job of N_INNER items; the
 * others return at once. */
typedef struct outer {
  inner in[8];
  int busy;
  double spin_us;
  int reps;
  atomic_llong bad; /* summed over nested calls (CHECK itself is for the main thread only) */
} outer;

static void outer_item(void *ctx, int64_t item, int thread_id) {
  outer *o = ctx;
  if (o->busy >= 0 && item != o->busy) return;
  for (int r = 0; r < o->reps; r++) {
    inner_reset(&o->in[item], thread_id, o->spin_us);
    attn__parallel_for_shared(N_INNER, inner_item, &o->in[item]);
    atomic_fetch_add(&o->bad, inner_bad(&o->in[item]));
  }
}

int main(void) {
  static outer o;
  for (int threads = 2; threads <= 4; threads++) {
    CHECK_OK(attn_set_num_threads(threads));
    CHECK(attn__team_size() == threads, "team size %d at %d threads", attn__team_size(), threads);

    /* Outside a job it is an ordinary parallel_for. */
    inner_reset(&o.in[0], -1, 0);
    attn__parallel_for_shared(N_INNER, inner_item, &o.in[0]);
    CHECK(inner_bad(&o.in[0]) == 0, "outside a job: items lost or run twice");
    atomic_store(&o.bad, 0);

    /* One busy outer item among `threads`: the others run out of outer items at once and help.
     * Whether a helper gets there is up to the scheduler, so a few tries are allowed; with 2 ms
     * of items per call it happens on the first unless the machine is starved. */
    bool helped = false;
    for (int attempt = 0; attempt < 5 && !helped; attempt++) {
      o.busy = 1;
      o.spin_us = 20;
      o.reps = 1;
      attn__parallel_for(threads, outer_item, &o);
      int by_owner = atomic_load(&o.in[1].by_owner);
      helped = by_owner < N_INNER;
    }
    CHECK(helped, "%d threads: no thread helped with a shared job in 5 tries", threads);

    /* Every outer item runs shared jobs at once, many times (races show up here and under
     * ThreadSanitizer). */
    o.busy = -1;
    o.spin_us = 0;
    o.reps = 200;
    attn__parallel_for(threads, outer_item, &o);
    o.spin_us = 5;
    o.reps = 20;
    attn__parallel_for(2 * threads, outer_item, &o);
    CHECK(atomic_load(&o.bad) == 0, "%d threads: %lld nested items lost, run twice or not visible",
          threads, (long long)atomic_load(&o.bad));

    /* Inside an item, attn__parallel_for itself still runs serially on the calling thread. */
    CHECK(attn__team_size() == threads, "team size changed");
  }
  /* One thread: no pool, serial. */
  CHECK_OK(attn_set_num_threads(1));
  CHECK(attn__team_size() == 1, "team size %d at 1 thread", attn__team_size());
  o.busy = -1;
  o.spin_us = 0;
  o.reps = 3;
  atomic_store(&o.bad, 0);
  attn__parallel_for(2, outer_item, &o);
  CHECK(atomic_load(&o.bad) == 0, "1 thread: nested items lost or run twice");
  attn_shutdown();
  return t_finish("test_threadpool");
}
