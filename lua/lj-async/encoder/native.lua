-- Private: the core's help for the encoder (Encoder/*.swift) and the format's constants, shared
-- by the writers and the reader (docs/encoder.md has the layout).
local core = require "lj-async.core"

core.cdef_once("ljasync_encoder_marker", [[
typedef struct ljasync_encoder_marker ljasync_encoder_marker;
int32_t ljasync_encoder_scan(const uint64_t *roots, int32_t n, int32_t max_depth, const uint16_t *ctypes,
    uint64_t *scratch, intptr_t capacity, intptr_t *tables);
uint32_t ljasync_encoder_checksum(const void *p, size_t n, uint32_t seed);
int32_t ljasync_encoder_validate(const uint8_t *p, size_t n, intptr_t values, intptr_t *at);
uint64_t ljasync_encoder_mark(const void *p, size_t n);
]])

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
  TAG_PLAIN = 0x01, TAG_GENERAL = 0x02, HAS_HANDLES = 0x80,
  -- The general format's value tags (Encoder/Validator.swift repeats them).
  T = { LEAF = 0x13, TABLE = 0x14, TABLE_MT = 0x15, END = 0x16, REF = 0x17, FUNC = 0x18, UPJOIN = 0x19,
        MODULE = 0x1a, MODFIELD = 0x1b, POINTER = 0x1c, CVALUE = 0x1d, HANDLE = 0x1e },
  FIXED = -1,  -- the element count written for cdata of fixed size
}
