-- Runs a batch of misuse cases (spec/misuse_spec.lua) in this process, one pcall each:
-- "START i" before case i, then "END i <bytes>" and one result line, then "DONE". A crash or a
-- hang shows as a START without its END. Usage: luajit misuse_child.lua <batch file>
local ffi = require "ffi"
local env = setmetatable({
  ffi = ffi,
  CB = require "lj-async.callback",
  Thread = require "lj-async.thread",
  sync = require "lj-async.sync",
  pool = require "lj-async.pool",
  encoder = require "lj-async.encoder",
  noop = function() end,
}, { __index = _G })

-- A result as text: strings quoted, so "nil" and nil differ.
local function show(v)
  if type(v) == "string" then return ("%q"):format(v):gsub("\\\n", "\\n") end
  return tostring(v)
end

local cases = dofile(arg[1])
local out = io.stdout
for i, c in ipairs(cases) do
  out:write("START ", i, "\n")
  out:flush()
  local f, err = loadstring(c.code, "=case")
  local line
  if not f then
    line = "syntax: " .. tostring(err)
  else
    setfenv(f, env)
    local r = { n = 0 }
    r = (function(...) return { n = select("#", ...), ... } end)(pcall(f))
    if r[1] then
      local parts = {}
      for k = 2, r.n do parts[#parts + 1] = show(r[k]) end
      line = "return: " .. table.concat(parts, ", ")
    else
      -- The caller's position (the case chunk) is dropped; any other position stays and fails.
      line = "error: " .. tostring(r[2]):gsub("^case:%d+: ", "")
    end
  end
  line = line:gsub("\n", "\\n")
  out:write("END ", i, " ", #line, "\n", line, "\n")
  out:flush()
end
out:write("DONE\n")
out:flush()
