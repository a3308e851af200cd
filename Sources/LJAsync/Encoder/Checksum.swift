// A fast 32-bit checksum that lets the decoder refuse corrupted encodings before reading them.

/// Not cryptographic: it catches accidental corruption (truncation, flipped bytes), which
/// string.buffer's decoder and LuaJIT's bytecode loader must never see (some malformed inputs
/// crash LuaJIT 2.1 releases before 2023-08 when the decode runs on a trace). A MiB takes
/// about 25 microseconds.
/// Thread-safety: a pure function of the bytes; any thread.
enum Checksum {
    // Fletcher-style: a running sum s1 of 8-byte words and a sum s2 of those sums, so a change
    // anywhere moves the result, and where it happened matters.
    static func of(_ p: UnsafeRawPointer, count n: Int, seed: UInt32) -> UInt32 {
        let s1 = UInt64(seed) ^ 0x243F_6A88_85A3_08D3
        if n >= 256 { return big(p, count: n, s1) }
        return words(p, count: n, from: 0, s1, UInt64(n))
    }

    /// Big inputs: whole 64-byte blocks go through eight lanes (lane j: words 8b + j) with two
    /// sums each, folded in after the last block: the same s1 and s2 (mod 2^64) as word by
    /// word, without its dependency chain (SSE2 vectors: 2.1x faster on 1 MiB). Below 256
    /// bytes the fold costs more than it saves, and small messages keep the plain loop to
    /// themselves (this inlined there cost them 1-2 ns). With B blocks, N = 8B words,
    /// a_j = sum of w(8b+j), c_j = sum of (B-1-b) w(8b+j): word 8b + j is in
    /// N - (8b + j) = 8(B-1-b) + 8 - j of the running sums, so
    /// s2 += N s1 + 8 sum(c) + sum((8 - j) a_j). EncoderSupportTests compares the result with
    /// the word-by-word definition.
    @inline(never)
    static func big(_ p: UnsafeRawPointer, count n: Int, _ s1: UInt64) -> UInt32 {
        let blocks = n / 64
        var a = SIMD8<UInt64>(repeating: 0), c = SIMD8<UInt64>(repeating: 0)
        var i = 0
        while i + 64 <= n {
            c &+= a
            a &+= p.loadUnaligned(fromByteOffset: i, as: SIMD8<UInt64>.self)
            i += 64
        }
        let weights = SIMD8<UInt64>(8, 7, 6, 5, 4, 3, 2, 1)
        let s2 = UInt64(n) &+ UInt64(blocks) &* 8 &* s1 &+ 8 &* c.wrappedSum() &+ (a &* weights).wrappedSum()
        return words(p, count: n, from: i, s1 &+ a.wrappedSum(), s2)
    }

    /// The words from byte `i` on, then the last partial word (zero-padded, always added), and
    /// the final mix.
    @inline(__always)
    static func words(_ p: UnsafeRawPointer, count n: Int, from start: Int, _ sum1: UInt64, _ sum2: UInt64) -> UInt32 {
        var s1 = sum1, s2 = sum2, i = start
        // One add per word on the critical path.
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
        // The last n - i < 8 bytes as the low bytes of a word: the top bytes of the word that
        // ends the input (one load instead of a loop), or byte by byte when n < 8.
        var tail: UInt64 = 0
        let rem = n &- i
        if rem > 0 && n >= 8 {
            tail = p.loadUnaligned(fromByteOffset: n &- 8, as: UInt64.self) &>> UInt64(64 &- 8 &* rem)
        } else {
            var shift: UInt64 = 0
            while i < n {
                tail |= UInt64(p.load(fromByteOffset: i, as: UInt8.self)) << shift
                shift += 8
                i += 1
            }
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
