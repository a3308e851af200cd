// A bounded lock-free ring of channel cells: the queue of a channel with a capacity.
import CLJAsync
import Glibc
import Synchronization

/// Dmitry Vyukov's bounded MPMC queue: a power-of-two array of slots, each a sequence word
/// and a cell, and two positions that only grow (`enqueue`, `dequeue`). A producer claims
/// position p by a compare-and-swap on `enqueue`, writes the cell of slot p & mask and
/// publishes it with a release store of the slot's word; a consumer claims on `dequeue`,
/// copies the cell out and frees the slot for the next lap the same way. With one producer
/// and one consumer neither CAS is contended: each side's position is on a cache line of its
/// own, and a value moves only its slot's line between CPUs (a mutex moves the lock's line
/// and the queue's fields, both ways, for every value).
///
/// Invariants. Slot i's word for lap L (position p = L * size + i) is 4L while free for p,
/// 4L + 1 (a cell that owns no message) or 4L + 3 (a message) while p's cell is queued, and
/// 4L + 4 once it is popped: zeroed memory is the empty ring, and a popper of a batch reads
/// from the word alone whether a cell is a message (a message always pops alone). A push at
/// p also needs position p - `limit` popped, so a capacity that is not a power of two is
/// exact. A batch claims a run by the positions alone (`enqueue` - `dequeue` < `limit` for a
/// push; below `enqueue`, and no message counted in `messages`, for a pop) and then waits,
/// yielding, for any slot of the run whose other side is still copying. `enqueue` carries
/// `closedBit` once closed: no push claims after that, so the values below it are all that
/// will ever come, and a pop that meets `dequeue` == that position reports closed.
///
/// Waiting is the channel's (Channel+Ring.swift); the ring only tells it whether it may
/// sleep (`popMustWait`, `pushMustWait`: nothing claimed but unpublished on the other side).
///
/// Thread-safety: every method from any thread. Lifetime: owned by one Channel, which calls
/// `free()` once, after releasing the cells still queued (`drain`).
struct CellRing {
    static let slotSize = 64          // one slot per cache line: neighbours never share one
    static let lineSize = 64
    static let closedBit = 1 << 62
    /// Kind bits of a queued slot's word: 1 a plain cell, 3 a message.
    static let plain = 1, message = 3

    let slots: UnsafeMutableRawPointer
    let mask: Int
    let shift: Int
    let limit: Int
    /// Three cache lines: `enqueue`, `dequeue`, then the waiter counts and `messages`.
    let lines: UnsafeMutableRawPointer

    /// `capacity` >= 1.
    init(capacity: Int) {
        var size = 1, shift = 0
        while size < capacity { size <<= 1; shift += 1 }
        mask = size - 1
        self.shift = shift
        limit = capacity
        // calloc: zero is "free for lap 0"; a big ring's pages are touched only when reached.
        slots = calloc(size, CellRing.slotSize)!
        lines = UnsafeMutableRawPointer.allocate(byteCount: 3 * CellRing.lineSize, alignment: CellRing.lineSize)
        for k in 0..<3 {
            (lines + k * CellRing.lineSize).bindMemory(to: Atomic<Int>.self, capacity: 1).initialize(to: Atomic(0))
        }
        popWaiters.initialize(to: Atomic(0))
        messages.initialize(to: Atomic(0))
        pushWoken.initialize(to: Atomic(0))
        popWoken.initialize(to: Atomic(0))
    }

    @inline(__always) var enqueue: UnsafeMutablePointer<Atomic<Int>> { lines.assumingMemoryBound(to: Atomic<Int>.self) }
    @inline(__always) var dequeue: UnsafeMutablePointer<Atomic<Int>> {
        (lines + CellRing.lineSize).assumingMemoryBound(to: Atomic<Int>.self)
    }
    /// Threads asleep (or about to be: counted under the channel's lock) waiting for room.
    @inline(__always) var pushWaiters: UnsafeMutablePointer<Atomic<Int>> {
        (lines + 2 * CellRing.lineSize).assumingMemoryBound(to: Atomic<Int>.self)
    }
    /// Threads asleep (or about to be) waiting for a value.
    @inline(__always) var popWaiters: UnsafeMutablePointer<Atomic<Int>> { pushWaiters + 1 }
    /// Message cells claimed by a push and not yet by a pop (counted before the claim): at 0
    /// a batch pop needs no look at the kinds.
    @inline(__always) var messages: UnsafeMutablePointer<Atomic<Int>> { pushWaiters + 2 }
    /// Counted waiters a wake-up was sent for (moved from `pushWaiters` / `popWaiters` by the
    /// waker, under the channel's lock): later values need not wake them again.
    @inline(__always) var pushWoken: UnsafeMutablePointer<Atomic<Int>> { pushWaiters + 3 }
    @inline(__always) var popWoken: UnsafeMutablePointer<Atomic<Int>> { pushWaiters + 4 }

    @inline(__always) private func word(_ p: Int) -> UnsafeMutablePointer<Atomic<Int>> {
        (slots + (p & mask) &* CellRing.slotSize).assumingMemoryBound(to: Atomic<Int>.self)
    }
    @inline(__always) private func cell(_ p: Int) -> UnsafeMutablePointer<ChannelCell> {
        (slots + ((p & mask) &* CellRing.slotSize &+ 8)).assumingMemoryBound(to: ChannelCell.self)
    }
    /// The word of position p while free for it (4 * lap).
    @inline(__always) private func freeWord(_ p: Int) -> Int { (p &>> shift) &<< 2 }

    /// Whether position p may be pushed now (its slot free, and p - limit popped).
    @inline(__always) private func roomAt(_ p: Int) -> Int {
        let d = word(p).pointee.load(ordering: .acquiring) &- freeWord(p)
        if d != 0 || limit > mask { return d }    // 0 free, < 0 full, > 0 p is stale
        let b = p - limit
        if b < 0 { return 0 }
        return word(b).pointee.load(ordering: .acquiring) >= freeWord(b) + 4 ? 0 : -1
    }

    enum Outcome { case done, blocked, closed }

    /// Queues `c` unless the ring is full or closed. On `.done` the ring owns the cell.
    @inline(__always) func push(_ c: ChannelCell) -> Outcome {
        let isMessage = c.tag == LJASYNC_CELL_MESSAGE.rawValue
        if isMessage { messages.pointee.add(1, ordering: .sequentiallyConsistent) }
        var p = enqueue.pointee.load(ordering: .relaxed)
        while true {
            var d = 1
            if p & CellRing.closedBit == 0 { d = roomAt(p) }
            if d == 0 {
                let (won, now) = enqueue.pointee.compareExchange(expected: p, desired: p &+ 1, ordering: .sequentiallyConsistent)
                if won { break }
                p = now
            } else if d > 0 && p & CellRing.closedBit == 0 {
                p = enqueue.pointee.load(ordering: .relaxed)
            } else {
                if isMessage { messages.pointee.subtract(1, ordering: .relaxed) }
                return p & CellRing.closedBit != 0 ? .closed : .blocked
            }
        }
        cell(p).pointee = c
        word(p).pointee.store(freeWord(p) | (isMessage ? CellRing.message : CellRing.plain), ordering: .releasing)
        return .done
    }

    /// Queues up to `n` cells in order (all plain: see ljasync_channel_push_cells); returns
    /// how many (>= 1 with `.done`). Claims by the positions alone (room = `limit` less the
    /// positions not yet claimed by a pop), so a batch reads each slot once, as it writes it;
    /// a slot whose pop is still under way (claimed, not yet freed) is waited for.
    func push(contentsOf cs: UnsafePointer<ChannelCell>, count n: Int) -> (Outcome, Int) {
        var p = enqueue.pointee.load(ordering: .relaxed)
        var k = 0
        while true {
            if p & CellRing.closedBit != 0 { return (.closed, 0) }
            let d = dequeue.pointee.load(ordering: .acquiring)
            k = Swift.min(n, limit &- (p &- d))
            if k <= 0 { return (.blocked, 0) }
            let (won, now) = enqueue.pointee.compareExchange(expected: p, desired: p &+ k, ordering: .sequentiallyConsistent)
            if won { break }
            p = now
        }
        var j = 0
        while j < k {   // runs of slots between wrap-arounds, each of one lap
            let q = p &+ j
            let run = Swift.min(k &- j, mask &+ 1 &- (q & mask))
            let free = freeWord(q)
            var s = slots + (q & mask) &* CellRing.slotSize
            for t in 0..<run {
                let w = s.assumingMemoryBound(to: Atomic<Int>.self)
                if w.pointee.load(ordering: .acquiring) != free { CellRing.wait(w, free) }
                (s + 8).assumingMemoryBound(to: ChannelCell.self).pointee = cs[j &+ t]
                w.pointee.store(free | CellRing.plain, ordering: .releasing)
                s += CellRing.slotSize
            }
            j &+= run
        }
        return (.done, k)
    }

    /// Moves the oldest cell to `out`; `.blocked` when none is ready, `.closed` when the
    /// ring is closed and drained.
    @inline(__always) func pop(into out: UnsafeMutablePointer<ChannelCell>) -> Outcome {
        popMany(into: out, max: 1).0
    }

    /// Moves up to `max` ready cells, in order, to `out` (a message only alone); returns
    /// how many (>= 1 with `.done`). With no message queued (`messages` 0, read after
    /// `enqueue`: a message's count comes before its claim) a batch claims by the positions
    /// alone and reads each slot once, waiting for one whose push is still under way;
    /// otherwise it looks at the kinds first.
    @inline(__always) func popMany(into out: UnsafeMutablePointer<ChannelCell>, max: Int) -> (Outcome, Int) {
        var p = dequeue.pointee.load(ordering: .relaxed)
        var k = 0
        if max > 1 {
            while true {
                let e = enqueue.pointee.load(ordering: .sequentiallyConsistent)
                if messages.pointee.load(ordering: .sequentiallyConsistent) != 0 { break }
                k = Swift.min(max, (e & ~CellRing.closedBit) &- p)
                if k <= 0 { return (e & CellRing.closedBit != 0 ? .closed : .blocked, 0) }
                let (won, now) = dequeue.pointee.compareExchange(expected: p, desired: p &+ k, ordering: .sequentiallyConsistent)
                if won {
                    var j = 0
                    while j < k {
                        let q = p &+ j
                        let run = Swift.min(k &- j, mask &+ 1 &- (q & mask))
                        let free = freeWord(q)
                        var s = slots + (q & mask) &* CellRing.slotSize
                        for t in 0..<run {
                            let w = s.assumingMemoryBound(to: Atomic<Int>.self)
                            if w.pointee.load(ordering: .acquiring) != free | CellRing.plain {
                                CellRing.wait(w, free | CellRing.plain)
                            }
                            out[j &+ t] = (s + 8).assumingMemoryBound(to: ChannelCell.self).pointee
                            w.pointee.store(free &+ 4, ordering: .releasing)
                            s += CellRing.slotSize
                        }
                        j &+= run
                    }
                    return (.done, k)
                }
                p = now
            }
        }
        while true {
            k = 0
            var stale = false
            while k < max {
                let d = word(p &+ k).pointee.load(ordering: .acquiring) &- freeWord(p &+ k)
                if d == CellRing.plain { k += 1; continue }
                if d == CellRing.message && k == 0 { k = 1 }
                stale = d > CellRing.message && k == 0
                break
            }
            if k > 0 {
                let (won, now) = dequeue.pointee.compareExchange(expected: p, desired: p &+ k, ordering: .sequentiallyConsistent)
                if won { break }
                p = now
            } else if stale {
                p = dequeue.pointee.load(ordering: .relaxed)
            } else {
                let e = enqueue.pointee.load(ordering: .acquiring)
                return (e & CellRing.closedBit != 0 && e & ~CellRing.closedBit == p ? .closed : .blocked, 0)
            }
        }
        var message = false
        for j in 0..<k {
            let q = p &+ j
            message = word(q).pointee.load(ordering: .relaxed) &- freeWord(q) == CellRing.message
            out[j] = cell(q).pointee
            word(q).pointee.store(freeWord(q) &+ 4, ordering: .releasing)
        }
        if message { messages.pointee.subtract(1, ordering: .relaxed) }
        return (.done, k)
    }

    /// Waits (yielding the CPU) until the word `w` is `value`: a batch's slot whose other
    /// side (claimed before the batch) is still writing or reading it.
    @inline(never)
    private static func wait(_ w: UnsafeMutablePointer<Atomic<Int>>, _ value: Int) {
        while w.pointee.load(ordering: .acquiring) != value { sched_yield() }
    }

    /// After a pop found nothing and the caller counted itself in `popWaiters`: whether it
    /// may sleep, i.e. no position is claimed that is not popped (a push under way will
    /// see the count and wake it; a claimed one would not be waited for).
    func popMustWait() -> Bool {
        let d = dequeue.pointee.load(ordering: .sequentiallyConsistent)
        let e = enqueue.pointee.load(ordering: .sequentiallyConsistent)
        return e & ~CellRing.closedBit <= d && e & CellRing.closedBit == 0
    }

    /// After a push found no room and the caller counted itself in `pushWaiters`: whether
    /// it may sleep, i.e. no pop of the position that holds the way is under way.
    func pushMustWait() -> Bool {
        let e = enqueue.pointee.load(ordering: .sequentiallyConsistent)
        if e & CellRing.closedBit != 0 { return false }
        let d = dequeue.pointee.load(ordering: .sequentiallyConsistent)
        return d <= e - limit
    }

    /// Marks the ring closed; returns whether it was open. Values queued stay poppable.
    func close() -> Bool {
        enqueue.pointee.bitwiseOr(CellRing.closedBit, ordering: .sequentiallyConsistent).oldValue & CellRing.closedBit == 0
    }

    var isClosed: Bool { enqueue.pointee.load(ordering: .acquiring) & CellRing.closedBit != 0 }

    /// Positions claimed by a push and not yet by a pop (a snapshot). `enqueue` is read
    /// first: a pop between the reads can only make it smaller (never past `limit`).
    var count: Int {
        let e = enqueue.pointee.load(ordering: .acquiring) & ~CellRing.closedBit
        let d = dequeue.pointee.load(ordering: .acquiring)
        return Swift.max(e - d, 0)
    }

    /// Pops every cell left and hands it to `body`. Only with no other thread using the ring.
    func drain(_ body: (ChannelCell) -> Void) {
        var c = ChannelCell()
        while popMany(into: &c, max: 1).0 == .done { body(c) }
    }

    /// Frees the memory (once, after `drain`).
    func free() {
        Glibc.free(slots)
        lines.deallocate()
    }
}
