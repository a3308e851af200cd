/* C code that calls lj-async callbacks the way C libraries do: from many threads at once. */
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdlib.h>
#include <time.h>

typedef int (*int_fn)(int);

static double now_ns(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec * 1e9 + t.tv_nsec;
}

/* Calls fp(x) once: lets Lua code inside a callback re-enter through C. */
int ljt_call_int(int_fn fp, int x) { return fp(x); }

/* A plain C function, the reference for call overhead. */
int ljt_plain(int x) { return x + 1; }

/* Mean nanoseconds per call of fp over n calls on this thread. */
double ljt_loop_ns(int_fn fp, int n) {
  volatile int sink = 0;
  double t = now_ns();
  for (int i = 0; i < n; i++) sink += fp(i);
  return (now_ns() - t) / n;
}

struct worker {
  pthread_t tid;
  int_fn fp;
  int first, calls;
  long long sum;
  double cpu_ns;
  int cpu;  /* the CPU to run on, -1 = any */
  pthread_barrier_t *start;
};

static void *worker_main(void *arg) {
  struct worker *w = arg;
  if (w->cpu >= 0) {
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(w->cpu, &set);
    pthread_setaffinity_np(pthread_self(), sizeof set, &set);
  }
  pthread_barrier_wait(w->start);
  struct timespec c0, c1;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &c0);
  long long sum = 0;
  for (int i = 0; i < w->calls; i++) sum += w->fp(w->first + i);
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &c1);
  w->sum = sum;
  w->cpu_ns = (c1.tv_sec - c0.tv_sec) * 1e9 + (c1.tv_nsec - c0.tv_nsec);
  return NULL;
}

/* The parallel benchmark's work, in C: what two threads gain on this machine right now. */
int ljt_work(int x) {
  int s = x;
  for (int i = 1; i <= 20; i++) s = (int)(((long long)s * 31 + i) % 1000003);
  return s;
}

/* Starts nthreads threads together; thread t calls fp(t*calls + i) for i < calls.
   Stores each thread's sum of results in sums[t]; returns wall-clock ns, or -1 on failure.
   With cpu_ns (else NULL), thread t runs on the t-th CPU this process may use (so the threads
   overlap even on a busy machine) and cpu_ns gets the CPU time they spent, summed: unlike wall
   time, it does not grow when other processes take the CPUs, only when the calls contend. */
double ljt_call_threads_cpu(int_fn fp, int nthreads, int calls, long long *sums, double *cpu_ns) {
  struct worker *ws = calloc(nthreads, sizeof *ws);
  pthread_barrier_t start;
  if (!ws || pthread_barrier_init(&start, NULL, nthreads + 1)) return -1;
  cpu_set_t mine;
  int ncpus = cpu_ns && sched_getaffinity(0, sizeof mine, &mine) == 0 ? CPU_COUNT(&mine) : 0;
  for (int t = 0; t < nthreads; t++) {
    int cpu = -1;
    for (int c = 0, seen = 0; ncpus > 0 && c < CPU_SETSIZE; c++)
      if (CPU_ISSET(c, &mine) && seen++ == t % ncpus) { cpu = c; break; }
    ws[t] = (struct worker){ .fp = fp, .first = t * calls, .calls = calls, .cpu = cpu, .start = &start };
    if (pthread_create(&ws[t].tid, NULL, worker_main, &ws[t])) return -1;
  }
  pthread_barrier_wait(&start);
  double t0 = now_ns();
  for (int t = 0; t < nthreads; t++) pthread_join(ws[t].tid, NULL);
  double elapsed = now_ns() - t0;
  for (int t = 0; t < nthreads; t++) sums[t] = ws[t].sum;
  if (cpu_ns) {
    *cpu_ns = 0;
    for (int t = 0; t < nthreads; t++) *cpu_ns += ws[t].cpu_ns;
  }
  pthread_barrier_destroy(&start);
  free(ws);
  return elapsed;
}

double ljt_call_threads(int_fn fp, int nthreads, int calls, long long *sums) {
  return ljt_call_threads_cpu(fp, nthreads, calls, sums, NULL);
}

/* A C library that keeps a callback and calls it later from its own thread. */
struct later { pthread_t tid; int_fn fp; int arg; int result; };
static void *later_main(void *arg) {
  struct later *l = arg;
  l->result = l->fp(l->arg);
  return NULL;
}
void *ljt_call_later(int_fn fp, int arg) {
  struct later *l = calloc(1, sizeof *l);
  l->fp = fp; l->arg = arg;
  pthread_create(&l->tid, NULL, later_main, l);
  return l;
}
int ljt_call_later_join(void *p) {
  struct later *l = p;
  pthread_join(l->tid, NULL);
  int r = l->result;
  free(l);
  return r;
}

/* A stored function pointer, so a callback can re-enter itself through C. */
static int_fn stored;
void ljt_store(int_fn fp) { stored = fp; }
int ljt_call_stored(int x) { return stored(x); }

/* Flags shared by a test and the callbacks it runs (any state, any thread). */
static volatile int flags[16];
void ljt_flag_set(int i, int v) { __atomic_store_n(&flags[i], v, __ATOMIC_SEQ_CST); }
int ljt_flag_get(int i) { return __atomic_load_n(&flags[i], __ATOMIC_SEQ_CST); }

static void *set_after(void *arg) {
  intptr_t a = (intptr_t)arg;
  struct timespec ts = { 0, (a >> 8) * 1000000L };
  nanosleep(&ts, NULL);
  ljt_flag_set((int)(a & 0xff), 1);
  return NULL;
}
/* Sets flag i to 1 from another thread after ms milliseconds. */
void ljt_flag_set_after(int i, int ms) {
  pthread_t t;
  pthread_create(&t, NULL, set_after, (void *)(((intptr_t)ms << 8) | i));
  pthread_detach(t);
}
