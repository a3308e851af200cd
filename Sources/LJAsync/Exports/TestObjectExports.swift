// The C ABI of TestObject, a shared object that only the encoder's tests use.

/// A new test object holding `value`, as a pointer owning one reference. Any thread.
@_cdecl("ljasync_testobject_new")
public func ljasync_testobject_new(_ value: Int64) -> UnsafeMutableRawPointer {
    TestObject(value: value).retainedPointer()
}

/// The value of the test object at `p` (which the caller holds a reference to). Any thread.
@_cdecl("ljasync_testobject_value")
public func ljasync_testobject_value(_ p: UnsafeRawPointer) -> Int64 {
    (SharedObject.from(p) as! TestObject).value
}

/// How many test objects exist right now. Any thread.
@_cdecl("ljasync_testobject_live_count")
public func ljasync_testobject_live_count() -> Int64 {
    Int64(TestObject.live.value)
}
