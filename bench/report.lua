-- One goal row of `make bench`: prints the bench's own human line and appends a tab-separated
-- record to the file named by BENCH_ROWS (the Makefile sets it; bench/summary.lua reads it), so
-- the run ends with one table. Without BENCH_ROWS (a bench run by hand) it only prints.
--   report.row{ section = "start-up, quiet", what = "Thread.new + join", goal = "<= 2.0x",
--               figure = 123.4, unit = "us", ratio = 1.7, reference = "pthread create+join",
--               met = true, line = "the human line as the bench printed it before" }
-- goal, ratio, reference and met may be nil (an informative row); line defaults to a plain one,
-- line = false prints nothing (the bench wrote its line itself).
local report = {}

local FIELDS = { "section", "what", "goal", "figure", "unit", "reference", "ratio", "met" }

-- Tabs and newlines would break the record; numbers keep 4 significant digits.
local function cell(v)
  if v == nil then return "" end
  if type(v) == "boolean" then return v and "yes" or "no" end
  if type(v) == "number" then return ("%.4g"):format(v) end
  return (tostring(v):gsub("[\t\r\n]", " "))
end

function report.row(r)
  assert(type(r) == "table" and r.section and r.what, "report.row: section and what are required")
  if r.line == false then  -- the bench printed its own line already
  elseif r.line then
    print(r.line)
  else
    print(("  %-48s %s %s%s%s"):format(r.what, cell(r.figure), r.unit or "",
      r.ratio and ("   x%.2f %s"):format(r.ratio, r.reference or "") or "",
      r.goal and ("   goal %s%s"):format(r.goal, r.met == false and "  over" or "") or ""))
  end
  local path = os.getenv("BENCH_ROWS")
  if path and path ~= "" then
    local f = assert(io.open(path, "a"))
    local out = {}
    for i, k in ipairs(FIELDS) do out[i] = cell(r[k]) end
    f:write("row\t", table.concat(out, "\t"), "\n")
    f:close()
  end
end

return report
