// Ring (Support/Ring.swift), the buffer under channels, the pool's queue and inboxes.
import Testing
@testable import LJAsync

@Suite struct RingTests {
    /// FIFO order survives growth while the ring is wrapped, batch pushes and removeFirst.
    @Test func keepsOrderAcrossWrapAndGrowth() {
        var r = Ring<Int>(capacity: 8)
        defer { r.free() }
        var next = 0, expect = 0
        for _ in 0..<6 { r.push(next); next += 1 }
        for _ in 0..<5 { #expect(r.popFirst() == expect); expect += 1 }   // head near the end
        let batch = Array(next..<(next + 20))
        batch.withUnsafeBufferPointer { r.push(contentsOf: $0.baseAddress!, count: $0.count) }
        next += 20
        #expect(r.capacity == 32)
        #expect(r.count == 21)
        for i in 0..<r.count { #expect(r[i] == expect + i) }
        r.removeFirst(3); expect += 3
        while let v = r.popFirst() { #expect(v == expect); expect += 1 }
        #expect(expect == next)
    }

    @Test func shrinksWhenEmptyOnly() {
        var r = Ring<Int>(capacity: 8)
        defer { r.free() }
        for i in 0..<100 { r.push(i) }
        #expect(r.capacity == 128)
        r.removeFirst(100)
        r.shrink(to: 8)
        #expect(r.capacity == 8)
        r.push(7)
        #expect(r.popFirst() == 7)
    }

    @Test func removeAllDropsWhatThePredicateSays() {
        var r = Ring<Int>(capacity: 8)
        defer { r.free() }
        for i in 0..<10 { r.push(i) }
        #expect(r.removeAll(where: { $0 % 2 == 0 }) == 5)
        #expect((0..<r.count).map { r[$0] } == [1, 3, 5, 7, 9])
    }
}
