-- The init registry owns the native messages its entries need (Sources/LJAsync/Support/InitRegistry.swift):
-- an init function with upvalues (add_init) and a portable metatable are encoded into a message
-- holding references to the shared objects they reach; when the state that registered them
-- closes, the entry is withdrawn and the message freed, so those objects go.
require "spec.helpers"
local sync = require "lj-async.sync"
local Thread = require "lj-async.thread"

--- Polls `cond` (with Thread.sleep) until it holds or `seconds` pass; returns whether it held.
local function eventually(cond, seconds)
  local deadline = os.time() + (seconds or 10)
  while not cond() do
    if os.time() > deadline then return false end
    Thread.sleep(0.001)
  end
  return true
end

-- Runs `body` (source) in a thread's own state, which closes when the thread is done.
local function in_a_closing_state(body)
  local t = Thread.new(body)
  assert.is_true(t:join(10))
  t:free()
  collectgarbage(); collectgarbage()
end

describe("init registry messages", function()
  it("an init function's upvalues are released when the state that registered it closes", function()
    local before = sync.live_objects()
    in_a_closing_state [[
      local ch = require("lj-async.sync").channel()
      require("lj-async.core").add_init(function() ljt_owned_init = ch ~= nil end, "=spec owned init")
    ]]
    -- The thread's own reference goes when its state is closed (in the background); the
    -- message's, only if the registry frees it then.
    assert.is_true(eventually(function() return sync.live_objects() <= before end),
      "objects still referenced: " .. sync.live_objects() - before)
  end)

  it("a portable metatable's shared handles are released when the state that registered it closes", function()
    local before = sync.live_objects()
    in_a_closing_state [[
      local ch = require("lj-async.sync").channel()
      local mt = { __index = { ch = ch } }
      assert(require("lj-async.pool").register_portable_metatable("spec.owned", mt))
    ]]
    assert.is_true(eventually(function() return sync.live_objects() <= before end),
      "objects still referenced: " .. sync.live_objects() - before)
  end)
end)
