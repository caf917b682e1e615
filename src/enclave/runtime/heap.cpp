/* The enclave heap: a boundary-tag allocator over the heap range the layout
 * reserved, first fit over one free list, coalescing on free, 16-byte
 * alignment (more on request). Instances: the global heap, and one arena
 * per attached process (carved from the global heap) so that a process's
 * allocations can be dropped at once when it ends. A spinlock guards each.
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
constexpr size_t kFooter = 16;       // size copy (padded for alignment)
constexpr size_t kMinBlock = 64;

size_t bsize(const Block* b) { return b->size_and_flags & ~uint64_t{15}; }
bool bused(const Block* b) { return b->size_and_flags & kUsed; }
void set_footer(Block* b) {
  *reinterpret_cast<uint64_t*>(reinterpret_cast<uint8_t*>(b) + bsize(b) - kFooter) = b->size_and_flags;
}
Block*& free_list(Heap& h) { return *reinterpret_cast<Block**>(&h.free_list); }
void list_remove(Heap& h, Block* b) {
  if (b->prev) b->prev->next = b->next; else free_list(h) = b->next;
  if (b->next) b->next->prev = b->prev;
}
void list_push(Heap& h, Block* b) {
  b->prev = nullptr;
  b->next = free_list(h);
  if (free_list(h)) free_list(h)->prev = b;
  free_list(h) = b;
}
void make_free(Heap& h, Block* b, size_t size) {
  b->size_and_flags = size;
  b->tag = 0;
  set_footer(b);
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

uint64_t self_td() {
  uint64_t td = 0;
#ifndef TEEMATE_HEAP_NO_LIBC_NAMES
  __asm__ volatile("rdgsbase %0" : "=r"(td));
#endif
  return td;
}

void lock_heap(Heap& h) {
  tm_spin_lock(&h.lock);
  h.owner = self_td();
}
void unlock_heap(Heap& h) {
  h.owner = 0;
  tm_spin_unlock(&h.lock);
}

}  // namespace

Heap& global_heap() { return g_heap; }

void heap_init(Heap& h, void* start, size_t size) {
  uint8_t* s = static_cast<uint8_t*>(start);
  h.lock.locked = 0;
  h.owner = 0;
  h.start = s;
  h.end = s + (size & ~(kAlign - 1));
  h.total = static_cast<size_t>(h.end - h.start);
  h.used = 0;
  h.free_list = nullptr;
  if (h.total >= kMinBlock) make_free(h, reinterpret_cast<Block*>(s), h.total);
}

bool heap_owns(const Heap& h, const void* p) {
  const uint8_t* q = static_cast<const uint8_t*>(p);
  return q >= h.start && q < h.end;
}

void* heap_alloc(Heap& h, size_t size, size_t align) {
  if (align == 0 || (align & (align - 1)) || align > 4096 || size > h.total) return nullptr;
  if (align < kAlign) align = kAlign;
  size_t need = (size + kHeader + kFooter + kAlign - 1) & ~(kAlign - 1);
  if (need < kMinBlock) need = kMinBlock;
  const size_t worst = need + (align > kAlign ? align + kMinBlock : 0);
  lock_heap(h);
  for (Block* b = free_list(h); b; b = b->next) {
    if (bsize(b) < worst) continue;
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
    b->size_and_flags = total | kUsed;
    b->tag = kMagic ^ total;
    set_footer(b);
    h.used += total;
    unlock_heap(h);
    return raw + kHeader;
  }
  unlock_heap(h);
  return nullptr;
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
  h.used -= size;
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

void heap_recover_lock(uint64_t td) {
  if (td && __atomic_load_n(&g_heap.owner, __ATOMIC_ACQUIRE) == td) unlock_heap(g_heap);
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
using teemate::trts::heap_for_pointer;

extern "C" {

void* malloc(size_t n) { return heap_alloc(current_heap(), n ? n : 1, 16); }
void free(void* p) {
  if (p) heap_free(heap_for_pointer(p), p);
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
  size_t old = heap_usable_size(heap_for_pointer(p), p);
  if (n <= old) return p;
  void* q = malloc(n);
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
size_t malloc_usable_size(void* p) { return p ? heap_usable_size(heap_for_pointer(p), p) : 0; }
}
#endif
