-- Private: lj-async.sync's shared memory block (fixed address, zeroed, no locking of its own).
local ffi = require "ffi"
local C = require "lj-async.sync.abi"
local core = require "lj-async.core"
local handle = require "lj-async.sync.handle"
local check = require "lj-async.sync.check"

local ffi_string, ffi_cast, ffi_typeof = ffi.string, ffi.cast, ffi.typeof
local type, tonumber, tostring, error, pcall = type, tonumber, tostring, error, pcall
local freed = handle.freed
local errbuf, errbuf_size = core.errbuf, core.errbuf_size

local Shared = {}
local ptr_types = {}  -- ctype id -> pointer ctype

--- A pointer to the first byte as `ctype *` (a ctype or its name; default uint8_t). It does
--- not keep the block alive: keep the handle while you use it.
function Shared:ptr(ctype)
  local b = self.bytes
  if self.p == nil then freed("shared block") end
  if ctype == nil then return b end
  local ok, ct = true, ctype
  if type(ctype) == "string" then ok, ct = pcall(ffi_typeof, ctype) end
  if not ok or type(ct) ~= "cdata" then
    error(("bad argument #1 to 'ptr' (%s)"):format(ok and "expected a ctype or its name, got " .. type(ctype)
      or tostring(ct)), 2)
  end
  local id = tonumber(ct)
  local pt = ptr_types[id]
  if not pt then
    -- The comment makes the declaration unique per type: busted replaces ffi.typeof with a
    -- cache keyed by the first argument, which would hand back the first "$ *" for all.
    local made
    ok, made = pcall(ffi_typeof, "$ * /* " .. id .. " */", ct)
    if not ok then error(("bad argument #1 to 'ptr' (%s)"):format(tostring(made)), 2) end
    pt = made
    ptr_types[id] = pt
  end
  return ffi_cast(pt, b)
end

--- Size in bytes.
function Shared:size()
  if self.p == nil then freed("shared block") end
  return tonumber(self.nbytes)
end

local ct, adopt = handle.kind("shared", "shared", Shared, function(h)
  h.bytes = C.ljasync_shared_ptr(h.p)
  h.nbytes = C.ljasync_shared_size(h.p)
end, { __len = function(h) return h:size() end })

local M = { ctype = ct }

--- sync.shared(size) or sync.shared{size = n}: a zeroed block of `size` bytes, readable and
--- writable by every state through ptr().
function M.new(arg)
  local size = check.integer_option(arg, "size", "shared", 1, nil, 2)
  local p = C.ljasync_shared_new(size, errbuf, errbuf_size)
  if p == nil then error("cannot create shared block: " .. ffi_string(errbuf), 2) end
  return adopt(p)
end

return M
