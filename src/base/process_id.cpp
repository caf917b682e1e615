// See process_id.h.
#include "base/process_id.h"

#include <sys/mman.h>
#include <unistd.h>

#include <atomic>

namespace teemate::base {
namespace {

// The page, or null when the kernel lacks MADV_WIPEONFORK (then every ask
// is a getpid()).
std::atomic<pid_t>* wipe_on_fork_slot() {
  static std::atomic<pid_t>* slot = [] () -> std::atomic<pid_t>* {
#ifdef MADV_WIPEONFORK
    void* page = mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (page == MAP_FAILED) return nullptr;
    if (madvise(page, 4096, MADV_WIPEONFORK) != 0) {
      munmap(page, 4096);
      return nullptr;
    }
    return new (page) std::atomic<pid_t>(0);
#else
    return nullptr;
#endif
  }();
  return slot;
}

}  // namespace

pid_t current_pid() {
  std::atomic<pid_t>* slot = wipe_on_fork_slot();
  if (!slot) return getpid();
  pid_t p = slot->load(std::memory_order_relaxed);
  if (p == 0) {
    p = getpid();
    slot->store(p, std::memory_order_relaxed);
  }
  return p;
}

}  // namespace teemate::base
