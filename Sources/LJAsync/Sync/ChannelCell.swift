// One value in a channel: scalars and short strings inline, the rest behind one owned pointer.
import Glibc

/// A 32-byte cell, laid out as `ljasync_cell` in lua/lj-async/sync/abi.lua:
/// `uint32_t tag; uint32_t len;` then 24 bytes that hold a double, up to 24 string bytes,
/// a heap string (pointer, size) or a Message pointer.
///
/// Ownership: a cell with tag `heapString` owns its malloc'ed bytes and one with tag
/// `message` owns its Message (which owns handle references). Cells are moved, never
/// copied: whoever holds one last (the ring, a popper, the channel's deinit) calls `release`
/// or hands the pointer on (Lua frees bytes with `ljasync_channel_bytes_free` and messages
/// with `ljasync_message_free`).
struct ChannelCell {
    enum Tag: UInt32 {
        case none = 0, isFalse = 1, isTrue = 2, number = 3, shortString = 4, heapString = 5, message = 6
    }
    static let inlineBytes = 24

    var tag: UInt32
    var len: UInt32
    var w0: UInt64
    var w1: UInt64
    var w2: UInt64

    @inline(__always) init(tag: Tag, w0: UInt64 = 0) {
        self.tag = tag.rawValue
        len = 0
        self.w0 = w0
        w1 = 0
        w2 = 0
    }

    @inline(__always) static func number(_ v: Double) -> ChannelCell { ChannelCell(tag: .number, w0: v.bitPattern) }

    @inline(__always) static func message(_ m: UnsafeMutableRawPointer) -> ChannelCell {
        ChannelCell(tag: .message, w0: UInt64(UInt(bitPattern: m)))
    }

    /// A copy of `n` bytes at `p`: inline when short, else in fresh malloc'ed memory.
    /// nil when that memory cannot be had.
    @inline(__always) static func string(_ p: UnsafeRawPointer?, _ n: Int) -> ChannelCell? {
        if n <= inlineBytes {
            var c = ChannelCell(tag: .shortString)
            c.len = UInt32(n)
            if n > 0, let p { withUnsafeMutableBytes(of: &c) { _ = memcpy($0.baseAddress! + 8, p, n) } }
            return c
        }
        guard let p, let copy = malloc(n) else { return nil }
        memcpy(copy, p, n)
        var c = ChannelCell(tag: .heapString, w0: UInt64(UInt(bitPattern: copy)))
        c.w1 = UInt64(n)
        return c
    }

    /// Frees what the cell owns (heap bytes, a message and its handle references).
    func release() {
        switch Tag(rawValue: tag) {
        case .heapString:
            free(UnsafeMutableRawPointer(bitPattern: UInt(w0)))
        case .message:
            if let m = UnsafeMutableRawPointer(bitPattern: UInt(w0)) {
                Message.free(m.assumingMemoryBound(to: Message.self))
            }
        default:
            break
        }
    }
}
