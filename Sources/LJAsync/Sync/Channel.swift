// A multi-producer multi-consumer FIFO of cells, bounded or not, that states share.
import CLJAsync
import Glibc

/// The channel's queue: a ring of cells guarded by one mutex, with two condition variables
/// (consumers wait for "not empty", producers for "not full").
///
/// Invariants (under `mutex`): `count <= limit`; `count <= mask + 1`; the live cells are
/// `ring[(head + i) & mask]` for `i < count`, each owned by the ring. Consumers sleep only while
/// the ring is empty, producers only while it is full, each counted in `popWaiters` /
/// `pushWaiters`. Wakeups (each a futex syscall) are sent only on a transition and only when
/// someone sleeps: a push into an empty ring wakes one consumer, a pop from a full ring wakes a
/// producer. A woken thread that leaves work behind passes the baton (wakes the next sleeper
/// of its own kind), so no value waits while a consumer sleeps, and a consumer busy waking up
/// costs the producer no further syscalls. Sleepers re-check the ring after any wakeup,
/// timeouts included. Closing wakes every sleeper; after it, pushes fail and pops drain what
/// remains.
///
/// Thread-safety: every method may be called from any thread. Lifetime: reference counted
/// (SharedObject); the last release frees the cells still queued (and so the handles their
/// messages carry).
final class Channel: SyncObject, @unchecked Sendable {
    override class var kind: String { "channel" }

    enum Status: Int32 { case ok = 0, fullOrEmpty = 1, closed = 2 }

    struct State {
        var ring: UnsafeMutablePointer<ChannelCell>
        var mask: Int
        var head: Int
        var count: Int
        let limit: Int
        var closed: Bool
        var popWaiters: Int
        var pushWaiters: Int
    }

    static let initialRing = 64
    /// A ring grown past this shrinks back to `initialRing` when it empties.
    static let shrinkAbove = 4096

    let state: UnsafeMutablePointer<State>   // guarded by `mutex`
    let mutex = RawMutex.make()
    let notEmpty = Condvar()
    let notFull = Condvar()

    /// `capacity` <= 0 means unbounded.
    init(capacity: Int) {
        let limit = capacity > 0 ? capacity : Int.max
        let size = Channel.ringSize(for: min(limit, Channel.initialRing))
        state = .allocate(capacity: 1)
        state.initialize(to: State(ring: .allocate(capacity: size), mask: size - 1, head: 0, count: 0,
                                   limit: limit, closed: false, popWaiters: 0, pushWaiters: 0))
        super.init()
    }

    deinit {
        let s = state.pointee
        for i in 0..<s.count { s.ring[(s.head + i) & s.mask].release() }
        s.ring.deallocate()
        state.deallocate()
        notFull.destroy()
        notEmpty.destroy()
        RawMutex.destroy(mutex)
    }

    static func ringSize(for n: Int) -> Int {
        var size = 1
        while size < n { size <<= 1 }
        return size
    }

    // -- Producers --

    /// Appends `cell`, waiting at most `timeout` seconds for room (negative = forever, 0 =
    /// try once). On `.ok` the channel owns the cell; otherwise the caller still does.
    /// Any thread.
    func push(_ cell: ChannelCell, timeout: Double) -> Status {
        let s = state
        RawMutex.lock(mutex)
        if s.pointee.closed {
            RawMutex.unlock(mutex)
            return .closed
        }
        if s.pointee.count >= s.pointee.limit {
            let st = waitForRoom(timeout)
            if st != .ok {
                RawMutex.unlock(mutex)
                return st
            }
        }
        if s.pointee.count > s.pointee.mask { grow() }
        let count = s.pointee.count
        s.pointee.ring[(s.pointee.head + count) & s.pointee.mask] = cell
        s.pointee.count = count + 1
        let wakeConsumer = count == 0 && s.pointee.popWaiters > 0
        let wakeProducer = count + 1 < s.pointee.limit && s.pointee.pushWaiters > 0
        RawMutex.unlock(mutex)
        if wakeConsumer { notEmpty.signal() }
        if wakeProducer { notFull.signal() }
        return .ok
    }

    /// Appends up to `n` cells in order, waiting (as `push`) only until the first one fits;
    /// returns how many the channel took (it owns those), or a failure status when none.
    /// Any thread.
    func pushMany(_ cells: UnsafePointer<ChannelCell>, _ n: Int, timeout: Double) -> (Status, Int) {
        let s = state
        RawMutex.lock(mutex)
        if s.pointee.closed {
            RawMutex.unlock(mutex)
            return (.closed, 0)
        }
        if s.pointee.count >= s.pointee.limit {
            let st = waitForRoom(timeout)
            if st != .ok {
                RawMutex.unlock(mutex)
                return (st, 0)
            }
        }
        let before = s.pointee.count
        let take = min(n, s.pointee.limit - before)
        while before + take > s.pointee.mask + 1 { grow() }
        var at = s.pointee.head + before
        for i in 0..<take {
            s.pointee.ring[at & s.pointee.mask] = cells[i]
            at += 1
        }
        s.pointee.count = before + take
        let wakeConsumers = before == 0 && s.pointee.popWaiters > 0
        let wakeProducer = before + take < s.pointee.limit && s.pointee.pushWaiters > 0
        RawMutex.unlock(mutex)
        if wakeConsumers {
            if take == 1 { notEmpty.signal() } else { notEmpty.broadcast() }
        }
        if wakeProducer { notFull.signal() }
        return (.ok, take)
    }

    /// With `mutex` held and the channel full: sleeps until there is room, the channel
    /// closes or the timeout passes. Returns with `mutex` held.
    private func waitForRoom(_ timeout: Double) -> Status {
        let s = state
        var deadline: timespec?
        var timedOut = false
        while s.pointee.count >= s.pointee.limit {
            if s.pointee.closed { return .closed }
            if timeout == 0 || timedOut { return .fullOrEmpty }
            if timeout > 0 && deadline == nil { deadline = Clock.deadline(after: timeout) }
            s.pointee.pushWaiters += 1
            timedOut = !notFull.wait(mutex, until: deadline)
            s.pointee.pushWaiters -= 1
        }
        return s.pointee.closed ? .closed : .ok
    }

    /// Doubles the ring, unwrapping it so `head` is 0. `mutex` held.
    private func grow() {
        let s = state
        let old = s.pointee.mask + 1
        let ring = UnsafeMutablePointer<ChannelCell>.allocate(capacity: old * 2)
        let first = min(s.pointee.count, old - s.pointee.head)
        ring.moveInitialize(from: s.pointee.ring + s.pointee.head, count: first)
        (ring + first).moveInitialize(from: s.pointee.ring, count: s.pointee.count - first)
        s.pointee.ring.deallocate()
        s.pointee.ring = ring
        s.pointee.mask = old * 2 - 1
        s.pointee.head = 0
    }

    // -- Consumers --

    /// Moves up to `max` cells into `out`, waiting at most `timeout` seconds for the first
    /// (negative = forever, 0 = try once). A message cell always comes alone, so a caller
    /// that fails to decode one loses no other value. Returns the number moved (>= 1; the
    /// caller owns them), or a failure status with 0: `closed` once the channel is closed
    /// and drained. Any thread.
    func pop(into out: UnsafeMutablePointer<ChannelCell>, max: Int, timeout: Double) -> (Status, Int) {
        let s = state
        RawMutex.lock(mutex)
        if s.pointee.count == 0 {
            var deadline: timespec?
            var timedOut = false
            repeat {
                if s.pointee.closed || timeout == 0 || timedOut {
                    let st: Status = s.pointee.closed ? .closed : .fullOrEmpty
                    RawMutex.unlock(mutex)
                    return (st, 0)
                }
                if timeout > 0 && deadline == nil { deadline = Clock.deadline(after: timeout) }
                s.pointee.popWaiters += 1
                timedOut = !notEmpty.wait(mutex, until: deadline)
                s.pointee.popWaiters -= 1
            } while s.pointee.count == 0
        }
        let mask = s.pointee.mask
        let ring = s.pointee.ring
        var head = s.pointee.head
        let avail = min(max, s.pointee.count)
        var n = 0
        while n < avail {
            let c = ring[head]
            let isMessage = c.tag == LJASYNC_CELL_MESSAGE.rawValue
            if isMessage && n > 0 { break }
            out[n] = c
            head = (head + 1) & mask
            n += 1
            if isMessage { break }
        }
        let before = s.pointee.count
        s.pointee.head = head
        s.pointee.count = before - n
        let wakeProducers = before >= s.pointee.limit && s.pointee.pushWaiters > 0
        let wakeConsumer = before - n > 0 && s.pointee.popWaiters > 0
        if before == n && mask + 1 > Channel.shrinkAbove { shrink() }
        RawMutex.unlock(mutex)
        if wakeProducers {
            if n == 1 { notFull.signal() } else { notFull.broadcast() }
        }
        if wakeConsumer { notEmpty.signal() }
        return (.ok, n)
    }

    /// Replaces an empty, grown ring with a small one. `mutex` held.
    private func shrink() {
        let s = state
        s.pointee.ring.deallocate()
        s.pointee.ring = .allocate(capacity: Channel.initialRing)
        s.pointee.mask = Channel.initialRing - 1
        s.pointee.head = 0
    }

    // -- Both --

    /// Refuses further pushes and wakes every sleeper; values queued stay poppable.
    /// Idempotent. Any thread.
    func close() {
        RawMutex.lock(mutex)
        state.pointee.closed = true
        RawMutex.unlock(mutex)
        notEmpty.broadcast()
        notFull.broadcast()
    }

    /// The number of queued values (a snapshot). Any thread.
    var length: Int {
        RawMutex.lock(mutex)
        defer { RawMutex.unlock(mutex) }
        return state.pointee.count
    }

    var isClosed: Bool {
        RawMutex.lock(mutex)
        defer { RawMutex.unlock(mutex) }
        return state.pointee.closed
    }

    /// Threads blocked in push or pop right now (for tests that must know a waiter sleeps).
    var waiters: Int {
        RawMutex.lock(mutex)
        defer { RawMutex.unlock(mutex) }
        return state.pointee.popWaiters + state.pointee.pushWaiters
    }

    /// The maximum number of queued values, or 0 when unbounded.
    var capacity: Int { state.pointee.limit == Int.max ? 0 : state.pointee.limit }
}
