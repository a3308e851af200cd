/* The x86-64 System V entry stub of lj-async callbacks (see include/ljasync_entry.h).
 *
 * libffi's closures classify every argument on every call (~27 ns here); a callback's layout is
 * fixed when it is created, so this stub only spills the argument registers and lets the
 * dispatcher copy what the signature says. Stack frame after `sub $136`: [0,48) integer
 * registers, [48,112) SSE registers, [112,128) the result, 8 bytes of padding; the caller's
 * stack arguments start at 144(%rsp) (LJASYNC_STACK_ARGS), found through the same base.
 * The stack stays 16-byte aligned at the call. The stub knows nothing of threads: the
 * dispatcher asks pthread_self() who is calling. */
#define _GNU_SOURCE
#include <sched.h>
#include <stddef.h>
#include "ljasync_entry.h"

/* The stub below spills at these offsets; the dispatcher reads through ljasync_regs. */
_Static_assert(offsetof(ljasync_regs, fpr) == 48 && sizeof(ljasync_regs) == 112,
               "ljasync_regs must match the stub's spill area");

int ljasync_current_cpu(void) {
  int cpu = sched_getcpu();
  return cpu < 0 ? 0 : cpu;
}

#if defined(__x86_64__) && defined(__linux__)
__asm__(
  ".text\n"
  ".p2align 4\n"
  ".globl ljasync_entry_x64\n"
  ".hidden ljasync_entry_x64\n"
  ".type ljasync_entry_x64, @function\n"
  "ljasync_entry_x64:\n"
  "  .cfi_startproc\n"
  "  endbr64\n"
  "  subq $136, %rsp\n"
  "  .cfi_adjust_cfa_offset 136\n"
  "  movq %rdi, 0(%rsp)\n"
  "  movq %rsi, 8(%rsp)\n"
  "  movq %rdx, 16(%rsp)\n"
  "  movq %rcx, 24(%rsp)\n"
  "  movq %r8, 32(%rsp)\n"
  "  movq %r9, 40(%rsp)\n"
  "  movsd %xmm0, 48(%rsp)\n"
  "  movsd %xmm1, 56(%rsp)\n"
  "  movsd %xmm2, 64(%rsp)\n"
  "  movsd %xmm3, 72(%rsp)\n"
  "  movsd %xmm4, 80(%rsp)\n"
  "  movsd %xmm5, 88(%rsp)\n"
  "  movsd %xmm6, 96(%rsp)\n"
  "  movsd %xmm7, 104(%rsp)\n"
  "  movq %r10, %rdi\n"
  "  movq %rsp, %rsi\n"
  "  leaq 112(%rsp), %rdx\n"
  "  call ljasync_dispatch@PLT\n"
  "  movq 112(%rsp), %rax\n"
  "  movsd 120(%rsp), %xmm0\n"
  "  addq $136, %rsp\n"
  "  .cfi_adjust_cfa_offset -136\n"
  "  ret\n"
  "  .cfi_endproc\n"
  ".size ljasync_entry_x64, .-ljasync_entry_x64\n"
);
void ljasync_entry_x64(void);
int ljasync_entry_available(void) { return 1; }
void *ljasync_entry_address(void) { return (void *)&ljasync_entry_x64; }
#else
int ljasync_entry_available(void) { return 0; }
void *ljasync_entry_address(void) { return 0; }
#endif
