-- Private: jobs of the pool in this state: its inbox, submission, job handles, and delivery
-- of results (update, wait, wait_all, await, fd). lj-async.pool assembles the API from this
-- and its surfaces (pool/love_api.lua, pool/luanti_api.lua, pool/settings.lua).
--
-- Every Lua state that requires the pool becomes an owner: it gets an inbox, and the callbacks
-- of its jobs run only in it, on its thread, inside update(), wait(), await() or shutdown().
-- Every function here runs on the thread that owns the calling state.
local ffi = require "ffi"
local C = require "lj-async.pool_abi"
local encoder = require "lj-async.encoder"

local decode_message = encoder.decode_message
local message_free, message_data = C.ljasync_message_free, C.ljasync_message_data
local submit_c, drain_c, wait_c = C.ljasync_pool_submit, C.ljasync_pool_drain, C.ljasync_pool_wait
local ffi_string, ffi_cast = ffi.string, ffi.cast
local type, tostring, error, pcall, select, setmetatable, getmetatable =
      type, tostring, error, pcall, select, setmetatable, getmetatable
local co_running, co_yield, co_resume, co_status = coroutine.running, coroutine.yield, coroutine.resume, coroutine.status
local huge, min = math.huge, math.min

local now = C.ljasync_pool_now  -- monotonic seconds (no libc declaration that could clash with the user's)
local TAG_PLAIN = C.LJASYNC_TAG_PLAIN
local u8p = ffi.typeof("const uint8_t *")

local J = { now = now }
local check = require "lj-async.pool.check"
local check_timeout = check.timeout

-- -- This state's inbox and bookkeeping --

-- Definition records ({ id, name, outstanding, dead, anon }) the engine stores for this state:
-- a record retired (dead) while jobs use it is undefined with its last job.
local stored = {}
J.stored = stored

function J.undefine_now(d)
  C.ljasync_pool_undefine(d.id)
  stored[d] = nil
end
local undefine_now = J.undefine_now

-- When this state goes (closed, or the module collected), nobody can take its results: its
-- queued jobs are dropped, its definitions forgotten; jobs already running finish and their
-- results are freed on arrival (failures reported on stderr). Results nobody took are said
-- once on stderr: a program that submits and ends without update() would otherwise lose them
-- without a word. The surfaces then withdraw what they registered process-wide (on_close).
local outstanding = 0        -- jobs of this state submitted and not yet delivered
local closers = {}
function J.on_close(f) closers[#closers + 1] = f end
local inbox = ffi.gc(C.ljasync_pool_inbox_new(), function(p)
  if outstanding > 0 then
    C.ljasync_pool_report(("pool: %d result%s never taken (call async.update() or async.wait())")
      :format(outstanding, outstanding == 1 and " was" or "s were"))
  end
  C.ljasync_pool_discard(p)
  for d in pairs(stored) do C.ljasync_pool_undefine(d.id) end
  for i = 1, #closers do closers[i]() end
  C.ljasync_pool_inbox_free(p)
end)
J.inbox = inbox
function J.outstanding() return outstanding end

local BATCH = 256
local batch = ffi.new("ljasync_pool_result[?]", BATCH)
local bpos, bn = 0, 0        -- results drained from the inbox and not yet delivered: batch[bpos..bn-1]
local pending = {}           -- job id -> job, from submission until delivery
-- Job ids are reused once delivered, so `pending` stays a dense array no larger than the
-- most jobs ever in flight (no rehashing, no fresh pages per batch of jobs).
local free_ids, nfree, high_id = {}, 0, 0
local lenbox = ffi.new("size_t[1]")

local function report(text)
  C.ljasync_pool_report(text)
end
J.report = report

-- configure{when_full, on_error} (pool/settings.lua): this state's own settings.
local full_timeout = -1      -- when_full: -1 block, 0 fail, > 0 block that long then fail
local on_error = nil         -- receives errors nobody else handles
function J.set_when_full(t) full_timeout = t end
function J.when_full() return full_timeout end
function J.set_on_error(f) on_error = f end
function J.on_error() return on_error end

-- -- Job handles --

--- A job handle: returned by call, define's functions and handle_async. Its array part holds
--- what every job needs (one allocation, no hash part): [ID], [CB] (the callback), [DEF] (the
--- definition record, or false) and [STATE] (false while pending); the rest is in its hash part
--- only for the jobs that need it: keep (awaited: results kept), results (pack(true, ...)),
--- error, waiters (coroutines awaiting it), orphan (in flight across a fork).
local ID, CB, DEF, STATE = 1, 2, 3, 4
local Job = {}
Job.__index = Job
J.Job = Job

-- The job leaves `pending`; a definition retired meanwhile is freed with its last job.
local function settle(job)
  local id = job[ID]
  pending[id] = nil
  nfree = nfree + 1
  free_ids[nfree] = id
  outstanding = outstanding - 1
  local d = job[DEF]
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
  job[STATE] = "done"
  local cb = job[CB]
  if job.keep or cb == nil then job.results = r end
  if cb ~= nil then
    if type(cb) == "function" or getmetatable(cb) ~= nil then  -- a function or a callable object
      call_with(cb, r)
    else
      local f = cb.success
      if f then call_with(f, r) end
    end
  end
  if job.waiters then wake(job) end
end

-- The values of a result in the plain format with at most three of them (nearly every
-- result), read from its frame (encoder/native.lua's plain_begin): -1 for any other.
local function small_count(msg)
  local p = ffi_cast(u8p, message_data(msg, lenbox))
  if lenbox[0] >= 6 and p[0] == TAG_PLAIN and p[1] <= 3 then return p[1] end
  return -1
end

-- succeed() for a job nobody awaits, with its callback `cb` (not nil) and its n <= 3 results.
local function succeed_small(job, cb, n, a, b, c)
  job[STATE] = "done"
  local f = cb
  if type(cb) ~= "function" and getmetatable(cb) == nil then  -- {success = f, error = g}
    f = cb.success
    if not f then return end
  end
  if n == 1 then f(a) elseif n == 0 then f() elseif n == 2 then f(a, b) else f(a, b, c) end
end

local function fail(job, text)
  job[STATE], job.error = "failed", text
  local cb = job[CB]
  local handled = job.keep
  if type(cb) == "table" and getmetatable(cb) == nil and cb.error then
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

local function by_id(a, b) return a[ID] < b[ID] end

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
J.check_fork = check_fork

local function label(job)
  local d = job[DEF]
  return d and not d.anon and ("job '%s'"):format(d.name) or "an anonymous job"
end

--- Removes the job if no worker has started it: true when removed (its callback never runs;
--- awaiting it gives false, "cancelled"), false when it started, finished or was cancelled.
function Job:cancel()
  if getmetatable(self) ~= Job then error("bad job: expected a job handle (use job:cancel())", 2) end
  check_fork()
  if self.orphan or self[STATE] or C.ljasync_pool_cancel(inbox, self[ID]) == 0 then return false end
  settle(self)
  self[STATE] = "cancelled"
  if self.waiters then wake(self) end
  return true
end

--- "pending" (queued or running), "done", "failed" or "cancelled".
function Job:status()
  if getmetatable(self) ~= Job then error("bad job: expected a job handle (use job:status())", 2) end
  return self[STATE] or "pending"
end

function Job:__tostring()
  return ("lj-async.pool job %d (%s)"):format(self[ID], self[STATE] or "pending")
end

-- -- Submission --

--- Queues a job whose message is built (`msg`, taken: freed here on refusal) for definition
--- record `d` (nil: the function is the message's first value); returns the handle, or nil,
--- "full". `level` is the surface function's caller.
function J.submit(d, cb, msg, level)
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
  local rc = submit_c(inbox, id, d and d.id or 0, msg, full_timeout)
  if rc ~= 0 then
    message_free(msg)
    nfree = nfree + 1
    free_ids[nfree] = id
    if rc == 1 then return nil, "full" end
    error("the pool refused the job", level + 1)
  end
  local job = setmetatable({ id, cb, d or false, false }, Job)
  pending[id] = job
  outstanding = outstanding + 1
  if d then d.outstanding = d.outstanding + 1 end
  return job
end

-- -- Delivery --

local function deliver(id, status, msg)
  local job = pending[id]
  if not job then  -- cannot happen: ids are this state's own
    if msg ~= nil then message_free(msg) end
    return report(("a result arrived for unknown job %s"):format(tostring(id)))
  end
  settle(job)
  if status == 0 then
    local cb = job[CB]
    local n = -1
    if cb ~= nil and not job.keep then n = small_count(msg) end
    if n >= 0 then  -- the usual result: no table of results, no vararg frame
      local ok, a, b, c = pcall(decode_message, msg)
      message_free(msg)
      if not ok then
        fail(job, ("%s succeeded, but its results cannot be decoded in the owning state: %s")
          :format(label(job), tostring(a)))
      else
        succeed_small(job, cb, n, a, b, c)
      end
      return
    end
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
  job[STATE] = "cancelled"
  if job.waiters then wake(job) end
end

-- Fails the parent's jobs (see check_fork), at most `limit`; returns how many. Failures
-- nobody handles are summed up in one line instead of one per job.
local function deliver_orphans(limit)
  local count, unhandled = 0, 0
  while orphans and count < limit do
    local job = orphans[orphan_at]
    orphan_at = orphan_at + 1
    if orphan_at > #orphans then orphans, orphan_at = nil, 1 end
    if not job[STATE] then
      settle(job)
      count = count + 1
      local text = ("%s was submitted before this process forked: it runs in the parent process, "
        .. "and its result goes there"):format(label(job))
      local cb = job[CB]
      if job.keep or on_error or (type(cb) == "table" and getmetatable(cb) == nil and cb.error) then
        fail(job, text)
      else
        job[STATE], job.error = "failed", text
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
local function update(max)
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
J.update = update

--- Blocks until results of this state's jobs wait (or `timeout` seconds pass), then delivers
--- them. Returns how many were delivered; 0 at once when no job is in flight; nil, "timeout".
local function wait(timeout)
  check_timeout(timeout, 2)
  local n = update()
  if n > 0 or outstanding == 0 then return n end
  if wait_c(inbox, timeout or -1, 0) == 0 then return nil, "timeout" end
  return update()
end
J.wait = wait

--- Delivers results until no job of this state is in flight. true, or nil, "timeout".
function J.wait_all(timeout)
  check_timeout(timeout, 2)
  local deadline = timeout and now() + timeout
  update()
  while outstanding > 0 do
    local left = deadline and deadline - now() or -1
    if deadline and left <= 0 then return nil, "timeout" end
    if wait_c(inbox, left, 0) ~= 0 then update() end
  end
  return true
end

local function outcome(job)
  local state = job[STATE]
  if state == "done" then
    local r = job.results
    if r then return unpack(r, 1, r.n) end  -- r[1] is true
    return true
  end
  if state == "failed" then return false, job.error end
  return false, "cancelled"
end

--- Waits for a job of this state. In a coroutine: yields until update()/wait() delivers it;
--- elsewhere: blocks, delivering other results meanwhile (`timeout` seconds at most).
--- Returns true and the results, false and the error text, false, "cancelled", or
--- nil, "timeout". A coroutine yields J.yielded (the pool's module table).
function J.await(job, timeout)
  if getmetatable(job) ~= Job then error("bad job: expected a job handle", 2) end
  check_timeout(timeout, 2)
  if not job[STATE] then
    job.keep = true
    local co, main = co_running()
    if co and not main then
      local w = job.waiters
      if not w then w = {}; job.waiters = w end
      w[#w + 1] = co
      repeat co_yield(J.yielded) until job[STATE]
    else
      local deadline = timeout and now() + timeout
      while not job[STATE] do
        local left = deadline and deadline - now() or nil
        if left and left <= 0 then return nil, "timeout" end
        wait(left)
      end
    end
  end
  return outcome(job)
end

--- A file descriptor readable while results of this state wait (an eventfd), for event loops
--- (luv, cqueues, epoll). Call update() when it is readable.
function J.fd()
  check_fork()
  local fd = C.ljasync_pool_inbox_fd(inbox)
  if fd < 0 then return nil, "no eventfd" end
  return fd
end

--- Waits for results or the end of the workers (`ljasync_pool_wait` with watch = 1): for shutdown.
function J.wait_stop(left)
  return wait_c(inbox, left, 1)
end

return J
