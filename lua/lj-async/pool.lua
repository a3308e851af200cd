-- lj-async.pool: one process-wide pool of worker threads, with the APIs of LÖVE's "async" and Luanti's async environment.
--
-- Every Lua state that requires this module becomes an owner: it gets an inbox, and the
-- callbacks of its jobs run only in it, on its thread, inside update(), wait(), await() or
-- shutdown(). The workers, the queue, definitions' storage, init files and the IPC store are
-- process-wide (Sources/LJAsync/Pool/). Values cross states through lj-async.encoder.
-- Every function here runs on the thread that owns the calling state.
local ffi = require "ffi"
local core = require "lj-async.core"
local C = require "lj-async.pool_abi"
local encoder = require "lj-async.encoder"
local host = require "lj-async.love"  -- LÖVE: the game's modules reach the workers (docs/love.md)

local try_encode_message, decode_message = encoder.try_encode_message, encoder.decode_message
local message_free, message_data = C.ljasync_message_free, C.ljasync_message_data
local submit_c, drain_c, wait_c = C.ljasync_pool_submit, C.ljasync_pool_drain, C.ljasync_pool_wait
local ffi_string = ffi.string
local type, tostring, error, pcall, select, setmetatable, getmetatable, tonumber =
      type, tostring, error, pcall, select, setmetatable, getmetatable, tonumber
local co_running, co_yield, co_resume, co_status = coroutine.running, coroutine.yield, coroutine.resume, coroutine.status
local floor, huge, min = math.floor, math.huge, math.min

local now = C.ljasync_pool_now  -- monotonic seconds (no libc declaration that could clash with the user's)

local M = {}

-- -- This state's inbox and bookkeeping --

local defs = {}              -- name -> definition record { id, name, outstanding, dead }
local stored = {}            -- definition record -> true while the engine stores it

-- When this state goes (closed, or the module collected), nobody can take its results: its
-- queued jobs are dropped, its definitions forgotten; jobs already running finish and their
-- results are freed on arrival (failures reported on stderr).
-- Results nobody took are said once on stderr: a program that submits and ends without
-- update() would otherwise lose them without a word.
local outstanding = 0        -- jobs of this state submitted and not yet delivered
-- What this state registered process-wide, withdrawn when it goes (an nginx reload closes the
-- master's Lua VM and makes a new one in the same process, which must not inherit them):
local my_inits = {}          -- indices of its init entries (async files, portable metatables)
local settings_before, settings_mine  -- the settings before its first configure, after its last
local SETTING_FIELDS = { "autoscale", "min_workers", "max_workers", "idle_timeout", "warn_after", "max_queued" }
local function withdraw()
  for i = 1, #my_inits do C.ljasync_pool_retire_init(my_inits[i]) end
  if settings_mine then  -- put back what it changed, unless another state changed it since
    local now_set = ffi.new("ljasync_pool_settings")
    C.ljasync_pool_get_settings(now_set)
    for _, k in ipairs(SETTING_FIELDS) do
      if now_set[k] ~= settings_mine[k] then return end
    end
    C.ljasync_pool_set_settings(settings_before, nil, 0)
  end
end
local inbox = ffi.gc(C.ljasync_pool_inbox_new(), function(p)
  if outstanding > 0 then
    C.ljasync_pool_report(("pool: %d result%s never taken (call async.update() or async.wait())")
      :format(outstanding, outstanding == 1 and " was" or "s were"))
  end
  C.ljasync_pool_discard(p)
  for d in pairs(stored) do C.ljasync_pool_undefine(d.id) end
  withdraw()
  C.ljasync_pool_inbox_free(p)
end)
local BATCH = 256
local batch = ffi.new("ljasync_pool_result[?]", BATCH)
local bpos, bn = 0, 0        -- results drained from the inbox and not yet delivered: batch[bpos..bn-1]
local pending = {}           -- job id -> job, from submission until delivery
-- Job ids are reused once delivered, so `pending` stays a dense array no larger than the
-- most jobs ever in flight (no rehashing, no fresh pages per batch of jobs).
local free_ids, nfree, high_id = {}, 0, 0
local full_timeout = -1      -- when_full: -1 block, 0 fail, > 0 block that long then fail
local lenbox = ffi.new("size_t[1]")
local settings = ffi.new("ljasync_pool_settings")
local errbuf, errbuf_size = core.errbuf, core.errbuf_size

local function report(text)
  C.ljasync_pool_report(text)
end
local on_error = nil         -- configure{on_error = f}: receives errors nobody else handles

local function check_count(n, what, level)
  if type(n) ~= "number" or n < 0 or n ~= floor(n) or n > 0x7fffffff then
    error(("bad %s: expected a whole number >= 0, got %s"):format(what, type(n) == "number" and tostring(n) or type(n)), level + 1)
  end
end

local function check_timeout(t, level)
  if t ~= nil and (type(t) ~= "number" or t < 0 or t ~= t) then
    error(("bad timeout: expected seconds >= 0 or nil, got %s"):format(type(t) == "number" and tostring(t) or type(t)), level + 1)
  end
end

-- -- Jobs --

--- A job handle: returned by call, define's functions and handle_async.
local Job = {}
Job.__index = Job

local function undefine_now(d)
  C.ljasync_pool_undefine(d.id)
  stored[d] = nil
end

-- The job leaves `pending`; a definition retired meanwhile is freed with its last job.
local function settle(job)
  local id = job.id
  pending[id] = nil
  nfree = nfree + 1
  free_ids[nfree] = id
  outstanding = outstanding - 1
  local d = job.def
  if d then
    d.outstanding = d.outstanding - 1
    if d.dead and d.outstanding == 0 then undefine_now(d) end
  end
end

-- Resumes coroutines awaiting the job; raises the first error one of them raised.
local function wake(job)
  local waiters = job.waiters
  if not waiters then return end
  job.waiters = nil
  local failure
  for i = 1, #waiters do
    local co = waiters[i]
    if co_status(co) == "suspended" then
      local ok, err = co_resume(co)
      if not ok and not failure then failure = debug.traceback(co, tostring(err)) end
    end
  end
  if failure then error(failure, 0) end
end

local function pack(...) return { n = select("#", ...), ... } end

-- Calls f with r[2..r.n]. Small counts are spelled out: unpack with a variable end does not
-- compile, and a vararg frame here is what this LuaJIT miscompiles (see succeed).
local function call_with(f, r)
  local n = r.n
  if n == 2 then return f(r[2]) end
  if n == 1 then return f() end
  if n == 3 then return f(r[2], r[3]) end
  if n == 4 then return f(r[2], r[3], r[4]) end
  return f(unpack(r, 2, n))
end

-- `r` is pack(true, results...). Results travel in a table, not as varargs: this LuaJIT
-- (2.1 2022, GC64) miscompiles vararg reads in side traces that start inside a vararg
-- function on this path (wrong branch taken at table resizes; LuaJIT issue #864 is related).
local function succeed(job, r)
  job.state = "done"
  local cb = job.cb
  if job.keep or cb == nil then job.results = r end
  if cb ~= nil then
    if type(cb) == "function" then
      call_with(cb, r)
    else
      local f = cb.success
      if f then call_with(f, r) end
    end
  end
  if job.waiters then wake(job) end
end

local function fail(job, text)
  job.state, job.error = "failed", text
  local cb = job.cb
  local handled = job.keep
  if type(cb) == "table" and cb.error then
    handled = true
    cb.error(text)
  end
  if not handled then
    if on_error then on_error(text) else report(text) end
  end
  if job.waiters then wake(job) end
end

-- -- fork() --

-- In a child of fork() the jobs this state had in flight run in the parent, and their results
-- go there (Sources/LJAsync/Pool/PoolFork.swift): the child's handles for them fail, once,
-- delivered by the next update() like any result.
local fork_generation = C.ljasync_fork_generation
local generation = fork_generation()
local orphans = nil          -- jobs of the parent, to fail in this child: orphans[orphan_at..]
local orphan_at = 1

local function by_id(a, b) return a.id < b.id end

local function after_fork()
  generation = fork_generation()
  for i = bpos, bn - 1 do  -- drained before the fork, not yet delivered: their jobs fail too
    if batch[i].msg ~= nil then message_free(batch[i].msg) end
  end
  bpos, bn = 0, 0
  local list = {}
  for i = orphan_at, orphans and #orphans or 0 do list[#list + 1] = orphans[i] end  -- a fork before they went
  for _, job in pairs(pending) do
    if not job.orphan then job.orphan = true; list[#list + 1] = job end
  end
  table.sort(list, by_id)
  orphans, orphan_at = #list > 0 and list or nil, 1
end

-- On every entry that touches the inbox or submits: one C call (kept tiny so it compiles).
local function check_fork()
  if fork_generation() ~= generation then after_fork() end
end

local function label(job)
  return job.def and ("job '%s'"):format(job.def.name) or "an anonymous job"
end

local function deliver(id, status, msg)
  local job = pending[id]
  if not job then  -- cannot happen: ids are this state's own
    if msg ~= nil then message_free(msg) end
    return report(("a result arrived for unknown job %s"):format(tostring(id)))
  end
  settle(job)
  if status == 0 then
    local r = pack(pcall(decode_message, msg))
    message_free(msg)
    if not r[1] then
      return fail(job, ("%s succeeded, but its results cannot be decoded in the owning state: %s")
        :format(label(job), tostring(r[2])))
    end
    return succeed(job, r)
  elseif status == 1 then
    local text = ffi_string(C.ljasync_failure_text(msg, lenbox), lenbox[0])
    message_free(msg)
    return fail(job, text)
  end
  job.state = "cancelled"
  if job.waiters then wake(job) end
end

--- Removes the job if no worker has started it: true when removed (its callback never runs;
--- awaiting it gives false, "cancelled"), false when it started, finished or was cancelled.
function Job:cancel()
  if getmetatable(self) ~= Job then error("bad job: expected a job handle (use job:cancel())", 2) end
  check_fork()
  if self.orphan or self.state or C.ljasync_pool_cancel(inbox, self.id) == 0 then return false end
  settle(self)
  self.state = "cancelled"
  if self.waiters then wake(self) end
  return true
end

--- "pending" (queued or running), "done", "failed" or "cancelled".
function Job:status()
  if getmetatable(self) ~= Job then error("bad job: expected a job handle (use job:status())", 2) end
  return self.state or "pending"
end

function Job:__tostring()
  return ("lj-async.pool job %d (%s)"):format(self.id, self.state or "pending")
end

local function check_callback(cb, level)
  local t = type(cb)
  if t == "function" or cb == nil then return end
  if t == "table" and getmetatable(cb) == nil then
    if cb.success ~= nil and type(cb.success) ~= "function" then
      error("bad callback: field 'success' must be a function", level + 1)
    end
    if cb.error ~= nil and type(cb.error) ~= "function" then
      error("bad callback: field 'error' must be a function", level + 1)
    end
    return
  end
  if t == "table" then return end  -- a callable object: called like a function
  error(("bad callback: expected a function, a table {success = f, error = g} or nil, got %s"):format(t), level + 1)
end

-- Queues a job whose message is built; returns the handle, or nil, "full".
local function submit(d, def_id, cb, msg)
  check_fork()
  local id
  if nfree > 0 then
    id = free_ids[nfree]
    free_ids[nfree] = nil
    nfree = nfree - 1
  else
    id = high_id + 1
    high_id = id
  end
  local rc = submit_c(inbox, id, def_id, msg, full_timeout)
  if rc ~= 0 then
    message_free(msg)
    nfree = nfree + 1
    free_ids[nfree] = id
    if rc == 1 then return nil, "full" end
    error("the pool refused the job", 3)
  end
  local job = setmetatable({ id = id, cb = cb, def = d }, Job)
  pending[id] = job
  outstanding = outstanding + 1
  if d then d.outstanding = d.outstanding + 1 end
  return job
end

local function call(level, cb, name, ...)
  local d = defs[name]
  if not d then
    if type(name) ~= "string" then
      error(("bad name: expected a string, got %s"):format(type(name)), level + 1)
    end
    error(("bad name: no function '%s' is defined in this state (use async.define)"):format(name), level + 1)
  end
  check_callback(cb, level + 1)
  local msg, err = try_encode_message(...)
  if not msg then error(("bad arguments to '%s': %s"):format(name, err), level + 1) end
  return submit(d, d.id, cb, msg)
end

-- -- LÖVE "async" API --

--- Queues a call of the function defined as `name` with the arguments. The callback (a
--- function called with the results, or {success = f, error = g}) runs in this state.
--- Returns the job handle, or nil, "full" when the queue is capped and when_full says so.
function M.call(callback, name, ...)
  return call(2, callback, name, ...)
end

--- Makes `func` (bytecode, upvalues copied by value) callable by name in this state; returns
--- function(callback, ...) that calls it. Redefining a name lets jobs already queued run the
--- old function.
function M.define(name, func)
  if type(name) ~= "string" then error(("bad name: expected a string, got %s"):format(type(name)), 2) end
  if type(func) ~= "function" then error(("bad function for '%s': expected a function, got %s"):format(name, type(func)), 2) end
  local msg, err = try_encode_message(func)
  if not msg then error(("cannot define '%s': %s"):format(name, err), 2) end
  local old = defs[name]
  if old then
    old.dead = true
    if old.outstanding == 0 then undefine_now(old) end
  end
  local d = { id = C.ljasync_pool_define(name, msg), name = name, outstanding = 0 }
  defs[name], stored[d] = d, true
  return function(callback, ...) return call(2, callback, name, ...) end
end

--- Forgets the definition. Jobs already queued still run it. Returns whether it existed.
function M.undefine(name)
  local d = defs[name]
  if not d then return false end
  defs[name] = nil
  d.dead = true
  if d.outstanding == 0 then undefine_now(d) end
  return true
end

--- Starts workers: at least n (default 1). Turns autoscaling off.
function M.load(n)
  if n == nil then n = 1 end
  check_count(n, "worker count", 2)
  C.ljasync_pool_ensure(n, 0x7fffffff, 1)
end

--- Live workers, counted at once (starting ones in, stopping ones out).
function M.getWorkerCount()
  return C.ljasync_pool_workers()
end

--- Adds one worker (autoscaling off).
function M.addWorker()
  C.ljasync_pool_add(1)
end

--- Stops `amount` workers once they finish their current job and the jobs queued before this
--- call; workers added later are never affected. Autoscaling off.
function M.stopWorkers(amount)
  check_count(amount, "amount", 2)
  C.ljasync_pool_stop(amount)
end

local ensure = {}
--- Exactly n live workers (adds or stops the difference at once). Chainable.
function ensure.exactly(n)
  check_count(n, "worker count", 2)
  C.ljasync_pool_ensure(n, n, 1)
  return ensure
end
function ensure.atLeast(n)
  check_count(n, "worker count", 2)
  C.ljasync_pool_ensure(n, 0x7fffffff, 1)
  return ensure
end
function ensure.atMost(n)
  check_count(n, "worker count", 2)
  C.ljasync_pool_ensure(0, n, 1)
  return ensure
end
M.ensure = ensure

-- -- Results --

-- Fails the parent's jobs (see check_fork), at most `limit`; returns how many. Failures
-- nobody handles are summed up in one line instead of one per job.
local function deliver_orphans(limit)
  local count, unhandled = 0, 0
  while orphans and count < limit do
    local job = orphans[orphan_at]
    orphan_at = orphan_at + 1
    if orphan_at > #orphans then orphans, orphan_at = nil, 1 end
    if not job.state then
      settle(job)
      count = count + 1
      local text = ("%s was submitted before this process forked: it runs in the parent process, "
        .. "and its result goes there"):format(label(job))
      local cb = job.cb
      if job.keep or on_error or (type(cb) == "table" and cb.error) then
        fail(job, text)
      else
        job.state, job.error = "failed", text
        unhandled = unhandled + 1
        if job.waiters then wake(job) end
      end
    end
  end
  if unhandled > 0 then
    report(("pool: %d job%s submitted before this process forked run%s in the parent process; here %s failed")
      :format(unhandled, unhandled == 1 and "" or "s", unhandled == 1 and "s" or "", unhandled == 1 and "it" or "they"))
  end
  return count
end

--- Runs the callbacks of finished jobs of this state: all waiting, or at most `max`.
--- Returns how many results were delivered.
function M.update(max)
  if max ~= nil and (type(max) ~= "number" or not (max >= 0)) then
    error(("bad budget: expected a number of results >= 0, got %s"):format(type(max) == "number" and tostring(max) or type(max)), 2)
  end
  local limit = max or huge
  local count = 0
  check_fork()
  if orphans then count = deliver_orphans(limit) end
  while count < limit do
    if bpos >= bn then
      bpos, bn = 0, drain_c(inbox, batch, min(BATCH, limit - count))
      if bn == 0 then break end
    end
    local r = batch[bpos]
    bpos = bpos + 1
    count = count + 1
    deliver(r.id, r.status, r.msg)
  end
  return count
end

--- Blocks until results of this state's jobs wait (or `timeout` seconds pass), then delivers
--- them. Returns how many were delivered; 0 at once when no job is in flight; nil, "timeout".
function M.wait(timeout)
  check_timeout(timeout, 2)
  local n = M.update()
  if n > 0 or outstanding == 0 then return n end
  if wait_c(inbox, timeout or -1, 0) == 0 then return nil, "timeout" end
  return M.update()
end

--- Delivers results until no job of this state is in flight. true, or nil, "timeout".
function M.wait_all(timeout)
  check_timeout(timeout, 2)
  local deadline = timeout and now() + timeout
  M.update()
  while outstanding > 0 do
    local left = deadline and deadline - now() or -1
    if deadline and left <= 0 then return nil, "timeout" end
    if wait_c(inbox, left, 0) ~= 0 then M.update() end
  end
  return true
end

local function outcome(job)
  if job.state == "done" then
    local r = job.results
    if r then return unpack(r, 1, r.n) end  -- r[1] is true
    return true
  end
  if job.state == "failed" then return false, job.error end
  return false, "cancelled"
end

--- Waits for a job of this state. In a coroutine: yields until update()/wait() delivers it;
--- elsewhere: blocks, delivering other results meanwhile (`timeout` seconds at most).
--- Returns true and the results, false and the error text, false, "cancelled", or
--- nil, "timeout".
function M.await(job, timeout)
  if getmetatable(job) ~= Job then error("bad job: expected a job handle", 2) end
  check_timeout(timeout, 2)
  if not job.state then
    job.keep = true
    local co, main = co_running()
    if co and not main then
      local w = job.waiters
      if not w then w = {}; job.waiters = w end
      w[#w + 1] = co
      repeat co_yield(M) until job.state
    else
      local deadline = timeout and now() + timeout
      while not job.state do
        local left = deadline and deadline - now() or nil
        if left and left <= 0 then return nil, "timeout" end
        M.wait(left)
      end
    end
  end
  return outcome(job)
end

--- A file descriptor readable while results of this state wait (an eventfd), for event loops
--- (luv, cqueues, epoll). Call update() when it is readable.
function M.fd()
  check_fork()
  local fd = C.ljasync_pool_inbox_fd(inbox)
  if fd < 0 then return nil, "no eventfd" end
  return fd
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
  if mode == "discard" then C.ljasync_pool_discard(inbox) end
  C.ljasync_pool_shutdown()
  local deadline = timeout and now() + timeout
  local done_ok, reason = true, nil
  while true do
    M.update()
    local left = deadline and deadline - now() or -1
    if deadline and left <= 0 then done_ok, reason = nil, "timeout"; break end
    if wait_c(inbox, left, 1) == 2 then M.update(); break end
  end
  C.ljasync_pool_get_settings(settings)
  settings.autoscale = 1
  C.ljasync_pool_set_settings(settings, errbuf, errbuf_size)
  return done_ok, reason
end

-- -- Luanti's async environment API --

--- Queues `func` (bytecode, upvalues copied by value) with the arguments; `callback` gets the
--- results in this state. Returns the job handle (with cancel()), or nil, "full".
function M.handle_async(func, callback, ...)
  if type(func) ~= "function" then error(("bad function: expected a function, got %s"):format(type(func)), 2) end
  check_callback(callback, 2)
  local msg, err = try_encode_message(func, ...)
  if not msg then error("bad job: " .. err, 2) end
  return submit(nil, 0, callback, msg)
end

--- Runs the Lua file at `path` in every worker, present (before its next job) and future.
--- The file is read now; syntax errors are raised here.
function M.register_async_dofile(path)
  if type(path) ~= "string" then error(("bad path: expected a string, got %s"):format(type(path)), 2) end
  local src, chunkname = host.read(path)  -- in LÖVE, a love.filesystem path first
  if not src then error("cannot register async file: " .. tostring(chunkname), 2) end
  local ok, perr = loadstring(src, chunkname)
  if not ok then error("bad async file: " .. tostring(perr), 2) end
  my_inits[#my_inits + 1] = C.ljasync_pool_add_init(0, chunkname, src, #src) - 1
end

local kept_messages = {}

--- Tables with metatable `mt` keep it when they cross to a state that registered `name`.
--- Registers here and, when `mt` can be encoded, in every worker present and future
--- (returns true); otherwise returns false and the reason (register it in an async file).
function M.register_portable_metatable(name, mt)
  local ok, err = pcall(encoder.register_portable_metatable, name, mt)
  if not ok then error(tostring(err):gsub("^[^\n]-:%d+: ", ""), 2) end
  local msg, why = try_encode_message(name, mt)
  if not msg then return false, why end
  local n = message_data(msg, lenbox)
  my_inits[#my_inits + 1] = C.ljasync_pool_add_init(1, name, n, lenbox[0]) - 1
  -- Kept for the life of the process, like the init entry that lists its bytes: the message
  -- owns the references of any shared handle in the metatable.
  kept_messages[#kept_messages + 1] = msg
  return true
end

local function check_key(key, level)
  if type(key) ~= "string" then error(("bad key: expected a string, got %s"):format(type(key)), level + 1) end
end

local function encode_value(v, what, level)
  if v == nil then return nil end
  local msg, err = try_encode_message(v)
  if not msg then error(("bad %s: %s"):format(what, err), level + 1) end
  return msg
end

--- Stores a copy of `value` under `key`, shared by all states (nil deletes).
function M.ipc_set(key, value)
  check_key(key, 2)
  C.ljasync_pool_ipc_set(key, #key, encode_value(value, "value", 2))
end

local function got(m, ok, ...)
  message_free(m)
  if not ok then error(...) end
  return ...
end

--- A copy of the value under `key`, or nil.
function M.ipc_get(key)
  check_key(key, 2)
  local m = C.ljasync_pool_ipc_get(key, #key)
  if m == nil then return nil end
  return got(m, pcall(decode_message, m))
end

--- Sets `key` to `new` only if its value now equals `old` (nil = absent; equality of the
--- encodings). Returns true when it did.
function M.ipc_cas(key, old, new)
  check_key(key, 2)
  local om = encode_value(old, "old value", 2)
  local nm = encode_value(new, "new value", 2)
  local ok = C.ljasync_pool_ipc_cas(key, #key, om, nm) == 1
  if om ~= nil then message_free(om) end
  if not ok and nm ~= nil then message_free(nm) end
  return ok
end

--- Waits until `key` holds a value: true, or false after `timeout` seconds (nil: no limit).
--- Note: Luanti counts this timeout in milliseconds; lj-async counts every timeout in seconds.
function M.ipc_poll(key, timeout)
  check_key(key, 2)
  check_timeout(timeout, 2)
  return C.ljasync_pool_ipc_poll(key, #key, timeout or -1) == 1
end

-- -- Settings and statistics --

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
      if wf == "block" then full_timeout = -1
      elseif wf == "fail" then full_timeout = 0
      elseif type(wf) == "number" and wf >= 0 then full_timeout = wf
      else error("bad option 'when_full': expected \"block\", \"fail\" or seconds", 2) end
    end
    if opts.on_error ~= nil then
      if type(opts.on_error) ~= "function" then error("bad option 'on_error': expected a function", 2) end
      on_error = opts.on_error
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
  return {
    autoscale = settings.autoscale ~= 0, min_workers = settings.min_workers, max_workers = settings.max_workers,
    idle_timeout = settings.idle_timeout, warn_after = settings.warn_after, max_queued = tonumber(settings.max_queued),
    when_full = full_timeout < 0 and "block" or full_timeout == 0 and "fail" or full_timeout,
    on_error = on_error,
  }
end

local statbuf = ffi.new("int64_t[8]")

--- Process-wide counts (queued, running, done, failed, cancelled, workers, stopping, idle)
--- and this state's jobs in flight (outstanding).
function M.stats()
  C.ljasync_pool_stats(statbuf)
  return {
    queued = tonumber(statbuf[0]), running = tonumber(statbuf[1]), done = tonumber(statbuf[2]),
    failed = tonumber(statbuf[3]), cancelled = tonumber(statbuf[4]), workers = tonumber(statbuf[5]),
    stopping = tonumber(statbuf[6]), idle = tonumber(statbuf[7]), outstanding = outstanding,
  }
end

--- The number of CPUs online (autoscaling's default maximum).
function M.cpu_count()
  return C.ljasync_pool_cpu_count()
end

--- Makes module `name` reachable by `require` in workers (for modules they cannot find
--- themselves, such as a LÖVE game's files inside its .love; see docs/love.md).
M.provide = host.provide

M.Job = Job
return M
