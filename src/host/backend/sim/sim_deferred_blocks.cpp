// Deferred TCS blocks: an attached process applies the page permissions of
// a TCS block (the pages from one TCS to the next: TCS, SSA, stack, thread
// data and their guards) when it first enters that TCS or touches the
// block, not at attach. A process leases one or a few of many TCS, and each
// range is one mprotect (40 TCS: about 120 of them, most of an attach's
// mapping time). Until then the block stays PROT_NONE in this process; a
// fault on it that the block's SECINFO would allow is retried after the
// permissions are applied, so enclave code sees SGX's semantics unchanged.
// Runs in signal context: no locks, no allocation, only mprotect.
#include <errno.h>
#include <sys/mman.h>

#include "host/backend/sim/sim_state.h"

namespace teemate::host::sim {
namespace {

constexpr uint8_t kNotAdded = 0x80;
constexpr uint8_t kDeferred = 0, kApplying = 1, kApplied = 2;

int prot_of(uint8_t perm) {
  int p = PROT_NONE;
  if (perm & sgx::kSecinfoR) p |= PROT_READ;
  if (perm & sgx::kSecinfoW) p |= PROT_WRITE;
  if (perm & sgx::kSecinfoX) p |= PROT_EXEC;
  return p;
}

// The deferred block holding `addr`, or -1.
int64_t block_of(const SimEnclaveState* st, uint64_t addr) {
  if (!st->deferred_blocks || addr < st->deferred_start) return -1;
  const uint64_t b = (addr - st->deferred_start) / st->deferred_stride;
  return b < st->deferred_blocks ? static_cast<int64_t>(b) : -1;
}

// Applies block b's permissions once per process; true when they are in
// place (now or earlier). Another thread applying it is waited for.
bool apply_block(SimEnclaveState* st, uint64_t b) {
  std::atomic<uint8_t>& s = st->deferred_state[b];
  uint8_t expected = kDeferred;
  if (s.compare_exchange_strong(expected, kApplying, std::memory_order_acq_rel)) {
    const uint64_t first = (st->deferred_start - st->base) / sgx::kPageSize + b * (st->deferred_stride / sgx::kPageSize);
    const int err = apply_page_permissions(st->base, st->page_perms, first, first + st->deferred_stride / sgx::kPageSize);
    s.store(err == 0 ? kApplied : kDeferred, std::memory_order_release);
    return err == 0;
  }
  while (expected == kApplying) {
    __builtin_ia32_pause();
    expected = s.load(std::memory_order_acquire);
  }
  return expected == kApplied;
}

}  // namespace

int apply_page_permissions(uint64_t base, const uint8_t* perms, uint64_t first, uint64_t end) {
  for (uint64_t i = first; i < end;) {
    uint64_t j = i;
    while (j < end && perms[j] == perms[i]) ++j;
    if (perms[i] != kNotAdded && perms[i] != 0) {
      if (mprotect(reinterpret_cast<void*>(base + i * sgx::kPageSize), (j - i) * sgx::kPageSize, prot_of(perms[i])) != 0) {
        return errno;
      }
    }
    i = j;
  }
  return 0;
}

void apply_deferred_block(SimEnclaveState* st, uint64_t addr) {
  const int64_t b = block_of(st, addr);
  if (b >= 0) (void)apply_block(st, static_cast<uint64_t>(b));
}

bool retry_after_deferred_block(SimEnclaveState* st, uint64_t addr, uint64_t page_fault_error) {
  const int64_t b = block_of(st, addr);
  if (b < 0 || !apply_block(st, static_cast<uint64_t>(b))) return false;
  // Retry only an access the page's SECINFO allows: anything else (a guard
  // page, a write to a read-only page) is the enclave's own fault and must
  // not loop here.
  const uint8_t perm = st->page_perms[(addr - st->base) / sgx::kPageSize];
  if (perm == kNotAdded || !(perm & sgx::kSecinfoR)) return false;
  if ((page_fault_error & 2) && !(perm & sgx::kSecinfoW)) return false;
  if ((page_fault_error & 16) && !(perm & sgx::kSecinfoX)) return false;
  return true;
}

}  // namespace teemate::host::sim
