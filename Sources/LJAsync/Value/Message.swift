// An encoded Lua value list in native memory, owning references to the shared objects it carries.
import Glibc

/// The bytes of values encoded by lua/lj-async/encoder.lua, on their way between states.
///
/// Layout: byte 0 is the format tag. When its bit 0x80 is set, bytes 1...4 hold a
/// little-endian count n and then n 8-byte addresses of SharedObjects follow (the handle
/// table); the encoder's payload comes after. The message owns one reference per entry and
/// releases them when freed, so a message dropped undecoded (a channel closed with values in
/// it) leaks nothing. Decoding takes references of its own.
///
/// Trust: the handle table is believed (its addresses are retained and released) because only
/// this process's encoder makes messages; `ljasync_message_new` is for bytes it just encoded.
/// Byte strings from elsewhere never reach a state's handle table: the encoder's `decode`
/// refuses a string that has one (docs/encoder.md, "Bytes from elsewhere").
///
/// Lifetime: one owner at a time (a queue, then the state that popped it); `free` once.
/// Thread-safety: immutable after creation; moving it between threads needs no lock.
struct Message {
    static let hasHandles: UInt8 = 0x80

    let bytes: UnsafeMutableRawPointer
    let count: Int

    /// Copies `len` bytes; the handles listed in them were retained by the encoder.
    /// One allocation holds both the struct and the bytes (messages are made per job).
    static func create(_ src: UnsafeRawPointer, _ len: Int) -> UnsafeMutablePointer<Message> {
        let header = MemoryLayout<Message>.stride
        let raw = malloc(header + max(len, 1))!
        let bytes = raw + header
        memcpy(bytes, src, len)
        let m = raw.bindMemory(to: Message.self, capacity: 1)
        m.initialize(to: Message(bytes: bytes, count: len))
        return m
    }

    /// The handle addresses listed at the front, if well formed (never reads out of bounds).
    var handles: [UnsafeRawPointer] {
        guard count >= 5, bytes.load(as: UInt8.self) & Message.hasHandles != 0 else { return [] }
        let n = Int(UInt32(littleEndian: bytes.loadUnaligned(fromByteOffset: 1, as: UInt32.self)))
        guard n <= (count - 5) / 8 else { return [] }
        return (0..<n).compactMap { i in
            UnsafeRawPointer(bitPattern: UInt(bytes.loadUnaligned(fromByteOffset: 5 + 8 * i, as: UInt64.self)))
        }
    }

    static func free(_ m: UnsafeMutablePointer<Message>) {
        for h in m.pointee.handles { Unmanaged<SharedObject>.fromOpaque(h).release() }
        m.deinitialize(count: 1)
        Glibc.free(UnsafeMutableRawPointer(m))
    }
}
