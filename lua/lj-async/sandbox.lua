-- Private: restricted job environments in pool workers, for code that must not get the worker's full rights (the Luanti mod's jobs).
--
-- A worker's state is unrestricted (io, os, ffi, debug, package). A restricted job runs in an
-- environment named by a string (one per mod), made on first use in each worker and kept for
-- the worker's life, so globals set by the environment's async files and jobs persist there:
-- no io, os only time/clock/date, no ffi, debug, jit, package, string.buffer, loadfile or
-- dofile, `require` only of the standard libraries it holds, loadstring/load of text only.
--
-- The job's function and arguments cross as one encoded string inside an ordinary pool job, so
-- they are decoded here, under the environment's rules, not by the worker loop:
--   * upvalues that are modules cross as require(name): while decoding, the encoder's `require`
--     is the environment's, which refuses every module it does not hold (ffi, io, lj-async.*);
--   * every Lua function decoded gets the environment as its globals (setfenv), and a decoded
--     value reaching a module table, a C function the environment lacks, or a cdata other than
--     a 64-bit integer or a complex number (pointers, structs, lj-async handles) is refused.
--
-- submit/add_file/add_metatable run in the submitting state, on its thread; run/run_file/
-- run_metatable and the environment's functions run in a worker, on the worker's thread.
local ffi = require "ffi"
local encoder = require "lj-async.encoder"

local type, next, pairs, ipairs, error, pcall, select, unpack, tostring, rawget, rawset, setmetatable =
      type, next, pairs, ipairs, error, pcall, select, unpack, tostring, rawget, rawset, setmetatable
local getfenv, setfenv, loadstring, format, byte, concat = getfenv, setfenv, loadstring, string.format, string.byte, table.concat
local getinfo, getupvalue, getmetatable = debug.getinfo, debug.getupvalue, getmetatable
local ffi_typeof = ffi.typeof
local loaded = package.loaded


local M = {}

-- -- Environments (worker side) --

local BASIC = { "assert", "error", "ipairs", "next", "pairs", "pcall", "xpcall", "select", "tonumber",
  "tostring", "type", "unpack", "rawequal", "rawget", "rawset", "setmetatable", "print",
  "collectgarbage", "gcinfo", "_VERSION" }
local LIBS = {
  string = { "byte", "char", "dump", "find", "format", "gmatch", "gsub", "len", "lower", "match",
             "rep", "reverse", "sub", "upper" },
  table = { "concat", "insert", "maxn", "remove", "sort", "foreach", "foreachi", "getn" },
  math = { "abs", "acos", "asin", "atan", "atan2", "ceil", "cos", "cosh", "deg", "exp", "floor",
           "fmod", "frexp", "huge", "ldexp", "log", "log10", "max", "min", "modf", "pi", "pow",
           "rad", "random", "randomseed", "sin", "sinh", "sqrt", "tan", "tanh" },
  bit = { "tobit", "tohex", "bnot", "band", "bor", "bxor", "lshift", "rshift", "arshift", "rol", "ror", "bswap" },
  coroutine = { "create", "resume", "running", "status", "wrap", "yield" },
  os = { "time", "clock", "date" },
}

local envs = {}                                   -- name -> environment
local privileged = setmetatable({}, { __mode = "k" })  -- tables no restricted code may get as an env
local owned = setmetatable({}, { __mode = "k" })       -- the environments' own tables and functions
local allowed_c = setmetatable({}, { __mode = "k" })   -- C functions some environment holds
local requires = setmetatable({}, { __mode = "k" })    -- environment -> its require
privileged[getfenv(encoder.decode)] = true
privileged[getfenv(0)] = true

local function own(v) owned[v] = true; return v end

local function refused_module(name, env_name)
  return format("module '%s' is not available to restricted jobs (environment '%s')", tostring(name), env_name)
end

local function make_env(name)
  local env = {}
  privileged[env], owned[env] = true, true
  for _, k in ipairs(BASIC) do env[k] = _G[k] end
  for lib, fields in pairs(LIBS) do
    local src, t = _G[lib], own({})
    for _, k in ipairs(fields) do t[k] = src[k] end
    env[lib] = t
  end
  env._G = env
  -- A string's metatable leads to the worker's own string table, shared with trusted code.
  local string_mt = own({ __index = env.string })
  local function safe_getmetatable(v)
    if type(v) == "string" then return string_mt end
    return getmetatable(v)
  end
  local function visible(e) return (privileged[e] and e ~= env) and env or e end
  local function safe_getfenv(f)
    if f == nil then f = 1 end
    if type(f) == "number" then
      if f == 0 then return env end
      return visible(getfenv(f + 1))
    end
    if type(f) ~= "function" then error("bad argument #1 to 'getfenv' (function or level expected)", 2) end
    return visible(getfenv(f))
  end
  local function safe_setfenv(f, t)
    if type(t) ~= "table" then error("bad argument #2 to 'setfenv' (table expected)", 2) end
    if type(f) == "number" then
      if f == 0 then error("setfenv(0) is not allowed in restricted jobs", 2) end
      local info = getinfo(f + 1, "f")
      if not info then error("bad argument #1 to 'setfenv' (invalid level)", 2) end
      f = info.func
    end
    if type(f) ~= "function" then error("bad argument #1 to 'setfenv' (function or level expected)", 2) end
    local e = getfenv(f)
    if owned[f] or getinfo(f, "S").what == "C" or (privileged[e] and e ~= env) then
      error("setfenv: this function does not belong to the restricted job", 2)
    end
    return setfenv(f, t)
  end
  local function safe_loadstring(s, chunkname)
    if type(s) ~= "string" then error("bad argument #1 to 'loadstring' (string expected)", 2) end
    if byte(s, 1) == 27 then return nil, "bytecode is not allowed in restricted jobs" end
    local f, err = loadstring(s, chunkname)
    if not f then return nil, err end
    setfenv(f, env)
    return f
  end
  local function safe_load(chunk, chunkname)
    if type(chunk) == "string" then return safe_loadstring(chunk, chunkname) end
    if type(chunk) ~= "function" then error("bad argument #1 to 'load' (function or string expected)", 2) end
    local parts = {}
    while true do
      local piece = chunk()
      if piece == nil or piece == "" then break end
      if type(piece) ~= "string" then return nil, "reader function must return a string" end
      parts[#parts + 1] = piece
    end
    return safe_loadstring(concat(parts), chunkname or "=(load)")
  end
  local function library(mod)
    local lib = mod == "_G" and env or (LIBS[mod] and rawget(env, mod))
    return type(lib) == "table" and lib or nil
  end
  local function safe_require(mod)
    return library(mod) or error(refused_module(mod, name), 2)
  end
  -- The decoder's require while it decodes for this environment (its errors carry no position).
  requires[env] = function(mod) return library(mod) or error(refused_module(mod, name), 0) end
  env.getmetatable, env.getfenv, env.setfenv = own(safe_getmetatable), own(safe_getfenv), own(safe_setfenv)
  env.loadstring, env.load, env.require = own(safe_loadstring), own(safe_load), own(safe_require)
  env.lj_async = own(M.ipc_functions(env, name))
  for _, v in pairs(env) do
    if type(v) == "function" and getinfo(v, "S").what == "C" then allowed_c[v] = true end
    if type(v) == "table" then
      for _, f in pairs(v) do
        if type(f) == "function" then
          if getinfo(f, "S").what == "C" then allowed_c[f] = true else owned[f] = true end
        end
      end
    end
  end
  return env
end

--- The restricted environment `name` of this worker, made on first use.
function M.env(name)
  local env = envs[name]
  if not env then
    env = make_env(name)
    envs[name] = env
  end
  return env
end

-- -- Decoding under an environment's rules (worker side) --

local safe_cdata = {}
for _, t in ipairs { "int64_t", "uint64_t", "complex" } do safe_cdata[tostring(ffi_typeof(t))] = true end

-- Makes every Lua function reachable from v run in env; refuses what env must not reach.
local function adopt(env, env_name, v, seen, modules)
  local t = type(v)
  if t == "function" then
    if seen[v] or owned[v] then return end
    seen[v] = true
    if getinfo(v, "S").what == "C" then
      if not allowed_c[v] then error("restricted jobs cannot use this C function (it is not in their environment)", 0) end
      return
    end
    setfenv(v, env)
    for i = 1, 255 do
      local n, u = getupvalue(v, i)
      if not n then break end
      adopt(env, env_name, u, seen, modules)
    end
  elseif t == "table" then
    if seen[v] or owned[v] then return end
    seen[v] = true
    if modules[v] then error(refused_module(modules[v], env_name), 0) end
    for k, x in next, v do
      adopt(env, env_name, k, seen, modules)
      adopt(env, env_name, x, seen, modules)
    end
  elseif t == "cdata" then
    if not safe_cdata[tostring(ffi_typeof(v))] then
      error(format("restricted jobs cannot receive a cdata of type '%s'", tostring(ffi_typeof(v)):match("^ctype<(.*)>$") or "?"), 0)
    end
  elseif t == "thread" or t == "userdata" then
    error(format("restricted jobs cannot receive a %s", t), 0)
  end
end

local function pack(...) return { n = select("#", ...), ... } end

-- Decodes payload with env's require for the modules it names; adopts the values.
local function decode_in(env, env_name, payload)
  local r = pack(pcall(encoder.decode_resolving, payload, requires[env]))
  if not r[1] then
    local msg = r[2]
    if type(msg) == "string" then  -- positions inside the encoder tell the job's author nothing
      repeat local bare = msg:match("^[^\n]-%.lua:%d+: (.*)$"); msg = bare or msg until not bare
    end
    error(msg, 0)
  end
  local modules = {}
  for k, m in next, loaded do
    if type(m) == "table" then modules[m] = k end
  end
  local seen = {}
  for i = 2, r.n do adopt(env, env_name, r[i], seen, modules) end
  return r
end

--- Runs a job submitted with M.submit: `payload` encodes the function and its arguments.
function M.run(env_name, payload)
  local env = M.env(env_name)
  local r = decode_in(env, env_name, payload)
  local f = r[2]
  if type(f) ~= "function" then error("the job's function arrived as a " .. type(f), 0) end
  return f(unpack(r, 3, r.n))
end

--- Runs an async file registered with M.add_file in the environment `env_name`.
function M.run_file(env_name, source, chunkname)
  local f, err = loadstring(source, chunkname)
  if not f then error(err, 0) end
  setfenv(f, M.env(env_name))
  return f()
end

--- Registers a portable metatable sent by M.add_metatable, its functions in `env_name`.
function M.run_metatable(env_name, payload)
  local r = decode_in(M.env(env_name), env_name, payload)
  encoder.register_portable_metatable(r[2], r[3])
end

--- The IPC functions a restricted environment holds (as `lj_async`); values read are decoded
--- under the environment's rules.
function M.ipc_functions(env, env_name)
  local pool, C
  local function lib()
    if not pool then pool, C = require "lj-async.pool", require "lj-async.pool_abi" end
    return pool
  end
  local t = {}
  function t.ipc_get(key)
    lib()
    if type(key) ~= "string" then error(("bad key: expected a string, got %s"):format(type(key)), 2) end
    local m = C.ljasync_pool_ipc_get(key, #key)
    if m == nil then return nil end
    local ok, r = pcall(decode_in, env, env_name, m)
    C.ljasync_message_free(m)
    if not ok then error(r, 2) end
    return r[2]
  end
  function t.ipc_set(key, value) return lib().ipc_set(key, value) end
  function t.ipc_cas(key, old, new) return lib().ipc_cas(key, old, new) end
  function t.ipc_poll(key, timeout) return lib().ipc_poll(key, timeout) end
  return t
end

-- -- Submitting (the owner's side) --

-- Runs in the worker, with the worker's globals: hands the job to this module there.
local function runner(env_name, payload)
  local run = require("lj-async.sandbox").run
  return run(env_name, payload)
end

local defined = {}  -- pool -> { env_name = true }

--- Queues `func(...)` as a restricted job of environment `env_name` on `pool` (lj-async.pool):
--- a pool definition named `env_name` labels its errors. Errors are raised `level` above the caller.
function M.submit(pool, env_name, level, func, callback, ...)
  if type(func) ~= "function" then error(("bad function: expected a function, got %s"):format(type(func)), level + 1) end
  local payload, err = encoder.try_encode(func, ...)
  if not payload then error("bad job: " .. err, level + 1) end
  local d = defined[pool]
  if not d then d = {}; defined[pool] = d end
  if not d[env_name] then
    pool.define(env_name, runner)
    d[env_name] = true
  end
  local ok, job, why = pcall(pool.call, callback, env_name, env_name, payload)
  if not ok then error((tostring(job):gsub("^[^\n]-:%d+: ", "")), level + 1) end
  return job, why
end

--- Registers the Lua file at `path` to run in the environment `env_name` of every worker,
--- present (before its next job) and future. The file is read and syntax-checked now.
function M.add_file(env_name, path, level)
  if type(path) ~= "string" then error(("bad path: expected a string, got %s"):format(type(path)), level + 1) end
  local f, err = io.open(path, "rb")
  if not f then error("cannot register async file: " .. tostring(err), level + 1) end
  local src = f:read("*a")
  f:close()
  if byte(src, 1) == 27 then error("bad async file: " .. path .. " is bytecode (restricted environments take source only)", level + 1) end
  local ok, perr = loadstring(src, "@" .. path)
  if not ok then error("bad async file: " .. tostring(perr), level + 1) end
  local stub = format("require('lj-async.sandbox').run_file(%q, %q, %q)", env_name, src, "@" .. path)
  local C = require "lj-async.pool_abi"
  C.ljasync_pool_add_init("@" .. path, stub, #stub, require("lj-async.core").owner)
end

--- Registers `mt` under `name` here, and in the environment `env_name` of every worker
--- (its functions run there). Returns true, or false and why mt cannot cross.
function M.add_metatable(env_name, name, mt, level)
  local ok, err = pcall(encoder.register_portable_metatable, name, mt)
  if not ok then error((tostring(err):gsub("^[^\n]-:%d+: ", "")), level + 1) end
  local payload, why = encoder.try_encode(name, mt)
  if not payload then return false, why end
  local stub = format("require('lj-async.sandbox').run_metatable(%q, %q)", env_name, payload)
  local C = require "lj-async.pool_abi"
  C.ljasync_pool_add_init("=portable metatable '" .. name .. "'", stub, #stub, require("lj-async.core").owner)
  return true
end

return M
