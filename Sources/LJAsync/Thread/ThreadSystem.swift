// OS services for any thread, with or without a LuaThread of its own: sleep, CPU count, ids.
import CLJAsync
import Glibc

enum ThreadSystem {
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
        // sched_getaffinity through ljasync.h's shim (a GNU extension Glibc's module map hides).
        let n = Int(ljasync_gnu_affinity_count())
        if n > 0 { return n }
        return max(1, sysconf(Int32(_SC_NPROCESSORS_ONLN)))
    }

    /// The kernel's id of the calling thread (as listed in /proc/self/task), or -1.
    static func id() -> Int { ljasync_gnu_gettid() }
}
