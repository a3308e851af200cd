// The C ABI for shared objects and messages (declared in Sources/CLJAsync/include/ljasync.h).
import CLJAsync

/// Adds a strong reference to a shared object (a handle being copied to another state).
@implementation @c
public func ljasync_object_retain(_ p: UnsafeMutableRawPointer) {
    _ = Unmanaged<SharedObject>.fromOpaque(p).retain()
}

/// Drops a strong reference; the object is destroyed with the last one.
@implementation @c
public func ljasync_object_release(_ p: UnsafeMutableRawPointer) {
    Unmanaged<SharedObject>.fromOpaque(p).release()
}

/// Copies encoded bytes into a new message, which takes over the handle references they list.
@implementation @c
public func ljasync_message_new(_ data: UnsafeRawPointer, _ len: Int) -> OpaquePointer {
    OpaquePointer(Message.create(data, len))
}

/// The message's bytes and length (valid until the message is freed).
@implementation @c
public func ljasync_message_data(_ m: OpaquePointer, _ len: UnsafeMutablePointer<Int>) -> UnsafeRawPointer {
    let msg = UnsafeMutablePointer<Message>(m)
    len.pointee = msg.pointee.count
    return UnsafeRawPointer(msg.pointee.bytes)
}

/// A failure message holding `len` bytes of text (LJASYNC_FAILURE_TAG, then the text).
@implementation @c
public func ljasync_failure_new(_ text: UnsafePointer<CChar>?, _ len: Int) -> OpaquePointer {
    let s = text.map { String(decoding: UnsafeRawBufferPointer(start: $0, count: len), as: UTF8.self) } ?? ""
    return OpaquePointer(Message.failure(s))
}

/// The text of a failure message (valid until the message is freed); *len its length.
@implementation @c
public func ljasync_failure_text(_ m: OpaquePointer, _ len: UnsafeMutablePointer<Int>) -> UnsafePointer<CChar> {
    let msg = UnsafeMutablePointer<Message>(m)
    let n = msg.pointee.count
    len.pointee = n > 1 ? n - 1 : 0
    return UnsafeRawPointer(msg.pointee.bytes + (n > 0 ? 1 : 0)).assumingMemoryBound(to: CChar.self)
}

/// Frees a message and releases the references it owns.
@implementation @c
public func ljasync_message_free(_ m: OpaquePointer) {
    Message.free(UnsafeMutablePointer<Message>(m))
}
