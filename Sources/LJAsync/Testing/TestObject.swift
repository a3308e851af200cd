// A minimal shared object for tests of handles crossing states: it counts its live instances.
import Synchronization

/// Carries a number and nothing else; `live` counts instances not yet destroyed, so tests can
/// see that handles keep an object alive across states and that the last release destroys it.
/// Thread-safety: immutable; the counter is atomic. Created and released from any thread.
final class TestObject: SharedObject, @unchecked Sendable {
    static let live = LiveCounter()
    let value: Int64

    init(value: Int64) {
        self.value = value
        super.init()
        TestObject.live.add(1)
    }

    deinit { TestObject.live.add(-1) }
}

/// A process-wide atomic count in raw memory (never freed: the library is never unloaded).
final class LiveCounter: @unchecked Sendable {
    private let cell: UnsafeMutablePointer<Atomic<Int>>

    init() {
        cell = .allocate(capacity: 1)
        cell.initialize(to: Atomic(0))
    }

    func add(_ n: Int) { cell.pointee.add(n, ordering: .relaxed) }
    var value: Int { cell.pointee.load(ordering: .relaxed) }
}
