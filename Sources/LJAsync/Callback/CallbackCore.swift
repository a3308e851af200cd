// The storage of one callback: its fixed layout, its slots, its counters and how C enters it.
import CFFI
import CLJAsyncEntry
import Glibc
import Synchronization

/// What the Lua side decided about a callback's signature and code. Immutable once made.
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

struct CallbackError: Error { let message: String }

/// The builder bytecode callbacks share. callback.lua passes the same bytes to every creation:
/// the first copy is kept for the process (immutable, never freed) and a later creation with
/// equal bytes reuses its storage instead of holding its own 1.6 KiB (docs/design.md, "States").
/// Lock-free (one compare-and-swap publishes it), so fork() needs nothing here. Any thread.
enum SharedBuilder {
    private final class Box: Sendable {
        let bytes: [UInt8]
        init(_ bytes: [UInt8]) { self.bytes = bytes }
    }
    /// The shared box's address (an `Unmanaged<Box>` retained for good), 0 until published.
    private static let first = Atomic<UInt>(0)

    /// The `n` bytes at `p` (n > 0) as an array, the shared one when they equal it.
    static func bytes(_ p: UnsafeRawPointer, _ n: Int) -> [UInt8] {
        if let shared = UnsafeRawPointer(bitPattern: first.load(ordering: .acquiring)) {
            let b = Unmanaged<Box>.fromOpaque(shared).takeUnretainedValue().bytes
            if b.count == n && b.withUnsafeBytes({ memcmp($0.baseAddress!, p, n) }) == 0 { return b }
            return Array(UnsafeRawBufferPointer(start: p, count: n))
        }
        let mine = Array(UnsafeRawBufferPointer(start: p, count: n))
        let box = Unmanaged.passRetained(Box(mine)).toOpaque()
        if !first.compareExchange(expected: 0, desired: UInt(bitPattern: box), ordering: .acquiringAndReleasing).exchanged {
            Unmanaged<Box>.fromOpaque(box).release()
        }
        return mine
    }
}

/// Where one argument comes from and where it goes, fixed at creation.
struct ArgumentPlace {
    /// Byte offset in the stub's spill area (`ljasync_regs`, then the caller's stack arguments
    /// from byte 144 on), per the System V classification. Unused by the libffi entry.
    var source: Int32
    /// Byte offset in the argument frame the wrapper reads.
    var offset: UInt32
    var size: UInt32
}

/// One slot: a Lua state, the argument frame its wrapper reads, and the word saying who is in
/// it. A call owns its slot for its whole duration, so a state is never entered by two threads.
///
/// 64 bytes, in storage aligned to 64: no two slots' owner words share a cache line, and a CAS
/// on one slot's owner never evicts another slot's `state` or `frame`.
struct CallbackSlot: ~Copyable {
    /// 0 = free; a pthread id = that thread's call holds the slot; `CallbackCore.freedOwner` =
    /// parked for good by `free`; `CallbackCore.abandonedOwner` = its caller vanished in a
    /// fork (CallbackFork.swift).
    let owner = Atomic<UInt>(0)
    /// Written once, by the thread that builds the slot (before `slotCount` or `spareCount`
    /// publishes it), and cleared by `destroy` once every owner is parked.
    var state: LuaState?
    var frame: UnsafeMutableRawPointer?
    var limit: MemoryLimit?
    private let padding: (UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0)
}

/// How C code enters the callback. Either holds the core's address unretained: the core keeps
/// itself alive while either may be called (see `CallbackCore`, Lifetime).
enum CallbackEntryPoint {
    /// A 32-byte trampoline into the x86-64 stub (TrampolinePool); the code is the trampoline.
    case stub(UnsafeMutableRawPointer)
    /// A libffi closure, its executable address, and the call description it was prepared with.
    case libffi(closure: UnsafeMutablePointer<ffi_closure>, code: UnsafeMutableRawPointer,
                cif: UnsafeMutablePointer<ffi_cif>, argTypes: UnsafeMutablePointer<UnsafeMutablePointer<ffi_type>?>)

    var code: UnsafeMutableRawPointer {
        switch self {
        case .stub(let t): return t
        case .libffi(_, let code, _, _): return code
        }
    }
}

/// The native half of one callback. Its address is what the trampoline or closure passes the
/// dispatcher, so it never moves.
///
/// Slots: `0..<maxStates` serve ordinary calls (a serial callback has one; a parallel one grows
/// to `maxStates` on demand, `slotCount` built so far); `maxStates..<capacity` serve only a
/// thread that re-enters the callback while already inside it (its outer state is busy),
/// `spareCount` built so far.
///
/// Thread-safety: `let` fields are fixed before the function pointer exists and are read by any
/// thread without a lock; the atomics are shared by every caller; the `var` fields are guarded
/// by `sync`, whose condition also wakes callers waiting for a slot and `free` waiting for calls.
///
/// Lifetime: `Callback.create` (owner's thread) makes it and takes a reference for the function
/// pointer; `free` (owner's thread, or a call inside the callback) waits for calls in flight,
/// then `destroy` retires the states and hands that reference to the `Quarantine`, where late
/// calls still find the core and return the default. Leaving the quarantine drops the
/// reference, and `deinit` frees the rest.
final class CallbackCore: @unchecked Sendable {
    static let freedOwner = UInt.max
    /// Slot 0's owner until a lazy callback's first call builds its state (no call can take it).
    static let unbuiltOwner = UInt.max - 1
    /// Re-entry depth one thread may reach inside one callback.
    static let spareSlots = 16

    // -- Fixed at creation --
    let spec: CallbackSpec
    let maxStates: Int
    let capacity: Int
    let nargs: Int
    let places: UnsafeMutablePointer<ArgumentPlace>     // `nargs` of them
    let retKind: ValueKind
    let retOffset: Int
    /// The default result, 16 bytes laid out as the frame holds a result (heap, not a stored
    /// tuple: taking a stored value's address would put a stack copy on the hot path).
    let defaultReturn: UnsafeMutableRawPointer
    let slots: UnsafeMutablePointer<CallbackSlot>       // `capacity` of them
    let entry: CallbackEntryPoint

    // -- Shared by every thread --
    /// Ordinary slots built so far; grows by one under `sync`, released after the slot is built.
    let slotCount = Atomic<Int>(0)
    /// Callers sleeping on `sync` (and `free` while it waits): a releasing call wakes them.
    let waiters = Atomic<Int>(0)
    /// 0 live, 1 freed (calls give up, slots park), 2 freed and destroyed.
    let freed = Atomic<Int>(0)
    let errorCount = Atomic<Int>(0)
    /// The fork generation this core was last adopted into (CallbackFork.swift).
    let seenGeneration = Atomic<Int>(Fork.generation)

    // -- Guarded by `sync` --
    let sync = PthreadLock()
    var lastError: String?
    /// `free` ran inside a call of this thread: the last slot to park destroys the core.
    var deferredFree = false
    /// Spare slots built so far.
    var spareCount = 0

    /// Lays out the storage; builds no state. Runs on the owner's thread.
    init(spec s: CallbackSpec, entry: CallbackEntryPoint) {
        precondition(MemoryLayout<CallbackSlot>.stride == 64, "a slot must fill one cache line")
        spec = s
        maxStates = s.maxStates
        capacity = s.maxStates + CallbackCore.spareSlots
        nargs = s.argKinds.count
        retKind = s.retKind
        retOffset = Int(s.retOffset)
        defaultReturn = .allocate(byteCount: 16, alignment: 8)
        defaultReturn.storeBytes(of: s.defaultReturn.0, as: UInt64.self)
        defaultReturn.storeBytes(of: s.defaultReturn.1, toByteOffset: 8, as: UInt64.self)
        self.entry = entry
        places = .allocate(capacity: max(nargs, 1))
        // System V: the first 6 integer/pointer and 8 floating arguments come in registers (the
        // stub spills them as an `ljasync_regs`), the rest on the caller's stack in order.
        let fprBase = MemoryLayout<ljasync_regs>.offset(of: \ljasync_regs.fpr)!
        let stackBase = Int(LJASYNC_STACK_ARGS)
        var gpr = 0, fpr = 0, stack = 0
        for i in 0..<nargs {
            let source: Int
            if s.argKinds[i] == .float || s.argKinds[i] == .double {
                if fpr < 8 { source = fprBase + 8 * fpr; fpr += 1 } else { source = stackBase + 8 * stack; stack += 1 }
            } else {
                if gpr < 6 { source = 8 * gpr; gpr += 1 } else { source = stackBase + 8 * stack; stack += 1 }
            }
            places[i] = ArgumentPlace(source: Int32(source), offset: s.argOffsets[i], size: UInt32(s.argKinds[i].size))
        }
        slots = UnsafeMutableRawPointer.allocate(byteCount: capacity * MemoryLayout<CallbackSlot>.stride, alignment: 64)
            .bindMemory(to: CallbackSlot.self, capacity: capacity)
        for i in 0..<capacity { (slots + i).initialize(to: CallbackSlot()) }
    }

    /// Runs when the quarantine lets go (on the thread freeing a later callback), or when
    /// creation fails: nothing can call the function pointer any more.
    deinit {
        for i in 0..<capacity {
            if let L = slots[i].state { StateStock.shared.retire(L, limit: slots[i].limit) }
            Glibc.free(slots[i].frame)
        }
        slots.deinitialize(count: capacity)
        UnsafeMutableRawPointer(slots).deallocate()
        places.deallocate()
        defaultReturn.deallocate()
        switch entry {
        case .stub(let t): TrampolinePool.shared.recycle(t)
        case .libffi(let closure, _, let cif, let argTypes):
            ffi_closure_free(closure)
            cif.deallocate()
            argTypes.deallocate()
        }
        sync.destroy()
    }

    /// The address C code calls.
    var code: UnsafeMutableRawPointer { entry.code }

    /// The address the trampoline or closure hands the dispatcher.
    var address: UnsafeMutableRawPointer { Unmanaged.passUnretained(self).toOpaque() }

    /// The core at `address`, without touching its reference count (the hot path must not).
    @inline(__always)
    static func at<R>(_ address: UnsafeRawPointer, _ body: (CallbackCore) -> R) -> R {
        Unmanaged<CallbackCore>.fromOpaque(address)._withUnsafeGuaranteedRef(body)
    }
}
