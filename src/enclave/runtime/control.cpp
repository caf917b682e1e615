/* The daemon's control ECALLs (abi::is_control_ecall; the typed calls of
 * common/tm_control.edl, whose functions this file implements): claiming
 * the enclave for one daemon, and the process-context operations of
 * process.cpp, all authenticated by the 32-byte control token the daemon
 * installed first. In a claimed (shared) enclave, kEntryRecover is
 * authenticated the same way. A control ECALL's request and answer are
 * copied to this thread's stack, never the heap (a dead process may hold
 * the heap lock); it makes no OCALL but diagnostics, never flushes stdio,
 * and fails with kErrBusy when a lock it needs stays taken (see locks.cpp),
 * releasing whatever it took. Never reads host memory but the frame and
 * the request its caller copied, each once. */
#include <setjmp.h>
#include <string.h>

#include "runtime.h"
#include "tm_control_t.h"

namespace teemate::trts {
namespace {

enum : uint32_t { kUnclaimed = 0, kClaiming = 1, kClaimed = 2 };
uint32_t g_control_state = kUnclaimed;  // written once, by claim_control
uint64_t g_control_token[4];            // valid once g_control_state == kClaimed

int claim_control(const uint64_t token[4]) {
  if (__atomic_load_n(&g_control_state, __ATOMIC_ACQUIRE) != kUnclaimed) return abi::kErrDenied;
  if ((token[0] | token[1] | token[2] | token[3]) == 0) return abi::kErrInvalid;
  uint32_t expected = kUnclaimed;
  if (!__atomic_compare_exchange_n(&g_control_state, &expected, kClaiming, false, __ATOMIC_ACQ_REL,
                                   __ATOMIC_ACQUIRE)) {
    return abi::kErrDenied;  // another daemon already holds this enclave
  }
  memcpy(g_control_token, token, sizeof g_control_token);
  teemate_stdio_make_unbuffered();
  __atomic_store_n(&g_control_state, kClaimed, __ATOMIC_RELEASE);
  return abi::kOk;
}

}  // namespace

bool enclave_is_shared() { return __atomic_load_n(&g_control_state, __ATOMIC_ACQUIRE) == kClaimed; }

bool tokens_equal(const uint64_t* a, const uint64_t* b, size_t words) {
  uint64_t diff = 0;
  for (size_t i = 0; i < words; ++i) diff |= a[i] ^ b[i];
  return diff == 0;
}

bool control_token_ok(const uint64_t auth[4]) {
  return enclave_is_shared() && tokens_equal(auth, g_control_token, 4);
}

namespace {

// The typed call: its two buffers checked and copied to the stack, the
// generated handler run under the bail-out, the answer copied back.
int32_t run_control(ThreadData* td, abi::CallFrame* host_frame, const abi::CallFrame& in) {
  if (in.nbufs != 2 || in.bufs[0].direction != abi::kBufIn || in.bufs[1].direction != abi::kBufOut) {
    return abi::kErrInvalid;
  }
  const abi::CallBuffer& req = in.bufs[0];
  const abi::CallBuffer& resp = in.bufs[1];
  if (req.size > abi::kControlMaxBytes || resp.size > abi::kControlMaxBytes) return abi::kErrTooLarge;
  if (!outside_enclave(req.ptr, req.size ? req.size : 1) || !outside_enclave(resp.ptr, resp.size ? resp.size : 1)) {
    return abi::kErrBufferRange;
  }
  alignas(16) uint8_t req_copy[abi::kControlMaxBytes];
  alignas(16) uint8_t resp_copy[abi::kControlMaxBytes];
  memcpy(req_copy, reinterpret_cast<const void*>(req.ptr), req.size);  // one read of host memory
  memset(resp_copy, 0, sizeof resp_copy);
  tm_call call{};
  call.id = in.call_id;
  call.nbufs = 2;
  memcpy(call.scalars, in.scalars, sizeof call.scalars);
  call.bufs[0] = tm_buffer{req_copy, req.size, 0, TM_BUF_IN};
  call.bufs[1] = tm_buffer{resp_copy, resp.size, 0, TM_BUF_OUT};

  int32_t status;
  jmp_buf bail;
  td->control_base = td->nheld_locks;
  td->control_jmp = &bail;
  td->control_call = 1;
  td->control_auth = in.auth;
  const int why = setjmp(bail);
  if (why == 0) {
    status = tm_control_dispatch_ecall(in.call_id, &call);
  } else {
    // A lock stayed taken (1) or the call faulted (2): give back what it took.
    release_own_locks_since(td, td->control_base);
    status = why == 1 ? abi::kErrBusy : abi::kErrFault;
  }
  td->control_auth = nullptr;
  td->control_call = 0;
  td->control_jmp = nullptr;
  if (status != abi::kOk) return status;
  const size_t n = call.bufs[1].out_size;
  if (n > resp.size) return abi::kErrInvalid;
  memcpy(reinterpret_cast<void*>(resp.ptr), resp_copy, n);
  host_frame->bufs[1].out_size = n;
  return abi::kOk;
}

// The process-context operations of process.cpp take their arguments in a
// tm_call's scalars.
int with_scalars(int (*fn)(tm_call*), uint64_t a, uint64_t b, uint64_t c, uint64_t out[4]) {
  tm_call call{};
  call.scalars[0] = a;
  call.scalars[1] = b;
  call.scalars[2] = c;
  const int rc = fn(&call);
  memcpy(out, call.scalars, sizeof call.scalars);
  return rc;
}

}  // namespace

int32_t control_ecall(ThreadData* td, abi::CallFrame* host_frame, const abi::CallFrame& in) {
  // Only the claim may come before a token exists (it installs its own),
  // and only then: a claimed enclave refuses it unread.
  const bool allowed = in.call_id == abi::kControlClaim
                           ? __atomic_load_n(&g_control_state, __ATOMIC_ACQUIRE) == kUnclaimed
                           : control_token_ok(in.auth);
  const int32_t status = allowed ? run_control(td, host_frame, in) : abi::kErrDenied;
  host_frame->status = status;
  return status;
}

}  // namespace teemate::trts

using teemate::trts::current_td;

extern "C" int tm_control_claim(void) {
  const uint64_t* auth = current_td()->control_auth;
  return auth ? teemate::trts::claim_control(auth) : TM_ERR_INVALID;
}

extern "C" int tm_control_reset_thread(void) {
  // Drop the dead chain, and make this entry's exit forget it too (the
  // saved "previous entry frame" slot belongs to the dead chain).
  teemate::trts::ThreadData* td = current_td();
  teemate_reset_thread();
  reinterpret_cast<uint64_t*>(td->entry_frame)[3] = 0;
  return TM_OK;
}

extern "C" int tm_control_process_start(uint64_t pid, uint64_t arena_bytes, uint64_t* context) {
  uint64_t out[4];
  const int rc = teemate::trts::with_scalars(teemate::trts::process_start, pid, arena_bytes, 0, out);
  *context = rc == TM_OK ? out[0] : 0;
  return rc;
}

extern "C" int tm_control_bind_tcs(uint64_t context, uint64_t lease_lo, uint64_t lease_hi) {
  uint64_t out[4];
  return teemate::trts::with_scalars(teemate::trts::bind_tcs, context, lease_lo, lease_hi, out);
}

extern "C" int tm_control_process_end(uint64_t context, int64_t* exit_status, uint64_t* leaked_bytes,
                                      uint64_t* globals_report) {
  uint64_t out[4];
  const int rc = teemate::trts::with_scalars(teemate::trts::process_end, context, 0, 0, out);
  *exit_status = static_cast<int64_t>(out[1]);
  *leaked_bytes = out[2];
  *globals_report = out[3];
  return rc;
}
