/* The table every forwarder jumps through: one function pointer per entry of api_list.h. */
#ifndef LJASYNC_LUA_API_H
#define LJASYNC_LUA_API_H
#include <stdarg.h>
#include <luajit-2.1/lua.h>
#include <luajit-2.1/lauxlib.h>
#include <luajit-2.1/lualib.h>
#include <luajit-2.1/luajit.h>

struct ljasync_lua_api {
#define LJ_FN(ret, name, params, args) ret (*name) params;
#include "api_list.h"
#undef LJ_FN
};

/* Written once, by the first successful ljasync_lua_bind, before any forwarder can run (a
 * constructor at load time, or a state that found the API missing and retries; no state exists
 * until it succeeds). Read without a lock from then on: it never changes again. */
extern struct ljasync_lua_api ljasync_lua_api;
#endif
