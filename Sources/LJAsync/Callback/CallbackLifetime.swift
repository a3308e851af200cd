// A callback's life: creation with its entry point, free (waiting for calls), destruction.
import CFFI
import Glibc
import Synchronization

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

    /// Makes a callback: its entry point, its storage and its first state. Runs on the owner's
    /// thread. On success the core holds the reference its function pointer needs (dropped
    /// when it leaves the quarantine); on failure everything made is freed with the core.
    static func create(_ s: CallbackSpec) -> Result<CallbackCore, CallbackError> {
        let libffiOnly: Bool
        switch entryFromEnvironment {
        case .success(let v): libffiOnly = v || forceLibffi.load(ordering: .relaxed)
        case .failure(let e): return .failure(e)
        }
        Fork.install()  // a child must learn of the fork to adopt this callback (CallbackFork.swift)
        let entry: CallbackEntryPoint
        if !libffiOnly, let t = TrampolinePool.shared.allocate() {
            entry = .stub(t)
        } else {
            switch closure(for: s) {
            case .success(let e): entry = e
            case .failure(let e): return .failure(e)
            }
        }
        let core = CallbackCore(spec: s, entry: entry)
        switch entry {
        case .stub(let t):
            TrampolinePool.shared.bind(t, to: core.address)
        case .libffi(let closure, let code, let cif, _):
            guard ffi_prep_closure_loc(closure, cif, CallbackCore.libffiEntry, core.address, code) == FFI_OK else {
                return .failure(CallbackError(message: "ffi_prep_closure_loc failed"))
            }
        }
        // Without a `cdef`, a memory limit or upvalues to decode, nothing the state runs at
        // creation can fail that the creating state has not checked (the code compiled there,
        // the frame's fields are scalars): the first call builds the state (acquireSlow), so
        // an idle callback holds no Lua state at all. Otherwise the state is built now, so a
        // bad cdef or a limit too small for the state fails the creation.
        // callback.lua passes 9 parts (7: cdef, 9: the upvalues' message); a caller passing
        // fewer (the Swift tests' raw builders) has its state built now.
        let args = s.builderArgs
        if s.memoryLimit == 0 && args.count >= 9 && args[6] == nil && args[8] == nil {
            core.slots[0].owner.store(CallbackCore.unbuiltOwner, ordering: .relaxed)
        } else {
            if let e = core.buildSlot(0) { return .failure(CallbackError(message: e)) }
            core.slotCount.store(1, ordering: .releasing)
        }
        _ = Unmanaged.passRetained(core)  // the function pointer's reference (see CallbackCore)
        live.add(1, ordering: .relaxed)
        return .success(core)
    }

    /// A libffi closure for the signature, not yet bound to a core. libffi's type descriptors
    /// are only looked up here (ljasync.h's shim), never on the stub's path.
    private static func closure(for s: CallbackSpec) -> Result<CallbackEntryPoint, CallbackError> {
        let n = s.argKinds.count
        let argTypes = UnsafeMutablePointer<UnsafeMutablePointer<ffi_type>?>.allocate(capacity: max(n, 1))
        for i in 0..<n { argTypes[i] = s.argKinds[i].ffiType }
        let cif = UnsafeMutablePointer<ffi_cif>.allocate(capacity: 1)
        cif.initialize(to: ffi_cif())
        let status = ffi_prep_cif(cif, FFI_DEFAULT_ABI, UInt32(n), s.retKind.ffiType, argTypes)
        var code: UnsafeMutableRawPointer?
        guard status == FFI_OK, let raw = ffi_closure_alloc(MemoryLayout<ffi_closure>.size, &code), let code else {
            cif.deallocate()
            argTypes.deallocate()
            return .failure(CallbackError(message: status == FFI_OK ? "out of memory for a closure"
                : "libffi cannot describe this signature (ffi_prep_cif: \(status))"))
        }
        return .success(.libffi(closure: raw.assumingMemoryBound(to: ffi_closure.self), code: code, cif: cif, argTypes: argTypes))
    }
}

extension CallbackCore {
    /// Frees the callback: calls waiting for a slot give up, calls in flight on other threads
    /// are waited for, then `destroy` runs. Called from inside the callback itself (on a thread
    /// holding a slot), it returns at once and the last call to leave destroys. Idempotent.
    /// Runs on the owner's thread, or on a calling thread inside the callback.
    func free() {
        let me = UInt(pthread_self())
        var destroyNow = false
        adoptFork()
        sync.withLock {
            guard freed.load(ordering: .relaxed) == 0 else { return }
            freed.store(1, ordering: .sequentiallyConsistent)
            waiters.add(1, ordering: .sequentiallyConsistent)
            defer { waiters.subtract(1, ordering: .sequentiallyConsistent) }
            sync.broadcast()  // waiting callers give up
            while true {
                var pendingOthers = 0
                var pendingMine = 0
                for i in builtSlots() {
                    let owner = slots[i].owner.compareExchange(expected: 0, desired: CallbackCore.freedOwner,
                                                               ordering: .acquiring)
                    if owner.exchanged || owner.original == CallbackCore.freedOwner
                        || owner.original == CallbackCore.abandonedOwner { continue }
                    if owner.original == me { pendingMine += 1 } else { pendingOthers += 1 }
                }
                if pendingOthers == 0 && pendingMine == 0 { destroyNow = true; return }
                if pendingOthers == 0 { deferredFree = true; return }
                sync.wait(until: nil)
            }
        }
        if destroyNow { destroy() }
    }

    /// Gives back a slot of a freed callback (from `releaseSlot`, on the calling thread): the
    /// slot is parked for good, and the last one parked after a deferred free destroys.
    func releaseFreed(_ slot: Int) {
        var destroyNow = false
        adoptFork()
        sync.withLock {
            slots[slot].owner.store(CallbackCore.freedOwner, ordering: .sequentiallyConsistent)
            sync.broadcast()
            if deferredFree {
                var all = true
                for i in builtSlots() {
                    let owner = slots[i].owner.load(ordering: .relaxed)
                    if owner != CallbackCore.freedOwner && owner != CallbackCore.abandonedOwner { all = false }
                }
                if all { deferredFree = false; destroyNow = true }
            }
        }
        if destroyNow { destroy() }
    }

    /// Retires the states and frames (every slot is parked, so no call can reach them), then
    /// hands the function pointer's reference to the quarantine: the function pointer stays
    /// callable and returns the default. Runs once, on the thread that parked the last slot.
    private func destroy() {
        for i in builtSlots() {
            if let L = slots[i].state { StateStock.shared.retire(L, limit: slots[i].limit) }
            slots[i].state = nil
            slots[i].limit = nil
            Glibc.free(slots[i].frame)
            slots[i].frame = nil
        }
        freed.store(2, ordering: .releasing)
        Callback.live.subtract(1, ordering: .relaxed)
        Quarantine.shared.park(Unmanaged.passUnretained(self))
    }
}
