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

/* libffi's type descriptors are data symbols: their real addresses, taken in C (Swift's `&global`
   may hand out a copy). */
#include <ffi.h>
void *ljasync_ffi_type(int kind) {
  switch (kind) {
  case LJASYNC_KIND_VOID: return &ffi_type_void;
  case LJASYNC_KIND_INT8: return &ffi_type_sint8;
  case LJASYNC_KIND_UINT8: case LJASYNC_KIND_BOOL: return &ffi_type_uint8;
  case LJASYNC_KIND_INT16: return &ffi_type_sint16;
  case LJASYNC_KIND_UINT16: return &ffi_type_uint16;
  case LJASYNC_KIND_INT32: return &ffi_type_sint32;
  case LJASYNC_KIND_UINT32: return &ffi_type_uint32;
  case LJASYNC_KIND_INT64: return &ffi_type_sint64;
  case LJASYNC_KIND_UINT64: return &ffi_type_uint64;
  case LJASYNC_KIND_FLOAT: return &ffi_type_float;
  case LJASYNC_KIND_DOUBLE: return &ffi_type_double;
  case LJASYNC_KIND_POINTER: return &ffi_type_pointer;
  default: return 0;
  }
}

/* libgcc before GCC 13 guards the frames registered at run time (LuaJIT registers its JIT code's,
   Debian's and upstream's alike) with one global mutex, taken by every unwind in
   _Unwind_Find_FDE: every Lua error and trace abort on x86-64. A fork() while another thread
   holds it leaves it locked in the child, whose next Lua error then waits for ever (seen in
   fork_spec: the child's threads in _Unwind_Find_FDE -> pthread_mutex_lock). The mutex is
   private, so it cannot be held across the fork; one lookup here waits until the thread
   inside it has left, which shrinks the window to what runs between this and the fork. */
extern const void *_Unwind_Find_FDE(void *pc, void *bases);
void ljasync_gnu_unwinder_sync(void) {
  void *bases[3];
  (void)_Unwind_Find_FDE((void *)&ljasync_gnu_unwinder_sync, bases);
}
