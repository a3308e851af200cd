// Pushes and pops of a channel whose queue is the lock-free CellRing: waiting and waking.
import CLJAsync
import Glibc
import Synchronization

/// A push or pop takes no lock while it finds room or a value. One that finds none yields
/// the CPU up to `yieldsBeforeSleep` times, then sleeps on the channel's lock and conditions
/// ("not empty" is `lock`'s own, "not full" is `notFull`), as the locked queue's waiters do.
///
/// No wake-up is lost: a sleeper counts itself (`popWaiters` / `pushWaiters`, a sequentially
/// consistent add) with `lock` held, then asks the ring whether it may sleep (a sequentially
/// consistent load of both positions: nothing claimed on the other side that it would not
/// see); the other side claims its position with a sequentially consistent CAS and, after
/// publishing, loads the count. So either the sleeper sees the claim and tries again, or the
/// other side sees the count; it then takes `lock` (the sleeper is inside its wait once it
/// gets it) and signals. A counted sleeper stays counted until it has the lock again, so
/// every value pushed meanwhile signals: a second sleeper is woken for a second value.
/// Timeouts: a sleeper whose deadline passed tries once more before it reports.
/// Close: `CellRing.close` under `lock`, then both conditions are broadcast.
extension Channel {
    @inline(__always)
    func ringPush(_ r: CellRing, _ cell: ChannelCell, timeout: Double) -> Status {
        switch r.push(cell) {
        case .done:
            wakePopper(r, many: false)
            return .ok
        case .closed:
            return .closed
        case .blocked:
            if timeout == 0 { return .fullOrEmpty }
            return ringWait(r, timeout: timeout, forRoom: true) { moved(r.push(cell), 1) }.0
        }
    }

    func ringPushMany(_ r: CellRing, _ cells: UnsafePointer<ChannelCell>, _ n: Int, timeout: Double) -> (Status, Int) {
        let (o, k) = r.push(contentsOf: cells, count: n)
        switch o {
        case .done:
            wakePopper(r, many: k > 1)
            return (.ok, k)
        case .closed:
            return (.closed, 0)
        case .blocked:
            if timeout == 0 { return (.fullOrEmpty, 0) }
            return ringWait(r, timeout: timeout, forRoom: true) {
                let (o, k) = r.push(contentsOf: cells, count: n)
                return moved(o, k)
            }
        }
    }

    @inline(__always)
    func ringPop(_ r: CellRing, into out: UnsafeMutablePointer<ChannelCell>, max: Int, timeout: Double) -> (Status, Int) {
        let (o, k) = r.popMany(into: out, max: max)
        switch o {
        case .done:
            wakePusher(r, many: k > 1)
            return (.ok, k)
        case .closed:
            return (.closed, 0)
        case .blocked:
            if timeout == 0 { return (.fullOrEmpty, 0) }
            return ringWait(r, timeout: timeout, forRoom: false) {
                let (o, k) = r.popMany(into: out, max: max)
                return moved(o, k)
            }
        }
    }

    /// After a push: wakes a popper (all of them for several values) if one sleeps that no
    /// wake-up was sent for yet.
    @inline(__always)
    private func wakePopper(_ r: CellRing, many: Bool) {
        if r.popWaiters.pointee.load(ordering: .sequentiallyConsistent) != 0 { wake(r.popWaiters, r.popWoken, nil, many) }
    }

    /// After a pop: wakes a pusher (all of them for several slots) likewise.
    @inline(__always)
    private func wakePusher(_ r: CellRing, many: Bool) {
        if r.pushWaiters.pointee.load(ordering: .sequentiallyConsistent) != 0 { wake(r.pushWaiters, r.pushWoken, notFull, many) }
    }

    /// Under `lock` (a counted waiter is inside its wait once the lock is had): moves one
    /// waiter (or all) from `waiters` to `woken` and signals `cond` (nil: `lock`'s own).
    @inline(never)
    private func wake(_ waiters: UnsafeMutablePointer<Atomic<Int>>, _ woken: UnsafeMutablePointer<Atomic<Int>>,
                      _ cond: PthreadCondition?, _ many: Bool) {
        lock.lock()
        let n = waiters.pointee.load(ordering: .relaxed)
        let k = many ? n : Swift.min(n, 1)
        if k > 0 {
            waiters.pointee.subtract(k, ordering: .relaxed)
            woken.pointee.add(k, ordering: .relaxed)
        }
        lock.unlock()
        if k == 0 { return }
        if let cond {
            if many { cond.broadcast() } else { cond.signal() }
        } else {
            if many { lock.broadcast() } else { lock.signal() }
        }
    }

    /// An attempt's outcome as `ringWait` counts it: cells moved, 0 none, -1 closed.
    @inline(__always)
    private func moved(_ o: CellRing.Outcome, _ k: Int) -> Int {
        switch o {
        case .done: return k
        case .blocked: return 0
        case .closed: return -1
        }
    }

    /// The slow path of a push (`forRoom`) or pop that found the ring full or empty: retries
    /// `attempt` (see `moved`) while yielding, then sleeping, until it moves something, the
    /// ring closes (a push fails at once, a pop once drained) or `timeout` (> 0, or < 0 for
    /// none) passes.
    private func ringWait(_ r: CellRing, timeout: Double, forRoom: Bool, _ attempt: () -> Int) -> (Status, Int) {
        let deadline = timeout > 0 ? Clock.deadline(after: timeout) : nil
        let waiters = forRoom ? r.pushWaiters : r.popWaiters
        let woken = forRoom ? r.pushWoken : r.popWoken
        var yields = 0
        while true {
            var n: Int
            if yields < Channel.yieldsBeforeSleep {
                if yields == 0 { ljasync_stack_trim_once() }  // a thread's first wait (stack.c)
                yields += 1
                sched_yield()
                n = attempt()
            } else {
                lock.lock()
                waiters.pointee.add(1, ordering: .sequentiallyConsistent)
                n = attempt()
                var timedOut = false
                if n == 0 && (forRoom ? r.pushMustWait() : r.popMustWait()) {
                    timedOut = !(forRoom ? lock.wait(on: notFull, until: deadline) : lock.wait(until: deadline))
                    n = attempt()
                }
                // Leave the count: a wake-up sent (for this waiter or another, who then leaves by
                // the count) is taken back first; either way the two add up to those counted.
                if woken.pointee.load(ordering: .relaxed) > 0 {
                    woken.pointee.subtract(1, ordering: .relaxed)
                } else {
                    waiters.pointee.subtract(1, ordering: .sequentiallyConsistent)
                }
                lock.unlock()
                if n == 0 && timedOut { return (.fullOrEmpty, 0) }
                if n == 0 { sched_yield() }   // the other side was mid-operation, or a wake-up came early
            }
            if n > 0 {
                if forRoom { wakePopper(r, many: n > 1) } else { wakePusher(r, many: n > 1) }
                return (.ok, n)
            }
            if n < 0 { return (.closed, 0) }
        }
    }
}
