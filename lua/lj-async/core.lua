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

-- Where the core is, first found: $LJASYNC_CORE; package.cpath (the installed layout); inside
-- LÖVE (the game's state, or a love.thread that required love.filesystem), the game's folder,
-- the folder holding the .love (or the fused executable) and the save directory (LÖVE's own C
-- loader never looks beside a .love, and package.cpath knows none of them); the build trees
-- next to this file (lua/lj-async/ -> ../../.build/...), so tests need no install. States the
-- core makes skip this: they load the creator's core (below).
local CORE_NAMES = { "ljasync_core.so", "libljasync_core.so" }

local function readable(file)
  local f = io.open(file, "rb")
  if f then f:close() end
  return f ~= nil
end

local function in_love()
  local lfs = package.loaded["love.filesystem"]
  if type(lfs) ~= "table" then
    local love = rawget(_G, "love")
    lfs = type(love) == "table" and love.filesystem or nil
  end
  if not lfs then return nil end
  local dirs = {}
  for _, get in ipairs { "getSource", "getSourceBaseDirectory", "getSaveDirectory" } do
    local ok, dir = pcall(lfs[get])
    -- A .love's getSource is the zip itself: opening "x.love/ljasync_core.so" then fails.
    if ok and type(dir) == "string" and dir ~= "" then dirs[#dirs + 1] = dir end
  end
  for _, dir in ipairs(dirs) do
    for _, name in ipairs(CORE_NAMES) do
      if readable(dir .. "/" .. name) then return dir .. "/" .. name end
    end
  end
  return nil
end

local function locate()
  local env = os.getenv("LJASYNC_CORE")
  if env and env ~= "" then return env end
  local found = package.searchpath("ljasync_core", package.cpath) or in_love()
  if found then return found end
  local src = debug.getinfo(1, "S").source
  local dir = src:sub(1, 1) == "@" and src:match("^@(.*)/lj%-async/core%.lua$")
  if dir then
    for _, rel in ipairs { "/../.build/release/libljasync_core.so", "/../build/ljasync_core.so",
                           "/../.build/debug/libljasync_core.so" } do
      if readable(dir .. rel) then return dir .. rel end
    end
  end
  return nil
end

-- A state the core made uses the core already loaded in this process, whatever its paths:
-- its prelude left the path in the registry (see ModuleCache.install).
local registry = debug.getregistry()
local made_by_core = registry.ljasync_core
local path = made_by_core or locate()
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
M.cdef_once("ljasync_abi_cdef", "const char *ljasync_abi_cdef(size_t *len); typedef struct ljasync_abi_cdef ljasync_abi_cdef;")
-- Section `name` of the header text, or nil. The text is fetched for each section and not kept:
-- held per state it would cost every state its 12 KiB (a state declares a few sections).
local function section_text(name)
  local len = ffi.new("size_t[1]")
  local text = ffi.string(M.C.ljasync_abi_cdef(len), len[0])
  local head = "/* LJASYNC_CDEF_SECTION " .. name .. " */"
  local b = text:find(head, 1, true)  -- plain finds: a pattern scan of the text costs a new state ~0.4 ms
  if not b then return nil end
  local e = text:find("/* LJASYNC_CDEF_SECTION ", b + #head, true)
  return text:sub(b + #head, (e or #text + 1) - 1)
end

--- Declares section `name` of the header (core, thread, callback, sync, encoder, pool) in this
--- state, once.
--- (A type each section declares is its cdef_once marker.)
local SECTION_MARKER = { core = "ljasync_message", thread = "ljasync_thread", callback = "ljasync_callback",
                         sync = "ljasync_cell", encoder = "enum ljasync_format", pool = "ljasync_pool_job" }
function M.declare(name)
  local marker = SECTION_MARKER[name]
  if declared[marker] then return end
  local text = marker and section_text(name)
  if not marker or not text then error("lj-async: the core's header has no section '" .. tostring(name) .. "'", 2) end
  M.cdef_once(marker, text)
end
M.declare "core"

-- The core binds LuaJIT's C API itself, from whatever program it is in (docs/embedding.md):
-- refuse here, with its reason, when it found none, or one that cannot load this state's bytecode.
do
  local buf = ffi.new("char[1024]")
  local function refuse()
    -- Drop require's "being loaded" mark (what package.loaded holds for this module now) from
    -- lj-async's modules, so that requiring them again raises this error again instead of
    -- Lua 5.1's "loop or previous error loading module".
    local mark = package.loaded["lj-async.core"]
    for name, v in pairs(package.loaded) do
      if mark ~= nil and v == mark and type(name) == "string" and name:match("^lj%-async%.") then
        package.loaded[name] = nil
      end
    end
    error(ffi.string(buf), 3)
  end
  if M.C.ljasync_luajit_status(buf, 1024) == 0 then refuse() end
  M.luajit = ffi.string(buf)  -- where the API came from, for diagnostics and tests
  local probe = string.dump(function() return 42 end, true)
  if M.C.ljasync_luajit_check(probe, #probe, jit.version, buf, 1024) == 0 then refuse() end
end

-- States made from now on get this state's module paths, so `require` works the same there.
M.C.ljasync_env_set_paths(package.path, package.cpath)

-- This state's token for the init code it registers (add_init): when the state closes, the
-- code no other state registered is withdrawn (an nginx reload closes the master's Lua VM and
-- makes a new one in the same process). Kept in the registry: one per state, even when this
-- module is loaded again.
do
  local reg = debug.getregistry()
  local sentinel = reg["lj-async.owner"]
  if not sentinel then
    local C = M.C
    sentinel = ffi.gc(ffi.new("int64_t[1]", C.ljasync_env_owner_new()), function(p) C.ljasync_env_owner_drop(p[0]) end)
    reg["lj-async.owner"] = sentinel
  end
  M.owner = sentinel[0]
end

-- States made from now on load this same core, even where no path or variable leads to it.
if not made_by_core then M.C.ljasync_env_set_core(path) end

-- Every lj-async module, private ones included (spec/modules_spec.lua checks this list against
-- the files). States the core makes load them from the process-wide bytecode cache
-- (State/ModuleCache.swift) through its one searcher, whatever their paths and loaders.
M.modules = {
  "lj-async.core", "lj-async.callback", "lj-async.thread", "lj-async.sync", "lj-async.pool",
  "lj-async.pool_abi", "lj-async.pool_worker", "lj-async.encoder", "lj-async.encoder.general_writer", "lj-async.encoder.reader",
  "lj-async.encoder.modules", "lj-async.encoder.native", "lj-async.encoder.registry", "lj-async.encoder.plain",
  "lj-async.encoder.scan", "lj-async.sandbox", "lj-async.ctype", "lj-async.love", "lj-async.checks", "lj-async.ngx",
  "lj-async.sync.abi", "lj-async.sync.handle", "lj-async.sync.check", "lj-async.sync.mutex",
  "lj-async.sync.condition", "lj-async.sync.semaphore", "lj-async.sync.atomic", "lj-async.sync.shared",
  "lj-async.sync.channel",
  "lj-async.pool.check", "lj-async.pool.jobs", "lj-async.pool.love_api", "lj-async.pool.luanti_api",
  "lj-async.pool.settings",
}

-- The loader this state's own package.loaders give for `name` (each searcher in order, as
-- require does, without running the module), or nil and why not. The cache's searcher
-- (M.searcher, once installed) is skipped: it would only hand back what the cache holds.
local function find_loader(name)
  local loaders, notes = package.loaders, {}
  for i = 1, #loaders do
    local searcher = loaders[i]
    if searcher ~= M.searcher then
      local ok, loader = pcall(searcher, name)
      if not ok then return nil, ("package.loaders[%d] failed: %s"):format(i, tostring(loader)) end
      if type(loader) == "function" then return loader, i end
      if type(loader) == "string" then notes[#notes + 1] = loader end
    end
  end
  return nil, "not found:" .. table.concat(notes)
end

-- Bytecode and chunk name of a module's main function, or nil and why it cannot move. The
-- bytecode keeps the chunk name (string.dump without stripping), so tracebacks name the file.
local function dump_loader(fn)
  local info = debug.getinfo(fn, "Su")
  if info.what == "C" then
    return nil, "its loader is a C function, and only Lua functions can be saved as bytecode (string.dump)"
  end
  if info.nups > 0 then
    local names = {}
    for i = 1, info.nups do names[i] = debug.getupvalue(fn, i) end
    return nil, ("its loader has upvalues (%s), which would be nil in other states"):format(
      table.concat(names, ", "))
  end
  local ok, code = pcall(string.dump, fn)
  if not ok then return nil, tostring(code) end
  return code, info.source
end

local function put(name, chunkname, code)
  return M.C.ljasync_module_put(name, chunkname, code, #code) == 1
end

-- Fills the cache with every lj-async module, once per process (the first state that loads
-- this module does it; the cache keeps the first entry per name). A module this state cannot
-- find or dump is noted: states requiring it then say why, and their other searchers go on.
if M.C.ljasync_memo_get("lj-async modules") < 0 then
  local len, chunk = ffi.new("size_t[1]"), ffi.new("char[1]")
  for _, name in ipairs(M.modules) do
    if M.C.ljasync_module_get(name, len, chunk, 1) == nil then
      local code, chunkname = find_loader(name)  -- the loader, or nil and why not
      if code then code, chunkname = dump_loader(code) end
      if code then
        put(name, chunkname, code)
      else
        M.C.ljasync_module_note(name, "not cached when lj-async loaded: " .. tostring(chunkname))
      end
    end
  end
  M.C.ljasync_memo_set("lj-async modules", 1)
end

-- This state loads lj-async's modules from the cache too: the same code as everywhere, and
-- found even if package.path changes. States the core made have the searcher already (their
-- prelude installed it and keeps it in the registry), so they skip package.loadlib's dlopen.
-- Hosts without package.loadlib keep their own loaders.
M.searcher = registry.ljasync_searcher
if not M.searcher and package.loadlib then
  local install = package.loadlib(path, "ljasync_module_install")
  if install then
    local searcher, err = install()
    if not searcher then error("lj-async: cannot install the module searcher: " .. tostring(err), 2) end
    M.searcher = searcher
  end
end

--- Makes module `name` available to every state created from now on (and to those running:
--- `require` there finds it), as the process-wide cache's bytecode: for modules other states
--- cannot find themselves, such as a LÖVE game's files inside its `.love` zip. `loader` is
--- the module's main function (a Lua function without upvalues), its Lua source (named
--- `chunkname`, default "=name") or bytecode, or nil to find it through this state's
--- package.loaders. In other states `require(name)` runs it as this state's require would.
--- The first module provided under a name stays: returns true when stored, false when the
--- name was taken (by lj-async's own modules too).
function M.provide(name, loader, chunkname)
  if type(name) ~= "string" or name == "" then
    error(("bad argument #1 to 'provide': expected a module name, got %s"):format(type(name)), 2)
  end
  if chunkname ~= nil and (type(chunkname) ~= "string" or type(loader) ~= "string" or loader:byte(1) == 27) then
    error("bad argument #3 to 'provide': a chunk name string names source code (a function or bytecode keeps its own)", 2)
  end
  local why
  if loader == nil then
    loader, why = find_loader(name)
    if not loader then error(("cannot provide module '%s': %s"):format(name, why), 2) end
  elseif type(loader) == "string" then
    local fn, err = loadstring(loader, chunkname or ("=" .. name))
    if not fn then error(("bad argument #2 to 'provide' (module '%s'): %s"):format(name, tostring(err)), 2) end
    loader = fn
  elseif type(loader) ~= "function" then
    error(("bad argument #2 to 'provide': expected a function, Lua source or bytecode, got %s"):format(type(loader)), 2)
  end
  local code, chunk = dump_loader(loader)
  if not code then error(("cannot provide module '%s': %s"):format(name, chunk), 2) end
  return put(name, chunk, code)
end

--- Scratch buffer for error text written by the core; reused (one Lua thread per state).
M.errbuf_size = 4096
M.errbuf = ffi.new("char[?]", M.errbuf_size)

-- Bytecode per function, so a function started many times is dumped once; sources checked
-- once (boundedly: strings are never collected from weak tables).
local code_cache = setmetatable({}, { __mode = "k" })
local source_ok, source_count = {}, 0

--- Encodes the values into a native message (lj-async.encoder: a function's upvalues copied
--- by value, loaded modules as `require`), which the caller owns. Value i is code named
--- whats[i] ("callback function"): what cannot move in it is refused with the encoder's own
--- text, its path starting at the function ("bad callback function: upvalue 'co': cannot move
--- a coroutine"), raised at `level` above the caller. A refusal elsewhere returns nil and the
--- encoder's message.
function M.encode_code(whats, level, ...)
  local msg, err = require("lj-async.encoder").try_encode_message(...)
  if msg then return msg end
  local i, rest = tostring(err):match("^argument (%d+)(.*)$")
  local what = i and whats[tonumber(i)]
  if not what then return nil, err end
  rest = rest:gsub("^ %(upvalue '([^']*)'%)", "upvalue '%1'"):gsub("^: ", "")
  error(("bad %s: %s"):format(what, rest), level + 1)
end

--- encode_code for one function `f` named `what`, then the values after it.
function M.encode_function(f, what, level, ...)
  local msg, err = M.encode_code({ what }, level + 1, f, ...)
  return msg, err  -- not a tail call: error levels count this frame
end

--- Turns a function, Lua source or bytecode into a string that can enter another state.
--- `what` names it in errors ("callback function"). A function with upvalues returns nil: the
--- caller encodes it (encode_function) and the new state decodes it, so only such functions
--- load the encoder there. Source is compiled here to report syntax errors at the call;
--- bytecode is checked where it loads. Errors are raised at `level` (as for error()) above
--- the caller.
function M.portable_code(f, what, level, chunkname)
  if type(f) == "string" then
    if f:byte(1) == 27 or source_ok[f] then return f end
    local ok, err = loadstring(f, chunkname or ("=" .. what))
    if not ok then error(("bad %s: %s"):format(what, tostring(err)), level + 1) end
    if source_count >= 256 then source_ok, source_count = {}, 0 end
    source_ok[f], source_count = true, source_count + 1
    return f
  end
  if type(f) ~= "function" then
    error(("bad %s: expected a function, Lua source or bytecode, got %s"):format(what, type(f)), level + 1)
  end
  local code = code_cache[f]
  if code then return code end
  if debug.getupvalue(f, 1) ~= nil then return nil end  -- encoded at each creation: current values
  local ok, dumped = pcall(string.dump, f)
  if not ok then error(("bad %s: %s"):format(what, tostring(dumped)), level + 1) end
  code_cache[f] = dumped
  return dumped
end

-- Bytecode already loaded once in this state (bounded, as the source check above is).
local bytecode_ok, bytecode_count = {}, 0

--- Loads bytecode `code` once here (the same LuaJIT as the state it goes to), so bytes that
--- do not load are refused at the call: "<what> (invalid bytecode: <why>)" at `level`, where
--- `what` names the argument ("bad argument #1 to 'new'"). Anything but bytecode passes.
function M.check_bytecode(code, what, level)
  if type(code) ~= "string" or code:byte(1) ~= 27 or bytecode_ok[code] then return end
  local ok, err = loadstring(code)
  if not ok then
    error(("%s (invalid bytecode: %s)"):format(what, (tostring(err):gsub("^%(binary%): ", ""))), level + 1)
  end
  if bytecode_count >= 256 then bytecode_ok, bytecode_count = {}, 0 end
  bytecode_ok[code], bytecode_count = true, bytecode_count + 1
end

-- Messages holding init functions with upvalues. Never freed: a state being made may run the
-- registration's code at any time, and nothing says when the last one has (one per call).
local init_messages = {}

--- Registers code run by every state created from now on (callbacks, threads, workers):
--- `code` is Lua source or bytecode, or a function (dumped; one with upvalues is encoded and
--- decoded in each new state, its upvalues copied by value).
function M.add_init(code, name)
  if name ~= nil and type(name) ~= "string" then error("bad init code name: expected a string, got " .. type(name), 3) end
  if type(code) == "function" then
    local f = code
    code = M.portable_code(f, "init code", 3)
    if not code then
      local msg = M.encode_function(f, "init code", 3)
      init_messages[#init_messages + 1] = msg
      code = string.dump(assert(loadstring(("return require('lj-async.encoder').decode_message("
        .. "require('ffi').cast('ljasync_message *', %.17g))(...)"):format(
        tonumber(ffi.cast("uintptr_t", msg))), "=lj-async init")))
    end
  end
  if type(code) ~= "string" then error("init code must be a string or a function", 3) end
  local ok, err = loadstring(code, name)
  if not ok then error("bad init code: " .. tostring(err), 3) end
  M.C.ljasync_env_add_init(name or "=init", code, #code, M.owner)
end


-- Argument checks shared by the public modules (lua/lj-async/checks.lua).
do
  local checks = require "lj-async.checks"
  M.timeout, M.check_options = checks.timeout, checks.check_options
end

return M
