-- Private: the pool's surface from Luanti's async environment (seed 000): handle_async,
-- register_async_dofile, register_portable_metatable and the IPC store (ipc_set, ipc_get,
-- ipc_cas, ipc_poll). lj-async.pool assembles it. Every function here runs on the thread that
-- owns the calling state.
local C = require "lj-async.pool_abi"
local encoder = require "lj-async.encoder"
local host = require "lj-async.love"  -- LÖVE: the game's modules reach the workers (docs/love.md)
local jobs = require "lj-async.pool.jobs"
local check = require "lj-async.pool.check"

local try_encode_message, decode_message = encoder.try_encode_message, encoder.decode_message
local message_free = C.ljasync_message_free
local submit, stored, undefine_now = jobs.submit, jobs.stored, jobs.undefine_now
local check_callback, check_timeout = check.callback, check.timeout
local type, tostring, error, pcall, loadstring, setmetatable = type, tostring, error, pcall, loadstring, setmetatable
local getinfo = debug.getinfo

local M = {}

-- -- handle_async --

-- A function without upvalues submitted by handle_async is stored once as an anonymous
-- definition (its bytecode, encoded once); its jobs then carry only their arguments, and a
-- worker loads the function once per definition (lj-async/pool_worker.lua). The definition
-- message holds the function and this mark, so a worker tells it from a define'd one. A
-- function with upvalues crosses whole with every job: each job gets its own copy of them.
local ANON = "lj-async.pool anonymous"
M.ANON = ANON
-- function -> definition record; weak keys, and no record refers to its function, so a
-- function nobody holds goes. At most MAX_ANON records per state live in the engine: the
-- oldest is retired (undefined once its jobs are delivered) when a new one comes.
local anon = setmetatable({}, { __mode = "k" })
local MAX_ANON = 64
local ring, ring_at = {}, 0

local function anonymous(f)
  local info = getinfo(f, "Su")
  if info.what == "C" or info.nups > 0 then return false end
  local msg = try_encode_message(f, ANON)
  if not msg then return false end
  local d = { id = C.ljasync_pool_define(("%s:%d"):format(info.short_src, info.linedefined), msg),
              name = "", outstanding = 0, anon = true }
  stored[d] = true
  ring_at = ring_at % MAX_ANON + 1
  local old = ring[ring_at]
  if old then
    old.dead = true
    if old.outstanding == 0 then undefine_now(old) end
  end
  ring[ring_at] = d
  return d
end

--- Queues `func` (bytecode, upvalues copied by value) with the arguments; `callback` gets the
--- results in this state. Returns the job handle (with cancel()), or nil, "full".
function M.handle_async(func, callback, ...)
  local d = anon[func]
  if d == nil or (d and d.dead) then
    if type(func) ~= "function" then error(("bad function: expected a function, got %s"):format(type(func)), 2) end
    d = anonymous(func)
    anon[func] = d
  end
  check_callback(callback, 2)
  local msg, err
  if d then
    msg = try_encode_message(...)
    if msg then return submit(d, callback, msg, 2) end
  end
  msg, err = try_encode_message(func, ...)  -- the whole job (also names a bad argument's place)
  if not msg then error("bad job: " .. err, 2) end
  return submit(nil, callback, msg, 2)
end

-- -- Code for every worker --

-- Registered under this state's owner token: withdrawn when it closes (core.lua).
local owner = require("lj-async.core").owner

--- Runs the Lua file at `path` in every worker, present (before its next job) and future.
--- The file is read now; syntax errors are raised here.
function M.register_async_dofile(path)
  if type(path) ~= "string" then error(("bad path: expected a string, got %s"):format(type(path)), 2) end
  local src, chunkname = host.read(path)  -- in LÖVE, a love.filesystem path first
  if not src then error("cannot register async file: " .. tostring(chunkname), 2) end
  local ok, perr = loadstring(src, chunkname)
  if not ok then error("bad async file: " .. tostring(perr), 2) end
  C.ljasync_pool_add_init(chunkname, src, #src, owner)
end

--- Tables with metatable `mt` keep it when they cross to a state that registered `name`.
--- Registers here and, when `mt` can be encoded, in every worker present and future
--- (returns true); otherwise returns false and the reason (register it in an async file).
function M.register_portable_metatable(name, mt)
  local ok, err = pcall(encoder.register_portable_metatable, name, mt)
  if not ok then error(tostring(err):gsub("^[^\n]-:%d+: ", ""), 2) end
  local msg, why = try_encode_message(name, mt)
  if not msg then return false, why end
  -- The registry entry owns the message (and the references of any shared handle in the
  -- metatable) until this state closes; workers decode copies.
  C.ljasync_pool_add_metatable(name, msg, owner)
  return true
end

-- -- The IPC store --

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

return M
