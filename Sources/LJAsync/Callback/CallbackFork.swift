// A callback in a forked child: slots of threads that did not come along, and a fresh lock.
import Glibc

/// After `fork()` the child has only the forking thread. A slot another thread was calling in
/// stays owned by a thread that no longer exists, and `sync` may have been held (or waited on)
/// by one. So each core remembers the fork generation it last saw (`seenGeneration`), and
/// every call (`enter`: one compare on the hot path), and everything else that takes `sync`
/// or slot owners (errors, `free`, counting states), first calls `adoptFork`. Because no slot
/// is taken in a generation before the core adopted it, every owner adoption finds other
/// than the forking thread is a vanished parent thread, never a thread of the child (whose
/// ids may equal a vanished thread's: glibc reuses their stacks).
///
/// Adopting, once per core and generation: `sync` is re-created, `waiters` forgets the
/// parent's sleepers, and every slot owned by a thread other than the forking one is
/// *abandoned*: its owner word becomes `abandonedOwner` and its state, frame and memory limit
/// are dropped from the slot without being touched. That state is mid-call on a thread the
/// child does not have (it may be inside its allocator or collector), so closing it is not
/// safe: it is leaked deliberately, one state per abandoned slot, for the child's lifetime.
/// An abandoned slot is built again with a fresh state when a caller needs it (`acquireSlow`,
/// `spare`), and counts as parked for `free`.
///
/// Thread-safety: `adoptFork` from any thread; adopting runs under `Fork.callbackLock`
/// (taken by fork()'s prepare, so no adoption is half-done in a child), before any thread of
/// this generation can have touched `sync`.
extension CallbackCore {
    /// Owner word of a slot whose caller vanished in a fork.
    static let abandonedOwner = UInt.max - 1

    /// Adopts the core into the current fork generation if it has not yet (see above).
    @inline(__always)
    func adoptFork() {
        if seenGeneration.load(ordering: .acquiring) != Fork.generation { adoptForkSlow() }
    }

    @inline(never)
    private func adoptForkSlow() {
        Fork.callbackLock.withLock {
            let generation = Fork.generation
            guard seenGeneration.load(ordering: .relaxed) != generation else { return }
            sync.reinitAfterFork()
            waiters.store(0, ordering: .relaxed)
            let survivor = Fork.forkingThread
            // Every slot, built or not: a vanished thread may have been building one.
            for i in 0..<capacity {
                let owner = slots[i].owner.load(ordering: .relaxed)
                if owner == 0 || owner == survivor || owner == CallbackCore.freedOwner
                    || owner == CallbackCore.abandonedOwner { continue }
                slots[i].owner.store(CallbackCore.abandonedOwner, ordering: .relaxed)
                slots[i].state = nil  // leaked: mid-call on a thread that is gone
                slots[i].frame = nil
                slots[i].limit = nil
            }
            seenGeneration.store(generation, ordering: .releasing)
        }
    }

    /// An abandoned slot among `range`, rebuilt for `me`: its index, -1 if the build failed
    /// (reported), nil if there is none. Called with `sync` held.
    func rebuildAbandoned(_ range: Range<Int>, _ me: UInt) -> Int? {
        for i in range where slots[i].owner.load(ordering: .relaxed) == CallbackCore.abandonedOwner {
            if let e = buildSlot(i) {
                reportToStderr("error in callback \(spec.label): cannot create a state: \(e)")
                return -1
            }
            slots[i].owner.store(me, ordering: .relaxed)
            return i
        }
        return nil
    }
}
