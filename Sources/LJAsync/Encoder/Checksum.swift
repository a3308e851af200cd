// A fast 32-bit checksum that lets the decoder refuse corrupted encodings before reading them.

/// Not cryptographic: it catches accidental corruption (truncation, flipped bytes), which
/// string.buffer's decoder and LuaJIT's bytecode loader must never see (some malformed inputs
/// crash LuaJIT 2.1 releases before 2023-08 when the decode runs on a trace). A MiB takes
/// about 50 microseconds.
/// Thread-safety: a pure function of the bytes; any thread.
enum Checksum {
    static func of(_ p: UnsafeRawPointer, count n: Int, seed: UInt32) -> UInt32 {
        // Fletcher-style: a running sum of 8-byte words and a sum of those sums, so a change
        // anywhere moves the result, and where it happened matters. One add per word on the
        // critical path: several GB/s.
        var s1 = UInt64(seed) ^ 0x243F_6A88_85A3_08D3
        var s2 = UInt64(n)
        var i = 0
        while i + 32 <= n {
            s1 &+= p.loadUnaligned(fromByteOffset: i, as: UInt64.self); s2 &+= s1
            s1 &+= p.loadUnaligned(fromByteOffset: i + 8, as: UInt64.self); s2 &+= s1
            s1 &+= p.loadUnaligned(fromByteOffset: i + 16, as: UInt64.self); s2 &+= s1
            s1 &+= p.loadUnaligned(fromByteOffset: i + 24, as: UInt64.self); s2 &+= s1
            i += 32
        }
        while i + 8 <= n {
            s1 &+= p.loadUnaligned(fromByteOffset: i, as: UInt64.self); s2 &+= s1
            i += 8
        }
        var tail: UInt64 = 0
        var shift: UInt64 = 0
        while i < n {
            tail |= UInt64(p.load(fromByteOffset: i, as: UInt8.self)) << shift
            shift += 8
            i += 1
        }
        s1 &+= tail; s2 &+= s1
        // Both sums go through a full avalanche: a change confined to a few high bits of a
        // sum (a flipped top byte) must still move every bit of the result.
        let h = mix(mix(s1) ^ s2)
        return UInt32(truncatingIfNeeded: h ^ (h >> 32))
    }

    /// MurmurHash3's 64-bit finalizer: each input bit flips about half of the output bits.
    @inline(__always)
    static func mix(_ x: UInt64) -> UInt64 {
        var h = x
        h ^= h >> 33
        h = h &* 0xFF51_AFD7_ED55_8CCD
        h ^= h >> 33
        h = h &* 0xC4CE_B9FE_1A85_EC53
        h ^= h >> 33
        return h
    }
}
