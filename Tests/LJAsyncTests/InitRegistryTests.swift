// The one init registry: add_init's entries (every state) and the pool's (workers only), one
// withdraw for both when the registering Lua state closes (an nginx reload closes the master's
// VM and makes a new one in the same process).
import Testing
@testable import LJAsync

@Suite struct InitRegistryTests {
    private func add(_ r: InitRegistry, _ scope: InitRegistry.Scope, _ name: String, _ bytes: [UInt8], _ owner: Int64,
                     kind: InitRegistry.Kind = .code) {
        bytes.withUnsafeBytes { r.add(scope, kind: kind, name: name, bytes: $0, owner: owner) }
    }
    private func names(_ r: InitRegistry) -> [String] { r.stateView().inits.map(\.name) }
    private func codes(_ r: InitRegistry) -> [[UInt8]] { r.stateView().inits.map { Array($0.code.buffer) } }
    private func poolKinds(_ r: InitRegistry) -> [Int32] {
        (0..<r.poolCount).map { r.poolEntry($0)!.kind?.rawValue ?? -1 }
    }

    @Test func everyStateCodeStaysWhileAnOwnerLives() {
        let r = InitRegistry()
        let a = r.newOwner(), b = r.newOwner()
        add(r, .everyState, "=shared", [1, 2], a)
        add(r, .everyState, "=shared", [1, 2], b)  // the same code: b owns it too
        add(r, .everyState, "=only a", [3], a)
        #expect(names(r) == ["=shared", "=only a"])
        let before = r.generation
        r.withdraw(owner: a)
        #expect(names(r) == ["=shared"])
        #expect(r.generation > before)  // prepared states made with a's code are discarded
        r.withdraw(owner: b)
        #expect(names(r).isEmpty)
    }

    @Test func replacedCodeBelongsToTheNewOwner() {
        let r = InitRegistry()
        let a = r.newOwner(), b = r.newOwner()
        add(r, .everyState, "=x", [1], a)
        add(r, .everyState, "=x", [2], b)  // b replaces a's code
        r.withdraw(owner: a)
        #expect(codes(r) == [[2]])
        let before = r.generation
        r.withdraw(owner: a)  // again: nothing left of a's, nothing changes
        #expect(r.generation == before)
    }

    @Test func theTwoViewsSeeOnlyTheirScopeInOrder() {
        let r = InitRegistry()
        let a = r.newOwner()
        let before = r.generation
        add(r, .poolWorkers, "@one.lua", Array("X = 1".utf8), a)
        #expect(r.generation == before)  // the pool's entries do not make prepared states stale
        add(r, .everyState, "=init", [9], a)
        add(r, .poolWorkers, "=portable metatable 'p'", [7, 7], a, kind: .portableMetatable)
        add(r, .poolWorkers, "@one.lua", Array("X = 1".utf8), a)  // pool entries are appended each time
        #expect(names(r) == ["=init"])
        #expect(r.poolCount == 3)
        #expect(poolKinds(r) == [0, 1, 0])
        let e = r.poolEntry(1)!
        #expect(String(cString: e.name) == "=portable metatable 'p'")
        #expect(Array(e.bytes) == [7, 7])
        #expect(r.poolEntry(3) == nil && r.poolEntry(-1) == nil)
    }

    /// One withdraw for both scopes: the closing state's pool entries read as withdrawn (kind -1
    /// at the C ABI) and keep their positions and bytes; another state's entries stay.
    @Test func withdrawingAnOwnerCoversBothScopes() {
        let r = InitRegistry()
        let a = r.newOwner(), b = r.newOwner()
        add(r, .poolWorkers, "@a.lua", [1], a)
        add(r, .everyState, "=a", [2], a)
        add(r, .poolWorkers, "@b.lua", [3], b)
        add(r, .poolWorkers, "@a2.lua", [4], a)
        let bytes = r.poolEntry(0)!.bytes
        r.withdraw(owner: a)
        #expect(names(r).isEmpty)
        #expect(r.poolCount == 3)
        #expect(poolKinds(r) == [-1, 0, -1])
        #expect(String(cString: r.poolEntry(1)!.name) == "@b.lua")
        #expect(r.poolEntry(0)!.bytes.baseAddress == bytes.baseAddress)  // a worker may still read them
        #expect(Array(r.poolEntry(2)!.bytes) == [4])
        r.withdraw(owner: b)
        #expect(poolKinds(r) == [-1, -1, -1])
    }

    /// The environment's snapshot is the registry's every-state view, and its generation moves
    /// with either the paths or the init code.
    @Test func theEnvironmentSnapshotIsTheEveryStateView() {
        let r = InitRegistry()
        let env = Environment(registry: r)
        let a = r.newOwner()
        let g0 = env.generation
        add(r, .everyState, "=init", [5], a)
        add(r, .poolWorkers, "@w.lua", [6], a)
        let snap = env.snapshot()
        #expect(snap.inits.map(\.name) == ["=init"])
        #expect(snap.generation == env.generation && snap.generation > g0)
        env.setPaths(path: "p", cpath: "c")
        #expect(env.generation > snap.generation)
        r.withdraw(owner: a)
        #expect(env.snapshot().inits.isEmpty)
        #expect(Array(snap.inits[0].code.buffer) == [5])  // an older snapshot keeps its bytes
    }

    /// A message holding one reference to a new TestObject, and a weak probe of that object
    /// (nil once the message, its one owner, is freed).
    private func messageHoldingObject() -> (UnsafeMutablePointer<Message>, () -> Bool) {
        let object = TestObject(value: 7)
        weak var probe = object
        var bytes: [UInt8] = [Message.hasHandles, 1, 0, 0, 0]
        withUnsafeBytes(of: UInt64(UInt(bitPattern: object.retainedPointer())).littleEndian) { bytes += $0 }
        bytes += [42]
        let m = bytes.withUnsafeBytes { Message.create($0.baseAddress!, $0.count) }
        return (m, { probe != nil })
    }

    /// add_init's message (an init function with upvalues): the entry owns it; a snapshot a
    /// state is being made from keeps it past the withdraw, the last one frees it.
    @Test func anEveryStateMessageLivesWithTheEntryAndItsSnapshots() {
        let r = InitRegistry()
        let env = Environment(registry: r)
        let a = r.newOwner()
        let (m, alive) = messageHoldingObject()
        [UInt8](repeating: 1, count: 3).withUnsafeBytes { r.add(.everyState, name: "=up", bytes: $0, message: m, owner: a) }
        #expect(alive())
        var snap: Environment.Snapshot? = env.snapshot()
        r.withdraw(owner: a)
        #expect(env.snapshot().inits.isEmpty)
        #expect(alive())  // a state being made from `snap` may still decode it
        #expect(snap!.inits[0].code.message == m)
        snap = nil
        #expect(!alive())
    }

    /// Replacing an entry by name frees the old message (no snapshot holds it); the same code
    /// again frees the message that came with it, the registered one stays.
    @Test func aReplacedEveryStateMessageIsFreed() {
        let r = InitRegistry()
        let a = r.newOwner(), b = r.newOwner()
        let (m1, alive1) = messageHoldingObject()
        let (m2, alive2) = messageHoldingObject()
        [UInt8]([1]).withUnsafeBytes { r.add(.everyState, name: "=x", bytes: $0, message: m1, owner: a) }
        [UInt8]([1]).withUnsafeBytes { r.add(.everyState, name: "=x", bytes: $0, message: m2, owner: b) }
        #expect(alive1() && !alive2())
        let (m3, alive3) = messageHoldingObject()
        [UInt8]([2]).withUnsafeBytes { r.add(.everyState, name: "=x", bytes: $0, message: m3, owner: b) }
        #expect(!alive1() && alive3())
        r.withdraw(owner: b)
        #expect(!alive3())
    }

    /// A portable metatable's message: workers get copies (each with its own references), the
    /// entry's is freed when the registering state closes, a copy taken before stays valid.
    @Test func aPortableMetatableMessageIsFreedOnWithdraw() {
        let r = InitRegistry()
        let a = r.newOwner()
        let (m, alive) = messageHoldingObject()
        r.addPortableMetatable(name: "p", message: m, owner: a)
        let e = r.poolEntry(0)!
        #expect(e.kind == .portableMetatable)
        let copy = e.message!
        #expect(copy != m && Array(e.bytes) == Array(UnsafeRawBufferPointer(start: m.pointee.bytes, count: m.pointee.count)))
        r.withdraw(owner: a)
        #expect(r.poolEntry(0)!.kind == nil && r.poolEntry(0)!.message == nil)
        #expect(alive())  // the worker's copy holds the object
        Message.free(copy)
        #expect(!alive())
        #expect(r.poolCount == 1)  // still listed: workers count entries by position
    }
}
