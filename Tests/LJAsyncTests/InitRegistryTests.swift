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
}
