-- Light spawns (docs/design.md, "Light spawns"): Thread.spawn of a function without upvalues
-- whose arguments are scalars and channels runs in a state without ffi or lj-async's modules;
-- everything else falls back to lj-async.sync in that same thread, with today's behaviour.
local Thread = require "lj-async.thread"
local sync = require "lj-async.sync"

local function now() return os.clock() end  -- only for bounds on polling loops
local function eventually(cond, seconds)
  local t0 = os.time()
  while not cond() do
    if os.time() - t0 > (seconds or 10) then return false end
    Thread.sleep(0.001)
  end
  return true
end

-- The lj-async modules and ffi loaded in the calling state (run inside the thread).
local function loaded_list()
  local t = {}
  for k in pairs(package.loaded) do
    if k == "ffi" or k:match("^lj%-async") then t[#t + 1] = k end
  end
  table.sort(t)
  return table.concat(t, ",")
end

local function live_objects()
  jit.flush()
  collectgarbage(); collectgarbage()
  return sync.live_objects()
end

local function joined(t)
  local r = { n = 0 }
  local function pack(...) r = { n = select("#", ...), ... } end
  pack(t:join(30))
  assert.is_true(r[1], "thread did not end")
  assert.equal("done", t:status(), t:error())
  return r
end

describe("light spawns", function()
  local live0, objects0
  before_each(function()
    assert.is_true(eventually(function() collectgarbage(); return Thread.live() == (live0 or Thread.live()) end))
    live0, objects0 = Thread.live(), live_objects()
  end)
  after_each(function()
    collectgarbage(); collectgarbage()
    assert.is_true(eventually(function() collectgarbage(); return Thread.live() == live0 end), "thread objects leaked")
    assert.is_true(eventually(function() return live_objects() == objects0 end), "shared objects leaked")
  end)

  it("run without ffi or any lj-async module, while blocked in pop and after moving scalars", function()
    local loaded = string.dump(loaded_list)
    local inc, out = sync.channel(), sync.channel()
    local t = Thread.spawn(function(inc, out, code)
      local list = loadstring(code)
      out:push(list())            -- before anything moved
      local v = inc:pop()         -- blocks until the parent pushes
      local blocked = list()      -- what the pop loaded (nothing: it ran in C)
      out:push(v + 1); out:push(("x"):rep(100)); out:push(true); out:push(nil)
      local s = inc:pop(); local b = inc:try_pop()
      return blocked, list(), #s, b
    end, inc, out, loaded)
    assert.equal("", out:pop(10))
    assert.is_true(eventually(function() return inc:waiting() == 1 end))
    -- All three at once: the thread's try_pop must find `false` there (pushed later, it raced).
    inc:push(41); inc:push(("y"):rep(1000)); inc:push(false)
    assert.equal(42, out:pop(10)); assert.equal(("x"):rep(100), out:pop(10))
    assert.equal(true, out:pop(10)); assert.is_nil(out:pop(10)); assert.equal(0, out:length())
    local r = joined(t)
    assert.same({ n = 5, true, "", "", 1000, false }, r)
  end)

  it("move every scalar exactly, as arguments, through channels and as results", function()
    local long = ("a\0b"):rep(5000)
    local values = { n = 16, nil, 0, -0.0, 0 / 0, math.huge, -math.huge, 2 ^ 53, -(2 ^ 63), 1e-310, 0.1,
                     "", "x\0y", ("z"):rep(24), ("w"):rep(25), long, nil }
    local back, forth = sync.channel(), sync.channel()
    local t = Thread.spawn(function(ch, inc, ...)
      local n = select("#", ...)
      for i = 1, n do ch:push((select(i, ...))) end
      local echoed = {}
      for i = 1, n do echoed[i] = inc:pop() end  -- the parent's copies, back through C
      return package.loaded.ffi == nil, n, unpack(echoed, 1, n)
    end, back, forth, unpack(values, 1, values.n))
    local function same(a, b)
      if a ~= a then return b ~= b end
      if a == 0 and b == 0 then return 1 / a == 1 / b end
      return a == b
    end
    local got = {}
    for i = 1, values.n do got[i] = back:pop(10) end
    for i = 1, values.n do assert.is_true(same(values[i], got[i]), "argument " .. i .. " through the channel") end
    assert.equal(0, back:length())
    for i = 1, values.n do forth:push(values[i]) end
    local r = joined(t)
    assert.equal(values.n + 3, r.n)
    assert.is_true(r[2], "the light state loaded ffi")
    assert.equal(values.n, r[3])
    for i = 1, values.n do assert.is_true(same(values[i], r[i + 3]), "result " .. i) end
    -- nil counts: none, trailing, only
    local t2 = Thread.spawn(function(...) return select("#", ...), ... end, nil, 1, nil, nil)
    assert.same({ n = 6, true, 4, nil, 1, nil, nil }, joined(t2))
    local t3 = Thread.spawn(function() end)
    assert.same({ n = 1, true }, joined(t3))
    local t4 = Thread.spawn(function() return nil, nil end)
    assert.same({ n = 3, true }, joined(t4))
  end)

  it("fall back in the same thread: tables, other handles, every other method, timeouts, tostring", function()
    local to, from, other = sync.channel(4), sync.channel(), sync.channel()
    local m = sync.mutex()
    local t = Thread.spawn(function(to, from, other)
      local light = package.loaded.ffi == nil and type(to) == "userdata"
      from:push(1)
      local tab = to:pop()                 -- a table the parent pushed: the encoder's way
      from:push({ tab[1] + 1, k = "v" })
      local mutex = to:pop()               -- another kind of handle
      local locked = mutex:trylock(); mutex:unlock()
      local got_nested = to:pop()          -- a channel inside a table
      got_nested[1]:push("via nested")
      from:push({ other })                 -- a light handle inside a table
      to:push_many({ 1, 2, 3 })
      local got, n = to:pop_many(3)
      local a, b, c = got[1], got[2], got[n]
      local v, why = to:pop(0.01)
      return light, locked, a + b + c, v, why, to:length(), #to, to:capacity(), to:closed(), to:waiting(),
        tostring(to) == tostring(to) and tostring(to):match("^lj%-async%.channel: 0x%x+$") ~= nil,
        to.nonexistent, to:try_pop(), package.loaded.ffi ~= nil
    end, to, from, other)
    assert.equal(1, from:pop(10))
    to:push({ 10 })
    assert.same({ 11, k = "v" }, from:pop(10))
    to:push(m)
    to:push({ other })
    assert.equal("via nested", other:pop(10))
    local nested = from:pop(10)
    nested[1]:push("ok")
    assert.equal("ok", other:pop(10))
    local r = joined(t)
    assert.same({ n = 15, true, true, true, 6, nil, "timeout", 0, 0, 4, false, 0, true, nil, nil, true }, r)
  end)

  it("keep lj-async.sync's error messages and levels", function()
    local ch = sync.channel()
    local function fails(f)
      local t = Thread.spawn(f, ch)
      assert.is_true(t:join(30))
      assert.equal("failed", t:status())
      return (t:error():match("^[^\n]*"))
    end
    local where = "^" .. debug.getinfo(1, "S").short_src:gsub("%p", "%%%0") .. ":%d+: "
    assert.matches(where .. "bad argument #2 to 'push' %(timeout must be nil or seconds >= 0, got %-1%)$",
      fails(function(ch) assert(package.loaded.ffi == nil); ch:push(1, -1) end))
    assert.matches(where .. "bad argument #1 to 'pop' %(timeout must be nil or seconds >= 0, got string%)$",
      fails(function(ch) assert(package.loaded.ffi == nil); ch:pop("x") end))
    assert.matches(where .. "argument 1: cannot move a coroutine",
      fails(function(ch) assert(package.loaded.ffi == nil); ch:push(coroutine.create(print)) end))
    assert.matches(where .. "channel has been freed$",
      fails(function(ch) assert(package.loaded.ffi == nil); ch:free(); ch:free(); ch:push(1) end))
    assert.matches(where .. "channel has been freed$",
      fails(function(ch) assert(package.loaded.ffi == nil); ch:free(); ch:pop() end))
    assert.matches("attempt to index a number value$",
      fails(function(ch) assert(package.loaded.ffi == nil); ch.push(5, 1) end))
    -- results that cannot cross: the encoder's message, as for the Lua runner
    local t = Thread.spawn(function(ch) return ch, coroutine.create(print) end, ch)
    assert.is_true(t:join(30))
    assert.equal("failed", t:status())
    assert.matches("cannot move a coroutine", t:error())
  end)

  it("hand a light handle to the parent, pushed or returned, as a working handle of the same channel", function()
    local ch, out = sync.channel(), sync.channel()
    local t = Thread.spawn(function(ch, out)
      out:push(ch)
      return ch, { ch }, package.loaded["lj-async.sync"] == nil
    end, ch, out)
    local pushed = out:pop(10)
    local r = joined(t)
    assert.equal(ch, pushed); assert.equal(ch, r[2]); assert.equal(ch, r[3][1])
    r[2]:push("a"); pushed:push("b"); r[3][1]:push("c")
    assert.equal("a", ch:pop(0)); assert.equal("b", ch:pop(0)); assert.equal("c", ch:pop(0))
    -- a spawn from a light state passes its light handle on
    local t2 = Thread.spawn(function(ch)
      local Thread = require "lj-async.thread"
      local inner = Thread.spawn(function(c) c:push("inner"); return package.loaded.ffi == nil end, ch)
      local ok, light = inner:join()
      return ok, light
    end, ch)
    assert.same({ n = 3, true, true, true }, joined(t2))
    assert.equal("inner", ch:pop(0))
  end)

  it("let user code load lj-async.sync and get channels from elsewhere", function()
    local to, from = sync.channel(), sync.channel()
    local t = Thread.spawn(function(to, from)
      local sync = require "lj-async.sync"
      assert(sync.kind(to) == "channel" and sync.kind(newproxy()) == nil)
      local mine = sync.channel()
      from:push(mine)
      local given = to:pop()                 -- a channel the parent pushed: an ffi handle
      given:push(mine:pop())
      return type(given), type(to)
    end, to, from)
    local mine = from:pop(10)
    local given = sync.channel()
    to:push(given)
    mine:push("round trip")
    assert.equal("round trip", given:pop(10))
    assert.same({ n = 3, true, "cdata", "userdata" }, joined(t))
  end)

  it("wake a thread blocked in a light pop on close and on a push from another thread", function()
    local ch = sync.channel()
    local t = Thread.spawn(function(ch)
      local v, why = ch:pop()
      return package.loaded.ffi == nil, v, why
    end, ch)
    assert.is_true(eventually(function() return ch:waiting() == 1 end))
    ch:close()
    assert.same({ n = 4, true, true, nil, "closed" }, joined(t))

    local ch2 = sync.channel()
    local waiter = Thread.spawn(function(ch) return package.loaded.ffi == nil, ch:pop() end, ch2)
    assert.is_true(eventually(function() return ch2:waiting() == 1 end))
    local pusher = Thread.spawn(function(ch) return ch:push("from a thread") end, ch2)
    assert.same({ n = 2, true, true }, joined(pusher))
    assert.same({ n = 3, true, true, "from a thread" }, joined(waiter))
  end)

  it("lose no value when a finalizer pops while a pop makes its string", function()
    local ch = sync.channel()
    local N = 3000
    for i = 1, N do ch:push(("%05d"):format(i) .. ("v"):rep(40)) end  -- heap strings: the pop allocates
    local t = Thread.spawn(function(ch, n)
      local got, count = {}, 0
      local function take(v) if v ~= nil then got[v] = (got[v] or 0) + 1; count = count + 1 end end
      local by_gc = 0
      local function gc() local v = ch:try_pop(); if v ~= nil then by_gc = by_gc + 1 end; take(v) end
      while count < n do
        for _ = 1, 20 do getmetatable(newproxy(true)).__gc = gc end  -- garbage whose finalizer pops
        local v = ch:pop(0)
        if v == nil then
          collectgarbage(); collectgarbage()
          v = ch:pop(0)
          if v == nil and count < n then break end  -- lost values: the counts below say so
        end
        take(v)
      end
      local dup = 0
      for _, k in pairs(got) do if k ~= 1 then dup = dup + 1 end end
      return count, dup, package.loaded.ffi == nil, by_gc > 0
    end, ch, N)
    assert.same({ n = 5, true, N, 0, true, true }, joined(t))
    assert.equal(0, ch:length())
  end)

  it("switch to lj-async.sync's compiled path after many values, with the same values and errors", function()
    local to, from = sync.channel(), sync.channel()
    local t = Thread.spawn(function(to, from, n)
      local light_before = package.loaded.ffi == nil
      local s = 0
      for i = 1, n do from:push(i); s = s + to:pop() end
      local v1, v2 = to:try_pop()
      from:push(to)                          -- a light handle, pushed the upgraded way
      local ok, err = pcall(from.push, from, 1, -1)
      to:free()
      local ok2, err2 = pcall(to.pop, to)
      return light_before, s, package.loaded.ffi ~= nil, v1, v2, err, err2
    end, to, from, 20000)
    local sum = 0
    for i = 1, 20000 do to:push(i); sum = sum + from:pop(10) end
    assert.equal(20000 * 20001 / 2, sum)
    assert.equal(to, from:pop(10))
    local r = joined(t)
    assert.same({ n = 8, true, true, sum, true, nil, "timeout",
      "bad argument #2 to 'push' (timeout must be nil or seconds >= 0, got -1)", "channel has been freed" }, r)
  end)

  it("free what they hold: handles, queued cells, results nobody joined for", function()
    local ch = sync.channel()
    local base = live_objects()
    for _ = 1, 20 do
      local t = Thread.spawn(function(ch, s) ch:push(s); return ch, s, package.loaded.ffi == nil end, ch, ("q"):rep(100))
      local ok, _, _, light = t:join(30)
      assert.is_true(ok and light)
      t:destroy()
    end
    local t = Thread.spawn(function(ch) return ch, ch end, ch)
    assert.is_true(t:join(30))
    t = nil
    collectgarbage(); collectgarbage()
    assert.equal(20, ch:length())
    ch:free()
    assert.is_true(eventually(function() return live_objects() == base - 1 end), "the channel is not freed")
  end)
end)
