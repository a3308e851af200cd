// A block of zeroed memory that any state can read and write through ffi pointers.
import Glibc

/// Raw shared memory: `size` bytes, zeroed, 64-byte aligned (page-aligned when mapped), at a fixed address for the
/// object's whole life. The block adds no locking: states coordinate through the other
/// sync objects (or atomics) as they would for any shared memory.
///
/// Thread-safety: the object is immutable; the bytes are whatever the users make of them.
/// Lifetime: reference counted (SharedObject); a pointer obtained from it is valid only
/// while some handle keeps the block alive.
final class SharedBlock: SyncObject, @unchecked Sendable {
    /// Blocks from this size on are mapped from the kernel: zeroed pages, paid for when
    /// touched, so a large block costs nothing until used (no memset of memory never read).
    static let mapThreshold = 64 * 1024

    let bytes: UnsafeMutableRawPointer
    let size: Int
    let mapped: Bool

    /// nil when the memory cannot be had.
    init?(size: Int) {
        guard size > 0 else { return nil }
        if size >= SharedBlock.mapThreshold {
            let p = mmap(nil, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)
            guard let p, p != MAP_FAILED else { return nil }
            bytes = p
            mapped = true
        } else {
            var p: UnsafeMutableRawPointer?
            guard posix_memalign(&p, 64, size) == 0, let p else { return nil }
            memset(p, 0, size)
            bytes = p
            mapped = false
        }
        self.size = size
        super.init()
    }

    deinit {
        if mapped { munmap(bytes, size) } else { free(bytes) }
    }
}
