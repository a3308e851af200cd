// The lock-free ring under a bounded channel (Sync/CellRing.swift, Sync/Channel+Ring.swift):
// exact capacities, wrap-around, messages in batches, close racing pushes, lost wake-ups.
import CLJAsync
import Glibc
import Synchronization
import Testing
@testable import LJAsync

/// Producer `p`'s k-th value, and back.
private func tagged(_ p: Int, _ k: Int) -> ChannelCell { .number(Double(p * 1_000_000 + k)) }
private func untag(_ c: ChannelCell) -> (Int, Int) {
    let v = Int(number(c)!)
    return (v / 1_000_000, v % 1_000_000)
}

@Suite struct CellRingTests {
    @Test func boundedChannelsUpToRingMaxTakeTheRing() {
        #expect(Channel(capacity: 1).ring != nil)
        #expect(Channel(capacity: Channel.ringMax).ring != nil)
        #expect(Channel(capacity: Channel.ringMax + 1).ring == nil)
        #expect(Channel(capacity: 0).ring == nil)
    }

    /// The ring rounds up to a power of two; the capacity must still hold exactly, for single
    /// pushes and batches, on every lap.
    @Test func aCapacityThatIsNotAPowerOfTwoIsExact() {
        let cells = UnsafeMutablePointer<ChannelCell>.allocate(capacity: 128)
        defer { cells.deallocate() }
        for cap in [1, 2, 3, 5, 6, 7, 100] {
            let ch = Channel(capacity: cap)
            var next = 0, expect = 0
            for _ in 0..<3 {   // three laps and more
                for _ in 0..<cap {
                    #expect(ch.push(.number(Double(next)), timeout: 0) == .ok)
                    next += 1
                }
                #expect(ch.push(.number(-1), timeout: 0) == .fullOrEmpty, "capacity \(cap)")
                #expect(ch.length == cap)
                #expect(number(popOne(ch, timeout: 0).1) == Double(expect))
                expect += 1
                #expect(ch.push(.number(Double(next)), timeout: 0) == .ok)
                next += 1
                #expect(ch.push(.number(-1), timeout: 0) == .fullOrEmpty, "capacity \(cap)")
                for _ in 0..<cap {
                    #expect(number(popOne(ch, timeout: 0).1) == Double(expect))
                    expect += 1
                }
                #expect(popOne(ch, timeout: 0).0 == .fullOrEmpty)
            }
            for i in 0..<(cap + 5) { cells[i] = .number(Double(i)) }
            let (st, taken) = ch.pushMany(cells, cap + 5, timeout: 0)
            #expect(st == .ok && taken == cap, "capacity \(cap)")
            #expect(ch.pushMany(cells, 1, timeout: 0).0 == .fullOrEmpty)
            let (st2, n) = ch.pop(into: cells, max: 128, timeout: 0)
            #expect(st2 == .ok && n == cap)
            for i in 0..<n { #expect(number(cells[i]) == Double(i)) }
        }
    }

    /// Batches that cross the end of the ring's array, and messages among them: a message
    /// always pops alone, the rest in order, before and after it.
    @Test func batchesWrapAroundAndMessagesPopAlone() {
        let ch = Channel(capacity: 8)
        let cells = UnsafeMutablePointer<ChannelCell>.allocate(capacity: 16)
        defer { cells.deallocate() }
        for i in 0..<5 { #expect(ch.push(.number(Double(i)), timeout: 0) == .ok) }
        #expect(ch.pop(into: cells, max: 16, timeout: 0).1 == 5)
        for i in 0..<8 { cells[i] = .number(Double(100 + i)) }
        #expect(ch.pushMany(cells, 8, timeout: 0) == (.ok, 8))
        var (st, n) = ch.pop(into: cells, max: 16, timeout: 0)
        #expect(st == .ok && n == 8)
        for i in 0..<8 { #expect(number(cells[i]) == Double(100 + i)) }
        // 3 numbers, a message, 2 numbers, across the wrap.
        var byte: UInt8 = 7
        for i in 0..<3 { #expect(ch.push(.number(Double(i)), timeout: 0) == .ok) }
        #expect(ch.push(.message(UnsafeMutableRawPointer(Message.create(&byte, 1))), timeout: 0) == .ok)
        for i in 3..<5 { #expect(ch.push(.number(Double(i)), timeout: 0) == .ok) }
        (st, n) = ch.pop(into: cells, max: 16, timeout: 0)
        #expect(n == 3 && number(cells[2]) == 2)
        (st, n) = ch.pop(into: cells, max: 16, timeout: 0)
        #expect(n == 1 && cells[0].tag == LJASYNC_CELL_MESSAGE.rawValue)
        cells[0].release()
        (st, n) = ch.pop(into: cells, max: 16, timeout: 0)
        #expect(n == 2 && number(cells[0]) == 3 && number(cells[1]) == 4)
        #expect(ch.ring!.messages.pointee.load(ordering: .relaxed) == 0)
    }

    /// Producers and consumers, singly and in batches of several sizes, on a ring smaller
    /// than a batch: every value once, and each producer's values in order for each consumer.
    @Test func manyProducersAndConsumersKeepEachProducersOrder() {
        let ch = UncheckedBox(Channel(capacity: 5))
        let producers = 3, consumers = 3, perProducer = 30000
        let popped = Atomic<Int>(0), sum = Atomic<Int>(0), disorder = Atomic<Int>(0)
        let finished = Atomic<Int>(0)
        onThreads(producers + consumers) { i in
            let cells = UnsafeMutablePointer<ChannelCell>.allocate(capacity: 8)
            defer { cells.deallocate() }
            if i < producers {
                var k = 1
                while k <= perProducer {
                    let want = min(1 + (k % 7), perProducer - k + 1)
                    for j in 0..<want { cells[j] = tagged(i, k + j) }
                    let (st, n) = want == 1 ? (ch.value.push(cells[0], timeout: -1), 1) : ch.value.pushMany(cells, want, timeout: -1)
                    precondition(st == .ok)
                    k += n
                }
                if finished.add(1, ordering: .acquiringAndReleasing).newValue == producers { ch.value.close() }
            } else {
                var last = [Int](repeating: 0, count: producers)
                while true {
                    let (st, n) = ch.value.pop(into: cells, max: 1 + i % 4, timeout: -1)
                    if st == .closed { break }
                    for j in 0..<n {
                        let (p, k) = untag(cells[j])
                        if k <= last[p] { disorder.add(1, ordering: .relaxed) }
                        last[p] = k
                        popped.add(1, ordering: .relaxed)
                        sum.add(k, ordering: .relaxed)
                    }
                }
            }
        }
        #expect(disorder.load(ordering: .relaxed) == 0)
        #expect(popped.load(ordering: .relaxed) == producers * perProducer)
        #expect(sum.load(ordering: .relaxed) == producers * perProducer * (perProducer + 1) / 2)
    }

    /// Close while pushes are under way: every push that said `.ok` is popped before a pop
    /// says `.closed` (a value claimed before the close is waited for, not dropped).
    @Test func pushesRacingACloseAreAllDelivered() {
        for _ in 0..<20 {
            let ch = UncheckedBox(Channel(capacity: 16))
            let pushed = Atomic<Int>(0), popped = Atomic<Int>(0)
            onThreads(5) { i in
                if i < 3 {
                    while ch.value.push(.number(1), timeout: -1) == .ok { pushed.add(1, ordering: .relaxed) }
                } else if i == 3 {
                    while popped.load(ordering: .relaxed) < 2000 { sched_yield() }
                    ch.value.close()
                } else {
                    while popOne(ch.value, timeout: -1).0 == .ok { popped.add(1, ordering: .relaxed) }
                }
            }
            #expect(popped.load(ordering: .relaxed) == pushed.load(ordering: .relaxed))
        }
    }

    /// Two threads pass a value back and forth through two one-slot channels, each waiting
    /// with a long timeout: a wake-up lost between "empty, I sleep" and the push would show
    /// as a wait of the whole timeout (the value is then taken by the recheck after it).
    @Test func noWakeUpIsLostBetweenAnEmptyRingAndASleep() {
        let ping = UncheckedBox(Channel(capacity: 1)), pong = UncheckedBox(Channel(capacity: 1))
        let slow = Atomic<Int>(0)
        let rounds = 20000, timeout = 3.0
        onThreads(2) { i in
            let (from, to) = i == 0 ? (pong.value, ping.value) : (ping.value, pong.value)
            for r in 0..<rounds {
                if i == 0 { precondition(to.push(.number(Double(r)), timeout: timeout) == .ok) }
                let t0 = Clock.nanoseconds()
                let (st, c) = popOne(from, timeout: timeout)
                if st != .ok || Double(Clock.nanoseconds() - t0) / 1e9 > timeout * 0.9 {
                    slow.add(1, ordering: .relaxed)
                    if st != .ok { return }
                }
                if i == 1 { precondition(to.push(c!, timeout: timeout) == .ok) }
            }
        }
        #expect(slow.load(ordering: .relaxed) == 0)
    }

    /// Two poppers asleep, then two values pushed one at a time: each value wakes a popper of
    /// its own (a wake-up counted for both sleepers but sent to one would strand the other
    /// until its timeout).
    @Test func eachValueWakesASleeperOfItsOwn() {
        for _ in 0..<5 {
            let ch = UncheckedBox(Channel(capacity: 4))
            let got = Atomic<Int>(0), pushedAt = Atomic<Int>(0)
            onThreads(3) { i in
                if i < 2 {
                    if popOne(ch.value, timeout: 10).0 == .ok { got.add(1, ordering: .relaxed) }
                } else {
                    while ch.value.waiters < 2 { usleep(1000) }
                    pushedAt.store(Int(Clock.nanoseconds()), ordering: .relaxed)
                    #expect(ch.value.push(.number(1), timeout: 0) == .ok)
                    #expect(ch.value.push(.number(2), timeout: 0) == .ok)
                }
            }
            let after = Double(Int(Clock.nanoseconds()) - pushedAt.load(ordering: .relaxed)) / 1e9
            #expect(got.load(ordering: .relaxed) == 2)
            #expect(after < 5, "a popper slept through a value for \(after) s")
        }
    }
}
