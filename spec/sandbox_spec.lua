-- lj-async.sandbox: restricted jobs in pool workers (what the Luanti mod gives mods that are not trusted).
-- The submitting side here has every module (ffi, io, debug): each test tries to carry one of
-- them into a restricted job, through globals, upvalues, arguments, files, IPC or metatables.
local ffi = require "ffi"
local async = require "lj-async.pool"
local sandbox = require "lj-async.sandbox"

local function run(env, f, ...)
  local job = sandbox.submit(async, env, 1, f, nil, ...)
  return async.await(job, 30)
end

local function fails_with(pattern, env, f, ...)
  local r = { run(env, f, ...) }
  assert.is_false(r[1], "the job succeeded: " .. tostring(r[2]))
  assert.matches(pattern, r[2])
  return r[2]
end

describe("restricted jobs", function()
  setup(function()
    assert(async.shutdown { timeout = 30 })
    async.configure { autoscale = false }
    async.ensure.exactly(1)
  end)
  teardown(function() assert(async.shutdown { timeout = 30 }) end)

  it("run functions with their arguments and return every result, nils and counts kept", function()
    local r = { run("spec_a", function(a, b) return a + b, nil, ("x"):rep(2) end, 2, 3) }
    assert.same({ true, 5, nil, "xx" }, r)
    assert.equal(4, select("#", run("spec_a", function(a, b) return a + b, nil, ("x"):rep(2) end, 2, 3)))
  end)

  it("see no io, os beyond time/clock/date, ffi, debug, jit, package, string.buffer or file loading", function()
    local ok, missing = run("spec_a", function()
      local out = {}
      for _, k in ipairs { "io", "ffi", "debug", "jit", "package", "dofile", "loadfile", "module", "newproxy" } do
        if _G[k] ~= nil then out[#out + 1] = k end
      end
      for _, k in ipairs { "execute", "exit", "getenv", "remove", "rename", "tmpname" } do
        if os[k] ~= nil then out[#out + 1] = "os." .. k end
      end
      assert(type(os.time()) == "number" and type(os.clock()) == "number" and type(os.date("%Y")) == "string")
      for _, m in ipairs { "ffi", "io", "debug", "jit", "string.buffer", "lj-async.pool", "table.new" } do
        if pcall(require, m) then out[#out + 1] = "require " .. m end
      end
      return table.concat(out, ",")
    end)
    assert.is_true(ok, missing)
    assert.equal("", missing)
    fails_with("attempt to index global 'io'", "spec_a", function() return io.open("/etc/hostname") end)
    fails_with("module 'ffi' is not available to restricted jobs %(environment 'spec_a'%)", "spec_a",
      function() return require("ffi").C end)
  end)

  it("refuse upvalues that carry ffi, io, debug, lj-async's modules or their C functions", function()
    local io_open, getinfo, pool = io.open, debug.getinfo, async
    fails_with("module 'ffi' is not available", "spec_a", function() return ffi end)
    fails_with("module 'io' is not available", "spec_a", function() return io_open("/etc/hostname") end)
    fails_with("module 'debug' is not available", "spec_a", function() return getinfo(1) end)
    fails_with("module 'lj%-async.pool' is not available", "spec_a", function() return pool end)
    -- A table holding a module, and a function argument whose upvalue is one.
    fails_with("module 'ffi' is not available", "spec_a", function(t) return t.get() end, { get = function() return ffi end })
    fails_with("module 'io' is not available", "spec_a", function(g) return g() end, function() return io_open end)
  end)

  it("give the environment's own libraries for upvalues naming standard ones, and _G is the environment", function()
    local G, insert, str = _G, table.insert, string
    local ok, a, b, c = run("spec_a", function()
      local t = {}
      insert(t, str.rep("a", 2))
      return t[1], G.io == nil, G == _G
    end)
    assert.is_true(ok, a)
    assert.same({ "aa", true, true }, { a, b, c })
  end)

  it("make decoded functions (arguments, fields, upvalues) run in the environment", function()
    local ok, a, b = run("spec_a", function(g, t) return g(), t.f() end,
      function() return type(io) end, { f = function() return type(debug) end })
    assert.is_true(ok, a)
    assert.same({ "nil", "nil" }, { a, b })
  end)

  it("lead getfenv, setfenv and string metatables back to the environment only", function()
    local ok, a, b, c = run("spec_a", function()
      return getfenv(0).io == nil and getfenv(1) == _G, getfenv(print) == _G, getmetatable("").__index == string
    end)
    assert.is_true(ok, a)
    assert.same({ true, true, true }, { a, b, c })
    -- The job's own functions may get other globals.
    local ok2, v = run("spec_a", function()
      local function f() return marker end
      setfenv(f, { marker = "own env" })
      return f()
    end)
    assert.same({ true, "own env" }, { ok2, v })
    fails_with("setfenv%(0%) is not allowed", "spec_a", function() setfenv(0, {}) end)
    fails_with("does not belong to the restricted job", "spec_a", function() setfenv(print, {}) end)
    fails_with("does not belong to the restricted job", "spec_a", function() setfenv(3, {}) end)
    -- The worker's own string table stays untouched.
    assert.is_true((run("spec_a", function() getmetatable("").__index.spec_mark = 1 end)))
    local probe = async.handle_async(function() return string.spec_mark end)
    assert.same({ true, nil }, { async.await(probe, 30) })
  end)

  it("load source only, in the environment; bytecode is refused", function()
    local code = string.dump(function() return 1 end)
    local ok, a, b = run("spec_a", function(bc)
      local f = assert(loadstring("return type(io), ..."))
      local g, err = loadstring(bc)
      return f(7) .. "", g == nil and err
    end, code)
    assert.is_true(ok, a)
    assert.equal("nil", a)
    assert.matches("bytecode is not allowed", b)
    local ok2, c, d = run("spec_a", function(bc)
      local parts = { "return type(", "io)" }
      local i = 0
      local f = assert(load(function() i = i + 1; return parts[i] end))
      local once = false
      local g, err = load(function() if once then return nil end once = true; return bc end)
      return f(), g == nil and err
    end, code)
    assert.is_true(ok2, c)
    assert.equal("nil", c)
    assert.matches("bytecode is not allowed", d)
  end)

  it("refuse cdata other than 64-bit integers and complex numbers", function()
    fails_with("cannot receive a cdata of type 'int %[1%]'", "spec_a", function(p) return p end, ffi.new("int[1]"))
    fails_with("cannot receive a cdata of type 'char %*'", "spec_a", function(p) return p end, ffi.cast("char *", 0))
    local ok, v = run("spec_a", function(x) return x + 1 end, 41LL)
    assert.is_true(ok, v)
    assert.equal(42LL, v)
  end)

  it("keep globals per environment: files and jobs of one environment share them, others do not see them", function()
    local path = os.tmpname()
    local f = assert(io.open(path, "w"))
    f:write("spec_square = function(x) return x * x end\nspec_io = type(io)\n")
    f:close()
    sandbox.add_file("spec_b", path, 1)
    os.remove(path)
    local ok, a, b = run("spec_b", function(x) return spec_square(x), spec_io end, 7)
    assert.is_true(ok, a)
    assert.same({ 49, "nil" }, { a, b })
    assert.is_true((run("spec_b", function() spec_kept = "here" end)))
    assert.same({ true, "here" }, { run("spec_b", function() return spec_kept end) })
    assert.same({ true, "nil", "nil" }, { run("spec_a", function() return type(spec_square), type(spec_kept) end) })
    local plain = async.handle_async(function() return type(spec_square) end)
    assert.same({ true, "nil" }, { async.await(plain, 30) })
  end)

  it("read IPC values under the environment's rules", function()
    async.ipc_set("spec sandbox", { f = function() return type(io) end })
    assert.same({ true, "nil" }, { run("spec_a", function() return lj_async.ipc_get("spec sandbox").f() end) })
    assert.is_true((run("spec_a", function() lj_async.ipc_set("spec sandbox", "from the job") end)))
    assert.equal("from the job", async.ipc_get("spec sandbox"))
    async.ipc_set("spec sandbox", nil)
  end)

  it("register portable metatables whose functions run in the environment", function()
    local mt = { __index = function(_, k) return k .. ":" .. type(io) end }
    assert.is_true(sandbox.add_metatable("spec_a", "spec.Probe", mt, 1))
    local ok, v = run("spec_a", function(t) return t.anything end, setmetatable({}, mt))
    assert.is_true(ok, v)
    assert.equal("anything:nil", v)
  end)

  it("name the environment in errors, and report bad jobs at the call", function()
    fails_with("^job 'spec_a' failed: .*sandbox_spec%.lua:%d+: boom", "spec_a", function() error("boom") end)
    assert.has_error(function() sandbox.submit(async, "spec_a", 1, "not a function") end,
      "bad function: expected a function, got string")
    assert.has_error(function() sandbox.submit(async, "spec_a", 1, function() end, nil, coroutine.create(print)) end,
      "bad job: argument 2: cannot move a coroutine")
  end)
end)
