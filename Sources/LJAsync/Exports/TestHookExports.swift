// The test hooks: not product symbols, handed out as one table of function pointers only to a
// process that asks for them with LJASYNC_TESTING=1 (spec/support/testobject.lua sets it).
import CLJAsync
import Glibc

/// A new TestObject (the encoder's tests' shared object) holding `value`, owning one reference.
private func testObjectNew(_ value: Int64) -> UnsafeMutableRawPointer? {
    TestObject(value: value).retainedPointer()
}

/// The value of the TestObject at `p` (the caller holds a reference).
private func testObjectValue(_ p: UnsafeRawPointer?) -> Int64 {
    (SharedObject.from(p!) as! TestObject).value
}

/// How many TestObjects exist right now.
private func testObjectLiveCount() -> Int64 { Int64(TestObject.live.value) }

/// Sets how many prepared states the background preparer keeps ready.
private func envSetStock(_ n: Int32) { StateStock.shared.target = max(0, Int(n)) }

/// Allocated once, never freed (the core is never unloaded).
nonisolated(unsafe) private let testHooks: UnsafeMutablePointer<ljasync_test_hooks> = {
    let p = UnsafeMutablePointer<ljasync_test_hooks>.allocate(capacity: 1)
    p.initialize(to: ljasync_test_hooks(
        testobject_new: { testObjectNew($0) }, testobject_value: { testObjectValue($0) },
        testobject_live_count: { testObjectLiveCount() }, env_set_stock: { envSetStock($0) },
        stack_resident_pages: { ljasync_stack_resident_pages() }))
    return p
}()

/// The hooks (struct ljasync_test_hooks), or NULL unless LJASYNC_TESTING is "1". Any thread.
@implementation @c
public func ljasync_test_hooks() -> UnsafeRawPointer? {
    guard let v = getenv("LJASYNC_TESTING"), strcmp(v, "1") == 0 else { return nil }
    return UnsafeRawPointer(testHooks)
}
