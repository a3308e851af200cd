// The one pthread mutex + condition variable type of lj-async (kind as a parameter), at stable heap addresses.
import CLJAsync
import Glibc

/// Which pthread mutex a `PthreadLock` is.
///
/// - `normal`: glibc's default kind; a contended lock sleeps in the kernel at once.
/// - `adaptive`: glibc's PTHREAD_MUTEX_ADAPTIVE_NP: a contended lock spins a bounded number of
///   times before sleeping, which suits critical sections of a few dozen instructions taken by
///   several threads at once (a channel's ring, the pool's queue, an inbox) and measurably helps
///   one producer + one consumer (bench/sync_bench.lua).
///
/// In debug builds every kind is PTHREAD_MUTEX_ERRORCHECK instead, so a relock by the holder
/// or an unlock by another thread traps (via the checked return codes) rather than hanging.
enum LockKind {
    case normal, adaptive

    /// PTHREAD_MUTEX_ADAPTIVE_NP (ljasync.h's name for it, checked against glibc's in shims.c:
    /// Swift's Glibc module leaves the GNU one out) and PTHREAD_MUTEX_ERRORCHECK.
    private static let adaptiveNP = Int32(LJASYNC_MUTEX_ADAPTIVE)
    private static let errorCheck: Int32 = 2

    var pthreadType: Int32 {
        #if DEBUG
        return LockKind.errorCheck
        #else
        switch self {
        case .normal: return 0   // PTHREAD_MUTEX_NORMAL (= PTHREAD_MUTEX_DEFAULT on glibc)
        case .adaptive: return LockKind.adaptiveNP
        }
        #endif
    }
}

/// A pthread condition variable whose timed waits take CLOCK_MONOTONIC deadlines (`Clock`),
/// in raw memory so C never sees a temporary. It is waited on with the mutex of a
/// `PthreadLock`: the lock's own `cond`, or an extra one paired with it (a channel's
/// "not full", a pool worker's wake-up, a shared condition object).
///
/// Thread-safety: any thread may signal, or wait with the paired mutex held. Wakeups may be
/// spurious: waiters loop on their predicate. Lifetime: the owner calls `destroy()` once, when
/// no thread can wait on it any more.
struct PthreadCondition {
    let raw: UnsafeMutablePointer<pthread_cond_t>

    init() {
        raw = .allocate(capacity: 1)
        PthreadCondition.initialize(raw)
    }

    private static func initialize(_ c: UnsafeMutablePointer<pthread_cond_t>) {
        var attr = pthread_condattr_t()
        check(pthread_condattr_init(&attr), "pthread_condattr_init")
        check(pthread_condattr_setclock(&attr, CLOCK_MONOTONIC), "pthread_condattr_setclock")
        check(pthread_cond_init(c, &attr), "pthread_cond_init")
        check(pthread_condattr_destroy(&attr), "pthread_condattr_destroy")
    }

    func destroy() {
        check(pthread_cond_destroy(raw), "pthread_cond_destroy")
        raw.deallocate()
    }

    @inline(__always) func signal() { check(pthread_cond_signal(raw), "pthread_cond_signal") }
    @inline(__always) func broadcast() { check(pthread_cond_broadcast(raw), "pthread_cond_broadcast") }

    /// Waits with `mutex` held (released while asleep, held again on return); nil deadline =
    /// no limit. Returns false when the deadline passed.
    @inline(__always)
    func wait(_ mutex: UnsafeMutablePointer<pthread_mutex_t>, until deadline: timespec?) -> Bool {
        guard var d = deadline else {
            check(pthread_cond_wait(raw, mutex), "pthread_cond_wait")
            return true
        }
        let rc = pthread_cond_timedwait(raw, mutex, &d)
        if rc == ETIMEDOUT { return false }
        check(rc, "pthread_cond_timedwait")
        return true
    }

    /// In a forked child: re-created in place without waiters (theirs were the parent's
    /// threads). Fork.swift's child handler only.
    func reinitAfterFork() { PthreadCondition.initialize(raw) }
}

/// A pthread mutex of the given kind and one condition variable paired with it, both at
/// stable heap addresses. Every lock of lj-async that someone waits on, or that fork() must
/// take and re-create (Fork.swift), is one of these; a lock nobody waits on and that fork()
/// never crosses may be Swift's `Synchronization.Mutex` instead (a PI futex naming its
/// owner's thread id: one a vanished parent thread held traps when a forked child acquires it).
///
/// Every pthread return code is checked: a failure is a broken invariant and traps.
///
/// Thread-safety: all methods may be called from any thread; `wait` with the mutex held.
/// Lifetime: the owner calls `destroy()` exactly once, when no thread can touch it any more.
struct PthreadLock {
    let mutex: UnsafeMutablePointer<pthread_mutex_t>
    let cond: PthreadCondition
    let kind: LockKind

    init(_ kind: LockKind = .normal) {
        self.kind = kind
        mutex = .allocate(capacity: 1)
        cond = PthreadCondition()
        PthreadLock.initialize(mutex, kind)
    }

    private static func initialize(_ m: UnsafeMutablePointer<pthread_mutex_t>, _ kind: LockKind) {
        var attr = pthread_mutexattr_t()
        check(pthread_mutexattr_init(&attr), "pthread_mutexattr_init")
        check(pthread_mutexattr_settype(&attr, kind.pthreadType), "pthread_mutexattr_settype")
        check(pthread_mutex_init(m, &attr), "pthread_mutex_init")
        check(pthread_mutexattr_destroy(&attr), "pthread_mutexattr_destroy")
    }

    /// Frees both. A mutex still locked is allowed (EBUSY): a shared mutex object dies with
    /// its last reference even while held, when nobody can unlock it any more.
    func destroy() {
        cond.destroy()
        let rc = pthread_mutex_destroy(mutex)
        precondition(rc == 0 || rc == EBUSY, "pthread_mutex_destroy failed: \(rc)")
        mutex.deallocate()
    }

    @inline(__always) func lock() { check(pthread_mutex_lock(mutex), "pthread_mutex_lock") }
    @inline(__always) func unlock() { check(pthread_mutex_unlock(mutex), "pthread_mutex_unlock") }

    /// Takes the lock if it is free; false if another thread holds it (or, in debug builds,
    /// this one). Never waits.
    @inline(__always) func tryLock() -> Bool {
        let rc = pthread_mutex_trylock(mutex)
        if rc == EBUSY || rc == EDEADLK { return false }
        check(rc, "pthread_mutex_trylock")
        return true
    }

    @inline(__always) func withLock<T>(_ body: () throws -> T) rethrows -> T {
        lock()
        defer { unlock() }
        return try body()
    }

    @inline(__always) func signal() { cond.signal() }
    @inline(__always) func broadcast() { cond.broadcast() }

    /// Waits on `cond` with the mutex held; nil deadline = no limit. False when the deadline
    /// passed. May wake spuriously: callers re-check their predicate.
    @discardableResult
    @inline(__always) func wait(until deadline: timespec?) -> Bool { cond.wait(mutex, until: deadline) }

    /// Waits on another condition paired with this mutex (see `PthreadCondition`).
    @discardableResult
    @inline(__always) func wait(on other: PthreadCondition, until deadline: timespec?) -> Bool {
        other.wait(mutex, until: deadline)
    }

    /// In a forked child: the mutex re-created unlocked and the condition without waiters, in
    /// place (their addresses are known to their owners). Fork.swift's child handler only.
    func reinitAfterFork() {
        PthreadLock.initialize(mutex, kind)
        cond.reinitAfterFork()
    }
}

/// Traps on a non-zero pthread return code: lock misuse or corruption is a broken invariant.
@inline(__always) private func check(_ rc: Int32, _ what: StaticString) {
    precondition(rc == 0, "\(what) failed: \(rc)")
}
