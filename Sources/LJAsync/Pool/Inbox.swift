// The per-owner mailbox where finished jobs wait until their owning Lua state collects them.
import CLJAsync
import Glibc
import Synchronization

/// One finished (or cancelled) job on its way back to the state that submitted it.
struct PoolResult {
    enum Status: Int32 { case ok = 0, failed = 1, cancelled = 2 }
    /// The encoded return values (ok), the error text in the failure encoding (failed; Value/Failure.swift), or nil.
    var message: UnsafeMutablePointer<Message>?
    var id: Double
    var status: Status
}

/// The results of one owner (one Lua state using the pool). Pull, don't push: workers append
/// results; only the owner's thread takes them out and runs the callbacks.
///
/// Readiness: the owner sleeps on `sync` (`sleeping` tells workers to signal), and an optional
/// eventfd (created by `armFD`) is readable exactly while results wait, for event loops. Both
/// cost nothing while nobody waits: a push makes a syscall only on the empty -> non-empty
/// transition of an armed fd, or to wake a sleeping owner.
///
/// Lifetime: created by the owner; `close` (owner) marks it closed, and the memory is freed by
/// whoever accounts for the last job in flight (close itself when none is). `submitted` is
/// counted by the owner's thread alone; `delivered` (under `sync`) counts every job that came
/// back, cancelled ones included. Results that reach a closed inbox are freed; errors among
/// them are reported on stderr.
/// Thread-safety: fields marked "guarded" need `sync`; `submitted` belongs to the owner.
struct PoolInbox {
    var results = Ring<PoolResult>(capacity: 256)   // guarded
    var delivered = 0                                // guarded
    var expected = -1                                // guarded; set by close
    var closed = false                               // guarded
    var sleeping = false                             // guarded: the owner waits on `sync`
    var workersGone = false                          // guarded: no worker left (`wait` with `watch` says 2)
    var fd: Int32 = -1                               // guarded
    var fdReadable = false                           // guarded
}

/// An inbox's fields no thread writes after `create`, before its `PoolInbox` (see `PoolRecord`).
struct InboxFixed {
    let sync = PthreadLock(.adaptive)
    /// Jobs submitted, counted by the owner's thread alone, on a cache line of its own (the
    /// guarded fields are written by workers for every result).
    let submitted: UnsafeMutablePointer<Int> = {
        let p = UnsafeMutableRawPointer.allocate(byteCount: 64, alignment: 64).bindMemory(to: Int.self, capacity: 1)
        p.initialize(to: 0)
        return p
    }()
    /// Non-zero while results wait (updated under `sync` on each empty <-> non-empty change),
    /// so the owner can look without the lock.
    let waiting = PoolRecord.atomicCell()
}

extension UnsafeMutablePointer where Pointee == PoolInbox {
    /// The inbox's lock, reached without an access to `PoolInbox` (any thread).
    @inline(__always) var sync: PthreadLock { PoolRecord.fixed(self, InboxFixed.self).pointee.sync }
    @inline(__always) var submitted: UnsafeMutablePointer<Int> { PoolRecord.fixed(self, InboxFixed.self).pointee.submitted }
    @inline(__always) var waiting: UnsafeMutablePointer<Atomic<Int>> { PoolRecord.fixed(self, InboxFixed.self).pointee.waiting }
}

typealias InboxRef = UnsafeMutablePointer<PoolInbox>

enum Inbox {
    /// Every inbox not yet destroyed (guarded by `registryLock`): fork() and process exit go
    /// through them. Lock order: registry, then the pool's lock, then inboxes.
    nonisolated(unsafe) static let registryLock = PthreadLock()
    nonisolated(unsafe) static var registry: [InboxRef] = []

    private static let exitReport: Void = { atexit { Inbox.reportUntaken() } }()

    /// A new inbox. Runs on the owner's thread.
    static func create() -> InboxRef {
        Fork.install()
        _ = exitReport
        let p = PoolRecord.allocate(InboxFixed(), PoolInbox(), ())
        registryLock.withLock { registry.append(p) }
        return p
    }

    /// At process exit: an owner that never closed (os.exit without closing its state) and
    /// still has results coming or waiting says so once. (pool.lua says it when its state
    /// closes.) Runs in exit(), on the exiting thread.
    private static func reportUntaken() {
        let counts: [Int] = registryLock.withLock {
            registry.map { inbox in
                inbox.sync.withLock {
                    inbox.pointee.closed ? 0
                        : inbox.submitted.pointee - inbox.pointee.delivered + inbox.pointee.results.count
                }
            }
        }
        for n in counts where n > 0 { reportToStderr(untakenText(n)) }
    }

    /// The one line said for an owner that goes with results nobody took.
    static func untakenText(_ n: Int) -> String {
        "pool: \(n) result\(n == 1 ? " was" : "s were") never taken (call async.update() or async.wait())"
    }

    /// Appends a result. Any thread. The message belongs to the inbox from now on.
    static func push(_ inbox: InboxRef, _ r: PoolResult) {
        inbox.sync.lock()
        if inbox.pointee.closed {
            inbox.pointee.delivered += 1
            let last = inbox.pointee.delivered == inbox.pointee.expected
            inbox.sync.unlock()
            discard(r)
            if last { destroy(inbox) }
            return
        }
        inbox.pointee.results.push(r)
        // Only the empty -> non-empty transition matters to the owner's lock-free look; a store
        // per result would move the cache line back and forth for nothing.
        if inbox.pointee.results.count == 1 { inbox.waiting.pointee.store(1, ordering: .releasing) }
        inbox.pointee.delivered += 1
        wakeOwner(inbox)
        inbox.sync.unlock()
    }

    /// Appends the first `count` results of `from` (removing them) under one lock. Any thread.
    static func push(_ inbox: InboxRef, from ring: inout Ring<PoolResult>, count: Int) {
        inbox.sync.lock()
        if inbox.pointee.closed {
            inbox.pointee.delivered += count
            let last = inbox.pointee.delivered == inbox.pointee.expected
            inbox.sync.unlock()
            for _ in 0..<count { discard(ring.popFirst()!) }
            if last { destroy(inbox) }
            return
        }
        for _ in 0..<count { inbox.pointee.results.push(ring.popFirst()!) }
        if inbox.pointee.results.count == count { inbox.waiting.pointee.store(1, ordering: .releasing) }
        inbox.pointee.delivered += count
        wakeOwner(inbox)
        inbox.sync.unlock()
    }

    /// Counts a job that will never come back as a result (cancelled by its owner). Any thread.
    static func forget(_ inbox: InboxRef) {
        inbox.sync.lock()
        inbox.pointee.delivered += 1
        let last = inbox.pointee.closed && inbox.pointee.delivered == inbox.pointee.expected
        inbox.sync.unlock()
        if last { destroy(inbox) }
    }

    /// With `sync` held: makes the owner notice that results wait.
    private static func wakeOwner(_ inbox: InboxRef) {
        if inbox.pointee.sleeping { inbox.sync.signal() }
        if inbox.pointee.fd >= 0 && !inbox.pointee.fdReadable {
            inbox.pointee.fdReadable = true
            var one: UInt64 = 1
            _ = write(inbox.pointee.fd, &one, 8)
        }
    }

    /// Moves up to `max` results into `out` (ljasync_pool_result[max]). Owner's thread.
    /// Never blocks beyond the lock.
    static func drain(_ inbox: InboxRef, _ out: UnsafeMutablePointer<ljasync_pool_result>, _ max: Int) -> Int {
        if inbox.waiting.pointee.load(ordering: .acquiring) == 0 { return 0 }  // no lock when idle
        inbox.sync.lock()
        var n = 0
        while n < max, let r = inbox.pointee.results.popFirst() {
            out[n] = ljasync_pool_result(msg: r.message.map { OpaquePointer($0) }, id: r.id, status: r.status.rawValue)
            n += 1
        }
        inbox.waiting.pointee.store(inbox.pointee.results.count, ordering: .relaxed)
        if inbox.pointee.results.isEmpty && inbox.pointee.fdReadable {
            var v: UInt64 = 0
            _ = read(inbox.pointee.fd, &v, 8)
            inbox.pointee.fdReadable = false
        }
        inbox.sync.unlock()
        return n
    }

    /// Blocks the owner until results wait, the deadline passes, or (with `watch`) the pool has
    /// no worker threads left. Returns 1 results, 2 workers gone, 0 timeout. Owner's thread.
    static func wait(_ inbox: InboxRef, deadline: timespec?, watch: Bool, spin: Bool) -> Int32 {
        // Results often trickle in from busy workers: look again for a few microseconds,
        // yielding the CPU, before sleeping (a worker pays a futex call to wake a sleeper).
        let hint = inbox.waiting
        for _ in 0..<(spin ? Pool.spinRounds : 0) {
            if hint.pointee.load(ordering: .relaxed) > 0 { return 1 }
            sched_yield()
        }
        inbox.sync.lock()
        defer {
            inbox.pointee.sleeping = false
            inbox.sync.unlock()
        }
        while true {
            if !inbox.pointee.results.isEmpty { return 1 }
            if watch && inbox.pointee.workersGone { return 2 }
            inbox.pointee.sleeping = true
            if !inbox.sync.wait(until: deadline) {
                if !inbox.pointee.results.isEmpty { return 1 }
                if watch && inbox.pointee.workersGone { return 2 }
                return 0
            }
        }
    }

    /// Tells an owner waiting with `watch` that no worker thread is left. Called by the pool
    /// with its own lock held (lock order: pool, then inbox).
    static func noteWorkersGone(_ inbox: InboxRef) {
        inbox.sync.lock()
        inbox.pointee.workersGone = true
        inbox.sync.signal()
        inbox.sync.unlock()
    }

    /// The eventfd that is readable while results wait; created on first use. Owner's thread.
    static func armFD(_ inbox: InboxRef) -> Int32 {
        inbox.sync.lock()
        defer { inbox.sync.unlock() }
        if inbox.pointee.fd < 0 {
            let fd = makeEventFD()
            if fd < 0 { return -1 }
            inbox.pointee.fd = fd
            if !inbox.pointee.results.isEmpty {
                inbox.pointee.fdReadable = true
                var one: UInt64 = 1
                _ = write(fd, &one, 8)
            }
        }
        return inbox.pointee.fd
    }

    /// eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC) (ljasync.h's shim: Glibc's module map hides it).
    private static func makeEventFD() -> Int32 { ljasync_gnu_eventfd() }

    /// The owner lets go (its state closes or the handle is collected). Results still waiting
    /// are freed (errors reported); later ones will be too. Owner's thread.
    static func close(_ inbox: InboxRef) {
        inbox.sync.lock()
        inbox.pointee.closed = true
        inbox.pointee.expected = inbox.submitted.pointee
        var left: [PoolResult] = []
        while let r = inbox.pointee.results.popFirst() { left.append(r) }
        inbox.waiting.pointee.store(0, ordering: .relaxed)
        let last = inbox.pointee.delivered == inbox.pointee.expected
        inbox.sync.unlock()
        for r in left { discard(r) }
        if last { destroy(inbox) }
    }

    /// Frees a result nobody will collect; a failure is reported, never dropped silently.
    private static func discard(_ r: PoolResult) {
        if r.status == .failed, let m = r.message {
            reportToStderr("job failed after its owner went away: " + errorText(m))
        }
        if let m = r.message { Message.free(m) }
    }

    /// The text of a failure message (Value/Failure.swift).
    static func errorText(_ m: UnsafeMutablePointer<Message>) -> String { Message.failureText(m) }

    private static func destroy(_ inbox: InboxRef) {
        registryLock.withLock {
            if let i = registry.firstIndex(of: inbox) { registry.remove(at: i) }
        }
        if inbox.pointee.fd >= 0 { Glibc.close(inbox.pointee.fd) }
        inbox.pointee.results.free()
        inbox.waiting.deallocate()
        UnsafeMutableRawPointer(inbox.submitted).deallocate()
        inbox.sync.destroy()
        PoolRecord.free(inbox, InboxFixed.self, Void.self)
    }

    // -- fork() (Fork.swift) --

    /// Before fork(), with the pool's lock held: every inbox locked, none mid-change.
    static func forkLockAll() {
        for inbox in registry { inbox.sync.lock() }
    }

    static func forkUnlockAll() {
        for inbox in registry { inbox.sync.unlock() }
    }

    /// In the child: the parent's results and jobs in flight are not this process's (pool.lua
    /// fails the handles); each inbox starts empty, with its locks re-created and without the
    /// parent's eventfd (a new one is made on the next `armFD`). Closed inboxes, which only
    /// waited for the parent's jobs, are freed.
    static func forkChild() {
        registryLock.reinitAfterFork()
        let all = registry
        for inbox in all {
            inbox.sync.reinitAfterFork()
            while let r = inbox.pointee.results.popFirst() { if let m = r.message { Message.free(m) } }
            inbox.waiting.pointee.store(0, ordering: .relaxed)
            inbox.pointee.delivered = 0
            inbox.submitted.pointee = 0
            inbox.pointee.sleeping = false
            inbox.pointee.workersGone = false
            if inbox.pointee.fd >= 0 { Glibc.close(inbox.pointee.fd) }
            inbox.pointee.fd = -1
            inbox.pointee.fdReadable = false
            if inbox.pointee.closed { destroy(inbox) }
        }
    }
}
