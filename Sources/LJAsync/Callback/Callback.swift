// A C function pointer (a libffi closure) that runs a Lua function in states of its own.
import CFFI
import CLJAsyncEntry
import CLuaJIT
import Glibc
import Synchronization

/// What the Lua side decided about a callback's signature and code.
struct CallbackSpec {
    var label: String
    var builder: [UInt8]        // bytecode of the chunk that builds the wrapper in a new state
    var builderArgs: [[UInt8]?] // the builder's arguments after the frame address (nil = Lua nil)
    var argKinds: [ValueKind]
    var argOffsets: [UInt32]
    var retKind: ValueKind
    var retOffset: UInt32
    var frameSize: Int
    var defaultReturn: (UInt64, UInt64)
    var maxStates: Int          // 1 = serial; n > 1 = up to n states used in parallel
    var memoryLimit: Int        // bytes per state, 0 = none
}

/// The native half of one callback, in raw memory at a fixed address (the closure's user data).
///
/// Slots: each slot is a Lua state plus its argument frame. A call owns one slot for its whole
/// duration (`owners[i]` holds the caller's pthread id), so a state is never entered by two
/// threads. Slots `0..<maxStates` serve ordinary calls; slots past that only serve a thread
/// that re-enters the callback while already inside it (its outer state is busy).
///
/// Lifetime: created by `create`, freed by `free` (from the owner), which waits for calls in
/// flight, retires the states and parks the core in the quarantine, where late calls through
/// the function pointer still find it and return the default value.
struct CallbackCore {
    static let freedOwner = UInt.max
    /// Slot 0's owner until a lazy callback's first call builds its state (no call can take it).
    static let unbuiltOwner = UInt.max - 1
    static let recursionSlots = 16

    let spec: UnsafeMutablePointer<CallbackSpec>
    let capacity: Int
    let owners: UnsafeMutablePointer<Atomic<UInt>>    // stride `ownerStride`: one cache line each
    let states: UnsafeMutablePointer<LuaState?>
    let frames: UnsafeMutablePointer<UnsafeMutableRawPointer?>
    let limits: UnsafeMutablePointer<MemoryLimit?>
    let slotCount: UnsafeMutablePointer<Atomic<Int>>
    let waiters: UnsafeMutablePointer<Atomic<Int>>
    let freed: UnsafeMutablePointer<Atomic<Int>>      // 0 live, 1 freed, 2 freed + destroyed
    let errorCount: UnsafeMutablePointer<Atomic<Int>>
    let sync: PthreadLock                                // waits, growth, error text
    var lastError: UnsafeMutablePointer<CChar>?        // guarded by `sync`
    var deferredFree: Bool                             // guarded by `sync`
    var spareCount: Int                                // recursion slots built; guarded by `sync`
    let cif: UnsafeMutablePointer<ffi_cif>
    let argTypes: UnsafeMutablePointer<UnsafeMutablePointer<ffi_type>?>
    var closure: UnsafeMutablePointer<ffi_closure>?     // libffi entry, or nil with a trampoline
    var trampoline: UnsafeMutableRawPointer?            // x86-64 stub entry (TrampolinePool)
    var code: UnsafeMutableRawPointer?
    /// Where each argument sits in the stub's spill area (`ljasync_regs`, then the caller's
    /// stack arguments from byte 144 on), per the System V classification.
    let argSources: UnsafeMutablePointer<Int32>
    // Hot fields copied out of `spec`.
    let nargs: Int
    let argOffsets: UnsafeMutablePointer<UInt32>
    let argSizes: UnsafeMutablePointer<UInt32>
    let retKind: ValueKind
    let retOffset: Int
    let maxStates: Int
    let defaultReturn: UnsafeMutablePointer<UInt64>    // two words

    static let ownerStride = 8
}

typealias CallbackRef = UnsafeMutablePointer<CallbackCore>

enum Callback {
    /// Callbacks created and not yet destroyed, for leak tests.
    static let live = Atomic<Int>(0)
    /// Swift tests set this to exercise the libffi entry on platforms that have the stub.
    static let forceLibffi = Atomic<Bool>(false)
    /// `LJASYNC_ENTRY`, read once per process (at the first creation): `libffi` makes every
    /// callback a libffi closure, the entry of every platform but x86-64; unset or empty keeps
    /// the default. Any other value fails each creation with this message.
    static let entryFromEnvironment: Result<Bool, CallbackError> = {
        guard let raw = getenv("LJASYNC_ENTRY"), raw.pointee != 0 else { return .success(false) }
        let value = String(cString: raw)
        if value == "libffi" { return .success(true) }
        return .failure(CallbackError(message: "bad LJASYNC_ENTRY '\(value)': expected 'libffi', or unset for the default entry"))
    }()

    // -- Creation (owner's thread) --

    /// Builds the first state and the closure. Returns the core or an error message.
    static func create(_ s: CallbackSpec) -> Result<CallbackRef, CallbackError> {
        let libffiOnly: Bool
        switch entryFromEnvironment {
        case .success(let v): libffiOnly = v || forceLibffi.load(ordering: .relaxed)
        case .failure(let e): return .failure(e)
        }
        let spec = UnsafeMutablePointer<CallbackSpec>.allocate(capacity: 1)
        spec.initialize(to: s)
        let capacity = s.maxStates + CallbackCore.recursionSlots
        let owners = UnsafeMutablePointer<Atomic<UInt>>.allocate(capacity: capacity * CallbackCore.ownerStride)
        for i in 0..<(capacity * CallbackCore.ownerStride) { (owners + i).initialize(to: Atomic(0)) }
        func atomic(_ v: Int) -> UnsafeMutablePointer<Atomic<Int>> {
            let p = UnsafeMutablePointer<Atomic<Int>>.allocate(capacity: 1)
            p.initialize(to: Atomic(v))
            return p
        }
        let states = UnsafeMutablePointer<LuaState?>.allocate(capacity: capacity)
        states.initialize(repeating: nil, count: capacity)
        let frames = UnsafeMutablePointer<UnsafeMutableRawPointer?>.allocate(capacity: capacity)
        frames.initialize(repeating: nil, count: capacity)
        let limits = UnsafeMutablePointer<MemoryLimit?>.allocate(capacity: capacity)
        limits.initialize(repeating: nil, count: capacity)
        let n = s.argKinds.count
        let argOffsets = UnsafeMutablePointer<UInt32>.allocate(capacity: max(n, 1))
        let argSizes = UnsafeMutablePointer<UInt32>.allocate(capacity: max(n, 1))
        let argTypes = UnsafeMutablePointer<UnsafeMutablePointer<ffi_type>?>.allocate(capacity: max(n, 1))
        let argSources = UnsafeMutablePointer<Int32>.allocate(capacity: max(n, 1))
        var gpr = 0, fpr = 0, stack = 0
        for i in 0..<n {
            if s.argKinds[i] == .float || s.argKinds[i] == .double {
                if fpr < 8 { argSources[i] = Int32(48 + 8 * fpr); fpr += 1 } else { argSources[i] = Int32(144 + 8 * stack); stack += 1 }
            } else {
                if gpr < 6 { argSources[i] = Int32(8 * gpr); gpr += 1 } else { argSources[i] = Int32(144 + 8 * stack); stack += 1 }
            }
            argOffsets[i] = s.argOffsets[i]
            argSizes[i] = UInt32(s.argKinds[i].size)
        }
        let defaults = UnsafeMutablePointer<UInt64>.allocate(capacity: 2)
        defaults[0] = s.defaultReturn.0
        defaults[1] = s.defaultReturn.1
        let cif = UnsafeMutablePointer<ffi_cif>.allocate(capacity: 1)
        cif.initialize(to: ffi_cif())

        let core = CallbackRef.allocate(capacity: 1)
        core.initialize(to: CallbackCore(
            spec: spec, capacity: capacity, owners: owners, states: states, frames: frames, limits: limits,
            slotCount: atomic(0), waiters: atomic(0), freed: atomic(0), errorCount: atomic(0),
            sync: PthreadLock(), lastError: nil, deferredFree: false, spareCount: 0, cif: cif, argTypes: argTypes,
            closure: nil, trampoline: nil, code: nil, argSources: argSources, nargs: n, argOffsets: argOffsets, argSizes: argSizes,
            retKind: s.retKind, retOffset: Int(s.retOffset), maxStates: s.maxStates, defaultReturn: defaults))

        // Without a `cdef` nothing the state runs at creation can fail that the creating
        // state has not checked (the code compiled there, the frame's fields are scalars):
        // the first call builds the state, so an idle callback holds no Lua state at all.
        // With a `cdef` or a memory limit the state is built now, so a bad cdef or a limit
        // too small for the state fails the creation.
        let lazy = s.memoryLimit == 0 && s.builderArgs.count > 6 && s.builderArgs[6] == nil  // arg 7: cdef
        if lazy {
            owners[0].store(CallbackCore.unbuiltOwner, ordering: .relaxed)
        } else {
            if let e = buildSlot(core, 0) {
                release(core)
                return .failure(CallbackError(message: e))
            }
            core.pointee.slotCount.pointee.store(1, ordering: .releasing)
        }

        if !libffiOnly, let t = TrampolinePool.shared.allocate(for: UnsafeMutableRawPointer(core)) {
            core.pointee.trampoline = t
            core.pointee.code = t
            live.add(1, ordering: .relaxed)
            return .success(core)
        }
        // libffi's descriptors are only needed here (dlsym lookups: not on the stub's path).
        for i in 0..<n { argTypes[i] = s.argKinds[i].ffiType }
        let status = ffi_prep_cif(cif, FFI_DEFAULT_ABI, UInt32(n), s.retKind.ffiType, argTypes)
        guard status == FFI_OK else {
            release(core)
            return .failure(CallbackError(message: "libffi cannot describe this signature (ffi_prep_cif: \(status))"))
        }
        var code: UnsafeMutableRawPointer?
        guard let raw = ffi_closure_alloc(MemoryLayout<ffi_closure>.size, &code), let code else {
            release(core)
            return .failure(CallbackError(message: "out of memory for a closure"))
        }
        let closure = raw.assumingMemoryBound(to: ffi_closure.self)
        guard ffi_prep_closure_loc(closure, cif, entry, UnsafeMutableRawPointer(core), code) == FFI_OK else {
            ffi_closure_free(raw)
            release(core)
            return .failure(CallbackError(message: "ffi_prep_closure_loc failed"))
        }
        core.pointee.closure = closure
        core.pointee.code = code
        live.add(1, ordering: .relaxed)
        return .success(core)
    }

    /// Makes slot `i`: a fresh state running the builder, and a zeroed argument frame.
    /// Returns an error message on failure. Caller ensures nobody else touches slot `i`.
    static func buildSlot(_ core: CallbackRef, _ i: Int) -> String? {
        let spec = core.pointee.spec
        let limit = spec.pointee.memoryLimit > 0 ? MemoryLimit(limit: spec.pointee.memoryLimit) : nil
        guard let L = StateStock.shared.take(limit: limit) else {
            limit?.free()
            return "cannot create a Lua state: out of memory"
        }
        let frame = calloc(1, max(spec.pointee.frameSize, 16))!
        var failure: String?
        // A builder in package.loaded["lj-async.builder"] is used; callback.lua no longer
        // registers one as init code (every thread and worker state would load it), so the
        // builder normally loads from the spec.
        lua_getfield(L, Lua.globalsIndex, "package")
        lua_getfield(L, -1, "loaded")
        lua_getfield(L, -1, "lj-async.builder")
        lua_replace(L, 1)
        lua_settop(L, 1)
        var loaded: Int32 = 0
        if lua_type(L, 1) != LUA_TFUNCTION {
            lua_settop(L, 0)
            loaded = spec.pointee.builder.withUnsafeBufferPointer { b in
                b.baseAddress!.withMemoryRebound(to: CChar.self, capacity: b.count) {
                    luaL_loadbuffer(L, $0, b.count, "=lj-async builder")
                }
            }
        }
        if loaded != 0 {
            failure = Lua.string(L, -1)
        } else {
            lua_pushnumber(L, Double(UInt(bitPattern: frame)))
            for arg in spec.pointee.builderArgs {
                guard let arg else { lua_pushnil(L); continue }
                arg.withUnsafeBufferPointer { b in
                    b.baseAddress.map { lua_pushlstring(L, UnsafeRawPointer($0).assumingMemoryBound(to: CChar.self), b.count) }
                        ?? lua_pushlstring(L, "", 0)
                }
            }
            if lua_pcall(L, Int32(1 + spec.pointee.builderArgs.count), 3, 0) != 0 { failure = Lua.string(L, -1) }
        }
        if let failure {
            StateStock.shared.retire(L, limit: limit)
            Glibc.free(frame)
            return failure
        }
        // Stack: 1 traceback handler, 2 wrapper, 3 error handler or nil.
        core.pointee.states[i] = L
        core.pointee.frames[i] = frame
        core.pointee.limits[i] = limit
        return nil
    }

    // -- Calls (any thread) --

    /// libffi's entry: runs on whatever thread called the function pointer.
    static let entry: @convention(c) (UnsafeMutablePointer<ffi_cif>?, UnsafeMutableRawPointer?,
                                      UnsafeMutablePointer<UnsafeMutableRawPointer?>?, UnsafeMutableRawPointer?) -> Void = {
        _, ret, args, user in
        let core = user.unsafelyUnwrapped.assumingMemoryBound(to: CallbackCore.self)
        call(core, ret.unsafelyUnwrapped, args)
    }

    /// The stub's dispatcher: runs on whatever thread called the trampoline.
    @inline(__always)
    static func dispatch(_ core: CallbackRef, _ regs: UnsafeMutableRawPointer, _ ret: UnsafeMutablePointer<UInt64>,
                         _ me: UInt) {
        let slot = enter(core, me)
        if slot < 0 {
            core.pointee.retKind.storeRegister(from: core.pointee.defaultReturn, to: ret)
            return
        }
        let frame = core.pointee.frames[slot].unsafelyUnwrapped
        for i in 0..<core.pointee.nargs {
            copyArgument(from: regs + Int(core.pointee.argSources[i]), to: frame + Int(core.pointee.argOffsets[i]),
                         size: core.pointee.argSizes[i])
        }
        run(core, slot, frame)
        core.pointee.retKind.storeRegister(from: frame + core.pointee.retOffset, to: ret)
        releaseSlot(core, slot)
    }

    /// libffi's path (platforms without the stub).
    @inline(__always)
    static func call(_ core: CallbackRef, _ ret: UnsafeMutableRawPointer,
                     _ args: UnsafeMutablePointer<UnsafeMutableRawPointer?>?) {
        let slot = enter(core, UInt(pthread_self()))
        if slot < 0 {
            core.pointee.retKind.storeReturn(from: core.pointee.defaultReturn, to: ret)
            return
        }
        let frame = core.pointee.frames[slot].unsafelyUnwrapped
        for i in 0..<core.pointee.nargs {
            copyArgument(from: args.unsafelyUnwrapped[i].unsafelyUnwrapped, to: frame + Int(core.pointee.argOffsets[i]),
                         size: core.pointee.argSizes[i])
        }
        run(core, slot, frame)
        core.pointee.retKind.storeReturn(from: frame + core.pointee.retOffset, to: ret)
        releaseSlot(core, slot)
    }

    @inline(__always)
    static func copyArgument(from src: UnsafeRawPointer, to dst: UnsafeMutableRawPointer, size: UInt32) {
        switch size {
        case 8: dst.storeBytes(of: src.loadUnaligned(as: UInt64.self), as: UInt64.self)
        case 4: dst.storeBytes(of: src.loadUnaligned(as: UInt32.self), as: UInt32.self)
        case 2: dst.storeBytes(of: src.loadUnaligned(as: UInt16.self), as: UInt16.self)
        default: dst.storeBytes(of: src.load(as: UInt8.self), as: UInt8.self)
        }
    }

    /// Takes a slot for this thread: a lock-free CAS when uncontended. -1 = return the default.
    @inline(__always)
    static func enter(_ core: CallbackRef, _ me: UInt) -> Int {
        var slot = 0
        if core.pointee.maxStates > 1 {
            // Threads running at the same moment run on different CPUs: start at the CPU's slot
            // (sched_getcpu reads the kernel's rseq area: a few nanoseconds, no system call).
            let count = min(core.pointee.slotCount.pointee.load(ordering: .relaxed), core.pointee.maxStates)
            slot = Int(ljasync_current_cpu()) % max(count, 1)
        }
        if core.pointee.owners[slot * CallbackCore.ownerStride]
            .compareExchange(expected: 0, desired: me, ordering: .acquiring).exchanged {
            return slot
        }
        return acquireSlow(core, me)
    }

    /// Runs the wrapper in the slot's state; on error, reports it and stores the default result.
    @inline(__always)
    static func run(_ core: CallbackRef, _ slot: Int, _ frame: UnsafeMutableRawPointer) {
        let L = core.pointee.states[slot].unsafelyUnwrapped
        lua_pushvalue(L, 2)
        let rc = lua_pcall(L, 0, 0, 1)
        if rc != 0 {
            // LuaJIT collects no garbage when an allocation fails: do it now, or the garbage
            // of the failed call keeps the state out of memory.
            if rc == LUA_ERRMEM { lua_gc(L, LUA_GCCOLLECT, 0) }
            failed(core, L)
            memcpy(frame + core.pointee.retOffset, core.pointee.defaultReturn, core.pointee.retKind.size)
        }
    }

    @inline(__always)
    static func releaseSlot(_ core: CallbackRef, _ slot: Int) {
        if core.pointee.freed.pointee.load(ordering: .relaxed) != 0 {
            releaseFreed(core, slot)
            return
        }
        core.pointee.owners[slot * CallbackCore.ownerStride].store(0, ordering: .sequentiallyConsistent)
        if core.pointee.waiters.pointee.load(ordering: .sequentiallyConsistent) > 0 {
            core.pointee.sync.withLock { core.pointee.sync.broadcast() }
        }
    }

    /// Contention, re-entry, growth, or a freed callback. Returns a slot or -1 (use the default).
    @inline(never)
    static func acquireSlow(_ core: CallbackRef, _ me: UInt) -> Int {
        let c = core.pointee
        func tryAny(_ count: Int) -> Int {
            for i in 0..<min(count, c.maxStates)
            where c.owners[i * CallbackCore.ownerStride].compareExchange(expected: 0, desired: me, ordering: .acquiring).exchanged {
                return i
            }
            return -1
        }
        if c.freed.pointee.load(ordering: .sequentiallyConsistent) != 0 {
            reportLateCall(core)
            return -1
        }
        var count = c.slotCount.pointee.load(ordering: .acquiring)
        if count == 0 {
            // A lazy callback's first call: build its first state here, on the calling thread.
            c.sync.lock()
            if c.slotCount.pointee.load(ordering: .acquiring) == 0 {
                defer { c.sync.unlock() }
                if c.freed.pointee.load(ordering: .sequentiallyConsistent) != 0 {
                    reportLateCall(core)
                    return -1
                }
                guard build(core, 0, me) else { return -1 }
                c.slotCount.pointee.store(1, ordering: .releasing)
                return 0
            }
            c.sync.unlock()
            count = c.slotCount.pointee.load(ordering: .acquiring)
        }
        let s = tryAny(count)
        if s >= 0 { return s }

        var reentered = false
        for i in 0..<count where c.owners[i * CallbackCore.ownerStride].load(ordering: .relaxed) == me { reentered = true }
        if !reentered {
            // Contention: calls are short, so spin briefly before sleeping on the condition.
            for _ in 0..<64 {
                if c.freed.pointee.load(ordering: .relaxed) != 0 { break }
                for i in 0..<min(count, c.maxStates)
                where c.owners[i * CallbackCore.ownerStride].load(ordering: .relaxed) == 0
                    && c.owners[i * CallbackCore.ownerStride].compareExchange(expected: 0, desired: me, ordering: .acquiring).exchanged {
                    return i
                }
                sched_yield()
            }
        }

        c.sync.lock()
        c.waiters.pointee.add(1, ordering: .sequentiallyConsistent)
        defer {
            c.waiters.pointee.subtract(1, ordering: .sequentiallyConsistent)
            c.sync.unlock()
        }
        if reentered {
            // The thread is already inside this callback: its state is busy, so it gets a spare
            // state (index maxStates and up) that ordinary calls never use.
            let spares = core.pointee.spareCount
            for i in c.maxStates..<(c.maxStates + spares)
            where c.owners[i * CallbackCore.ownerStride].compareExchange(expected: 0, desired: me, ordering: .acquiring).exchanged {
                return i
            }
            let index = c.maxStates + spares
            guard index < c.capacity else {
                reportToStderr("error in callback \(c.spec.pointee.label): re-entered more than \(CallbackCore.recursionSlots) levels deep on one thread; returning the default value")
                return -1
            }
            return build(core, index, me) ? { core.pointee.spareCount += 1; return index }() : -1
        }
        while true {
            if c.freed.pointee.load(ordering: .sequentiallyConsistent) != 0 {
                reportLateCall(core)
                return -1
            }
            count = c.slotCount.pointee.load(ordering: .acquiring)
            let s = tryAny(count)
            if s >= 0 { return s }
            if count < c.maxStates {
                guard build(core, count, me) else { return -1 }
                c.slotCount.pointee.store(count + 1, ordering: .releasing)
                return count
            }
            c.sync.wait(until: nil)
        }
    }

    /// Builds slot `index`, owned by `me` from the start. Called with `sync` held.
    static func build(_ core: CallbackRef, _ index: Int, _ me: UInt) -> Bool {
        if let e = buildSlot(core, index) {
            reportToStderr("error in callback \(core.pointee.spec.pointee.label): cannot create a state: \(e)")
            return false
        }
        core.pointee.owners[index * CallbackCore.ownerStride].store(me, ordering: .relaxed)
        return true
    }

    /// Every slot index built so far. Called with `sync` held, or after destruction began.
    static func builtSlots(_ core: CallbackRef) -> [Int] {
        let c = core.pointee
        let n = c.slotCount.pointee.load(ordering: .acquiring)
        return Array(0..<n) + Array(c.maxStates..<(c.maxStates + core.pointee.spareCount))
    }

    // -- Errors (calling thread, slot held) --

    @inline(never)
    static func failed(_ core: CallbackRef, _ L: LuaState) {
        let c = core.pointee
        let message = Lua.string(L, -1)
        c.errorCount.pointee.add(1, ordering: .relaxed)
        c.sync.withLock {
            Glibc.free(core.pointee.lastError)
            core.pointee.lastError = strdup(message)
        }
        if lua_type(L, 3) == LUA_TFUNCTION {
            lua_pushvalue(L, 3)
            lua_pushvalue(L, -2)
            if lua_pcall(L, 1, 0, 0) != 0 {
                reportToStderr("error in callback \(c.spec.pointee.label): \(message)\n(and its error handler failed: \(Lua.string(L, -1)))")
            }
        } else {
            reportToStderr("error in callback \(c.spec.pointee.label): \(message)")
        }
        lua_settop(L, 3)
    }

    static func reportLateCall(_ core: CallbackRef) {
        core.pointee.errorCount.pointee.add(1, ordering: .relaxed)
        reportToStderr("callback \(core.pointee.spec.pointee.label) called after free(); returning the default value")
    }

    // -- Freeing (owner's thread) --

    /// Frees the callback: waits for calls in flight on other threads, then retires the states.
    /// Called from inside the callback itself (re-entrantly), destruction waits until that
    /// call returns. Idempotent.
    static func free(_ core: CallbackRef) {
        let c = core.pointee
        let me = UInt(pthread_self())
        var destroyNow = false
        c.sync.withLock {
            guard c.freed.pointee.load(ordering: .relaxed) == 0 else { return }
            c.freed.pointee.store(1, ordering: .sequentiallyConsistent)
            c.waiters.pointee.add(1, ordering: .sequentiallyConsistent)
            defer { c.waiters.pointee.subtract(1, ordering: .sequentiallyConsistent) }
            c.sync.broadcast()  // waiting callers give up
            while true {
                var pendingOthers = 0
                var pendingMine = 0
                for i in builtSlots(core) {
                    let o = c.owners + i * CallbackCore.ownerStride
                    if o.pointee.compareExchange(expected: 0, desired: CallbackCore.freedOwner, ordering: .acquiring).exchanged { continue }
                    let v = o.pointee.load(ordering: .relaxed)
                    if v == CallbackCore.freedOwner { continue }
                    if v == me { pendingMine += 1 } else { pendingOthers += 1 }
                }
                if pendingOthers == 0 && pendingMine == 0 { destroyNow = true; return }
                if pendingOthers == 0 { core.pointee.deferredFree = true; return }
                c.sync.wait(until: nil)
            }
        }
        if destroyNow { destroy(core) }
    }

    /// Releases a slot of a callback being freed: the slot is parked for good.
    static func releaseFreed(_ core: CallbackRef, _ slot: Int) {
        let c = core.pointee
        var destroyNow = false
        c.sync.withLock {
            c.owners[slot * CallbackCore.ownerStride].store(CallbackCore.freedOwner, ordering: .sequentiallyConsistent)
            c.sync.broadcast()
            if core.pointee.deferredFree {
                var all = true
                for i in builtSlots(core) where c.owners[i * CallbackCore.ownerStride].load(ordering: .relaxed) != CallbackCore.freedOwner {
                    all = false
                }
                if all { core.pointee.deferredFree = false; destroyNow = true }
            }
        }
        if destroyNow { destroy(core) }
    }

    /// Retires the states and frames, then quarantines the core: the closure stays callable.
    static func destroy(_ core: CallbackRef) {
        let c = core.pointee
        for i in builtSlots(core) {
            if let L = c.states[i] { StateStock.shared.retire(L, limit: c.limits[i]) }
            c.states[i] = nil
            Glibc.free(c.frames[i])
            c.frames[i] = nil
        }
        c.freed.pointee.store(2, ordering: .releasing)
        live.subtract(1, ordering: .relaxed)
        Quarantine.shared.park(core)
    }

    /// Frees the core's memory for good. Only for cores that no C code can call any more.
    static func release(_ core: CallbackRef) {
        let c = core.pointee
        for i in 0..<c.capacity {
            if let L = c.states[i] { StateStock.shared.retire(L, limit: c.limits[i]) }
            Glibc.free(c.frames[i])
        }
        if let closure = c.closure { ffi_closure_free(closure) }
        if let t = c.trampoline { TrampolinePool.shared.recycle(t) }
        c.argSources.deallocate()
        c.sync.destroy()
        Glibc.free(c.lastError)
        c.spec.deinitialize(count: 1)
        c.spec.deallocate()
        c.owners.deallocate()
        c.states.deallocate()
        c.frames.deallocate()
        c.limits.deallocate()
        for p in [c.slotCount, c.waiters, c.freed, c.errorCount] { p.deallocate() }
        c.cif.deallocate()
        c.argTypes.deallocate()
        c.argOffsets.deallocate()
        c.argSizes.deallocate()
        c.defaultReturn.deallocate()
        core.deinitialize(count: 1)
        core.deallocate()
    }

    // -- Introspection (any thread) --

    static func errors(_ core: CallbackRef) -> (count: Int, last: String?) {
        let c = core.pointee
        return c.sync.withLock {
            (c.errorCount.pointee.load(ordering: .relaxed), core.pointee.lastError.map { String(cString: $0) })
        }
    }

    static func stateCount(_ core: CallbackRef) -> Int {
        core.pointee.sync.withLock { builtSlots(core).filter { core.pointee.states[$0] != nil }.count }
    }
}

struct CallbackError: Error { let message: String }
