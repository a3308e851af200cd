/* The reference for channel benchmarks: a mutex + condvar ring FIFO in plain C, one producer
   thread pushing ints to a consumer on the calling thread. */
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <time.h>

#define FIFO_CAP 4096

struct fifo {
  pthread_mutex_t mu;
  pthread_cond_t not_empty, not_full;
  int ring[FIFO_CAP];
  int head, count, pop_waiters, push_waiters;
  int n;
};

static double now_s(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec + t.tv_nsec * 1e-9;
}

static void *producer(void *arg) {
  struct fifo *f = arg;
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
   not a message's cost (and a Lua thread's start-up, a new state, is far longer). */
double ljt_fifo_rate(int n) {
  struct fifo *f = calloc(1, sizeof *f);
  if (!f) return -1;
  pthread_mutex_init(&f->mu, NULL);
  pthread_cond_init(&f->not_empty, NULL);
  pthread_cond_init(&f->not_full, NULL);
  f->n = n;
  pthread_t tid;
  if (pthread_create(&tid, NULL, producer, f)) { free(f); return -1; }
  long long sum = fifo_pop(f);
  double t0 = now_s();
  for (int i = 1; i < n; i++) sum += fifo_pop(f);
  double rate = (n - 1) / (now_s() - t0);
  pthread_join(tid, NULL);
  pthread_mutex_destroy(&f->mu);
  pthread_cond_destroy(&f->not_empty);
  pthread_cond_destroy(&f->not_full);
  free(f);
  return sum == (long long)n * (n + 1) / 2 ? rate : -1;
}
