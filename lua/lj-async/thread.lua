-- lj-async.thread: OS threads, each running one Lua function in a fresh Lua state of its own.
local ffi = require "ffi"
local core = require "lj-async.core"
core.declare "thread"
if package.loaded["love.filesystem"] then require "lj-async.love" end  -- LÖVE: game modules for new states (docs/love.md)

local C = core.C
local errbuf, errbuf_size = core.errbuf, core.errbuf_size
local ffi_string, ffi_cast, ffi_gc = ffi.string, ffi.cast, ffi.gc
local type, tostring, error, pcall, select, unpack = type, tostring, error, pcall, select, unpack
local setmetatable, getmetatable, tonumber, string_dump = setmetatable, getmetatable, tonumber, string.dump

local C_join, C_status, C_flag = C.ljasync_thread_join, C.ljasync_thread_status, C.ljasync_thread_flag
local C_sleep, C_cancelled = C.ljasync_thread_sleep, C.ljasync_thread_cancelled
local thread_ptr_t = ffi.typeof("ljasync_thread *")
local void_ptr_t = ffi.typeof("void *")

-- Registry keys shared with Sources/LJAsync/Thread/LuaThread.swift.
local CURRENT, BIND, CANCEL = "lj-async.thread.current", "lj-async.thread.bind", "lj-async.thread.cancelled"

local Thread = {}

-- -- The running thread's view (any state) --

local registry = debug.getregistry()

-- What check_cancel() raises; the core recognises it and records "cancelled", not an error.
local CANCELLED = registry[CANCEL]
if not CANCELLED then
  CANCELLED = setmetatable({}, { __tostring = function() return "cancelled" end })
  registry[CANCEL] = CANCELLED
end

-- This state's own thread (nil in a state that is not a thread's) and its cancellation flag.
-- Outside a thread the flag is a zero that never changes.
local never = ffi.new("int32_t[1]")
local current, flag = nil, never

local function bind(address)
  current = ffi_cast(thread_ptr_t, address)
  flag = C_flag(current)
end
registry[BIND] = bind
if registry[CURRENT] then bind(registry[CURRENT]) end

--- True once thread:cancel() was called on the thread running this state. Cheap and
--- JIT-compiled: poll it in loops. (A C call rather than a load through a pointer: LuaJIT
--- hoists loads out of compiled loops, even volatile ones, and would never see the flag.)
function Thread.cancelled()
  return C_cancelled(flag) ~= 0
end

--- Raises the cancellation marker when cancel() was called; join then reports "cancelled".
--- If you catch errors with pcall around it, re-raise this one.
function Thread.check_cancel()
  if C_cancelled(flag) ~= 0 then error(CANCELLED, 0) end
end

--- Sleeps `seconds`. Inside a thread, cancel() wakes it early: returns false then, else true.
function Thread.sleep(seconds)
  if type(seconds) ~= "number" or seconds ~= seconds or seconds < 0 then
    error("bad argument #1 to 'sleep': expected seconds >= 0, got " .. tostring(seconds), 2)
  end
  return C_sleep(current, seconds) ~= 0
end

--- Lets other threads run (sched_yield).
function Thread.yield() C.ljasync_thread_yield() end

--- The number of CPUs this process may use.
function Thread.cpus() return tonumber(C.ljasync_thread_cpus()) end

--- The kernel's id of the calling OS thread, as listed in /proc/self/task.
function Thread.id() return tonumber(C.ljasync_thread_id()) end

-- -- Code for the new state (creator's state) --

--- Code for the thread's state (see core.portable_code), or nil for a function with upvalues
--- (encoded instead); errors at the caller's `level`. `fname` and `argn` name the argument in
--- a bytecode error.
local function portable_code(f, level, name, fname, argn)
  if type(f) == "string" and f:byte(1) == 27 then  -- the message is only built for bytecode
    core.check_bytecode(f, ("bad argument #%d to '%s'"):format(argn, fname), level + 1)
  end
  local code = core.portable_code(f, "thread function", level + 1, "=" .. name)
  return code  -- not a tail call: error levels count this frame
end

--- The address `ud` stands for: a pointer cdata, lightuserdata, number or nil.
local function ud_pointer(ud, level)
  if ud == nil then return nil end
  local t = type(ud)
  if t == "cdata" or t == "userdata" or t == "number" then
    local ok, p = pcall(ffi_cast, void_ptr_t, ud)
    if ok then return p end
    error("bad userdata: " .. tostring(p), level + 1)
  end
  error("bad userdata: expected a pointer cdata, lightuserdata, an address or nil, got " .. t, level + 1)
end

local OPTIONS = { "name", "stack_size" }
local DEFAULT_NAME = "lj-async thread"
local MIN_STACK = 64 * 1024

-- The thread's name and stack size in bytes (0: the core's default, 256 KiB).
local function check_options(opts, level)
  if opts == nil then return DEFAULT_NAME, 0 end
  if type(opts) ~= "table" then error("bad options: expected a table", level + 1) end
  core.check_options(opts, OPTIONS, level + 1)
  local name, stack = opts.name, opts.stack_size
  if name == nil then
    name = DEFAULT_NAME
  elseif type(name) ~= "string" then
    error("bad option 'name': expected a string, got " .. type(name), level + 1)
  end
  if stack == nil then
    stack = 0
  elseif type(stack) ~= "number" or stack ~= math.floor(stack) or stack < MIN_STACK or stack > 2^40 then
    error(("bad option 'stack_size': expected a whole number of bytes >= %d, got %s"):format(MIN_STACK, tostring(stack)), level + 1)
  end
  return name, stack
end

-- -- Handles (creator's state) --

local Handle = {}
Handle.__index = Handle

local STATUS = { [0] = "running", "done", "failed", "cancelled" }

-- The handle's native thread; `method` names the call when self is not a handle (t.join()).
local function alive(self, method)
  if getmetatable(self) ~= Handle then
    error(("bad self to '%s': expected a thread handle, got %s (call it as t:%s())"):format(method, type(self), method), 3)
  end
  local h = self._h
  if not h then error("thread has been destroyed", 3) end
  return h
end

-- -- Light spawns (docs/design.md, "Light spawns"; Sources/CLJAsyncLua/light_spawn.c) --
-- A function without upvalues whose arguments are scalars and channel handles gets them as
-- cells, in a state that loads neither ffi nor lj-async's modules for them.

local T_NIL, T_FALSE, T_TRUE, T_NUMBER, T_SHORT, T_HEAP, T_CHANNEL = 0, 1, 2, 3, 4, 5, 9  -- ljasync.h
local cell_array_t, cell_ptr_t, char_ptr_t, count  -- made with the header's channel section, at first use
local light_mt_key = "lj-async.light.channel"

local function light_types()
  if not cell_array_t then
    core.declare "channel"
    cell_array_t, cell_ptr_t = ffi.typeof("ljasync_cell[?]"), ffi.typeof("const ljasync_cell *")
    char_ptr_t, count = ffi.typeof("char *"), ffi.new("int32_t[1]")
  end
end

-- The channel a value is a live handle of (an ffi handle or a light spawn's), or nil.
local function channel_of(v)
  local t = type(v)
  if t == "cdata" then
    local ch = package.loaded["lj-async.sync.channel"]
    if ch and ffi.istype(ch.ctype, v) and v.p ~= nil then return v.p end
  elseif t == "userdata" then
    local mt = registry[light_mt_key]
    if mt and getmetatable(v) == mt then return mt._address(v) end
  end
  return nil
end

-- The arguments as cells (borrowing the strings' bytes: valid while the caller holds them),
-- or nil when one of them is not a scalar or a channel handle.
local function light_args(n, ...)
  if n == 0 then return nil end
  for i = 1, n do
    local v = select(i, ...)
    local t = type(v)
    if t ~= "nil" and t ~= "boolean" and t ~= "number" and t ~= "string" and not channel_of(v) then return false end
  end
  light_types()
  local cells = cell_array_t(n)
  for i = 1, n do
    local v, c = select(i, ...), cells[i - 1]
    local t = type(v)
    if t == "number" then
      c.tag, c.n = T_NUMBER, v
    elseif t == "string" then
      local len = #v
      if len <= 24 then
        c.tag, c.len = T_SHORT, len
        ffi.copy(c.s, v, len)
      else
        c.tag, c.h.p, c.h.size = T_HEAP, ffi_cast(char_ptr_t, v), len
      end
    elseif t == "boolean" then
      c.tag = v and T_TRUE or T_FALSE
    elseif t == "nil" then
      c.tag = T_NIL
    else
      c.tag, c.h.p = T_CHANNEL, ffi_cast(char_ptr_t, channel_of(v))
    end
  end
  return cells
end

-- A light spawn's results (cells) as a results table.
local function light_results(p, n)
  local cells, r = ffi_cast(cell_ptr_t, p), { n = n }
  for i = 0, n - 1 do
    local c, tag = cells[i], cells[i].tag
    if tag == T_NUMBER then
      r[i + 1] = c.n
    elseif tag == T_SHORT then
      r[i + 1] = ffi_string(c.s, c.len)
    elseif tag == T_HEAP then
      r[i + 1] = ffi_string(c.h.p, c.h.size)
    elseif tag == T_TRUE or tag == T_FALSE then
      r[i + 1] = tag == T_TRUE
    elseif tag == T_CHANNEL then
      require "lj-async.sync.channel"
      r[i + 1] = require("lj-async.encoder.registry").handle_by_kind.channel.wrap(c.h.p)
    end
  end
  return r
end

local function results(self, h)
  local r = self._results
  if not r then
    local m = C.ljasync_thread_results(h)
    if m == nil then
      light_types()
      local p = C.ljasync_thread_result_cells(h, count)
      r = p ~= nil and light_results(p, count[0]) or { n = 0 }
    else
      r = (function(...) return { n = select("#", ...), ... } end)(require("lj-async.encoder").decode_message(m))
    end
    self._results = r
  end
  return true, unpack(r, 1, r.n)
end

--- Waits for the thread to end. `timeout`: nil blocks, 0 only looks, else seconds.
--- Returns true when it has ended (a spawned thread's results follow), false on timeout.
function Handle:join(timeout)
  local h = alive(self, "join")
  if timeout == nil then
    timeout = -1
  elseif type(timeout) ~= "number" or timeout ~= timeout or timeout < 0 then
    error("bad argument #1 to 'join': expected nil or seconds >= 0, got " .. tostring(timeout), 2)
  end
  if C_join(h, timeout) == 0 then return false end
  if self._spawned then return results(self, h) end
  return true
end

--- "running", "done" (returned), "failed" (raised an error) or "cancelled".
function Handle:status()
  return STATUS[C_status(alive(self, "status"))]
end

--- The error the thread raised, with its traceback ("cancelled" if it was cancelled), or nil.
--- Reading it keeps it from being reported to stderr when the handle goes.
function Handle:error()
  local h = alive(self, "error")
  local n = tonumber(C.ljasync_thread_error(h, errbuf, errbuf_size))
  if n < 0 then return nil end
  if n < errbuf_size then return ffi_string(errbuf, n) end
  local buf = ffi.new("char[?]", n + 1)
  C.ljasync_thread_error(h, buf, n + 1)
  return ffi_string(buf, n)
end

--- Asks the thread to stop: Thread.cancelled() becomes true there and Thread.sleep wakes.
function Handle:cancel()
  C.ljasync_thread_cancel(alive(self, "cancel"))
end

--- Frees the handle. A thread still running is detached: it runs to its end and then frees
--- itself; an error it raises goes to stderr. May be called twice.
function Handle:destroy()
  if getmetatable(self) ~= Handle then alive(self, "destroy") end
  local h = self._h
  self._results = nil  -- let go of decoded results (shared objects among them) with the handle
  if h then
    self._h = nil
    ffi_gc(h, nil)
    C.ljasync_thread_free(h)
  end
end
Handle.free = Handle.destroy

function Handle:__tostring()
  local h = self._h
  return ("lj-async.thread<%s> (%s)"):format(self._name, h and STATUS[C_status(h)] or "destroyed")
end

-- `args` (a message) is the core's from here, even when the thread does not start.
-- `pass_ud`: Thread.new's function gets `ud` (false only when it cannot see it: see takes_ud).
local function start(code, ud, name, runner, args, level, spawned, pass_ud, stack)
  local h = C.ljasync_thread_new(code, #code, "=" .. name, runner, runner and #runner or 0,
    ud, pass_ud and 1 or 0, args, name, stack, errbuf, errbuf_size)
  if h == nil then
    error(("cannot start thread '%s': %s"):format(name, ffi_string(errbuf)), level + 1)
  end
  return setmetatable({ _h = ffi_gc(h, C.ljasync_thread_free), _name = name, _spawned = spawned }, Handle)
end

-- Runs in a spawned thread's state: decodes the arguments, calls f, encodes what it returns.
-- Values move through encoder/plain.lua, which requires the whole encoder only for values
-- that need it: a thread moving plain values never loads it. lj-async's modules load there
-- from the process-wide bytecode cache (core's ModuleCache), not from source. Kept as source
-- so it captures no upvalue of this module.
local runner_code = string_dump(assert(loadstring([==[
local f, args = ...
local ffi = require "ffi"
local function finish(...)
  if select("#", ...) == 0 then return 0 end
  return tonumber(ffi.cast("uintptr_t", require("lj-async.encoder.plain").encode_message(...)))
end
if args == 0 then return finish(f()) end
return finish(f(require("lj-async.encoder.plain").decode_message(ffi.cast("ljasync_message *", args))))
]==], "=lj-async spawn")))

-- A function with upvalues crosses encoded, as the first value of the spawn runner's message
-- (above); these chunks then call it. Thread.new's gets the address of `ud`.
local call_new = string_dump(assert(loadstring(
  "local f, ud = ...\nf(require('ffi').cast('void *', ud))", "=lj-async thread")))
local call_spawn = string_dump(assert(loadstring(
  "return (function(f, ...) return f(...) end)(...)", "=lj-async thread")))

-- Functions that declare no parameter and no `...`: called with ud, they could not see it, so the
-- thread calls them without it and its state need not open ffi to make the cdata (about 15 us
-- of a state made on the spot). Source and bytecode strings always get it (a chunk's `...`).
local ignores_ud = setmetatable({}, { __mode = "k" })
local function takes_ud(func)
  if type(func) ~= "function" then return true end
  local ignores = ignores_ud[func]
  if ignores == nil then
    local info = debug.getinfo(func, "u")
    ignores = info.nparams == 0 and not info.isvararg
    ignores_ud[func] = ignores
  end
  return not ignores
end

local function new(fname, func, ud, opts)
  local name, stack = check_options(opts, 3)
  local code = portable_code(func, 3, name, fname, 1)
  ud = ud_pointer(ud, 3)
  if code then
    local h = start(code, ud, name, nil, nil, 3, false, takes_ud(func), stack)
    return h
  end
  local msg = core.encode_function(func, "thread function", 3, tonumber(ffi_cast("uintptr_t", ud)))
  local h = start(call_new, nil, name, runner_code, msg, 3, false, true, stack)
  return h
end

--- Thread.new(func, ud [, {name = "..."}]): starts a thread calling func(ud) in a new state.
--- `func` is a function (its upvalues copied by value, as for Thread.spawn), Lua source (its
--- `...` holds ud) or bytecode; `ud` (pointer cdata, lightuserdata, address or nil) arrives as
--- a `void *` cdata.
function Thread.new(func, ud, opts)
  local h = new("new", func, ud, opts)
  return h  -- not a tail call: error levels count this frame
end

local function spawn(fname, argn, name, func, ...)
  local code = portable_code(func, 3, name, fname, argn)
  local args = nil
  if not code then
    -- The function and the arguments in one message; the arguments count from 1 in errors.
    local err
    args, err = core.encode_function(func, "thread function", 3, ...)
    if not args then
      err = tostring(err):gsub("^argument (%d+)", function(n) return "argument " .. (n - 1) end)
      error("bad argument to spawn: " .. err, 3)
    end
    code = call_spawn
  else
    local n = select("#", ...)
    local cells = light_args(n, ...)
    if cells ~= false then
      local h = C.ljasync_thread_spawn_light(code, #code, "=" .. name, cells, n, name, errbuf, errbuf_size)
      if h == nil then error(("cannot start thread '%s': %s"):format(name, ffi_string(errbuf)), 3) end
      return setmetatable({ _h = ffi_gc(h, C.ljasync_thread_free), _name = name, _spawned = true }, Handle)
    end
    -- Values that cannot cross fail here, naming the argument, before anything started.
    local err
    args, err = require("lj-async.encoder").try_encode_message(...)
    if not args then error("bad argument to spawn: " .. tostring(err), 3) end
  end
  local h = start(code, nil, name, runner_code, args, 3, true, true, 0)
  return h  -- not a tail call: error levels count this frame
end

--- Thread.spawn(func, ...): starts a thread calling func(...) with copies of the arguments;
--- its join() returns true followed by func's results (copied back, nils kept).
function Thread.spawn(func, ...)
  local h = spawn("spawn", 1, DEFAULT_NAME, func, ...)
  return h
end

--- Thread.spawn_named(name, func, ...): Thread.spawn with a thread name.
function Thread.spawn_named(name, func, ...)
  if type(name) ~= "string" then error("bad argument #1 to 'spawn_named': expected a name string", 2) end
  local h = spawn("spawn_named", 2, name, func, ...)
  return h
end

--- Number of native thread objects alive (handles not yet freed, detached threads running).
function Thread.live() return tonumber(C.ljasync_thread_live()) end

Thread.Handle = Handle

return setmetatable(Thread, { __call = function(_, func, ud, opts)
  local h = new("Thread", func, ud, opts)
  return h  -- not a tail call: error levels count this frame
end })
