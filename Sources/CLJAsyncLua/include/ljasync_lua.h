/* The core's own binding of LuaJIT's C API (see bind.c): the Swift code calls lua_* as usual and
 * links to hidden forwarders (forward.c) that jump through pointers filled at load time. */
#ifndef LJASYNC_LUA_H
#define LJASYNC_LUA_H
#include <stddef.h>
#include <stdint.h>

/* Binds the API if it is not bound yet (after a failure it tries again: the program may have
 * loaded LuaJIT since). Returns 1 with where the API came from in msg, or 0 with why no LuaJIT
 * could be bound and what to do. Any thread; serialized by a lock. msg is always terminated. */
int ljasync_lua_bind(char *msg, size_t len);

/* Opens a new state the light way (light.c): base, package and jit now; string, table, math,
 * io, os, debug, bit and ffi on first touch; then package.path, package.cpath, the core's path
 * (registry.ljasync_core, unless empty) and `searcher` second in package.loaders. A
 * lua_CFunction: lua_pcall it with (path, cpath, core, searcher). */
struct lua_State;
int ljasync_light_open(struct lua_State *L);

/* Gives the state a one-page first machine-code area, LuaJIT's default size coming back when
 * its first trace ends (light.c; callback states, docs/design.md "Callbacks"). A
 * lua_CFunction: lua_pcall it with no arguments. */
int ljasync_light_small_mcode(struct lua_State *L);

/* Light spawns (light_spawn.c, docs/design.md "Light spawns"). A lua_CFunction: lua_pcall it
 * with (f, cells, n) and 2 results: (cells, n) when f's results are all scalars or channel
 * handles (n new cells, malloc'ed, owned by the caller: ljasync_light_cells_free), else (message
 * address as a number) from lj-async.light_channel's encoder, else nothing. */
int ljasync_light_spawn(struct lua_State *L);
/* An owned copy of n cells whose HEAP bytes and CHANNEL references are borrowed (copied and
 * retained here), or NULL (n <= 0, or out of memory). */
void *ljasync_light_cells_copy(const void *cells, int32_t n);
/* Frees n owned cells: their bytes, their references, the array. */
void ljasync_light_cells_free(void *cells, int32_t n);

/* Light pool workers (light_worker.c). A lua_CFunction: lua_pcall it with the worker and a job
 * record (lightuserdata both) and LUA_MULTRET; it runs the worker's jobs until Pool.step lets
 * it leave (no results), or until a job it does not take: then false (the job in the record,
 * taken, not started) or the job's results (it ran) as a table with n, for
 * lj-async.pool_worker's function to take over with (PoolThread.swift). */
int ljasync_light_pool_worker(struct lua_State *L);

#endif
