// The one message handler that the Swift side runs Lua code under: the error plus a traceback.
import CLuaJIT

/// The message handler of the pcalls Swift makes into Lua (a thread's function, a pool
/// worker's loop): adds a traceback to string (and number) errors and to objects with a
/// string `__tostring`; leaves other values as they are, the cancellation marker of
/// Thread.check_cancel() among them (`isCancelMarker`), so the caller can still tell them apart.
///
/// Thread: runs on the thread running the state it is called in, inside its pcall.
/// (callback.lua's builder and pool_worker.lua keep Lua handlers of their own: Lua code has no
/// handle on this C function, which only Swift pushes, and pool_worker.lua's also drops the
/// worker loop's own frames and names error objects that are not strings.)
let tracebackHandler: lua_CFunction = { L in
    let L = L.unsafelyUnwrapped
    if isCancelMarker(L, 1) { return 1 }
    let t = lua_type(L, 1)
    if t == LUA_TSTRING || t == LUA_TNUMBER {
        luaL_traceback(L, L, lua_tolstring(L, 1, nil), 1)
    } else if luaL_callmeta(L, 1, "__tostring") != 0 && lua_type(L, -1) == LUA_TSTRING {
        luaL_traceback(L, L, lua_tolstring(L, -1, nil), 1)
    } else {
        lua_settop(L, 1)
    }
    return 1
}

