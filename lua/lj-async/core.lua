-- Private: loads the Swift core (ljasync_core.so) once per state and declares its shared ABI.
local ffi = require "ffi"

local M = {}

--- Declares `decl` unless `marker` (a type the block declares) already exists: modules may be
--- loaded again in one state (busted's insulation), and ffi.cdef refuses redefinitions.
--- The markers are remembered per state (in its registry), so that the common case raises no
--- error to find out: every Lua error unwinds through libgcc, and a thread unwinding at the
--- instant another one forks leaves the child's unwinder locked (docs/thread.md, fork).
local registry = debug and debug.getregistry and debug.getregistry()
local declared = registry and registry.ljasync_cdefs or {}
if registry then registry.ljasync_cdefs = declared end
function M.cdef_once(marker, decl)
  if declared[marker] then return end
  if registry or not pcall(ffi.typeof, marker) then ffi.cdef(decl) end
  declared[marker] = true
end

-- A state the core made uses the core already loaded in this process, whatever its paths:
-- its prelude left the path in the registry (see ModuleCache.install). Other states find it
-- (lj-async.core_host, which they attach below).
local made_by_core = registry and registry.ljasync_core
local host = not made_by_core and require "lj-async.core_host"
local path = made_by_core or host.locate()
if not path then
  error("lj-async: cannot find ljasync_core.so (set LJASYNC_CORE, add its directory to package.cpath, "
    .. "build with 'make', or in LÖVE put it in the game's folder, beside the .love or in the save directory)", 2)
end
M.path = path
M.C = ffi.load(path)

-- The C ABI, as the core was compiled against it (Sources/CLJAsync/include/ljasync.h, embedded
-- in the core), so no module declares any of it by hand. Its sections are declared once per
-- state (remembered with the markers of cdef_once), each by the module that uses it:
-- a state parses only what it loads. (The core leaves out the header's nullability words.)
M.cdef_once("ljasync_abi_cdef", "const char *ljasync_abi_cdef(const char *section, size_t *len); typedef struct ljasync_abi_cdef ljasync_abi_cdef;")
-- Section `name` of the header text, or nil. The core cuts it out: a Lua string of the whole
-- text (16 KiB) made for each section would be garbage that the state's arena keeps touched.
local lenbox = ffi.new("size_t[1]")
local function section_text(name)
  local p = M.C.ljasync_abi_cdef(name, lenbox)
  if p == nil then return nil end
  return ffi.string(p, lenbox[0])
end

--- Declares section `name` of the header (core, host, thread, callback, sync, channel, encoder,
--- pool, pool_worker) in this state, once.
--- (A type each section declares is its cdef_once marker.)
local SECTION_MARKER = { core = "ljasync_message", host = "struct ljasync_test_hooks", thread = "ljasync_thread",
                         callback = "ljasync_callback", sync = "struct ljasync_mutex_h", channel = "ljasync_cell",
                         encoder = "enum ljasync_format", pool = "ljasync_pool_result", pool_worker = "ljasync_pool_job" }
function M.declare(name)
  local marker = SECTION_MARKER[name]
  if declared[marker] then return end
  local text = marker and section_text(name)
  if not marker or not text then error("lj-async: the core's header has no section '" .. tostring(name) .. "'", 2) end
  M.cdef_once(marker, text)
end
M.declare "core"

if host then host.check_luajit(M) end

-- States made from now on get this state's module paths, so `require` works the same there.
M.C.ljasync_env_set_paths(package.path, package.cpath)

-- The module cache's searcher (see core_host): a state the core made has it in its registry.
M.searcher = registry and registry.ljasync_searcher

--- The core's timeout for timeout argument `t`: nil or math.huge -> -1 (wait forever), a
--- number >= 0 -> itself (0 = try once). Anything else (negative, NaN, not a number) raises
--- "bad argument #<argn> to '<fname>' (timeout must be nil or seconds >= 0, got <t>)" at
--- `level` (as for error(); default 2: the caller of the function that calls this). Cheap
--- and NYI-free: hot paths (push, pop, lock) call it on every call.
local huge = 1 / 0  -- math.huge, without opening math in a light state
function M.timeout(t, argn, fname, level)
  if t == nil or t == huge then return -1 end
  if type(t) == "number" and t >= 0 then return t end  -- NaN fails t >= 0
  error(("bad argument #%d to '%s' (timeout must be nil or seconds >= 0, got %s)"):format(
    argn, fname, type(t) == "number" and tostring(t) or type(t)), (level or 2) + 1)
end

--- Scratch buffer for error text written by the core; reused (one Lua thread per state).
--- Made at first use (core.errbuf), as are the fields below.
M.errbuf_size = 4096

-- Fields only some states use, made or loaded at their first use: core.errbuf (4 KiB),
-- core.check_options (lj-async.checks), and what lj-async.core_host attaches (a state that
-- creates states, provides modules or registers init code). A state the core made and that only
-- runs its function (a spawned thread, a pool worker) loads none of them.
local HOST_FIELDS = { luajit = true, owner = true, modules = true, provide = true, encode_code = true,
                      encode_function = true, portable_code = true, check_bytecode = true, add_init = true }
setmetatable(M, { __index = function(t, k)
  if k == "errbuf" then
    local buf = ffi.new("char[?]", t.errbuf_size)
    rawset(t, k, buf)
    return buf
  elseif k == "check_options" then
    local f = require("lj-async.checks").check_options
    rawset(t, k, f)
    return f
  elseif HOST_FIELDS[k] then
    require("lj-async.core_host").attach(t, made_by_core)
    return rawget(t, k)
  end
  return nil
end })

if host then host.attach(M, false) end

return M
