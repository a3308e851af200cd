// What a pool worker does between jobs: hand back results, take the next job (short ones in batches), idle.
import CLJAsync
import Glibc

extension Pool {
    // -- Working (worker threads) --

    /// Short jobs are taken several at a time (up to this many), when a worker's last batch
    /// took under `shortJobNs` per job: one trip through the queue's lock and one through the
    /// inbox's per batch instead of per job. Long jobs are always taken one by one, so a worker
    /// never sits on jobs another worker could start, and never holds results while it runs
    /// a long job.
    static let maxBatch = 16

    /// Moves the worker's finished-job counts into the pool's (running, done, failed,
    /// cancelled). Under the pool's lock.
    static func settleCounts(_ w: WorkerRef, _ p: UnsafeMutablePointer<PoolCore>) {
        let own = w.own
        p.pointee.running -= own.pointee.finishedOK + own.pointee.finishedFailed + own.pointee.finishedCancelled
        p.pointee.done += own.pointee.finishedOK
        p.pointee.failed += own.pointee.finishedFailed
        p.pointee.cancelled += own.pointee.finishedCancelled
        own.pointee.finishedOK = 0
        own.pointee.finishedFailed = 0
        own.pointee.finishedCancelled = 0
    }
    static let shortJobNs: UInt64 = 20_000

    /// Hands back the result of the worker's current job (if any; `status` 0 ok, 1 failed, 3
    /// dropped unstarted: its definition went with its owner, who takes no result) and
    /// puts the next job into `out`, sleeping while there is none. Returns 1 with a job, 0 when
    /// the worker must leave (it has then left every list). Worker's thread.
    static func step(_ w: WorkerRef, result: UnsafeMutablePointer<Message>?, status: Int32,
                     out: UnsafeMutablePointer<ljasync_pool_job>) -> Int32 {
        let p = core
        if status == 2 {
            // Init code registered meanwhile failed here: the worker leaves through
            // failedToStart, which gives its jobs back (pool_worker.lua raises next).
            if let result { Message.free(result) }
            w.own.pointee.unready = true
            return 0
        }
        if let job = w.own.pointee.current {
            w.own.pointee.current = nil
            if let m = job.message { Message.free(m) }
            let s: PoolResult.Status = status == 0 ? .ok : status == 3 ? .cancelled : .failed
            w.own.pointee.outbox.push(PoolResult(message: result, id: job.id, status: s))
            w.own.pointee.outboxInboxes.push(job.inbox)
            switch s {
            case .ok: w.own.pointee.finishedOK += 1
            case .failed: w.own.pointee.finishedFailed += 1
            case .cancelled: w.own.pointee.finishedCancelled += 1
            }
        } else if let result {
            Message.free(result)  // nothing to answer: a result without a job is dropped
        }
        // The rest of a batch of short jobs: no shared state touched.
        if let next = w.own.pointee.taken.popFirst() {
            start(w, next, out)
            return 1
        }
        flushOutbox(w)
        ljasync_stack_trim_once()  // a worker's first two trips here only (PoolThread.main)
        // Read before the lock (the precise clock is a vDSO call; workers and submitters wait
        // for this lock), again only after sleeping or spinning.
        var now = Clock.nanoseconds()
        p.sync.lock()
        settleCounts(w, p)
        if !w.own.pointee.started {
            w.own.pointee.started = true
            p.pointee.starting -= 1
            p.pointee.reportedError = nil  // a later failure is news again
        }
        var spun = false
        while true {
            if let job = take(w) {
                // Batch size from how long the last batch took per job.
                if w.own.pointee.lastTakeCount > 0 {
                    let perJob = (now &- w.own.pointee.lastTakeNs) / UInt64(w.own.pointee.lastTakeCount)
                    w.own.pointee.shortJobs = perJob < shortJobNs
                }
                var n = 1
                if w.own.pointee.shortJobs {
                    // Leave the others their share: at most half the queue per live worker.
                    let share = p.pointee.queue.count / (2 * max(1, p.pointee.live))
                    while n < min(maxBatch, share + 1), let more = take(w) {
                        w.own.pointee.taken.push(more)
                        n += 1
                    }
                }
                w.own.pointee.lastTakeNs = now
                w.own.pointee.lastTakeCount = n
                w.own.pointee.warnNs = p.pointee.warnAfterNs
                p.pointee.running += n
                queueShrank()
                p.sync.unlock()
                start(w, job, out)
                return 1
            }
            if w.pointee.stopping {
                remove(w)
                p.sync.unlock()
                return 0
            }
            w.own.pointee.lastTakeCount = 0  // idle time says nothing about job length
            if !spun && p.pointee.spinners == 0 {
                // Jobs often come in streams: one worker at a time looks again for a few
                // microseconds, yielding the CPU, before it sleeps. Submitters see it in
                // `spinners` and skip the wake-up (a futex call per job otherwise).
                spun = true
                p.pointee.spinners += 1
                p.queuedHint.pointee.store(0, ordering: .relaxed)  // kept current while anyone spins
                p.sync.unlock()
                let hint = p.queuedHint
                for _ in 0..<Pool.spinRounds {
                    if hint.pointee.load(ordering: .relaxed) > 0 { break }
                    sched_yield()
                }
                now = Clock.nanoseconds()
                p.sync.lock()
                p.pointee.spinners -= 1
                continue
            }
            spun = false
            if !idleWait(w) {
                remove(w)
                p.sync.unlock()
                return 0
            }
            now = Clock.nanoseconds()
        }
    }

    /// Makes `job` the worker's current job and describes it in `out`. Worker's thread.
    @inline(__always) private static func start(_ w: WorkerRef, _ job: PoolJob, _ out: UnsafeMutablePointer<ljasync_pool_job>) {
        w.own.pointee.current = job
        let now = coarseNanoseconds()
        let waited = now > job.enqueuedNs ? now - job.enqueuedNs : 0
        let warnNs = w.own.pointee.warnNs
        out.pointee = ljasync_pool_job(msg: job.message.map { OpaquePointer($0) }, def: job.definition,
                                       inits: InitRegistry.shared.poolCount, waited: Double(waited) / 1e9,
                                       late: warnNs > 0 && waited > warnNs && !job.warned ? 1 : 0)
    }

    /// Hands the batch's results to their inboxes, one lock per run of the same inbox.
    /// Worker's thread, holding no lock.
    static func flushOutbox(_ w: WorkerRef) {
        while !w.own.pointee.outbox.isEmpty {
            let inbox = w.own.pointee.outboxInboxes.first!
            var run = 0
            while run < w.own.pointee.outboxInboxes.count && w.own.pointee.outboxInboxes[run] == inbox { run += 1 }
            Inbox.push(inbox, from: &w.own.pointee.outbox, count: run)
            for _ in 0..<run { _ = w.own.pointee.outboxInboxes.popFirst() }
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
    fileprivate static func idleWait(_ w: WorkerRef) -> Bool {
        let p = core
        w.pointee.idle = true
        w.pointee.woken = false
        p.pointee.idle.push(w)
        var deadline: timespec? = nil
        while !w.pointee.woken && !w.pointee.stopping {
            let scaling = p.pointee.settings.autoscale != 0
            if scaling && deadline == nil { deadline = Clock.deadline(after: p.pointee.settings.idleTimeout) }
            if !scaling { deadline = nil }
            let timedOut = !p.sync.wait(on: w.cond, until: deadline)
            if timedOut && !w.pointee.woken && !w.pointee.stopping {
                if p.pointee.settings.autoscale != 0 && p.pointee.live > Int(p.pointee.settings.minWorkers) {
                    return false
                }
                deadline = nil
            }
        }
        if w.pointee.idle { removeIdle(w) }
        return true
    }
}
