-- Private: what this Lua state told lj-async.encoder (metatables, handle kinds, ctype names).
-- One per state; used on the thread that owns the state. How cdata of each ctype crosses
-- (R.classify, R.ctype_of) is lj-async.encoder.ctypes, loaded at the first use of either: a
-- state that only holds handles (a thread given a channel) never loads it.
local tonumber, next, require, rawget = tonumber, next, require, rawget

local R = {
  mt_by_name = {},                                   -- name -> metatable
  name_by_mt = setmetatable({}, { __mode = "k" }),   -- metatable -> name
  handle_by_kind = {},                               -- kind -> { kind, address, wrap, module }
  -- Shared with encoder/ctypes.lua:
  cinfo = {},          -- ctype id -> classification (see ctypes.classify)
  ctype_names = {},    -- ctype id -> spelling registered with register_ctype
}
local cinfo, ctype_names = R.cinfo, R.ctype_names

function R.add_metatable(name, mt)
  local old = R.mt_by_name[name]
  if old then R.name_by_mt[old] = nil end
  R.mt_by_name[name], R.name_by_mt[mt] = mt, name
end

function R.add_handle(kind, ct, entry)
  R.handle_by_kind[kind] = entry
  cinfo[tonumber(ct)] = { what = "handle", handle = entry }
end

function R.add_ctype_name(ct, spelling)
  ctype_names[tonumber(ct)] = spelling
  for id, c in next, cinfo do  -- forget classifications that may have used another name
    if c.what ~= "handle" then cinfo[id] = nil end
  end
end

setmetatable(R, { __index = function(t, k)
  if k ~= "classify" and k ~= "ctype_of" then return nil end
  local ctypes = require "lj-async.encoder.ctypes"
  t.classify, t.ctype_of = ctypes.classify, ctypes.ctype_of
  return rawget(t, k)
end })

return R
