// The process-wide worker pool: the job queue, worker threads, scaling, stopping and statistics.
import CLuaJIT
import Glibc
import Synchronization

/// Tunables, in the C layout Lua reads and writes (`ljasync_pool_settings`).
struct PoolSettings {
    var autoscale: Int32
    var minWorkers: Int32
    var maxWorkers: Int32
    var pad: Int32 = 0
    var idleTimeout: Double     // seconds an extra worker may stay idle (autoscale)
    var warnAfter: Double       // seconds a job may wait in the queue before a warning; 0 = never
    var maxQueued: Int64        // 0 = no cap
}

/// Everything the pool shares between threads, in raw memory at a fixed address.
///
/// Invariants (all under `sync`): `queued == queue.count`; every worker thread not yet gone is
/// in `all`, counted in `live` or `stopping`; an idle worker is in `idle` (a LIFO stack, so
/// the most recently busy worker is woken first and the others may time out and leave).
/// A stopping worker runs only jobs submitted before it was told to stop (`stopSeq`), so a stop
/// never consumes a job and never affects workers added later.
struct PoolCore {
    let sync = PoolSync()       // mutex: everything below; cond: submitters waiting for space
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
    /// `queue.count` while a worker spins (set to 0 when one starts, updated by submitters
    /// only then), read by the spinning worker without the lock.
    let queuedHint: UnsafeMutablePointer<Atomic<Int>> = {
        let p = UnsafeMutablePointer<Atomic<Int>>.allocate(capacity: 1)
        p.initialize(to: Atomic(0))
        return p
    }()
    var watchers: [InboxRef] = []
    var serial = 0
    var settings = PoolSettings(autoscale: 1, minWorkers: 0, maxWorkers: Int32(Pool.cpuCount),
                                idleTimeout: 5, warnAfter: 11.5, maxQueued: 0)
    var warnAfterNs: UInt64 = 11_500_000_000
}

enum Pool {
    static let cpuCount = max(1, sysconf(Int32(_SC_NPROCESSORS_ONLN)))
    /// How many times a worker (or an owner in `wait`) yields the CPU while looking for work
    /// (or results) before it sleeps on its condition variable.
    static let spinRounds = 64

    /// The one pool of the process (never freed: worker threads may outlive any Lua state).
    nonisolated(unsafe) static let core: UnsafeMutablePointer<PoolCore> = {
        let p = UnsafeMutablePointer<PoolCore>.allocate(capacity: 1)
        p.initialize(to: PoolCore())
        return p
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
        p.pointee.sync.lock()
        if p.pointee.settings.maxQueued > 0 && p.pointee.queue.count >= Int(p.pointee.settings.maxQueued) {
            if !waitForSpace(timeout) {
                p.pointee.sync.unlock()
                return .full
            }
        }
        p.pointee.seq &+= 1
        p.pointee.queue.push(PoolJob(message: message, inbox: inbox, id: id, definition: definition,
                                     seq: p.pointee.seq, enqueuedNs: now))
        inbox.pointee.submitted.pointee += 1
        if p.pointee.spinners > 0 { p.pointee.queuedHint.pointee.store(p.pointee.queue.count, ordering: .relaxed) }
        var spawn: [WorkerRef] = []
        if p.pointee.queue.count <= p.pointee.spinners {
            // A worker that just finished is looking for work and will take it: no wake-up.
        } else if let w = p.pointee.idle.popLast() {
            w.pointee.idle = false
            w.pointee.woken = true
            pthread_cond_signal(w.pointee.cond)
        } else if p.pointee.settings.autoscale != 0 && p.pointee.live < Int(p.pointee.settings.maxWorkers)
                    && p.pointee.queue.count > p.pointee.starting {
            spawn = makeWorkers(1)
        }
        var late: String?
        let warnNs = p.pointee.warnAfterNs
        // `now` was read before the lock: a job queued meanwhile by another thread may be newer.
        if warnNs > 0, let head = p.pointee.queue.first, !head.warned, now > head.enqueuedNs,
           now - head.enqueuedNs > warnNs {
            p.pointee.queue[0].warned = true
            let count = p.pointee.queue.count, workers = p.pointee.live, running = p.pointee.running
            let waited = seconds(now &- head.enqueuedNs)
            late = "\(count) jobs wait in the pool's queue; the oldest has waited \(waited) s (\(workers) workers, \(running) running)"
        }
        p.pointee.sync.unlock()
        if !spawn.isEmpty { startThreads(spawn) }
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
            if !p.pointee.sync.wait(until: deadline) {
                return !(p.pointee.settings.maxQueued > 0 && p.pointee.queue.count >= Int(p.pointee.settings.maxQueued))
            }
        }
        return true
    }

    /// With the lock held: a job left the queue; wakes submitters waiting for space.
    @inline(__always) private static func queueShrank() {
        if core.pointee.spaceWaiters > 0 { core.pointee.sync.broadcast() }
    }

    /// Removes a job that has not started. True when it was still queued. Owner's thread.
    static func cancel(_ inbox: InboxRef, id: Double) -> Bool {
        let p = core
        var message: UnsafeMutablePointer<Message>?
        var found = false
        p.pointee.sync.lock()
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
        p.pointee.sync.unlock()
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
        p.pointee.sync.lock()
        _ = p.pointee.queue.removeAll { j in
            if j.inbox == inbox { dropped.append(j); return true }
            return false
        }
        p.pointee.cancelled += dropped.count
        queueShrank()
        p.pointee.sync.unlock()
        for j in dropped {
            if let m = j.message { Message.free(m) }
            Inbox.push(inbox, PoolResult(message: nil, id: j.id, status: .cancelled))
        }
        return dropped.count
    }

    // -- Workers: counts (any thread) --

    /// With the lock held: records `n` new workers (counted live at once); start them with
    /// `startThreads` after unlocking.
    private static func makeWorkers(_ n: Int) -> [WorkerRef] {
        let p = core
        var made: [WorkerRef] = []
        for _ in 0..<n {
            p.pointee.serial += 1
            let w = WorkerRef.allocate(capacity: 1)
            w.initialize(to: PoolWorker(serial: p.pointee.serial))
            p.pointee.all.append(w)
            made.append(w)
        }
        p.pointee.live += n
        p.pointee.starting += n
        return made
    }

    /// Starts the threads of freshly made workers. Never creates a Lua state here: each
    /// worker takes its own on its own thread.
    private static func startThreads(_ workers: [WorkerRef]) {
        for w in workers {
            var attr = pthread_attr_t()
            pthread_attr_init(&attr)
            pthread_attr_setdetachstate(&attr, Int32(PTHREAD_CREATE_DETACHED))
            var tid = pthread_t()
            let rc = pthread_create(&tid, &attr, { arg in
                PoolThread.main(arg!.assumingMemoryBound(to: PoolWorker.self))
                return nil
            }, UnsafeMutableRawPointer(w))
            pthread_attr_destroy(&attr)
            if rc != 0 {
                reportToStderr("cannot start a pool worker thread: \(String(cString: strerror(rc)))")
                core.pointee.sync.lock()
                remove(w)
                core.pointee.sync.unlock()
                PoolWorker.destroy(w)
            }
        }
    }

    /// With the lock held: takes a worker out of every list and count. Idempotent per worker
    /// (a worker is in `all` until removed).
    static func remove(_ w: WorkerRef) {
        let p = core
        guard let i = p.pointee.all.firstIndex(of: w) else { return }
        p.pointee.all.remove(at: i)
        if w.pointee.idle { removeIdle(w) }
        if w.pointee.stopping { p.pointee.stopping -= 1 } else { p.pointee.live -= 1 }
        if !w.pointee.started { p.pointee.starting -= 1 }
        if p.pointee.live + p.pointee.stopping == 0 {
            for inbox in p.pointee.watchers { Inbox.noteWorkersGone(inbox) }
        }
    }

    private static func removeIdle(_ w: WorkerRef) {
        let p = core
        for i in 0..<p.pointee.idle.count where p.pointee.idle[i] == w {
            p.pointee.idle.remove(at: i)
            break
        }
        w.pointee.idle = false
    }

    /// With the lock held: tells up to `n` workers to stop, idle ones first, then the most
    /// recently added. Each finishes its job and the jobs queued before now, then leaves.
    private static func stop(_ n: Int) {
        let p = core
        var left = n
        func mark(_ w: WorkerRef) {
            w.pointee.stopping = true
            w.pointee.stopSeq = p.pointee.seq &+ 1
            p.pointee.live -= 1
            p.pointee.stopping += 1
            if w.pointee.idle { removeIdle(w) }
            pthread_cond_signal(w.pointee.cond)
            left -= 1
        }
        while left > 0, let w = p.pointee.idle.popLast() {
            w.pointee.idle = false
            mark(w)
        }
        for w in p.pointee.all.reversed() where left > 0 && !w.pointee.stopping { mark(w) }
    }

    /// Adds or stops workers so that `lo <= live <= hi`, exactly. `manual` turns autoscaling
    /// off (explicit counts are the user's). Returns the live count. Any thread.
    @discardableResult
    static func ensure(lo: Int, hi: Int, manual: Bool) -> Int {
        let p = core
        p.pointee.sync.lock()
        if manual { p.pointee.settings.autoscale = 0 }
        var made: [WorkerRef] = []
        if p.pointee.live < lo { made = makeWorkers(lo - p.pointee.live) }
        if p.pointee.live > hi { stop(p.pointee.live - hi) }
        let live = p.pointee.live
        p.pointee.sync.unlock()
        startThreads(made)
        return live
    }

    /// Adds `n` workers; returns the live count. Any thread.
    static func add(_ n: Int) -> Int {
        let p = core
        p.pointee.sync.lock()
        p.pointee.settings.autoscale = 0
        let made = makeWorkers(n)
        let live = p.pointee.live
        p.pointee.sync.unlock()
        startThreads(made)
        return live
    }

    /// Stops `n` workers gracefully; returns the live count. Any thread.
    static func stopWorkers(_ n: Int) -> Int {
        let p = core
        p.pointee.sync.lock()
        p.pointee.settings.autoscale = 0
        stop(n)
        let live = p.pointee.live
        p.pointee.sync.unlock()
        return live
    }

    /// Turns autoscaling off and stops every worker gracefully. Returns the number of worker
    /// threads still to leave. Any thread.
    static func shutdown() -> Int {
        let p = core
        p.pointee.sync.lock()
        p.pointee.settings.autoscale = 0
        stop(p.pointee.live)
        let left = p.pointee.stopping + p.pointee.live
        p.pointee.sync.unlock()
        return left
    }

    static var liveCount: Int {
        core.pointee.sync.withLock { core.pointee.live }
    }

    /// Waits on the owner's inbox for results, a deadline, or (with `watch`) the last worker
    /// thread leaving. Returns 1 results, 2 no worker threads left, 0 timeout. Owner's thread.
    static func wait(_ inbox: InboxRef, timeout: Double, watch: Bool) -> Int32 {
        let deadline = Clock.deadline(after: timeout)
        let spin = timeout != 0
        guard watch else { return Inbox.wait(inbox, deadline: deadline, watch: false, spin: spin) }
        let p = core
        p.pointee.sync.lock()
        if p.pointee.live + p.pointee.stopping == 0 {
            p.pointee.sync.unlock()
            return Inbox.wait(inbox, deadline: Clock.deadline(after: 0), watch: false, spin: false) == 1 ? 1 : 2
        }
        inbox.pointee.sync.withLock { inbox.pointee.workersGone = false }
        p.pointee.watchers.append(inbox)
        p.pointee.sync.unlock()
        let r = Inbox.wait(inbox, deadline: deadline, watch: true, spin: spin)
        p.pointee.sync.withLock {
            if let i = p.pointee.watchers.firstIndex(of: inbox) { p.pointee.watchers.remove(at: i) }
        }
        return r
    }

    // -- Settings and statistics (any thread) --

    static func settings() -> PoolSettings { core.pointee.sync.withLock { core.pointee.settings } }

    /// Applies new settings: wakes idle workers to re-read their idle deadline, starts workers
    /// when autoscaling finds jobs waiting, stops extra ones above a lowered maximum.
    static func apply(_ s: PoolSettings) {
        let p = core
        p.pointee.sync.lock()
        p.pointee.settings = s
        p.pointee.warnAfterNs = s.warnAfter > 0 ? UInt64(s.warnAfter * 1e9) : 0
        for i in 0..<p.pointee.idle.count { pthread_cond_signal(p.pointee.idle[i].pointee.cond) }
        if p.pointee.spaceWaiters > 0 { p.pointee.sync.broadcast() }
        var made: [WorkerRef] = []
        if s.autoscale != 0 {
            if p.pointee.live > Int(s.maxWorkers) { stop(p.pointee.live - Int(s.maxWorkers)) }
            let want = min(Int(s.maxWorkers), max(Int(s.minWorkers), min(p.pointee.queue.count, Int(s.maxWorkers))))
            if p.pointee.live < want { made = makeWorkers(want - p.pointee.live) }
        }
        p.pointee.sync.unlock()
        startThreads(made)
    }

    /// queued, running, done, failed, cancelled, workers, stopping, idle.
    static func stats(_ out: UnsafeMutablePointer<Int64>) {
        let p = core
        p.pointee.sync.lock()
        out[0] = Int64(p.pointee.queue.count)
        out[1] = Int64(p.pointee.running)
        out[2] = Int64(p.pointee.done)
        out[3] = Int64(p.pointee.failed)
        out[4] = Int64(p.pointee.cancelled)
        out[5] = Int64(p.pointee.live)
        out[6] = Int64(p.pointee.stopping)
        out[7] = Int64(p.pointee.idle.count)
        p.pointee.sync.unlock()
    }

    // -- Working (worker threads) --

    /// The job slot Lua reads (`ljasync_pool_job`): msg at 0, definition at 8, init count at 12,
    /// seconds waited at 16, late flag at 24.
    static let jobStride = 32

    /// Short jobs are taken several at a time (up to this many), when a worker's last batch
    /// took under `shortJobNs` per job: one trip through the queue's lock and one through the
    /// inbox's per batch instead of per job. Long jobs are always taken one by one, so a worker
    /// never sits on jobs another worker could start, and never holds results while it runs
    /// a long job.
    static let maxBatch = 16
    static let shortJobNs: UInt64 = 20_000

    /// Hands back the result of the worker's current job (if any; `status` 0 ok, 1 failed) and
    /// puts the next job into `out`, sleeping while there is none. Returns 1 with a job, 0 when
    /// the worker must leave (it has then left every list). Worker's thread.
    static func step(_ w: WorkerRef, result: UnsafeMutablePointer<Message>?, status: Int32,
                     out: UnsafeMutableRawPointer) -> Int32 {
        let p = core
        if let job = w.pointee.current {
            w.pointee.current = nil
            if let m = job.message { Message.free(m) }
            w.pointee.outbox.push(PoolResult(message: result, id: job.id, status: status == 0 ? .ok : .failed))
            w.pointee.outboxInboxes.push(job.inbox)
            if status == 0 { w.pointee.finishedOK += 1 } else { w.pointee.finishedFailed += 1 }
        } else if let result {
            Message.free(result)  // nothing to answer: a result without a job is dropped
        }
        // The rest of a batch of short jobs: no shared state touched.
        if let next = w.pointee.taken.popFirst() {
            start(w, next, out)
            return 1
        }
        flushOutbox(w)
        p.pointee.sync.lock()
        p.pointee.running -= w.pointee.finishedOK + w.pointee.finishedFailed
        p.pointee.done += w.pointee.finishedOK
        p.pointee.failed += w.pointee.finishedFailed
        w.pointee.finishedOK = 0
        w.pointee.finishedFailed = 0
        if !w.pointee.started {
            w.pointee.started = true
            p.pointee.starting -= 1
        }
        var spun = false
        while true {
            if let job = take(w) {
                // Batch size from how long the last batch took per job.
                let now = Clock.nanoseconds()
                if w.pointee.lastTakeCount > 0 {
                    let perJob = (now &- w.pointee.lastTakeNs) / UInt64(w.pointee.lastTakeCount)
                    w.pointee.shortJobs = perJob < shortJobNs
                }
                var n = 1
                if w.pointee.shortJobs {
                    // Leave the others their share: at most half the queue per live worker.
                    let share = p.pointee.queue.count / (2 * max(1, p.pointee.live))
                    while n < min(maxBatch, share + 1), let more = take(w) {
                        w.pointee.taken.push(more)
                        n += 1
                    }
                }
                w.pointee.lastTakeNs = now
                w.pointee.lastTakeCount = n
                w.pointee.warnNs = p.pointee.warnAfterNs
                p.pointee.running += n
                queueShrank()
                p.pointee.sync.unlock()
                start(w, job, out)
                return 1
            }
            if w.pointee.stopping {
                remove(w)
                p.pointee.sync.unlock()
                return 0
            }
            w.pointee.lastTakeCount = 0  // idle time says nothing about job length
            if !spun && p.pointee.spinners == 0 {
                // Jobs often come in streams: one worker at a time looks again for a few
                // microseconds, yielding the CPU, before it sleeps. Submitters see it in
                // `spinners` and skip the wake-up (a futex call per job otherwise).
                spun = true
                p.pointee.spinners += 1
                p.pointee.queuedHint.pointee.store(0, ordering: .relaxed)  // kept current while anyone spins
                p.pointee.sync.unlock()
                let hint = p.pointee.queuedHint
                for _ in 0..<Pool.spinRounds {
                    if hint.pointee.load(ordering: .relaxed) > 0 { break }
                    sched_yield()
                }
                p.pointee.sync.lock()
                p.pointee.spinners -= 1
                continue
            }
            spun = false
            if !idleWait(w) {
                remove(w)
                p.pointee.sync.unlock()
                return 0
            }
        }
    }

    /// Makes `job` the worker's current job and describes it in `out`. Worker's thread.
    @inline(__always) private static func start(_ w: WorkerRef, _ job: PoolJob, _ out: UnsafeMutableRawPointer) {
        w.pointee.current = job
        let now = coarseNanoseconds()
        let waited = now > job.enqueuedNs ? now - job.enqueuedNs : 0
        let warnNs = w.pointee.warnNs
        out.storeBytes(of: job.message.map { UInt(bitPattern: $0) } ?? 0, as: UInt.self)
        out.storeBytes(of: job.definition, toByteOffset: 8, as: Int32.self)
        out.storeBytes(of: PoolInits.count, toByteOffset: 12, as: Int32.self)
        out.storeBytes(of: Double(waited) / 1e9, toByteOffset: 16, as: Double.self)
        out.storeBytes(of: warnNs > 0 && waited > warnNs && !job.warned ? 1 : 0, toByteOffset: 24, as: Int32.self)
    }

    /// Hands the batch's results to their inboxes, one lock per run of the same inbox.
    /// Worker's thread, holding no lock.
    private static func flushOutbox(_ w: WorkerRef) {
        while !w.pointee.outbox.isEmpty {
            let inbox = w.pointee.outboxInboxes.first!
            var run = 0
            while run < w.pointee.outboxInboxes.count && w.pointee.outboxInboxes[run] == inbox { run += 1 }
            Inbox.push(inbox, from: &w.pointee.outbox, count: run)
            for _ in 0..<run { _ = w.pointee.outboxInboxes.popFirst() }
        }
    }

    /// With the lock held: the oldest job this worker may run, if any.
    @inline(__always) private static func take(_ w: WorkerRef) -> PoolJob? {
        let p = core
        guard let head = p.pointee.queue.first else { return nil }
        if w.pointee.stopping && head.seq >= w.pointee.stopSeq { return nil }
        return p.pointee.queue.popFirst()
    }

    /// With the lock held: sleeps until woken for a job or told to stop. False when an
    /// autoscaled worker has been idle long enough to leave.
    private static func idleWait(_ w: WorkerRef) -> Bool {
        let p = core
        w.pointee.idle = true
        w.pointee.woken = false
        p.pointee.idle.push(w)
        var deadline: timespec? = nil
        while !w.pointee.woken && !w.pointee.stopping {
            let scaling = p.pointee.settings.autoscale != 0
            if scaling && deadline == nil { deadline = Clock.deadline(after: p.pointee.settings.idleTimeout) }
            if !scaling { deadline = nil }
            let rc: Int32
            if var d = deadline {
                rc = pthread_cond_timedwait(w.pointee.cond, p.pointee.sync.mutex, &d)
            } else {
                rc = pthread_cond_wait(w.pointee.cond, p.pointee.sync.mutex)
            }
            if rc == ETIMEDOUT && !w.pointee.woken && !w.pointee.stopping {
                if p.pointee.settings.autoscale != 0 && p.pointee.live > Int(p.pointee.settings.minWorkers) {
                    return false
                }
                deadline = nil
            }
        }
        if w.pointee.idle { removeIdle(w) }
        return true
    }

    /// A worker's Lua loop ended abnormally: its job (if any) fails, it leaves, and a live
    /// worker that had started is replaced so the count stays what the user asked. Worker's thread.
    static func crashed(_ w: WorkerRef, reason: String) {
        let p = core
        flushOutbox(w)
        p.pointee.sync.withLock {
            p.pointee.running -= w.pointee.finishedOK + w.pointee.finishedFailed + w.pointee.taken.count
            p.pointee.done += w.pointee.finishedOK
            p.pointee.failed += w.pointee.finishedFailed
            w.pointee.finishedOK = 0
            w.pointee.finishedFailed = 0
            // Taken but not started: back to the front of the queue, in order, for another worker.
            while let j = w.pointee.taken.popLast() {
                p.pointee.queue.pushFront(j)
                if let idle = p.pointee.idle.popLast() {
                    idle.pointee.idle = false
                    idle.pointee.woken = true
                    pthread_cond_signal(idle.pointee.cond)
                }
            }
        }
        if let job = w.pointee.current {
            w.pointee.current = nil
            if let m = job.message { Message.free(m) }
            let text = "the worker running this job failed: " + reason
            Inbox.push(job.inbox, PoolResult(message: failureMessage(text), id: job.id, status: .failed))
            p.pointee.sync.withLock {
                p.pointee.running -= 1
                p.pointee.failed += 1
            }
        }
        p.pointee.sync.lock()
        let replace = w.pointee.started && !w.pointee.stopping && p.pointee.all.contains(w)
        remove(w)
        let made = replace ? makeWorkers(1) : []
        p.pointee.sync.unlock()
        startThreads(made)
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

    /// A failure result: a zero byte, then the text (the zero keeps the handle bit clear).
    static func failureMessage(_ text: String) -> UnsafeMutablePointer<Message> {
        var bytes: [UInt8] = [0]
        bytes.append(contentsOf: text.utf8)
        return bytes.withUnsafeBytes { Message.create($0.baseAddress!, $0.count) }
    }
}
