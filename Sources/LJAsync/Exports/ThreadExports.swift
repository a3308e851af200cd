// The C ABI of threads (declared in Sources/CLJAsync/include/ljasync.h).
import CLJAsync
import CLJAsyncLua
import Glibc
import Synchronization

private func bytes(_ p: UnsafePointer<CChar>?, _ n: Int) -> [UInt8] {
    guard let p, n > 0 else { return [] }
    return Array(UnsafeRawBufferPointer(start: p, count: n))
}

@inline(__always) private func thread(_ t: OpaquePointer) -> LuaThread {
    Unmanaged<LuaThread>.fromOpaque(UnsafeRawPointer(t)).takeUnretainedValue()
}

/// Creates and starts a thread running `code` (source or bytecode) in a fresh state.
/// Without `runner` it calls f(ud) with `ud` as a void* cdata (f() when `passUD` is 0: for a
/// function whose parameters cannot see it, so its state need not open ffi); with one (Thread.spawn) it
/// calls runner(f, args address or 0) and keeps the message address the
/// runner returns as the results. `stackSize`: the pthread's stack in bytes, 0 for
/// `LuaThread.defaultStackSize`. The thread takes ownership of `args` whether or not
/// creation succeeds.
/// Returns the handle's reference, or NULL with the reason in `err`. Creator's thread.
@implementation @c
public func ljasync_thread_new(
    _ code: UnsafePointer<CChar>?, _ codeLen: Int, _ chunkName: UnsafePointer<CChar>?,
    _ runner: UnsafePointer<CChar>?, _ runnerLen: Int,
    _ ud: UnsafeMutableRawPointer?, _ passUD: Int32, _ args: OpaquePointer?, _ name: UnsafePointer<CChar>?,
    _ stackSize: Int, _ err: UnsafeMutablePointer<CChar>?, _ errLen: Int
) -> OpaquePointer? {
    let argsMessage = args.map { UnsafeMutablePointer<Message>($0) }
    guard let code, codeLen > 0 else {
        if let argsMessage { Message.free(argsMessage) }
        writeError("no code to run", err, errLen)
        return nil
    }
    var job = ThreadJob(code: bytes(code, codeLen), chunkName: chunkName.map { String(cString: $0) } ?? "=thread")
    job.ud = UInt(bitPattern: ud)
    job.passUD = passUD != 0
    if let runner {
        job.runner = bytes(runner, runnerLen)
    }
    job.args = argsMessage
    let stack = stackSize > 0 ? stackSize : LuaThread.defaultStackSize
    switch LuaThread.start(job, name: name.map { String(cString: $0) } ?? "lj-async thread", stackSize: stack) {
    case .success(let t): return OpaquePointer(Unmanaged.passRetained(t).toOpaque())
    case .failure(let e):
        writeError(e.message, err, errLen)
        return nil
    }
}

/// Starts a light spawn (docs/design.md, "Light spawns"): `code` called with the `n` cells of
/// `args` as its arguments, in a state that loads neither ffi nor lj-async's modules for them.
/// The cells' heap bytes and channel references are borrowed: copied and retained here.
/// Returns the handle's reference, or NULL with the reason in `err`. Creator's thread.
@implementation @c
public func ljasync_thread_spawn_light(
    _ code: UnsafePointer<CChar>, _ codeLen: Int, _ chunkName: UnsafePointer<CChar>?,
    _ args: UnsafeRawPointer?, _ n: Int32, _ name: UnsafePointer<CChar>?,
    _ err: UnsafeMutablePointer<CChar>?, _ errLen: Int
) -> OpaquePointer? {
    guard codeLen > 0 else {
        writeError("no code to run", err, errLen)
        return nil
    }
    var job = ThreadJob(code: bytes(code, codeLen), chunkName: chunkName.map { String(cString: $0) } ?? "=thread")
    job.light = true
    if n > 0 {
        guard let cells = ljasync_light_cells_copy(args, n) else {
            writeError("out of memory copying the arguments", err, errLen)
            return nil
        }
        job.cells = cells
        job.cellCount = n
    }
    switch LuaThread.start(job, name: name.map { String(cString: $0) } ?? "lj-async thread") {
    case .success(let t): return OpaquePointer(Unmanaged.passRetained(t).toOpaque())
    case .failure(let e):
        writeError(e.message, err, errLen)
        return nil
    }
}

/// A light spawn's results as `n` cells (owned by the thread object), or NULL.
@implementation @c
public func ljasync_thread_result_cells(_ t: OpaquePointer, _ n: UnsafeMutablePointer<Int32>) -> UnsafeRawPointer? {
    guard let r = thread(t).lightResults else {
        n.pointee = 0
        return nil
    }
    n.pointee = r.count
    return UnsafeRawPointer(r.cells)
}

/// Waits for the thread to end: `timeout` seconds, negative = forever, 0 = just look.
/// Returns 1 when it has ended, 0 on timeout.
@implementation @c
public func ljasync_thread_join(_ t: OpaquePointer, _ timeout: Double) -> Int32 {
    thread(t).join(timeout: timeout) ? 1 : 0
}

/// 0 running, 1 returned, 2 raised an error, 3 cancelled (raised by check_cancel).
@implementation @c
public func ljasync_thread_status(_ t: OpaquePointer) -> Int32 {
    thread(t).status.rawValue
}

/// Copies the error message (with traceback) into `buf` and marks it read. Returns its full
/// length (so the caller can retry with a larger buffer), or -1 when there is no error.
@implementation @c
public func ljasync_thread_error(_ t: OpaquePointer, _ buf: UnsafeMutablePointer<CChar>?, _ len: Int) -> Int {
    guard let e = thread(t).readError() else { return -1 }
    writeError(e, buf, len)
    return e.utf8.count
}

/// The encoded results of a spawned thread that returned, or NULL. Owned by the thread object.
@implementation @c
public func ljasync_thread_results(_ t: OpaquePointer) -> OpaquePointer? {
    thread(t).encodedResults.map { OpaquePointer($0) }
}

/// Sets the thread's cancellation flag and wakes it from Thread.sleep. Any thread.
@implementation @c
public func ljasync_thread_cancel(_ t: OpaquePointer) {
    thread(t).cancel()
}

/// The address of the cancellation flag (an int32 that becomes nonzero), for Lua to poll.
@implementation @c
public func ljasync_thread_flag(_ t: OpaquePointer) -> UnsafeMutableRawPointer {
    UnsafeMutableRawPointer(thread(t).cancelFlag)
}

/// Releases the handle's reference: a running thread detaches and frees itself when it ends;
/// an unread error is reported to stderr. Call once per handle.
@implementation @c
public func ljasync_thread_free(_ t: OpaquePointer) {
    let u = Unmanaged<LuaThread>.fromOpaque(UnsafeRawPointer(t))
    u.takeUnretainedValue().releaseHandle()
    u.release()
}

/// Sleeps `seconds`. With the calling thread's own object (inside a thread), wakes early when
/// cancelled and returns 0; otherwise returns 1. Runs on the sleeping thread.
@implementation @c
public func ljasync_thread_sleep(_ current: OpaquePointer?, _ seconds: Double) -> Int32 {
    if let current { return thread(current).sleep(seconds: seconds) ? 1 : 0 }
    ThreadSystem.sleep(seconds: seconds)
    return 1
}

/// Gives up the CPU (sched_yield).
@implementation @c
public func ljasync_thread_yield() {
    sched_yield()
}

/// The number of CPUs the process may use.
@implementation @c
public func ljasync_thread_cpus() -> Int32 {
    Int32(ThreadSystem.cpus())
}

/// How many native thread objects exist (a handle's, or a detached thread still running).
@implementation @c
public func ljasync_thread_live() -> Int {
    liveThreads.load(ordering: .relaxed)
}

/// The kernel's id of the calling thread (the name of its /proc/self/task entry).
@implementation @c
public func ljasync_thread_id() -> Int {
    ThreadSystem.id()
}

/// Reads a cancellation flag (from ljasync_thread_flag). A call, not a plain load, so LuaJIT
/// cannot hoist the read out of a compiled loop.
@implementation @c
public func ljasync_thread_cancelled(_ flag: UnsafeRawPointer) -> Int32 {
    flag.assumingMemoryBound(to: Atomic<Int32>.self).pointee.load(ordering: .acquiring)
}
