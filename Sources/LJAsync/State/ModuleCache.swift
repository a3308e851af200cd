// Bytecode of lj-async's Lua modules, compiled once per process and shared by every new state.
import CLuaJIT
import Glibc

/// Module name -> (chunk name, bytecode). Entries are immutable and never removed, so the
/// pointers handed out stay valid for the life of the process.
///
/// Why: a fresh state that requires lj-async.encoder parsed ~2,000 lines of Lua (1.5 ms);
/// loading the same bytecode is several times cheaper. Thread-safety: internally locked.
final class ModuleCache: @unchecked Sendable {
    static let shared = ModuleCache()

    struct Entry {
        let bytes: UnsafeMutableRawPointer
        let count: Int
        let chunkName: String
    }

    private let lock = MutexCond()
    private var entries: [String: Entry] = [:]

    /// Stores `count` bytes under `name` unless an entry exists (the first one wins).
    func put(_ name: String, chunkName: String, _ src: UnsafeRawPointer, _ count: Int) {
        lock.withLock {
            if entries[name] != nil { return }
            let bytes = malloc(max(count, 1))!
            memcpy(bytes, src, count)
            entries[name] = Entry(bytes: bytes, count: count, chunkName: chunkName)
        }
    }

    func get(_ name: String) -> Entry? { lock.withLock { entries[name] } }

    /// A package.loaders searcher for prepared states: the cached bytecode of `lj-async.*`
    /// modules, loaded without copying it into a Lua string first. Runs on the state's thread.
    static let searcher: @convention(c) (OpaquePointer?) -> Int32 = { L in
        guard let L, let name = lua_tolstring(L, 1, nil) else { return 0 }
        let module = String(cString: name)
        guard module.hasPrefix("lj-async."), let e = ModuleCache.shared.get(module) else {
            lua_pushstring(L, "\n\tno cached bytecode for '\(module)'")
            return 1
        }
        if luaL_loadbuffer(L, e.bytes.assumingMemoryBound(to: CChar.self), e.count, e.chunkName) != 0 {
            return lua_error(L)
        }
        return 1
    }
}

/// Small process-wide facts that every state would otherwise work out again (e.g. whether the
/// encoder's native scan matches this LuaJIT's object layout). Thread-safety: internally locked.
final class ProcessMemo: @unchecked Sendable {
    static let shared = ProcessMemo()
    private let lock = MutexCond()
    private var values: [String: Int32] = [:]

    func get(_ key: String) -> Int32? { lock.withLock { values[key] } }
    func set(_ key: String, _ value: Int32) { lock.withLock { values[key] = value } }
}
