/* ECALL dispatch: validates the host's CallFrame (copied in once), sends
 * control ECALLs to control.cpp, checks in a shared enclave that the TCS is
 * leased and the frame carries its lease token, copies every input buffer
 * into the enclave (into the calling process's arena when it has one, so
 * that a process killed mid-call leaves nothing in the global heap), runs
 * the handler, copies outputs back after checking their lengths, and turns
 * an aborted call (unhandled exception, tm_abort) into an error status.
 * Never dereferences a host pointer it has not range-checked, and never
 * reads a host value twice. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "runtime.h"
#include "sgx/arch.h"
#include "tm_runtime_t.h"

extern "C" {
extern const tm_ecall_entry __start_teemate_ecalls[] __attribute__((weak));
extern const tm_ecall_entry __stop_teemate_ecalls[] __attribute__((weak));
}

namespace teemate::trts {
namespace {

// The runtime's own typed ECALLs (tm_runtime.edl); call->id is set.
int runtime_ecall(tm_call* call) { return tm_runtime_dispatch_ecall(call->id, call); }

tm_ecall_fn find_ecall(uint32_t id) {
  if (abi::is_runtime_ecall(id)) return runtime_ecall;
  if (id < abi::kFirstUserCall) return nullptr;
  for (const tm_ecall_entry* e = __start_teemate_ecalls; e && e < __stop_teemate_ecalls; ++e) {
    if (e->id == id) return e->fn;
  }
  return nullptr;
}

void free_copies(EcallState* st) {
  for (void*& p : st->copies) {
    if (p) heap_free(*st->copy_heap, p);
    p = nullptr;
  }
}

int32_t dispatch(EcallState* st, const abi::CallFrame& in, tm_call* call) {
  tm_ecall_fn fn = find_ecall(in.call_id);
  if (!fn) return abi::kErrUnknownCall;
  if (in.nbufs > abi::kMaxCallBuffers) return abi::kErrInvalid;
  const uint64_t limit = globals().meta->max_call_buffer;
  call->id = in.call_id;
  call->nbufs = in.nbufs;
  memcpy(call->scalars, in.scalars, sizeof(call->scalars));
  for (uint32_t i = 0; i < in.nbufs; ++i) {
    const abi::CallBuffer& b = in.bufs[i];
    if (b.direction < abi::kBufIn || b.direction > abi::kBufInOut) return abi::kErrInvalid;
    if (b.size > limit) return abi::kErrTooLarge;
    if (b.size && !outside_enclave(b.ptr, b.size)) return abi::kErrBufferRange;
    if (!b.size && b.ptr && !outside_enclave(b.ptr, 1)) return abi::kErrBufferRange;
    void* copy = heap_alloc(*st->copy_heap, b.size ? b.size : 1, 16);
    if (!copy) return abi::kErrNoMemory;
    st->copies[i] = copy;
    if (b.direction & abi::kBufIn) {
      memcpy(copy, reinterpret_cast<const void*>(b.ptr), b.size);
    } else {
      memset(copy, 0, b.size);
    }
    call->bufs[i] = tm_buffer{copy, b.size, 0, b.direction};
  }
  int rc = fn(call);
  if (rc != TM_OK) return rc;
  for (uint32_t i = 0; i < in.nbufs; ++i) {
    const abi::CallBuffer& b = in.bufs[i];
    if (!(b.direction & abi::kBufOut)) continue;
    size_t n = call->bufs[i].out_size;
    if (n > b.size) return abi::kErrInvalid;
    memcpy(reinterpret_cast<void*>(b.ptr), call->bufs[i].data, n);
    st->host_frame->bufs[i].out_size = n;
  }
  memcpy(st->host_frame->scalars, call->scalars, sizeof(call->scalars));
  return TM_OK;
}

}  // namespace
}  // namespace teemate::trts

using namespace teemate;
using namespace teemate::trts;

extern "C" void teemate_flush_stdio(void);

namespace {
EcallState* current_ecall_state() {
  ThreadData* td = current_td();
  return td->initialized ? td->current_ecall : nullptr;
}
int64_t run_ecall(ThreadData* td, uint64_t frame_addr, bool switchless);
}  // namespace

extern "C" int tm_runtime_run_main(const char* argv, uint64_t argv_size, int64_t* exit_code) {
  if (!exit_code) return TM_ERR_INVALID;
  int code = 0;
  const int rc = run_main(argv, static_cast<size_t>(argv_size), &code);
  *exit_code = code;
  return rc;
}

extern "C" int tm_app_error(int32_t code, const char* message) {
  EcallState* st = current_ecall_state();
  if (!st) return TM_ERR_APP;
  st->app_code = code;
  st->app_error_set = 1;
  size_t n = message ? strnlen(message, sizeof(st->app_message) - 1) : 0;
  // Cut at a UTF-8 character boundary: drop a trailing incomplete sequence.
  if (message && message[n] != 0) {
    size_t k = n;
    while (k > 0 && (static_cast<unsigned char>(message[k]) & 0xc0) == 0x80) --k;
    n = k;
  }
  memcpy(st->app_message, message ? message : "", n);
  st->app_message_len = static_cast<uint32_t>(n);
  return TM_ERR_APP;
}

extern "C" int tm_app_error_pending(void) {
  EcallState* st = current_ecall_state();
  return st && st->app_error_set ? 1 : 0;
}

extern "C" int tm_app_errorf(int32_t code, const char* format, ...) {
  EcallState* st = current_ecall_state();
  if (!st) return TM_ERR_APP;
  char buf[abi::kAppMessageMax];
  va_list ap;
  va_start(ap, format);
  int n = vsnprintf(buf, sizeof buf, format ? format : "", ap);
  va_end(ap);
  if (n < 0) buf[0] = 0;
  return tm_app_error(code, buf);
}

// The first entry on a TCS at CSSA > 0 (its first thread died before the
// runtime ran): global and per-thread set-up. 1 on success.
extern "C" int64_t teemate_late_thread_init(uint64_t tcs) {
  ThreadData* td;
  __asm__ volatile("rdgsbase %0" : "=r"(td));
  if (!global_init(tcs, true)) return 0;
  if (!td->initialized) thread_init(td, tcs);
  return 1;
}

extern "C" int64_t teemate_ecall_entry(uint64_t reason, uint64_t frame_addr, uint64_t tcs) {
  ThreadData* td;
  __asm__ volatile("rdgsbase %0" : "=r"(td));
  if (!td->initialized) {
    if (!global_init(tcs, false)) return abi::kErrState;
    thread_init(td, tcs);
  }
  if (reason != abi::kEntryEcall) return abi::kErrInvalid;
  return run_ecall(td, frame_addr, false);
}

namespace teemate::trts {

int32_t run_switchless_ecall(ThreadData* td, uint64_t frame_addr) {
  return static_cast<int32_t>(run_ecall(td, frame_addr, true));
}

}  // namespace teemate::trts

namespace {

// One ECALL's frame, from the host's EENTER or (`switchless`) from the
// ECALL queue an enclave worker serves: then the worker's own entry was the
// one authenticated, only application calls are served, and nested OCALLs
// use the worker's scratch region (its host thread serves them).
int64_t run_ecall(ThreadData* td, uint64_t frame_addr, bool switchless) {
  if (frame_addr == 0 || (frame_addr & 7) || !outside_enclave(frame_addr, sizeof(abi::CallFrame))) {
    return abi::kErrBufferRange;
  }
  abi::CallFrame* host_frame = reinterpret_cast<abi::CallFrame*>(frame_addr);
  abi::CallFrame in;
  memcpy(&in, host_frame, sizeof(in));  // one read of host memory
  if (in.abi_version != abi::kAbiVersion) return abi::kErrAbi;
  if (switchless) {
    // Only the application's own ECALLs ride a switchless worker.
    if (in.call_id < abi::kFirstUserCall || (in.call_id >= abi::kFirstRuntimeId && in.call_id <= abi::kLastRuntimeId) ||
        !td->current_ecall) {
      host_frame->status = abi::kErrDenied;
      return abi::kErrDenied;
    }
    in.ocall_scratch = td->current_ecall->scratch;
    in.ocall_scratch_size = td->current_ecall->scratch_size;
    __atomic_add_fetch(&td->ecall_depth, 1, __ATOMIC_SEQ_CST);
  } else if (abi::is_control_ecall(in.call_id)) {
    return control_ecall(td, host_frame, in);
  } else if (enclave_is_shared()) {
    // Only the process this TCS is leased to knows its lease token.
    if (!td->context || in.auth[2] || in.auth[3] || !tokens_equal(in.auth, td->lease_token, 2) ||
        !enter_bound_context(td)) {
      host_frame->status = abi::kErrDenied;
      return abi::kErrDenied;
    }
  } else {
    __atomic_add_fetch(&td->ecall_depth, 1, __ATOMIC_SEQ_CST);
  }

  if (!td->current_ecall) {
    // An outermost ECALL is a new thread as far as pthreads and
    // thread_local go (nor does one process see another's values).
    td->pthread = nullptr;
    memset(td->tsd, 0, sizeof td->tsd);
    tls_reset(td);
  }
  // What an abandoned call must put back (see the abort branch below).
  void* const main_frame_at_entry = td->main_frame;
  void* const pthread_at_entry = td->pthread;
  volatile uint32_t* const once_at_entry = td->running_once;
  EcallState st{};
  st.copy_heap = &current_heap();
  st.outer = td->current_ecall;
  st.host_frame = host_frame;
  st.scratch = in.ocall_scratch;
  st.scratch_size = in.ocall_scratch_size;
  if (st.scratch_size && !outside_enclave(st.scratch, st.scratch_size)) {
    __atomic_sub_fetch(&td->ecall_depth, 1, __ATOMIC_SEQ_CST);
    host_frame->status = abi::kErrBufferRange;
    return abi::kErrBufferRange;
  }
  st.lock_base = td->nheld_locks;
  td->current_ecall = &st;

  tm_call call{};
  int32_t status;
  if (setjmp(st.abort_jmp) == 0) {
    status = dispatch(&st, in, &call);
  } else {
    // Abandoned by teemate_abort_current_ecall: report the fault, and give
    // back any runtime lock the abandoned code held (undoing a heap update
    // it was in), so that an aborted call never leaves a lock taken.
    release_own_locks_since(td, st.lock_base);
    // Review defects: an abandoned main() must not leave exit() a dead
    // frame; an abandoned pthread must still end (its joiner waits, its
    // registry slot is held); an abandoned pthread_once routine lets the
    // next caller run it.
    td->main_frame = main_frame_at_entry;
    if (td->running_once != once_at_entry) {
      __atomic_store_n(td->running_once, 0u, __ATOMIC_RELEASE);
      tm_wake(td->running_once);
      td->running_once = once_at_entry;
    }
    if (td->pthread != pthread_at_entry) abandon_thread(td, pthread_at_entry);
    status = abi::kErrFault;
    abi::ExceptionReport rep{};
    rep.vector = static_cast<uint32_t>(td->pending_fault_vector);
    rep.valid = static_cast<uint32_t>(td->pending_fault_valid);
    rep.rip_offset = td->pending_fault_rip;
    rep.addr = td->pending_fault_addr;
    host_frame->exception = rep;
    if (rep.vector == 0xffffffffu && st.app_message_len) {  // tm_abort's reason
      abi::AppError why{};
      why.message_len = st.app_message_len;
      memcpy(why.message, st.app_message, st.app_message_len);
      host_frame->app_error = why;
    }
  }
  if (status == abi::kErrApp) {
    abi::AppError app{};
    app.code = st.app_code;
    app.message_len = st.app_message_len;
    memcpy(app.message, st.app_message, st.app_message_len);
    host_frame->app_error = app;
  }
  teemate_flush_stdio();
  free_copies(&st);
  td->current_ecall = st.outer;
  __atomic_sub_fetch(&td->ecall_depth, 1, __ATOMIC_SEQ_CST);
  host_frame->status = status;
  return status;
}

}  // namespace
