// A growable ring buffer of plain values in raw memory, for the pool's queues.

/// FIFO (push/popFirst) and LIFO (push/popLast) over trivially copyable elements.
///
/// Not thread-safe: the owner guards it with its own lock. Lives inside raw-memory structs,
/// so the hot paths see no class property access and no reference counting.
/// Lifetime: `free()` exactly once; the elements need no deinitialization.
struct Ring<Element> {
    private(set) var storage: UnsafeMutablePointer<Element>
    private(set) var capacity: Int      // a power of two
    private(set) var head = 0
    private(set) var count = 0

    init(capacity: Int = 64) {
        var c = 8
        while c < capacity { c <<= 1 }
        self.capacity = c
        storage = .allocate(capacity: c)
    }

    var isEmpty: Bool { count == 0 }

    /// The element `i` places from the front (0 = oldest). Requires `i < count`.
    subscript(i: Int) -> Element {
        get { storage[(head + i) & (capacity - 1)] }
        set { storage[(head + i) & (capacity - 1)] = newValue }
    }

    mutating func push(_ e: Element) {
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
