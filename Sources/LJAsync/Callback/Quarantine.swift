// Freed callbacks stay callable for a while, so a late call returns the default, not a crash.

/// A bounded FIFO of freed callback cores, each with the reference its function pointer holds.
/// The closure and the core of a freed callback stay valid until `capacity` more callbacks have
/// been freed after it; a call through its function pointer in that window reports an error and
/// returns the default value. Past that window the reference is dropped and the memory freed
/// (calling a freed pointer that late is undefined, as in C).
///
/// Thread-safety: internally locked; the evicted core is released outside the lock, on the
/// thread that parked the newer one.
final class Quarantine: @unchecked Sendable {
    static let shared = Quarantine()
    static let capacity = 1024

    /// fork() takes it and re-creates it in the child (Fork.swift).
    let lock = PthreadLock()
    private var ring: [Unmanaged<CallbackCore>?] = Array(repeating: nil, count: Quarantine.capacity)
    private var next = 0

    /// Takes over `core`'s function-pointer reference (from `CallbackCore.destroy`).
    func park(_ core: Unmanaged<CallbackCore>) {
        let evicted: Unmanaged<CallbackCore>? = lock.withLock {
            let old = ring[next]
            ring[next] = core
            next = (next + 1) % Quarantine.capacity
            return old
        }
        evicted?.release()
    }
}
