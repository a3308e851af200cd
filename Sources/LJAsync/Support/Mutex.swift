// A pthread mutex and condition variable at stable heap addresses.
import Glibc

/// A mutex + condition pair living in manually allocated memory, so C never sees a temporary.
///
/// Thread-safety: all methods may be called from any thread. Lifetime: the owner calls
/// `destroy()` exactly once, when no thread can touch it any more.
struct MutexCond {
    let mutex: UnsafeMutablePointer<pthread_mutex_t>
    let cond: UnsafeMutablePointer<pthread_cond_t>

    init() {
        mutex = .allocate(capacity: 1)
        let rc = pthread_mutex_init(mutex, nil)
        precondition(rc == 0, "pthread_mutex_init failed: \(rc)")
        // Timed waits measure against the monotonic clock, immune to wall-clock jumps.
        cond = Condvar().raw
    }

    func destroy() {
        pthread_cond_destroy(cond)
        pthread_mutex_destroy(mutex)
        cond.deallocate()
        mutex.deallocate()
    }

    @inline(__always) func lock() {
        let rc = pthread_mutex_lock(mutex)
        precondition(rc == 0, "pthread_mutex_lock failed: \(rc)")
    }

    @inline(__always) func unlock() {
        let rc = pthread_mutex_unlock(mutex)
        precondition(rc == 0, "pthread_mutex_unlock failed: \(rc)")
    }

    @inline(__always) func withLock<T>(_ body: () throws -> T) rethrows -> T {
        lock()
        defer { unlock() }
        return try body()
    }

    func signal() { pthread_cond_signal(cond) }
    func broadcast() { pthread_cond_broadcast(cond) }

    /// Waits with the mutex held. `deadline` is a CLOCK_MONOTONIC time or nil for no limit.
    /// Returns false when the deadline passed.
    @discardableResult
    func wait(until deadline: timespec?) -> Bool {
        guard var d = deadline else {
            pthread_cond_wait(cond, mutex)
            return true
        }
        return pthread_cond_timedwait(cond, mutex, &d) != ETIMEDOUT
    }
}

/// Monotonic clock helpers for timeouts given in seconds.
enum Clock {
    static func now() -> timespec {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return ts
    }

    /// The deadline `seconds` from now; nil (no deadline) for negative, infinite, NaN or
    /// absurdly long (over 30 years) timeouts.
    static func deadline(after seconds: Double) -> timespec? {
        if seconds < 0 || !seconds.isFinite || seconds > 1e9 { return nil }
        var ts = now()
        let whole = seconds.rounded(.down)
        ts.tv_sec += Int(whole)
        ts.tv_nsec += Int((seconds - whole) * 1e9)
        if ts.tv_nsec >= 1_000_000_000 { ts.tv_sec += 1; ts.tv_nsec -= 1_000_000_000 }
        return ts
    }

    static func nanoseconds() -> UInt64 {
        let ts = now()
        return UInt64(ts.tv_sec) &* 1_000_000_000 &+ UInt64(ts.tv_nsec)
    }
}
