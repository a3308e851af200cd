/* Light pool workers: a worker whose jobs are defined functions without upvalues (define +
 * call, handle_async) with scalar arguments and results runs them from this C loop, in a state
 * that loads neither ffi nor any lj-async module (docs/design.md, "Light spawns").
 *
 * The pool's job format is unchanged: the loop reads the encoder's plain format (arguments)
 * and general format (a definition's function, as encoder/plain.lua reads them) and writes
 * the plain format (results), string.buffer's encoding of nil, booleans, numbers and strings
 * (light_plain.c).
 * Failure texts are built as pool_worker.lua builds them. At the first job or value it does
 * not take (an anonymous job, a table, init code, a definition it cannot load) it hands the
 * worker over to pool_worker.lua for good, with the job taken (or run, and its results).
 *
 * C, not Swift: pushing values and calling the function can raise, and that longjmp must cross
 * no Swift frame. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "ljasync.h"
#pragma GCC visibility push(hidden)
#include "api.h"
#include "ljasync_lua.h"
#include "light_plain.h"

/* The general format's tags a definition uses (encoder/general_writer.lua). */
enum { G_LEAF = 19, G_FUNC = 24 };
static const char ANON[] = "lj-async.pool anonymous";  /* pool/luanti_api.lua's mark */
enum { MAX_DEFS = 256 };

/* -- Definitions -- */

/* Loads definition `id` into defs[id] (the function) and labels[id] (its jobs' label in
 * failure texts, as pool_worker.lua names them); *count is how many defs holds. 1 when
 * loaded, 0 when withdrawn, -1 when it is none this loop takes. Stack: defs at d, labels at
 * d + 1. */
static int load_definition(lua_State *L, int32_t id, int d, int *count) {
  char name[512];
  ljasync_message *m = ljasync_pool_definition(id, name, sizeof name);
  if (!m) return 0;
  light_reader r;
  int top = lua_gettop(L), ok = 0, anon = 0;
  if (ljasync_light_message_bytes(m, &r) && r.p[0] == LJASYNC_TAG_GENERAL) {
    r.p++;
    if (ljasync_light_plain_push(L, &r) && lua_type(L, -1) == LUA_TNUMBER) {
      lua_Number n = lua_tonumber(L, -1);
      lua_pop(L, 1);
      if ((n == 1 || n == 2) && r.p < r.end && *r.p++ == G_FUNC && ljasync_light_plain_push(L, &r)
          && lua_type(L, -1) == LUA_TSTRING && ljasync_light_plain_skip(L, &r) && ljasync_light_plain_push(L, &r)
          && lua_type(L, -1) == LUA_TNUMBER && lua_tonumber(L, -1) == 0) {
        lua_pop(L, 1);  /* nups: 0 */
        ok = 1;
        if (n == 2) {
          size_t len;
          const char *s;
          ok = r.p < r.end && *r.p++ == G_LEAF && ljasync_light_plain_push(L, &r)
               && (s = lua_tolstring(L, -1, &len)) && len == sizeof ANON - 1 && memcmp(s, ANON, len) == 0;
          anon = ok;
          if (ok) lua_pop(L, 1);
        }
        ok = ok && r.p == r.end;
      }
    }
  }
  ljasync_message_free(m);
  if (ok) {
    /* As loadstring(code) names it: the chunk name is the code itself (bytecode keeps its own). */
    size_t len;
    const char *code = lua_tolstring(L, -1, &len);
    ok = len > 3 && memcmp(code, "\033LJ", 3) == 0 && luaL_loadbuffer(L, code, len, code) == 0
         && lua_getupvalue(L, -1, 1) == NULL;
  }
  if (!ok) { lua_settop(L, top); return -1; }
  if (anon) {
    lua_Debug ar;
    lua_pushvalue(L, -1);
    lua_getinfo(L, ">S", &ar);
    lua_pushfstring(L, "the job function defined at %s:%d", ar.short_src, ar.linedefined);
  } else {
    lua_pushfstring(L, "job '%s'", name);
  }
  if (*count >= MAX_DEFS) {  /* bounded, as pool_worker.lua's: definitions come and go */
    lua_newtable(L);
    lua_replace(L, d);
    lua_newtable(L);
    lua_replace(L, d + 1);
    *count = 0;
  }
  ++*count;
  lua_rawseti(L, d + 1, id);
  lua_rawseti(L, d, id);
  lua_settop(L, top);
  return 1;
}

/* -- Failures -- */

static int light_loop(lua_State *L);
/* Registry key of LEVELS' run_init (the handler cuts there too). */
static const char RUN_INIT[] = "lj-async.light.pool.init";

/* The error handler's text: pool_worker.lua's handler, with the frames from the loop down cut
 * off, as pool_worker.lua cuts its own. Called by a Lua handler (LEVELS), as debug.traceback
 * is there: level 2 is the function that raised. */
static int traceback(lua_State *L) {
  lua_settop(L, 1);
  if (lua_type(L, 1) != LUA_TSTRING) {
    /* pool_worker.lua: mt = getmetatable(e); e = mt and mt.__tostring and tostring(e) or
     * "(error object ...)", then debug.traceback(e, 2), whose message must be a string or a
     * number (else the handler raises: "error in error handling"). */
    int named = 0;
    if (lua_getmetatable(L, 1)) {                 /* 2: the metatable */
      lua_getfield(L, 2, "__metatable");          /* 3: what getmetatable answers, if set */
      if (lua_isnil(L, 3)) lua_pop(L, 1); else lua_replace(L, 2);
      if (lua_istable(L, 2)) {
        lua_getfield(L, 2, "__tostring");
        named = lua_toboolean(L, -1);
      } else if (lua_toboolean(L, 2) && lua_type(L, 2) != LUA_TSTRING) {
        return luaL_error(L, "attempt to index a %s value", lua_typename(L, lua_type(L, 2)));
      }
    }
    lua_settop(L, 1);
    if (named) {
      if (!luaL_callmeta(L, 1, "__tostring")) {   /* tostring's default text */
        lua_pushfstring(L, "%s: %p", lua_typename(L, lua_type(L, 1)), lua_topointer(L, 1));
      }
      int t = lua_type(L, -1);
      if (t != LUA_TSTRING && t != LUA_TNUMBER) return luaL_error(L, "not a message");
      lua_tostring(L, -1);
    } else {
      lua_pushfstring(L, "(error object is a %s value)", lua_typename(L, lua_type(L, 1)));
    }
    lua_replace(L, 1);
  }
  lua_Debug ar;
  int level = 1, cut = -1;
  while (lua_getstack(L, level, &ar)) {
    if (cut < 0) {
      lua_getinfo(L, "f", &ar);
      if (lua_tocfunction(L, -1) == light_loop) cut = level;
      lua_getfield(L, LUA_REGISTRYINDEX, RUN_INIT);
      if (lua_rawequal(L, -1, -2)) cut = level;
      lua_pop(L, 1);
      lua_pop(L, 1);
    }
    level++;
  }
  luaL_traceback(L, L, lua_tostring(L, 1), 2);
  if (cut > 0) {
    size_t len;
    const char *s = lua_tolstring(L, -1, &len);
    size_t end = len;
    for (int drop = level - cut; drop > 0 && end > 0; ) {
      end--;
      if (s[end] == '\n') drop--;
    }
    lua_pushlstring(L, s, end);
  }
  return 1;
}

/* The loop runs under one Lua level: the job's function then has as many levels below it as in
 * pool_worker.lua (run_defined, xpcall, its loop), so that a traceback cut short in the middle
 * shows the same frames (spec/light_worker_spec.lua compares them). The job's function is
 * called from C, so the traceback names it as pool_worker.lua's does (by where it is defined).
 * Init code runs through run_init's xpcall, named '' as in pool_worker.lua, which the module
 * cache loads stripped (its upvalues have no names); an init chunk failing more than about 20
 * levels deep is cut short with two more frames below it than there. */
static const char LEVELS[] =
  "local loop, traceback = ...\n"
  "local function handler(e) local t = traceback(e) return t end\n"
  "local pass, call = select, { [''] = xpcall }\n"
  "local function run_init(chunk) local ok, err = call[''](chunk, handler) return ok, err end\n"
  "return function(w, job) return pass(1, loop(w, job, handler, run_init)) end, run_init\n";

/* -- The loop -- */

int ljasync_light_pool_worker(lua_State *L) {
  lua_settop(L, 2);
  if (luaL_loadbuffer(L, LEVELS, sizeof LEVELS - 1, "=lj-async pool") != 0) lua_error(L);
  lua_pushcfunction(L, light_loop);
  lua_pushcfunction(L, traceback);
  lua_call(L, 2, 2);
  lua_setfield(L, LUA_REGISTRYINDEX, RUN_INIT);
  lua_insert(L, 1);
  lua_call(L, 2, LUA_MULTRET);
  return lua_gettop(L);
}

/* Runs the pool's init entries from *ninits up to `upto` (-1: every one registered), as
 * pool_worker.lua's load_inits does: source chunks here, through LEVELS' run_init at `run`.
 * Returns 0 when done, 1 with the failure's text pushed (the worker does not run jobs), 2 at a
 * portable metatable (*ninits its index: pool_worker.lua registers it, with the encoder). */
static int run_inits(lua_State *L, int32_t upto, int32_t *ninits, int run) {
  while (upto < 0 || *ninits < upto) {
    int32_t kind = 0;
    size_t len = 0;
    const char *name = NULL;
    ljasync_message *mt = NULL;
    const void *p = ljasync_pool_init(*ninits, &kind, &len, &name, &mt);
    if (!p) return 0;
    if (kind == 1) {
      if (mt) ljasync_message_free(mt);  /* our copy: pool_worker.lua takes its own */
      return 2;
    }
    ++*ninits;
    if (kind != 0) continue;             /* retired: the state that registered it has closed */
    int top = lua_gettop(L);
    int rc = luaL_loadbuffer(L, p, len, name);
    if (rc == 0) {  /* run_init(chunk): xpcall under the handler, as load_inits calls it */
      lua_pushvalue(L, run);
      lua_insert(L, -2);
      lua_call(L, 1, 2);
      rc = !lua_toboolean(L, -2);
      lua_remove(L, -2);
    }
    if (rc != 0) {
      const char *n = name && name[0] == '@' ? name + 1 : name ? name : "?";
      lua_pushfstring(L, "async file %s failed: ", n);
      lua_insert(L, -2);
      if (lua_type(L, -1) != LUA_TSTRING && lua_type(L, -1) != LUA_TNUMBER) {
        lua_pop(L, 1);
        lua_pushliteral(L, "?");
      }
      lua_concat(L, 2);                  /* at top + 1 */
      return 1;
    }
    lua_settop(L, top);
  }
  return 0;
}

/* Hands over: returns (taken, results, ninits, failure) for PoolThread: whether *job was taken,
 * the results of the job that ran (a table with n) or false, the init entries run, and the
 * text of the init failure pushed at `failed` (0: none). */
static int hand_over(lua_State *L, int taken, int results, int32_t ninits, int failed) {
  lua_pushboolean(L, taken);
  if (results) lua_pushvalue(L, results); else lua_pushboolean(L, 0);
  lua_pushinteger(L, ninits);
  if (failed) lua_pushvalue(L, failed); else lua_pushnil(L);
  return 4;
}

/* light_loop(w, job, handler): runs init code and jobs until the worker leaves (returns
 * nothing) or meets what it does not take (returns hand_over's four values). */
static int light_loop(lua_State *L) {
  void *w = lua_touserdata(L, 1);
  ljasync_pool_job *job = lua_touserdata(L, 2);
  lua_settop(L, 4);                             /* 3: the handler, 4: run_init */
  lua_newtable(L);                              /* 5: definitions by id */
  lua_newtable(L);                              /* 6: their labels */
  /* `out` is freed on every return; a Lua error raised in this loop outside a job's pcall
   * (out of memory) leaves through PoolThread's pcall as a crash and leaks it, as it leaks a
   * Lua loop's buffers then. */
  enum { HANDLER = 3, RUN = 4, DEFS = 5 };
  const int base = 6;
  light_writer out = { 0 };
  int ndefs = 0;
  int32_t ninits = 0;
  /* Ready before the first step: a failure here is a failed start (PoolThread.swift). */
  int init = run_inits(L, -1, &ninits, RUN);
  if (init != 0) return hand_over(L, 0, 0, ninits, init == 1 ? lua_gettop(L) : 0);
  int32_t more = ljasync_pool_step(w, NULL, 0, job);
  while (more) {
    lua_settop(L, base);
    if (job->inits > ninits) {
      init = run_inits(L, job->inits, &ninits, RUN);
      if (init != 0) {
        free(out.p);
        return hand_over(L, 1, 0, ninits, init == 1 ? lua_gettop(L) : 0);
      }
    }
    if (job->def == 0) break;                     /* a job carrying its function: pool_worker.lua */
    lua_rawgeti(L, DEFS, job->def);
    if (lua_isnil(L, -1)) {
      lua_pop(L, 1);
      int got = load_definition(L, job->def, DEFS, &ndefs);
      if (got == 0) {  /* withdrawn with its owner, who takes no result: dropped unstarted */
        more = ljasync_pool_step(w, NULL, 3, job);
        continue;
      }
      if (got < 0) break;
      lua_rawgeti(L, DEFS, job->def);
    }
    int nargs = ljasync_light_plain_push_all(L, job->msg);
    if (nargs < 0) break;
    int first = base + 1;
    ljasync_message *res = NULL;
    int status = 0;
    if (lua_pcall(L, nargs, LUA_MULTRET, HANDLER) == 0) {
      res = ljasync_light_plain_message(L, first, &out);
      if (!res) {  /* a value only the encoder takes: pool_worker.lua encodes it, and goes on */
        free(out.p);
        int nres = lua_gettop(L) - base;
        lua_createtable(L, nres, 1);
        lua_insert(L, first);
        for (int i = nres; i >= 1; i--) lua_rawseti(L, first, i);
        lua_pushinteger(L, nres);
        lua_setfield(L, first, "n");
        return hand_over(L, 1, first, ninits, 0);
      }
    } else {
      lua_rawgeti(L, DEFS + 1, job->def);
      lua_pushliteral(L, " failed: ");
      lua_pushvalue(L, -3);
      lua_concat(L, 3);
      size_t len;
      const char *text = lua_tolstring(L, -1, &len);
      res = ljasync_failure_new(text, len);
      status = 1;
    }
    if (job->late) {
      char line[64];
      lua_rawgeti(L, DEFS + 1, job->def);
      snprintf(line, sizeof line, " waited %.1f s in the queue before a worker took it", job->waited);
      lua_pushstring(L, line);
      lua_concat(L, 2);
      ljasync_pool_report(lua_tostring(L, -1));
    }
    more = ljasync_pool_step(w, res, status, job);
  }
  free(out.p);
  if (!more) return 0;
  return hand_over(L, 1, 0, ninits, 0);
}
#pragma GCC visibility pop
