// Prepares fresh Lua states on a background thread and closes retired ones there too.
import CLJAsync
import CLuaJIT
import Glibc

/// A small stock of ready states (light states with ffi opened; and, once a light spawn asked
/// for one, without: see `takeChecked(bare:)`), so a thread, worker or
/// callback starting on a quiet machine finds its state made; when the stock is empty (a busy
/// machine: the preparer runs at nice 19) the state is made on the taker's thread, which a
/// light state makes cheap (docs/design.md, "States").
///
/// Invariants: a state in the stock has run nothing but the environment's prelude and init code;
/// it is handed out once and never comes back (retired states are only closed). The errors
/// its init code raised travel with it to the taker, who decides (a worker or thread fails to
/// start; a callback reports them): the preparer itself reports nothing.
/// Fork: `forkPrepare` (the forking thread) waits until the preparer is outside `makeState`
/// and holds `sync` across fork(); in the child `forkChild` re-creates the lock and lets the
/// next use start a new preparer (the parent's thread does not exist there).
/// Thread-safety: all methods may be called from any thread.
final class StateStock: @unchecked Sendable {
    static let shared = StateStock()

    private let sync = PthreadLock()
    private var ready: [(state: LuaState, generation: Int, errors: [String])] = []
    /// States without ffi, for light spawns (docs/design.md, "Light spawns"); kept only once
    /// one was asked for.
    private var readyBare: [(state: LuaState, generation: Int, errors: [String])] = []
    private var bareWanted = false
    private var retired: [(state: LuaState, limit: MemoryLimit?)] = []
    private var started = false
    private var making = false      // the preparer runs makeState, outside `sync`
    private var forking = false     // a fork waits for the preparer to pause
    /// How many prepared states to keep.
    var target = 4

    /// A fresh state following the current environment, with the errors its init code raised
    /// reported on stderr (callbacks' states).
    func take(limit: MemoryLimit? = nil) -> LuaState? {
        let (L, errors) = takeChecked(limit: limit)
        for e in errors { reportToStderr(e) }
        return L
    }

    /// A fresh state following the current environment, and the errors its prelude or init
    /// code raised (empty when it is ready): from the stock when one is ready, else made on
    /// this thread. With a memory limit, always made here with its own allocator. The state is
    /// nil only when none can be made (out of memory).
    /// `bare`: a state that has not opened ffi (a light spawn's, whose user can tell).
    func takeChecked(limit: MemoryLimit? = nil, bare: Bool = false) -> (LuaState?, [String]) {
        Fork.install()
        let env = Environment.shared
        if limit == nil {
            let gen = env.generation
            let hit: (LuaState, [String])? = sync.withLock {
                startIfNeeded()
                defer { sync.signal() }  // the preparer refills
                if bare { bareWanted = true }
                while let last = bare ? readyBare.popLast() : ready.popLast() {
                    if last.generation == gen { return (last.state, last.errors) }
                    retired.append((last.state, nil))
                }
                return nil
            }
            if let hit { return hit }
        }
        return Environment.makeState(env.snapshot(), allocator: limit)
    }

    /// At most this many states wait to be closed; past that, `retire` closes on the caller.
    static let maxRetired = 32

    /// Hands a state over to be closed off the caller's thread. The preparer runs at low
    /// priority: when it lags far behind (a saturated machine), the caller closes the state
    /// itself, so retired states never pile up.
    func retire(_ L: LuaState, limit: MemoryLimit? = nil) {
        Fork.install()
        let queued: Bool = sync.withLock {
            startIfNeeded()
            guard retired.count < StateStock.maxRetired else { return false }
            retired.append((L, limit))
            sync.signal()
            return true
        }
        if !queued { lua_close(L); limit?.free() }
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
        let rc = withSignalsBlocked { pthread_create(&tid, nil, { arg in
            let stock = Unmanaged<StateStock>.fromOpaque(arg!).takeRetainedValue()
            setThreadName("lj-async prep")
            // Lowest priority (Linux nice is per thread): preparing fills idle CPU time instead
            // of competing with the threads that use the states; take() falls back to making
            // a state on the caller's thread when the stock is empty.
            _ = setpriority(__priority_which_t(PRIO_PROCESS.rawValue), 0, 19)
            stock.run()
            return nil
        }, me) }
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
            let wantFFI = ready.count < target
            if (wantFFI || (bareWanted && readyBare.count < target)) && !forking {
                let snap = Environment.shared.snapshot()
                making = true
                sync.unlock()
                let (L, errors) = Environment.makeState(snap, collect: true)
                // Every kind of state but a light spawn's ends up requiring ffi (a thread's
                // `ud`, a callback's frame, the spawn runner, the pool worker): open it here,
                // off the taker's path.
                if let L, wantFFI { StateStock.requireFFI(L) }
                sync.lock()
                making = false
                if forking { sync.broadcast() }
                if let L {
                    if snap.generation == Environment.shared.generation {
                        if wantFFI {
                            ready.append((L, snap.generation, errors))
                        } else {
                            readyBare.append((L, snap.generation, errors))
                        }
                    } else {
                        retired.append((L, nil))
                    }
                }
                continue
            }
            sync.wait(until: nil)
        }
    }

    // -- fork() (the forking thread; see Fork.swift) --

    /// Before fork(): lets the preparer finish the state it is making (it takes locks of the
    /// environment and the module cache meanwhile), then holds `sync` so it cannot start
    /// another. Closing retired states may go on: it takes no lock of ours.
    func forkPrepare() {
        sync.lock()
        forking = true
        while making { sync.wait(until: nil) }
    }

    /// After fork(), in the parent: the preparer goes on.
    func forkParent() {
        forking = false
        sync.signal()
        sync.unlock()
    }

    /// After fork(), in the child (one thread): the prepared states are the child's copies and
    /// stay usable; retired ones are closed by the new preparer, started on the next use.
    func forkChild() {
        sync.reinitAfterFork()
        forking = false
        making = false
        started = false
    }
}

/// Names the calling thread (visible in top -H, gdb, /proc); truncated to 15 bytes as Linux requires.
func setThreadName(_ name: String) {
    // pthread_setname_np through ljasync.h's shim: Glibc's module map hides this GNU extension.
    _ = ljasync_gnu_setname(name)
}
