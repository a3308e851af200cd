// The C ABI of callbacks (Sources/CLJAsync/include/ljasync.h).
import CLJAsync
import Glibc

/// The core behind a handle. A handle stays valid until its core leaves the quarantine (see
/// CallbackCore); Lua drops it at `free`.
private func core(_ cb: OpaquePointer) -> CallbackCore {
    Unmanaged<CallbackCore>.fromOpaque(UnsafeRawPointer(cb)).takeUnretainedValue()
}

private func bytes(_ p: UnsafePointer<CChar>?, _ n: Int) -> [UInt8] {
    guard let p, n > 0 else { return [] }
    return Array(UnsafeRawBufferPointer(start: p, count: n))
}

/// Creates a callback. `parts` are the builder's arguments after the frame address (NULL = nil).
/// `kinds` and `offsets` hold the result first, then each parameter.
/// Returns NULL and fills `err` on failure. Runs on the owner's thread.
@implementation @c
public func ljasync_callback_new(
    _ label: UnsafePointer<CChar>,
    _ builder: UnsafePointer<CChar>, _ builderLen: Int,
    _ nparts: Int32, _ parts: UnsafePointer<UnsafePointer<CChar>?>, _ lens: UnsafePointer<Int>,
    _ nargs: Int32, _ kinds: UnsafePointer<UInt8>, _ offsets: UnsafePointer<UInt32>, _ frameSize: Int32,
    _ defaultReturn: UnsafeRawPointer?, _ maxStates: Int32, _ memoryLimit: Double,
    _ err: UnsafeMutablePointer<CChar>?, _ errLen: Int
) -> OpaquePointer? {
    var argKinds: [ValueKind] = []
    var argOffsets: [UInt32] = []
    for i in 0...Int(nargs) {
        guard let k = ValueKind(rawValue: kinds[i]) else {
            writeError("unknown value kind \(kinds[i])", err, errLen)
            return nil
        }
        if i > 0 { argKinds.append(k); argOffsets.append(offsets[i]) }
    }
    var d: (UInt64, UInt64) = (0, 0)
    if let defaultReturn {
        d = (defaultReturn.loadUnaligned(as: UInt64.self), defaultReturn.loadUnaligned(fromByteOffset: 8, as: UInt64.self))
    }
    let spec = CallbackSpec(
        label: String(cString: label), builder: builderLen > 0 ? SharedBuilder.bytes(builder, builderLen) : [], builderArgs: (0..<Int(nparts)).map { i in parts[i].map { bytes($0, lens[i]) } },
        argKinds: argKinds, argOffsets: argOffsets, retKind: ValueKind(rawValue: kinds[0])!, retOffset: offsets[0],
        frameSize: Int(frameSize), defaultReturn: d, maxStates: max(1, Int(maxStates)),
        memoryLimit: memoryLimit > 0 ? Int(memoryLimit) : 0)
    switch Callback.create(spec) {
    case .success(let core): return OpaquePointer(core.address)
    case .failure(let e):
        writeError(e.message, err, errLen)
        return nil
    }
}

/// The C function pointer. Valid until the callback is freed (then quarantined, see Quarantine).
@implementation @c
public func ljasync_callback_funcptr(_ cb: OpaquePointer) -> UnsafeMutableRawPointer? {
    core(cb).code
}

/// Frees the callback (waiting for calls in flight). Idempotent.
@implementation @c
public func ljasync_callback_free(_ cb: OpaquePointer) {
    core(cb).free()
}

/// The number of errors so far; copies the last error message into `buf` (empty if none).
@implementation @c
public func ljasync_callback_errors(_ cb: OpaquePointer, _ buf: UnsafeMutablePointer<CChar>?, _ len: Int) -> Int {
    let (count, last) = core(cb).errors()
    writeError(last ?? "", buf, len)
    return count
}

/// How many Lua states the callback holds now (parallel callbacks grow on demand).
@implementation @c
public func ljasync_callback_states(_ cb: OpaquePointer) -> Int32 {
    Int32(core(cb).stateCount())
}

/// Called by the x86-64 entry stub (Sources/CLJAsyncEntry) on the calling thread, for every
/// call: `core` is the callback's address (from its trampoline), `regs` the spilled argument
/// registers with the caller's stack arguments 144 bytes in, `ret` the two result words.
/// The dispatcher inlines into this function (whole-module optimization), so living here
/// costs the hot path nothing.
@implementation @c
public func ljasync_dispatch(_ core: UnsafeMutableRawPointer, _ regs: UnsafeMutableRawPointer,
                             _ ret: UnsafeMutablePointer<UInt64>) {
    CallbackCore.at(core) { $0.dispatch(regs, ret) }
}

/// How many callbacks exist and are not yet freed (collected or freed ones do not count).
@implementation @c
public func ljasync_callback_live() -> Int {
    Callback.live.load(ordering: .relaxed)
}

/// 1 when the callback's function pointer is a libffi closure, 0 when it is the x86-64 stub.
@implementation @c
public func ljasync_callback_uses_libffi(_ cb: OpaquePointer) -> Int32 {
    if case .libffi = core(cb).entry { return 1 }
    return 0
}
