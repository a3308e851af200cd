-- One batch of the ctype fuzz spec, in its own process: arg 1 seed, arg 2 count. Prints
-- "T <i>" before trying string i (so a crash names it), "D <i>\t<luajit>\t<lj-async>" for each
-- disagreement outside the two extensions, "X <i>" for each string the extensions explain,
-- and "DONE <agreements>" at the end.
io.stdout:setvbuf("no")
local ffi = require "ffi"
local G = dofile("spec/fuzz/ctype_gen.lua")
local CallbackFactory = require "lj-async.callback"
local has_ctype, ctype = pcall(require, "lj-async.ctype")
local MAX = has_ctype and ctype.MAX_PARAMS or 16
ffi.cdef [[
int ljt_ffi_call(void *fp, int ret_kind, int nargs, const uint8_t *kinds, uint64_t *args,
                 int on_thread, int64_t *iret, double *dret);
]]
local T = ffi.load(os.getenv("LJASYNC_TESTC") or "build/libljasync_testc.so")
ffi.cdef(G.cdef)

local seed, count = tonumber(arg[1]), tonumber(arg[2])
local strings = G.strings(seed, count)
local args = ffi.new("uint64_t[64]")
local iret, dret = ffi.new("int64_t[1]"), ffi.new("double[1]")

local function luajit_cast(s)
  local ok, cb = pcall(ffi.cast, s, function() end)
  if ok then cb:free() end
  return ok, not ok and tostring(cb) or nil
end

local function ljasync(s)
  local ok, e = pcall(function()
    local CT = CallbackFactory(s)
    local cb = CT(function() end)
    local kinds = CT._sig.kinds
    local n = #kinds - 1
    if n <= 64 then  -- and called once, from C, with zero arguments
      local k = ffi.new("uint8_t[?]", math.max(n, 1))
      for i = 1, n do k[i - 1] = kinds[i + 1] end
      assert(T.ljt_ffi_call(ffi.cast("void *", cb:funcptr()), kinds[1], n, k, args, 0, iret, dret) == 0)
    end
    cb:free()
    return n
  end)
  return ok, e
end

local agree = 0
for i, s in ipairs(strings) do
  print("T " .. i)
  local lj_ok, lj_err = luajit_cast(s)
  local a_ok, a_res = ljasync(s)
  if lj_ok == a_ok then
    agree = agree + 1
  elseif a_ok then
    -- Extensions: an undeclared struct/union tag (lj-async declared it: LuaJIT may now agree),
    -- or more than LuaJIT's 16 parameters.
    local explained = false
    if lj_err:match("^undeclared or implicit tag") then
      explained = luajit_cast(s) or a_res > 16
    elseif lj_err:match("^cannot convert 'function'") and a_res > 16 and a_res <= MAX then
      explained = true
    end
    print((explained and "X " or "D ") .. i .. "\t" .. lj_err .. "\t(accepted)")
  else
    print("D " .. i .. "\t(accepted)\t" .. tostring(a_res))
  end
end
print("DONE " .. agree)
