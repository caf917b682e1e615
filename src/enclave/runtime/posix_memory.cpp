/* Anonymous memory mappings for enclave programs: mmap, munmap, mprotect,
 * madvise, mremap, msync. A mapping is page-aligned, zeroed memory from the
 * calling process's heap (per-process memory in a shared enclave, like
 * malloc); a header page in front of it records its length under a tag
 * bound to its address, so munmap frees only what mmap returned. Enclave
 * pages keep the permissions they were added with (SGX1): mprotect accepts
 * PROT_NONE/READ/WRITE without changing anything and refuses PROT_EXEC.
 * File mappings are refused (ENODEV). Nothing here calls the host.
 * Its <sys/...> headers are musl's (the enclave libc, -isystem), never
 * the host's glibc ones: they only declare what this file defines. */
#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>

#include "runtime.h"

using namespace teemate;
using namespace teemate::trts;

namespace {

constexpr uint64_t kPage = 4096;
constexpr uint64_t kMagic = 0x50414d4d4554ull;  // "TEMMAP"

struct MapHeader {
  uint64_t tag;     // kMagic ^ address of the mapping ^ g_map_secret
  uint64_t length;  // bytes, page-rounded
};

/* Deliberate shared state: a random value drawn once, so that no pointer a
 * program did not get from mmap passes for a mapping. Set under g_secret_lock. */
uint64_t g_map_secret = 0;
tm_spinlock g_secret_lock = TM_SPINLOCK_INIT;

uint64_t map_secret() {
  uint64_t s = __atomic_load_n(&g_map_secret, __ATOMIC_ACQUIRE);
  if (s) return s;
  tm_spin_lock(&g_secret_lock);
  if (!g_map_secret) {
    uint64_t r = 0;
    while (r == 0) {
      if (tm_random(&r, sizeof r) != TM_OK) tm_abort("mmap: no randomness for the mapping tag");
    }
    __atomic_store_n(&g_map_secret, r, __ATOMIC_RELEASE);
  }
  s = g_map_secret;
  tm_spin_unlock(&g_secret_lock);
  return s;
}

bool round_up(uint64_t n, uint64_t* out) {
  if (n == 0 || n > UINT64_MAX - (kPage - 1)) return false;
  *out = (n + kPage - 1) & ~(kPage - 1);
  return true;
}

// The header of the mapping that starts at `addr`, or null.
MapHeader* header_of(void* addr) {
  const uint64_t a = reinterpret_cast<uint64_t>(addr);
  if (a % kPage || a < kPage || !within_enclave(a - kPage, kPage)) return nullptr;
  const Heap& h = global_heap();
  const uint64_t lo = reinterpret_cast<uint64_t>(h.start);
  if (a - kPage < lo || a > lo + h.total) return nullptr;  // only heap memory can be a mapping
  auto* hdr = reinterpret_cast<MapHeader*>(a - kPage);
  return hdr->tag == (kMagic ^ a ^ map_secret()) ? hdr : nullptr;
}

}  // namespace

extern "C" {

void* mmap(void* addr, size_t length, int prot, int flags, int fd, off_t offset) {
  (void)addr;  // a hint only; MAP_FIXED is refused below
  if (!(flags & MAP_ANONYMOUS)) {
    errno = fd < 0 ? EBADF : ENODEV;  // file mappings: read the file instead
    return MAP_FAILED;
  }
  if ((flags & (MAP_FIXED | MAP_FIXED_NOREPLACE)) || offset != 0 || (fd != -1 && fd != 0) ||
      !(flags & (MAP_PRIVATE | MAP_SHARED))) {
    errno = EINVAL;
    return MAP_FAILED;
  }
  if (prot & PROT_EXEC) {
    errno = EACCES;  // enclave heap pages are never executable
    return MAP_FAILED;
  }
  uint64_t len = 0, total = 0;
  if (!round_up(length, &len) || __builtin_add_overflow(len, kPage, &total)) {
    errno = length ? ENOMEM : EINVAL;
    return MAP_FAILED;
  }
  auto* block = static_cast<uint8_t*>(heap_alloc(current_heap(), total, kPage));
  if (!block) {
    errno = ENOMEM;
    return MAP_FAILED;
  }
  uint8_t* map = block + kPage;
  memset(map, 0, len);
  auto* hdr = reinterpret_cast<MapHeader*>(block);
  hdr->length = len;
  hdr->tag = kMagic ^ reinterpret_cast<uint64_t>(map) ^ map_secret();
  return map;
}
void* __mmap(void* a, size_t l, int p, int f, int fd, off_t o) { return mmap(a, l, p, f, fd, o); }

int munmap(void* addr, size_t length) {
  MapHeader* hdr = header_of(addr);
  uint64_t len = 0;
  if (!hdr || !round_up(length, &len) || len != hdr->length) {
    errno = EINVAL;  // not a whole mapping mmap returned (partial unmapping is not supported)
    return -1;
  }
  hdr->tag = 0;
  free_anywhere(hdr);
  return 0;
}
int __munmap(void* a, size_t l) { return munmap(a, l); }

int mprotect(void* addr, size_t len, int prot) {
  const uint64_t a = reinterpret_cast<uint64_t>(addr);
  if (a % kPage) {
    errno = EINVAL;
    return -1;
  }
  if (len && !within_enclave(a, len)) {
    errno = ENOMEM;
    return -1;
  }
  if (prot & PROT_EXEC) {
    errno = EACCES;  // SGX1 fixes page permissions when the enclave is built
    return -1;
  }
  return 0;
}
int __mprotect(void* a, size_t l, int p) { return mprotect(a, l, p); }

int madvise(void* addr, size_t len, int advice) {
  (void)addr;
  (void)len;
  switch (advice) {
    case MADV_NORMAL: case MADV_RANDOM: case MADV_SEQUENTIAL: case MADV_WILLNEED: case MADV_DONTNEED:
    case MADV_FREE: case MADV_DONTFORK: case MADV_DOFORK: case MADV_HUGEPAGE: case MADV_NOHUGEPAGE:
    case MADV_DONTDUMP: case MADV_DODUMP:
      return 0;  // advice only: enclave pages stay as they are
    default:
      errno = EINVAL;
      return -1;
  }
}
int posix_madvise(void* addr, size_t len, int advice) {
  (void)addr;
  (void)len;
  (void)advice;
  return 0;
}

void* mremap(void* old, size_t old_len, size_t new_len, int flags, ...) {
  (void)old;
  (void)old_len;
  (void)new_len;
  (void)flags;
  errno = ENOSYS;
  return MAP_FAILED;
}

int msync(void* addr, size_t len, int flags) {
  (void)addr;
  (void)len;
  (void)flags;
  return 0;  // anonymous memory has nothing to write back
}

}  // extern "C"
