// A multi-producer multi-consumer FIFO of cells, bounded or not, that states share.
import CLJAsync
import Glibc

/// The channel's queue: a ring of cells guarded by one mutex (`lock`), with two condition variables
/// (consumers wait for "not empty", producers for "not full").
///
/// Invariants (under `lock`): `cells.count <= limit`; each cell in `cells` (the shared `Ring`)
/// is owned by the channel. Consumers sleep only while
/// the ring is empty, producers only while it is full, each counted in `popWaiters` /
/// `pushWaiters`. Wakeups (each a futex syscall) are sent only on a transition and only when
/// someone sleeps: a push into an empty ring wakes one consumer, a pop from a full ring wakes a
/// producer. A woken thread that leaves work behind passes the baton (wakes the next sleeper
/// of its own kind), so no value waits while a consumer sleeps, and a consumer busy waking up
/// costs the producer no further syscalls. A waiter first lets the lock and the CPU go a few
/// times (`yieldLock`, uncounted: nobody signals it) and sleeps only if the ring is still
/// full or empty. Sleepers re-check the ring after any wakeup, timeouts included. Closing
/// wakes every sleeper; after it, pushes fail and pops drain what remains.
///
/// Thread-safety: every method may be called from any thread. Lifetime: reference counted
/// (SharedObject); the last release frees the cells still queued (and so the handles their
/// messages carry).
final class Channel: SyncObject, @unchecked Sendable {
    enum Status: Int32 { case ok = 0, fullOrEmpty = 1, closed = 2 }

    struct State {
        var cells: Ring<ChannelCell>
        let limit: Int
        var closed: Bool
        var popWaiters: Int
        var pushWaiters: Int
    }

    static let initialRing = 64
    static let lineSize = 64
    /// Yields (`yieldLock`) of a pusher facing a full ring or a popper facing an empty one
    /// before it sleeps.
    static let yieldsBeforeSleep = 4
    /// A ring grown past this shrinks back to `initialRing` when it empties.
    static let shrinkAbove = 4096

    let state: UnsafeMutablePointer<State>   // guarded by `lock`
    /// Adaptive (see LockKind); its condition is "not empty", consumers wait on it.
    let lock = PthreadLock(.adaptive)
    let notFull = PthreadCondition()

    /// `capacity` <= 0 means unbounded.
    init(capacity: Int) {
        let limit = capacity > 0 ? capacity : Int.max
        // A cache line of its own (64-byte State, 64-aligned): malloc's 16-byte alignment would
        // split it over two lines, each also holding a neighbour's bytes.
        state = UnsafeMutableRawPointer.allocate(byteCount: MemoryLayout<State>.stride, alignment: Channel.lineSize)
            .bindMemory(to: State.self, capacity: 1)
        state.initialize(to: State(cells: Ring(capacity: min(limit, Channel.initialRing)), limit: limit,
                                   closed: false, popWaiters: 0, pushWaiters: 0))
        super.init()
    }

    deinit {
        while let c = state.pointee.cells.popFirst() { c.release() }
        state.pointee.cells.free()
        UnsafeMutableRawPointer(state).deallocate()
        notFull.destroy()
        lock.destroy()
    }

    // -- Producers --

    /// Appends `cell`, waiting at most `timeout` seconds for room (negative = forever, 0 =
    /// try once). On `.ok` the channel owns the cell; otherwise the caller still does.
    /// Any thread.
    func push(_ cell: ChannelCell, timeout: Double) -> Status {
        let s = state
        lock.lock()
        if s.pointee.closed {
            lock.unlock()
            return .closed
        }
        if s.pointee.cells.count >= s.pointee.limit {
            let st = waitForRoom(timeout)
            if st != .ok {
                lock.unlock()
                return st
            }
        }
        let count = s.pointee.cells.count
        s.pointee.cells.push(cell)
        let wakeConsumer = count == 0 && s.pointee.popWaiters > 0
        let wakeProducer = count + 1 < s.pointee.limit && s.pointee.pushWaiters > 0
        lock.unlock()
        if wakeConsumer { lock.signal() }
        if wakeProducer { notFull.signal() }
        return .ok
    }

    /// Appends up to `n` cells in order, waiting (as `push`) only until the first one fits;
    /// returns how many the channel took (it owns those), or a failure status when none.
    /// Any thread.
    func pushMany(_ cells: UnsafePointer<ChannelCell>, _ n: Int, timeout: Double) -> (Status, Int) {
        let s = state
        lock.lock()
        if s.pointee.closed {
            lock.unlock()
            return (.closed, 0)
        }
        if s.pointee.cells.count >= s.pointee.limit {
            let st = waitForRoom(timeout)
            if st != .ok {
                lock.unlock()
                return (st, 0)
            }
        }
        let before = s.pointee.cells.count
        let take = min(n, s.pointee.limit - before)
        s.pointee.cells.push(contentsOf: cells, count: take)
        let wakeConsumers = before == 0 && s.pointee.popWaiters > 0
        let wakeProducer = before + take < s.pointee.limit && s.pointee.pushWaiters > 0
        lock.unlock()
        if wakeConsumers {
            if take == 1 { lock.signal() } else { lock.broadcast() }
        }
        if wakeProducer { notFull.signal() }
        return (.ok, take)
    }

    /// With `lock` held and the channel full: sleeps until there is room, the channel
    /// closes or the timeout passes. Returns with `lock` held.
    private func waitForRoom(_ timeout: Double) -> Status {
        let s = state
        var deadline: timespec?
        var timedOut = false
        var yields = 0
        while s.pointee.cells.count >= s.pointee.limit {
            if s.pointee.closed { return .closed }
            if timeout == 0 || timedOut { return .fullOrEmpty }
            if timeout > 0 && deadline == nil { deadline = Clock.deadline(after: timeout) }
            if yields < Channel.yieldsBeforeSleep {
                yields += 1
                yieldLock()
                continue
            }
            s.pointee.pushWaiters += 1
            timedOut = !lock.wait(on: notFull, until: deadline)
            s.pointee.pushWaiters -= 1
        }
        return s.pointee.closed ? .closed : .ok
    }

    /// With `lock` held: lets it go and gives up the CPU once, then takes it again. A waiter
    /// does this a few times before it sleeps: the other side, on another CPU, frees a slot or
    /// pushes a value within a microsecond, while a sleep costs a futex wait here and a futex
    /// wake there (and waking a sleeping CPU); on one CPU the yield lets the other side run.
    @inline(__always)
    private func yieldLock() {
        lock.unlock()
        ljasync_stack_trim_once()  // a thread's first wait drops what its start touched (stack.c)
        sched_yield()
        lock.lock()
    }

    // -- Consumers --

    /// Moves up to `max` cells into `out`, waiting at most `timeout` seconds for the first
    /// (negative = forever, 0 = try once). A message cell always comes alone, so a caller
    /// that fails to decode one loses no other value. Returns the number moved (>= 1; the
    /// caller owns them), or a failure status with 0: `closed` once the channel is closed
    /// and drained. Any thread.
    func pop(into out: UnsafeMutablePointer<ChannelCell>, max: Int, timeout: Double) -> (Status, Int) {
        let s = state
        lock.lock()
        let count = s.pointee.cells.count
        if max == 1 && count > 0 { return popOne(into: out, count) }
        if count == 0 {
            var deadline: timespec?
            var timedOut = false
            var yields = 0
            repeat {
                if s.pointee.closed || timeout == 0 || timedOut {
                    let st: Status = s.pointee.closed ? .closed : .fullOrEmpty
                    lock.unlock()
                    return (st, 0)
                }
                if timeout > 0 && deadline == nil { deadline = Clock.deadline(after: timeout) }
                if yields < Channel.yieldsBeforeSleep {
                    yields += 1
                    yieldLock()
                    continue
                }
                s.pointee.popWaiters += 1
                timedOut = !lock.wait(until: deadline)
                s.pointee.popWaiters -= 1
            } while s.pointee.cells.count == 0
        }
        let cells = s.pointee.cells   // the ring's fields read once (stores to `out` would force reloads)
        let before = cells.count
        let avail = min(max, before)
        var n = 0
        while n < avail {
            let c = cells[n]
            let isMessage = c.tag == LJASYNC_CELL_MESSAGE.rawValue
            if isMessage && n > 0 { break }
            out[n] = c
            n += 1
            if isMessage { break }
        }
        s.pointee.cells.removeFirst(n)
        let wakeProducers = before >= s.pointee.limit && s.pointee.pushWaiters > 0
        let wakeConsumer = before - n > 0 && s.pointee.popWaiters > 0
        if before == n && cells.capacity > Channel.shrinkAbove { s.pointee.cells.shrink(to: Channel.initialRing) }
        lock.unlock()
        if wakeProducers {
            if n == 1 { notFull.signal() } else { notFull.broadcast() }
        }
        if wakeConsumer { lock.signal() }
        return (.ok, n)
    }

    /// `pop` of one cell from a ring that holds `before` > 0, with `lock` held (released here):
    /// the per-value path of Lua's pop, kept free of the batch loop.
    @inline(__always)
    private func popOne(into out: UnsafeMutablePointer<ChannelCell>, _ before: Int) -> (Status, Int) {
        let s = state
        out[0] = s.pointee.cells[0]
        s.pointee.cells.removeFirst(1)
        let wakeProducer = before >= s.pointee.limit && s.pointee.pushWaiters > 0
        let wakeConsumer = before > 1 && s.pointee.popWaiters > 0
        if before == 1 && s.pointee.cells.capacity > Channel.shrinkAbove { s.pointee.cells.shrink(to: Channel.initialRing) }
        lock.unlock()
        if wakeProducer { notFull.signal() }
        if wakeConsumer { lock.signal() }
        return (.ok, 1)
    }

    // -- Both --

    /// Refuses further pushes and wakes every sleeper; values queued stay poppable.
    /// Idempotent. Any thread.
    func close() {
        lock.lock()
        state.pointee.closed = true
        lock.unlock()
        lock.broadcast()
        notFull.broadcast()
    }

    /// The number of queued values (a snapshot). Any thread.
    var length: Int {
        lock.lock()
        defer { lock.unlock() }
        return state.pointee.cells.count
    }

    var isClosed: Bool {
        lock.lock()
        defer { lock.unlock() }
        return state.pointee.closed
    }

    /// Threads blocked in push or pop right now (for tests that must know a waiter sleeps).
    var waiters: Int {
        lock.lock()
        defer { lock.unlock() }
        return state.pointee.popWaiters + state.pointee.pushWaiters
    }

    /// The maximum number of queued values, or 0 when unbounded.
    var capacity: Int { state.pointee.limit == Int.max ? 0 : state.pointee.limit }
}
