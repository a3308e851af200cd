-- Private: how cdata of each ctype crosses (encode side) and ctypes by name (decode side), for
-- lj-async.encoder (the registry, lj-async.encoder.registry, hands these out as its classify
-- and ctype_of). One per state; used on the thread that owns the state.
local ffi = require "ffi"
local bit = require "bit"
local registry = require "lj-async.encoder.registry"

local type, tonumber, tostring, pcall, format = type, tonumber, tostring, pcall, string.format
local ffi_typeof, ffi_sizeof, ffi_new = ffi.typeof, ffi.sizeof, ffi.new
local band, rshift = bit.band, bit.rshift

local cinfo = registry.cinfo              -- ctype id -> classification (see classify)
local ctype_names = registry.ctype_names  -- ctype id -> spelling registered with register_ctype
local ctype_cache = {}                    -- spelling -> ctype of this state (decode side)

local M = {}

-- -- Cdata classification (encode side) --

-- lj_ctype.h: the kind of a ctype is info >> 28; flags below it.
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
    return nil, format("cannot move a cdata of anonymous type '%s' (give it a tag, "
      .. "or name its typedef with encoder.register_ctype)", unnamed)
  end
  local reg = ctype_names[tonumber(ct)]
  if reg then return reg end
  if name:find("(", 1, true) then
    return nil, format("cannot move a cdata of type '%s': its name loses the parameter types "
      .. "(register the type's spelling with encoder.register_ctype)", name)
  end
  return name
end

local function is_scalar(kind, info)
  return kind == CT_NUM or kind == CT_ENUM or kind == CT_ARRAY and band(info, CTF_COMPLEX) ~= 0
end

--- How cdata of ctype `ct` crosses (cached per ctype id): { what = "leaf" (string.buffer
--- encodes it) | "pointer" | "value" | "variable" (a VLA or VLS) | "handle" | "refuse",
--- name, size, box (for scalars), base and esize (variable), handle, why }.
function M.classify(ct)
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
    elseif is_scalar(kind, info) then
      -- A boxed scalar converts to its value, not to a pointer: its bytes go through a box.
      -- (Spelled out, not ffi.typeof("$[1]", ct): busted replaces ffi.typeof with a version
      -- that caches by the first argument alone, so every "$[1]" would be the first type.)
      local box = ffi_new(name .. "[1]")
      if ffi_sizeof(box) == size then
        c = { what = "value", name = name, size = size, box = box }
      else  -- the spelling does not name the same type again: never copy through it
        c = { what = "refuse", why = "cannot move a cdata of type '" .. name .. "'" }
      end
    else
      c = { what = "value", name = name, size = size }
    end
  else
    c = { what = "refuse", why = "cannot move a cdata of type '" .. tostring(ct):sub(7, -2) .. "'" }
  end
  cinfo[id] = c
  return c
end

-- -- Ctypes by name (decode side) --

--- The ctype spelled `name` in this state; raises if undeclared. Remembered unless `once`
--- (names from forged bytes must not fill the cache).
function M.ctype_of(name, once)
  local ct = ctype_cache[name]
  if ct then return ct end
  local ok
  ok, ct = pcall(ffi_typeof, name)
  if not ok then error("ctype '" .. name .. "' is not declared in this state", 0) end
  if not once then ctype_cache[name] = ct end
  return ct
end

return M
