-- lj-async.sync: mutexes, conditions, semaphores, channels, atomic counters and shared memory
-- that every Lua state (main, callbacks, threads) can use and pass to the others. This file
-- only assembles the objects; each lives in lj-async/sync/<object>.lua (docs/sync.md is the
-- API).
local C = require "lj-async.sync.abi"
local handle = require "lj-async.sync.handle"

local M = {
  mutex = require("lj-async.sync.mutex").new,
  condition = require("lj-async.sync.condition").new,
  semaphore = require("lj-async.sync.semaphore").new,
  channel = require("lj-async.sync.channel").new,
  atomic = require("lj-async.sync.atomic").new,
  shared = require("lj-async.sync.shared").new,
}

--- Number of sync objects alive in the process (all states): for leak tests.
function M.live_objects()
  return tonumber(C.ljasync_sync_live_objects())
end

--- The kind name ("mutex", "channel", ...) of a sync handle, or nil for anything else.
M.kind = handle.kind_of

return M
