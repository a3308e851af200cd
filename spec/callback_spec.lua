-- lj-async.callback: the seed's API, ctypes, values, threads, errors, lifetime, state contents.
local ffi = require "ffi"
local H = require "spec.helpers"
local CallbackFactory = require "lj-async.callback"
local T = H.C

ffi.cdef [[
void qsort(void *base, size_t n, size_t size, int (*cmp)(const void *, const void *));
typedef uint64_t ljt_pthread_t;
int pthread_create(ljt_pthread_t *t, const void *attr, void *(*fn)(void *), void *arg);
int pthread_join(ljt_pthread_t t, void **ret);
]]

-- Source for callbacks that need the C test driver inside their own state.
local TESTC = os.getenv("LJASYNC_TESTC") or "build/libljasync_testc.so"
local function with_testc(body)
  return ([[
    local ffi = require "ffi"
    pcall(ffi.cdef, "int ljt_call_stored(int x); void ljt_flag_set(int i, int v); int ljt_flag_get(int i);")
    local T = ffi.load(%q)
  ]]):format(TESTC) .. body
end

describe("the seed's API", function()
  it("runs the seed's example: a void(*)(int) callback called from Lua", function()
    local MyCallback_t = CallbackFactory("void(*)(int)")
    local MyCallback = MyCallback_t(with_testc "T.ljt_flag_set(0, (...))")
    local fp = MyCallback:funcptr()
    fp(123)
    assert.equal(123, T.ljt_flag_get(0))
    MyCallback:free()
  end)

  it("gives the same type object for the same string, and refuses non-strings", function()
    assert.equal(CallbackFactory("int(*)(int)"), CallbackFactory("int(*)(int)"))
    assert.not_equal(CallbackFactory("int(*)(int)"), CallbackFactory("int (*)(int)"))
    assert.has_error(function() CallbackFactory(ffi.typeof("int(*)(int)")) end,
      'bad ctype ctype<int (*)()>: pass the type as a string, e.g. CallbackFactory("int32_t (*)(int32_t)") (ctypes cannot be moved between states)')
    assert.has_error(function() CallbackFactory(42) end,
      "bad ctype: expected a string, got number (ctypes cannot be moved between states)")
  end)

  it("returns a cdata of exactly the requested ctype", function()
    local cb = CallbackFactory("int(*)(int, double)")(function(a, b) return a + b end)
    local fp = cb:funcptr()
    assert.is_true(ffi.istype("int(*)(int, double)", fp))
    assert.equal(42, fp(40, 2.9))
    cb:free()
  end)

  it("accepts a function, Lua source whose ... are the arguments, and bytecode", function()
    local f = function(a, b) return a * b end
    local I = CallbackFactory("int(*)(int, int)")
    local a, b, c = I(f), I("local a, b = ... return a - b"), I(string.dump(f))
    assert.equal(12, a:funcptr()(3, 4))
    assert.equal(-1, b:funcptr()(3, 4))
    assert.equal(12, c:funcptr()(3, 4))
    a:free(); b:free(); c:free()
  end)

  it("frees once even when free is called twice, and frees when collected", function()
    local before = CallbackFactory.live()
    local cb = CallbackFactory("void(*)(void)")(function() end)
    assert.equal(before + 1, CallbackFactory.live())
    cb:free(); cb:free()
    assert.equal(before, CallbackFactory.live())
    assert.has_error(function() cb:funcptr() end, "callback has been freed")
    do CallbackFactory("void(*)(void)")(function() end) end
    assert.equal(before + 1, CallbackFactory.live())
    collectgarbage(); collectgarbage()
    assert.equal(before, CallbackFactory.live())
  end)

  describe("upvalues", function()
    it("copies them by value when the callback's state is made, a loaded module crossing as require", function()
      local up1, up2 = 1, { 2 }
      local cb = CallbackFactory("int(*)(int)")(function(x) return x + up1 + up2[1] end)
      up1, up2[1] = 100, 200  -- the state holds copies made at creation
      assert.equal(13, cb:funcptr()(10))
      cb:free()
    end)

    it("runs seed 002's 'BAD! ffi is an upvalue' example (with int * for its invalid int[1])", function()
      local buf = ffi.new("int[1]", 41)
      local MyCallback_t = CallbackFactory("void(*)(void *)")
      local MyCallback = MyCallback_t(function(userdata)
        userdata = ffi.cast("int *", userdata)
        userdata[0] = userdata[0] + 1
      end)
      MyCallback:funcptr()(buf)
      assert.equal(42, buf[0])
      MyCallback:free()
    end)

    it("are copies, decoded once per state: mutations persist there across calls and never come back", function()
      local counter = { n = 0 }
      local cb = CallbackFactory("int(*)(void)")(function()
        counter.n = counter.n + 1
        return counter.n
      end)
      local fp = cb:funcptr()
      assert.equal(1, fp()); assert.equal(2, fp())
      assert.equal(0, counter.n)  -- nothing comes back
      cb:free()
    end)

    it("keep shared objects shared: a channel upvalue is the creator's channel (states = n too)", function()
      local sync = require "lj-async.sync"
      local ch = sync.channel()
      local cb = CallbackFactory("int(*)(int)")(function(x)
        ch:push(x)
        return x
      end, { states = 2 })
      local fp = cb:funcptr()
      for i = 1, 3 do assert.equal(i, fp(i)) end
      assert.same({ 1, 2, 3 }, { ch:pop(0), ch:pop(0), ch:pop(0) })
      cb:free()
    end)

    it("refuses what cannot move with the encoder's text, naming the upvalue and its path", function()
      local co = coroutine.create(function() end)
      local I = CallbackFactory("int(*)(int)")
      assert.has_error(function() I(function() return co end) end,
        "bad callback function: upvalue 'co': cannot move a coroutine")
      local t = { inner = { co } }
      assert.has_error(function() I(function() return t end) end,
        "bad callback function: upvalue 't'.inner[1]: cannot move a coroutine")
      local ok, err = pcall(function() I(function() return co end) end)
      assert.matches("callback_spec%.lua:%d+: bad callback function", err)  -- raised at the caller
    end)

    it("keep an upvalue-free callback's state free of the encoder", function()
      local cb = CallbackFactory("int(*)(void)")(function()
        return package.loaded["lj-async.encoder"] == nil and 1 or 0
      end)
      assert.equal(1, cb:funcptr()())
      cb:free()
      local k = 0
      local with = CallbackFactory("int(*)(void)")(function()
        return package.loaded["lj-async.encoder"] ~= nil and 1 + k or 0
      end)
      assert.equal(1, with:funcptr()())  -- the one with upvalues decoded them
      with:free()
    end)

    it("free the encoded function with the callback (free or collected), releasing its handles", function()
      local sync = require "lj-async.sync"
      local before, objects = CallbackFactory.live(), sync.live_objects()
      for i = 1, 40 do  -- each message holds a reference to its channel: 40 would stay if they leaked
        local ch = sync.channel()
        local cb = CallbackFactory("int(*)(void)")(function() return ch:push(i) and 1 or 0 end)
        assert.equal(1, cb:funcptr()())
        if i % 2 == 0 then cb:free() end  -- the others are collected
      end
      jit.flush()  -- traces may hold handles as constants
      collectgarbage(); collectgarbage()
      assert.equal(before, CallbackFactory.live())
      -- The states' own references go when the background closer (StateStock.retire) closes
      -- them; objects of earlier tests may go meanwhile, hence <=.
      local Thread, deadline = require "lj-async.thread", os.time() + 10
      while sync.live_objects() > objects and os.time() < deadline do Thread.sleep(0.001) end
      assert.is_true(sync.live_objects() <= objects, "channels still referenced: " .. sync.live_objects() - objects)
    end)

    it("cross with on_error handlers too, refused with the handler's name", function()
      local seen = { "none" }
      local sync = require "lj-async.sync"
      local ch = sync.channel()
      local cb = CallbackFactory("int(*)(int)")(function(x) error("boom " .. x) end, {
        on_error = function(msg) ch:push(seen[1] .. ": " .. msg:match("boom %d+")) end,  -- upvalues ch, seen
      })
      assert.equal(0, cb:funcptr()(7))
      assert.equal("none: boom 7", ch:pop(0))
      cb:free()
      local k = 3
      local both = CallbackFactory("int(*)(int)")(function(x) if x < 0 then error("neg") end return x * k end,
        { on_error = function() ch:push(k) end })
      assert.equal(6, both:funcptr()(2))
      assert.equal(0, both:funcptr()(-1))
      assert.equal(3, ch:pop(0))
      both:free()
      local co = coroutine.create(function() end)
      assert.has_error(function()
        CallbackFactory("int(*)(int)")(function(x) return x end, { on_error = function() return co end })
      end, "bad option 'on_error': upvalue 'co': cannot move a coroutine")
      assert.has_error(function()
        CallbackFactory("int(*)(int)")(function(x) return x + k end, { on_error = function() return co end })
      end, "bad option 'on_error': upvalue 'co': cannot move a coroutine")
    end)
  end)

  it("supports the seed's pattern of re-requiring ffi inside the function", function()
    local buf = ffi.new("int[1]", 41)
    local cb = CallbackFactory("void(*)(void *)")(function(ud)
      local ffi = require "ffi"
      local p = ffi.cast("int*", ud)
      p[0] = p[0] + 1
    end)
    cb:funcptr()(buf)
    assert.equal(42, buf[0])
    cb:free()
  end)

  it("refuses bad functions and options with clear messages", function()
    local I = CallbackFactory("int(*)(int)")
    assert.has_error(function() I(42) end, "bad callback function: expected a function, Lua source or bytecode, got number")
    assert.has_error(function() I("return +") end)
    assert.has_error(function() I(function() end, { states = 0 }) end,
      "bad option 'states': expected a positive integer or 'parallel'")
    assert.has_error(function() CallbackFactory("void(*)(void)")(function() end, { default = 1 }) end,
      "bad option 'default': the callback returns void")
  end)
end)

describe("ctype strings", function()
  local scalar = {
    { "bool", true }, { "char", 65 }, { "signed char", -5 }, { "unsigned char", 250 },
    { "short", -30000 }, { "unsigned short", 65000 }, { "int", -2000000000 }, { "unsigned int", 4000000000 },
    { "long", -5 }, { "unsigned long", 5 }, { "long long", -(2 ^ 40) }, { "unsigned long long", 2 ^ 50 },
    { "int8_t", -128 }, { "uint8_t", 255 }, { "int16_t", -32768 }, { "uint16_t", 65535 },
    { "int32_t", -2147483648 }, { "uint32_t", 4294967295 }, { "int64_t", -(2 ^ 62) }, { "uint64_t", 2 ^ 63 },
    { "size_t", 2 ^ 40 }, { "ssize_t", -7 }, { "intptr_t", -9 }, { "uintptr_t", 2 ^ 45 }, { "ptrdiff_t", -11 },
    { "float", 1.5 }, { "double", -1e300 },
  }
  for _, case in ipairs(scalar) do
    local t, v = case[1], case[2]
    it("passes and returns " .. t, function()
      local cb = CallbackFactory(("%s(*)(%s x)"):format(t, t))(function(x) return x end)
      local r = cb:funcptr()(v)
      local expect = ffi.new(t .. "[1]", v)[0]  -- what LuaJIT makes of v as a t
      assert.equal(type(expect), type(r))
      if type(r) == "cdata" then assert.is_true(r == expect) else assert.equal(expect, r) end
      cb:free()
    end)
  end

  it("passes many mixed arguments, including ones on the stack", function()
    local cb = CallbackFactory(
      "double(*)(int, double, int8_t, float, uint16_t, double, int64_t, double, int, double, int, double, double, double, double, double, int, float)")(
      function(...)
        local s = 0
        for i = 1, select("#", ...) do s = s + tonumber((select(i, ...))) * i end
        return s
      end)
    local args = { 1, 2.5, -3, 4.25, 5, 6.5, 7, 8.5, 9, 10.5, 11, 12.5, 13.5, 14.5, 15.5, 16.5, 17, 18.75 }
    local expect = 0
    for i, v in ipairs(args) do expect = expect + v * i end
    assert.equal(expect, cb:funcptr()(unpack(args)))
    cb:free()
  end)

  it("accepts pointers: const, to undeclared structs, to functions, and (void)", function()
    local cb = CallbackFactory("const char *(*)(const char *s, struct lj_opaque *o, int (*f)(int))")(
      function(s, o, f)
        local ffi = require "ffi"
        assert(ffi.string(s) == "hi" and o == nil)
        assert(f(4) == 5)
        return s
      end)
    local s = "hi"
    local r = cb:funcptr()(s, nil, H.C.ljt_plain)
    assert.equal("hi", ffi.string(r))
    cb:free()
    local v = CallbackFactory("int(*)(void)")(function() return 7 end)
    assert.equal(7, v:funcptr()())
    v:free()
  end)

  it("resolves typedefs of the creating state, and takes declarations with the cdef option", function()
    ffi.cdef [[
      typedef struct ljt_point { int x, y; } ljt_point;
      typedef int ljt_len_t;
      typedef struct { double v; } ljt_anon;
      enum ljt_color { LJT_RED, LJT_GREEN = 7 };
    ]]
    local pt = ffi.new("ljt_point", 3, 4)
    -- Without declarations the struct is incomplete there: the pointer passes, fields do not.
    local opaque = CallbackFactory("ljt_len_t(*)(ljt_point *p)")(function(p)
      local ffi = require "ffi"
      return ffi.istype("struct ljt_point *", p) and 1 or 0
    end)
    assert.equal(1, opaque:funcptr()(pt))
    opaque:free()
    local cb = CallbackFactory("ljt_len_t(*)(ljt_point *p)")(function(p) return p.x + p.y end,
      { cdef = "typedef struct ljt_point { int x, y; } ljt_point;" })
    assert.equal(7, cb:funcptr()(pt))
    cb:free()

    -- An anonymous struct keeps its typedef name there, incomplete until a cdef declares it.
    local opaque_anon = CallbackFactory("double(*)(ljt_anon *)")(function(a)
      local ffi = require "ffi"
      return ffi.istype("ljt_anon *", a) and not pcall(function() return a.v end) and 1 or 0
    end)
    assert.equal(1, opaque_anon:funcptr()(ffi.new("ljt_anon", 2.5)))
    opaque_anon:free()
    local a = CallbackFactory("double(*)(ljt_anon *)")(function(a) return a.v * 2 end,
      { cdef = "typedef struct { double v; } ljt_anon;" })
    assert.equal(5, a:funcptr()(ffi.new("ljt_anon", 2.5)))
    a:free()

    -- An enum arrives as LuaJIT's own callbacks deliver it (cdata), declared there from the
    -- creator's declaration; a cdef repeating it is fine; results take constant names.
    local e1 = CallbackFactory("int(*)(enum ljt_color)")(function(c)
      local ffi = require "ffi"
      return ffi.istype("enum ljt_color", c) and tonumber(c) or -1
    end)
    assert.equal(7, e1:funcptr()(7))
    e1:free()
    local e3 = CallbackFactory("enum ljt_color(*)(void)")(function() return "LJT_GREEN" end)
    assert.equal(7, tonumber(e3:funcptr()()))
    e3:free()
    local e2 = CallbackFactory("int(*)(enum ljt_color)")(function(c)
      local ffi = require "ffi"
      return ffi.istype("enum ljt_color", c) and tonumber(c) or -1
    end, { cdef = "enum ljt_color { LJT_RED, LJT_GREEN = 7 };" })
    assert.equal(7, e2:funcptr()(7))
    e2:free()
  end)

  it("refuses variadic, non-function, by-value struct and unknown types", function()
    assert.has_error(function() CallbackFactory("int(*)(int,...)") end,
      "bad ctype 'int(*)(int,...)': variadic callbacks are not supported")
    assert.has_error(function() CallbackFactory("int") end,
      "bad ctype 'int': not a function pointer type")
    assert.has_error(function() CallbackFactory("int(int)") end,
      "bad ctype 'int(int)': not a function pointer type (write it as 'RET(*)(ARGS)')")
    assert.has_error(function() CallbackFactory("void(*)(struct ljt_point)") end,
      "bad ctype 'void(*)(struct ljt_point)': parameter 1 ('struct ljt_point'): structs and unions passed by value are not supported (pass a pointer)")
    assert.has_error(function() CallbackFactory("void(*)(no_such_type)") end)
  end)
end)

describe("many parameters", function()
  ffi.cdef [[
  int ljt_ffi_call(void *fp, int ret_kind, int nargs, const uint8_t *kinds, uint64_t *args,
                   int on_thread, int64_t *iret, double *dret);
  ]]
  -- Calls fp from a C thread through libffi with args[i] of kinds[i] (lj-async's value kinds).
  local function call(fp, ret_kind, kinds, values)
    local n = #kinds
    local k, args = ffi.new("uint8_t[?]", n), ffi.new("uint64_t[?]", n)
    for i = 1, n do
      k[i - 1] = kinds[i]
      if kinds[i] == 10 then ffi.cast("double *", args + i - 1)[0] = values[i]
      else ffi.cast("int64_t *", args + i - 1)[0] = values[i] end
    end
    local iret, dret = ffi.new("int64_t[1]"), ffi.new("double[1]")
    assert.equal(0, T.ljt_ffi_call(ffi.cast("void *", fp), ret_kind, n, k, args, 1, iret, dret))
    return ret_kind == 10 and dret[0] or iret[0]
  end

  it("takes up to 1000 (past the registers, each keeps its type), refuses more by name", function()
    local types, kinds, values = {}, {}, {}
    for i = 1, 1000 do types[i], kinds[i], values[i] = "int64_t", 7, 2 ^ 40 + i end
    local ct = "int64_t(*)(" .. table.concat(types, ", ") .. ")"
    local cb = CallbackFactory(ct)(function(...)
      local n, a512, a1000 = select("#", ...), select(512, ...), select(1000, ...)
      return n == 1000 and a512 == 2 ^ 40 + 512 and a1000 or -1
    end)
    assert.equal(2 ^ 40 + 1000, tonumber(call(cb:funcptr(), 7, kinds, values)))
    assert.equal(0, (cb:errors()))
    cb:free()
    types[1001] = "int"
    local long = "int64_t(*)(" .. table.concat(types, ", ") .. ")"
    assert.has_error(function() CallbackFactory(long) end,
      ("bad ctype '%s... (%d characters)': more than 1000 parameters (lj-async's maximum)"):format(long:sub(1, 100), #long))
  end)

  it("reads an int64_t at position 40 among ints and doubles as 64 bits", function()
    local types, kinds, values = {}, {}, {}
    for i = 1, 50 do
      local d = i % 3 == 0
      types[i], kinds[i], values[i] = d and "double" or "int", d and 10 or 5, d and i + 0.5 or -i
    end
    types[40], kinds[40], values[40] = "int64_t", 7, -(2 ^ 40) - 40
    local cb = CallbackFactory("double(*)(" .. table.concat(types, ",") .. ")")(function(...)
      local ffi = require "ffi"
      local a = { ... }
      assert(ffi.istype("int64_t", a[40]) and a[40] == -(2 ^ 40) - 40, "parameter 40: " .. tostring(a[40]))
      assert(a[39] == 39.5 and a[41] == -41 and a[50] == -50, "neighbours")
      return a[48]
    end)
    assert.equal(48.5, call(cb:funcptr(), 10, kinds, values))
    assert.equal(0, (cb:errors()))
    cb:free()
  end)

  it("takes a ctype string of any length (216 unsigned long long: 4,300 characters)", function()
    local types, kinds, values = {}, {}, {}
    for i = 1, 216 do types[i], kinds[i], values[i] = "unsigned long long", 8, i end
    local cb = CallbackFactory("unsigned long long(*)(" .. table.concat(types, ", ") .. ")")(function(...)
      return select(216, ...) + select("#", ...)
    end)
    assert.equal(432, tonumber(call(cb:funcptr(), 8, kinds, values)))
    cb:free()
  end)
end)

describe("values", function()
  it("arrive as LuaJIT's own ffi callbacks deliver them", function()
    local cb = CallbackFactory("int(*)(int, int64_t, void *, bool, float, uint32_t)")(function(i, l, p, b, f, u)
      local ffi = require "ffi"
      assert(type(i) == "number", "int")
      assert(type(l) == "cdata" and ffi.istype("int64_t", l), "int64_t")
      assert(type(p) == "cdata" and ffi.istype("void *", p), "pointer")
      assert(type(b) == "boolean", "bool")
      assert(type(f) == "number", "float")
      assert(type(u) == "number" and u == 4294967295, "uint32_t")
      return 1
    end)
    assert.equal(1, cb:funcptr()(1, 2, nil, true, 1.5, 4294967295))
    assert.equal(0, select(1, cb:errors()))
    cb:free()
  end)

  it("converts results by ffi rules; an inconvertible result is an error returning the default", function()
    local cb = CallbackFactory("int(*)(int)")(function(x)
      if x == 1 then return "not a number" end
      if x == 2 then return nil end
      return true
    end, { default = -1 })
    local err = H.capture_stderr(function()
      assert.equal(-1, cb:funcptr()(1))
      assert.equal(-1, cb:funcptr()(2))
      assert.equal(1, cb:funcptr()(3))
    end)
    assert.matches("cannot convert 'string' to 'int'", err, 1, true)
    assert.matches("cannot convert 'nil' to 'int'", err, 1, true)
    assert.equal(2, (cb:errors()))
    cb:free()
  end)
end)

describe("threads", function()
  local function expected_sums(nthreads, calls, f)
    local out = {}
    for t = 0, nthreads - 1 do
      local s = 0
      for i = 0, calls - 1 do s = s + f(t * calls + i) end
      out[t] = s
    end
    return out
  end

  it("serializes 8 C threads calling one function pointer at once", function()
    local cb = CallbackFactory("int(*)(int)")(function(x)
      if x < 0 then return count end
      count = (count or 0) + 1  -- a global of the callback's one state: races would lose counts
      return x * 3 + 1
    end)
    local sums = ffi.new("long long[8]")
    assert.is_true(T.ljt_call_threads(cb:funcptr(), 8, 20000, sums) > 0)
    local exp = expected_sums(8, 20000, function(x) return x * 3 + 1 end)
    for t = 0, 7 do assert.equal(exp[t], tonumber(sums[t])) end
    assert.equal(8 * 20000, cb:funcptr()(-1))     -- one state saw every call, none lost
    local check = CallbackFactory("int(*)(int)")("return count or -1")  -- another state: no count
    assert.equal(-1, check:funcptr()(0))
    assert.equal(1, cb:states())
    cb:free(); check:free()
  end)

  it("keeps the callback's state private: its globals count every call exactly", function()
    local cb = CallbackFactory("int(*)(int)")(function(x)
      n = (n or 0) + 1
      return x < 0 and n or 0
    end)
    local sums = ffi.new("long long[8]")
    T.ljt_call_threads(cb:funcptr(), 8, 5000, sums)
    assert.equal(40001, cb:funcptr()(-1))
    cb:free()
  end)

  it("runs parallel callbacks in several states at once", function()
    -- Each of two calls announces itself, then waits (up to 10 s, so a broken build fails
    -- instead of hanging) until the other has entered: both return 1 only if two states ran
    -- at the same moment. One state cannot hold two calls, so serial execution returns 0.
    local cb = CallbackFactory("int(*)(int)")(with_testc [[
      local x = ...
      ffi.cdef "typedef struct { long s, ns; } ljt_ts; int clock_gettime(int, ljt_ts *);"
      local ts = ffi.new("ljt_ts")
      local function now() ffi.C.clock_gettime(1, ts) return tonumber(ts.s) + tonumber(ts.ns) * 1e-9 end
      T.ljt_flag_set(5 + x, 1)
      local deadline = now() + 10
      while T.ljt_flag_get(6 - x) == 0 do
        if now() > deadline then return 0 end
      end
      return 1
    ]], { states = 2 })
    T.ljt_flag_set(5, 0); T.ljt_flag_set(6, 0)
    local sums = ffi.new("long long[2]")
    T.ljt_call_threads(cb:funcptr(), 2, 1, sums)  -- thread t calls once with x = t
    assert.same({ 1, 1 }, { tonumber(sums[0]), tonumber(sums[1]) })
    assert.equal(2, cb:states())
    cb:free()
  end)

  it("gives parallel callbacks' results right under load, within their state limit", function()
    local cb = CallbackFactory("int(*)(int)")(function(x)
      local s = 0
      for i = 1, 50 do s = s + i end
      return x + s - 1275
    end, { states = 4 })
    local sums = ffi.new("long long[8]")
    T.ljt_call_threads(cb:funcptr(), 8, 20000, sums)
    local exp = expected_sums(8, 20000, function(x) return x end)
    for t = 0, 7 do assert.equal(exp[t], tonumber(sums[t])) end
    assert.is_true(cb:states() <= 4)
    cb:free()
  end)

  it("survives a callback that re-enters itself through C on the same thread", function()
    local cb = CallbackFactory("int(*)(int)")(with_testc [[
      local n = ...
      if n == 0 then return 0 end
      return 1 + T.ljt_call_stored(n - 1)
    ]])
    T.ljt_store(cb:funcptr())
    assert.equal(5, T.ljt_call_stored(5))
    -- From another thread too.
    local h = T.ljt_call_later(cb:funcptr(), 6)
    assert.equal(6, T.ljt_call_later_join(h))
    cb:free()
  end)

  it("is called from libc's qsort with a Lua comparator", function()
    local cmp = CallbackFactory("int(*)(const void *, const void *)")(function(a, b)
      local ffi = require "ffi"
      local x, y = ffi.cast("const int *", a)[0], ffi.cast("const int *", b)[0]
      return x < y and -1 or (x > y and 1 or 0)
    end)
    local n = 1000
    local arr = ffi.new("int[?]", n)
    for i = 0, n - 1 do arr[i] = (i * 7919) % 1009 end
    ffi.C.qsort(arr, n, 4, cmp:funcptr())
    for i = 1, n - 1 do assert.is_true(arr[i - 1] <= arr[i]) end
    cmp:free()
  end)

  it("starts a pthread directly with a void*(*)(void*) callback", function()
    local main = CallbackFactory("void*(*)(void *)")(function(ud)
      local ffi = require "ffi"
      local p = ffi.cast("int *", ud)
      for i = 0, 9 do p[i] = i * i end
      return ud
    end)
    local data = ffi.new("int[10]")
    local tid = ffi.new("ljt_pthread_t[1]")
    local ret = ffi.new("void *[1]")
    assert.equal(0, ffi.C.pthread_create(tid, nil, main:funcptr(), data))
    assert.equal(0, ffi.C.pthread_join(tid[0], ret))
    assert.equal(ffi.cast("void *", data), ret[0])
    for i = 0, 9 do assert.equal(i * i, data[i]) end
    main:free()
  end)

  -- LJASYNC_ENTRY is read once per process: a child process of the same LuaJIT (on PATH).
  local function child(env, source)
    local script = os.tmpname()
    local f = assert(io.open(script, "w"))
    f:write('package.path = "./lua/?.lua;" .. package.path\n', source)
    f:close()
    local p = io.popen(env .. " luajit " .. script .. " 2>&1")
    local out = p:read("*a"); p:close()
    os.remove(script)
    return out
  end

  it("takes the entry LJASYNC_ENTRY names: libffi, else the x86-64 stub where there is one", function()
    local cb = CallbackFactory("int(*)(int)")(function(x) return x + 1 end)
    local libffi = os.getenv("LJASYNC_ENTRY") == "libffi" or ffi.arch ~= "x64"
    assert.equal(libffi and "libffi" or "stub", CallbackFactory._entry(cb))
    assert.equal(8, cb:funcptr()(7))
    cb:free()
  end)

  it("works through libffi closures with LJASYNC_ENTRY=libffi, from many threads", function()
    assert.equal("libffi libffi 10.5 127992000", child("LJASYNC_ENTRY=libffi", [[
      local ffi = require "ffi"
      local CF = require "lj-async.callback"
      ffi.cdef "double ljt_call_threads(int (*fp)(int), int nthreads, int calls, long long *sums);"
      local T = ffi.load(os.getenv("LJASYNC_TESTC") or "build/libljasync_testc.so")
      local cb = CF("double(*)(int, double, float, int64_t)")(function(a, b, c, d) return a + b + c + tonumber(d) end)
      local ic = CF("int(*)(int)")(function(x) return x end)
      local sums = ffi.new("long long[8]")
      T.ljt_call_threads(ic:funcptr(), 8, 2000, sums)
      local s = 0
      for t = 0, 7 do s = s + tonumber(sums[t]) end
      io.write(CF._entry(cb), " ", CF._entry(ic), " ", cb:funcptr()(1, 2.5, 3, 4), " ", s)
    ]]))
  end)

  it("refuses an LJASYNC_ENTRY it does not know, at each creation", function()
    local out = child("LJASYNC_ENTRY=fast", [[
      local CF = require "lj-async.callback"
      for _ = 1, 2 do io.write(select(2, pcall(CF("int(*)(int)"), function(x) return x end)), "\n") end
    ]])
    local msg = "cannot create callback 'int(*)(int)': bad LJASYNC_ENTRY 'fast': expected 'libffi', or unset for the default entry"
    local _, count = out:gsub(msg:gsub("%p", "%%%0"), "")
    assert.equal(2, count, out)
  end)
end)

describe("errors", function()
  it("returns zero by default and reports to stderr with a traceback", function()
    local cb = CallbackFactory("int(*)(int)")(function(x) error("boom " .. x) end, { name = "boomer" })
    local err = H.capture_stderr(function() assert.equal(0, cb:funcptr()(5)) end)
    assert.matches("lj-async: error in callback boomer: ", err, 1, true)
    assert.matches("boom 5", err, 1, true)
    assert.matches("stack traceback", err, 1, true)
    local n, last = cb:errors()
    assert.equal(1, n)
    assert.matches("boom 5", last, 1, true)
    cb:free()
  end)

  it("returns the configured default, and calls an error handler in the callback's state", function()
    local cb = CallbackFactory("double(*)(int)")(function(x) error({ code = x }) end, {
      default = -2.5,
      on_error = with_testc "T.ljt_flag_set(1, #(...))",
    })
    T.ljt_flag_set(1, 0)
    local err = H.capture_stderr(function() assert.equal(-2.5, cb:funcptr()(1)) end)
    assert.equal("", err)
    assert.is_true(T.ljt_flag_get(1) > 0)
    cb:free()
  end)

  it("reports errors raised on foreign threads without killing the process", function()
    local cb = CallbackFactory("int(*)(int)")(function(x) if x % 2 == 1 then error("odd") end return x end)
    local sums = ffi.new("long long[4]")
    local err = H.capture_stderr(function() T.ljt_call_threads(cb:funcptr(), 4, 100, sums) end)
    assert.equal(200, (cb:errors()))
    local _, count = err:gsub("error in callback", "")
    assert.equal(200, count)
    cb:free()
  end)

  -- 64-bit LuaJIT without GC64 has no lua_newstate with a custom allocator (lib_aux.c).
  if ffi.abi("gc64") or not ffi.abi("64bit") then
    it("treats exhausted memory as an ordinary error", function()
      local cb = CallbackFactory("int(*)(int)")(function(n)
        local t = {}
        for i = 1, n do t[i] = ("x"):rep(100) .. i end
        return #t
      end, { memory_limit = 4 * 1024 * 1024, default = -1 })
      local err = H.capture_stderr(function() assert.equal(-1, cb:funcptr()(10000000)) end)
      assert.matches("not enough memory", err, 1, true)
      assert.equal(100, cb:funcptr()(100))  -- still usable afterwards
      cb:free()
    end)
  else
    it("refuses memory_limit where LuaJIT has no custom allocators (64-bit without GC64)", function()
      assert.has_error(function()
        CallbackFactory("int(*)(int)")(function(n) return n end, { memory_limit = 4 * 1024 * 1024 })
      end, "bad option 'memory_limit': not available on this LuaJIT (64-bit LuaJIT without GC64 has no custom allocators)")
    end)
  end
end)

describe("lifetime", function()
  it("waits in free() for a call in flight on another thread", function()
    local cb = CallbackFactory("int(*)(int)")(with_testc [[
      T.ljt_flag_set(2, 1)                        -- started
      while T.ljt_flag_get(3) == 0 do end         -- until released
      T.ljt_flag_set(4, 1)                        -- finished
      return 77
    ]])
    for i = 2, 4 do T.ljt_flag_set(i, 0) end
    local h = T.ljt_call_later(cb:funcptr(), 0)
    while T.ljt_flag_get(2) == 0 do end
    T.ljt_flag_set_after(3, 100)
    cb:free()
    assert.equal(1, T.ljt_flag_get(4))            -- free returned only after the call ended
    assert.equal(77, T.ljt_call_later_join(h))
  end)

  it("frees itself from inside a call: destruction waits until that call returns", function()
    local before = CallbackFactory.live()
    local cb = CallbackFactory("int(*)(double)")(function(addr)
      local ffi = require "ffi"
      require "lj-async.callback"  -- declares the core's callback functions here
      local C = require("lj-async.core").C
      C.ljasync_callback_free(ffi.cast("ljasync_callback *", addr))
      return tonumber(C.ljasync_callback_live())  -- still alive: this call is running in it
    end, { default = -1 })
    assert.equal(before + 1, CallbackFactory.live())
    local fp = cb:funcptr()
    assert.equal(before + 1, fp(tonumber(ffi.cast("intptr_t", cb._h))))
    assert.equal(before, CallbackFactory.live())  -- destroyed once the call returned
    local err = H.capture_stderr(function() assert.equal(-1, fp(0)) end)
    assert.matches("called after free()", err, 1, true)
    cb:free()                                     -- the owner's free is then a no-op
    assert.equal(before, CallbackFactory.live())
  end)

  it("survives a call after free(): reports it and returns the default", function()
    local cb = CallbackFactory("int(*)(int)")(function(x) return x end, { default = 9 })
    local fp = cb:funcptr()
    assert.equal(3, fp(3))
    cb:free()
    local err = H.capture_stderr(function() assert.equal(9, fp(3)) end)
    assert.matches("called after free()", err, 1, true)
  end)

  it("creates and frees many callbacks without leaking", function()
    collectgarbage(); collectgarbage()
    local before = CallbackFactory.live()
    for i = 1, 300 do
      local cb = CallbackFactory("int(*)(int)")(function(x) return x + 1 end)
      assert.equal(i + 1, cb:funcptr()(i))
      if i % 2 == 0 then cb:free() end
    end
    collectgarbage(); collectgarbage()
    assert.equal(before, CallbackFactory.live())
  end)
end)

describe("inside a callback's state", function()
  it("has the standard library, ffi, and the creator's package paths", function()
    local cb = CallbackFactory("int(*)(const char *, const char *)")(function(path, cpath)
      local ffi = require "ffi"
      assert(package.path == ffi.string(path) and package.cpath == ffi.string(cpath))
      assert(string.format and table.concat and math.floor and io.open and os.time and coroutine.wrap and jit)
      local cf = require "lj-async.callback"   -- the library works in there too
      local inner = cf("int(*)(int)")(function(x) return x * 2 end)
      local r = inner:funcptr()(21)
      inner:free()
      return r
    end)
    assert.equal(42, cb:funcptr()(package.path, package.cpath))
    cb:free()
  end)

  it("compiles a long callback whose trace needs more machine code than the first one-page area", function()
    -- The state's first machine-code area is one page; a first trace too long for it must
    -- still compile (in an area of LuaJIT's default size), not abort for good.
    local lines = { [[return function(x)
      if x < 0 then
        local big = 0
        for t = 1, 100 do local m = require("jit.util").tracemc(t); if m and #m > big then big = #m end end
        return big
      end
      local a, b, c = x, x * 2, x * 3]] }
    for i = 1, 100 do
      lines[#lines + 1] = ("a = (a * %d + b) %% 1000003; b = (b + c * %d) %% 999983; c = (a + b + %d) + (a - b) / (c + 1)")
        :format(i, i + 1, i)
    end
    lines[#lines + 1] = "return (a + b + c) % 1000 end"
    local cb = CallbackFactory("int(*)(int)")(string.dump(loadstring(table.concat(lines, "\n"))()))
    for _ = 1, 20 do T.ljt_loop_ns(cb:funcptr(), 1000) end
    local biggest = cb:funcptr()(-1)
    assert(biggest > 4096, ("the longest trace has %d bytes of machine code (not compiled?)"):format(biggest))
    assert.equal(0, (cb:errors()))
    cb:free()
  end)

  it("runs code registered with add_init in every new state", function()
    CallbackFactory.add_init("ljt_init_value = 1234", "=spec init")
    local cb = CallbackFactory("int(*)(void)")("return ljt_init_value or -1")
    assert.equal(1234, cb:funcptr()())
    cb:free()
    local path = os.tmpname()
    local f = io.open(path, "w"); f:write("ljt_init_file = 99"); f:close()
    CallbackFactory.add_init_file(path)
    os.remove(path)
    local cb2 = CallbackFactory("int(*)(void)")("return ljt_init_file or -1")
    assert.equal(99, cb2:funcptr()())
    cb2:free()
  end)

  it("runs init functions with upvalues, copied by value, and refuses what cannot move", function()
    local value, ffi_up = { 77 }, ffi
    finally(function() CallbackFactory.add_init("", "=spec upvalue init") end)  -- replaced by name
    CallbackFactory.add_init(function()
      ljt_init_upvalue = value[1] + (ffi_up == require("ffi") and 1 or 0)
    end, "=spec upvalue init")
    value[1] = 0  -- copied at registration
    local cb = CallbackFactory("int(*)(void)")("return ljt_init_upvalue or -1")
    assert.equal(78, cb:funcptr()())
    cb:free()
    local co = coroutine.create(function() end)
    assert.has_error(function() CallbackFactory.add_init(function() return co end, "=spec bad init") end,
      "bad init code: upvalue 'co': cannot move a coroutine")
  end)
end)
