// The C ABI of the value encoder's native help (declared in Sources/CLJAsync/include/ljasync.h).
import CLJAsync

/// Scans the tables at `roots[0..<n]` (GCtab addresses, one Lua state's): 1 if they are plain
/// data for string.buffer (see PlainScan), 0 if not. `ctypes` holds the three cdata ctype ids
/// accepted as plain (int64_t, uint64_t, complex). `scratch` (1 + `capacity` words, zeroed
/// once; `capacity` a power of two) is the state's reusable memory for the set of tables seen;
/// `*tables` receives how many tables were visited, so the caller can lend more next time.
/// Runs on the thread that owns the state, inside the FFI call; only the encoder calls it,
/// after checking the object layout (see PlainScan).
@implementation @c
public func ljasync_encoder_scan(
    _ roots: UnsafePointer<UInt64>, _ n: Int32, _ maxDepth: Int32, _ ctypes: UnsafePointer<UInt16>,
    _ scratch: UnsafeMutablePointer<UInt64>, _ capacity: Int, _ tables: UnsafeMutablePointer<Int>
) -> Int32 {
    var scan = PlainScan(maxDepth: Int(maxDepth), okCtypes: (ctypes[0], ctypes[1], ctypes[2]),
                         seen: AddressSet(lent: scratch, capacity: capacity))
    defer {
        tables.pointee = scan.seen.count
        scan.seen.free()
    }
    for i in 0..<Int(n) where !scan.table(roots[i], depth: 1) { return 0 }
    return 1
}

/// The checksum of `n` bytes at `p`, continuing from `seed` (see Checksum). Any thread.
@implementation @c
public func ljasync_encoder_checksum(_ p: UnsafeRawPointer?, _ n: Int, _ seed: UInt32) -> UInt32 {
    guard let p, n > 0 else { return Checksum.of(UnsafeRawPointer(bitPattern: 1)!, count: 0, seed: seed) }
    return Checksum.of(p, count: n, seed: seed)
}

/// Checks the structure of `n` bytes at `p` (see Validator): `values` string.buffer values
/// (the plain format), or with `values` < 0 a count and that many general-format values.
/// 0 when the reader can decode them without tripping, -1 when so but string.buffer may meet
/// a duplicate table key, else a Validator.Failure code, with its offset in `*at`. Any thread.
@implementation @c
public func ljasync_encoder_validate(_ p: UnsafePointer<UInt8>?, _ n: Int, _ values: Int, _ at: UnsafeMutablePointer<Int>) -> Int32 {
    guard let p, n > 0 else {
        at.pointee = 0
        return values == 0 ? 0 : Validator.Failure.truncated.rawValue
    }
    var v = Validator(p, count: n)
    do throws(Validator.Failure) {
        try v.payload(values: values)
        return v.mayDuplicate ? -1 : 0
    } catch {
        at.pointee = v.r
        return error.rawValue
    }
}

/// The mark of `n` bytes of bytecode at `p` (see BytecodeMark). Any thread.
@implementation @c
public func ljasync_encoder_mark(_ p: UnsafeRawPointer, _ n: Int) -> UInt64 {
    BytecodeMark.of(p, count: n)
}
