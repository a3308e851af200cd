// OS services for any thread, with or without a LuaThread of its own: sleep, CPU count, ids.
import Glibc

enum ThreadSystem {
    /// Looks up a GNU extension that Glibc's module map hides (as with pthread_setname_np).
    private static func gnu(_ name: String) -> UnsafeMutableRawPointer? {
        dlsym(UnsafeMutableRawPointer(bitPattern: 0), name)
    }

    private typealias GetAffinity = @convention(c) (pid_t, Int, UnsafeMutableRawPointer) -> Int32
    private typealias GetTid = @convention(c) () -> pid_t
    private static let getAffinity = gnu("sched_getaffinity").map { unsafeBitCast($0, to: GetAffinity.self) }
    private static let getTid = gnu("gettid").map { unsafeBitCast($0, to: GetTid.self) }

    /// The monotonic deadline `seconds` from now; nil (no deadline) for a negative, infinite
    /// or very long timeout.
    static func deadline(after seconds: Double) -> timespec? { Clock.deadline(after: seconds) }

    /// Sleeps the calling thread for `seconds` on the monotonic clock, resuming after signals.
    /// NaN and negative times do not sleep; infinite ones sleep for good.
    static func sleep(seconds: Double) {
        guard seconds > 0 else { return }
        guard var deadline = deadline(after: seconds) else {
            while true { pause() }
        }
        while clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &deadline, nil) == EINTR {}
    }

    /// The CPUs this process may run on (its affinity mask, as taskset sets it), at least 1.
    static func cpus() -> Int {
        if let getAffinity {
            var set = cpu_set_t()
            let rc = withUnsafeMutableBytes(of: &set) { getAffinity(0, $0.count, $0.baseAddress!) }
            let n = withUnsafeBytes(of: &set) { $0.reduce(0) { $0 + $1.nonzeroBitCount } }
            if rc == 0 && n > 0 { return n }
        }
        return max(1, sysconf(Int32(_SC_NPROCESSORS_ONLN)))
    }

    /// The kernel's id of the calling thread (as listed in /proc/self/task), or -1.
    static func id() -> Int { getTid.map { Int($0()) } ?? -1 }
}
