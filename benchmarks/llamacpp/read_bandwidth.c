// Read-only memory bandwidth of this machine, the reference for decode (which streams every weight once per
// token): each of `threads` threads sums its part of a buffer far larger than the caches, best of `reps` passes.
// Compiled by run.mjs with -O3 -march=native, so the sum is vectorised with the widest loads the CPU has.
//
//   read-bandwidth <MiB> <reps> <threads>   ->   prints {"bytes":...,"bestSec":...,"bytesPerSec":...}
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct {
  const uint64_t* p;
  size_t n;
  uint64_t sum;
} Part;

static void* sum_part(void* arg) {
  Part* part = (Part*)arg;
  uint64_t s = 0;  // integer sum: vectorised without reassociation flags
  for (size_t i = 0; i < part->n; ++i) s += part->p[i];
  part->sum = s;
  return NULL;
}

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

int main(int argc, char** argv) {
  if (argc != 4) {
    fprintf(stderr, "usage: read-bandwidth <MiB> <reps> <threads>\n");
    return 1;
  }
  const size_t mib = strtoull(argv[1], NULL, 10);
  const int reps = atoi(argv[2]), threads = atoi(argv[3]);
  if (mib < 1 || reps < 1 || threads < 1 || threads > 1024) {
    fprintf(stderr, "read-bandwidth: expected MiB >= 1, reps >= 1, 1 <= threads <= 1024\n");
    return 1;
  }
  const size_t bytes = mib << 20, n = bytes / 8;
  uint64_t* buf = aligned_alloc(64, bytes);
  if (!buf) {
    fprintf(stderr, "read-bandwidth: cannot allocate %zu MiB\n", mib);
    return 1;
  }
  for (size_t i = 0; i < n; ++i) buf[i] = i;  // touches every page before timing
  Part parts[1024];
  pthread_t tids[1024];
  const size_t per = n / (size_t)threads;
  double best = 1e30;
  uint64_t check = 0;
  for (int r = 0; r < reps; ++r) {
    const double t0 = now();
    for (int t = 0; t < threads; ++t) {
      parts[t] = (Part){buf + (size_t)t * per, per, 0};
      if (t > 0) pthread_create(&tids[t], NULL, sum_part, &parts[t]);
    }
    sum_part(&parts[0]);
    for (int t = 1; t < threads; ++t) pthread_join(tids[t], NULL);
    const double sec = now() - t0;
    if (sec < best) best = sec;
    for (int t = 0; t < threads; ++t) check += parts[t].sum;
  }
  // The sum of 0..per*threads-1 per pass: proves every word was read.
  const uint64_t m = per * (uint64_t)threads;
  const uint64_t expect = (uint64_t)reps * (m % 2 == 0 ? (m / 2) * (m - 1) : m * ((m - 1) / 2));
  if (check != expect) {
    fprintf(stderr, "read-bandwidth: wrong sum\n");
    return 1;
  }
  printf("{\"bytes\":%zu,\"threads\":%d,\"bestSec\":%.9f,\"bytesPerSec\":%.1f}\n", per * threads * 8, threads, best,
         (double)(per * threads * 8) / best);
  free(buf);
  return 0;
}
