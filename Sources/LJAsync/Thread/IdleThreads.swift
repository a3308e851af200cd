// OS threads that finished a LuaThread's function and wait a moment to run the next one.
import Glibc

/// Parked pthreads of lj-async threads. A pthread whose `LuaThread` ended parks here for up
/// to `idleSeconds`; the next `Thread.new` or `Thread.spawn` (default stack size) hands its
/// `LuaThread` to the most recently parked one instead of creating a pthread: a wake-up
/// (about 11 us here) instead of pthread_create + exit + join (30-45 us on this machine).
/// Each run takes a fresh Lua state, as before: only the OS thread is reused.
///
/// What a reused pthread carries over from the previous function: nothing lj-async sets (the
/// name is set again, all signals are blocked again), but pthread-level settings the previous
/// function's C code changed itself (priority, affinity, thread-local variables of C
/// libraries) stay. `Thread.id()` values repeat across threads (docs/thread.md).
///
/// Invariants: a slot is in `idle` exactly while its pthread waits with no job; `handOff` pops
/// it and sets its job under `sync`, so a waiter that times out with no job is still listed
/// and removes itself. At most `maxIdle` pthreads park; the others exit at once.
/// Fork: `forkPrepare` holds `sync` across fork() (parked pthreads wait with it released);
/// in the child `forkChild` re-creates it and forgets the parent's parked pthreads (their
/// slots' condition variables are left alone: the parent's waiters were on them).
/// Thread-safety: all methods may be called from any thread.
final class IdleThreads: @unchecked Sendable {
    static let shared = IdleThreads()

    /// How many pthreads may wait for work at once, and for how long each.
    static let maxIdle = 16
    static let idleSeconds = 1.0

    /// One parked pthread's wake-up: `job` (the pthread's reference, retained) is guarded by
    /// `IdleThreads.sync`.
    final class Slot {
        let wake = PthreadCondition()
        var job: Unmanaged<LuaThread>?
    }

    private let sync = PthreadLock()
    private var idle: [Slot] = []   // the most recently parked last (taken first: warm caches)

    /// Hands `t` to a parked pthread, which takes a reference. False when none is waiting.
    func handOff(_ t: LuaThread) -> Bool {
        sync.withLock {
            guard let slot = idle.popLast() else { return false }
            slot.job = Unmanaged.passRetained(t)
            slot.wake.signal()
            return true
        }
    }

    /// A pthread's body: runs `first`, then each job handed to it while parked, and returns
    /// (ending the pthread) once it waited `idleSeconds` with none or the park is full.
    /// `first` is the pthread's reference. Each object is released as soon as it ran (its
    /// handle may be waiting for the live count to drop), never held across the park.
    static func serve(first: Unmanaged<LuaThread>) {
        let slot = Slot()
        var next: Unmanaged<LuaThread>? = first
        while let job = next {
            job.takeRetainedValue().run()
            next = shared.park(slot)
        }
        slot.wake.destroy()
    }

    /// Waits for a job; nil when none came in time (or no room to park).
    private func park(_ slot: Slot) -> Unmanaged<LuaThread>? {
        var all = sigset_t()
        sigfillset(&all)
        let job: Unmanaged<LuaThread>? = sync.withLock {
            guard idle.count < IdleThreads.maxIdle else { return nil }
            idle.append(slot)
            let deadline = Clock.deadline(after: IdleThreads.idleSeconds)
            while slot.job == nil {
                if !sync.wait(on: slot.wake, until: deadline), slot.job == nil {
                    idle.removeAll { $0 === slot }
                    return nil
                }
            }
            defer { slot.job = nil }
            return slot.job
        }
        // A job's C code may have unblocked signals: the next one starts as a new pthread would.
        if job != nil { pthread_sigmask(SIG_SETMASK, &all, nil) }
        return job
    }

    // -- fork() (the forking thread; see Fork.swift) --

    func forkPrepare() { sync.lock() }
    func forkParent() { sync.unlock() }

    /// In the child: the parked pthreads were the parent's. Their slots are dropped without
    /// destroying their condition variables (a few bytes each, once per fork).
    func forkChild() {
        sync.reinitAfterFork()
        idle.removeAll()
    }
}
