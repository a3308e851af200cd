// Registrations go with the Lua state that made them (an nginx reload closes the master's VM and
// makes a new one in the same process): init code by owner token, pool init entries retired.
import Testing
@testable import LJAsync

@Suite struct RegistrationLifetimeTests {
    private func names(_ env: Environment) -> [String] { env.snapshot().inits.map(\.name) }

    @Test func initCodeStaysWhileAnOwnerLives() {
        let env = Environment()
        let a = env.newOwner(), b = env.newOwner()
        env.addInit(name: "=shared", code: [1, 2], owner: a)
        env.addInit(name: "=shared", code: [1, 2], owner: b)  // the same code: b owns it too
        env.addInit(name: "=only a", code: [3], owner: a)
        let before = env.generation
        env.dropOwner(a)
        #expect(names(env) == ["=shared"])
        #expect(env.generation > before)  // prepared states made with a's code are discarded
        env.dropOwner(b)
        #expect(names(env).isEmpty)
    }

    @Test func replacedCodeBelongsToTheNewOwner() {
        let env = Environment()
        let a = env.newOwner(), b = env.newOwner()
        env.addInit(name: "=x", code: [1], owner: a)
        env.addInit(name: "=x", code: [2], owner: b)  // b replaces a's code
        env.dropOwner(a)
        #expect(env.snapshot().inits.map(\.code) == [[2]])
        let before = env.generation
        env.dropOwner(a)  // again: nothing left of a's, nothing changes
        #expect(env.generation == before)
    }

    @Test func aRetiredPoolInitEntryReadsAsKindMinusOne() {
        let code: [UInt8] = Array("X = 1".utf8)
        let n = code.withUnsafeBytes { PoolInits.add(kind: 0, name: "@retire-test.lua", code: $0.baseAddress!, length: code.count) }
        #expect(PoolInits.entry(n - 1).kind == 0)
        PoolInits.retire(n - 1)
        #expect(PoolInits.entry(n - 1).kind == -1)
        PoolInits.retire(n + 100)  // out of range: ignored
        #expect(PoolInits.count == n)
    }
}
