/* LuaJIT's C API, from Debian's libluajit-5.1-dev. No link directive: the host provides lua_*. */
#include <luajit-2.1/lua.h>
#include <luajit-2.1/lauxlib.h>
#include <luajit-2.1/lualib.h>
