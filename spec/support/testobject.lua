-- Test support: the core's TestObject (Sources/LJAsync/Testing) as an encoder handle kind, the
-- way lj-async.sync registers its objects: requiring this module registers the kind.
local ffi = require "ffi"
local core = require "lj-async.core"
local encoder = require "lj-async.encoder"

-- The core hands its test hooks out only to a process that asks (ljasync.h's ljasync_test_hooks,
-- in the header's host section, which states the core makes do not declare unless asked).
core.declare "host"
core.cdef_once("struct ljasync_testhandle", [[
struct ljasync_testhandle { void *p; };
int setenv(const char *name, const char *value, int overwrite);
]])
ffi.C.setenv("LJASYNC_TESTING", "1", 1)
local hooks = ffi.cast("const struct ljasync_test_hooks *", core.C.ljasync_test_hooks())
assert(hooks ~= nil, "the core handed out no test hooks")

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
function M.new(value) return own(hooks.testobject_new(value)) end

function M.value(h) return tonumber(hooks.testobject_value(h.p)) end

--- Objects alive in the process.
function M.live() return tonumber(hooks.testobject_live_count()) end

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
