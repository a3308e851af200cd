// A mutual-exclusion lock any Lua state can hold, owned by the OS thread that locked it.
import CLJAsync
import Glibc
import Synchronization

/// A non-recursive mutex shared between states.
///
/// Ownership is per OS thread (as pthread's): the thread that locked it must unlock it.
/// Misuse is reported, never undefined: locking it again from the owning thread returns
/// `deadlock` instead of hanging, and unlocking from a thread that does not hold it returns
/// `notOwner` and leaves the lock alone. A Lua state runs on one thread at a time, so for a
/// thread's state "the owning thread" is "this state"; a callback's state runs on its
/// caller's thread, so it must unlock before it returns.
///
/// Thread-safety: every method may be called from any thread. Lifetime: reference counted
/// (SharedObject); freed with the last reference even if locked (nobody could unlock it).
final class SharedMutex: SyncObject, @unchecked Sendable {
    enum Status: Int32 { case ok = 0, timeout = 1, deadlock = -1, notOwner = -2 }

    /// Adaptive (see LockKind). Its own condition goes unused: a `SharedCondition` brings
    /// its own, as any number of them may pair with one mutex.
    let pthreadLock = PthreadLock(.adaptive)
    /// pthread_self() of the holder, 0 when unlocked. Written only by the holder while it
    /// holds `pthreadLock`, so a thread comparing it with its own id needs no stronger ordering.
    let owner: UnsafeMutablePointer<Atomic<UInt>>

    override init() {
        owner = .allocate(capacity: 1)
        owner.initialize(to: Atomic(0))
        super.init()
    }

    deinit {
        pthreadLock.destroy()
        owner.deinitialize(count: 1)
        owner.deallocate()
    }

    @inline(__always) static var me: UInt { UInt(pthread_self()) }

    /// Locks, waiting at most `timeout` seconds (negative = forever, 0 = try once). Any thread.
    @inline(__always)
    func lock(timeout: Double) -> Status {
        let me = SharedMutex.me
        if owner.pointee.load(ordering: .relaxed) == me { return .deadlock }
        if timeout < 0 {
            pthreadLock.lock()
        } else if timeout == 0 {
            if !pthreadLock.tryLock() { return .timeout }
        } else if !pthreadLock.tryLock() {
            let rc = SharedMutex.timedLock(pthreadLock.mutex, timeout)
            if rc == ETIMEDOUT { return .timeout }
            precondition(rc == 0, "pthread_mutex_clocklock failed: \(rc)")
        }
        owner.pointee.store(me, ordering: .relaxed)
        return .ok
    }

    /// Locks with a deadline `timeout` seconds away on the monotonic clock (glibc's
    /// pthread_mutex_clocklock, through ljasync.h's shim: a GNU extension Swift's Glibc module
    /// does not declare). Returns 0 or ETIMEDOUT.
    static func timedLock(_ m: UnsafeMutablePointer<pthread_mutex_t>, _ timeout: Double) -> Int32 {
        guard var deadline = Clock.deadline(after: timeout) else { return pthread_mutex_lock(m) }
        return ljasync_gnu_mutex_clocklock(m, &deadline)
    }

    /// Unlocks; `notOwner` if this thread does not hold the lock. Any thread.
    @inline(__always)
    func unlock() -> Status {
        guard owner.pointee.load(ordering: .relaxed) == SharedMutex.me else { return .notOwner }
        owner.pointee.store(0, ordering: .relaxed)
        pthreadLock.unlock()
        return .ok
    }

    /// Whether this thread holds the lock. Any thread.
    var heldByMe: Bool { owner.pointee.load(ordering: .relaxed) == SharedMutex.me }
}
