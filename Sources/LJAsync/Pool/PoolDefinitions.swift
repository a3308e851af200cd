// Named job functions (LÖVE's define) and the files loaded into every worker (Luanti's dofile).
import Glibc
import Synchronization

/// Definitions: id -> (name, encoded function). Ids are never reused, so redefining a name
/// makes a new id and a worker's cache can never run a stale function under a current id.
///
/// Thread-safety: all methods may be called from any thread. Lifetime: a definition lives
/// until `undefine`; workers get copies, so an undefine never pulls a message from under them.
final class PoolDefinitions: @unchecked Sendable {
    static let shared = PoolDefinitions()

    private let sync = PthreadLock()
    private var table: [Int32: (name: String, message: UnsafeMutablePointer<Message>)] = [:]
    private var nextId: Int32 = 0

    /// Only instances made by tests are ever freed (`shared` lives as long as the process).
    deinit {
        for entry in table.values { Message.free(entry.message) }
        sync.destroy()
    }

    /// Stores a definition; takes the message. Returns the new id (> 0).
    func define(name: String, message: UnsafeMutablePointer<Message>) -> Int32 {
        sync.withLock {
            nextId += 1
            table[nextId] = (name, message)
            return nextId
        }
    }

    func undefine(_ id: Int32) {
        let old = sync.withLock { table.removeValue(forKey: id) }
        if let old { Message.free(old.message) }
    }

    // fork(): held across it by the forking thread; re-created in the child (Fork.swift).
    func forkLock() { sync.lock() }
    func forkUnlock() { sync.unlock() }
    func forkReinit() { sync.reinitAfterFork() }

    /// A copy of the definition (the caller frees it) and its name, or nil if undefined.
    func copy(_ id: Int32) -> (name: String, message: UnsafeMutablePointer<Message>)? {
        sync.withLock {
            guard let d = table[id] else { return nil }
            return (d.name, PoolMessages.copy(d.message))
        }
    }
}

/// Code every worker loads before its first job, in registration order: Lua source to run
/// (`kind` 0) or an encoded (name, metatable) pair to register as portable (`kind` 1).
///
/// Entries are append-only and never freed (process lifetime): the lock guards only the
/// table, whose address changes when it grows, so `entry` copies one out under it and the
/// caller uses its pointers (name, code) afterwards without a lock. `count` is published
/// with release ordering after the entry is in place, so a worker may ask for it lock-free.
enum PoolInits {
    struct Entry {
        let kind: Int32
        let name: UnsafeMutablePointer<CChar>
        let code: UnsafeMutableRawPointer
        let length: Int
    }

    nonisolated(unsafe) private static let sync = PthreadLock()
    nonisolated(unsafe) private static var entries = UnsafeMutablePointer<Entry>.allocate(capacity: 1024)
    nonisolated(unsafe) private static var capacity = 1024
    private static let published = Atomic<Int32>(0)

    static var count: Int32 { published.load(ordering: .acquiring) }

    // fork(): held across it by the forking thread; re-created in the child (Fork.swift).
    static func forkLock() { sync.lock() }
    static func forkUnlock() { sync.unlock() }
    static func forkReinit() { sync.reinitAfterFork() }

    /// Appends an entry; returns the new count. Any thread.
    static func add(kind: Int32, name: UnsafePointer<CChar>, code: UnsafeRawPointer, length: Int) -> Int32 {
        sync.withLock {
            let n = Int(published.load(ordering: .relaxed))
            if n == capacity {
                // Readers copy entries out under this lock, so nobody holds the old table.
                let bigger = UnsafeMutablePointer<Entry>.allocate(capacity: capacity * 2)
                bigger.moveInitialize(from: entries, count: n)
                entries.deallocate()
                entries = bigger
                capacity *= 2
            }
            let copy = malloc(max(length, 1))!
            memcpy(copy, code, length)
            (entries + n).initialize(to: Entry(kind: kind, name: strdup(name)!, code: copy, length: length))
            published.store(Int32(n + 1), ordering: .releasing)
            return Int32(n + 1)
        }
    }

    nonisolated(unsafe) private static var retired = Set<Int32>()

    /// A copy of entry `i` (0-based), whose pointers stay valid forever. Requires `i < count`.
    /// A retired entry reads as kind -1: workers that start from now on skip it.
    static func entry(_ i: Int32) -> Entry {
        sync.withLock {
            let e = entries[Int(i)]
            return retired.contains(i) ? Entry(kind: -1, name: e.name, code: e.code, length: e.length) : e
        }
    }

    /// Retires entry `i`: the Lua state that registered it is gone (an nginx reload closes the
    /// master's Lua VM). Workers that ran it keep what it did; later ones skip it.
    static func retire(_ i: Int32) {
        sync.withLock { if i >= 0 && i < published.load(ordering: .relaxed) { retired.insert(i) } }
    }
}
