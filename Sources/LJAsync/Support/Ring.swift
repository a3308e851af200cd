// The one growable ring buffer of lj-async: a channel's cells, the pool's queue, idle stack and inboxes.

/// FIFO (push/popFirst) and LIFO (push/popLast) over trivially copyable elements, in raw
/// memory; the capacity is a power of two and doubles when full.
///
/// Not thread-safe: the owner guards it with its own lock (and does its own waiting and
/// wake-ups, which differ: see Channel, Pool and Inbox). Lives inside raw-memory structs, so
/// the hot paths see no class property access and no reference counting.
/// Lifetime: `free()` exactly once; the elements need no deinitialization (what they own,
/// such as a channel cell's bytes, the owner releases before).
struct Ring<Element> {
    private(set) var storage: UnsafeMutablePointer<Element>
    private(set) var capacity: Int      // a power of two
    private(set) var head = 0
    private(set) var count = 0

    init(capacity: Int = 64) {
        self.capacity = Ring.size(for: capacity)
        storage = .allocate(capacity: self.capacity)
    }

    /// The power of two (at least 8) that holds `n` elements.
    @inline(__always) static func size(for n: Int) -> Int {
        var c = 8
        while c < n { c <<= 1 }
        return c
    }

    var isEmpty: Bool { count == 0 }

    /// The element `i` places from the front (0 = oldest). Requires `i < count`.
    subscript(i: Int) -> Element {
        get { storage[(head + i) & (capacity - 1)] }
        set { storage[(head + i) & (capacity - 1)] = newValue }
    }

    @inline(__always) mutating func push(_ e: Element) {
        if count == capacity { grow() }
        (storage + ((head + count) & (capacity - 1))).initialize(to: e)
        count += 1
    }

    /// Puts an element back at the front (it becomes the oldest).
    mutating func pushFront(_ e: Element) {
        if count == capacity { grow() }
        head = (head - 1) & (capacity - 1)
        (storage + head).initialize(to: e)
        count += 1
    }

    mutating func popFirst() -> Element? {
        guard count > 0 else { return nil }
        let e = (storage + head).move()
        head = (head + 1) & (capacity - 1)
        count -= 1
        return e
    }

    mutating func popLast() -> Element? {
        guard count > 0 else { return nil }
        count -= 1
        return (storage + ((head + count) & (capacity - 1))).move()
    }

    var first: Element? { count > 0 ? storage[head] : nil }

    /// Removes the element `i` places from the front, keeping the others in order. O(count).
    mutating func remove(at i: Int) {
        precondition(i >= 0 && i < count, "Ring.remove(at:) out of range")
        for j in i..<(count - 1) { self[j] = self[j + 1] }
        count -= 1
    }

    /// Removes the elements for which `drop` is true, keeping the others in order; returns
    /// how many were removed.
    mutating func removeAll(where drop: (Element) -> Bool) -> Int {
        var kept = 0
        for j in 0..<count {
            let e = self[j]
            if !drop(e) { self[kept] = e; kept += 1 }
        }
        let removed = count - kept
        count = kept
        return removed
    }

    /// Appends `n` elements from `from`, in order, growing once if needed.
    mutating func push(contentsOf from: UnsafePointer<Element>, count n: Int) {
        while count + n > capacity { grow() }
        let mask = capacity - 1
        var at = head + count
        for i in 0..<n {
            (storage + (at & mask)).initialize(to: from[i])
            at += 1
        }
        count += n
    }

    /// Drops the `n` oldest elements (after the owner copied them out).
    mutating func removeFirst(_ n: Int) {
        precondition(n >= 0 && n <= count, "Ring.removeFirst out of range")
        head = (head + n) & (capacity - 1)
        count -= n
    }

    /// With the ring empty: gives back a grown buffer, starting again at `capacity` elements.
    mutating func shrink(to capacity: Int) {
        precondition(count == 0, "Ring.shrink(to:) on a ring that is not empty")
        let c = Ring.size(for: capacity)
        if c >= self.capacity { return }
        storage.deallocate()
        storage = .allocate(capacity: c)
        self.capacity = c
        head = 0
    }

    private mutating func grow() {
        let bigger = UnsafeMutablePointer<Element>.allocate(capacity: capacity * 2)
        for i in 0..<count { (bigger + i).initialize(to: (storage + ((head + i) & (capacity - 1))).move()) }
        storage.deallocate()
        storage = bigger
        capacity *= 2
        head = 0
    }

    mutating func free() {
        storage.deallocate()
        count = 0
    }
}
