/* The x86-64 entry stub of lj-async callbacks: saves argument registers, calls the dispatcher. */
#ifndef LJASYNC_ENTRY_H
#define LJASYNC_ENTRY_H
#include <stdint.h>

/* What the stub hands the dispatcher: the six integer and eight SSE argument registers. */
typedef struct ljasync_regs {
  uint64_t gpr[6];  /* rdi, rsi, rdx, rcx, r8, r9 */
  double fpr[8];    /* xmm0..xmm7 (low 64 bits) */
} ljasync_regs;

/* Where the caller's stack arguments start, counted from the spill area's base: past the
   registers (112 bytes), the result (16), padding (8) and the return address (8). */
#define LJASYNC_STACK_ARGS 144

/* 1 when this build has the stub (x86-64 System V); 0 elsewhere (libffi is used instead). */
int ljasync_entry_available(void);

/* The stub's address. It expects the callback core in r10 (set by the per-callback trampoline)
   and calls ljasync_dispatch(core, regs, ret), where regs is an ljasync_regs with the caller's
   stack arguments LJASYNC_STACK_ARGS bytes from its base; then returns ret[0] in rax and ret[1] in
   xmm0, so one stub serves integer, pointer, float and double results. */
void *ljasync_entry_address(void);

/* The CPU the calling thread runs on (glibc reads it from the rseq area): parallel callbacks
   start looking for a free state at this index. 0 when unknown. */
int ljasync_current_cpu(void);

#endif
