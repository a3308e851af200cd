// fork(): the handlers find the locks they must hold across it.
import Testing
@testable import LJAsync

@Suite struct ForkTests {
    /// The environment, the init registry, the module cache, the memo and the LuaJIT binding each keep one lock that fork() takes
    /// (listed in Fork.cacheLocks): if one of them changes how it locks, this says so.
    @Test func theCachesLocksAreFound() {
        #expect(Fork.cacheLockCount == 5)
    }
}
