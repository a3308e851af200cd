-- lj-async.encoder: every kind of value there and back, refusals with their paths, handles and
-- their references, malformed input, other Lua states, and the JIT on the hot path.
local ffi = require "ffi"
local buffer = require "string.buffer"
local H = require "spec.helpers"
local encoder = require "lj-async.encoder"
local core = require "lj-async.core"
local TestObject = require "spec.support.testobject"
local CallbackFactory = require "lj-async.callback"

local C = core.C
local encode, decode = encoder.encode, encoder.decode

ffi.cdef [[
struct enc_point { int32_t x, y; };
struct enc_rect { struct enc_point min, max; const char *label; };
union enc_bits { double d; uint64_t u; };
enum enc_color { ENC_RED = 1, ENC_GREEN = 2 };
struct enc_vls { int32_t n; int32_t items[?]; };
typedef struct { double re, im; } enc_anon_t;
typedef struct { int32_t a; } enc_named_t;
struct enc_only_here { int32_t v; };
typedef int (*enc_handler_t)(int, double);
size_t strlen(const char *s);
]]

local function pack(...) return { n = select("#", ...), ... } end
local function roundtrip(...) return decode(encode(...)) end

-- Structural equality that also requires the same sharing: each table (or cdata object) of `a`
-- corresponds to exactly one of `b`. Functions are compared by calling them in the tests.
local function same(a, b, map, rev)
  map, rev = map or {}, rev or {}
  local ta = type(a)
  if ta ~= type(b) then return false end
  if ta == "number" then
    if a ~= a then return b ~= b end
    return a == b and 1 / a == 1 / b
  end
  if ta == "table" then
    if map[a] ~= nil or rev[b] ~= nil then return map[a] == b and rev[b] == a end
    map[a], rev[b] = b, a
    if debug.getmetatable(a) ~= debug.getmetatable(b) then return false end
    local n = 0
    for k, v in pairs(a) do
      n = n + 1
      local kb = k
      if type(k) == "table" then  -- find the key of b that corresponds
        kb = map[k]
        if kb == nil then
          for k2 in pairs(b) do
            if type(k2) == "table" and rev[k2] == nil and same(k, k2, map, rev) then kb = k2; break end
          end
        end
      end
      if kb == nil or not same(v, rawget(b, kb), map, rev) then return false end
    end
    for _ in pairs(b) do n = n - 1 end
    return n == 0
  end
  if ta == "cdata" then
    local name = tostring(ffi.typeof(a))
    if name ~= tostring(ffi.typeof(b)) then return false end
    if name:match("%*>$") then return a == b end  -- pointers: the same address
    local kind = bit.rshift(ffi.typeinfo(tonumber(ffi.typeof(a))).info, 28)
    if (kind == 1 or kind == 3) and not name:match("complex") then  -- structs and arrays: bytes
      local size = ffi.sizeof(a)
      return size == ffi.sizeof(b) and ffi.string(a, size) == ffi.string(b, size)
    end
    -- Scalars: the bytes of their value. (Not ffi.typeof("$[1]", ...): busted's ffi.typeof
    -- caches by its first argument and would return the first such type every time.)
    local ba, bb = ffi.new(name:sub(7, -2) .. "[1]", a), ffi.new(name:sub(7, -2) .. "[1]", b)
    local size = ffi.sizeof(ba)
    return size == ffi.sizeof(bb) and ffi.string(ba, size) == ffi.string(bb, size)
  end
  if ta == "function" then return true end
  return a == b
end

local function refused(msg, ...)
  local ok, err = pcall(encode, ...)
  assert.is_false(ok)
  assert.equal(msg, err)
  local s, err2 = encoder.try_encode(...)
  assert.is_nil(s)
  assert.equal(msg, err2)
end

describe("lj-async.encoder", function()
  describe("plain values", function()
    it("keeps the count and every nil of an argument list", function()
      assert.equal(0, select("#", roundtrip()))
      assert.same(pack(nil), pack(roundtrip(nil)))
      assert.same(pack(nil, nil, nil), pack(roundtrip(nil, nil, nil)))
      assert.same(pack(1, nil, "x", nil), pack(roundtrip(1, nil, "x", nil)))
      assert.same(pack(nil, nil, nil, 4, nil), pack(roundtrip(nil, nil, nil, 4, nil)))
      local many = {}
      for i = 1, 300, 3 do many[i] = i end
      local back = pack(roundtrip(unpack(many, 1, 300)))
      assert.equal(300, back.n)
      for i = 1, 300 do assert.equal(many[i], back[i]) end
    end)

    it("keeps numbers exactly: -0, NaN, infinities, integers and fractions", function()
      local values = { 0, -0.0, 1 / 0, -1 / 0, 0 / 0, 1, -1, 2 ^ 53, 2 ^ 53 + 2, -2 ^ 63, 2 ^ 1023 * 1.5,
                       0.1, 1 / 3, 4.9406564584124654e-324, 2.2250738585072014e-308, 123456789012 }
      for _, v in ipairs(values) do
        local back = roundtrip(v)
        assert.is_true(same(v, back), tostring(v))
        local t = roundtrip({ v, [1.5] = v })
        assert.is_true(same(v, t[1]) and same(v, t[1.5]), tostring(v))
      end
      assert.equal(-math.huge, 1 / roundtrip(-0.0))
    end)

    it("keeps booleans and binary strings", function()
      local bytes = {}
      for i = 0, 255 do bytes[#bytes + 1] = string.char(i) end
      local all = table.concat(bytes)
      local big = string.rep(all, 4096)
      assert.same(pack(true, false, "", all, "a\0b"), pack(roundtrip(true, false, "", all, "a\0b")))
      assert.equal(big, roundtrip(big))
      assert.equal(big, roundtrip({ big }, 1)[1])
    end)

    it("copies nested tables with every kind of key, holes included", function()
      local t = { 1, 2, nil, 4, [10] = 10, [-1] = "neg", [0] = "zero", [1.5] = "half", [true] = "t",
                  [false] = { f = false }, s = "s", ["a key"] = { deep = { deeper = { "x" } } },
                  [{ "table key" }] = "tk", [1e300] = "big" }
      local back = roundtrip(t)
      assert.is_true(same(t, back))
      assert.is_nil(back[3])
      assert.are_not.equal(t, back)
    end)

    it("copies big plain data (the core's scan) and 64-bit integers and complex numbers in it", function()
      local t = {}
      for i = 1, 5000 do
        t[i] = { id = i, name = "n" .. i, pos = { i, -i }, big = ffi.new("int64_t", -i) * 1000000007,
                 u = ffi.new("uint64_t", i) * 0x100000000, z = ffi.new("complex", i, -i) }
      end
      local s = encode(t)
      assert.equal(0x01, s:byte(1))  -- the plain format: string.buffer did the work
      local back = decode(s)
      assert.is_true(same(t, back))
      assert.equal("int64_t", tostring(ffi.typeof(back[7].big)):match("<(.-)>"))
      assert.equal("uint64_t", tostring(ffi.typeof(back[7].u)):match("<(.-)>"))
    end)

    it("finds what is not plain anywhere in a long array of numbers (the core's scan reads eight at a time)", function()
      local kinds = { -0.0, 0 / 0, math.huge, -math.huge, -1.5, 2 ^ 53, -2 ^ 1023, 5e-324, 7 }
      local t = {}
      for i = 1, 40 do t[i] = kinds[i % #kinds + 1] end
      local s = encode(t)
      assert.equal(0x01, s:byte(1))  -- every kind of number is plain
      assert.is_true(same(t, decode(s)))
      for m = 1, 40 do
        local u = { unpack(t, 1, 40) }
        u[m] = ffi.new("int32_t[1]", m)  -- a cdata that string.buffer cannot encode
        local su = encode(u)
        assert.equal(0x02, su:byte(1), "slot " .. m)  -- the general format
        local back = decode(su)
        assert.equal(m, back[m][0])
        u[m] = nil
        back[m] = nil
        assert.is_true(same(u, back), "slot " .. m)
      end
    end)

    it("uses string.buffer's encoding for plain data", function()
      local t = { 1, "two", { three = 3 } }
      local one, two = encode(t), encode(1, t)
      assert.equal("\1\1", one:sub(1, 2))
      assert.equal(buffer.encode(t), one:sub(3, -5))   -- between tag and count, and checksum
      assert.equal("\1\2", two:sub(1, 2))
      assert.equal(buffer.encode(1) .. buffer.encode(t), two:sub(3, -5))
    end)

    it("keeps extreme 64-bit integers", function()
      local lo, hi = ffi.new("int64_t", 1) * -0x7fffffff * 0x100000000 - 0x100000000, ffi.new("uint64_t", 0) - 1
      local a, b = roundtrip(lo, hi)
      assert.is_true(a == lo and b == hi)
      assert.equal("18446744073709551615ULL", tostring(b))
    end)
  end)

  describe("references", function()
    it("preserves cycles", function()
      local a, b = {}, {}
      a.b, b.a, a.self = b, a, a
      local back = roundtrip(a)
      assert.equal(back, back.self)
      assert.equal(back, back.b.a)
      assert.are_not.equal(a, back)
    end)

    it("preserves shared subtables, within a value and across arguments", function()
      local shared = { "s" }
      local t = { shared, shared, x = { y = shared } }
      local back = roundtrip(t)
      assert.equal(back[1], back[2])
      assert.equal(back[1], back.x.y)
      local p, q = roundtrip(shared, { shared })
      assert.equal(p, q[1])
      local k = { "key" }
      local back2 = roundtrip({ [k] = k })
      local key, value = next(back2)
      assert.equal(key, value)
    end)

    it("preserves shared references in big data too", function()
      local shared = { 1 }
      local t = {}
      for i = 1, 2000 do t[i] = { i, i % 500 == 0 and shared or { i } } end
      local back = roundtrip(t)
      assert.equal(back[500][2], back[1000][2])
      assert.is_true(same(t, back))
    end)

    it("copies nesting deeper than string.buffer's limit", function()
      for _, depth in ipairs { 99, 100, 101, 2000 } do
        local root = {}
        local c = root
        for i = 2, depth do c.next = { i = i }; c = c.next end
        local back, n = roundtrip(root), 1
        while back.next do back, n = back.next, n + 1 end
        assert.equal(depth, n)
      end
    end)
  end)

  describe("functions", function()
    it("copies functions with upvalues by value", function()
      local count, cfg = 10, { step = 5 }
      local function bump() count = count + cfg.step; return count end
      local copy = roundtrip(bump)
      assert.equal(15, copy())
      assert.equal(20, copy())
      assert.equal(10, count)           -- the original's upvalue did not move
      cfg.step = 100
      assert.equal(25, copy())          -- the copy has its own cfg
    end)

    it("keeps recursion, upvalues shared between closures, and the same function twice", function()
      local function fact(n) return n <= 1 and 1 or n * fact(n - 1) end
      assert.equal(120, roundtrip(fact)(5))
      local n = 0
      local function inc() n = n + 1; return n end
      local function get() return n end
      local t = roundtrip({ inc = inc, get = get, again = inc })
      t.inc(); t.inc()
      assert.equal(2, t.get())           -- one upvalue cell, as in the original
      assert.equal(t.inc, t.again)
      assert.equal(0, n)
    end)

    it("rebinds upvalues that are loaded modules or their C functions", function()
      local ffi_ = require "ffi"
      local insert, fmt = table.insert, string.format
      local function f(t)
        insert(t, fmt("%d", ffi_.sizeof("int32_t")))
        return t
      end
      assert.same({ "4" }, roundtrip(f)({}))
    end)

    it("refuses upvalues that cannot move, naming them", function()
      local co = coroutine.create(function() end)
      local function handler() return co end
      refused("argument 1.handler (upvalue 'co'): cannot move a coroutine", { handler = handler })
      local stdout = io.stdout
      local function w() return stdout end
      refused("argument 2 (upvalue 'stdout'): cannot move a userdata", 1, w)
    end)
  end)

  describe("cdata", function()
    it("copies pointers as addresses of the same ctype", function()
      local buf = ffi.new("int32_t[4]", 1, 2, 3, 4)
      local p = ffi.cast("int32_t *", buf)
      local q, null, v = roundtrip(p, ffi.cast("struct enc_point *", nil), ffi.cast("void *", buf))
      assert.is_true(ffi.istype("int32_t *", q))
      assert.is_true(q == p)
      assert.equal(3, q[2])
      assert.is_true(null == nil)
      assert.equal("ctype<struct enc_point *>", tostring(ffi.typeof(null)))
      assert.is_true(v == ffi.cast("void *", buf))
    end)

    it("copies structs, unions, arrays, enums and scalars by value", function()
      local rect = ffi.new("struct enc_rect", { { 1, 2 }, { 3, 4 }, nil })
      local bits = ffi.new("union enc_bits", { d = 1.5 })
      local arr = ffi.new("double[3]", 1.5, 2.5, 3.5)
      local vla = ffi.new("int16_t[?]", 5, { 1, 2, 3, 4, 5 })
      local vls = ffi.new("struct enc_vls", 3, { 3, { 7, 8, 9 } })
      local color = ffi.new("enum enc_color", "ENC_GREEN")
      local values = { rect, bits, arr, vla, vls, color, ffi.new("bool", true), ffi.new("int8_t", -3),
                       ffi.new("float", 0.5), ffi.new("complex float", 1, 2), ffi.new("struct enc_point[2][2]") }
      local back = roundtrip(values)
      assert.is_true(same(values, back))
      assert.equal(4, back[1].max.y)
      assert.equal(1.5, back[2].d)
      assert.equal(10, ffi.sizeof(back[4]))
      assert.equal(9, back[5].items[2])
      rect.min.x = 99
      assert.equal(1, back[1].min.x)   -- a copy
    end)

    it("keeps one copy of a struct referenced twice", function()
      local pt = ffi.new("struct enc_point", 1, 2)
      local back = roundtrip({ pt, pt })
      assert.equal(back[1], back[2])
    end)

    it("names typedefs of anonymous structs registered with register_ctype", function()
      refused("argument 1: cannot move a cdata of anonymous type 'struct "
        .. tonumber(ffi.typeof("enc_anon_t")) .. "' (give it a tag, or name its typedef with encoder.register_ctype)",
        ffi.new("enc_anon_t", 1, 2))
      encoder.register_ctype("enc_named_t")
      local v = roundtrip(ffi.new("enc_named_t", 7), ffi.cast("enc_named_t *", nil))
      assert.equal(7, v.a)
    end)

    it("refuses function pointers unless their typedef is registered", function()
      local fp = ffi.cast("enc_handler_t", nil)
      refused("argument 1: cannot move a cdata of type 'int (*)()': its name loses the parameter types "
        .. "(register the type's spelling with encoder.register_ctype)", fp)
      encoder.register_ctype("enc_handler_t")
      local back = roundtrip(fp)
      assert.is_true(ffi.istype("enc_handler_t", back))
    end)

    it("refuses C functions and references", function()
      refused("argument 1: cannot move a C function", ffi.C.strlen)
    end)
  end)

  describe("portable metatables", function()
    local Point = { __index = { norm2 = function(p) return p.x * p.x + p.y * p.y end } }

    it("keeps metatables registered under the same name", function()
      encoder.register_portable_metatable("spec.Point", Point)
      local p = setmetatable({ x = 3, y = 4 }, Point)
      local back = roundtrip({ p, p })
      assert.equal(Point, getmetatable(back[1]))
      assert.equal(25, back[1]:norm2())
      assert.equal(back[1], back[2])
    end)

    it("refuses an unregistered metatable, naming the path", function()
      refused("argument 1.list[2]: cannot move a table with a metatable that is not registered "
        .. "(use encoder.register_portable_metatable)", { list = { 1, setmetatable({}, {}) } })
    end)
  end)

  describe("refused values", function()
    it("names the path of what cannot move", function()
      local co = coroutine.create(function() end)
      refused("argument 2.config.cb: cannot move a coroutine", 1, { config = { cb = co } })
      refused("argument 1: cannot move a C function", print)
      refused("argument 1: cannot move a userdata", io.stdout)
      refused("argument 3[2]: cannot move a coroutine", nil, nil, { 1, co })
      refused('argument 1["a key"]: cannot move a coroutine', { ["a key"] = co })
      refused("argument 1 (a key): cannot move a coroutine", { [co] = 1 })
      local wrapped = coroutine.wrap(function() end)   -- a C function found in no module
      local function f() return wrapped end
      refused("argument 1.f (upvalue 'wrapped'): cannot move a C function", { f = f })
    end)

    it("raises at the caller's level", function()
      local ok, err = pcall(function() encode(coroutine.create(print)) end)
      assert.is_false(ok)
      assert.matches("encoder_spec%.lua:%d+: argument 1: cannot move a coroutine", err)
    end)
  end)

  describe("handles", function()
    it("lets the encoded message own a reference, released when the message is freed", function()
      collectgarbage(); collectgarbage()
      local live = TestObject.live()
      local h = TestObject.new(42)
      local msg = encoder.encode_message({ h, h, one = h })
      TestObject.close(h)
      assert.equal(live + 1, TestObject.live())   -- kept alive by the message alone
      local back = encoder.decode_message(msg)
      assert.equal(42, TestObject.value(back[1]))
      assert.equal(back[1], back[2])
      assert.equal(back[1], back.one)
      C.ljasync_message_free(msg)
      assert.equal(live + 1, TestObject.live())   -- kept alive by the decoded handle
      back = nil
      collectgarbage(); collectgarbage()
      assert.equal(live, TestObject.live())
    end)

    it("writes one handle table entry per object and frees undecoded messages without leaks", function()
      local live = TestObject.live()
      local a, b = TestObject.new(1), TestObject.new(2)
      local s = encode(a, { a, b })
      assert.equal(0x82, s:byte(1))   -- general format, with a handle table
      assert.equal(2, s:byte(2) + 256 * s:byte(3))
      C.ljasync_message_free(C.ljasync_message_new(s, #s))  -- what a string with handles is for
      for _ = 1, 3 do C.ljasync_message_free(encoder.encode_message(a, b)) end
      TestObject.close(a); TestObject.close(b)
      assert.equal(live, TestObject.live())
    end)

    it("refuses a closed handle", function()
      local h = TestObject.new(1)
      TestObject.close(h)
      refused("argument 1.h: cannot move a closed testobject", { h = h })
    end)
  end)

  describe("malformed input", function()
    local function samples()
      local cyc = { 1 }
      cyc.self = cyc
      local up = { 1, 2 }
      local pt = ffi.new("struct enc_point", 5, 6)
      local mt = {}
      encoder.register_portable_metatable("spec.Fuzz", mt)
      return {
        encode(1, "two", { 3, { four = 4 } }, nil),
        encode(cyc, function(x) return x + up[1] end, pt, ffi.cast("int32_t *", nil), ffi.new("int64_t", 5)),
        encode(setmetatable({ x = 1 }, mt), ffi.new("int16_t[?]", 3), "tail"),
      }
    end

    it("refuses what is not an encoding", function()
      for _, s in ipairs { "", "\1", "\0\0\0", "\9\1\0", "\1\1", "\1\2\0", "\2", "\130\255\255\255\255" } do
        local ok = pcall(decode, s)
        assert.is_false(ok, ("%q"):format(s))
      end
      assert.has_error(function() decode(42) end, "bad encoded data: expected a string, got number")
      local ok, err = pcall(decode, encode(1) .. "x")
      assert.is_false(ok)
      assert.matches("malformed encoded data", err)
    end)

    it("refuses every truncation", function()
      for _, s in ipairs(samples()) do
        for len = 0, #s - 1 do
          local ok, err = pcall(decode, s:sub(1, len))
          assert.is_false(ok, ("length %d of %d"):format(len, #s))
          assert.matches("malformed encoded data", err)
        end
      end
    end)

    it("refuses random corruption", function()
      math.randomseed(12345)
      for _, s in ipairs(samples()) do
        for _ = 1, 400 do
          local bytes = { s:byte(1, -1) }
          for _ = 1, math.random(1, 3) do
            local i = math.random(1, #bytes)
            bytes[i] = bit.bxor(bytes[i], math.random(1, 255))
          end
          local bad = string.char(unpack(bytes))
          local ok, err = pcall(decode, bad)
          if bad ~= s then
            assert.is_false(ok)
            assert.matches("malformed encoded data", err)
          end
        end
      end
    end)

    it("checks the handle table of native messages too", function()
      local h = TestObject.new(7)
      local msg = encoder.encode_message(h)
      TestObject.close(h)
      local len = ffi.new("size_t[1]")
      local p = C.ljasync_message_data(msg, len)
      local n = tonumber(len[0])
      local copy = ffi.new("uint8_t[?]", n)
      for i = 5, 12 do  -- each byte of the address
        ffi.copy(copy, p, n)
        copy[i] = bit.bxor(copy[i], 0x10)
        local ok, err = pcall(encoder.decode_ptr, copy, n)
        assert.is_false(ok)
        assert.matches("checksum mismatch", err)
      end
      local back = encoder.decode_ptr(p, n)
      assert.equal(7, TestObject.value(back))
      C.ljasync_message_free(msg)
    end)
  end)

  describe("across Lua states", function()
    -- A callback runs in a Lua state of its own. It takes a native message (as a channel
    -- would pass it) holding a function and its arguments, frees it, calls the function
    -- there, and returns a new message with true and the results, or false and the error.
    local cb, fp

    setup(function()
      CallbackFactory.add_init(function()
        local E = require "lj-async.encoder"
        local mt = { __index = { sum = function(p) return p.x + p.y end } }
        E.register_portable_metatable("spec.Shared", mt)
        _G.spec_shared_mt = mt
      end, "=encoder_spec init")
      cb = CallbackFactory("intptr_t(*)(intptr_t)")(function(address)
        local ffi = require "ffi"
        local E = require "lj-async.encoder"
        local C = require("lj-async.core").C
        local function pack(...) return { n = select("#", ...), ... } end
        local msg = ffi.cast("ljasync_message *", address)
        local ok, args = pcall(function() return pack(E.decode_message(msg)) end)
        C.ljasync_message_free(msg)
        local res
        if ok then
          res = pack(pcall(args[1], unpack(args, 2, args.n)))
        else
          res = pack(false, args)
        end
        local reply, err = E.try_encode_message(unpack(res, 1, res.n))
        if not reply then reply = E.encode_message(false, err) end
        return tonumber(ffi.cast("intptr_t", reply))
      end)
      fp = cb:funcptr()
    end)

    teardown(function() cb:free() end)

    local function remote_results(ok, ...)
      if not ok then error(..., 0) end
      return ...
    end

    local function remote(f, ...)
      local msg = encoder.encode_message(f, ...)
      local reply = ffi.cast("ljasync_message *", fp(tonumber(ffi.cast("intptr_t", msg))))
      local function finish(...)
        C.ljasync_message_free(reply)
        return remote_results(...)
      end
      return finish(encoder.decode_message(reply))
    end

    it("runs a function there, with its upvalues and arguments, and brings the results back", function()
      _G.encoder_spec_marker = "main state"
      local k = 10
      local n, marker, a, b, c = remote(function(...)
        return select("#", ...), _G.encoder_spec_marker, ...
      end, k, nil, "x")
      assert.equal(3, n)
      assert.is_nil(marker)         -- another state: not our globals
      assert.same({ 10, nil, "x" }, { a, b, c })
      assert.equal(15, remote(function(x) return x + k end, 5))
      _G.encoder_spec_marker = nil
    end)

    it("brings every kind of value there and back equal", function()
      local shared = { "shared" }
      local cyc = { shared, shared }
      cyc.self = cyc
      local big = {}
      for i = 1, 3000 do big[i] = { i, "s" .. i, { f = i / 2 } } end
      local buf = ffi.new("int32_t[2]")
      local v = { cyc, big, -0.0, 0 / 0, 1 / 0, "bin\0ary", ffi.new("int64_t", -5), ffi.new("uint64_t", 5),
                  ffi.new("complex", 1, -1), ffi.cast("int32_t *", buf), true, false,
                  ffi.new("int32_t[3]", 1, 2, 3), ffi.new("int64_t[2]", 1, 2) }
      local back = remote(function(t) return t end, v)
      assert.is_true(same(v, back))
      assert.equal(back[1], back[1].self)
      assert.equal(back[1][1], back[1][2])
      assert.is_true(remote(function(t) return t.self == t and t[1] == t[2] end, cyc))
      assert.equal(3000 * 3001 / 2, remote(function(t)
        local s = 0
        for i = 1, #t do s = s + t[i][1] end
        return s
      end, big))
    end)

    it("keeps a metatable registered in both states", function()
      local mt = { __index = { sum = function(p) return p.x + p.y end } }
      encoder.register_portable_metatable("spec.Shared", mt)
      local p = setmetatable({ x = 2, y = 3 }, mt)
      local sum, same_mt = remote(function(q) return q:sum(), getmetatable(q) == _G.spec_shared_mt end, p)
      assert.equal(5, sum)
      assert.is_true(same_mt)
      assert.equal(mt, getmetatable(remote(function(q) return q end, p)))
    end)

    it("refuses, at decode, a ctype or metatable the other state does not know", function()
      local ok, err = pcall(remote, function(s) return s end, ffi.new("struct enc_only_here", 1))
      assert.is_false(ok)
      assert.matches("ctype 'struct enc_only_here' is not declared in this state", err)
      local mt = {}
      encoder.register_portable_metatable("spec.OnlyHere", mt)
      ok, err = pcall(remote, function(t) return t end, setmetatable({}, mt))
      assert.is_false(ok)
      assert.matches("metatable 'spec.OnlyHere' is not registered in this state", err)
      ok, err = pcall(remote, function() return coroutine.create(print) end)
      assert.is_false(ok)
      assert.matches("argument 2: cannot move a coroutine", err)
    end)

    it("moves handles there (loading their module) and keeps the object alive while held", function()
      collectgarbage(); collectgarbage()
      local live = TestObject.live()
      local h = TestObject.new(99)
      -- The other state has not loaded spec.support.testobject: decoding the handle loads it.
      local loaded_before = remote(function() return package.loaded["spec.support.testobject"] ~= nil end)
      local value = remote(function(x)
        _G.held = x
        return require("spec.support.testobject").value(x)
      end, h)
      assert.is_false(loaded_before)
      assert.equal(99, value)
      TestObject.close(h)
      assert.equal(live + 1, TestObject.live())   -- held by the other state only
      remote(function() _G.held = nil; collectgarbage(); collectgarbage() end)
      assert.equal(live, TestObject.live())
      -- A handle sent there and returned comes back as a handle of this state.
      local h2 = TestObject.new(5)
      local back = remote(function(x) return x end, h2)
      TestObject.close(h2)
      assert.equal(5, TestObject.value(back))
      remote(function() collectgarbage(); collectgarbage() end)
      assert.equal(live + 1, TestObject.live())   -- `back` holds it
      back = nil
      collectgarbage(); collectgarbage()
      assert.equal(live, TestObject.live())
    end)
  end)

  describe("the JIT", function()
    local jutil = require "jit.util"

    -- Runs run(n) with trace events recorded: whether a loop trace started in `run` (so the
    -- encoder calls inside it are compiled, not aborted), and the aborts seen meanwhile.
    -- Traces of earlier tests are flushed first: a loop must compile from a clean start.
    local function traced(run, n)
      jit.flush()
      local started, looped, aborts = {}, false, {}
      local function on_trace(what, tr, func, pc, otr, oex)
        if what == "start" then
          started[tr] = func
        elseif what == "stop" and started[tr] == run and jutil.traceinfo(tr).linktype == "loop" then
          looped = true
        elseif what == "abort" then
          local why = require("jit.vmdef").traceerr[otr] or tostring(otr)
          if type(oex) == "number" and why:find("%d", 1, true) then why = why:format(oex) end
          aborts[#aborts + 1] = ("%s: %s"):format(jutil.funcinfo(func, pc).loc, why)
        end
      end
      jit.attach(on_trace, "trace")
      local ok, res = pcall(run, n)
      jit.attach(on_trace)
      assert(ok, res)
      return looped, aborts, res
    end

    -- run(n) returns `expected` and compiles to a looping trace (the aborts say why not).
    local function assert_loops(run, n, expected)
      local looped, aborts, res = traced(run, n)
      assert.equal(expected, res)
      assert.is_true(looped, table.concat(aborts, "\n"))
    end

    it("compiles a loop moving small tables through the encoder", function()
      assert_loops(function(n)
        local s = 0
        for i = 1, n do
          local t = decode(encode({ i, i + 1, "x", { k = i } }))
          s = s + t[4].k
        end
        return s
      end, 50000, 50000 * 50001 / 2)
    end)

    it("compiles a loop moving numbers and argument lists", function()
      assert_loops(function(n)
        local s = 0
        for i = 1, n do
          local a, _, c = decode(encode(i, nil, "s"))
          s = s + a + #c
        end
        return s
      end, 50000, 50000 * 50001 / 2 + 50000)
    end)

    it("keeps decoded numbers intact across later decodes on a trace", function()
      -- LuaJIT before 2022-07 could read a number that buffer:decode() returned only where it
      -- was used, after later decodes had overwritten the decoder's scratch slot.
      assert_loops(function(n)
        local s = 0
        for i = 1, n do
          local a = decode(encode(i))
          local _, c = decode(encode(nil, "s"))
          local x, y, z = decode(encode(i, -0.0, 0.5))
          if 1 / y > 0 then error("lost the sign of -0") end
          s = s + a + #c + (x - i) + z
        end
        return s
      end, 50000, 50000 * 50001 / 2 + 50000 + 25000)
    end)

    it("compiles a loop of small strings after many encodings and off-trace decodings from interpreted code", function()
      -- A string whose tables have two keys or more is decoded off the trace. Called many times
      -- from interpreted code, the encoder's functions get hot and root traces start at their
      -- entries; those that abort (in the off-trace decoder, or returning through a pcall)
      -- blacklist their function, which then aborts every trace that calls it. Small plain
      -- values must not depend on such functions.
      local keyed = { a = 1, b = 2, c = { d = 3, e = 4 } }
      local function interpreted(n)
        for _ = 1, n do assert(decode(encode(keyed)).c.e == 4) end
      end
      jit.off(interpreted)
      interpreted(100000)
      assert_loops(function(n)
        local s = 0
        for i = 1, n do s = s + decode(encode({ i, "x" }))[1] end
        return s
      end, 50000, 50000 * 50001 / 2)
    end)

    it("compiles a loop through native messages", function()
      assert_loops(function(n)
        local s = 0
        for i = 1, n do
          local m = encoder.encode_message({ i, "x" })
          s = s + encoder.decode_message(m)[1]
          C.ljasync_message_free(m)
        end
        return s
      end, 50000, 50000 * 50001 / 2)
    end)
  end)

  describe("bytes from elsewhere", function()
    local native = require "lj-async.encoder.native"
    local sb = buffer.encode

    -- body (tag and payload) with the checksum the encoder would write, so the checksum hides nothing.
    local function signed(body)
      local p = ffi.cast("const uint8_t *", body)
      local sum = tonumber(native.checksum(p + 1, #body - 1, native.CHECKSUM_SEED))
      return body .. string.char(bit.band(sum, 0xff), bit.band(bit.rshift(sum, 8), 0xff),
                                 bit.band(bit.rshift(sum, 16), 0xff), bit.rshift(sum, 24))
    end
    local function resigned(s, from, to)  -- s with one occurrence of `from` replaced, signed again
      local i, j = s:find(from, 1, true)
      assert(i and not s:find(from, j + 1, true), "expected one occurrence")
      return signed(s:sub(1, i - 1) .. to .. s:sub(j + 1, -5))
    end
    local function refused_bytes(msg, s)
      local ok, err = pcall(decode, s)
      assert.is_false(ok)
      assert.matches(msg, err, 1, true)
    end

    it("never reads a handle table from a string (a forged one names any address)", function()
      local forged = signed("\130\1\0\0\0" .. "\0\0\0\222\173\190\0\0" .. sb(1) .. "\30" .. sb(1) .. sb("testobject")
                            .. sb("spec.support.testobject"))
      refused_bytes("a handle table in bytes from elsewhere (handles cross in native messages only)", forged)
      local h = TestObject.new(3)
      refused_bytes("a handle table in bytes from elsewhere", encode(h))   -- even one this process made
      local msg = encoder.encode_message(h)
      assert.equal(3, TestObject.value(encoder.decode_message(msg)))      -- messages carry them
      C.ljasync_message_free(msg)
      TestObject.close(h)
    end)

    it("loads only bytecode this process encoded", function()
      local k = 41
      local s = encode(function() return k + 1 end)
      assert.equal(42, decode(s)())
      local code = string.dump(function() return k + 1 end)
      -- The same function, its constant changed (41 + 1 -> a forged body), re-signed: refused.
      local i = s:find("\27LJ", 1, true)
      local forged = signed(s:sub(1, i + 19) .. string.char(bit.bxor(s:byte(i + 20), 1)) .. s:sub(i + 21, -5))
      refused_bytes("function bytecode was not encoded by this process", forged)
      -- Bytecode marked by another process (any other mark): refused.
      local body = "\2" .. sb(1) .. "\24" .. sb(code) .. sb(ffi.new("uint64_t", 12345)) .. sb(1) .. "\19" .. sb(41)
      refused_bytes("function bytecode was not encoded by this process", signed(body))
    end)

    it("loads no module a string names", function()
      local bitmod = bit
      local s = encode(function(x) return bitmod.band(x, 1) end)
      assert.equal(1, decode(s)(3))
      local forged = resigned(s, sb("bit"), sb("spec.support.nothere"))
      refused_bytes("module 'spec.support.nothere' is not loaded in this state (bytes from elsewhere load no modules)", forged)
      assert.is_nil(package.loaded["spec.support.nothere"])
    end)

    it("refuses a table that claims more entries than there are bytes, before allocating", function()
      -- string.buffer table tags: 0x0a has an array size (here 2^31 - 1, a 16 GiB table).
      refused_bytes("malformed encoded data: table size exceeds the data", signed("\1\1\10\255\255\255\255\127\0"))
      refused_bytes("malformed encoded data: table size exceeds the data",
                    signed("\2" .. sb(1) .. "\20" .. sb(2 ^ 40) .. "\22"))
    end)

    it("builds no cdata of a ctype that does not cross by value (a handle, a reference)", function()
      local function cvalue(name, size)
        return signed("\2" .. sb(1) .. "\29" .. sb(name) .. sb(size) .. sb(-1) .. ("\1"):rep(size))
      end
      refused_bytes("ctype 'struct ljasync_testhandle' is not a value type whose values cross",
                    cvalue("struct ljasync_testhandle", 8))
      refused_bytes("ctype 'int &' is not a value type whose values cross", cvalue("int &", 8))
      refused_bytes("ctype 'void *' is not a value type whose values cross", cvalue("void *", 8))
      assert.equal(0x01010101, decode(cvalue("int32_t", 4)))
    end)

    it("checks the tag of every number of a long array (the validator skips them eight at a time)", function()
      local t = {}
      for i = 1, 40 do t[i] = i + 0.5 end
      local s = encode(t)
      -- Plain, one value: a table (string.buffer's tag 12) of 41 array slots, slot 0 not written.
      assert.equal("\1\1\12\41", s:sub(1, 4))
      local body = s:sub(1, -5)
      for m = 1, 40 do
        local at = 5 + 9 * (m - 1)  -- element m: its tag (7, a double), then 8 bytes
        assert.equal(7, body:byte(at))
        local function with(tag) return signed(body:sub(1, at - 1) .. tag .. body:sub(at + 1)) end
        -- A tag string.buffer does not know (0x13): refused, at that byte.
        refused_bytes(("malformed encoded data: unknown tag at byte %d"):format(at), with("\19"))
        -- A string of 8 bytes (0x28), as long as a number: read as that string.
        local back = decode(with("\40"))
        assert.equal(body:sub(at + 1, at + 8), back[m])
        back[m] = t[m]
        assert.is_true(same(t, back), "element " .. m)
      end
    end)

    it("refuses a nil table key before string.buffer sees it, on a hot path too", function()
      -- A plain encoding of a table whose one key is nil: string.buffer's error for it, raised
      -- on a trace, crashes LuaJIT releases before 2023-08.
      local nilkey = signed("\1\1\9\1\0\2")
      for _ = 1, 500 do refused_bytes("malformed encoded data: table key is nil or NaN", nilkey) end
    end)

    it("decodes a string that may hold a duplicate key with functions no trace compiles", function()
      local reader = require "lj-async.encoder.reader"
      -- The closures of each build, reached through upvalues; those both share are neither's.
      local function closures(t)
        local set, todo = {}, {}
        for _, f in pairs(t) do if type(f) == "function" then todo[#todo + 1] = f end end
        while #todo > 0 do
          local f = table.remove(todo)
          if not set[f] then
            set[f] = true
            for i = 1, 255 do
              local name, v = debug.getupvalue(f, i)
              if not name then break end
              if type(v) == "function" then todo[#todo + 1] = v end
            end
          end
        end
        return set
      end
      local copy, main = closures(reader.offtrace), closures(reader)
      for f in pairs(main) do copy[f] = nil end
      assert.is_true(next(copy) ~= nil)
      local marked, compiled = {}, 0
      local function on_record(tr, func) if copy[func] then marked[tr] = true end end
      local function on_trace(what, tr)
        if what == "start" then marked[tr] = nil elseif what == "stop" and marked[tr] then compiled = compiled + 1 end
      end
      local s = encode({ a = 1, b = 2, c = { 1, 2, 3 } })   -- two keys or more: off the trace
      jit.flush()
      jit.attach(on_record, "record")
      jit.attach(on_trace, "trace")
      for _ = 1, 3000 do assert.equal(2, decode(s).b) end
      jit.attach(on_record)
      jit.attach(on_trace)
      assert.equal(0, compiled)
    end)

    it("raises string.buffer's duplicate key error on a hot path without crashing", function()
      -- A plain encoding of { a = true, a = true }: the checksum is right, the table is not.
      local dup = signed("\1\1\9\2\33a\2\33a\2")
      local n = 0
      for _ = 1, 500 do  -- hot enough to be compiled
        local ok, err = pcall(decode, dup)
        if not ok and err:find("malformed encoded data: duplicate table key", 1, true) then n = n + 1 end
      end
      assert.equal(500, n)
    end)
  end)

  describe("the C ABI", function()
    it("resolves every function the encoder declares", function()
      for _, name in ipairs { "ljasync_encoder_scan", "ljasync_message_new", "ljasync_message_data",
                              "ljasync_message_free", "ljasync_object_retain", "ljasync_object_release" } do
        assert.is_not_nil(C[name], name)
      end
      -- The core's scan reads GC64 objects (PlainScan.swift); other layouts take the Lua scan,
      -- which every other test here then exercises (the matrix's non-GC64 leg).
      assert.equal(ffi.abi("gc64"), encoder._native_scan)
    end)
  end)
end)
