-- The LÖVE test game of spec/hosts/love_test.sh: seed 001's whole API from a game laid out as
-- LÖVE users do (lj-async/ in the game, the core found by lj-async itself). Prints one line per
-- check ("ok name" / "FAIL name: why"), then "done: N ok, M failed", and quits with 0 only
-- when every check passed and every expected callback came.
io.stdout:setvbuf("line")

local early = require "early"               -- loaded before lj-async: still reaches the jobs
local async = require "lj-async.pool"
local Thread = require "lj-async.thread"
local ffi = require "ffi"
local mymod = require "gamelib.mymod"       -- loaded after lj-async: provided on require

local passed, failed = 0, 0
local function check(name, cond, why)
  if cond then
    passed = passed + 1
    print("ok " .. name)
  else
    failed = failed + 1
    print("FAIL " .. name .. ": " .. tostring(why))
  end
end

print("core " .. require("lj-async.core").path)
print("source " .. love.filesystem.getSource())

local expected, arrived = {}, {}
local function expect(name) expected[#expected + 1] = name end
local function came(name) arrived[name] = (arrived[name] or 0) + 1 end

local reported = {}
async.configure { on_error = function(msg) reported[#reported + 1] = msg end }

local thread, thread_out, lthread
local started

function love.load()
  started = love.timer.getTime()
  check("early module is the game's", early.name == "early")
  check("game module in a subfolder", mymod.triple(2) == 6)
  check("provide a module only jobs use", async.provide("workeronly") == true)
  local ok, err = pcall(async.provide, "no.such.module")
  check("provide names a missing module", not ok and tostring(err):find("no.such.module", 1, true), err)
  async.register_async_dofile("async_init.lua")            -- a LÖVE path, read from the game
  ok, err = pcall(async.register_async_dofile, "missing_init.lua")
  check("register_async_dofile names a missing file", not ok and tostring(err):find("missing_init.lua", 1, true), err)

  -- Workers: load, ensure.* (chaining), getWorkerCount, addWorker, stopWorkers.
  async.load(2)
  check("load(2)", async.getWorkerCount() == 2, async.getWorkerCount())
  check("ensure chains", async.ensure.atLeast(3) == async.ensure)
  check("ensure.atLeast(3)", async.getWorkerCount() == 3, async.getWorkerCount())
  async.ensure.atMost(1).exactly(2)
  check("ensure.atMost(1).exactly(2)", async.getWorkerCount() == 2, async.getWorkerCount())
  async.addWorker()
  check("addWorker", async.getWorkerCount() == 3, async.getWorkerCount())
  async.stopWorkers(1)
  check("stopWorkers(1)", async.getWorkerCount() == 2, async.getWorkerCount())

  -- define / call, callbacks as a function and as {success, error}.
  local square = async.define("square", function(x) return x * x end)
  expect("square fn")
  square(function(r) check("define's function, callback as a function", r == 144, r); came("square fn") end, 12)
  expect("square table")
  async.call({ success = function(r) check("call, callback as {success}", r == 9, r); came("square table") end,
               error = function(m) check("call, callback as {success}", false, m); came("square table") end },
             "square", 3)
  async.define("fail", function(what) error("broken " .. what) end)
  expect("fail table")
  async.call({ success = function() check("a failing job reaches error", false, "success ran") ; came("fail table") end,
               error = function(m)
                 check("a failing job reaches error", m:find("job 'fail' failed", 1, true) and m:find("broken on purpose", 1, true), m)
                 came("fail table")
               end }, "fail", "on purpose")
  expect("fail fn")
  async.call(function() check("failure with a function callback", false, "success ran") end, "fail", "quietly")

  -- Jobs requiring the game's modules (loaded before, after, provided), the init file's global.
  async.define("usemods", function(x)
    return require("gamelib.mymod").triple(x), require("early").name, require("workeronly").value, INIT_VALUE
  end)
  expect("usemods")
  async.call({ success = function(t, name, v, init)
                 check("a job requires game modules", t == 15 and name == "early" and v == 42, ("%s %s %s"):format(t, name, v))
                 check("register_async_dofile ran in the worker", init == 7, init)
                 came("usemods")
               end,
               error = function(m) check("a job requires game modules", false, m); came("usemods") end },
             "usemods", 5)
  async.define("secret", function() return require("secret").never end)
  expect("secret")
  async.call({ success = function() check("an unprovided game module fails with the hint", false, "found") ; came("secret") end,
               error = function(m)
                 check("an unprovided game module fails with the hint",
                   m:find("no module 'secret' provided by the LÖVE game", 1, true), m)
                 came("secret")
               end }, "secret")

  check("undefine", async.undefine("square") == true)
  ok, err = pcall(async.call, nil, "square", 1)
  check("call after undefine", not ok and tostring(err):find("no function 'square'", 1, true), err)

  -- A thread requiring a game module, and seeing the init file given by its LÖVE path.
  require("lj-async.callback").add_init_file("thread_init.lua")
  thread_out = ffi.new("int[2]")
  thread = Thread.new(function(ud)
    local ffi = require "ffi"
    local out = ffi.cast("int *", ud)
    out[0] = require("gamelib.mymod").triple(14)
    out[1] = THREAD_INIT or -1
  end, thread_out)

  -- A love.thread that uses lj-async itself.
  lthread = love.thread.newThread("lovethread.lua")
  lthread:start()
end

local finished = false
local function finish()
  finished = true
  check("a thread requires a game module", thread:join(5) and thread_out[0] == 42, thread_out[0])
  check("add_init_file ran in the thread", thread_out[1] == 5, thread_out[1])
  thread:destroy()
  lthread:wait()
  local msg = love.thread.getChannel("ljasync"):pop()
  check("a love.thread runs jobs with the same core",
    msg == "27 " .. require("lj-async.core").path, tostring(msg) .. " " .. tostring(lthread:getError()))
  check("failure with a function callback is reported",
    #reported == 1 and reported[1]:find("broken quietly", 1, true), table.concat(reported, " | "))
  came("fail fn")
  for _, name in ipairs(expected) do
    check("callback '" .. name .. "' came once", arrived[name] == 1, arrived[name])
  end
  check("shutdown", async.shutdown() == true)
  check("no workers after shutdown", async.getWorkerCount() == 0, async.getWorkerCount())
  print(("done: %d ok, %d failed"):format(passed, failed))
  love.event.quit(failed == 0 and 0 or 1)
end

function love.update()
  if finished then return end
  async.update()
  local all = #reported >= 1
  for _, name in ipairs(expected) do
    if name ~= "fail fn" and not arrived[name] then all = false end
  end
  if all then return finish() end
  if love.timer.getTime() - started > 20 then
    check("every callback within 20 s", false, "still waiting")
    finish()
  end
end
