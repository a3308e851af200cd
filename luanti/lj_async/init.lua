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
local type, error, pcall, ipairs, tostring, format = type, error, pcall, ipairs, tostring, string.format

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

-- -- The API every mod sees --

local api = {}

--- Queues func(...) in a worker, in the calling mod's restricted environment; callback (a
--- function, or {success = f, error = g}) gets the results in the normal environment.
function api.handle_async(func, callback, ...)
  return sandbox.submit(pool, calling_mod(2), 2, func, callback, ...)
end

--- Runs the Lua file at `path` (inside the calling mod's folder) in the mod's environment of
--- every worker, present and future: its globals are visible to the mod's jobs.
function api.register_async_dofile(path)
  local mod = calling_mod(2)
  if type(path) ~= "string" then error(format("bad path: expected a string, got %s", type(path)), 2) end
  local dir = core.get_modpath(mod):gsub("/*$", "/")
  if path:sub(1, #dir) ~= dir or ("/" .. path .. "/"):find("/%.%./") then
    error(format("bad path: %s is not inside mod %s's folder (%s)", path, mod, dir), 2)
  end
  return sandbox.add_file(mod, path, 2)
end

--- Tables with metatable `mt` keep it when they cross (as `name`: names are shared by all
--- mods, so prefix them: "mymod:Point"). In workers its functions run in the calling mod's
--- environment. Returns true, or false and why mt cannot cross.
function api.register_portable_metatable(name, mt)
  return sandbox.add_metatable(calling_mod(2), name, mt, 2)
end

api.ipc_get, api.ipc_set, api.ipc_cas, api.ipc_poll = pool.ipc_get, pool.ipc_set, pool.ipc_cas, pool.ipc_poll

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
