// The one list of code new Lua states run first: add_init's (every state) and the pool's (workers only).
import Glibc
import Synchronization

/// One entry's bytes (Lua source, bytecode or an encoded metatable), never changed, and the
/// native message they need, if any: the message add_init's loader code decodes by address,
/// or the message whose bytes these are (a portable metatable: it owns the references to the
/// shared handles listed in them). Freed with the last reference, the registry's or a
/// snapshot's (`Environment.Snapshot`, held while a state is made from it), so the message
/// lives exactly as long as some state may still run or decode this entry.
final class InitBytes: @unchecked Sendable {
    let base: UnsafeRawPointer
    let count: Int
    /// Owned: freed (its handle references released) in deinit.
    let message: UnsafeMutablePointer<Message>?
    private let ownsBase: Bool

    /// Copies `bytes`; takes `message` (code that decodes it by address).
    init(_ bytes: UnsafeRawBufferPointer, keeping message: UnsafeMutablePointer<Message>? = nil) {
        count = bytes.count
        let copy = malloc(max(count, 1))!
        if count > 0 { memcpy(copy, bytes.baseAddress!, count) }
        base = UnsafeRawPointer(copy)
        ownsBase = true
        self.message = message
    }

    /// Takes `message`; the bytes are its own.
    init(message: UnsafeMutablePointer<Message>) {
        base = UnsafeRawPointer(message.pointee.bytes)
        count = message.pointee.count
        ownsBase = false
        self.message = message
    }

    deinit {
        if ownsBase { free(UnsafeMutableRawPointer(mutating: base)) }
        if let message { Message.free(message) }
    }

    var buffer: UnsafeRawBufferPointer { UnsafeRawBufferPointer(start: base, count: count) }

    func equals(_ other: UnsafeRawBufferPointer) -> Bool {
        other.count == count && (count == 0 || memcmp(base, other.baseAddress!, count) == 0)
    }

    /// What a withdrawn portable metatable entry keeps (nothing: no worker reads it again).
    static let none = InitBytes(UnsafeRawBufferPointer(start: nil, count: 0))
}

/// Everything registered to run in new states, in registration order, with the Lua states
/// (owner tokens) that registered it.
///
/// Two views: `stateView` is what every state made from now on runs (`Environment.makeState`;
/// `add_init`, `add_init_file`), `poolEntry(i)` the i-th entry for pool workers only
/// (`register_async_dofile`, portable metatables, restricted environments' files), which a
/// worker runs after its state is made, before its next job. `withdraw(owner:)` is the one way
/// out for both: the state behind the token closed (an nginx reload closes the master's VM and
/// makes a new one in the same process), so states made afterwards do not see its entries.
///
/// Every-state entries are keyed by name: the same code again adds an owner, other code
/// replaces it (owned by the new registrant alone); withdrawn ones leave the list. Pool entries
/// are appended on every registration and stay listed as withdrawn, for the life of the
/// registry: workers count them by position. A code entry's bytes stay with it (a worker reads
/// them after the lock is released); a portable metatable's message is freed when the entry is
/// withdrawn, since workers never read it in place: `poolEntry` hands each a copy.
///
/// Messages (`InitBytes.message`): an entry owns its message, taken at registration. It is
/// freed with the entry's `InitBytes`: when the entry is replaced or withdrawn and no snapshot
/// a state is being made from still lists it, or never for an entry still registered at exit
/// (`shared` lives as long as the process). Freeing happens after this lock is released.
///
/// Thread-safety: any thread; one pthread lock (fork() takes it, Fork.swift), a leaf: nothing
/// else is locked under it. `poolCount` is published with release ordering after the entry is
/// in place, so a worker (holding the pool's lock) reads it without this one.
final class InitRegistry: @unchecked Sendable {
    enum Scope { case everyState, poolWorkers }
    /// What a pool entry holds (the C ABI's kind numbers). Every-state entries are code.
    enum Kind: Int32 { case code = 0, portableMetatable = 1 }

    struct Entry {
        let scope: Scope
        let kind: Kind
        let name: String
        /// `name` as C text, for pool entries (workers read it without the lock); else nil.
        let cName: UnsafeMutablePointer<CChar>?
        var bytes: InitBytes
        var owners: Set<Int64>
        var withdrawn = false
    }

    static let shared = InitRegistry()

    let lock = PthreadLock()
    private var entries: [Entry] = []
    /// Positions in `entries` of the pool entries, in order (a worker's index into it).
    private var pool: [Int] = []
    private let published = Atomic<Int32>(0)
    /// Bumped whenever the every-state view changes (prepared states made earlier are stale).
    private var stateGeneration = 0
    private var lastOwner: Int64 = 0

    /// Only instances made by tests are ever freed (`shared` lives as long as the process).
    deinit {
        for e in entries { free(e.cName) }
        lock.destroy()
    }

    /// A token for one Lua state that registers init code; `withdraw(owner:)` takes its entries out.
    func newOwner() -> Int64 { lock.withLock { lastOwner += 1; return lastOwner } }

    /// Registers `bytes` under `name` in `scope` on behalf of `owner` (see the type's comment),
    /// taking `message` (every-state code that decodes it by address): when the same code is
    /// already registered, the new message is freed here.
    func add(_ scope: Scope, kind: Kind = .code, name: String, bytes: UnsafeRawBufferPointer,
             message: UnsafeMutablePointer<Message>? = nil, owner: Int64) {
        add(scope, kind: kind, name: name, InitBytes(bytes, keeping: message), owner: owner)
    }

    /// Registers a portable metatable for pool workers: `message` (taken) encodes its name and
    /// metatable and owns the references to the shared handles in it.
    func addPortableMetatable(name: String, message: UnsafeMutablePointer<Message>, owner: Int64) {
        add(.poolWorkers, kind: .portableMetatable, name: name, InitBytes(message: message), owner: owner)
    }

    private func add(_ scope: Scope, kind: Kind, name: String, _ bytes: InitBytes, owner: Int64) {
        // Released after the lock: freeing a message releases shared objects.
        let dropped: InitBytes? = lock.withLock {
            if scope == .everyState {
                var old: InitBytes? = nil
                if let i = entries.firstIndex(where: { $0.scope == .everyState && $0.name == name }) {
                    if entries[i].bytes.equals(bytes.buffer) { entries[i].owners.insert(owner); return bytes }
                    old = entries[i].bytes
                    entries[i].bytes = bytes
                    entries[i].owners = [owner]
                } else {
                    entries.append(Entry(scope: scope, kind: kind, name: name, cName: nil, bytes: bytes, owners: [owner]))
                }
                stateGeneration += 1
                return old
            } else {
                pool.append(entries.count)
                entries.append(Entry(scope: scope, kind: kind, name: name, cName: strdup(name)!, bytes: bytes, owners: [owner]))
                published.store(Int32(pool.count), ordering: .releasing)
                return nil
            }
        }
        _ = dropped
    }

    /// The state behind `owner` is gone: entries no other live state registered are withdrawn
    /// (every-state ones leave the list, pool ones stay as withdrawn, a portable metatable's
    /// message freed). Any thread.
    func withdraw(owner: Int64) {
        // Released after the lock (see `add`).
        let dropped: [InitBytes] = lock.withLock {
            var dropped: [InitBytes] = []
            var changed = false
            for i in entries.indices where entries[i].owners.contains(owner) {
                entries[i].owners.remove(owner)
                if entries[i].owners.isEmpty {
                    entries[i].withdrawn = true
                    if entries[i].scope == .everyState { changed = true }
                    if entries[i].kind == .portableMetatable {
                        dropped.append(entries[i].bytes)
                        entries[i].bytes = InitBytes.none
                    }
                }
            }
            guard changed else { return dropped }
            stateGeneration += 1
            // Drop withdrawn every-state entries; pool positions move with the compaction.
            var kept: [Entry] = []
            pool.removeAll()
            for e in entries {
                if e.withdrawn && e.scope == .everyState { dropped.append(e.bytes); continue }
                if e.scope == .poolWorkers { pool.append(kept.count) }
                kept.append(e)
            }
            entries = kept
            return dropped
        }
        _ = dropped
    }

    /// The every-state view: what a state made now runs, in order, and its generation.
    func stateView() -> (inits: [(name: String, code: InitBytes)], generation: Int) {
        lock.withLock {
            var inits: [(name: String, code: InitBytes)] = []
            for e in entries where e.scope == .everyState { inits.append((e.name, e.bytes)) }
            return (inits, stateGeneration)
        }
    }

    var generation: Int { lock.withLock { stateGeneration } }

    /// How many pool entries exist (withdrawn ones included). Lock-free: a worker reads it
    /// under the pool's lock.
    var poolCount: Int32 { published.load(ordering: .acquiring) }

    /// The pool view's entry `i` (0-based, < poolCount), or nil out of range: its kind (nil once
    /// withdrawn: workers starting from now on skip it), C name and bytes, which stay valid
    /// for the life of the registry for code; for a portable metatable, `message` is a copy of
    /// its message (the caller frees it, after decoding: the copy holds its own references to
    /// the shared handles, so the entry may be withdrawn meanwhile) and `bytes` are the copy's.
    func poolEntry(_ i: Int32) -> (kind: Kind?, name: UnsafePointer<CChar>, bytes: UnsafeRawBufferPointer,
                                   message: UnsafeMutablePointer<Message>?)? {
        lock.withLock {
            guard i >= 0, Int(i) < pool.count else { return nil }
            let e = entries[pool[Int(i)]]
            if !e.withdrawn, e.kind == .portableMetatable, let m = e.bytes.message {
                let copy = PoolMessages.copy(m)
                return (e.kind, UnsafePointer(e.cName!), UnsafeRawBufferPointer(start: copy.pointee.bytes, count: copy.pointee.count), copy)
            }
            return (e.withdrawn ? nil : e.kind, UnsafePointer(e.cName!), e.bytes.buffer, nil)
        }
    }
}
