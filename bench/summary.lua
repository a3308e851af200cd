-- The one table that ends `make bench`, in Markdown (for the README's "Benchmarks" section), from
-- the rows bench/report.lua appended to $BENCH_ROWS during the run.
--   luajit bench/summary.lua start   empties the file and notes the time and load average
--   luajit bench/summary.lua         prints the table: date, nproc, load at start and end
local path = assert(os.getenv("BENCH_ROWS"), "BENCH_ROWS is not set (the Makefile sets it)")

local function loadavg()
  local f = io.open("/proc/loadavg")
  if not f then return "?" end
  local s = f:read("*l"); f:close()
  return s:match("^(%S+ %S+ %S+)") or s
end

if arg[1] == "start" then
  local f = assert(io.open(path, "w"))
  f:write("start\t", os.time(), "\t", loadavg(), "\n")
  f:close()
  return
end

local started, load_start
local rows = {}
for line in io.lines(path) do
  local fields = {}
  for v in (line .. "\t"):gmatch("([^\t]*)\t") do fields[#fields + 1] = v end
  if fields[1] == "start" then
    started, load_start = tonumber(fields[2]), fields[3]
  elseif fields[1] == "row" then
    rows[#rows + 1] = { section = fields[2], what = fields[3], goal = fields[4], figure = fields[5],
      unit = fields[6], reference = fields[7], ratio = fields[8], met = fields[9] }
  end
end

-- Issue 12's order (memory first); a section not named here comes last, rows keep run order.
local ORDER = { "memory", "start-up, quiet", "start-up, hogged", "pool", "channel", "callback", "encoder" }
local rank = {}
for i, name in ipairs(ORDER) do rank[name] = i end
for i, r in ipairs(rows) do r.seq = i end
table.sort(rows, function(a, b)
  local ra, rb = rank[a.section] or #ORDER + 1, rank[b.section] or #ORDER + 1
  if ra ~= rb then return ra < rb end
  return a.seq < b.seq
end)

local p = io.popen("nproc"); local nproc = p:read("*l") or "?"; p:close()
local function dash(s) return (s == nil or s == "") and "—" or s end

print()
print("## Benchmarks")
print()
print(("`make bench`, %s; %s CPUs; load average (1, 5, 15 min) %s at the start, %s at the end%s.")
  :format(os.date("!%Y-%m-%d %H:%M UTC", started), nproc, load_start or "?", loadavg(),
    started and ("; %d s in all"):format(os.time() - started) or ""))
print()
print("| section | row | goal | figure | reference | ratio | met |")
print("| --- | --- | --- | --- | --- | --- | --- |")
local met, over = 0, 0
for _, r in ipairs(rows) do
  local figure = r.figure ~= "" and (r.figure .. (r.unit ~= "" and " " .. r.unit or "")) or ""
  print(("| %s | %s | %s | %s | %s | %s | %s |"):format(r.section, r.what, dash(r.goal), dash(figure),
    dash(r.reference), tonumber(r.ratio) and ("%.2fx"):format(tonumber(r.ratio)) or "—", dash(r.met)))
  if r.met == "yes" then met = met + 1 elseif r.met == "no" then over = over + 1 end
end
print()
print(("%d rows met their goal, %d did not."):format(met, over))
