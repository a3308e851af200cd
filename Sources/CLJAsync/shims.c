/* GNU and libc calls Swift's Glibc module hides (it is built without _GNU_SOURCE). */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>
#include "ljasync.h"

_Static_assert(LJASYNC_MUTEX_ADAPTIVE == PTHREAD_MUTEX_ADAPTIVE_NP, "LJASYNC_MUTEX_ADAPTIVE is glibc's adaptive kind");

int ljasync_gnu_setname(const char *name) {
  char short_name[16];
  strncpy(short_name, name, 15);
  short_name[15] = 0;
  return pthread_setname_np(pthread_self(), short_name);
}

int ljasync_gnu_eventfd(void) { return eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC); }

int ljasync_gnu_affinity_count(void) {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof set, &set) != 0) return 0;
  return CPU_COUNT(&set);
}

intptr_t ljasync_gnu_gettid(void) { return (intptr_t)gettid(); }

int ljasync_gnu_mutex_clocklock(void *mutex, const void *abstime) {
  return pthread_mutex_clocklock((pthread_mutex_t *)mutex, CLOCK_MONOTONIC, (const struct timespec *)abstime);
}
