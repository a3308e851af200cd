-- The argument checks lj-async.core shares with the public modules: core.timeout and
-- core.check_options (their messages are what users of sync, thread, pool and callback see).
local core = require "lj-async.core"

-- Calls f(...) from a known line; returns the error and that line.
local function error_at(f, ...)
  local line = debug.getinfo(1, "l").currentline + 1
  local ok, err = pcall(function(...) f(...) end, ...)
  assert.is_false(ok)
  return err, line
end

describe("core.timeout", function()
  -- (Not a tail call: a tail call leaves no frame for the error's level to point at.)
  local function wait(t) local v = core.timeout(t, 2, "wait"); return v end

  it("gives the core -1 for forever, and seconds as they are", function()
    assert.equal(-1, wait(nil))
    assert.equal(-1, wait(math.huge))
    assert.equal(0, wait(0))
    assert.equal(2.5, wait(2.5))
    assert.equal(1e-9, wait(1e-9))
  end)

  it("refuses anything else, naming the argument and the function", function()
    assert.has_error(function() wait(-1) end, "bad argument #2 to 'wait' (timeout must be nil or seconds >= 0, got -1)")
    assert.has_error(function() wait(-math.huge) end, "bad argument #2 to 'wait' (timeout must be nil or seconds >= 0, got -inf)")
    assert.has_error(function() wait(0 / 0) end,
      "bad argument #2 to 'wait' (timeout must be nil or seconds >= 0, got " .. tostring(0 / 0) .. ")")
    assert.has_error(function() wait("1") end, "bad argument #2 to 'wait' (timeout must be nil or seconds >= 0, got string)")
    assert.has_error(function() wait(false) end, "bad argument #2 to 'wait' (timeout must be nil or seconds >= 0, got boolean)")
  end)

  it("raises at the caller of the checking function, or at the level given", function()
    local err, line = error_at(wait, -1)
    assert.matches(("^[^:]*core_checks_spec%%.lua:%d: bad argument"):format(line), err)
    local function inner(t) local v = core.timeout(t, 1, "inner", 3); return v end
    local function outer(t) local v = inner(t); return v end
    err, line = error_at(outer, -1)
    assert.matches(("^[^:]*core_checks_spec%%.lua:%d: bad argument #1 to 'inner'"):format(line), err)
  end)
end)

describe("core.check_options", function()
  local allowed = { "states", "name", "memory_limit", "capacity" }

  it("returns the table when every key is known", function()
    local t = { states = 2, name = "x" }
    assert.equal(t, core.check_options(t, allowed))
    assert.same({}, core.check_options({}, {}))
  end)

  it("suggests a close name for a typo", function()
    assert.has_error(function() core.check_options({ stats = 2 }, allowed) end, "unknown option 'stats' (did you mean 'states'?)")
    assert.has_error(function() core.check_options({ capcity = 2 }, allowed) end, "unknown option 'capcity' (did you mean 'capacity'?)")
    assert.has_error(function() core.check_options({ nmae = 2 }, allowed) end, "unknown option 'nmae' (did you mean 'name'?)")
    assert.has_error(function() core.check_options({ NAME = 2 }, allowed) end, "unknown option 'NAME' (did you mean 'name'?)")
    assert.has_error(function() core.check_options({ memorylimit = 2 }, allowed) end,
      "unknown option 'memorylimit' (did you mean 'memory_limit'?)")
  end)

  it("lists the options when nothing is close", function()
    local list = "(known options: 'states', 'name', 'memory_limit', 'capacity')"
    assert.has_error(function() core.check_options({ n = 2 }, allowed) end, "unknown option 'n' " .. list)
    assert.has_error(function() core.check_options({ size = 2 }, allowed) end, "unknown option 'size' " .. list)
    assert.has_error(function() core.check_options({ 5 }, allowed) end, "unknown option [1] " .. list)
    assert.has_error(function() core.check_options({ [true] = 1 }, allowed) end, "unknown option [true] " .. list)
    assert.has_error(function() core.check_options({ x = 1 }, {}) end, "unknown option 'x' (it takes no options)")
  end)

  it("names the same key every time when several are unknown", function()
    for _ = 1, 20 do
      assert.has_error(function() core.check_options({ zeta = 1, alpha = 2, [3] = 3, states = 1 }, allowed) end,
        "unknown option [3] " .. "(known options: 'states', 'name', 'memory_limit', 'capacity')")
      assert.has_error(function() core.check_options({ zeta = 1, alpha = 2 }, allowed) end,
        "unknown option 'alpha' (known options: 'states', 'name', 'memory_limit', 'capacity')")
    end
  end)

  it("raises at the caller of the checking function, or at the level given", function()
    local function configure(opts) core.check_options(opts, allowed) end
    local err, line = error_at(configure, { stats = 1 })
    assert.matches(("^[^:]*core_checks_spec%%.lua:%d: unknown option 'stats'"):format(line), err)
    local function inner(opts) core.check_options(opts, allowed, 3) end
    local function outer(opts) inner(opts); return true end
    err, line = error_at(outer, { stats = 1 })
    assert.matches(("^[^:]*core_checks_spec%%.lua:%d: unknown option 'stats'"):format(line), err)
  end)
end)
