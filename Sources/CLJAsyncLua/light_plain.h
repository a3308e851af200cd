/* The encoder's plain format (docs/encoder.md) for scalars, read and written in C by light pool
 * workers (light_worker.c; hidden inside the core): string.buffer's encoding of nil, booleans,
 * numbers and strings, framed and checksummed as encoder/native.lua frames it. */
#ifndef LJASYNC_LIGHT_PLAIN_H
#define LJASYNC_LIGHT_PLAIN_H
#include <stddef.h>
#include <stdint.h>
#include "ljasync.h"
#include "api.h"
#ifdef __clang__
#pragma clang assume_nonnull begin
#endif

/* Bytes being read: [p, end). */
typedef struct { const uint8_t *p, *end; } light_reader;
/* A growing byte buffer (malloc'ed p, owned by its user; kept between jobs). */
typedef struct { uint8_t *_Nullable p; size_t len, cap; } light_writer;

/* Pushes the scalar string.buffer value at r and steps past it; 0 (nothing pushed) for any
 * other value. */
int ljasync_light_plain_push(lua_State *L, light_reader *r);
/* Steps past one value (a scalar, or a 64-bit integer cdata as a bytecode mark is); 0 when it
 * is neither. */
int ljasync_light_plain_skip(lua_State *L, light_reader *r);
/* r = the bytes of message m without its checksum, once frame and checksum are checked; 0 when
 * they are not right. */
int ljasync_light_message_bytes(ljasync_message *m, light_reader *r);
/* Pushes a plain message's values and returns their count; -1 (nothing pushed) when it is no
 * plain message of scalars; 0 for no message. */
int ljasync_light_plain_push_all(lua_State *L, ljasync_message *_Nullable m);
/* The values at first..top as a new plain message, or NULL when one is no scalar or memory ran
 * out (the encoder then reports it). w is the caller's buffer. */
ljasync_message *_Nullable ljasync_light_plain_message(lua_State *L, int first, light_writer *w);

#ifdef __clang__
#pragma clang assume_nonnull end
#endif
#endif
