/* attn__malloc_large (src/core/alloc.c): alignment (4096, or 2 MB for 2 MB and more with the
 * default allocator), the whole buffer usable, the MADV_HUGEPAGE advice on Linux where this
 * process can give it (the "hg" flag of the mapping in /proc/self/smaps), and a custom
 * allocator getting the request as an ordinary 4096-aligned allocation. attn__huge_page_hint:
 * only the whole 2 MB pages of a range are advised, and the contents never change. */
#include "common.h"
#include "internal.h"

#include <sys/mman.h>

/* Whether the mapping that holds p carries the "hg" (MADV_HUGEPAGE) flag: 1 yes, 0 no, -1 when
 * smaps cannot be read. */
static int advised_huge(const void *p) {
  FILE *f = fopen("/proc/self/smaps", "r");
  if (!f) return -1;
  char line[512];
  int in = 0, found = 0;
  const uintptr_t a = (uintptr_t)p;
  while (fgets(line, sizeof line, f)) {
    unsigned long lo, hi;
    if (sscanf(line, "%lx-%lx ", &lo, &hi) == 2 && strchr(line, '-') < strchr(line, ' ')) {
      in = a >= lo && a < hi;
      continue;
    }
    if (in && strncmp(line, "VmFlags:", 8) == 0) {
      found = strstr(line, " hg") != NULL;
      break;
    }
  }
  fclose(f);
  return found;
}

typedef struct counting {
  int calls;
  size_t last_size, last_align;
} counting;

static void *count_alloc(void *ctx, size_t size, size_t align) {
  counting *c = ctx;
  c->calls++;
  c->last_size = size;
  c->last_align = align;
  void *p = NULL;
  return posix_memalign(&p, align, size) == 0 ? p : NULL;
}
static void count_free(void *ctx, void *ptr) {
  (void)ctx;
  free(ptr);
}

/* Whether this process can advise huge pages at all (a kernel without THP, or a container that
 * disabled it, refuses or ignores the advice): probe with a mapping of our own. */
static bool can_advise(size_t bytes) {
#if defined(MADV_HUGEPAGE)
  void *m = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (m == MAP_FAILED) return false;
  const bool ok = madvise(m, bytes, MADV_HUGEPAGE) == 0 && advised_huge(m) == 1;
  munmap(m, bytes);
  return ok;
#else
  (void)bytes;
  return false;
#endif
}

int main(void) {
  const size_t MB2 = (size_t)2 << 20;
  const size_t sizes[] = {1, 4095, MB2 - 1, MB2, MB2 + 12345, 5 * MB2 + 7};
  const bool thp = can_advise(2 * MB2);
  for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
    const size_t n = sizes[i];
    unsigned char *p = attn__malloc_large(n);
    CHECK(p != NULL, "size %zu: NULL", n);
    if (!p) continue;
    const size_t want = n >= MB2 ? MB2 : 4096;
    CHECK((uintptr_t)p % want == 0, "size %zu: %p not aligned to %zu", n, (void *)p, want);
    memset(p, 0xab, n); /* all of it is usable (ASan checks the bounds) */
    CHECK(p[0] == 0xab && p[n - 1] == 0xab, "size %zu: contents", n);
    if (n >= MB2 && thp) CHECK(advised_huge(p) == 1, "size %zu: mapping not advised MADV_HUGEPAGE", n);
    attn__free(p);
  }
  if (!thp) printf("test_alloc_large: this process cannot advise huge pages, advice not checked\n");

  /* attn__huge_page_hint on a buffer that does not start on a 2 MB boundary: the contents stay,
   * the whole 2 MB pages inside are advised, and the partial pages at both ends are not. NULL,
   * empty and small ranges are accepted and do nothing. */
  attn__huge_page_hint(NULL, 5 * MB2);
  {
    unsigned char small[100];
    memset(small, 7, sizeof small);
    attn__huge_page_hint(small, 0);
    attn__huge_page_hint(small, sizeof small);
    CHECK(small[0] == 7 && small[99] == 7, "hint on a small range changed it");
  }
  const size_t span = 5 * MB2;
  unsigned char *raw = mmap(NULL, span + 2 * MB2, PROT_READ | PROT_WRITE,
                            MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  CHECK(raw != MAP_FAILED, "mmap failed");
  if (raw != MAP_FAILED) {
    /* b starts 1 MB past a 2 MB boundary and ends 1 MB before one */
    unsigned char *b = (unsigned char *)(((uintptr_t)raw + MB2 - 1) / MB2 * MB2) + MB2 / 2;
    const size_t n = 3 * MB2;
    for (size_t i = 0; i < n; i += 4096) b[i] = (unsigned char)(i / 4096);
    attn__huge_page_hint(b, n);
    bool same = true;
    for (size_t i = 0; i < n; i += 4096) same = same && b[i] == (unsigned char)(i / 4096);
    CHECK(same, "the hint changed the buffer's contents");
    if (thp) {
      unsigned char *whole = b + MB2 / 2; /* the first 2 MB boundary inside b */
      CHECK(advised_huge(whole) == 1 && advised_huge(whole + 2 * MB2 - 1) == 1,
            "whole 2 MB pages inside the range not advised");
      CHECK(advised_huge(b) == 0 && advised_huge(b + n - 1) == 0,
            "partial 2 MB pages at the ends of the range advised");
    }
    munmap(raw, span + 2 * MB2);
  }

  /* A custom allocator: one ordinary request, 4096-aligned, of the size asked. */
  counting c = {0, 0, 0};
  CHECK_OK(attn_set_allocator(&(attn_allocator){count_alloc, count_free, &c}));
  void *q = attn__malloc_large(3 * MB2);
  CHECK(q != NULL && c.calls == 1 && c.last_size == 3 * MB2 && c.last_align == 4096,
        "custom allocator: %d calls, size %zu, align %zu", c.calls, c.last_size, c.last_align);
  attn__free(q);
  CHECK_OK(attn_set_allocator(NULL));
  return t_finish("test_alloc_large");
}
