/* The threads test enclave: main(argv[1] = scenario) exercises pthreads in
 * the enclave (create, join, detach, mutex, condvar, rwlock, once, keys,
 * pthread_exit, EAGAIN when no TCS is free) and prints "SCENARIO ok" or the
 * first failed step. Driven by tests/integration/threads_test.cpp. */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "teemate/trusted/runtime.h"

#define CHECK(cond, step)                 \
  do {                                    \
    if (!(cond)) {                        \
      printf("FAILED %s\n", step);        \
      return 1;                           \
    }                                     \
  } while (0)

static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t g_cv = PTHREAD_COND_INITIALIZER;
static long g_counter;
static int g_ready;

static void* add_many(void* arg) {
  for (int i = 0; i < 20000; ++i) {
    pthread_mutex_lock(&g_mu);
    ++g_counter;
    pthread_mutex_unlock(&g_mu);
  }
  return arg;
}

static void* wait_ready(void* arg) {
  pthread_mutex_lock(&g_mu);
  while (!g_ready) pthread_cond_wait(&g_cv, &g_mu);
  pthread_mutex_unlock(&g_mu);
  return (void*)((long)arg * 2);
}

static int g_once_runs;
static void once_fn(void) { ++g_once_runs; }
static void* call_once(void* arg) {
  static pthread_once_t once = PTHREAD_ONCE_INIT;
  pthread_once(&once, once_fn);
  return arg;
}

static pthread_key_t g_key;
static int g_destroyed;
static void destroy(void* v) { g_destroyed += (int)(long)v; }
static void* use_key(void* arg) {
  pthread_setspecific(g_key, arg);
  if (pthread_getspecific(g_key) != arg) return (void*)1;
  pthread_exit((void*)42); /* destructors still run */
  return 0;
}

static volatile uint32_t g_flag;
static void* sleep_then_wake(void* arg) {
  struct timespec t = {0, 50 * 1000 * 1000};
  nanosleep(&t, 0);
  __atomic_store_n(&g_flag, 1, __ATOMIC_RELEASE);
  tm_wake(&g_flag);
  return arg;
}

static void* block_forever(void* arg) {
  while (!__atomic_load_n(&g_flag, __ATOMIC_ACQUIRE)) tm_wait(&g_flag, 0, -1);
  return arg;
}

/* thread_local: each thread starts from the template (5, and zero). */
static _Thread_local int tl_init = 5;
static _Thread_local long tl_zero;
static void* bump_locals(void* arg) {
  if (tl_init != 5 || tl_zero != 0) return (void*)-1;
  for (long i = 0; i < 1000 + (long)arg; ++i) ++tl_zero;
  tl_init = 99;
  return (void*)tl_zero;
}

static int basics(void) {
  tl_init = 6;
  pthread_t tl[3];
  for (long i = 0; i < 3; ++i) CHECK(pthread_create(&tl[i], 0, bump_locals, (void*)i) == 0, "create tls");
  for (long i = 0; i < 3; ++i) {
    void* r = 0;
    CHECK(pthread_join(tl[i], &r) == 0 && r == (void*)(1000 + i), "thread_local per thread");
  }
  CHECK(tl_init == 6 && tl_zero == 0, "main's thread_local untouched");

  pthread_t t[3];
  for (long i = 0; i < 3; ++i) CHECK(pthread_create(&t[i], 0, add_many, (void*)i) == 0, "create");
  for (long i = 0; i < 3; ++i) {
    void* r = 0;
    CHECK(pthread_join(t[i], &r) == 0 && r == (void*)i, "join result");
  }
  CHECK(g_counter == 60000, "mutex counter");

  for (long i = 0; i < 3; ++i) CHECK(pthread_create(&t[i], 0, wait_ready, (void*)(i + 1)) == 0, "create waiter");
  struct timespec t10 = {0, 10 * 1000 * 1000};
  nanosleep(&t10, 0);
  pthread_mutex_lock(&g_mu);
  g_ready = 1;
  pthread_cond_broadcast(&g_cv);
  pthread_mutex_unlock(&g_mu);
  for (long i = 0; i < 3; ++i) {
    void* r = 0;
    CHECK(pthread_join(t[i], &r) == 0 && r == (void*)((i + 1) * 2), "condvar join");
  }

  for (long i = 0; i < 3; ++i) CHECK(pthread_create(&t[i], 0, call_once, 0) == 0, "create once");
  for (long i = 0; i < 3; ++i) CHECK(pthread_join(t[i], 0) == 0, "join once");
  CHECK(g_once_runs == 1, "once ran once");

  CHECK(pthread_key_create(&g_key, destroy) == 0, "key create");
  void* r = 0;
  CHECK(pthread_create(&t[0], 0, use_key, (void*)7) == 0 && pthread_join(t[0], &r) == 0, "key thread");
  CHECK(r == (void*)42 && g_destroyed == 7, "pthread_exit value and key destructor");
  CHECK(pthread_getspecific(g_key) == 0, "main thread's key value is its own");

  pthread_attr_t a;
  pthread_attr_init(&a);
  pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
  CHECK(pthread_create(&t[0], &a, sleep_then_wake, 0) == 0, "detached create");
  CHECK(tm_wait(&g_flag, 0, 5LL * 1000 * 1000 * 1000) == 0 && g_flag == 1, "tm_wait woken by a detached thread");
  g_flag = 0;
  CHECK(tm_wait(&g_flag, 0, 30 * 1000 * 1000) == ETIMEDOUT, "tm_wait times out");

  pthread_rwlock_t rw;
  pthread_rwlock_init(&rw, 0);
  CHECK(pthread_rwlock_rdlock(&rw) == 0 && pthread_rwlock_tryrdlock(&rw) == 0, "two readers");
  CHECK(pthread_rwlock_trywrlock(&rw) == EBUSY, "writer waits for readers");
  CHECK(pthread_rwlock_unlock(&rw) == 0 && pthread_rwlock_unlock(&rw) == 0 && pthread_rwlock_wrlock(&rw) == 0,
        "writer after readers");
  CHECK(pthread_rwlock_tryrdlock(&rw) == EBUSY && pthread_rwlock_unlock(&rw) == 0, "readers wait for the writer");

  pthread_mutexattr_t ma;
  pthread_mutexattr_init(&ma);
  pthread_mutexattr_settype(&ma, PTHREAD_MUTEX_RECURSIVE);
  pthread_mutex_t rec;
  pthread_mutex_init(&rec, &ma);
  CHECK(pthread_mutex_lock(&rec) == 0 && pthread_mutex_lock(&rec) == 0 && pthread_mutex_unlock(&rec) == 0 &&
            pthread_mutex_unlock(&rec) == 0 && pthread_mutex_unlock(&rec) == EPERM,
        "recursive mutex");
  pthread_mutexattr_settype(&ma, PTHREAD_MUTEX_ERRORCHECK);
  pthread_mutex_t ec;
  pthread_mutex_init(&ec, &ma);
  CHECK(pthread_mutex_lock(&ec) == 0 && pthread_mutex_lock(&ec) == EDEADLK && pthread_mutex_unlock(&ec) == 0,
        "error-checking mutex");
  CHECK(pthread_join(pthread_self(), 0) == EDEADLK || pthread_join(pthread_self(), 0) == ESRCH, "join self");
  printf("basics ok\n");
  return 0;
}

/* More threads than free TCS: the extra pthread_create fails with EAGAIN. */
static int exhaust(void) {
  pthread_t t[8];
  int made = 0, again = 0;
  g_flag = 0;
  for (int i = 0; i < 8; ++i) {
    int rc = pthread_create(&t[made], 0, block_forever, 0);
    if (rc == 0) ++made;
    else if (rc == EAGAIN) ++again;
  }
  CHECK(made == 4 && again == 4, "4 TCS free besides main's: 4 threads, then EAGAIN");
  __atomic_store_n(&g_flag, 1, __ATOMIC_RELEASE);
  tm_wake(&g_flag);
  for (int i = 0; i < made; ++i) CHECK(pthread_join(t[i], 0) == 0, "join blocked");
  CHECK(pthread_create(&t[0], 0, block_forever, 0) == 0 && pthread_join(t[0], 0) == 0, "TCS come back");
  printf("exhaust ok\n");
  return 0;
}

static void* ret_arg(void* arg) { return arg; }

static int one(void) {
  pthread_t t;
  CHECK(pthread_create(&t, 0, ret_arg, (void*)5) == 0, "create one");
  void* r = 0;
  CHECK(pthread_join(t, &r) == 0 && r == (void*)5, "join one");
  printf("one ok\n");
  return 0;
}

/* ---- regressions of the threads review ---- */
static void* aborts(void* arg) {
  (void)arg;
  tm_abort("a thread gives up");
  return 0;
}

static int g_review_once_runs;
static void once_that_aborts(void) {
  ++g_review_once_runs;
  if (g_review_once_runs == 1) tm_abort("once routine gives up");
}
static pthread_once_t g_review_once = PTHREAD_ONCE_INIT;
static void* run_once(void* arg) {
  pthread_once(&g_review_once, once_that_aborts);
  return arg;
}

static void* signal_later(void* arg) {
  struct timespec t = {0, 50 * 1000 * 1000};
  nanosleep(&t, 0);
  pthread_mutex_lock(&g_mu);
  g_ready = 2;
  pthread_cond_signal(&g_cv);
  pthread_mutex_unlock(&g_mu);
  return arg;
}

static int review(void) {
  /* An aborted thread still ends: join returns PTHREAD_CANCELED, and its
   * slot comes back (more aborted threads than the registry holds). */
  for (int i = 0; i < 200; ++i) {
    pthread_t t;
    void* r = 0;
    CHECK(pthread_create(&t, 0, aborts, 0) == 0, "create aborting thread");
    CHECK(pthread_join(t, &r) == 0 && r == PTHREAD_CANCELED, "join an aborted thread");
  }
  /* A pthread_once routine that aborted lets the next caller run it. */
  pthread_t t;
  CHECK(pthread_create(&t, 0, run_once, 0) == 0 && pthread_join(t, 0) == 0, "once that aborts");
  pthread_once(&g_review_once, once_that_aborts);
  CHECK(g_review_once_runs == 2, "once ran again after its routine aborted");
  /* A deleted and re-created key reads NULL. */
  pthread_key_t k1, k2;
  CHECK(pthread_key_create(&k1, 0) == 0 && pthread_setspecific(k1, (void*)0xdead) == 0, "key 1");
  CHECK(pthread_key_delete(k1) == 0 && pthread_key_create(&k2, 0) == 0, "key 2");
  CHECK(pthread_getspecific(k2) == 0, "a re-created key reads NULL");
  /* Far-future deadlines wait; malformed ones are EINVAL. */
  struct timespec far = {(time_t)1 << 62, 0};
  g_ready = 0;
  CHECK(pthread_create(&t, 0, signal_later, 0) == 0, "create signaller");
  pthread_mutex_lock(&g_mu);
  int rc = 0;
  while (g_ready != 2 && rc == 0) rc = pthread_cond_timedwait(&g_cv, &g_mu, &far);
  pthread_mutex_unlock(&g_mu);
  CHECK(rc == 0 && g_ready == 2, "timedwait with a far-future deadline waits");
  CHECK(pthread_join(t, 0) == 0, "join signaller");
  struct timespec bad = {0, 2000000000};
  CHECK(pthread_mutex_timedlock(&g_mu, &bad) == EINVAL, "timedlock with a bad tv_nsec");
  /* Create right after join, every TCS used each round. */
  for (int round = 0; round < 50; ++round) {
    pthread_t ts[4];
    for (int i = 0; i < 4; ++i) CHECK(pthread_create(&ts[i], 0, ret_arg, 0) == 0, "create after join");
    for (int i = 0; i < 4; ++i) CHECK(pthread_join(ts[i], 0) == 0, "join round");
  }
  printf("review ok\n");
  return 0;
}

int main(int argc, char** argv) {
  if (argc < 2) return 2;
  if (strcmp(argv[1], "review") == 0) return review();
  if (strcmp(argv[1], "one") == 0) return one();
  if (strcmp(argv[1], "basics") == 0) return basics();
  if (strcmp(argv[1], "exhaust") == 0) return exhaust();
  return 2;
}
