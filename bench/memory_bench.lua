-- Memory per live object: RSS growth over N live objects after a full collection, each kind in
-- a fresh process (so memory freed by another kind is not reused), against its goal (issue 12).
--   luajit bench/memory_bench.lua            the table
--   luajit bench/memory_bench.lua one KIND   one kind: KiB per object
package.path = "./lua/?.lua;" .. package.path
local ffi = require "ffi"
ffi.cdef [[
double ljt_loop_ns(int (*fp)(int), int n);
int pipe(int fds[2]);
int close(int fd);
long write(int fd, const void *buf, size_t n);
]]
local T = ffi.load(os.getenv("LJASYNC_TESTC") or "build/libljasync_testc.so")

local function rss_kib()
  local f = io.open("/proc/self/statm"); local _, rss = f:read("*n", "*n"); f:close(); return rss * 4
end
local function full_gc() collectgarbage(); collectgarbage() end

-- kind -> { goal KiB, label, n, make(i) -> object, settle(objects), finish(objects) }
local kinds, order = {}, {}
local function kind(name, goal, label, n, def) def.goal, def.label, def.n = goal, label, n; kinds[name] = def; order[#order + 1] = name end

local identity = string.dump(function(x) return x end)

kind("callback", 32, "RSS per live callback (never called)", 500, {
  setup = function() return require("lj-async.callback")("int(*)(int)") end,
  make = function(I) return I(identity) end,
  finish = function(objs) for _, cb in ipairs(objs) do cb:free() end end,
})
kind("callback_once", nil, "  (the same called once: its state built, nothing compiled)", 500, {
  setup = function() return require("lj-async.callback")("int(*)(int)") end,
  make = function(I) local cb = I(identity); T.ljt_loop_ns(cb:funcptr(), 1); return cb end,
  finish = function(objs) for _, cb in ipairs(objs) do cb:free() end end,
})
kind("callback_called", 48, "RSS per live callback called 5,000 times", 500, {
  setup = function() return require("lj-async.callback")("int(*)(int)") end,
  make = function(I) local cb = I(identity); T.ljt_loop_ns(cb:funcptr(), 5000); return cb end,
  finish = function(objs) for _, cb in ipairs(objs) do cb:free() end end,
})

-- Idle threads block in read(2) on a pipe nobody writes to; closing its write end ends them.
local fds = ffi.new("int[2]")
local function pipe_setup() assert(ffi.C.pipe(fds) == 0); return fds[0] end
local function pipe_finish(objs)
  ffi.C.close(fds[1])
  for _, t in ipairs(objs) do assert(t:join(30), "an idle thread did not end"); t:destroy() end
end
kind("thread_new", 48, "RSS per idle Thread.new thread (its function uses ffi)", 300, {
  setup = function() require "lj-async.thread"; return pipe_setup() end,
  make = function(fd)
    return require("lj-async.thread").new(function(ud)
      local ffi = require "ffi"
      ffi.cdef "long read(int fd, void *buf, size_t n);"
      local b = ffi.new("char[1]")
      ffi.C.read(tonumber(ffi.cast("intptr_t", ud)), b, 1)
    end, fd)
  end,
  finish = pipe_finish,
})
kind("thread_spawn", 64, "RSS per idle Thread.spawn thread blocked on a channel", 300, {
  setup = function() return require("lj-async.sync").channel() end,
  make = function(ch) return require("lj-async.thread").spawn(function(c) return c:pop() end, ch) end,
  finish = function(objs, ch)
    for _ = 1, #objs do ch:push(1) end
    for _, t in ipairs(objs) do assert(t:join(30)); t:destroy() end
  end,
})
kind("pool_worker", 64, "RSS per idle pool worker (after one job moving numbers)", 100, {
  setup = function() return require "lj-async.pool" end,
  -- Workers are added in settle (the pool owns them); make only counts.
  make = function() return true end,
  settle = function(pool, n)
    pool.ensure.exactly(n)
    pool.define("double", function(x) return x * 2 end)
    local got = 0
    for i = 1, n * 4 do pool.call(function() got = got + 1 end, "double", i) end
    assert(pool.wait_all(60), "jobs did not finish")
    pool.update()
  end,
  finish = function(_, pool) pool.shutdown() end,
})

if arg[1] == "one" then
  local k = assert(kinds[arg[2]], arg[2])
  local ctx = k.setup()
  -- Warm: modules loaded, first objects made (their one-time costs are not per object).
  local warm = {}
  if k.settle then
    k.settle(ctx, 2)
  else
    for i = 1, 10 do warm[i] = k.make(ctx) end
  end
  full_gc()
  local before = rss_kib()
  local objs = {}
  if k.settle then
    k.settle(ctx, k.n + 2)
  else
    for i = 1, k.n do objs[i] = k.make(ctx) end
  end
  require("lj-async.thread").sleep(0.3)  -- threads reach their idle point
  full_gc()
  local kib = (rss_kib() - before) / k.n
  for i = 1, #warm do objs[#objs + 1] = warm[i] end
  k.finish(objs, ctx)
  io.write(("%.1f\n"):format(kib))
  return
end

local exe = arg[-1] or "luajit"
local report = require "bench.report"
print("memory per live object (RSS growth over N live ones after a full collection; each kind in a fresh process)")
print(("%-58s %5s %8s %8s %7s"):format("what", "N", "goal", "KiB", "ratio"))
for _, name in ipairs(order) do
  local k = kinds[name]
  local p = io.popen(("%s %s one %s"):format(exe, arg[0], name))
  local out = p:read("*a"); p:close()
  local kib = tonumber(out:match("^%s*([%d.]+)%s*$"))
  if kib and not k.goal then
    print(("%-58s %5d %8s %8.1f"):format(k.label, k.n, "", kib))
  elseif kib then
    print(("%-58s %5d %5d KiB %8.1f %6.2fx%s"):format(k.label, k.n, k.goal, kib, kib / k.goal, kib <= k.goal and "" or "  over"))
    report.row{ section = "memory", what = ("%s (N = %d)"):format(k.label, k.n), goal = ("<= %d KiB"):format(k.goal),
      figure = kib, unit = "KiB", reference = "its goal", ratio = kib / k.goal, met = kib <= k.goal, line = false }
  else
    print(("%-58s %5d %5d KiB   failed: %s"):format(k.label, k.n, k.goal, out))
    report.row{ section = "memory", what = ("%s (N = %d)"):format(k.label, k.n), goal = ("<= %d KiB"):format(k.goal),
      reference = "failed: " .. out, met = false, line = false }
  end
end
