/* Reference figures for lj-async threads: raw pthreads, measured in the same run. */
#include <pthread.h>
#include <stdint.h>
#include <time.h>

static double now_ns(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec * 1e9 + t.tv_nsec;
}

static void *empty_main(void *arg) { return arg; }

/* Mean nanoseconds per pthread_create + pthread_join of a thread doing nothing, over n
   threads in sequence; -1 if a thread cannot be created. */
double ljt_pthread_spawn_join_ns(int n) {
  double t = now_ns();
  for (int i = 0; i < n; i++) {
    pthread_t tid;
    if (pthread_create(&tid, NULL, empty_main, NULL)) return -1;
    pthread_join(tid, NULL);
  }
  return (now_ns() - t) / n;
}

/* Atomic ints shared between states (release signals and counters in the specs). */
int ljt_atomic_load(const int *p) { return __atomic_load_n(p, __ATOMIC_ACQUIRE); }
void ljt_atomic_store(int *p, int v) { __atomic_store_n(p, v, __ATOMIC_RELEASE); }
int ljt_atomic_add(int *p, int v) { return __atomic_add_fetch(p, v, __ATOMIC_ACQ_REL); }

/* Mean nanoseconds per thread for batches of `batch` pthread_create calls followed by as many
   pthread_join calls, `rounds` times; -1 if a thread cannot be created. */
double ljt_pthread_batch_ns(int batch, int rounds) {
  pthread_t tids[1024];
  if (batch > 1024) batch = 1024;
  double t = now_ns();
  for (int r = 0; r < rounds; r++) {
    for (int i = 0; i < batch; i++)
      if (pthread_create(&tids[i], NULL, empty_main, NULL)) return -1;
    for (int i = 0; i < batch; i++) pthread_join(tids[i], NULL);
  }
  return (now_ns() - t) / ((double)batch * rounds);
}
