// A block of zeroed memory that any state can read and write through ffi pointers.
import Glibc

/// Raw shared memory: `size` bytes, zeroed, 64-byte aligned, at a fixed address for the
/// object's whole life. The block adds no locking: states coordinate through the other
/// sync objects (or atomics) as they would for any shared memory.
///
/// Thread-safety: the object is immutable; the bytes are whatever the users make of them.
/// Lifetime: reference counted (SharedObject); a pointer obtained from it is valid only
/// while some handle keeps the block alive.
final class SharedBlock: SyncObject, @unchecked Sendable {
    override class var kind: String { "shared" }

    let bytes: UnsafeMutableRawPointer
    let size: Int

    /// nil when the memory cannot be had.
    init?(size: Int) {
        var p: UnsafeMutableRawPointer?
        guard size > 0, posix_memalign(&p, 64, size) == 0, let p else { return nil }
        memset(p, 0, size)
        bytes = p
        self.size = size
        super.init()
    }

    deinit { free(bytes) }
}
