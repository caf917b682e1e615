/* Shared memory for C++ enclave programs: an allocator over the enclave's
 * shared heap (tm_shared_malloc), containers that use it, and
 * shared_new/shared_delete. Memory from here lives as long as the enclave
 * and is visible to every process attached to it; `new`, `malloc` and the
 * standard containers' default allocator give per-process memory instead,
 * reclaimed (and scrubbed) when the process ends. A shared container must
 * hold only shared memory: its elements' own allocations too (hence
 * shared_string, not std::string, inside a shared_map). Guard shared data
 * with a tm_mutex. Enclave-only; needs no exceptions (allocation failure
 * aborts the ECALL, as `new` does). See docs/enclave-programs.md. */
#ifndef TEEMATE_TRUSTED_SHARED_MEMORY_H_
#define TEEMATE_TRUSTED_SHARED_MEMORY_H_

#ifndef __cplusplus
#error "teemate/trusted/shared_memory.h is C++; C code calls tm_shared_malloc directly"
#endif

#include <stddef.h>

#include <functional>
#include <map>
#include <new>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "teemate/trusted/runtime.h"

namespace teemate::trusted {

/* A standard allocator over the shared heap. Stateless: any two compare
 * equal, so containers can move and swap their storage freely. */
template <typename T>
struct SharedAllocator {
  using value_type = T;
  SharedAllocator() noexcept = default;
  template <typename U>
  SharedAllocator(const SharedAllocator<U>&) noexcept {}  // NOLINT(implicit)

  T* allocate(size_t n) {
    if (n > static_cast<size_t>(-1) / sizeof(T)) tm_abort("SharedAllocator: size overflow");
    void* p = alignof(T) > 16 ? tm_shared_aligned_alloc(alignof(T), n * sizeof(T)) : tm_shared_malloc(n * sizeof(T));
    if (!p) tm_abort("SharedAllocator: the enclave's shared heap is exhausted");
    return static_cast<T*>(p);
  }
  void deallocate(T* p, size_t) noexcept { tm_shared_free(p); }

  template <typename U>
  bool operator==(const SharedAllocator<U>&) const noexcept {
    return true;
  }
};

using shared_string = std::basic_string<char, std::char_traits<char>, SharedAllocator<char>>;
template <typename T>
using shared_vector = std::vector<T, SharedAllocator<T>>;
template <typename K, typename V, typename Less = std::less<K>>
using shared_map = std::map<K, V, Less, SharedAllocator<std::pair<const K, V>>>;
template <typename K, typename V, typename Hash = std::hash<K>, typename Eq = std::equal_to<K>>
using shared_unordered_map = std::unordered_map<K, V, Hash, Eq, SharedAllocator<std::pair<const K, V>>>;

/* One object in shared memory. */
template <typename T, typename... Args>
T* shared_new(Args&&... args) {
  void* p = SharedAllocator<T>().allocate(1);
  return ::new (p) T(std::forward<Args>(args)...);
}
template <typename T>
void shared_delete(T* p) noexcept {
  if (!p) return;
  p->~T();
  tm_shared_free(p);
}

}  // namespace teemate::trusted

#endif /* TEEMATE_TRUSTED_SHARED_MEMORY_H_ */
