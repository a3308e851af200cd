-- Private: the argument checks the pool's surfaces share. Errors name the problem and are
-- raised at `level` (the caller's caller of the check, as for error()).
local type, tostring, error, getmetatable = type, tostring, error, getmetatable
local floor = math.floor

local M = {}

function M.count(n, what, level)
  if type(n) ~= "number" or n < 0 or n ~= floor(n) or n > 0x7fffffff then
    error(("bad %s: expected a whole number >= 0, got %s"):format(what, type(n) == "number" and tostring(n) or type(n)), level + 1)
  end
end

function M.timeout(t, level)
  if t ~= nil and (type(t) ~= "number" or t < 0 or t ~= t) then
    error(("bad timeout: expected seconds >= 0 or nil, got %s"):format(type(t) == "number" and tostring(t) or type(t)), level + 1)
  end
end

function M.callback(cb, level)
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

return M
