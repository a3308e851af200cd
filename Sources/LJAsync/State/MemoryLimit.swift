// An allocator for Lua states with a byte budget, so exhausting memory is an ordinary Lua error.
import Glibc

/// Counts the bytes one Lua state holds and refuses allocations past `limit`.
///
/// Lifetime: owned by whoever owns the state; `free()` only after `lua_close`.
/// Thread-safety: used only by the thread currently running the state.
struct MemoryLimit {
    private struct Counter { var used: Int; var limit: Int }
    let context: UnsafeMutableRawPointer

    init(limit: Int) {
        let c = UnsafeMutablePointer<Counter>.allocate(capacity: 1)
        c.initialize(to: Counter(used: 0, limit: limit))
        context = UnsafeMutableRawPointer(c)
    }

    func free() { context.assumingMemoryBound(to: Counter.self).deallocate() }

    static let allocate: @convention(c) (UnsafeMutableRawPointer?, UnsafeMutableRawPointer?, Int, Int)
        -> UnsafeMutableRawPointer? = { ud, ptr, osize, nsize in
        let c = ud!.assumingMemoryBound(to: Counter.self)
        let old = ptr == nil ? 0 : osize
        if nsize == 0 {
            Glibc.free(ptr)
            c.pointee.used -= old
            return nil
        }
        if nsize > old && c.pointee.used - old + nsize > c.pointee.limit { return nil }
        guard let p = realloc(ptr, nsize) else { return nil }
        c.pointee.used += nsize - old
        return p
    }
}
