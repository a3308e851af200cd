-- Private: which loaded module a table is, or which module field a C function is, so that a
-- function's upvalues naming them cross as references (the other state requires the module).
-- Used on the thread that owns the Lua state.
local type, next, getinfo = type, next, debug.getinfo

local M = {}

local module_of = setmetatable({}, { __mode = "k" })   -- table -> module name
local field_of = setmetatable({}, { __mode = "k" })    -- C function -> { module, field }
local fingerprint = -1                                 -- size of package.loaded when mapped

-- Maps loaded modules and their C function fields, unless package.loaded kept its size since
-- (or always, when `force`). Where several names fit, the smallest wins, so the choice is stable.
local function rebuild(force)
  local count = 0
  for _ in next, package.loaded do count = count + 1 end
  if count == fingerprint and not force then return end
  fingerprint = count
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

--- The name under which table t is loaded (package.loaded[name] == t), or nil.
function M.module_name(t)
  local name = module_of[t]
  if not (name and package.loaded[name] == t) then
    rebuild(false)
    name = module_of[t]
  end
  if name and package.loaded[name] == t then return name end
  return nil
end

local function field_ok(e, f)
  local m = e and package.loaded[e[1]]
  return type(m) == "table" and m[e[2]] == f
end

--- The module and field names of a C function found in a loaded module, or nil.
function M.field_name(f)
  local e = field_of[f]
  if not field_ok(e, f) then
    rebuild(true)  -- a miss is rare (the value is refused): look again for real
    e = field_of[f]
  end
  if field_ok(e, f) then return e[1], e[2] end
  return nil
end

return M
