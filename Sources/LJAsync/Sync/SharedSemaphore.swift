// A counting semaphore shared between states.
import Glibc

/// A counting semaphore: `post(n)` adds n permits, `wait` takes one, blocking while none.
///
/// Thread-safety: any thread. Lifetime: reference counted (SharedObject).
final class SharedSemaphore: SyncObject, @unchecked Sendable {
    override class var kind: String { "semaphore" }

    struct State {
        var count: Int
        var waiters: Int
    }

    let mutex = RawMutex.make()
    let cond = Condvar()
    let state: UnsafeMutablePointer<State>   // guarded by `mutex`

    init(count: Int) {
        state = .allocate(capacity: 1)
        state.initialize(to: State(count: count, waiters: 0))
        super.init()
    }

    deinit {
        cond.destroy()
        RawMutex.destroy(mutex)
        state.deallocate()
    }

    /// Adds `n` (> 0) permits and wakes as many waiters. Returns false if the count would
    /// overflow (nothing changes). Any thread.
    func post(_ n: Int) -> Bool {
        RawMutex.lock(mutex)
        let (sum, overflow) = state.pointee.count.addingReportingOverflow(n)
        if overflow {
            RawMutex.unlock(mutex)
            return false
        }
        state.pointee.count = sum
        let waiters = state.pointee.waiters
        RawMutex.unlock(mutex)
        if waiters > 0 {
            if n == 1 { cond.signal() } else { cond.broadcast() }
        }
        return true
    }

    /// Takes one permit, waiting at most `timeout` seconds (negative = forever, 0 = try).
    /// Returns false on timeout. Any thread.
    func wait(timeout: Double) -> Bool {
        RawMutex.lock(mutex)
        defer { RawMutex.unlock(mutex) }
        var deadline: timespec?
        var timedOut = false
        while state.pointee.count == 0 {
            if timeout == 0 || timedOut { return false }
            if timeout > 0 && deadline == nil { deadline = Clock.deadline(after: timeout) }
            state.pointee.waiters += 1
            timedOut = !cond.wait(mutex, until: deadline)
            state.pointee.waiters -= 1
        }
        state.pointee.count -= 1
        return true
    }

    /// The current number of permits (a snapshot). Any thread.
    var value: Int {
        RawMutex.lock(mutex)
        defer { RawMutex.unlock(mutex) }
        return state.pointee.count
    }
}
