// Uncontended lock+unlock cost of each lock kind lj-async uses (Support/Locks.swift) and of
// Swift's Synchronization.Mutex, best of several rounds. A micro-benchmark, not a test:
//   swiftc -O -wmo -parse-as-library bench/locks_bench.swift Sources/LJAsync/Support/Locks.swift \
//     Sources/LJAsync/Support/Clock.swift -o /tmp/locks_bench && /tmp/locks_bench
import Glibc
import Synchronization

@inline(never) func measure(_ name: String, _ n: Int, _ body: () -> Void) {
    var best = Double.infinity
    for _ in 0..<7 {
        let t0 = Clock.nanoseconds()
        body()
        best = min(best, Double(Clock.nanoseconds() - t0) / Double(n))
    }
    let ns = (best * 100).rounded() / 100
    print(name + String(repeating: " ", count: max(1, 46 - name.count)) + "\(ns) ns")
}

@main struct LocksBench {
    static func main() {
        let n = 5_000_000
        var sink = 0
        for kind in [LockKind.normal, LockKind.adaptive] {
            let l = PthreadLock(kind)
            measure("PthreadLock(.\(kind)) lock+unlock", n) {
                for i in 0..<n { l.lock(); sink &+= i; l.unlock() }
            }
            l.destroy()
        }
        // A bare default pthread mutex: what the wrapper's checks cost on top.
        let bare = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
        pthread_mutex_init(bare, nil)
        measure("bare pthread default lock+unlock", n) {
            for i in 0..<n { pthread_mutex_lock(bare); sink &+= i; pthread_mutex_unlock(bare) }
        }
        // The kind debug builds use for every PthreadLock.
        let m = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
        var attr = pthread_mutexattr_t()
        pthread_mutexattr_init(&attr)
        pthread_mutexattr_settype(&attr, Int32(PTHREAD_MUTEX_ERRORCHECK))
        pthread_mutex_init(m, &attr)
        measure("pthread errorcheck (debug kind) lock+unlock", n) {
            for i in 0..<n { pthread_mutex_lock(m); sink &+= i; pthread_mutex_unlock(m) }
        }
        let mutex = Mutex<Int>(0)
        measure("Synchronization.Mutex withLock", n) {
            for i in 0..<n { mutex.withLock { $0 &+= i } }
        }
        print("(sink \(sink & 1))")
    }
}
