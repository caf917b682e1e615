// One ECALL straight through a backend, below the host runtime: for tests
// that must enter a TCS the runtime would not give them (busy, not leased).
// Test-only; returns the exit reason (abi::kExitReturn, host::kExitEncluFault...).
#pragma once

#include <stdint.h>

#include <string>
#include <vector>

#include "common/enclave_abi.h"
#include "host/backend/backend.h"
#include "teemate/enclave.h"

namespace teemate::testing {

inline int refuse_aex(host::EnterContext*) { return 1; }

// Enters `tcs` once with `f` (its scratch region set here).
inline host::EnterContext enter_with(host::BackendEnclave& e, uint64_t tcs, abi::CallFrame& f) {
  std::vector<uint8_t> scratch(abi::kOcallScratchSize);
  f.abi_version = abi::kAbiVersion;
  f.ocall_scratch = reinterpret_cast<uint64_t>(scratch.data());
  f.ocall_scratch_size = scratch.size();
  host::EnterContext ctx{};
  ctx.tcs = tcs;
  ctx.rdi = abi::kEntryEcall;
  ctx.rsi = reinterpret_cast<uint64_t>(&f);
  ctx.on_aex = refuse_aex;
  e.enter(&ctx);
  return ctx;
}

// `auth`: the frame's lease or control token (zero when null). The
// enclave's status is ctx_out->out_rsi when the exit reason is kExitReturn.
inline uint64_t raw_ecall(host::BackendEnclave& e, uint64_t tcs, uint32_t id,
                          host::EnterContext* ctx_out = nullptr, const uint64_t* auth = nullptr,
                          const uint64_t* scalars = nullptr) {
  abi::CallFrame f{};
  f.call_id = id;
  for (int i = 0; i < 4; ++i) {
    if (auth) f.auth[i] = auth[i];
    if (scalars) f.scalars[i] = scalars[i];
  }
  const host::EnterContext ctx = enter_with(e, tcs, f);
  if (ctx_out) *ctx_out = ctx;
  return ctx.out_rdi;
}

// A CallTarget straight through a backend on one TCS (no lease token, no
// pool): the generated typed-call proxies, the runtime's own included, can
// drive an enclave the host runtime does not manage. The enclave's status
// of the last call is in `status` (kExitReturn assumed; else kErrState).
class RawTarget final : public CallTarget {
 public:
  RawTarget(host::BackendEnclave& e, uint64_t tcs) : e_(e), tcs_(tcs) {}
  Status call(uint32_t id, CallArgs& args) override {
    abi::CallFrame f{};
    f.call_id = id;
    f.nbufs = static_cast<uint32_t>(args.buffer_count());
    for (size_t i = 0; i < 4; ++i) f.scalars[i] = args.scalar_value(i);
    for (size_t i = 0; i < args.buffer_count(); ++i) {
      const auto& b = args.buffer(i);
      f.bufs[i] = abi::CallBuffer{reinterpret_cast<uint64_t>(b.data), b.size, 0, static_cast<uint32_t>(b.dir), 0};
    }
    const host::EnterContext ctx = enter_with(e_, tcs_, f);
    status = ctx.out_rdi == abi::kExitReturn ? static_cast<int32_t>(ctx.out_rsi) : abi::kErrState;
    for (size_t i = 0; i < args.buffer_count(); ++i) {
      auto& b = args.buffer(i);
      b.out_size = f.bufs[i].out_size <= b.size ? f.bufs[i].out_size : 0;
    }
    if (status != abi::kOk) return Status(Code::kInternal, "raw ECALL status " + std::to_string(status));
    return {};
  }
  int32_t status = abi::kOk;

 private:
  host::BackendEnclave& e_;
  uint64_t tcs_;
};

}  // namespace teemate::testing
