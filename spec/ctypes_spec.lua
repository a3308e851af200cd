-- Callback types of real C libraries (spec/support/ctypes_list.lua): each is created from its
-- header's own spelling, called once from Lua and once from a C thread through libffi with zero
-- arguments, and must deliver the arguments as LuaJIT's own ffi callback does and return the
-- known value the callback returns.
local ffi = require "ffi"
local H = require "spec.helpers"
local CallbackFactory = require "lj-async.callback"

ffi.cdef [[
int ljt_ffi_call(void *fp, int ret_kind, int nargs, const uint8_t *kinds, uint64_t *args,
                 int on_thread, int64_t *iret, double *dret);
]]
local T = H.C
local groups = dofile("spec/support/ctypes_list.lua")

-- Value kinds (Sources/LJAsync/Callback/ValueKind.swift) and the value a callback returns for each.
local results = {
  [1] = "-7", [2] = "200", [3] = "-300", [4] = "60000", [5] = "-70000", [6] = "4000000000",
  [7] = "-(2^40 + 7)", [8] = "2^40 + 7", [9] = "7.5", [10] = "-7.25", [11] = 'require("ffi").cast("void *", 0x1234)',
  [12] = "true",
}
local expected = {
  [1] = -7, [2] = 200, [3] = -300, [4] = 60000, [5] = -70000, [6] = 4000000000, [7] = -(2 ^ 40 + 7),
  [8] = 2 ^ 40 + 7, [9] = 7.5, [10] = -7.25, [11] = 0x1234, [12] = 1,
}
-- Zero arguments from Lua, by kind.
local function zero(kind)
  if kind == 11 then return nil elseif kind == 12 then return false end
  return 0
end

-- How a callback sees its arguments, with the numbers LuaJIT gives anonymous types left out.
local describe_source = [[
local ffi = require "ffi"
local out = {}
for i = 1, select("#", ...) do
  local a = select(i, ...)
  local d = type(a)
  if d == "cdata" then
    d = tostring(ffi.typeof(a)):gsub("ljasync_anon_%d+", "?"):gsub("(%a+) %d+", "%1 ?")
  end
  out[i] = d
end
return table.concat(out, ", ")
]]
local describe_args = loadstring(describe_source)

local function call_from_c(fp, kinds, on_thread)
  local n = #kinds - 1
  local k = ffi.new("uint8_t[?]", math.max(n, 1))
  for i = 1, n do k[i - 1] = kinds[i + 1] end
  local args = ffi.new("uint64_t[?]", math.max(n, 1))
  local iret, dret = ffi.new("int64_t[1]"), ffi.new("double[1]")
  assert(T.ljt_ffi_call(ffi.cast("void *", fp), kinds[1], n, k, args, on_thread and 1 or 0, iret, dret) == 0)
  if kinds[1] == 9 or kinds[1] == 10 then return dret[0] end
  return tonumber(iret[0])
end

local function lua_value(kind, v)
  if v == nil then return nil end
  if kind == 11 then return tonumber(ffi.cast("intptr_t", v)) end
  if kind == 12 then return v and 1 or 0 end
  if kind == 0 then return nil end
  return tonumber(v)
end

describe("callback types of C libraries", function()
  local tried, agreed = 0, 0
  for _, g in ipairs(groups) do
    ffi.cdef(g.cdef)
    for _, s in ipairs(g.types) do
      it(("%s: %s"):format(g.lib, s), function()
        tried = tried + 1
        local CT = CallbackFactory(s)
        local kinds = CT._sig.kinds
        local ret = kinds[1]
        -- LuaJIT's own callback, called with the same zero arguments, is the reference.
        local seen
        local lj = ffi.cast(s, function(...)
          seen = describe_args(...)
          if ret ~= 0 then return loadstring("return " .. results[ret])() end
        end)
        local lj_result = (#kinds - 1 <= 16) and call_from_c(lj, kinds, false)
        lj:free()
        local body = ("local seen = (function(...) %s end)(...)\n"):format(describe_source)
          .. ("if seen ~= %q then error('arguments arrived as ' .. seen .. ', LuaJIT delivers %s') end\n")
            :format(seen, seen)
          .. (ret ~= 0 and ("return " .. results[ret]) or "")
        for _, opts in ipairs({ {}, { cdef = g.cdef } }) do  -- alone, and with the header pasted
          local cb = CT(body, opts)
          local fp = cb:funcptr()
          local zeros = {}
          for i = 2, #kinds do zeros[i - 1] = zero(kinds[i]) end
          local from_lua = lua_value(ret, fp(unpack(zeros, 1, #kinds - 1)))
          local from_thread = call_from_c(fp, kinds, true)
          local n, msg = cb:errors()
          cb:free()
          assert.equal(0, n, msg)
          assert.equal(expected[ret], from_lua)
          if ret ~= 0 then
            assert.equal(expected[ret], from_thread)
            assert.equal(lj_result, from_thread)
          end
        end
        agreed = agreed + 1
      end)
    end
  end
  it("counts", function()
    print(("\n%d callback types of C libraries tried, %d agree with LuaJIT's own callbacks"):format(tried, agreed))
    assert.equal(tried, agreed)
    assert.is_true(tried >= 150)
  end)
end)
