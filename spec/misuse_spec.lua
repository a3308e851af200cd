-- Misuse of every public module (issue 11, point 6): each case is one wrong call, and the spec
-- expects its exact error text (the position, when there is one, must be the caller's line) or
-- its documented runtime outcome. Cases run in child luajit processes, about 20 to a child, each
-- in a pcall: a child that crashes or hangs fails its whole batch, naming the case it was in.
local ffi = require "ffi"
local child = require "spec.support.child"

local root, shell_quote = child.root, child.shell_quote
local LUA_PATH = root .. "/lua/?.lua;;"
local BATCH, TIMEOUT = 20, 60

local cases = dofile(root .. "/spec/support/misuse_cases.lua")

-- Runs cases[first..last] in one child; returns a table index -> result line, or nil and why
-- the batch failed (with the case the child was in).
local function run_batch(first, last)
  local list = {}
  for i = first, last do list[#list + 1] = ("{ code = %q },"):format(cases[i][2]) end
  local file = os.tmpname()
  local f = assert(io.open(file, "wb"))
  f:write("return {\n", table.concat(list, "\n"), "\n}\n")
  f:close()
  local status, out, stderr = child.run(root, LUA_PATH, TIMEOUT,
    "spec/support/misuse_child.lua " .. shell_quote(file))
  os.remove(file)
  local results, started, done = {}, nil, false
  local lines = {}
  for l in out:gmatch("([^\n]*)\n") do lines[#lines + 1] = l end
  local k = 1
  while k <= #lines do
    local l = lines[k]
    local s = l:match("^START (%d+)$")
    if s then started = tonumber(s) end
    local e = l:match("^END (%d+) %d+$")
    if e then results[first + tonumber(e) - 1] = lines[k + 1]; k = k + 1; started = nil end
    if l == "DONE" then done = true end
    k = k + 1
  end
  if done and status == 0 then return results end
  local why = status == 124 and "timed out" or status and status > 128 and ("killed by signal " .. (status - 128))
    or ("exit status " .. tostring(status))
  local at = started and ("during case '%s'"):format(cases[first + started - 1][1]) or "after its cases"
  return nil, ("the child running cases %d-%d %s %s; stderr:\n%s"):format(first, last, why, at, stderr)
end

local batches = {}
local function result(i)
  local b = math.floor((i - 1) / BATCH)
  if not batches[b] then
    local first = b * BATCH + 1
    local r, why = run_batch(first, math.min(first + BATCH - 1, #cases))
    batches[b] = r and { results = r } or { why = why }
  end
  local batch = batches[b]
  if batch.why then return nil, batch.why end
  return batch.results[i]
end

describe("misuse", function()
  it("has at least 80 distinct cases", function()
    local seen = {}
    for _, c in ipairs(cases) do
      assert.is_nil(seen[c[1]], "two cases named " .. c[1])
      assert.is_nil(seen[c[2]], "two cases with the code of " .. c[1])
      seen[c[1]], seen[c[2]] = true, true
    end
    assert.is_true(#cases >= 80, "only " .. #cases .. " cases")
  end)

  for i, c in ipairs(cases) do
    it(c[1], function()
      local got, why = result(i)
      if not got then error(why, 0) end
      if os.getenv("MISUSE_PRINT") then io.stderr:write(("%s\t%s\n"):format(c[1], got)) end
      local expected = c[3]
      if c[4] and not (ffi.abi("gc64") or not ffi.abi("64bit")) then expected = c[4] end
      assert.equal(expected, got)
    end)
  end
end)
