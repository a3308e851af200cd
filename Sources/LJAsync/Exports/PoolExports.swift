// The C ABI of the worker pool (declared in Sources/CLJAsync/include/ljasync.h).
import CLJAsync
import Glibc

private func msg(_ m: OpaquePointer?) -> UnsafeMutablePointer<Message>? { m.map { UnsafeMutablePointer<Message>($0) } }
private func key(_ p: UnsafePointer<CChar>, _ n: Int) -> [UInt8] { Array(UnsafeRawBufferPointer(start: p, count: n)) }

// -- Owners (the owner's thread) --

/// A new inbox for the calling state's results.
@implementation @c
public func ljasync_pool_inbox_new() -> OpaquePointer { OpaquePointer(Inbox.create()) }

/// Closes the inbox; results still in flight are freed when they arrive (errors reported).
@implementation @c
public func ljasync_pool_inbox_free(_ inbox: OpaquePointer) { Inbox.close(InboxRef(inbox)) }

/// An eventfd readable while results wait (created on first call), or -1 if none can be made.
@implementation @c
public func ljasync_pool_inbox_fd(_ inbox: OpaquePointer) -> Int32 { Inbox.armFD(InboxRef(inbox)) }

/// Queues a job: `def` > 0 names a definition, 0 means the function is the message's first
/// value. Returns 0 queued (the pool owns `m`), 1 full (the queue cap held for `timeout`
/// seconds; `m` stays the caller's), -1 bad arguments.
@implementation @c
public func ljasync_pool_submit(_ inbox: OpaquePointer?, _ id: Double, _ def: Int32, _ m: OpaquePointer?,
                                _ timeout: Double) -> Int32 {
    guard let inbox, let m, def >= 0 else { return -1 }
    return Pool.submit(InboxRef(inbox), id: id, definition: def, message: msg(m), timeout: timeout).rawValue
}

/// Moves up to `max` waiting results into `out` (ljasync_pool_result[max]); returns how many.
@implementation @c
public func ljasync_pool_drain(_ inbox: OpaquePointer, _ out: UnsafeMutablePointer<ljasync_pool_result>, _ max: Int32) -> Int32 {
    Int32(Inbox.drain(InboxRef(inbox), out, Int(max)))
}

/// Blocks until results wait (1), `timeout` seconds pass (0; negative = no limit), or with
/// `watch` the pool has no worker thread left (2).
@implementation @c
public func ljasync_pool_wait(_ inbox: OpaquePointer, _ timeout: Double, _ watch: Int32) -> Int32 {
    Pool.wait(InboxRef(inbox), timeout: timeout, watch: watch != 0)
}

/// Removes the owner's job `id` if it has not started: 1 removed, 0 not queued.
@implementation @c
public func ljasync_pool_cancel(_ inbox: OpaquePointer, _ id: Double) -> Int32 {
    Pool.cancel(InboxRef(inbox), id: id) ? 1 : 0
}

/// Removes every queued job of the owner; each comes back as a cancelled result.
@implementation @c
public func ljasync_pool_discard(_ inbox: OpaquePointer) -> Int32 {
    Int32(Pool.discard(InboxRef(inbox)))
}

// -- Workers and settings (any thread) --

/// Adds or stops workers until lo <= live <= hi; `manual` != 0 turns autoscaling off.
/// Returns the live count, or -1 for bounds that are not 0 <= lo <= hi.
@implementation @c
public func ljasync_pool_ensure(_ lo: Int32, _ hi: Int32, _ manual: Int32) -> Int32 {
    guard lo >= 0, hi >= lo else { return -1 }
    return Int32(Pool.ensure(lo: Int(lo), hi: Int(hi), manual: manual != 0))
}

/// Adds n >= 0 workers (autoscaling off); returns the live count.
@implementation @c
public func ljasync_pool_add(_ n: Int32) -> Int32 { Int32(Pool.add(Int(max(0, n)))) }

/// Stops n >= 0 workers gracefully (autoscaling off); returns the live count.
@implementation @c
public func ljasync_pool_stop(_ n: Int32) -> Int32 { Int32(Pool.stopWorkers(Int(max(0, n)))) }

/// Stops every worker gracefully (autoscaling off); returns the threads still to leave.
@implementation @c
public func ljasync_pool_shutdown() -> Int32 { Int32(Pool.shutdown()) }

/// Live workers (started or starting, not told to stop).
@implementation @c
public func ljasync_pool_workers() -> Int32 { Int32(Pool.liveCount) }

@implementation @c
public func ljasync_pool_cpu_count() -> Int32 { Int32(Pool.cpuCount) }

@implementation @c
public func ljasync_pool_get_settings(_ out: UnsafeMutablePointer<ljasync_pool_settings>) {
    let s = Pool.settings()
    out.pointee = ljasync_pool_settings(autoscale: s.autoscale, min_workers: s.minWorkers, max_workers: s.maxWorkers,
                                        pad: 0, idle_timeout: s.idleTimeout, warn_after: s.warnAfter,
                                        max_queued: s.maxQueued)
}

/// Applies settings; returns 0, or -1 with the reason in `err`.
@implementation @c
public func ljasync_pool_set_settings(_ p: UnsafePointer<ljasync_pool_settings>, _ err: UnsafeMutablePointer<CChar>?,
                                      _ errLen: Int) -> Int32 {
    let c = p.pointee
    let s = PoolSettings(autoscale: c.autoscale, minWorkers: c.min_workers, maxWorkers: c.max_workers,
                         idleTimeout: c.idle_timeout, warnAfter: c.warn_after, maxQueued: c.max_queued)
    var problem: String?
    if s.minWorkers < 0 { problem = "min_workers must be >= 0" }
    else if s.maxWorkers < 1 { problem = "max_workers must be >= 1" }
    else if s.minWorkers > s.maxWorkers { problem = "min_workers must be <= max_workers" }
    else if !(s.idleTimeout >= 0) { problem = "idle_timeout must be >= 0" }
    else if !(s.warnAfter >= 0) { problem = "warn_after must be >= 0" }
    else if s.maxQueued < 0 { problem = "max_queued must be >= 0" }
    if let problem {
        writeError(problem, err, errLen)
        return -1
    }
    Pool.apply(s)
    return 0
}

/// queued, running, done, failed, cancelled, workers, stopping, idle -> out[0...7].
@implementation @c
public func ljasync_pool_stats(_ out: UnsafeMutablePointer<Int64>) { Pool.stats(out) }

/// Worker loop: hands back the current job's result (status 0 ok, 1 failed; the pool takes
/// `result`) and fills `out` (ljasync_pool_job) with the next job. 1 = job, 0 = leave.
@implementation @c
public func ljasync_pool_step(_ w: OpaquePointer, _ result: OpaquePointer?, _ status: Int32,
                              _ out: UnsafeMutablePointer<ljasync_pool_job>) -> Int32 {
    Pool.step(WorkerRef(w), result: msg(result), status: status, out: out)
}

// -- Definitions and init code (any thread) --

/// Stores a definition (takes `fn`, an encoded function); returns its new id (> 0).
@implementation @c
public func ljasync_pool_define(_ name: UnsafePointer<CChar>, _ fn: OpaquePointer) -> Int32 {
    PoolDefinitions.shared.define(name: String(cString: name), message: msg(fn)!)
}

@implementation @c
public func ljasync_pool_undefine(_ id: Int32) { PoolDefinitions.shared.undefine(id) }

/// A copy of definition `id` (the caller frees it) with its name in `name`; NULL if undefined.
@implementation @c
public func ljasync_pool_definition(_ id: Int32, _ name: UnsafeMutablePointer<CChar>?, _ nameLen: Int) -> OpaquePointer? {
    guard let d = PoolDefinitions.shared.copy(id) else { return nil }
    writeError(d.name, name, nameLen)
    return OpaquePointer(d.message)
}

/// Registers code for every worker, present and future, on behalf of the Lua state holding
/// the token `owner` (ljasync_env_owner_new; ljasync_env_owner_drop withdraws it): Lua source
/// or bytecode (portable metatables come through ljasync_pool_add_metatable).
@implementation @c
public func ljasync_pool_add_init(_ name: UnsafePointer<CChar>, _ code: UnsafeRawPointer, _ len: Int, _ owner: Int64) {
    InitRegistry.shared.add(.poolWorkers, kind: .code, name: String(cString: name),
                            bytes: UnsafeRawBufferPointer(start: code, count: len), owner: owner)
}

/// Registers a portable metatable for every worker, present and future: `mt` (taken) encodes
/// (name, metatable) and owns the references to any shared handle in it; freed when the
/// registering state closes (ljasync_env_owner_drop), workers decode copies.
@implementation @c
public func ljasync_pool_add_metatable(_ name: UnsafePointer<CChar>, _ mt: OpaquePointer, _ owner: Int64) {
    InitRegistry.shared.addPortableMetatable(name: String(cString: name), message: msg(mt)!, owner: owner)
}

/// Entry i (0-based) of the workers' init list: kind 0, its code (valid for the life of the
/// process); kind 1, a portable metatable: `*mt` is a copy of its message (the caller frees it)
/// and the result its bytes; kind -1 when withdrawn. `*mt` is NULL but for kind 1. NULL past
/// the last entry.
@implementation @c
public func ljasync_pool_init(_ i: Int32, _ kind: UnsafeMutablePointer<Int32>, _ len: UnsafeMutablePointer<Int>,
                              _ name: UnsafeMutablePointer<UnsafePointer<CChar>?>,
                              _ mt: UnsafeMutablePointer<OpaquePointer?>) -> UnsafeRawPointer? {
    guard let e = InitRegistry.shared.poolEntry(i) else { return nil }
    kind.pointee = e.kind?.rawValue ?? -1
    len.pointee = e.bytes.count
    name.pointee = e.name
    mt.pointee = e.message.map { OpaquePointer($0) }
    // Not NULL for an empty withdrawn entry: NULL means past the last one.
    return e.bytes.baseAddress ?? UnsafeRawPointer(e.name)
}

// -- IPC (any thread) --

/// Stores `value` (taken; NULL deletes) under the key.
@implementation @c
public func ljasync_pool_ipc_set(_ k: UnsafePointer<CChar>, _ klen: Int, _ value: OpaquePointer?) {
    PoolIPC.shared.set(key(k, klen), msg(value))
}

/// A copy of the value under the key (the caller frees it), or NULL.
@implementation @c
public func ljasync_pool_ipc_get(_ k: UnsafePointer<CChar>, _ klen: Int) -> OpaquePointer? {
    PoolIPC.shared.get(key(k, klen)).map { OpaquePointer($0) }
}

/// Replaces the value by `new` (taken on success; NULL deletes) if it equals `old` (borrowed;
/// NULL = absent). 1 swapped, 0 not.
@implementation @c
public func ljasync_pool_ipc_cas(_ k: UnsafePointer<CChar>, _ klen: Int, _ old: OpaquePointer?, _ new: OpaquePointer?) -> Int32 {
    PoolIPC.shared.cas(key(k, klen), old: msg(old), new: msg(new)) ? 1 : 0
}

/// Waits until the key holds a value: 1 present, 0 timeout (seconds; negative = no limit).
@implementation @c
public func ljasync_pool_ipc_poll(_ k: UnsafePointer<CChar>, _ klen: Int, _ timeout: Double) -> Int32 {
    PoolIPC.shared.poll(key(k, klen), timeout: timeout) ? 1 : 0
}

/// Writes one line to stderr ("lj-async: " + text) with a single write(2).
@implementation @c
public func ljasync_pool_report(_ text: UnsafePointer<CChar>) { reportToStderr(String(cString: text)) }

/// Monotonic time in seconds, for timeouts computed in Lua.
@implementation @c
public func ljasync_pool_now() -> Double { Double(Clock.nanoseconds()) / 1e9 }

/// Counts the forks this process descends from (0 in the process that loaded lj-async; each
/// child of a fork sees one more than its parent). pool.lua compares it to fail, in a child,
/// its handles of jobs that run in the parent.
@implementation @c
public func ljasync_fork_generation() -> Int32 { Int32(truncatingIfNeeded: Fork.generation) }

/// Whether workers started from now run light (Sources/CLJAsyncLua/light_worker.c): 1 yes,
/// 0 no, -1 only asks. Returns the setting before. Any thread.
@implementation @c
public func ljasync_pool_light(_ on: Int32) -> Int32 {
    on < 0 ? PoolThread.light.load(ordering: .relaxed) : PoolThread.light.exchange(on == 0 ? 0 : 1, ordering: .relaxed)
}
