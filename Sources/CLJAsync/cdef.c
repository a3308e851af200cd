/* The header's text, embedded at build time, and the part of it Lua declares (ljasync.h). */
#include <stdlib.h>
#include <string.h>
/* ljasync.h then embeds itself (its end has the `.incbin`): the text Lua gets is the text the
   compiler read, with no generated file and no path to find at run time. */
#define LJASYNC_EMBED_HEADER
#include "ljasync.h"
extern const char ljasync_header_text[];

/* The text between the markers, found once: a copy (so it can end in a NUL) without the
   nullability words, which are for Swift and which ffi.cdef does not know (removing them here
   costs Lua nothing: a gsub over the text takes ~0.4 ms in each new state). */
static char *cdef_text = "";
static size_t cdef_len;
/* Both texts are made when the core is loaded (a constructor), before any thread of ours runs:
   no lock or once-flag that a fork could catch half-way. */
static void find_cdef(void) {
  static const char begin[] = "/* LJASYNC_CDEF_BEGIN */", end[] = "/* LJASYNC_CDEF_END */";
  const char *b = strstr(ljasync_header_text, begin);
  const char *e = b ? strstr(b, end) : NULL;
  if (!b || !e) return;
  b += sizeof begin - 1;
  char *copy = malloc((size_t)(e - b) + 1);
  if (!copy) return;
  static const char *const words[] = { "_Nullable", "_Nonnull" };
  size_t n = 0;
  for (const char *p = b; p < e;) {
    size_t skip = 0;
    for (size_t w = 0; w < sizeof words / sizeof *words; w++) {
      size_t wl = strlen(words[w]);
      if ((size_t)(e - p) >= wl && memcmp(p, words[w], wl) == 0) skip = wl;
    }
    if (skip) p += skip; else copy[n++] = *p++;
  }
  copy[n] = 0;
  cdef_len = n;
  cdef_text = copy;  /* never freed: the core is never unloaded */
}

const char *ljasync_abi_cdef(const char *section, size_t *len) {
  if (!section) {
    *len = cdef_len;
    return cdef_text;
  }
  /* The text after "/\* LJASYNC_CDEF_SECTION <section> *\/" up to the next section's marker. */
  static const char mark[] = "/* LJASYNC_CDEF_SECTION ";
  size_t nl = strlen(section);
  for (const char *p = strstr(cdef_text, mark); p; p = strstr(p + 1, mark)) {
    const char *name = p + sizeof mark - 1;
    if (strncmp(name, section, nl) != 0 || strncmp(name + nl, " */", 3) != 0) continue;
    const char *b = name + nl + 3;
    const char *e = strstr(b, mark);
    *len = e ? (size_t)(e - b) : cdef_len - (size_t)(b - cdef_text);
    return b;
  }
  *len = 0;
  return NULL;
}

/* The shared structs as this compiler lays them out (Swift imports the same layout): Lua's
   spec/abi_spec.lua compares them with ffi.sizeof/ffi.offsetof of the embedded declarations. */
#include <stdio.h>
#define S(T) n += snprintf(buf + n, sizeof buf - n, "%s%s %zu", n ? "\n" : "", #T, sizeof(T));
#define F(T, f) n += snprintf(buf + n, sizeof buf - n, " %s=%zu", #f, offsetof(T, f));
static char layout_text[2048];

static void describe(void) {
  char buf[sizeof layout_text];
  int n = 0;
  S(ljasync_cell) F(ljasync_cell, tag) F(ljasync_cell, len) F(ljasync_cell, n) F(ljasync_cell, s)
    F(ljasync_cell, h.p) F(ljasync_cell, h.size) F(ljasync_cell, m) F(ljasync_cell, w)
  S(ljasync_pool_result) F(ljasync_pool_result, msg) F(ljasync_pool_result, id) F(ljasync_pool_result, status)
  S(ljasync_pool_job) F(ljasync_pool_job, msg) F(ljasync_pool_job, def) F(ljasync_pool_job, inits)
    F(ljasync_pool_job, waited) F(ljasync_pool_job, late)
  S(ljasync_pool_settings) F(ljasync_pool_settings, autoscale) F(ljasync_pool_settings, min_workers)
    F(ljasync_pool_settings, max_workers) F(ljasync_pool_settings, idle_timeout)
    F(ljasync_pool_settings, warn_after) F(ljasync_pool_settings, max_queued)
  S(struct ljasync_test_hooks) F(struct ljasync_test_hooks, testobject_new)
    F(struct ljasync_test_hooks, testobject_value) F(struct ljasync_test_hooks, testobject_live_count)
    F(struct ljasync_test_hooks, env_set_stock)
  S(struct ljasync_mutex_h) F(struct ljasync_mutex_h, p)
  S(struct ljasync_cond_h) F(struct ljasync_cond_h, p)
  S(struct ljasync_sem_h) F(struct ljasync_sem_h, p)
  S(struct ljasync_channel_h) F(struct ljasync_channel_h, p)
  S(struct ljasync_atomic_h) F(struct ljasync_atomic_h, p) F(struct ljasync_atomic_h, v)
  S(struct ljasync_shared_h) F(struct ljasync_shared_h, p) F(struct ljasync_shared_h, bytes)
    F(struct ljasync_shared_h, nbytes)
  memcpy(layout_text, buf, sizeof buf);
}

const char *ljasync_abi_layout(void) { return layout_text; }

__attribute__((constructor)) static void make_texts(void) {
  find_cdef();
  describe();
}
