// The body of a pool worker thread: a fresh Lua state running lua/lj-async/pool_worker.lua.
import CLJAsync
import CLuaJIT
import Glibc

enum PoolThread {
    /// The Lua module each worker runs: it returns a function taking the worker's address.
    static let module = "lj-async.pool_worker"

    /// Runs on the new worker thread: takes a state (never on the owner's thread), runs the
    /// worker loop, then retires the state and frees the worker record. The loop leaves through
    /// `Pool.step` returning 0; any other way out is a crash, handled by `Pool.crashed`, or,
    /// before the worker took its first step (state, `pool_worker`, init code) or when init
    /// code registered later failed, a failed start (`Pool.failedToStart`).
    static func main(_ w: WorkerRef) {
        setThreadName("lj-async work")
        let (state, errors) = StateStock.shared.takeChecked()
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
            lua_getfield(L, Lua.globalsIndex, "require")
            lua_pushstring(L, module)
            if lua_pcall(L, 1, 1, 1) != 0 {
                failure = "cannot load \(module): " + Lua.string(L, -1)
            } else {
                lua_pushnumber(L, Double(UInt(bitPattern: w)))
                if lua_pcall(L, 1, 0, 1) != 0 { failure = Lua.string(L, -1) }
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
