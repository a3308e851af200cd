-- Light states (issue 12): a spawned thread or a pool worker loads only the lj-async code its
-- values need. What only a creating state uses (lj-async.core_host: the module cache, portable
-- code, init code), the options check, the cdata classification and the channel's batch methods
-- load at their first use, and the header's sections such a state does not use stay undeclared.
require "spec.helpers"
local Thread = require "lj-async.thread"
local sync = require "lj-async.sync"

local function pack(...) return { n = select("#", ...), ... } end

-- What the thread returned (count and nils kept), once it ended.
local function joined(t)
  local r = pack(t:join(10))
  local err = t:error()
  t:destroy()
  assert.is_true(r[1], "the thread did not end")
  assert.is_nil(err)
  return unpack(r, 2, r.n)
end

-- Set of the lj-async modules `list` (a space-separated string) names.
local function set(list)
  local s = {}
  for name in list:gmatch("%S+") do s[name] = true end
  return s
end

-- Modules a state that only runs its function must not load.
local HOST_ONLY = { "lj-async.core_host", "lj-async.checks", "lj-async.sync.check", "lj-async.sync.abi",
                    "lj-async.encoder.ctypes", "lj-async.sync.channel_batch", "lj-async.encoder", "lj-async.pool_abi" }

describe("light states", function()
  it("a spawned thread blocked on a channel loads no creator-side code and declares only its sections", function()
    local ch = sync.channel()
    local t = Thread.spawn(function(c)
      local v = c:pop()[1]  -- a table: a light spawn's handle takes lj-async.sync's way (light_spawn_spec)
      local ffi = require "ffi"
      local l = {}
      for k in pairs(package.loaded) do if k:find("^lj%-async") then l[#l + 1] = k end end
      local declared = {}
      for _, marker in ipairs { "ljasync_cell", "struct ljasync_mutex_h", "struct ljasync_test_hooks",
                                "ljasync_thread", "ljasync_pool_job" } do
        if pcall(ffi.typeof, marker) then declared[#declared + 1] = marker end
      end
      return table.concat(l, " "), table.concat(declared, ","), v
    end, ch)
    ch:push({ 7 })
    local mods, declared, v = joined(t)
    assert.equals(7, v)
    local loaded = set(mods)
    assert.is_true(loaded["lj-async.core"] and loaded["lj-async.sync.channel"], mods)
    for _, name in ipairs(HOST_ONLY) do assert.is_nil(loaded[name], name .. " loaded: " .. mods) end
    -- The channel section only: no other sync object, no test hooks, no thread or pool types.
    assert.equals("ljasync_cell", declared)
    ch:free()
  end)

  it("a pool worker loads no creator-side code and declares the worker's pool section only", function()
    local pool = require "lj-async.pool"
    -- pool_worker.lua's worker (a light worker loads no lj-async module: light_worker_spec.lua).
    local C = require "lj-async.pool_abi"
    pool.ensure.exactly(0)
    local was = C.ljasync_pool_light(0)
    finally(function() C.ljasync_pool_light(was) end)
    pool.ensure.exactly(1)
    pool.define("light_state_probe", function()
      local ffi = require "ffi"
      local l = {}
      for k in pairs(package.loaded) do if k:find("^lj%-async") then l[#l + 1] = k end end
      return table.concat(l, " "), (pcall(ffi.typeof, "ljasync_pool_result")), (pcall(ffi.typeof, "ljasync_pool_job"))
    end)
    local got
    pool.call(function(...) got = pack(...) end, "light_state_probe")
    assert.is_true(pool.wait_all(10))
    pool.update()
    pool.undefine("light_state_probe")
    assert.is_table(got)
    local loaded = set(got[1])
    assert.is_true(loaded["lj-async.pool_worker"], got[1])
    for _, name in ipairs(HOST_ONLY) do assert.is_nil(loaded[name], name .. " loaded: " .. got[1]) end
    assert.is_false(got[2])  -- the pool's host side (results, settings) is not declared there
    assert.is_true(got[3])
  end)

  it("loads what a thread's state uses later at its first use, and it works", function()
    local ch = sync.channel()
    local t = Thread.spawn(function(c)
      local core = require "lj-async.core"
      local before = package.loaded["lj-async.core_host"] ~= nil
      -- Creating a thread from this state attaches core_host (portable code, the module list).
      local inner = require("lj-async.thread").spawn(function(x) return x + 1 end, 41)
      local ok, r = inner:join(10)
      inner:destroy()
      local listed = false
      for _, name in ipairs(core.modules) do if name == "lj-async.core_host" then listed = true end end
      -- The batch methods load at their first use, with sync.check.
      local n = c:push_many({ 1, 2, 3 })
      local out, m = c:pop_many(8)
      return before, ok and r, listed, core.owner ~= nil, package.loaded["lj-async.core_host"] ~= nil,
        n, m, out[1] + out[2] + out[3], package.loaded["lj-async.sync.channel_batch"] ~= nil
    end, ch)
    local before, r, listed, owner, after, n, m, sum, batch = joined(t)
    assert.is_false(before)
    assert.equals(42, r)
    assert.is_true(listed)
    assert.is_true(owner)
    assert.is_true(after)
    assert.equals(3, n)
    assert.equals(3, m)
    assert.equals(6, sum)
    assert.is_true(batch)
    ch:free()
  end)

  it("errors lj-async raises in such a state name the caller's file and line", function()
    local ch = sync.channel()
    local t = Thread.spawn(function(c)
      local line = debug.getinfo(1, "l").currentline
      local ok1, e1 = pcall(function() c:pop(-1) end)  -- raised at the caller of pop
      local ok2, e2 = pcall(function() c:pop_many(0) end)  -- through the batch module and sync.check
      local ok3, e3 = pcall(function() require("lj-async.thread").spawn(42) end)  -- through core_host
      return line, ok1, e1, ok2, e2, ok3, e3
    end, ch)
    local line, ok1, e1, ok2, e2, ok3, e3 = joined(t)
    assert.is_false(ok1)
    assert.matches(("light_modules_spec%%.lua:%d: bad argument #1 to 'pop' %%(timeout"):format(line + 1), e1)
    assert.is_false(ok2)
    assert.matches(("light_modules_spec%%.lua:%d: bad argument #1 to 'pop_many' %%(count must be"):format(line + 2), e2)
    assert.is_false(ok3)
    assert.matches(("light_modules_spec%%.lua:%d: bad thread function"):format(line + 3), e3)
    ch:free()
  end)
end)
