/* Helpers of the `attn` command: errors, option values, clocks, pinning, memory and randomness. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* sched_setaffinity, CPU_* */
#endif
#include "cli.h"
#include "internal.h" /* attn__huge_page_hint, ATTN__HUGE_PAGE */

#include <errno.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#ifdef __linux__
#include <sched.h>
#endif

void cli_errorf(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fputs("attn: ", stderr);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
}

void cli_status_error(const char *what, attn_status s) {
  const char *detail = attn_last_error();
  fprintf(stderr, "attn: %s failed: %s (%s)%s%s\n", what, attn_status_str(s),
          attn_status_message(s), detail && *detail ? ": " : "", detail ? detail : "");
}

int cli_parse_int(const char *text, long lo, long hi, long *value) {
  if (!text || !*text) return -1;
  errno = 0;
  char *end = NULL;
  long v = strtol(text, &end, 10);
  if (errno != 0 || end == text || *end != '\0') return -1;
  if (v < lo || v > hi) return -1;
  *value = v;
  return 0;
}

int cli_parse_int_list(const char *text, long lo, long hi, long *values, int max) {
  if (!text || !*text) return -1;
  int count = 0;
  const char *p = text;
  for (;;) {
    const char *comma = strchr(p, ',');
    size_t len = comma ? (size_t)(comma - p) : strlen(p);
    char item[32];
    if (len == 0 || len >= sizeof item || count >= max) return -1;
    memcpy(item, p, len);
    item[len] = '\0';
    if (cli_parse_int(item, lo, hi, &values[count]) != 0) return -1;
    count++;
    if (!comma) break;
    p = comma + 1;
  }
  return count;
}

double cli_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* The affinity mask the process started with, saved before the first pinning: CPU counts come
 * from it, and unpinning restores it. */
#ifdef __linux__
static cpu_set_t original_mask;
static int original_saved;

static void save_original_mask(void) {
  if (original_saved) return;
  if (sched_getaffinity(0, sizeof original_mask, &original_mask) == 0 &&
      CPU_COUNT(&original_mask) > 0)
    original_saved = 1;
}
#endif

void cli_pin_main_thread(void) {
#ifdef __linux__
  save_original_mask();
  if (!original_saved) return;
  for (int c = 0; c < CPU_SETSIZE; c++) {
    if (!CPU_ISSET(c, &original_mask)) continue;
    cpu_set_t one;
    CPU_ZERO(&one);
    CPU_SET(c, &one);
    (void)sched_setaffinity(0, sizeof one, &one); /* best effort */
    return;
  }
#endif
}

void cli_unpin_main_thread(void) {
#ifdef __linux__
  if (original_saved) (void)sched_setaffinity(0, sizeof original_mask, &original_mask);
#endif
}

int cli_online_cpus(void) {
#ifdef __linux__
  save_original_mask();
  if (original_saved) return CPU_COUNT(&original_mask);
#endif
  long n = sysconf(_SC_NPROCESSORS_ONLN);
  return n < 1 ? 1 : (int)n;
}

uint64_t cli_physical_memory(void) {
  long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
  if (pages <= 0 || page <= 0) return 0;
  return (uint64_t)pages * (uint64_t)page;
}

/* ---- tracking allocator ------------------------------------------------------------------------
 */

/* Each block carries a header just below the pointer handed out: the caller's size and the offset
 * back to the start of the underlying allocation. Counters are atomic because libattn may allocate
 * from its worker threads. */
typedef struct track_header {
  size_t size;
  size_t offset;
} track_header;

static atomic_size_t track_live;
static atomic_size_t track_high;

static bool track_huge; /* cli_track_install(true) */

/* With track_huge, a block of 2 MB or more is 2 MB aligned and advised for transparent huge pages
 * as libattn's default allocator does with its large buffers (attn__malloc_large). Without it,
 * `attn bench bert` timed BERT on base pages only, unlike a program on the default allocator
 * (64 tokens, the two kinds of pages alternated in one process: within 1%). */
static void *track_alloc(void *ctx, size_t size, size_t align) {
  (void)ctx;
  const bool large = track_huge && size >= ATTN__HUGE_PAGE;
  if (large) align = ATTN__HUGE_PAGE;
  if (align < 16) align = 16;
  size_t offset = align >= sizeof(track_header) ? align : sizeof(track_header);
  if (size > SIZE_MAX - offset) return NULL;
  void *base = NULL;
  if (posix_memalign(&base, align, size + offset) != 0) return NULL;
  char *user = (char *)base + offset;
  track_header h = {size, offset};
  memcpy(user - sizeof h, &h, sizeof h);
  if (large) attn__huge_page_hint(user, size);
  size_t live = atomic_fetch_add(&track_live, size) + size;
  size_t high = atomic_load(&track_high);
  while (live > high && !atomic_compare_exchange_weak(&track_high, &high, live)) {
  }
  return user;
}

static void track_free(void *ctx, void *ptr) {
  (void)ctx;
  if (!ptr) return;
  track_header h;
  memcpy(&h, (char *)ptr - sizeof h, sizeof h);
  atomic_fetch_sub(&track_live, h.size);
  free((char *)ptr - h.offset);
}

void cli_track_install(bool huge_pages) {
  static int installed;
  if (installed) return;
  track_huge = huge_pages;
  attn_allocator a = {track_alloc, track_free, NULL};
  if (attn_set_allocator(&a) == ATTN_OK) installed = 1;
}

size_t cli_track_reset(void) {
  size_t live = atomic_load(&track_live);
  atomic_store(&track_high, live);
  return live;
}

size_t cli_track_peak(void) {
  return atomic_load(&track_high);
}

/* ---- buffers and random data -------------------------------------------------------------------
 */

void *cli_alloc(size_t size) {
  void *p = NULL;
  if (size == 0) size = 64;
  size = (size + 63) / 64 * 64;
  if (posix_memalign(&p, 64, size) != 0) return NULL;
  memset(p, 0, size);
  return p;
}

void cli_free(void *p) {
  free(p);
}

static uint64_t xorshift64(uint64_t *s) {
  uint64_t x = *s;
  x ^= x << 13;
  x ^= x >> 7;
  x ^= x << 17;
  *s = x;
  return x;
}

void cli_fill_random(void *data, attn_dtype dtype, size_t n, uint64_t *state) {
  for (size_t i = 0; i < n; i++) {
    float x = (float)(xorshift64(state) >> 40) * (2.0f / 16777216.0f) - 1.0f;
    switch (dtype) {
      case ATTN_DTYPE_F32:
        ((float *)data)[i] = x;
        break;
      case ATTN_DTYPE_F16:
        ((uint16_t *)data)[i] = attn_f32_to_f16(x);
        break;
      case ATTN_DTYPE_BF16:
        ((uint16_t *)data)[i] = attn_f32_to_bf16(x);
        break;
    }
  }
}

const char *cli_dtype_name(attn_dtype dtype) {
  switch (dtype) {
    case ATTN_DTYPE_F32:
      return "f32";
    case ATTN_DTYPE_F16:
      return "f16";
    case ATTN_DTYPE_BF16:
      return "bf16";
  }
  return "?";
}

int cli_dtype_parse(const char *text, attn_dtype *dtype) {
  if (!strcmp(text, "f32"))
    *dtype = ATTN_DTYPE_F32;
  else if (!strcmp(text, "f16"))
    *dtype = ATTN_DTYPE_F16;
  else if (!strcmp(text, "bf16"))
    *dtype = ATTN_DTYPE_BF16;
  else
    return -1;
  return 0;
}
