-- A loading screen fed by a worker pool: terrain chunks are built by `async` jobs while the
-- frame loop keeps drawing (seed 001's API: async.load, ensure, define, call, update).
-- Run: copy lua/lj-async/ and ljasync_core.so into this folder, then `love examples/love`
-- (docs/love.md). `--frames N` quits after N frames once loading is done (exit 0), or with
-- exit 1 when loading has not finished after 30 s or a chunk failed.
local async = require "lj-async.pool"
local terrain = require "terrain"        -- required here, so the workers can require it too

local CHUNKS, SIZE = 24, 320
local chunks, loaded, failures = {}, 0, {}
local frames, frames_while_loading = 0, 0
local quit_after, started

local function parse_args(args)
  for i = 1, #args do
    if args[i] == "--frames" then quit_after = tonumber(args[i + 1]) end
  end
end

function love.load(args)
  parse_args(args or {})
  io.stdout:setvbuf("line")
  async.load(1)
  async.ensure.atLeast(2).atMost(4)      -- chained: between 2 and 4 workers
  local build = async.define("build_chunk", function(seed, size)
    return require("terrain").generate(seed, size)   -- runs on a worker
  end)
  local callback = {
    success = function(chunk)
      chunks[chunk.seed] = chunk
      loaded = loaded + 1
    end,
    error = function(message)
      failures[#failures + 1] = message
      print("chunk failed: " .. message)
    end,
  }
  for seed = 1, CHUNKS do
    if seed % 2 == 0 then
      build(callback, seed, SIZE)                     -- define's shorthand
    else
      async.call(callback, "build_chunk", seed, SIZE) -- the same by name
    end
  end
  started = love.timer.getTime()
  print(("example: %d chunks queued on %d workers"):format(CHUNKS, async.getWorkerCount()))
end

local function finish(status)
  print(("example: loaded %d/%d chunks, %d failed, %d frames drawn while loading, %d in all")
    :format(loaded, CHUNKS, #failures, frames_while_loading, frames))
  async.shutdown()
  love.event.quit(status)
end

function love.update()
  async.update()                          -- callbacks run here, on the game's thread
  frames = frames + 1
  local done = loaded + #failures == CHUNKS
  if not done then frames_while_loading = frames_while_loading + 1 end
  if quit_after then
    if done and frames >= quit_after then finish(#failures == 0 and 0 or 1)
    elseif not done and love.timer.getTime() - started > 30 then finish(1) end
  end
end

function love.draw()
  local g = love.graphics
  local w = g.getWidth()
  g.clear(0.08, 0.08, 0.1)
  g.setColor(1, 1, 1)
  g.print(("Building terrain: %d / %d chunks"):format(loaded, CHUNKS), 20, 20)
  -- The bar: one cell per chunk, coloured by its terrain once it is built.
  local cell = (w - 40) / CHUNKS
  for seed = 1, CHUNKS do
    local chunk = chunks[seed]
    if chunk then g.setColor(terrain.color(chunk.mean)) else g.setColor(0.25, 0.25, 0.3) end
    g.rectangle("fill", 20 + (seed - 1) * cell, 60, cell - 2, 40)
  end
  -- A spinner: the frame loop keeps running while the workers build.
  g.setColor(1, 1, 1)
  local a = love.timer.getTime() * 4
  g.circle("fill", w / 2 + math.cos(a) * 20, 150 + math.sin(a) * 20, 5)
  if #failures > 0 then g.setColor(1, 0.3, 0.3); g.print(failures[1], 20, 170) end
end

function love.quit()
  async.shutdown()                        -- workers finish their jobs; nothing left behind
end
