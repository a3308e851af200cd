// The pool's mechanisms without Lua: the ring buffer, inbox accounting and readiness, IPC, definitions.
import CLJAsync
import Glibc
import Testing
@testable import LJAsync

@Suite struct PoolTests {
    func message(_ bytes: [UInt8]) -> UnsafeMutablePointer<Message> {
        bytes.withUnsafeBytes { Message.create($0.baseAddress!, $0.count) }
    }

    @Test func ringKeepsOrderAcrossGrowth() {
        var r = Ring<Int>(capacity: 8)
        for i in 0..<5 { r.push(i) }
        #expect(r.popFirst() == 0)
        for i in 5..<40 { r.push(i) }   // wraps, then grows twice
        #expect(r.count == 39)
        #expect(r.popLast() == 39)
        r.remove(at: 0)                  // drops 1
        #expect(r.removeAll { $0 % 2 == 0 } == 19)
        var rest: [Int] = []
        while let x = r.popFirst() { rest.append(x) }
        #expect(rest == Array(stride(from: 3, through: 37, by: 2)))
        #expect(r.popFirst() == nil)
        r.free()
    }

    @Test func inboxDeliversInOrderAndFreesAfterTheLastJob() {
        let inbox = Inbox.create()
        inbox.submitted.pointee = 3
        let out = UnsafeMutablePointer<ljasync_pool_result>.allocate(capacity: 4)
        defer { out.deallocate() }
        Inbox.push(inbox, PoolResult(message: message([1, 9]), id: 1, status: .ok))
        Inbox.push(inbox, PoolResult(message: nil, id: 2, status: .cancelled))
        #expect(Inbox.drain(inbox, out, 4) == 2)
        #expect(out[0].id == 1)
        #expect(out[1].status == PoolResult.Status.cancelled.rawValue)
        Message.free(UnsafeMutablePointer<Message>(out[0].msg!))
        #expect(Inbox.drain(inbox, out, 4) == 0)
        Inbox.close(inbox)            // one job still out: the inbox lives on
        Inbox.push(inbox, PoolResult(message: message([1]), id: 3, status: .ok))  // freed with the inbox
    }

    @Test func inboxesAreRegisteredUntilFreed() {
        // fork() and process exit go through the registry: an inbox is in it from creation
        // until the memory is freed (after its last job came back).
        let inbox = Inbox.create()
        #expect(Inbox.registryLock.withLock { Inbox.registry.contains(inbox) })
        inbox.submitted.pointee = 1
        Inbox.close(inbox)
        #expect(Inbox.registryLock.withLock { Inbox.registry.contains(inbox) })   // one job still out
        Inbox.push(inbox, PoolResult(message: nil, id: 1, status: .cancelled))   // the last: freed
        #expect(!Inbox.registryLock.withLock { Inbox.registry.contains(inbox) })
        #expect(Inbox.untakenText(1) == "pool: 1 result was never taken (call async.update() or async.wait())")
        #expect(Inbox.untakenText(3) == "pool: 3 results were never taken (call async.update() or async.wait())")
    }

    @Test func inboxEventFDIsReadableExactlyWhileResultsWait() {
        let inbox = Inbox.create()
        inbox.submitted.pointee = 1
        let fd = Inbox.armFD(inbox)
        #expect(fd >= 0)
        var pfd = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        #expect(poll(&pfd, 1, 0) == 0)
        Inbox.push(inbox, PoolResult(message: nil, id: 1, status: .cancelled))
        #expect(poll(&pfd, 1, 0) == 1)
        let out = UnsafeMutablePointer<ljasync_pool_result>.allocate(capacity: 1)
        defer { out.deallocate() }
        #expect(Inbox.drain(inbox, out, 1) == 1)
        #expect(poll(&pfd, 1, 0) == 0)
        Inbox.close(inbox)
    }

    @Test func ipcCompareAndSwapOnEncodedBytes() {
        let ipc = PoolIPC()
        let key: [UInt8] = Array("k".utf8)
        #expect(ipc.cas(key, old: nil, new: message([1, 2])))
        let wrong = message([1, 3])
        #expect(!ipc.cas(key, old: wrong, new: nil))
        Message.free(wrong)
        let right = message([1, 2])
        #expect(ipc.cas(key, old: right, new: message([7])))
        Message.free(right)
        let got = ipc.get(key)!
        #expect(got.pointee.count == 1 && got.pointee.bytes.load(as: UInt8.self) == 7)
        Message.free(got)
        #expect(ipc.poll(key, timeout: 0))
        ipc.set(key, nil)
        #expect(!ipc.poll(key, timeout: 0.01))
    }

    @Test func definitionsAreCopiedAndNeverReuseIds() {
        let defs = PoolDefinitions()
        let a = defs.define(name: "f", message: message([1, 1]))
        let b = defs.define(name: "f", message: message([1, 2]))
        #expect(a != b)
        let copy = defs.copy(a)!
        defs.undefine(a)
        #expect(defs.copy(a) == nil)
        #expect(copy.name == "f" && copy.message.pointee.bytes.load(fromByteOffset: 1, as: UInt8.self) == 1)
        Message.free(copy.message)
        defs.undefine(b)
    }
}
