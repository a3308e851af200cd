// A pthread condition variable on the monotonic clock, in raw memory at a stable address.
import CLJAsync
import Glibc

/// A condition variable whose timed waits use CLOCK_MONOTONIC deadlines (see `Clock`).
///
/// Thread-safety: any thread may signal or wait (waiting with the paired mutex held).
/// Lifetime: the owner calls `destroy()` once, when no thread can wait on it any more.
struct Condvar {
    let raw: UnsafeMutablePointer<pthread_cond_t>

    init() {
        raw = .allocate(capacity: 1)
        var attr = pthread_condattr_t()
        pthread_condattr_init(&attr)
        pthread_condattr_setclock(&attr, CLOCK_MONOTONIC)
        let rc = pthread_cond_init(raw, &attr)
        pthread_condattr_destroy(&attr)
        precondition(rc == 0, "pthread_cond_init failed: \(rc)")
    }

    func destroy() {
        pthread_cond_destroy(raw)
        raw.deallocate()
    }

    @inline(__always) func signal() { pthread_cond_signal(raw) }
    @inline(__always) func broadcast() { pthread_cond_broadcast(raw) }

    /// Waits with `mutex` held; nil deadline = no limit. Returns false when the deadline passed.
    /// Like every condition variable it may wake spuriously: callers re-check their predicate.
    @inline(__always)
    func wait(_ mutex: UnsafeMutablePointer<pthread_mutex_t>, until deadline: timespec?) -> Bool {
        guard var d = deadline else {
            let rc = pthread_cond_wait(raw, mutex)
            precondition(rc == 0, "pthread_cond_wait failed: \(rc)")
            return true
        }
        return pthread_cond_timedwait(raw, mutex, &d) != ETIMEDOUT
    }
}

/// A pthread mutex in raw memory for the objects' internal state.
///
/// It is glibc's adaptive kind: a contended lock spins a bounded number of times before
/// sleeping in the kernel, which suits critical sections of a few dozen instructions (a
/// channel's ring) and measurably helps one producer + one consumer (bench/sync_bench.lua).
/// It is never used for waiting on data: that is what the condition variables are for.
enum RawMutex {
    /// PTHREAD_MUTEX_ADAPTIVE_NP, a GNU extension that Swift's Glibc module leaves out.
    static let adaptive = Int32(LJASYNC_MUTEX_ADAPTIVE)

    static func make() -> UnsafeMutablePointer<pthread_mutex_t> {
        let m = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
        var attr = pthread_mutexattr_t()
        pthread_mutexattr_init(&attr)
        pthread_mutexattr_settype(&attr, adaptive)
        let rc = pthread_mutex_init(m, &attr)
        pthread_mutexattr_destroy(&attr)
        precondition(rc == 0, "pthread_mutex_init failed: \(rc)")
        return m
    }

    static func destroy(_ m: UnsafeMutablePointer<pthread_mutex_t>) {
        pthread_mutex_destroy(m)
        m.deallocate()
    }

    @inline(__always) static func lock(_ m: UnsafeMutablePointer<pthread_mutex_t>) {
        let rc = pthread_mutex_lock(m)
        precondition(rc == 0, "pthread_mutex_lock failed: \(rc)")
    }

    @inline(__always) static func unlock(_ m: UnsafeMutablePointer<pthread_mutex_t>) {
        let rc = pthread_mutex_unlock(m)
        precondition(rc == 0, "pthread_mutex_unlock failed: \(rc)")
    }
}
