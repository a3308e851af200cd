// Worker threads of the pool: how many, adding, stopping gracefully, shutdown, replacing a crashed one.
import Glibc

extension Pool {
    // -- Workers: counts (any thread) --

    /// With the lock held: records `n` new workers (counted live at once); start them with
    /// `startThreads` after unlocking.
    static func makeWorkers(_ n: Int) -> [WorkerRef] {
        let p = core
        var made: [WorkerRef] = []
        for _ in 0..<n {
            p.pointee.serial += 1
            let w = PoolWorker.make(serial: p.pointee.serial)
            p.pointee.all.append(w)
            made.append(w)
        }
        p.pointee.live += n
        p.pointee.starting += n
        return made
    }

    /// Starts the threads of freshly made workers. Never creates a Lua state here: each
    /// worker takes its own on its own thread.
    static func startThreads(_ workers: [WorkerRef]) {
        for w in workers {
            var attr = pthread_attr_t()
            pthread_attr_init(&attr)
            pthread_attr_setdetachstate(&attr, Int32(PTHREAD_CREATE_DETACHED))
            var tid = pthread_t()
            let rc = withSignalsBlocked { pthread_create(&tid, &attr, { arg in
                PoolThread.main(arg!.assumingMemoryBound(to: PoolWorker.self))
                return nil
            }, UnsafeMutableRawPointer(w)) }
            pthread_attr_destroy(&attr)
            if rc != 0 {
                failedToStart(w, reason: "cannot create its thread: \(String(cString: strerror(rc)))")
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
        if !w.own.pointee.started { p.pointee.starting -= 1 }
        if p.pointee.live + p.pointee.stopping == 0 {
            for inbox in p.pointee.watchers { Inbox.noteWorkersGone(inbox) }
        }
        // Submitters skip the wake-up while a worker spins looking for work; a spinner told to
        // stop leaves without the jobs queued after its stop, so it hands them to a sleeper.
        if !p.pointee.queue.isEmpty, let idle = p.pointee.idle.popLast() {
            idle.pointee.idle = false
            idle.pointee.woken = true
            idle.cond.signal()
        }
    }

    static func removeIdle(_ w: WorkerRef) {
        let p = core
        for i in 0..<p.pointee.idle.count where p.pointee.idle[i] == w {
            p.pointee.idle.remove(at: i)
            break
        }
        w.pointee.idle = false
    }

    /// With the lock held: tells up to `n` workers to stop, idle ones first, then the most
    /// recently added. Each finishes its job and the jobs queued before now, then leaves.
    static func stop(_ n: Int) {
        let p = core
        var left = n
        func mark(_ w: WorkerRef) {
            w.pointee.stopping = true
            w.pointee.stopSeq = p.pointee.seq &+ 1
            p.pointee.live -= 1
            p.pointee.stopping += 1
            if w.pointee.idle { removeIdle(w) }
            w.cond.signal()
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
        explicitCount(manual: manual) { p in
            var made: [WorkerRef] = []
            if p.pointee.live < lo { made = makeWorkers(lo - p.pointee.live) }
            if p.pointee.live > hi { stop(p.pointee.live - hi) }
            return made
        }
    }

    /// Adds `n` workers; returns the live count. Any thread.
    static func add(_ n: Int) -> Int {
        explicitCount(manual: true) { _ in makeWorkers(n) }
    }

    /// An explicit worker count (ensure, add): under the lock, `manual` turns autoscaling off,
    /// a failed start is forgotten (an explicit count tries again) and nothing stays owed;
    /// `change` adds or stops workers and returns the ones made, started after the unlock.
    /// Returns the live count. Any thread.
    private static func explicitCount(manual: Bool, _ change: (UnsafeMutablePointer<PoolCore>) -> [WorkerRef]) -> Int {
        let p = core
        p.sync.lock()
        if manual { p.pointee.settings.autoscale = 0 }
        p.pointee.startError = nil
        p.pointee.owed = 0
        let made = change(p)
        let live = p.pointee.live
        p.sync.unlock()
        startThreads(made)
        return live
    }

    /// Stops `n` workers gracefully; returns the live count. Any thread.
    static func stopWorkers(_ n: Int) -> Int {
        let p = core
        p.sync.lock()
        p.pointee.settings.autoscale = 0
        stop(n)
        let live = p.pointee.live
        p.sync.unlock()
        return live
    }

    /// Turns autoscaling off and stops every worker gracefully. Returns the number of worker
    /// threads still to leave. Any thread.
    static func shutdown() -> Int {
        let p = core
        p.sync.lock()
        p.pointee.settings.autoscale = 0
        p.pointee.owed = 0  // nothing is owed after a shutdown: the pool is as at start
        stop(p.pointee.live)
        let left = p.pointee.stopping + p.pointee.live
        p.sync.unlock()
        return left
    }

    static var liveCount: Int {
        core.sync.withLock { core.pointee.live }
    }

    /// A worker could not get ready: its state could not be made, `pool_worker` not loaded, or
    /// init code (the environment's, or an async file) raised. Jobs it holds go back to the
    /// front of the queue; it is not replaced, and the pool starts no worker by itself until
    /// the next submit, ensure or add. When no worker is left to run them, the queued jobs fail
    /// with the reason. stderr gets one line per reason until a worker starts again.
    /// Worker's thread.
    static func failedToStart(_ w: WorkerRef, reason: String) {
        let p = core
        flushOutbox(w)
        var doomed: [PoolJob] = []
        p.sync.lock()
        let held = w.own.pointee.taken.count + (w.own.pointee.current == nil ? 0 : 1)
        settleCounts(w, p)
        p.pointee.running -= held
        while let j = w.own.pointee.taken.popLast() { p.pointee.queue.pushFront(j) }
        if let j = w.own.pointee.current {
            w.own.pointee.current = nil
            p.pointee.queue.pushFront(j)
        }
        let counted = p.pointee.all.contains(w)
        if counted && !w.pointee.stopping && p.pointee.settings.autoscale == 0 { p.pointee.owed += 1 }
        remove(w)
        p.pointee.startError = reason
        let report = p.pointee.reportedError != reason
        p.pointee.reportedError = reason
        if p.pointee.live == 0 {
            _ = p.pointee.queue.removeAll { j in doomed.append(j); return true }
            p.pointee.failed += doomed.count
            queueShrank()
        }
        p.sync.unlock()
        if report {
            var first = reason.split(separator: "\n", maxSplits: 1).first.map(String.init) ?? reason
            if first.hasSuffix(":") { first.removeLast() }  // "module 'x' not found:" + the places looked at
            reportToStderr("pool: a worker cannot start: \(first) (the pool starts no more workers until the next submit, ensure or addWorker)")
        }
        let text = "no pool worker could start: " + reason
        for j in doomed {
            if let m = j.message { Message.free(m) }
            Inbox.push(j.inbox, PoolResult(message: failureMessage(text), id: j.id, status: .failed))
        }
    }

    /// A worker's Lua loop ended abnormally: its job (if any) fails, it leaves, and a live
    /// worker that had started is replaced so the count stays what the user asked. Worker's thread.
    static func crashed(_ w: WorkerRef, reason: String) {
        let p = core
        flushOutbox(w)
        p.sync.withLock {
            settleCounts(w, p)
            p.pointee.running -= w.own.pointee.taken.count
            // Taken but not started: back to the front of the queue, in order, for another worker.
            while let j = w.own.pointee.taken.popLast() {
                p.pointee.queue.pushFront(j)
                if let idle = p.pointee.idle.popLast() {
                    idle.pointee.idle = false
                    idle.pointee.woken = true
                    idle.cond.signal()
                }
            }
        }
        if let job = w.own.pointee.current {
            w.own.pointee.current = nil
            if let m = job.message { Message.free(m) }
            let text = "the worker running this job failed: " + reason
            Inbox.push(job.inbox, PoolResult(message: failureMessage(text), id: job.id, status: .failed))
            p.sync.withLock {
                p.pointee.running -= 1
                p.pointee.failed += 1
            }
        }
        p.sync.lock()
        let replace = w.own.pointee.started && !w.pointee.stopping && p.pointee.all.contains(w)
        remove(w)
        let made = replace ? makeWorkers(1) : []
        p.sync.unlock()
        startThreads(made)
    }
}
