/* Per-TCS thread data: the page OFSBASE/OGSBASE point at. Its first 256 bytes
 * follow the x86-64 TCB convention musl's libc.a expects (self pointer at 0,
 * stack canary at 0x28, locale at 0xa8); the runtime's own fields follow at
 * fixed offsets that entry.S uses through %gs. Enclave-only. Never hold host
 * pointers here except the saved host stack registers, which are never
 * dereferenced by enclave code except as the OCALL scratch area (checked). */
#ifndef TEEMATE_THREAD_DATA_H_
#define TEEMATE_THREAD_DATA_H_

#define TD_SELF 0x00
#define TD_CANARY 0x28
#define TD_ERRNO 0x34
#define TD_LOCALE 0xa8
#define TD_HOST_RSP 0x100
#define TD_HOST_RBP 0x108
#define TD_HOST_RET 0x110
#define TD_OCALL_SP 0x118
#define TD_STACK_TOP 0x120
#define TD_STACK_LIMIT 0x128
#define TD_SSA_GPR0 0x130
#define TD_SSA_FRAME_BYTES 0x138
#define TD_INITIALIZED 0x140
#define TD_EXC_STACK 0x148
#define TD_ENTRY_FRAME 0x150
/* The top of the stack is this far below the thread-data page: the
 * exception stack (abi::kExceptionStackPages) and a guard page lie between. */
#define TD_STACK_GAP (3 * 4096)

#ifndef __ASSEMBLER__
#include <stddef.h>
#include <stdint.h>

#include "common/enclave_abi.h"

namespace teemate::trts {

struct EcallState;
struct ProcessContext;

struct ThreadData {
  ThreadData* self;           /* 0x00 */
  uint64_t musl_reserved1[4]; /* 0x08 */
  uint64_t canary;            /* 0x28 */
  int32_t musl_tid;           /* 0x30 */
  int32_t errno_value;        /* 0x34 */
  uint8_t musl_reserved2[0xa8 - 0x38];
  const void* locale;         /* 0xa8 */
  uint8_t musl_reserved3[0x100 - 0xb0];
  uint64_t host_rsp;          /* 0x100 */
  uint64_t host_rbp;          /* 0x108 */
  uint64_t host_ret;          /* 0x110 */
  uint64_t ocall_sp;          /* 0x118 enclave RSP of the newest pending OCALL, 0 if none */
  uint64_t stack_top;         /* 0x120 */
  uint64_t stack_limit;       /* 0x128 */
  uint64_t ssa_gpr0;          /* 0x130 address of GPRSGX in SSA frame 0 */
  uint64_t ssa_frame_bytes;   /* 0x138 */
  uint64_t initialized;       /* 0x140 */
  uint64_t exc_stack;         /* 0x148 fallback stack for exception entry */
  uint64_t entry_frame;       /* 0x150 innermost entry's saved host registers */
  /* Fields below are used from C++ only. */
  uint32_t tcs_index;
  uint32_t ecall_depth;
  EcallState* current_ecall;  /* innermost ECALL on this TCS */
  uint64_t pending_fault_vector;
  uint64_t pending_fault_rip;
  uint64_t pending_fault_addr;
  uint64_t pending_fault_valid;
  void* main_frame;           /* RunMain ECALL in progress, for exit() */
  ProcessContext* context;    /* the attached process this TCS is leased to, if any */
  uint64_t lease_token[2];    /* ECALLs on this TCS must present it (shared enclave) */
  /* Locks this thread holds or is taking (tm_spinlock*), recorded before
   * the atomic operation that takes one, so that recovery finds every lock
   * a dead thread may hold (locks.cpp). */
  uint64_t held_locks[32];
  volatile uint32_t nheld_locks;
  /* A control ECALL runs: a lock that stays taken makes it bail out with
   * kErrBusy through control_jmp (a jmp_buf*) instead of spinning for ever.
   * control_base: nheld_locks when it began (entries below are a dead
   * thread's, left for tm_control_process_end). */
  uint32_t control_call;
  uint32_t control_base;
  void* control_jmp;
  const uint64_t* control_auth;  /* the running control ECALL's auth words (tm_control_claim reads them) */
  /* pthreads (threads.cpp): the record of the thread pthread_create started
   * on this TCS (null for an ECALL's own thread), and the values of the
   * thread-specific data keys, cleared when an outermost ECALL begins. */
  void* pthread;
  void* tsd[32];
  uint32_t tsd_gen[32];       /* the key's generation each value was set under */
  volatile uint32_t* running_once;  /* the pthread_once word whose routine runs here */
};

static_assert(offsetof(ThreadData, canary) == TD_CANARY);
static_assert(offsetof(ThreadData, errno_value) == TD_ERRNO);
static_assert(offsetof(ThreadData, locale) == TD_LOCALE);
static_assert(offsetof(ThreadData, host_rsp) == TD_HOST_RSP);
static_assert(offsetof(ThreadData, ocall_sp) == TD_OCALL_SP);
static_assert(offsetof(ThreadData, stack_top) == TD_STACK_TOP);
static_assert(offsetof(ThreadData, ssa_gpr0) == TD_SSA_GPR0);
static_assert(offsetof(ThreadData, initialized) == TD_INITIALIZED);
static_assert(offsetof(ThreadData, exc_stack) == TD_EXC_STACK);
static_assert(offsetof(ThreadData, entry_frame) == TD_ENTRY_FRAME);
static_assert(sizeof(ThreadData) <= 2048);  /* one page, with room to spare */
static_assert(TD_STACK_GAP == (abi::kExceptionStackPages + 1) * 4096);
inline constexpr uint32_t kMaxHeldLocks = 32;
static_assert(sizeof(ThreadData::held_locks) / sizeof(uint64_t) == kMaxHeldLocks);

/* The current thread's data (valid after the first entry on this TCS). */
inline ThreadData* current_td() {
  ThreadData* td;
  __asm__ volatile("mov %%gs:0, %0" : "=r"(td));
  return td;
}

}  // namespace teemate::trts
#endif
#endif
