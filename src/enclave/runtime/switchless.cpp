/* Switchless calls, enclave side (abi::SwitchlessQueue): an OCALL handed to
 * a host worker thread instead of leaving the enclave, and the enclave
 * worker loop that serves ECALLs posted by the process's host threads.
 * The queues live in the host memory of the calling process; the host owns
 * every word of them. Never follows a queue pointer that is not wholly
 * outside the enclave, never reads a slot's frame address twice, and never
 * treats anything the host wrote as more than what a real crossing returns
 * (the frames are checked by the same code). A hostile host can make a
 * caller wait, as it can by never returning from an OCALL; no more. */
#include <string.h>

#include "runtime.h"
#include "tm_runtime_t.h"

namespace teemate::trts {
namespace {

constexpr uint64_t kMaxPolls = 10000000;

abi::SwitchlessQueue* queue_at(uint64_t addr) {
  if (addr == 0 || addr % 64 || !outside_enclave(addr, sizeof(abi::SwitchlessQueue))) return nullptr;
  return reinterpret_cast<abi::SwitchlessQueue*>(addr);
}

uint32_t state_of(abi::SwitchlessSlot& s) { return __atomic_load_n(&s.state, __ATOMIC_ACQUIRE); }

bool move_state(abi::SwitchlessSlot& s, uint32_t from, uint32_t to) {
  return __atomic_compare_exchange_n(&s.state, &from, to, false, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE);
}

inline void cpu_relax() { __builtin_ia32_pause(); }

}  // namespace

int switchless_setup(uint64_t oq, uint64_t eq, uint64_t retry_polls) {
  if ((oq && !queue_at(oq)) || (eq && !queue_at(eq))) return TM_ERR_BUFFER_RANGE;
  if (oq && eq && oq < eq + sizeof(abi::SwitchlessQueue) && eq < oq + sizeof(abi::SwitchlessQueue)) {
    return TM_ERR_INVALID;  // one queue for both directions would mix frames
  }
  if ((oq && __atomic_load_n(&queue_at(oq)->magic, __ATOMIC_RELAXED) != abi::kSwitchlessMagic) ||
      (eq && __atomic_load_n(&queue_at(eq)->magic, __ATOMIC_RELAXED) != abi::kSwitchlessMagic)) {
    return TM_ERR_INVALID;
  }
  SwitchlessSettings& s = my_switchless();
  const uint64_t retries = retry_polls < kMaxPolls ? retry_polls : kMaxPolls;
  __atomic_store_n(&s.ocall_retries, static_cast<uint32_t>(retries), __ATOMIC_RELAXED);
  __atomic_store_n(&s.ocall_queue, oq, __ATOMIC_RELEASE);
  __atomic_store_n(&s.ecall_queue, eq, __ATOMIC_RELEASE);
  return TM_OK;
}

bool switchless_ocall(uint64_t frame) {
  SwitchlessSettings& s = my_switchless();
  abi::SwitchlessQueue* q = queue_at(__atomic_load_n(&s.ocall_queue, __ATOMIC_ACQUIRE));
  if (!q || __atomic_load_n(&q->awake_workers, __ATOMIC_RELAXED) == 0) return false;
  // Claim a free slot, starting at one that depends on the frame (threads
  // of one process have different scratch regions) to spread contention.
  const uint32_t first = static_cast<uint32_t>(frame >> 12) % abi::kSwitchlessSlots;
  abi::SwitchlessSlot* slot = nullptr;
  for (uint32_t i = 0; i < abi::kSwitchlessSlots && !slot; ++i) {
    abi::SwitchlessSlot& c = q->slots[(first + i) % abi::kSwitchlessSlots];
    if (state_of(c) == abi::kSlotFree && move_state(c, abi::kSlotFree, abi::kSlotClaimed)) slot = &c;
  }
  if (!slot) return false;  // every slot busy: cross instead
  __atomic_store_n(&slot->frame, frame, __ATOMIC_RELAXED);
  __atomic_store_n(&slot->state, static_cast<uint32_t>(abi::kSlotPosted), __ATOMIC_RELEASE);
  const uint32_t retries = __atomic_load_n(&s.ocall_retries, __ATOMIC_RELAXED);
  for (uint32_t i = 0; i < retries && state_of(*slot) == abi::kSlotPosted; ++i) cpu_relax();
  if (move_state(*slot, abi::kSlotPosted, abi::kSlotFree)) return false;  // no worker came
  // A worker took it: the frame is the host's until the slot says Done.
  while (state_of(*slot) != abi::kSlotDone) cpu_relax();
  __atomic_store_n(&slot->state, static_cast<uint32_t>(abi::kSlotFree), __ATOMIC_RELEASE);
  return true;
}

int switchless_worker(uint64_t idle_polls, uint64_t* served_out) {
  ThreadData* td = current_td();
  // Only as an outermost ECALL: the worker's frame is its authority.
  if (!td->current_ecall || td->current_ecall->outer) return TM_ERR_INVALID;
  abi::SwitchlessQueue* q = queue_at(__atomic_load_n(&my_switchless().ecall_queue, __ATOMIC_ACQUIRE));
  if (!q) return TM_ERR_INVALID;
  const uint64_t idle_limit = idle_polls < kMaxPolls ? idle_polls : kMaxPolls;
  uint64_t served = 0;
  for (uint64_t idle = 0; idle < idle_limit;) {
    bool found = false;
    for (uint32_t i = 0; i < abi::kSwitchlessSlots; ++i) {
      abi::SwitchlessSlot& c = q->slots[i];
      if (state_of(c) != abi::kSlotPosted || !move_state(c, abi::kSlotPosted, abi::kSlotRunning)) continue;
      const uint64_t frame = __atomic_load_n(&c.frame, __ATOMIC_RELAXED);  // read once
      run_switchless_ecall(td, frame);  // the status goes to the frame
      __atomic_store_n(&c.state, static_cast<uint32_t>(abi::kSlotDone), __ATOMIC_RELEASE);
      ++served;
      found = true;
    }
    if (found) {
      idle = 0;
    } else {
      ++idle;
      cpu_relax();
    }
  }
  *served_out = served;
  return TM_OK;
}

}  // namespace teemate::trts

// The typed ECALLs of tm_runtime.edl.
extern "C" int tm_runtime_switchless_setup(uint64_t ocall_queue, uint64_t ecall_queue, uint64_t retries) {
  return teemate::trts::switchless_setup(ocall_queue, ecall_queue, retries);
}

extern "C" int tm_runtime_switchless_worker(uint64_t idle_polls, uint64_t* served) {
  if (!served) return TM_ERR_INVALID;
  return teemate::trts::switchless_worker(idle_polls, served);
}
