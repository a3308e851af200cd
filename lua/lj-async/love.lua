-- Private: what lj-async does differently inside a LÖVE game (docs/love.md).
--
-- LÖVE finds a game's Lua files with its own searcher, inside the game folder or the .love
-- zip; states lj-async makes (workers, threads, callbacks) have no LÖVE and cannot read the
-- zip. So the creating side provides the game's modules to the process-wide module cache
-- (core.provide): those already loaded when lj-async loads, each one the game requires later
-- (a searcher in front of LÖVE's), and any named with provide(). Everything here runs on the
-- thread of the state that requires it; outside LÖVE only read() and provide() do anything.
local core = require "lj-async.core"

local type, pcall, error, tostring, pairs = type, pcall, error, tostring, pairs

local M = {}
local busy = false  -- while this state's searchers run for provide(): the LÖVE searcher stands aside

-- love.filesystem when this state runs inside LÖVE (the main state, or a love.thread that
-- required it), else nil. States lj-async makes have no LÖVE.
local function filesystem()
  local lfs = package.loaded["love.filesystem"]
  if type(lfs) == "table" then return lfs end
  local love = rawget(_G, "love")
  return type(love) == "table" and type(love.filesystem) == "table" and love.filesystem or nil
end

local lfs = filesystem()
M.active = lfs ~= nil

--- Source of the Lua file at `path` and its chunk name; in LÖVE a path love.filesystem knows
--- (the game folder or .love, then the save directory), else (or when love.filesystem has no
--- such file) a path of the OS. Returns nil and the reason when it cannot be read.
function M.read(path)
  if lfs and lfs.getInfo(path, "file") then
    local src, err = lfs.read(path)
    if not src then return nil, ("%s: %s"):format(path, tostring(err)) end
    return src, "@" .. path
  end
  local f, err = io.open(path, "rb")
  if not f then
    return nil, lfs and ("%s: not in the game (love.filesystem) and %s"):format(path, tostring(err)) or tostring(err)
  end
  local src = f:read("*a")
  f:close()
  return src, "@" .. path
end

--- Makes module `name` available to `require` in every state lj-async makes from now on (and
--- in those running), found now through this state's package.loaders (LÖVE's included).
--- Returns true when stored, false when a module of that name was provided already.
function M.provide(name)
  if type(name) ~= "string" or name == "" then
    error(("bad argument #1 to 'provide': expected a module name, got %s"):format(type(name)), 2)
  end
  busy = true
  local ok, stored = pcall(core.provide, name)
  busy = false
  if not ok then error(tostring(stored):gsub("^[^\n]-:%d+: ", ""), 2) end
  return stored
end

if not lfs then return M end

-- -- Inside LÖVE --

-- The game's own Lua file for module `name` (as LÖVE's searcher finds it), or nil.
local function game_file(name)
  local path = name:gsub("%.", "/")
  local templates = lfs.getRequirePath and lfs.getRequirePath() or "?.lua;?/init.lua"
  for template in templates:gmatch("[^;]+") do
    local file = template:gsub("%?", path)
    if lfs.getInfo(file, "file") then return file end
  end
  return nil
end

-- LÖVE runs these as the game; they are not modules a job would require.
local ENTRY_FILES = { main = true, conf = true }

local function is_game_module(name)
  return type(name) == "string" and not ENTRY_FILES[name] and not name:match("^lj%-async%.")
    and not name:match("^love%.") and game_file(name) ~= nil
end

-- A game module that cannot be provided (its loader is not a plain chunk) simply stays out of
-- the cache: a job requiring it gets "not found" with the hint below, naming the way out.
local function try_provide(name, loader)
  pcall(core.provide, name, loader)
end

-- The game's modules already loaded (lj-async may be required after them).
for name in pairs(package.loaded) do
  if is_game_module(name) then try_provide(name) end
end

-- In front of LÖVE's searcher: a game module the game requires from now on is found by the
-- searchers after this one (LÖVE's, once), provided, and returned to require.
local function searcher(name)
  if busy or not is_game_module(name) then return nil end
  local loaders, at = package.loaders, nil
  for i = 1, #loaders do if loaders[i] == M.searcher then at = i break end end
  if not at then return nil end
  busy = true
  local ok, loader = true, nil
  for i = at + 1, #loaders do
    ok, loader = pcall(loaders[i], name)
    if not ok or type(loader) == "function" then break end
  end
  busy = false
  if not ok then error(loader, 0) end
  if type(loader) ~= "function" then return nil end
  try_provide(name, loader)
  return loader
end

local key = "lj-async LÖVE searcher"
local loaders = package.loaders
local reg = debug.getregistry()
if not reg[key] then
  -- Right after lj-async's own cache searcher (or package.preload), before LÖVE's.
  local at = 2
  if core.searcher and loaders[2] == core.searcher then at = 3 end
  table.insert(loaders, at, searcher)
  reg[key] = searcher
end
M.searcher = reg[key]

-- States made from now on say, when a game module is missing, how a game makes it reachable.
if core.C.ljasync_memo_get("lj-async LÖVE hint") < 0 then
  core.add_init([[
    local loaders = package.loaders
    loaders[#loaders + 1] = function(name)
      return ("\n\tno module '%s' provided by the LÖVE game: require it in the game before the job "
        .. "runs, or call async.provide('%s') (docs/love.md)"):format(name, name)
    end
  ]], "=lj-async LÖVE hint")
  core.C.ljasync_memo_set("lj-async LÖVE hint", 1)
end

return M
