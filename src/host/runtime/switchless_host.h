// Switchless calls, host side (abi::SwitchlessQueue, docs/switchless.md):
// host worker threads that serve the enclave's switchless OCALLs from a
// queue in this process's memory, and the host threads that run enclave
// workers (the tm_runtime_switchless_worker loop) for switchless ECALLs. Idle
// workers spin for a while, then sleep until the next crossing nudges them.
// Never serves a frame outside a scratch region this process handed out.
#pragma once

#include <stdint.h>

#include <atomic>
#include <functional>
#include <memory>
#include <thread>
#include <vector>

#include "common/enclave_abi.h"

namespace teemate::host {

struct SwitchlessConfig {
  uint32_t ocall_workers = 0;
  uint32_t ecall_workers = 0;
  uint32_t retries = 20000;  // polls before a caller falls back to a crossing
  uint32_t idle_us = 500;    // an idle worker polls this long, then sleeps
};

class SwitchlessHost {
 public:
  struct Hooks {
    // Serves one OCALL frame the enclave posted (validated by the caller).
    std::function<void(abi::CallFrame*)> serve_ocall;
    // Runs the enclave worker loop once (an ECALL that returns when idle);
    // false when it could not (no TCS, an error): the worker then waits.
    // Sets *served to the number of ECALLs it ran.
    std::function<bool(uint64_t idle_polls, uint64_t* served)> run_enclave_worker;
  };

  SwitchlessHost(const SwitchlessConfig& config, Hooks hooks);
  ~SwitchlessHost();  // stops and joins every worker
  SwitchlessHost(const SwitchlessHost&) = delete;
  SwitchlessHost& operator=(const SwitchlessHost&) = delete;

  // Host addresses for tm_runtime_switchless_setup (0 when that direction has
  // no workers).
  uint64_t ocall_queue_address() const;
  uint64_t ecall_queue_address() const;
  const SwitchlessConfig& config() const { return config_; }
  uint64_t ocalls_served() const { return ocalls_served_.load(std::memory_order_relaxed); }
  uint64_t ecalls_served() const { return ecalls_served_.load(std::memory_order_relaxed); }
  uint64_t ecall_fallbacks() const { return ecall_fallbacks_.load(std::memory_order_relaxed); }

  // Starts the workers (after the setup ECALL made the queues known).
  void start();
  // Stops and joins every worker; the queues stay allocated (the enclave
  // may still know them) until destruction.
  void stop();
  // Posts an ECALL frame to an enclave worker and waits for it: false
  // (nothing happened) when no worker took it within the retry budget.
  bool try_ecall(abi::CallFrame* frame);
  // Wakes sleeping workers: called at every real crossing, as the Intel
  // SGX SDK does, so that a burst of calls finds them awake.
  void nudge();

  // Scratch regions this process handed to the enclave for OCALL frames.
  static void register_scratch(const uint8_t* region);
  static void unregister_scratch(const uint8_t* region);
  static bool is_scratch(const uint8_t* frame);

 private:
  bool post_ecall(abi::CallFrame* frame);
  void ocall_worker();
  void ecall_worker();
  void sleep_until_nudged(abi::SwitchlessQueue* q);

  SwitchlessConfig config_;
  Hooks hooks_;
  abi::SwitchlessQueue* ocall_queue_ = nullptr;
  abi::SwitchlessQueue* ecall_queue_ = nullptr;
  std::atomic<bool> stop_{false};
  std::atomic<uint32_t> wake_seq_{0};
  std::vector<std::thread> threads_;
  std::atomic<uint64_t> ocalls_served_{0}, ecalls_served_{0}, ecall_fallbacks_{0};
};

}  // namespace teemate::host
