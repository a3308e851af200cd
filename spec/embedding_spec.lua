-- The core binds LuaJIT's C API itself (Sources/CLJAsyncLua, docs/embedding.md). The hosts that
-- embed LuaJIT each way are C programs run by ctest (spec/hosts/, CMakeLists.txt).
local core = require "lj-async.core"

describe("the core's LuaJIT binding", function()
  it("leaves no Lua symbol for the host's dynamic linker to resolve", function()
    local p = assert(io.popen("nm -D --undefined-only " .. core.path .. " 2>&1"))
    local out = p:read("*a")
    p:close()
    assert.is_truthy(out:find("U ", 1, true), "nm printed no undefined symbols at all: " .. out)
    local lua = {}
    for name in out:gmatch("U%s+([%w_]+)") do
      if name:match("^lua") then lua[#lua + 1] = name end
    end
    assert.same({}, lua)
  end)

  it("says where the API came from", function()
    assert.is_string(core.luajit)
    assert.is_truthy(core.luajit:find("(the process's global symbols)", 1, true), core.luajit)
  end)
end)
