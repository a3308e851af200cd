// Native objects shared between Lua states: reference counted, handed to Lua as opaque pointers.

/// Base class of every object that several states may hold at once (mutexes, channels, ...).
///
/// A Lua handle owns one strong reference (`Unmanaged.passRetained`), released by its ffi.gc
/// finalizer or an explicit close; an encoded message owns one per handle it carries (see
/// Message). The object lives while any state or message holds it. Swift's reference count
/// is atomic, so retain and release may happen on any thread.
class SharedObject: @unchecked Sendable {
    /// Hands out a new strong reference as an opaque pointer.
    final func retainedPointer() -> UnsafeMutableRawPointer {
        Unmanaged.passRetained(self).toOpaque()
    }

    /// The object behind a pointer from `retainedPointer`, without changing its count.
    static func from(_ p: UnsafeRawPointer) -> SharedObject {
        Unmanaged<SharedObject>.fromOpaque(p).takeUnretainedValue()
    }
}
