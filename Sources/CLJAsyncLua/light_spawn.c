/* Light spawns: a Thread.spawn of a function without upvalues whose arguments are scalars and
 * channels runs in a state that loads neither ffi nor any lj-async module (docs/design.md,
 * "Light spawns").
 *
 * Values cross as ljasync_cell (the channel's unit): NIL, FALSE, TRUE, NUMBER, SHORT, HEAP, and
 * CHANNEL (one owned channel reference) for a spawn's arguments and results only. A channel
 * arrives as a light handle (light_channel.c). Results that are not all of those kinds go to
 * the encoder through lj-async.light_channel, as the Lua spawn runner sends them.
 *
 * C, not Swift: pushing values and calling the function can raise, and that longjmp must cross
 * no Swift frame. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "ljasync.h"
#pragma GCC visibility push(hidden)
#include "light_internal.h"
#include "ljasync_lua.h"

/* -- Cells -- */

void ljasync_light_cell_release(ljasync_cell *c) {
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
  for (int32_t i = 0; i < n; i++) ljasync_light_cell_release(&c[i]);
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

/* Pushes a scalar cell's value, or a new handle for a CHANNEL cell (its own reference). */
static void push_cell(lua_State *L, const ljasync_cell *c) {
  switch (c->tag) {
  case LJASYNC_CELL_FALSE: lua_pushboolean(L, 0); break;
  case LJASYNC_CELL_TRUE: lua_pushboolean(L, 1); break;
  case LJASYNC_CELL_NUMBER: lua_pushnumber(L, c->n); break;
  case LJASYNC_CELL_SHORT: lua_pushlstring(L, c->s, c->len); break;
  case LJASYNC_CELL_HEAP: lua_pushlstring(L, c->h.p, c->h.size); break;
  case LJASYNC_CELL_CHANNEL: ljasync_light_push_channel(L, c->h.p); break;
  default: lua_pushnil(L); break;
  }
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
    light_channel *h = mt ? ljasync_light_to_channel(L, idx, mt) : NULL;
    return h && h->p ? LJASYNC_CELL_CHANNEL : -1;
  }
  default: return -1;
  }
}

/* The values at 1..n as new cells (malloc'ed, owned), or NULL when one of them is no scalar
 * or channel handle, or memory ran out (then the encoder takes them, and reports that). */
static ljasync_cell *results_as_cells(lua_State *L, int n) {
  lua_getfield(L, LUA_REGISTRYINDEX, LIGHT_CHANNEL_MT);
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
  ljasync_light_channel_metatable(L);  /* its _require, whatever the user did to the global */
  lua_getfield(L, -1, "_require");
  lua_pushstring(L, LIGHT_FALLBACK);
  lua_call(L, 1, 1);
  lua_getfield(L, -1, "encode_results");
  lua_replace(L, -3);
  lua_pop(L, 1);
  lua_insert(L, 1);
  lua_call(L, nres, 1);
  return 1;
}
#pragma GCC visibility pop
