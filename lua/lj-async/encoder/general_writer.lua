-- Private: writes the encoder's general format, for what string.buffer cannot carry as is:
-- shared and cyclic tables, portable metatables, functions with upvalues, pointers, structs,
-- handles (encoder/reader.lua reads it; docs/encoder.md has the layout).
--
-- Each value is one tag byte of ours followed by fields in string.buffer's own encoding
-- (buffer:encode of a number or string), or by raw bytes for structs. This path mostly runs
-- in the interpreter (debug.* is not compiled), so it makes no cdata per value.
-- Every function here runs on the thread that owns the calling Lua state.
local ffi = require "ffi"
local bit = require "bit"
local buffer = require "string.buffer"
local registry = require "lj-async.encoder.registry"
local modules = require "lj-async.encoder.modules"
local native = require "lj-async.encoder.native"

local type, next, rawget, tostring, error, pcall, format, char, dump, concat =
      type, next, rawget, tostring, error, pcall, string.format, string.char, string.dump, table.concat
local getmt, setmt = debug.getmetatable, setmetatable
local getupvalue, getinfo, upvalueid = debug.getupvalue, debug.getinfo, debug.upvalueid
local ffi_typeof, ffi_cast, ffi_sizeof = ffi.typeof, ffi.cast, ffi.sizeof
local band, bor, rshift = bit.band, bit.bor, bit.rshift
local C, checksum, SEED, mark = native.C, native.checksum, native.CHECKSUM_SEED, native.mark
local classify, name_by_mt = registry.classify, registry.name_by_mt
local T, FIXED = native.T, native.FIXED

local u32p, u64p, voidp = ffi_typeof("uint32_t *"), ffi_typeof("uint64_t *"), ffi_typeof("void *")
local uint64_ct, uintptr_ct = ffi_typeof("uint64_t"), ffi_typeof("uintptr_t")

local G = {}

local TAG_BYTE = char(native.TAG_GENERAL)
local TAG = {}
for _, t in next, T do TAG[t] = char(t) end
local T_LEAF, T_TABLE, T_TABLE_MT, T_END, T_REF, T_FUNC, T_UPJOIN, T_MODULE, T_MODFIELD, T_POINTER, T_CVALUE,
      T_HANDLE = T.LEAF, T.TABLE, T.TABLE_MT, T.END, T.REF, T.FUNC, T.UPJOIN, T.MODULE, T.MODFIELD, T.POINTER,
      T.CVALUE, T.HANDLE

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

-- What encoding a function needs that does not change: its bytecode, the bytecode's mark
-- (Encoder/BytecodeMark.swift: it lets a reader of bytes from elsewhere load only bytecode this
-- process dumped) and upvalue count, or false for a C function. Kept per function object, as
-- long as the function lives.
local function_facts = setmt({}, { __mode = "k" })

local function facts_of(f)
  local facts = function_facts[f]
  if facts == nil then
    local info = getinfo(f, "Su")
    if info.what ~= "C" then
      local code = dump(f)
      facts = { code = code, mark = mark(code, #code), nups = info.nups }
    else
      facts = false
    end
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
  b:encode(facts.mark)
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

-- A light spawn's channel handle (Sources/CLJAsyncLua/light_channel.c) moves as the ordinary
-- handle of its channel.
local function light_handle(v)
  local mt = debug.getregistry()["lj-async.light.channel"]
  if mt == nil or getmt(v) ~= mt then return nil end
  return require("lj-async.light_channel").ffi_of(v)
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
    local h = light_handle(v)
    if h then return put_cdata(S, h, d) end
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
    p[0] = bor(native.TAG_GENERAL, native.HAS_HANDLES)
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

return G
