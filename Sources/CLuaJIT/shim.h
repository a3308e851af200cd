/* LuaJIT's C API headers (libluajit-5.1-dev). No link directive: Sources/CLJAsyncLua defines lua_*. */
#include <luajit-2.1/lua.h>
#include <luajit-2.1/lauxlib.h>
#include <luajit-2.1/lualib.h>
