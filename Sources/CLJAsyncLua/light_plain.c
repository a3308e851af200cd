/* The encoder's plain format for scalars, in C (light_plain.h): what a light pool worker
 * (light_worker.c) reads from a job's arguments and writes as its results, so the pool's job
 * format stays the encoder's. Only nil, booleans, numbers and strings; anything else makes the
 * caller hand the worker over to pool_worker.lua, whose encoder takes it.
 * Runs on the worker's thread. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "ljasync.h"
#pragma GCC visibility push(hidden)
#include "api.h"
#include "ljasync_lua.h"
#include "light_plain.h"

static const uint32_t SEED = 0x2545f491u;  /* encoder/native.lua's CHECKSUM_SEED */
/* string.buffer's serialization tags (LuaJIT's lj_serialize.c). */
enum { SER_NIL = 0, SER_FALSE = 1, SER_TRUE = 2, SER_INT = 6, SER_NUM = 7, SER_INT64 = 0x10,
       SER_UINT64 = 0x11, SER_STR = 0x20 };

static int read_u124(light_reader *r, uint32_t *v) {
  if (r->p >= r->end) return 0;
  uint32_t b = *r->p++;
  if (b < 0xe0) { *v = b; return 1; }
  if (b == 0xff) {
    if (r->end - r->p < 4) return 0;
    memcpy(v, r->p, 4);
    r->p += 4;
    return 1;
  }
  if (r->p >= r->end) return 0;
  *v = ((b & 0x1f) << 8) + *r->p++ + 0xe0;
  return 1;
}

/* Pushes the scalar string.buffer value at r; 0 (nothing pushed) for any other. */
int ljasync_light_plain_push(lua_State *L, light_reader *r) {
  uint32_t tag;
  if (!read_u124(r, &tag)) return 0;
  if (tag >= SER_STR) {
    uint32_t len = tag - SER_STR;
    if ((size_t)(r->end - r->p) < len) return 0;
    lua_pushlstring(L, (const char *)r->p, len);
    r->p += len;
    return 1;
  }
  switch (tag) {
  case SER_NIL: lua_pushnil(L); return 1;
  case SER_FALSE: lua_pushboolean(L, 0); return 1;
  case SER_TRUE: lua_pushboolean(L, 1); return 1;
  case SER_INT: {
    int32_t i;
    if (r->end - r->p < 4) return 0;
    memcpy(&i, r->p, 4);
    r->p += 4;
    lua_pushnumber(L, (lua_Number)i);
    return 1;
  }
  case SER_NUM: case SER_INT64: case SER_UINT64: {
    double d;
    if (r->end - r->p < 8) return 0;
    memcpy(&d, r->p, 8);
    r->p += 8;
    if (tag != SER_NUM) return 0;  /* a cdata: skipped by skip_value only */
    lua_pushnumber(L, d);
    return 1;
  }
  default: return 0;
  }
}

/* Skips one value (a scalar or a 64-bit integer cdata, as a bytecode mark is). */
int ljasync_light_plain_skip(lua_State *L, light_reader *r) {
  const uint8_t *at = r->p;
  if (ljasync_light_plain_push(L, r)) { lua_pop(L, 1); return 1; }
  return r->p > at && (at[0] == SER_INT64 || at[0] == SER_UINT64) && r->p - at == 9;
}

/* The bytes of message m, checked (frame and checksum); 0 when they are not right. */
int ljasync_light_message_bytes(ljasync_message *m, light_reader *r) {
  size_t len;
  const uint8_t *p = ljasync_message_data(m, &len);
  if (!p || len < 6) return 0;
  uint32_t sum;
  memcpy(&sum, p + len - 4, 4);
  if (sum != ljasync_encoder_checksum(p + 1, len - 5, SEED)) return 0;
  r->p = p;
  r->end = p + len - 4;
  return 1;
}

/* Pushes a plain message's values; their count, or -1 (nothing pushed) when it is no plain
 * message of scalars. */
int ljasync_light_plain_push_all(lua_State *L, ljasync_message *m) {
  light_reader r;
  if (!m) return 0;
  if (!ljasync_light_message_bytes(m, &r) || r.p[0] != LJASYNC_TAG_PLAIN) return -1;
  uint32_t n = r.p[1];
  r.p += 2;
  if (n == 255) {
    if (r.end - r.p < 4) return -1;
    memcpy(&n, r.p, 4);
    r.p += 4;
  }
  if (n > 250 || !lua_checkstack(L, (int)n + LUA_MINSTACK)) return -1;
  int top = lua_gettop(L);
  for (uint32_t i = 0; i < n; i++) {
    if (!ljasync_light_plain_push(L, &r)) { lua_settop(L, top); return -1; }
  }
  if (r.p != r.end) { lua_settop(L, top); return -1; }
  return (int)n;
}

/* -- Results -- */


static int reserve(light_writer *w, size_t n) {
  if (w->len + n <= w->cap) return 1;
  size_t cap = w->cap ? w->cap : 64;
  while (cap < w->len + n) cap *= 2;
  uint8_t *p = realloc(w->p, cap);
  if (!p) return 0;
  w->p = p;
  w->cap = cap;
  return 1;
}

static void put_u124(light_writer *w, uint32_t v) {
  if (v < 0xe0) {
    w->p[w->len++] = (uint8_t)v;
  } else if (v < 0x1fe0) {
    v -= 0xe0;
    w->p[w->len++] = (uint8_t)(0xe0 | (v >> 8));
    w->p[w->len++] = (uint8_t)v;
  } else {
    w->p[w->len++] = 0xff;
    memcpy(w->p + w->len, &v, 4);
    w->len += 4;
  }
}

/* The values at first..top as a plain message, or NULL when one is no scalar (or memory ran
 * out, which the encoder then reports). w is the loop's buffer, kept between jobs. */
ljasync_message *_Nullable ljasync_light_plain_message(lua_State *L, int first, light_writer *w) {
  int top = lua_gettop(L), n = top - first + 1;
  w->len = 0;
  if (!reserve(w, 6)) return NULL;
  w->p[w->len++] = LJASYNC_TAG_PLAIN;
  if (n < 255) {
    w->p[w->len++] = (uint8_t)n;
  } else {
    uint32_t n32 = (uint32_t)n;
    w->p[w->len++] = 255;
    memcpy(w->p + w->len, &n32, 4);
    w->len += 4;
  }
  for (int i = first; i <= top; i++) {
    switch (lua_type(L, i)) {
    case LUA_TNIL: if (!reserve(w, 1)) return NULL; w->p[w->len++] = SER_NIL; break;
    case LUA_TBOOLEAN:
      if (!reserve(w, 1)) return NULL;
      w->p[w->len++] = lua_toboolean(L, i) ? SER_TRUE : SER_FALSE;
      break;
    case LUA_TNUMBER: {
      double d = lua_tonumber(L, i);
      if (!reserve(w, 9)) return NULL;
      w->p[w->len++] = SER_NUM;
      memcpy(w->p + w->len, &d, 8);
      w->len += 8;
      break;
    }
    case LUA_TSTRING: {
      size_t len;
      const char *s = lua_tolstring(L, i, &len);
      if (len > 0x7fffffffu || !reserve(w, len + 5)) return NULL;
      put_u124(w, (uint32_t)len + SER_STR);
      memcpy(w->p + w->len, s, len);
      w->len += len;
      break;
    }
    default: return NULL;
    }
  }
  if (!reserve(w, 4)) return NULL;
  uint32_t sum = ljasync_encoder_checksum(w->p + 1, w->len - 1, SEED);
  memcpy(w->p + w->len, &sum, 4);
  w->len += 4;
  return ljasync_message_new(w->p, w->len);
}
#pragma GCC visibility pop
