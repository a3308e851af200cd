-- Private: the loop a pool worker runs in its own Lua state (the engine requires this module there).
-- Every function here runs on the worker's thread. Globals a job sets stay in this state and
-- are seen by later jobs on the same worker (as in Luanti's async environment).
local ffi = require "ffi"
-- The header's worker section alone (lj-async.pool_abi declares the pool's host side too).
local core = require "lj-async.core"
core.declare "pool_worker"
local C = core.C
-- Jobs moving plain values never load the whole encoder (encoder/plain.lua requires it for the rest).
local plain = require "lj-async.encoder.plain"

local encode_message, decode_message = plain.encode_message, plain.decode_message
local message_new, message_free = C.ljasync_message_new, C.ljasync_message_free
local step, report = C.ljasync_pool_step, C.ljasync_pool_report
local ffi_string = ffi.string
local xpcall, pcall, type, tostring, error, loadstring, select, unpack =
      xpcall, pcall, type, tostring, error, loadstring, select, unpack
local traceback, getinfo = debug.traceback, debug.getinfo

-- -- Running one job --

local current_fn  -- the function of the anonymous job running now (its origin names errors)

local function handler(e)
  if type(e) ~= "string" then
    local mt = getmetatable(e)
    e = mt and mt.__tostring and tostring(e) or ("(error object is a %s value)"):format(type(e))
  end
  -- The frames below the job (this loop, xpcall) tell the reader nothing.
  return (traceback(e, 2):gsub("\n[^\n]*pool_worker%.lua:.*$", ""))
end

local function pack(...) return { n = select("#", ...), ... } end

-- No tail calls below: a trace cannot return through a tail-called frame into the loop
-- ("NYI: return to lower frame"), and the worker loop must compile. No vararg function
-- with guards either: this LuaJIT (2.1 2022, GC64) can misread varargs in side traces
-- that start inside one (LuaJIT issue #864); pack() has none.
local function run_anonymous(msg)
  local r = pack(decode_message(msg))
  local f = r[1]
  if type(f) ~= "function" then error("the job's function arrived as a " .. type(f), 0) end
  current_fn = f
  local m = encode_message(f(unpack(r, 2, r.n)))
  return m
end

local function run_defined(f, msg)
  local m = encode_message(f(decode_message(msg)))
  return m
end

local function origin(f)
  if not f then return "an anonymous job" end
  local info = getinfo(f, "S")
  return ("the job function defined at %s:%d"):format(info.short_src, info.linedefined)
end

-- A failure travels in the core's one failure encoding (Sources/LJAsync/Value/Failure.swift).
local function failure(text)
  return C.ljasync_failure_new(text, #text)
end

-- -- Definitions (cached by id; ids are never reused) --

local defs, ndefs = {}, 0
local namebuf = ffi.new("char[?]", 512)

-- The mark of an anonymous definition: a function without upvalues that handle_async stored
-- once (lj-async/pool/luanti_api.lua); its jobs are labelled by where the function is defined.
local ANON = "lj-async.pool anonymous"

local function definition(id)
  local m = C.ljasync_pool_definition(id, namebuf, 512)
  if m == nil then return nil end
  local d = { name = ffi_string(namebuf) }
  local ok, f, mark = pcall(decode_message, m)
  message_free(m)
  if ok and mark == ANON then d.anon = true end
  if not ok then
    d.err = ("cannot load the definition of '%s' here: %s"):format(d.name, tostring(f))
  elseif type(f) ~= "function" then
    d.err = ("the definition of '%s' arrived as a %s"):format(d.name, type(f))
  else
    d.fn = f
  end
  if ndefs >= 256 then defs, ndefs = {}, 0 end  -- bounded: definitions may come and go
  defs[id], ndefs = d, ndefs + 1
  return d
end

-- -- Init code (register_async_dofile, portable metatables), in registration order --

local ninits = 0
local kindbox, lenbox, namebox = ffi.new("int32_t[1]"), ffi.new("size_t[1]"), ffi.new("const char *[1]")
local mtbox = ffi.new("ljasync_message *[1]")

-- Runs the entries up to `upto` (nil: every one registered so far). Returns the reason the
-- first failing one gives: a worker whose init code fails does not run jobs.
local function load_inits(upto)
  while upto == nil or ninits < upto do
    local p = C.ljasync_pool_init(ninits, kindbox, lenbox, namebox, mtbox)
    if p == nil then return nil end
    ninits = ninits + 1
    local name = ffi_string(namebox[0])
    if kindbox[0] == -1 then
      -- retired: the state that registered it has closed
    elseif kindbox[0] == 0 then
      local chunk, err = loadstring(ffi_string(p, lenbox[0]), name)
      local ok = chunk ~= nil
      if ok then ok, err = xpcall(chunk, handler) end
      if not ok then return ("async file %s failed: %s"):format(name:gsub("^@", ""), tostring(err)) end
    else
      -- A copy of the registered message, ours to free (the entry may be withdrawn meanwhile).
      local m = mtbox[0]
      local ok, err = pcall(function()
        local encoder = require "lj-async.encoder"
        encoder.register_portable_metatable(encoder.decode_message(m))
      end)
      message_free(m)
      if not ok then return ("portable metatable '%s' cannot be registered: %s"):format(name, tostring(err)) end
    end
  end
  return nil
end

-- -- The loop --

-- A light worker's job that ran and returned values only the encoder takes (`r`, with r.n):
-- encoded here as run_defined does, reported and handed back as the loop does.
local function encode_results(r)
  local m = encode_message(unpack(r, 1, r.n))
  return m
end

local function finish_light(w, job, r)
  local d = defs[job.def] or definition(job.def)
  if not d or not d.fn then return step(w, nil, 3, job) end  -- withdrawn meanwhile: its owner takes nothing
  current_fn = d.fn
  local ok, res = xpcall(encode_results, handler, r)
  local label = d.anon and origin(current_fn) or ("job '%s'"):format(d.name)
  if job.late ~= 0 then
    report(("%s waited %.1f s in the queue before a worker took it"):format(label, job.waited))
  end
  if ok then return step(w, res, 0, job) end
  return step(w, failure(("%s failed: %s"):format(label, tostring(res))), 1, job)
end

-- A light worker's hand-over (Sources/CLJAsyncLua/light_worker.c): `taken` the address of
-- the job it took (or false: none yet), `results` that job's results when it ran (else false),
-- `done` the init entries it ran, `bad` the failure of the one it could not run. No vararg
-- parameter: the loop below must compile as before (see run_anonymous).
return function(address, taken, results, done, bad)
  local w = ffi.cast("ljasync_pool_worker *", address)
  local job = ffi.new("ljasync_pool_job")
  local more = 1
  ninits = done or 0
  if taken then
    -- Init code the job needs is run in the loop (job.inits); a failure gives the job back.
    ffi.copy(job, ffi.cast("ljasync_pool_job *", taken), ffi.sizeof(job))
    if bad then
      step(w, nil, 2, job)  -- as in the loop below
      error(bad, 0)
    end
    if results then more = finish_light(w, job, results) end
  else
    -- Ready before the first step: a failure here is a failed start (Sources/LJAsync/Pool/PoolThread.swift).
    bad = bad or load_inits(nil)
    if bad then error(bad, 0) end
    -- The result goes back at the end of its own iteration: a message pointer carried over to
    -- the next one would be a boxed cdata allocated per job (a loop-carried value is not sunk).
    more = step(w, nil, 0, job)
  end
  while more ~= 0 do
    if job.inits > ninits then
      local bad = load_inits(job.inits)
      if bad then
        step(w, nil, 2, job)  -- gives the job back; the worker leaves as one that cannot start
        error(bad, 0)
      end
    end
    local def, msg = job.def, job.msg
    local ok, res, label
    if def == 0 then
      current_fn = nil
      ok, res = xpcall(run_anonymous, handler, msg)
      if not ok then label = origin(current_fn) end
    else
      local d = defs[def] or definition(def)
      if not d then
        -- Withdrawn: a definition outlives its jobs unless its owner closed, who takes no
        -- result (and said how many it left): the job is dropped unstarted, as queued ones are.
        more = step(w, nil, 3, job)
        goto continue
      elseif d.fn then
        current_fn = d.fn
        ok, res = xpcall(run_defined, handler, d.fn, msg)
      else
        current_fn = nil
        ok, res = false, d.err
      end
      if not ok or job.late ~= 0 then
        label = d.anon and origin(current_fn) or ("job '%s'"):format(d.name)
      end
    end
    if job.late ~= 0 then
      report(("%s waited %.1f s in the queue before a worker took it"):format(
        label or origin(current_fn), job.waited))
    end
    if ok then
      more = step(w, res, 0, job)
    else
      more = step(w, failure(("%s failed: %s"):format(label, tostring(res))), 1, job)
    end
    ::continue::
  end
end
