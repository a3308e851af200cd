// A keyed hash that tells bytecode this process dumped from bytecode found in forged bytes.

/// LuaJIT loads bytecode without verifying it: forged bytecode can read and write any memory.
/// The encoder writes this mark after each function's bytecode, and decoding bytes from
/// elsewhere (a string: see docs/encoder.md) loads a function only when the mark matches, so
/// only bytecode that this process's encoder wrote is loaded. The key is random per process,
/// drawn once; the hash is SipHash (Swift's `Hasher`, fed the key first, so its own per-process
/// seed is not relied on). Not a signature for other processes: their functions are refused.
/// Thread-safety: the key is initialized once (Swift globals are lazily, atomically set up);
/// `of` is a pure function of the key and the bytes; any thread.
enum BytecodeMark {
    static let key: (UInt64, UInt64) = {
        var g = SystemRandomNumberGenerator()
        return (g.next(), g.next())
    }()

    static func of(_ p: UnsafeRawPointer, count n: Int) -> UInt64 {
        var h = Hasher()
        h.combine(key.0)
        h.combine(key.1)
        h.combine(bytes: UnsafeRawBufferPointer(start: p, count: n))
        return UInt64(bitPattern: Int64(h.finalize()))
    }
}
