// Counts the heap allocations of a process: malloc, calloc, realloc, aligned allocations and
// operator new (which calls malloc in libstdc++). Preload it and read the count on stderr at exit:
//
//   cc -O2 -shared -fPIC -o /tmp/malloc_count.so bench/alloc/malloc_count.c
//   LD_PRELOAD=/tmp/malloc_count.so chimeraforge multi --agents 1 ...
//
// MALLOC_COUNT_FILE=path appends the line to that file instead (for processes whose stderr is
// not kept). The count is process-wide (every thread); the busiest thread's count is given too.
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

extern void* __libc_malloc(size_t);
extern void* __libc_calloc(size_t, size_t);
extern void* __libc_realloc(void*, size_t);
extern void* __libc_memalign(size_t, size_t);

static atomic_ulong total;
static atomic_ulong bytes;
static __thread unsigned long mine;
static atomic_ulong busiest;

static inline void count(size_t n) {
  atomic_fetch_add_explicit(&total, 1, memory_order_relaxed);
  atomic_fetch_add_explicit(&bytes, n, memory_order_relaxed);
  unsigned long m = ++mine;
  unsigned long b = atomic_load_explicit(&busiest, memory_order_relaxed);
  while (m > b && !atomic_compare_exchange_weak(&busiest, &b, m)) {
  }
}

void* malloc(size_t n) {
  count(n);
  return __libc_malloc(n);
}
void* calloc(size_t a, size_t b) {
  count(a * b);
  return __libc_calloc(a, b);
}
void* realloc(void* p, size_t n) {
  count(n);
  return __libc_realloc(p, n);
}
void* memalign(size_t a, size_t n) {
  count(n);
  return __libc_memalign(a, n);
}
void* aligned_alloc(size_t a, size_t n) {
  count(n);
  return __libc_memalign(a, n);
}
int posix_memalign(void** out, size_t a, size_t n) {
  count(n);
  void* p = __libc_memalign(a, n);
  if (!p) return 12;  // ENOMEM
  *out = p;
  return 0;
}

__attribute__((destructor)) static void report(void) {
  char line[160];
  int len =
      snprintf(line, sizeof line, "malloc_count: %lu allocations, %lu bytes, busiest thread %lu\n",
               atomic_load(&total), atomic_load(&bytes), atomic_load(&busiest));
  const char* path = getenv("MALLOC_COUNT_FILE");
  int fd = 2;
  if (path && *path) fd = open(path, O_WRONLY | O_CREAT | O_APPEND, 0644);
  if (fd >= 0) {
    ssize_t w = write(fd, line, (size_t)len);
    (void)w;
    if (fd != 2) close(fd);
  }
}
