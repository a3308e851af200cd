-- Decoder fuzz: 100,000 mutated, re-signed encodings (byte flips, truncations, insertions,
-- length-field edits, tag swaps) over a corpus of every kind of value that crosses, decoded in
-- child luajit processes, 1,000 per child, so a crash ends one batch and is found: a batch that
-- crashes is bisected down to the single case, which the failure names (rerun it with
-- `luajit spec/fuzz/decoder_fuzz_child.lua SEED 0 0 200 CASE` to see its bytes).
-- Each case must decode to values or raise a clear decoder error; the child judges which.
-- LJASYNC_FUZZ_CASES and LJASYNC_FUZZ_SEED change the count and the seed (default: fixed).
local CHILD = "spec/fuzz/decoder_fuzz_child.lua"
local LUAJIT = os.getenv("LJASYNC_FUZZ_LUAJIT") or "luajit"
local CASES = tonumber(os.getenv("LJASYNC_FUZZ_CASES")) or 100000
local SEED = tonumber(os.getenv("LJASYNC_FUZZ_SEED")) or 1
local BATCH = 1000

-- Runs cases first .. first + count - 1 in a child: whether it ended normally, the cases it
-- judged unclear ({ case, message }), and its counts of values and errors.
local function run(first, count, rep)
  local cmd = ("%s %s %d %d %d %d 2>&1; echo \"exit $?\""):format(LUAJIT, CHILD, SEED, first, count, rep or 1)
  local p = assert(io.popen(cmd))
  local out = p:read("*a")
  p:close()
  local unclear, lines = {}, "\n" .. out
  for case, msg in lines:gmatch("\ncase (%d+) ([^\n]*)") do unclear[#unclear + 1] = { tonumber(case), msg } end
  local cases, values, errors = lines:match("\ndone (%d+) (%d+) (%d+)\n")
  local ended = out:match("exit 0\n$") ~= nil and cases ~= nil
  return ended, unclear, tonumber(values) or 0, tonumber(errors) or 0, out
end

-- The single case of first .. first + count - 1 that crashes a child (the batch crashed). Each
-- case is decoded 200 times, so that it also runs on a trace.
local REP = 200
local function bisect(first, count)
  if run(first, count, REP) then return nil end
  while count > 1 do
    local half = math.floor(count / 2)
    if not run(first, half, REP) then
      count = half
    else
      local ended = run(first + half, count - half, REP)
      if ended then return nil end  -- the crash needs several cases together
      first, count = first + half, count - half
    end
  end
  return first
end

describe("lj-async.encoder decoding forged bytes", function()
  it(("survives %d mutated re-signed encodings, each decoded or refused clearly"):format(CASES), function()
    local crashes, unclear, values, errors = {}, {}, 0, 0
    for first = 0, CASES - 1, BATCH do
      local count = math.min(BATCH, CASES - first)
      local ended, bad, v, e, out = run(first, count)
      if not ended then
        local case = bisect(first, count)
        crashes[#crashes + 1] = case and ("case %d (seed %d)"):format(case, SEED)
          or ("batch %d..%d (seed %d), not one case alone: %s"):format(first, first + count - 1, SEED, out:sub(-300))
      end
      for _, u in ipairs(bad) do unclear[#unclear + 1] = ("case %d: %s"):format(u[1], u[2]) end
      values, errors = values + v, errors + e
    end
    assert.same({}, crashes)
    assert.same({}, unclear)
    -- Both outcomes occur: the mutations neither always break the bytes nor never.
    assert.is_true(values > CASES / 100, "too few cases decoded: " .. values)
    assert.is_true(errors > CASES / 2, "too few cases refused: " .. errors)
    print(("\n%d cases: %d decoded, %d refused, 0 crashes"):format(CASES, values, errors))
  end)
end)
