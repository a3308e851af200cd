// What happens to an error raised in a callback: counted, kept, handed to its handler or stderr.
import CLuaJIT

extension CallbackCore {
    /// The wrapper raised an error (on top of the slot's stack). Runs on the calling thread with
    /// the slot held: counts it, keeps its text as the last error, then calls the callback's
    /// `on_error` handler in the same state, or reports to stderr when there is none (or it
    /// fails too). Leaves the slot's stack as `run` expects it.
    @inline(never)
    func failed(_ L: LuaState) {
        let message = Lua.string(L, -1)
        errorCount.add(1, ordering: .relaxed)
        adoptFork()
        sync.withLock { lastError = message }
        if lua_type(L, 3) == LUA_TFUNCTION {
            lua_pushvalue(L, 3)
            lua_pushvalue(L, -2)
            if lua_pcall(L, 1, 0, 0) != 0 {
                reportToStderr("error in callback \(spec.label): \(message)\n(and its error handler failed: \(Lua.string(L, -1)))")
            }
        } else {
            reportToStderr("error in callback \(spec.label): \(message)")
        }
        lua_settop(L, 3)
    }

    /// A call reached a freed callback (through the quarantine). Runs on the calling thread.
    func reportLateCall() {
        errorCount.add(1, ordering: .relaxed)
        reportToStderr("callback \(spec.label) called after free(); returning the default value")
    }

    /// The number of errors so far and the last message. Any thread.
    func errors() -> (count: Int, last: String?) {
        adoptFork()
        return sync.withLock { (errorCount.load(ordering: .relaxed), lastError) }
    }
}
