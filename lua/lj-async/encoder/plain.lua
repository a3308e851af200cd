-- Private: the plain format alone (docs/encoder.md), for states that move only plain values
-- (a spawned thread's arguments and results, a pool job's): encode_message and decode_message
-- as lj-async.encoder's, without loading it. Values this path does not take (tables holding
-- tables, cdata, functions, handles...) and messages in the general format go to
-- lj-async.encoder, required then: what crosses, and every error, stays the encoder's.
-- Every function here runs on the thread that owns the calling Lua state.
local ffi = require "ffi"
local buffer = require "string.buffer"
local native = require "lj-async.encoder.native"

local type, select, next, error, pcall, require, tonumber = type, select, next, error, pcall, require, tonumber
local getmt = debug.getmetatable
local ffi_cast, ffi_typeof = ffi.cast, ffi.typeof
local C, checksum, SEED, TAG_PLAIN = native.C, native.checksum, native.CHECKSUM_SEED, native.TAG_PLAIN
local message_new, message_data = C.ljasync_message_new, C.ljasync_message_data
local u32p, u8p = ffi_typeof("uint32_t *"), ffi_typeof("const uint8_t *")
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

-- Tag, count, each value as string.buffer encodes it, checksum of all but the tag: the
-- encoder's plain format (encoder.lua writes it the same way).
local function encode_plain(n, ...)
  wbuf:reset()
  local p = wbuf:reserve(6)
  p[0] = TAG_PLAIN
  if n < 255 then
    p[1] = n
    wbuf:commit(2)
  else
    p[1] = 255
    ffi_cast(u32p, p + 2)[0] = n
    wbuf:commit(6)
  end
  for i = 1, n do wbuf:encode((select(i, ...))) end
  local q, len = wbuf:ref()
  ffi_cast(u32p, wbuf:reserve(4))[0] = checksum(q + 1, len - 1, SEED)
  wbuf:commit(4)
  q, len = wbuf:ref()
  local msg = message_new(q, len)
  wbuf:reset()
  return msg
end

--- lj-async.encoder.encode_message: the values (count and nils kept) as a native message the
--- caller owns. Raises as the encoder does.
function M.encode_message(...)
  local n = select("#", ...)
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

-- The plain values at p (len bytes, checked), or nothing when they are not plain or not
-- right: the encoder then reads them and says what is wrong.
local function decode_plain(p, len)
  if len < 6 or p[0] ~= TAG_PLAIN then return false end
  if ffi_cast(u32p, p + len - 4)[0] ~= checksum(p + 1, len - 5, SEED) then return false end
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
