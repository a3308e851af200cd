// The monotonic clock that every timeout and timed wait of lj-async measures against.
import Glibc

/// Monotonic clock helpers for timeouts given in seconds (immune to wall-clock jumps).
///
/// Thread-safety: pure functions of the clock; any thread.
enum Clock {
    static func now() -> timespec {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return ts
    }

    /// The deadline `seconds` from now; nil (no deadline) for negative, infinite, NaN or
    /// absurdly long (over 30 years) timeouts.
    static func deadline(after seconds: Double) -> timespec? {
        if seconds < 0 || !seconds.isFinite || seconds > 1e9 { return nil }
        var ts = now()
        let whole = seconds.rounded(.down)
        ts.tv_sec += Int(whole)
        ts.tv_nsec += Int((seconds - whole) * 1e9)
        if ts.tv_nsec >= 1_000_000_000 { ts.tv_sec += 1; ts.tv_nsec -= 1_000_000_000 }
        return ts
    }

    static func nanoseconds() -> UInt64 {
        let ts = now()
        return UInt64(ts.tv_sec) &* 1_000_000_000 &+ UInt64(ts.tv_nsec)
    }
}
