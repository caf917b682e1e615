/* Exception handling inside the enclave (entered at CSSA > 0 after an
 * asynchronous exit): reads the SSA frame the hardware wrote, offers the
 * exception to registered handlers, and either resumes with their changes
 * or redirects the interrupted thread to the abort stub, which fails the
 * current ECALL. Never trusts anything but the SSA frame and its own state. */
#include <string.h>

#include "runtime.h"
#include "sgx/arch.h"

namespace teemate::trts {
namespace {

constexpr int kMaxHandlers = 8;
tm_spinlock g_handlers_lock = TM_SPINLOCK_INIT;
tm_exception_handler g_handlers[kMaxHandlers];

sgx::GprSgx* ssa_gpr(ThreadData* td, uint64_t frame) {
  return reinterpret_cast<sgx::GprSgx*>(td->ssa_gpr0 + frame * td->ssa_frame_bytes);
}

void to_context(const sgx::GprSgx& g, tm_cpu_context* c) {
  *c = tm_cpu_context{g.rax, g.rcx, g.rdx, g.rbx, g.rsp, g.rbp, g.rsi, g.rdi, g.r8, g.r9, g.r10,
                      g.r11, g.r12, g.r13, g.r14, g.r15, g.rflags, g.rip};
}

void from_context(const tm_cpu_context& c, sgx::GprSgx* g) {
  g->rax = c.rax; g->rcx = c.rcx; g->rdx = c.rdx; g->rbx = c.rbx;
  g->rsp = c.rsp; g->rbp = c.rbp; g->rsi = c.rsi; g->rdi = c.rdi;
  g->r8 = c.r8; g->r9 = c.r9; g->r10 = c.r10; g->r11 = c.r11;
  g->r12 = c.r12; g->r13 = c.r13; g->r14 = c.r14; g->r15 = c.r15;
  g->rflags = c.rflags; g->rip = c.rip;
}

// Points the interrupted thread at the abort stub on a stack that is safe
// to use: the base of the current ECALL's stack is never below this.
void redirect_to_abort(ThreadData* td, sgx::GprSgx* g) {
  g->rip = reinterpret_cast<uint64_t>(&teemate_abort_stub);
  uint64_t sp = g->rsp;
  if (sp < td->stack_limit + 8192 || sp > td->stack_top) sp = td->exc_stack;
  g->rsp = (sp - 256) & ~uint64_t{15};
}

}  // namespace
}  // namespace teemate::trts

using namespace teemate;
using namespace teemate::trts;

extern "C" {

int tm_register_exception_handler(tm_exception_handler handler) {
  if (!handler) return TM_ERR_INVALID;
  tm_spin_lock(&g_handlers_lock);
  for (auto& h : g_handlers) {
    if (!h) {
      h = handler;
      tm_spin_unlock(&g_handlers_lock);
      return TM_OK;
    }
  }
  tm_spin_unlock(&g_handlers_lock);
  return TM_ERR_NO_MEMORY;
}

int tm_unregister_exception_handler(tm_exception_handler handler) {
  tm_spin_lock(&g_handlers_lock);
  for (auto& h : g_handlers) {
    if (h == handler) {
      h = nullptr;
      tm_spin_unlock(&g_handlers_lock);
      return TM_OK;
    }
  }
  tm_spin_unlock(&g_handlers_lock);
  return TM_ERR_INVALID;
}

// Returns the value the entry exits with (in RSI): 0, or abi::kErrDenied
// for a recovery entry that did not present the control token.
int64_t teemate_exception_entry(uint64_t cssa, uint64_t reason, uint64_t frame_addr) {
  ThreadData* td = current_td();
  sgx::GprSgx* g = ssa_gpr(td, cssa - 1);
  if (reason == abi::kEntryRecover) {
    // Only the daemon may throw away a thread's state: a co-tenant must not
    // reset another process's interrupted thread. In a dedicated enclave
    // (never claimed) the one process that owns it may.
    if (enclave_is_shared()) {
      if (frame_addr == 0 || (frame_addr & 7) || !outside_enclave(frame_addr, sizeof(abi::CallFrame))) {
        return abi::kErrDenied;
      }
      abi::CallFrame in;
      memcpy(&in, reinterpret_cast<const void*>(frame_addr), sizeof in);
      if (in.abi_version != abi::kAbiVersion || !control_token_ok(in.auth)) return abi::kErrDenied;
    }
    // The interrupted thread's process is gone: resume into the reset stub
    // instead of into its code, at the top of the stack (everything on it
    // is dead; the SSA frame's RSP may be stale when the thread died without
    // an asynchronous exit). A fault in the stub lands on the recovering
    // host's stack (the URSP/URBP this entry's EENTER saved), not the dead
    // process's.
    const sgx::GprSgx* self = ssa_gpr(td, cssa);
    g->ursp = self->ursp;
    g->urbp = self->urbp;
    g->rsp = (td->stack_top - 256) & ~uint64_t{15};
    g->rip = reinterpret_cast<uint64_t>(&teemate_reset_stub);
    return 0;
  }
  tm_exception_info info{};
  info.valid = sgx::exit_info_valid(g->exit_info) ? 1 : 0;
  info.vector = info.valid ? sgx::exit_info_vector(g->exit_info) : 0xffffffffu;
  const abi::EnclaveMeta* meta = globals().meta;
  if (meta->misc_select & sgx::kMiscExinfo) {
    const auto* ex = reinterpret_cast<const sgx::MiscExinfo*>(
        td->ssa_gpr0 + (cssa - 1) * td->ssa_frame_bytes - sizeof(sgx::MiscExinfo));
    info.fault_addr = ex->maddr;
  }
  to_context(*g, &info.cpu);

  // Handlers run only for an exception inside an ECALL (not the runtime's
  // own entry code) and never for a second fault while handling one.
  if (info.valid && td->current_ecall && cssa == 1) {
    tm_exception_handler snapshot[kMaxHandlers];
    tm_spin_lock(&g_handlers_lock);
    memcpy(snapshot, g_handlers, sizeof(snapshot));
    tm_spin_unlock(&g_handlers_lock);
    for (tm_exception_handler h : snapshot) {
      if (h && h(&info) == TM_EXCEPTION_CONTINUE_EXECUTION) {
        from_context(info.cpu, g);
        return 0;  // entry.S EEXITs; the host ERESUMEs
      }
    }
  }
  td->pending_fault_vector = info.vector;
  td->pending_fault_valid = info.valid;
  td->pending_fault_rip = g->rip - globals().base;
  td->pending_fault_addr = info.fault_addr;
  redirect_to_abort(td, g);
  return 0;
}

// Forgets everything a dead thread left on this TCS: its ECALL chain, a
// pending OCALL, a running main(). Takes no lock and frees nothing (the
// chain's buffer copies live in the dead process's arena, which
// tm_control_process_end frees whole), so it can run while a lock the dead thread
// held is still taken. Keeps the TCS's binding and the dead thread's list of
// locks: tm_control_process_end needs both to release them.
void teemate_reset_thread(void) {
  ThreadData* td = current_td();
  td->current_ecall = nullptr;
  __atomic_store_n(&td->ecall_depth, 0, __ATOMIC_SEQ_CST);
  td->ocall_sp = 0;
  td->main_frame = nullptr;
  td->pthread = nullptr;  // its record goes with the process (forget_threads_of)
  // A pthread_once routine that died here: the next caller runs it (waiters
  // poll the word, no wake needed).
  if (td->running_once) __atomic_store_n(td->running_once, 0u, __ATOMIC_RELEASE);
  td->running_once = nullptr;
}

__attribute__((noreturn)) void teemate_abort_current_ecall(void) {
  ThreadData* td = current_td();
  if (td->control_call) longjmp(*static_cast<jmp_buf*>(td->control_jmp), 2);
  if (!td->current_ecall) teemate_eexit(abi::kExitReturn, abi::kErrFault);
  longjmp(td->current_ecall->abort_jmp, 1);
}

__attribute__((noreturn)) void tm_abort(const char* why) {
  ThreadData* td = current_td();
  if (why) {
    host_write(2, "enclave abort: ", 15);
    host_write(2, why, strlen(why));
    host_write(2, "\n", 1);
  }
  // The reason also goes back with the call's error (ecall.cpp), bounded.
  if (why && td->current_ecall) {
    EcallState* st = td->current_ecall;
    size_t n = strnlen(why, sizeof(st->app_message) - 1);
    memcpy(st->app_message, why, n);
    st->app_message_len = static_cast<uint32_t>(n);
  }
  td->pending_fault_vector = 0xffffffffu;
  td->pending_fault_valid = 0;
  td->pending_fault_rip = 0;
  td->pending_fault_addr = 0;
  teemate_abort_current_ecall();
}

}  // extern "C"
