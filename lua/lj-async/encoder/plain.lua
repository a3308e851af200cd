-- Private: the plain format (docs/encoder.md), and general messages of up to three leaves,
-- functions without upvalues and handles, for states that move only such values (a spawned
-- thread's arguments and results, a pool job's): encode_message and decode_message as lj-async.encoder's, without loading it.
-- Values this path does not take (tables holding tables, cdata, functions...) and every other
-- message go to lj-async.encoder, required then: what crosses, and every error, stays the
-- encoder's.
-- Every function here runs on the thread that owns the calling Lua state.
local ffi = require "ffi"
local buffer = require "string.buffer"
local native = require "lj-async.encoder.native"

local type, select, next, error, pcall, require, tonumber = type, select, next, error, pcall, require, tonumber
local getmt, getupvalue, loadstring = debug.getmetatable, debug.getupvalue, loadstring
local ffi_cast, ffi_typeof = ffi.cast, ffi.typeof
local C, checksum, SEED, TAG_PLAIN = native.C, native.checksum, native.CHECKSUM_SEED, native.TAG_PLAIN
local message_new, message_data = C.ljasync_message_new, C.ljasync_message_data
local plain_begin, plain_first3, plain_seal = native.plain_begin, native.plain_first3, native.plain_seal
local TAG_GENERAL, HAS_HANDLES = native.TAG_GENERAL, native.HAS_HANDLES
local by_kind  -- the registry's kinds of handles, required with the first handle (~10 KiB)
local u32p, u64p, u8p = ffi_typeof("uint32_t *"), ffi_typeof("uint64_t *"), ffi_typeof("const uint8_t *")
local HANDLE = {}  -- general_value's mark of a handle
local message_ptr_t = ffi_typeof("ljasync_message *")
-- Adding -0 turns a number string.buffer decoded into an ordinary one, as the reader does.
local NEG_ZERO = -0.0

local M = {}

local function scalar(v)
  local t = type(v)
  return t == "nil" or t == "number" or t == "string" or t == "boolean"
end

-- True for a value this path encodes: a scalar, or a table without metatable whose keys and
-- values are scalars (string.buffer refuses nil and NaN keys only where a table cannot hold them).
local function simple(v)
  if type(v) ~= "table" then return scalar(v) end
  if getmt(v) ~= nil then return false end
  for k, x in next, v do
    if not scalar(k) or not scalar(x) then return false end
  end
  return true
end

local wbuf, rbuf = buffer.new(), buffer.new()
local busy = false  -- a finalizer run in the middle of a use of wbuf or rbuf takes the encoder

local function full() return require "lj-async.encoder" end

-- The encoder's plain format (its frame is native.plain_begin/plain_seal, as in encoder.lua).

-- Seals wbuf and returns its bytes as a native message; wbuf emptied.
local function take_message()
  plain_seal(wbuf)
  local q, len = wbuf:ref()
  local msg = message_new(q, len)
  wbuf:reset()
  return msg
end

local function encode_plain(n, ...)
  plain_begin(wbuf, n)
  for i = 1, n do wbuf:encode((select(i, ...))) end
  return take_message()
end

--- lj-async.encoder.encode_message: the values (count and nils kept) as a native message the
--- caller owns. Raises as the encoder does.
-- Up to three values without a vararg loop: the usual job result or thread return, and a
-- path the JIT compiles (select(i, ...) in a loop over ... does not; measured: it halved a
-- pool's tiny jobs per second).
local function encode3(n, a1, a2, a3)
  plain_first3(wbuf, n, a1, a2, a3)
  return take_message()
end

function M.encode_message(...)
  local n = select("#", ...)
  if n <= 3 and not busy then
    local a1, a2, a3 = ...
    if simple(a1) and simple(a2) and simple(a3) then
      busy = true
      local ok, msg = pcall(encode3, n, a1, a2, a3)
      busy = false
      if not ok then error(msg, 2) end
      return msg
    end
  end
  local plain = not busy and n < 255
  if plain then
    for i = 1, n do
      if not simple((select(i, ...))) then plain = false; break end
    end
  end
  if not plain then
    local msg, err = full().try_encode_message(...)
    if not msg then error(err, 2) end
    return msg
  end
  busy = true
  local ok, msg = pcall(encode_plain, n, ...)
  busy = false
  if not ok then error(msg, 2) end
  return msg
end

local lenbox = ffi.new("size_t[1]")

local function launder(v)
  if type(v) == "number" then return v + NEG_ZERO end
  return v
end

-- A value of a general message's top level: a leaf (one string.buffer value), a function
-- without upvalues, or a handle,
-- returned as the string "h" and its handle table index, kind and module (wrapped only once
-- every value is known to be one of these). nil for anything else.
local function general_value()
  local tag = rbuf:get(1)
  if tag == "\19" then return launder(rbuf:decode()) end
  if tag == "\24" then  -- a function without upvalues (a pool definition): trusted bytecode
    local code, _, nups = rbuf:decode(), rbuf:decode(), rbuf:decode()
    if type(code) ~= "string" or nups ~= 0 or code:sub(1, 3) ~= "\27LJ" then return nil, false end
    local f = loadstring(code)
    if not f or getupvalue(f, 1) ~= nil then return nil, false end
    return f
  end
  if tag ~= "\30" then return nil, false end
  local idx, kind, module = rbuf:decode(), rbuf:decode(), rbuf:decode()
  if type(idx) ~= "number" or type(kind) ~= "string" or type(module) ~= "string" then return nil, false end
  return HANDLE, idx, kind, module
end

-- The handle a general_value stands for (a new Lua handle owning a new reference).
local function wrap(p, nh, v, idx, kind, module)
  if v ~= HANDLE then return true, v end
  if idx % 1 ~= 0 or idx < 1 or idx > nh then return false end
  local addr = tonumber(ffi_cast(u64p, p + 5)[idx - 1])
  if addr == 0 or addr >= 2 ^ 53 then return false end
  by_kind = by_kind or require("lj-async.encoder.registry").handle_by_kind
  local spec = by_kind[kind]
  if not spec then
    require(module)  -- a native message: bytes this process made
    spec = by_kind[kind]
    if not spec then return false end
  end
  return true, spec.wrap(addr)
end

-- At most three values of the general format that are leaves or handles (a channel passed to a
-- thread), or false.
local function decode_general(p, len)
  local off, nh = 1, 0
  if p[0] == TAG_GENERAL + HAS_HANDLES then
    nh = ffi_cast(u32p, p + 1)[0]
    if len < 10 or nh > (len - 10) / 8 then return false end
    off = 5 + 8 * nh
  end
  rbuf:set(p + off, len - off - 4)
  local n = rbuf:decode()
  if type(n) ~= "number" or n % 1 ~= 0 or n < 0 or n > 3 then return false end
  local a, ai, ak, am, b, bi, bk, bm, c, ci, ck, cm
  if n >= 1 then a, ai, ak, am = general_value(); if ai == false then return false end end
  if n >= 2 then b, bi, bk, bm = general_value(); if bi == false then return false end end
  if n >= 3 then c, ci, ck, cm = general_value(); if ci == false then return false end end
  if #rbuf ~= 0 then return false end
  local ok
  if n >= 1 then ok, a = wrap(p, nh, a, ai, ak, am); if not ok then return false end end
  if n >= 2 then ok, b = wrap(p, nh, b, bi, bk, bm); if not ok then return false end end
  if n >= 3 then ok, c = wrap(p, nh, c, ci, ck, cm); if not ok then return false end end
  return true, n, a, b, c
end

-- The values at p (len bytes, checked), or false when this path does not take them or they
-- are not right: the encoder then reads them and says what is wrong.
local function decode_plain(p, len)
  if len < 6 then return false end
  if ffi_cast(u32p, p + len - 4)[0] ~= checksum(p + 1, len - 5, SEED) then return false end
  if p[0] == TAG_GENERAL or p[0] == TAG_GENERAL + HAS_HANDLES then return decode_general(p, len) end
  if p[0] ~= TAG_PLAIN then return false end
  local n, hdr = p[1], 2
  if n == 255 or n > 3 then return false end
  rbuf:set(p + hdr, len - hdr - 4)
  local a, b, c
  if n >= 1 then a = launder(rbuf:decode()) end
  if n >= 2 then b = launder(rbuf:decode()) end
  if n >= 3 then c = launder(rbuf:decode()) end
  if #rbuf ~= 0 then return false end
  return true, n, a, b, c
end

--- lj-async.encoder.decode_message: the values of a native message (ljasync_message *),
--- which the caller still owns.
function M.decode_message(msg)
  if busy or type(msg) ~= "cdata" or msg == nil or not ffi.istype(message_ptr_t, msg) then
    return full().decode_message(msg)
  end
  local p = message_data(msg, lenbox)
  busy = true
  local ok, good, n, a, b, c = pcall(decode_plain, ffi_cast(u8p, p), tonumber(lenbox[0]))
  rbuf:reset()
  busy = false
  if not (ok and good) then return full().decode_message(msg) end
  if n == 1 then return a end
  if n == 0 then return end
  if n == 2 then return a, b end
  return a, b, c
end

return M
