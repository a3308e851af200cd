// The C ABI of the synchronization objects (declared in Sources/CLJAsync/include/ljasync.h).
//
// Objects reach C as opaque pointers holding one strong reference (release them with
// ljasync_object_release). Each function says what it returns; two shapes recur. A blocking
// call on one value returns 0 = done, 1 = timeout (or full/empty), 2 = closed, or a negative
// code for misuse or failure (the mutex's -1 held / -2 not held, -1 out of memory, ...). The
// batch calls (push_cells, pop) return a count >= 1, or the status negated: -1 timeout (full
// or empty), -2 closed. Timeouts are seconds: negative = forever, 0 = try once.
// Every function may be called from any thread.
import CLJAsync
import Glibc

/// Timeouts as the objects take them: an infinite one (from C) means "forever" too.
@inline(__always) private func seconds(_ t: Double) -> Double { t.isInfinite ? -1 : t }

@inline(__always) private func with<T: SyncObject, R>(_ p: OpaquePointer, _ t: T.Type, _ body: (T) -> R) -> R {
    SyncObject.with(UnsafeRawPointer(p), as: t, body)
}

/// A new object as the opaque handle type the header gives its kind (one strong reference).
@inline(__always) private func handle(_ o: SyncObject) -> OpaquePointer { OpaquePointer(o.retainedPointer()) }

/// Number of synchronization objects alive in the process (for leak tests).
@implementation @c
public func ljasync_sync_live_objects() -> Int {
    syncLiveObjects.load(ordering: .relaxed)
}

// -- Mutex --

@implementation @c
public func ljasync_mutex_new() -> OpaquePointer {
    handle(SharedMutex())
}

/// 0 locked, 1 timed out, -1 already held by this thread.
@implementation @c
public func ljasync_mutex_lock(_ p: OpaquePointer, _ timeout: Double) -> Int32 {
    with(p, SharedMutex.self) { $0.lock(timeout: seconds(timeout)).rawValue }
}

/// 0 unlocked, -2 not held by this thread (nothing changes).
@implementation @c
public func ljasync_mutex_unlock(_ p: OpaquePointer) -> Int32 {
    with(p, SharedMutex.self) { $0.unlock().rawValue }
}

/// 1 when this thread holds the mutex.
@implementation @c
public func ljasync_mutex_held(_ p: OpaquePointer) -> Int32 {
    with(p, SharedMutex.self) { $0.heldByMe ? 1 : 0 }
}

// -- Condition --

@implementation @c
public func ljasync_cond_new() -> OpaquePointer {
    handle(SharedCondition())
}

/// 0 woken (re-locked), 1 timed out (re-locked), -2 the mutex is not held by this thread.
@implementation @c
public func ljasync_cond_wait(_ c: OpaquePointer, _ m: OpaquePointer, _ timeout: Double) -> Int32 {
    with(c, SharedCondition.self) { cond in
        with(m, SharedMutex.self) { cond.wait($0, timeout: seconds(timeout)).rawValue }
    }
}

@implementation @c
public func ljasync_cond_signal(_ c: OpaquePointer) {
    with(c, SharedCondition.self) { $0.signal() }
}

@implementation @c
public func ljasync_cond_broadcast(_ c: OpaquePointer) {
    with(c, SharedCondition.self) { $0.broadcast() }
}

// -- Semaphore --

@implementation @c
public func ljasync_sem_new(_ count: Int) -> OpaquePointer {
    handle(SharedSemaphore(count: max(0, count)))
}

/// 0 posted, -1 the count would overflow.
@implementation @c
public func ljasync_sem_post(_ p: OpaquePointer, _ n: Int) -> Int32 {
    with(p, SharedSemaphore.self) { $0.post(n) ? 0 : -1 }
}

/// 0 took a permit, 1 timed out.
@implementation @c
public func ljasync_sem_wait(_ p: OpaquePointer, _ timeout: Double) -> Int32 {
    with(p, SharedSemaphore.self) { $0.wait(timeout: seconds(timeout)) ? 0 : 1 }
}

@implementation @c
public func ljasync_sem_value(_ p: OpaquePointer) -> Int {
    with(p, SharedSemaphore.self) { $0.value }
}

// -- Atomic counter --

@implementation @c
public func ljasync_atomic_new(_ v: Int64) -> OpaquePointer {
    handle(AtomicCounter(v))
}

/// The address of the int64 (for direct loads on x86-64); valid while the object lives.
@implementation @c
public func ljasync_atomic_address(_ p: OpaquePointer) -> UnsafeMutablePointer<Int64> {
    with(p, AtomicCounter.self) { $0.address.assumingMemoryBound(to: Int64.self) }
}

@implementation @c
public func ljasync_atomic_load(_ p: OpaquePointer) -> Int64 {
    with(p, AtomicCounter.self) { $0.load() }
}

@implementation @c
public func ljasync_atomic_store(_ p: OpaquePointer, _ v: Int64) {
    with(p, AtomicCounter.self) { $0.store(v) }
}

/// Adds and returns the new value.
@implementation @c
public func ljasync_atomic_add(_ p: OpaquePointer, _ d: Int64) -> Int64 {
    with(p, AtomicCounter.self) { $0.add(d) }
}

/// Returns the previous value.
@implementation @c
public func ljasync_atomic_exchange(_ p: OpaquePointer, _ v: Int64) -> Int64 {
    with(p, AtomicCounter.self) { $0.exchange(v) }
}

/// 1 if the value was `expected` and is now `desired`, else 0; `found` gets the value seen.
@implementation @c
public func ljasync_atomic_cas(_ p: OpaquePointer, _ expected: Int64, _ desired: Int64,
                               _ found: UnsafeMutablePointer<Int64>) -> Int32 {
    with(p, AtomicCounter.self) {
        let (ok, seen) = $0.compareExchange(expected, desired)
        found.pointee = seen
        return ok ? 1 : 0
    }
}

// -- Shared memory --

/// A zeroed block of `size` bytes, or NULL with the reason in `err`.
@implementation @c
public func ljasync_shared_new(_ size: Int, _ err: UnsafeMutablePointer<CChar>?, _ errLen: Int) -> OpaquePointer? {
    guard size > 0 else {
        writeError("size must be positive", err, errLen)
        return nil
    }
    guard let b = SharedBlock(size: size) else {
        writeError("cannot allocate \(size) bytes", err, errLen)
        return nil
    }
    return handle(b)
}

/// The block's first byte; valid while the object lives.
@implementation @c
public func ljasync_shared_ptr(_ p: OpaquePointer) -> UnsafeMutablePointer<UInt8> {
    with(p, SharedBlock.self) { $0.bytes.assumingMemoryBound(to: UInt8.self) }
}

@implementation @c
public func ljasync_shared_size(_ p: OpaquePointer) -> Int {
    with(p, SharedBlock.self) { $0.size }
}

// -- Channel --

/// `capacity` <= 0: unbounded.
@implementation @c
public func ljasync_channel_new(_ capacity: Int) -> OpaquePointer {
    handle(Channel(capacity: capacity))
}

/// Pushes a number. 0 pushed, 1 still full at the deadline, 2 closed.
@implementation @c
public func ljasync_channel_push_number(_ p: OpaquePointer, _ v: Double, _ timeout: Double) -> Int32 {
    with(p, Channel.self) { $0.push(.number(v), timeout: seconds(timeout)).rawValue }
}

/// Pushes nil (tag 0), false (1) or true (2). Statuses as push_number; -1 for another tag.
@implementation @c
public func ljasync_channel_push_simple(_ p: OpaquePointer, _ tag: Int32, _ timeout: Double) -> Int32 {
    guard tag >= 0 && tag <= Int32(LJASYNC_CELL_TRUE.rawValue) else { return -1 }
    return with(p, Channel.self) { $0.push(ChannelCell(tag: ChannelCell.Tag(UInt32(tag))), timeout: seconds(timeout)).rawValue }
}

/// Pushes a copy of `len` bytes. Statuses as push_number; -1 out of memory.
@implementation @c
public func ljasync_channel_push_string(_ p: OpaquePointer, _ s: UnsafeRawPointer?, _ len: Int, _ timeout: Double) -> Int32 {
    guard let cell = ChannelCell.string(s, len) else { return -1 }
    return pushOwned(p, cell, timeout)
}

/// Pushes a copy of `len` bytes that encode one value (lj-async.sync's channel writes and reads
/// them: string.buffer's encoding of a small plain table). Statuses as push_string.
@implementation @c
public func ljasync_channel_push_encoded(_ p: OpaquePointer, _ s: UnsafeRawPointer?, _ len: Int, _ timeout: Double) -> Int32 {
    guard let cell = ChannelCell.encoded(s, len) else { return -1 }
    return pushOwned(p, cell, timeout)
}

/// Pushes a cell that owns a heap copy: the channel takes it on success; otherwise it is freed.
@inline(__always)
private func pushOwned(_ p: OpaquePointer, _ cell: ChannelCell, _ timeout: Double) -> Int32 {
    let st = with(p, Channel.self) { $0.push(cell, timeout: seconds(timeout)) }
    if st != .ok { cell.release() }
    return st.rawValue
}

/// Pushes a message (from ljasync_message_new). On 0 the channel owns it; otherwise the
/// caller still does.
@implementation @c
public func ljasync_channel_push_message(_ p: OpaquePointer, _ m: OpaquePointer, _ timeout: Double) -> Int32 {
    with(p, Channel.self) { $0.push(.message(UnsafeMutableRawPointer(m)), timeout: seconds(timeout)).rawValue }
}

/// Pushes up to `n` prepared cells (numbers, nil/booleans, inline strings: cells that own
/// nothing); returns how many were taken (>= 1), or -1 full at the deadline, -2 closed,
/// -3 a cell that is not a plain value.
@implementation @c
public func ljasync_channel_push_cells(_ p: OpaquePointer, _ cells: UnsafePointer<ljasync_cell>, _ n: Int32, _ timeout: Double) -> Int32 {
    guard n > 0 else { return 0 }
    for i in 0..<Int(n) where cells[i].tag > LJASYNC_CELL_SHORT.rawValue { return -3 }
    let (st, taken) = with(p, Channel.self) { $0.pushMany(cells, Int(n), timeout: seconds(timeout)) }
    return st == .ok ? Int32(taken) : -st.rawValue
}

/// Pops up to `max` cells into `out`; returns how many (>= 1; the caller owns them), or
/// -1 empty at the deadline, -2 closed and drained. A message cell comes alone.
@implementation @c
public func ljasync_channel_pop(_ p: OpaquePointer, _ out: UnsafeMutablePointer<ljasync_cell>, _ max: Int32, _ timeout: Double) -> Int32 {
    let (st, n) = with(p, Channel.self) { $0.pop(into: out, max: Int(Swift.max(max, 1)), timeout: seconds(timeout)) }
    return st == .ok ? Int32(n) : -st.rawValue
}

/// Frees the bytes of a popped heap string.
@implementation @c
public func ljasync_channel_bytes_free(_ b: UnsafeMutableRawPointer?) {
    free(b)
}

@implementation @c
public func ljasync_channel_close(_ p: OpaquePointer) {
    with(p, Channel.self) { $0.close() }
}

@implementation @c
public func ljasync_channel_length(_ p: OpaquePointer) -> Int {
    with(p, Channel.self) { $0.length }
}

@implementation @c
public func ljasync_channel_closed(_ p: OpaquePointer) -> Int32 {
    with(p, Channel.self) { $0.isClosed ? 1 : 0 }
}

/// Threads blocked in push or pop now (a snapshot, for tests).
@implementation @c
public func ljasync_channel_waiters(_ p: OpaquePointer) -> Int {
    with(p, Channel.self) { $0.waiters }
}

@implementation @c
public func ljasync_channel_capacity(_ p: OpaquePointer) -> Int {
    with(p, Channel.self) { $0.capacity }
}
