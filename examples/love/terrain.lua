-- A game module: the main state draws with it, and the loading jobs require it in the workers
-- (lj-async provides the game's modules it has required; docs/love.md).
local M = {}

--- A chunk of terrain heights (deterministic, CPU-bound on purpose: the work a loader does).
function M.generate(seed, size)
  local heights, sum = {}, 0
  local x = seed * 7919 % 65521
  for i = 1, size * size do
    x = (x * 75 + 74) % 65537                  -- a small LCG: the same chunk for the same seed
    local h = 0
    for octave = 1, 8 do h = h + math.sin(x * octave * 0.001) / octave end
    heights[i] = h
    sum = sum + h
  end
  return { seed = seed, size = size, mean = sum / (size * size) }
end

--- The colour a chunk's mean height is drawn in.
function M.color(mean)
  local t = math.max(0, math.min(1, mean * 12))  -- means lie around 0..0.08
  return 0.2 + 0.5 * t, 0.6 - 0.3 * t, 0.2
end

return M
