-- Private: the encoder's general format, for what string.buffer cannot carry as is: shared and
-- cyclic tables, portable metatables, functions with upvalues, pointers, structs, handles.
--
-- Each value is one tag byte of ours followed by fields in string.buffer's own encoding
-- (buffer:encode of a number or string), or by raw bytes for structs. This path mostly runs
-- in the interpreter (debug.* and recursion are not compiled), so it makes no cdata per value.
-- Every function here runs on the thread that owns the calling Lua state.
local ffi = require "ffi"
local bit = require "bit"
local buffer = require "string.buffer"
local tnew = require "table.new"
local registry = require "lj-async.encoder.registry"
local modules = require "lj-async.encoder.modules"
local native = require "lj-async.encoder.native"

local type, next, rawget, tonumber, tostring, error, pcall, format, byte, char, dump, concat =
      type, next, rawget, tonumber, tostring, error, pcall, string.format, string.byte, string.char,
      string.dump, table.concat
local getmt, setmt = debug.getmetatable, setmetatable
local getupvalue, setupvalue, getinfo = debug.getupvalue, debug.setupvalue, debug.getinfo
local upvalueid, upvaluejoin = debug.upvalueid, debug.upvaluejoin
local ffi_typeof, ffi_cast, ffi_sizeof, ffi_copy, ffi_new = ffi.typeof, ffi.cast, ffi.sizeof, ffi.copy, ffi.new
local band, bor, rshift = bit.band, bit.bor, bit.rshift
local C, checksum, SEED = native.C, native.checksum, native.CHECKSUM_SEED
local classify, ctype_of = registry.classify, registry.ctype_of
local mt_by_name, name_by_mt, handle_by_kind = registry.mt_by_name, registry.name_by_mt, registry.handle_by_kind

local u32p, u64p, voidp = ffi_typeof("uint32_t *"), ffi_typeof("uint64_t *"), ffi_typeof("void *")
local uint64_ct, uintptr_ct = ffi_typeof("uint64_t"), ffi_typeof("uintptr_t")

local G = {}

G.TAG, G.HAS_HANDLES = 0x02, 0x80
local TAG_BYTE = char(G.TAG)

local T_LEAF, T_TABLE, T_TABLE_MT, T_END, T_REF, T_FUNC, T_UPJOIN, T_MODULE, T_MODFIELD,
      T_POINTER, T_CVALUE, T_HANDLE = 0x13, 0x14, 0x15, 0x16, 0x17, 0x18, 0x19, 0x1a, 0x1b, 0x1c, 0x1d, 0x1e
local TAG = {}
for t = T_LEAF, T_HANDLE do TAG[t] = char(t) end
local FIXED = -1        -- element count written for cdata of fixed size

-- On a trace, LuaJIT releases before 2022-07 may read a number that buffer:decode() returned
-- from the decoder's scratch slot only where it is used, after later decodes overwrote it
-- ("x86/x64: Limit VLOAD fusion to simple cases"). Adding -0 (exact for every number, -0 and
-- NaN included, and never folded away) makes the read happen at once.
local NEG_ZERO = -0.0
function G.launder(v)
  if type(v) == "number" then return v + NEG_ZERO end
  return v
end
local launder = G.launder

-- -- Paths, for error messages --

-- Path steps: pkind[d] is 1 (argument index), 2 (key), 3 (upvalue name), 4 (a key itself).
local function path_string(pkind, pkey, d)
  local out = {}
  for i = 1, d do
    local k, kind = pkey[i], pkind[i]
    if kind == 1 then out[#out + 1] = "argument " .. k
    elseif kind == 3 then out[#out + 1] = " (upvalue '" .. k .. "')"
    elseif kind == 4 then out[#out + 1] = " (a key)"
    elseif type(k) == "string" and k:match("^[%a_][%w_]*$") then out[#out + 1] = "." .. k
    elseif type(k) == "string" then out[#out + 1] = format("[%q]", k)
    elseif type(k) == "number" or type(k) == "boolean" then out[#out + 1] = "[" .. tostring(k) .. "]"
    else out[#out + 1] = "[" .. type(k) .. " key]" end
  end
  return concat(out)
end

-- -- Writer --

--- Scratch for one encoding at a time (a second one is made when a call re-enters).
function G.new_writer()
  return {
    buf = buffer.new(),                      -- payload being written
    out = buffer.new(),                      -- header, handle table, checksum, payload
    ids = {}, objs = {}, nobj = 0,           -- object -> id, id -> object
    upids = {},                              -- upvalue id -> fid * 256 + index
    haddr = {}, hindex = {}, nh = 0,         -- handle table: index -> address, address -> index
    pkind = {}, pkey = {},                   -- path of the value being written
  }
end

--- Forgets everything the last encoding referenced (so it does not keep values alive).
function G.reset_writer(S)
  local ids, objs = S.ids, S.objs
  for i = 1, S.nobj do ids[objs[i]] = nil; objs[i] = nil end
  if S.nobj > 65536 then S.ids, S.objs = {}, {} end  -- do not keep huge scratch tables
  S.nobj = 0
  for k in next, S.upids do S.upids[k] = nil end
  for i = 1, S.nh do S.hindex[S.haddr[i]] = nil; S.haddr[i] = nil end
  S.nh = 0
  S.buf:reset(); S.out:reset()
end

local function fail(S, d, msg)
  error(path_string(S.pkind, S.pkey, d) .. ": " .. msg, 0)
end

-- A second mention of an object already written.
local function ref_or_new(S, obj)
  local id = S.ids[obj]
  if id then
    local b = S.buf
    b:put(TAG[T_REF])
    b:encode(id)
    return true
  end
  id = S.nobj + 1
  S.nobj, S.ids[obj], S.objs[id] = id, id, obj
  return false
end

local put_value

local function put_table(S, t, d)
  if ref_or_new(S, t) then return end
  local b = S.buf
  local mt = getmt(t)
  if mt ~= nil then
    local name = name_by_mt[mt]
    if not name then
      fail(S, d, "cannot move a table with a metatable that is not registered (use encoder.register_portable_metatable)")
    end
    b:put(TAG[T_TABLE_MT])
    b:encode(name)
  else
    b:put(TAG[T_TABLE])
  end
  local n = #t
  b:encode(n)
  local pkind, pkey = S.pkind, S.pkey
  local e = d + 1
  for i = 1, n do
    pkind[e], pkey[e] = 2, i
    put_value(S, rawget(t, i), e)
  end
  for k, v in next, t do
    if type(k) ~= "number" or k < 1 or k > n or k % 1 ~= 0 then
      pkind[e], pkey[e] = 4, k
      put_value(S, k, e)
      pkind[e], pkey[e] = 2, k
      put_value(S, v, e)
    end
  end
  b:put(TAG[T_END])
end

-- What encoding a function needs that does not change: its bytecode and upvalue count, or
-- false for a C function. Kept per function object, as long as the function lives.
local function_facts = setmt({}, { __mode = "k" })

local function facts_of(f)
  local facts = function_facts[f]
  if facts == nil then
    local info = getinfo(f, "Su")
    facts = info.what ~= "C" and { code = dump(f), nups = info.nups }
    function_facts[f] = facts
  end
  return facts
end

local function put_function(S, f, d)
  local facts = facts_of(f)
  if not facts then fail(S, d, "cannot move a C function") end
  if ref_or_new(S, f) then return end
  local id = S.nobj
  local b = S.buf
  b:put(TAG[T_FUNC])
  b:encode(facts.code)
  b:encode(facts.nups)
  local pkind, pkey, upids = S.pkind, S.pkey, S.upids
  local e = d + 1
  for i = 1, facts.nups do
    local name, v = getupvalue(f, i)
    local uid = upvalueid(f, i)
    local first = upids[uid]
    if first then  -- another function of this message shares this upvalue: join it on decode
      b:put(TAG[T_UPJOIN])
      b:encode((first - first % 256) / 256)
      b:encode(first % 256)
    else
      upids[uid] = id * 256 + i
      pkind[e], pkey[e] = 3, name
      local tv = type(v)
      local mod = tv == "table" and modules.module_name(v)
      if mod then
        b:put(TAG[T_MODULE])
        b:encode(mod)
      elseif tv == "function" and not facts_of(v) then
        local mname, field = modules.field_name(v)
        if not mname then fail(S, e, "cannot move a C function") end
        b:put(TAG[T_MODFIELD])
        b:encode(mname)
        b:encode(field)
      else
        put_value(S, v, e)
      end
    end
  end
end

local function put_handle(S, h, spec, d)
  if S.ids[h] then return ref_or_new(S, h) end
  local addr = spec.address(h)
  if type(addr) ~= "number" or addr == 0 then fail(S, d, "cannot move a closed " .. spec.kind) end
  ref_or_new(S, h)
  local idx = S.hindex[addr]
  if not idx then
    idx = S.nh + 1
    S.nh, S.hindex[addr], S.haddr[idx] = idx, idx, addr
  end
  local b = S.buf
  b:put(TAG[T_HANDLE])
  b:encode(idx)
  b:encode(spec.kind)
  b:encode(spec.module)
end

local function put_cdata(S, v, d)
  local c = classify(ffi_typeof(v))
  local what, b = c.what, S.buf
  if what == "leaf" then
    b:put(TAG[T_LEAF])
    return b:encode(v)
  end
  if what == "handle" then return put_handle(S, v, c.handle, d) end
  if what == "refuse" then fail(S, d, c.why) end
  if ref_or_new(S, v) then return end
  if what == "pointer" then
    b:put(TAG[T_POINTER])
    b:encode(c.name)
    return b:encode(ffi_cast(uint64_ct, ffi_cast(uintptr_ct, v)))
  end
  local size, nelem = c.size, FIXED
  if what == "variable" then
    size = ffi_sizeof(v)
    nelem = (size - c.base) / c.esize
    if nelem % 1 ~= 0 or nelem < 0 or ffi_sizeof(ffi_typeof(v), nelem) ~= size then
      fail(S, d, "cannot move a variable-length cdata of type '" .. c.name .. "' (its element count is ambiguous)")
    end
  end
  b:put(TAG[T_CVALUE])
  b:encode(c.name)
  b:encode(size)
  b:encode(nelem)
  local box = c.box
  if box then box[0] = v; v = box end
  b:putcdata(v, size)
end

put_value = function(S, v, d)
  local tv = type(v)
  if tv == "table" then return put_table(S, v, d) end
  if tv == "string" or tv == "number" or tv == "boolean" or tv == "nil" then
    local b = S.buf
    b:put(TAG[T_LEAF])
    return b:encode(v)
  end
  if tv == "function" then return put_function(S, v, d) end
  if tv == "cdata" then return put_cdata(S, v, d) end
  if tv == "thread" then fail(S, d, "cannot move a coroutine") end
  if tv == "userdata" then
    -- string.buffer takes light userdata (an address) and refuses full userdata.
    if not pcall(buffer.encode, v) then fail(S, d, "cannot move a userdata") end
    local b = S.buf
    b:put(TAG[T_LEAF])
    return b:encode(v)
  end
  fail(S, d, "cannot move a " .. tv)
end

-- The 4 little-endian bytes of a uint32 (a string: cheaper than cdata in the interpreter).
local function u32_bytes(x)
  return char(band(x, 0xff), band(rshift(x, 8), 0xff), band(rshift(x, 16), 0xff), rshift(x, 24))
end

--- Encodes args[1..n] into S.out: tag (0x02, | 0x80 with handles), handle table (uint32 count,
--- 8-byte addresses), payload (count, values), uint32 checksum of all but the tag.
--- Raises the message naming the path on values that cannot move. On success the encoding
--- owns one reference per handle table entry.
function G.encode(S, n, args)
  local b = S.buf
  b:encode(n)
  local pkind, pkey = S.pkind, S.pkey
  for i = 1, n do
    pkind[1], pkey[1] = 1, i
    put_value(S, args[i], 1)
  end
  local out, nh = S.out, S.nh
  out:reset()
  if nh > 0 then
    local p = out:reserve(5 + 8 * nh)
    p[0] = bor(G.TAG, G.HAS_HANDLES)
    ffi_cast(u32p, p + 1)[0] = nh
    local a = ffi_cast(u64p, p + 5)
    for i = 1, nh do a[i - 1] = S.haddr[i] end
    out:commit(5 + 8 * nh)
  else
    out:put(TAG_BYTE)
  end
  out:put(b)
  local p, len = out:ref()
  out:put(u32_bytes(checksum(p + 1, len - 1, SEED)))
  -- Nothing can fail from here on: the encoding now owns one reference per handle.
  for i = 1, nh do C.ljasync_object_retain(ffi_cast(voidp, S.haddr[i])) end
end

-- -- Reader --

local function malformed(what) error("malformed encoded data: " .. what, 0) end

--- Scratch for one decoding at a time.
function G.new_reader()
  return { buf = buffer.new(), objs = {}, nobj = 0, haddr = {}, nh = 0 }
end

function G.reset_reader(R)
  R.buf:reset()
  local objs = R.objs
  for i = 1, R.nobj do objs[i] = nil end
  R.nobj = 0
  for i = 1, R.nh do R.haddr[i] = nil end
  R.nh = 0
  if #objs > 65536 then R.objs = {} end
end

local function get_tag(b)
  local c = b:get(1)
  if c == "" then malformed("truncated") end
  return byte(c)
end

-- A count or index: an integer >= 0 (or FIXED, where `fixed_ok`).
local function get_count(b, what, fixed_ok)
  local n = launder(b:decode())
  if type(n) ~= "number" or n % 1 ~= 0 or n < 0 and not (fixed_ok and n == FIXED) then
    malformed("bad " .. what)
  end
  return n
end

local function get_string(b, what)
  local s = b:decode()
  if type(s) ~= "string" then malformed(what .. " is not a string") end
  return s
end

local function new_object(R, v)
  local id = R.nobj + 1
  R.nobj, R.objs[id] = id, v
end

local value_of

local function get_value(R, b)
  return value_of(R, b, get_tag(b))
end

local function get_table(R, b, tag)
  local mt
  if tag == T_TABLE_MT then
    local name = get_string(b, "metatable name")
    mt = mt_by_name[name]
    if not mt then
      error("metatable '" .. name .. "' is not registered in this state (encoder.register_portable_metatable)", 0)
    end
  end
  local narr = get_count(b, "array size")
  if narr > #b then malformed("table size exceeds the data") end
  local t = tnew(narr, 0)
  new_object(R, t)
  for i = 1, narr do t[i] = get_value(R, b) end
  while true do
    local ktag = get_tag(b)
    if ktag == T_END then break end
    local k = value_of(R, b, ktag)
    if k == nil or k ~= k then malformed("table key is nil or NaN") end
    t[k] = get_value(R, b)
  end
  if mt then setmt(t, mt) end
  return t
end

local function get_function(R, b)
  local code = get_string(b, "function")
  local nups = get_count(b, "upvalue count")
  if code:sub(1, 3) ~= "\27LJ" then malformed("function is not bytecode") end
  local f = loadstring(code)
  -- The upvalue count must be the one written (checked without building a debug.getinfo table).
  if not f or nups > 0 and getupvalue(f, nups) == nil or getupvalue(f, nups + 1) ~= nil then
    malformed("bad function bytecode")
  end
  new_object(R, f)
  for i = 1, nups do
    local tag = get_tag(b)
    if tag == T_UPJOIN then
      local g, j = R.objs[get_count(b, "function reference")], get_count(b, "upvalue index")
      if type(g) ~= "function" or j < 1 or getupvalue(g, j) == nil then malformed("bad upvalue join") end
      upvaluejoin(f, i, g, j)
    elseif tag == T_MODULE then
      setupvalue(f, i, require(get_string(b, "module name")))
    elseif tag == T_MODFIELD then
      local mname, field = get_string(b, "module name"), get_string(b, "field name")
      local v = require(mname)[field]
      if type(v) ~= "function" then
        error(format("upvalue '%s.%s' is not a function in this state", mname, field), 0)
      end
      setupvalue(f, i, v)
    else
      setupvalue(f, i, value_of(R, b, tag))
    end
  end
  return f
end

local function get_handle(R, b)
  local idx = get_count(b, "handle index")
  local kind, module = get_string(b, "handle kind"), get_string(b, "handle module")
  local addr = R.haddr[idx]
  if not addr then malformed("handle index out of range") end
  local spec = handle_by_kind[kind]
  if not spec then
    require(module)
    spec = handle_by_kind[kind]
    if not spec then
      error(format("handle kind '%s' is not registered in this state (module '%s' did not register it)", kind, module), 0)
    end
  end
  local h = spec.wrap(addr)
  new_object(R, h)
  return h
end

local function get_pointer(R, b)
  local name = get_string(b, "ctype name")
  local ct = ctype_of(name)
  local address = b:decode()
  if type(address) ~= "cdata" then malformed("bad pointer") end
  local ok, v = pcall(ffi_cast, ct, address)
  if not ok then error(format("ctype '%s' is not a pointer type in this state", name), 0) end
  new_object(R, v)
  return v
end

local function get_cvalue(R, b)
  local name = get_string(b, "ctype name")
  local size, nelem = get_count(b, "size"), get_count(b, "element count", true)
  local ct, scalar = ctype_of(name)
  local p, left = b:ref()
  if size > left then malformed("truncated") end
  local v, expect
  if nelem == FIXED then
    expect = ffi_sizeof(ct)
    if expect == size then
      if scalar then  -- copy into a box, then unbox: a boxed scalar has no address to copy to
        local box = ffi_new(name .. "[1]")  -- not ffi.typeof("$[1]", ct): see registry.lua
        ffi_copy(box, p, size)
        v = ffi_new(ct, box[0])
      else
        v = ffi_new(ct)
        ffi_copy(v, p, size)
      end
    end
  else
    local ok, s = pcall(ffi_sizeof, ct, nelem)
    expect = ok and s
    if s == size then
      v = ffi_new(ct, nelem)
      ffi_copy(v, p, size)
    end
  end
  if not v then
    error(format("ctype '%s' has size %s in this state, but the value has %d bytes", name, tostring(expect), size), 0)
  end
  b:skip(size)
  new_object(R, v)
  return v
end

-- The value whose tag was just read.
value_of = function(R, b, tag)
  if tag == T_LEAF then return launder(b:decode()) end
  if tag == T_TABLE or tag == T_TABLE_MT then return get_table(R, b, tag) end
  if tag == T_REF then
    local v = R.objs[get_count(b, "reference")]
    if v == nil then malformed("reference to an unknown object") end
    return v
  end
  if tag == T_FUNC then return get_function(R, b) end
  if tag == T_CVALUE then return get_cvalue(R, b) end
  if tag == T_POINTER then return get_pointer(R, b) end
  if tag == T_HANDLE then return get_handle(R, b) end
  malformed(format("unexpected tag 0x%02x", tag))
end

--- Decodes the general encoding of len bytes at p (the caller keeps them alive): returns the
--- count and a table of the values. Checks the checksum before reading anything else.
function G.decode(R, p, len)
  if len < 6 then malformed("truncated") end
  if ffi_cast(u32p, p + len - 4)[0] ~= checksum(p + 1, len - 5, SEED) then
    malformed("checksum mismatch")
  end
  local off, nh = 1, 0
  if band(p[0], G.HAS_HANDLES) ~= 0 then
    nh = ffi_cast(u32p, p + 1)[0]
    if nh > (len - 10) / 8 then malformed("truncated handle table") end
    off = 5 + 8 * nh
    local a = ffi_cast(u64p, p + 5)
    for i = 1, nh do
      local addr = tonumber(a[i - 1])
      if addr == 0 or addr >= 2 ^ 53 then malformed("bad handle address") end
      R.haddr[i] = addr
    end
    R.nh = nh
  end
  local b = R.buf
  b:set(p + off, len - off - 4)
  local n = get_count(b, "value count")
  if n > len then malformed("value count exceeds the data") end
  local vals = tnew(n, 0)
  for i = 1, n do vals[i] = get_value(R, b) end
  if #b ~= 0 then malformed("trailing bytes") end
  return n, vals
end

return G
