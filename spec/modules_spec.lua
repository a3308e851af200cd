-- New states find lj-async's modules (and modules the creator provides) without any path: each
-- scenario runs in a child luajit, since the module cache is filled once per process.
local core = require "lj-async.core"

-- Absolute path of this tree's lua/ folder (busted runs in the source root; PWD may be stale).
local function lua_dir()
  local p = assert(io.popen("pwd"))
  local cwd = p:read("*l")
  p:close()
  return cwd .. "/lua"
end

local LUA = lua_dir()

-- Runs `script` in a child luajit (LJASYNC_CORE and LJASYNC_TESTC come from the environment),
-- bounded by `timeout`; returns everything it printed (stdout and stderr) and whether it exited 0.
local function run_child(script)
  local dir = os.tmpname()
  os.remove(dir)
  assert(os.execute("mkdir -p " .. dir) == 0)
  local path = dir .. "/child.lua"
  local f = assert(io.open(path, "w"))
  f:write(script)
  f:close()
  local p = assert(io.popen(("cd %s && LUA_PATH='%s/?.lua;;' timeout -s KILL 60 luajit child.lua 2>&1; echo \"exit=$?\"")
    :format(dir, LUA)))
  local out = p:read("*a")
  p:close()
  os.execute("rm -rf " .. dir)
  local code = out:match("exit=(%d+)%s*$")
  return out, code == "0"
end

-- What every scenario checks once lj-async is loaded its way: a callback, a Thread, a
-- Thread.spawn (loads the encoder in the new state) and a pool job each require lj-async
-- modules the creating state never loaded, and tell where their code came from. Every wait is
-- bounded, so a worker that cannot start fails the child instead of hanging it.
local CHECKS = [==[
local ffi = require "ffi"
local function say(...) io.write(table.concat({ ... }, " "), "\n"); io.flush() end
local CF = require "lj-async.callback"
local Thread = require "lj-async.thread"
say("creator has sync:", tostring(package.loaded["lj-async.sync"] ~= nil))
local loaded = 0
for name in pairs(package.loaded) do if name:match("^lj%-async%.") then loaded = loaded + 1 end end
say("module runs:", tostring(LJ_RUNS), "modules loaded:", tostring(loaded))

-- The chunk names of a module's functions: tracebacks in new states must name its files.
local probe = [[
  local names = {}
  for _, name in ipairs { "lj-async.sync", "lj-async.encoder", "lj-async.thread" } do
    for _, v in pairs(require(name)) do
      if type(v) == "function" then
        local s = debug.getinfo(v, "S").source
        if s:sub(1, 1) == "@" then names[#names + 1] = s:match("lj%-async/.*$") or s end
      end
    end
  end
  table.sort(names)
  local seen, out = {}, {}
  for _, n in ipairs(names) do if not seen[n] then seen[n] = true; out[#out + 1] = n end end
  return table.concat(out, ",")
]]

local cb = CF("int(*)(int)")(function(x)
  local sync = require "lj-async.sync"
  local enc = require "lj-async.encoder"
  assert(type(sync.channel) == "function" and type(enc.encode_message) == "function")
  return x + 1
end)
local r = cb:funcptr()(41)
local n, msg = cb:errors()
say("callback:", r, n == 0 and "ok" or tostring(msg))
cb:free()

local t = Thread.new(function()  -- every lj-async module, private ones too
  for _, name in ipairs(require("lj-async.core").modules) do require(name) end
end)
local joined = t:join(20)
say("thread:", tostring(joined), t:status(), tostring(t:error()))
t:destroy()

local h = Thread.spawn(function(x, probe)
  return x * 2, assert(loadstring(probe))()
end, 21, probe)
local ok, doubled, sources = h:join(20)
say("spawn:", tostring(ok), tostring(doubled), h:status(), tostring(h:error()))
say("sources:", tostring(sources))
h:destroy()

local async = require "lj-async.pool"
local job = async.handle_async(function(x)
  local sync = require "lj-async.sync"
  return x * 3, type(sync.channel)
end, function() end, 14)
local jok, tripled, kind = async.await(job, 20)
say("pool:", tostring(jok), tostring(tripled), tostring(kind))
if jok ~= true then os.exit(3) end  -- workers that never start: do not wait for a shutdown
assert(async.shutdown { timeout = 10 })
say("done")
]==]

-- Scenario 1: the creating state finds lj-async only through a searcher of its own that reads
-- the files through io.open and names chunks "@lj-async/x.lua", as LÖVE's does.
local LOVE_LIKE = ([==[
package.path = ""
package.cpath = ""
local root = %q
table.insert(package.loaders, 2, function(name)
  local rel = name:gsub("%%.", "/") .. ".lua"
  local f = io.open(root .. "/" .. rel, "rb")
  if not f then return "\n\tno game file '" .. rel .. "'" end
  local src = f:read("*a")
  f:close()
  -- Counts module runs (on the first line: line numbers stay), to see the fill runs none.
  return assert(loadstring("LJ_RUNS = (LJ_RUNS or 0) + 1; " .. src, "@" .. rel))
end)
-- Found the core; from now on neither a variable nor a path leads to it (as in LÖVE).
require "lj-async.core"
local ffi = require "ffi"
ffi.cdef "int unsetenv(const char *name);"
ffi.C.unsetenv("LJASYNC_CORE")
]==]):format(LUA)

-- Scenario 2: lj-async loads through package.path, which is emptied right after.
local EMPTIED = [==[
require "lj-async.callback"
package.path = ""
]==]

local function check_all(out)
  assert.matches("creator has sync: false", out, 1, true)
  assert.matches("callback: 42 ok", out, 1, true)
  assert.matches("thread: true done nil", out, 1, true)
  assert.matches("spawn: true 42 done nil", out, 1, true)
  assert.matches("pool: true 42 function", out, 1, true)
  assert.matches("done", out, 1, true)
end

describe("modules in new states", function()
  it("come from the creating state's own searcher when it is the only way to lj-async", function()
    local out, ok = run_child(LOVE_LIKE .. CHECKS)
    check_all(out)
    -- Filling the cache ran no module: only the modules the creator required ran there.
    local runs, loaded = out:match("module runs: (%d+) modules loaded: (%d+)")
    assert.is_truthy(runs, out)
    assert.equals(loaded, runs, out)
    assert.is_true(ok, out)
    -- The searcher's chunk names survive into the new states' code (tracebacks name the files).
    local sources = assert(out:match("sources: ([^\n]*)"), out)
    assert.is_true(#sources > 0, out)
    for s in sources:gmatch("[^,]+") do
      assert.matches("^lj%-async/[%w_/]+%.lua$", s)
    end
    assert.matches("lj-async/sync.lua", sources, 1, true)
    assert.matches("lj-async/encoder.lua", sources, 1, true)
  end)

  it("are all there when package.path is emptied right after loading lj-async", function()
    local out, ok = run_child(EMPTIED .. CHECKS)
    check_all(out)
    assert.is_true(ok, out)
    local sources = assert(out:match("sources: ([^\n]*)"), out)
    assert.matches("lj-async/sync.lua", sources, 1, true)
  end)
end)

describe("the module cache", function()
  it("lists every lj-async module file", function()
    local files = {}
    local p = assert(io.popen("cd lua && ls lj-async/*.lua lj-async/*/*.lua"))
    for path in p:lines() do files[#files + 1] = path:gsub("%.lua$", ""):gsub("/", ".") end
    p:close()
    local listed = {}
    for i, name in ipairs(core.modules) do listed[i] = name end
    table.sort(files)
    table.sort(listed)
    assert.same(files, listed)
  end)

  it("holds every lj-async module once lj-async loaded, not only those this state loaded", function()
    local ffi = require "ffi"
    local len, chunk = ffi.new("size_t[1]"), ffi.new("char[256]")
    for _, name in ipairs(core.modules) do
      local p = core.C.ljasync_module_get(name, len, chunk, 256)
      assert.is_true(p ~= nil, name)
      assert.equal(27, ffi.cast("const uint8_t *", p)[0])  -- bytecode, not source
      assert.matches("lj%-async/.*%.lua$", ffi.string(chunk))
    end
  end)

  it("says so, without raising through the core, when cached bytecode does not load", function()
    local bad = "\27LJ\2\255garbage"
    assert.equal(1, core.C.ljasync_module_put("modules_spec.corrupt", "=corrupt", bad, #bad))
    local Thread = require "lj-async.thread"
    local t = Thread.new(function() require "modules_spec.corrupt" end)
    assert.is_true(t:join(20))
    assert.equal("failed", t:status())
    assert.matches("module 'modules_spec.corrupt' not found:", t:error(), 1, true)
    assert.matches("lj-async's cached bytecode for 'modules_spec.corrupt' does not load here: ", t:error(), 1, true)
    t:destroy()
  end)

  it("names a loader that cannot be saved when a new state requires that module", function()
    -- lj-async.pool_worker comes from a C function (package.preload) in the creating state.
    local out, ok = run_child('package.preload["lj-async.pool_worker"] = print\n' .. LOVE_LIKE .. [==[
local Thread = require "lj-async.thread"
local t = Thread.new(function() require "lj-async.pool_worker" end)
assert(t:join(20))
print("status:", t:status())
print("error:", t:error())
t:destroy()
]==])
    assert.is_true(ok, out)
    assert.matches("status:\tfailed", out, 1, true)
    assert.matches("module 'lj-async.pool_worker' not found", out, 1, true)
    assert.matches("(not cached when lj-async loaded: its loader is a C function, and only Lua functions can be saved as bytecode (string.dump))", out, 1, true)
  end)
end)

describe("core.provide", function()
  local Thread = require "lj-async.thread"
  local async = require "lj-async.pool"

  -- Requires `name` in a new thread's state; returns its `value` field and the chunk name of
  -- its `where` function.
  local function in_thread(name)
    local h = Thread.spawn(function(n)
      local m = require(n)
      return m.value, debug.getinfo(m.where, "S").source
    end, name)
    assert.is_true(h:join(20))
    assert.equal("done", h:status(), tostring(h:error()))
    local _, value, source = h:join(0)
    h:destroy()
    return value, source
  end

  it("makes Lua source a module every new state finds, naming its chunk", function()
    assert.is_true(core.provide("modules_spec.src", "return { value = 7, where = function() end }", "@game/src.lua"))
    assert.same({ 7, "@game/src.lua" }, { in_thread("modules_spec.src") })
    -- A pool worker (its own state) finds it too.
    local job = async.handle_async(function() return require("modules_spec.src").value * 6 end, function() end)
    assert.same({ true, 42 }, { async.await(job, 20) })
  end)

  it("takes a module's main function, or finds it through this state's package.loaders", function()
    assert.is_true(core.provide("modules_spec.fn", loadstring("return { value = 'fn', where = function() end }", "@game/fn.lua")))
    assert.same({ "fn", "@game/fn.lua" }, { in_thread("modules_spec.fn") })

    -- Found through a searcher of this state only (as LÖVE's finds files in a .love zip).
    local function searcher(name)
      if name ~= "modules_spec.found" then return "\n\tnot here" end
      return loadstring("return { value = 'found', where = function() end }", "@game/found.lua")
    end
    table.insert(package.loaders, searcher)
    local ok, stored = pcall(core.provide, "modules_spec.found")
    for i = #package.loaders, 1, -1 do if package.loaders[i] == searcher then table.remove(package.loaders, i) end end
    assert.is_true(ok, stored)
    assert.is_true(stored)
    assert.same({ "found", "@game/found.lua" }, { in_thread("modules_spec.found") })
  end)

  it("takes bytecode, which keeps its chunk name", function()
    local code = string.dump(loadstring("return { value = 'bc', where = function() end }", "@game/bc.lua"))
    assert.is_true(core.provide("modules_spec.bc", code))
    assert.same({ "bc", "@game/bc.lua" }, { in_thread("modules_spec.bc") })
  end)

  it("keeps the first module provided under a name", function()
    assert.is_true(core.provide("modules_spec.once", "return { value = 1, where = function() end }"))
    assert.is_false(core.provide("modules_spec.once", "return { value = 2, where = function() end }"))
    assert.equal(1, (in_thread("modules_spec.once")))
    assert.is_false(core.provide("lj-async.sync", "return {}"))  -- lj-async's own are taken
  end)

  it("refuses what cannot become a module, naming why", function()
    local up = 1
    assert.has_error(function() core.provide(nil, "return 1") end,
      "bad argument #1 to 'provide': expected a module name, got nil")
    assert.has_error(function() core.provide("modules_spec.bad", 42) end,
      "bad argument #2 to 'provide': expected a function, Lua source or bytecode, got number")
    assert.has_error(function() core.provide("modules_spec.bad", print) end,
      "cannot provide module 'modules_spec.bad': its loader is a C function, and only Lua functions can be saved as bytecode (string.dump)")
    assert.has_error(function() core.provide("modules_spec.bad", function() return up end) end,
      "cannot provide module 'modules_spec.bad': its loader has upvalues (up), which would be nil in other states")
    assert.has_error(function() core.provide("modules_spec.bad", function() end, "@x.lua") end,
      "bad argument #3 to 'provide': a chunk name string names source code (a function or bytecode keeps its own)")
    local ok, err = pcall(core.provide, "modules_spec.bad", "return {")
    assert.is_false(ok)
    assert.matches("bad argument #2 to 'provide' (module 'modules_spec.bad'): ", err, 1, true)
    ok, err = pcall(core.provide, "modules_spec.nowhere")
    assert.is_false(ok)
    assert.matches("cannot provide module 'modules_spec.nowhere': not found:", err, 1, true)
    assert.matches("no field package.preload['modules_spec.nowhere']", err, 1, true)
  end)
end)
