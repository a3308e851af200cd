// PthreadLock and PthreadCondition (Support/Locks.swift), driven from Swift threads without Lua.
import Glibc
import Synchronization
import Testing
@testable import LJAsync

/// Starts `body` on a new pthread; returns its id for pthread_join.
private func spawn(_ body: @escaping @Sendable () -> Void) -> pthread_t {
    final class Job: @unchecked Sendable {
        let run: () -> Void
        init(_ run: @escaping () -> Void) { self.run = run }
    }
    var tid = pthread_t()
    let job = Unmanaged.passRetained(Job(body)).toOpaque()
    let rc = pthread_create(&tid, nil, { arg in
        Unmanaged<Job>.fromOpaque(arg!).takeRetainedValue().run()
        return nil
    }, job)
    precondition(rc == 0)
    return tid
}

/// A lock and a flag it guards, shared with other threads.
private final class Shared: @unchecked Sendable {
    let lock: PthreadLock
    let other = PthreadCondition()
    var flag = 0          // guarded by `lock`
    var counter = 0       // guarded by `lock`
    init(_ kind: LockKind) { lock = PthreadLock(kind) }
    deinit { other.destroy(); lock.destroy() }
}

@Suite struct LocksTests {
    @Test(arguments: [LockKind.normal, LockKind.adaptive])
    func excludesEachOther(kind: LockKind) {
        let s = Shared(kind)
        let tids = (0..<4).map { _ in
            spawn { for _ in 0..<20_000 { s.lock.withLock { s.counter += 1 } } }
        }
        for t in tids { pthread_join(t, nil) }
        #expect(s.counter == 80_000)
    }

    @Test func timedWaitReportsTheDeadline() {
        let s = Shared(.normal)
        let t0 = Clock.nanoseconds()
        let woke = s.lock.withLock { s.lock.wait(until: Clock.deadline(after: 0.02)) }
        #expect(!woke)
        #expect(Clock.nanoseconds() - t0 >= 20_000_000)
    }

    /// A waiter on the lock's own condition and one on a second condition paired with the
    /// same mutex are each woken by their own signal.
    @Test func signalWakesTheWaiterOfEachCondition() {
        let s = Shared(.adaptive)
        let a = spawn { s.lock.withLock { while s.flag < 1 { s.lock.wait(until: nil) }; s.counter += 1 } }
        let b = spawn { s.lock.withLock { while s.flag < 2 { s.lock.wait(on: s.other, until: nil) }; s.counter += 10 } }
        s.lock.withLock { s.flag = 1; s.lock.signal() }
        pthread_join(a, nil)
        s.lock.withLock { #expect(s.counter == 1) }
        s.lock.withLock { s.flag = 2; s.other.signal() }
        pthread_join(b, nil)
        s.lock.withLock { #expect(s.counter == 11) }
    }

    @Test func tryLockFailsWhileAnotherThreadHoldsIt() {
        let s = Shared(.adaptive)
        s.lock.lock()
        let t = spawn { let got = s.lock.tryLock(); if got { s.lock.unlock() }; s.counter = got ? 1 : 2 }
        pthread_join(t, nil)
        s.lock.unlock()
        #expect(s.counter == 2)
        #expect(s.lock.tryLock())
        s.lock.unlock()
    }

    /// What a forked child sees: a lock a vanished thread held is usable again once re-created.
    @Test(arguments: [LockKind.normal, LockKind.adaptive])
    func reinitAfterForkFreesALockAnotherThreadHeld(kind: LockKind) {
        let s = Shared(kind)
        let t = spawn { s.lock.lock() }   // locks and exits holding it
        pthread_join(t, nil)
        #expect(!s.lock.tryLock())
        s.lock.reinitAfterFork()
        #expect(s.lock.tryLock())
        s.lock.unlock()
        #expect(!s.lock.withLock { s.lock.wait(until: Clock.deadline(after: 0.001)) })
    }
}
