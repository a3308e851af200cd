// The raw-memory layout of the pool's shared records: immutable fields, lock-guarded fields and one thread's own fields apart.
import Synchronization

/// One record of the pool (the pool itself, an inbox, a worker) in one allocation of up to
/// three parts, so that no thread's access to one part is an access to another:
///
///     [Fixed][State][Own]      the record's pointer points at State
///
/// - `Fixed`: `let`s only (the lock, pointers to atomics and counters), written once before
///   the record is shared; any thread reads them, lock held or not.
/// - `State`: the fields a lock guards.
/// - `Own`: fields one thread alone touches without the lock (a worker's batch and counters);
///   `Void` when there are none.
///
/// Why: under Swift's exclusivity rule (SE-0176) `p.pointee.x` is an access to the whole of
/// `p.pointee`, whichever field the compiler loads. With the lock inside the guarded struct,
/// `p.sync.lock()` reads the struct while another thread, holding that lock, writes
/// other fields of it: a conflicting access (TSan's "Swift access race"). Apart, taking the
/// lock reads only `Fixed`, which nobody writes. Each part starts on its own cache line.
/// Lifetime: `allocate` once, `free` once by the record's owner (see each record).
enum PoolRecord {
    static let line = 64

    @inline(__always) static func round(_ n: Int) -> Int { (n + line - 1) / line * line }

    /// Bytes from the start of the allocation to `State`.
    @inline(__always) static func stateOffset<F>(_: F.Type) -> Int { round(MemoryLayout<F>.size) }

    /// Bytes from `State` to `Own`.
    @inline(__always) static func ownOffset<S>(_: S.Type) -> Int { round(MemoryLayout<S>.size) }

    static func allocate<F, S, O>(_ fixed: F, _ state: S, _ own: O) -> UnsafeMutablePointer<S> {
        precondition(MemoryLayout<F>.alignment <= line && MemoryLayout<S>.alignment <= line
                     && MemoryLayout<O>.alignment <= line)
        let bytes = stateOffset(F.self) + ownOffset(S.self) + MemoryLayout<O>.size
        let base = UnsafeMutableRawPointer.allocate(byteCount: bytes, alignment: line)
        base.bindMemory(to: F.self, capacity: 1).initialize(to: fixed)
        let s = (base + stateOffset(F.self)).bindMemory(to: S.self, capacity: 1)
        s.initialize(to: state)
        (UnsafeMutableRawPointer(s) + ownOffset(S.self)).bindMemory(to: O.self, capacity: 1).initialize(to: own)
        return s
    }

    @inline(__always)
    static func fixed<F, S>(_ s: UnsafeMutablePointer<S>, _: F.Type) -> UnsafeMutablePointer<F> {
        (UnsafeMutableRawPointer(s) - stateOffset(F.self)).assumingMemoryBound(to: F.self)
    }

    @inline(__always)
    static func own<S, O>(_ s: UnsafeMutablePointer<S>, _: O.Type) -> UnsafeMutablePointer<O> {
        (UnsafeMutableRawPointer(s) + ownOffset(S.self)).assumingMemoryBound(to: O.self)
    }

    /// A zeroed atomic of its own, for a record's fixed part to point at (read without the
    /// lock); the record's owner deallocates it with the record.
    static func atomicCell() -> UnsafeMutablePointer<Atomic<Int>> {
        let p = UnsafeMutablePointer<Atomic<Int>>.allocate(capacity: 1)
        p.initialize(to: Atomic(0))
        return p
    }

    /// Deinitializes the three parts and frees the allocation (the parts' own resources,
    /// such as locks, are the caller's to release first).
    static func free<F, S, O>(_ s: UnsafeMutablePointer<S>, _: F.Type, _: O.Type) {
        own(s, O.self).deinitialize(count: 1)
        let f = fixed(s, F.self)
        s.deinitialize(count: 1)
        f.deinitialize(count: 1)
        UnsafeMutableRawPointer(f).deallocate()
    }
}
