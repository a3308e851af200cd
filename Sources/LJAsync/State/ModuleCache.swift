// Bytecode of Lua modules (all of lj-async's, and any the creating side provides), shared by
// every state of the process, and the one package.loaders searcher that loads it.
import CLuaJIT
import Glibc
import Synchronization

/// Module name -> (chunk name, bytecode).
///
/// Filled by `core.lua` the first time it loads in the process: the bytecode of every lj-async
/// module, found through that state's own `package.loaders` (so a host with its own loader,
/// such as LÖVE's, works), and later by `core.provide` for other modules.
/// Invariants: the first entry for a name wins; entries are immutable and never removed, so the
/// pointers handed out stay valid for the life of the process (the bytes are never freed).
/// Notes say why a name has no entry (the creating state could not find or dump it); they are
/// informational only and never block a later `put`.
/// Thread-safety: internally locked by a pthread mutex that fork() takes and re-creates
/// (`Fork.cacheLocks`: a `Synchronization.Mutex` held by a vanished thread traps in the child).
final class ModuleCache: @unchecked Sendable {
    static let shared = ModuleCache()

    struct Entry: @unchecked Sendable {
        let bytes: UnsafeMutableRawPointer
        let count: Int
        let chunkName: String
    }

    private struct Contents {
        var entries: [String: Entry] = [:]
        var notes: [String: String] = [:]
    }

    let lock = PthreadLock()
    private var contents = Contents()

    /// Stores `count` bytes under `name` unless an entry exists (the first one wins).
    /// Returns whether it stored them.
    @discardableResult
    func put(_ name: String, chunkName: String, _ src: UnsafeRawPointer, _ count: Int) -> Bool {
        lock.withLock {
            if contents.entries[name] != nil { return false }
            let bytes = malloc(max(count, 1))!
            memcpy(bytes, src, count)
            contents.entries[name] = Entry(bytes: bytes, count: count, chunkName: chunkName)
            contents.notes[name] = nil
            return true
        }
    }

    func get(_ name: String) -> Entry? { lock.withLock { contents.entries[name] } }

    /// Records why `name` has no entry, for the error a state requiring it then sees.
    func note(_ name: String, _ why: String) {
        lock.withLock {
            if contents.entries[name] == nil { contents.notes[name] = why }
        }
    }

    /// Puts `searcher` into `L`'s package.loaders right after package.preload, unless this
    /// state has it already (the registry keeps it under `ljasync_searcher`), and pushes it.
    /// `core.lua` calls it in the creating state through `ljasync_module_install`; states the
    /// core makes get it from their prelude (Sources/CLJAsyncLua/light.c). It uses the tables
    /// `require` reads (registered in _LOADED), so a host that replaced the global `package` or
    /// `table` still gets it. Returns nil, or the error (nothing pushed then).
    /// Runs on the state's thread.
    static func install(_ L: LuaState) -> String? {
        var failure: String?
        installCode.withCString { p in
            guard luaL_loadbuffer(L, p, strlen(p), "=lj-async prelude") == 0 else {
                failure = Lua.string(L, -1)
                Lua.pop(L, 1)
                return
            }
            lua_pushvalue(L, Lua.registryIndex)
            lua_pushcclosure(L, searcher, 0)
            if lua_pcall(L, 2, 1, 0) != 0 {
                failure = Lua.string(L, -1)
                Lua.pop(L, 1)
            }
        }
        return failure
    }

    private static let installCode = """
        local reg, searcher = ...
        local loaded = reg._LOADED
        if not reg.ljasync_searcher then
          loaded.table.insert(loaded.package.loaders, 2, searcher)
          reg.ljasync_searcher = searcher
        end
        return reg.ljasync_searcher
        """

    /// The package.loaders searcher of every state lj-async is used in: a cached module loads
    /// from its bytecode without a copy into a Lua string. For other names it returns nothing,
    /// so the state's other searchers carry on; for an lj-async name, or bytecode that does not
    /// load, it returns why. Never raises. Runs on the state's thread.
    static let searcher: lua_CFunction = { L in
        guard let L, let name = lua_tolstring(L, 1, nil) else { return 0 }
        let module = String(cString: name)
        let (entry, note): (Entry?, String?) = shared.lock.withLock { (shared.contents.entries[module], shared.contents.notes[module]) }
        guard let e = entry else {
            guard module.hasPrefix("lj-async.") else { return 0 }
            lua_pushstring(L, "\n\tno bytecode for '\(module)' in lj-async's module cache"
                + (note.map { " (\($0))" } ?? ""))
            return 1
        }
        if luaL_loadbuffer(L, e.bytes.assumingMemoryBound(to: CChar.self), e.count, e.chunkName) != 0 {
            // Returned, not raised (no longjmp through Swift frames): require names it.
            let why = Lua.string(L, -1)
            Lua.pop(L, 1)
            lua_pushstring(L, "\n\tlj-async's cached bytecode for '\(module)' does not load here: \(why)")
        }
        return 1
    }
}

/// Small process-wide facts that every state would otherwise work out again (e.g. whether the
/// encoder's native scan matches this LuaJIT's object layout). Thread-safety: internally locked.
final class ProcessMemo: @unchecked Sendable {
    static let shared = ProcessMemo()
    let lock = PthreadLock()
    private var values: [String: Int32] = [:]

    func get(_ key: String) -> Int32? { lock.withLock { values[key] } }
    func set(_ key: String, _ value: Int32) { lock.withLock { values[key] = value } }
}
