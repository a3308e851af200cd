/* A light spawn's channel handle (docs/design.md, "Light spawns"): a full userdata owning one
 * reference (released by __gc) whose push, pop and try_pop move scalar cells here in C.
 * Everything else (another method, a value that is not a scalar, a bad argument, so every
 * error) goes to lj-async.light_channel, which makes the ordinary ffi handle for the same
 * channel once and lets lj-async.sync do it. The wrappers that choose are a small Lua chunk
 * (below) so that the slow path is a tail call: lj-async.sync's methods then raise at the
 * user's level, exactly as they do for an ffi handle.
 *
 * C, not Swift: a Lua error's longjmp must cross no Swift frame. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include "ljasync.h"
#pragma GCC visibility push(hidden)
#include "light_internal.h"

/* Registry key of the metatable of a popped cell waiting for the slow path. */
static const char PENDING_MT[] = "lj-async.light.pending";

/* The handle at idx (a light channel handle of this state), or NULL. */
light_channel *ljasync_light_to_channel(lua_State *L, int idx, int mt) {
  light_channel *h = lua_touserdata(L, idx);
  if (!h || !lua_getmetatable(L, idx)) return NULL;
  int is = lua_rawequal(L, -1, mt);
  lua_pop(L, 1);
  return is ? h : NULL;
}

/* The timeout at idx as the core takes it (nil or huge: -1), or 0 when it is not one (the
 * slow path raises lj-async.sync's error). */
static int timeout_at(lua_State *L, int idx, double *t) {
  int ty = lua_type(L, idx);
  if (ty == LUA_TNIL || ty == LUA_TNONE) { *t = -1; return 1; }
  if (ty != LUA_TNUMBER) return 0;
  double x = lua_tonumber(L, idx);
  if (!(x >= 0)) return 0;
  *t = isinf(x) ? -1 : x;
  return 1;
}

/* cpush(self, v, timeout) [upvalue: the handles' metatable]: true, or false and "full" or
 * "closed"; nothing when the slow path must do it. */
static int channel_push(lua_State *L) {
  light_channel *h = ljasync_light_to_channel(L, 1, lua_upvalueindex(1));
  double t;
  if (!h || !h->p || !timeout_at(L, 3, &t)) return 0;
  int32_t st;
  switch (lua_type(L, 2)) {
  case LUA_TNUMBER: st = ljasync_channel_push_number(h->p, lua_tonumber(L, 2), t); break;
  case LUA_TSTRING: {
    size_t n;
    const char *s = lua_tolstring(L, 2, &n);
    st = ljasync_channel_push_string(h->p, s, n, t);
    break;
  }
  case LUA_TBOOLEAN:
    st = ljasync_channel_push_simple(h->p, lua_toboolean(L, 2) ? LJASYNC_CELL_TRUE : LJASYNC_CELL_FALSE, t);
    break;
  case LUA_TNIL: case LUA_TNONE: st = ljasync_channel_push_simple(h->p, LJASYNC_CELL_NIL, t); break;
  default: return 0;
  }
  if (st == 0) { lua_pushboolean(L, 1); return 1; }
  if (st != 1 && st != 2) return 0;  /* out of memory: the slow path tries and raises */
  lua_pushboolean(L, 0);
  lua_pushstring(L, st == 1 ? "full" : "closed");
  return 2;
}

/* Under lua_pcall from channel_pop: (cell address) -> its value. A heap string becomes a Lua
 * string; any other kind (an encoded table, a message) moves into a new pending userdata for
 * the slow path. Either way the cell is emptied once its content has a new owner. */
static int materialize(lua_State *L) {
  ljasync_cell *c = lua_touserdata(L, 1);
  if (c->tag == LJASYNC_CELL_HEAP) {
    lua_pushlstring(L, c->h.p, c->h.size);
  } else {
    ljasync_cell *p = lua_newuserdata(L, sizeof *p);
    lua_getfield(L, LUA_REGISTRYINDEX, PENDING_MT);
    lua_setmetatable(L, -2);
    *p = *c;
    c->tag = LJASYNC_CELL_NIL;
  }
  return 1;
}

/* cpop(self, timeout) [upvalues: the metatable, materialize, try_pop?]: 1 and the value,
 * 2 and "timeout" or "closed", 3 and a pending cell, or nothing for the slow path. */
static int channel_pop(lua_State *L) {
  light_channel *h = ljasync_light_to_channel(L, 1, lua_upvalueindex(1));
  double t = 0;
  int try = lua_toboolean(L, lua_upvalueindex(3));
  if (!h || !h->p || (!try && !timeout_at(L, 2, &t))) return 0;
  ljasync_cell c;
  int32_t n = ljasync_channel_pop(h->p, &c, 1, t);
  if (n < 0) {
    lua_pushinteger(L, 2);
    lua_pushstring(L, n == -1 ? "timeout" : "closed");
    return 2;
  }
  /* Nothing below raises before the value has a Lua owner except materialize's allocation,
   * which runs protected: its failure frees the cell's content, then re-raises. A finalizer run
   * by an allocation here cannot touch `c` (a local). */
  switch (c.tag) {
  case LJASYNC_CELL_NIL: lua_pushinteger(L, 1); lua_pushnil(L); return 2;
  case LJASYNC_CELL_NUMBER: lua_pushinteger(L, 1); lua_pushnumber(L, c.n); return 2;
  case LJASYNC_CELL_FALSE: case LJASYNC_CELL_TRUE:
    lua_pushinteger(L, 1); lua_pushboolean(L, c.tag == LJASYNC_CELL_TRUE); return 2;
  case LJASYNC_CELL_SHORT: lua_pushinteger(L, 1); lua_pushlstring(L, c.s, c.len); return 2;
  default: break;
  }
  int heap = c.tag == LJASYNC_CELL_HEAP;
  lua_pushinteger(L, heap ? 1 : 3);
  lua_pushvalue(L, lua_upvalueindex(2));
  lua_pushlightuserdata(L, &c);
  if (lua_pcall(L, 1, 1, 0) != 0) {
    ljasync_light_cell_release(&c);
    return lua_error(L);
  }
  if (heap) free(c.h.p);
  return 2;
}

static int channel_gc(lua_State *L) {
  light_channel *h = lua_touserdata(L, 1);
  if (h && h->p) {
    void *p = h->p;
    h->p = NULL;
    ljasync_object_release(p);
  }
  return 0;
}

static int pending_gc(lua_State *L) {
  ljasync_cell *c = lua_touserdata(L, 1);
  if (c) ljasync_light_cell_release(c);
  return 0;
}

/* Two handles of this state for the same channel are equal (as two ffi handles are). */
static int channel_eq(lua_State *L) {
  light_channel *a = lua_touserdata(L, 1), *b = lua_touserdata(L, 2);
  lua_pushboolean(L, a && b && a->p == b->p);
  return 1;
}

/* mt._address(handle or pending cell): the channel (a light userdata; nil once freed), or the
 * pending cell's address. For lj-async.light_channel. */
static int handle_address(lua_State *L) {
  void *u = lua_touserdata(L, 1);
  if (!u) return 0;
  if (lua_getmetatable(L, 1)) {
    lua_getfield(L, LUA_REGISTRYINDEX, LIGHT_CHANNEL_MT);
    int is = lua_rawequal(L, -1, -2);
    lua_pop(L, 2);
    if (is) {
      light_channel *h = u;
      if (!h->p) return 0;
      lua_pushlightuserdata(L, h->p);
      return 1;
    }
  }
  lua_pushlightuserdata(L, u);
  return 1;
}

/* mt._clear(handle): releases its reference now (free()). */
static int handle_clear(lua_State *L) { return channel_gc(L); }

/* Calls lj-async.light_channel's `name` with the values from index 1 up, returning its results
 * (the metamethods' slow path: __tostring, __len). */
static int call_fallback(lua_State *L, const char *name) {
  int n = lua_gettop(L);
  lua_getfield(L, LUA_REGISTRYINDEX, LIGHT_CHANNEL_MT);
  lua_getfield(L, -1, "_require");
  lua_pushstring(L, LIGHT_FALLBACK);
  lua_call(L, 1, 1);
  lua_getfield(L, -1, name);
  lua_replace(L, -3);
  lua_pop(L, 1);
  lua_insert(L, 1);
  lua_call(L, n, LUA_MULTRET);
  return lua_gettop(L);
}
static int channel_tostring(lua_State *L) { return call_fallback(L, "tostring"); }
static int channel_len(lua_State *L) { return call_fallback(L, "len"); }

/* The methods: push, pop and try_pop try C first; the rest comes from lj-async.light_channel
 * (`method`, which caches each in `methods`). The slow paths are tail calls. A C function is
 * not compiled into the caller's trace (the trace stitches around it): a pop costs about 70 ns
 * here against 18 through ffi. So after HOT calls a state's handles take lj-async.sync's
 * compiled path for good (`upgrade`: ffi and the channel module then load, once). */
static const char WRAPPERS[] =
  "local cpush, cpop, ctry, require, pcall = ...\n"
  "local fallback\n"
  "local function slow(name)\n"
  "  fallback = fallback or require 'lj-async.light_channel'\n"
  "  return fallback[name]\n"
  "end\n"
  "local ops, HOT = 0, 10000\n"
  "local function upgrade() slow('upgrade')() end\n"
  "local function push(self, v, timeout)\n"
  "  ops = ops + 1\n"
  "  if ops == HOT then pcall(upgrade) end\n"
  "  local ok, why = cpush(self, v, timeout)\n"
  "  if ok then return true end\n"
  "  if ok == nil then return slow('push')(self, v, timeout) end\n"
  "  return false, why\n"
  "end\n"
  "local function pop(self, timeout)\n"
  "  ops = ops + 1\n"
  "  if ops == HOT then pcall(upgrade) end\n"
  "  local k, v = cpop(self, timeout)\n"
  "  if k == 1 then return v end\n"
  "  if k == 2 then return nil, v end\n"
  "  if k == 3 then return slow('take')(v) end\n"
  "  return slow('pop')(self, timeout)\n"
  "end\n"
  "local function try_pop(self)\n"
  "  ops = ops + 1\n"
  "  if ops == HOT then pcall(upgrade) end\n"
  "  local k, v = ctry(self)\n"
  "  if k == 1 then return v end\n"
  "  if k == 2 then return nil, v end\n"
  "  if k == 3 then return slow('take')(v) end\n"
  "  return slow('try_pop')(self)\n"
  "end\n"
  "local function index(_, k) return slow('method')(k) end\n"
  "return push, pop, try_pop, index\n";

/* Makes the handles' metatable (once per state) and leaves it on the stack. */
void ljasync_light_channel_metatable(lua_State *L) {
  lua_getfield(L, LUA_REGISTRYINDEX, LIGHT_CHANNEL_MT);
  if (!lua_isnil(L, -1)) return;
  lua_pop(L, 1);
  int top = lua_gettop(L);
  lua_createtable(L, 0, 1);                                /* top+1: pending cells' metatable */
  lua_pushcfunction(L, pending_gc);
  lua_setfield(L, -2, "__gc");
  lua_setfield(L, LUA_REGISTRYINDEX, PENDING_MT);
  lua_createtable(L, 0, 10);                               /* top+1: mt */
  lua_pushvalue(L, -1);
  lua_setfield(L, LUA_REGISTRYINDEX, LIGHT_CHANNEL_MT);
  if (luaL_loadbuffer(L, WRAPPERS, sizeof WRAPPERS - 1, "=lj-async light channel") != 0) lua_error(L);
  lua_pushvalue(L, top + 1);
  lua_pushcclosure(L, channel_push, 1);
  lua_pushvalue(L, top + 1);
  lua_pushcfunction(L, materialize);
  lua_pushboolean(L, 0);
  lua_pushcclosure(L, channel_pop, 3);
  lua_pushvalue(L, top + 1);
  lua_pushcfunction(L, materialize);
  lua_pushboolean(L, 1);
  lua_pushcclosure(L, channel_pop, 3);
  lua_getfield(L, LUA_GLOBALSINDEX, "require");
  lua_pushvalue(L, -1);
  lua_setfield(L, top + 1, "_require");
  lua_getfield(L, LUA_GLOBALSINDEX, "pcall");
  lua_call(L, 5, 4);                                       /* top+2..5: push pop try_pop index */
  lua_createtable(L, 0, 4);                                /* top+6: methods */
  lua_pushvalue(L, top + 2);
  lua_setfield(L, -2, "push");
  lua_pushvalue(L, top + 3);
  lua_setfield(L, -2, "pop");
  lua_pushvalue(L, top + 4);
  lua_setfield(L, -2, "try_pop");
  lua_createtable(L, 0, 1);
  lua_pushvalue(L, top + 5);
  lua_setfield(L, -2, "__index");
  lua_setmetatable(L, -2);
  lua_setfield(L, top + 1, "__index");
  lua_settop(L, top + 1);
  lua_pushcfunction(L, channel_gc);
  lua_setfield(L, -2, "__gc");
  lua_pushcfunction(L, channel_eq);
  lua_setfield(L, -2, "__eq");
  lua_pushcfunction(L, channel_tostring);
  lua_setfield(L, -2, "__tostring");
  lua_pushcfunction(L, channel_len);
  lua_setfield(L, -2, "__len");
  lua_pushcfunction(L, handle_address);
  lua_setfield(L, -2, "_address");
  lua_pushcfunction(L, handle_clear);
  lua_setfield(L, -2, "_clear");
}

/* Pushes a new handle for channel p, with a reference of its own. */
void ljasync_light_push_channel(lua_State *L, void *p) {
  light_channel *h = lua_newuserdata(L, sizeof *h);
  h->p = NULL;
  ljasync_light_channel_metatable(L);
  lua_setmetatable(L, -2);
  ljasync_object_retain(p);
  h->p = p;
}

#pragma GCC visibility pop
