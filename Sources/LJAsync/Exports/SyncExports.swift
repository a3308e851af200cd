// The C ABI of the synchronization objects, declared for Lua in lua/lj-async/sync/abi.lua.
//
// Objects reach C as opaque pointers holding one strong reference (release them with
// ljasync_object_release). Each function says what it returns; two shapes recur. A blocking
// call on one value returns 0 = done, 1 = timeout (or full/empty), 2 = closed, or a negative
// code for misuse or failure (the mutex's -1 held / -2 not held, -1 out of memory, ...). The
// batch calls (push_cells, pop) return a count >= 1, or the status negated: -1 timeout (full
// or empty), -2 closed. Timeouts are seconds: negative = forever, 0 = try once.
// Every function may be called from any thread.
import Glibc

/// Timeouts as the objects take them: an infinite one (from C) means "forever" too.
@inline(__always) private func seconds(_ t: Double) -> Double { t.isInfinite ? -1 : t }

@inline(__always) private func with<T: SyncObject, R>(_ p: UnsafeRawPointer, _ t: T.Type, _ body: (T) -> R) -> R {
    SyncObject.with(p, as: t, body)
}

/// Number of synchronization objects alive in the process (for leak tests).
@_cdecl("ljasync_sync_live_objects")
public func ljasync_sync_live_objects() -> Int {
    syncLiveObjects.load(ordering: .relaxed)
}

// -- Mutex --

@_cdecl("ljasync_mutex_new")
public func ljasync_mutex_new() -> UnsafeMutableRawPointer {
    SharedMutex().retainedPointer()
}

/// 0 locked, 1 timed out, -1 already held by this thread.
@_cdecl("ljasync_mutex_lock")
public func ljasync_mutex_lock(_ p: UnsafeRawPointer, _ timeout: Double) -> Int32 {
    with(p, SharedMutex.self) { $0.lock(timeout: seconds(timeout)).rawValue }
}

/// 0 unlocked, -2 not held by this thread (nothing changes).
@_cdecl("ljasync_mutex_unlock")
public func ljasync_mutex_unlock(_ p: UnsafeRawPointer) -> Int32 {
    with(p, SharedMutex.self) { $0.unlock().rawValue }
}

/// 1 when this thread holds the mutex.
@_cdecl("ljasync_mutex_held")
public func ljasync_mutex_held(_ p: UnsafeRawPointer) -> Int32 {
    with(p, SharedMutex.self) { $0.heldByMe ? 1 : 0 }
}

// -- Condition --

@_cdecl("ljasync_cond_new")
public func ljasync_cond_new() -> UnsafeMutableRawPointer {
    SharedCondition().retainedPointer()
}

/// 0 woken (re-locked), 1 timed out (re-locked), -2 the mutex is not held by this thread.
@_cdecl("ljasync_cond_wait")
public func ljasync_cond_wait(_ c: UnsafeRawPointer, _ m: UnsafeRawPointer, _ timeout: Double) -> Int32 {
    with(c, SharedCondition.self) { cond in
        with(m, SharedMutex.self) { cond.wait($0, timeout: seconds(timeout)).rawValue }
    }
}

@_cdecl("ljasync_cond_signal")
public func ljasync_cond_signal(_ c: UnsafeRawPointer) {
    with(c, SharedCondition.self) { $0.signal() }
}

@_cdecl("ljasync_cond_broadcast")
public func ljasync_cond_broadcast(_ c: UnsafeRawPointer) {
    with(c, SharedCondition.self) { $0.broadcast() }
}

// -- Semaphore --

@_cdecl("ljasync_sem_new")
public func ljasync_sem_new(_ count: Int) -> UnsafeMutableRawPointer {
    SharedSemaphore(count: max(0, count)).retainedPointer()
}

/// 0 posted, -1 the count would overflow.
@_cdecl("ljasync_sem_post")
public func ljasync_sem_post(_ p: UnsafeRawPointer, _ n: Int) -> Int32 {
    with(p, SharedSemaphore.self) { $0.post(n) ? 0 : -1 }
}

/// 0 took a permit, 1 timed out.
@_cdecl("ljasync_sem_wait")
public func ljasync_sem_wait(_ p: UnsafeRawPointer, _ timeout: Double) -> Int32 {
    with(p, SharedSemaphore.self) { $0.wait(timeout: seconds(timeout)) ? 0 : 1 }
}

@_cdecl("ljasync_sem_value")
public func ljasync_sem_value(_ p: UnsafeRawPointer) -> Int {
    with(p, SharedSemaphore.self) { $0.value }
}

// -- Atomic counter --

@_cdecl("ljasync_atomic_new")
public func ljasync_atomic_new(_ v: Int64) -> UnsafeMutableRawPointer {
    AtomicCounter(v).retainedPointer()
}

/// The address of the int64 (for direct loads on x86-64); valid while the object lives.
@_cdecl("ljasync_atomic_address")
public func ljasync_atomic_address(_ p: UnsafeRawPointer) -> UnsafeMutableRawPointer {
    with(p, AtomicCounter.self) { $0.address }
}

@_cdecl("ljasync_atomic_load")
public func ljasync_atomic_load(_ p: UnsafeRawPointer) -> Int64 {
    with(p, AtomicCounter.self) { $0.load() }
}

@_cdecl("ljasync_atomic_store")
public func ljasync_atomic_store(_ p: UnsafeRawPointer, _ v: Int64) {
    with(p, AtomicCounter.self) { $0.store(v) }
}

/// Adds and returns the new value.
@_cdecl("ljasync_atomic_add")
public func ljasync_atomic_add(_ p: UnsafeRawPointer, _ d: Int64) -> Int64 {
    with(p, AtomicCounter.self) { $0.add(d) }
}

/// Returns the previous value.
@_cdecl("ljasync_atomic_exchange")
public func ljasync_atomic_exchange(_ p: UnsafeRawPointer, _ v: Int64) -> Int64 {
    with(p, AtomicCounter.self) { $0.exchange(v) }
}

/// 1 if the value was `expected` and is now `desired`, else 0; `found` gets the value seen.
@_cdecl("ljasync_atomic_cas")
public func ljasync_atomic_cas(_ p: UnsafeRawPointer, _ expected: Int64, _ desired: Int64,
                               _ found: UnsafeMutablePointer<Int64>) -> Int32 {
    with(p, AtomicCounter.self) {
        let (ok, seen) = $0.compareExchange(expected, desired)
        found.pointee = seen
        return ok ? 1 : 0
    }
}

// -- Shared memory --

/// A zeroed block of `size` bytes, or NULL with the reason in `err`.
@_cdecl("ljasync_shared_new")
public func ljasync_shared_new(_ size: Int, _ err: UnsafeMutablePointer<CChar>?, _ errLen: Int) -> UnsafeMutableRawPointer? {
    guard size > 0 else {
        writeError("size must be positive", err, errLen)
        return nil
    }
    guard let b = SharedBlock(size: size) else {
        writeError("cannot allocate \(size) bytes", err, errLen)
        return nil
    }
    return b.retainedPointer()
}

/// The block's first byte; valid while the object lives.
@_cdecl("ljasync_shared_ptr")
public func ljasync_shared_ptr(_ p: UnsafeRawPointer) -> UnsafeMutableRawPointer {
    with(p, SharedBlock.self) { $0.bytes }
}

@_cdecl("ljasync_shared_size")
public func ljasync_shared_size(_ p: UnsafeRawPointer) -> Int {
    with(p, SharedBlock.self) { $0.size }
}

// -- Channel --

/// `capacity` <= 0: unbounded.
@_cdecl("ljasync_channel_new")
public func ljasync_channel_new(_ capacity: Int) -> UnsafeMutableRawPointer {
    Channel(capacity: capacity).retainedPointer()
}

/// Pushes a number. 0 pushed, 1 still full at the deadline, 2 closed.
@_cdecl("ljasync_channel_push_number")
public func ljasync_channel_push_number(_ p: UnsafeRawPointer, _ v: Double, _ timeout: Double) -> Int32 {
    with(p, Channel.self) { $0.push(.number(v), timeout: seconds(timeout)).rawValue }
}

/// Pushes nil (tag 0), false (1) or true (2). Statuses as push_number; -1 for another tag.
@_cdecl("ljasync_channel_push_simple")
public func ljasync_channel_push_simple(_ p: UnsafeRawPointer, _ tag: Int32, _ timeout: Double) -> Int32 {
    guard tag >= 0 && tag <= 2, let t = ChannelCell.Tag(rawValue: UInt32(tag)) else { return -1 }
    return with(p, Channel.self) { $0.push(ChannelCell(tag: t), timeout: seconds(timeout)).rawValue }
}

/// Pushes a copy of `len` bytes. Statuses as push_number; -1 out of memory.
@_cdecl("ljasync_channel_push_string")
public func ljasync_channel_push_string(_ p: UnsafeRawPointer, _ s: UnsafeRawPointer?, _ len: Int, _ timeout: Double) -> Int32 {
    guard let cell = ChannelCell.string(s, len) else { return -1 }
    let st = with(p, Channel.self) { $0.push(cell, timeout: seconds(timeout)) }
    if st != .ok { cell.release() }
    return st.rawValue
}

/// Pushes a message (from ljasync_message_new). On 0 the channel owns it; otherwise the
/// caller still does.
@_cdecl("ljasync_channel_push_message")
public func ljasync_channel_push_message(_ p: UnsafeRawPointer, _ m: UnsafeMutableRawPointer, _ timeout: Double) -> Int32 {
    with(p, Channel.self) { $0.push(.message(m), timeout: seconds(timeout)).rawValue }
}

/// Pushes up to `n` prepared cells (numbers, nil/booleans, inline strings: cells that own
/// nothing); returns how many were taken (>= 1), or -1 full at the deadline, -2 closed,
/// -3 a cell that is not a plain value.
@_cdecl("ljasync_channel_push_cells")
public func ljasync_channel_push_cells(_ p: UnsafeRawPointer, _ raw: UnsafeRawPointer, _ n: Int32, _ timeout: Double) -> Int32 {
    guard n > 0 else { return 0 }
    let cells = raw.assumingMemoryBound(to: ChannelCell.self)
    for i in 0..<Int(n) where cells[i].tag > ChannelCell.Tag.shortString.rawValue { return -3 }
    let (st, taken) = with(p, Channel.self) { $0.pushMany(cells, Int(n), timeout: seconds(timeout)) }
    return st == .ok ? Int32(taken) : -st.rawValue
}

/// Pops up to `max` cells into `out`; returns how many (>= 1; the caller owns them), or
/// -1 empty at the deadline, -2 closed and drained. A message cell comes alone.
@_cdecl("ljasync_channel_pop")
public func ljasync_channel_pop(_ p: UnsafeRawPointer, _ raw: UnsafeMutableRawPointer, _ max: Int32, _ timeout: Double) -> Int32 {
    let out = raw.assumingMemoryBound(to: ChannelCell.self)
    let (st, n) = with(p, Channel.self) { $0.pop(into: out, max: Int(Swift.max(max, 1)), timeout: seconds(timeout)) }
    return st == .ok ? Int32(n) : -st.rawValue
}

/// Frees the bytes of a popped heap string.
@_cdecl("ljasync_channel_bytes_free")
public func ljasync_channel_bytes_free(_ b: UnsafeMutableRawPointer?) {
    free(b)
}

@_cdecl("ljasync_channel_close")
public func ljasync_channel_close(_ p: UnsafeRawPointer) {
    with(p, Channel.self) { $0.close() }
}

@_cdecl("ljasync_channel_length")
public func ljasync_channel_length(_ p: UnsafeRawPointer) -> Int {
    with(p, Channel.self) { $0.length }
}

@_cdecl("ljasync_channel_closed")
public func ljasync_channel_closed(_ p: UnsafeRawPointer) -> Int32 {
    with(p, Channel.self) { $0.isClosed ? 1 : 0 }
}

/// Threads blocked in push or pop now (a snapshot, for tests).
@_cdecl("ljasync_channel_waiters")
public func ljasync_channel_waiters(_ p: UnsafeRawPointer) -> Int {
    with(p, Channel.self) { $0.waiters }
}

@_cdecl("ljasync_channel_capacity")
public func ljasync_channel_capacity(_ p: UnsafeRawPointer) -> Int {
    with(p, Channel.self) { $0.capacity }
}
