/* The public API of the TeeMate trusted runtime, for enclave programs (C and
 * C++): ECALL registration, OCALLs, exception handlers, randomness, sealing
 * and reports. Enclave-only: never include a host header from here. Every
 * buffer handed to an ECALL handler has already been copied into enclave
 * memory and checked; handlers never see a host pointer.
 *
 * Enclave globals are shared by every thread that enters the enclave, as in
 * threaded code: guard shared mutable state with tm_spinlock. */
#ifndef TEEMATE_TRUSTED_RUNTIME_H_
#define TEEMATE_TRUSTED_RUNTIME_H_

#include <stddef.h>
#include <stdint.h>

#include "teemate/status_codes.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Status codes: TM_OK and TM_ERR_*, generated from the one table the host
 * and the ABI use too (teemate/status_codes.h), so a code an enclave returns
 * is printed by name on the host. */
#define TM_STATUS_ENUM_ENTRY_(name, value, desc) TM_##name = value,
enum { TEEMATE_STATUS_CODES(TM_STATUS_ENUM_ENTRY_) };
#undef TM_STATUS_ENUM_ENTRY_

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

/* The application error channel. A handler that fails for a reason of its
 * own returns tm_app_error(code, message) (or tm_app_errorf): the host's
 * Enclave::call then fails with Code::kApplication, Status::app_code() ==
 * `code` and the message as given (at most 247 bytes are kept), so the
 * caller tells "the vault has no such key" from a runtime failure. Both
 * return TM_ERR_APP; outside an ECALL they only return it. The message
 * leaves the enclave in clear: never put a secret in it. */
int tm_app_error(int32_t code, const char* message);
int tm_app_errorf(int32_t code, const char* format, ...) __attribute__((format(printf, 2, 3)));
/* 1 when tm_app_error was called during the current ECALL. Typed-call
 * handlers (teemate edger) use it: a typed ECALL that calls tm_app_error
 * fails with that error whatever the function returns. */
int tm_app_error_pending(void);

/* Makes OCALL `call->id` on the host. Buffers marked IN are copied out to
 * host memory, OUT buffers are copied back after the host's lengths were
 * checked against the capacities. Returns the host's status, or
 * TM_ERR_OCALL_FAILED when the host's answer is refused. At most 256 KiB of
 * buffers per OCALL. */
int tm_ocall(tm_call* call);
/* The same OCALL made switchless when the host runs OCALL workers
 * (switchless_ocall_workers in enclave.toml): a host worker thread serves
 * it while this thread waits inside the enclave, without leaving it. When
 * no worker takes it within switchless_retries polls, or the host has no
 * workers, it is made as tm_ocall makes it. For short OCALLs whose handler
 * needs no particular host thread (it must not make an ECALL back). */
int tm_ocall_switchless(tm_call* call);

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

/* A test-and-test-and-set lock for deliberately shared state. The lock word
 * holds the holder's thread identity, written by the same atomic operation
 * that takes the lock, and every thread keeps a list of the locks it holds
 * or is taking: when the process of a thread that holds one ends (crash,
 * SIGKILL, even in the middle of taking or releasing it), the runtime
 * releases it, so a dead co-tenant never leaves a lock held for ever. A
 * thread may hold at most 32 runtime and tm_spinlock locks at once. Not
 * recursive. Data the lock guarded may be half-updated when that happens:
 * keep shared updates small or check invariants after taking the lock. */
typedef struct tm_spinlock {
  volatile uint64_t owner; /* 0: free; else the holder's thread-data address */
} tm_spinlock;
#define TM_SPINLOCK_INIT {0}
void tm_spin_lock(tm_spinlock* lock);
void tm_spin_unlock(tm_spinlock* lock);

/* ---- Reports and keys (SGX EREPORT/EGETKEY) ----------------------------
 * The same machine code runs on hardware and on the sim backend (which
 * emulates ENCLU; its keys derive from a per-host root key file and protect
 * nothing from the host). See docs/sealing.md. */
#define TM_REPORT_SIZE 432
#define TM_REPORT_BODY_SIZE 384 /* the part the REPORT's MAC covers */
#define TM_REPORT_DATA_SIZE 64
#define TM_TARGET_INFO_SIZE 512
#define TM_KEY_ID_SIZE 32
#define TM_KEY_SIZE 16

/* KEYNAME and KEYPOLICY values of EGETKEY's KEYREQUEST. */
enum { TM_KEY_NAME_REPORT = 3, TM_KEY_NAME_SEAL = 4 };
enum { TM_KEY_POLICY_MRENCLAVE = 0x0001, TM_KEY_POLICY_MRSIGNER = 0x0002 };

/* EGETKEY. For TM_KEY_NAME_SEAL, `key_policy` is MRENCLAVE, MRSIGNER or
 * both, and the request carries this enclave's own ISVSVN and CPUSVN (read
 * from a REPORT of itself), ATTRIBUTEMASK 0xFF0000000000000B/XFRM 0 and
 * MISCMASK 0xF0000000 (the SGX SDK's defaults). For TM_KEY_NAME_REPORT only
 * `key_id` matters. Returns TM_OK, or TM_ERR_INVALID for a bad argument or a
 * request the CPU refused. The caller zeroes `key_out` after use. */
int tm_get_key(uint16_t key_name, uint16_t key_policy, const uint8_t key_id[TM_KEY_ID_SIZE],
               uint8_t key_out[TM_KEY_SIZE]);

/* EREPORT: a REPORT of this enclave for the enclave described by
 * `target_info` (a TARGETINFO, 512 bytes), carrying `report_data` (64 bytes;
 * NULL means zeros). `target_info` NULL targets this enclave itself, so
 * that tm_verify_report here accepts it. Returns TM_OK or TM_ERR_INVALID. */
int tm_report(const uint8_t* target_info, const uint8_t* report_data, uint8_t report_out[TM_REPORT_SIZE]);

/* Checks that `report` was made by an enclave on this machine for this
 * enclave: recomputes the AES-128-CMAC over its first 384 bytes with the
 * report key for its KEYID and compares in constant time. Returns TM_OK,
 * TM_ERR_MAC, or TM_ERR_INVALID for a NULL pointer. */
int tm_verify_report(const uint8_t report[TM_REPORT_SIZE]);

/* ---- Sealing ------------------------------------------------------------
 * AES-128-GCM under a fresh EGETKEY seal key per blob (a random KEYID is
 * part of the derivation). Blob format (docs/sealing.md), little-endian:
 *   0 magic "TMSL" | 4 version u16 (1) | 6 key policy u16 | 8 ISVSVN u16 |
 *   10 reserved u16 (0) | 12 AAD length u32 | 16 text length u32 |
 *   20 IV (12) | 32 CPUSVN (16) | 48 KEYID (32) | 80 AAD | ciphertext | tag (16)
 * The 80-byte header and the AAD are authenticated; the text is encrypted.
 * All buffers must lie inside the enclave (TM_ERR_BUFFER_RANGE otherwise);
 * outputs must not overlap inputs. */
#define TM_SEAL_MRENCLAVE TM_KEY_POLICY_MRENCLAVE /* only this exact enclave unseals */
#define TM_SEAL_MRSIGNER TM_KEY_POLICY_MRSIGNER   /* same signer and product, same or newer ISVSVN */
#define TM_SEAL_HEADER_SIZE 80
#define TM_SEAL_TAG_SIZE 16

/* Size of a blob for these lengths, or 0 when a length exceeds the format's
 * limit (each at most 0xFFFFFFFF bytes). */
size_t tm_sealed_size(size_t plaintext_len, size_t aad_len);

/* Seals `plaintext` (and authenticates `aad`, which stays readable) into
 * `out`, which needs tm_sealed_size(len, aad_len) bytes. Returns TM_OK
 * and the blob in out[0, tm_sealed_size(...)); TM_ERR_INVALID for a bad
 * policy or pointer, TM_ERR_TOO_LARGE when a length exceeds the format or
 * `out_cap` is too small, TM_ERR_FAULT when randomness or a key is
 * unavailable. On failure `out` holds no partial blob. */
int tm_seal(uint16_t policy, const void* aad, size_t aad_len, const void* plaintext, size_t len, void* out,
            size_t out_cap);

/* Reads the AAD and text lengths of a blob without unsealing it: TM_OK, or
 * TM_ERR_INVALID when the header is malformed or disagrees with `blob_len`. */
int tm_sealed_lengths(const void* blob, size_t blob_len, size_t* aad_len, size_t* text_len);

/* Unseals a blob: checks its header and every length (hostile input), derives
 * the key from the blob's policy, KEYID, ISVSVN and CPUSVN, and verifies the
 * tag before releasing anything. `aad_out` may be NULL (the AAD is still
 * authenticated); the lengths written are reported through `aad_len_out` and
 * `out_len` (either may be NULL). Returns TM_OK; TM_ERR_INVALID for a
 * malformed or truncated blob, or one sealed by a newer ISVSVN/CPUSVN than
 * this enclave's; TM_ERR_MAC when authentication fails (a changed byte,
 * another enclave's or signer's blob); TM_ERR_TOO_LARGE when a capacity is
 * too small. On failure the outputs hold nothing of the blob (a text buffer
 * that decryption had begun to fill is zeroed). */
int tm_unseal(const void* blob, size_t blob_len, void* aad_out, size_t aad_cap, size_t* aad_len_out,
              void* out, size_t out_cap, size_t* out_len);

/* A lock for state shared between attached processes. It records which
 * process holds it: if that process ends while holding it (crash, SIGKILL),
 * the runtime releases it when the process's context is torn down, so the
 * other processes keep running. Not recursive. */
typedef struct tm_mutex {
  /* 0: free; else the holder's process context handle (generation and
   * slot), or 1 for a thread with no context. Taken and recorded by one
   * atomic operation. */
  volatile uint64_t owner;
} tm_mutex;
#define TM_MUTEX_INIT {0}
void tm_mutex_lock(tm_mutex* m);
int tm_mutex_trylock(tm_mutex* m); /* 1 when taken */
void tm_mutex_unlock(tm_mutex* m);

/* Futex-style waiting, between any threads of the enclave (pthread_create'd
 * ones, ECALL threads, threads of other attached processes): tm_wait
 * returns 0 once *addr differs from `expected` (checked before it sleeps,
 * and after every wake-up: wake-ups may be spurious), or ETIMEDOUT after
 * `timeout_ns` (negative: no limit). tm_wake wakes every waiter on addr.
 * The host sleeps and wakes threads but never sees the word; a wake from a
 * thread of another attached process arrives within 20 ms. */
int tm_wait(volatile uint32_t* addr, uint32_t expected, int64_t timeout_ns);
void tm_wake(volatile uint32_t* addr);

/* ---- Shared and per-process memory -------------------------------------
 * In a shared enclave, `malloc`, `new` and the standard containers' default
 * allocator on a thread of an attached process take memory from that
 * process's arena: it is reclaimed when the process ends, however it ends,
 * and scrubbed (zeroed) before the memory is used again, so no process
 * ever sees another's leftovers. Globals (.data, .bss) and memory from
 * tm_shared_* are shared: they live as long as the enclave and every
 * attached process sees them. A shared structure must point only into
 * shared memory: a global that keeps a `malloc`ed pointer reads zeros, or
 * a later process's data, once its process has ended. Debug enclaves
 * (debug = true) report such pointers when an arena is reclaimed (the
 * daemon logs the global's name). C++: teemate/trusted/shared_memory.h.
 * In a dedicated enclave, or on a thread with no process context, both
 * kinds are the same heap. */
void* tm_shared_malloc(size_t size);
void* tm_shared_calloc(size_t count, size_t size);
/* `align` a power of two; NULL for a bad alignment or no memory. */
void* tm_shared_aligned_alloc(size_t align, size_t size);
/* Grows or shrinks shared memory; the new block is shared whatever `p` was. */
void* tm_shared_realloc(void* p, size_t size);
/* Frees memory of either kind (like free); NULL is ignored. */
void tm_shared_free(void* p);
/* 0 when `p` points into a live process's arena (per-process memory) or
 * outside the enclave; 1 for any other enclave address (shared heap,
 * globals). */
int tm_is_shared_memory(const void* p);

/* The process context of the calling thread: 0 in a dedicated enclave (or a
 * thread the daemon runs), else the id the daemon's attach gave it. */
uint32_t tm_process_id(void);
/* Bytes allocated in the calling process's arena (0 without a context). */
size_t tm_process_heap_used(void);

/* Terminates the current ECALL with an error (never returns). */
__attribute__((noreturn)) void tm_abort(const char* why);

#ifdef __cplusplus
}
#endif

#endif /* TEEMATE_TRUSTED_RUNTIME_H_ */
