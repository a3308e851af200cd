// The channel and mutex mechanisms, driven from Swift threads without Lua.
import CLJAsync
import Glibc
import Synchronization
import Testing
@testable import LJAsync

/// Runs `body(i)` for i in 0..<n, each on its own pthread, and waits for all of them (the
/// test target's one copy).
func onThreads(_ n: Int, _ body: @escaping @Sendable (Int) -> Void) {
    final class Job: @unchecked Sendable {
        let run: () -> Void
        init(_ run: @escaping () -> Void) { self.run = run }
    }
    var tids: [pthread_t] = []
    for i in 0..<n {
        var tid = pthread_t()
        let job = Unmanaged.passRetained(Job { body(i) }).toOpaque()
        let rc = pthread_create(&tid, nil, { arg in
            Unmanaged<Job>.fromOpaque(arg!).takeRetainedValue().run()
            return nil
        }, job)
        precondition(rc == 0)
        tids.append(tid)
    }
    for t in tids { pthread_join(t, nil) }
}

private func seconds(_ body: () -> Void) -> Double {
    let t0 = Clock.nanoseconds()
    body()
    return Double(Clock.nanoseconds() - t0) / 1e9
}

func popOne(_ ch: Channel, timeout: Double) -> (Channel.Status, ChannelCell?) {
    let out = UnsafeMutablePointer<ChannelCell>.allocate(capacity: 1)
    defer { out.deallocate() }
    let (st, n) = ch.pop(into: out, max: 1, timeout: timeout)
    return (st, n == 1 ? out.pointee : nil)
}

func number(_ c: ChannelCell?) -> Double? {
    guard let c, c.tag == LJASYNC_CELL_NUMBER.rawValue else { return nil }
    return Double(bitPattern: c.w0)
}

/// `producers` threads push `value(i, k)` for k in 1...perProducer through `push` (retried
/// while it returns false; the last producer closes the channel); as many consumers drain it
/// through `pop` (consumer index, a 3-cell buffer; status and count) until closed. Returns how
/// many values were popped and the sum of their integer values.
private func produceAndConsume(
    _ channel: Channel, producers: Int, perProducer: Int,
    value: @escaping @Sendable (Int, Int) -> Double,
    push: @escaping @Sendable (Channel, ChannelCell) -> Bool,
    pop: @escaping @Sendable (Channel, Int, UnsafeMutablePointer<ChannelCell>) -> (Channel.Status, Int)
) -> (count: Int, sum: Int) {
    let ch = UncheckedBox(channel)
    let count = Atomic<Int>(0)
    let sum = Atomic<Int>(0)
    let done = Atomic<Int>(0)
    onThreads(producers * 2) { i in
        if i < producers {
            var k = 1
            while k <= perProducer {
                if push(ch.value, .number(value(i, k))) { k += 1 }
            }
            if done.add(1, ordering: .acquiringAndReleasing).newValue == producers { ch.value.close() }
        } else {
            let out = UnsafeMutablePointer<ChannelCell>.allocate(capacity: 3)
            defer { out.deallocate() }
            while true {
                let (st, n) = pop(ch.value, i, out)
                if st == .closed { break }
                for j in 0..<n {
                    count.add(1, ordering: .relaxed)
                    sum.add(Int(number(out[j])!), ordering: .relaxed)
                }
            }
        }
    }
    return (count.load(ordering: .relaxed), sum.load(ordering: .relaxed))
}

@Suite struct ChannelTests {
    @Test func fifoAndGrowth() {
        let ch = Channel(capacity: 0)
        for i in 0..<1000 { #expect(ch.push(.number(Double(i)), timeout: 0) == .ok) }
        #expect(ch.length == 1000)
        for i in 0..<1000 { #expect(number(popOne(ch, timeout: 0).1) == Double(i)) }
        #expect(popOne(ch, timeout: 0).0 == .fullOrEmpty)
    }

    @Test func stringsInlineAndOnTheHeap() {
        let ch = Channel(capacity: 0)
        let short = Array("twenty-four bytes exactl".utf8)
        let long = Array(repeating: UInt8(ascii: "z"), count: 100)
        for s in [short, long] {
            let cell = s.withUnsafeBytes { ChannelCell.string($0.baseAddress, $0.count)! }
            #expect(ch.push(cell, timeout: 0) == .ok)
        }
        let a = popOne(ch, timeout: 0).1!
        #expect(a.tag == LJASYNC_CELL_SHORT.rawValue && a.len == 24)
        let b = popOne(ch, timeout: 0).1!
        #expect(b.tag == LJASYNC_CELL_HEAP.rawValue && b.w1 == 100)
        let bytes = UnsafeRawPointer(bitPattern: UInt(b.w0))!
        #expect(Array(UnsafeRawBufferPointer(start: bytes, count: 100)) == long)
        b.release()
    }

    @Test func boundedRefusesWhenFullAndHonoursTheTimeout() {
        let ch = Channel(capacity: 2)
        #expect(ch.push(.number(1), timeout: 0) == .ok)
        #expect(ch.push(.number(2), timeout: 0) == .ok)
        #expect(ch.push(.number(3), timeout: 0) == .fullOrEmpty)
        var st = Channel.Status.ok
        let t = seconds { st = ch.push(.number(3), timeout: 0.1) }
        #expect(st == .fullOrEmpty)
        #expect(t >= 0.09 && t < 2)
        #expect(ch.capacity == 2)
    }

    @Test func popTimesOutWhenEmpty() {
        let ch = Channel(capacity: 0)
        var st = Channel.Status.ok
        let t = seconds { st = popOne(ch, timeout: 0.1).0 }
        #expect(st == .fullOrEmpty)
        #expect(t >= 0.09 && t < 2)
    }

    @Test func closeWakesBlockedPoppersAndDrains() {
        let ch = Channel(capacity: 0)
        let closedSeen = Atomic<Int>(0)
        let c = UncheckedBox(ch)
        onThreads(4) { i in
            if i == 0 {
                // Wait until the three poppers sleep, then close.
                while c.value.waiters < 3 { usleep(1000) }
                c.value.close()
            } else if popOne(c.value, timeout: -1).0 == .closed {
                closedSeen.add(1, ordering: .relaxed)
            }
        }
        #expect(closedSeen.load(ordering: .relaxed) == 3)
        #expect(ch.push(.number(1), timeout: 0) == .closed)
    }

    @Test func closeKeepsQueuedValuesPoppable() {
        let ch = Channel(capacity: 1)
        #expect(ch.push(.number(7), timeout: 0) == .ok)
        ch.close()
        #expect(ch.isClosed)
        #expect(number(popOne(ch, timeout: -1).1) == 7)
        #expect(popOne(ch, timeout: -1).0 == .closed)
    }

    @Test func batchesMoveInOrderAndStopAtAMessage() {
        let ch = Channel(capacity: 0)
        let cells = UnsafeMutablePointer<ChannelCell>.allocate(capacity: 8)
        defer { cells.deallocate() }
        for i in 0..<5 { cells[i] = .number(Double(i)) }
        let (st, taken) = ch.pushMany(cells, 5, timeout: 0)
        #expect(st == .ok && taken == 5)
        var byte: UInt8 = 1
        let m = Message.create(&byte, 1)
        #expect(ch.push(.message(UnsafeMutableRawPointer(m)), timeout: 0) == .ok)
        #expect(ch.push(.number(5), timeout: 0) == .ok)
        var (st2, n) = ch.pop(into: cells, max: 8, timeout: 0)
        #expect(st2 == .ok && n == 5)
        (st2, n) = ch.pop(into: cells, max: 8, timeout: 0)
        #expect(n == 1 && cells[0].tag == LJASYNC_CELL_MESSAGE.rawValue)
        cells[0].release()
        (st2, n) = ch.pop(into: cells, max: 8, timeout: 0)
        #expect(n == 1 && number(cells[0]) == 5)
    }

    @Test func manyProducersAndConsumersDeliverEachValueOnce() {
        let producers = 4, perProducer = 20000
        let (count, sum) = produceAndConsume(Channel(capacity: 64), producers: producers, perProducer: perProducer,
            value: { i, k in Double(i * 1_000_000 + k) },
            push: { ch, cell in precondition(ch.push(cell, timeout: -1) == .ok); return true },
            pop: { ch, _, out in
                let (st, c) = popOne(ch, timeout: -1)
                if let c { out[0] = c }
                return (st, c == nil ? 0 : 1)
            })
        let perSum = perProducer * (perProducer + 1) / 2
        let expected = (0..<producers).reduce(0) { $0 + $1 * 1_000_000 * perProducer + perSum }
        #expect(count == producers * perProducer)
        #expect(sum == expected)
    }

    /// A tiny ring makes every push and pop a full/empty transition; short timeouts make
    /// timed-out waits race with wakeups. Nothing may be lost or stranded.
    @Test func tinyRingWithTimeoutsLosesNothing() {
        let producers = 4, perProducer = 5000
        let (count, sum) = produceAndConsume(Channel(capacity: 2), producers: producers, perProducer: perProducer,
            value: { _, k in Double(k) },
            push: { ch, cell in ch.push(cell, timeout: 0.0005) == .ok },
            pop: { ch, i, out in ch.pop(into: out, max: i % 2 == 0 ? 1 : 3, timeout: 0.0005) })
        #expect(count == producers * perProducer)
        #expect(sum == producers * perProducer * (perProducer + 1) / 2)
    }

    @Test func droppingAChannelFreesWhatItHolds() {
        weak var mutex: SharedMutex?
        weak var channel: Channel?
        do {
            let ch = Channel(capacity: 0)
            channel = ch
            let m = SharedMutex()
            mutex = m
            // A message carrying a handle to the mutex owns the only reference left.
            let ref = m.retainedPointer()
            var bytes: [UInt8] = [0x81, 1, 0, 0, 0]
            withUnsafeBytes(of: UInt64(UInt(bitPattern: ref)).littleEndian) { bytes += $0 }
            let msg = bytes.withUnsafeBytes { Message.create($0.baseAddress!, $0.count) }
            #expect(ch.push(.message(UnsafeMutableRawPointer(msg)), timeout: 0) == .ok)
        }
        #expect(channel == nil)
        #expect(mutex == nil)
    }
}

@Suite struct SharedMutexTests {
    @Test func lockUnlockAndMisuse() {
        let m = SharedMutex()
        #expect(m.lock(timeout: -1) == .ok)
        #expect(m.heldByMe)
        #expect(m.lock(timeout: -1) == .deadlock)
        #expect(m.unlock() == .ok)
        #expect(m.unlock() == .notOwner)
        #expect(m.lock(timeout: 0) == .ok)
        #expect(m.unlock() == .ok)
    }

    @Test func anotherThreadCannotUnlockAndTimesOut() {
        let m = UncheckedBox(SharedMutex())
        #expect(m.value.lock(timeout: -1) == .ok)
        let results = UncheckedBox(UnsafeMutablePointer<SharedMutex.Status>.allocate(capacity: 3))
        let elapsed = UncheckedBox(UnsafeMutablePointer<Double>.allocate(capacity: 1))
        onThreads(1) { _ in
            results.value[0] = m.value.unlock()
            results.value[1] = m.value.lock(timeout: 0)
            elapsed.value.pointee = seconds { results.value[2] = m.value.lock(timeout: 0.1) }
        }
        #expect(results.value[0] == .notOwner)
        #expect(results.value[1] == .timeout)
        #expect(results.value[2] == .timeout)
        #expect(elapsed.value.pointee >= 0.09 && elapsed.value.pointee < 2)
        #expect(m.value.unlock() == .ok)
        results.value.deallocate()
        elapsed.value.deallocate()
    }

    @Test func excludesAcrossThreads() {
        let m = UncheckedBox(SharedMutex())
        let counter = UncheckedBox(UnsafeMutablePointer<Int>.allocate(capacity: 1))
        counter.value.pointee = 0
        onThreads(4) { _ in
            for _ in 0..<10000 {
                precondition(m.value.lock(timeout: -1) == .ok)
                counter.value.pointee += 1
                precondition(m.value.unlock() == .ok)
            }
        }
        #expect(counter.value.pointee == 40000)
        counter.value.deallocate()
    }

    @Test func conditionWaitReleasesAndRelocks() {
        let m = SharedMutex(), c = SharedCondition()
        #expect(c.wait(m, timeout: 0.05) == .notOwner)
        #expect(m.lock(timeout: -1) == .ok)
        #expect(c.wait(m, timeout: 0.05) == .timeout)
        #expect(m.heldByMe)
        #expect(m.unlock() == .ok)
    }
}

/// Carries a non-Sendable reference into a test thread (the tests synchronize by joining).
struct UncheckedBox<T>: @unchecked Sendable {
    let value: T
    init(_ value: T) { self.value = value }
}
