-- lj-async.pool: one process-wide pool of worker threads, with the APIs of LÖVE's "async" and
-- Luanti's async environment (docs/pool.md). This file only assembles the parts, one concept
-- each in lj-async/pool/: jobs.lua (this state's inbox, submission, job handles, delivery),
-- love_api.lua (define, call, worker counts), luanti_api.lua (handle_async, async files,
-- portable metatables, the IPC store) and settings.lua (configure, shutdown, stats).
--
-- Every Lua state that requires this module becomes an owner: it gets an inbox, and the
-- callbacks of its jobs run only in it, on its thread. The workers, the queue, definitions'
-- storage, init files and the IPC store are process-wide (Sources/LJAsync/Pool/). Values cross
-- states through lj-async.encoder. Every function here runs on the thread that owns the
-- calling state.
local jobs = require "lj-async.pool.jobs"
local love_api = require "lj-async.pool.love_api"
local luanti_api = require "lj-async.pool.luanti_api"
local settings = require "lj-async.pool.settings"
local host = require "lj-async.love"

local M = {}

-- LÖVE "async" API
M.call, M.define, M.undefine = love_api.call, love_api.define, love_api.undefine
M.load, M.getWorkerCount, M.addWorker, M.stopWorkers = love_api.load, love_api.getWorkerCount,
  love_api.addWorker, love_api.stopWorkers
M.ensure = love_api.ensure

-- Results (both APIs)
M.update, M.wait, M.wait_all, M.await, M.fd = jobs.update, jobs.wait, jobs.wait_all, jobs.await, jobs.fd
jobs.yielded = M  -- what a coroutine in await() yields

-- Luanti's async environment API
M.handle_async = luanti_api.handle_async
M.register_async_dofile = luanti_api.register_async_dofile
M.register_portable_metatable = luanti_api.register_portable_metatable
M.ipc_set, M.ipc_get, M.ipc_cas, M.ipc_poll = luanti_api.ipc_set, luanti_api.ipc_get,
  luanti_api.ipc_cas, luanti_api.ipc_poll

-- Settings and statistics
M.configure, M.shutdown, M.stats, M.cpu_count = settings.configure, settings.shutdown,
  settings.stats, settings.cpu_count

--- Makes module `name` reachable by `require` in workers (for modules they cannot find
--- themselves, such as a LÖVE game's files inside its .love; see docs/love.md).
M.provide = host.provide

M.Job = jobs.Job
return M
