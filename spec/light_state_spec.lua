-- Light states (Sources/CLJAsyncLua/light.c): the standard libraries and ffi open at first use,
-- with the semantics of opened ones; a callback without cdef has no state until its first call.
local H = require "spec.helpers"
local Thread = require "lj-async.thread"
local CallbackFactory = require "lj-async.callback"

-- Runs `f` in a fresh thread state (Thread.spawn; its `ud`-free path opens nothing) and
-- returns its results.
local function in_state(f, ...)
  local t = Thread.spawn(f, ...)
  local r = { t:join(10) }
  local err = t:error()
  t:destroy()
  assert(r[1], "thread did not end")
  assert(err == nil, err)
  return unpack(r, 2)
end

describe("light states", function()
  it("open no library the code has not touched", function()
    -- The runner of Thread.spawn loads ffi and, for results, the encoder: look before it runs.
    local opened = in_state(function()
      local names = {}
      for _, lib in ipairs { "string", "table", "math", "io", "os", "debug", "bit" } do
        if rawget(package.loaded, lib) ~= nil then names[#names + 1] = lib end
      end
      return #names
    end)
    -- The encoder (for the result) opens table, string, bit: the function ran before it.
    assert.equal(0, opened)
  end)

  it("index strings before anyone touched string, with string as their metatable's __index", function()
    local len, same, upper = in_state(function()
      local n = ("abc"):len()
      return n, getmetatable("").__index == string, ("x"):upper()
    end)
    assert.equal(3, len)
    assert.is_true(same)
    assert.equal("X", upper)
  end)

  it("keep each library's global identity, and `require` returns the same table", function()
    local ok = in_state(function()
      local before = { string = string, table = table, math = math, io = io, os = os, debug = debug, bit = bit }
      for name, t in pairs(before) do
        local _ = t.nonexistent_field  -- opens it
        if require(name) ~= t or _G[name] ~= t or package.loaded[name] ~= t then return name end
      end
      return true
    end)
    assert.is_true(ok)
  end)

  it("open a library first reached through require, and its submodules", function()
    local a, b, c, d, mt = in_state(function()
      local tnew = require "table.new"
      local buf = require("string.buffer").new():put("ab"):tostring()
      local ffi = require "ffi"
      return type(tnew(4, 0)), buf, tonumber(ffi.new("int[1]", 7)[0]), math.floor(2.5), getmetatable(_G)
    end)
    assert.equal("table", a)
    assert.equal("ab", b)
    assert.equal(7, c)
    assert.equal(2, d)
    assert.is_nil(mt)
  end)

  it("run with the JIT on", function()
    local on = in_state(function() return (jit.status()) end)
    assert.is_true(on)
  end)

  it("let a library whose global was removed stay removed", function()
    local kind = in_state(function()
      local s = string
      local _ = s.len
      string = nil
      local kind = type(string)
      string = s  -- the runner's encoder needs it back for the result
      return kind
    end)
    assert.equal("nil", kind)
  end)
end)

describe("a callback's state", function()
  it("is made at the first call when the callback has no cdef", function()
    local cb = CallbackFactory("int(*)(int)")(function(x) return #("x"):rep(x) end)
    assert.equal(0, cb:states())
    assert.equal(5, cb:funcptr()(5))
    assert.equal(1, cb:states())
    cb:free()
  end)

  it("is made at creation with a cdef, so a bad cdef fails there", function()
    local cb = CallbackFactory("int(*)(int)")(function(x) return x end, { cdef = "typedef int light_t;" })
    assert.equal(1, cb:states())
    cb:free()
    assert.has_error(function()
      CallbackFactory("int(*)(int)")(function(x) return x end, { cdef = "this is not C;" })
    end)
  end)

  it("made at a first call from another C thread works, and free with it never built is clean", function()
    local cb = CallbackFactory("int(*)(int)")(function(x) return x * 3 end)
    local sums = require("ffi").new("long long[2]")
    H.C.ljt_call_threads(cb:funcptr(), 2, 1000, sums)
    assert.equal(3 * 1999 * 2000 / 2, tonumber(sums[0] + sums[1]))
    assert.equal(1, cb:states())
    cb:free()
    local never = CallbackFactory("int(*)(int)")(function(x) return x end)
    never:free()
    assert.equal(0, never:states())
  end)
end)
