-- Private: the core's help for the encoder (Encoder/*.swift) and the format's constants, shared
-- by the writers and the reader (docs/encoder.md has the layout).
local core = require "lj-async.core"
core.declare "encoder"
local C = core.C
local ffi = require "ffi"
local u32p = ffi.typeof("uint32_t *")
local checksum, SEED, TAG_PLAIN = C.ljasync_encoder_checksum, 0x2545f491, C.LJASYNC_TAG_PLAIN

-- The plain format's frame, written by encoder.lua and encoder/plain.lua alike: the tag and the
-- value count (1 byte, or 255 and 4 bytes) into an emptied buffer, then, after the values
-- (string.buffer's encoding of each), the checksum of all but the tag.
local function plain_begin(buf, n)
  buf:reset()
  local p = buf:reserve(6)
  p[0] = TAG_PLAIN
  if n < 255 then
    p[1] = n
    buf:commit(2)
  else
    p[1] = 255
    ffi.cast(u32p, p + 2)[0] = n
    buf:commit(6)
  end
end

-- plain_begin, then the first min(n, 3) of the values a1, a2, a3: the common small message,
-- written without a vararg loop (select(i, ...) in a loop is not compiled).
local function plain_first3(buf, n, a1, a2, a3)
  plain_begin(buf, n)
  if n >= 1 then buf:encode(a1) end
  if n >= 2 then buf:encode(a2) end
  if n >= 3 then buf:encode(a3) end
end

local function plain_seal(buf)
  local q, len = buf:ref()
  local sum = checksum(q + 1, len - 1, SEED)  -- before reserve, which may move the bytes
  ffi.cast(u32p, buf:reserve(4))[0] = sum
  buf:commit(4)
end

return {
  plain_begin = plain_begin,
  plain_first3 = plain_first3,
  plain_seal = plain_seal,
  C = core.C,
  scan = core.C.ljasync_encoder_scan,
  --- checksum(p, n, seed) -> uint32 of n bytes at p; any thread.
  checksum = core.C.ljasync_encoder_checksum,
  CHECKSUM_SEED = SEED,
  --- validate(p, n, values, at) -> 0, or a failure code (Encoder/Validator.swift); any thread.
  validate = core.C.ljasync_encoder_validate,
  --- mark(p, n) -> uint64 cdata: this process's keyed hash of bytecode (Encoder/BytecodeMark.swift).
  mark = core.C.ljasync_encoder_mark,

  -- Byte 0 of an encoding: the format, and in the general format a flag for a handle table.
  -- (enum ljasync_format of ljasync.h, which Encoder/Validator.swift reads too).
  TAG_PLAIN = C.LJASYNC_TAG_PLAIN, TAG_GENERAL = C.LJASYNC_TAG_GENERAL, HAS_HANDLES = C.LJASYNC_HAS_HANDLES,
  -- The general format's value tags.
  T = { LEAF = C.LJASYNC_G_LEAF, TABLE = C.LJASYNC_G_TABLE, TABLE_MT = C.LJASYNC_G_TABLE_MT, END = C.LJASYNC_G_END,
        REF = C.LJASYNC_G_REF, FUNC = C.LJASYNC_G_FUNC, UPJOIN = C.LJASYNC_G_UPJOIN, MODULE = C.LJASYNC_G_MODULE,
        MODFIELD = C.LJASYNC_G_MODFIELD, POINTER = C.LJASYNC_G_POINTER, CVALUE = C.LJASYNC_G_CVALUE,
        HANDLE = C.LJASYNC_G_HANDLE },
  FIXED = -1,  -- the element count written for cdata of fixed size
}
