// The sim backend's CPU model: the signal handler that emulates ENCLU
// (EENTER/ERESUME from the host, EEXIT/EREPORT/EGETKEY from the enclave) and
// asynchronous exits (a fault inside the enclave is written to the SSA frame
// and the thread lands on the AEP with the synthetic state SGX defines).
// Runs in signal context: no locks, no allocation on the EEXIT/EENTER path.
// EREPORT/EGETKEY use OpenSSL, which is safe here because the thread that
// trapped was executing enclave code, never inside the host's libc.
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <ucontext.h>
#include <unistd.h>

#include <atomic>
#include <cstddef>
#include <cstdio>
#include <cstdlib>

#include "base/process_id.h"
#include "common/enclave_abi.h"
#include "host/backend/backend.h"
#include "host/backend/sim/sim_keys.h"
#include "host/backend/sim/sim_state.h"

extern "C" {
void teemate_sim_signal_entry(int, siginfo_t*, void*);
void teemate_enclu_fault(void);
}

// The entry stub reads the interrupted RIP at this offset.
static_assert(offsetof(ucontext_t, uc_mcontext) + REG_RIP * sizeof(greg_t) == 168);

namespace teemate::host::sim {
namespace {

std::atomic<SimEnclaveState*> g_registry[kMaxEnclaves];

struct sigaction g_previous[32];

constexpr int kSignals[] = {SIGILL, SIGSEGV, SIGBUS, SIGFPE, SIGTRAP};

// Signals that stay deliverable while a thread is inside an enclave: the
// synchronous ones become asynchronous exits.
uint64_t async_block_mask() {
  uint64_t m = ~uint64_t{0};
  for (int s : {SIGILL, SIGSEGV, SIGBUS, SIGFPE, SIGTRAP, SIGSYS, SIGKILL, SIGSTOP}) {
    m &= ~(uint64_t{1} << (s - 1));
  }
  return m;
}

uint64_t& sigmask_word(ucontext_t* uc) { return *reinterpret_cast<uint64_t*>(&uc->uc_sigmask); }

uint32_t current_tid() { return static_cast<uint32_t>(syscall(SYS_gettid)); }

// The FS base as the kernel keeps it (see teemate_sim_set_fsgs).
uint64_t rdfsbase() {
  unsigned long v = 0;
  syscall(SYS_arch_prctl, 0x1003 /* ARCH_GET_FS */, &v);
  return v;
}

greg_t& R(ucontext_t* uc, int r) { return uc->uc_mcontext.gregs[r]; }

sgx::GprSgx* gpr_of(const SimEnclaveState* st, const SimTcs* t, uint32_t frame) {
  uint64_t frame_bytes = uint64_t{st->ssa_frame_pages} * sgx::kPageSize;
  return reinterpret_cast<sgx::GprSgx*>(t->ossa_addr + frame * frame_bytes +
                                        sgx::gprsgx_offset(st->ssa_frame_pages));
}
uint8_t* xsave_of(const SimEnclaveState* st, const SimTcs* t, uint32_t frame) {
  uint64_t frame_bytes = uint64_t{st->ssa_frame_pages} * sgx::kPageSize;
  return reinterpret_cast<uint8_t*>(t->ossa_addr + frame * frame_bytes);
}

// TEEMATE_SIM_TRACE=1 logs every asynchronous exit to stderr.
bool trace_enabled() {
  static const bool on = [] {
    const char* v = std::getenv("TEEMATE_SIM_TRACE");
    return v && *v && *v != '0';
  }();
  return on;
}

bool is_enclu(uint64_t rip) {
  const auto* p = reinterpret_cast<const uint8_t*>(rip);
  return p[0] == 0x0f && p[1] == 0x01 && p[2] == 0xd7;
}

// Lands the host's ENCLU on teemate_enclu_fault with EAX = vector, as the
// vDSO reports a faulting ENCLU.
const void* enclu_fault(ucontext_t* uc, uint32_t vector) {
  R(uc, REG_RIP) = reinterpret_cast<greg_t>(&teemate_enclu_fault);
  R(uc, REG_RAX) = vector;
  return nullptr;
}

bool page_has(const SimEnclaveState* st, uint64_t addr, uint64_t len, uint8_t perm) {
  if (addr < st->base || len > st->size || addr - st->base > st->size - len) return false;
  for (uint64_t p = (addr - st->base) / 4096; p <= (addr - st->base + len - 1) / 4096; ++p) {
    uint8_t v = st->page_perms[p];
    if ((v & 0x80) || (v & perm) != perm) return false;
  }
  return true;
}

// A host thread's own FS base (its TLS) and tid never change, so EENTER
// reads them once per thread (each read is a system call). GS is read at
// every entry (host_gs_now): a host may set it between crossings.
struct HostThread {
  bool known = false;
  pid_t pid = 0;  // of the process that cached it: a child (fork, _Fork, clone) asks again
  uint64_t fs = 0;
  uint32_t tid = 0;
  uint64_t pidns = 0;  // inode of /proc/self/ns/pid (0 if /proc is not there)
};
thread_local HostThread t_host;

bool is_some_enclave_gs(uint64_t gs);

const HostThread& host_thread() {
  if (!t_host.known || t_host.pid != base::current_pid()) {
    t_host.pid = base::current_pid();
    t_host.fs = rdfsbase();
    t_host.tid = current_tid();
    struct stat ns {};
    t_host.pidns = stat("/proc/self/ns/pid", &ns) == 0 ? ns.st_ino : 0;
    t_host.known = true;
  }
  return t_host;
}


// Claims a TCS for the calling thread as EENTER/ERESUME do: busy is a #GP.
bool claim_tcs(SimTcs* t) {
  const HostThread& h = host_thread();
  uint32_t expected = 0;
  if (!t->busy.compare_exchange_strong(expected, h.tid, std::memory_order_acquire)) return false;
  t->holder_pidns.store(h.pidns, std::memory_order_relaxed);
  return true;
}

// The host's GS base now (the host may change it between crossings; RDGSBASE
// reads it without a system call, as the signal entry stub does), or 0 when
// it is an enclave's, left there by a lazy EEXIT: a host that does not use GS.
// The GS base this thread's last lazy exit left (it outlives the enclave:
// a thread that used an enclave since destroyed still does not use GS).
// A thread that inherited such a base from its creator and never crossed
// itself takes it for its own and has it restored after each crossing:
// slower (two GS writes), never wrong. Addresses of destroyed enclaves are
// not remembered, since host memory may be mapped there later and used
// through GS (review defect).
thread_local uint64_t t_left_gs = 0;

uint64_t host_gs_now(const SimTcs* t) {
  uint64_t gs = 0;
  asm volatile("rdgsbase %0" : "=r"(gs));
  if (gs == t->enclave_gs || gs == t_left_gs || is_some_enclave_gs(gs)) return 0;
  return gs;
}

// At EEXIT or an AEX: the stub left the enclave's GS base loaded when the
// host does not use GS; remember it as ours.
void note_lazy_gs(const SimTcs* t) {
  if (t->host_gs == 0) t_left_gs = t->enclave_gs;
}

void save_host_and_block(SimTcs* t, ucontext_t* uc) {
  const HostThread& h = host_thread();
  t->host_fs = h.fs;
  t->host_gs = host_gs_now(t);
  t->aep = static_cast<uint64_t>(R(uc, REG_RCX));
  t->host_sigmask = sigmask_word(uc);
  sigmask_word(uc) = t->host_sigmask | async_block_mask();
}

// EENTER issued by host code.
const void* emulate_eenter(ucontext_t* uc) {
  SimEnclaveState* st = nullptr;
  SimTcs* t = registry_find_tcs(static_cast<uint64_t>(R(uc, REG_RBX)), &st);
  if (!t || !st->initialized.load(std::memory_order_acquire)) return enclu_fault(uc, sgx::kVecGP);
  if (!claim_tcs(t)) return enclu_fault(uc, sgx::kVecGP);  // busy, or leased elsewhere
  apply_deferred_block(st, t->tcs_addr);
  if (t->cssa >= t->nssa) {
    t->busy.store(0, std::memory_order_release);
    return enclu_fault(uc, sgx::kVecGP);  // no free SSA frame
  }
  sgx::GprSgx* g = gpr_of(st, t, t->cssa);
  g->ursp = static_cast<uint64_t>(R(uc, REG_RSP));
  g->urbp = static_cast<uint64_t>(R(uc, REG_RBP));
  save_host_and_block(t, uc);
  R(uc, REG_RAX) = t->cssa;
  R(uc, REG_RCX) = R(uc, REG_RIP) + 3;
  R(uc, REG_RIP) = static_cast<greg_t>(t->oentry_addr);
  return &t->enclave_fs;
}

// ERESUME issued by host code: restore the state saved at the last AEX.
const void* emulate_eresume(ucontext_t* uc) {
  SimEnclaveState* st = nullptr;
  SimTcs* t = registry_find_tcs(static_cast<uint64_t>(R(uc, REG_RBX)), &st);
  if (!t || !st->initialized.load(std::memory_order_acquire)) return enclu_fault(uc, sgx::kVecGP);
  if (!claim_tcs(t)) return enclu_fault(uc, sgx::kVecGP);
  apply_deferred_block(st, t->tcs_addr);
  if (t->cssa == 0) {
    t->busy.store(0, std::memory_order_release);
    return enclu_fault(uc, sgx::kVecGP);
  }
  save_host_and_block(t, uc);
  t->cssa -= 1;
  const sgx::GprSgx* g = gpr_of(st, t, t->cssa);
  R(uc, REG_RAX) = g->rax; R(uc, REG_RCX) = g->rcx; R(uc, REG_RDX) = g->rdx;
  R(uc, REG_RBX) = g->rbx; R(uc, REG_RSP) = g->rsp; R(uc, REG_RBP) = g->rbp;
  R(uc, REG_RSI) = g->rsi; R(uc, REG_RDI) = g->rdi; R(uc, REG_R8) = g->r8;
  R(uc, REG_R9) = g->r9; R(uc, REG_R10) = g->r10; R(uc, REG_R11) = g->r11;
  R(uc, REG_R12) = g->r12; R(uc, REG_R13) = g->r13; R(uc, REG_R14) = g->r14;
  R(uc, REG_R15) = g->r15; R(uc, REG_RIP) = g->rip;
  // Only the arithmetic flags and DF are software's to restore.
  constexpr uint64_t kUserFlags = 0x0cd5;
  R(uc, REG_EFL) = (R(uc, REG_EFL) & ~kUserFlags) | (g->rflags & kUserFlags);
  if (uc->uc_mcontext.fpregs) memcpy(uc->uc_mcontext.fpregs, xsave_of(st, t, t->cssa), 512);
  return &t->enclave_fs;
}

// EENTER issued through teemate_enclu_enter (sim's counterpart of the
// vDSO's entry function): the same checks and state changes as the trap
// path, without the #UD. The caller loads the enclave's FS/GS and jumps.
struct EenterResult {
  SimTcs* tcs;      // null: fault
  uint64_t vector;  // when tcs is null
};

EenterResult software_eenter(uint64_t tcs_addr, uint64_t ursp, uint64_t urbp, uint64_t aep) {
  SimEnclaveState* st = nullptr;
  SimTcs* t = registry_find_tcs(tcs_addr, &st);
  if (!t || !st->initialized.load(std::memory_order_acquire)) return {nullptr, sgx::kVecGP};
  if (!claim_tcs(t)) return {nullptr, sgx::kVecGP};
  apply_deferred_block(st, t->tcs_addr);
  if (t->cssa >= t->nssa) {
    t->busy.store(0, std::memory_order_release);
    return {nullptr, sgx::kVecGP};
  }
  sgx::GprSgx* g = gpr_of(st, t, t->cssa);
  g->ursp = ursp;
  g->urbp = urbp;
  t->host_fs = host_thread().fs;
  t->host_gs = host_gs_now(t);
  t->aep = aep;
  // The raw system call, so that glibc's internal signals are blocked too,
  // as the trap path's uc_sigmask does; EEXIT's sigreturn restores the mask.
  uint64_t block = async_block_mask(), old = 0;
  syscall(SYS_rt_sigprocmask, SIG_BLOCK, &block, &old, sizeof(old));
  t->host_sigmask = old;
  return {t, 0};
}

// EEXIT from enclave code: jump to RBX outside, TCS free again.
const void* emulate_eexit(SimTcs* t, ucontext_t* uc) {
  note_lazy_gs(t);
  R(uc, REG_RIP) = R(uc, REG_RBX);
  R(uc, REG_RCX) = static_cast<greg_t>(t->aep);
  sigmask_word(uc) = t->host_sigmask;
  t->busy.store(0, std::memory_order_release);
  return nullptr;  // the entry stub already restored the host FS/GS
}

// Asynchronous exit: save the interrupted state into SSA[CSSA] and land on
// the AEP with the synthetic register state.
const void* aex(SimEnclaveState* st, SimTcs* t, ucontext_t* uc, uint32_t vector, bool valid,
                uint64_t maddr) {
  if (t->cssa >= t->nssa) {
    // Cannot happen on hardware (EENTER needs a free frame); be safe.
    std::fprintf(stderr, "teemate sim: fatal: no SSA frame for an asynchronous exit\n");
    std::_Exit(134);
  }
  if (trace_enabled()) {
    std::fprintf(stderr, "teemate sim: AEX on TCS %u: vector %u%s at enclave+0x%llx, address 0x%llx (cssa %u -> %u)\n",
                 t->index, vector, valid ? "" : " (not reported)",
                 static_cast<unsigned long long>(R(uc, REG_RIP) - st->base), static_cast<unsigned long long>(maddr),
                 t->cssa, t->cssa + 1);
  }
  sgx::GprSgx* g = gpr_of(st, t, t->cssa);
  g->rax = R(uc, REG_RAX); g->rcx = R(uc, REG_RCX); g->rdx = R(uc, REG_RDX);
  g->rbx = R(uc, REG_RBX); g->rsp = R(uc, REG_RSP); g->rbp = R(uc, REG_RBP);
  g->rsi = R(uc, REG_RSI); g->rdi = R(uc, REG_RDI); g->r8 = R(uc, REG_R8);
  g->r9 = R(uc, REG_R9); g->r10 = R(uc, REG_R10); g->r11 = R(uc, REG_R11);
  g->r12 = R(uc, REG_R12); g->r13 = R(uc, REG_R13); g->r14 = R(uc, REG_R14);
  g->r15 = R(uc, REG_R15); g->rflags = R(uc, REG_EFL); g->rip = R(uc, REG_RIP);
  g->fs_base = t->enclave_fs;
  g->gs_base = t->enclave_gs;
  const bool exinfo = st->misc_select & sgx::kMiscExinfo;
  const bool pf_gp = vector == sgx::kVecPF || vector == sgx::kVecGP;
  g->exit_info = (valid && (!pf_gp || exinfo)) ? sgx::make_exit_info(vector, sgx::kExitHardware) : 0;
  if (vector == sgx::kVecBP && valid) g->exit_info = sgx::make_exit_info(vector, sgx::kExitSoftware);
  if (exinfo && pf_gp && valid) {
    auto* ex = reinterpret_cast<sgx::MiscExinfo*>(reinterpret_cast<uint8_t*>(g) - sizeof(sgx::MiscExinfo));
    ex->maddr = maddr;
    ex->errcd = static_cast<uint32_t>(R(uc, REG_ERR));
  }
  if (uc->uc_mcontext.fpregs) memcpy(xsave_of(st, t, t->cssa), uc->uc_mcontext.fpregs, 512);
  t->cssa += 1;
  const uint64_t ursp = g->ursp, urbp = g->urbp;
  for (int r : {REG_RDX, REG_RSI, REG_RDI, REG_R8, REG_R9, REG_R10, REG_R11, REG_R12, REG_R13,
                REG_R14, REG_R15}) {
    R(uc, r) = 0;
  }
  R(uc, REG_RAX) = sgx::kEresume;
  R(uc, REG_RBX) = static_cast<greg_t>(t->tcs_addr);
  R(uc, REG_RCX) = static_cast<greg_t>(t->aep);
  R(uc, REG_RIP) = static_cast<greg_t>(t->aep);
  R(uc, REG_RSP) = static_cast<greg_t>(ursp);
  R(uc, REG_RBP) = static_cast<greg_t>(urbp);
  R(uc, REG_EFL) = 0x202;
  note_lazy_gs(t);
  sigmask_word(uc) = t->host_sigmask;
  t->busy.store(0, std::memory_order_release);
  return nullptr;
}

uint32_t vector_for(int sig, const siginfo_t* info, bool* valid) {
  *valid = info->si_code > 0;  // a signal sent by kill() is an interrupt, not an exception
  switch (sig) {
    case SIGFPE:
      return (info->si_code == FPE_INTDIV || info->si_code == FPE_INTOVF) ? sgx::kVecDE : sgx::kVecXM;
    case SIGILL: return sgx::kVecUD;
    case SIGTRAP: return info->si_code == TRAP_BRKPT || info->si_code == SI_KERNEL ? sgx::kVecBP : sgx::kVecDB;
    case SIGBUS: return info->si_code == BUS_ADRALN ? sgx::kVecAC : sgx::kVecGP;
    case SIGSEGV: return info->si_code == SI_KERNEL ? sgx::kVecGP : sgx::kVecPF;
    default: *valid = false; return 0;
  }
}

// ENCLU executed inside the enclave.
const void* enclave_enclu(SimEnclaveState* st, SimTcs* t, ucontext_t* uc) {
  const uint64_t leaf = static_cast<uint64_t>(R(uc, REG_RAX));
  switch (leaf) {
    case sgx::kEexit:
      return emulate_eexit(t, uc);
    case sgx::kEreport: {
      uint64_t ti = R(uc, REG_RBX), rd = R(uc, REG_RCX), out = R(uc, REG_RDX);
      if (ti % 512 || rd % 128 || out % 512 || !page_has(st, ti, 512, sgx::kSecinfoR) ||
          !page_has(st, rd, 64, sgx::kSecinfoR) || !page_has(st, out, 432, sgx::kSecinfoW)) {
        return aex(st, t, uc, sgx::kVecGP, true, 0);
      }
      ereport(*st, *reinterpret_cast<const sgx::TargetInfo*>(ti), reinterpret_cast<const uint8_t*>(rd),
              reinterpret_cast<sgx::Report*>(out));
      R(uc, REG_RIP) += 3;
      return &t->enclave_fs;
    }
    case sgx::kEgetkey: {
      uint64_t req = R(uc, REG_RBX), out = R(uc, REG_RCX);
      if (req % 512 || out % 16 || !page_has(st, req, 512, sgx::kSecinfoR) ||
          !page_has(st, out, 16, sgx::kSecinfoW)) {
        return aex(st, t, uc, sgx::kVecGP, true, 0);
      }
      uint32_t err = egetkey(*st, *reinterpret_cast<const sgx::KeyRequest*>(req),
                             reinterpret_cast<uint8_t*>(out));
      R(uc, REG_RAX) = err;
      // ZF reports failure, as on hardware.
      R(uc, REG_EFL) = err ? (R(uc, REG_EFL) | 0x40) : (R(uc, REG_EFL) & ~0x40);
      R(uc, REG_RIP) += 3;
      return &t->enclave_fs;
    }
    default:
      // EENTER/ERESUME inside an enclave are #GP; SGX2 leaves are #UD on SGX1.
      return aex(st, t, uc, leaf == sgx::kEenter || leaf == sgx::kEresume ? sgx::kVecGP : sgx::kVecUD,
                 true, 0);
  }
}

void chain(int sig, siginfo_t* info, void* uc) {
  const struct sigaction& prev = g_previous[sig];
  if (prev.sa_flags & SA_SIGINFO) {
    if (prev.sa_sigaction) prev.sa_sigaction(sig, info, uc);
    return;
  }
  if (prev.sa_handler == SIG_IGN) return;
  if (prev.sa_handler == SIG_DFL || prev.sa_handler == nullptr) {
    // Re-raise with the default action: return and fault again.
    signal(sig, SIG_DFL);
    return;
  }
  prev.sa_handler(sig);
}

}  // namespace

bool registry_add(SimEnclaveState* state) {
  for (auto& slot : g_registry) {
    SimEnclaveState* expected = nullptr;
    if (slot.compare_exchange_strong(expected, state)) return true;
  }
  return false;
}

void registry_remove(SimEnclaveState* state) {
  for (auto& slot : g_registry) {
    SimEnclaveState* expected = state;
    slot.compare_exchange_strong(expected, nullptr);
  }
}

SimEnclaveState* registry_find_addr(uint64_t addr) {
  for (auto& slot : g_registry) {
    SimEnclaveState* st = slot.load(std::memory_order_acquire);
    if (st && addr >= st->base && addr - st->base < st->size) return st;
  }
  return nullptr;
}

namespace {

bool is_some_enclave_gs(uint64_t gs) {
  if (gs == 0) return false;
  for (auto& slot : g_registry) {
    SimEnclaveState* st = slot.load(std::memory_order_acquire);
    if (!st) continue;
    for (uint32_t i = 0; i < st->tcs_count; ++i) {
      if (st->tcs[i].enclave_gs == gs) return true;
    }
  }
  return false;
}
}  // namespace

SimTcs* registry_find_tcs(uint64_t tcs_addr, SimEnclaveState** owner) {
  SimEnclaveState* st = registry_find_addr(tcs_addr);
  if (!st) return nullptr;
  for (uint32_t i = 0; i < st->tcs_count; ++i) {
    if (st->tcs[i].tcs_addr == tcs_addr) {
      *owner = st;
      return &st->tcs[i];
    }
  }
  return nullptr;
}

void install_signal_handlers() {
  static std::atomic<bool> installed{false};
  if (installed.exchange(true)) return;
  (void)base::current_pid();  // sets up its page now, not first in a signal handler
  for (int sig : kSignals) {
    struct sigaction sa {};
    sa.sa_sigaction = teemate_sim_signal_entry;
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_RESTART;
    // Every asynchronous signal stays blocked while the handler runs: it
    // loads the enclave's FS/GS bases before it returns into the enclave
    // (EENTER, ERESUME), and a host handler (a timer's, say) run in that
    // window would find the enclave's thread data where its TLS should be.
    // Inside the enclave they stay blocked through uc_sigmask.
    sigfillset(&sa.sa_mask);
    for (int sync : {SIGILL, SIGSEGV, SIGBUS, SIGFPE, SIGTRAP, SIGSYS}) sigdelset(&sa.sa_mask, sync);
    sigaction(sig, &sa, &g_previous[sig]);
  }
}

namespace {
struct AltStack {
  void* mem = nullptr;
  size_t size = 0;
  ~AltStack() {
    if (!mem) return;
    stack_t off{};
    off.ss_flags = SS_DISABLE;
    sigaltstack(&off, nullptr);
    munmap(mem, size);
  }
};
thread_local AltStack t_altstack;
}  // namespace

void ensure_signal_stack() {
  if (t_altstack.mem) return;
  constexpr size_t kSize = 256 * 1024;  // EREPORT/EGETKEY run OpenSSL here
  void* mem = mmap(nullptr, kSize, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
  if (mem == MAP_FAILED) return;
  stack_t ss{};
  ss.ss_sp = mem;
  ss.ss_size = kSize;
  if (sigaltstack(&ss, nullptr) != 0) {
    munmap(mem, kSize);
    return;
  }
  t_altstack.mem = mem;
  t_altstack.size = kSize;
}

}  // namespace teemate::host::sim

using namespace teemate;
using namespace teemate::host::sim;

// Called by the entry stub with the interrupted RIP and the current GS
// base, before FS is known to be valid: must not touch TLS, the stack
// protector or sanitizer runtimes.
// (clang: no coverage instrumentation either, whose stack-depth tracking
// reads a TLS variable.)
#if defined(__clang__)
#define TEEMATE_NO_TLS_INSTRUMENTATION \
  __attribute__((no_sanitize("address", "undefined", "coverage"), no_stack_protector))
#else
#define TEEMATE_NO_TLS_INSTRUMENTATION \
  __attribute__((no_sanitize("address", "undefined"), optimize("no-stack-protector")))
#endif
extern "C" TEEMATE_NO_TLS_INSTRUMENTATION SimTcs* teemate_sim_tcs_for_context(uint64_t rip, uint64_t gs) {
  for (auto& slot : g_registry) {
    SimEnclaveState* st = slot.load(std::memory_order_acquire);
    if (!st || rip < st->base || rip - st->base >= st->size) continue;
    for (uint32_t i = 0; i < st->tcs_count; ++i) {
      if (st->tcs[i].enclave_gs == gs) return &st->tcs[i];
    }
  }
  return nullptr;
}

extern "C" EenterResult teemate_sim_eenter(uint64_t tcs, uint64_t ursp, uint64_t urbp, uint64_t aep) {
  return software_eenter(tcs, ursp, urbp, aep);
}

extern "C" const void* teemate_sim_signal_handler(int sig, siginfo_t* info, void* ctx, SimTcs* inside) {
  auto* uc = static_cast<ucontext_t*>(ctx);
  const uint64_t rip = static_cast<uint64_t>(R(uc, REG_RIP));
  if (inside) {
    SimEnclaveState* st = registry_find_addr(inside->tcs_addr);
    if (trace_enabled() && (rip < st->base || rip - st->base >= st->size)) {
      std::fprintf(stderr, "teemate sim: thread %u in enclave mode on TCS %u (busy=%u) at host rip %p sig %d host_gs=%llx\n",
                   current_tid(), inside->index, inside->busy.load(), (void*)rip, sig,
                   (unsigned long long)inside->host_gs);
    }
    if (sig == SIGILL && page_has(st, rip, 3, sgx::kSecinfoX) && is_enclu(rip)) {
      return enclave_enclu(st, inside, uc);
    }
    if (sig == SIGSEGV && info->si_code == SEGV_ACCERR &&
        retry_after_deferred_block(st, reinterpret_cast<uint64_t>(info->si_addr), static_cast<uint64_t>(R(uc, REG_ERR)))) {
      return &inside->enclave_fs;  // the block is mapped now: run the access again
    }
    bool valid = false;
    uint32_t vector = vector_for(sig, info, &valid);
    return aex(st, inside, uc, vector, valid, reinterpret_cast<uint64_t>(info->si_addr));
  }
  // Host code (the emulator itself, or the runtime) touching a block this
  // process has not used yet.
  if (sig == SIGSEGV && info->si_code == SEGV_ACCERR) {
    const uint64_t addr = reinterpret_cast<uint64_t>(info->si_addr);
    SimEnclaveState* st = registry_find_addr(addr);
    if (st && retry_after_deferred_block(st, addr, static_cast<uint64_t>(R(uc, REG_ERR)))) return nullptr;
  }
  if (sig == SIGILL && is_enclu(rip)) {
    const uint64_t leaf = static_cast<uint64_t>(R(uc, REG_RAX));
    if (leaf == sgx::kEenter) return emulate_eenter(uc);
    if (leaf == sgx::kEresume) return emulate_eresume(uc);
  }
  chain(sig, info, ctx);
  return nullptr;
}
