/* A program that embeds LuaJIT: runs the Lua script argv[1] in a fresh state, exits 0 when it
 * ran without error. CMake builds it linked with -lluajit-5.1 (host_linked), with the static
 * libluajit-5.1.a and -Wl,-E (host_static_exported), and with the static one alone
 * (host_static_hidden: it exports no lua_* symbols, the script expects lj-async's refusal). */
#include <stdio.h>
#include <luajit-2.1/lua.h>
#include <luajit-2.1/lauxlib.h>
#include <luajit-2.1/lualib.h>

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: %s script.lua\n", argv[0]);
    return 2;
  }
  lua_State *L = luaL_newstate();
  if (!L) return 3;
  luaL_openlibs(L);
  int rc = luaL_loadfile(L, argv[1]) || lua_pcall(L, 0, 0, 0);
  if (rc) fprintf(stderr, "%s: %s\n", argv[0], lua_tostring(L, -1));
  lua_close(L);
  return rc ? 1 : 0;
}
