-- The C ABI: every function the core exports is declared for Lua, and every declaration resolves.
local ffi = require "ffi"
local core = require "lj-async.core"

-- Called only by the x86-64 entry stub and the core itself, never from Lua.
local internal = {
  ljasync_dispatch = true, ljasync_entry_address = true, ljasync_entry_available = true,
  ljasync_entry_thread_id = true, ljasync_current_cpu = true,
}

local function exported()
  local names = {}
  local p = assert(io.popen("nm -D --defined-only " .. core.path .. " 2>/dev/null"))
  for line in p:lines() do
    local name = line:match("%s[TW]%s+(ljasync_[%w_]+)$")
    if name then names[name] = true end
  end
  p:close()
  return names
end

local function declared()
  local names = {}
  local p = assert(io.popen("ls lua/lj-async/*.lua lua/lj-async/*/*.lua spec/support/*.lua 2>/dev/null"))
  for path in p:lines() do
    local f = assert(io.open(path))
    for name in f:read("*a"):gmatch("(ljasync_[%w_]+)%s*%(") do names[name] = path end
    f:close()
  end
  p:close()
  return names
end

describe("the C ABI", function()
  local exports, decls = exported(), declared()

  it("finds the core's exports", function()
    assert.is_true(next(exports) ~= nil, "nm found no ljasync_ symbols in " .. core.path)
  end)

  it("declares every exported function for Lua", function()
    local missing = {}
    for name in pairs(exports) do
      if not internal[name] and not decls[name] then missing[#missing + 1] = name end
    end
    table.sort(missing)
    assert.same({}, missing)
  end)

  it("exports every function Lua declares", function()
    local stale = {}
    for name, path in pairs(decls) do
      if not exports[name] then stale[#stale + 1] = name .. " (" .. path .. ")" end
    end
    table.sort(stale)
    assert.same({}, stale)
  end)
end)
