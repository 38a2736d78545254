/* What this machine charges for the operations a streaming client repeats: a system call that
 * finds nothing (recv on an empty socket, a zero-timeout epoll_wait), and a page of new memory,
 * touched one page at a time (a fault each) or populated in one call (MADV_POPULATE_WRITE).
 * On a virtual machine these can be many times their cost on bare metal, and every figure of
 * the concurrency rows is made of them.
 *
 * Usage: machine [ROUNDS]      (default 5; prints the median of the rounds, ns per operation) */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif

enum { CALLS = 100000, PAGES = 8192, ROUNDS_MAX = 101 };

static double now_ns(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec * 1e9 + (double)t.tv_nsec;
}

static int cmp(const void* a, const void* b) {
  const double x = *(const double*)a, y = *(const double*)b;
  return (x > y) - (x < y);
}

static double median(double* v, int n) {
  qsort(v, (size_t)n, sizeof *v, cmp);
  return v[n / 2];
}

int main(int argc, char** argv) {
  int rounds = argc > 1 ? atoi(argv[1]) : 5;
  if (rounds < 1 || rounds > ROUNDS_MAX) {
    fprintf(stderr, "usage: machine [ROUNDS 1-%d]\n", ROUNDS_MAX);
    return 2;
  }
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0) {
    perror("machine: socketpair");
    return 1;
  }
  const int ep = epoll_create1(0);
  struct epoll_event ev = {.events = EPOLLIN}, out[8];
  epoll_ctl(ep, EPOLL_CTL_ADD, sv[0], &ev);
  const size_t bytes = (size_t)PAGES * 4096;
  double recv_ns[ROUNDS_MAX], wait_ns[ROUNDS_MAX], touch_ns[ROUNDS_MAX], populate_ns[ROUNDS_MAX];
  for (int r = 0; r < rounds; ++r) {
    char b[64];
    double t = now_ns();
    for (int i = 0; i < CALLS; ++i) (void)recv(sv[0], b, sizeof b, MSG_DONTWAIT);
    recv_ns[r] = (now_ns() - t) / CALLS;
    t = now_ns();
    for (int i = 0; i < CALLS; ++i) (void)epoll_wait(ep, out, 8, 0);
    wait_ns[r] = (now_ns() - t) / CALLS;

    char* p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) {
      perror("machine: mmap");
      return 1;
    }
    t = now_ns();
    for (size_t i = 0; i < bytes; i += 4096) p[i] = 1;
    touch_ns[r] = (now_ns() - t) / PAGES;
    munmap(p, bytes);

    p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) {
      perror("machine: mmap");
      return 1;
    }
    t = now_ns();
    const int rc = madvise(p, bytes, MADV_POPULATE_WRITE);
    populate_ns[r] = rc == 0 ? (now_ns() - t) / PAGES : -1;
    munmap(p, bytes);
  }
  printf("median of %d rounds, ns per operation:\n", rounds);
  printf("  recv() on an empty socket (EAGAIN):         %8.0f\n", median(recv_ns, rounds));
  printf("  epoll_wait(timeout 0), nothing ready:       %8.0f\n", median(wait_ns, rounds));
  printf("  a new page, first touch (one fault):        %8.0f\n", median(touch_ns, rounds));
  const double pop = median(populate_ns, rounds);
  if (pop < 0) {
    printf("  a new page, MADV_POPULATE_WRITE:            (not supported by this kernel)\n");
  } else {
    printf("  a new page, MADV_POPULATE_WRITE:            %8.0f\n", pop);
  }
  return 0;
}
