// The slow path of taking a slot: contention, growth of parallel states, re-entry spares.
import CLJAsyncLua
import CLuaJIT
import Glibc

extension CallbackCore {
    /// Called by `enter` when its first slot was taken: contention, re-entry, growth, or a
    /// freed callback. Runs on the calling thread (`me`); returns a slot it now owns, or -1
    /// (return the default).
    ///
    /// Order of attempts: any free ordinary slot; a thread already inside this callback gets a
    /// spare (waiting would deadlock on its own outer call); otherwise spin briefly (calls are
    /// short), then, under `sync`, build another ordinary slot while fewer than `maxStates`
    /// exist, or sleep until a release or `free` wakes it.
    @inline(never)
    func acquireSlow(_ me: UInt) -> Int {
        if freed.load(ordering: .sequentiallyConsistent) != 0 {
            reportLateCall()
            return -1
        }
        var count = slotCount.load(ordering: .acquiring)
        if count == 0 {
            // A lazy callback's first call: build its first state here, on the calling thread.
            sync.lock()
            if slotCount.load(ordering: .acquiring) == 0 {
                defer { sync.unlock() }
                if freed.load(ordering: .sequentiallyConsistent) != 0 {
                    reportLateCall()
                    return -1
                }
                guard build(0, me) else { return -1 }
                slotCount.store(1, ordering: .releasing)
                return 0
            }
            sync.unlock()
            count = slotCount.load(ordering: .acquiring)
        }
        let s = tryOrdinary(count, me)
        if s >= 0 { return s }

        var reentered = false
        for i in 0..<count where slots[i].owner.load(ordering: .relaxed) == me { reentered = true }
        if !reentered {
            for _ in 0..<64 {
                if freed.load(ordering: .relaxed) != 0 { break }
                for i in 0..<min(count, maxStates)
                where slots[i].owner.load(ordering: .relaxed) == 0
                    && slots[i].owner.compareExchange(expected: 0, desired: me, ordering: .acquiring).exchanged {
                    return i
                }
                sched_yield()
            }
        }

        sync.lock()
        waiters.add(1, ordering: .sequentiallyConsistent)
        defer {
            waiters.subtract(1, ordering: .sequentiallyConsistent)
            sync.unlock()
        }
        if reentered { return spare(me) }
        while true {
            if freed.load(ordering: .sequentiallyConsistent) != 0 {
                reportLateCall()
                return -1
            }
            count = slotCount.load(ordering: .acquiring)
            let s = tryOrdinary(count, me)
            if s >= 0 { return s }
            if count < maxStates {
                guard build(count, me) else { return -1 }
                slotCount.store(count + 1, ordering: .releasing)
                return count
            }
            if let s = rebuildAbandoned(0..<min(count, maxStates), me) { return s }
            sync.wait(until: nil)
        }
    }

    /// The first free ordinary slot among the `count` built, now owned by `me`; -1 if none.
    private func tryOrdinary(_ count: Int, _ me: UInt) -> Int {
        for i in 0..<min(count, maxStates)
        where slots[i].owner.compareExchange(expected: 0, desired: me, ordering: .acquiring).exchanged {
            return i
        }
        return -1
    }

    /// A spare slot for a thread re-entering this callback: a free one, or a new one while
    /// fewer than `spareSlots` exist. Ordinary calls never use spares. Called with `sync` held.
    private func spare(_ me: UInt) -> Int {
        for i in maxStates..<(maxStates + spareCount)
        where slots[i].owner.compareExchange(expected: 0, desired: me, ordering: .acquiring).exchanged {
            return i
        }
        if let s = rebuildAbandoned(maxStates..<(maxStates + spareCount), me) { return s }
        let index = maxStates + spareCount
        guard index < capacity else {
            reportToStderr("error in callback \(spec.label): re-entered more than \(CallbackCore.spareSlots) levels deep on one thread; returning the default value")
            return -1
        }
        guard build(index, me) else { return -1 }
        spareCount += 1
        return index
    }

    /// Builds slot `index`, owned by `me` from the start. Called with `sync` held.
    private func build(_ index: Int, _ me: UInt) -> Bool {
        if let e = buildSlot(index) {
            reportToStderr("error in callback \(spec.label): cannot create a state: \(e)")
            return false
        }
        slots[index].owner.store(me, ordering: .relaxed)
        return true
    }

    /// Makes slot `i`: a fresh state running the builder, and a zeroed argument frame. Returns
    /// an error message on failure. The caller ensures nobody else touches slot `i` (creation,
    /// or `sync` held with `i` not yet published).
    func buildSlot(_ i: Int) -> String? {
        let limit = spec.memoryLimit > 0 ? MemoryLimit(limit: spec.memoryLimit) : nil
        guard let L = StateStock.shared.take(limit: limit) else {
            limit?.free()
            return "cannot create a Lua state: out of memory"
        }
        let frame = calloc(1, max(spec.frameSize, 16))!
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
            loaded = spec.builder.withUnsafeBufferPointer { b in
                b.baseAddress!.withMemoryRebound(to: CChar.self, capacity: b.count) {
                    luaL_loadbuffer(L, $0, b.count, "=lj-async builder")
                }
            }
        }
        if loaded != 0 {
            failure = Lua.string(L, -1)
        } else {
            lua_pushnumber(L, Double(UInt(bitPattern: frame)))
            for arg in spec.builderArgs {
                guard let arg else { lua_pushnil(L); continue }
                arg.withUnsafeBufferPointer { b in
                    b.baseAddress.map { lua_pushlstring(L, UnsafeRawPointer($0).assumingMemoryBound(to: CChar.self), b.count) }
                        ?? lua_pushlstring(L, "", 0)
                }
            }
            if lua_pcall(L, Int32(1 + spec.builderArgs.count), 3, 0) != 0 { failure = Lua.string(L, -1) }
        }
        // A one-page first machine-code area: 4 KiB less per called callback (light.c).
        if failure == nil {
            lua_pushcclosure(L, ljasync_light_small_mcode, 0)
            if lua_pcall(L, 0, 0, 0) != 0 { failure = Lua.string(L, -1) }
        }
        if let failure {
            StateStock.shared.retire(L, limit: limit)
            Glibc.free(frame)
            return failure
        }
        // Stack: 1 traceback handler, 2 wrapper, 3 error handler or nil (what `run` expects).
        slots[i].state = L
        slots[i].frame = frame
        slots[i].limit = limit
        return nil
    }

    /// Every slot index built so far. Called with `sync` held, or after destruction began.
    func builtSlots() -> [Int] {
        Array(0..<slotCount.load(ordering: .acquiring)) + Array(maxStates..<(maxStates + spareCount))
    }

    /// How many Lua states the callback holds now. Any thread.
    func stateCount() -> Int {
        adoptFork()
        return sync.withLock { builtSlots().filter { slots[$0].state != nil }.count }
    }
}
