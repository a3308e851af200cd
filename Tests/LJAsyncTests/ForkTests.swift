// fork(): the handlers find the locks they must hold across it.
import Testing
@testable import LJAsync

@Suite struct ForkTests {
    /// The environment, the module cache and the memo each keep one lock that fork() takes
    /// (found by reflection): if one of them changes how it locks, this says so.
    @Test func theCachesLocksAreFound() {
        #expect(Fork.cacheLockCount == 3)
    }
}
