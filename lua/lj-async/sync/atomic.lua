-- Private: lj-async.sync's 64-bit atomic counter (sequentially consistent operations).
local ffi = require "ffi"
local C = require "lj-async.sync.abi"
local handle = require "lj-async.sync.handle"
local check = require "lj-async.sync.check"

local tonumber = tonumber
local freed, int64 = handle.freed, check.int64
local atomic_load, atomic_store, atomic_add = C.ljasync_atomic_load, C.ljasync_atomic_store, C.ljasync_atomic_add
local atomic_exchange, atomic_cas = C.ljasync_atomic_exchange, C.ljasync_atomic_cas

-- Scratch for cas's "found" (one Lua thread per state; read right after the call).
local found = ffi.new("int64_t[1]")

-- Results are Lua numbers: exact up to 2^53. Arguments may be numbers or int64 cdata.
local Atomic = {}

--- The value (sequentially consistent). Goes through the core even on x86-64, where a
--- plain load would do: the JIT may hoist a plain load out of a loop, never a C call.
function Atomic:load()
  local p = self.p
  if p == nil then freed("atomic") end
  local v = tonumber(atomic_load(p))
  return v
end

--- Sets the value (sequentially consistent).
function Atomic:store(x)
  local p = self.p
  if p == nil then freed("atomic") end
  atomic_store(p, int64(x, "value", "argument #1 to 'store'", 2))
end

--- Adds `d` (default 1; wraps on overflow) and returns the NEW value.
function Atomic:add(d)
  local p = self.p
  if p == nil then freed("atomic") end
  if d == nil then d = 1 else d = int64(d, "delta", "argument #1 to 'add'", 2) end
  local v = tonumber(atomic_add(p, d))
  return v
end

--- Subtracts `d` (default 1) and returns the new value.
function Atomic:sub(d)
  local p = self.p
  if p == nil then freed("atomic") end
  if d == nil then d = 1 else d = int64(d, "delta", "argument #1 to 'sub'", 2) end
  local v = tonumber(atomic_add(p, -d))
  return v
end

--- Sets the value and returns the OLD one.
function Atomic:exchange(x)
  local p = self.p
  if p == nil then freed("atomic") end
  local old = tonumber(atomic_exchange(p, int64(x, "value", "argument #1 to 'exchange'", 2)))
  return old
end

--- Compare-and-swap: sets `desired` if the value is `expected`. Returns true, or false and
--- the value found.
function Atomic:cas(expected, desired)
  local p = self.p
  if p == nil then freed("atomic") end
  if atomic_cas(p, int64(expected, "expected value", "argument #1 to 'cas'", 2),
                int64(desired, "desired value", "argument #2 to 'cas'", 2), found) == 1 then
    return true
  end
  return false, tonumber(found[0])
end

--- The int64_t* of the value (valid while a handle lives). Plain accesses through it are
--- not atomic read-modify-writes, and compiled code may keep a loaded value in a register
--- across loop iterations: use it for bulk reads after synchronizing, not to poll.
function Atomic:ptr()
  -- self.v outlives free() (only p is cleared): checking it would hand out a dangling pointer.
  if self.p == nil then freed("atomic") end
  return self.v
end

local ct, adopt = handle.kind("atomic", "atomic", Atomic,
  function(h) h.v = C.ljasync_atomic_address(h.p) end)

local M = { ctype = ct }

--- sync.atomic([v]) or sync.atomic{value = v}: a new counter holding `v` (default 0).
function M.new(arg)
  local v, where = check.one_option(arg, "value", "atomic", 2)
  if v == nil then v = 0 else v = int64(v, "value", where, 2) end
  return adopt(C.ljasync_atomic_new(v))
end

return M
