-- Private: what lj-async.core holds for a state that creates states, provides modules or
-- registers init code, split off so that the states the core makes (a spawned thread, a pool
-- worker, a callback) do not load it: finding the core, refusing a LuaJIT that cannot serve,
-- filling the module cache, portable code, init code. A host state (one the core did not make)
-- attaches it while lj-async.core loads, in the order that file had it; a state the core made
-- attaches it at the first use of one of its fields (core.lua's __index).
local ffi = require "ffi"

local H = {}

-- Where the core is, first found: $LJASYNC_CORE; package.cpath (the installed layout); inside
-- LÖVE (the game's state, or a love.thread that required love.filesystem), the game's folder,
-- the folder holding the .love (or the fused executable) and the save directory (LÖVE's own C
-- loader never looks beside a .love, and package.cpath knows none of them); the build trees
-- next to this file (lua/lj-async/ -> ../../.build/...), so tests need no install. States the
-- core makes skip this: they load the creator's core (core.lua).
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

function H.locate()
  local env = os.getenv("LJASYNC_CORE")
  if env and env ~= "" then return env end
  local found = package.searchpath("ljasync_core", package.cpath) or in_love()
  if found then return found end
  local src = debug.getinfo(1, "S").source
  local dir = src:sub(1, 1) == "@" and src:match("^@(.*)/lj%-async/core_host%.lua$")
  if dir then
    for _, rel in ipairs { "/../.build/release/libljasync_core.so", "/../build/ljasync_core.so",
                           "/../.build/debug/libljasync_core.so" } do
      if readable(dir .. rel) then return dir .. rel end
    end
  end
  return nil
end

-- The core binds LuaJIT's C API itself, from whatever program it is in (docs/embedding.md):
-- refuse here, with its reason, when it found none, or one that cannot load this state's bytecode.
function H.check_luajit(M)
  local C = M.C
  M.declare "host"
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
    error(ffi.string(buf), 4)  -- refuse < check_luajit < core.lua's main chunk < require
  end
  if C.ljasync_luajit_status(buf, 1024) == 0 then refuse() end
  M.luajit = ffi.string(buf)  -- where the API came from, for diagnostics and tests
  local probe = string.dump(function() return 42 end, true)
  if C.ljasync_luajit_check(probe, #probe, jit.version, buf, 1024) == 0 then refuse() end
end

-- The state's core table `M` (lj-async.core's, with C, path, declare and searcher set) gets the
-- rest; `made_by_core` says the core made this state. Raises, as core.lua did, at require's caller.
function H.attach(M, made_by_core)
  local C, path = M.C, M.path
  -- (rawget: a field not set yet would call core.lua's __index, which attaches.)
  if rawget(M, "luajit") == nil then H.check_luajit(M) end

  -- This state's token for the init code it registers (add_init): when the state closes, the
  -- code no other state registered is withdrawn (an nginx reload closes the master's Lua VM and
  -- makes a new one in the same process). Kept in the registry: one per state, even when this
  -- module is loaded again.
  do
    local reg = debug.getregistry()
    local sentinel = reg["lj-async.owner"]
    if not sentinel then
      sentinel = ffi.gc(ffi.new("int64_t[1]", C.ljasync_env_owner_new()), function(p) C.ljasync_env_owner_drop(p[0]) end)
      reg["lj-async.owner"] = sentinel
    end
    M.owner = sentinel[0]
  end

  -- States made from now on load this same core, even where no path or variable leads to it.
  if not made_by_core then C.ljasync_env_set_core(path) end

  -- Every lj-async module, private ones included (spec/modules_spec.lua checks this list against
  -- the files). States the core makes load them from the process-wide bytecode cache
  -- (State/ModuleCache.swift) through its one searcher, whatever their paths and loaders.
  M.modules = {
    "lj-async.core", "lj-async.core_host", "lj-async.callback", "lj-async.thread", "lj-async.sync", "lj-async.pool",
    "lj-async.pool_abi", "lj-async.pool_worker", "lj-async.encoder", "lj-async.encoder.general_writer", "lj-async.encoder.reader",
    "lj-async.encoder.modules", "lj-async.encoder.native", "lj-async.encoder.registry", "lj-async.encoder.plain",
    "lj-async.encoder.scan", "lj-async.encoder.ctypes", "lj-async.sandbox", "lj-async.ctype", "lj-async.love", "lj-async.checks", "lj-async.ngx",
    "lj-async.sync.abi", "lj-async.sync.handle", "lj-async.sync.check", "lj-async.sync.mutex",
    "lj-async.sync.condition", "lj-async.sync.semaphore", "lj-async.sync.atomic", "lj-async.sync.shared",
    "lj-async.sync.channel", "lj-async.sync.channel_batch", "lj-async.light_channel",
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
  -- cache keeps the chunk name, so tracebacks name the file; `strip` drops the line and variable
  -- names (string.dump(fn, true)).
  local function dump_loader(fn, strip)
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
    local ok, code = pcall(string.dump, fn, strip)
    if not ok then return nil, tostring(code) end
    return code, info.source
  end

  local function put(name, chunkname, code)
    return C.ljasync_module_put(name, chunkname, code, #code) == 1
  end

  -- Fills the cache with every lj-async module, once per process (the first state that loads
  -- this module does it; the cache keeps the first entry per name). A module this state cannot
  -- find or dump is noted: states requiring it then say why, and their other searchers go on.
  -- lj-async's own bytecode is stripped: every state that loads a module holds its code, and
  -- the line and variable names are a third of it (a spawned thread holding a channel: 8 KiB of
  -- RSS less, a pool worker 6). Errors lj-async raises name the user's file:line (they are
  -- raised at the caller's level); tracebacks show lj-async's frames by file and function, without
  -- lines. LJASYNC_KEEP_LINES=1 in the environment keeps them (debugging lj-async itself).
  if C.ljasync_memo_get("lj-async modules") < 0 then
    local len, chunk = ffi.new("size_t[1]"), ffi.new("char[1]")
    local strip = (os.getenv("LJASYNC_KEEP_LINES") or "") == ""
    for _, name in ipairs(M.modules) do
      if C.ljasync_module_get(name, len, chunk, 1) == nil then
        local code, chunkname = find_loader(name)  -- the loader, or nil and why not
        if code then code, chunkname = dump_loader(code, strip) end
        if code then
          put(name, chunkname, code)
        else
          C.ljasync_module_note(name, "not cached when lj-async loaded: " .. tostring(chunkname))
        end
      end
    end
    C.ljasync_memo_set("lj-async modules", 1)
  end

  -- This state loads lj-async's modules from the cache too: the same code as everywhere, and
  -- found even if package.path changes. States the core made have the searcher already (their
  -- prelude installed it and keeps it in the registry), so they skip package.loadlib's dlopen.
  -- Hosts without package.loadlib keep their own loaders.
  if not M.searcher and package.loadlib then
    local install = package.loadlib(path, "ljasync_module_install")
    if install then
      local searcher, err = install()
      if not searcher then error("lj-async: cannot install the module searcher: " .. tostring(err), 4) end
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
    local code, chunk = dump_loader(loader, false)
    if not code then error(("cannot provide module '%s': %s"):format(name, chunk), 2) end
    return put(name, chunk, code)
  end

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

  --- Registers code run by every state created from now on (callbacks, threads, workers):
  --- `code` is Lua source or bytecode, or a function (dumped; one with upvalues is encoded and
  --- decoded in each new state, its upvalues copied by value).
  function M.add_init(code, name)
    if name ~= nil and type(name) ~= "string" then error("bad init code name: expected a string, got " .. type(name), 3) end
    -- A function with upvalues is encoded into a message its loader decodes by address: the
    -- registry entry owns it (freed once replaced or withdrawn and no state being made runs it).
    local msg = nil
    if type(code) == "function" then
      local f = code
      code = M.portable_code(f, "init code", 3)
      if not code then
        msg = M.encode_function(f, "init code", 3)
        code = string.dump(assert(loadstring(("return require('lj-async.encoder').decode_message("
          .. "require('ffi').cast('ljasync_message *', %.17g))(...)"):format(
          tonumber(ffi.cast("uintptr_t", msg))), "=lj-async init")))
      end
    end
    if type(code) ~= "string" then error("init code must be a string or a function", 3) end
    local ok, err = loadstring(code, name)
    if not ok then
      if msg ~= nil then C.ljasync_message_free(msg) end
      error("bad init code: " .. tostring(err), 3)
    end
    C.ljasync_env_add_init(name or "=init", code, #code, msg, M.owner)
  end
end

return H
