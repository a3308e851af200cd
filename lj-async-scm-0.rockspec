rockspec_format = "3.0"
package = "lj-async"
version = "scm-0"
source = { url = "git+file://." }
description = {
  summary = "Thread-safe LuaJIT callbacks, threads, synchronization and a worker pool (Swift core)",
  license = "MIT",
}
dependencies = { "lua == 5.1" }  -- LuaJIT
build = {
  type = "cmake",
  variables = {
    CMAKE_BUILD_TYPE = "Release",
    CMAKE_INSTALL_PREFIX = "$(PREFIX)",
    LUADIR = "$(LUADIR)",
    LIBDIR = "$(LIBDIR)",
  },
}
test = { type = "command", command = "make test" }
