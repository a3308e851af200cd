-- lj-async.ngx: waiting for pool jobs and threads inside nginx (lua-nginx-module, OpenResty)
-- without blocking the worker's event loop.
--
-- An nginx worker process serves all its connections from one OS thread. async.wait(),
-- async.wait_all(), thread:join() without a timeout (and async.await outside a coroutine) block
-- that thread: every request, timer and connection of the worker stalls until the job ends.
-- These helpers poll instead: async.update() delivers what has arrived, then `sleep(interval)`
-- (ngx.sleep by default) hands the turn back to the event loop until the next look.
-- Callbacks delivered by update() run inside whichever request happened to call it: keep them
-- to storing results (call and run below do only that).
local async = require "lj-async.pool"
local now = require("lj-async.pool_abi").ljasync_pool_now  -- monotonic seconds

local type, error, select, tostring, getmetatable, unpack = type, error, select, tostring, getmetatable, unpack

local M = {
  interval = 0.001,  -- seconds between two looks; every look costs one update()
  sleep = nil,       -- function(seconds) that yields to the host's loop; nil: ngx.sleep
}

local function sleeper(level)
  local s = M.sleep
  if s then return s end
  local ngx = rawget(_G, "ngx")
  if type(ngx) == "table" and ngx.sleep then return ngx.sleep end
  error("lj-async.ngx: no ngx.sleep in this state (run inside nginx's Lua module, or set "
    .. "require('lj-async.ngx').sleep to a function that yields to your event loop)", level + 1)
end

local function deadline_of(timeout, level)
  if timeout == nil then return nil end
  if type(timeout) ~= "number" or not (timeout >= 0) then
    error(("bad timeout: expected seconds >= 0 or nil, got %s"):format(type(timeout) == "number" and tostring(timeout) or type(timeout)), level + 1)
  end
  return now() + timeout
end

local function wait_job(job, deadline, sleep)
  while job:status() == "pending" do
    async.update()
    if job:status() ~= "pending" then break end
    if deadline and now() >= deadline then return nil, "timeout" end
    sleep(M.interval)
  end
  return job:status()
end

--- Waits until the pool job of this state is delivered (its callback has run): returns its
--- status ("done", "failed" or "cancelled"), or nil, "timeout" after `timeout` seconds.
function M.await(job, timeout)
  if getmetatable(job) ~= async.Job then error("bad job: expected a pool job handle", 2) end
  local deadline = deadline_of(timeout, 2)
  return wait_job(job, deadline, sleeper(2))
end

local function pack(...) return { n = select("#", ...), ... } end

-- A callback table that keeps the outcome in `box.r` as pcall would return it.
local function collector()
  local box = {}
  return box, {
    success = function(...) box.r = pack(true, ...) end,
    error = function(msg) box.r = { n = 2, false, msg } end,
  }
end

local function strip(err) return (tostring(err):gsub("^[^\n]-:%d+: ", "")) end

local function finish(box, job, why, timeout, sleep)
  if not job then return nil, why end  -- a capped queue that says "full"
  local status, err = wait_job(job, timeout, sleep)
  if not status then return nil, err end
  if status == "cancelled" then return false, "cancelled" end
  local r = box.r
  return unpack(r, 1, r.n)
end

--- Calls the function defined as `name` (async.define) with the arguments and waits for it:
--- true and its results, false and the error text, or nil and "timeout"/"full".
function M.call(name, ...)
  local sleep = sleeper(2)
  local box, cb = collector()
  local ok, job, why = pcall(async.call, cb, name, ...)
  if not ok then error(strip(job), 2) end
  return finish(box, job, why, nil, sleep)
end

--- Runs `func(...)` in the pool (async.handle_async) and waits for it; returns as call does.
function M.run(func, ...)
  local sleep = sleeper(2)
  local box, cb = collector()
  local ok, job, why = pcall(async.handle_async, func, cb, ...)
  if not ok then error(strip(job), 2) end
  return finish(box, job, why, nil, sleep)
end

--- Waits for a thread (lj-async.thread) to end: returns what thread:join() returns (true, and
--- the results of a spawned function), or false after `timeout` seconds.
function M.join(thread, timeout)
  local Thread = require "lj-async.thread"
  if getmetatable(thread) ~= Thread.Handle then error("bad thread: expected a thread handle", 2) end
  local deadline = deadline_of(timeout, 2)
  local sleep = sleeper(2)
  while not thread:join(0) do
    if deadline and now() >= deadline then return false end
    sleep(M.interval)
  end
  return thread:join()
end

return M
