-- Test support: the core's TestObject (Sources/LJAsync/Testing) as an encoder handle kind, the
-- way lj-async.sync registers its objects: requiring this module registers the kind.
local ffi = require "ffi"
local core = require "lj-async.core"
local encoder = require "lj-async.encoder"

core.cdef_once("ljasync_testobject", [[
typedef struct ljasync_testobject ljasync_testobject;
struct ljasync_testhandle { void *p; };
void *ljasync_testobject_new(int64_t value);
int64_t ljasync_testobject_value(const void *p);
int64_t ljasync_testobject_live_count(void);
]])

local C = core.C
local handle_ct = ffi.typeof("struct ljasync_testhandle")
local voidp = ffi.typeof("void *")

local M = {}

local function release(h)
  if h.p ~= nil then
    local p = h.p
    h.p = nil
    C.ljasync_object_release(p)
  end
end

-- A handle (a box, emptied when closed) owning the reference `p` carries.
local function own(p)
  return ffi.gc(handle_ct(p), release)
end

--- A new object holding `value`, as a handle owning one reference.
function M.new(value) return own(C.ljasync_testobject_new(value)) end

function M.value(h) return tonumber(C.ljasync_testobject_value(h.p)) end

--- Objects alive in the process.
function M.live() return tonumber(C.ljasync_testobject_live_count()) end

--- Releases the handle's reference now.
function M.close(h)
  ffi.gc(h, nil)
  release(h)
end

encoder.register_handle("testobject", {
  ctype = handle_ct,
  address = function(h) return tonumber(ffi.cast("uintptr_t", h.p)) end,
  wrap = function(address)
    local p = ffi.cast(voidp, address)
    C.ljasync_object_retain(p)
    return own(p)
  end,
  module = "spec.support.testobject",
})

return M
