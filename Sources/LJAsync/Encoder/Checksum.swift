// A fast 32-bit checksum that lets the decoder refuse corrupted encodings before reading them.

/// Not cryptographic: it catches accidental corruption (truncation, flipped bytes), which
/// string.buffer's decoder and LuaJIT's bytecode loader must never see (some malformed inputs
/// crash LuaJIT 2.1 releases before 2023-08 when the decode runs on a trace). Four independent
/// multiply-rotate lanes over 8-byte words, so a MiB takes tens of microseconds.
/// Thread-safety: a pure function of the bytes; any thread.
enum Checksum {
    static func of(_ p: UnsafeRawPointer, count n: Int, seed: UInt32) -> UInt32 {
        let k: UInt64 = 0x9E37_79B9_7F4A_7C15
        var a = UInt64(seed) ^ 0x243F_6A88_85A3_08D3, b = UInt64(seed) ^ 0x1319_8A2E_0370_7344
        var c = UInt64(seed) ^ 0xA409_3822_299F_31D0, d = UInt64(seed) ^ 0x082E_FA98_EC4E_6C89
        @inline(__always) func mix(_ h: UInt64, _ w: UInt64) -> UInt64 {
            let x = (h ^ w) &* k
            return (x << 29) | (x >> 35)
        }
        var i = 0
        while i + 32 <= n {
            a = mix(a, p.loadUnaligned(fromByteOffset: i, as: UInt64.self))
            b = mix(b, p.loadUnaligned(fromByteOffset: i + 8, as: UInt64.self))
            c = mix(c, p.loadUnaligned(fromByteOffset: i + 16, as: UInt64.self))
            d = mix(d, p.loadUnaligned(fromByteOffset: i + 24, as: UInt64.self))
            i += 32
        }
        while i + 8 <= n {
            a = mix(a, p.loadUnaligned(fromByteOffset: i, as: UInt64.self))
            i += 8
        }
        var tail: UInt64 = 0
        var shift: UInt64 = 0
        while i < n {
            tail |= UInt64(p.load(fromByteOffset: i, as: UInt8.self)) << shift
            shift += 8
            i += 1
        }
        var h = mix(mix(mix(mix(a, b), c), d), tail ^ UInt64(n))
        h ^= h >> 33
        h = h &* 0xFF51_AFD7_ED55_8CCD
        h ^= h >> 33
        return UInt32(truncatingIfNeeded: h ^ (h >> 32))
    }
}
