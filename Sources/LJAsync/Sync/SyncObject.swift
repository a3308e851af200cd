// The common base of the synchronization objects: counts live instances so tests can prove none leak.
import Synchronization

/// Number of synchronization objects alive in the process (all kinds together).
/// Incremented by every `SyncObject` init, decremented by its deinit; read by
/// `ljasync_sync_live_objects` so specs can assert that handles and messages let go.
let syncLiveObjects = Atomic<Int>(0)

/// A `SharedObject` that takes part in the live-object count.
///
/// Thread-safety: init and deinit may run on any thread (the last holder's).
class SyncObject: SharedObject, @unchecked Sendable {
    override init() {
        syncLiveObjects.add(1, ordering: .relaxed)
        super.init()
    }

    deinit {
        syncLiveObjects.subtract(1, ordering: .relaxed)
    }

    /// Runs `body` on the object behind an opaque pointer from Lua without touching its
    /// reference count: the caller's handle keeps it alive for the duration. Any thread.
    @inline(__always)
    static func with<T: SyncObject, R>(_ p: UnsafeRawPointer, as _: T.Type, _ body: (T) -> R) -> R {
        Unmanaged<T>.fromOpaque(p)._withUnsafeGuaranteedRef(body)
    }
}
