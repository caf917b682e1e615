/* The daemon's control ECALLs (abi::is_control_ecall): claiming the enclave
 * for one daemon, and the process-context operations of process.cpp, all
 * authenticated by the 32-byte control token the daemon installed first.
 * In a claimed (shared) enclave, kEntryRecover is authenticated the same
 * way. A control ECALL takes no buffers, makes no OCALL, never flushes
 * stdio, and fails with kErrBusy when a lock it needs stays taken (see
 * locks.cpp), releasing whatever it took. Never reads host memory but the
 * frame its caller copied. */
#include <setjmp.h>
#include <string.h>

#include "runtime.h"

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

using ControlFn = int (*)(tm_call*);

ControlFn control_fn(uint32_t id) {
  switch (id) {
    case abi::kEcallProcessStart: return process_start;
    case abi::kEcallBindTcs: return bind_tcs;
    case abi::kEcallProcessEnd: return process_end;
    default: return nullptr;
  }
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

int32_t control_ecall(ThreadData* td, abi::CallFrame* host_frame, const abi::CallFrame& in) {
  int32_t status;
  if (in.call_id == abi::kEcallClaimControl) {
    status = claim_control(in.auth);
  } else if (!control_token_ok(in.auth)) {
    status = abi::kErrDenied;
  } else if (in.nbufs != 0) {
    status = abi::kErrInvalid;
  } else if (in.call_id == abi::kEcallResetThread) {
    // Drop the dead chain, and make this entry's exit forget it too (the
    // saved "previous entry frame" slot belongs to the dead chain).
    teemate_reset_thread();
    reinterpret_cast<uint64_t*>(td->entry_frame)[3] = 0;
    status = abi::kOk;
  } else {
    tm_call call{};
    call.id = in.call_id;
    memcpy(call.scalars, in.scalars, sizeof call.scalars);
    jmp_buf bail;
    td->control_base = td->nheld_locks;
    td->control_jmp = &bail;
    td->control_call = 1;
    const int why = setjmp(bail);
    if (why == 0) {
      ControlFn fn = control_fn(in.call_id);
      status = fn ? fn(&call) : abi::kErrUnknownCall;
    } else {
      // A lock stayed taken (1) or the call faulted (2): give back what it took.
      release_own_locks_since(td, td->control_base);
      status = why == 1 ? abi::kErrBusy : abi::kErrFault;
    }
    td->control_call = 0;
    td->control_jmp = nullptr;
    if (status == abi::kOk) memcpy(host_frame->scalars, call.scalars, sizeof call.scalars);
  }
  host_frame->status = status;
  return status;
}

}  // namespace teemate::trts
