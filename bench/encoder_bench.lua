-- Benchmark of lj-async.encoder against LuaJIT's string.buffer on the same data, in the same run.
-- Times are CPU time (os.clock) per operation, median of several interleaved rounds; garbage
-- collection is included, as in real use. Ratios above 1 mean the encoder is faster.
package.path = "./lua/?.lua;" .. package.path
local buffer = require "string.buffer"
local encoder = require "lj-async.encoder"
local C = require("lj-async.core").C
local bench_report = require "bench.report"

local ROUNDS = tonumber(os.getenv("BENCH_ROUNDS")) or 9
local clock = os.clock

-- A loop calling f(i) for i = 1..n, compiled separately for each f: a loop shared by all
-- candidates would be traced for the first one and serve the others through side exits.
local loops = setmetatable({}, { __mode = "k" })
local function loop_for(f)
  local loop = loops[f]
  if not loop then
    loop = loadstring("local f = ... return function(n) for i = 1, n do f(i) end end")(f)
    loops[f] = loop
  end
  return loop
end

-- Seconds per call of f(i), for i = 1..n.
local function time(f, n)
  local loop = loop_for(f)
  collectgarbage()
  local t0 = clock()
  loop(n)
  return (clock() - t0) / n
end

local function median(xs)
  table.sort(xs)
  return xs[math.floor((#xs + 1) / 2)]
end

-- Runs reference and candidate alternately for ROUNDS rounds; returns their medians.
local function compare(ref, cand, n)
  time(ref, n); time(cand, n)  -- warm up (compile traces)
  local r, c = {}, {}
  for k = 1, ROUNDS do
    r[k] = time(ref, n)
    c[k] = time(cand, n)
  end
  return median(r), median(c)
end

-- goal: the least speed ratio (a goal row of the summary table), or nil.
local function report(name, goal, tr, tc, unit)
  local line
  if unit == "ms" then
    line = ("%-34s string.buffer %8.3f ms   encoder %8.3f ms   speed ratio %.2f"):format(name, tr * 1e3, tc * 1e3, tr / tc)
  else
    line = ("%-34s string.buffer %6.2f M/s   encoder %6.2f M/s   speed ratio %.2f"):format(name, 1e-6 / tr, 1e-6 / tc, tr / tc)
  end
  if not goal then return print(line) end
  bench_report.row{ section = "encoder", what = name .. ", encode+decode", goal = (">= %.1fx"):format(goal),
    figure = tc * 1e3, unit = "ms", reference = ("string.buffer, %.3f ms"):format(tr * 1e3),
    ratio = tr / tc, met = tr / tc >= goal, line = line }
end

local sb_encode, sb_decode = buffer.encode, buffer.decode
local encode, decode = encoder.encode, encoder.decode

-- -- ~1 MiB nested plain tables --

local function records(n)
  local t = {}
  for i = 1, n do
    t[i] = { id = i, name = "item" .. i, tags = { "red", "green", "blue" },
      pos = { x = i * 0.5, y = i * 1.5, z = -i }, active = i % 2 == 0, score = i * 3.25,
      desc = "a description of item number " .. i }
  end
  return t
end

local function matrix(rows, cols)
  local t = {}
  for i = 1, rows do
    local row = {}
    for j = 1, cols do row[j] = i * cols + j + 0.5 end
    t[i] = { label = "row" .. i, values = row }
  end
  return t
end

local function config_tree(depth, fan)
  if depth == 0 then return { enabled = true, weight = 1.5, name = "leaf", note = "some text here" } end
  local t = { kind = "node", depth = depth }
  for i = 1, fan do t["child" .. i] = config_tree(depth - 1, fan) end
  return t
end

print(("lj-async encoder benchmark (%d rounds, medians; native scan %s)"):format(ROUNDS,
  encoder._native_scan and "on" or "off"))
local shapes = {
  { "records (nested, mixed types)", function() return records(6900) end },
  { "matrix (arrays of numbers)", function() return matrix(512, 256) end },
  { "tree (string keys, depth 6)", function() return config_tree(6, 5) end },
}
for _, s in ipairs(shapes) do
  local name, t = s[1], s[2]()  -- one shape alive at a time: the others would slow the GC
  local size = #sb_encode(t)
  assert(encode(t):byte(1) == 1, "the plain path should take this data")
  local tr, tc = compare(function() return sb_decode(sb_encode(t)) end,
                         function() return decode(encode(t)) end, 10)
  report(("%s %.2f MiB"):format(name, size / 2 ^ 20), 0.8, tr, tc, "ms")
  t = nil
end

-- The same records with one shared subtable: the general path (string.buffer would copy it twice).
do
  local t = records(6900)
  local shared = { "shared" }
  t[1].also, t[2].also = shared, shared
  local plain = records(6900)
  local tr, tc = compare(function() return sb_decode(sb_encode(plain)) end,
                         function() return decode(encode(t)) end, 5)
  report("records, one shared ref (general)", nil, tr, tc, "ms")
  -- The closures above stay in `loops` (a weak-keyed table whose values refer to their keys
  -- is never cleared in LuaJIT): without this, their two sets of records (55,000 tables) stay
  -- alive, and every collection during the small-message rows below marks them (measured:
  -- small tables 0.34-0.88 M/s with them alive, 1.22-1.34 M/s without, same run conditions).
  t, plain, shared = nil, nil, nil
end

-- -- Small messages --

local function small(i) return { i, i + 1, "x", { k = i } } end
local tr, tc = compare(function(i) return sb_decode(sb_encode(small(i))) end,
                       function(i) return decode(encode(small(i))) end, 200000)
report("small tables {i, i+1, 'x', {k=i}}", nil, tr, tc)
local small_rate = 1 / tc

tr, tc = compare(function(i) return sb_decode(sb_encode(i + 0.5)) end,
                 function(i) return decode(encode(i + 0.5)) end, 1000000)
report("numbers", nil, tr, tc)

-- string.buffer moves one value: the reference packs the list in a table with its count.
tr, tc = compare(function(i) return unpack(sb_decode(sb_encode({ n = 3, "str", i, true }))) end,
                 function(i) return decode(encode("str", i, true)) end, 1000000)
report("arg list ('str', i, true)", nil, tr, tc)

-- Through a native message (what a channel does): encode_message, decode_message, free.
local encode_message, decode_message, free = encoder.encode_message, encoder.decode_message, C.ljasync_message_free
tr, tc = compare(function(i) return sb_decode(sb_encode(small(i))) end,
                 function(i) local m = encode_message(small(i)); local v = decode_message(m); free(m); return v end, 200000)
report("small tables via native message", nil, tr, tc)

-- A function with upvalues (general path; string.buffer cannot move functions: reference is
-- string.dump + loadstring of an upvalue-free function).
local k1, k2 = 3, { 1, 2 }
local function f(x) return x * k1 + k2[1] end
local function g(x) return x * 3 + 1 end
tr, tc = compare(function() return loadstring(string.dump(g)) end,
                 function() return decode(encode(f)) end, 20000)
report("function with 2 upvalues (vs dump+load)", nil, tr, tc)

bench_report.row{ section = "encoder", what = "small tables, encode+decode on one core", goal = ">= 1 M/s",
  figure = small_rate * 1e-6, unit = "M/s", met = small_rate >= 1e6,
  line = ("goals: 1 MiB nested >= 0.8x string.buffer; small tables %.2f M/s encode+decode on one core (>= 1 M/s)"):format(small_rate * 1e-6) }
