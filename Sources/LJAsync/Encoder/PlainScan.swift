// Decides, at C speed, whether a graph of Lua tables is plain data that string.buffer encodes as is.

/// Reads LuaJIT 2.1 GC64 objects in place (GCtab, Node, TValue, GCcdata; see lj_obj.h) to find
/// what the encoder's Lua scan would find, without the per-entry cost of `next` in Lua: a table
/// reached twice (shared or cyclic), a table with a metatable, nesting deeper than `maxDepth`,
/// or a value other than nil/boolean/number/string/table or cdata of an accepted ctype id.
///
/// Kept because it is what meets the encoder's goal on big plain data (>= 0.8x string.buffer):
/// bench/encoder_bench.lua on 1 MiB, ratio with this scan / with the Lua scan instead, same
/// session: records 0.91 / 0.48, matrix 0.85 / 0.12, string-keyed tree 0.89 / 0.37.
///
/// This depends on LuaJIT's private object layout. lua/lj-async/encoder/scan.lua checks that layout
/// on probe tables (field offsets, then verdicts on known graphs) before it ever calls the scan,
/// and uses its Lua scan when a check fails (another LuaJIT build).
///
/// Thread-safety: runs on the thread that owns the Lua state, inside one FFI call, so no Lua
/// code, garbage collection or finalizer can change the tables while they are read.
struct PlainScan {
    // lj_obj.h, GC64: itype(o) = (uint32_t)(o->it64 >> 47), an arithmetic shift of the signed
    // word; numbers have itype < LJ_TISNUM.
    static let typeNil: UInt32 = ~0, typeFalse: UInt32 = ~1, typeTrue: UInt32 = ~2, typeStr: UInt32 = ~4
    static let typeCdata: UInt32 = ~10, typeTab: UInt32 = ~11, typeIsNum: UInt32 = ~13
    static let gcMask: UInt64 = (1 << 47) - 1
    // GCtab field offsets and sizes (GC64).
    static let tabArray = 16, tabMeta = 32, tabNode = 40, tabAsize = 48, tabHmask = 52
    static let nodeSize = 24, nodeKey = 8, cdataCtypeid = 10

    @inline(__always)
    static func itype(_ tv: UInt64) -> UInt32 { UInt32(truncatingIfNeeded: Int64(bitPattern: tv) >> 47) }

    /// Whether the eight TValues at `a` are all numbers: a number's itype is below LJ_TISNUM,
    /// that is, its word is below 0xfff9 << 48; so (word >> 48) + 7 stays below 1 << 16.
    @inline(__always)
    static func allNumbers(_ a: UnsafeRawPointer) -> Bool {
        let x = (a.loadUnaligned(as: SIMD8<UInt64>.self) &>> 48) &+ 7
        let y = x.lowHalf | x.highHalf
        let z = y.lowHalf | y.highHalf
        return (z[0] | z[1]) >> 16 == 0
    }

    let maxDepth: Int
    let okCtypes: (UInt16, UInt16, UInt16)
    var seen: AddressSet

    /// True when every value reachable from `tab` (a GCtab address) is plain.
    mutating func table(_ tab: UInt64, depth: Int) -> Bool {
        guard depth <= maxDepth, seen.insert(tab) else { return false }
        let t = UnsafeRawPointer(bitPattern: UInt(tab))!
        guard t.load(fromByteOffset: PlainScan.tabMeta, as: UInt64.self) == 0 else { return false }
        let asize = Int(t.load(fromByteOffset: PlainScan.tabAsize, as: UInt32.self))
        if asize > 0 {
            let array = UnsafePointer<UInt64>(bitPattern: UInt(t.load(fromByteOffset: PlainScan.tabArray, as: UInt64.self)))!
            var i = 0
            while i < asize {
                let v = array[i]
                i &+= 1
                if PlainScan.itype(v) < PlainScan.typeIsNum {
                    // After a number, the next ones eight at a time, one test for all eight.
                    while asize &- i >= 8 && PlainScan.allNumbers(UnsafeRawPointer(array + i)) { i &+= 8 }
                } else if !value(v, depth: depth) {
                    return false
                }
            }
        }
        let hmask = Int(t.load(fromByteOffset: PlainScan.tabHmask, as: UInt32.self))
        let node = UnsafeRawPointer(bitPattern: UInt(t.load(fromByteOffset: PlainScan.tabNode, as: UInt64.self)))!
        for i in 0...hmask {
            let n = node + i * PlainScan.nodeSize
            let v = n.load(as: UInt64.self)
            if PlainScan.itype(v) == PlainScan.typeNil { continue }
            guard value(v, depth: depth), value(n.load(fromByteOffset: PlainScan.nodeKey, as: UInt64.self), depth: depth) else {
                return false
            }
        }
        return true
    }

    @inline(__always)
    mutating func value(_ tv: UInt64, depth: Int) -> Bool {
        let it = PlainScan.itype(tv)
        if it < PlainScan.typeIsNum { return true }
        switch it {
        case PlainScan.typeNil, PlainScan.typeFalse, PlainScan.typeTrue, PlainScan.typeStr:
            return true
        case PlainScan.typeTab:
            return table(tv & PlainScan.gcMask, depth: depth + 1)
        case PlainScan.typeCdata:
            let cd = UnsafeRawPointer(bitPattern: UInt(tv & PlainScan.gcMask))!
            let id = cd.load(fromByteOffset: PlainScan.cdataCtypeid, as: UInt16.self)
            return id == okCtypes.0 || id == okCtypes.1 || id == okCtypes.2
        default:
            return false
        }
    }
}

/// An open-addressing set of addresses in memory the caller lends (reused from call to call),
/// growing into memory of its own when that is too small.
///
/// A slot holds `tag << 48 | address` (addresses fit in 47 bits); word 0 of the lent memory
/// holds the tag of the last scan, and each scan takes the next one, so slots of earlier scans
/// count as empty without clearing. When the 16-bit tag wraps, the memory is cleared once.
/// Owned by one scan; the lent memory belongs to one Lua state (one thread at a time).
struct AddressSet {
    private var slots: UnsafeMutablePointer<UInt64>
    private var mask: Int
    private let tag: UInt64
    private var owned = false
    private(set) var count = 0

    /// Uses `lent` (1 + `capacity` words, `capacity` a power of two).
    init(lent: UnsafeMutablePointer<UInt64>, capacity: Int) {
        var t = (lent[0] + 1) & 0xffff
        if t == 0 {
            (lent + 1).update(repeating: 0, count: capacity)
            t = 1
        }
        lent[0] = t
        tag = t << 48
        slots = lent + 1
        mask = capacity - 1
    }

    func free() { if owned { slots.deallocate() } }

    /// Adds `a` (non-zero, below 2^47); false if it was already there.
    mutating func insert(_ a: UInt64) -> Bool {
        if (count + 1) * 2 > mask { grow() }
        let entry = tag | a
        // A GCtab is 64 bytes, so tables allocated one after another (the usual case) fall into
        // consecutive slots: few collisions, and the probes walk memory in order.
        var i = Int(truncatingIfNeeded: (a >> 6) ^ (a >> 26)) & mask
        while true {
            let s = slots[i]
            if s == entry { return false }
            if s & 0xffff_0000_0000_0000 != tag {
                slots[i] = entry
                count += 1
                return true
            }
            i = (i + 1) & mask
        }
    }

    private mutating func grow() {
        let old = slots, oldSize = mask + 1, wasOwned = owned
        let n = oldSize * 2
        slots = .allocate(capacity: n)
        slots.initialize(repeating: 0, count: n)
        owned = true
        mask = n - 1
        count = 0
        for i in 0..<oldSize where old[i] & 0xffff_0000_0000_0000 == tag { _ = insert(old[i] & PlainScan.gcMask) }
        if wasOwned { old.deallocate() }
    }
}
