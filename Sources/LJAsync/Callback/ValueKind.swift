// The scalar kinds a callback's parameters and result can have, and their libffi types.
import CFFI
import CLJAsync
import Glibc

/// How one parameter or the result crosses the C boundary. Decided by the Lua side with
/// LuaJIT's ffi (sizes, signedness), so the core never interprets C type names.
enum ValueKind: UInt8 {
    case void = 0, int8, uint8, int16, uint16, int32, uint32, int64, uint64, float, double, pointer, bool

    /// The libffi type descriptor for this kind (libffi's own static objects, whose addresses
    /// ljasync.h's shim takes in C).
    var ffiType: UnsafeMutablePointer<ffi_type> {
        ljasync_ffi_type(Int32(rawValue))!.assumingMemoryBound(to: ffi_type.self)
    }

    var size: Int {
        switch self {
        case .void: return 0
        case .int8, .uint8, .bool: return 1
        case .int16, .uint16: return 2
        case .int32, .uint32, .float: return 4
        case .int64, .uint64, .double, .pointer: return 8
        }
    }

    /// Stores the value at `src` into the stub's result registers: integers and pointers
    /// widened into `ret[0]` (rax), float and double into `ret[1]` (xmm0).
    @inline(__always)
    func storeRegister(from src: UnsafeRawPointer, to ret: UnsafeMutablePointer<UInt64>) {
        switch self {
        case .float, .double: storeReturn(from: src, to: UnsafeMutableRawPointer(ret + 1))
        default: storeReturn(from: src, to: UnsafeMutableRawPointer(ret))
        }
    }

    /// Stores the value at `src` (laid out as this kind) into libffi's return slot, which
    /// holds small integers widened to a full register (`ffi_arg`).
    @inline(__always)
    func storeReturn(from src: UnsafeRawPointer, to ret: UnsafeMutableRawPointer) {
        switch self {
        case .void: break
        case .int8: ret.storeBytes(of: Int64(src.loadUnaligned(as: Int8.self)), as: Int64.self)
        case .uint8, .bool: ret.storeBytes(of: UInt64(src.loadUnaligned(as: UInt8.self)), as: UInt64.self)
        case .int16: ret.storeBytes(of: Int64(src.loadUnaligned(as: Int16.self)), as: Int64.self)
        case .uint16: ret.storeBytes(of: UInt64(src.loadUnaligned(as: UInt16.self)), as: UInt64.self)
        case .int32: ret.storeBytes(of: Int64(src.loadUnaligned(as: Int32.self)), as: Int64.self)
        case .uint32: ret.storeBytes(of: UInt64(src.loadUnaligned(as: UInt32.self)), as: UInt64.self)
        case .float: ret.storeBytes(of: src.loadUnaligned(as: Float.self), as: Float.self)
        case .int64, .uint64, .double, .pointer:
            ret.storeBytes(of: src.loadUnaligned(as: UInt64.self), as: UInt64.self)
        }
    }
}
