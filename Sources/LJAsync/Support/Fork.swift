// fork(): the pthread_atfork handlers that keep lj-async's locks and background threads sound in both processes.
import CLJAsync
import Glibc
import Synchronization

/// What happens to lj-async when the process forks.
///
/// The child has only the forking thread: the state preparer and the pool's workers are gone,
/// and any lock another thread held at the fork would stay locked for good. So `prepare` (the
/// forking thread, before fork) takes every lock of the preparer, the process-wide caches and
/// the pool, in the order the code takes them (stock; environment, init registry, module cache,
/// memo; pool definitions, IPC; inbox registry; pool queue; each inbox), after the preparer
/// has left `makeState`. `parent` releases them. `child`
/// re-creates them (a condition variable with waiters that no longer exist must not be
/// reused) and resets what belonged to the parent's threads: the pool forgets its workers
/// and the jobs queued or running in the parent (they are the parent's: pool.lua fails the
/// child's handles for them once, seeing `generation` change), inboxes drop the parent's
/// results and their eventfd, and the next use starts new background threads.
///
/// Callbacks: `prepare` also takes the callback locks (adoption, quarantine, trampolines: leaf
/// locks), and the child records which thread forked; each callback core adopts the new
/// generation itself on its next slow-path use (CallbackFork.swift), so a callback another
/// thread was inside at the fork keeps working in the child.
///
/// Not covered: locks of the Swift runtime, of shared objects (channels, mutexes), and
/// libgcc's unwinder lock (docs/thread.md, "fork").
///
/// Thread-safety: `install` from any thread, once per process in effect; the handlers run on
/// the forking thread (`child` in the child, alone).
enum Fork {
    /// Bumped in every child: objects made before a fork compare it with their own copy.
    static let generationCounter = Atomic<Int>(0)

    static var generation: Int { generationCounter.load(ordering: .acquiring) }

    /// In a child: the thread that forked (the only one the child has from the parent).
    private static let forkingThreadWord = Atomic<UInt>(0)
    static var forkingThread: UInt { forkingThreadWord.load(ordering: .acquiring) }

    /// Serializes callback cores adopting a new generation (CallbackFork.swift).
    nonisolated(unsafe) static let callbackLock = PthreadLock()

    private static let installed: Void = {
        let rc = pthread_atfork({ Fork.prepare() }, { Fork.parent() }, { Fork.child() })
        if rc != 0 { reportToStderr("cannot register fork handlers (pthread_atfork: \(rc)); lj-async will not work in a forked child") }
    }()

    /// Registers the handlers (idempotent). Called before the first background thread or
    /// inbox exists, so a fork before that has nothing to handle.
    static func install() {
        _ = installed
        _ = callbackLocks  // made now, not inside a fork's prepare
    }

    private static func prepare() {
        StateStock.shared.forkPrepare()
        for l in cacheLocks { l.lock() }
        for l in callbackLocks { l.lock() }
        Pool.forkPrepare()
        IdleThreads.shared.forkPrepare()  // a leaf lock
        ljasync_gnu_unwinder_sync()  // last: see shims.c (libgcc's frame lock)
    }

    private static func parent() {
        IdleThreads.shared.forkParent()
        Pool.forkParent()
        for l in callbackLocks.reversed() { l.unlock() }
        for l in cacheLocks.reversed() { l.unlock() }
        StateStock.shared.forkParent()
    }

    private static func child() {
        forkingThreadWord.store(UInt(pthread_self()), ordering: .relaxed)
        generationCounter.add(1, ordering: .releasing)
        StateStock.shared.forkChild()
        IdleThreads.shared.forkChild()
        for l in cacheLocks { l.reinitAfterFork() }
        for l in callbackLocks { l.reinitAfterFork() }
        Pool.forkChild()
    }

    /// The locks of the process-wide caches every new state and thread goes through (the
    /// environment, the init registry, the module cache, the memo, the LuaJIT binding's accepted dumps): leaf
    /// locks, held for microseconds by any thread that makes a state or loads an lj-async
    /// module, so a busy process forks while one is held (seen here: the child's workers then
    /// waited in ModuleCache.get for good). Each is a pthread mutex, so the child can re-create
    /// it: a `Synchronization.Mutex` is a PI futex naming its owner's thread id, and acquiring
    /// one the parent's thread held traps in the child ("Unknown error ... acquire a Mutex").
    nonisolated(unsafe) private static let cacheLocks: [PthreadLock] = [
        Environment.shared.lock, InitRegistry.shared.lock, ModuleCache.shared.lock, ProcessMemo.shared.lock, LuaJITBinding.lock,
    ]

    /// The process-wide locks of callbacks: leaf locks (nothing else is taken while one is
    /// held), taken after the cache locks.
    nonisolated(unsafe) private static let callbackLocks: [PthreadLock] = [
        callbackLock, Quarantine.shared.lock, TrampolinePool.shared.lock,
    ]

    /// How many cache locks fork() takes (a test checks that the caches still have theirs).
    static var cacheLockCount: Int { cacheLocks.count }
    static var callbackLockCount: Int { callbackLocks.count }
}
