/* Dropping the pages of the calling thread's own stack that lie below its stack pointer.
 *
 * Making a Lua state (luaL_newstate, the libraries opened on first use, ffi.cdef's parser,
 * undumping modules, lua_load) runs deep C recursion once; the pages it touched stay resident
 * for the thread's whole life though nothing lives there once the user's function runs
 * (docs/design.md, "States"). madvise(MADV_DONTNEED) gives them back; touched again, they
 * come back zero-filled, which is all a stack below its pointer may hold.
 *
 * Invariant: only the calling thread's own stack, only below its stack pointer less a page
 * (more than the x86-64 red zone of 128 bytes and the frames of madvise itself), never the
 * guard page below the stack (pthread_attr_getstack's range starts above it), and nothing
 * when the code runs on another stack (a fiber's, a signal stack) or the range is unknown.
 * When: a madvise is a syscall (1-3 us, 8-20 us while other threads of the process run on
 * other CPUs: the TLB shootdown), so never per job or per start. A thread arms it once its
 * state is made (LuaThread.run: one trim, PoolThread.main: two) and trims at its next calls
 * of ljasync_stack_trim_once: its first wait in the core (Channel's yield before it sleeps,
 * Thread.sleep), a pool worker's first two trips to Pool.step's slow path. Unarmed, a call
 * costs a thread-local load. All of it on the calling thread only.
 * C, not Swift: the GNU call Swift's Glibc hides, the exact frame address, and nothing of the
 * caller's spilled to a stack slot below it. */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdint.h>
#include <sys/mman.h>
#include <unistd.h>
#include "ljasync.h"

/* This thread's usable stack [low, high), found once per pthread (pthread_getattr_np costs a
   sched_getaffinity call and a malloc). low == 0: not known yet. */
static __thread uintptr_t stack_low, stack_high;
/* How many more ljasync_stack_trim_once calls trim (ljasync_stack_trim_arm sets it). */
static __thread int32_t trims_left;

static int stack_bounds(void) {
  if (stack_low) return 1;
  pthread_attr_t attr;
  if (pthread_getattr_np(pthread_self(), &attr) != 0) return 0;
  void *addr = 0;
  size_t size = 0;
  int rc = pthread_attr_getstack(&attr, &addr, &size);
  pthread_attr_destroy(&attr);
  if (rc != 0 || !addr) return 0;
  stack_high = (uintptr_t)addr + size;
  stack_low = (uintptr_t)addr;
  return 1;
}

__attribute__((noinline)) static void trim_below_here(void) {
  if (!stack_bounds()) return;
  uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
  uintptr_t sp = (uintptr_t)__builtin_frame_address(0);
  if (sp <= stack_low || sp >= stack_high) return;  /* not on this thread's own stack */
  uintptr_t end = (sp & ~(page - 1)) - page;  /* this frame's page and the one below stay */
  uintptr_t start = (stack_low + page - 1) & ~(page - 1);
  if (end > start) (void)madvise((void *)start, end - start, MADV_DONTNEED);
}

void ljasync_stack_trim_arm(int32_t n) { trims_left = n; }

void ljasync_stack_trim_once(void) {
  if (trims_left <= 0) return;
  trims_left--;
  trim_below_here();
}

long ljasync_stack_resident_pages(void) {
  if (!stack_bounds()) return -1;
  uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
  uintptr_t lo = stack_low & ~(page - 1), hi = (stack_high + page - 1) & ~(page - 1);
  unsigned char vec[64];  /* small: counting must not touch stack pages of its own */
  long n = 0;
  for (uintptr_t a = lo; a < hi;) {
    size_t pages = (hi - a) / page;
    if (pages > sizeof vec) pages = sizeof vec;
    if (mincore((void *)a, pages * page, vec) != 0) return -1;
    for (size_t i = 0; i < pages; i++) n += vec[i] & 1;
    a += pages * page;
  }
  return n;
}
