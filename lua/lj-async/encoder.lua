-- lj-async.encoder: the one place that decides which Lua values may cross between Lua states, and how.
--
-- Two formats share byte 0 (docs/encoder.md has the layout):
--   plain   (0x01): values that string.buffer encodes exactly (trees of nil, booleans, numbers,
--                   strings, tables without metatables, int64 and complex): string.buffer's
--                   encoding of each, after a count and a checksum;
--   general (0x02): everything else that may cross (encoder/general_writer.lua writes it); with
--                   bit 0x80, a table of shared-object handles follows the tag.
-- encoder/reader.lua reads both. Native memory (messages, decode_ptr) holds bytes this process
-- made and is decoded as such; strings may come from anywhere and are checked first.
-- Every function here runs on the thread that owns the calling Lua state.
local ffi = require "ffi"
local buffer = require "string.buffer"
local registry = require "lj-async.encoder.registry"
local scan = require "lj-async.encoder.scan"
local writer = require "lj-async.encoder.general_writer"
local reader = require "lj-async.encoder.reader"
local native = require "lj-async.encoder.native"

local type, select, tonumber, tostring, error, pcall, unpack =
      type, select, tonumber, tostring, error, pcall, unpack
local ffi_typeof, ffi_cast, ffi_new = ffi.typeof, ffi.cast, ffi.new
local C = native.C
local plain_first3, plain_seal = native.plain_first3, native.plain_seal
local small_value, forget_small, big_plain = scan.small_value, scan.forget_small, scan.big_plain

if not ffi.abi("le") then error("lj-async.encoder: the encoded format is little-endian; this machine is not", 0) end


local M = {}

-- Called before the slow paths (general writer, reader): a builtin the JIT does not compile,
-- so a trace reaching it ends cleanly (stitches) instead of recording into them (the off-trace
-- decoder, debug.* calls), whose aborts would count against M.encode or M.decode when the
-- trace started there and blacklist it.
local trace_barrier = coroutine.running

-- -- Registration --

--- Tables whose metatable is `mt` keep it when decoded in a state that registered the same name.
function M.register_portable_metatable(name, mt)
  if type(name) ~= "string" then error("bad metatable name: expected a string, got " .. type(name), 2) end
  if type(mt) ~= "table" then error("bad metatable: expected a table, got " .. type(mt), 2) end
  registry.add_metatable(name, mt)
end

--- Native shared objects whose cdata handles cross as references (see docs/encoder.md):
--- spec = { ctype = ctype or spelling, address = function(handle) -> number (0 when closed),
---          wrap = function(address) -> new handle owning a new reference, module = "name" }.
--- Decoding a kind this state has not registered first requires spec.module.
function M.register_handle(kind, spec)
  if type(kind) ~= "string" then error("bad handle kind: expected a string, got " .. type(kind), 2) end
  if type(spec) ~= "table" or type(spec.address) ~= "function" or type(spec.wrap) ~= "function"
     or type(spec.module) ~= "string" then
    error("bad handle spec for '" .. kind .. "': expected { ctype, address = function, wrap = function, module = string }", 2)
  end
  local ok, ct = pcall(ffi_typeof, spec.ctype)
  if not ok then error("bad handle spec for '" .. kind .. "': " .. tostring(ct), 2) end
  registry.add_handle(kind, ct, { kind = kind, address = spec.address, wrap = spec.wrap, module = spec.module })
end

--- Names the ctype spelled `spelling` (declared in this state) by that spelling when its values
--- cross: needed for typedefs of anonymous structs, and for function pointer types.
function M.register_ctype(spelling)
  local ok, ct = pcall(ffi_typeof, spelling)
  if type(spelling) ~= "string" or not ok then
    error("bad ctype: expected a ctype spelling declared in this state, got " .. tostring(spelling), 2)
  end
  registry.add_ctype_name(ct, spelling)
end

M._native_scan = scan.native  -- for tests and the benchmark

-- -- Encoding --

local wbuf = buffer.new()
local busy = false
local shared_writer = writer.new_writer()

-- Encodes n values (a1..a3, and args[1..n] when n > 3) into a buffer, which it returns with
-- the general writer to reset once the buffer is read (nil for the plain format). Raises the
-- error message (without position) on failure.
local function encode_into(n, a1, a2, a3, args)
  local reentered = busy  -- from a finalizer run in the middle of an encoding
  if not reentered then
    busy = true
    local plain = true
    if n >= 1 then plain = small_value(a1) end
    if plain and n >= 2 then plain = small_value(a2) end
    if plain and n >= 3 then plain = small_value(a3) end
    if plain and n >= 4 then
      for i = 4, n do
        plain = small_value(args[i])
        if not plain then break end
      end
    end
    forget_small()
    if plain == nil then  -- more than a few tables
      args = args or { a1, a2, a3 }
      plain = big_plain(n, args)
    end
    if plain then
      plain_first3(wbuf, n, a1, a2, a3)
      if n >= 4 then for i = 4, n do wbuf:encode(args[i]) end end
      plain_seal(wbuf)
      busy = false
      return wbuf
    end
  end
  local S = reentered and writer.new_writer() or shared_writer
  local ok, err = pcall(writer.encode, S, n, args or { a1, a2, a3 })
  if not reentered then busy = false end
  if not ok then
    writer.reset_writer(S)
    error(err, 0)
  end
  return S.out, S
end

-- The encoding of the values as a buffer (and the general writer to reset after reading it).
local function encode_args(...)
  local n = select("#", ...)
  if n <= 3 then
    local a1, a2, a3 = ...
    return encode_into(n, a1, a2, a3, nil)
  end
  local args = { ... }
  return encode_into(n, args[1], args[2], args[3], args)
end

local function to_string(ok, b, S)
  if not ok then return nil, b end
  local s = b:tostring()
  if S then writer.reset_writer(S) end
  return s
end

--- Encodes its arguments (their count and nils kept) into a string. Raises on a value that
--- cannot cross, naming its path ("argument 2.config.cb: cannot move a coroutine").
--- An encoding holding shared handles owns one reference per handle: it is meant for
--- ljasync_message_new, which takes them over (encode_message does both); a string that never
--- becomes a message leaks those references.
function M.encode(...)
  local n = select("#", ...)
  if n <= 3 and not busy then
    -- The fast path: up to three small plain values, encoded here without pcall (see
    -- M.decode's fast path for why). string.buffer cannot fail on them (out of memory aside:
    -- `busy` then stays set, and later encodings take the general writer, slower but exact).
    local a1, a2, a3 = ...
    busy = true
    local plain = true
    if n >= 1 then plain = small_value(a1) end
    if plain and n >= 2 then plain = small_value(a2) end
    if plain and n >= 3 then plain = small_value(a3) end
    forget_small()
    if plain then
      plain_first3(wbuf, n, a1, a2, a3)
      plain_seal(wbuf)
      busy = false
      return wbuf:tostring()
    end
    busy = false
    trace_barrier()
  end
  local s, err = to_string(pcall(encode_args, ...))
  if not s then error(err, 2) end
  return s
end

--- Like encode, but returns nil and the message (without position) instead of raising.
function M.try_encode(...)
  return to_string(pcall(encode_args, ...))
end

--- The channel's fast path for one small plain table (at most 4 tables, each reached once
--- and with at most 6 entries, no metatables; numbers, strings, booleans, 64-bit integers and
--- complex): writes string.buffer's encoding of v alone into buf (reset first) and returns
--- true; false for any other v (then v takes encode_message). buf:decode() reads an exact copy
--- back. These bytes have no header and no checksum: they are for native memory of this
--- process only (a channel's cell), never for bytes from elsewhere. Loop-free, so it becomes
--- part of the caller's trace.
function M.encode_small_table(buf, v)
  -- busy: a finalizer run inside encode_into, whose scan state small_value shares.
  if busy or type(v) ~= "table" then return false end
  local plain = small_value(v)
  forget_small()
  if plain ~= true then return false end
  buf:reset()
  buf:encode(v)
  return true
end

--- Encodes one value.
function M.encode_value(v)
  local s, err = to_string(pcall(encode_into, 1, v, nil, nil, nil))
  if not s then error(err, 2) end
  return s
end

local message_new = C.ljasync_message_new

local function to_message(ok, b, S)
  if not ok then return nil, b end
  local p, n = b:ref()
  local msg = message_new(p, n)
  if S then writer.reset_writer(S) end
  return msg
end

--- Encodes its arguments into a native message (ljasync_message *), which the caller owns:
--- it passes it on (a channel takes it) or frees it with ljasync_message_free. Raises like encode.
function M.encode_message(...)
  local msg, err = to_message(pcall(encode_args, ...))
  if not msg then error(err, 2) end
  return msg
end

--- Like encode_message, but returns nil and the message (without position) instead of raising.
function M.try_encode_message(...)
  return to_message(pcall(encode_args, ...))
end

-- -- Decoding --

local rbuf = buffer.new()
local decoding = false
local shared_reader = reader.new_reader()
local rdecode, rcheck, offtrace_decode = reader.decode, reader.check, reader.offtrace.decode

-- The string being decoded, kept referenced while a buffer reads it: compiled buffer:set()
-- does not anchor its string in LuaJIT releases before 2023-12 (LuaJIT issue #1125), and a
-- collection in the middle of decoding would free it.
local anchor

-- Decodes a string set in b, which may come from anywhere: checked first (see reader.lua).
local function decode_string(b, R)
  if rcheck(b) < 0 then return offtrace_decode(b, R, true) end
  return rdecode(b, R, true)
end

-- string.buffer's complaints about its input, which come with a position that means nothing.
local buffer_complaints = { "^unexpected end of buffer", "^cannot deserialize", "^too deep to serialize",
                            "^duplicate table key", "^table index is", "^table overflow", "^bad light userdata" }

local function decode_error(msg)
  if type(msg) ~= "string" then return msg end
  -- From the interpreter with a position; from a trace without one.
  local bare = msg:match("^[^\n]-:%d+: (.*)$") or msg
  for i = 1, #buffer_complaints do
    if bare:find(buffer_complaints[i]) then return "malformed encoded data: " .. bare end
  end
  return msg
end

-- Ends a decoding: forgets its scratch, raises at the caller of decode, or returns the values.
local function finish(R, ok, n, a, c, d, vals)
  if R == shared_reader then
    rbuf:reset()
    reader.reset_reader(R)
    anchor, decoding = nil, false
  else
    reader.reset_reader(R)
  end
  if not ok then error(decode_error(n), 3) end
  if n == 1 then return a end
  if n == 2 then return a, c end
  if n == 3 then return a, c, d end
  if n == 0 then return end
  return unpack(vals, 1, n)
end

-- Sets up a decoding of s (a string, or a pointer with len): the buffer and reader to use.
local function start(s, len)
  if decoding then  -- re-entered (from a finalizer): a reader of our own
    local R = reader.new_reader()
    R.anchor = s
    local b = buffer.new()
    if len then b:set(s, len) else b:set(s) end
    return b, R
  end
  decoding = true
  anchor = s
  if len then rbuf:set(s, len) else rbuf:set(s) end
  return rbuf, shared_reader
end

-- The fast path of decode: up to three plain values (the usual small message), checked as
-- rcheck does (checksum, then the core's structure check) in M.decode itself. Few functions
-- on the hot path, and none called through pcall: one called through pcall from interpreted
-- code gets root traces that cannot return through it ("NYI: return to lower frame"), and
-- those aborts blacklist it, which then aborts every trace that calls it.
local u32p = ffi_typeof("uint32_t *")
local checksum, SEED, validate, TAG_PLAIN = native.checksum, native.CHECKSUM_SEED, native.validate, native.TAG_PLAIN
local atbox = ffi_new("intptr_t[1]")
local NEG_ZERO = -0.0  -- as reader.lua's launder: a decoded number is read at once on a trace

--- Decodes a string from encode: returns the values (same count, nils kept). Raises on
--- malformed data, or on what this state lacks (an undeclared ctype, an unregistered metatable).
--- The string may come from anywhere (a file, a socket): no byte string makes this crash; a
--- string brings no handles, and functions only if this process encoded them (docs/encoder.md).
function M.decode(s)
  if type(s) ~= "string" then error("bad encoded data: expected a string, got " .. type(s), 2) end
  if not decoding then
    decoding, anchor = true, s
    rbuf:set(s)
    local p, len = rbuf:ref()  -- (measured: 4% faster for numbers than a cast of s)
    local st, n = 1, 0         -- st: rcheck's verdict, 1 when not checked here
    if len >= 6 and p[0] == TAG_PLAIN then
      n = p[1]
      if n <= 3 and ffi_cast(u32p, p + len - 4)[0] == checksum(p + 1, len - 5, SEED) then
        st = validate(p + 2, len - 6, n, atbox)
      end
    end
    if st == 0 then
      -- Checked: string.buffer cannot fail on these bytes (out of memory aside: `decoding`
      -- then stays set, and later decodings take the reader, slower but exact).
      rbuf:skip(2)
      local a, c, d
      if n >= 1 then a = rbuf:decode(); if type(a) == "number" then a = a + NEG_ZERO end end
      if n >= 2 then c = rbuf:decode(); if type(c) == "number" then c = c + NEG_ZERO end end
      if n >= 3 then d = rbuf:decode(); if type(d) == "number" then d = d + NEG_ZERO end end
      rbuf:reset()
      anchor, decoding = nil, false
      if n == 1 then return a end
      if n == 2 then return a, c end
      if n == 3 then return a, c, d end
      return
    end
    rbuf:reset()
    anchor, decoding = nil, false
    if st < 0 then  -- checked already: only the off-trace decoding is left
      trace_barrier()
      local b, R = start(s)
      return finish(R, pcall(offtrace_decode, b, R, true))
    end
  end
  trace_barrier()
  local b, R = start(s)
  return finish(R, pcall(decode_string, b, R))
end

--- Decodes len bytes at ptr (a const void * or char * cdata) that this process's encoder
--- made, e.g. a native message's data: read in place, and trusted like a message (bytes from
--- elsewhere go through decode).
function M.decode_ptr(ptr, len)
  if type(ptr) ~= "cdata" or type(len) ~= "number" and type(len) ~= "cdata" then
    error("bad arguments: expected a pointer and a length", 2)
  end
  local b, R = start(ptr, tonumber(len))
  return finish(R, pcall(rdecode, b, R, false))
end

--- Decodes one value (the encoding must hold exactly one), from anywhere, as decode does.
function M.decode_value(s)
  if type(s) ~= "string" then error("bad encoded data: expected a string, got " .. type(s), 2) end
  local b, R = start(s)
  local ok, n, a, c, d, vals = pcall(decode_string, b, R)
  if ok and n ~= 1 then ok, n = false, "expected one encoded value, got " .. n end
  return finish(R, ok, n, a, c, d, vals)
end

local lenbox = ffi_new("size_t[1]")
local message_data = C.ljasync_message_data
local message_ptr_t = ffi_typeof("ljasync_message *")

--- Decodes a native message (ljasync_message *); the caller still owns it and frees it.
--- Only this process's encoder makes messages (encode_message): their handle tables and
--- bytecode are trusted, and they take the fast path.
function M.decode_message(msg)
  if type(msg) ~= "cdata" or msg == nil or not ffi.istype(message_ptr_t, msg) then
    error("bad message: expected a ljasync_message *, got " .. (type(msg) == "cdata" and tostring(ffi_typeof(msg)) or type(msg)), 2)
  end
  local p = message_data(msg, lenbox)
  local b, R = start(p, tonumber(lenbox[0]))
  return finish(R, pcall(rdecode, b, R, false))
end

--- decode (of a string) or decode_message (of a native message), with each module the bytes
--- name (a function's upvalue that crossed as `require`) given by resolve(name) instead of
--- this state's modules: a restricted environment's own require (lj-async.sandbox) decides
--- what such an upvalue becomes there.
function M.decode_resolving(x, resolve)
  if type(resolve) ~= "function" then error("bad resolver: expected a function, got " .. type(resolve), 2) end
  if type(x) == "string" then
    local b, R = start(x)
    R.resolve = resolve
    return finish(R, pcall(decode_string, b, R))
  end
  if type(x) ~= "cdata" or x == nil then
    error("bad encoded data: expected a string or a ljasync_message *, got " .. type(x), 2)
  end
  local p = message_data(x, lenbox)
  local b, R = start(p, tonumber(lenbox[0]))
  R.resolve = resolve
  return finish(R, pcall(rdecode, b, R, false))
end

return M
