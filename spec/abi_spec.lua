-- The C ABI (Sources/CLJAsync/include/ljasync.h): the text Lua declares is the core's own, every
-- function it declares resolves in the core, every export is declared, no module declares any
-- of it by hand, and LuaJIT lays out each shared struct as the compiler that built the core did.
local ffi = require "ffi"
local core = require "lj-async.core"
local C = core.C

-- Every section of the header, declared here (modules declare only the ones they use).
do
  local len = ffi.new("size_t[1]")
  for name in ffi.string(C.ljasync_abi_cdef(nil, len), len[0]):gmatch("LJASYNC_CDEF_SECTION ([%w_]+)") do
    core.declare(name)
  end
end

-- Exported, never declared for Lua: called by the x86-64 entry stub and the core itself.
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

local function cdef_text()
  local len = ffi.new("size_t[1]")
  return ffi.string(C.ljasync_abi_cdef(nil, len), len[0])
end

-- Functions the header declares for Lua (plus the one core.lua declares by hand to read it).
local function declared()
  local names = { ljasync_abi_cdef = true }
  for name in cdef_text():gmatch("(ljasync_[%w_]+)%s*%(") do names[name] = true end
  return names
end

-- "name size field=offset ..." per line, as the core's compiler laid the structs out.
local function core_layouts()
  local out = {}
  for line in ffi.string(C.ljasync_abi_layout()):gmatch("[^\n]+") do
    local name, size, rest = line:match("^(.-) (%d+)(.*)$")
    local fields = {}
    for field, off in rest:gmatch(" ([%w_.]+)=(%d+)") do fields[#fields + 1] = { field, tonumber(off) } end
    out[#out + 1] = { name = name, size = tonumber(size), fields = fields }
  end
  return out
end

-- LuaJIT's offset of a field path ("h.p") in ctype `ct`.
local function lua_offset(ct, path)
  local off, v = 0, ffi.new(ct)
  for part in path:gmatch("[^.]+") do
    off = off + assert(ffi.offsetof(ffi.typeof(v), part), part)
    v = v[part]
  end
  return off
end

-- Every typedef'd or tagged struct of the cdef text (the layout report must cover them all).
local function declared_structs()
  local names = {}
  local text = cdef_text()
  for name in text:gmatch("typedef struct [%w_]+ %b{} ([%w_]+);") do names[name] = true end
  for tag in text:gmatch("\nstruct ([%w_]+) {") do names["struct " .. tag] = true end
  return names
end

describe("the C ABI", function()
  it("is the header's text between its markers, without directives", function()
    local text = cdef_text()
    assert.is_true(#text > 1000)
    assert.is_nil(text:find("\n%s*#"), "a # directive between the CDEF markers")
    local f = assert(io.open("Sources/CLJAsync/include/ljasync.h"))
    local header = f:read("*a")
    f:close()
    local between = header:match("/%* LJASYNC_CDEF_BEGIN %*/(.-)/%* LJASYNC_CDEF_END %*/")
    between = between:gsub("_Nullable", ""):gsub("_Nonnull", "")  -- Swift's words, left out for ffi
    assert.equal(between, text, "the core was built from another ljasync.h than this tree's")
  end)

  it("exports every function it declares, as a function", function()
    local missing = {}
    for name in pairs(declared()) do
      local ok, fn = pcall(function() return C[name] end)
      if not ok or type(fn) ~= "cdata" then missing[#missing + 1] = name end
    end
    table.sort(missing)
    assert.same({}, missing)
  end)

  it("declares every function the core exports", function()
    local exports, decls = exported(), declared()
    assert.is_true(next(exports) ~= nil, "nm found no ljasync_ symbols in " .. core.path)
    local undeclared = {}
    for name in pairs(exports) do
      if not internal[name] and not decls[name] then undeclared[#undeclared + 1] = name end
    end
    table.sort(undeclared)
    assert.same({}, undeclared)
  end)

  it("keeps test hooks out of the product: only LJASYNC_TESTING=1 gets them", function()
    for name in pairs(exported()) do
      assert.is_nil(name:match("testobject") or name:match("set_stock"), name .. " is exported")
    end
    -- This process asked (spec/support/testobject.lua); a fresh one that does not gets NULL.
    local cmd = ("env -u LJASYNC_TESTING LJASYNC_CORE=%q LUA_PATH=%q luajit -e %q"):format(core.path,
      "lua/?.lua;;", 'print(require("lj-async.core").C.ljasync_test_hooks() == nil)')
    local p = assert(io.popen(cmd))
    local out = p:read("*a")
    p:close()
    assert.equal("true\n", out)
    require "spec.support.testobject"
    assert.is_true(C.ljasync_test_hooks() ~= nil)
  end)

  it("is declared by no module but lj-async.core", function()
    local offenders = {}
    local p = assert(io.popen("ls lua/lj-async/*.lua lua/lj-async/*/*.lua spec/support/*.lua"))
    for path in p:lines() do
      local f = assert(io.open(path))
      local src = f:read("*a")
      f:close()
      for block in src:gmatch("cdef[_%w]*%b()") do
        local name = block:match("[%w_]+%s*%*?%s*(ljasync_[%w_]+)%s*%(")
        if name and not (path:match("core%.lua$") and name == "ljasync_abi_cdef") then
          offenders[#offenders + 1] = path .. ": " .. name
        end
      end
    end
    p:close()
    assert.same({}, offenders)
  end)

  it("lays out every shared struct in LuaJIT as the core's compiler does", function()
    local layouts, covered, drift = core_layouts(), {}, {}
    assert.is_true(#layouts >= 5)
    for _, l in ipairs(layouts) do
      covered[l.name] = true
      local ok, size = pcall(ffi.sizeof, l.name)
      if not ok or size ~= l.size then
        drift[#drift + 1] = ("%s: size %s in Lua, %d in the core"):format(l.name, tostring(size), l.size)
      end
      for _, f in ipairs(l.fields) do
        local okf, off = pcall(lua_offset, l.name, f[1])
        if not okf or off ~= f[2] then
          drift[#drift + 1] = ("%s.%s: offset %s in Lua, %d in the core"):format(l.name, f[1], tostring(off), f[2])
        end
      end
    end
    for name in pairs(declared_structs()) do
      if not covered[name] then drift[#drift + 1] = name .. ": not in ljasync_abi_layout's report" end
    end
    table.sort(drift)
    assert.same({}, drift)
  end)

  it("gives Lua the header's constants", function()
    assert.equal(3, C.LJASYNC_CELL_NUMBER)
    assert.equal(0x1e, C.LJASYNC_G_HANDLE)
    -- lj-async.ctype's value kinds (it runs in states that have not loaded the core) are the
    -- header's, one for one.
    local n = 0
    for name, k in pairs(require("lj-async.ctype").K) do
      assert.equal(C["LJASYNC_KIND_" .. name:upper()], k, name)
      n = n + 1
    end
    assert.equal(C.LJASYNC_KIND_BOOL + 1, n)
  end)
end)
