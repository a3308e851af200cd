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
/// Thread-safety: every field is guarded by the pool's mutex, except `current`, `taken`,
/// `outbox`, the counters and `lastTakeNs`, which only the worker's own thread touches.
/// `cond` is waited on with the pool's mutex.
struct PoolWorker {
    let cond = PthreadCondition()  // waited on with the pool's mutex; freed with the worker
    let serial: Int
    var stopping = false
    var stopSeq: UInt64 = 0
    var idle = false
    var woken = false
    var started = false
    var unready = false         // init code failed after it started (see Pool.step, status 2)
    var current: PoolJob? = nil
    /// Jobs taken together with `current` (short jobs only, see `Pool.step`), not started yet.
    var taken = Ring<PoolJob>(capacity: 16)
    /// Results of the jobs of this batch, handed back together when the batch is done.
    var outbox = Ring<PoolResult>(capacity: 16)
    var outboxInboxes = Ring<InboxRef>(capacity: 16)
    var finishedOK = 0
    var finishedFailed = 0
    /// When this worker last took jobs (precise clock): how long its batches take.
    var lastTakeNs: UInt64 = 0
    var lastTakeCount = 0
    var shortJobs = false
    var warnNs: UInt64 = 0      // the pool's warn_after, copied at each take

    init(serial: Int) {
        self.serial = serial
    }

    static func destroy(_ w: WorkerRef) {
        w.pointee.taken.free()
        w.pointee.outbox.free()
        w.pointee.outboxInboxes.free()
        w.pointee.cond.destroy()
        w.deinitialize(count: 1)
        w.deallocate()
    }
}

typealias WorkerRef = UnsafeMutablePointer<PoolWorker>
