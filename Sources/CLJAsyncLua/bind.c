/* Finds LuaJIT's C API in whatever process loaded the core and fills the forwarders' pointers
 * (api.h), once.
 *
 * Order: $LJASYNC_LUAJIT (a library path: an explicit choice, never second-guessed by the other
 * two); the process's global symbols (a program linked with libluajit, or a static LuaJIT
 * exported with -Wl,-E); a LuaJIT the program loaded privately (dlopen RTLD_LOCAL, as plugins
 * do), found by walking the loaded objects. A candidate counts only when every API function and
 * luaJIT_setmode come from one object: PUC Lua's liblua5.1 has the same lua_* names. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <link.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#pragma GCC visibility push(hidden)  /* the core's own: after the system headers, before ours */
#include "api.h"
#include "ljasync_lua.h"

static const char *const api_names[] = {
#define LJ_FN(ret, name, params, args) #name,
#include "api_list.h"
#undef LJ_FN
};
enum { API_COUNT = sizeof api_names / sizeof api_names[0] };

static pthread_mutex_t bind_lock = PTHREAD_MUTEX_INITIALIZER;
static int bound;          /* 1 once the pointers are filled; never goes back to 0 */
static char report[2048];  /* where the API came from, or why none was found (under bind_lock) */

enum verdict { FOUND, ABSENT, REFUSED };

/* The file an address belongs to, for messages; the main program by its /proc/self/exe path. */
static const char *object_name(const void *p) {
  static __thread char exe[512];
  Dl_info info;
  struct link_map *map = NULL;
  if (!p || !dladdr1(p, &info, (void **)&map, RTLD_DL_LINKMAP)) return "an unknown object";
  if (map && map->l_name && map->l_name[0]) return map->l_name;
  ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
  if (n <= 0) return "the main program";
  exe[n] = 0;
  return exe;
}

/* Resolves every API function through `handle` into ptrs. FOUND when all of them and
 * luaJIT_setmode come from one object (its name in `obj`); else ABSENT (no Lua API at all) or
 * REFUSED, with the reason in `why`. */
static enum verdict try_handle(void *handle, void **ptrs, char *obj, size_t objlen, char *why, size_t whylen) {
  void *marker = dlsym(handle, "luaJIT_setmode");
  void *newstate = dlsym(handle, "luaL_newstate");
  if (!marker && !newstate) return ABSENT;
  if (!marker) {
    snprintf(why, whylen, "%s has Lua's C API but is not LuaJIT (no luaJIT_setmode; PUC Lua?)",
             object_name(newstate));
    return REFUSED;
  }
  Dl_info home;
  if (!dladdr(marker, &home)) {
    snprintf(why, whylen, "dladdr cannot place luaJIT_setmode");
    return REFUSED;
  }
  snprintf(obj, objlen, "%s", object_name(marker));
  char missing[256] = "";
  for (int i = 0; i < API_COUNT; i++) {
    void *p = dlsym(handle, api_names[i]);
    Dl_info info;
    if (!p) {
      size_t n = strlen(missing);
      snprintf(missing + n, sizeof missing - n, "%s%s", n ? ", " : "", api_names[i]);
      continue;
    }
    if (!dladdr(p, &info) || info.dli_fbase != home.dli_fbase) {
      snprintf(why, whylen, "%s comes from %s, but luaJIT_setmode from %s: two Lua libraries are mixed",
               api_names[i], object_name(p), obj);
      return REFUSED;
    }
    ptrs[i] = p;
  }
  if (missing[0]) {
    snprintf(why, whylen, "the LuaJIT in %s lacks %s", obj, missing);
    return REFUSED;
  }
  return FOUND;
}

/* Appends one skipped candidate's reason to the notes of the report, once. */
static void note(char *notes, size_t len, const char *why) {
  size_t n = strlen(notes);
  if (!strstr(notes, why) && n + 4 < len) snprintf(notes + n, len - n, "; %s", why);
}

struct names { char **v; size_t n, cap; };

static int collect(struct dl_phdr_info *info, size_t size, void *data) {
  (void)size;
  struct names *names = data;
  if (!info->dlpi_name || !info->dlpi_name[0]) return 0;  /* the main program: searched already */
  if (names->n == names->cap) {
    size_t cap = names->cap ? 2 * names->cap : 32;
    char **v = realloc(names->v, cap * sizeof *v);
    if (!v) return 1;
    names->v = v, names->cap = cap;
  }
  char *copy = strdup(info->dlpi_name);
  if (copy) names->v[names->n++] = copy;
  return 0;
}

/* One binding attempt; called with bind_lock held and bound == 0. */
static void attempt(void) {
  void *ptrs[API_COUNT];
  char obj[512], why[512], notes[1024] = "";
  const char *env = getenv("LJASYNC_LUAJIT");
  if (env && env[0]) {
    /* RTLD_DEEPBIND: when the program exports another LuaJIT, the library's calls into itself
     * (luaL_newstate -> luaL_findtable) must not land in the program's copy. */
    void *h = dlopen(env, RTLD_NOW | RTLD_LOCAL | RTLD_DEEPBIND);
    if (!h) {
      snprintf(report, sizeof report, "lj-async: LJASYNC_LUAJIT=%s cannot be loaded: %s", env, dlerror());
      return;
    }
    enum verdict v = try_handle(h, ptrs, obj, sizeof obj, why, sizeof why);
    if (v != FOUND) {
      dlclose(h);
      snprintf(report, sizeof report, "lj-async: LJASYNC_LUAJIT=%s is not a usable LuaJIT: %s", env,
               v == ABSENT ? "it has no Lua C API" : why);
      return;
    }
    snprintf(report, sizeof report, "%s (from LJASYNC_LUAJIT)", obj);  /* h stays open: in use */
    goto found;
  }
  switch (try_handle(RTLD_DEFAULT, ptrs, obj, sizeof obj, why, sizeof why)) {
  case FOUND:
    snprintf(report, sizeof report, "%s (the process's global symbols)", obj);
    goto found;
  case REFUSED: note(notes, sizeof notes, why); break;
  case ABSENT: break;
  }
  /* Not global: look for a LuaJIT loaded privately. dlopen is not called inside the
   * dl_iterate_phdr callback, which runs with the loader's list lock held. */
  struct names names = { 0 };
  dl_iterate_phdr(collect, &names);
  int done = 0;
  for (size_t i = 0; i < names.n; i++) {
    if (!done) {
      void *h = dlopen(names.v[i], RTLD_NOW | RTLD_NOLOAD);
      if (h) {
        enum verdict v = try_handle(h, ptrs, obj, sizeof obj, why, sizeof why);
        if (v == FOUND) {
          snprintf(report, sizeof report, "%s (loaded privately by the program%s%s)", obj,
                   notes[0] ? "; skipped:" : "", notes[0] ? notes + 1 : "");
          done = 1;  /* h stays open: it is the API in use */
        } else {
          if (v == REFUSED) note(notes, sizeof notes, why);
          dlclose(h);
        }
      }
    }
    free(names.v[i]);
  }
  free(names.v);
  if (done) goto found;
  snprintf(report, sizeof report,
           "lj-async: no LuaJIT C API in this process (luaL_newstate, lua_pcall, ... are neither "
           "exported by the program nor in a loaded LuaJIT library): the program embeds LuaJIT "
           "without exporting its symbols. Link the program with -Wl,-E (or -rdynamic), or set "
           "LJASYNC_LUAJIT=/path/to/libluajit-5.1.so.2 (the LuaJIT the program runs); see "
           "docs/embedding.md%s%s", notes[0] ? ". Skipped:" : "", notes[0] ? notes + 1 : "");
  return;
found:;
  int i = 0;
#define LJ_FN(ret, name, params, args) ljasync_lua_ptr_##name = (ret (*) params)ptrs[i++];
#include "api_list.h"
#undef LJ_FN
  bound = 1;
}

int ljasync_lua_bind(char *msg, size_t len) {
  pthread_mutex_lock(&bind_lock);
  if (!bound) attempt();
  int ok = bound;
  if (msg && len) snprintf(msg, len, "%s", report);
  pthread_mutex_unlock(&bind_lock);
  return ok;
}

/* Bound when the core is loaded: Swift globals are lazy, and the Swift code may reach the API
 * from any entry point. A failure is reported by ljasync_luajit_status, which core.lua asks. */
__attribute__((constructor)) static void bind_at_load(void) { ljasync_lua_bind(NULL, 0); }
#pragma GCC visibility pop
