-- lj-async.ctype: a callback's C type as LuaJIT's own parser reads it (internal to lj-async.callback).
--
-- LuaJIT decides: the string goes through ffi.typeof in the creating state, then the resulting C
-- type is read back with ffi.typeinfo (LuaJIT 2.1's internal reflection of its type table, in
-- Debian's, OpenResty's and upstream's builds). A second parser would disagree with LuaJIT on
-- typedefs, qualifiers, decaying and nested declarators; this way whatever ffi.typeof understands
-- is understood, and the acceptance test below is LuaJIT's own (lj_ccallback.c,
-- callback_checkfunc) with two extensions: more parameters (up to MAX_PARAMS) and pointers to
-- structs nobody declared (declared incomplete, as C allows).
--
-- The callback's own state gets each type back as C text: every field of the argument frame is
-- spelled from the reflection, with the declarations it needs (incomplete tags, typedefs of
-- anonymous structs, enum bodies) split into those safe to make before the user's cdef and those
-- made after it only if it did not make them already.
local ffi = require "ffi"
local bit = require "bit"

local typeinfo = ffi.typeinfo
if not typeinfo then error("lj-async needs LuaJIT 2.1 (its ffi.typeinfo reads callback types)", 2) end
local band, bor, rshift = bit.band, bit.bor, bit.rshift
local tostring, tonumber, pcall, error, concat = tostring, tonumber, pcall, error, table.concat

local M = {}

--- The most parameters a callback can have (LuaJIT's own callbacks stop at 16).
M.MAX_PARAMS = 1000

-- LuaJIT's type table encoding (lj_ctype.h).
local CT_NUM, CT_STRUCT, CT_PTR, CT_ARRAY, CT_VOID, CT_ENUM, CT_FUNC, CT_TYPEDEF, CT_ATTRIB, CT_CONSTVAL =
  0, 1, 2, 3, 4, 5, 6, 7, 8, 11
local CTF_BOOL, CTF_FP, CTF_CONST, CTF_VOLATILE, CTF_UNSIGNED = 0x08000000, 0x04000000, 0x02000000, 0x01000000, 0x00800000
local CTF_REF, CTF_VLA, CTF_VECTOR, CTF_COMPLEX, CTF_UNION, CTF_VARARG =
  0x00800000, 0x00100000, 0x08000000, 0x04000000, 0x00800000, 0x00800000
local CTF_QUAL = CTF_CONST + CTF_VOLATILE
local CTA_QUAL = 1

local function kind_of(info) return band(rshift(info, 28), 15) end
local function cid(info) return band(info, 0xffff) end

-- The type behind attributes, and the qualifiers the attributes added.
local function raw(id)
  local quals = 0
  while true do
    local t = typeinfo(id)
    if kind_of(t.info) ~= CT_ATTRIB then return id, t, quals end
    if band(rshift(t.info, 16), 255) == CTA_QUAL then quals = bor(quals, t.size or 0) end
    id = cid(t.info)
  end
end

-- -- Typedef names of anonymous structs and enums (the only way to name them elsewhere) --

local typedef_names, scanned = {}, 0
local function typedef_name(id)
  -- The table only grows: scan the entries added since the last look.
  while true do
    local t = typeinfo(scanned + 1)
    if not t then break end
    scanned = scanned + 1
    if kind_of(t.info) == CT_TYPEDEF and t.name then
      local target = raw(cid(t.info))
      typedef_names[target] = typedef_names[target] or {}
      table.insert(typedef_names[target], 1, t.name)
    end
  end
  for _, name in ipairs(typedef_names[id] or {}) do
    local ok, ct = pcall(ffi.typeof, name)  -- typedefs can be redefined: the name must still mean it
    if ok and tonumber(ct) == id then return name end
  end
end

-- -- Spelling types as C, with the declarations they need in another state --

local function quals_text(q)
  return (band(q, CTF_CONST) ~= 0 and "const " or "") .. (band(q, CTF_VOLATILE) ~= 0 and "volatile " or "")
end

local function num_name(info, size)
  if band(info, CTF_BOOL) ~= 0 then return "bool" end
  if band(info, CTF_FP) ~= 0 then return size == 4 and "float" or size == 8 and "double" or "long double" end
  return (band(info, CTF_UNSIGNED) ~= 0 and "uint" or "int") .. (size * 8) .. "_t"
end

local function enum_body(t)
  local signed = band(typeinfo(cid(t.info)).info, CTF_UNSIGNED) == 0
  local items, c = {}, t.sib
  while c and c ~= 0 do
    local ci = typeinfo(c)
    if kind_of(ci.info) == CT_CONSTVAL and ci.name then
      local v = ci.size or 0
      if signed and v >= 2 ^ 31 then v = v - 2 ^ 32 end
      items[#items + 1] = ("%s = %d"):format(ci.name, v)
    end
    c = ci.sib
  end
  return "{ " .. concat(items, ", ") .. " }"
end

-- The name of a struct, union or enum in the callback's state, recording its declarations.
local function tag_name(id, t, decls)
  local is_enum = kind_of(t.info) == CT_ENUM
  local kw = is_enum and "enum" or band(t.info, CTF_UNION) ~= 0 and "union" or "struct"
  if decls.bodies[id] then
    -- An array element must be complete: unless a cdef declares it, it gets opaque bytes of
    -- its size (indexing strides stay right; its fields need the cdef).
    decls.post[#decls.post + 1] = ("%s %s { uint8_t ljasync_opaque[%d]; };"):format(kw,
      t.name or ("ljasync_anon_%d"):format(id), decls.bodies[id])
  end
  if t.name then
    local name = kw .. " " .. t.name
    decls.pre[name .. ";"] = true
    if is_enum then decls.post[#decls.post + 1] = name .. " " .. enum_body(t) .. ";" end
    return name
  end
  local private = ("%s ljasync_anon_%d"):format(kw, id)
  local td = typedef_name(id)
  if td then
    decls.pre[private .. ";"] = not is_enum or nil
    if is_enum then
      -- Its constants cannot be declared twice: only if the user's cdef did not declare them.
      decls.post[#decls.post + 1] = ("typedef enum %s %s;\ttypedef %s %s %s;"):format(
        enum_body(t), td, private, enum_body(t), td)
    else
      -- After the cdef: LuaJIT keeps the first typedef of a name, so one made before would
      -- hide the cdef's own; made after, it is ignored if the cdef declared the name.
      decls.post[#decls.post + 1] = ("typedef %s %s;"):format(private, td)
    end
    return td
  end
  if is_enum then
    decls.post[#decls.post + 1] = ("%s %s;\t%s { ljasync_anon_%d_ };"):format(private, enum_body(t), private, id)
  else
    decls.pre[private .. ";"] = true
  end
  return private
end

-- C text declaring `inner` (a declarator, "" for an abstract type) of type `id`.
local function spell(id, inner, decls, strip)
  local rid, t, q = raw(id)
  local info = t.info
  local k = kind_of(info)
  -- Top level: a result loses its qualifiers (the frame field is written); a parameter keeps
  -- those of a pointer itself, as LuaJIT delivers it (`char *const`), and loses the others.
  if strip == "result" then q = 0
  elseif strip == "param" then q = band(info, CTF_QUAL)
  else q = bor(q, band(info, CTF_QUAL)) end
  local function leaf(name) return quals_text(q) .. name .. (inner ~= "" and " " .. inner or "") end
  if k == CT_NUM then return leaf(num_name(info, t.size))
  elseif k == CT_VOID then return leaf("void")
  elseif k == CT_STRUCT or k == CT_ENUM then return leaf(tag_name(rid, t, decls))
  elseif k == CT_PTR then
    if band(info, CTF_REF) ~= 0 then error("C++ references are not supported (use a pointer)", 0) end
    local d = "*" .. (q ~= 0 and quals_text(q) or "") .. inner
    local ck = kind_of(select(2, raw(cid(info))).info)
    if ck == CT_ARRAY or ck == CT_FUNC then d = "(" .. d .. ")" end
    return spell(cid(info), d, decls)
  elseif k == CT_ARRAY then
    if band(info, CTF_COMPLEX) ~= 0 then return leaf("complex " .. (t.size == 8 and "float" or "double")) end
    if band(info, CTF_VECTOR) ~= 0 then error("vector types are not supported", 0) end
    local n = ""
    local erid, et = raw(cid(info))
    if kind_of(et.info) == CT_STRUCT and et.size then decls.bodies[erid] = et.size end
    if band(info, CTF_VLA) ~= 0 then n = "?"
    else
      local esize = select(2, raw(cid(info))).size
      if t.size and esize and esize > 0 then n = tostring(t.size / esize) end
    end
    return spell(cid(info), inner .. "[" .. n .. "]", decls)
  elseif k == CT_FUNC then
    local params, f = {}, t.sib
    while f and f ~= 0 do
      local fi = typeinfo(f)
      if kind_of(fi.info) ~= CT_ATTRIB then params[#params + 1] = spell(cid(fi.info), "", decls) end
      f = fi.sib
    end
    if band(info, CTF_VARARG) ~= 0 then params[#params + 1] = "..." end
    if #params == 0 then params[1] = "void" end
    return spell(cid(info), inner .. "(" .. concat(params, ", ") .. ")", decls)
  end
  error("unsupported C type", 0)
end

--- The C spelling of a ctype object, parameters included (tostring of a function type drops them).
function M.spelling(ct)
  local ok, text = pcall(spell, tonumber(ct), "", { pre = {}, post = {}, bodies = {} })
  return ok and text or tostring(ct):sub(7, -2)
end

-- -- Callback signatures --

-- Value kinds, as Sources/LJAsync/Callback/ValueKind.swift numbers them.
local K = { void = 0, int8 = 1, uint8 = 2, int16 = 3, uint16 = 4, int32 = 5, uint32 = 6,
            int64 = 7, uint64 = 8, float = 9, double = 10, pointer = 11, bool = 12 }
M.K = K
local int_kinds = { [1] = { K.int8, K.uint8 }, [2] = { K.int16, K.uint16 }, [4] = { K.int32, K.uint32 },
                    [8] = { K.int64, K.uint64 } }

-- The kind of a parameter or result (LuaJIT's rule: enums, pointers, numbers up to 8 bytes),
-- or nil and why not.
local function classify(id)
  local _, t = raw(id)
  local info, k = t.info, kind_of(t.info)
  if k == CT_VOID then return K.void end
  if k == CT_PTR then
    if band(info, CTF_REF) ~= 0 then return nil, "C++ references are not supported (use a pointer)" end
    return K.pointer
  end
  if k == CT_ENUM then
    return band(typeinfo(cid(info)).info, CTF_UNSIGNED) ~= 0 and K.uint32 or K.int32
  end
  if k == CT_NUM then
    if band(info, CTF_BOOL) ~= 0 then return K.bool end
    if band(info, CTF_FP) ~= 0 then
      if t.size == 4 then return K.float elseif t.size == 8 then return K.double end
      return nil, "long double is not supported"
    end
    local ks = int_kinds[t.size]
    if ks then return band(info, CTF_UNSIGNED) ~= 0 and ks[2] or ks[1] end
    return nil, "integers wider than 64 bits are not supported"
  end
  if k == CT_STRUCT then return nil, "structs and unions passed by value are not supported (pass a pointer)" end
  if k == CT_ARRAY then
    if band(info, CTF_COMPLEX) ~= 0 then return nil, "complex numbers are not supported" end
    return nil, "vectors passed by value are not supported"
  end
  return nil, "not a value type"
end

-- ffi.typeof, declaring an undeclared `struct X`/`union X` incomplete (the pass-through extension:
-- C allows pointers to them; LuaJIT refuses the tag). Returns the ctype or nil and LuaJIT's message.
local function typeof_declaring(s, tags)
  for _ = 1, 64 do
    local ok, ct = pcall(ffi.typeof, s)
    if ok then return ct end
    local tag = tostring(ct):match("^undeclared or implicit tag '([%w_]+)'$")
    local kw = tag and s:match("%f[%w_](%a+)%s+" .. tag .. "%f[^%w_]")
    if kw ~= "struct" and kw ~= "union" then return nil, tostring(ct) end
    ffi.cdef(kw .. " " .. tag .. ";")
    tags[#tags + 1] = kw .. " " .. tag
  end
  return nil, "too many undeclared tags"
end

--- Reads a callback type string. Returns the ctype and a signature, or nil and why not:
--- sig.kinds[1] result, [i + 1] parameter i; sig.fields[1] "r" and [i + 1] "a<i>" declared as
--- C text valid in the callback's state after sig.pre (always safe) and sig.post (each a list
--- of alternatives, tried after the user's cdef).
function M.read(s)
  local tags = {}
  local ct, err = typeof_declaring(s, tags)
  if not ct then return nil, err end
  local _, top = raw(tonumber(ct))
  if kind_of(top.info) == CT_FUNC then return nil, "not a function pointer type (write it as 'RET(*)(ARGS)')" end
  if kind_of(top.info) ~= CT_PTR or top.size ~= 8 then return nil, "not a function pointer type" end
  if band(top.info, CTF_REF) ~= 0 then return nil, "a C++ reference to a function: use a function pointer" end
  local fid = cid(top.info)
  local _, ft = raw(fid)
  if kind_of(ft.info) ~= CT_FUNC then return nil, "not a function pointer type" end
  if band(ft.info, CTF_VARARG) ~= 0 then return nil, "variadic callbacks are not supported" end

  local decls = { pre = {}, post = {}, bodies = {} }
  local sig = { kinds = {}, fields = {}, nparams = 0 }
  local function add(id, what, field)
    local kind, why = classify(id)
    if not kind then return why and what .. ": " .. why end
    sig.kinds[#sig.kinds + 1] = kind
    if kind ~= K.void then
      local ok, text = pcall(spell, id, field, decls, field == "r" and "result" or "param")
      if not ok then return what .. ": " .. text end
      sig.fields[#sig.fields + 1] = text
    end
  end
  local e = add(cid(ft.info), "the result type", "r")
  if e then return nil, e end
  local f, i = ft.sib, 0
  while f and f ~= 0 do
    local fi = typeinfo(f)
    if kind_of(fi.info) ~= CT_ATTRIB then
      i = i + 1
      if i > M.MAX_PARAMS then
        return nil, ("more than %d parameters (lj-async's maximum)"):format(M.MAX_PARAMS)
      end
      local pid = cid(fi.info)
      local okn, pname = pcall(spell, pid, "", { pre = {}, post = {}, bodies = {} })
      if not okn then pname = "?" end
      e = add(pid, ("parameter %d ('%s')"):format(i, pname), "a" .. i)
      if e then return nil, e end
    end
    f = fi.sib
  end
  sig.nparams = i
  local pre = {}
  for d in pairs(decls.pre) do pre[#pre + 1] = d end
  table.sort(pre, function(a, b)  -- tags before the typedefs naming them
    local ta, tb = a:match("^typedef") and 1 or 0, b:match("^typedef") and 1 or 0
    if ta ~= tb then return ta < tb end
    return a < b
  end)
  sig.pre, sig.post, sig.tags = pre, decls.post, tags
  return ct, sig
end

return M
