-- Private: the options check shared by the public modules (re-exported by lj-async.core as
-- core.check_options, loaded at its first use; core.timeout, on hot paths, lives in core.lua).
-- Pure Lua, no state: any thread's state may load it.
local M = {}

-- Edit distance between a and b (insertions, deletions, substitutions, adjacent swaps).
local function distance(a, b)
  local la, lb = #a, #b
  local d = {}
  for i = 0, la do d[i] = { [0] = i } end
  for j = 0, lb do d[0][j] = j end
  for i = 1, la do
    for j = 1, lb do
      local cost = a:byte(i) == b:byte(j) and 0 or 1
      local v = math.min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost)
      if i > 1 and j > 1 and a:byte(i) == b:byte(j - 1) and a:byte(i - 1) == b:byte(j) then
        v = math.min(v, d[i - 2][j - 2] + 1)
      end
      d[i][j] = v
    end
  end
  return d[la][lb]
end

--- Checks that every key of the options table `opts` is one of the names in `allowed` (an
--- array of strings); returns `opts`. The first unknown key (in sorted order, so the message
--- is stable) raises at `level` (as for error(); default 2) either
---   unknown option 'capcity' (did you mean 'capacity'?)
--- when a name is close (edit distance <= 2 and less than a third of its length, case
--- ignored), or
---   unknown option 'x' (known options: 'capacity', 'name')
--- otherwise (`(it takes no options)` when `allowed` is empty; a non-string key shows as [1]).
--- Values are the caller's to check (`bad option 'capacity' ...`).
function M.check_options(opts, allowed, level)
  local unknown
  for k in pairs(opts) do
    local known = false
    for i = 1, #allowed do
      if allowed[i] == k then known = true; break end
    end
    if not known then
      unknown = unknown or {}
      unknown[#unknown + 1] = k
    end
  end
  if not unknown then return opts end
  table.sort(unknown, function(a, b)
    if type(a) == type(b) and (type(a) == "string" or type(a) == "number") then return a < b end
    return type(a) < type(b)
  end)
  local key = unknown[1]
  local shown = type(key) == "string" and ("'" .. key .. "'") or ("[" .. tostring(key) .. "]")
  local best, best_d
  if type(key) == "string" then
    for i = 1, #allowed do
      local d = distance(key:lower(), allowed[i]:lower())
      if d <= 2 and d * 3 <= #allowed[i] and (not best_d or d < best_d) then best, best_d = allowed[i], d end
    end
  end
  local hint
  if best then
    hint = ("did you mean '%s'?"):format(best)
  elseif #allowed == 0 then
    hint = "it takes no options"
  else
    local names = {}
    for i = 1, #allowed do names[i] = "'" .. allowed[i] .. "'" end
    hint = "known options: " .. table.concat(names, ", ")
  end
  error(("unknown option %s (%s)"):format(shown, hint), (level or 2) + 1)
end

return M
