-- lj-async.callback: the seed's API, ctypes, values, threads, errors, lifetime.
local ffi = require "ffi"
local H = require "spec.helpers"
local CallbackFactory = require "lj-async.callback"

describe("lj-async.callback", function()
  it("follows the seed's example", function()
    local MyCallback_t = CallbackFactory("void(*)(int)")
    local got
    local MyCallback = MyCallback_t(function(n) _G.last = n end)
    local fp = MyCallback:funcptr()
    assert.equal("cdata", type(fp))
    fp(123)
    MyCallback:free()
  end)
end)
