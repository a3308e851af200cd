/* A program that loads LuaJIT the way plugin hosts do: dlopen(RTLD_NOW | RTLD_LOCAL), every API
 * function through dlsym, so no lua_* symbol is global in the process. Runs the Lua script
 * argv[1]; exits 0 when it ran without error. The library is argv[2] or libluajit-5.1.so.2.
 * $LJASYNC_HOST_GLOBAL_LIB, when set, is then loaded RTLD_GLOBAL (PUC Lua's liblua5.1 in the
 * tests: its lua_* names become the process's global ones; loaded after LuaJIT, whose own
 * references are bound by then, so it interposes on nothing but lookups). */
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <luajit-2.1/lua.h>

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: %s script.lua [libluajit]\n", argv[0]);
    return 2;
  }
  const char *lib = argc > 2 ? argv[2] : "libluajit-5.1.so.2";
  void *h = dlopen(lib, RTLD_NOW | RTLD_LOCAL);
  if (!h) {
    fprintf(stderr, "%s: %s\n", argv[0], dlerror());
    return 3;
  }
  const char *global = getenv("LJASYNC_HOST_GLOBAL_LIB");
  if (global && global[0] && !dlopen(global, RTLD_NOW | RTLD_GLOBAL)) {
    fprintf(stderr, "%s: %s\n", argv[0], dlerror());
    return 3;
  }
  lua_State *(*newstate)(void) = (lua_State *(*)(void))dlsym(h, "luaL_newstate");
  void (*openlibs)(lua_State *) = (void (*)(lua_State *))dlsym(h, "luaL_openlibs");
  int (*loadfile)(lua_State *, const char *) = (int (*)(lua_State *, const char *))dlsym(h, "luaL_loadfile");
  int (*pcall)(lua_State *, int, int, int) = (int (*)(lua_State *, int, int, int))dlsym(h, "lua_pcall");
  const char *(*tolstring)(lua_State *, int, size_t *) =
      (const char *(*)(lua_State *, int, size_t *))dlsym(h, "lua_tolstring");
  void (*close)(lua_State *) = (void (*)(lua_State *))dlsym(h, "lua_close");
  if (!newstate || !openlibs || !loadfile || !pcall || !tolstring || !close) {
    fprintf(stderr, "%s: %s lacks the LuaJIT API\n", argv[0], lib);
    return 3;
  }
  if (dlsym(RTLD_DEFAULT, "luaJIT_setmode")) {
    fprintf(stderr, "%s: LuaJIT's API is global in this process: this host would test nothing\n", argv[0]);
    return 4;
  }
  lua_State *L = newstate();
  if (!L) return 3;
  openlibs(L);
  int rc = loadfile(L, argv[1]) || pcall(L, 0, 0, 0);
  if (rc) fprintf(stderr, "%s: %s\n", argv[0], tolstring(L, -1, NULL));
  close(L);
  return rc ? 1 : 0;
}
