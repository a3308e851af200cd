-- Private: argument checks of lj-async.sync's constructors and methods, with errors that name
-- the argument or option ("bad argument #1 to 'channel' (...)", "bad option 'capacity' ...").
local ffi = require "ffi"
local core = require "lj-async.core"

local ffi_istype = ffi.istype
local type, tostring, tonumber, error = type, tostring, tonumber, error
local floor = math.floor

local M = {}

--- The largest integer checked arguments take: doubles are exact up to it.
M.MAX = 2 ^ 53

local function shown(v)
  if type(v) == "number" then return tostring(v) end
  return type(v)
end

--- `v` (a number, or int64_t/uint64_t cdata) as a number in [min, max], else raises
--- "bad <where> (<name> must be an integer from <min> to <max>, got <v>)" at `level` (as for
--- error()). `where` is a literal such as "argument #1 to 'post'" (no concatenation on hot
--- paths).
function M.integer(v, min, max, name, where, level)
  if type(v) == "cdata" and (ffi_istype("int64_t", v) or ffi_istype("uint64_t", v)) then v = tonumber(v) end
  if type(v) == "number" and v >= min and v <= max and v == floor(v) then return v end
  error(("bad %s (%s must be an integer from %d to %s, got %s)"):format(where, name, min,
    max == M.MAX and "2^53" or tostring(max), shown(v)), level + 1)
end

--- `v` as an int64 for the core: a number that is an integer within [-2^63, 2^63), or
--- int64_t/uint64_t cdata (passed as is), else raises at `level` as integer() does.
function M.int64(v, name, where, level)
  local tv = type(v)
  if tv == "number" then
    if v == floor(v) and v >= -2 ^ 63 and v < 2 ^ 63 then return v end
  elseif tv == "cdata" and (ffi_istype("int64_t", v) or ffi_istype("uint64_t", v)) then
    return v
  end
  error(("bad %s (%s must be an integer within the int64 range, got %s)"):format(where, name, shown(v)), level + 1)
end

--- The one argument of constructor `fname`, given as a value or in an options table under
--- `key` (sync.channel(8) or sync.channel{capacity = 8}). Returns the value (nil when absent)
--- and the `where` text naming it for errors. Unknown options raise at `level`.
function M.one_option(arg, key, fname, level)
  if type(arg) ~= "table" then return arg, ("argument #1 to '%s'"):format(fname) end
  core.check_options(arg, { key }, level + 1)
  return arg[key], ("option '%s' to '%s'"):format(key, fname)
end

--- The integer argument of constructor `fname` (as one_option takes it), in [min, 2^53];
--- `default` when absent (nil `default`: required). Raises at `level` as integer() does.
function M.integer_option(arg, key, fname, min, default, level)
  local v, where = M.one_option(arg, key, fname, level + 1)
  if v == nil and default ~= nil then return default end
  return M.integer(v, min, M.MAX, key, where, level + 1)
end

--- Refuses an argument (`first`, when not nil) to constructor `fname`, which takes none.
function M.no_arguments(first, fname, level)
  if first ~= nil then
    error(("bad argument #1 to '%s' (no arguments expected, got %s)"):format(fname, type(first)), level + 1)
  end
end

return M
