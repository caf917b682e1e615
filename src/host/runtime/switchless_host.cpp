// Switchless calls, host side: see switchless_host.h.
#include "host/runtime/switchless_host.h"

#include <stdlib.h>
#include <string.h>

#include <chrono>
#include <mutex>
#include <set>
#include <shared_mutex>

namespace teemate::host {
namespace {

// An enclave worker returns to the host after this many empty polls (its
// host thread then decides, by the clock, whether to go back or sleep).
constexpr uint64_t kEnclaveWorkerIdlePolls = 20000;

inline void cpu_relax() { __builtin_ia32_pause(); }

uint32_t load(const uint32_t* w) { return __atomic_load_n(w, __ATOMIC_ACQUIRE); }
void store(uint32_t* w, uint32_t v) { __atomic_store_n(w, v, __ATOMIC_RELEASE); }
bool move_state(abi::SwitchlessSlot& s, uint32_t from, uint32_t to) {
  return __atomic_compare_exchange_n(&s.state, &from, to, false, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE);
}

abi::SwitchlessQueue* new_queue() {
  void* mem = aligned_alloc(alignof(abi::SwitchlessQueue), sizeof(abi::SwitchlessQueue));
  if (!mem) return nullptr;
  memset(mem, 0, sizeof(abi::SwitchlessQueue));
  auto* q = static_cast<abi::SwitchlessQueue*>(mem);
  q->magic = abi::kSwitchlessMagic;
  return q;
}

std::shared_mutex g_scratch_mu;
std::set<const uint8_t*>& scratch_regions() {
  static auto* regions = new std::set<const uint8_t*>();  // outlives every thread's pool
  return *regions;
}

}  // namespace

void SwitchlessHost::register_scratch(const uint8_t* region) {
  std::unique_lock lock(g_scratch_mu);
  scratch_regions().insert(region);
}

void SwitchlessHost::unregister_scratch(const uint8_t* region) {
  std::unique_lock lock(g_scratch_mu);
  scratch_regions().erase(region);
}

bool SwitchlessHost::is_scratch(const uint8_t* frame) {
  std::shared_lock lock(g_scratch_mu);
  return scratch_regions().count(frame) != 0;
}

SwitchlessHost::SwitchlessHost(const SwitchlessConfig& config, Hooks hooks) : config_(config), hooks_(std::move(hooks)) {
  if (config_.ocall_workers) ocall_queue_ = new_queue();
  if (config_.ecall_workers) ecall_queue_ = new_queue();
}

SwitchlessHost::~SwitchlessHost() {
  stop();
  free(ocall_queue_);
  free(ecall_queue_);
}

void SwitchlessHost::stop() {
  stop_.store(true);
  wake_seq_.fetch_add(1);
  wake_seq_.notify_all();
  for (auto& t : threads_) t.join();
  threads_.clear();
}

uint64_t SwitchlessHost::ocall_queue_address() const { return reinterpret_cast<uint64_t>(ocall_queue_); }
uint64_t SwitchlessHost::ecall_queue_address() const { return reinterpret_cast<uint64_t>(ecall_queue_); }

void SwitchlessHost::start() {
  for (uint32_t i = 0; ocall_queue_ && i < config_.ocall_workers; ++i) threads_.emplace_back([this] { ocall_worker(); });
  for (uint32_t i = 0; ecall_queue_ && i < config_.ecall_workers; ++i) threads_.emplace_back([this] { ecall_worker(); });
}

void SwitchlessHost::nudge() {
  const bool sleepers = (ocall_queue_ && load(&ocall_queue_->sleeping_workers)) ||
                        (ecall_queue_ && load(&ecall_queue_->sleeping_workers));
  if (!sleepers) return;
  wake_seq_.fetch_add(1, std::memory_order_release);
  wake_seq_.notify_all();
}

// Sleeps until a crossing nudges, unless a call was posted after the
// worker stopped counting as awake (the caller saw it awake and posted):
// then it goes straight back to serve it.
void SwitchlessHost::sleep_until_nudged(abi::SwitchlessQueue* q) {
  const uint32_t seen = wake_seq_.load(std::memory_order_acquire);
  __atomic_add_fetch(&q->sleeping_workers, 1, __ATOMIC_ACQ_REL);
  bool posted = false;
  for (auto& slot : q->slots) posted = posted || load(&slot.state) == abi::kSlotPosted;
  if (!posted && !stop_.load()) wake_seq_.wait(seen, std::memory_order_acquire);
  __atomic_sub_fetch(&q->sleeping_workers, 1, __ATOMIC_ACQ_REL);
}

void SwitchlessHost::ocall_worker() {
  abi::SwitchlessQueue* q = ocall_queue_;
  while (!stop_.load(std::memory_order_relaxed)) {
    __atomic_add_fetch(&q->awake_workers, 1, __ATOMIC_ACQ_REL);
    const auto idle_limit = std::chrono::microseconds(config_.idle_us);
    auto idle_since = std::chrono::steady_clock::now();
    for (uint64_t polls = 0; !stop_.load(std::memory_order_relaxed); ++polls) {
      bool found = false;
      for (auto& slot : q->slots) {
        if (load(&slot.state) != abi::kSlotPosted || !move_state(slot, abi::kSlotPosted, abi::kSlotRunning)) continue;
        auto* frame = reinterpret_cast<abi::CallFrame*>(__atomic_load_n(&slot.frame, __ATOMIC_RELAXED));
        // Only a frame in a scratch region we handed out (as a crossing's
        // OCALL must be): anything else is left as it is.
        if (is_scratch(reinterpret_cast<const uint8_t*>(frame))) {
          hooks_.serve_ocall(frame);
          ocalls_served_.fetch_add(1, std::memory_order_relaxed);
        }
        store(&slot.state, abi::kSlotDone);
        found = true;
      }
      if (found) {
        idle_since = std::chrono::steady_clock::now();
      } else {
        cpu_relax();
        if (polls % 64 == 0 && std::chrono::steady_clock::now() - idle_since > idle_limit) break;
      }
    }
    __atomic_sub_fetch(&q->awake_workers, 1, __ATOMIC_ACQ_REL);
    if (stop_.load()) break;
    sleep_until_nudged(q);
  }
}

void SwitchlessHost::ecall_worker() {
  abi::SwitchlessQueue* q = ecall_queue_;
  while (!stop_.load(std::memory_order_relaxed)) {
    __atomic_add_fetch(&q->awake_workers, 1, __ATOMIC_ACQ_REL);
    // Back into the enclave while calls came within the idle time (each
    // visit ends after kEnclaveWorkerIdlePolls empty polls).
    const auto idle_limit = std::chrono::microseconds(config_.idle_us);
    auto idle_since = std::chrono::steady_clock::now();
    while (!stop_.load(std::memory_order_relaxed)) {
      uint64_t served = 0;
      if (!hooks_.run_enclave_worker(kEnclaveWorkerIdlePolls, &served)) break;
      if (served) {
        idle_since = std::chrono::steady_clock::now();
      } else if (std::chrono::steady_clock::now() - idle_since > idle_limit) {
        break;
      }
    }
    __atomic_sub_fetch(&q->awake_workers, 1, __ATOMIC_ACQ_REL);
    if (stop_.load()) break;
    sleep_until_nudged(q);
  }
}

bool SwitchlessHost::try_ecall(abi::CallFrame* frame) {
  if (!ecall_queue_) return false;
  const bool served = post_ecall(frame);
  (served ? ecalls_served_ : ecall_fallbacks_).fetch_add(1, std::memory_order_relaxed);
  return served;
}

bool SwitchlessHost::post_ecall(abi::CallFrame* frame) {
  abi::SwitchlessQueue* q = ecall_queue_;
  if (load(&q->awake_workers) == 0) {
    nudge();  // the next call may find one
    return false;
  }
  const uint32_t first = static_cast<uint32_t>(reinterpret_cast<uintptr_t>(frame) >> 6) % abi::kSwitchlessSlots;
  abi::SwitchlessSlot* slot = nullptr;
  for (uint32_t i = 0; i < abi::kSwitchlessSlots && !slot; ++i) {
    abi::SwitchlessSlot& c = q->slots[(first + i) % abi::kSwitchlessSlots];
    if (load(&c.state) == abi::kSlotFree && move_state(c, abi::kSlotFree, abi::kSlotClaimed)) slot = &c;
  }
  if (!slot) return false;
  __atomic_store_n(&slot->frame, reinterpret_cast<uint64_t>(frame), __ATOMIC_RELAXED);
  store(&slot->state, abi::kSlotPosted);
  for (uint32_t i = 0; i < config_.retries && load(&slot->state) == abi::kSlotPosted; ++i) cpu_relax();
  if (move_state(*slot, abi::kSlotPosted, abi::kSlotFree)) return false;
  // Taken: wait for the worker, politely once the call runs long.
  for (uint64_t i = 0; load(&slot->state) != abi::kSlotDone; ++i) {
    if (i < 100000) {
      cpu_relax();
    } else {
      std::this_thread::yield();
    }
  }
  store(&slot->state, abi::kSlotFree);
  return true;
}

}  // namespace teemate::host
