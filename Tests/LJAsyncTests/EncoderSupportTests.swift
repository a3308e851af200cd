// The encoder's native help: the checksum catches small corruptions; the address set of the scan.
import Testing
@testable import LJAsync

@Suite struct ChecksumTests {
    func bytes(_ n: Int, seed: UInt64) -> [UInt8] {
        var x = seed | 1
        return (0..<n).map { _ in
            x ^= x << 13; x ^= x >> 7; x ^= x << 17
            return UInt8(truncatingIfNeeded: x)
        }
    }

    func sum(_ b: [UInt8], seed: UInt32 = 7) -> UInt32 {
        b.withUnsafeBytes { Checksum.of($0.baseAddress ?? UnsafeRawPointer(bitPattern: 1)!, count: b.count, seed: seed) }
    }

    /// The checksum as the format defines it, word by word (Checksum.of folds whole blocks in lanes).
    func wordByWord(_ b: [UInt8], seed: UInt32) -> UInt32 {
        var s1 = UInt64(seed) ^ 0x243F_6A88_85A3_08D3, s2 = UInt64(b.count)
        var i = 0
        while i + 8 <= b.count {
            var w: UInt64 = 0
            for k in 0..<8 { w |= UInt64(b[i + k]) << (8 * UInt64(k)) }
            s1 &+= w; s2 &+= s1
            i += 8
        }
        var tail: UInt64 = 0
        for k in i..<b.count { tail |= UInt64(b[k]) << (8 * UInt64(k - i)) }
        s1 &+= tail; s2 &+= s1
        let h = Checksum.mix(Checksum.mix(s1) ^ s2)
        return UInt32(truncatingIfNeeded: h ^ (h >> 32))
    }

    @Test func isTheWordByWordSum() {
        for n in Array(0...300) + [319, 320, 383, 511, 512, 1031, 4109, 100_000] {  // both sides of 256
            let b = bytes(n, seed: UInt64(n) &* 31 + 5)
            for seed: UInt32 in [0, 7, 0x2545_f491, .max] {
                #expect(sum(b, seed: seed) == wordByWord(b, seed: seed), "length \(n), seed \(seed)")
            }
            // Unaligned starts too.
            if n > 3 {
                let odd = b.withUnsafeBytes { Checksum.of($0.baseAddress! + 3, count: n - 3, seed: 7) }
                #expect(odd == wordByWord(Array(b[3...]), seed: 7), "length \(n - 3) from an odd address")
            }
        }
    }

    @Test func everySingleBitFlipChangesIt() {
        for n in [0, 1, 7, 8, 9, 31, 32, 33, 66, 100, 257] {
            let b = bytes(n, seed: UInt64(n) + 1)
            let base = sum(b)
            for i in 0..<n {
                for bit in 0..<8 {
                    var c = b
                    c[i] ^= UInt8(1 << bit)
                    #expect(sum(c) != base, "length \(n), byte \(i), bit \(bit)")
                }
            }
        }
    }

    @Test func truncationsAndTheSeedChangeIt() {
        let b = bytes(100, seed: 3)
        let full = sum(b)
        for n in 0..<100 { #expect(sum(Array(b[0..<n])) != full) }
        #expect(sum(b, seed: 8) != full)
    }

    @Test func flipsInTwoPlacesChangeIt() {
        let b = bytes(80, seed: 11)
        let base = sum(b)
        for i in stride(from: 0, to: 80, by: 3) {
            for j in stride(from: i + 1, to: 80, by: 5) {
                var c = b
                c[i] ^= 0x10
                c[j] ^= 0x10
                #expect(sum(c) != base, "bytes \(i) and \(j)")
            }
        }
    }
}

@Suite struct AddressSetTests {
    @Test func insertsOnceAndGrowsBeyondTheLentMemory() {
        let lent = UnsafeMutablePointer<UInt64>.allocate(capacity: 1 + 64)
        lent.initialize(repeating: 0, count: 1 + 64)
        defer { lent.deallocate() }
        var set = AddressSet(lent: lent, capacity: 64)
        var added = 0, again = 0
        for i in 1...1000 where set.insert(UInt64(i) * 64) { added += 1 }
        for i in 1...1000 where set.insert(UInt64(i) * 64) { again += 1 }
        #expect(added == 1000)
        #expect(again == 0)
        #expect(set.count == 1000)
        set.free()
    }

    @Test func earlierScansLeaveNothingBehind() {
        let lent = UnsafeMutablePointer<UInt64>.allocate(capacity: 1 + 64)
        lent.initialize(repeating: 0, count: 1 + 64)
        defer { lent.deallocate() }
        // More scans than the 16-bit tag can tell apart: the memory is cleared when it wraps.
        var wrong = 0
        for _ in 0..<70_000 {
            var set = AddressSet(lent: lent, capacity: 64)
            let a = set.insert(0x1000), b = set.insert(0x2000), c = set.insert(0x1000)
            if !(a && b && !c) { wrong += 1 }
            set.free()
        }
        #expect(wrong == 0)
    }
}
