// Threads lj-async starts take no process signals: the host's own threads handle them.
import Glibc

/// Runs `body` (a `pthread_create`) with every signal blocked on the calling thread, then puts
/// the caller's mask back: the new thread inherits the full mask from its first instruction.
///
/// Why: a process-directed signal goes to any thread that does not block it. Hosts that wait
/// for signals on their main thread miss the ones a background thread takes: nginx's master
/// handles SIGCHLD/SIGQUIT/SIGHUP with flags checked after `sigsuspend` on its main thread, and a
/// signal taken by an lj-async thread instead left it asleep for good (seen: a master that never
/// exited after its last worker did). Faults (SIGSEGV, SIGBUS, ...) still reach the faulting
/// thread: the kernel forces them. Any thread.
func withSignalsBlocked<T>(_ body: () -> T) -> T {
    var all = sigset_t()
    var old = sigset_t()
    sigfillset(&all)
    pthread_sigmask(SIG_SETMASK, &all, &old)
    defer { pthread_sigmask(SIG_SETMASK, &old, nil) }
    return body()
}
