-- An ordinary (untrusted) mod using the global lj_async: each check logs "lj_async_test: ok NAME"
-- or "lj_async_test: FAIL NAME: why"; when all are settled it logs a summary and shuts the server down.
local modpath = core.get_modpath(core.get_current_modname())

local pending, order, passed, failed = {}, {}, 0, 0
local finished = false

local function log(line) core.log("action", "lj_async_test: " .. line) end

local function finish(reason)
  if finished then return end
  finished = true
  for _, name in ipairs(order) do
    if pending[name] then failed = failed + 1; log("FAIL " .. name .. ": " .. reason) end
  end
  log(("done: %d passed, %d failed"):format(passed, failed))
  core.request_shutdown()
end

local function expect(name)
  pending[name] = true
  order[#order + 1] = name
end

local function check(name, cond, detail, shown)
  if not pending[name] then log("FAIL " .. name .. ": settled twice or never expected"); failed = failed + 1; return end
  pending[name] = nil
  if cond then passed = passed + 1; log("ok " .. name .. (shown and " (" .. shown .. ")" or ""))
  else failed = failed + 1; log("FAIL " .. name .. ": " .. tostring(detail)) end
  if next(pending) == nil then finish("") end
end

-- Callbacks run in the server's normal environment (the map API is there, not in workers).
local function normal_env() return type(core.get_node) == "function" and type(core.get_player_by_name) == "function" end

-- A job that must succeed: on_success checks its results; a failure settles the check at once.
local function must_succeed(name, func, on_success, ...)
  expect(name)
  lj_async.handle_async(func, { success = on_success, error = function(msg) check(name, false, msg) end }, ...)
end

-- A job that must fail: its error callback checks the message.
local function must_fail(name, pattern, func, ...)
  expect(name)
  local ok, err = pcall(lj_async.handle_async, func, {
    success = function(...) check(name, false, "the job succeeded: " .. tostring((...))) end,
    error = function(msg) check(name, normal_env() and msg:find(pattern) ~= nil, msg, msg:match("^[^\n]*")) end,
  }, ...)
  if not ok then check(name, false, "submission failed: " .. tostring(err)) end
end

-- 1. A job that succeeds: every result, nils and count kept.
must_succeed("success", function(a, b) return a + b, nil, ("x"):rep(3) end, function(...)
  local n, a, b, c = select("#", ...), ...
  check("success", normal_env() and n == 3 and a == 5 and b == nil and c == "xxx",
    ("got %d values: %s %s %s"):format(n, tostring(a), tostring(b), tostring(c)))
end, 2, 3)

-- 2. A job that fails: its callback sees the error, named after this mod.
must_fail("failure", "^job 'lj_async_test' failed: .-init%.lua:%d+: boom from the test", function()
  error("boom from the test")
end)

-- A failure no callback takes is written to the log (the shell test looks for it).
lj_async.handle_async(function() error("nobody takes this failure") end, function() end)

-- 3. A file registered with register_async_dofile: its globals are visible to this mod's jobs.
lj_async.register_async_dofile(modpath .. "/async_file.lua")
must_succeed("dofile", function(x) return lj_async_test_square(x), lj_async_test_file_io end, function(sq, io_type)
  check("dofile", sq == 49 and io_type == "nil", ("square %s, io in the file: %s"):format(tostring(sq), tostring(io_type)))
end, 7)

-- 4. A table with a cycle (and a shared reference) crosses both ways.
local ring = { name = "ring" }
ring.self, ring.list = ring, { ring }
must_succeed("cycle", function(t) return t.self == t and t.list[1] == t, t end, function(same, back)
  check("cycle", same == true and type(back) == "table" and back.self == back and back.list[1] == back
    and back.name == "ring" and back ~= ring, "the cycle was not kept")
end, ring)

-- 5. Reaching for io.open, ffi, or the worker's globals fails.
must_fail("io.open", "attempt to index global 'io'", function() return io.open("/etc/hostname", "r") end)
must_fail("ffi", "module 'ffi' is not available to restricted jobs", function() return require("ffi").C end)
must_fail("os.execute", "attempt to call field 'execute'", function() return os.execute("true") end)
must_fail("getfenv", "attempt to index field 'io'", function() return getfenv(0).io.open("/etc/hostname") end)
must_fail("bytecode", "bytecode is not allowed", function(code) return assert(loadstring(code)) end,
  string.dump(function() return 1 end))
-- An upvalue leading to lj_async's own functions (and through them to lj-async's modules).
do
  local smuggled = lj_async.handle_async
  expect("upvalue")
  local ok, err = pcall(lj_async.handle_async, function() return smuggled end, {
    success = function() check("upvalue", false, "the job got lj_async's internals") end,
    error = function(msg) check("upvalue", msg:find("restricted jobs") ~= nil, msg, msg:match("^[^\n]*")) end,
  })
  -- Refused already at submission is as good: nothing crossed.
  if not ok then check("upvalue", tostring(err):find("cannot move") ~= nil, err, err) end
end

-- 6. IPC between the server and jobs; a portable metatable crosses both ways.
lj_async.ipc_set("lj_async_test:in", { n = 41 })
must_succeed("ipc", function()
  local v = lj_async.ipc_get("lj_async_test:in")
  lj_async.ipc_set("lj_async_test:out", v.n + 1)
  return lj_async.ipc_cas("lj_async_test:out", 42, "swapped")
end, function(swapped)
  check("ipc", swapped == true and lj_async.ipc_get("lj_async_test:out") == "swapped"
    and lj_async.ipc_poll("lj_async_test:out", 0) == true, "got " .. tostring(lj_async.ipc_get("lj_async_test:out")))
end)

local Vec = {}
Vec.__index = Vec
Vec.__add = function(a, b) return setmetatable({ x = a.x + b.x }, getmetatable(a)) end
assert(lj_async.register_portable_metatable("lj_async_test:Vec", Vec))
must_succeed("metatable", function(v) return v + v end, function(r)
  check("metatable", getmetatable(r) == Vec and r.x == 6, "got " .. tostring(r and r.x))
end, setmetatable({ x = 3 }, Vec))

-- 7. What a mod that is not trusted may not do, or reach: no function it can get (the API,
-- job handles, the frames above its callbacks) has globals that hold the real io or a working
-- require.
local function insecure(e)
  return type(e) == "table" and ((type(e.io) == "table" and e.io.popen ~= nil)
    or (type(e.require) == "function" and pcall(e.require, "ffi")))
end
local function leaks_in(where)
  local found = {}
  for k, f in pairs(lj_async) do
    if type(f) == "function" and insecure(getfenv(f)) then found[#found + 1] = "lj_async." .. k end
  end
  for l = 2, 30 do
    local info = debug.getinfo(l, "fS")
    if not info then break end
    if insecure(getfenv(info.func)) then found[#found + 1] = where .. " frame " .. l .. " (" .. info.short_src .. ")" end
  end
  return found
end
expect("no insecure environment reachable")
do
  local job = lj_async.handle_async(function() return 1 end, function()
    local found = leaks_in("callback")
    check("no insecure environment reachable", #found == 0, table.concat(found, ", "))
  end)
  local from_job = {}
  for _, k in ipairs { "cancel", "status" } do
    if insecure(getfenv(job[k])) then from_job[#from_job + 1] = "job:" .. k end
  end
  if type(getmetatable(job)) == "table" then from_job[#from_job + 1] = "the job handle's metatable" end
  if #from_job > 0 then log("FAIL job handle leaks: " .. table.concat(from_job, ", ")); failed = failed + 1 end
end

expect("unrestricted refused")
local ok, err = pcall(lj_async.unrestricted, {})
check("unrestricted refused", not ok and err:find("insecure environment") ~= nil, err)
expect("dofile outside the mod refused")
ok, err = pcall(lj_async.register_async_dofile, "/etc/hostname")
check("dofile outside the mod refused", not ok and err:find("not inside mod lj_async_test") ~= nil, err)

-- 8. At run time (in a globalstep, where get_current_modname() is nil), calls are still this
-- mod's: the job sees the globals of this mod's async file.
expect("runtime call")
expect("bound runtime call")
local bound = lj_async.bind()
expect("bind refused at run time")

-- 9. A trusted mod (lj_async_trusted_test) gets unrestricted jobs only when it asks, with its
-- insecure environment.
local trusted = core.get_modpath("lj_async_trusted_test") ~= nil
if trusted then expect("trusted mod: unrestricted job"); expect("trusted mod: restricted by default") end

local steps, elapsed = 0, 0
core.register_globalstep(function(dtime)
  steps, elapsed = steps + 1, elapsed + dtime
  local t = trusted and lj_async_trusted_test
  if t and t.unrestricted and pending["trusted mod: unrestricted job"] then
    check("trusted mod: unrestricted job", t.unrestricted == "ok", t.unrestricted)
  end
  if t and t.restricted and pending["trusted mod: restricted by default"] then
    check("trusted mod: restricted by default", t.restricted == "ok", t.restricted)
  end
  if steps == 2 then
    log("get_current_modname() in a globalstep: " .. tostring(core.get_current_modname()))
    lj_async.handle_async(function(x) return lj_async_test_square(x) end, {
      success = function(r) check("runtime call", r == 9, "got " .. tostring(r)) end,
      error = function(msg) check("runtime call", false, msg) end,
    }, 3)
    bound.handle_async(function(x) return lj_async_test_square(x) end, {
      success = function(r) check("bound runtime call", r == 16, "got " .. tostring(r)) end,
      error = function(msg) check("bound runtime call", false, msg) end,
    }, 4)
    local ok, err = pcall(lj_async.bind)
    check("bind refused at run time", not ok and tostring(err):find("only while a mod loads") ~= nil, err)
  end
  if elapsed > 30 and not finished then finish("no result within 30 s") end
end)

log("core loaded from " .. lj_async.core_path)
