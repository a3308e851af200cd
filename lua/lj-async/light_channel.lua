-- Private: the slow path of a light spawn's channel handle
-- (Sources/CLJAsyncLua/light_channel.c).
-- Such a handle is a full userdata owning one reference; its push, pop and try_pop move scalars
-- in C. Everything else comes here: the ordinary ffi handle of the same channel is made once
-- per light handle (cached while the light handle lives) and lj-async.sync's method runs on
-- it, called in tail position so that its errors name the user's line, as for an ffi handle.
local ffi = require "ffi"
local channel = require "lj-async.sync.channel"
local registry = require "lj-async.encoder.registry"

local type, getmetatable, rawset, tostring, tonumber = type, getmetatable, rawset, tostring, tonumber
-- The handles' metatable (light_channel.c makes it with the state's first light handle; without
-- one, as when something requires this module by name, there is nothing to convert).
local mt = debug.getregistry()["lj-async.light.channel"] or {}
local address, clear, methods = mt._address, mt._clear, mt.__index
local Channel, ct = channel.methods, channel.ctype
local wrap = registry.handle_by_kind.channel.wrap
local cell_ptr = ffi.typeof("ljasync_cell *")

local M = {}

-- Light handle -> its ffi handle. Weak keys: the ffi handle goes with the light one.
local cache = setmetatable({}, { __mode = "k" })

--- The ffi handle for light handle `v` (made once), or `v` itself when it is none.
local function ffi_of(v)
  local h = cache[v]
  if h ~= nil then return h end
  if type(v) ~= "userdata" or getmetatable(v) ~= mt then return v end
  local p = address(v)
  h = p and wrap(p) or ct(nil)  -- a freed light handle: a freed ffi handle, whose methods say so
  cache[v] = h
  return h
end
M.ffi_of = ffi_of

function M.push(self, v, timeout) return Channel.push(ffi_of(self), ffi_of(v), timeout) end
function M.pop(self, timeout) return Channel.pop(ffi_of(self), timeout) end
function M.try_pop(self) return Channel.try_pop(ffi_of(self)) end
function M.tostring(self) return tostring(ffi_of(self)) end
function M.len(self) return Channel.length(ffi_of(self)) end

--- After many push/pop calls (light_channel.c's wrappers count them): this state's light
--- handles take lj-async.sync's compiled ffi path from now on (a C function's call is not
--- compiled into the caller's trace: 50 ns more per value). Tail calls keep the user's levels.
function M.upgrade()
  methods.push = function(self, v, timeout)
    if type(v) == "userdata" then v = ffi_of(v) end
    return Channel.push(ffi_of(self), v, timeout)
  end
  methods.pop = function(self, timeout) return Channel.pop(ffi_of(self), timeout) end
  methods.try_pop = function(self) return Channel.try_pop(ffi_of(self)) end
end

--- A popped cell the C side could not turn into a value (an encoded table, a message).
function M.take(pending) return channel.take_cell(ffi.cast(cell_ptr, address(pending))) end

local function free(self)
  local h = ffi_of(self)
  if h ~= self then clear(self) end
  return Channel.free(h)
end

--- The method `k` of light handles (cached in their methods table), or nil as for an ffi handle.
function M.method(k)
  local f
  if k == "free" then
    f = free
  else
    local m = Channel[k]
    if type(m) ~= "function" then return nil end
    -- Fixed parameters (no method takes more than four): a vararg function compiles worse.
    f = function(self, a, b, c, d) return m(ffi_of(self), a, b, c, d) end
  end
  rawset(methods, k, f)
  return f
end

--- A light spawn's results that are not all scalars and channel handles, as the spawn runner
--- returns them (the address of an encoder message). An error names no position (the spawn
--- runner's named its own line).
function M.encode_results(...)
  local ok, m = pcall(require("lj-async.encoder.plain").encode_message, ...)
  if not ok then error(m, 0) end
  return tonumber(ffi.cast("uintptr_t", m))
end

return M
