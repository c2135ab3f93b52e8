/* The replaceable allocator hook. */
#include "internal.h"

#include <stdlib.h>
#if defined(__linux__)
#include <sys/mman.h>
#endif

static void *default_alloc(void *ctx, size_t size, size_t align) {
  (void)ctx;
  if (align < sizeof(void *)) align = sizeof(void *);
  void *p = NULL;
  if (posix_memalign(&p, align, size ? size : 1) != 0) return NULL;
  return p;
}

static void default_free(void *ctx, void *ptr) {
  (void)ctx;
  free(ptr);
}

static attn_allocator current = {default_alloc, default_free, NULL};

attn_status attn_set_allocator(const attn_allocator *allocator) {
  attn__clear_error();
  if (!allocator) {
    current = (attn_allocator){default_alloc, default_free, NULL};
    return ATTN_OK;
  }
  if (!allocator->alloc || !allocator->free)
    return attn__fail(ATTN_STATUS_NULL_POINTER, "attn_set_allocator: %s is NULL",
                      allocator->alloc ? "allocator->free" : "allocator->alloc");
  current = *allocator;
  return ATTN_OK;
}

attn_allocator attn_get_allocator(void) { return current; }

void *attn__malloc(size_t size, size_t align) {
  if (align < 16) align = 16;
  return current.alloc(current.ctx, size ? size : 1, align);
}

void attn__huge_page_hint(void *p, size_t size) {
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  /* A hint; where transparent huge pages are off it changes nothing. */
  const uintptr_t huge = ATTN__HUGE_PAGE, a = (uintptr_t)p;
  const uintptr_t first = (a + huge - 1) / huge * huge, end = (a + size) / huge * huge;
  if (p && end > first) (void)madvise((void *)first, end - first, MADV_HUGEPAGE);
#else
  (void)p;
  (void)size;
#endif
}

void *attn__malloc_large(size_t size) {
  if (size < ATTN__HUGE_PAGE || current.alloc != default_alloc) return attn__malloc(size, 4096);
  /* 2 MB aligned, so all but the tail is whole 2 MB pages */
  void *p = default_alloc(NULL, size, ATTN__HUGE_PAGE);
  attn__huge_page_hint(p, size);
  return p;
}

void attn__free(void *ptr) {
  if (ptr) current.free(current.ctx, ptr);
}

attn_status attn__workspace_get(const char *fn, size_t need, void *workspace, size_t workspace_size,
                                void **ws, void **own) {
  *ws = NULL;
  *own = NULL;
  if (workspace) {
    if (workspace_size < need)
      return attn__fail(ATTN_STATUS_WORKSPACE_TOO_SMALL, "%s: workspace is %zu bytes, needs %zu",
                        fn, workspace_size, need);
    if ((uintptr_t)workspace % ATTN_ALIGN)
      return attn__fail(ATTN_STATUS_INVALID_ARGUMENT, "%s: workspace is not 64-byte aligned", fn);
    *ws = workspace;
    return ATTN_OK;
  }
  *own = attn__malloc(need, ATTN_ALIGN);
  if (!*own) return attn__fail(ATTN_STATUS_OUT_OF_MEMORY, "%s: %zu bytes of workspace", fn, need);
  *ws = *own;
  return ATTN_OK;
}
