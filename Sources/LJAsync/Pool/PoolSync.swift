// The mutex + condition pair of the pool's queue and of each inbox: glibc's adaptive mutex.
import Glibc

/// Like `MutexCond`, but the mutex is the adaptive kind (`RawMutex`): a contended lock spins
/// briefly before sleeping. The pool's critical sections are a few dozen instructions, taken
/// per job by the owner and by every worker; with the default kind a contended lock parks the
/// thread in the kernel and the pool's threads end up taking turns instead of running at once.
///
/// Thread-safety: all methods may be called from any thread. Lifetime: `destroy()` once,
/// when no thread can touch it any more.
struct PoolSync {
    let mutex = RawMutex.make()
    let cond = Condvar()

    func destroy() {
        cond.destroy()
        RawMutex.destroy(mutex)
    }

    @inline(__always) func lock() { RawMutex.lock(mutex) }
    @inline(__always) func unlock() { RawMutex.unlock(mutex) }

    @inline(__always) func withLock<T>(_ body: () throws -> T) rethrows -> T {
        lock()
        defer { unlock() }
        return try body()
    }

    @inline(__always) func signal() { cond.signal() }
    @inline(__always) func broadcast() { cond.broadcast() }

    /// Waits with the mutex held; nil deadline = no limit. False when the deadline passed.
    @discardableResult
    @inline(__always) func wait(until deadline: timespec?) -> Bool { cond.wait(mutex, until: deadline) }

    /// In a forked child: the lock unlocked and the condition without waiters (Fork.swift).
    func reinitAfterFork() {
        Fork.reinit(mutex: mutex, adaptive: true)
        Fork.reinit(cond: cond.raw)
    }
}
