/* Light spawns: a Thread.spawn of a function without upvalues whose arguments are scalars and
 * channels runs in a state that loads neither ffi nor any lj-async module (docs/design.md,
 * "Light spawns").
 *
 * Values cross as ljasync_cell (the channel's unit): NIL, FALSE, TRUE, NUMBER, SHORT, HEAP, and
 * CHANNEL (one owned channel reference) for a spawn's arguments and results only. The spawned
 * state gets each channel as a full userdata owning one reference (released by __gc) whose
 * push, pop and try_pop move scalars here in C; everything else (another method, a value that is
 * not a scalar, a bad argument, so every error) goes to lj-async.light_channel, which makes the
 * ordinary ffi handle for the same channel once and lets lj-async.sync do it. The wrappers that
 * choose are a small Lua chunk (below) so that the slow path is a tail call: lj-async.sync's
 * methods then raise at the user's level, exactly as they do for an ffi handle.
 *
 * C, not Swift: pushing values and calling the function can raise, and that longjmp must cross
 * no Swift frame. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "ljasync.h"
#pragma GCC visibility push(hidden)
#include "api.h"
#include "ljasync_lua.h"

/* Registry keys: the light channel handles' metatable (lj-async.light_channel and the
 * encoder find it there) and the metatable of a popped cell waiting for the slow path. */
static const char CHANNEL_MT[] = "lj-async.light.channel", PENDING_MT[] = "lj-async.light.pending";
static const char FALLBACK[] = "lj-async.light_channel";

typedef struct light_channel { ljasync_channel *_Nullable p; } light_channel;

/* -- Cells -- */

static void cell_release(ljasync_cell *c) {
  switch (c->tag) {
  case LJASYNC_CELL_HEAP: case LJASYNC_CELL_ENCODED_HEAP: free(c->h.p); break;
  case LJASYNC_CELL_MESSAGE: if (c->m) ljasync_message_free(c->m); break;
  case LJASYNC_CELL_CHANNEL: ljasync_object_release(c->h.p); break;
  default: break;
  }
  c->tag = LJASYNC_CELL_NIL;
}

void ljasync_light_cells_free(void *_Nullable cells, int32_t n) {
  ljasync_cell *c = cells;
  if (!c) return;
  for (int32_t i = 0; i < n; i++) cell_release(&c[i]);
  free(c);
}

void *_Nullable ljasync_light_cells_copy(const void *_Nullable cells, int32_t n) {
  if (n <= 0 || !cells) return NULL;
  const ljasync_cell *src = cells;
  ljasync_cell *out = calloc((size_t)n, sizeof *out);
  if (!out) return NULL;
  for (int32_t i = 0; i < n; i++) {
    out[i] = src[i];
    if (src[i].tag == LJASYNC_CELL_HEAP) {
      char *p = malloc(src[i].h.size ? src[i].h.size : 1);
      if (!p) {
        out[i].tag = LJASYNC_CELL_NIL;
        ljasync_light_cells_free(out, i + 1);
        return NULL;
      }
      memcpy(p, src[i].h.p, src[i].h.size);
      out[i].h.p = p;
    } else if (src[i].tag == LJASYNC_CELL_CHANNEL) {
      ljasync_object_retain(src[i].h.p);
    } else if (src[i].tag > LJASYNC_CELL_HEAP) {  /* not an argument's kind: nothing owned */
      out[i].tag = LJASYNC_CELL_NIL;
    }
  }
  return out;
}

/* -- Channel handles -- */

static void push_channel(lua_State *L, void *p);

/* Pushes a scalar cell's value, or a new handle for a CHANNEL cell (its own reference). */
static void push_cell(lua_State *L, const ljasync_cell *c) {
  switch (c->tag) {
  case LJASYNC_CELL_FALSE: lua_pushboolean(L, 0); break;
  case LJASYNC_CELL_TRUE: lua_pushboolean(L, 1); break;
  case LJASYNC_CELL_NUMBER: lua_pushnumber(L, c->n); break;
  case LJASYNC_CELL_SHORT: lua_pushlstring(L, c->s, c->len); break;
  case LJASYNC_CELL_HEAP: lua_pushlstring(L, c->h.p, c->h.size); break;
  case LJASYNC_CELL_CHANNEL: push_channel(L, c->h.p); break;
  default: lua_pushnil(L); break;
  }
}

/* The handle at idx (a light channel handle of this state), or NULL. */
static light_channel *to_channel(lua_State *L, int idx, int mt) {
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
  light_channel *h = to_channel(L, 1, lua_upvalueindex(1));
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
  light_channel *h = to_channel(L, 1, lua_upvalueindex(1));
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
    cell_release(&c);
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
  if (c) cell_release(c);
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
    lua_getfield(L, LUA_REGISTRYINDEX, CHANNEL_MT);
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
  lua_getfield(L, LUA_REGISTRYINDEX, CHANNEL_MT);
  lua_getfield(L, -1, "_require");
  lua_pushstring(L, FALLBACK);
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
static void channel_metatable(lua_State *L) {
  lua_getfield(L, LUA_REGISTRYINDEX, CHANNEL_MT);
  if (!lua_isnil(L, -1)) return;
  lua_pop(L, 1);
  int top = lua_gettop(L);
  lua_createtable(L, 0, 1);                                /* top+1: pending cells' metatable */
  lua_pushcfunction(L, pending_gc);
  lua_setfield(L, -2, "__gc");
  lua_setfield(L, LUA_REGISTRYINDEX, PENDING_MT);
  lua_createtable(L, 0, 10);                               /* top+1: mt */
  lua_pushvalue(L, -1);
  lua_setfield(L, LUA_REGISTRYINDEX, CHANNEL_MT);
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
static void push_channel(lua_State *L, void *p) {
  light_channel *h = lua_newuserdata(L, sizeof *h);
  h->p = NULL;
  channel_metatable(L);
  lua_setmetatable(L, -2);
  ljasync_object_retain(p);
  h->p = p;
}

/* -- The spawn -- */

/* The cell kind value idx moves as, or -1 when it needs the encoder. */
static int cell_kind(lua_State *L, int idx, int mt) {
  switch (lua_type(L, idx)) {
  case LUA_TNIL: return LJASYNC_CELL_NIL;
  case LUA_TBOOLEAN: return lua_toboolean(L, idx) ? LJASYNC_CELL_TRUE : LJASYNC_CELL_FALSE;
  case LUA_TNUMBER: return LJASYNC_CELL_NUMBER;
  case LUA_TSTRING: return LJASYNC_CELL_SHORT;
  case LUA_TUSERDATA: {
    light_channel *h = mt ? to_channel(L, idx, mt) : NULL;
    return h && h->p ? LJASYNC_CELL_CHANNEL : -1;
  }
  default: return -1;
  }
}

/* The values at 1..n as new cells (malloc'ed, owned), or NULL when one of them is no scalar
 * or channel handle, or memory ran out (then the encoder takes them, and reports that). */
static ljasync_cell *results_as_cells(lua_State *L, int n) {
  lua_getfield(L, LUA_REGISTRYINDEX, CHANNEL_MT);
  int mt = lua_isnil(L, -1) ? 0 : lua_gettop(L);
  for (int i = 1; i <= n; i++) {
    if (cell_kind(L, i, mt) < 0) { lua_pop(L, 1); return NULL; }
  }
  ljasync_cell *out = calloc((size_t)n, sizeof *out);
  for (int i = 0; out && i < n; i++) {
    int k = cell_kind(L, i + 1, mt);
    out[i].tag = (uint32_t)k;
    if (k == LJASYNC_CELL_NUMBER) {
      out[i].n = lua_tonumber(L, i + 1);
    } else if (k == LJASYNC_CELL_SHORT) {
      size_t len;
      const char *s = lua_tolstring(L, i + 1, &len);
      if (len <= LJASYNC_CELL_INLINE) {
        out[i].len = (uint32_t)len;
        memcpy(out[i].s, s, len);
      } else {
        char *p = malloc(len);
        if (!p) {
          out[i].tag = LJASYNC_CELL_NIL;
          ljasync_light_cells_free(out, i + 1);
          out = NULL;
          break;
        }
        memcpy(p, s, len);
        out[i].tag = LJASYNC_CELL_HEAP;
        out[i].h.p = p;
        out[i].h.size = len;
      }
    } else if (k == LJASYNC_CELL_CHANNEL) {
      light_channel *h = lua_touserdata(L, i + 1);
      ljasync_object_retain(h->p);
      out[i].h.p = (char *)h->p;
    }
  }
  lua_pop(L, 1);
  return out;
}

int ljasync_light_spawn(lua_State *L) {
  const ljasync_cell *cells = lua_touserdata(L, 2);
  int n = (int)lua_tointeger(L, 3);
  lua_settop(L, 1);
  if (n > 0 && !lua_checkstack(L, n + LUA_MINSTACK)) return luaL_error(L, "too many arguments to spawn (%d)", n);
  for (int i = 0; i < n; i++) push_cell(L, &cells[i]);
  lua_call(L, n, LUA_MULTRET);
  int nres = lua_gettop(L);
  if (nres == 0) return 0;
  ljasync_cell *out = results_as_cells(L, nres);
  if (out) {
    lua_pushlightuserdata(L, out);
    lua_pushinteger(L, nres);
    return 2;
  }
  /* Not all scalars: the encoder's message, as the Lua runner makes it. */
  channel_metatable(L);  /* its _require, whatever the user did to the global */
  lua_getfield(L, -1, "_require");
  lua_pushstring(L, FALLBACK);
  lua_call(L, 1, 1);
  lua_getfield(L, -1, "encode_results");
  lua_replace(L, -3);
  lua_pop(L, 1);
  lua_insert(L, 1);
  lua_call(L, nres, 1);
  return 1;
}
#pragma GCC visibility pop
