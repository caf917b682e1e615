/* POSIX threads for enclave programs: pthread_create runs the new thread on
 * a free TCS of the calling process, entered by a host thread that the
 * tm_thread_spawn OCALL starts (tm_runtime_thread_run); join, detach, self,
 * equal, exit; mutexes (normal, recursive, error-checking), condition
 * variables, read-write locks, once, thread-specific data; and tm_wait /
 * tm_wake, the futex-style primitive they are built on.
 *
 * The host only ever holds a handle: a slot of the registry below and its
 * generation. tm_runtime_thread_run runs a record only if the handle names a live
 * record of the calling process that has not started yet, so a host cannot
 * run a thread twice, another process's thread, or a freed one. Waiting
 * leaves the enclave (tm_futex_wait); every wake-up is rechecked against
 * enclave memory, so a host that wakes early or late only delays. A wait
 * lasts at most kWaitSlice per OCALL: a wake from a thread of another
 * attached process (another host process) is seen within that slice.
 * Records live in shared enclave memory and are dropped when their process
 * ends (forget_threads_of, from tm_control_process_end), so no handle ever points
 * into a reclaimed arena.
 * Never contains a system call instruction; its headers are musl's. */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "posix_call.h"
#include "runtime.h"
#include "tm_posix_t.h"
#include "tm_runtime_t.h"

namespace teemate::trts {
namespace {

constexpr uint32_t kMaxThreads = 1024;    // pthread_create'd threads not yet joined, per enclave
constexpr uint32_t kMaxThreadsPerProcess = 128;  // of which one process may hold
constexpr uint32_t kMaxKeys = 32;         // thread-specific data keys (ThreadData::tsd)
constexpr int64_t kWaitSlice = 20000000;  // ns per waiting OCALL

enum ThreadState : uint32_t { kCreated = 0, kRunning = 1, kDone = 2 };

struct ThreadRecord {
  void* (*start)(void*);
  void* arg;
  void* result;
  volatile uint32_t state;     // ThreadState; tm_wait'ed on by joiners
  volatile uint32_t detached;
  // Who still needs the record: the thread and its joiner (or detacher);
  // the last to let go frees it.
  volatile uint32_t refs;
  uint32_t slot, generation;
  void* context;               // the creating process (ThreadData::context)
  jmp_buf exit_jmp;            // pthread_exit
};

// The registry: which handles are live. Deliberate shared state, under a lock.
struct Registry {
  tm_spinlock lock;
  ThreadRecord* records[kMaxThreads];
  uint32_t generations[kMaxThreads];
};
Registry g_registry = {TM_SPINLOCK_INIT, {}, {}};

// A key's generation changes when it is deleted, so that a value set under
// an older key of the same index reads as NULL (review defect).
struct KeyTable {
  tm_spinlock lock;
  uint32_t used[kMaxKeys];
  uint32_t generation[kMaxKeys];
  void (*destructors[kMaxKeys])(void*);
};
KeyTable g_keys = {TM_SPINLOCK_INIT, {}, {}, {}};

ThreadData* self_td() { return current_td(); }

uint64_t handle_of(const ThreadRecord* r) { return (uint64_t{r->generation} << 32) | (r->slot + 1); }

bool register_record(ThreadRecord* r) {
  tm_spin_lock(&g_registry.lock);
  // One process cannot take every slot from the others (review defect).
  uint32_t mine = 0;
  for (uint32_t i = 0; i < kMaxThreads; ++i) {
    mine += g_registry.records[i] && g_registry.records[i]->context == r->context;
  }
  bool ok = false;
  for (uint32_t i = 0; i < kMaxThreads && !ok && mine < kMaxThreadsPerProcess; ++i) {
    if (!g_registry.records[i]) {
      g_registry.records[i] = r;
      r->slot = i;
      r->generation = ++g_registry.generations[i];
      ok = true;
    }
  }
  tm_spin_unlock(&g_registry.lock);
  return ok;
}

void unregister_record(ThreadRecord* r) {
  tm_spin_lock(&g_registry.lock);
  if (g_registry.records[r->slot] == r) g_registry.records[r->slot] = nullptr;
  tm_spin_unlock(&g_registry.lock);
}

// The record a host-given handle names, if it belongs to `context` and has
// not started; it is marked running before the lock is dropped.
ThreadRecord* claim(uint64_t handle, void* context) {
  const uint64_t slot = (handle & 0xffffffffu) - 1;
  if ((handle & 0xffffffffu) == 0 || slot >= kMaxThreads) return nullptr;
  tm_spin_lock(&g_registry.lock);
  ThreadRecord* r = g_registry.records[slot];
  if (r && r->generation == (handle >> 32) && r->context == context && r->state == kCreated) {
    r->state = kRunning;
  } else {
    r = nullptr;
  }
  tm_spin_unlock(&g_registry.lock);
  return r;
}

// A record stays registered until its last user lets go, so that join and
// detach can check a pthread_t against the registry before touching it.
void release(ThreadRecord* r) {
  if (__atomic_sub_fetch(&r->refs, 1u, __ATOMIC_ACQ_REL) == 0) {
    unregister_record(r);
    tm_shared_free(r);
  }
}

// A pthread_t the caller gave us, if it names a registered record of the
// caller's own process (review defect: another process's threads).
ThreadRecord* known(pthread_t t) {
  auto* want = reinterpret_cast<ThreadRecord*>(t);
  ThreadRecord* found = nullptr;
  void* context = current_td()->context;
  tm_spin_lock(&g_registry.lock);
  for (uint32_t i = 0; i < kMaxThreads && !found; ++i) {
    if (want && g_registry.records[i] == want && want->context == context) found = want;
  }
  tm_spin_unlock(&g_registry.lock);
  return found;
}

void run_key_destructors(ThreadData* td) {
  for (int round = 0; round < 4; ++round) {
    bool any = false;
    for (uint32_t k = 0; k < kMaxKeys; ++k) {
      void* v = td->tsd[k];
      void (*d)(void*) = g_keys.destructors[k];
      if (v && d && g_keys.used[k] && td->tsd_gen[k] == g_keys.generation[k]) {
        td->tsd[k] = nullptr;
        d(v);
        any = true;
      }
    }
    if (!any) break;
  }
}

// Absolute CLOCK_REALTIME deadline -> nanoseconds left (0 when passed;
// saturated, never overflowing, for far-future deadlines).
int64_t left_until(const struct timespec* abstime) {
  struct timespec now;
  clock_gettime(CLOCK_REALTIME, &now);
  int64_t secs, ns;
  if (__builtin_sub_overflow(static_cast<int64_t>(abstime->tv_sec), static_cast<int64_t>(now.tv_sec), &secs)) {
    return abstime->tv_sec > 0 ? INT64_MAX : 0;
  }
  if (secs > 1000000000) return INT64_MAX;  // beyond 30 years: as good as never
  if (secs < -1) return 0;
  ns = secs * 1000000000 + (abstime->tv_nsec - now.tv_nsec);
  return ns > 0 ? ns : 0;
}

bool valid_abstime(const struct timespec* t) { return t && t->tv_nsec >= 0 && t->tv_nsec < 1000000000; }

}  // namespace

int thread_run(uint64_t handle) {
  ThreadData* td = self_td();
  // Only as an outermost ECALL on a TCS of its own: a host that ran it
  // inside the spawn OCALL, on the creator's TCS, would wipe the creator's
  // thread state (review defect).
  if (!td->current_ecall || td->current_ecall->outer) return TM_ERR_INVALID;
  ThreadRecord* r = claim(handle, td->context);
  if (!r) return TM_ERR_INVALID;
  void* previous = td->pthread;
  td->pthread = r;
  memset(td->tsd, 0, sizeof td->tsd);
  if (setjmp(r->exit_jmp) == 0) r->result = r->start(r->arg);
  run_key_destructors(td);
  td->pthread = previous;
  __atomic_store_n(&r->state, static_cast<uint32_t>(kDone), __ATOMIC_RELEASE);
  tm_wake(&r->state);  // the key is the address: the record is not read
  release(r);
  return TM_OK;
}

void abandon_thread(ThreadData* td, void* previous) {
  auto* r = static_cast<ThreadRecord*>(td->pthread);
  td->pthread = previous;
  if (!r) return;
  r->result = PTHREAD_CANCELED;
  __atomic_store_n(&r->state, static_cast<uint32_t>(kDone), __ATOMIC_RELEASE);
  tm_wake(&r->state);
  release(r);
}

void forget_threads_of(void* context) {
  tm_spin_lock(&g_registry.lock);
  for (uint32_t i = 0; i < kMaxThreads; ++i) {
    ThreadRecord* r = g_registry.records[i];
    if (r && r->context == context) {
      g_registry.records[i] = nullptr;
      tm_shared_free(r);  // its process is gone: no thread, joiner or detacher is left
    }
  }
  tm_spin_unlock(&g_registry.lock);
}

}  // namespace teemate::trts

using namespace teemate;
using namespace teemate::trts;

extern "C" {

int tm_wait(volatile uint32_t* addr, uint32_t expected, int64_t timeout_ns) {
  const uint64_t key = reinterpret_cast<uint64_t>(addr);
  struct timespec start;
  clock_gettime(CLOCK_MONOTONIC, &start);
  for (;;) {
    int64_t seq = 0;
    if (tm_futex_seq(&seq, key) != TM_OK || seq < 0) seq = 0;
    if (__atomic_load_n(addr, __ATOMIC_ACQUIRE) != expected) return 0;
    int64_t slice = kWaitSlice;
    if (timeout_ns >= 0) {
      // Time since the call began, every OCALL included (review defect).
      struct timespec now;
      clock_gettime(CLOCK_MONOTONIC, &now);
      const int64_t spent = (now.tv_sec - start.tv_sec) * 1000000000 + (now.tv_nsec - start.tv_nsec);
      if (spent >= timeout_ns) return ETIMEDOUT;
      if (timeout_ns - spent < slice) slice = timeout_ns - spent;
    }
    int64_t r = 0;
    (void)tm_futex_wait(&r, key, static_cast<uint64_t>(seq), slice);  // any answer: recheck
  }
}

void tm_wake(volatile uint32_t* addr) {
  int64_t r = 0;
  (void)tm_futex_wake(&r, reinterpret_cast<uint64_t>(addr));
}

// ---- threads -----------------------------------------------------------------

int pthread_create(pthread_t* out, const pthread_attr_t* attr, void* (*start)(void*), void* arg) {
  if (!out || !start) return EINVAL;
  auto* r = static_cast<ThreadRecord*>(tm_shared_calloc(1, sizeof(ThreadRecord)));
  if (!r) return EAGAIN;
  r->start = start;
  r->arg = arg;
  r->context = self_td()->context;
  int detach = PTHREAD_CREATE_JOINABLE;
  if (attr) pthread_attr_getdetachstate(attr, &detach);
  r->detached = detach == PTHREAD_CREATE_DETACHED;
  // The thread's and the joiner's references, and ours until the spawn
  // OCALL has answered: a host that runs the thread to its end and then
  // reports a failure must not make us touch a freed record (review defect).
  r->refs = r->detached ? 2 : 3;
  if (!register_record(r)) {
    tm_shared_free(r);
    return EAGAIN;
  }
  const long long started = host_call([&](int64_t* p) { return tm_thread_spawn(p, handle_of(r)); }, 0);
  const int e = errno == EAGAIN || errno == ENOMEM ? EAGAIN : errno;
  if (started < 0) {
    // Take it back unless the (lying) host ran it anyway: no later claim
    // can succeed once it is unregistered.
    tm_spin_lock(&g_registry.lock);
    const bool never_ran = r->state == kCreated;
    if (never_ran) {
      g_registry.records[r->slot] = nullptr;
      r->state = kDone;
    }
    tm_spin_unlock(&g_registry.lock);
    if (never_ran) {
      tm_shared_free(r);
      return e;
    }
  }
  *out = reinterpret_cast<pthread_t>(r);
  release(r);  // ours
  return 0;
}

int pthread_join(pthread_t t, void** result) {
  ThreadRecord* r = known(t);
  if (!r) return ESRCH;
  if (r == self_td()->pthread) return EDEADLK;
  if (r->detached) return EINVAL;
  uint32_t s;
  while ((s = __atomic_load_n(&r->state, __ATOMIC_ACQUIRE)) != kDone) tm_wait(&r->state, s, -1);
  if (result) *result = r->result;
  release(r);
  return 0;
}

int pthread_detach(pthread_t t) {
  ThreadRecord* r = known(t);
  if (!r) return ESRCH;
  if (__atomic_exchange_n(&r->detached, 1u, __ATOMIC_ACQ_REL)) return EINVAL;
  release(r);
  return 0;
}

pthread_t pthread_self(void) {
  ThreadData* td = self_td();
  return td->pthread ? reinterpret_cast<pthread_t>(td->pthread) : reinterpret_cast<pthread_t>(td);
}

int pthread_equal(pthread_t a, pthread_t b) { return a == b; }

void pthread_exit(void* value) {
  auto* r = static_cast<ThreadRecord*>(self_td()->pthread);
  if (!r) tm_abort("pthread_exit outside a thread that pthread_create started");
  r->result = value;
  longjmp(r->exit_jmp, 1);
}

// ---- attributes --------------------------------------------------------------

int pthread_attr_init(pthread_attr_t* a) {
  memset(a, 0, sizeof *a);
  return 0;
}
int pthread_attr_destroy(pthread_attr_t*) { return 0; }
int pthread_attr_setdetachstate(pthread_attr_t* a, int state) {
  if (state != PTHREAD_CREATE_JOINABLE && state != PTHREAD_CREATE_DETACHED) return EINVAL;
  a->__u.__i[3 * sizeof(long) / 4] = state;
  return 0;
}
int pthread_attr_getdetachstate(const pthread_attr_t* a, int* state) {
  *state = a->__u.__i[3 * sizeof(long) / 4];
  return 0;
}
// The stack is the TCS's (enclave.toml stack_size): sizes are accepted, not used.
int pthread_attr_setstacksize(pthread_attr_t*, size_t size) { return size < 2048 ? EINVAL : 0; }

// ---- mutexes -----------------------------------------------------------------
// __vi[0]: 0 free, 1 taken; __i[1]: type; __vi[2]: owner (pthread_self's
// low 32 bits + 1); __i[3]: recursion count.

int pthread_mutexattr_init(pthread_mutexattr_t* a) {
  a->__attr = 0;
  return 0;
}
int pthread_mutexattr_destroy(pthread_mutexattr_t*) { return 0; }
int pthread_mutexattr_settype(pthread_mutexattr_t* a, int type) {
  if (type < PTHREAD_MUTEX_NORMAL || type > PTHREAD_MUTEX_ERRORCHECK) return EINVAL;
  a->__attr = static_cast<unsigned>(type);
  return 0;
}
int pthread_mutexattr_gettype(const pthread_mutexattr_t* a, int* type) {
  *type = static_cast<int>(a->__attr & 3);
  return 0;
}

int pthread_mutex_init(pthread_mutex_t* m, const pthread_mutexattr_t* a) {
  memset(m, 0, sizeof *m);
  m->__u.__i[1] = a ? static_cast<int>(a->__attr & 3) : PTHREAD_MUTEX_NORMAL;
  return 0;
}
int pthread_mutex_destroy(pthread_mutex_t*) { return 0; }

static int me() { return static_cast<int>(static_cast<uint32_t>(pthread_self() >> 4)) | 1; }

int pthread_mutex_trylock(pthread_mutex_t* m) {
  const int type = m->__u.__i[1];
  if (type != PTHREAD_MUTEX_NORMAL && m->__u.__vi[2] == me()) {
    if (type == PTHREAD_MUTEX_ERRORCHECK) return EBUSY;
    ++m->__u.__i[3];
    return 0;
  }
  int expected = 0;
  if (!__atomic_compare_exchange_n(&m->__u.__vi[0], &expected, 1, false, __ATOMIC_ACQUIRE, __ATOMIC_RELAXED)) {
    return EBUSY;
  }
  m->__u.__vi[2] = me();
  m->__u.__i[3] = 1;
  return 0;
}

int pthread_mutex_lock(pthread_mutex_t* m) {
  const int type = m->__u.__i[1];
  if (type == PTHREAD_MUTEX_ERRORCHECK && m->__u.__vi[2] == me()) return EDEADLK;
  for (int spins = 0;; ++spins) {
    if (pthread_mutex_trylock(m) == 0) return 0;
    if (spins < 100) {
      __builtin_ia32_pause();
      continue;
    }
    tm_wait(reinterpret_cast<volatile uint32_t*>(&m->__u.__vi[0]), 1, -1);
  }
}

int pthread_mutex_timedlock(pthread_mutex_t* m, const struct timespec* abstime) {
  if (!valid_abstime(abstime)) return EINVAL;
  for (;;) {
    if (pthread_mutex_trylock(m) == 0) return 0;
    const int64_t left = left_until(abstime);
    if (left == 0) return ETIMEDOUT;
    tm_wait(reinterpret_cast<volatile uint32_t*>(&m->__u.__vi[0]), 1, left);
  }
}

int pthread_mutex_unlock(pthread_mutex_t* m) {
  const int type = m->__u.__i[1];
  if (type != PTHREAD_MUTEX_NORMAL && m->__u.__vi[2] != me()) return EPERM;
  if (type == PTHREAD_MUTEX_RECURSIVE && --m->__u.__i[3] > 0) return 0;
  m->__u.__vi[2] = 0;
  __atomic_store_n(&m->__u.__vi[0], 0, __ATOMIC_RELEASE);
  tm_wake(reinterpret_cast<volatile uint32_t*>(&m->__u.__vi[0]));
  return 0;
}

// ---- condition variables: __vi[0] is a sequence bumped by every signal ----

int pthread_condattr_init(pthread_condattr_t* a) {
  a->__attr = 0;
  return 0;
}
int pthread_condattr_destroy(pthread_condattr_t*) { return 0; }
int pthread_cond_init(pthread_cond_t* c, const pthread_condattr_t*) {
  memset(c, 0, sizeof *c);
  return 0;
}
int pthread_cond_destroy(pthread_cond_t*) { return 0; }

static int cond_wait(pthread_cond_t* c, pthread_mutex_t* m, const struct timespec* abstime) {
  auto* seq = reinterpret_cast<volatile uint32_t*>(&c->__u.__vi[0]);
  const uint32_t seen = __atomic_load_n(seq, __ATOMIC_ACQUIRE);
  if (int e = pthread_mutex_unlock(m)) return e;
  int rc = 0;
  if (abstime) {
    const int64_t left = left_until(abstime);
    rc = left == 0 ? ETIMEDOUT : tm_wait(seq, seen, left);
  } else {
    tm_wait(seq, seen, -1);
  }
  pthread_mutex_lock(m);
  return rc;
}

int pthread_cond_wait(pthread_cond_t* c, pthread_mutex_t* m) { return cond_wait(c, m, nullptr); }
int pthread_cond_timedwait(pthread_cond_t* c, pthread_mutex_t* m, const struct timespec* abstime) {
  if (!valid_abstime(abstime)) return EINVAL;
  return cond_wait(c, m, abstime);
}
int pthread_cond_signal(pthread_cond_t* c) {
  __atomic_add_fetch(&c->__u.__vi[0], 1, __ATOMIC_RELEASE);
  tm_wake(reinterpret_cast<volatile uint32_t*>(&c->__u.__vi[0]));
  return 0;
}
int pthread_cond_broadcast(pthread_cond_t* c) { return pthread_cond_signal(c); }

// ---- read-write locks: __vi[0] = readers, or -1 for a writer -------------

int pthread_rwlock_init(pthread_rwlock_t* l, const pthread_rwlockattr_t*) {
  memset(l, 0, sizeof *l);
  return 0;
}
int pthread_rwlock_destroy(pthread_rwlock_t*) { return 0; }
int pthread_rwlock_tryrdlock(pthread_rwlock_t* l) {
  int v = __atomic_load_n(&l->__u.__vi[0], __ATOMIC_RELAXED);
  while (v >= 0) {
    if (__atomic_compare_exchange_n(&l->__u.__vi[0], &v, v + 1, false, __ATOMIC_ACQUIRE, __ATOMIC_RELAXED)) return 0;
  }
  return EBUSY;
}
int pthread_rwlock_trywrlock(pthread_rwlock_t* l) {
  int expected = 0;
  return __atomic_compare_exchange_n(&l->__u.__vi[0], &expected, -1, false, __ATOMIC_ACQUIRE, __ATOMIC_RELAXED)
             ? 0
             : EBUSY;
}
int pthread_rwlock_rdlock(pthread_rwlock_t* l) {
  while (pthread_rwlock_tryrdlock(l) != 0) {
    tm_wait(reinterpret_cast<volatile uint32_t*>(&l->__u.__vi[0]), static_cast<uint32_t>(-1), -1);
  }
  return 0;
}
int pthread_rwlock_wrlock(pthread_rwlock_t* l) {
  int v;
  while (pthread_rwlock_trywrlock(l) != 0) {
    if ((v = __atomic_load_n(&l->__u.__vi[0], __ATOMIC_RELAXED)) != 0) {
      tm_wait(reinterpret_cast<volatile uint32_t*>(&l->__u.__vi[0]), static_cast<uint32_t>(v), -1);
    }
  }
  return 0;
}
int pthread_rwlock_unlock(pthread_rwlock_t* l) {
  int v = __atomic_load_n(&l->__u.__vi[0], __ATOMIC_RELAXED);
  do {
    if (v == 0) return EPERM;
  } while (!__atomic_compare_exchange_n(&l->__u.__vi[0], &v, v < 0 ? 0 : v - 1, false, __ATOMIC_RELEASE,
                                        __ATOMIC_RELAXED));
  tm_wake(reinterpret_cast<volatile uint32_t*>(&l->__u.__vi[0]));
  return 0;
}

// ---- once ------------------------------------------------------------------

int pthread_once(pthread_once_t* once, void (*fn)(void)) {
  auto* w = reinterpret_cast<volatile uint32_t*>(once);
  for (;;) {
    uint32_t expected = 0;
    if (__atomic_compare_exchange_n(w, &expected, 1u, false, __ATOMIC_ACQUIRE, __ATOMIC_ACQUIRE)) {
      // Recorded so that an abandoned routine (a fault, tm_abort, its
      // process killed) frees the word for the next caller (review defect).
      ThreadData* td = self_td();
      volatile uint32_t* outer = td->running_once;
      td->running_once = w;
      fn();
      td->running_once = outer;
      __atomic_store_n(w, 2u, __ATOMIC_RELEASE);
      tm_wake(w);
      return 0;
    }
    if (expected == 2) return 0;
    // Running elsewhere: wait, then look again (back to 0 if it was abandoned).
    while (__atomic_load_n(w, __ATOMIC_ACQUIRE) == 1) tm_wait(w, 1, -1);
  }
}

// ---- thread-specific data ----------------------------------------------------

int pthread_key_create(pthread_key_t* key, void (*destructor)(void*)) {
  tm_spin_lock(&g_keys.lock);
  int rc = EAGAIN;
  for (uint32_t k = 0; k < kMaxKeys; ++k) {
    if (!g_keys.used[k]) {
      g_keys.used[k] = 1;
      g_keys.destructors[k] = destructor;
      *key = k;
      rc = 0;
      break;
    }
  }
  tm_spin_unlock(&g_keys.lock);
  return rc;
}

int pthread_key_delete(pthread_key_t key) {
  if (key >= kMaxKeys) return EINVAL;
  tm_spin_lock(&g_keys.lock);
  const int rc = g_keys.used[key] ? 0 : EINVAL;
  g_keys.used[key] = 0;
  ++g_keys.generation[key];
  g_keys.destructors[key] = nullptr;
  tm_spin_unlock(&g_keys.lock);
  return rc;
}

void* pthread_getspecific(pthread_key_t key) {
  if (key >= kMaxKeys) return nullptr;
  ThreadData* td = self_td();
  return td->tsd_gen[key] == __atomic_load_n(&g_keys.generation[key], __ATOMIC_ACQUIRE) ? td->tsd[key] : nullptr;
}

int pthread_setspecific(pthread_key_t key, const void* value) {
  if (key >= kMaxKeys || !g_keys.used[key]) return EINVAL;
  ThreadData* td = self_td();
  td->tsd[key] = const_cast<void*>(value);
  td->tsd_gen[key] = __atomic_load_n(&g_keys.generation[key], __ATOMIC_ACQUIRE);
  return 0;
}

}  // extern "C"

// The typed ECALL of tm_runtime.edl.
extern "C" int tm_runtime_thread_run(uint64_t handle) { return teemate::trts::thread_run(handle); }
