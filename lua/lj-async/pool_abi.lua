-- Private: the C ABI of the worker pool (Sources/LJAsync/Exports/PoolExports.swift), declared once.
local core = require "lj-async.core"

core.cdef_once("ljasync_pool_inbox", [[
typedef struct ljasync_pool_inbox ljasync_pool_inbox;
typedef struct ljasync_pool_worker ljasync_pool_worker;
typedef struct ljasync_pool_result { ljasync_message *msg; double id; int32_t status; } ljasync_pool_result;
typedef struct ljasync_pool_job { ljasync_message *msg; int32_t def; int32_t inits; double waited; int32_t late; } ljasync_pool_job;
typedef struct ljasync_pool_settings {
  int32_t autoscale, min_workers, max_workers, pad;
  double idle_timeout, warn_after;
  int64_t max_queued;
} ljasync_pool_settings;
ljasync_pool_inbox *ljasync_pool_inbox_new(void);
void ljasync_pool_inbox_free(ljasync_pool_inbox *in);
int32_t ljasync_pool_inbox_fd(ljasync_pool_inbox *in);
int32_t ljasync_pool_submit(ljasync_pool_inbox *in, double id, int32_t def, ljasync_message *m, double timeout);
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
int32_t ljasync_pool_set_settings(const ljasync_pool_settings *s, char *err, size_t errlen);
void ljasync_pool_stats(int64_t *out);
int32_t ljasync_pool_step(ljasync_pool_worker *w, ljasync_message *result, int32_t status, ljasync_pool_job *out);
int32_t ljasync_pool_define(const char *name, ljasync_message *fn);
void ljasync_pool_undefine(int32_t id);
ljasync_message *ljasync_pool_definition(int32_t id, char *name, size_t namelen);
void ljasync_pool_add_init(int32_t kind, const char *name, const char *code, size_t len, int64_t owner);
const void *ljasync_pool_init(int32_t i, int32_t *kind, size_t *len, const char **name);
void ljasync_pool_ipc_set(const char *key, size_t klen, ljasync_message *value);
ljasync_message *ljasync_pool_ipc_get(const char *key, size_t klen);
int32_t ljasync_pool_ipc_cas(const char *key, size_t klen, ljasync_message *old, ljasync_message *new_);
int32_t ljasync_pool_ipc_poll(const char *key, size_t klen, double timeout);
void ljasync_pool_report(const char *text);
double ljasync_pool_now(void);
int32_t ljasync_fork_generation(void);
]])

return core.C
