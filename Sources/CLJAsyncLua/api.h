/* One function pointer per entry of api_list.h, named ljasync_lua_ptr_<name>: what every
 * forwarder jumps through. */
#ifndef LJASYNC_LUA_API_H
#define LJASYNC_LUA_API_H
#include <stdarg.h>
#include <luajit-2.1/lua.h>
#include <luajit-2.1/lauxlib.h>
#include <luajit-2.1/lualib.h>
#include <luajit-2.1/luajit.h>

/* Written once, by the first successful ljasync_lua_bind, before any forwarder can run (a
 * constructor at load time, or a state that found the API missing and retries; no state exists
 * until it succeeds). Read without a lock from then on: they never change again. */
#define LJ_FN(ret, name, params, args) extern ret (*ljasync_lua_ptr_##name) params;
#include "api_list.h"
#undef LJ_FN
#endif
