-- The handlers of the OpenResty test (spec/hosts/openresty_test.sh): nginx loads this module in
-- init_by_lua (the master, before it forks the workers) and calls it from the locations.
-- Every body is one line of `key=value` words the test script checks.
local ffi = require "ffi"
local async = require "lj-async.pool"
local Thread = require "lj-async.thread"
local CallbackFactory = require "lj-async.callback"
local wait = require "lj-async.ngx"

local M = {}

local generation            -- the config generation that made this Lua VM (1, then 2 after reload)
local master_pid            -- the process that ran init_by_lua
local comparator            -- an lj-async callback made in the master, handed to qsort in workers

ffi.cdef [[
void qsort(void *base, size_t nmemb, size_t size, int (*compar)(const void *, const void *));
]]

--- init_by_lua: generation 1 registers extra things generation 2 must not see after reload.
function M.init(gen, gen1_file)
  generation, master_pid = gen, ngx.worker.pid()
  async.define("square", function(x) return x * x end)
  comparator = CallbackFactory("int (*)(const void *, const void *)")(function(a, b)
    local ffi = require "ffi"
    local x, y = ffi.cast("const int *", a)[0], ffi.cast("const int *", b)[0]
    return x < y and -1 or (x > y and 1 or 0)
  end, { name = "qsort comparator" })
  if gen == 1 then
    async.define("gen1_only", function() return "gen1" end)
    async.register_async_dofile(gen1_file)                      -- sets GEN1_FILE in workers
    CallbackFactory.add_init("GEN1_INIT = true", "=gen1 init")  -- every new state
    async.register_portable_metatable("gen1_point", { __index = { gen = 1 } })
    async.configure { warn_after = 7.25 }
  end
end

--- init_worker_by_lua: per worker process, after the fork.
function M.init_worker()
  async.ensure.atLeast(1)  -- pool threads of this worker process, started here
end

local function say(...)
  ngx.say(table.concat({ ... }, " "))
end

local function common()
  return "gen=" .. generation, "pid=" .. ngx.worker.pid(), "master=" .. master_pid
end

-- /pool?n=12: a job of the pool, waited for without blocking the event loop.
function M.pool()
  local n = tonumber(ngx.var.arg_n)
  local ok, r = wait.call("square", n)
  if not ok then return say("error", tostring(r)) end
  say("square=" .. r, "workers=" .. async.getWorkerCount(), common())
end

-- /thread?n=7: a thread computes 1^2 + ... + n^2 and the id of the OS thread it ran on.
function M.thread()
  local n = tonumber(ngx.var.arg_n)
  local t = Thread.spawn(function(k)
    local sum = 0
    for i = 1, k do sum = sum + i * i end
    return sum, require("lj-async.thread").id()
  end, n)
  local ended, sum, tid = wait.join(t, 10)
  t:destroy()
  if not ended or not sum then return say("error", tostring(t:error())) end
  say("sum=" .. sum, "tid=" .. tid, common())
end

-- /sort?v=5,3,9: libc's qsort calls the lj-async comparator made in init_by_lua.
function M.sort()
  local values = {}
  for v in ngx.var.arg_v:gmatch("-?%d+") do values[#values + 1] = tonumber(v) end
  local arr = ffi.new("int[?]", #values, values)
  ffi.C.qsort(arr, #values, ffi.sizeof("int"), comparator:funcptr())
  local out = {}
  for i = 0, #values - 1 do out[#out + 1] = arr[i] end
  local errors = comparator:errors()
  say("sorted=" .. table.concat(out, ","), "cb_errors=" .. errors, common())
end

-- /ticks?mode=poll|block: a job sleeps 0.3 s while a light thread of the same request counts
-- its ngx.sleep(0.01) turns. Waiting with lj-async.ngx lets it run; async.wait() does not.
function M.ticks()
  local ticks, running = 0, true
  local ticker = ngx.thread.spawn(function()
    while running do ngx.sleep(0.01); ticks = ticks + 1 end
  end)
  local job = async.handle_async(function()
    require("lj-async.thread").sleep(0.3)
    return "slept"
  end, function() end)
  if ngx.var.arg_mode == "block" then
    async.wait()                 -- wrong in a handler: the worker's event loop stops
  else
    wait.await(job, 10)
  end
  local seen = ticks
  running = false
  ngx.thread.wait(ticker)
  say("ticks=" .. seen, "status=" .. job:status(), common())
end

-- /leak: what this VM and its pool see of generation 1's registrations.
function M.leak()
  local def_ok = pcall(async.call, nil, "gen1_only")
  local ok, file, init, mt = wait.run(function()
    return rawget(_G, "GEN1_FILE") == true, rawget(_G, "GEN1_INIT") == true,
      require("lj-async.encoder.registry").mt_by_name.gen1_point ~= nil
  end)
  if not ok then return say("error", tostring(file)) end
  local t = Thread.spawn(function() return rawget(_G, "GEN1_INIT") == true end)
  local _, thread_init = wait.join(t, 10)
  t:destroy()
  say("def=" .. tostring(def_ok), "file=" .. tostring(file), "init=" .. tostring(init),
    "mt=" .. tostring(mt), "thread_init=" .. tostring(thread_init),
    "warn_after=" .. async.configure().warn_after, common())
end

return M
