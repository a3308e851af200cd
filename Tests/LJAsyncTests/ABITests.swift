// Swift's own enums that mirror the header's (raw values must be literals, so they cannot be
// taken from it) agree with ljasync.h, and the imported structs have the sizes Lua relies on.
import CLJAsync
import Testing
@testable import LJAsync

@Suite struct ABITests {
    @Test func valueKindsAreTheHeaders() {
        let header: [(ValueKind, ljasync_kind)] = [
            (.void, LJASYNC_KIND_VOID), (.int8, LJASYNC_KIND_INT8), (.uint8, LJASYNC_KIND_UINT8),
            (.int16, LJASYNC_KIND_INT16), (.uint16, LJASYNC_KIND_UINT16), (.int32, LJASYNC_KIND_INT32),
            (.uint32, LJASYNC_KIND_UINT32), (.int64, LJASYNC_KIND_INT64), (.uint64, LJASYNC_KIND_UINT64),
            (.float, LJASYNC_KIND_FLOAT), (.double, LJASYNC_KIND_DOUBLE), (.pointer, LJASYNC_KIND_POINTER),
            (.bool, LJASYNC_KIND_BOOL),
        ]
        for (k, h) in header { #expect(UInt32(k.rawValue) == h.rawValue, "\(k)") }
        #expect(ValueKind(rawValue: UInt8(LJASYNC_KIND_BOOL.rawValue) + 1) == nil)
    }

    @Test func poolStatusesAreTheHeaders() {
        #expect(UInt32(PoolResult.Status.ok.rawValue) == LJASYNC_JOB_OK.rawValue)
        #expect(UInt32(PoolResult.Status.failed.rawValue) == LJASYNC_JOB_FAILED.rawValue)
        #expect(UInt32(PoolResult.Status.cancelled.rawValue) == LJASYNC_JOB_CANCELLED.rawValue)
    }

    @Test func sharedStructsHaveTheirCSizes() {
        #expect(MemoryLayout<ljasync_cell>.size == 32 && ChannelCell.inlineBytes == 24)
        #expect(MemoryLayout<ljasync_pool_result>.stride == 24)
        #expect(MemoryLayout<ljasync_pool_job>.stride == 32)
        #expect(MemoryLayout<ljasync_pool_settings>.size == 40)
    }
}
