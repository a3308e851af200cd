-- Light pool workers (Sources/CLJAsyncLua/light_worker.c): defined jobs of upvalue-free
-- functions with scalar arguments and results run in a state without ffi or lj-async modules;
-- what the submitter sees is what pool_worker.lua gives (each case runs on both and compares),
-- and the hand-over to pool_worker.lua keeps every later job right.
local async = require "lj-async.pool"
local C = require "lj-async.pool_abi"

-- One fresh worker that starts light (true) or on pool_worker.lua (false).
local function fresh_worker(light)
  async.ensure.exactly(0)
  C.ljasync_pool_light(light and 1 or 0)
  async.ensure.exactly(1)
end

-- A value as text that tells -0, NaN, types and embedded zeros apart.
local function show(v)
  if type(v) == "number" then
    if v ~= v then return "nan" end
    if v == 0 and 1 / v < 0 then return "-0" end
    return ("%.17g"):format(v)
  end
  if type(v) == "string" then
    if #v <= 4000 then return ("%q"):format(v) end
    local sum = 0  -- long strings as their length and a checksum of every byte, for short reports
    for i = 1, #v do sum = (sum * 31 + v:byte(i)) % 4294967291 end
    return ("string[%d, sum %d, %q...]"):format(#v, sum, v:sub(1, 20))
  end
  if type(v) == "table" then
    local t = {}
    for k, x in pairs(v) do t[#t + 1] = show(k) .. "=" .. show(x) end
    table.sort(t)
    return "{" .. table.concat(t, ",") .. "}"
  end
  return type(v) .. ":" .. tostring(v)
end

local function show_all(...)
  local t = { "n=" .. select("#", ...) }
  for i = 1, select("#", ...) do t[#t + 1] = show((select(i, ...))) end
  return table.concat(t, " ")
end

-- Runs the jobs one after the other on the one worker; returns what each delivered.
local function outcomes(jobs)
  local got = {}
  for i, j in ipairs(jobs) do
    local cb = {
      success = function(...) got[i] = "ok " .. show_all(...) end,
      error = function(e) got[i] = "error " .. show(e) end,
    }
    if j.anon then
      async.handle_async(j.anon, function(...) got[i] = "ok " .. show_all(...) end, unpack(j, 1, j.n))
    else
      async.call(cb, unpack(j, 1, j.n))
    end
    assert.is_true(async.wait_all(10))
    got[i] = got[i] or "nothing"
  end
  return got
end

-- The two lists of outcomes are the same (the first difference named, not both lists).
local function same_outcomes(expected, got)
  for i = 1, math.max(#expected, #got) do
    assert.equal(expected[i], got[i], ("job %d"):format(i))
  end
end

-- What the worker's state has loaded: "ffi" and lj-async's modules, space-separated.
local function loaded_modules()
  local got
  async.call(function(s) got = s end, "light_probe")
  assert.is_true(async.wait_all(10))
  return got
end

local k = 10
local defs = {
  light_probe = function()
    local l = {}
    for name in pairs(package.loaded) do
      if name == "ffi" or name:find("^lj%-async") then l[#l + 1] = name end
    end
    table.sort(l)
    return table.concat(l, " ")
  end,
  double = function(x) return x * 2 end,
  echo = function(...) return select("#", ...), ... end,
  fails = function(x) error("failed with " .. tostring(x)) end,
  fails_object = function() error(setmetatable({}, { __tostring = function() return "an object" end })) end,
  fails_number = function() error(42) end,
  fails_table = function() error({}) end,
  fails_nil = function() error() end,
  fails_tostring_number = function() error(setmetatable({}, { __tostring = function() return 5 end })) end,
  fails_tostring_table = function() error(setmetatable({}, { __tostring = function() return {} end })) end,
  fails_tostring_raises = function() error(setmetatable({}, { __tostring = function() error("inner") end })) end,
  fails_locked = function() error(setmetatable({}, { __metatable = false, __tostring = function() return "x" end })) end,
  fails_locked_table = function()
    error(setmetatable({}, { __metatable = { __tostring = true }, __tostring = function() return "y" end }))
  end,
  deep = function(n)
    local function down(i) if i == 0 then error("at the bottom") end return 1 + down(i - 1) end
    return down(n)
  end,
  make_table = function(x) return { x, x * 2 } end,
  with_upvalue = function(x) return x + k end,
  global_set = function(v) LIGHT_WORKER_GLOBAL = v end,
  global_get = function() return LIGHT_WORKER_GLOBAL end,
}

local scalar_jobs = {
  { "double", 21, n = 2 },
  { "echo", n = 1 },
  { "echo", nil, n = 2 },
  { "echo", nil, -0.0, 0 / 0, 1 / 0, -1 / 0, 2 ^ 53, 0.1, "a\0b", "", true, false, nil, n = 13 },
  { "echo", ("long\0"):rep(3000), ("x"):rep(223), ("y"):rep(224), ("z"):rep(8160), n = 5 },
  { "fails", 3, n = 2 },
  { "fails_object", n = 1 },
  { "fails_number", n = 1 },
  { "fails_table", n = 1 },
  { "fails_nil", n = 1 },
  { "fails_tostring_number", n = 1 },
  { "fails_tostring_table", n = 1 },
  { "fails_tostring_raises", n = 1 },
  { "fails_locked", n = 1 },
  { "fails_locked_table", n = 1 },
  { "deep", 40, n = 2 },
  { "deep", 3, n = 2 },
  { "global_set", "kept", n = 2 },
  { "global_get", n = 1 },
  { anon = function(a, b) return a + b, a .. b end, 1, 2, n = 2 },
  { "double", 0.5, n = 2 },
}

describe("light pool workers", function()
  local was
  local gates = {}
  setup(function()
    was = C.ljasync_pool_light(-1)
    for name, f in pairs(defs) do async.define(name, f) end
  end)
  teardown(function()
    for name in pairs(defs) do async.undefine(name) end
    C.ljasync_pool_light(was)
    async.ensure.exactly(0)
    for _, gate in ipairs(gates) do os.remove(gate) end
  end)

  it("an idle worker after a job that moved numbers has loaded neither ffi nor lj-async's modules", function()
    fresh_worker(true)
    assert.same({ "ok n=1 42" }, outcomes({ { "double", 21, n = 2 } }))
    assert.equal("", loaded_modules())
  end)

  it("delivers what pool_worker.lua delivers: counts, nils, -0, NaN, zeros in strings, errors and tracebacks", function()
    fresh_worker(false)
    local ordinary = outcomes(scalar_jobs)
    fresh_worker(true)
    local light = outcomes(scalar_jobs)
    assert.equal("", loaded_modules())  -- every one of them ran light
    same_outcomes(ordinary, light)
    assert.matches("^error \"job 'fails' failed: .-failed with 3\\\nstack traceback:", light[6])
    assert.matches("%(error object is a table value%)", light[9])
  end)

  it("a callback that raises reaches update's caller as with pool_worker.lua", function()
    local texts = {}
    for _, light in ipairs { false, true } do
      fresh_worker(light)
      async.call(function(x) error("callback got " .. x, 0) end, "double", 4)
      local ok, err = pcall(async.wait_all, 10)
      texts[#texts + 1] = tostring(ok) .. " " .. tostring(err)
      assert.is_true(async.wait_all(10))
    end
    assert.equal("false callback got 8", texts[1])
    assert.same(texts[1], texts[2])
  end)

  local handovers = {
    { "a table argument", { "double", 1, n = 2 }, { "echo", { 1, x = "y" }, n = 2 } },
    { "a table result", { "double", 1, n = 2 }, { "make_table", 4, n = 2 } },
    { "an upvalue", { "double", 1, n = 2 }, { "with_upvalue", 5, n = 2 } },
    { "an anonymous function with an upvalue", { "double", 1, n = 2 }, { anon = function(x) return x + k end, 5, n = 2 } },
  }
  for _, case in ipairs(handovers) do
    it("hands over at " .. case[1] .. " and every later job stays right", function()
      local jobs = { case[2], { "global_set", "before", n = 2 }, case[3] }
      for _, j in ipairs(scalar_jobs) do jobs[#jobs + 1] = j end
      jobs[#jobs + 1] = case[3]
      fresh_worker(false)
      local ordinary = outcomes(jobs)
      fresh_worker(true)
      local light = outcomes({ case[2] })
      assert.equal("", loaded_modules())
      for i = 2, #jobs do light[i] = outcomes({ jobs[i] })[1] end
      same_outcomes(ordinary, light)
      assert.matches("lj%-async%.pool_worker", loaded_modules())  -- it was handed over
    end)
  end

  it("a job that starts a hand-over keeps its place among queued ones, and no result is lost", function()
    fresh_worker(true)
    local got, n = {}, 0
    for i = 1, 300 do
      local name, arg = "double", i
      if i == 150 then name, arg = "echo", { i } end
      async.call(function(v, t) n = n + 1; got[i] = type(t) == "table" and t[1] or v / 2 end, name, arg)
    end
    assert.is_true(async.wait_all(20))
    assert.equal(300, n)
    for i = 1, 300 do assert.equal(i, got[i]) end
  end)

  it("warns of a job that waited in the queue as pool_worker.lua does", function()
    local H = require "spec.helpers"
    local texts = {}
    async.configure { warn_after = 0.05 }
    finally(function() async.configure { warn_after = 11.5 } end)
    for _, light in ipairs { false, true } do
      async.ensure.exactly(0)
      C.ljasync_pool_light(light and 1 or 0)
      texts[#texts + 1] = H.capture_stderr(function()
        async.call(function() end, "double", 1)
        async.handle_async(function(x) return x end, function() end, 1)
        async.ipc_poll("light_worker_spec: never set", 0.1)  -- no worker: the jobs wait
        async.ensure.exactly(1)
        assert.is_true(async.wait_all(10))
      end)
      if light then assert.equal("", loaded_modules()) end
    end
    assert.matches("job 'double' waited 0%.%d s in the queue", texts[1])
    assert.matches("the job function defined at .*light_worker_spec%.lua:%d+ waited 0%.%d s", texts[1])
    assert.equal(texts[1]:gsub("%d%.%d s", "x s"), (texts[2]:gsub("%d%.%d s", "x s")))
  end)

  it("keeps a bounded cache of definitions, and jobs of new ones stay right", function()
    fresh_worker(true)
    local got = {}
    for i = 1, 600 do
      local name = "light_worker_spec " .. i
      async.define(name, function(x) return x + 1 end)
      async.call(function(v) got[i] = v end, name, i)
      if i % 50 == 0 then assert.is_true(async.wait_all(10)) end
      async.undefine(name)
    end
    assert.is_true(async.wait_all(10))
    for i = 1, 600 do assert.equal(i + 1, got[i]) end
    assert.equal("", loaded_modules())
  end)

  -- Init code stays registered for the process: these come last, a portable metatable (after
  -- which every worker hands over at its start) last of all.
  it("runs init code as pool_worker.lua does: a failure's text, then code registered later, and stays light", function()
    local H = require "spec.helpers"
    local gate = os.tmpname()
    os.remove(gate)
    local path = os.tmpname()
    local f = assert(io.open(path, "w"))
    f:write(("local f = io.open(%q) if not f then error('the gate is closed') end f:close()\n"):format(gate))
    f:write("LIGHT_WORKER_GLOBAL = 'from init code'\n")
    f:close()
    async.register_async_dofile(path)
    os.remove(path)
    local texts = {}
    for _, light in ipairs { false, true } do
      async.ensure.exactly(0)
      C.ljasync_pool_light(light and 1 or 0)
      H.capture_stderr(function()
        local job = async.handle_async(function() return 1 end)
        async.ensure.exactly(1)
        local ok, e = async.await(job, 10)
        assert.is_false(ok)
        texts[#texts + 1] = e
      end)
    end
    assert.matches("^no pool worker could start: async file .- failed: .-the gate is closed\nstack traceback:", texts[1])
    assert.equal(texts[1], texts[2])
    assert(io.open(gate, "w")):close()  -- open for good: the file stays registered
    gates[#gates + 1] = gate
    fresh_worker(true)
    assert.same({ "ok n=1 \"from init code\"" }, outcomes({ { "global_get", n = 1 } }))
    assert.equal("", loaded_modules())
    -- Registered while the worker runs: the next job runs it first.
    path = os.tmpname()
    f = assert(io.open(path, "w"))
    f:write("LIGHT_WORKER_GLOBAL = 'from later init code'\n")
    f:close()
    async.register_async_dofile(path)
    os.remove(path)
    assert.same({ "ok n=1 \"from later init code\"", "ok n=1 4" }, outcomes({ { "global_get", n = 1 }, { "double", 2, n = 2 } }))
    assert.equal("", loaded_modules())
  end)

  it("hands over at a portable metatable, registered before or while it runs", function()
    fresh_worker(true)
    assert.same({ "ok n=1 2" }, outcomes({ { "double", 1, n = 2 } }))
    assert.equal("", loaded_modules())
    async.register_portable_metatable("light_worker_spec point", { __index = {} })
    assert.same({ "ok n=1 4", "ok n=1 \"from later init code\"" }, outcomes({ { "double", 2, n = 2 }, { "global_get", n = 1 } }))
    assert.matches("lj%-async%.pool_worker", loaded_modules())
    fresh_worker(true)  -- starts with the metatable registered: hands over before its first job
    assert.same({ "ok n=1 6" }, outcomes({ { "double", 3, n = 2 } }))
    assert.matches("lj%-async%.pool_worker", loaded_modules())
  end)
end)
