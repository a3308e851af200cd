// The process-wide worker pool: the job queue, worker threads, scaling, stopping and statistics.
import Glibc
import Synchronization

/// Tunables (Lua reads and writes them as `ljasync_pool_settings`, converted in PoolExports).
struct PoolSettings {
    var autoscale: Int32
    var minWorkers: Int32
    var maxWorkers: Int32
    var idleTimeout: Double     // seconds an extra worker may stay idle (autoscale)
    var warnAfter: Double       // seconds a job may wait in the queue before a warning; 0 = never
    var maxQueued: Int64        // 0 = no cap
}

/// Everything the pool shares between threads, in raw memory at a fixed address.
///
/// Invariants (all under `sync`): every worker thread not yet gone is in `all`, counted in
/// `live` or `stopping`; an idle worker is in `idle` (a LIFO stack, so the most recently busy
/// worker is woken first and the others may time out and leave); `running` counts jobs taken
/// by workers (a batch of short jobs counts whole) and not yet handed back.
/// A stopping worker runs only jobs submitted before it was told to stop (`stopSeq`), so a stop
/// never consumes a job and never affects workers added later.
struct PoolCore {
    var queue = Ring<PoolJob>(capacity: 1024)
    var seq: UInt64 = 0
    var all: [WorkerRef] = []
    var idle = Ring<WorkerRef>(capacity: 16)
    var live = 0                // worker threads not told to stop (starting ones included)
    var stopping = 0            // worker threads told to stop that have not left yet
    var starting = 0            // worker threads that have not reached their first step yet
    var running = 0
    var done = 0
    var failed = 0
    var cancelled = 0
    var spaceWaiters = 0
    var spinners = 0            // workers looking for work without sleeping (see `step`)
    var watchers: [InboxRef] = []
    var serial = 0
    /// Why the last worker could not start; while set, the pool starts no worker by itself
    /// (no respawn loop). The next submit, ensure or add tries again once.
    var startError: String? = nil
    var reportedError: String? = nil  // the reason last written to stderr (one line per reason)
    /// Workers asked for explicitly (autoscaling off) that are not running: failed to start,
    /// or lost in a fork. The next submit starts them again.
    var owed = 0
    var settings = PoolSettings(autoscale: 1, minWorkers: 0, maxWorkers: Int32(Pool.cpuCount),
                                idleTimeout: 5, warnAfter: 11.5, maxQueued: 0)
    var warnAfterNs: UInt64 = 11_500_000_000
    var lastWarnCheckNs: UInt64 = 0  // the coarse clock when a submit last looked at the queue's head
}

/// The pool's fields no thread writes after start-up, before `PoolCore` (see `PoolRecord`).
struct PoolCoreFixed {
    let sync = PthreadLock(.adaptive)  // mutex: all of PoolCore; cond: submitters waiting for space
    /// `queue.count` while a worker spins (set to 0 when one starts, updated by submitters
    /// only then), read by the spinning worker without the lock.
    let queuedHint = PoolRecord.atomicCell()
}

extension UnsafeMutablePointer where Pointee == PoolCore {
    /// The pool's lock, reached without an access to `PoolCore` (any thread).
    @inline(__always) var sync: PthreadLock { PoolRecord.fixed(self, PoolCoreFixed.self).pointee.sync }
    @inline(__always) var queuedHint: UnsafeMutablePointer<Atomic<Int>> {
        PoolRecord.fixed(self, PoolCoreFixed.self).pointee.queuedHint
    }
}

enum Pool {
    /// The CPUs this process may run on (its affinity mask: the one CPU count of lj-async).
    static let cpuCount = ThreadSystem.cpus()
    /// How many times a worker (or an owner in `wait`) yields the CPU while looking for work
    /// (or results) before it sleeps on its condition variable.
    static let spinRounds = 64

    /// The one pool of the process (never freed: worker threads may outlive any Lua state).
    nonisolated(unsafe) static let core: UnsafeMutablePointer<PoolCore> = {
        PoolRecord.allocate(PoolCoreFixed(), PoolCore(), ())
    }()

    // -- Submitting (owner's thread) --

    enum SubmitOutcome: Int32 { case queued = 0, full = 1 }

    /// Queues a job; the pool owns `message` once queued. With a queue cap reached, waits up to
    /// `timeout` seconds for space (0 = not at all, negative = forever) and then reports `full`,
    /// leaving the message to the caller.
    static func submit(_ inbox: InboxRef, id: Double, definition: Int32,
                       message: UnsafeMutablePointer<Message>?, timeout: Double) -> SubmitOutcome {
        let p = core
        let now = coarseNanoseconds()
        p.sync.lock()
        if p.pointee.settings.maxQueued > 0 && p.pointee.queue.count >= Int(p.pointee.settings.maxQueued) {
            if !waitForSpace(timeout) {
                p.sync.unlock()
                return .full
            }
        }
        p.pointee.seq &+= 1
        p.pointee.queue.push(PoolJob(message: message, inbox: inbox, id: id, definition: definition,
                                     seq: p.pointee.seq, enqueuedNs: now))
        inbox.submitted.pointee += 1
        if p.pointee.spinners > 0 { p.queuedHint.pointee.store(p.pointee.queue.count, ordering: .relaxed) }
        // Everything below is rare but the wake-up: the common path under the lock makes no
        // call and touches no reference count (the lock is what workers wait for).
        var spawn: [WorkerRef]? = nil
        var retry = false
        if p.pointee.startError != nil {  // a failed start: this submission tries once more
            retry = true
            p.pointee.startError = nil
        }
        if p.pointee.settings.autoscale == 0 && p.pointee.owed > 0 {
            spawn = makeWorkers(p.pointee.owed)
            p.pointee.owed = 0
        }
        if p.pointee.queue.count <= p.pointee.spinners {
            // A worker that just finished is looking for work and will take it: no wake-up.
        } else if let w = p.pointee.idle.popLast() {
            w.pointee.idle = false
            w.pointee.woken = true
            w.cond.signal()
        } else if p.pointee.settings.autoscale != 0 && p.pointee.live < Int(p.pointee.settings.maxWorkers)
                    && (p.pointee.queue.count > p.pointee.starting || retry) {
            spawn = makeWorkers(1)
        }
        var late: String?
        let warnNs = p.pointee.warnAfterNs
        // `now` was read before the lock: a job queued meanwhile by another thread may be newer.
        // The head is looked at once per tick of the coarse clock: it is the cache line the
        // workers take jobs from.
        if warnNs > 0 && now != p.pointee.lastWarnCheckNs {
            p.pointee.lastWarnCheckNs = now
            if let head = p.pointee.queue.first, !head.warned, now > head.enqueuedNs, now - head.enqueuedNs > warnNs {
                p.pointee.queue[0].warned = true
                let count = p.pointee.queue.count, workers = p.pointee.live, running = p.pointee.running
                let waited = seconds(now &- head.enqueuedNs)
                late = "\(count) jobs wait in the pool's queue; the oldest has waited \(waited) s (\(workers) workers, \(running) running)"
            }
        }
        p.sync.unlock()
        if let spawn { startThreads(spawn) }
        if let late { reportToStderr(late) }
        return .queued
    }

    /// With the lock held: waits until the queue is under its cap. False on timeout.
    private static func waitForSpace(_ timeout: Double) -> Bool {
        let p = core
        if timeout == 0 { return false }
        let deadline = Clock.deadline(after: timeout)
        p.pointee.spaceWaiters += 1
        defer { p.pointee.spaceWaiters -= 1 }
        while p.pointee.settings.maxQueued > 0 && p.pointee.queue.count >= Int(p.pointee.settings.maxQueued) {
            if !p.sync.wait(until: deadline) {
                return !(p.pointee.settings.maxQueued > 0 && p.pointee.queue.count >= Int(p.pointee.settings.maxQueued))
            }
        }
        return true
    }

    /// With the lock held: a job left the queue; wakes submitters waiting for space.
    @inline(__always) static func queueShrank() {
        if core.pointee.spaceWaiters > 0 { core.sync.broadcast() }
    }

    /// Removes a job that has not started. True when it was still queued. Owner's thread.
    static func cancel(_ inbox: InboxRef, id: Double) -> Bool {
        let p = core
        var message: UnsafeMutablePointer<Message>?
        var found = false
        p.sync.lock()
        for i in 0..<p.pointee.queue.count {
            let j = p.pointee.queue[i]
            if j.inbox == inbox && j.id == id {
                message = j.message
                p.pointee.queue.remove(at: i)
                p.pointee.cancelled += 1
                queueShrank()
                found = true
                break
            }
        }
        p.sync.unlock()
        guard found else { return false }
        if let message { Message.free(message) }
        Inbox.forget(inbox)
        return true
    }

    /// Removes every queued job of `inbox`; each comes back as a `cancelled` result.
    /// Returns how many. Owner's thread.
    static func discard(_ inbox: InboxRef) -> Int {
        let p = core
        var dropped: [PoolJob] = []
        p.sync.lock()
        _ = p.pointee.queue.removeAll { j in
            if j.inbox == inbox { dropped.append(j); return true }
            return false
        }
        p.pointee.cancelled += dropped.count
        queueShrank()
        p.sync.unlock()
        for j in dropped {
            if let m = j.message { Message.free(m) }
            Inbox.push(inbox, PoolResult(message: nil, id: j.id, status: .cancelled))
        }
        return dropped.count
    }

    /// Waits on the owner's inbox for results, a deadline, or (with `watch`) the last worker
    /// thread leaving. Returns 1 results, 2 no worker threads left, 0 timeout. Owner's thread.
    static func wait(_ inbox: InboxRef, timeout: Double, watch: Bool) -> Int32 {
        let deadline = Clock.deadline(after: timeout)
        let spin = timeout != 0
        guard watch else { return Inbox.wait(inbox, deadline: deadline, watch: false, spin: spin) }
        let p = core
        p.sync.lock()
        if p.pointee.live + p.pointee.stopping == 0 {
            p.sync.unlock()
            return Inbox.wait(inbox, deadline: Clock.deadline(after: 0), watch: false, spin: false) == 1 ? 1 : 2
        }
        inbox.sync.withLock { inbox.pointee.workersGone = false }
        p.pointee.watchers.append(inbox)
        p.sync.unlock()
        let r = Inbox.wait(inbox, deadline: deadline, watch: true, spin: spin)
        p.sync.withLock {
            if let i = p.pointee.watchers.firstIndex(of: inbox) { p.pointee.watchers.remove(at: i) }
        }
        return r
    }

    // -- Settings and statistics (any thread) --

    static func settings() -> PoolSettings { core.sync.withLock { core.pointee.settings } }

    /// Applies new settings: wakes idle workers to re-read their idle deadline, starts workers
    /// when autoscaling finds jobs waiting, stops extra ones above a lowered maximum.
    static func apply(_ s: PoolSettings) {
        let p = core
        p.sync.lock()
        p.pointee.settings = s
        p.pointee.warnAfterNs = s.warnAfter > 0 ? UInt64(s.warnAfter * 1e9) : 0
        for i in 0..<p.pointee.idle.count { p.pointee.idle[i].cond.signal() }
        if p.pointee.spaceWaiters > 0 { p.sync.broadcast() }
        var made: [WorkerRef] = []
        if s.autoscale != 0 && p.pointee.startError == nil {  // after a failed start, only submit retries
            if p.pointee.live > Int(s.maxWorkers) { stop(p.pointee.live - Int(s.maxWorkers)) }
            let want = min(Int(s.maxWorkers), max(Int(s.minWorkers), min(p.pointee.queue.count, Int(s.maxWorkers))))
            if p.pointee.live < want { made = makeWorkers(want - p.pointee.live) }
        }
        p.sync.unlock()
        startThreads(made)
    }

    /// queued, running, done, failed, cancelled, workers, stopping, idle.
    static func stats(_ out: UnsafeMutablePointer<Int64>) {
        let p = core
        p.sync.lock()
        out[0] = Int64(p.pointee.queue.count)
        out[1] = Int64(p.pointee.running)
        out[2] = Int64(p.pointee.done)
        out[3] = Int64(p.pointee.failed)
        out[4] = Int64(p.pointee.cancelled)
        out[5] = Int64(p.pointee.live)
        out[6] = Int64(p.pointee.stopping)
        out[7] = Int64(p.pointee.idle.count)
        p.sync.unlock()
    }

    /// The monotonic clock at its coarse resolution (a few ms): queue waits are judged in
    /// seconds, and the precise clock costs ~30 ns per read here, twice per job.
    @inline(__always) static func coarseNanoseconds() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC_COARSE, &ts)
        return UInt64(ts.tv_sec) &* 1_000_000_000 &+ UInt64(ts.tv_nsec)
    }

    /// Nanoseconds as seconds with one decimal, for messages.
    static func seconds(_ ns: UInt64) -> String {
        let tenths = (ns / 50_000_000 + 1) / 2
        return "\(tenths / 10).\(tenths % 10)"
    }

    /// A failure result (Value/Failure.swift).
    static func failureMessage(_ text: String) -> UnsafeMutablePointer<Message> { Message.failure(text) }
}
