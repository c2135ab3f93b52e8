/* Status names, messages and the per-thread last-error detail. */
#include "internal.h"

#include <stdio.h>
#include <stdlib.h>

static _Thread_local char last_error[512];

const char *attn_status_str(attn_status s) {
  switch (s) {
#define ATTN_X_NAME(name, value, msg) \
  case name: return #name;
    ATTN_STATUS_LIST(ATTN_X_NAME)
#undef ATTN_X_NAME
  }
  return "ATTN_STATUS_UNKNOWN";
}

const char *attn_status_message(attn_status s) {
  switch (s) {
#define ATTN_X_MSG(name, value, msg) \
  case name: return msg;
    ATTN_STATUS_LIST(ATTN_X_MSG)
#undef ATTN_X_MSG
  }
  return "unknown status";
}

const char *attn_last_error(void) { return last_error; }

void attn__clear_error(void) { last_error[0] = '\0'; }

attn_status attn__fail(attn_status status, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(last_error, sizeof last_error, fmt, ap);
  va_end(ap);
  return status;
}

void attn__assert_fail(const char *cond, const char *file, int line) {
  fprintf(stderr, "attn: internal invariant failed: %s (%s:%d)\n", cond, file, line);
  abort();
}

const char *attn_version(void) { return "0.1.0"; }
