// One value in a channel: scalars and short strings inline, the rest behind one owned pointer.
import CLJAsync
import Glibc

/// A 32-byte cell: `ljasync_cell` of ljasync.h (`uint32_t tag; uint32_t len;` then 24 bytes
/// that hold a double, up to 24 string bytes, a heap string (pointer, size) or a Message pointer). Tags
/// `LJASYNC_CELL_ENCODED_SHORT` / `_HEAP` hold bytes laid out as the short and heap strings, which
/// are string.buffer's encoding of one small plain table that lj-async.sync's channel wrote (and
/// alone reads back).
///
/// Ownership: a cell with tag LJASYNC_CELL_HEAP or _ENCODED_HEAP owns its malloc'ed bytes and one with tag
/// `message` owns its Message (which owns handle references). Cells are moved, never
/// copied: whoever holds one last (the ring, a popper, the channel's deinit) calls `release`
/// or hands the pointer on (Lua frees bytes with `ljasync_channel_bytes_free` and messages
/// with `ljasync_message_free`).
typealias ChannelCell = ljasync_cell

extension ljasync_cell {
    /// The header's tags (LJASYNC_CELL_NIL...LJASYNC_CELL_MESSAGE).
    typealias Tag = ljasync_cell_tag
    static let inlineBytes = Int(LJASYNC_CELL_INLINE.rawValue)

    /// The union's three words, as the channel's ring moves them.
    @inline(__always) var w0: UInt64 { get { w.0 } set { w.0 = newValue } }
    @inline(__always) var w1: UInt64 { get { w.1 } set { w.1 = newValue } }
    @inline(__always) var w2: UInt64 { get { w.2 } set { w.2 = newValue } }

    @inline(__always) init(tag: Tag, w0: UInt64 = 0) {
        self.init()
        self.tag = tag.rawValue
        w = (w0, 0, 0)
    }

    @inline(__always) static func number(_ v: Double) -> ChannelCell { ChannelCell(tag: LJASYNC_CELL_NUMBER, w0: v.bitPattern) }

    @inline(__always) static func message(_ m: UnsafeMutableRawPointer) -> ChannelCell {
        ChannelCell(tag: LJASYNC_CELL_MESSAGE, w0: UInt64(UInt(bitPattern: m)))
    }

    /// A copy of `n` bytes at `p`: inline when short, else in fresh malloc'ed memory.
    /// nil when that memory cannot be had.
    @inline(__always) static func string(_ p: UnsafeRawPointer?, _ n: Int) -> ChannelCell? {
        if n <= inlineBytes {
            var c = ChannelCell(tag: LJASYNC_CELL_SHORT)
            c.len = UInt32(n)
            if n > 0, let p { withUnsafeMutableBytes(of: &c) { _ = memcpy($0.baseAddress! + 8, p, n) } }
            return c
        }
        guard let p, let copy = malloc(n) else { return nil }
        memcpy(copy, p, n)
        var c = ChannelCell(tag: LJASYNC_CELL_HEAP, w0: UInt64(UInt(bitPattern: copy)))
        c.w1 = UInt64(n)
        return c
    }

    /// Like `string`, for bytes that encode a value (tags LJASYNC_CELL_ENCODED_SHORT / _HEAP).
    @inline(__always) static func encoded(_ p: UnsafeRawPointer?, _ n: Int) -> ChannelCell? {
        guard var c = string(p, n) else { return nil }
        c.tag = c.tag == LJASYNC_CELL_SHORT.rawValue ? LJASYNC_CELL_ENCODED_SHORT.rawValue : LJASYNC_CELL_ENCODED_HEAP.rawValue
        return c
    }

    /// Frees what the cell owns (heap bytes, a message and its handle references).
    func release() {
        switch Tag(rawValue: tag) {
        case LJASYNC_CELL_HEAP, LJASYNC_CELL_ENCODED_HEAP:
            free(UnsafeMutableRawPointer(bitPattern: UInt(w0)))
        case LJASYNC_CELL_MESSAGE:
            if let m = UnsafeMutableRawPointer(bitPattern: UInt(w0)) {
                Message.free(m.assumingMemoryBound(to: Message.self))
            }
        default:
            break
        }
    }
}
