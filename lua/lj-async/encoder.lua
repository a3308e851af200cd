-- lj-async.encoder: the one place that decides which Lua values may cross between Lua states, and how.
--
-- Two encodings share one header (docs/encoder.md has the byte layout):
--   plain   (tag 0x01): trees of nil/boolean/number/string/table/int64/complex, handed as a whole
--                       to LuaJIT's string.buffer, which does the work in C;
--   general (tag 0x02): everything else (shared and cyclic tables, portable metatables, functions
--                       with upvalues, pointers, structs, shared handles), written value by value
--                       in Lua; its leaves still go through string.buffer, whose tag space leaves
--                       0x13..0x1f free for ours. A checksum guards it against corruption.
-- Every function here runs on the thread that owns the calling Lua state.
local ffi = require "ffi"
local bit = require "bit"
local buffer = require "string.buffer"
local core = require "lj-async.core"
local tnew = require "table.new"

local C = core.C
local type, next, select, rawget, rawset, tonumber, tostring, error, pcall, unpack =
      type, next, select, rawget, rawset, tonumber, tostring, error, pcall, unpack
local getmt, setmt = debug.getmetatable, setmetatable
local getupvalue, setupvalue, getinfo = debug.getupvalue, debug.setupvalue, debug.getinfo
local upvalueid, upvaluejoin = debug.upvalueid, debug.upvaluejoin
local dump, byte, format = string.dump, string.byte, string.format
local ffi_typeof, ffi_istype, ffi_cast, ffi_sizeof, ffi_copy, ffi_new, ffi_string =
      ffi.typeof, ffi.istype, ffi.cast, ffi.sizeof, ffi.copy, ffi.new, ffi.string
local band, bor, bxor, rshift, rol, tobit = bit.band, bit.bor, bit.bxor, bit.rshift, bit.rol, bit.tobit

core.cdef_once("ljasync_encoder_marker", [[
typedef struct ljasync_encoder_marker ljasync_encoder_marker;
int32_t ljasync_encoder_scan(const uint64_t *roots, int32_t n, int32_t max_depth, const uint16_t *ctypes,
    uint64_t *scratch, intptr_t capacity, intptr_t *tables);
uint32_t ljasync_encoder_checksum(const void *p, size_t n, uint32_t seed);
]])

if not ffi.abi("le") then error("lj-async.encoder: the encoded format is little-endian; this machine is not", 0) end

local u8p = ffi_typeof("const uint8_t *")
local u32p = ffi_typeof("uint32_t *")
local u64p = ffi_typeof("uint64_t *")
local dblp = ffi_typeof("double *")
local voidp = ffi_typeof("void *")
local uintptr = ffi_typeof("uintptr_t")
local int64_ct, uint64_ct, complex_ct = ffi_typeof("int64_t"), ffi_typeof("uint64_t"), ffi_typeof("complex")

-- -- Format --

local TAG_PLAIN, TAG_GENERAL, HAS_HANDLES = 0x01, 0x02, 0x80
-- Our value tags, in the range string.buffer's format leaves unused (its own are 0x00..0x12, 0x20..).
local T_TABLE, T_TABLE_MT, T_END, T_REF, T_FUNC, T_UPJOIN, T_MODULE, T_MODFIELD,
      T_POINTER, T_CVALUE, T_HANDLE, T_NUMBER = 0x13, 0x14, 0x15, 0x16, 0x17, 0x18, 0x19, 0x1a, 0x1b, 0x1c, 0x1d, 0x1e
local T_FIRST, T_LAST = 0x13, 0x1e
local FIXED = 0xffffffff        -- element count written for cdata of fixed size
local PLAIN_DEPTH = 100         -- string.buffer refuses deeper nesting (LJ_SERIALIZE_DEPTH)

local M = {}

-- -- Registries (per state) --

local mt_by_name, name_by_mt = {}, setmt({}, { __mode = "k" })
local handle_by_kind = {}       -- kind -> spec
local cinfo = {}                -- ctype id -> classification of cdata of that type (see classify)
local ctype_names = {}          -- ctype id -> spelling registered with register_ctype
local ctype_cache = {}          -- spelling -> ctype, in this state (decode side)

--- Tables whose metatable is `mt` keep it when decoded in a state that registered the same name.
function M.register_portable_metatable(name, mt)
  if type(name) ~= "string" then error("bad metatable name: expected a string, got " .. type(name), 2) end
  if type(mt) ~= "table" then error("bad metatable: expected a table, got " .. type(mt), 2) end
  local old = mt_by_name[name]
  if old then name_by_mt[old] = nil end
  mt_by_name[name], name_by_mt[mt] = mt, name
end

--- Native shared objects: their cdata handles cross as references (see docs/encoder.md).
--- spec = { ctype = ctype or string, address = function(h) -> number,
---          wrap = function(address) -> new handle owning a new reference, module = "name" }
function M.register_handle(kind, spec)
  if type(kind) ~= "string" then error("bad handle kind: expected a string, got " .. type(kind), 2) end
  if type(spec) ~= "table" or type(spec.address) ~= "function" or type(spec.wrap) ~= "function"
     or type(spec.module) ~= "string" then
    error("bad handle spec for '" .. kind .. "': expected { ctype, address = function, wrap = function, module = string }", 2)
  end
  local ok, ct = pcall(ffi_typeof, spec.ctype)
  if not ok then error("bad handle spec for '" .. kind .. "': " .. tostring(ct), 2) end
  local entry = { kind = kind, address = spec.address, wrap = spec.wrap, module = spec.module }
  handle_by_kind[kind] = entry
  cinfo[tonumber(ct)] = { what = "handle", handle = entry }
end

--- Names a ctype the receiving state knows by this spelling (needed for anonymous structs
--- declared through a typedef, and for function pointers, whose ctype names lose their parameters).
function M.register_ctype(spelling)
  local ok, ct = pcall(ffi_typeof, spelling)
  if type(spelling) ~= "string" or not ok then
    error("bad ctype: expected a ctype spelling declared in this state, got " .. tostring(spelling), 2)
  end
  ctype_names[tonumber(ct)] = spelling
  for id, c in next, cinfo do  -- forget classifications that may have used the old name
    if c.what ~= "handle" then cinfo[id] = nil end
  end
end

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
  return table.concat(out)
end

-- -- Cdata classification (encode side) --

local CT_NUM, CT_STRUCT, CT_PTR, CT_ARRAY, CT_ENUM, CT_FUNC = 0, 1, 2, 3, 5, 6
local CTF_BOOL, CTF_FP, CTF_REF, CTF_VLA, CTF_COMPLEX = 0x08000000, 0x04000000, 0x00800000, 0x00100000, 0x04000000

-- The spelling of a ctype that means the same type in another state, or nil and why not.
local function portable_name(ct)
  local name = tostring(ct):sub(7, -2)  -- "ctype<...>"
  local unnamed
  name = name:gsub("%f[%w](%a+) (%d+)", function(kw, id)
    if kw ~= "struct" and kw ~= "union" and kw ~= "enum" then return nil end
    local reg = ctype_names[tonumber(id)]
    if reg then return reg end
    unnamed = unnamed or (kw .. " " .. id)
  end)
  if unnamed then
    return nil, format("cannot move a cdata of anonymous type '%s' (give it a tag, or name its typedef with encoder.register_ctype)", unnamed)
  end
  local reg = ctype_names[tonumber(ct)]
  if reg then return reg end
  if name:find("(", 1, true) then
    return nil, format("cannot move a cdata of type '%s': its name loses the parameter types (register the type's spelling with encoder.register_ctype)", name)
  end
  return name
end

-- What to do with cdata of ctype `ct` (cached per ctype id): { what = "leaf" | "pointer" |
-- "value" | "variable" | "handle" | "refuse", name, size, why }.
local function classify(ct)
  local id = tonumber(ct)
  local c = cinfo[id]
  if c then return c end
  local info = ffi.typeinfo(id).info
  local kind = rshift(info, 28)
  local vla = (kind == CT_ARRAY or kind == CT_STRUCT) and band(info, CTF_VLA) ~= 0
  local size = not vla and ffi_sizeof(ct) or nil  -- ffi.sizeof wants an element count for these
  if kind == CT_NUM and size == 8 and band(info, CTF_BOOL + CTF_FP) == 0 then
    c = { what = "leaf" }  -- 64-bit integers: string.buffer's int64/uint64
  elseif kind == CT_ARRAY and band(info, CTF_COMPLEX) ~= 0 and size == 16 then
    c = { what = "leaf" }  -- complex double: string.buffer's complex
  elseif kind == CT_FUNC then
    c = { what = "refuse", why = "cannot move a C function" }
  elseif kind == CT_PTR and band(info, CTF_REF) ~= 0 then
    c = { what = "refuse", why = "cannot move a C reference" }
  elseif kind == CT_PTR or kind == CT_NUM or kind == CT_ENUM or kind == CT_STRUCT or kind == CT_ARRAY then
    local name, why = portable_name(ct)
    if not name then
      c = { what = "refuse", why = why }
    elseif kind == CT_PTR then
      c = { what = "pointer", name = name }
    elseif vla then
      local s0, s1 = ffi_sizeof(ct, 0), ffi_sizeof(ct, 1)
      c = { what = "variable", name = name, base = s0, esize = s1 - s0 }
    elseif kind == CT_NUM or kind == CT_ENUM or kind == CT_ARRAY and band(info, CTF_COMPLEX) ~= 0 then
      -- A boxed scalar converts to its value, not to a pointer: its bytes go through a box.
      c = { what = "value", name = name, size = size, box = ffi_new(ffi_typeof("$[1]", ct)) }
    else
      c = { what = "value", name = name, size = size }
    end
  else
    c = { what = "refuse", why = "cannot move a cdata of type '" .. tostring(ct):sub(7, -2) .. "'" }
  end
  cinfo[id] = c
  return c
end

-- -- Loaded modules (upvalues naming a module cross as a reference to it) --

local module_of = setmt({}, { __mode = "k" })   -- table -> module name
local field_of = setmt({}, { __mode = "k" })    -- C function -> { module, field }

local maps_fingerprint = -1

-- Maps loaded modules and their C function fields, unless package.loaded kept its size since.
local function rebuild_module_maps()
  local count = 0
  for _ in next, package.loaded do count = count + 1 end
  if count == maps_fingerprint then return end
  maps_fingerprint = count
  for name, m in next, package.loaded do
    if type(name) == "string" and type(m) == "table" then
      local old = module_of[m]
      if not old or name < old then module_of[m] = name end
      for k, f in next, m do
        if type(k) == "string" and type(f) == "function" and getinfo(f, "S").what == "C" then
          local o = field_of[f]
          if not o or name < o[1] then field_of[f] = { name, k } end
        end
      end
    end
  end
end

-- The module a table is (package.loaded[name] == t), if any.
local function loaded_module(t)
  local name = module_of[t]
  if not (name and package.loaded[name] == t) then
    rebuild_module_maps()
    name = module_of[t]
  end
  if name and package.loaded[name] == t then return name end
  return nil
end

-- The module and field name of a C function found in a loaded module, if any.
local function loaded_field(f)
  local e = field_of[f]
  if not (e and type(package.loaded[e[1]]) == "table" and package.loaded[e[1]][e[2]] == f) then
    maps_fingerprint = -1  -- a miss for a C function is rare: look again for real
    rebuild_module_maps()
    e = field_of[f]
  end
  if e and type(package.loaded[e[1]]) == "table" and package.loaded[e[1]][e[2]] == f then return e[1], e[2] end
  return nil
end

-- -- Checksum --

-- Both formats carry a checksum of what follows the header (Encoder/Checksum.swift), checked
-- before any byte is decoded: string.buffer and the bytecode loader never see corrupted data.
local checksum = C.ljasync_encoder_checksum
local SEED = 0x2545f491

-- -- General encoder --

-- Per-call scratch (a second set is made when a call re-enters, e.g. from a finalizer).
local function new_context()
  return {
    buf = buffer.new(),     -- payload being written
    out = buffer.new(),     -- header + handle table + payload
    ids = {}, objs = {}, nobj = 0,           -- object -> id, id -> object
    upids = {},                              -- upvalue id -> fid * 256 + index
    haddr = {}, hindex = {}, nh = 0,         -- handle table
    pkind = {}, pkey = {},                   -- path of the value being written
  }
end

local function reset_context(S)
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

local function put_byte(b, x)
  local p = b:reserve(1)
  p[0] = x
  b:commit(1)
end

local function put_u32(b, x)
  local p = b:reserve(4)
  ffi_cast(u32p, p)[0] = x
  b:commit(4)
end

local function put_ref(S, id)
  local b = S.buf
  local p = b:reserve(5)
  p[0] = T_REF
  ffi_cast(u32p, p + 1)[0] = id
  b:commit(5)
end

local function new_id(S, obj)
  local id = S.nobj + 1
  S.nobj = id
  S.ids[obj], S.objs[id] = id, obj
  return id
end

local put_value

local function put_table(S, t, d)
  local id = S.ids[t]
  if id then return put_ref(S, id) end
  new_id(S, t)
  local b = S.buf
  local mt = getmt(t)
  if mt ~= nil then
    local name = name_by_mt[mt]
    if not name then
      fail(S, d, "cannot move a table with a metatable that is not registered (use encoder.register_portable_metatable)")
    end
    put_byte(b, T_TABLE_MT)
    b:encode(name)
  else
    put_byte(b, T_TABLE)
  end
  local n = #t
  put_u32(b, n)
  local hint_at = #b
  put_u32(b, 0)
  local pkind, pkey = S.pkind, S.pkey
  local e = d + 1
  for i = 1, n do
    pkind[e], pkey[e] = 2, i
    put_value(S, rawget(t, i), e)
  end
  local nh = 0
  for k, v in next, t do
    if type(k) ~= "number" or k < 1 or k > n or k % 1 ~= 0 then
      pkind[e], pkey[e] = 4, k
      put_value(S, k, e)
      pkind[e], pkey[e] = 2, k
      put_value(S, v, e)
      nh = nh + 1
    end
  end
  put_byte(b, T_END)
  ffi_cast(u32p, (b:ref()) + hint_at)[0] = nh
end

local function put_function(S, f, d)
  local id = S.ids[f]
  if id then return put_ref(S, id) end
  if getinfo(f, "S").what == "C" then fail(S, d, "cannot move a C function") end
  id = new_id(S, f)
  local code = dump(f)
  local b = S.buf
  put_byte(b, T_FUNC)
  put_u32(b, #code)
  b:put(code)
  local nups = getinfo(f, "u").nups
  put_byte(b, nups)
  local pkind, pkey, upids = S.pkind, S.pkey, S.upids
  local e = d + 1
  for i = 1, nups do
    local name, v = getupvalue(f, i)
    local uid = upvalueid(f, i)
    local first = upids[uid]
    if first then  -- another function of this message shares this upvalue: join it on decode
      put_byte(b, T_UPJOIN)
      put_u32(b, (first - first % 256) / 256)
      put_byte(b, first % 256)
    else
      upids[uid] = id * 256 + i
      pkind[e], pkey[e] = 3, name
      local tv = type(v)
      local mod = tv == "table" and loaded_module(v)
      if mod then
        put_byte(b, T_MODULE)
        b:encode(mod)
      elseif tv == "function" and getinfo(v, "S").what == "C" then
        local mname, field = loaded_field(v)
        if not mname then fail(S, e, "cannot move a C function") end
        put_byte(b, T_MODFIELD)
        b:encode(mname)
        b:encode(field)
      else
        put_value(S, v, e)
      end
    end
  end
end

local function put_handle(S, h, spec, d)
  local id = S.ids[h]
  if id then return put_ref(S, id) end
  local addr = spec.address(h)
  if type(addr) ~= "number" or addr == 0 then fail(S, d, "cannot move a closed " .. spec.kind) end
  new_id(S, h)
  local idx = S.hindex[addr]
  if not idx then
    idx = S.nh + 1
    S.nh = idx
    S.hindex[addr], S.haddr[idx] = idx, addr
  end
  local b = S.buf
  put_byte(b, T_HANDLE)
  put_u32(b, idx)
  b:encode(spec.kind)
  b:encode(spec.module)
end

local function put_cdata(S, v, d)
  local c = classify(ffi_typeof(v))
  local what, b = c.what, S.buf
  if what == "leaf" then return b:encode(v) end
  if what == "handle" then return put_handle(S, v, c.handle, d) end
  if what == "refuse" then fail(S, d, c.why) end
  local id = S.ids[v]
  if id then return put_ref(S, id) end
  new_id(S, v)
  if what == "pointer" then
    put_byte(b, T_POINTER)
    b:encode(c.name)
    local p = b:reserve(8)
    ffi_cast(u64p, p)[0] = ffi_cast(uintptr, v)
    b:commit(8)
    return
  end
  local size, nelem = c.size, FIXED
  if what == "variable" then
    size = ffi_sizeof(v)
    nelem = (size - c.base) / c.esize
    if nelem % 1 ~= 0 or nelem < 0 or ffi_sizeof(ffi_typeof(v), nelem) ~= size then
      fail(S, d, "cannot move a variable-length cdata of type '" .. c.name .. "' (its element count is ambiguous)")
    end
  end
  put_byte(b, T_CVALUE)
  b:encode(c.name)
  put_u32(b, size)
  put_u32(b, nelem)
  local box = c.box
  if box then box[0] = v; v = box end
  b:putcdata(v, size)
end

put_value = function(S, v, d)
  local tv = type(v)
  if tv == "table" then return put_table(S, v, d)
  elseif tv == "number" then  -- our own tag: see get_value
    local b = S.buf
    local p = b:reserve(9)
    p[0] = T_NUMBER
    ffi_cast(dblp, p + 1)[0] = v
    return b:commit(9)
  elseif tv == "string" or tv == "boolean" or tv == "nil" then return S.buf:encode(v)
  elseif tv == "function" then return put_function(S, v, d)
  elseif tv == "cdata" then return put_cdata(S, v, d)
  elseif tv == "thread" then fail(S, d, "cannot move a coroutine")
  elseif tv == "userdata" then
    -- string.buffer takes light userdata (an address) and refuses full userdata.
    local ok = pcall(buffer.encode, v)
    if not ok then fail(S, d, "cannot move a userdata") end
    return S.buf:encode(v)
  end
  fail(S, d, "cannot move a " .. tv)
end

-- Encodes n values (args[1..n]) with the general format into S.out; returns nothing.
local function general_encode(S, n, args)
  local b = S.buf
  put_u32(b, n)
  local pkind, pkey = S.pkind, S.pkey
  for i = 1, n do
    pkind[1], pkey[1] = 1, i
    put_value(S, args[i], 1)
  end
  local out, nh = S.out, S.nh
  out:reset()
  if nh > 0 then
    local p = out:reserve(5 + 8 * nh)
    p[0] = bor(TAG_GENERAL, HAS_HANDLES)
    ffi_cast(u32p, p + 1)[0] = nh
    local a = ffi_cast(u64p, p + 5)
    for i = 1, nh do a[i - 1] = S.haddr[i] end
    out:commit(5 + 8 * nh)
  else
    put_byte(out, TAG_GENERAL)
  end
  local hp, hn = out:ref()
  local pp, pn = b:ref()
  put_u32(out, checksum(pp, pn, checksum(hp + 1, hn - 1, SEED)))
  out:put(b)
  -- Nothing can fail from here on: the encoding now owns one reference per handle entry.
  for i = 1, nh do C.ljasync_object_retain(ffi_cast(voidp, S.haddr[i])) end
end

-- -- Plain path: one scan, then string.buffer --

local wbuf = buffer.new()
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
-- after the checks below confirm the object layout it assumes (LuaJIT 2.1, GC64).
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
  local plain = C.ljasync_encoder_scan(scan_roots, roots, PLAIN_DEPTH, scan_ctypes,
                                      scratch, scratch_slots, scan_tables) == 1
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
    local ok, res = pcall(layout_ok)
    native_scan = ok and res
  end
end
M._native_scan = native_scan  -- for tests and the benchmark

-- -- Encode entry points --

local busy = false
local shared_context = new_context()

-- Encodes n values (a1..a3, and args[1..n] when n > 3) into a buffer, which it returns with
-- the general context to reset once the buffer is read (nil for the plain path). Raises the
-- error message (without position) on failure.
local function encode_into(n, a1, a2, a3, args)
  local reentered = busy
  if not reentered then
    busy = true
    local plain = true
    if n >= 1 then plain = small_value(a1) end
    if plain and n >= 2 then plain = small_value(a2) end
    if plain and n >= 3 then plain = small_value(a3) end
    if plain and n >= 4 then
      for i = 4, n do
        plain = small_value(args[i])
        if not plain then break end
      end
    end
    forget_small()
    if plain == nil then  -- more than a few small tables
      args = args or { a1, a2, a3 }
      if native_scan then plain = native_plain(n, args) else plain = lua_plain(n, args) end
    end
    if plain then
      -- Tag, count (1 byte, or 255 and 4 bytes), checksum, then each value as string.buffer
      -- encodes it.
      wbuf:reset()
      local hdr = n < 255 and 2 or 6
      local p = wbuf:reserve(hdr + 4)
      p[0] = TAG_PLAIN
      if n < 255 then p[1] = n else p[1] = 255; ffi_cast(u32p, p + 2)[0] = n end
      wbuf:commit(hdr + 4)
      if n >= 1 then wbuf:encode(a1) end
      if n >= 2 then wbuf:encode(a2) end
      if n >= 3 then wbuf:encode(a3) end
      if n >= 4 then for i = 4, n do wbuf:encode(args[i]) end end
      local q, len = wbuf:ref()
      ffi_cast(u32p, q + hdr)[0] = checksum(q + hdr + 4, len - hdr - 4, SEED)
      busy = false
      return wbuf
    end
  end
  local S = reentered and new_context() or shared_context
  local ok, err = pcall(general_encode, S, n, args or { a1, a2, a3 })
  if not reentered then busy = false end
  if not ok then
    reset_context(S)
    error(err, 0)
  end
  return S.out, S
end

-- The encoding of the values as a buffer (and the context to reset after reading it).
local function encode_args(...)
  local n = select("#", ...)
  if n <= 3 then
    local a1, a2, a3 = ...
    return encode_into(n, a1, a2, a3, nil)
  end
  local args = { ... }
  return encode_into(n, args[1], args[2], args[3], args)
end

--- Encodes its arguments (count and nils kept) into a string. Raises on values that cannot
--- cross, naming their path. An encoding that holds shared handles owns one reference per
--- handle: pass it to ljasync_message_new (or use encode_message), or it leaks them.
function M.encode(...)
  local ok, b, S = pcall(encode_args, ...)
  if not ok then error(b, 2) end
  local s = b:tostring()
  if S then reset_context(S) end
  return s
end

--- Like encode, but returns nil and the message (without position) instead of raising.
function M.try_encode(...)
  local ok, b, S = pcall(encode_args, ...)
  if not ok then return nil, b end
  local s = b:tostring()
  if S then reset_context(S) end
  return s
end

local message_new = C.ljasync_message_new
local function to_message(ok, b, S)
  if not ok then return nil, b end
  local p, n = b:ref()
  local msg = message_new(p, n)
  if S then reset_context(S) end
  return msg
end

--- Encodes its arguments into a native message (ljasync_message *, owned by the caller, who
--- passes it on or frees it with ljasync_message_free). Raises like encode.
function M.encode_message(...)
  local msg, err = to_message(pcall(encode_args, ...))
  if not msg then error(err, 2) end
  return msg
end

--- Like encode_message, but returns nil and the message instead of raising.
function M.try_encode_message(...)
  return to_message(pcall(encode_args, ...))
end

--- Encodes one value.
function M.encode_value(v)
  local ok, b, S = pcall(encode_into, 1, v, nil, nil, nil)
  if not ok then error(b, 2) end
  local s = b:tostring()
  if S then reset_context(S) end
  return s
end

-- -- Decoder --

local function malformed(what) error("malformed encoded data: " .. what, 0) end

local function new_reader()
  return { buf = buffer.new(), objs = {}, nobj = 0, haddr = {}, nh = 0 }
end

local function reset_reader(R)
  R.buf:reset()
  local objs = R.objs
  for i = 1, R.nobj do objs[i] = nil end
  R.nobj = 0
  for i = 1, R.nh do R.haddr[i] = nil end
  R.nh = 0
  if #objs > 65536 then R.objs = {} end
end

local function ctype_of(name)
  local ct = ctype_cache[name]
  if ct then return ct end
  local ok, res = pcall(ffi_typeof, name)
  if not ok then error("ctype '" .. name .. "' is not declared in this state", 0) end
  ctype_cache[name] = res
  return res
end

-- Reads n bytes' worth of header: the pointer to the next unread byte, after checking n remain.
local function need(b, n)
  local p, len = b:ref()
  if len < n then malformed("truncated") end
  return p
end

local function get_u32(b)
  local p = need(b, 4)
  local x = ffi_cast(u32p, p)[0]
  b:skip(4)
  return x
end

local function get_string(b, what)
  local s = b:decode()
  if type(s) ~= "string" then malformed(what .. " is not a string") end
  return s
end

local get_value

local function get_table(R, b, tag)
  local mt
  if tag == T_TABLE_MT then
    local name = get_string(b, "metatable name")
    mt = mt_by_name[name]
    if not mt then error("metatable '" .. name .. "' is not registered in this state (encoder.register_portable_metatable)", 0) end
  end
  local narr, nhash = get_u32(b), get_u32(b)
  local _, left = b:ref()
  if narr + 2 * nhash > left then malformed("table sizes exceed the data") end
  local t = tnew(narr, nhash)
  local id = R.nobj + 1
  R.nobj, R.objs[id] = id, t
  for i = 1, narr do t[i] = get_value(R, b) end
  while true do
    local p = need(b, 1)
    if p[0] == T_END then b:skip(1); break end
    local k = get_value(R, b)
    if k == nil or k ~= k then malformed("table key is nil or NaN") end
    t[k] = get_value(R, b)
  end
  if mt then setmt(t, mt) end
  return t
end

local function get_function(R, b)
  local len = get_u32(b)
  local p = need(b, len + 1)
  local code = ffi_string(p, len)
  local nups = p[len]
  b:skip(len + 1)
  if code:sub(1, 3) ~= "\27LJ" then malformed("function is not bytecode") end
  local f = loadstring(code)
  if not f or getinfo(f, "u").nups ~= nups then malformed("bad function bytecode") end
  local id = R.nobj + 1
  R.nobj, R.objs[id] = id, f
  for i = 1, nups do
    local q = need(b, 1)
    local tag = q[0]
    if tag == T_UPJOIN then
      b:skip(1)
      local g = R.objs[get_u32(b)]
      local j = need(b, 1)[0]
      b:skip(1)
      if type(g) ~= "function" or j < 1 or j > getinfo(g, "u").nups then malformed("bad upvalue join") end
      upvaluejoin(f, i, g, j)
    elseif tag == T_MODULE then
      b:skip(1)
      setupvalue(f, i, require(get_string(b, "module name")))
    elseif tag == T_MODFIELD then
      b:skip(1)
      local mname, field = get_string(b, "module name"), get_string(b, "field name")
      local v = require(mname)[field]
      if type(v) ~= "function" then
        error(format("upvalue '%s.%s' is not a function in this state", mname, field), 0)
      end
      setupvalue(f, i, v)
    else
      setupvalue(f, i, get_value(R, b))
    end
  end
  return f
end

local function get_handle(R, b)
  local idx = get_u32(b)
  local kind, module = get_string(b, "handle kind"), get_string(b, "handle module")
  local addr = R.haddr[idx]
  if not addr then malformed("handle index out of range") end
  local spec = handle_by_kind[kind]
  if not spec then
    require(module)
    spec = handle_by_kind[kind]
    if not spec then error(format("handle kind '%s' is not registered in this state (module '%s' did not register it)", kind, module), 0) end
  end
  local h = spec.wrap(addr)
  local id = R.nobj + 1
  R.nobj, R.objs[id] = id, h
  return h
end

local function get_cdata(R, b, tag)
  local name = get_string(b, "ctype name")
  local ct = ctype_of(name)
  local v
  if tag == T_POINTER then
    local p = need(b, 8)
    local ok, res = pcall(ffi_cast, ct, ffi_cast(u64p, p)[0])
    if not ok then error(format("ctype '%s' is not a pointer type in this state", name), 0) end
    v = res
    b:skip(8)
  else
    local size, nelem = get_u32(b), get_u32(b)
    local p = need(b, size)
    local expect
    if nelem == FIXED then
      expect = ffi_sizeof(ct)
      if expect == size then
        local info = ffi.typeinfo(tonumber(ct)).info
        local kind = rshift(info, 28)
        if kind == CT_NUM or kind == CT_ENUM or kind == CT_ARRAY and band(info, CTF_COMPLEX) ~= 0 then
          local box = ffi_new(ffi_typeof("$[1]", ct))  -- a scalar: copy into a box, then unbox
          ffi_copy(box, p, size)
          v = ffi_new(ct, box[0])
          b:skip(size)
          local id = R.nobj + 1
          R.nobj, R.objs[id] = id, v
          return v
        end
        v = ffi_new(ct)
      end
    else
      local ok, s = pcall(ffi_sizeof, ct, nelem)
      expect = ok and s
      if s == size then v = ffi_new(ct, nelem) end
    end
    if not v then
      error(format("ctype '%s' has size %s in this state, but the value has %d bytes", name, tostring(expect), size), 0)
    end
    ffi_copy(v, p, size)
    b:skip(size)
  end
  local id = R.nobj + 1
  R.nobj, R.objs[id] = id, v
  return v
end

get_value = function(R, b)
  local p = need(b, 1)
  local tag = p[0]
  if tag == T_NUMBER then
    -- Not string.buffer's: a number from buffer:decode() may be read too late on a trace
    -- (see decode_inner), and the caller keeps keys across the next decode.
    p = need(b, 9)
    local w = ffi_cast(u32p, p + 1)
    local v
    if band(w[1], 0x7ff00000) == 0x7ff00000 and (band(w[1], 0xfffff) ~= 0 or w[0] ~= 0) then
      v = 0 / 0  -- any NaN: a canonical one (other bit patterns are not valid Lua values)
    else
      v = ffi_cast(dblp, p + 1)[0]
    end
    b:skip(9)
    return v
  end
  if tag < T_FIRST or tag > T_LAST then return b:decode() end  -- a string.buffer leaf
  b:skip(1)
  if tag == T_TABLE or tag == T_TABLE_MT then return get_table(R, b, tag) end
  if tag == T_REF then
    local v = R.objs[get_u32(b)]
    if v == nil then malformed("reference to an unknown object") end
    return v
  end
  if tag == T_FUNC then return get_function(R, b) end
  if tag == T_POINTER or tag == T_CVALUE then return get_cdata(R, b, tag) end
  if tag == T_HANDLE then return get_handle(R, b) end
  malformed(format("unexpected tag 0x%02x", tag))
end

local rbuf = buffer.new()
local decoding = false
local shared_reader = new_reader()

-- Decodes a general encoding whose bytes are in R.buf (from offset 0); returns count and a table.
local function general_decode(R)
  local b = R.buf
  local p, len = b:ref()
  local tag = p[0]
  local off, nh = 1, 0
  if band(tag, HAS_HANDLES) ~= 0 then
    if len < 5 then malformed("truncated") end
    nh = ffi_cast(u32p, p + 1)[0]
    if nh > (len - 9) / 8 then malformed("truncated handle table") end
    off = 5 + 8 * nh
  end
  if len < off + 8 then malformed("truncated") end
  if ffi_cast(u32p, p + off)[0] ~= checksum(p + off + 4, len - off - 4, checksum(p + 1, off - 1, SEED)) then
    malformed("checksum mismatch")
  end
  local a = ffi_cast(u64p, p + 5)
  for i = 1, nh do
    local addr = tonumber(a[i - 1])
    if addr == 0 or addr >= 2 ^ 53 then malformed("bad handle address") end
    R.haddr[i] = addr
  end
  R.nh = nh
  b:skip(off + 4)
  local n = get_u32(b)
  if n > len then malformed("value count exceeds the data") end
  local vals = tnew(n, 0)
  for i = 1, n do vals[i] = get_value(R, b) end
  if #b ~= 0 then malformed("trailing bytes") end
  return n, vals
end

-- On a trace, LuaJIT releases before 2022-07 may read a number that buffer:decode() returned
-- from the decoder's scratch slot only where it is used, after later decodes overwrote it
-- ("x86/x64: Limit VLOAD fusion to simple cases"). Adding -0 (exact for every number, -0 and
-- NaN included, and never folded away) makes the read happen here. Values stored into a
-- table right away need nothing: the store reads them.
local NEG_ZERO = -0.0
local function launder(v)
  if type(v) == "number" then return v + NEG_ZERO end
  return v
end

-- Decodes the bytes set in rbuf; returns the count and up to three values, or a table.
local function decode_inner(R)
  local b = R and R.buf or rbuf
  local p, len = b:ref()
  if len < 2 then malformed("truncated") end
  local tag = p[0]
  if tag ~= TAG_PLAIN then
    if band(tag, 0x7f) ~= TAG_GENERAL then malformed(format("unknown format tag 0x%02x", tag)) end
    if not R then  -- the general decoder keeps its state in a reader
      R = shared_reader
      R.buf:set(p, len)
    end
    local n, vals = general_decode(R)
    return n, vals[1], vals[2], vals[3], vals
  end
  local n, hdr = p[1], 2
  if n == 255 then
    if len < 6 then malformed("truncated") end
    n, hdr = ffi_cast(u32p, p + 2)[0], 6
  end
  if len < hdr + 4 then malformed("truncated") end
  if ffi_cast(u32p, p + hdr)[0] ~= checksum(p + hdr + 4, len - hdr - 4, SEED) then
    malformed("checksum mismatch")
  end
  b:skip(hdr + 4)
  if n > len then malformed("value count exceeds the data") end
  local a, c, d, vals
  if n == 1 then
    a = launder(b:decode())
  elseif n == 2 then
    a = launder(b:decode()); c = launder(b:decode())
  elseif n == 3 then
    a = launder(b:decode()); c = launder(b:decode()); d = launder(b:decode())
  elseif n > 3 then
    vals = tnew(n, 0)
    for i = 1, n do vals[i] = b:decode() end
    a, c, d = vals[1], vals[2], vals[3]
  end
  if #b ~= 0 then malformed("trailing bytes") end
  return n, a, c, d, vals
end

-- string.buffer's complaints about its input, which come with a position that means nothing.
local buffer_complaints = { "^unexpected end of buffer", "^cannot deserialize", "^too deep to serialize",
                            "^duplicate table key", "^table index is", "^table overflow", "^bad light userdata" }

local function decode_error(msg)
  if type(msg) ~= "string" then return msg end
  local bare = msg:match("^[^\n]-:%d+: (.*)$")
  if bare then
    for i = 1, #buffer_complaints do
      if bare:find(buffer_complaints[i]) then return "malformed encoded data: " .. bare end
    end
  end
  return msg
end

local function finish(R, ok, n, a, c, d, vals)
  if R then
    reset_reader(R)
  else
    rbuf:reset(); reset_reader(shared_reader)
    anchor, decoding = nil, false
  end
  if not ok then error(decode_error(n), 3) end
  if n == 1 then return a end
  if n == 2 then return a, c end
  if n == 3 then return a, c, d end
  if n == 0 then return end
  return unpack(vals, 1, n)
end

-- The string being decoded, kept referenced while a buffer reads it: compiled buffer:set()
-- does not anchor its string in LuaJIT releases before 2023-12 (LuaJIT issue #1125), and a
-- collection in the middle of decoding would free it.
local anchor

local function start(s, len)
  if decoding then  -- re-entered (from a finalizer): use a reader of our own
    local R = new_reader()
    R.anchor = s
    if len then R.buf:set(s, len) else R.buf:set(s) end
    return R
  end
  decoding = true
  anchor = s
  if len then rbuf:set(s, len) else rbuf:set(s) end
  return nil
end

--- Decodes a string from encode: returns the values (same count, nils kept).
function M.decode(s)
  if type(s) ~= "string" then error("bad encoded data: expected a string, got " .. type(s), 2) end
  local R = start(s)
  return finish(R, pcall(decode_inner, R))
end

--- Decodes len bytes at ptr (a const void* / char* cdata), e.g. a native message's data.
function M.decode_ptr(ptr, len)
  if type(ptr) ~= "cdata" or type(len) ~= "number" and type(len) ~= "cdata" then
    error("bad arguments: expected a pointer and a length", 2)
  end
  local R = start(ptr, tonumber(len))
  return finish(R, pcall(decode_inner, R))
end

--- Decodes one value (the encoding must hold exactly one).
function M.decode_value(s)
  if type(s) ~= "string" then error("bad encoded data: expected a string, got " .. type(s), 2) end
  local R = start(s)
  local ok, n, a, c, d, vals = pcall(decode_inner, R)
  if ok and n ~= 1 then ok, n = false, "expected one encoded value, got " .. n end
  return finish(R, ok, n, a, c, d, vals)
end

local lenbox = ffi_new("size_t[1]")
local message_data = C.ljasync_message_data

--- Decodes a native message (ljasync_message *); the caller still owns it and frees it.
function M.decode_message(msg)
  if type(msg) ~= "cdata" or msg == nil then error("bad message: expected a ljasync_message *", 2) end
  local p = message_data(msg, lenbox)
  local R = start(p, tonumber(lenbox[0]))
  return finish(R, pcall(decode_inner, R))
end

return M
