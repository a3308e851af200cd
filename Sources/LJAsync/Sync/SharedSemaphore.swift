// A counting semaphore shared between states.
import Glibc

/// A counting semaphore: `post(n)` adds n permits, `wait` takes one, blocking while none.
///
/// Thread-safety: any thread. Lifetime: reference counted (SharedObject).
final class SharedSemaphore: SyncObject, @unchecked Sendable {
    struct State {
        var count: Int
        var waiters: Int
    }

    let lock = PthreadLock(.adaptive)        // its condition: "a permit is there"
    let state: UnsafeMutablePointer<State>   // guarded by `lock`

    init(count: Int) {
        state = .allocate(capacity: 1)
        state.initialize(to: State(count: count, waiters: 0))
        super.init()
    }

    deinit {
        lock.destroy()
        state.deallocate()
    }

    /// Adds `n` (> 0) permits and wakes as many waiters. Returns false if the count would
    /// overflow (nothing changes). Any thread.
    func post(_ n: Int) -> Bool {
        lock.lock()
        let (sum, overflow) = state.pointee.count.addingReportingOverflow(n)
        if overflow {
            lock.unlock()
            return false
        }
        state.pointee.count = sum
        let waiters = state.pointee.waiters
        lock.unlock()
        if waiters > 0 {
            if n == 1 { lock.signal() } else { lock.broadcast() }
        }
        return true
    }

    /// Takes one permit, waiting at most `timeout` seconds (negative = forever, 0 = try).
    /// Returns false on timeout. Any thread.
    func wait(timeout: Double) -> Bool {
        lock.lock()
        defer { lock.unlock() }
        var deadline: timespec?
        var timedOut = false
        while state.pointee.count == 0 {
            if timeout == 0 || timedOut { return false }
            if timeout > 0 && deadline == nil { deadline = Clock.deadline(after: timeout) }
            state.pointee.waiters += 1
            timedOut = !lock.wait(until: deadline)
            state.pointee.waiters -= 1
        }
        state.pointee.count -= 1
        return true
    }

    /// The current number of permits (a snapshot). Any thread.
    var value: Int {
        lock.lock()
        defer { lock.unlock() }
        return state.pointee.count
    }
}
