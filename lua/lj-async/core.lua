-- Private: loads the Swift core (ljasync_core.so) once per state and declares its shared ABI.
local ffi = require "ffi"

local M = {}

--- Declares `decl` unless `marker` (a type the block declares) already exists: modules may be
--- loaded again in one state (busted's insulation), and ffi.cdef refuses redefinitions.
function M.cdef_once(marker, decl)
  if not pcall(ffi.typeof, marker) then ffi.cdef(decl) end
end

M.cdef_once("ljasync_env_marker", [[
typedef struct ljasync_env_marker ljasync_env_marker;
void ljasync_env_set_paths(const char *path, const char *cpath);
void ljasync_env_add_init(const char *name, const char *code, size_t len, int64_t owner);
int64_t ljasync_env_owner_new(void);
void ljasync_env_owner_drop(int64_t owner);
void ljasync_env_set_stock(int32_t n);
int32_t ljasync_ctype_parse(const char *text, char *out, size_t len);
typedef struct ljasync_message ljasync_message;
void ljasync_object_retain(void *p);
void ljasync_object_release(void *p);
ljasync_message *ljasync_message_new(const void *data, size_t len);
const void *ljasync_message_data(ljasync_message *m, size_t *len);
void ljasync_message_free(ljasync_message *m);
void ljasync_module_put(const char *name, const char *chunk, const void *code, size_t len);
const void *ljasync_module_get(const char *name, size_t *len, char *chunk, size_t chunk_len);
int32_t ljasync_memo_get(const char *key);
void ljasync_memo_set(const char *key, int32_t value);
]])

-- Where the core is: $LJASYNC_CORE, then package.cpath (the installed layout), then the
-- build trees next to this file (lua/lj-async/ -> ../../.build/...), so tests need no install.
local function locate()
  local env = os.getenv("LJASYNC_CORE")
  if env and env ~= "" then return env end
  local found = package.searchpath("ljasync_core", package.cpath)
  if found then return found end
  local src = debug.getinfo(1, "S").source
  local dir = src:sub(1, 1) == "@" and src:match("^@(.*)/lj%-async/core%.lua$")
  if dir then
    for _, rel in ipairs { "/../.build/release/libljasync_core.so", "/../build/ljasync_core.so",
                           "/../.build/debug/libljasync_core.so" } do
      local f = io.open(dir .. rel, "rb")
      if f then f:close(); return dir .. rel end
    end
  end
  return nil
end

local path = locate()
if not path then
  error("lj-async: cannot find ljasync_core.so (set LJASYNC_CORE, add its directory to package.cpath, or build with 'make')", 2)
end
M.path = path
M.C = ffi.load(path)

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

-- lj-async's own modules load as bytecode compiled once per process (see ModuleCache.swift):
-- new states (threads, workers, callbacks) then skip parsing them. Tracebacks keep file names.
do
  local len, chunk = ffi.new("size_t[1]"), ffi.new("char[1024]")
  local function search(name)
    if not name:match("^lj%-async%.") then return nil end
    local p = M.C.ljasync_module_get(name, len, chunk, 1024)
    if p ~= nil then
      return assert(loadstring(ffi.string(p, len[0]), ffi.string(chunk)))
    end
    local path = package.searchpath(name, package.path)
    if not path then return nil end
    local f = io.open(path, "rb")
    if not f then return nil end
    local src = f:read("*a")
    f:close()
    local fn, err = loadstring(src, "@" .. path)
    if not fn then error(err, 0) end
    local code = string.dump(fn)
    M.C.ljasync_module_put(name, "@" .. path, code, #code)
    return fn
  end
  local loaders = package.loaders
  for i = 1, #loaders do if loaders[i] == package.ljasync_searcher then table.remove(loaders, i) break end end
  -- After package.preload and, in states the core prepared, after its own C searcher (which
  -- loads cached bytecode without a copy); before the file searchers.
  local at = 2
  if package.ljasync_cached_searcher and loaders[2] == package.ljasync_cached_searcher then at = 3 end
  table.insert(loaders, at, search)
  package.ljasync_searcher = search
  -- This module was itself loaded from source: cache it for the states made from now on.
  local src = debug.getinfo(1, "S").source
  if src:sub(1, 1) == "@" and M.C.ljasync_module_get("lj-async.core", len, chunk, 1024) == nil then
    local fn = loadfile(src:sub(2))
    if fn then
      local code = string.dump(fn)
      M.C.ljasync_module_put("lj-async.core", src, code, #code)
    end
  end
end

--- Scratch buffer for error text written by the core; reused (one Lua thread per state).
M.errbuf_size = 4096
M.errbuf = ffi.new("char[?]", M.errbuf_size)

-- Bytecode per function, so a function started many times is dumped once; sources checked
-- once (boundedly: strings are never collected from weak tables).
local code_cache = setmetatable({}, { __mode = "k" })
local source_ok, source_count = {}, 0

--- Turns a function, Lua source or bytecode into a string that can enter another state.
--- `what` names it in errors ("callback function"), `where` is the state it goes to. A
--- function's upvalues would silently be nil there: it is refused with an error naming them.
--- Source is compiled here to report syntax errors at the call; bytecode is checked where it
--- loads. Errors are raised at `level` (as for error()) above the caller.
function M.portable_code(f, what, level, where, chunkname)
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
  local names = {}
  for i = 1, 255 do
    local n = debug.getupvalue(f, i)
    if not n then break end
    names[#names + 1] = n
  end
  if #names > 0 then
    error(("bad %s: it has upvalues (%s), which would be nil in %s; "
      .. "require modules and define values inside the function"):format(what, table.concat(names, ", "), where),
      level + 1)
  end
  local ok, dumped = pcall(string.dump, f)
  if not ok then error(("bad %s: %s"):format(what, tostring(dumped)), level + 1) end
  code_cache[f] = dumped
  return dumped
end

--- Registers code run by every state created from now on (callbacks, threads, workers):
--- `code` is Lua source or bytecode, or a function (dumped; it must have no upvalues).
function M.add_init(code, name)
  if type(code) == "function" then code = string.dump(code) end
  if type(code) ~= "string" then error("init code must be a string or a function", 3) end
  local ok, err = loadstring(code, name)
  if not ok then error("bad init code: " .. tostring(err), 3) end
  M.C.ljasync_env_add_init(name or "=init", code, #code, M.owner)
end

return M
