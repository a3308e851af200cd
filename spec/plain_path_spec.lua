-- The plain path (lj-async/encoder/plain.lua): states that move only plain values, handles and
-- functions without upvalues do not load lj-async.encoder (issue 12: its modules weigh ~114 KiB
-- of heap per state), and values cross exactly as the encoder moves them.
require "spec.helpers"
local Thread = require "lj-async.thread"
local sync = require "lj-async.sync"

-- The lj-async modules the state running it has loaded, sorted, as one string.
local function loaded()
  local l = {}
  for k in pairs(package.loaded) do if k:find("^lj%-async") then l[#l + 1] = k end end
  table.sort(l)
  return table.concat(l, " ")
end

local function pack(...) return { n = select("#", ...), ... } end

-- What the thread returned (count and nils kept), once it ended.
local function joined(t)
  local r = pack(t:join(10))
  t:destroy()
  assert.is_true(r[1], "the thread did not end")
  return unpack(r, 2, r.n)
end

describe("plain path", function()
  it("a spawned thread moving numbers loads no encoder", function()
    local mods, x = joined(Thread.spawn(function(x)
      local l = {}
      for k in pairs(package.loaded) do if k:find("^lj%-async") then l[#l + 1] = k end end
      table.sort(l)
      return table.concat(l, " "), x
    end, 42))
    assert.equals(42, x)
    assert.is_nil(mods:find("lj-async.encoder ", 1, true) or mods:find("lj-async.encoder$"))
    assert.is_nil(mods:find("reader", 1, true))
    assert.is_nil(mods:find("general_writer", 1, true))
  end)

  it("a thread popping a channel it was given loads the channel only", function()
    local ch = sync.channel()
    local t = Thread.spawn(function(c, tag)
      local v = c:pop()
      local l = {}
      for k in pairs(package.loaded) do if k:find("^lj%-async") then l[#l + 1] = k end end
      table.sort(l)
      return table.concat(l, " "), v, tag
    end, ch, "t")
    ch:push(5)
    local mods, v, tag = joined(t)
    assert.equals(5, v)
    assert.equals("t", tag)
    -- A light spawn (spec/light_spawn_spec.lua): the C side pops, no module loads.
    assert.equals("", mods)
    ch:free()
  end)

  it("keeps counts, nils, -0, NaN, flat tables and the rest exactly", function()
    local n, a, b, c, d = joined(Thread.spawn(function(...)
      return select("#", ...), ...
    end, nil, -0.0, 0 / 0, nil))
    assert.equals(4, n)
    assert.is_nil(a)
    assert.equals(math.huge, 1 / b * -1)  -- -0 stays -0
    assert.is_true(c ~= c)
    assert.is_nil(d)
    local r = { joined(Thread.spawn(function(t) return t, nil, nil end, { 1, 2, x = "y", [true] = false })) }
    assert.same({ 1, 2, x = "y", [true] = false }, r[1])
    assert.equals(3, select("#", joined(Thread.spawn(function() return 1, nil, nil end))))
    -- A nested table, a function with an upvalue, cdata: the encoder takes them, in the thread too.
    local up = 3
    local t2, f = joined(Thread.spawn(function(t, g) return t, g end, { a = { b = 1 } }, function() return up end))
    assert.same({ a = { b = 1 } }, t2)
    assert.equals(3, f())
    local i = joined(Thread.spawn(function(v) return v + 1 end, 1LL))
    assert.equals(2LL, i)
  end)

  it("errors still name the argument", function()
    assert.has_error(function() Thread.spawn(function() end, 1, coroutine.create(function() end)) end,
      "bad argument to spawn: argument 2: cannot move a coroutine")
    local t = Thread.spawn(function() return coroutine.create(function() end) end)
    assert.is_true(t:join(10))
    assert.equals("failed", t:status())
    assert.truthy(t:error():find("argument 1: cannot move a coroutine", 1, true))
    t:destroy()
  end)

  it("a pool worker running a define'd job on numbers loads no encoder", function()
    local pool = require "lj-async.pool"
    pool.ensure.exactly(1)
    pool.define("plain_path_mods", function(x)
      local l = {}
      for k in pairs(package.loaded) do if k:find("^lj%-async") then l[#l + 1] = k end end
      table.sort(l)
      return table.concat(l, " "), x * 2
    end)
    local mods, y
    pool.call(function(m, v) mods, y = m, v end, "plain_path_mods", 21)
    assert.is_true(pool.wait_all(10))
    pool.update()
    pool.undefine("plain_path_mods")
    assert.equals(42, y)
    assert.is_nil(mods:find("lj-async.encoder.reader", 1, true))
    assert.is_nil(mods:find("lj-async.encoder.general_writer", 1, true))
  end)

  it("the creator's view is unchanged", function()
    assert.truthy(loaded():find("lj-async.sync", 1, true))
  end)
end)
