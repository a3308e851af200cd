// Swift spellings of the LuaJIT C API macros that do not import, and small helpers.
import CLuaJIT

typealias LuaState = OpaquePointer

enum Lua {
    static let registryIndex: Int32 = -10000
    static let globalsIndex: Int32 = -10002

    @inline(__always) static func pop(_ L: LuaState, _ n: Int32) { lua_settop(L, -n - 1) }

    /// The string at `idx` (or a placeholder for non-strings), copied into Swift.
    static func string(_ L: LuaState, _ idx: Int32) -> String {
        var len = 0
        guard let p = lua_tolstring(L, idx, &len) else {
            return "(error object is a \(String(cString: lua_typename(L, lua_type(L, idx)))) value)"
        }
        return String(decoding: UnsafeRawBufferPointer(start: p, count: len), as: UTF8.self)
    }

    /// Loads and runs `bytes` (source or bytecode) with no arguments and no results. Returns an
    /// error message or nil.
    static func run(_ L: LuaState, bytes: UnsafeRawBufferPointer, name: String) -> String? {
        let p = bytes.baseAddress!.assumingMemoryBound(to: CChar.self)
        guard luaL_loadbuffer(L, p, bytes.count, name) != 0 || lua_pcall(L, 0, 0, 0) != 0 else { return nil }
        let failure = string(L, -1)
        pop(L, 1)
        return failure
    }
}

import Glibc

/// Writes `message` into a caller-supplied C buffer, always NUL-terminated and truncated to fit.
func writeError(_ message: String, _ buf: UnsafeMutablePointer<CChar>?, _ len: Int) {
    guard let buf, len > 0 else { return }
    var n = 0
    for b in message.utf8 {
        if n >= len - 1 { break }
        buf[n] = CChar(bitPattern: b)
        n += 1
    }
    buf[n] = 0
}

/// Reports an error nobody else will see: one line on stderr, written with a single write(2).
func reportToStderr(_ message: String) {
    var line = "lj-async: " + message
    if !line.hasSuffix("\n") { line += "\n" }
    line.withCString { p in _ = write(2, p, strlen(p)) }
}
