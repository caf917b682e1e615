/* Process contexts: the enclave's record of each attached process (its
 * handle, its own arena carved from the global heap, the tm_mutex locks it
 * holds), and the control ECALLs through which the daemon starts and ends
 * them and binds TCS to them. A TCS is bound to the context of the process
 * it is leased to, so code reaches per-process state through the current
 * thread.
 *
 * What the enclave itself enforces, whatever the host does: a context is
 * named by a handle that carries a generation, so a stale handle never
 * reaches a reused slot; a context is ended only while none of its threads
 * is inside an ECALL (a thread entering and an end racing are ordered by a
 * Dekker-style handshake on ecall_depth and the context's state), so its
 * arena is never freed under a running thread; a TCS is bound only while
 * unbound. Control ECALLs are authenticated by the caller (ecall.cpp).
 * An ended process's arena is zeroed before it goes back to the heap, so no
 * later allocation sees its data. Also the shared-memory API (tm_shared_*).
 * Nothing here calls the host. */
#include <elf.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "runtime.h"

extern "C" const char __ehdr_start[];  // the linker's: the loaded ELF header

namespace teemate::trts {

constexpr uint32_t kMaxContexts = 256;
constexpr uint32_t kMaxHeldMutexes = 64;
constexpr uint64_t kNoContextOwner = 1;  // tm_mutex owner for a thread without a context

enum ContextState : uint32_t { kFree = 0, kLive = 1, kEnding = 2 };

struct ProcessContext {
  volatile uint32_t state;  // ContextState
  uint32_t generation;      // bumped at every start and end
  uint32_t slot;
  uint64_t host_pid;        // informational: the pid the daemon saw
  int64_t exit_status;      // main()'s return value, once a main() of the process returned
  void* arena_mem;          // from the global heap
  uint64_t arena_bytes;     // size of arena_mem
  Heap arena;
  tm_spinlock held_lock;
  tm_mutex* held[kMaxHeldMutexes];  // mutexes it holds or is taking
  uint32_t nheld;
  FdSet fds;                // host descriptors the enclave opened for this process
  SwitchlessSettings switchless;  // its queues in its host memory (switchless.cpp)
};

namespace {

tm_spinlock g_table_lock = TM_SPINLOCK_INIT;
ProcessContext g_contexts[kMaxContexts];
FdSet g_fds;  // threads without a process context (a dedicated enclave)
SwitchlessSettings g_switchless;  // likewise

uint64_t handle_of(const ProcessContext* c) {
  return (uint64_t{c->generation} << 32) | (c->slot + 1);
}

// The context a handle names, if it is live (or ending, with `ending_ok`).
ProcessContext* by_handle(uint64_t h, bool ending_ok) {
  const uint64_t slot = (h & 0xffffffffu);
  if (slot == 0 || slot > kMaxContexts) return nullptr;
  ProcessContext* c = &g_contexts[slot - 1];
  const uint32_t st = __atomic_load_n(&c->state, __ATOMIC_ACQUIRE);
  if (st != kLive && !(ending_ok && st == kEnding)) return nullptr;
  return c->generation == (h >> 32) ? c : nullptr;
}

ThreadData* td_or_null() {
  ThreadData* td;
  __asm__ volatile("rdgsbase %0" : "=r"(td));
  return td && td->initialized ? td : nullptr;
}

// The thread data of TCS i (whether or not that TCS ever ran).
ThreadData* td_of_tcs(uint32_t i) {
  const abi::EnclaveMeta* m = globals().meta;
  return reinterpret_cast<ThreadData*>(globals().base + m->threads_offset + uint64_t{i} * m->thread_stride +
                                       m->td_offset_in_block);
}

void forget_mutex(ProcessContext* c, tm_mutex* m) {
  tm_spin_lock(&c->held_lock);
  for (uint32_t i = c->nheld; i-- > 0;) {
    if (c->held[i] == m) {
      c->held[i] = c->held[--c->nheld];
      break;
    }
  }
  tm_spin_unlock(&c->held_lock);
}

// Debug enclaves: words of the enclave's writable globals (every writable
// PT_LOAD segment, .data and .bss) that point into [lo, hi), the arena about
// to be reclaimed. The runtime's own context table is skipped (it records
// the arena). Returns how many, and the enclave offset of the first.
uint64_t globals_pointing_into(uint64_t lo, uint64_t hi, uint64_t* first_offset) {
  const uint64_t base = globals().base;
  const auto* eh = reinterpret_cast<const Elf64_Ehdr*>(__ehdr_start);
  const auto* ph = reinterpret_cast<const Elf64_Phdr*>(__ehdr_start + eh->e_phoff);
  // The runtime's own records of the arena: the context table and the
  // global heap's metadata (its allocation preference names the arena).
  const uint64_t skip_lo = reinterpret_cast<uint64_t>(&g_contexts[0]);
  const uint64_t skip_hi = skip_lo + sizeof(g_contexts);
  const uint64_t heap_lo = reinterpret_cast<uint64_t>(&global_heap());
  const uint64_t heap_hi = heap_lo + sizeof(Heap);
  uint64_t count = 0;
  for (uint32_t i = 0; i < eh->e_phnum; ++i) {
    if (ph[i].p_type != PT_LOAD || !(ph[i].p_flags & PF_W)) continue;
    const uint64_t from = (base + ph[i].p_vaddr + 7) & ~uint64_t{7};
    const uint64_t to = base + ph[i].p_vaddr + ph[i].p_memsz;
    for (uint64_t at = from; at + 8 <= to; at += 8) {
      if ((at >= skip_lo && at < skip_hi) || (at >= heap_lo && at < heap_hi)) continue;
      const uint64_t v = __atomic_load_n(reinterpret_cast<const uint64_t*>(at), __ATOMIC_RELAXED);
      if (v < lo || v >= hi) continue;
      if (count++ == 0) *first_offset = at - base;
    }
  }
  return count;
}

// Points the global heap's allocation preference below the lowest live
// arena (g_table_lock held).
void update_soft_ceiling() {
  uint8_t* lowest = nullptr;
  for (const ProcessContext& c : g_contexts) {
    auto* a = static_cast<uint8_t*>(c.arena_mem);
    if (c.state != kFree && a && (!lowest || a < lowest)) lowest = a;
  }
  global_heap().soft_ceiling = lowest;
}

}  // namespace

Heap* heap_of_lock(const tm_spinlock* l) {
  if (l == &global_heap().lock) return &global_heap();
  for (ProcessContext& c : g_contexts) {
    if (l == &c.arena.lock) return &c.arena;
  }
  return nullptr;
}

Heap& current_heap() {
  ThreadData* td = td_or_null();
  if (td && td->context && td->context->arena_mem) return td->context->arena;
  return global_heap();
}

void refuse_foreign_block(void* p, const char* who) {
  ThreadData* td = td_or_null();
  if (td && td->context && td->context->arena_mem && heap_owns(td->context->arena, p)) return;
  // Per-process memory of another process is never freed or moved from
  // here (review defect D4: process B freed a live block of A's, which A
  // then saw reused): it is a bug of the program, refused like a double
  // free, and the block goes back when its own process ends. The lookup
  // holds the table lock so that the arena cannot be ended meanwhile.
  tm_spin_lock(&g_table_lock);
  for (ProcessContext& c : g_contexts) {
    if (c.state != kFree && c.arena_mem && heap_owns(c.arena, p)) {
      tm_spin_unlock(&g_table_lock);
      char why[256];
      snprintf(why, sizeof why,
               "%s: the block is another process's per-process memory; only the process that allocated it "
               "frees or reallocates it (keep data that processes share in tm_shared_malloc memory)",
               who);
      tm_abort(why);
    }
  }
  tm_spin_unlock(&g_table_lock);
}

void free_anywhere(void* p) {
  ThreadData* td = td_or_null();
  if (td && td->context && td->context->arena_mem && heap_owns(td->context->arena, p)) {
    heap_free(td->context->arena, p);
    return;
  }
  refuse_foreign_block(p, "free()");
  heap_free(global_heap(), p);
}

size_t usable_size_anywhere(void* p) {
  ThreadData* td = td_or_null();
  if (td && td->context && td->context->arena_mem && heap_owns(td->context->arena, p)) {
    return heap_usable_size(td->context->arena, p);
  }
  tm_spin_lock(&g_table_lock);
  for (ProcessContext& c : g_contexts) {
    if (c.state != kFree && c.arena_mem && heap_owns(c.arena, p)) {
      size_t n = heap_usable_size(c.arena, p);
      tm_spin_unlock(&g_table_lock);
      return n;
    }
  }
  tm_spin_unlock(&g_table_lock);
  return heap_usable_size(global_heap(), p);
}

int process_start(tm_call* call) {
  const uint64_t arena_bytes = call->scalars[1];
  if (arena_bytes > global_heap().total / 2) return TM_ERR_TOO_LARGE;
  // Lock order everywhere: table, then a heap. A bail-out (kErrBusy)
  // releases both and leaves no slot taken and no memory allocated.
  tm_spin_lock(&g_table_lock);
  for (uint32_t i = 0; i < kMaxContexts; ++i) {
    ProcessContext& c = g_contexts[i];
    if (c.state != kFree) continue;
    void* mem = nullptr;
    if (arena_bytes) {
      mem = heap_alloc_high(global_heap(), arena_bytes, 4096);
      if (!mem) {
        tm_spin_unlock(&g_table_lock);
        return TM_ERR_NO_MEMORY;
      }
    }
    const uint32_t generation = c.generation + 1;
    memset(&c, 0, sizeof c);
    c.generation = generation;
    c.slot = i;
    c.host_pid = call->scalars[0];
    c.exit_status = -1;
    c.arena_mem = mem;
    c.arena_bytes = mem ? arena_bytes : 0;
    if (mem) heap_init(c.arena, mem, arena_bytes);
    __atomic_store_n(&c.state, kLive, __ATOMIC_SEQ_CST);
    update_soft_ceiling();
    tm_spin_unlock(&g_table_lock);
    call->scalars[0] = handle_of(&c);
    return TM_OK;
  }
  tm_spin_unlock(&g_table_lock);
  return TM_ERR_NO_MEMORY;
}

int bind_tcs(tm_call* call) {
  ThreadData* td = current_td();
  if (call->scalars[0] == 0) {
    // Not while a call of the process is in progress here (an OCALL).
    if (__atomic_load_n(&td->ecall_depth, __ATOMIC_SEQ_CST) != 0) return TM_ERR_BUSY;
    td->context = nullptr;
    td->lease_token[0] = td->lease_token[1] = 0;
    return TM_OK;
  }
  if (td->context) return TM_ERR_BUSY;  // unbind (or end its process) first
  if (call->scalars[1] == 0 && call->scalars[2] == 0) return TM_ERR_INVALID;  // a lease needs a token
  ProcessContext* c = by_handle(call->scalars[0], false);
  if (!c) return TM_ERR_INVALID;
  td->lease_token[0] = call->scalars[1];
  td->lease_token[1] = call->scalars[2];
  td->context = c;
  return TM_OK;
}

int process_end(tm_call* call) {
  ProcessContext* c = by_handle(call->scalars[0], true);
  if (!c) return TM_ERR_INVALID;
  ThreadData* self = current_td();
  const uint32_t ntcs = globals().meta->tcs_count;
  // Handshake with enclave entry (ecall.cpp, enter_bound_context): an
  // entering thread raises its depth, then reads the state; we set the
  // state, then read every depth. One of the two sees the other.
  __atomic_store_n(&c->state, kEnding, __ATOMIC_SEQ_CST);
  for (uint32_t i = 0; i < ntcs; ++i) {
    ThreadData* td = td_of_tcs(i);
    if (td == self || !td->initialized || td->context != c) continue;
    if (__atomic_load_n(&td->ecall_depth, __ATOMIC_SEQ_CST) != 0) {
      __atomic_store_n(&c->state, kLive, __ATOMIC_SEQ_CST);
      return TM_ERR_BUSY;  // a thread of it is inside: it is not dead, or not recovered yet
    }
  }
  // Nothing of the process runs any more. Locks its threads died holding
  // come back first (rolling back a heap update they were in), before
  // anything below takes a lock.
  bool self_bound = false;
  for (uint32_t i = 0; i < ntcs; ++i) {
    ThreadData* td = td_of_tcs(i);
    if (!td->initialized || td->context != c) continue;
    if (td == self) {
      self_bound = true;
      release_dead_locks(td, td->control_base);  // entries above are this call's own
    } else {
      release_dead_locks(td, td->nheld_locks);
      td->nheld_locks = 0;
    }
  }
  forget_threads_of(c);
  call->scalars[1] = static_cast<uint64_t>(c->exit_status);
  call->scalars[2] = c->arena_mem ? c->arena.used : 0;  // what it never freed
  // tm_mutexes it holds: nobody else will ever release them.
  const uint64_t me = handle_of(c);
  tm_spin_lock(&c->held_lock);
  for (uint32_t i = 0; i < c->nheld; ++i) {
    tm_mutex* m = c->held[i];
    uint64_t expected = me;
    __atomic_compare_exchange_n(&m->owner, &expected, 0, false, __ATOMIC_RELEASE, __ATOMIC_RELAXED);
  }
  c->nheld = 0;
  tm_spin_unlock(&c->held_lock);
  for (uint32_t i = 0; i < ntcs; ++i) {
    ThreadData* td = td_of_tcs(i);
    if (td->context != c) continue;
    td->context = nullptr;
    td->lease_token[0] = td->lease_token[1] = 0;
  }
  // The arena: no thread of the process runs, and once arena_mem is cleared
  // under the table lock nobody frees into it (free_anywhere looks arenas up
  // under that lock). Debug enclaves report shared globals that still point
  // into it; then it is zeroed, outside the lock, before the heap gets it
  // back, so no later allocation ever sees the process's data.
  tm_spin_lock(&g_table_lock);
  void* mem = c->arena_mem;
  const uint64_t bytes = c->arena_bytes;
  c->arena_mem = nullptr;
  c->arena_bytes = 0;
  tm_spin_unlock(&g_table_lock);
  call->scalars[3] = 0;
  if (mem) {
    const uint64_t lo = reinterpret_cast<uint64_t>(mem);
    if (globals().meta->debug) {
      uint64_t first = 0;
      const uint64_t n = globals_pointing_into(lo, lo + bytes, &first);
      if (n) call->scalars[3] = ((n < 0xffffff ? n : 0xffffff) << 40) | (first & 0xffffffffffull);
    }
    memset(mem, 0, bytes);
    heap_free(mem);  // the whole arena, whatever the process forgot to free
  }
  tm_spin_lock(&g_table_lock);
  update_soft_ceiling();
  c->generation += 1;
  __atomic_store_n(&c->state, kFree, __ATOMIC_SEQ_CST);
  tm_spin_unlock(&g_table_lock);
  // Entries below control_base were the dead thread's, handled above; this
  // call has released everything it took.
  if (self_bound) {
    self->nheld_locks = 0;
    self->control_base = 0;
  }
  return TM_OK;
}

bool enter_bound_context(ThreadData* td) {
  ProcessContext* c = td->context;
  __atomic_add_fetch(&td->ecall_depth, 1, __ATOMIC_SEQ_CST);
  if (!c || __atomic_load_n(&c->state, __ATOMIC_SEQ_CST) != kLive) {
    __atomic_sub_fetch(&td->ecall_depth, 1, __ATOMIC_SEQ_CST);
    return false;
  }
  return true;
}

void record_exit_status(int status) {
  ThreadData* td = td_or_null();
  if (td && td->context) td->context->exit_status = status;
}

}  // namespace teemate::trts

using namespace teemate::trts;

// ---- Descriptors the enclave owns ----------------------------------------
namespace teemate::trts {
// The calling thread's set and the heap its array lives in: the process's
// (its arena, gone with it) or the enclave's for context-less threads.
namespace {
FdSet& my_fds(Heap** heap) {
  ThreadData* td = td_or_null();
  if (td && td->context && td->context->arena_mem) {
    *heap = &td->context->arena;
    return td->context->fds;
  }
  *heap = &global_heap();
  return g_fds;
}
}  // namespace

SwitchlessSettings& my_switchless() {
  ThreadData* td = td_or_null();
  if (td && td->context) return td->context->switchless;
  return g_switchless;
}

bool fd_lookup(int fd, void** file) {
  Heap* heap;
  FdSet& s = my_fds(&heap);
  tm_spin_lock(&s.lock);
  bool found = false;
  for (uint32_t i = 0; i < s.n && !found; ++i) {
    if (s.fds[i].fd == fd) {
      found = true;
      if (file) *file = s.fds[i].file;
    }
  }
  tm_spin_unlock(&s.lock);
  return found;
}

bool fd_owned(int fd) { return fd_lookup(fd, nullptr); }

int fd_own(int fd, void* file) {
  if (fd <= 2) return EIO;
  Heap* heap;
  FdSet& s = my_fds(&heap);
  tm_spin_lock(&s.lock);
  for (uint32_t i = 0; i < s.n; ++i) {
    if (s.fds[i].fd == fd) {
      tm_spin_unlock(&s.lock);
      return EIO;
    }
  }
  bool ok = true;
  if (s.n == s.cap) {
    const uint32_t cap = s.cap ? s.cap * 2 : 16;
    auto* grown = static_cast<FdEntry*>(heap_alloc(*heap, cap * sizeof(FdEntry), 16));
    if (grown) {
      if (s.n) memcpy(grown, s.fds, s.n * sizeof(FdEntry));
      if (s.fds) heap_free(*heap, s.fds);
      s.fds = grown;
      s.cap = cap;
    } else {
      ok = false;
    }
  }
  if (ok) s.fds[s.n++] = FdEntry{fd, file};
  tm_spin_unlock(&s.lock);
  return ok ? 0 : ENOMEM;
}

void fd_for_each_file(void (*fn)(void* file, void* arg), void* arg) {
  Heap* heap;
  FdSet& s = my_fds(&heap);
  tm_spin_lock(&s.lock);
  for (uint32_t i = 0; i < s.n; ++i) {
    if (s.fds[i].file) fn(s.fds[i].file, arg);
  }
  tm_spin_unlock(&s.lock);
}

void* fd_disown(int fd) {
  Heap* heap;
  FdSet& s = my_fds(&heap);
  void* file = nullptr;
  tm_spin_lock(&s.lock);
  for (uint32_t i = 0; i < s.n; ++i) {
    if (s.fds[i].fd == fd) {
      file = s.fds[i].file;
      s.fds[i] = s.fds[--s.n];
      break;
    }
  }
  tm_spin_unlock(&s.lock);
  return file;
}
}  // namespace teemate::trts

extern "C" {

int tm_mutex_trylock(tm_mutex* m) {
  ThreadData* td = td_or_null();
  ProcessContext* c = td ? td->context : nullptr;
  const uint64_t me = c ? handle_of(c) : kNoContextOwner;
  if (c) {
    // Listed before the atomic that takes it: no instant at which the
    // process holds it without process_end being able to find it.
    tm_spin_lock(&c->held_lock);
    if (c->nheld >= kMaxHeldMutexes) {
      tm_spin_unlock(&c->held_lock);
      tm_abort("a process holds more than 64 tm_mutex locks");
    }
    c->held[c->nheld++] = m;
    tm_spin_unlock(&c->held_lock);
  }
  uint64_t expected = 0;
  if (__atomic_compare_exchange_n(&m->owner, &expected, me, false, __ATOMIC_ACQUIRE, __ATOMIC_RELAXED)) return 1;
  if (c) forget_mutex(c, m);
  return 0;
}

void tm_mutex_lock(tm_mutex* m) {
  while (!tm_mutex_trylock(m)) {
    while (__atomic_load_n(&m->owner, __ATOMIC_RELAXED)) __builtin_ia32_pause();
  }
}

void tm_mutex_unlock(tm_mutex* m) {
  const uint64_t owner = __atomic_load_n(&m->owner, __ATOMIC_RELAXED);
  ThreadData* td = td_or_null();
  ProcessContext* c = td ? td->context : nullptr;
  if (owner != (c ? handle_of(c) : kNoContextOwner)) tm_abort("tm_mutex_unlock: the mutex is not held by this process");
  __atomic_store_n(&m->owner, 0, __ATOMIC_RELEASE);
  if (c) forget_mutex(c, m);
}

uint32_t tm_process_id(void) {
  ThreadData* td = td_or_null();
  return td && td->context ? td->context->slot + 1 : 0;
}

void* tm_shared_malloc(size_t size) { return heap_alloc(global_heap(), size ? size : 1, 16); }

void* tm_shared_calloc(size_t count, size_t size) {
  if (size && count > static_cast<size_t>(-1) / size) return nullptr;
  const size_t total = count * size;
  void* p = heap_alloc(global_heap(), total ? total : 1, 16);
  if (p) memset(p, 0, total);
  return p;
}

void* tm_shared_aligned_alloc(size_t align, size_t size) {
  if (align == 0 || (align & (align - 1))) return nullptr;
  return heap_alloc(global_heap(), size ? size : 1, align < 16 ? 16 : align);
}

void* tm_shared_realloc(void* p, size_t size) {
  if (!p) return tm_shared_malloc(size);
  if (size == 0) {
    free_anywhere(p);
    return nullptr;
  }
  // Refused before anything is allocated (review defect: the new block
  // leaked, for good, when the abort came at the free).
  refuse_foreign_block(p, "tm_shared_realloc()");
  const size_t old = usable_size_anywhere(p);
  if (size <= old && tm_is_shared_memory(p)) return p;
  void* q = tm_shared_malloc(size);
  if (!q) return nullptr;
  memcpy(q, p, old < size ? old : size);
  free_anywhere(p);
  return q;
}

void tm_shared_free(void* p) {
  if (p) free_anywhere(p);
}

int tm_is_shared_memory(const void* p) {
  const uint64_t a = reinterpret_cast<uint64_t>(p);
  if (!within_enclave(a, 1)) return 0;
  tm_spin_lock(&g_table_lock);
  for (ProcessContext& c : g_contexts) {
    const uint64_t lo = reinterpret_cast<uint64_t>(c.arena_mem);
    if (c.state != kFree && c.arena_mem && a >= lo && a < lo + c.arena_bytes) {
      tm_spin_unlock(&g_table_lock);
      return 0;
    }
  }
  tm_spin_unlock(&g_table_lock);
  return 1;
}

size_t tm_process_heap_used(void) {
  ThreadData* td = td_or_null();
  return td && td->context && td->context->arena_mem ? td->context->arena.used : 0;
}

}  // extern "C"
