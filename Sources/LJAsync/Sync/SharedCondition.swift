// A condition variable shared between states, used with a SharedMutex.
import Glibc

/// A condition variable: `wait` atomically releases the mutex, sleeps until signalled (or
/// the deadline), and re-locks before returning. Wakeups may be spurious, as for any
/// condition variable: callers loop on their predicate.
///
/// Thread-safety: any thread. Lifetime: reference counted (SharedObject). A waiter holds a
/// handle to both objects, so neither can die under it.
final class SharedCondition: SyncObject, @unchecked Sendable {
    enum Status: Int32 { case ok = 0, timeout = 1, notOwner = -2 }

    let cond = PthreadCondition()

    deinit { cond.destroy() }

    /// Waits on `mutex`, which this thread must hold; at most `timeout` seconds (negative =
    /// forever; 0 = return `timeout` at once without releasing the mutex). Any thread.
    func wait(_ mutex: SharedMutex, timeout: Double) -> Status {
        let me = SharedMutex.me
        guard mutex.owner.pointee.load(ordering: .relaxed) == me else { return .notOwner }
        if timeout == 0 { return .timeout }
        // While we sleep the mutex is free and someone else may own it.
        mutex.owner.pointee.store(0, ordering: .relaxed)
        let woke = mutex.pthreadLock.wait(on: cond, until: Clock.deadline(after: timeout))
        mutex.owner.pointee.store(me, ordering: .relaxed)
        return woke ? .ok : .timeout
    }

    func signal() { cond.signal() }
    func broadcast() { cond.broadcast() }
}
