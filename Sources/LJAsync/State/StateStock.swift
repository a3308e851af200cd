// Prepares fresh Lua states on a background thread and closes retired ones there too.
import CLuaJIT
import Glibc

/// A small stock of ready states (light states with ffi opened), so a thread, worker or
/// callback starting on a quiet machine finds its state made; when the stock is empty (a busy
/// machine: the preparer runs at nice 19) the state is made on the taker's thread, which a
/// light state makes cheap (docs/design.md, "States").
///
/// Invariants: a state in the stock has run nothing but the environment's prelude and init code;
/// it is handed out once and never comes back (retired states are only closed).
/// Thread-safety: all methods may be called from any thread.
final class StateStock: @unchecked Sendable {
    static let shared = StateStock()

    private let sync = MutexCond()
    private var ready: [(state: LuaState, generation: Int)] = []
    private var retired: [(state: LuaState, limit: MemoryLimit?)] = []
    private var started = false
    /// How many prepared states to keep.
    var target = 4

    /// A fresh state following the current environment: from the stock when one is ready,
    /// else made on this thread. With a memory limit, always made here with its own allocator.
    func take(limit: MemoryLimit? = nil) -> LuaState? {
        let env = Environment.shared
        if limit == nil {
            let gen = env.generation
            let hit: LuaState? = sync.withLock {
                startIfNeeded()
                defer { sync.signal() }  // the preparer refills
                while let last = ready.popLast() {
                    if last.generation == gen { return last.state }
                    retired.append((last.state, nil))
                }
                return nil
            }
            if let hit { return hit }
        }
        let (L, errors) = Environment.makeState(env.snapshot(), allocator: limit)
        for e in errors { reportToStderr(e) }
        return L
    }

    /// At most this many states wait to be closed; past that, `retire` closes on the caller.
    static let maxRetired = 32

    /// Hands a state over to be closed off the caller's thread. The preparer runs at low
    /// priority: when it lags far behind (a saturated machine), the caller closes the state
    /// itself, so retired states never pile up.
    func retire(_ L: LuaState, limit: MemoryLimit? = nil) {
        let queued: Bool = sync.withLock {
            startIfNeeded()
            guard retired.count < StateStock.maxRetired else { return false }
            retired.append((L, limit))
            sync.signal()
            return true
        }
        if !queued { lua_close(L); limit?.free() }
    }

    /// Closes every state now, on this thread (used by tests and at shutdown).
    func drain() {
        let all: [(LuaState, MemoryLimit?)] = sync.withLock {
            let r = retired.map { ($0.state, $0.limit) } + ready.map { ($0.state, nil) }
            retired.removeAll()
            ready.removeAll()
            return r
        }
        for (L, limit) in all { lua_close(L); limit?.free() }
    }

    /// `require "ffi"` in `L` (its light prelude opens ffi on first use); errors are left to
    /// the code that needs ffi. Runs on the state's thread.
    static func requireFFI(_ L: LuaState) {
        lua_getfield(L, Lua.globalsIndex, "require")
        lua_pushstring(L, "ffi")
        _ = lua_pcall(L, 1, 0, 0)
        lua_settop(L, 0)
    }

    private func startIfNeeded() {
        if started { return }
        started = true
        var tid = pthread_t()
        let me = Unmanaged.passRetained(self).toOpaque()
        let rc = pthread_create(&tid, nil, { arg in
            let stock = Unmanaged<StateStock>.fromOpaque(arg!).takeRetainedValue()
            setThreadName("lj-async prep")
            // Lowest priority (Linux nice is per thread): preparing fills idle CPU time instead
            // of competing with the threads that use the states; take() falls back to making
            // a state on the caller's thread when the stock is empty.
            _ = setpriority(__priority_which_t(PRIO_PROCESS.rawValue), 0, 19)
            stock.run()
            return nil
        }, me)
        precondition(rc == 0, "pthread_create failed: \(rc)")
        pthread_detach(tid)
    }

    private func run() {
        sync.lock()
        while true {
            if !retired.isEmpty {
                let batch = retired
                retired.removeAll()
                sync.unlock()
                for (L, limit) in batch { lua_close(L); limit?.free() }
                sync.lock()
                continue
            }
            if ready.count < target {
                let snap = Environment.shared.snapshot()
                sync.unlock()
                let (L, errors) = Environment.makeState(snap, collect: true)
                // Every kind of state ends up requiring ffi (a thread's `ud`, a callback's
                // frame, the spawn runner, the pool worker): open it here, off the taker's path.
                if let L { StateStock.requireFFI(L) }
                for e in errors { reportToStderr(e) }
                sync.lock()
                if let L {
                    if snap.generation == Environment.shared.generation {
                        ready.append((L, snap.generation))
                    } else {
                        retired.append((L, nil))
                    }
                }
                continue
            }
            sync.wait(until: nil)
        }
    }
}

/// Names the calling thread (visible in top -H, gdb, /proc); truncated to 15 bytes as Linux requires.
func setThreadName(_ name: String) {
    typealias SetName = @convention(c) (pthread_t, UnsafePointer<CChar>) -> Int32
    // Glibc's module map hides this GNU extension; look it up once.
    guard let sym = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "pthread_setname_np") else { return }
    let short = String(decoding: name.utf8.prefix(15), as: UTF8.self)
    _ = unsafeBitCast(sym, to: SetName.self)(pthread_self(), short)
}
