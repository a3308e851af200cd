// The pool across fork(): every lock held while the process forks; in the child, no workers and none of the parent's jobs.
import Glibc

extension Pool {
    /// Before fork() (the forking thread): takes the pool's locks in the code's order, so no
    /// worker or owner is inside a critical section when the process is copied.
    static func forkPrepare() {
        PoolDefinitions.shared.forkLock()
        PoolIPC.shared.forkLock()
        Inbox.registryLock.lock()
        core.sync.lock()
        Inbox.forkLockAll()
    }

    /// After fork(), in the parent: nothing changed; the locks are released.
    static func forkParent() {
        Inbox.forkUnlockAll()
        core.sync.unlock()
        Inbox.registryLock.unlock()
        PoolIPC.shared.forkUnlock()
        PoolDefinitions.shared.forkUnlock()
    }

    /// After fork(), in the child (the only thread): the workers did not come along, and the
    /// jobs queued or running are the parent's (their results go to the parent's owners), so
    /// they are dropped here; definitions, init code and IPC values stay. Workers asked for
    /// explicitly are started again by the next submit (`owed`); with autoscaling the next
    /// job starts them as usual. Worker records of the parent are left unfreed (a few hundred
    /// bytes each): their threads' memory is not ours to tidy.
    static func forkChild() {
        PoolDefinitions.shared.forkReinit()
        PoolIPC.shared.forkReinit()
        let p = core
        p.sync.reinitAfterFork()
        if p.pointee.settings.autoscale == 0 { p.pointee.owed += p.pointee.live }
        p.pointee.all.removeAll()
        _ = p.pointee.idle.removeAll { _ in true }
        p.pointee.watchers.removeAll()
        p.pointee.live = 0
        p.pointee.stopping = 0
        p.pointee.starting = 0
        p.pointee.running = 0
        p.pointee.spinners = 0
        p.pointee.spaceWaiters = 0
        p.queuedHint.pointee.store(0, ordering: .relaxed)
        p.pointee.startError = nil
        p.pointee.reportedError = nil
        while let j = p.pointee.queue.popFirst() {
            if let m = j.message { Message.free(m) }
        }
        Inbox.forkChild()
    }
}
