// One ECALL straight through a backend, below the host runtime: for tests
// that must enter a TCS the runtime would not give them (busy, not leased).
// Test-only; returns the exit reason (abi::kExitReturn, host::kExitEncluFault...).
#pragma once

#include <stdint.h>

#include <vector>

#include "common/enclave_abi.h"
#include "host/backend/backend.h"

namespace teemate::testing {

inline int refuse_aex(host::EnterContext*) { return 1; }

// `auth`: the frame's lease or control token (zero when null). The
// enclave's status is ctx_out->out_rsi when the exit reason is kExitReturn.
inline uint64_t raw_ecall(host::BackendEnclave& e, uint64_t tcs, uint32_t id,
                          host::EnterContext* ctx_out = nullptr, const uint64_t* auth = nullptr,
                          const uint64_t* scalars = nullptr) {
  std::vector<uint8_t> scratch(abi::kOcallScratchSize);
  abi::CallFrame f{};
  f.abi_version = abi::kAbiVersion;
  f.call_id = id;
  if (auth) {
    for (int i = 0; i < 4; ++i) f.auth[i] = auth[i];
  }
  if (scalars) {
    for (int i = 0; i < 4; ++i) f.scalars[i] = scalars[i];
  }
  f.ocall_scratch = reinterpret_cast<uint64_t>(scratch.data());
  f.ocall_scratch_size = scratch.size();
  host::EnterContext ctx{};
  ctx.tcs = tcs;
  ctx.rdi = abi::kEntryEcall;
  ctx.rsi = reinterpret_cast<uint64_t>(&f);
  ctx.on_aex = refuse_aex;
  e.enter(&ctx);
  if (ctx_out) *ctx_out = ctx;
  return ctx.out_rdi;
}

}  // namespace teemate::testing
