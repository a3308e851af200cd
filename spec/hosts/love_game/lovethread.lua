-- A love.thread using lj-async: its own owner (inbox), the core found by the LÖVE rules from a
-- state that is not the game's (it has love.filesystem because it requires it).
require "love.filesystem"
require "love.thread"
local out = love.thread.getChannel("ljasync")
local async = require "lj-async.pool"
async.define("cube", function(x) return x * x * x end)
local got
async.call({ success = function(r) got = r end, error = function(m) got = m end }, "cube", 3)
async.wait_all(10)
out:push(tostring(got) .. " " .. require("lj-async.core").path)
