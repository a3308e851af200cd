/* The core's own binding of LuaJIT's C API (see bind.c): the Swift code calls lua_* as usual and
 * links to hidden forwarders (forward.c) that jump through pointers filled at load time. */
#ifndef LJASYNC_LUA_H
#define LJASYNC_LUA_H
#include <stddef.h>

/* Binds the API if it is not bound yet (after a failure it tries again: the program may have
 * loaded LuaJIT since). Returns 1 with where the API came from in msg, or 0 with why no LuaJIT
 * could be bound and what to do. Any thread; serialized by a lock. msg is always terminated. */
int ljasync_lua_bind(char *msg, size_t len);

#endif
