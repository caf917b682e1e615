/* The enclave heap: a boundary-tag allocator over the heap range the layout
 * reserved, first fit over one free list, coalescing on free, 16-byte
 * alignment (more on request). Instances: the global heap, and one arena
 * per attached process (carved from the global heap) so that a process's
 * allocations can be dropped at once when it ends. A spinlock guards each.
 * Arenas are carved from the top of the heap (heap_alloc_high) and other
 * blocks preferably below the lowest arena, so that shared data that
 * outlives processes does not fragment the room new arenas need.
 *
 * Robust to the death of a thread in the middle of an update: every word an
 * operation changes goes through logged_write, which first appends the
 * word's address and old value to the heap's undo log; the operation clears
 * the log when it is complete. heap_rollback (run by recovery, when the lock
 * names a dead thread) restores the logged words in reverse order, which
 * returns the heap exactly to its state before the interrupted operation.
 * Never calls the host; never trusts a pointer it did not hand out more than
 * a header check allows. */
#include <string.h>

#include "runtime.h"

namespace teemate::trts {
namespace {

constexpr size_t kAlign = 16;
constexpr uint64_t kUsed = 1;
constexpr uint64_t kMagic = 0x7e3a11c0de000000ull;  // upper bits of a live header's tag

struct Block {
  uint64_t size_and_flags;  // total block size including header/footer; bit 0 = used
  uint64_t tag;             // kMagic ^ size for live blocks
  Block* next;              // free blocks only
  Block* prev;
};
constexpr size_t kHeader = 16;       // size_and_flags + tag
// The largest alignment served (1 MiB: huge-page-style requests still fit a
// heap of a few MiB); beyond it malloc's aligned forms return NULL/EINVAL.
constexpr size_t kMaxAlign = size_t{1} << 20;
constexpr size_t kFooter = 16;       // size copy (padded for alignment)
constexpr size_t kMinBlock = 64;

size_t bsize(const Block* b) { return b->size_and_flags & ~uint64_t{15}; }
bool bused(const Block* b) { return b->size_and_flags & kUsed; }

inline void ordered() { __atomic_signal_fence(__ATOMIC_SEQ_CST); }

#ifdef TEEMATE_HEAP_TEST_HOOKS
}  // namespace
// Called before logging a write and between logging and doing it; the
// host unit test throws from here to stop an operation at every point.
void heap_test_point(int where);
namespace {
#else
inline void heap_test_point(int) {}
#endif

// Every change to heap metadata: log the old value, then write.
void logged_write(Heap& h, void* at, uint64_t value) {
  auto* addr = static_cast<uint64_t*>(at);
  heap_test_point(0);
  const uint32_t n = h.nundo;
  if (n >= kHeapUndoEntries) tm_abort("heap: undo log overflow");
  h.undo[n].addr = addr;
  h.undo[n].old = *addr;
  ordered();
  h.nundo = n + 1;
  ordered();
  heap_test_point(1);
  *addr = value;
  ordered();
}
void logged_ptr(Heap& h, void* at, const void* value) { logged_write(h, at, reinterpret_cast<uint64_t>(value)); }
void commit(Heap& h) {
  ordered();
  h.nundo = 0;
  ordered();
}

void set_footer(Heap& h, Block* b, uint64_t size_and_flags) {
  logged_write(h, reinterpret_cast<uint8_t*>(b) + (size_and_flags & ~uint64_t{15}) - kFooter, size_and_flags);
}
Block* free_list(const Heap& h) { return static_cast<Block*>(h.free_list); }
void list_remove(Heap& h, Block* b) {
  if (b->prev) logged_ptr(h, &b->prev->next, b->next); else logged_ptr(h, &h.free_list, b->next);
  if (b->next) logged_ptr(h, &b->next->prev, b->prev);
}
void list_push(Heap& h, Block* b) {
  logged_ptr(h, &b->prev, nullptr);
  logged_ptr(h, &b->next, free_list(h));
  if (free_list(h)) logged_ptr(h, &free_list(h)->prev, b);
  logged_ptr(h, &h.free_list, b);
}
void make_free(Heap& h, Block* b, size_t size) {
  logged_write(h, &b->size_and_flags, size);
  logged_write(h, &b->tag, 0);
  set_footer(h, b, size);
  list_push(h, b);
}

// The block of a pointer handed out by heap_alloc, or null (with *why set).
Block* header_of(const Heap& h, void* p, const char** why) {
  uint8_t* raw = static_cast<uint8_t*>(p) - kHeader;
  if (raw < h.start || raw >= h.end || (reinterpret_cast<uintptr_t>(p) & (kAlign - 1))) {
    *why = "free(): pointer not from the enclave heap";
    return nullptr;
  }
  Block* b = reinterpret_cast<Block*>(raw);
  if (!bused(b) || b->tag != (kMagic ^ bsize(b))) {
    *why = "free(): heap corruption or double free";
    return nullptr;
  }
  return b;
}

Heap g_heap;

void lock_heap(Heap& h) { tm_spin_lock(&h.lock); }
void unlock_heap(Heap& h) {
  commit(h);
  tm_spin_unlock(&h.lock);
}

}  // namespace

Heap& global_heap() { return g_heap; }

void heap_init(Heap& h, void* start, size_t size) {
  uint8_t* s = static_cast<uint8_t*>(start);
  h.lock.owner = 0;
  h.nundo = 0;
  h.start = s;
  h.end = s + (size & ~(kAlign - 1));
  h.total = static_cast<size_t>(h.end - h.start);
  h.used = 0;
  h.free_list = nullptr;
  h.soft_ceiling = nullptr;
  if (h.total >= kMinBlock) make_free(h, reinterpret_cast<Block*>(s), h.total);
}

bool heap_owns(const Heap& h, const void* p) {
  const uint8_t* q = static_cast<const uint8_t*>(p);
  return q >= h.start && q < h.end;
}

void* heap_alloc(Heap& h, size_t size, size_t align) {
  if (align == 0 || (align & (align - 1)) || align > kMaxAlign || size > h.total) return nullptr;
  if (align < kAlign) align = kAlign;
  size_t need = (size + kHeader + kFooter + kAlign - 1) & ~(kAlign - 1);
  if (need < kMinBlock) need = kMinBlock;
  const size_t worst = need + (align > kAlign ? align + kMinBlock : 0);
  lock_heap(h);
  // First pass: only blocks wholly below the soft ceiling; second: any.
  uint8_t* const ceiling = h.soft_ceiling;
  for (int pass = ceiling ? 0 : 1; pass < 2; ++pass)
  for (Block* b = free_list(h); b; b = b->next) {
    if (bsize(b) < worst) continue;
    if (pass == 0 && reinterpret_cast<uint8_t*>(b) + bsize(b) > ceiling) continue;
    list_remove(h, b);
    uint8_t* raw = reinterpret_cast<uint8_t*>(b);
    size_t total = bsize(b);
    // Split off a free prefix when a larger alignment is requested.
    uintptr_t payload = reinterpret_cast<uintptr_t>(raw) + kHeader;
    if (payload % align) {
      uintptr_t aligned = (payload + kMinBlock + align - 1) & ~(uintptr_t)(align - 1);
      size_t prefix = aligned - kHeader - reinterpret_cast<uintptr_t>(raw);
      make_free(h, b, prefix);
      raw += prefix;
      total -= prefix;
      b = reinterpret_cast<Block*>(raw);
    }
    if (total - need >= kMinBlock) {
      make_free(h, reinterpret_cast<Block*>(raw + need), total - need);
      total = need;
    }
    logged_write(h, &b->size_and_flags, total | kUsed);
    logged_write(h, &b->tag, kMagic ^ total);
    set_footer(h, b, total | kUsed);
    logged_write(h, &h.used, h.used + total);
    unlock_heap(h);
    return raw + kHeader;
  }
  unlock_heap(h);
  return nullptr;
}

void* heap_alloc_high(Heap& h, size_t size, size_t align) {
  if (align == 0 || (align & (align - 1)) || align > kMaxAlign || size > h.total) return nullptr;
  if (align < kAlign) align = kAlign;
  size_t need = (size + kHeader + kFooter + kAlign - 1) & ~(kAlign - 1);
  if (need < kMinBlock) need = kMinBlock;
  lock_heap(h);
  // The highest place, in any free block, where `need` bytes fit with an
  // aligned payload and leave either no prefix or a whole free block.
  Block* best = nullptr;
  uintptr_t best_raw = 0;
  for (Block* b = free_list(h); b; b = b->next) {
    const uintptr_t start = reinterpret_cast<uintptr_t>(b), end = start + bsize(b);
    if (bsize(b) < need) continue;
    const uintptr_t payload = (end - need + kHeader) & ~static_cast<uintptr_t>(align - 1);
    if (payload < start + kHeader) continue;
    uintptr_t raw = payload - kHeader;
    if (raw != start && raw - start < kMinBlock) {
      if (raw < start + kMinBlock + align) continue;
      raw -= align;  // one alignment step lower leaves room for a prefix block
      if (raw - start < kMinBlock) continue;
    }
    if (raw > best_raw) {
      best = b;
      best_raw = raw;
    }
  }
  if (!best) {
    unlock_heap(h);
    return nullptr;
  }
  list_remove(h, best);
  const uintptr_t start = reinterpret_cast<uintptr_t>(best), end = start + bsize(best);
  if (best_raw != start) make_free(h, best, best_raw - start);
  size_t total = end - best_raw;
  if (total - need >= kMinBlock) {
    make_free(h, reinterpret_cast<Block*>(best_raw + need), total - need);
    total = need;
  }
  Block* b = reinterpret_cast<Block*>(best_raw);
  logged_write(h, &b->size_and_flags, total | kUsed);
  logged_write(h, &b->tag, kMagic ^ total);
  set_footer(h, b, total | kUsed);
  logged_write(h, &h.used, h.used + total);
  unlock_heap(h);
  return reinterpret_cast<uint8_t*>(best_raw) + kHeader;
}

void heap_free(Heap& h, void* p) {
  if (!p) return;
  lock_heap(h);
  const char* why = nullptr;
  Block* b = header_of(h, p, &why);
  if (!b) {
    unlock_heap(h);
    tm_abort(why);
  }
  size_t size = bsize(b);
  logged_write(h, &h.used, h.used - size);
  // Its header may end up inside a merged block: clear the live tag so that
  // freeing it again is caught as a double free.
  logged_write(h, &b->tag, 0);
  uint8_t* raw = reinterpret_cast<uint8_t*>(b);
  // Coalesce with the following block.
  if (raw + size < h.end) {
    Block* n = reinterpret_cast<Block*>(raw + size);
    if (!bused(n)) {
      list_remove(h, n);
      size += bsize(n);
    }
  }
  // Coalesce with the preceding block (its footer sits just before us).
  if (raw > h.start) {
    uint64_t prev_tag = *reinterpret_cast<uint64_t*>(raw - kFooter);
    if (!(prev_tag & kUsed)) {
      Block* pb = reinterpret_cast<Block*>(raw - (prev_tag & ~uint64_t{15}));
      list_remove(h, pb);
      size += bsize(pb);
      raw = reinterpret_cast<uint8_t*>(pb);
    }
  }
  make_free(h, reinterpret_cast<Block*>(raw), size);
  unlock_heap(h);
}

size_t heap_usable_size(const Heap& h, void* p) {
  if (!p) return 0;
  const char* why = nullptr;
  Block* b = header_of(h, p, &why);
  if (!b) tm_abort(why);
  return bsize(b) - kHeader - kFooter;
}

void heap_rollback(Heap& h) {
  for (uint32_t i = h.nundo < kHeapUndoEntries ? h.nundo : kHeapUndoEntries; i-- > 0;) {
    *h.undo[i].addr = h.undo[i].old;
  }
  commit(h);
}

// The global heap, for the runtime's own buffers.
void heap_init(void* start, size_t size) { heap_init(g_heap, start, size); }
void* heap_alloc(size_t size, size_t align) { return heap_alloc(g_heap, size, align); }
void heap_free(void* p) { heap_free(g_heap, p); }
size_t heap_usable_size(void* p) { return heap_usable_size(g_heap, p); }

}  // namespace teemate::trts

extern "C" {
size_t tm_heap_used(void) { return teemate::trts::g_heap.used; }
size_t tm_heap_size(void) { return teemate::trts::g_heap.total; }
}

// The C allocation functions (left out when the allocator is unit-tested
// on the host, where they would replace the host's own). They allocate from
// the calling process's arena when the thread belongs to one.
#ifndef TEEMATE_HEAP_NO_LIBC_NAMES
using teemate::trts::Heap;
using teemate::trts::current_heap;
using teemate::trts::free_anywhere;
using teemate::trts::usable_size_anywhere;

extern "C" {

void* malloc(size_t n) { return heap_alloc(current_heap(), n ? n : 1, 16); }
void free(void* p) {
  if (p) free_anywhere(p);
}
void* calloc(size_t n, size_t m) {
  if (m && n > SIZE_MAX / m) return nullptr;
  size_t total = n * m;
  void* p = heap_alloc(current_heap(), total ? total : 1, 16);
  if (p) memset(p, 0, total);
  return p;
}
void* realloc(void* p, size_t n) {
  if (!p) return malloc(n);
  if (n == 0) {
    free(p);
    return nullptr;
  }
  // Refused before anything is allocated, or the new block would leak.
  teemate::trts::refuse_foreign_block(p, "realloc()");
  size_t old = usable_size_anywhere(p);
  if (n <= old) return p;
  // The new block is of the same kind (shared or per-process) as the old.
  void* q = tm_is_shared_memory(p) ? teemate::trts::heap_alloc(teemate::trts::global_heap(), n, 16) : malloc(n);
  if (!q) return nullptr;
  memcpy(q, p, old);
  free(p);
  return q;
}
void* aligned_alloc(size_t align, size_t n) { return heap_alloc(current_heap(), n ? n : 1, align); }
void* memalign(size_t align, size_t n) { return heap_alloc(current_heap(), n ? n : 1, align); }
int posix_memalign(void** out, size_t align, size_t n) {
  if (align < sizeof(void*) || (align & (align - 1))) return 22; /* EINVAL */
  void* p = heap_alloc(current_heap(), n ? n : 1, align);
  if (!p) return 12; /* ENOMEM */
  *out = p;
  return 0;
}
size_t malloc_usable_size(void* p) { return p ? usable_size_anywhere(p) : 0; }
}
#endif
