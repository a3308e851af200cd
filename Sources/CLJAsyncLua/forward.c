/* The forwarders: LuaJIT's C API defined inside the core with hidden visibility, so the core has
 * no undefined lua_* symbols for the dynamic linker to resolve (or fail on) in the host. Each is
 * one indirect jump through its ljasync_lua_ptr_<name> (about a nanosecond). */
#include <limits.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#pragma GCC visibility push(hidden)  /* after the system headers lua.h includes */
#include "api.h"

#define LJ_FN(ret, name, params, args) ret (*ljasync_lua_ptr_##name) params;
#include "api_list.h"
#undef LJ_FN

#if defined(__x86_64__) && defined(__ELF__)
/* `jmp *ptr(%rip)` and nothing else: compiled C would build a frame first, since SwiftPM
 * compiles C with -fno-omit-frame-pointer. The arguments and the return address stay as the
 * caller left them, so the callee returns straight to the Swift code. */
#define LJ_FN(ret, name, params, args) \
  __asm__(".text\n.p2align 4\n.globl " #name "\n.hidden " #name "\n.type " #name ", @function\n" \
          #name ":\n.cfi_startproc\nendbr64\njmp *ljasync_lua_ptr_" #name "(%rip)\n.cfi_endproc\n" \
          ".size " #name ", .-" #name "\n");
#else
#define LJ_FN(ret, name, params, args) ret name params { return ljasync_lua_ptr_##name args; }
#endif
#include "api_list.h"
#undef LJ_FN

/* The two variadic functions, through their va_list forms, as LuaJIT itself writes them. */
const char *lua_pushfstring(lua_State *L, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  const char *s = ljasync_lua_ptr_lua_pushvfstring(L, fmt, ap);
  va_end(ap);
  return s;
}

int luaL_error(lua_State *L, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  ljasync_lua_ptr_luaL_where(L, 1);
  ljasync_lua_ptr_lua_pushvfstring(L, fmt, ap);
  va_end(ap);
  ljasync_lua_ptr_lua_concat(L, 2);
  return ljasync_lua_ptr_lua_error(L);
}
#pragma GCC visibility pop
