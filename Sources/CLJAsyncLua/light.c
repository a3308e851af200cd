/* Light states: what a state the core makes opens at once, and what it opens on first touch.
 *
 * Open at once: base (with coroutine), package (`require`) and jit (a state without luaopen_jit
 * runs with the JIT off). On first touch: string, table, math, io, os, debug, bit and ffi. Each
 * of the seven global libraries starts as an empty table under its global name whose metatable
 * opens the library into that very table (LuaJIT's luaopen_* fill an existing global table of
 * that name), so the global keeps its identity, `pairs(_G)` lists it, and `_G` itself has no
 * metatable. The string metatable starts as {__index = the empty string table}, so
 * ("x"):len() works before anyone touched `string`. package.preload gets openers for all eight
 * (`require "string"`, `require "ffi"`) and for string.buffer, table.new and table.clear.
 * docs/design.md ("States") has
 * the figures.
 *
 * The openers are C, not Swift: a library that fails to open (out of memory in a state with a
 * memory limit) raises a Lua error, and that longjmp must cross no Swift frame. */
#include <stdint.h>
#include <string.h>
#pragma GCC visibility push(hidden)
#include "api.h"
#include "ljasync_lua.h"

static const char *const lazy[] = { "string", "table", "math", "io", "os", "debug", "bit" };
enum { NLAZY = sizeof lazy / sizeof lazy[0] };

/* lazy[i]'s luaopen_* (the forwarders' addresses are no constants for a static table). */
static lua_CFunction opener(int i) {
  switch (i) {
  case 0: return luaopen_string;
  case 1: return luaopen_table;
  case 2: return luaopen_math;
  case 3: return luaopen_io;
  case 4: return luaopen_os;
  case 5: return luaopen_debug;
  default: return luaopen_bit;
  }
}

/* Registry keys: the shared metatable of the placeholders, the placeholder -> index map, and
 * the anchored ffi module. */
static const char PROXY_MT[] = "lj-async.lazy.mt", PROXIES[] = "lj-async.lazy", FFI[] = "lj-async.ffi";

/* Opens library i (into its placeholder while that is still the global) and leaves the
 * library table on the stack. */
static void open_library(lua_State *L, int i) {
  lua_pushcfunction(L, opener(i));
  lua_pushstring(L, lazy[i]);
  lua_call(L, 1, 1);
  /* The placeholder is the library now: it needs its opener no more. */
  lua_getfield(L, LUA_REGISTRYINDEX, PROXIES);
  lua_pushvalue(L, -2);
  lua_rawget(L, -2);
  int was_proxy = !lua_isnil(L, -1);
  lua_pop(L, 2);
  if (was_proxy) {
    lua_pushnil(L);
    lua_setmetatable(L, -2);
  }
}

/* Which library placeholder t is, or -1. */
static int proxy_index(lua_State *L, int t) {
  lua_getfield(L, LUA_REGISTRYINDEX, PROXIES);
  lua_pushvalue(L, t);
  lua_rawget(L, -2);
  int i = lua_isnumber(L, -1) ? (int)lua_tointeger(L, -1) : -1;
  lua_pop(L, 2);
  return i;
}

/* __index(placeholder, key): opens the library, then answers the key. */
static int proxy_index_mm(lua_State *L) {
  lua_settop(L, 2);
  int i = proxy_index(L, 1);
  if (i < 0) return 0;
  open_library(L, i);
  lua_pushvalue(L, 2);
  lua_rawget(L, -2);
  return 1;
}

/* package.preload entries: require "string" and the like. */
static int preload_library(lua_State *L) {
  const char *name = luaL_checkstring(L, 1);
  for (int i = 0; i < NLAZY; i++) {
    if (strcmp(name, lazy[i]) == 0) {
      open_library(L, i);
      return 1;
    }
  }
  return luaL_error(L, "lj-async: no lazy library '%s'", name);
}

/* require "ffi": the module is anchored in the registry for the state's life, so init code
 * that sets package.loaded.ffi = nil cannot let the collector free ffi's tables while the C
 * type state still points at them. States of this LuaJIT (2.1, 2022) that did so under malloc
 * once crashed in lua_close (see Environment.swift); with light states the crash did not
 * reproduce even without the anchor (spec/thread_spec.lua, "dropped a loaded ffi"), so this is
 * a precaution that costs one registry slot. */
static int preload_ffi(lua_State *L) {
  lua_getfield(L, LUA_REGISTRYINDEX, FFI);
  if (!lua_isnil(L, -1)) return 1;
  lua_pop(L, 1);
  lua_pushcfunction(L, luaopen_ffi);
  lua_pushliteral(L, "ffi");
  lua_call(L, 1, 1);
  lua_pushvalue(L, -1);
  lua_setfield(L, LUA_REGISTRYINDEX, FFI);
  return 1;
}

/* require "string.buffer", "table.new", "table.clear": the library's luaopen_* registers the
 * real preload entry (where this LuaJIT has it), so open the library, then call that. */
static int preload_submodule(lua_State *L) {
  size_t len;
  const char *name = luaL_checklstring(L, 1, &len);
  const char *dot = strchr(name, '.');
  for (int i = 0; dot && i < NLAZY; i++) {
    if ((size_t)(dot - name) == strlen(lazy[i]) && memcmp(name, lazy[i], (size_t)(dot - name)) == 0) {
      lua_getfield(L, LUA_REGISTRYINDEX, "_LOADED");
      lua_getfield(L, -1, lazy[i]);
      int opened = !lua_isnil(L, -1);
      lua_pop(L, 2);
      if (!opened) {
        open_library(L, i);
        lua_pop(L, 1);
      }
      break;
    }
  }
  lua_getfield(L, LUA_REGISTRYINDEX, "_PRELOAD");
  lua_getfield(L, -1, name);
  if (lua_tocfunction(L, -1) == preload_submodule || !lua_isfunction(L, -1)) {
    return luaL_error(L, "module '%s' not found: this LuaJIT has no %s", name, name);
  }
  lua_pushvalue(L, 1);
  lua_call(L, 1, 1);
  return 1;
}

/* A one-page first machine-code area (docs/design.md, "Callbacks"). LuaJIT maps its machine
 * code in areas of `sizemcode` KiB (64 on 64-bit) and touches two pages of the first for a
 * small trace, its header's and the trace's; with sizemcode=4 both are one page. The handler
 * below restores the default when the state's first trace ends, compiled or aborted (a trace
 * too long for the page is retried in an area of the default size), and detaches itself. */
#if defined(_WIN32) || UINTPTR_MAX > 0xffffffffu
static const char MCODE_DEFAULT[] = "sizemcode=64";  /* lj_jit.h: LJ_TARGET_WINDOWS || LJ_64 */
#else
static const char MCODE_DEFAULT[] = "sizemcode=32";
#endif

/* Pushes jit.opt.start and jit.attach (2 slots) and returns 1, or returns 0 with nothing
 * pushed (a LuaJIT without the JIT or its VM events has neither). */
static int jit_functions(lua_State *L) {
  int top = lua_gettop(L);
  lua_getfield(L, LUA_REGISTRYINDEX, "_LOADED");    /* top+1 */
  lua_getfield(L, top + 1, "jit");                   /* top+2 */
  if (lua_istable(L, top + 2)) {
    lua_getfield(L, top + 2, "opt");                 /* top+3 */
    if (lua_istable(L, top + 3)) {
      lua_getfield(L, top + 3, "start");             /* top+4 */
      lua_getfield(L, top + 2, "attach");            /* top+5 */
      if (lua_isfunction(L, top + 4) && lua_isfunction(L, top + 5)) {
        lua_replace(L, top + 2);                     /* attach */
        lua_replace(L, top + 1);                     /* start */
        lua_settop(L, top + 2);
        return 1;
      }
    }
  }
  lua_settop(L, top);
  return 0;
}

/* jit.attach's trace handler (what, ...): at the first "stop" or "abort", detaches itself
 * (its one upvalue is itself: detaching needs the attached function object, and a registry
 * key would grow the registry) and restores the default area size. */
static int mcode_restore(lua_State *L) {
  const char *what = lua_tostring(L, 1);
  if (!what || (strcmp(what, "stop") != 0 && strcmp(what, "abort") != 0)) return 0;
  lua_settop(L, 0);
  if (!jit_functions(L)) return 0;                   /* 1 start, 2 attach */
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_call(L, 1, 0);                                 /* jit.attach(this handler): detached */
  lua_pushstring(L, MCODE_DEFAULT);
  lua_call(L, 1, 0);                                 /* jit.opt.start(default) */
  return 0;
}

int ljasync_light_small_mcode(lua_State *L) {
  lua_settop(L, 0);
  if (!jit_functions(L)) return 0;   /* 1 start, 2 attach */
  lua_pushvalue(L, 1);
  lua_pushliteral(L, "sizemcode=4");
  lua_call(L, 1, 0);
  lua_pushnil(L);
  lua_pushcclosure(L, mcode_restore, 1);
  lua_pushvalue(L, -1);
  lua_setupvalue(L, -2, 1);                          /* its upvalue: itself */
  lua_pushliteral(L, "trace");
  lua_call(L, 2, 0);
  lua_settop(L, 0);
  return 0;
}

int ljasync_light_open(lua_State *L) {
  lua_settop(L, 4);                               /* path, cpath, core, searcher */
  lua_pushcfunction(L, luaopen_base);
  lua_call(L, 0, 0);
  lua_pushcfunction(L, luaopen_package);
  lua_call(L, 0, 0);
  lua_pushcfunction(L, luaopen_jit);
  lua_call(L, 0, 0);
  lua_settop(L, 4);

  /* The creator's paths, the core's path (read by core.lua) and the module cache's searcher
   * right after package.preload (see ModuleCache.swift). */
  lua_getfield(L, LUA_REGISTRYINDEX, "_LOADED");
  lua_getfield(L, -1, "package");
  lua_pushvalue(L, 1);
  lua_setfield(L, -2, "path");
  lua_pushvalue(L, 2);
  lua_setfield(L, -2, "cpath");
  if (lua_objlen(L, 3) > 0) {
    lua_pushvalue(L, 3);
    lua_setfield(L, LUA_REGISTRYINDEX, "ljasync_core");
  }
  lua_getfield(L, -1, "loaders");
  for (int i = (int)lua_objlen(L, -1); i >= 2; i--) {
    lua_rawgeti(L, -1, i);
    lua_rawseti(L, -2, i + 1);
  }
  lua_pushvalue(L, 4);
  lua_rawseti(L, -2, 2);
  lua_pushvalue(L, 4);
  lua_setfield(L, LUA_REGISTRYINDEX, "ljasync_searcher");
  lua_settop(L, 0);

  lua_createtable(L, 0, 1);                       /* 1: the placeholders' metatable */
  lua_pushcfunction(L, proxy_index_mm);
  lua_setfield(L, 1, "__index");
  lua_pushvalue(L, 1);
  lua_setfield(L, LUA_REGISTRYINDEX, PROXY_MT);
  lua_createtable(L, 0, NLAZY);                   /* 2: placeholder -> index */
  lua_pushvalue(L, 2);
  lua_setfield(L, LUA_REGISTRYINDEX, PROXIES);
  lua_getfield(L, LUA_REGISTRYINDEX, "_PRELOAD"); /* 3 */
  for (int i = 0; i < NLAZY; i++) {
    lua_createtable(L, 0, 0);
    lua_pushvalue(L, 1);
    lua_setmetatable(L, -2);
    lua_pushvalue(L, -1);
    lua_pushinteger(L, i);
    lua_rawset(L, 2);
    if (i == 0) {
      /* Strings index the (empty, for now) string table, as luaopen_string will set up too. */
      lua_pushliteral(L, "");
      lua_createtable(L, 0, 1);
      lua_pushvalue(L, -3);
      lua_setfield(L, -2, "__index");
      lua_setmetatable(L, -2);
      lua_pop(L, 1);
    }
    lua_setfield(L, LUA_GLOBALSINDEX, lazy[i]);
    lua_pushcfunction(L, preload_library);
    lua_setfield(L, 3, lazy[i]);
  }
  lua_pushcfunction(L, preload_ffi);
  lua_setfield(L, 3, "ffi");
  static const char *const submodules[] = { "string.buffer", "table.new", "table.clear" };
  for (int i = 0; i < 3; i++) {
    lua_pushcfunction(L, preload_submodule);
    lua_setfield(L, 3, submodules[i]);
  }
  lua_settop(L, 0);
  return 0;
}
