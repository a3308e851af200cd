// A queued job and the record of one worker thread, as the pool keeps them.
import Glibc

/// A job waiting in the pool's queue or running on a worker.
struct PoolJob {
    /// The encoded arguments; for an anonymous job (`definition == 0`) the function comes first.
    var message: UnsafeMutablePointer<Message>?
    var inbox: InboxRef
    var id: Double
    var definition: Int32
    var cancelled = false
    var warned = false
    /// Submission order, process-wide; a stopping worker only takes jobs older than its stop.
    var seq: UInt64
    var enqueuedNs: UInt64
}

/// One worker thread. Allocated by the pool when the thread is started, freed by the thread
/// itself once it has left every list of the pool.
///
/// Thread-safety: every field is guarded by the pool's mutex, except `current` and `hasCurrent`,
/// which only the worker's own thread touches. `cond` is waited on with the pool's mutex.
struct PoolWorker {
    let cond: UnsafeMutablePointer<pthread_cond_t>
    let serial: Int
    var stopping = false
    var stopSeq: UInt64 = 0
    var idle = false
    var woken = false
    var started = false
    var current: PoolJob? = nil
    var lastInits: Int32 = 0

    init(serial: Int) {
        self.serial = serial
        cond = .allocate(capacity: 1)
        var attr = pthread_condattr_t()
        pthread_condattr_init(&attr)
        pthread_condattr_setclock(&attr, CLOCK_MONOTONIC)
        let rc = pthread_cond_init(cond, &attr)
        pthread_condattr_destroy(&attr)
        precondition(rc == 0, "pthread_cond_init failed: \(rc)")
    }

    static func destroy(_ w: WorkerRef) {
        pthread_cond_destroy(w.pointee.cond)
        w.pointee.cond.deallocate()
        w.deinitialize(count: 1)
        w.deallocate()
    }
}

typealias WorkerRef = UnsafeMutablePointer<PoolWorker>
