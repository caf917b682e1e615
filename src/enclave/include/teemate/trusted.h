/* The public API of the TeeMate trusted runtime, for enclave programs (C and
 * C++): ECALL registration, OCALLs, exception handlers, randomness, sealing
 * and reports. Enclave-only: never include a host header from here. Every
 * buffer handed to an ECALL handler has already been copied into enclave
 * memory and checked; handlers never see a host pointer.
 *
 * Enclave globals are shared by every thread that enters the enclave, as in
 * threaded code: guard shared mutable state with tm_spinlock. */
#ifndef TEEMATE_TRUSTED_H_
#define TEEMATE_TRUSTED_H_

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Status codes (same values as the host ABI). */
enum {
  TM_OK = 0,
  TM_ERR_INVALID = 1,
  TM_ERR_UNKNOWN_CALL = 2,
  TM_ERR_BUFFER_RANGE = 3,
  TM_ERR_TOO_LARGE = 4,
  TM_ERR_NO_MEMORY = 5,
  TM_ERR_FAULT = 6,
  TM_ERR_OCALL_FAILED = 7,
  TM_ERR_APP = 10,
};

#define TM_MAX_BUFFERS 4
#define TM_MAX_SCALARS 4
#define TM_FIRST_USER_CALL 0x100

enum { TM_BUF_NONE = 0, TM_BUF_IN = 1, TM_BUF_OUT = 2, TM_BUF_INOUT = 3 };

/* One buffer of a call, always in enclave memory. For TM_BUF_OUT/INOUT,
 * `size` is the capacity and the handler sets `out_size`. */
typedef struct tm_buffer {
  void* data;
  size_t size;
  size_t out_size;
  uint32_t direction;
} tm_buffer;

typedef struct tm_call {
  uint32_t id;
  uint32_t nbufs;
  uint64_t scalars[TM_MAX_SCALARS];
  tm_buffer bufs[TM_MAX_BUFFERS];
} tm_call;

/* An ECALL handler returns TM_OK or an error code. */
typedef int (*tm_ecall_fn)(tm_call* call);

typedef struct tm_ecall_entry {
  uint32_t id;
  tm_ecall_fn fn;
} tm_ecall_entry;

/* Registers `fn` as ECALL `id` (>= TM_FIRST_USER_CALL) at link time. */
#define TM_ECALL(id_, fn_)                                                      \
  __attribute__((used, section("teemate_ecalls"), aligned(16))) static const   \
      tm_ecall_entry tm_ecall_entry_##fn_ = {(id_), (fn_)}

/* Makes OCALL `call->id` on the host. Buffers marked IN are copied out to
 * host memory, OUT buffers are copied back after the host's lengths were
 * checked against the capacities. Returns the host's status, or
 * TM_ERR_OCALL_FAILED when the host's answer is refused. At most 256 KiB of
 * buffers per OCALL. */
int tm_ocall(tm_call* call);

/* Exceptions. A handler sees the interrupted state and may change it; it
 * returns TM_EXCEPTION_CONTINUE_EXECUTION to resume (ERESUME) or
 * TM_EXCEPTION_CONTINUE_SEARCH to let the next handler (or the runtime, which
 * fails the ECALL) decide. */
enum { TM_EXCEPTION_CONTINUE_SEARCH = 0, TM_EXCEPTION_CONTINUE_EXECUTION = 1 };
typedef struct tm_cpu_context {
  uint64_t rax, rcx, rdx, rbx, rsp, rbp, rsi, rdi;
  uint64_t r8, r9, r10, r11, r12, r13, r14, r15;
  uint64_t rflags, rip;
} tm_cpu_context;
typedef struct tm_exception_info {
  uint32_t vector;     /* 0 #DE, 3 #BP, 6 #UD, 13 #GP, 14 #PF, ... */
  uint32_t valid;      /* EXITINFO.VALID: 0 when the hardware did not say */
  uint64_t fault_addr; /* #PF/#GP with MISCSELECT.EXINFO */
  tm_cpu_context cpu;
} tm_exception_info;
typedef int (*tm_exception_handler)(tm_exception_info* info);
/* Up to 8 handlers; returns 0 on success. */
int tm_register_exception_handler(tm_exception_handler handler);
int tm_unregister_exception_handler(tm_exception_handler handler);

/* Hardware randomness (RDRAND, retried). Returns 0 on success. */
int tm_random(void* out, size_t size);

/* Is [p, p+n) wholly inside / wholly outside the enclave? */
int tm_is_within_enclave(const void* p, size_t n);
int tm_is_outside_enclave(const void* p, size_t n);

/* Enclave identity and heap statistics. */
uint64_t tm_enclave_base(void);
uint64_t tm_enclave_size(void);
size_t tm_heap_used(void);
size_t tm_heap_size(void);

/* A simple test-and-test-and-set lock for deliberately shared state. */
typedef struct tm_spinlock {
  volatile uint32_t locked;
} tm_spinlock;
#define TM_SPINLOCK_INIT {0}
void tm_spin_lock(tm_spinlock* lock);
void tm_spin_unlock(tm_spinlock* lock);

/* Terminates the current ECALL with an error (never returns). */
__attribute__((noreturn)) void tm_abort(const char* why);

#ifdef __cplusplus
}
#endif

#endif /* TEEMATE_TRUSTED_H_ */
