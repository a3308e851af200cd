// The per-call path of a callback: take a slot, copy the arguments, run the wrapper, return.
import CFFI
import CLJAsyncEntry
import CLuaJIT
import Glibc

/// Everything here runs on whatever thread called the function pointer, for every call, so it
/// allocates nothing and touches no reference count; what is rare (contention, re-entry, growth,
/// errors, a freed callback) is one call away in CallbackSlots.swift and CallbackErrors.swift.
extension CallbackCore {
    /// libffi's entry (platforms without the stub, or `LJASYNC_ENTRY=libffi`). `user` is the
    /// core's address.
    static let libffiEntry: @convention(c) (UnsafeMutablePointer<ffi_cif>?, UnsafeMutableRawPointer?,
                                            UnsafeMutablePointer<UnsafeMutableRawPointer?>?, UnsafeMutableRawPointer?) -> Void = {
        _, ret, args, user in
        CallbackCore.at(user.unsafelyUnwrapped) { $0.call(ret.unsafelyUnwrapped, args.unsafelyUnwrapped) }
    }

    /// The stub's path (`ljasync_dispatch`): `regs` is the spill area laid out as `ljasync_regs`
    /// followed by the caller's stack arguments; `ret` is the stub's two result words.
    @inline(__always)
    func dispatch(_ regs: UnsafeRawPointer, _ ret: UnsafeMutablePointer<UInt64>) {
        let slot = enter()
        if slot < 0 {
            retKind.storeRegister(from: defaultReturn, to: ret)
            return
        }
        let frame = slots[slot].frame.unsafelyUnwrapped
        for i in 0..<nargs {
            let p = places[i]
            copyArgument(from: regs + Int(p.source), to: frame + Int(p.offset), size: p.size)
        }
        run(slot, frame)
        retKind.storeRegister(from: frame + retOffset, to: ret)
        releaseSlot(slot)
    }

    /// libffi's path: `args[i]` points at argument `i`; `ret` is libffi's return slot.
    @inline(__always)
    func call(_ ret: UnsafeMutableRawPointer, _ args: UnsafeMutablePointer<UnsafeMutableRawPointer?>) {
        let slot = enter()
        if slot < 0 {
            retKind.storeReturn(from: defaultReturn, to: ret)
            return
        }
        let frame = slots[slot].frame.unsafelyUnwrapped
        for i in 0..<nargs {
            let p = places[i]
            copyArgument(from: args[i].unsafelyUnwrapped, to: frame + Int(p.offset), size: p.size)
        }
        run(slot, frame)
        retKind.storeReturn(from: frame + retOffset, to: ret)
        releaseSlot(slot)
    }

    @inline(__always)
    func copyArgument(from src: UnsafeRawPointer, to dst: UnsafeMutableRawPointer, size: UInt32) {
        switch size {
        case 8: dst.storeBytes(of: src.loadUnaligned(as: UInt64.self), as: UInt64.self)
        case 4: dst.storeBytes(of: src.loadUnaligned(as: UInt32.self), as: UInt32.self)
        case 2: dst.storeBytes(of: src.loadUnaligned(as: UInt16.self), as: UInt16.self)
        default: dst.storeBytes(of: src.load(as: UInt8.self), as: UInt8.self)
        }
    }

    /// Takes a slot for the calling thread: one compare-and-swap when uncontended. Returns the
    /// slot, or -1 when the call must return the default (freed, or no state could be made).
    @inline(__always)
    func enter() -> Int {
        let me = UInt(pthread_self())
        adoptFork()  // one compare: no slot is taken in a fork generation the core has not adopted
        var slot = 0
        if maxStates > 1 {
            // Threads running at the same moment run on different CPUs: start at the CPU's slot
            // (sched_getcpu reads the kernel's rseq area: a few nanoseconds, no system call).
            // No division when the CPU's index is a slot (a divide costs tens of cycles).
            let count = max(min(slotCount.load(ordering: .relaxed), maxStates), 1)
            let cpu = Int(ljasync_current_cpu())
            slot = cpu < count ? cpu : cpu % count
        }
        if slots[slot].owner.compareExchange(expected: 0, desired: me, ordering: .acquiring).exchanged {
            return slot
        }
        return acquireSlow(me)
    }

    /// Runs the wrapper in the slot's state (stack: 1 traceback handler, 2 wrapper, 3 error
    /// handler or nil); on error, reports it and leaves the default result in the frame.
    @inline(__always)
    func run(_ slot: Int, _ frame: UnsafeMutableRawPointer) {
        let L = slots[slot].state.unsafelyUnwrapped
        lua_pushvalue(L, 2)
        let rc = lua_pcall(L, 0, 0, 1)
        if rc != 0 {
            // LuaJIT collects no garbage when an allocation fails: do it now, or the garbage
            // of the failed call keeps the state out of memory.
            if rc == LUA_ERRMEM { lua_gc(L, LUA_GCCOLLECT, 0) }
            failed(L)
            memcpy(frame + retOffset, defaultReturn, retKind.size)
        }
    }

    /// Gives the slot back, waking callers that sleep for one; a freed callback parks it.
    @inline(__always)
    func releaseSlot(_ slot: Int) {
        if freed.load(ordering: .relaxed) != 0 {
            releaseFreed(slot)
            return
        }
        // Sequentially consistent with `waiters`: a caller that counted itself in before this
        // store sees the slot free or is woken (acquireSlow re-checks under `sync`).
        slots[slot].owner.store(0, ordering: .sequentiallyConsistent)
        if waiters.load(ordering: .sequentiallyConsistent) > 0 {
            adoptFork()  // after a fork `waiters` may count the parent's sleepers (CallbackFork.swift)
            sync.withLock { sync.broadcast() }
        }
    }
}
