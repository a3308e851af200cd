// An OS thread running one Lua function in a fresh Lua state of its own.
import CLJAsyncLua
import CLuaJIT
import CLJAsync
import Glibc
import Synchronization

/// How many `LuaThread` objects exist (tests check that none leak).
let liveThreads = Atomic<Int>(0)

/// One pthread running one Lua function in a state taken from `StateStock`.
///
/// Ownership: the Lua handle owns the object (one strong reference, released by
/// `releaseHandle`). While the pthread runs it holds a second reference, so a handle
/// collected or destroyed early leaves the thread running: it detaches, and whichever side
/// lets go last frees everything in `deinit`. The state is used only by the pthread once it
/// started, and retired by it when the function returns.
///
/// Thread-safety: `sync` guards the fields marked so; `cancelFlag` is an atomic that the
/// running state reads without the lock. Everything else is fixed before the pthread starts.
///
/// Fork: in a child, an object made before the fork has no pthread (it runs in the parent).
/// The handle's first call there (`adoptAfterFork`) re-creates `sync` (the pthread may have
/// held it) and, if the thread was still running, records it as failed with that reason and
/// drops the reference the pthread held, so join() returns instead of waiting forever.
final class LuaThread: @unchecked Sendable {
    enum Outcome: Int32 { case running = 0, done = 1, failed = 2, cancelled = 3 }

    /// Registry keys shared with lua/lj-async/thread.lua.
    static let currentKey = "lj-async.thread.current"     // this object's address, as a number
    static let bindKey = "lj-async.thread.bind"           // the module's binder, if it is loaded
    static let cancelKey = "lj-async.thread.cancelled"    // the value check_cancel() raises

    let sync = PthreadLock()
    /// Nonzero once `cancel()` was called. Read by the thread's Lua code through a pointer.
    let cancelFlag: UnsafeMutablePointer<Atomic<Int32>>
    let name: String
    /// The fork generation this object last saw (see Fork.swift).
    private let forkGeneration = Atomic<Int>(Fork.generation)

    // Fixed before start; then used by the pthread only.
    private var job: ThreadJob

    // Guarded by `sync`.
    private var outcome = Outcome.running
    private var errorText: String?
    private var errorRead = false
    private var handleReleased = false
    private var results: UnsafeMutablePointer<Message>?
    private var resultCells: (cells: UnsafeMutableRawPointer, count: Int32)?  // a light spawn's (owned)

    /// Runs on the creator's thread.
    private init(job: ThreadJob, name: String) {
        self.job = job
        self.name = name
        cancelFlag = .allocate(capacity: 1)
        cancelFlag.initialize(to: Atomic(0))
        liveThreads.add(1, ordering: .relaxed)
    }

    deinit {
        if let args = job.args { Message.free(args) }
        if let results { Message.free(results) }
        if let resultCells { ljasync_light_cells_free(resultCells.cells, resultCells.count) }
        ljasync_light_cells_free(job.cells, job.cellCount)
        cancelFlag.deinitialize(count: 1)
        cancelFlag.deallocate()
        sync.destroy()
        liveThreads.subtract(1, ordering: .relaxed)
    }

    // -- Creation (creator's thread) --

    /// The stack of a thread unless its creator asks for another size. LuaJIT's own deepest
    /// C recursion (the parser at its nesting limit, 200 levels) needs under 128 KiB; the JIT,
    /// ffi callbacks and C library calls far less. Smaller than glibc's 8 MiB default so its
    /// cache of exited threads' stacks (40 MiB) holds 160 of them instead of 5: creating
    /// threads in bursts then maps no new stacks (docs/design.md, "Threads").
    static let defaultStackSize = 256 * 1024

    /// Creates and starts a thread: hands it to a parked pthread (IdleThreads) or creates one.
    /// On success the caller owns one reference (the handle's), the pthread the other.
    /// Everything slow (taking a state, loading the code) happens on the thread.
    static func start(_ job: ThreadJob, name: String, stackSize: Int = defaultStackSize) -> Result<LuaThread, ThreadError> {
        Fork.install()
        let t = LuaThread(job: job, name: name)
        // A pthread of the default stack size parked after its last thread runs this one.
        let reusable = stackSize == defaultStackSize
        if reusable && IdleThreads.shared.handOff(t) { return .success(t) }
        var attr = pthread_attr_t()
        pthread_attr_init(&attr)
        defer { pthread_attr_destroy(&attr) }
        // Nobody calls pthread_join: `join` waits on `sync`, so the thread can signal the end
        // and then close its state while the joiner already goes on.
        pthread_attr_setdetachstate(&attr, Int32(PTHREAD_CREATE_DETACHED))
        let src = pthread_attr_setstacksize(&attr, stackSize)
        if src != 0 {
            return .failure(ThreadError(message: "bad stack size \(stackSize): \(String(cString: strerror(src)))"))
        }
        var tid = pthread_t()
        let arg = Unmanaged.passRetained(t).toOpaque()  // the running thread's reference
        let rc = withSignalsBlocked {
            reusable
                ? pthread_create(&tid, &attr, { arg in
                    IdleThreads.serve(first: Unmanaged<LuaThread>.fromOpaque(arg!))
                    return nil
                }, arg)
                : pthread_create(&tid, &attr, { arg in
                    Unmanaged<LuaThread>.fromOpaque(arg!).takeRetainedValue().run()
                    return nil
                }, arg)
        }
        if rc != 0 {
            Unmanaged<LuaThread>.fromOpaque(arg).release()
            return .failure(ThreadError(message: "cannot start a thread: \(String(cString: strerror(rc)))"))
        }
        return .success(t)
    }

    // -- Running (the new pthread) --

    /// The thread's body: takes a fresh state, binds it to this object, calls the function
    /// under a traceback handler, records the outcome, wakes joiners, closes the state.
    /// On a pthread of its own, or on a parked one (IdleThreads). Once per object.
    func run() {
        setThreadName(name)
        let (state, errors) = StateStock.shared.takeChecked(bare: job.light)
        guard let L = state else {
            finish(failure: "cannot create a Lua state: out of memory", cancelled: false, results: nil)
            return
        }
        if !errors.isEmpty {
            // Init code (add_init) failed: the function would run in a state missing it.
            StateStock.shared.retire(L)
            if let args = job.args { Message.free(args); job.args = nil }
            finish(failure: "the thread's Lua state cannot start: " + errors.joined(separator: "\n"),
                   cancelled: false, results: nil)
            return
        }
        var failure: String?
        var cancelled = false
        var resultAddress: UInt = 0
        var resultCells: (UnsafeMutableRawPointer, Int32)?
        lua_pushcclosure(L, tracebackHandler, 0)
        bind(L)
        failure = load(L, job.code, job.chunkName)
        if failure == nil {
            if job.light {
                // Light spawn: ljasync_light_spawn(f, cells, n) (light_spawn.c).
                lua_pushcclosure(L, ljasync_light_spawn, 0)
                lua_insert(L, 2)
                lua_pushlightuserdata(L, job.cells)
                lua_pushinteger(L, Int(job.cellCount))
            } else if let runner = job.runner {
                // Spawn: runner(f, args) decodes the arguments, calls f and encodes the results.
                failure = load(L, runner, "=lj-async spawn")
                if failure == nil {
                    lua_insert(L, 2)
                    lua_pushnumber(L, Double(job.args.map { UInt(bitPattern: $0) } ?? 0))
                }
            } else if job.passUD {
                failure = pushPointer(L, job.ud)
            }
        }
        if failure == nil {
            let nargs: Int32 = job.light ? 3 : job.runner != nil ? 2 : job.passUD ? 1 : 0
            // What making the state touched is dead now: the first wait in the core drops it.
            ljasync_stack_trim_arm(1)
            if lua_pcall(L, nargs, job.light ? 2 : 1, 1) != 0 {
                cancelled = isCancelMarker(L, -1)
                if !cancelled { failure = Lua.string(L, -1) }
            } else if job.light {
                if lua_type(L, -2) == LUA_TLIGHTUSERDATA, let cells = lua_touserdata(L, -2) {
                    resultCells = (cells, Int32(lua_tointeger(L, -1)))
                } else if lua_type(L, -2) == LUA_TNUMBER {
                    resultAddress = UInt(lua_tonumber(L, -2))
                }
            } else if job.runner != nil {
                resultAddress = UInt(lua_tonumber(L, -1))
            }
        }
        if let args = job.args { Message.free(args); job.args = nil }
        ljasync_light_cells_free(job.cells, job.cellCount)
        job.cells = nil
        finish(failure: failure, cancelled: cancelled,
               results: UnsafeMutablePointer<Message>(bitPattern: resultAddress), cells: resultCells)
        StateStock.shared.retire(L)
    }

    /// Pushes the loaded chunk. Returns an error message (stack unchanged) on failure.
    private func load(_ L: LuaState, _ code: [UInt8], _ chunkName: String) -> String? {
        let status = code.withUnsafeBufferPointer { b in
            b.baseAddress!.withMemoryRebound(to: CChar.self, capacity: b.count) {
                luaL_loadbuffer(L, $0, b.count, chunkName)
            }
        }
        if status != 0 {
            let e = Lua.string(L, -1)
            Lua.pop(L, 1)
            return e
        }
        return nil
    }

    /// Tells the state which thread it runs on: thread.lua reads `currentKey` when it loads
    /// and, when it was loaded earlier (init code), gets the address through its binder.
    private func bind(_ L: LuaState) {
        let me = Double(UInt(bitPattern: Unmanaged.passUnretained(self).toOpaque()))
        lua_pushnumber(L, me)
        lua_setfield(L, Lua.registryIndex, LuaThread.currentKey)
        lua_getfield(L, Lua.registryIndex, LuaThread.bindKey)
        if lua_type(L, -1) == LUA_TFUNCTION {
            lua_pushnumber(L, me)
            if lua_pcall(L, 1, 0, 0) != 0 { Lua.pop(L, 1) }  // a broken binder only loses cancel()
        } else {
            Lua.pop(L, 1)
        }
    }

    /// Pushes `ffi.cast("void *", address)`: the seed's userdata argument. Returns an error
    /// message (stack unchanged) when init code left the state without a usable ffi.
    private func pushPointer(_ L: LuaState, _ address: UInt) -> String? {
        let top = lua_gettop(L)
        lua_getfield(L, Lua.registryIndex, "_LOADED")
        lua_getfield(L, -1, "ffi")
        if lua_type(L, -1) != LUA_TTABLE {
            // States open ffi on first use (Sources/CLJAsyncLua/light.c): require it.
            lua_settop(L, top)
            lua_getfield(L, Lua.globalsIndex, "require")
            lua_pushstring(L, "ffi")
            if lua_pcall(L, 1, 1, 0) != 0 { lua_pushnil(L) }
        }
        if lua_type(L, -1) == LUA_TTABLE {
            lua_getfield(L, -1, "cast")
            lua_pushstring(L, "void *")
            lua_pushnumber(L, Double(address))
            if lua_pcall(L, 2, 1, 0) == 0 {
                lua_replace(L, top + 1)
                lua_settop(L, top + 1)
                return nil
            }
        }
        lua_settop(L, top)
        return "cannot pass the userdata: ffi.cast is not available in the thread's state"
    }

    /// Records the outcome and wakes joiners; reports an error nobody can read any more.
    private func finish(failure: String?, cancelled: Bool, results: UnsafeMutablePointer<Message>?,
                        cells: (UnsafeMutableRawPointer, Int32)? = nil) {
        let outcome: Outcome = cancelled ? .cancelled : failure != nil ? .failed : .done
        let orphaned: Bool = sync.withLock {
            self.outcome = outcome
            self.errorText = failure
            self.results = results
            self.resultCells = cells.map { (cells: $0.0, count: $0.1) }
            sync.broadcast()
            return handleReleased
        }
        if orphaned, let failure { reportToStderr("error in thread '\(name)' (detached): \(failure)") }
    }

    // -- The handle's side (creator's thread) --

    /// Waits until the function returned, for at most `timeout` seconds (negative: forever,
    /// 0: just look). Returns true when the thread has ended. No busy waiting.
    func join(timeout: Double) -> Bool {
        adoptAfterFork()
        return sync.withLock {
            if outcome != .running || timeout == 0 { return outcome != .running }
            let deadline = ThreadSystem.deadline(after: timeout)
            while outcome == .running {
                if !sync.wait(until: deadline) { break }
            }
            return outcome != .running
        }
    }

    var status: Outcome {
        adoptAfterFork()
        return sync.withLock { outcome }
    }

    /// The error message with its traceback ("cancelled" for a cancelled thread), or nil
    /// (also while running). Once returned, the error counts as seen: not reported to stderr.
    func readError() -> String? {
        adoptAfterFork()
        return sync.withLock {
            if outcome == .cancelled { return "cancelled" }
            if errorText != nil { errorRead = true }
            return errorText
        }
    }

    /// The encoded results of a spawned thread once it ended (owned by this object).
    var encodedResults: UnsafeMutablePointer<Message>? {
        adoptAfterFork()
        return sync.withLock { results }
    }

    /// A light spawn's results as cells once it ended (owned by this object), or nil.
    var lightResults: (cells: UnsafeMutableRawPointer, count: Int32)? {
        adoptAfterFork()
        return sync.withLock { resultCells }
    }

    /// Asks the thread to stop: sets the flag its Lua code polls and wakes `sleep`.
    func cancel() {
        adoptAfterFork()
        cancelFlag.pointee.store(1, ordering: .releasing)
        sync.withLock { sync.broadcast() }
    }

    /// Sleeps on the thread itself, waking early when cancelled. Returns false when cut short.
    func sleep(seconds: Double) -> Bool {
        guard seconds > 0 else { return cancelFlag.pointee.load(ordering: .acquiring) == 0 }
        ljasync_stack_trim_once()  // see run()
        let deadline = ThreadSystem.deadline(after: seconds)
        return sync.withLock {
            while cancelFlag.pointee.load(ordering: .acquiring) == 0 {
                if !sync.wait(until: deadline) { return true }
            }
            return false
        }
    }

    /// In a forked child, on the handle's first call: see the type's comment. Handle's thread.
    @inline(__always) private func adoptAfterFork() {
        let now = Fork.generation
        let seen = forkGeneration.load(ordering: .acquiring)
        if seen == now { return }
        guard forkGeneration.compareExchange(expected: seen, desired: now, ordering: .acquiringAndReleasing).exchanged
        else { return }
        sync.reinitAfterFork()
        if outcome == .running {
            outcome = .failed
            errorText = "thread '\(name)' runs in the parent process: this process forked while it ran, "
                + "and a child has no copy of the thread (join it in the parent)"
            Unmanaged.passUnretained(self).release()  // the pthread's reference: it never ends here
        }
    }

    /// The handle lets go: a running thread goes on detached; an error nobody read is
    /// reported now (or by the thread when it ends). Call once; may free the object.
    func releaseHandle() {
        adoptAfterFork()
        let unread: String? = sync.withLock {
            handleReleased = true
            return outcome == .failed && !errorRead ? errorText : nil
        }
        if let unread { reportToStderr("error in thread '\(name)' (never read): \(unread)") }
    }
}

/// What a thread runs.
struct ThreadJob {
    var code: [UInt8]                        // the function: source or bytecode
    var chunkName: String
    var ud: UInt = 0                         // Thread.new: the void* argument
    var passUD = true                        // Thread.new: false when f cannot see ud (f())
    var runner: [UInt8]?                     // Thread.spawn: the runner chunk (see thread.lua)
    var args: UnsafeMutablePointer<Message>? // Thread.spawn: encoded arguments, owned
    var light = false                        // Thread.spawn in a light state (light_spawn.c)
    var cells: UnsafeMutableRawPointer?      // a light spawn's arguments (ljasync_cell), owned
    var cellCount: Int32 = 0
}

struct ThreadError: Error { let message: String }

/// Whether the value at `idx` is the table Thread.check_cancel() raises (thread.lua puts it
/// in the registry when it loads; without it nothing can be the marker).
func isCancelMarker(_ L: LuaState, _ idx: Int32) -> Bool {
    guard lua_type(L, idx) == LUA_TTABLE else { return false }
    let abs = idx < 0 ? lua_gettop(L) + idx + 1 : idx
    lua_getfield(L, Lua.registryIndex, LuaThread.cancelKey)
    defer { Lua.pop(L, 1) }
    return lua_rawequal(L, abs, -1) != 0
}
