// The C ABI of the environment new states start from (declared in Sources/CLJAsync/include/ljasync.h).
import CLJAsync
import CLuaJIT
import Glibc

/// Sets package.path and package.cpath for states created from now on.
@implementation @c
public func ljasync_env_set_paths(_ path: UnsafePointer<CChar>, _ cpath: UnsafePointer<CChar>) {
    Environment.shared.setPaths(path: String(cString: path), cpath: String(cString: cpath))
}

/// Records the path the core was loaded from, for `core.lua` in states created from now on.
@implementation @c
public func ljasync_env_set_core(_ path: UnsafePointer<CChar>) {
    Environment.shared.setCore(String(cString: path))
}

/// Registers code (Lua source or bytecode) run by every state created from now on, on behalf
/// of the Lua state holding the token `owner` (ljasync_env_owner_new). `keep`, when not NULL,
/// is a message the code decodes by address (an init function with upvalues): taken, and freed
/// once the entry is replaced or withdrawn and no state being made can still run it.
@implementation @c
public func ljasync_env_add_init(_ name: UnsafePointer<CChar>, _ code: UnsafePointer<CChar>, _ len: Int,
                                 _ keep: OpaquePointer?, _ owner: Int64) {
    InitRegistry.shared.add(.everyState, name: String(cString: name), bytes: UnsafeRawBufferPointer(start: code, count: len),
                            message: keep.map { UnsafeMutablePointer<Message>($0) }, owner: owner)
}

/// A token for a Lua state that registers init code, for every state or pool workers (one per
/// state, made by core.lua).
@implementation @c
public func ljasync_env_owner_new() -> Int64 { InitRegistry.shared.newOwner() }

/// That state is closing: its init code (both kinds) no other state registered is withdrawn.
@implementation @c
public func ljasync_env_owner_drop(_ owner: Int64) { InitRegistry.shared.withdraw(owner: owner) }

/// Caches a module's bytecode for every state of the process (the first entry for a name wins).
/// Returns 1 when stored, 0 when the name already had an entry.
@implementation @c
public func ljasync_module_put(_ name: UnsafePointer<CChar>, _ chunk: UnsafePointer<CChar>,
                               _ code: UnsafeRawPointer, _ len: Int) -> Int32 {
    ModuleCache.shared.put(String(cString: name), chunkName: String(cString: chunk), code, len) ? 1 : 0
}

/// Records why a module has no cached bytecode (shown when a state requires it).
@implementation @c
public func ljasync_module_note(_ name: UnsafePointer<CChar>, _ why: UnsafePointer<CChar>) {
    ModuleCache.shared.note(String(cString: name), String(cString: why))
}

/// A lua_CFunction (called through `package.loadlib`, never through ffi): puts the module
/// cache's searcher into the calling state's package.loaders, once per state. Returns the
/// searcher, or nil and the reason.
@implementation @c
public func ljasync_module_install(_ state: UnsafeMutableRawPointer?) -> Int32 {
    guard let state else { return 0 }
    let L = OpaquePointer(state)
    guard let failure = ModuleCache.install(L) else { return 1 }
    lua_pushnil(L)
    lua_pushstring(L, failure)
    return 2
}

/// A cached module's bytecode (valid for the life of the process) and its chunk name, or NULL.
@implementation @c
public func ljasync_module_get(_ name: UnsafePointer<CChar>, _ len: UnsafeMutablePointer<Int>,
                               _ chunk: UnsafeMutablePointer<CChar>, _ chunkLen: Int) -> UnsafeRawPointer? {
    guard let e = ModuleCache.shared.get(String(cString: name)) else { return nil }
    len.pointee = e.count
    writeError(e.chunkName, chunk, chunkLen)
    return UnsafeRawPointer(e.bytes)
}

/// A process-wide fact recorded by some state, or -1 when none has been recorded.
@implementation @c
public func ljasync_memo_get(_ key: UnsafePointer<CChar>) -> Int32 {
    ProcessMemo.shared.get(String(cString: key)) ?? -1
}

/// Records a process-wide fact (a non-negative number) for every state.
@implementation @c
public func ljasync_memo_set(_ key: UnsafePointer<CChar>, _ value: Int32) {
    ProcessMemo.shared.set(String(cString: key), value)
}
