-- Private: the pool's settings and life: configure, shutdown, stats, cpu_count. Worker
-- counts, autoscaling and the queue cap are process-wide (Sources/LJAsync/Pool/); when_full and
-- on_error are this state's (pool/jobs.lua keeps them). Every function here runs on the thread
-- that owns the calling state.
local ffi = require "ffi"
local core = require "lj-async.core"
local C = require "lj-async.pool_abi"
local jobs = require "lj-async.pool.jobs"
local check = require "lj-async.pool.check"

local check_count, check_timeout = check.count, check.timeout
local now, update = jobs.now, jobs.update
local ffi_string = ffi.string
local type, tostring, error, ipairs, tonumber = type, tostring, error, ipairs, tonumber

local M = {}

local settings = ffi.new("ljasync_pool_settings")
local errbuf, errbuf_size = core.errbuf, core.errbuf_size

-- What this state changed process-wide is put back when it goes (an nginx reload closes the
-- master's Lua VM and makes a new one in the same process, which must not inherit it):
local settings_before, settings_mine  -- the settings before its first configure, after its last
local SETTING_FIELDS = { "autoscale", "min_workers", "max_workers", "idle_timeout", "warn_after", "max_queued" }
jobs.on_close(function()
  if settings_mine then  -- unless another state changed them since
    local now_set = ffi.new("ljasync_pool_settings")
    C.ljasync_pool_get_settings(now_set)
    for _, k in ipairs(SETTING_FIELDS) do
      if now_set[k] ~= settings_mine[k] then return end
    end
    C.ljasync_pool_set_settings(settings_before, nil, 0)
  end
end)

local CONFIGURE_OPTIONS = { "autoscale", "idle_timeout", "max_queued", "max_workers", "min_workers",
                            "on_error", "warn_after", "when_full" }

--- Changes settings (fields left out keep their values) and returns the current ones.
--- Process-wide: autoscale (boolean), min_workers, max_workers, idle_timeout (s),
--- warn_after (s a job may wait in the queue before a warning; 0 = never), max_queued (0 = no cap).
--- This state only: when_full ("block", "fail" or seconds to block before failing),
--- on_error (function(text) for job errors no callback takes; nil = stderr).
function M.configure(opts)
  if opts ~= nil and type(opts) ~= "table" then error("bad options: expected a table or nil", 2) end
  C.ljasync_pool_get_settings(settings)
  if opts then
    core.check_options(opts, CONFIGURE_OPTIONS, 2)
    if opts.autoscale ~= nil then
      if type(opts.autoscale) ~= "boolean" then error("bad option 'autoscale': expected a boolean", 2) end
      settings.autoscale = opts.autoscale and 1 or 0
    end
    for _, k in ipairs { "min_workers", "max_workers", "max_queued" } do
      if opts[k] ~= nil then check_count(opts[k], "option '" .. k .. "'", 2); settings[k] = opts[k] end
    end
    for _, k in ipairs { "idle_timeout", "warn_after" } do
      local v = opts[k]
      if v ~= nil then
        if type(v) ~= "number" or not (v >= 0) then error(("bad option '%s': expected seconds >= 0"):format(k), 2) end
        settings[k] = v
      end
    end
    local wf = opts.when_full
    if wf ~= nil then
      if wf == "block" then jobs.set_when_full(-1)
      elseif wf == "fail" then jobs.set_when_full(0)
      elseif type(wf) == "number" and wf >= 0 then jobs.set_when_full(wf)
      else error("bad option 'when_full': expected \"block\", \"fail\" or seconds", 2) end
    end
    if opts.on_error ~= nil then
      if type(opts.on_error) ~= "function" then error("bad option 'on_error': expected a function", 2) end
      jobs.set_on_error(opts.on_error)
    end
    local before = ffi.new("ljasync_pool_settings")
    C.ljasync_pool_get_settings(before)
    if C.ljasync_pool_set_settings(settings, errbuf, errbuf_size) ~= 0 then
      error("bad options: " .. ffi_string(errbuf), 2)
    end
    settings_before = settings_before or before
    settings_mine = settings_mine or ffi.new("ljasync_pool_settings")
    C.ljasync_pool_get_settings(settings_mine)
  end
  local full_timeout = jobs.when_full()
  return {
    autoscale = settings.autoscale ~= 0, min_workers = settings.min_workers, max_workers = settings.max_workers,
    idle_timeout = settings.idle_timeout, warn_after = settings.warn_after, max_queued = tonumber(settings.max_queued),
    when_full = full_timeout < 0 and "block" or full_timeout == 0 and "fail" or full_timeout,
    on_error = jobs.on_error(),
  }
end

local SHUTDOWN_OPTIONS = { "mode", "timeout" }

--- Stops every worker of the process. mode "drain" (default): jobs queued before now still
--- run, and this state's callbacks are delivered before it returns; "discard": this state's
--- queued jobs are dropped first (awaiting them gives "cancelled"). `timeout` bounds the wait:
--- true, or nil, "timeout" (the workers then still finish, and their results come by update()).
--- Afterwards the pool is as at start: no workers, autoscaling on (a new job starts workers).
function M.shutdown(opts)
  if opts ~= nil and type(opts) ~= "table" then error("bad options: expected a table or nil", 2) end
  if opts then core.check_options(opts, SHUTDOWN_OPTIONS, 2) end
  local mode = opts and opts.mode or "drain"
  if mode ~= "drain" and mode ~= "discard" then
    error(("bad option 'mode': expected \"drain\" or \"discard\", got %s"):format(tostring(mode)), 2)
  end
  local timeout = opts and opts.timeout
  check_timeout(timeout, 2)
  if mode == "discard" then C.ljasync_pool_discard(jobs.inbox) end
  C.ljasync_pool_shutdown()
  local deadline = timeout and now() + timeout
  local done_ok, reason = true, nil
  while true do
    update()
    local left = deadline and deadline - now() or -1
    if deadline and left <= 0 then done_ok, reason = nil, "timeout"; break end
    if jobs.wait_stop(left) == 2 then update(); break end
  end
  C.ljasync_pool_get_settings(settings)
  settings.autoscale = 1
  C.ljasync_pool_set_settings(settings, errbuf, errbuf_size)
  return done_ok, reason
end

local statbuf = ffi.new("int64_t[8]")

--- Process-wide counts (queued, running, done, failed, cancelled, workers, stopping, idle)
--- and this state's jobs in flight (outstanding).
function M.stats()
  C.ljasync_pool_stats(statbuf)
  return {
    queued = tonumber(statbuf[0]), running = tonumber(statbuf[1]), done = tonumber(statbuf[2]),
    failed = tonumber(statbuf[3]), cancelled = tonumber(statbuf[4]), workers = tonumber(statbuf[5]),
    stopping = tonumber(statbuf[6]), idle = tonumber(statbuf[7]), outstanding = jobs.outstanding(),
  }
end

--- The CPUs this process may run on, its affinity mask (autoscaling's default maximum).
function M.cpu_count()
  return C.ljasync_pool_cpu_count()
end

return M
