// What every new Lua state starts with: the creator's package paths and the registered init code.
import CLJAsyncLua
import CLuaJIT
import Glibc

/// The process-wide recipe for new states.
///
/// Thread-safety: paths and core guarded by its own pthread lock; the init code is the
/// every-state view of `registry` (Support/InitRegistry.swift), read after that lock is
/// released (never both held). `snapshot()` hands out an immutable copy. Each change of either
/// bumps `generation`, so prepared states made from an older recipe are discarded.
final class Environment: @unchecked Sendable {
    struct Snapshot {
        var path: String
        var cpath: String
        /// Where the creating state loaded the core from (empty until `core.lua` says).
        var core: String
        /// Held while a state is made from it: keeps each entry's bytes and message (the one
        /// an init function with upvalues decodes) alive though it is withdrawn meanwhile.
        var inits: [(name: String, code: InitBytes)]
        var generation: Int
    }

    static let shared = Environment(registry: .shared)

    let lock = PthreadLock()
    let registry: InitRegistry
    private var current = Snapshot(path: "", cpath: "", core: "", inits: [], generation: 0)

    init(registry: InitRegistry) { self.registry = registry }

    /// `shared` lives as long as the process; others (tests) free their lock here.
    deinit { lock.destroy() }

    /// The paths and core, then the init code: each part's generation is read with its data,
    /// so a change between the two reads leaves the snapshot's generation stale, never current.
    func snapshot() -> Snapshot {
        var snap = lock.withLock { current }
        let view = registry.stateView()
        snap.inits = view.inits
        snap.generation += view.generation
        return snap
    }

    var generation: Int { lock.withLock { current.generation } + registry.generation }

    /// Sets the package paths new states get. Unchanged paths keep prepared states valid.
    func setPaths(path: String, cpath: String) {
        lock.withLock {
            if current.path == path && current.cpath == cpath { return }
            current.path = path
            current.cpath = cpath
            current.generation += 1
        }
    }

    /// Records where the core was loaded from, so `core.lua` in new states loads that same
    /// library whatever their paths (a LÖVE game's core is on no path). The first one stays.
    func setCore(_ path: String) {
        lock.withLock {
            if !current.core.isEmpty || path.isEmpty { return }
            current.core = path
            current.generation += 1
        }
    }

    /// Makes a fresh light state following `snap` (Sources/CLJAsyncLua/light.c): base, package
    /// and jit open, the other standard libraries and `ffi` opened on first touch, the creator's
    /// paths and core, the module cache's searcher, then the init code.
    /// Init-code errors do not fail the state; they are returned for reporting.
    /// `collect`: run a full collection at the end (worth it off the caller's thread only).
    static func makeState(_ snap: Snapshot, allocator: MemoryLimit? = nil, collect: Bool = false) -> (LuaState?, [String]) {
        let L: LuaState?
        if let allocator {
            L = lua_newstate(MemoryLimit.allocate, allocator.context)
        } else {
            // LuaJIT's own allocator: a private arena per state. malloc/realloc/free would
            // save 8 KiB of RSS per state and CPU (docs/design.md, "States"), but one state's
            // use after free then corrupts the process's heap: spec/fork_spec.lua's busy-fork
            // case aborted once in about 17 runs with "corrupted size vs. prev_size" under it
            // (never under this allocator, where the same bug would stay inside one arena), as
            // a LuaJIT 2.1 (2022) lua_close after `ffi` was dropped did before.
            L = luaL_newstate()
        }
        guard let L else { return (nil, ["cannot create a Lua state: out of memory"]) }
        lua_pushcclosure(L, ljasync_light_open, 0)
        lua_pushstring(L, snap.path)
        lua_pushstring(L, snap.cpath)
        lua_pushstring(L, snap.core)
        lua_pushcclosure(L, ModuleCache.searcher, 0)
        if lua_pcall(L, 4, 0, 0) != 0 {
            let e = "cannot open a Lua state's libraries: " + Lua.string(L, -1)
            lua_close(L)
            return (nil, [e])
        }
        var errors: [String] = []
        for (name, code) in snap.inits {
            if let e = Lua.run(L, bytes: code.buffer, name: name) { errors.append("init code " + e) }
        }
        lua_settop(L, 0)
        // The init code's garbage would otherwise stay until the state's first collection cycle.
        if collect && !snap.inits.isEmpty { lua_gc(L, LUA_GCCOLLECT, 0) }
        return (L, errors)
    }
}
