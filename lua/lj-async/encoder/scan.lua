-- Private: decides whether values are plain data that string.buffer encodes exactly as they
-- are: a tree of nil, booleans, numbers, strings, tables without metatables (no table reached
-- twice, no deeper than string.buffer allows), int64/uint64 and complex cdata.
-- Small messages get a loop-free scan in Lua, bigger ones the core's (Encoder/PlainScan.swift).
-- Every function here runs on the thread that owns the calling Lua state.
local ffi = require "ffi"
local tnew = require "table.new"
local native = require "lj-async.encoder.native"

local type, next, tonumber, pcall, format = type, next, tonumber, pcall, string.format
local getmt, setmt = debug.getmetatable, setmetatable
local ffi_typeof, ffi_istype, ffi_cast, ffi_new = ffi.typeof, ffi.istype, ffi.cast, ffi.new

local u32p, u64p = ffi_typeof("uint32_t *"), ffi_typeof("uint64_t *")
local int64_ct, uint64_ct, complex_ct = ffi_typeof("int64_t"), ffi_typeof("uint64_t"), ffi_typeof("complex")

local S = {}

-- string.buffer refuses deeper nesting (LJ_SERIALIZE_DEPTH).
local PLAIN_DEPTH = 100

local seen, seen_list, nseen = tnew(0, 16), tnew(16, 0), 0   -- tables met by the scans

-- Scalars string.buffer encodes exactly as they are.
local function plain_scalar(v, tv)
  if tv == "cdata" then
    return ffi_istype(int64_ct, v) or ffi_istype(uint64_ct, v) or ffi_istype(complex_ct, v)
  end
  return tv == "nil"
end

-- Notes table t as met by the small scan (at most 4 tables, compared directly: a hash set
-- would rehash every few messages): false if met before or with a metatable, nil if too many.
local function take(t)
  if getmt(t) ~= nil then return false end
  local n = nseen
  if n >= 4 then return nil end
  if n >= 1 and (seen_list[1] == t or n >= 2 and (seen_list[2] == t or n >= 3 and seen_list[3] == t)) then
    return false
  end
  n = n + 1
  nseen, seen_list[n] = n, t
  return true
end

-- The same for the loop scan (any number of tables, in a hash set).
local function take_hashed(t)
  if seen[t] or getmt(t) ~= nil then return false end
  local n = nseen + 1
  nseen, seen[t], seen_list[n] = n, true, t
  return true
end

local function plain_entry(k, v, take)
  local tv = type(v)
  if tv == "table" then
    local r = take(v)
    if not r then return r end
  elseif tv ~= "string" and tv ~= "number" and tv ~= "boolean" and not plain_scalar(v, tv) then
    return false
  end
  local tk = type(k)
  if tk == "table" then return take(k) end
  return tk == "string" or tk == "number" or tk == "boolean" or plain_scalar(k, tk)
end

-- Small messages are scanned without loops or recursion, so the scan becomes part of the
-- caller's trace (a loop here would end it, and its exits could not return to the caller).
-- One table of up to 6 entries: true or false; nil when it has more.
local function small_table(t)
  local r
  local k, v = next(t)
  if k == nil then return true end
  r = plain_entry(k, v, take)
  if not r then return r end
  k, v = next(t, k)
  if k == nil then return true end
  r = plain_entry(k, v, take)
  if not r then return r end
  k, v = next(t, k)
  if k == nil then return true end
  r = plain_entry(k, v, take)
  if not r then return r end
  k, v = next(t, k)
  if k == nil then return true end
  r = plain_entry(k, v, take)
  if not r then return r end
  k, v = next(t, k)
  if k == nil then return true end
  r = plain_entry(k, v, take)
  if not r then return r end
  k, v = next(t, k)
  if k == nil then return true end
  r = plain_entry(k, v, take)
  if not r then return r end
  if next(t, k) == nil then return true end
  return nil
end

-- Up to 4 tables reachable from root: true when plain, false when not, nil when bigger.
local function small_scan(root)
  local r = take(root)
  if not r then return r end
  local first = nseen
  r = small_table(root)
  if r ~= true or nseen == first then return r end
  r = small_table(seen_list[first + 1])
  if r ~= true or nseen == first + 1 then return r end
  r = small_table(seen_list[first + 2])
  if r ~= true or nseen == first + 2 then return r end
  r = small_table(seen_list[first + 3])
  if r ~= true or nseen == first + 3 then return r end
  return nil
end

local function small_value(v)
  local tv = type(v)
  if tv == "table" then return small_scan(v) end
  return tv == "string" or tv == "number" or tv == "boolean" or plain_scalar(v, tv)
end

-- Forgets the tables the small scan met (without keeping them alive), loop-free.
local function forget_small()
  local n = nseen
  if n >= 1 then seen_list[1] = nil end
  if n >= 2 then seen_list[2] = nil end
  if n >= 3 then seen_list[3] = nil end
  if n >= 4 then seen_list[4] = nil end
  nseen = 0
end

-- Forgets the tables the loop scan met.
local function forget_seen()
  for i = 1, nseen do seen[seen_list[i]] = nil; seen_list[i] = nil end
  if nseen > 65536 then seen, seen_list = tnew(0, 16), tnew(16, 0) end
  nseen = 0
end

-- Bigger data, in Lua: one flat loop over a queue of tables (used without the core's scan).
local function loop_scan(root)
  if not take_hashed(root) then return false end
  local head, level_end, depth = nseen, nseen, 1
  local t, k, v = root, nil, nil
  while true do
    k, v = next(t, k)
    if k == nil then
      if head == level_end then  -- the last table of this depth: the next one is deeper
        depth, level_end = depth + 1, nseen
      end
      head = head + 1
      if head > nseen then return true end
      t = seen_list[head]
    else
      local before = nseen
      if not plain_entry(k, v, take_hashed) then return false end
      if nseen > before and depth >= PLAIN_DEPTH then return false end
    end
  end
end

-- The core's scan (Encoder/PlainScan.swift) reads LuaJIT's tables in place: it is used only
-- after the checks below confirm the object layout it assumes (LuaJIT 2.1, GC64). It is what
-- meets the goal of >= 0.8x string.buffer on 1 MiB of plain data: bench/encoder_bench.lua,
-- same machine and session (2026-12-01), ratio with it / without it (the Lua loop_scan):
-- records 0.91 / 0.48, matrix 0.85 / 0.12, string-keyed tree 0.89 / 0.37.
local native_scan = false
local scan_roots = ffi_new("uint64_t[?]", 256)
local scan_ctypes = ffi_new("uint16_t[3]", tonumber(int64_ct), tonumber(uint64_ct), tonumber(complex_ct))
local scan_tables = ffi_new("intptr_t[1]")
local SCRATCH_MIN, SCRATCH_MAX = 1024, 524288   -- slots of 8 bytes: 8 KiB .. 4 MiB per state
local scratch_slots = SCRATCH_MIN
local scratch = ffi_new("uint64_t[?]", 1 + scratch_slots)

local function address_of(t)  -- only for tables without a metatable (no __tostring)
  return tonumber(format("%p", t))
end

-- Plain verdict for args[1..n] from the core's scan.
local function native_plain(n, args)
  if n > 256 then return false end
  local roots = 0
  for i = 1, n do
    local v = args[i]
    if type(v) == "table" then
      if getmt(v) ~= nil then return false end
      scan_roots[roots] = address_of(v)
      roots = roots + 1
    elseif not small_value(v) then
      return false
    end
  end
  local plain = native.scan(scan_roots, roots, PLAIN_DEPTH, scan_ctypes, scratch, scratch_slots, scan_tables) == 1
  local tables = tonumber(scan_tables[0])
  if tables * 2 > scratch_slots and scratch_slots < SCRATCH_MAX then
    -- The core had to allocate: lend it enough memory next time (kept at half load at most).
    while tables * 2 > scratch_slots and scratch_slots < SCRATCH_MAX do scratch_slots = scratch_slots * 2 end
    scratch = ffi_new("uint64_t[?]", 1 + scratch_slots)
  end
  return plain
end

-- Plain verdict for args[1..n] in Lua.
local function lua_plain(n, args)
  local plain = true
  for i = 1, n do
    local v = args[i]
    if type(v) == "table" then plain = loop_scan(v) else plain = small_value(v) and true end
    if not plain then break end
  end
  forget_seen()
  return plain
end

do
  local function layout_ok()
    local u32 = function(a, off) return ffi_cast(u32p, a + off)[0] end
    local u64 = function(a, off) return tonumber(ffi_cast(u64p, a + off)[0]) end
    local t, mt = tnew(7, 0), {}
    local a = address_of(t)
    if u32(a, 48) ~= 8 or u64(a, 16) ~= a + 64 or u64(a, 32) ~= 0 then return false end
    if u32(address_of(tnew(0, 8)), 52) ~= 7 then return false end
    setmt(t, mt)
    if u64(a, 32) ~= address_of(mt) then return false end
    -- Verdicts on known graphs must match the Lua scan's.
    local shared, cyclic, deep, deeper = {}, {}, {}, {}
    cyclic.self = cyclic
    local c = deep
    for _ = 2, PLAIN_DEPTH do c.x = {}; c = c.x end
    deeper.x = deep
    local big = { name = "big", [{ key = true }] = { 1 } }
    for i = 1, 300 do big[i] = { i, "s" .. i } end
    local probes = {
      { 1, "a", true, false, { x = 2.5 }, [{}] = 1 },
      { ffi_new("int64_t", 1), ffi_new("uint64_t", 2), ffi_new("complex", 1, 2) },
      deep, deeper, big, { big, big[7] }, { shared, shared }, cyclic,
      { setmt({}, {}) }, { print }, { ffi_new("int[1]") }, { coroutine.create(print) }, { io.stdout },
    }
    for i = 1, #probes do
      local expect = lua_plain(1, { probes[i] })
      if native_plain(1, { probes[i] }) ~= expect or expect ~= (i <= 3 or i == 5) then return false end
    end
    return true
  end
  if ffi.abi("gc64") and ffi.abi("64bit") then
    -- The verdict holds for the whole process (one LuaJIT): the first state records it.
    local C = require("lj-async.core").C
    local memo = C.ljasync_memo_get("encoder.native_scan")
    if memo >= 0 then
      native_scan = memo == 1
    else
      local ok, res = pcall(layout_ok)
      native_scan = ok and res or false
      C.ljasync_memo_set("encoder.native_scan", native_scan and 1 or 0)
    end
  end
end
S.native = native_scan

--- Whether v is plain: true, false, or nil when it has too many tables for the small scan
--- (then ask big_plain). Tables met are remembered until forget_small().
S.small_value = small_value
S.forget_small = forget_small

--- Whether args[1..n] are plain, however big.
function S.big_plain(n, args)
  if native_scan then return native_plain(n, args) end
  return lua_plain(n, args)
end

return S
