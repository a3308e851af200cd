-- Private: the core's help for the encoder (Encoder/*.swift) and the format's constants, shared
-- by the writers and the reader (docs/encoder.md has the layout).
local core = require "lj-async.core"
core.declare "encoder"
local C = core.C

return {
  C = core.C,
  scan = core.C.ljasync_encoder_scan,
  --- checksum(p, n, seed) -> uint32 of n bytes at p; any thread.
  checksum = core.C.ljasync_encoder_checksum,
  CHECKSUM_SEED = 0x2545f491,
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
