// Whether the LuaJIT the core bound (Sources/CLJAsyncLua) can serve the state that loads lj-async.
import CLJAsyncLua
import CLuaJIT
import Glibc
import Synchronization

/// The checks core.lua runs right after loading the core. The binding itself happens in C when
/// the core is loaded; this layer reports it and checks bytecode compatibility.
///
/// Thread-safety: any thread. The accepted dump is kept so that each new state (every callback,
/// thread and worker state loads core.lua) pays one comparison, not a fresh state.
enum LuaJITBinding {
    /// The `string.dump` of core.lua's probe function from states already known to match.
    /// A pthread mutex fork() takes and re-creates (`Fork.cacheLocks`).
    nonisolated(unsafe) static let lock = PthreadLock()
    nonisolated(unsafe) private static var accepted: [[UInt8]] = []

    /// Where the API came from, or the reason none could be bound (nil message never).
    static func status() -> (ok: Bool, message: String) {
        withUnsafeTemporaryAllocation(of: CChar.self, capacity: 2048) { buf in
            let ok = ljasync_lua_bind(buf.baseAddress, buf.count) == 1
            return (ok, String(cString: buf.baseAddress!))
        }
    }

    /// nil when `code` (bytecode dumped by the calling state) loads and runs in a fresh state of
    /// the bound LuaJIT; else why not, naming both LuaJITs. Call only once `status()` is ok.
    /// A dump already accepted costs one comparison and no allocation.
    static func checkBytecode(_ code: UnsafeRawBufferPointer, callerVersion: @autoclosure () -> String) -> String? {
        let known = lock.withLock {
            accepted.contains { a in a.count == code.count && a.withUnsafeBytes { memcmp($0.baseAddress!, code.baseAddress!, code.count) == 0 } }
        }
        if known { return nil }
        let boundFrom = status().message
        guard let L = luaL_newstate() else {
            return "lj-async: the LuaJIT bound from \(boundFrom) cannot create a state (out of memory?)"
        }
        defer { lua_close(L) }
        let loaded = luaL_loadbuffer(L, code.baseAddress!.assumingMemoryBound(to: CChar.self), code.count,
                                     "=lj-async probe") == 0 && lua_pcall(L, 0, 1, 0) == 0
        if loaded && lua_type(L, -1) == LUA_TNUMBER && lua_tonumber(L, -1) == 42 {
            lock.withLock { if accepted.count < 8 { accepted.append(Array(code)) } }
            return nil
        }
        let reason = loaded ? "it returned a wrong value" : Lua.string(L, -1)
        lua_settop(L, 0)
        luaL_openlibs(L)
        lua_getfield(L, Lua.globalsIndex, "jit")
        lua_getfield(L, -1, "version")
        let boundVersion = lua_type(L, -1) == LUA_TSTRING ? Lua.string(L, -1) : "an unknown version"
        return "lj-async: this state runs \(callerVersion()), but the core bound the LuaJIT C API from "
            + "\(boundFrom) (\(boundVersion)), which cannot load this state's bytecode (\(reason)): "
            + "the two are different builds (GC64 or not, or another bytecode version). Set "
            + "LJASYNC_LUAJIT to the library this program runs (see docs/embedding.md)"
    }
}
