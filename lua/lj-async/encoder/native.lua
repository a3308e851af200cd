-- Private: the core's help for the encoder (Encoder/PlainScan.swift, Encoder/Checksum.swift).
local core = require "lj-async.core"

core.cdef_once("ljasync_encoder_marker", [[
typedef struct ljasync_encoder_marker ljasync_encoder_marker;
int32_t ljasync_encoder_scan(const uint64_t *roots, int32_t n, int32_t max_depth, const uint16_t *ctypes,
    uint64_t *scratch, intptr_t capacity, intptr_t *tables);
uint32_t ljasync_encoder_checksum(const void *p, size_t n, uint32_t seed);
]])

return {
  C = core.C,
  scan = core.C.ljasync_encoder_scan,
  --- checksum(p, n, seed) -> uint32 of n bytes at p; any thread.
  checksum = core.C.ljasync_encoder_checksum,
  CHECKSUM_SEED = 0x2545f491,
}
