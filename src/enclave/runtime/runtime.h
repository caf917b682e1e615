/* Internal interfaces of the trusted runtime shared between its files.
 * Enclave-only. Never exposes host pointers to enclave programs. */
#ifndef TEEMATE_TRTS_RUNTIME_H_
#define TEEMATE_TRTS_RUNTIME_H_

#include <setjmp.h>
#include <stddef.h>
#include <stdint.h>

#include "common/enclave_abi.h"
#include "teemate/trusted/runtime.h"
#include "thread_data.h"

namespace teemate::trts {

/* Set once by global_init(); read-only afterwards. */
struct EnclaveGlobals {
  uint64_t base;
  uint64_t size;
  const abi::EnclaveMeta* meta;
};
const EnclaveGlobals& globals();

/* Relocates the image, initialises the heap; safe to call from any number of
 * threads at once (one does the work, the others wait). `tcs` is the
 * caller's TCS; `recovering` is true only on the recovery of a TCS whose
 * thread died, which takes over a set-up that thread left unfinished.
 * False on failure. */
bool global_init(uint64_t tcs, bool recovering);
void thread_init(ThreadData* td, uint64_t tcs);
/* Thread-local storage (init.cpp): the bytes reserved below the thread-data
 * page, and a fresh copy of the template there (a new thread's values). */
uint64_t tls_block_bytes();
void tls_reset(ThreadData* td);

/* One ECALL in progress on this TCS (lives on the enclave stack). */
struct EcallState {
  EcallState* outer;
  jmp_buf abort_jmp;
  abi::CallFrame* host_frame;   /* checked: wholly outside the enclave */
  uint64_t scratch;             /* host OCALL scratch for this level */
  uint64_t scratch_size;
  struct Heap* copy_heap;       /* where the buffer copies live */
  uint32_t lock_base;           /* nheld_locks when the call began */
  void* copies[abi::kMaxCallBuffers];
  /* tm_app_error: the handler's own code and message (in enclave memory
   * until the call ends, then copied to host_frame->app_error). */
  int32_t app_code;
  uint32_t app_error_set;       /* tm_app_error was called in this ECALL */
  uint32_t app_message_len;
  char app_message[abi::kAppMessageMax];
};

/* Host descriptors the enclave opened (sockets, files), per process
 * (process.cpp): the POSIX calls refuse any other descriptor with EBADF, so
 * enclave code can never close or use one of its host's own (stdio, the
 * daemon connection, the enclave's memory). A file's descriptor carries its
 * enclave-side state (posix_file.cpp), allocated from the same heap. */
struct FdEntry {
  int fd;
  void* file;  /* OpenFile*, or null for a socket */
};
struct FdSet {
  tm_spinlock lock;
  FdEntry* fds;
  uint32_t n, cap;
};
bool fd_owned(int fd);
/* 0, ENOMEM, or EIO when the host handed out a number the enclave already
 * owns or one of 0-2 (stdio): a host that aliases descriptors must not get
 * one file's data written into another (review defect). */
int fd_own(int fd, void* file = nullptr);
/* Calls fn(file, arg) for every file state of the calling process. */
void fd_for_each_file(void (*fn)(void* file, void* arg), void* arg);
/* The file state recorded with `fd` (null for a socket); false if not owned. */
bool fd_lookup(int fd, void** file);
/* Forgets `fd`; returns its file state (null for a socket or unknown fd). */
void* fd_disown(int fd);

/* Switchless calls (switchless.cpp): the queues of the calling process,
 * host addresses set by tm_runtime_switchless_setup (0: none), read atomically. */
struct SwitchlessSettings {
  uint64_t ocall_queue;
  uint64_t ecall_queue;
  uint32_t ocall_retries;
};
SwitchlessSettings& my_switchless();
int switchless_setup(uint64_t ocall_queue, uint64_t ecall_queue, uint64_t retry_polls);
int switchless_worker(uint64_t idle_polls, uint64_t* served);
/* Posts the OCALL frame at host address `frame` to a host worker and waits
 * for it; false (nothing happened) when no worker took it in time. */
bool switchless_ocall(uint64_t frame);
/* Runs the ECALL whose frame a switchless caller posted (ecall.cpp). */
int32_t run_switchless_ecall(ThreadData* td, uint64_t frame_addr);

/* Threads (threads.cpp): the tm_runtime_thread_run handler, and the process-end
 * hook that drops the records of a process's threads. */
int thread_run(uint64_t handle);
void forget_threads_of(void* context);
/* The thread that tm_runtime_thread_run started on this TCS was abandoned (an
 * unhandled fault, tm_abort, exit()): end it as if it returned
 * PTHREAD_CANCELED, and make `previous` the TCS's thread again. */
void abandon_thread(ThreadData* td, void* previous);

/* Sockets (posix_socket.cpp), for the descriptor calls of posix_file.cpp. */
long long socket_read(int fd, void* buf, size_t len);
long long socket_write(int fd, const void* buf, size_t len);
int socket_close(int fd);
int descriptor_fcntl(int fd, int cmd, long arg);  /* F_GETFD/F_SETFD/F_GETFL/F_SETFL */

/* Range checks against the enclave (overflow-safe). */
bool within_enclave(uint64_t p, uint64_t n);
bool outside_enclave(uint64_t p, uint64_t n);

/* Heaps: one allocator instance per region (heap.cpp). */
inline constexpr uint32_t kHeapUndoEntries = 40;
struct HeapUndo {
  uint64_t* addr;
  uint64_t old;
};
struct Heap {
  tm_spinlock lock;
  /* Old values of the words the operation in progress changed (heap.cpp). */
  HeapUndo undo[kHeapUndoEntries];
  volatile uint32_t nundo;
  uint8_t* start;
  uint8_t* end;
  void* free_list;
  size_t used;
  size_t total;
  /* heap_alloc prefers blocks wholly below this address (null: no
   * preference): the lowest live arena, so that small long-lived blocks
   * fill the heap from the bottom and arenas (heap_alloc_high) from the
   * top, and an ended arena leaves one large hole. A hint, read unlocked. */
  uint8_t* volatile soft_ceiling;
};
void heap_init(Heap& h, void* start, size_t size);
void* heap_alloc(Heap& h, size_t size, size_t align);
/* Like heap_alloc, but carved from the top of the highest free block that
 * can hold it: for process arenas. */
void* heap_alloc_high(Heap& h, size_t size, size_t align);
void heap_free(Heap& h, void* p);
size_t heap_usable_size(const Heap& h, void* p);
bool heap_owns(const Heap& h, const void* p);
Heap& global_heap();
/* Undoes the update a dead thread left half-done (its lock still held). */
void heap_rollback(Heap& h);
/* The heap whose lock `l` is (the global heap or a process arena), or null. */
Heap* heap_of_lock(const tm_spinlock* l);

/* Locks of dead threads (locks.cpp): releases every lock `dead` listed in
 * its first `count` entries whose word still names it. */
void release_dead_locks(ThreadData* dead, uint32_t count);
/* Releases what the calling thread took since it had `base` entries. */
void release_own_locks_since(ThreadData* td, uint32_t base);
/* The global heap (the runtime's own buffers). */
void heap_init(void* start, size_t size);
void* heap_alloc(size_t size, size_t align);
void heap_free(void* p);
size_t heap_usable_size(void* p);

/* Process contexts (process.cpp): the heap allocations of the current
 * thread come from (its process's arena, or the global heap), and the heap
 * a pointer belongs to. */
Heap& current_heap();
/* free() and malloc_usable_size() of a pointer from any heap: the calling
 * process's arena, another live process's (under the context table lock, so
 * that it cannot end meanwhile), or the global heap. */
void free_anywhere(void* p);
/* Aborts the calling ECALL when `p` lies in another live process's arena
 * (free, realloc and tm_shared_realloc call it before they change
 * anything); `who` names the caller in the message. */
void refuse_foreign_block(void* p, const char* who);
size_t usable_size_anywhere(void* p);
int process_start(tm_call* call);
int bind_tcs(tm_call* call);
int process_end(tm_call* call);
/* main() of the current thread's process returned this status. */
void record_exit_status(int status);
/* Entry of an ECALL on a TCS bound to a process: raises ecall_depth, then
 * checks that the process's context is live (false: refuse the call; depth
 * is back). Pairs with process_end's handshake. */
bool enter_bound_context(ThreadData* td);

/* Control (control.cpp). */
bool enclave_is_shared();  /* the daemon claimed the enclave */
bool control_token_ok(const uint64_t auth[4]);
bool tokens_equal(const uint64_t* a, const uint64_t* b, size_t words);
int32_t control_ecall(ThreadData* td, abi::CallFrame* host_frame, const abi::CallFrame& in);

/* Writes to the host's stdout (fd 1) or stderr (fd 2) through an OCALL. */
int host_write(int fd, const void* data, size_t size);

/* The enclave program's main, if it has one (weak). */
int run_main(const char* argv_blob, size_t size, int* exit_code);

uint64_t rdrand64_or_zero();

}  // namespace teemate::trts

extern "C" {
int64_t teemate_do_ocall(uint64_t host_frame);
__attribute__((noreturn)) void teemate_eexit(uint64_t reason, uint64_t value);
void teemate_abort_stub(void);
void teemate_reset_stub(void);
void teemate_reset_thread(void);
tm_spinlock* teemate_stdio_lock(void);
void teemate_stdio_reset_streams(void);
void teemate_stdio_make_unbuffered(void);
}

#endif
