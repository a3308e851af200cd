-- Private: the Lua handle of every lj-async.sync object (a small cdata owning one reference),
-- its metatype, its finalizer and its registration with lj-async.encoder.
local ffi = require "ffi"
-- Retain and release are in the core section: a state holding only channels parses no other object.
local C = require("lj-async.core").C
-- The encoder's registry, not the encoder: registering a kind must not load the encoder.
local registry = require "lj-async.encoder.registry"

local ffi_cast, ffi_gc, ffi_typeof, ffi_istype = ffi.cast, ffi.gc, ffi.typeof, ffi.istype
local type, tonumber, tostring, error, pcall, pairs = type, tonumber, tostring, error, pcall, pairs
local retain, release = C.ljasync_object_retain, C.ljasync_object_release

local M = {}

--- Handle ctype per kind name ("mutex", "channel", ...), for sync.kind.
M.types = {}

-- Releases the reference a handle owns, once: the finalizer and free() both come here.
local function release_handle(h)
  local p = h.p
  if p ~= nil then
    h.p = nil
    release(p)
  end
end

--- Raises "<name> has been freed" at the caller of the method that calls this.
function M.freed(name) error(name .. " has been freed", 3) end

--- Declares a kind: `cname` names its C types (ljasync_<cname>, struct ljasync_<cname>_h),
--- `name` is what users and the encoder see; `fill(h)` caches fields of a new handle.
--- Adds free() to `methods`, sets the metatype (with `extra_mt` entries), registers the kind
--- with the encoder. Returns the handle ctype and a constructor taking a pointer that already
--- carries a reference for the new handle.
function M.kind(cname, name, methods, fill, extra_mt)
  local ct = ffi_typeof("struct ljasync_" .. cname .. "_h")
  local ptr_ct = ffi_typeof("ljasync_" .. cname .. " *")

  --- Releases this handle's reference at once (the object lives on while other handles or
  --- messages hold it). Using the handle afterwards is an error. May be called twice.
  function methods:free()
    if self.p ~= nil then
      ffi_gc(self, nil)
      release_handle(self)
    end
  end

  local mt = {
    __index = methods,
    __tostring = function(h)
      if h.p == nil then return "lj-async." .. name .. " (freed)" end
      return ("lj-async.%s: %s"):format(name, tostring(ffi_cast("void *", h.p)):match("0x%x+") or "?")
    end,
    __eq = function(a, b)
      return ffi_istype(ct, a) and ffi_istype(ct, b) and a.p == b.p
    end,
  }
  for k, v in pairs(extra_mt or {}) do mt[k] = v end
  -- A metatype is set once per state: if this module is loaded a second time (busted's
  -- insulation), handles keep the first load's methods, which behave the same.
  pcall(ffi.metatype, ct, mt)

  local function adopt(p)
    local h = ct(p)
    if fill then fill(h) end
    return ffi_gc(h, release_handle)
  end

  -- What encoder.register_handle checks holds here by construction.
  registry.add_handle(name, ct, {
    kind = name,
    module = "lj-async.sync",
    -- 0 for a freed handle: the encoder then refuses it, naming the value's path.
    address = function(h)
      local p = h.p
      if p == nil then return 0 end
      return tonumber(ffi_cast("uintptr_t", p))
    end,
    wrap = function(addr)
      local p = ffi_cast(ptr_ct, addr)
      retain(p)
      return adopt(p)
    end,
  })
  M.types[name] = ct
  return ct, adopt
end

--- The kind name of a sync handle, or nil for anything else.
function M.kind_of(v)
  if type(v) ~= "cdata" then
    -- A light spawn's channel handle (Sources/CLJAsyncLua/light_channel.c).
    local mt = type(v) == "userdata" and debug.getregistry()["lj-async.light.channel"]
    return mt and getmetatable(v) == mt and "channel" or nil
  end
  for name, ct in pairs(M.types) do
    if ffi_istype(ct, v) then return name end
  end
  return nil
end

return M
