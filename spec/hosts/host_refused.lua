-- Run by hosts where lj-async must refuse (see CMakeLists.txt): every module raises, at require,
-- one clear error. It must contain $LJASYNC_HOST_EXPECT when set, else name what is missing and
-- the fixes (a static LuaJIT that exports no lua_* symbol).
local wants = { os.getenv("LJASYNC_HOST_EXPECT") }
if not wants[1] then wants = { "no LuaJIT C API", "luaL_newstate", "-Wl,-E", "-rdynamic", "LJASYNC_LUAJIT" } end
for _, name in ipairs { "lj-async.callback", "lj-async.thread", "lj-async.sync", "lj-async.pool", "lj-async.core" } do
  local ok, err = pcall(require, name)
  assert(not ok, name .. " loaded where lj-async must refuse")
  err = tostring(err)
  for _, want in ipairs(wants) do
    assert(err:find(want, 1, true), ("%s: the error lacks %q: %s"):format(name, want, err))
  end
end
io.write("host: every module refused: ", (select(2, pcall(require, "lj-async.core"))), "\n")
