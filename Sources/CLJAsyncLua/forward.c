/* The forwarders: LuaJIT's C API defined inside the core with hidden visibility, so the core has
 * no undefined lua_* symbols for the dynamic linker to resolve (or fail on) in the host. Each is
 * one indirect jump through ljasync_lua_api (about a nanosecond). */
#include <limits.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#pragma GCC visibility push(hidden)  /* after the system headers lua.h includes */
#include "api.h"

struct ljasync_lua_api ljasync_lua_api;

#define LJ_FN(ret, name, params, args) ret name params { return ljasync_lua_api.name args; }
#include "api_list.h"
#undef LJ_FN

/* The two variadic functions, through their va_list forms, as LuaJIT itself writes them. */
const char *lua_pushfstring(lua_State *L, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  const char *s = ljasync_lua_api.lua_pushvfstring(L, fmt, ap);
  va_end(ap);
  return s;
}

int luaL_error(lua_State *L, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  ljasync_lua_api.luaL_where(L, 1);
  ljasync_lua_api.lua_pushvfstring(L, fmt, ap);
  va_end(ap);
  ljasync_lua_api.lua_concat(L, 2);
  return ljasync_lua_api.lua_error(L);
}
#pragma GCC visibility pop
