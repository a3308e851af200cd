// Freed callbacks stay callable for a while, so a late call returns the default, not a crash.
import Glibc

/// A bounded FIFO of freed callback cores. The closure and the core of a freed callback stay
/// valid until `capacity` more callbacks have been freed after it; a call through its function
/// pointer in that window reports an error and returns the default value. Past that window
/// the memory is really freed (calling a freed pointer that late is undefined, as in C).
///
/// Thread-safety: internally locked.
final class Quarantine: @unchecked Sendable {
    static let shared = Quarantine()
    static let capacity = 1024

    private let lock = PthreadLock()
    private var ring: [CallbackRef?] = Array(repeating: nil, count: Quarantine.capacity)
    private var next = 0

    func park(_ core: CallbackRef) {
        let evicted: CallbackRef? = lock.withLock {
            let old = ring[next]
            ring[next] = core
            next = (next + 1) % Quarantine.capacity
            return old
        }
        if let evicted { Callback.release(evicted) }
    }
}
