/* Runtime locks that survive the death of their holder. tm_spinlock's word
 * holds the holder's thread-data address, written by the compare-and-swap
 * that takes it (no window between taking a lock and recording its owner),
 * and each thread lists the locks it holds or is about to take in its
 * thread data before it tries. When a process ends, tm_control_process_end calls
 * release_dead_locks for each of its threads: every listed lock whose word
 * still names that thread is released (a heap's update is rolled back
 * first). In a control ECALL a lock that stays taken fails the call with
 * kErrBusy rather than spinning for ever (its holder may be a thread of a
 * process the daemon has not recovered yet). Never calls the host except
 * through tm_abort on a misuse. */
#include <setjmp.h>

#include "runtime.h"

namespace teemate::trts {
namespace {

// About 30-100 ms of PAUSE, depending on the CPU.
constexpr uint64_t kControlSpinLimit = uint64_t{1} << 21;

inline ThreadData* self_td() {
  ThreadData* td;
  __asm__ volatile("rdgsbase %0" : "=r"(td));
  return td;
}

inline void ordered() { __atomic_signal_fence(__ATOMIC_SEQ_CST); }

void note(ThreadData* td, tm_spinlock* l) {
  const uint32_t n = td->nheld_locks;
  if (n >= kMaxHeldLocks) tm_abort("a thread holds more than 32 runtime locks");
  td->held_locks[n] = reinterpret_cast<uint64_t>(l);
  ordered();
  td->nheld_locks = n + 1;
  ordered();
}

void forget(ThreadData* td, tm_spinlock* l) {
  const uint64_t key = reinterpret_cast<uint64_t>(l);
  for (uint32_t i = td->nheld_locks; i-- > 0;) {
    if (td->held_locks[i] != key) continue;
    // A kill between these two stores leaves a duplicate entry, which
    // recovery ignores because the lock no longer names this thread.
    td->held_locks[i] = td->held_locks[td->nheld_locks - 1];
    ordered();
    td->nheld_locks = td->nheld_locks - 1;
    return;
  }
}

__attribute__((noreturn)) void bail_out(ThreadData* td, tm_spinlock* l) {
  forget(td, l);
  longjmp(*static_cast<jmp_buf*>(td->control_jmp), 1);
}

}  // namespace

void release_dead_locks(ThreadData* dead, uint32_t count) {
  const uint64_t id = reinterpret_cast<uint64_t>(dead);
  if (count > kMaxHeldLocks) count = kMaxHeldLocks;
  for (uint32_t i = 0; i < count; ++i) {
    const uint64_t p = dead->held_locks[i];
    if (!within_enclave(p, sizeof(tm_spinlock)) || (p & 7)) continue;
    auto* l = reinterpret_cast<tm_spinlock*>(p);
    if (__atomic_load_n(&l->owner, __ATOMIC_ACQUIRE) != id) continue;
    if (Heap* h = heap_of_lock(l)) heap_rollback(*h);
    // Output the dead thread was writing is dropped, not handed to the
    // next process (whose stdout it is not).
    if (l == teemate_stdio_lock()) teemate_stdio_reset_streams();
    __atomic_store_n(&l->owner, 0, __ATOMIC_RELEASE);
  }
}

void release_own_locks_since(ThreadData* td, uint32_t base) {
  const uint64_t id = reinterpret_cast<uint64_t>(td);
  while (td->nheld_locks > base) {
    auto* l = reinterpret_cast<tm_spinlock*>(td->held_locks[td->nheld_locks - 1]);
    if (__atomic_load_n(&l->owner, __ATOMIC_ACQUIRE) == id) {
      if (Heap* h = heap_of_lock(l)) heap_rollback(*h);
      __atomic_store_n(&l->owner, 0, __ATOMIC_RELEASE);
    }
    td->nheld_locks = td->nheld_locks - 1;
  }
}

}  // namespace teemate::trts

using namespace teemate::trts;

extern "C" {

void tm_spin_lock(tm_spinlock* l) {
  ThreadData* td = self_td();
  const uint64_t me = reinterpret_cast<uint64_t>(td);
  note(td, l);
  uint64_t spins = 0;
  for (;;) {
    uint64_t expected = 0;
    if (__atomic_compare_exchange_n(&l->owner, &expected, me, false, __ATOMIC_ACQUIRE, __ATOMIC_RELAXED)) return;
    while (__atomic_load_n(&l->owner, __ATOMIC_RELAXED) != 0) {
      __builtin_ia32_pause();
      if (td->control_call && ++spins > kControlSpinLimit) bail_out(td, l);
    }
  }
}

void tm_spin_unlock(tm_spinlock* l) {
  ThreadData* td = self_td();
  if (__atomic_load_n(&l->owner, __ATOMIC_RELAXED) != reinterpret_cast<uint64_t>(td)) {
    tm_abort("tm_spin_unlock: the lock is not held by this thread");
  }
  __atomic_store_n(&l->owner, 0, __ATOMIC_RELEASE);
  forget(td, l);
}

}  // extern "C"
