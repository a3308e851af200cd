-- A trusted mod: by default its jobs are restricted too; with its insecure environment it gets
-- lj-async.pool itself, whose jobs run with the workers' full globals. lj_async_test checks the
-- outcomes stored in the global lj_async_trusted_test.
local ie = core.request_insecure_environment()
local pool = lj_async.unrestricted(ie)
lj_async_trusted_test = {}
local out = lj_async_trusted_test
pool.handle_async(function()
  local ffi = require "ffi"
  return io ~= nil and type(io.open) == "function", type(ffi.C)
end, {
  success = function(has_io, c) out.unrestricted = (has_io and c == "userdata") and "ok" or ("got " .. tostring(has_io) .. ", " .. tostring(c)) end,
  error = function(msg) out.unrestricted = msg end,
})
lj_async.handle_async(function() return type(io) end, {
  success = function(t) out.restricted = t == "nil" and "ok" or ("io is a " .. t) end,
  error = function(msg) out.restricted = msg end,
})
