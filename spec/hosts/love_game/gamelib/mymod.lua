-- A game module in a subfolder, required by the game after lj-async: jobs and threads find it.
local M = {}
function M.triple(x) return 3 * x end
return M
