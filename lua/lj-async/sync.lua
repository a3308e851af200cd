-- lj-async.sync: mutexes, conditions, semaphores, channels, atomic counters and shared memory
-- that every Lua state (main, callbacks, threads) can use and pass to the others. This file
-- only assembles the objects; each lives in lj-async/sync/<object>.lua (docs/sync.md is the
-- API), loaded the first time it is used: a thread that only pops a channel loads the channel.
local handle = require "lj-async.sync.handle"
local registry = require "lj-async.encoder.registry"

local rawget, setmetatable, getmetatable, require, tonumber = rawget, setmetatable, getmetatable, require, tonumber

-- The constructors, each the `new` of the module of its kind (kind name = module name).
local KINDS = { mutex = true, condition = true, semaphore = true, channel = true, atomic = true, shared = true }

local M = {}

--- Number of sync objects alive in the process (all states): for leak tests.
function M.live_objects()
  return tonumber(require("lj-async.sync.abi").ljasync_sync_live_objects())
end

--- The kind name ("mutex", "channel", ...) of a sync handle, or nil for anything else.
M.kind = handle.kind_of

setmetatable(M, { __index = function(t, k)
  if not KINDS[k] then return nil end
  local new = require("lj-async.sync." .. k).new
  t[k] = new
  return new
end })

-- A handle arriving in this state names its kind and "lj-async.sync" (see sync/handle.lua):
-- the decoder, not finding the kind, requires this module, then looks again; the kind's
-- module registers it then.
local by_kind = registry.handle_by_kind
if getmetatable(by_kind) == nil then
  setmetatable(by_kind, { __index = function(t, kind)
    if not KINDS[kind] then return nil end
    require("lj-async.sync." .. kind)
    return rawget(t, kind)
  end })
end

return M
