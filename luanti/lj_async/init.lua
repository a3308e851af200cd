-- lj_async: lj-async's worker pool for Luanti mods, with the async environment's API (global `lj_async`).
--
-- lj-async's modules (./lj-async/, copied in by `make luanti-mod`) load here with the insecure
-- environment as their globals and a private `require` built from its package.loaders: Luanti
-- disables `require` in the mods' globals, and chunks loaded from Lua would otherwise run with
-- them. Jobs of every mod run in a restricted environment of that mod in each worker
-- (lj-async.sandbox); a trusted mod gets unrestricted jobs by showing its insecure environment.
-- Results are delivered from a globalstep, so callbacks run in the server's normal environment.
-- Everything here runs on the server's main thread.
local modname = core.get_current_modname()
local modpath = core.get_modpath(modname)

local ie = core.request_insecure_environment()
if not ie then
  error("lj_async needs the insecure environment: add lj_async to secure.trusted_mods in minetest.conf", 0)
end

local package, setfenv, getinfo = ie.package, ie.setfenv, ie.debug.getinfo
local type, error, pcall, pairs, ipairs, tostring, format = type, error, pcall, pairs, ipairs, tostring, string.format

-- Workers are new Lua states: they find lj-async's modules and the core through these paths
-- (the core passes package.path/cpath on to the states it makes).
package.path = modpath .. "/?.lua;" .. package.path
package.cpath = modpath .. "/?.so;" .. package.cpath

-- -- A private require, for lj-async's chunks --

local env = ie.setmetatable({}, { __index = ie })
local loaded = package.loaded

local function private_require(name)
  local v = loaded[name]
  if v ~= nil then return v end
  local why = {}
  for _, searcher in ipairs(package.loaders) do
    local loader = searcher(name)
    if type(loader) == "function" then
      -- A chunk gets the running thread's globals (the mods' restricted ones): give it ours.
      if getinfo(loader, "S").what ~= "C" then setfenv(loader, env) end
      local r = loader(name)
      if r ~= nil then loaded[name] = r end
      if loaded[name] == nil then loaded[name] = true end
      return loaded[name]
    elseif type(loader) == "string" then
      why[#why + 1] = loader
    end
  end
  error(format("module '%s' not found:%s", name, table.concat(why)), 2)
end
env.require = private_require

local pool = private_require("lj-async.pool")
local sandbox = private_require("lj-async.sandbox")

pool.configure { on_error = function(text) core.log("error", "[lj_async] " .. text) end }

core.register_globalstep(function() pool.update() end)

core.register_on_shutdown(function()
  local ok = pool.shutdown { mode = "discard", timeout = 5 }
  if not ok then core.log("warning", "[lj_async] workers still busy at shutdown (a job runs longer than 5 s)") end
end)

-- -- Which mod is calling --

local mod_dirs  -- { { dir = "/path/", name = "mod" }, ... }, longest first

-- The calling mod: the one loading now, else the mod whose folder holds the calling code
-- (at run time get_current_modname() is nil; get_last_run_mod() can be set by any mod).
local function calling_mod(level)
  local name = core.get_current_modname()
  if name then return name end
  local src = getinfo(level + 1, "S").source
  if src:sub(1, 1) == "@" then
    if not mod_dirs then
      mod_dirs = {}
      for _, m in ipairs(core.get_modnames()) do
        local p = core.get_modpath(m)
        if p then mod_dirs[#mod_dirs + 1] = { dir = p:gsub("/*$", "/"), name = m } end
      end
      table.sort(mod_dirs, function(a, b) return #a.dir > #b.dir end)
    end
    local file = src:sub(2)
    for _, e in ipairs(mod_dirs) do
      if file:sub(1, #e.dir) == e.dir then return e.name end
    end
  end
  error("lj_async: cannot tell which mod is calling (call it from code in a mod's folder)", level + 1)
end

-- -- What mods may touch --
--
-- Mods have getfenv and debug.getinfo: no function or table of lj-async's (whose globals are
-- the insecure environment) may reach them, neither as a value (the API, job handles) nor as a
-- frame above their code. So the API and job handles are this file's own (its globals are the
-- mods' ones), and callbacks run in a coroutine of their own, where the frames of pool.update
-- below them cannot be reached.

local co_create, co_resume, traceback = coroutine.create, coroutine.resume, debug.traceback

local function run_callback(f, ...) return f(...) end

local function isolated(f)
  return function(...)
    local co = co_create(run_callback)
    local ok, err = co_resume(co, f, ...)
    if not ok then error(traceback(co, tostring(err)), 0) end
  end
end

local function isolate_callback(cb)
  if cb == nil then return nil end
  if type(cb) == "table" and ie.getmetatable(cb) == nil then
    for k in pairs(cb) do
      if k ~= "success" and k ~= "error" then error(format("bad callback: unknown field '%s'", tostring(k)), 3) end
    end
    if cb.success ~= nil and type(cb.success) ~= "function" then error("bad callback: field 'success' must be a function", 3) end
    if cb.error ~= nil and type(cb.error) ~= "function" then error("bad callback: field 'error' must be a function", 3) end
    return { success = cb.success and isolated(cb.success), error = cb.error and isolated(cb.error) }
  end
  if type(cb) ~= "function" and type(cb) ~= "table" then
    error(format("bad callback: expected a function, a table {success = f, error = g} or nil, got %s", type(cb)), 3)
  end
  return isolated(cb)
end

local Handle = {}
Handle.__index = Handle
Handle.__metatable = "lj_async job"
local job_of = ie.setmetatable({}, { __mode = "k" })

--- Removes the job if no worker has started it: true when removed (its callback never runs).
function Handle:cancel()
  local job = job_of[self]
  if not job then error("bad job: expected a job handle (use job:cancel())", 2) end
  return job:cancel()
end

--- "pending", "done", "failed" or "cancelled".
function Handle:status()
  local job = job_of[self]
  if not job then error("bad job: expected a job handle (use job:status())", 2) end
  return job:status()
end

local function handle(job, why)
  if not job then return nil, why end
  local h = ie.setmetatable({}, Handle)
  job_of[h] = job
  return h
end

-- -- The API every mod sees --

-- The functions that act for one mod; mod_of(level) names it (level: the caller's, as for error).
local function make_api(mod_of)
  local t = {}

  --- Queues func(...) in a worker, in the mod's restricted environment; callback (a function,
  --- or {success = f, error = g}) gets the results in the normal environment.
  --- Returns a job handle (cancel(), status()), or nil, "full".
  function t.handle_async(func, callback, ...)
    local mod = mod_of(2)
    return handle(sandbox.submit(pool, mod, 2, func, isolate_callback(callback), ...))
  end

  --- Runs the Lua file at `path` (inside the mod's folder) in the mod's environment of every
  --- worker, present and future: its globals are visible to the mod's jobs.
  function t.register_async_dofile(path)
    local mod = mod_of(2)
    if type(path) ~= "string" then error(format("bad path: expected a string, got %s", type(path)), 2) end
    local dir = core.get_modpath(mod):gsub("/*$", "/")
    if path:sub(1, #dir) ~= dir or ("/" .. path .. "/"):find("/%.%./") then
      error(format("bad path: %s is not inside mod %s's folder (%s)", path, mod, dir), 2)
    end
    return sandbox.add_file(mod, path, 2)
  end

  --- Tables with metatable `mt` keep it when they cross (as `name`: names are shared by all
  --- mods, so prefix them: "mymod:Point"). In workers its functions run in the mod's
  --- environment. Returns true, or false and why mt cannot cross.
  function t.register_portable_metatable(name, mt)
    return sandbox.add_metatable(mod_of(2), name, mt, 2)
  end

  return t
end

local api = make_api(calling_mod)

--- The same functions bound, now, to the mod that is loading: for calls at run time, where
--- the global ones tell the mod from the calling file's path.
function api.bind()
  local mod = core.get_current_modname()
  if not mod then error("lj_async.bind() works only while a mod loads (call it in the mod's main scope)", 2) end
  local bound = make_api(function() return mod end)
  bound.ipc_get, bound.ipc_set, bound.ipc_cas, bound.ipc_poll = api.ipc_get, api.ipc_set, api.ipc_cas, api.ipc_poll
  return bound
end

-- IPC: shared by all states of the process (the server and every worker). Errors are raised
-- at the mod's call (the wrappers pass their own level on).
local function relay(ok, ...)
  if not ok then error((tostring((...)):gsub("^[^\n]-:%d+: ", "")), 3) end
  return ...
end
function api.ipc_get(key) return relay(pcall(pool.ipc_get, key)) end
function api.ipc_set(key, value) return relay(pcall(pool.ipc_set, key, value)) end
function api.ipc_cas(key, old, new) return relay(pcall(pool.ipc_cas, key, old, new)) end
function api.ipc_poll(key, timeout) return relay(pcall(pool.ipc_poll, key, timeout)) end

local function check_trusted(proof, what)
  if proof ~= ie then
    error(format("bad argument #1 to '%s': expected the insecure environment (core.request_insecure_environment(), "
      .. "for mods listed in secure.trusted_mods)", what), 3)
  end
end

--- For trusted mods: lj-async.pool itself, whose jobs run unrestricted in the workers.
function api.unrestricted(insecure_env)
  check_trusted(insecure_env, "lj_async.unrestricted")
  return pool
end

--- For trusted mods: any module through lj-async's private require (lj-async.thread, ...).
function api.require(insecure_env, name)
  check_trusted(insecure_env, "lj_async.require")
  if type(name) ~= "string" then error(format("bad module name: expected a string, got %s", type(name)), 2) end
  return private_require(name)
end

api.core_path = private_require("lj-async.core").path

lj_async = api
