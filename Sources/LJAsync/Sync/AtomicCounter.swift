// A 64-bit integer shared between states, updated with atomic operations.
import Synchronization

/// An atomic Int64. Every operation is sequentially consistent (on x86-64 a load is a plain
/// load, which is why Lua may read the value straight through `address`; writes go through
/// the exports). `add` returns the new value.
///
/// Thread-safety: any thread. Lifetime: reference counted (SharedObject); `address` is
/// valid while the object lives.
final class AtomicCounter: SyncObject, @unchecked Sendable {
    let value: UnsafeMutablePointer<Atomic<Int64>>

    init(_ initial: Int64) {
        value = .allocate(capacity: 1)
        value.initialize(to: Atomic(initial))
        super.init()
    }

    deinit {
        value.deinitialize(count: 1)
        value.deallocate()
    }

    @inline(__always) func load() -> Int64 { value.pointee.load(ordering: .sequentiallyConsistent) }
    @inline(__always) func store(_ v: Int64) { value.pointee.store(v, ordering: .sequentiallyConsistent) }

    /// Adds `delta` (wrapping on overflow) and returns the new value.
    @inline(__always) func add(_ delta: Int64) -> Int64 {
        value.pointee.wrappingAdd(delta, ordering: .sequentiallyConsistent).newValue
    }

    /// Replaces the value with `desired` if it equals `expected`; returns whether it did and
    /// the value found.
    @inline(__always) func compareExchange(_ expected: Int64, _ desired: Int64) -> (Bool, Int64) {
        let r = value.pointee.compareExchange(expected: expected, desired: desired, ordering: .sequentiallyConsistent)
        return (r.exchanged, r.original)
    }

    /// Swaps in `v` and returns the previous value.
    @inline(__always) func exchange(_ v: Int64) -> Int64 {
        value.pointee.exchange(v, ordering: .sequentiallyConsistent)
    }

    var address: UnsafeMutableRawPointer { UnsafeMutableRawPointer(value) }
}
