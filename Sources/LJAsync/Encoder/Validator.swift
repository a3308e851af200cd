// Checks the structure of an encoding that did not come from this process before Lua decodes it.
import CLJAsync

/// Walks an encoding's payload (lua/lj-async/encoder/reader.lua decodes it; docs/encoder.md has
/// the layout) the way string.buffer's decoder (lj_serialize.c) and the encoder's general
/// reader will, without building anything, and reports the first thing they would trip on:
/// bytes past the end, an unknown tag, a table that claims more entries than there are bytes
/// left (string.buffer would allocate for all of them: a few forged bytes could ask for GiBs),
/// a nil or NaN table key, nesting deeper than string.buffer allows, a light userdata that is
/// not an address, a field of the wrong kind, trailing bytes.
///
/// It does not find duplicate keys (string.buffer's "duplicate table key"), only notes
/// where one could be (`mayDuplicate`), nor judge ctype names, bytecode or references: the
/// reader checks those itself, and decodes bytes that may hold a duplicate key in functions
/// the JIT compiler never records, so that error is raised in the interpreter (a
/// string.buffer decode error raised on a trace can crash LuaJIT releases before 2023-08).
///
/// Thread-safety: a pure function of the bytes; any thread. Recursion (string.buffer values
/// only) is at most `sbDepth` frames of a few words.
struct Validator {
    enum Failure: Int32, Error {
        case truncated = 1, badTag, sizeExceedsData, badKey, tooDeep, badField, badLightUserdata, trailing
    }

    // lj_serialize.c tags.
    static let tagNil: UInt32 = 0, tagTrue: UInt32 = 2, tagNull: UInt32 = 3, tagLightud32: UInt32 = 4
    static let tagLightud64: UInt32 = 5, tagInt: UInt32 = 6, tagNum: UInt32 = 7, tagTab: UInt32 = 8
    static let tagInt64: UInt32 = 0x10, tagUint64: UInt32 = 0x11, tagComplex: UInt32 = 0x12, tagStr: UInt32 = 0x20
    /// string.buffer's LJ_SERIALIZE_DEPTH: at most this many nested tables in one value.
    static let sbDepth = 100

    // The general format's tags: enum ljasync_format of ljasync.h (encoder/native.lua reads it too).
    private static func g(_ t: ljasync_format) -> UInt8 { UInt8(t.rawValue) }
    static let gLeaf = g(LJASYNC_G_LEAF), gTable = g(LJASYNC_G_TABLE), gTableMt = g(LJASYNC_G_TABLE_MT)
    static let gEnd = g(LJASYNC_G_END), gRef = g(LJASYNC_G_REF), gFunc = g(LJASYNC_G_FUNC), gUpJoin = g(LJASYNC_G_UPJOIN)
    static let gModule = g(LJASYNC_G_MODULE), gModField = g(LJASYNC_G_MODFIELD), gPointer = g(LJASYNC_G_POINTER)
    static let gCValue = g(LJASYNC_G_CVALUE), gHandle = g(LJASYNC_G_HANDLE)

    /// What a string.buffer value turned out to be, for fields that must be of one kind.
    enum Kind { case number(Double), string, uint64, other }

    let p: UnsafePointer<UInt8>
    let end: Int
    var r = 0
    /// Set when a string.buffer table has two keys or more (counting array slots): only then
    /// can its decoder meet a duplicate key.
    private(set) var mayDuplicate = false

    init(_ p: UnsafePointer<UInt8>, count: Int) {
        self.p = p
        self.end = count
    }

    var left: Int { end - r }

    mutating func byte() throws(Failure) -> UInt8 {
        guard r < end else { throw .truncated }
        defer { r += 1 }
        return p[r]
    }

    mutating func skip(_ n: Int) throws(Failure) {
        guard n <= left else { throw .truncated }
        r += n
    }

    func u32(at i: Int) -> UInt32 { UnsafeRawPointer(p + i).loadUnaligned(as: UInt32.self) }
    func u64(at i: Int) -> UInt64 { UnsafeRawPointer(p + i).loadUnaligned(as: UInt64.self) }

    /// serialize_ru124: one byte below 0xe0, two bytes below 0xff, else 0xff and 4 bytes.
    mutating func ru124() throws(Failure) -> UInt32 {
        let v = UInt32(try byte())
        if v < 0xe0 { return v }
        if v != 0xff { return ((v & 0x1f) << 8) + UInt32(try byte()) + 0xe0 }
        guard left >= 4 else { throw .truncated }
        defer { r += 4 }
        return u32(at: r)
    }

    /// Skips one string.buffer value if it is a short string, a number or nil/false/true (most
    /// of the values of big data), with no call: false when it is anything else or truncated,
    /// for sbValue to look at.
    @inline(__always)
    mutating func skipScalar() -> Bool {
        guard r < end else { return false }
        let t = p[r]
        let n: Int
        if t >= 0x20 && t < 0xe0 {
            n = Int(t) - 0x1f
        } else if t == 7 {
            n = 9
        } else if t <= 2 {
            n = 1
        } else if t == 6 {
            n = 5
        } else {
            return false
        }
        guard n <= end - r else { return false }
        r += n
        return true
    }

    /// Skips a run of up to `most` string.buffer doubles (tag 7 and 8 bytes each: the arrays of
    /// big numeric data) and returns its length: eight at a time when it can, their eight tag
    /// bytes checked by one 64-byte vector load (tag m is byte m of word m), as one test.
    @inline(__always)
    mutating func skipNumbers(upTo most: Int) -> Int {
        guard r < end, p[r] == UInt8(Validator.tagNum) else { return 0 }
        let run = min(most, (end - r) / 9)
        var k = 0
        var q = UnsafeRawPointer(p + r)
        while run &- k >= 8 {
            let tags = q.loadUnaligned(as: SIMD8<UInt64>.self) & Validator.tagBytes
            guard tags.wrappedSum() == 0x0707_0707_0707_0707 else { break }  // disjoint bytes: sum = or
            q += 72
            k &+= 8
        }
        while k < run && q.load(as: UInt8.self) == UInt8(Validator.tagNum) {
            q += 9
            k &+= 1
        }
        r &+= 9 &* k
        return k
    }

    /// Lane m keeps byte m of word m: where eight doubles in a row have their tags.
    static let tagBytes = SIMD8<UInt64>(0xff, 0xff << 8, 0xff << 16, 0xff << 24, 0xff << 32, 0xff << 40,
                                        0xff << 48, 0xff << 56)

    /// One string.buffer value, `depth` tables deep.
    @discardableResult
    mutating func sbValue(depth: Int) throws(Failure) -> Kind {
        let tp = try ru124()
        if tp >= Validator.tagStr {
            try skip(Int(tp - Validator.tagStr))
            return .string
        }
        switch tp {
        case Validator.tagNil...Validator.tagNull:
            return .other
        case Validator.tagLightud32:
            try skip(4)
            return .other
        case Validator.tagLightud64:
            guard left >= 8 else { throw .truncated }
            // lj_lightud_intern refuses addresses wider than 47 bits.
            guard u64(at: r) >> 47 == 0 else { throw .badLightUserdata }
            r += 8
            return .other
        case Validator.tagInt:
            guard left >= 4 else { throw .truncated }
            defer { r += 4 }
            return .number(Double(Int32(bitPattern: u32(at: r))))
        case Validator.tagNum:
            guard left >= 8 else { throw .truncated }
            defer { r += 8 }
            return .number(Double(bitPattern: u64(at: r)))
        case Validator.tagTab...(Validator.tagTab + 5):
            guard depth < Validator.sbDepth else { throw .tooDeep }
            var narray: UInt32 = 0, nhash: UInt32 = 0
            if tp >= Validator.tagTab + 2 { narray = try ru124() }
            if tp & 1 != 0 { nhash = try ru124() }
            // Slot 0 is not written for tags TAB+4 and TAB+5; every value takes a byte or more.
            let elements = Int(narray) - (tp >= Validator.tagTab + 4 && narray > 0 ? 1 : 0)
            guard elements <= left, Int(nhash) <= left / 2 else { throw .sizeExceedsData }
            if nhash >= 2 || nhash == 1 && narray > 0 { mayDuplicate = true }
            var i = 0
            while i < elements {
                i += skipNumbers(upTo: elements - i)
                if i == elements { break }
                if !skipScalar() { try sbValue(depth: depth + 1) }
                i += 1
            }
            for _ in 0..<nhash {
                guard r < end else { throw .truncated }
                let k = p[r]
                if k == UInt8(Validator.tagNil) { throw .badKey }  // "table index is nil"
                if k < 0x20 || k >= 0xe0 || !skipScalar() {         // not a short string key
                    if case .number(let x) = try sbValue(depth: depth + 1), x.isNaN { throw .badKey }
                }
                if !skipScalar() { try sbValue(depth: depth + 1) }
            }
            return .other
        case Validator.tagInt64, Validator.tagUint64:
            try skip(8)
            return tp == Validator.tagUint64 ? .uint64 : .other
        case Validator.tagComplex:
            try skip(16)
            return .other
        default:
            throw .badTag  // the dictionary tags (never written by the encoder) and 0x13...0x1f
        }
    }

    mutating func number() throws(Failure) -> Double {
        guard case .number(let x) = try sbValue(depth: Validator.sbDepth - 1) else { throw .badField }
        return x
    }

    /// A count or index field: an integer >= -1 that fits in memory.
    mutating func count() throws(Failure) -> Int {
        let x = try number()
        guard x >= -1, x <= 9.0e15, x == x.rounded(.towardZero) else { throw .badField }
        return Int(x)
    }

    mutating func string() throws(Failure) {
        guard case .string = try sbValue(depth: Validator.sbDepth - 1) else { throw .badField }
    }

    /// What the general format's walk expects next: values, key/value pairs up to the end
    /// tag, or upvalues.
    enum Frame { case values(Int), pairs(value: Bool), upvalues(Int) }

    /// `n` values of the general format, nested any depth (the walk keeps its own stack, in
    /// memory, not on the thread's).
    mutating func gValues(_ n: Int) throws(Failure) {
        var stack: [Frame] = [.values(n)]
        while let top = stack.last {
            let i = stack.count - 1
            switch top {
            case .values(let k):
                if k == 0 { stack.removeLast(); continue }
                stack[i] = .values(k - 1)
            case .pairs(let value):
                guard r < end else { throw .truncated }
                if !value && p[r] == Validator.gEnd { r += 1; stack.removeLast(); continue }
                stack[i] = .pairs(value: !value)
            case .upvalues(let k):
                if k == 0 { stack.removeLast(); continue }
                stack[i] = .upvalues(k - 1)
                guard r < end else { throw .truncated }
                switch p[r] {
                case Validator.gUpJoin: r += 1; _ = try count(); _ = try count(); continue
                case Validator.gModule: r += 1; try string(); continue
                case Validator.gModField: r += 1; try string(); try string(); continue
                default: break
                }
            }
            try gValue(&stack)
        }
    }

    /// One value of the general format; a table or function pushes what it holds.
    mutating func gValue(_ stack: inout [Frame]) throws(Failure) {
        let tag = try byte()
        switch tag {
        case Validator.gLeaf:
            try sbValue(depth: 0)
        case Validator.gTable, Validator.gTableMt:
            if tag == Validator.gTableMt { try string() }
            let narr = try count()
            guard narr >= 0, narr <= left else { throw .sizeExceedsData }
            stack.append(.pairs(value: false))
            stack.append(.values(narr))
        case Validator.gRef:
            _ = try count()
        case Validator.gFunc:
            try string()  // bytecode
            guard case .uint64 = try sbValue(depth: 0) else { throw .badField }  // its mark
            let nups = try count()
            guard nups >= 0, nups <= left else { throw .sizeExceedsData }
            stack.append(.upvalues(nups))
        case Validator.gPointer:
            try string()
            guard case .uint64 = try sbValue(depth: 0) else { throw .badField }
        case Validator.gCValue:
            try string()
            let size = try count()
            _ = try count()
            guard size >= 0 else { throw .badField }
            guard size <= left else { throw .truncated }
            r += size
        case Validator.gHandle:
            _ = try count(); try string(); try string()
        default:
            throw .badTag
        }
    }

    /// Checks `values` string.buffer values (plain format), or a count and that many general
    /// values when `values` < 0, filling the bytes exactly.
    mutating func payload(values: Int) throws(Failure) {
        if values >= 0 {
            for _ in 0..<values where !skipScalar() { try sbValue(depth: 0) }
        } else {
            let n = try count()
            guard n >= 0, n <= left else { throw .sizeExceedsData }
            try gValues(n)
        }
        guard r == end else { throw .trailing }
    }
}
