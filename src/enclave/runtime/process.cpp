/* Process contexts: the enclave's record of each attached process (its id,
 * its own arena carved from the global heap, the tm_mutex locks it holds).
 * A TCS is bound to the context of the process it is leased to, so code
 * reaches per-process state through the current thread. When a process
 * ends, its arena goes back whole and its locks are released. The daemon
 * drives start/bind/end through runtime ECALLs; nothing here calls the host. */
#include <string.h>

#include "runtime.h"

namespace teemate::trts {

constexpr uint32_t kMaxContexts = 256;
constexpr uint32_t kMaxHeldLocks = 64;

struct ProcessContext {
  uint32_t id;      // index + 1 while live, 0 when free
  uint64_t host_pid;
  int64_t exit_status;  // main()'s return value, once a main() of the process returned
  void* arena_mem;  // from the global heap
  Heap arena;
  tm_spinlock held_lock;
  tm_mutex* held[kMaxHeldLocks];
  uint32_t nheld;
};

namespace {

tm_spinlock g_table_lock = TM_SPINLOCK_INIT;
ProcessContext g_contexts[kMaxContexts];

ProcessContext* by_id(uint64_t id) {
  if (id == 0 || id > kMaxContexts) return nullptr;
  ProcessContext* c = &g_contexts[id - 1];
  return __atomic_load_n(&c->id, __ATOMIC_ACQUIRE) == id ? c : nullptr;
}

ThreadData* td_or_null() {
  ThreadData* td;
  __asm__ volatile("rdgsbase %0" : "=r"(td));
  return td && td->initialized ? td : nullptr;
}

void forget_lock(ProcessContext* c, tm_mutex* m) {
  tm_spin_lock(&c->held_lock);
  for (uint32_t i = 0; i < c->nheld; ++i) {
    if (c->held[i] == m) {
      c->held[i] = c->held[--c->nheld];
      break;
    }
  }
  tm_spin_unlock(&c->held_lock);
}

}  // namespace

Heap& current_heap() {
  ThreadData* td = td_or_null();
  if (td && td->context && td->context->arena_mem) return td->context->arena;
  return global_heap();
}

Heap& heap_for_pointer(void* p) {
  ThreadData* td = td_or_null();
  if (td && td->context && td->context->arena_mem && heap_owns(td->context->arena, p)) return td->context->arena;
  // Memory one process allocated may be freed by another's thread.
  for (ProcessContext& c : g_contexts) {
    if (__atomic_load_n(&c.id, __ATOMIC_ACQUIRE) && c.arena_mem && heap_owns(c.arena, p)) return c.arena;
  }
  return global_heap();
}

int process_start(tm_call* call) {
  const uint64_t arena_bytes = call->scalars[1];
  void* mem = nullptr;
  if (arena_bytes) {
    if (arena_bytes > global_heap().total / 2) return TM_ERR_TOO_LARGE;
    mem = heap_alloc(arena_bytes, 4096);
    if (!mem) return TM_ERR_NO_MEMORY;
  }
  tm_spin_lock(&g_table_lock);
  for (uint32_t i = 0; i < kMaxContexts; ++i) {
    ProcessContext& c = g_contexts[i];
    if (c.id != 0) continue;
    memset(&c, 0, sizeof c);
    c.host_pid = call->scalars[0];
    c.exit_status = -1;
    c.arena_mem = mem;
    if (mem) heap_init(c.arena, mem, arena_bytes);
    __atomic_store_n(&c.id, i + 1, __ATOMIC_RELEASE);
    tm_spin_unlock(&g_table_lock);
    call->scalars[0] = i + 1;
    return TM_OK;
  }
  tm_spin_unlock(&g_table_lock);
  heap_free(mem);
  return TM_ERR_NO_MEMORY;
}

int bind_tcs(tm_call* call) {
  ThreadData* td = current_td();
  if (call->scalars[0] == 0) {
    td->context = nullptr;
    return TM_OK;
  }
  ProcessContext* c = by_id(call->scalars[0]);
  if (!c) return TM_ERR_INVALID;
  td->context = c;
  return TM_OK;
}

int process_end(tm_call* call) {
  ProcessContext* c = by_id(call->scalars[0]);
  if (!c) return TM_ERR_INVALID;
  call->scalars[1] = static_cast<uint64_t>(c->exit_status);
  call->scalars[2] = c->arena_mem ? c->arena.used : 0;  // what it never freed
  // Locks the process still holds: nobody else will ever release them.
  tm_spin_lock(&c->held_lock);
  for (uint32_t i = 0; i < c->nheld; ++i) {
    tm_mutex* m = c->held[i];
    m->owner_context = 0;
    __atomic_store_n(&m->locked, 0u, __ATOMIC_RELEASE);
  }
  c->nheld = 0;
  tm_spin_unlock(&c->held_lock);
  void* mem = c->arena_mem;
  tm_spin_lock(&g_table_lock);
  __atomic_store_n(&c->id, 0u, __ATOMIC_RELEASE);
  c->arena_mem = nullptr;
  tm_spin_unlock(&g_table_lock);
  heap_free(mem);  // the whole arena, whatever the process forgot to free
  ThreadData* td = current_td();
  if (td->context == c) td->context = nullptr;
  return TM_OK;
}

void record_exit_status(int status) {
  ThreadData* td = td_or_null();
  if (td && td->context) td->context->exit_status = status;
}

}  // namespace teemate::trts

using namespace teemate::trts;

extern "C" {

int tm_mutex_trylock(tm_mutex* m) {
  if (__atomic_exchange_n(&m->locked, 1u, __ATOMIC_ACQUIRE)) return 0;
  ThreadData* td = td_or_null();
  ProcessContext* c = td ? td->context : nullptr;
  m->owner_context = c ? c->id : 0;
  if (c) {
    tm_spin_lock(&c->held_lock);
    if (c->nheld < kMaxHeldLocks) c->held[c->nheld++] = m;
    tm_spin_unlock(&c->held_lock);
  }
  return 1;
}

void tm_mutex_lock(tm_mutex* m) {
  while (!tm_mutex_trylock(m)) {
    while (__atomic_load_n(&m->locked, __ATOMIC_RELAXED)) __builtin_ia32_pause();
  }
}

void tm_mutex_unlock(tm_mutex* m) {
  ProcessContext* c = by_id(m->owner_context);
  if (c) forget_lock(c, m);
  m->owner_context = 0;
  __atomic_store_n(&m->locked, 0u, __ATOMIC_RELEASE);
}

uint32_t tm_process_id(void) {
  ThreadData* td = td_or_null();
  return td && td->context ? td->context->id : 0;
}

size_t tm_process_heap_used(void) {
  ThreadData* td = td_or_null();
  return td && td->context && td->context->arena_mem ? td->context->arena.used : 0;
}

}  // extern "C"
