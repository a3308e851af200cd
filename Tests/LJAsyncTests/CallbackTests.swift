// The callback machinery without the Lua binding: entry points, slots, threads, errors, freeing.
import Glibc
import Testing
@testable import LJAsync

/// A builder like lua/lj-async/callback.lua's, for a fixed frame declared by the test.
private func builder(frame: String) -> [UInt8] {
    Array("""
    local addr, fn = ...
    local ffi = require "ffi"
    local fr = ffi.cast("\(frame) *", addr)
    local f = assert(loadstring(fn))
    return function(e) return debug.traceback(tostring(e), 2) end, function() fr.r = f(fr) end, nil
    """.utf8)
}

/// A callback whose Lua body gets the frame pointer `fr` as `...`.
private func makeCallback(frame: String, body: String, kinds: [ValueKind], offsets: [UInt32], frameSize: Int,
                          maxStates: Int = 1, defaultReturn: UInt64 = 0) throws -> CallbackCore {
    let spec = CallbackSpec(
        label: "test", builder: builder(frame: frame), builderArgs: [Array(body.utf8)],
        argKinds: Array(kinds.dropFirst()), argOffsets: Array(offsets.dropFirst()), retKind: kinds[0],
        retOffset: offsets[0], frameSize: frameSize, defaultReturn: (defaultReturn, 0), maxStates: maxStates,
        memoryLimit: 0)
    switch Callback.create(spec) {
    case .success(let core): return core
    case .failure(let e): throw e
    }
}

extension CallbackError: CustomStringConvertible { public var description: String { message } }

private typealias IntFn = @convention(c) (Int32) -> Int32

private func intCallback(_ body: String, maxStates: Int = 1, defaultReturn: UInt64 = 0) throws -> CallbackCore {
    try makeCallback(frame: "struct { int32_t r; int32_t a1; }", body: body, kinds: [.int32, .int32],
                     offsets: [0, 4], frameSize: 8, maxStates: maxStates, defaultReturn: defaultReturn)
}

private func function(_ core: CallbackCore) -> IntFn {
    unsafeBitCast(core.code, to: IntFn.self)
}

@Suite(.serialized) struct CallbackTests {
    @Test func callsThroughTheEntryStub() throws {
        let cb = try intCallback("local fr = ... return fr.a1 * 2 + 1")
        if case .stub = cb.entry {} else { Issue.record("x86-64 builds enter through the stub") }
        #expect(function(cb)(20) == 41)
        #expect(function(cb)(-5) == -9)
        cb.free()
    }

    @Test func callsThroughLibffi() throws {
        Callback.forceLibffi.store(true, ordering: .relaxed)
        defer { Callback.forceLibffi.store(false, ordering: .relaxed) }
        let cb = try intCallback("local fr = ... return fr.a1 - 1")
        if case .libffi = cb.entry {} else { Issue.record("forceLibffi makes a libffi closure") }
        #expect(function(cb)(43) == 42)
        cb.free()
    }

    @Test func placesArgumentsByTheSystemVRules() throws {
        // 7 integers and 9 doubles: the 7th integer and the 9th double arrive on the stack.
        typealias F = @convention(c) (Int64, Double, Int64, Double, Int64, Double, Int64, Double, Int64, Double,
                                      Int64, Double, Int64, Double, Double, Double) -> Double
        var fields = ["double r;"]
        var kinds: [ValueKind] = [.double]
        for i in 1...16 {
            let isInt = i <= 14 ? i % 2 == 1 : false
            fields.append((isInt ? "int64_t" : "double") + " a\(i);")
            kinds.append(isInt ? .int64 : .double)
        }
        let offsets = (0...16).map { UInt32($0 * 8) }
        var sum = "local fr = ... return 0"
        for i in 1...16 { sum += " + tonumber(fr.a\(i)) * \(i)" }
        let cb = try makeCallback(frame: "struct { \(fields.joined(separator: " ")) }", body: sum,
                                  kinds: kinds, offsets: offsets, frameSize: 17 * 8)
        let f = unsafeBitCast(cb.code, to: F.self)
        let r = f(1, 2.5, 3, 4.5, 5, 6.5, 7, 8.5, 9, 10.5, 11, 12.5, 13, 14.5, 15.5, 16.5)
        let args: [Double] = [1, 2.5, 3, 4.5, 5, 6.5, 7, 8.5, 9, 10.5, 11, 12.5, 13, 14.5, 15.5, 16.5]
        #expect(r == args.enumerated().reduce(0) { $0 + $1.element * Double($1.offset + 1) })
        cb.free()
    }

    @Test func serializesCallsFromManyThreads() throws {
        // A global in the callback's only state counts calls: a race would lose some.
        let cb = try intCallback("n = (n or 0) + 1 local fr = ... return fr.a1 < 0 and n or fr.a1")
        let f = function(cb)
        onThreads(8) { t in
            for i in 0..<5000 { precondition(f(Int32(t * 5000 + i)) == Int32(t * 5000 + i)) }
        }
        #expect(f(-1) == 40001)
        #expect(cb.stateCount() == 1)
        cb.free()
    }

    @Test func parallelCallbacksRunInTwoStatesAtOnce() throws {
        // Each call marks its arrival, then waits (at most 10 s, so a serial build fails rather
        // than hangs) until the other call has arrived: both return 1 only if two states ran
        // at the same moment.
        let flags = UnsafeMutablePointer<Int32>.allocate(capacity: 2)
        flags.initialize(repeating: 0, count: 2)
        defer { flags.deallocate() }
        let cb = try intCallback("""
            local fr = ...
            local ffi = require "ffi"
            pcall(ffi.cdef, "typedef struct { long s, ns; } ljt_ts; int clock_gettime(int, ljt_ts *);")
            local flags = ffi.cast("volatile int32_t *", \(UInt(bitPattern: flags)))
            local ts = ffi.new("ljt_ts")
            local function now() ffi.C.clock_gettime(1, ts) return tonumber(ts.s) + tonumber(ts.ns) * 1e-9 end
            local me = fr.a1
            flags[me] = 1
            local deadline = now() + 10
            while flags[1 - me] == 0 do
              if now() > deadline then return 0 end
            end
            return 1
            """, maxStates: 2)
        let f = function(cb)
        let results = UnsafeMutablePointer<Int32>.allocate(capacity: 2)
        defer { results.deallocate() }
        nonisolated(unsafe) let out = results
        onThreads(2) { t in out[t] = f(Int32(t)) }
        #expect(results[0] == 1 && results[1] == 1)
        #expect(cb.stateCount() == 2)
        cb.free()
    }

    @Test func parallelCallbacksStayCorrectUnderLoad() throws {
        let cb = try intCallback("local fr = ... local s = 0 for i = 1, 200 do s = s + i end return fr.a1 + s - 20100",
                                 maxStates: 4)
        let f = function(cb)
        onThreads(4) { t in
            for i in 0..<20000 { precondition(f(Int32(i)) == Int32(i)) }
        }
        #expect(cb.stateCount() <= 4)
        cb.free()
    }

    @Test func errorsReturnTheDefaultAndAreCounted() throws {
        let cb = try intCallback("error('bad')", defaultReturn: UInt64(bitPattern: -7))
        #expect(function(cb)(1) == -7)
        let (count, last) = cb.errors()
        #expect(count == 1)
        #expect(last?.contains("bad") == true)
        #expect(last?.contains("stack traceback") == true)
        cb.free()
    }

    @Test func lateCallsAfterFreeReturnTheDefault() throws {
        let cb = try intCallback("local fr = ... return fr.a1", defaultReturn: 99)
        let f = function(cb)
        #expect(f(5) == 5)
        cb.free()
        cb.free()  // idempotent
        #expect(f(5) == 99)
    }

    @Test func liveCountReturnsToStart() throws {
        let before = Callback.live.load(ordering: .relaxed)
        var cbs: [CallbackCore] = []
        for _ in 0..<20 { cbs.append(try intCallback("return 1")) }
        #expect(Callback.live.load(ordering: .relaxed) == before + 20)
        for cb in cbs { cb.free() }
        #expect(Callback.live.load(ordering: .relaxed) == before)
    }

    @Test func builderErrorsAreReported() throws {
        #expect(throws: CallbackError.self) { try intCallback("this is not lua") }
    }
}
