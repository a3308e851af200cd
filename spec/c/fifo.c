/* The reference for channel benchmarks: a mutex + condvar ring FIFO in plain C, one producer
   thread pushing ints to a consumer on the calling thread. */
#define _GNU_SOURCE  /* RUSAGE_THREAD */
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <sys/resource.h>
#include <stdlib.h>
#include <time.h>

#define FIFO_CAP 4096

struct fifo {
  pthread_mutex_t mu;
  pthread_cond_t not_empty, not_full;
  int ring[FIFO_CAP];
  int head, count, pop_waiters, push_waiters;
  int n;
  int producer_on;       /* the CPU the producer pins itself to, or -1 (it inherits the mask) */
  double producer_cpu;   /* CPU seconds of the producer's loop */
};

/* CPU seconds this thread has used. */
static double thread_cpu_s(void) {
  struct rusage r;
  getrusage(RUSAGE_THREAD, &r);
  return r.ru_utime.tv_sec + r.ru_stime.tv_sec + (r.ru_utime.tv_usec + r.ru_stime.tv_usec) * 1e-6;
}

static double now_s(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec + t.tv_nsec * 1e-9;
}

static void *producer(void *arg) {
  struct fifo *f = arg;
  if (f->producer_on >= 0) {
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(f->producer_on, &set);
    sched_setaffinity(0, sizeof set, &set);
  }
  double c0 = thread_cpu_s();
  for (int i = 1; i <= f->n; i++) {
    pthread_mutex_lock(&f->mu);
    while (f->count == FIFO_CAP) {
      f->push_waiters++;
      pthread_cond_wait(&f->not_full, &f->mu);
      f->push_waiters--;
    }
    f->ring[(f->head + f->count) % FIFO_CAP] = i;
    f->count++;
    int wake = f->pop_waiters > 0;
    pthread_mutex_unlock(&f->mu);
    if (wake) pthread_cond_signal(&f->not_empty);
  }
  f->producer_cpu = thread_cpu_s() - c0;
  return NULL;
}

/* Pops one int: one lock per value, a condition wait while the ring is empty. */
static int fifo_pop(struct fifo *f) {
  pthread_mutex_lock(&f->mu);
  while (f->count == 0) {
    f->pop_waiters++;
    pthread_cond_wait(&f->not_empty, &f->mu);
    f->pop_waiters--;
  }
  int v = f->ring[f->head];
  f->head = (f->head + 1) % FIFO_CAP;
  f->count--;
  int wake = f->push_waiters > 0;
  pthread_mutex_unlock(&f->mu);
  if (wake) pthread_cond_signal(&f->not_full);
  return v;
}

/* Moves n ints (1..n) from a new producer thread to this one, one lock per value on both
   sides; returns values per second, or -1 on failure (or a wrong checksum). The clock starts
   once the first value has arrived, as sync_bench's channel rows do: the thread's start-up is
   not a message's cost (and a Lua thread's start-up, a new state, is far longer). If `cpu_ns`
   is not NULL it gets the CPU per value: [0] the producer's, [1] the consumer's, in ns. With
   `producer_on` >= 0 the producer runs on that CPU only (else where the caller's mask lets it). */
double ljt_fifo_rate(int n, double *cpu_ns, int producer_on) {
  struct fifo *f = calloc(1, sizeof *f);
  if (!f) return -1;
  pthread_mutex_init(&f->mu, NULL);
  pthread_cond_init(&f->not_empty, NULL);
  pthread_cond_init(&f->not_full, NULL);
  f->n = n;
  f->producer_on = producer_on;
  pthread_t tid;
  if (pthread_create(&tid, NULL, producer, f)) { free(f); return -1; }
  long long sum = fifo_pop(f);
  double t0 = now_s(), c0 = thread_cpu_s();
  for (int i = 1; i < n; i++) sum += fifo_pop(f);
  double rate = (n - 1) / (now_s() - t0);
  double consumer_cpu = thread_cpu_s() - c0;
  pthread_join(tid, NULL);
  if (cpu_ns) {
    cpu_ns[0] = f->producer_cpu / n * 1e9;
    cpu_ns[1] = consumer_cpu / (n - 1) * 1e9;
  }
  pthread_mutex_destroy(&f->mu);
  pthread_cond_destroy(&f->not_empty);
  pthread_cond_destroy(&f->not_full);
  free(f);
  return sum == (long long)n * (n + 1) / 2 ? rate : -1;
}
