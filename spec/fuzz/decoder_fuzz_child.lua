-- One batch of the decoder fuzz (spec/fuzz/decoder_fuzz_spec.lua runs it in a child luajit, so
-- a crash ends only the batch): `luajit decoder_fuzz_child.lua SEED FIRST COUNT [REPEAT [CASE]]`.
-- Case i mutates one encoding of the corpus with the random numbers of seed SEED * 2^20 + i,
-- re-signs it (recomputes the checksum, so the checksum does not hide the decoder) and decodes
-- it. Prints "case <i> <message>" for a result that is neither values nor a clear decoder error,
-- then "done <cases> <values> <errors>". REPEAT decodes each case that many times (a crash on a
-- trace needs a hot loop: bisecting repeats each case). With CASE, prints its bytes in hex first.
package.path = "./lua/?.lua;./?.lua;" .. package.path
local ffi = require "ffi"
local bit = require "bit"
local encoder = require "lj-async.encoder"
local native = require "lj-async.encoder.native"
local TestObject = require "spec.support.testobject"

local seed, first, count = tonumber(arg[1]), tonumber(arg[2]), tonumber(arg[3])
local rep, only = tonumber(arg[4]) or 1, tonumber(arg[5])
local encode = encoder.encode
local random, char, byte = math.random, string.char, string.byte

ffi.cdef [[
struct fuzz_point { int32_t x, y; };
struct fuzz_rect { struct fuzz_point min, max; const char *label; };
union fuzz_bits { double d; uint64_t u; };
struct fuzz_vls { int32_t n; int32_t items[?]; };
]]

-- -- The corpus: every kind of value that crosses, in both formats --

local corpus = {}
local function add(...) corpus[#corpus + 1] = encode(...) end
do
  local mt = {}
  encoder.register_portable_metatable("fuzz.Meta", mt)
  local cyc = { 1, 2 }
  cyc.self = cyc
  local shared = { "s" }
  local up, k = { 1, 2, x = "y" }, 3
  local function f(x) return x * k + up[1] end
  local function g() return f(1), up end
  local big = {}
  for i = 1, 40 do big[i] = { i, "item" .. i, i * 0.5, flag = i % 2 == 0 } end
  -- plain
  add()
  add(nil, true, false)
  add(0, -0.0, 1 / 0, -1 / 0, 0 / 0, 2 ^ 53, -123456789.25, 7)
  add("", "short", ("long string "):rep(40), "a\0b")
  add({ 1, 2, 3, x = 1, y = "two", [true] = false, [2.5] = { 1, { 2, { 3 } } } })
  add({ a = 1, b = 2, c = 3, d = 4 }, { [1] = 1, [3] = 3, [100] = 100 })
  add(ffi.new("int64_t", -5), ffi.new("uint64_t", 2 ^ 60), ffi.new("complex", 1.5, -2))
  add(big)
  add({ { { { { { { { { { 1 } } } } } } } } } })
  add({ ["k1"] = { ["k1"] = 1 }, ["k2"] = "k1", [0] = 0, [-1] = -1 })
  local row, col = {}, {}
  for i = 1, 20 do row[i], col[i] = i + 0.25, -1.5 * i end
  add(row, { label = "m", values = col })  -- runs of numbers: the validator reads 8 tags at a time
  -- general
  add(cyc, { shared, shared })
  add(setmetatable({ x = 1, y = { 2 } }, mt), setmetatable({}, mt))
  add(f)
  add(g, f, up)
  add(function(a, b) return a + b end)
  add(ffi.cast("int32_t *", 0x1000), ffi.cast("struct fuzz_point *", nil), ffi.cast("void *", 12345))
  add(ffi.new("struct fuzz_point", 5, 6), ffi.new("struct fuzz_rect"), ffi.new("union fuzz_bits", { d = 1.5 }))
  add(ffi.new("int16_t[?]", 3, { 1, 2, 3 }), ffi.new("int32_t[4]", { 9, 8, 7, 6 }), ffi.new("struct fuzz_vls", 2, { 2 }))
  add(ffi.new("int8_t", -3), ffi.new("float", 1.5), ffi.new("bool", true), ffi.new("double[2]", { 1, 2 }))
  add({ p = ffi.new("struct fuzz_point", 1, 2), q = ffi.new("int64_t", 3), list = { cyc, big[1] } })
  add(io.write == print and 1 or 2, { fn = f, data = up, [f] = "key" })
  local sbyte, bitmod = string.byte, bit  -- a module's C function, a module: cross by name
  add(function() return sbyte("x") end, function(x) return bitmod.band(x, 1) end)
  local h = TestObject.new(7)
  corpus[#corpus + 1] = encode(h, { h })  -- a handle table: refused in a string, whatever it says
end

-- -- Mutations --

local TAGS = { 0x00, 0x01, 0x02, 0x03, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x0e, 0x0f,
               0x10, 0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 0x18, 0x19, 0x1a, 0x1b, 0x1c, 0x1d, 0x1e,
               0x1f, 0x20, 0x21, 0x82 }
local LENGTHS = { 0x00, 0x01, 0x7f, 0x80, 0xdf, 0xe0, 0xe1, 0xfe, 0xff }

local function mutate(s)
  local b = { byte(s, 1, -5) }  -- without the checksum
  for _ = 1, random(1, 3) do
    local n = #b
    local kind = random(1, 6)
    local i = random(1, math.max(n, 1))
    if kind == 1 and n > 0 then      -- flip bits
      b[i] = bit.bxor(b[i], random(1, 255))
    elseif kind == 2 and n > 1 then  -- truncate
      for j = n, random(1, n - 1) + 1, -1 do b[j] = nil end
    elseif kind == 3 then            -- insert bytes
      for _ = 1, random(1, 8) do table.insert(b, i, random(0, 255)) end
    elseif kind == 4 and n > 0 then  -- a length field: a boundary value, maybe a 4-byte one
      local v = LENGTHS[random(#LENGTHS)]
      b[i] = v
      if v == 0xff then
        for j = 1, 4 do table.insert(b, i + j, j == 4 and random(0, 255) or 0xff) end
      elseif v >= 0xe0 then
        table.insert(b, i + 1, random(0, 255))
      end
    elseif kind == 5 and n > 0 then  -- swap a tag for another
      b[i] = TAGS[random(#TAGS)]
    elseif n > 1 then                -- swap two bytes
      local j = random(1, n)
      b[i], b[j] = b[j], b[i]
    end
  end
  local parts = {}
  for j = 1, #b, 4096 do parts[#parts + 1] = char(unpack(b, j, math.min(j + 4095, #b))) end
  local body = table.concat(parts)
  -- Re-sign: the checksum of every byte but the tag (Encoder/Checksum.swift).
  local p = ffi.cast("const uint8_t *", body)
  local sum = #body >= 1 and native.checksum(p + 1, #body - 1, native.CHECKSUM_SEED)
                          or native.checksum(nil, 0, native.CHECKSUM_SEED)
  sum = tonumber(sum)
  return body .. char(bit.band(sum, 0xff), bit.band(bit.rshift(sum, 8), 0xff),
                      bit.band(bit.rshift(sum, 16), 0xff), bit.rshift(sum, 24))
end

-- What the decoder may say about forged bytes: its own words, never a Lua runtime error.
local CLEAR = { "^malformed encoded data: ", "^ctype '.-' is ", "^ctype '.-' has size ", "^metatable '.-' is not registered",
                "^module '.-' is not loaded", "^upvalue '.-' is not a function", "^handle kind '" }
local function clear(err)
  if type(err) ~= "string" then return false end
  err = err:gsub("^[^\n]-:%d+: ", "", 1)  -- decode raises at its caller's position
  for i = 1, #CLEAR do if err:find(CLEAR[i]) then return true end end
  return false
end

local values, errors = 0, 0
local decode = encoder.decode
for i = only or first, only or first + count - 1 do
  math.randomseed(seed * 2 ^ 20 + i)
  local bytes = mutate(corpus[random(#corpus)])
  if only then print((bytes:gsub(".", function(c) return ("%02x"):format(byte(c)) end))) end
  local ok, err
  for _ = 1, rep do ok, err = pcall(decode, bytes) end
  if ok then
    values = values + 1
  elseif clear(err) then
    errors = errors + 1
  else
    print(("case %d %s"):format(i, tostring(err):gsub("\n", " ")))
  end
  if i % 128 == 0 then collectgarbage() end  -- decoded objects, forged pointers among them, get collected
end
collectgarbage()
print(("done %d %d %d"):format(only and 1 or count, values, errors))
