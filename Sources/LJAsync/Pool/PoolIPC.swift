// Luanti's IPC store: encoded values under string keys, shared by every state of the process.
import Glibc

enum PoolMessages {
    /// A new message with the same bytes, owning its own reference to each handle listed.
    static func copy(_ m: UnsafeMutablePointer<Message>) -> UnsafeMutablePointer<Message> {
        let c = Message.create(m.pointee.bytes, m.pointee.count)
        for h in c.pointee.handles { _ = Unmanaged<SharedObject>.fromOpaque(h).retain() }
        return c
    }

    static func sameBytes(_ a: UnsafeMutablePointer<Message>, _ b: UnsafeMutablePointer<Message>) -> Bool {
        a.pointee.count == b.pointee.count && memcmp(a.pointee.bytes, b.pointee.bytes, a.pointee.count) == 0
    }
}

/// key -> encoded value. Readers get copies, so a value replaced meanwhile is never read
/// after being freed. Equality for `cas` is equality of the encoded bytes.
///
/// Thread-safety: all methods may be called from any thread; `poll` blocks on the store's
/// condition variable (no busy waiting). Lifetime: process-wide, never freed.
final class PoolIPC: @unchecked Sendable {
    static let shared = PoolIPC()

    private let sync = PthreadLock()
    private var values: [[UInt8]: UnsafeMutablePointer<Message>] = [:]
    private var pollers = 0

    /// Only instances made by tests are ever freed (`shared` lives as long as the process).
    deinit {
        for m in values.values { Message.free(m) }
        sync.destroy()
    }

    // fork(): held across it by the forking thread; re-created in the child (Fork.swift),
    // where the parent's pollers do not exist.
    func forkLock() { sync.lock() }
    func forkUnlock() { sync.unlock() }
    func forkReinit() {
        sync.reinitAfterFork()
        pollers = 0
    }

    /// Stores `value` (taken) under `key`; nil deletes.
    func set(_ key: [UInt8], _ value: UnsafeMutablePointer<Message>?) {
        let old: UnsafeMutablePointer<Message>? = sync.withLock {
            let o = values[key]
            values[key] = value
            if value != nil && pollers > 0 { sync.broadcast() }
            return o
        }
        if let old { Message.free(old) }
    }

    /// A copy of the value under `key` (the caller frees it), or nil.
    func get(_ key: [UInt8]) -> UnsafeMutablePointer<Message>? {
        sync.withLock { values[key].map(PoolMessages.copy) }
    }

    /// Replaces the value under `key` by `new` (taken on success; nil deletes) if it currently
    /// equals `old` (borrowed; nil = absent). True on success.
    func cas(_ key: [UInt8], old: UnsafeMutablePointer<Message>?, new: UnsafeMutablePointer<Message>?) -> Bool {
        var replaced: UnsafeMutablePointer<Message>?
        let ok: Bool = sync.withLock {
            let cur = values[key]
            switch (cur, old) {
            case (nil, nil): break
            case (let c?, let o?) where PoolMessages.sameBytes(c, o): break
            default: return false
            }
            replaced = cur
            values[key] = new
            if new != nil && pollers > 0 { sync.broadcast() }
            return true
        }
        if let replaced { Message.free(replaced) }
        return ok
    }

    /// Waits until `key` holds a value; `timeout` in seconds (negative = forever). True when
    /// it does, false on timeout.
    func poll(_ key: [UInt8], timeout: Double) -> Bool {
        let deadline = Clock.deadline(after: timeout)
        return sync.withLock {
            pollers += 1
            defer { pollers -= 1 }
            while values[key] == nil {
                if !sync.wait(until: deadline) { return values[key] != nil }
            }
            return true
        }
    }
}
