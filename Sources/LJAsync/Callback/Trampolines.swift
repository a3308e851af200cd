// Executable trampolines that enter a callback through the x86-64 stub instead of libffi.
import CLJAsyncEntry
import Glibc

/// Hands out 32-byte trampolines, each of which loads one callback core into r10 and jumps to
/// the entry stub (Sources/CLJAsyncEntry). Code pages are written once, then made read+exec;
/// the per-trampoline data (core pointer, stub address) lives in the read-write page after it,
/// so no page is ever writable and executable at once, and no code is patched while it runs.
///
/// Lifetime: pages are never unmapped; a trampoline returns to the free list only when its core
/// is freed for good (it left the quarantine, or its creation failed). Thread-safety: internally
/// locked.
final class TrampolinePool: @unchecked Sendable {
    static let shared = TrampolinePool()
    static let pageSize = 4096
    static let slotSize = 32
    static let dataSize = 16

    /// fork() takes it and re-creates it in the child (Fork.swift).
    let lock = PthreadLock()
    private var free: [UnsafeMutableRawPointer] = []
    private let entry = ljasync_entry_address()
    /// No stub on this platform, or the system refused executable pages once.
    private var broken = ljasync_entry_available() == 0

    /// A trampoline not yet bound to a core, or nil when this platform or system forbids them.
    func allocate() -> UnsafeMutableRawPointer? {
        lock.withLock {
            if broken { return nil }
            if free.isEmpty && !addPage() {
                broken = true
                return nil
            }
            return free.removeLast()
        }
    }

    /// Makes trampoline `code` enter `core`. Before its address is handed to anyone.
    func bind(_ code: UnsafeMutableRawPointer, to core: UnsafeMutableRawPointer) {
        lock.withLock { data(of: code).pointee = UInt(bitPattern: core) }
    }

    func recycle(_ code: UnsafeMutableRawPointer) {
        lock.withLock {
            data(of: code).pointee = 0
            free.append(code)
        }
    }

    private func data(of code: UnsafeMutableRawPointer) -> UnsafeMutablePointer<UInt> {
        let page = UInt(bitPattern: code) & ~UInt(TrampolinePool.pageSize - 1)
        let index = (UInt(bitPattern: code) - page) / UInt(TrampolinePool.slotSize)
        let slot = page + UInt(TrampolinePool.pageSize) + index * UInt(TrampolinePool.dataSize)
        return UnsafeMutablePointer<UInt>(bitPattern: slot)!
    }

    private func addPage() -> Bool {
        let size = 2 * TrampolinePool.pageSize
        guard let base = mmap(nil, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0),
              base != MAP_FAILED, let entry else { return false }
        let n = TrampolinePool.pageSize / TrampolinePool.slotSize
        let dataPage = base + TrampolinePool.pageSize
        for i in 0..<n {
            let c = base + i * TrampolinePool.slotSize
            let d = dataPage + i * TrampolinePool.dataSize
            let movEnd = Int(bitPattern: c) + 11, jmpEnd = Int(bitPattern: c) + 17
            var code: [UInt8] = [0xF3, 0x0F, 0x1E, 0xFA,      // endbr64
                                 0x4C, 0x8B, 0x15]             // mov r10, [rip + rel32]: the core
            code += le32(Int(bitPattern: d) - movEnd)
            code += [0xFF, 0x25]                               // jmp [rip + rel32]: the stub
            code += le32(Int(bitPattern: d) + 8 - jmpEnd)
            code += Array(repeating: 0xCC, count: TrampolinePool.slotSize - code.count)  // int3
            code.withUnsafeBytes { c.copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
            (d + 8).storeBytes(of: UInt(bitPattern: entry), as: UInt.self)
        }
        guard mprotect(base, TrampolinePool.pageSize, PROT_READ | PROT_EXEC) == 0 else {
            munmap(base, size)
            return false
        }
        for i in (0..<n).reversed() { free.append(base + i * TrampolinePool.slotSize) }
        return true
    }

    private func le32(_ v: Int) -> [UInt8] {
        let u = UInt32(bitPattern: Int32(v))
        return [UInt8(u & 0xFF), UInt8((u >> 8) & 0xFF), UInt8((u >> 16) & 0xFF), UInt8(u >> 24)]
    }
}
