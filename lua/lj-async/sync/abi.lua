-- Private: the C ABI of lj-async.sync's objects (Sources/LJAsync/Exports/SyncExports.swift),
-- declared once per state for the sync/ modules.
local core = require "lj-async.core"

core.cdef_once("ljasync_cell", [[
typedef struct ljasync_mutex ljasync_mutex;
typedef struct ljasync_cond ljasync_cond;
typedef struct ljasync_sem ljasync_sem;
typedef struct ljasync_channel ljasync_channel;
typedef struct ljasync_atomic ljasync_atomic;
typedef struct ljasync_shared ljasync_shared;

struct ljasync_mutex_h { ljasync_mutex *p; };
struct ljasync_cond_h { ljasync_cond *p; };
struct ljasync_sem_h { ljasync_sem *p; };
struct ljasync_channel_h { ljasync_channel *p; };
struct ljasync_atomic_h { ljasync_atomic *p; int64_t *v; };
struct ljasync_shared_h { ljasync_shared *p; uint8_t *bytes; size_t nbytes; };

typedef struct ljasync_cell {
  uint32_t tag, len;
  union { double n; char s[24]; struct { char *p; size_t size; } h; ljasync_message *m; };
} ljasync_cell;

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

ljasync_shared *ljasync_shared_new(intptr_t size, char *err, size_t errlen);
uint8_t *ljasync_shared_ptr(ljasync_shared *b);
intptr_t ljasync_shared_size(ljasync_shared *b);

ljasync_channel *ljasync_channel_new(intptr_t capacity);
int32_t ljasync_channel_push_number(ljasync_channel *c, double v, double timeout);
int32_t ljasync_channel_push_simple(ljasync_channel *c, int32_t tag, double timeout);
int32_t ljasync_channel_push_string(ljasync_channel *c, const char *s, size_t len, double timeout);
int32_t ljasync_channel_push_message(ljasync_channel *c, ljasync_message *m, double timeout);
int32_t ljasync_channel_push_cells(ljasync_channel *c, const ljasync_cell *cells, int32_t n, double timeout);
int32_t ljasync_channel_pop(ljasync_channel *c, ljasync_cell *out, int32_t max, double timeout);
void ljasync_channel_bytes_free(char *p);
void ljasync_channel_close(ljasync_channel *c);
intptr_t ljasync_channel_length(ljasync_channel *c);
int32_t ljasync_channel_closed(ljasync_channel *c);
intptr_t ljasync_channel_capacity(ljasync_channel *c);
intptr_t ljasync_channel_waiters(ljasync_channel *c);
]])

return core.C
