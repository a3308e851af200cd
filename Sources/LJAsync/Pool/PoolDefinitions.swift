// Named job functions (LÖVE's define); the files loaded into every worker are in Support/InitRegistry.swift.
import Glibc

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
