/* What light_spawn.c and light_channel.c share (hidden inside the core). docs/design.md,
 * "Light spawns". */
#ifndef LJASYNC_LIGHT_INTERNAL_H
#define LJASYNC_LIGHT_INTERNAL_H
#include "ljasync.h"
#include "api.h"
#ifdef __clang__
#pragma clang assume_nonnull begin
#endif

/* Registry key of the light channel handles' metatable (lj-async.light_channel, the encoder
 * and sync.kind find it there), and the Lua module of their slow path. */
#define LIGHT_CHANNEL_MT "lj-async.light.channel"
#define LIGHT_FALLBACK "lj-async.light_channel"

/* A light channel handle: a full userdata owning one reference to p (NULL once freed). */
typedef struct light_channel { ljasync_channel *_Nullable p; } light_channel;

/* Frees what a cell owns (HEAP and ENCODED_HEAP bytes, a message, a CHANNEL's reference) and
 * leaves it NIL. */
void ljasync_light_cell_release(ljasync_cell *c);
/* The light handle at idx (whose metatable is the value at mt), or NULL. */
light_channel *_Nullable ljasync_light_to_channel(lua_State *L, int idx, int mt);
/* Pushes a new light handle for channel p, with a reference of its own. */
void ljasync_light_push_channel(lua_State *L, void *p);
/* Pushes the handles' metatable, made once per state. */
void ljasync_light_channel_metatable(lua_State *L);
#ifdef __clang__
#pragma clang assume_nonnull end
#endif
#endif
