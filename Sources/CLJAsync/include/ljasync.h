/* lj-async's C ABI: the one statement of what the Swift core exports and what Lua calls.
 *
 * Swift implements every function below with `@implementation @c` (the compiler checks each
 * against its prototype) and reads the shared structs as imported C types. Lua ffi.cdefs the
 * text between the two CDEF markers, which the core embeds at build time (cdef.c) and hands to
 * lua/lj-async/core.lua through ljasync_abi_cdef: that text holds no `#` directive (ffi.cdef
 * cannot parse them) and its two annotations, `_Nullable` and `_Nonnull` (the latter only where
 * clang needs it, on the outer level of a pointer to pointer), are removed from what
 * ljasync_abi_cdef returns. The text is cut in sections (`LJASYNC_CDEF_SECTION name`), each declared by the
 * module that uses it (core.declare), so a state parses only what it loads. Pointers are
 * non-null unless marked `_Nullable`.
 *
 * Status codes: 0 = done, 1 = timed out (or full/empty), 2 = closed, negative = misuse; each
 * function says which it returns. Timeouts are seconds: negative = forever, 0 = try once.
 * Objects reach C as opaque pointers holding one strong reference (ljasync_object_release).
 * Every function may be called from any thread unless it says otherwise. */
#ifndef LJASYNC_H
#define LJASYNC_H
#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>

#ifdef __clang__
#pragma clang assume_nonnull begin
#else
#define _Nullable
#endif

/* LJASYNC_CDEF_BEGIN */
/* LJASYNC_CDEF_SECTION core */
/* -- Opaque handles (each a Swift object or block; lifetimes in docs/design.md), each in the
   section that uses it: a state's ffi keeps fewer types (a ctype table of 256 entries, not 512,
   for a thread holding a channel) -- */
typedef struct ljasync_message ljasync_message;      /* encoded bytes + handle refs; one owner */

/* -- Objects and messages, module paths, memo: what every state that loads lj-async uses -- */
void ljasync_env_set_paths(const char *path, const char *cpath);
void ljasync_object_retain(void *p);
void ljasync_object_release(void *p);
ljasync_message *ljasync_message_new(const void *data, size_t len);
const void *ljasync_message_data(ljasync_message *m, size_t *len);
void ljasync_message_free(ljasync_message *m);
int32_t ljasync_memo_get(const char *key);
void ljasync_memo_set(const char *key, int32_t value);

/* LJASYNC_CDEF_SECTION host */
/* Declared by lj-async.core_host only: states the core makes do not parse it. */
/* -- The ABI itself -- */
/* Each shared struct as the core's compiler lays it out, one per line:
   "name size field=offset field=offset ...". */
const char *ljasync_abi_layout(void);
/* The test hooks (struct ljasync_test_hooks), or NULL unless LJASYNC_TESTING=1. */
const void *_Nullable ljasync_test_hooks(void);
struct ljasync_test_hooks {
  void *_Nullable (*_Nullable testobject_new)(int64_t value);         /* a TestObject holding one reference */
  int64_t (*_Nullable testobject_value)(const void *p);
  int64_t (*_Nullable testobject_live_count)(void);
  void (*_Nullable env_set_stock)(int32_t n);               /* warm states kept per purpose (0 = none) */
  long (*_Nullable stack_resident_pages)(void);             /* the calling thread's (stack.c) */
};

/* -- Environment of new states, module cache, the API's binding -- */
void ljasync_env_set_core(const char *path);
/* keep: NULL, or a message the code decodes by address (taken; freed with the entry) */
void ljasync_env_add_init(const char *name, const char *code, size_t len, ljasync_message *_Nullable keep, int64_t owner);
int64_t ljasync_env_owner_new(void);   /* a token per registering state (core.lua) */
void ljasync_env_owner_drop(int64_t owner);
int32_t ljasync_module_put(const char *name, const char *chunk, const void *code, size_t len);
const void *_Nullable ljasync_module_get(const char *name, size_t *len, char *chunk, size_t chunk_len);
void ljasync_module_note(const char *name, const char *why);
int ljasync_module_install(void *_Nullable L);  /* a lua_CFunction: reached through package.loadlib */
int32_t ljasync_luajit_status(char *_Nullable out, size_t len);
int32_t ljasync_luajit_check(const void *code, size_t len, const char *version, char *_Nullable out, size_t out_len);

/* LJASYNC_CDEF_SECTION thread */
typedef struct ljasync_thread ljasync_thread;
/* -- Threads -- */
ljasync_thread *_Nullable ljasync_thread_new(const char *_Nullable code, size_t code_len,
    const char *_Nullable chunkname, const char *_Nullable runner, size_t runner_len,
    void *_Nullable ud, int32_t pass_ud, ljasync_message *_Nullable args,
    const char *_Nullable name, size_t stack_size, char *_Nullable err, size_t errlen);
int32_t ljasync_thread_join(ljasync_thread *t, double timeout);
int32_t ljasync_thread_status(ljasync_thread *t);
intptr_t ljasync_thread_error(ljasync_thread *t, char *_Nullable buf, size_t len);
ljasync_message *_Nullable ljasync_thread_results(ljasync_thread *t);
/* A light spawn (docs/design.md, "Light spawns"): `args` are n cells, each an ljasync_cell; a
   HEAP cell's bytes and a CHANNEL cell's reference are borrowed (copied, retained); kinds
   NIL..HEAP and CHANNEL only. Otherwise as ljasync_thread_new with the spawn runner. */
ljasync_thread *_Nullable ljasync_thread_spawn_light(const char *code, size_t code_len,
    const char *_Nullable chunkname, const void *_Nullable args, int32_t n,
    const char *_Nullable name, char *_Nullable err, size_t errlen);
/* A light spawn's results as n cells, each an ljasync_cell owned by the thread object; or
   NULL (none, or they came as a message: ljasync_thread_results). */
const void *_Nullable ljasync_thread_result_cells(ljasync_thread *t, int32_t *n);
void ljasync_thread_cancel(ljasync_thread *t);
void *ljasync_thread_flag(ljasync_thread *t);
int32_t ljasync_thread_cancelled(const void *flag);
void ljasync_thread_free(ljasync_thread *t);
int32_t ljasync_thread_sleep(ljasync_thread *_Nullable current, double seconds);
void ljasync_thread_yield(void);
int32_t ljasync_thread_cpus(void);
intptr_t ljasync_thread_live(void);
intptr_t ljasync_thread_id(void);

/* LJASYNC_CDEF_SECTION callback */
typedef struct ljasync_callback ljasync_callback;
/* -- Value kinds: how a callback parameter or result crosses C (decided by Lua's ffi) -- */
enum ljasync_kind {
  LJASYNC_KIND_VOID = 0, LJASYNC_KIND_INT8, LJASYNC_KIND_UINT8, LJASYNC_KIND_INT16,
  LJASYNC_KIND_UINT16, LJASYNC_KIND_INT32, LJASYNC_KIND_UINT32, LJASYNC_KIND_INT64,
  LJASYNC_KIND_UINT64, LJASYNC_KIND_FLOAT, LJASYNC_KIND_DOUBLE, LJASYNC_KIND_POINTER,
  LJASYNC_KIND_BOOL
};

/* -- Callbacks -- */
ljasync_callback *_Nullable ljasync_callback_new(const char *label, const char *builder, size_t builder_len,
    int32_t nparts, const char *_Nullable const *_Nonnull parts, const size_t *lens, int32_t nargs,
    const uint8_t *kinds, const uint32_t *offsets, int32_t frame_size, const void *_Nullable default_ret,
    int32_t max_states, double memory_limit, char *_Nullable err, size_t errlen);
void *_Nullable ljasync_callback_funcptr(ljasync_callback *cb);
void ljasync_callback_free(ljasync_callback *cb);
intptr_t ljasync_callback_errors(ljasync_callback *cb, char *_Nullable buf, size_t len);
int32_t ljasync_callback_states(ljasync_callback *cb);
intptr_t ljasync_callback_live(void);
int32_t ljasync_callback_uses_libffi(ljasync_callback *cb);

/* LJASYNC_CDEF_SECTION sync */
typedef struct ljasync_mutex ljasync_mutex;
typedef struct ljasync_cond ljasync_cond;
typedef struct ljasync_sem ljasync_sem;
typedef struct ljasync_atomic ljasync_atomic;
typedef struct ljasync_shared ljasync_shared;
/* Lua's boxes for sync objects (a box is emptied when closed; ffi.gc releases its reference). */
struct ljasync_mutex_h { ljasync_mutex *_Nullable p; };
struct ljasync_cond_h { ljasync_cond *_Nullable p; };
struct ljasync_sem_h { ljasync_sem *_Nullable p; };
struct ljasync_atomic_h { ljasync_atomic *_Nullable p; int64_t *_Nullable v; };
struct ljasync_shared_h { ljasync_shared *_Nullable p; uint8_t *_Nullable bytes; size_t nbytes; };

/* -- Synchronization objects -- */
intptr_t ljasync_sync_live_objects(void);
ljasync_mutex *ljasync_mutex_new(void);
int32_t ljasync_mutex_lock(ljasync_mutex *m, double timeout);
int32_t ljasync_mutex_unlock(ljasync_mutex *m);
int32_t ljasync_mutex_held(ljasync_mutex *m);
ljasync_cond *ljasync_cond_new(void);
int32_t ljasync_cond_wait(ljasync_cond *c, ljasync_mutex *m, double timeout);
void ljasync_cond_signal(ljasync_cond *c);
void ljasync_cond_broadcast(ljasync_cond *c);
ljasync_sem *ljasync_sem_new(intptr_t count);
int32_t ljasync_sem_post(ljasync_sem *s, intptr_t n);
int32_t ljasync_sem_wait(ljasync_sem *s, double timeout);
intptr_t ljasync_sem_value(ljasync_sem *s);
ljasync_atomic *ljasync_atomic_new(int64_t v);
int64_t *ljasync_atomic_address(ljasync_atomic *a);
int64_t ljasync_atomic_load(ljasync_atomic *a);
void ljasync_atomic_store(ljasync_atomic *a, int64_t v);
int64_t ljasync_atomic_add(ljasync_atomic *a, int64_t d);
int64_t ljasync_atomic_exchange(ljasync_atomic *a, int64_t v);
int32_t ljasync_atomic_cas(ljasync_atomic *a, int64_t expected, int64_t desired, int64_t *found);
ljasync_shared *_Nullable ljasync_shared_new(intptr_t size, char *_Nullable err, size_t errlen);
uint8_t *ljasync_shared_ptr(ljasync_shared *b);
intptr_t ljasync_shared_size(ljasync_shared *b);

/* LJASYNC_CDEF_SECTION channel */
/* Declared by sync/channel.lua alone: a state that only pops a channel parses no other object. */
typedef struct ljasync_channel ljasync_channel;
struct ljasync_channel_h { ljasync_channel *_Nullable p; };

/* -- Channel cells: one value, scalars and short strings inline -- */
enum ljasync_cell_tag {
  LJASYNC_CELL_NIL = 0, LJASYNC_CELL_FALSE = 1, LJASYNC_CELL_TRUE = 2, LJASYNC_CELL_NUMBER = 3,
  LJASYNC_CELL_SHORT = 4,    /* len bytes inline in s */
  LJASYNC_CELL_HEAP = 5,     /* h.p (malloc'ed, owned) of h.size bytes */
  LJASYNC_CELL_MESSAGE = 6,  /* m, owned */
  LJASYNC_CELL_ENCODED_SHORT = 7,  /* as SHORT: string.buffer's encoding of a small plain table */
  LJASYNC_CELL_ENCODED_HEAP = 8,   /* as HEAP, the same */
  LJASYNC_CELL_CHANNEL = 9,  /* h.p: a channel, one owned reference; a light spawn's arguments and
                                results only (Sources/CLJAsyncLua/light_spawn.c), never queued */
  LJASYNC_CELL_INLINE = 24   /* bytes a short string holds */
};
/* 32 bytes. A cell that owns something (HEAP, MESSAGE) is moved, never copied. */
typedef struct ljasync_cell {
  uint32_t tag, len;
  union { double n; char s[24]; struct { char *_Nullable p; size_t size; } h; ljasync_message *_Nullable m; uint64_t w[3]; };
} ljasync_cell;

/* -- Channels -- */
ljasync_channel *ljasync_channel_new(intptr_t capacity);
int32_t ljasync_channel_push_number(ljasync_channel *c, double v, double timeout);
int32_t ljasync_channel_push_simple(ljasync_channel *c, int32_t tag, double timeout);
int32_t ljasync_channel_push_string(ljasync_channel *c, const void *_Nullable s, size_t len, double timeout);
int32_t ljasync_channel_push_encoded(ljasync_channel *c, const void *_Nullable s, size_t len, double timeout);
int32_t ljasync_channel_push_message(ljasync_channel *c, ljasync_message *m, double timeout);
int32_t ljasync_channel_push_cells(ljasync_channel *c, const ljasync_cell *cells, int32_t n, double timeout);
int32_t ljasync_channel_pop(ljasync_channel *c, ljasync_cell *out, int32_t max, double timeout);
void ljasync_channel_bytes_free(void *_Nullable p);
void ljasync_channel_close(ljasync_channel *c);
intptr_t ljasync_channel_length(ljasync_channel *c);
int32_t ljasync_channel_closed(ljasync_channel *c);
intptr_t ljasync_channel_capacity(ljasync_channel *c);
intptr_t ljasync_channel_waiters(ljasync_channel *c);

/* LJASYNC_CDEF_SECTION encoder */
/* -- Encoder format: byte 0 of an encoding, and the general format's value tags -- */
enum ljasync_format {
  LJASYNC_TAG_PLAIN = 0x01, LJASYNC_TAG_GENERAL = 0x02, LJASYNC_HAS_HANDLES = 0x80,
  LJASYNC_G_LEAF = 0x13, LJASYNC_G_TABLE = 0x14, LJASYNC_G_TABLE_MT = 0x15, LJASYNC_G_END = 0x16,
  LJASYNC_G_REF = 0x17, LJASYNC_G_FUNC = 0x18, LJASYNC_G_UPJOIN = 0x19, LJASYNC_G_MODULE = 0x1a,
  LJASYNC_G_MODFIELD = 0x1b, LJASYNC_G_POINTER = 0x1c, LJASYNC_G_CVALUE = 0x1d, LJASYNC_G_HANDLE = 0x1e
};

/* -- Encoder help -- */
int32_t ljasync_encoder_scan(const uint64_t *roots, int32_t n, int32_t max_depth, const uint16_t *ctypes,
    uint64_t *scratch, intptr_t capacity, intptr_t *tables);
uint32_t ljasync_encoder_checksum(const void *_Nullable p, size_t n, uint32_t seed);
int32_t ljasync_encoder_validate(const uint8_t *_Nullable p, size_t n, intptr_t values, intptr_t *at);
uint64_t ljasync_encoder_mark(const void *p, size_t n);

/* LJASYNC_CDEF_SECTION pool */
typedef struct ljasync_pool_inbox ljasync_pool_inbox;
/* -- Pool records -- */
/* A finished job, as ljasync_pool_drain hands it out (the drainer owns msg). */
typedef struct ljasync_pool_result {
  ljasync_message *_Nullable msg; double id; int32_t status;
} ljasync_pool_result;
typedef struct ljasync_pool_settings {
  int32_t autoscale, min_workers, max_workers, pad;
  double idle_timeout;  /* seconds an extra worker may stay idle (autoscale) */
  double warn_after;    /* seconds a job may wait queued before a warning; 0 = never */
  int64_t max_queued;   /* 0 = no cap */
} ljasync_pool_settings;
enum ljasync_pool_status { LJASYNC_JOB_OK = 0, LJASYNC_JOB_FAILED = 1, LJASYNC_JOB_CANCELLED = 2 };

/* A failure crossing states as text (a job's error): this byte, then the text. No successful
   encoding starts with it. Made and read by ljasync_failure_new/ljasync_failure_text only. */
enum { LJASYNC_FAILURE_TAG = 0x00 };
const char *ljasync_failure_text(ljasync_message *m, size_t *len);

/* -- Worker pool -- */
ljasync_pool_inbox *ljasync_pool_inbox_new(void);
void ljasync_pool_inbox_free(ljasync_pool_inbox *in);
int32_t ljasync_pool_inbox_fd(ljasync_pool_inbox *in);
int32_t ljasync_pool_submit(ljasync_pool_inbox *_Nullable in, double id, int32_t def, ljasync_message *_Nullable m, double timeout);
int32_t ljasync_pool_drain(ljasync_pool_inbox *in, ljasync_pool_result *out, int32_t max);
int32_t ljasync_pool_wait(ljasync_pool_inbox *in, double timeout, int32_t watch);
int32_t ljasync_pool_cancel(ljasync_pool_inbox *in, double id);
int32_t ljasync_pool_discard(ljasync_pool_inbox *in);
int32_t ljasync_pool_ensure(int32_t lo, int32_t hi, int32_t manual);
int32_t ljasync_pool_add(int32_t n);
int32_t ljasync_pool_stop(int32_t n);
int32_t ljasync_pool_shutdown(void);
int32_t ljasync_pool_workers(void);
int32_t ljasync_pool_cpu_count(void);
void ljasync_pool_get_settings(ljasync_pool_settings *s);
int32_t ljasync_pool_set_settings(const ljasync_pool_settings *s, char *_Nullable err, size_t errlen);
void ljasync_pool_stats(int64_t *out);
int32_t ljasync_pool_define(const char *name, ljasync_message *fn);
void ljasync_pool_undefine(int32_t id);
void ljasync_pool_add_init(const char *name, const void *code, size_t len, int64_t owner);
void ljasync_pool_add_metatable(const char *name, ljasync_message *mt, int64_t owner);  /* mt taken */
void ljasync_pool_ipc_set(const char *key, size_t klen, ljasync_message *_Nullable value);
ljasync_message *_Nullable ljasync_pool_ipc_get(const char *key, size_t klen);
int32_t ljasync_pool_ipc_cas(const char *key, size_t klen, ljasync_message *_Nullable old, ljasync_message *_Nullable new_);
int32_t ljasync_pool_ipc_poll(const char *key, size_t klen, double timeout);
double ljasync_pool_now(void);
int32_t ljasync_fork_generation(void);
/* Workers started from now run light (light_worker.c) when they can: 1 yes (the default), 0 no
 * (pool_worker.lua from the start), -1 only asks. Returns the setting before. */
int32_t ljasync_pool_light(int32_t on);

/* LJASYNC_CDEF_SECTION pool_worker */
/* What a worker's loop calls (pool_worker.lua declares only this; lj-async.pool both). */
typedef struct ljasync_pool_worker ljasync_pool_worker;
/* The next job, as ljasync_pool_step hands it to a worker (the worker owns msg). */
typedef struct ljasync_pool_job {
  ljasync_message *_Nullable msg;
  int32_t def;    /* definition id, 0 for a function carried in msg */
  int32_t inits;  /* init chunks registered so far (the worker runs the new ones first) */
  double waited;  /* seconds the job spent queued */
  int32_t late;   /* 1: waited longer than warn_after (warn once) */
} ljasync_pool_job;
ljasync_message *ljasync_failure_new(const char *_Nullable text, size_t len);
int32_t ljasync_pool_step(ljasync_pool_worker *w, ljasync_message *_Nullable result, int32_t status, ljasync_pool_job *out);
ljasync_message *_Nullable ljasync_pool_definition(int32_t id, char *_Nullable name, size_t namelen);
/* kind 1 (portable metatable): *mt a copy the caller frees; else *mt NULL */
const void *_Nullable ljasync_pool_init(int32_t i, int32_t *kind, size_t *len, const char *_Nullable *_Nonnull name,
                                        ljasync_message *_Nullable *_Nonnull mt);
void ljasync_pool_report(const char *text);

/* LJASYNC_CDEF_END */

/* The text between this header's CDEF markers without `_Nullable`/`_Nonnull` (NUL-terminated),
   or with `section` the text of that section alone (not terminated; NULL when there is none);
   *len its length. The one function Lua declares by hand (core.lua), to read the rest: a new
   state then makes a Lua string of the sections it declares only, not of the whole text. */
const char *_Nullable ljasync_abi_cdef(const char *_Nullable section, size_t *len);

/* -- Core-internal (never declared for Lua) -- */
/* Called by the x86-64 entry stub (CLJAsyncEntry, whose header describes the spill area `regs`
   points to: ljasync_regs) for every call: `core` from the callback's trampoline, `ret` the two
   result words (rax, xmm0). */
void ljasync_dispatch(void *core, void *regs, uint64_t *ret);

/* GNU and libc calls Swift's Glibc module hides, and libffi's data symbols (shims.c, compiled
   with _GNU_SOURCE); hidden: no product symbols. */
#pragma GCC visibility push(hidden)
int ljasync_gnu_setname(const char *name);                 /* pthread_setname_np(self), <= 15 bytes */
int ljasync_gnu_eventfd(void);                             /* eventfd(0, EFD_NONBLOCK|EFD_CLOEXEC) or -1 */
int ljasync_gnu_affinity_count(void);                      /* CPUs in this thread's mask, 0 unknown */
intptr_t ljasync_gnu_gettid(void);
/* pthread_mutex_clocklock on CLOCK_MONOTONIC (glibc >= 2.30), or ENOSYS where glibc lacks it. */
int ljasync_gnu_mutex_clocklock(void *mutex, const void *abstime);
/* libffi's ffi_type for a value kind (enum ljasync_kind), or NULL for an unknown one. */
void *_Nullable ljasync_ffi_type(int kind);
/* Waits until no other thread is inside libgcc's frame lookup (fork's prepare handler, last). */
void ljasync_gnu_unwinder_sync(void);
/* The calling thread's own stack (stack.c): after ljasync_stack_trim_arm(n), the thread's next
   n calls of ljasync_stack_trim_once drop its pages below the stack pointer less a page (dead
   by definition); later ones do nothing (no syscall). Its resident pages (mincore; -1 unknown). */
void ljasync_stack_trim_arm(int32_t n);
void ljasync_stack_trim_once(void);
long ljasync_stack_resident_pages(void);
#pragma GCC visibility pop
enum { LJASYNC_MUTEX_ADAPTIVE = 3 };  /* checked against PTHREAD_MUTEX_ADAPTIVE_NP in shims.c */

#ifdef __clang__
#pragma clang assume_nonnull end
#endif

/* cdef.c only: this file's bytes (NUL-terminated) as the hidden symbol ljasync_header_text.
   __FILE__ here is this header's own path as the compiler found it. */
#ifdef LJASYNC_EMBED_HEADER
__asm__(".section .rodata\n.globl ljasync_header_text\n.hidden ljasync_header_text\n"
        "ljasync_header_text:\n.incbin \"" __FILE__ "\"\n.byte 0\n.previous\n");
#endif
#endif
