// The C ABI of the core's own LuaJIT binding (declared in Sources/CLJAsync/include/ljasync.h).
import CLJAsync
import CLJAsyncLua

/// 1 with where the LuaJIT C API came from in `out`, or 0 with why none was found and the fixes.
/// Called by core.lua right after ffi.load, before anything else touches the core.
@implementation @c
public func ljasync_luajit_status(_ out: UnsafeMutablePointer<CChar>?, _ len: Int) -> Int32 {
    ljasync_lua_bind(out, len) == 1 ? 1 : 0
}

/// 1 when `code` (the calling state's dump of `return 42`) runs in a state of the bound LuaJIT;
/// else 0 with the mismatch explained in `out`. `version` is the caller's jit.version.
@implementation @c
public func ljasync_luajit_check(_ code: UnsafeRawPointer, _ len: Int, _ version: UnsafePointer<CChar>,
                                 _ out: UnsafeMutablePointer<CChar>?, _ outLen: Int) -> Int32 {
    guard ljasync_lua_bind(out, outLen) == 1 else { return 0 }
    let bytes = UnsafeRawBufferPointer(start: code, count: len)
    if let why = LuaJITBinding.checkBytecode(bytes, callerVersion: String(cString: version)) {
        writeError(why, out, outLen)
        return 0
    }
    return 1
}
