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
/// itself once it has left every list of the pool. In three parts (see `PoolRecord`):
/// `WorkerFixed` (its condition and serial), `PoolWorker` (every field guarded by the pool's
/// mutex) and `PoolWorkerOwn` (what only the worker's own thread touches, without the lock).
struct PoolWorker {
    var stopping = false
    var stopSeq: UInt64 = 0
    var idle = false
    var woken = false
}

/// A worker's fields no thread writes after it is made.
struct WorkerFixed {
    let cond = PthreadCondition()  // waited on with the pool's mutex; freed with the worker
    let serial: Int
}

/// A worker's fields only its own thread touches (no lock).
struct PoolWorkerOwn {
    /// It took its first step (then, under the pool's lock, it left the pool's `starting` count).
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
    /// Jobs this worker dropped unstarted because their owner had gone (status 3 of step).
    var finishedCancelled = 0
    /// When this worker last took jobs (precise clock): how long its batches take.
    var lastTakeNs: UInt64 = 0
    var lastTakeCount = 0
    var shortJobs = false
    var warnNs: UInt64 = 0      // the pool's warn_after, copied at each take
}

extension PoolWorker {
    static func make(serial: Int) -> WorkerRef {
        PoolRecord.allocate(WorkerFixed(serial: serial), PoolWorker(), PoolWorkerOwn())
    }

    static func destroy(_ w: WorkerRef) {
        w.own.pointee.taken.free()
        w.own.pointee.outbox.free()
        w.own.pointee.outboxInboxes.free()
        w.cond.destroy()
        PoolRecord.free(w, WorkerFixed.self, PoolWorkerOwn.self)
    }
}

typealias WorkerRef = UnsafeMutablePointer<PoolWorker>

extension UnsafeMutablePointer where Pointee == PoolWorker {
    /// The worker's condition (waited on with the pool's mutex), without an access to `PoolWorker`.
    @inline(__always) var cond: PthreadCondition { PoolRecord.fixed(self, WorkerFixed.self).pointee.cond }
    @inline(__always) var serial: Int { PoolRecord.fixed(self, WorkerFixed.self).pointee.serial }
    /// The worker's own fields: its thread only.
    @inline(__always) var own: UnsafeMutablePointer<PoolWorkerOwn> { PoolRecord.own(self, PoolWorkerOwn.self) }
}
