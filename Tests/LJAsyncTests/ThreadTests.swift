// The native thread object's lifecycle: start, outcome, traceback, timeouts, detaching, cancel.
import CLJAsync
import Glibc
import Synchronization
import Testing
@testable import LJAsync

@Suite(.serialized) struct ThreadTests {
    /// Starts `source` (its `...` is the ud address as a void* cdata); the test owns the handle.
    func start(_ source: String, ud: UnsafeMutableRawPointer? = nil) throws -> LuaThread {
        var job = ThreadJob(code: Array(source.utf8), chunkName: "=test")
        job.ud = UInt(bitPattern: ud)
        return try LuaThread.start(job, name: "swift-test").get()
    }

    /// Drops the handle's reference as ljasync_thread_free does (the caller keeps its own).
    func release(_ t: LuaThread) {
        let u = Unmanaged.passRetained(t)
        t.releaseHandle()
        u.release()
    }

    /// Starts `source` through the C ABI, as Lua does: the only reference is the handle's.
    func startHandle(_ source: String, ud: UnsafeMutableRawPointer? = nil) -> OpaquePointer? {
        var err = [CChar](repeating: 0, count: 256)
        return ljasync_thread_new(source, source.utf8.count, "=test", nil, 0, ud, 1, nil, "swift-test", 0, &err, 256)
    }

    /// The live count once threads of earlier tests finished (a thread lets go of its object
    /// a moment after join returns).
    func settledLiveCount() -> Int {
        _ = eventually { liveThreads.load(ordering: .relaxed) == 0 }
        return liveThreads.load(ordering: .relaxed)
    }

    func eventually(_ seconds: Double = 10, _ cond: () -> Bool) -> Bool {
        let end = Clock.nanoseconds() + UInt64(seconds * 1e9)
        while !cond() {
            if Clock.nanoseconds() > end { return false }
            usleep(1000)
        }
        return true
    }

    // Interpreted loops (jit.off) re-read memory the test writes; compiled ones may not.
    static let waitForFlag = """
        jit.off()
        local p = require('ffi').cast('volatile int *', ...)
        p[1] = 1
        while p[0] == 0 do end
        """

    @Test func runsTheFunctionWithItsPointer() throws {
        let live = settledLiveCount()
        let mem = UnsafeMutablePointer<Int32>.allocate(capacity: 1)
        defer { mem.deallocate() }
        mem.pointee = 0
        let h = try #require(startHandle("require('ffi').cast('int *', ...)[0] = 42", ud: mem))
        #expect(ljasync_thread_join(h, 10) == 1)
        #expect(ljasync_thread_status(h) == LuaThread.Outcome.done.rawValue)
        #expect(mem.pointee == 42)
        #expect(ljasync_thread_error(h, nil, 0) == -1)
        ljasync_thread_free(h)
        #expect(eventually { liveThreads.load(ordering: .relaxed) == live })
    }

    @Test func errorsKeepTheirTraceback() throws {
        let t = try start("local function inner() error('boom') end inner()")
        #expect(t.join(timeout: 10))
        #expect(t.status == .failed)
        let e = try #require(t.readError())
        #expect(e.hasPrefix("test:1: boom\nstack traceback:"))
        #expect(e.contains("in function 'inner'"))
        release(t)
    }

    @Test func joinTimesOutThenSucceeds() throws {
        let flag = UnsafeMutablePointer<Int32>.allocate(capacity: 2)
        defer { flag.deallocate() }
        flag.initialize(repeating: 0, count: 2)
        let t = try start(ThreadTests.waitForFlag, ud: flag)
        #expect(!t.join(timeout: 0))
        let t0 = Clock.nanoseconds()
        #expect(!t.join(timeout: 0.1))
        let waited = Double(Clock.nanoseconds() - t0) / 1e9
        #expect(waited >= 0.099 && waited < 3)
        #expect(t.status == .running)
        UnsafeMutableRawPointer(flag).withMemoryRebound(to: Atomic<Int32>.self, capacity: 1) {
            $0.pointee.store(1, ordering: .releasing)
        }
        #expect(t.join(timeout: 10))
        #expect(t.status == .done)
        release(t)
    }

    @Test func aReleasedRunningThreadFreesItselfWhenItEnds() throws {
        let live = settledLiveCount()
        let flag = UnsafeMutablePointer<Int32>.allocate(capacity: 2)
        defer { flag.deallocate() }
        flag.initialize(repeating: 0, count: 2)
        let h = try #require(startHandle(ThreadTests.waitForFlag, ud: flag))
        #expect(eventually { UnsafeMutableRawPointer(flag + 1).load(as: Int32.self) == 1 })
        ljasync_thread_free(h)
        #expect(liveThreads.load(ordering: .relaxed) == live + 1)  // detached, still running
        UnsafeMutableRawPointer(flag).withMemoryRebound(to: Atomic<Int32>.self, capacity: 1) {
            $0.pointee.store(1, ordering: .releasing)
        }
        #expect(eventually { liveThreads.load(ordering: .relaxed) == live })
    }

    @Test func cancelSetsTheFlagAndCutsSleepShort() throws {
        let flag = UnsafeMutablePointer<Int32>.allocate(capacity: 2)
        defer { flag.deallocate() }
        flag.initialize(repeating: 0, count: 2)
        let t = try start(ThreadTests.waitForFlag, ud: flag)
        #expect(t.sleep(seconds: 0.01))                  // not cancelled: sleeps it out
        #expect(t.cancelFlag.pointee.load(ordering: .relaxed) == 0)
        t.cancel()
        #expect(t.cancelFlag.pointee.load(ordering: .relaxed) == 1)
        let t0 = Clock.nanoseconds()
        #expect(!t.sleep(seconds: 100))                  // cancelled: returns at once
        #expect(Clock.nanoseconds() - t0 < 5_000_000_000)
        UnsafeMutableRawPointer(flag).withMemoryRebound(to: Atomic<Int32>.self, capacity: 1) {
            $0.pointee.store(1, ordering: .releasing)
        }
        #expect(t.join(timeout: 10))
        release(t)
    }
}
