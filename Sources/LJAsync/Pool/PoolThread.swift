// The body of a pool worker thread: a fresh Lua state running lua/lj-async/pool_worker.lua.
import CLJAsync
import CLJAsyncLua
import CLuaJIT
import Glibc
import Synchronization

enum PoolThread {
    /// The Lua module each worker runs: it returns a function taking the worker's address.
    static let module = "lj-async.pool_worker"
    /// Workers start light (ljasync_pool_light): 1 yes, 0 no.
    static let light = Atomic<Int32>(1)

    /// Runs on the new worker thread: takes a state (never on the owner's thread), runs the
    /// worker loop, then retires the state and frees the worker record. The loop leaves through
    /// `Pool.step` returning 0; any other way out is a crash, handled by `Pool.crashed`, or,
    /// before the worker took its first step (state, `pool_worker`, init code) or when init
    /// code registered later failed, a failed start (`Pool.failedToStart`).
    static func main(_ w: WorkerRef) {
        setThreadName("lj-async work")
        // Light (Sources/CLJAsyncLua/light_worker.c): a state without ffi, and a C loop that
        // hands the worker over to pool_worker.lua at the first job or init entry it does not take.
        let light = PoolThread.light.load(ordering: .relaxed) != 0
        let (state, errors) = StateStock.shared.takeChecked(bare: light)
        guard let L = state else {
            Pool.failedToStart(w, reason: "cannot create its Lua state: out of memory")
            PoolWorker.destroy(w)
            return
        }
        var failure: String? = errors.isEmpty ? nil : errors.joined(separator: "\n")
        // What making the state and loading pool_worker touched is dead once the worker takes
        // its first job, and its first job's decoding once it takes the next: Pool.step trims.
        ljasync_stack_trim_arm(2)
        if failure == nil {
            lua_pushcclosure(L, tracebackHandler, 0)
            // The job a light worker hands over with (the C loop's, then pool_worker.lua's to copy).
            let job = UnsafeMutablePointer<ljasync_pool_job>.allocate(capacity: 1)
            defer { job.deallocate() }
            var handOver = !light
            if light {
                lua_pushcclosure(L, ljasync_light_pool_worker, 0)
                lua_pushlightuserdata(L, UnsafeMutableRawPointer(w))
                lua_pushlightuserdata(L, UnsafeMutableRawPointer(job))
                if lua_pcall(L, 2, LUA_MULTRET, 1) != 0 {
                    failure = Lua.string(L, -1)
                } else {
                    // 2 taken, 3 results or false, 4 init entries run, 5 init failure or nil
                    handOver = lua_gettop(L) > 1
                    if handOver && lua_toboolean(L, 2) != 0 {
                        lua_pushnumber(L, Double(UInt(bitPattern: job)))
                        lua_replace(L, 2)
                    }
                }
            }
            if failure == nil && handOver {
                // pool_worker.lua's function at the stack's base, as without a light loop
                // before it: tracebacks of its jobs keep their depth.
                lua_getfield(L, Lua.globalsIndex, "require")
                lua_pushstring(L, module)
                if lua_pcall(L, 1, 1, 1) != 0 {
                    failure = "cannot load \(module): " + Lua.string(L, -1)
                } else {
                    lua_insert(L, 2)
                    lua_pushnumber(L, Double(UInt(bitPattern: w)))
                    lua_insert(L, 3)
                    if lua_pcall(L, lua_gettop(L) - 2, 0, 1) != 0 { failure = Lua.string(L, -1) }
                }
            }
        }
        lua_settop(L, 0)
        if let failure {
            if !w.own.pointee.started || w.own.pointee.unready {
                Pool.failedToStart(w, reason: failure)
            } else {
                reportToStderr("pool worker \(w.serial) stopped by an error: \(failure)")
                Pool.crashed(w, reason: failure)
            }
        }
        StateStock.shared.retire(L)
        PoolWorker.destroy(w)
    }
}
