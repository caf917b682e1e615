/* Internal interfaces of the trusted runtime shared between its files.
 * Enclave-only. Never exposes host pointers to enclave programs. */
#ifndef TEEMATE_TRTS_RUNTIME_H_
#define TEEMATE_TRTS_RUNTIME_H_

#include <setjmp.h>
#include <stddef.h>
#include <stdint.h>

#include "common/enclave_abi.h"
#include "teemate/trusted.h"
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
 * threads at once (one does the work, the others wait). False on failure. */
bool global_init();
void thread_init(ThreadData* td, uint64_t tcs);

/* One ECALL in progress on this TCS (lives on the enclave stack). */
struct EcallState {
  EcallState* outer;
  jmp_buf abort_jmp;
  abi::CallFrame* host_frame;   /* checked: wholly outside the enclave */
  uint64_t scratch;             /* host OCALL scratch for this level */
  uint64_t scratch_size;
  void* copies[abi::kMaxCallBuffers];
};

/* Range checks against the enclave (overflow-safe). */
bool within_enclave(uint64_t p, uint64_t n);
bool outside_enclave(uint64_t p, uint64_t n);

/* Heaps: one allocator instance per region (heap.cpp). */
struct Heap {
  tm_spinlock lock;
  uint64_t owner;  /* thread data of the thread holding `lock`, 0 when free */
  uint8_t* start;
  uint8_t* end;
  void* free_list;
  size_t used;
  size_t total;
};
void heap_init(Heap& h, void* start, size_t size);
void* heap_alloc(Heap& h, size_t size, size_t align);
void heap_free(Heap& h, void* p);
size_t heap_usable_size(const Heap& h, void* p);
bool heap_owns(const Heap& h, const void* p);
Heap& global_heap();
/* Releases the global heap's lock if `td` died holding it (recovery). */
void heap_recover_lock(uint64_t td);
/* The global heap (the runtime's own buffers). */
void heap_init(void* start, size_t size);
void* heap_alloc(size_t size, size_t align);
void heap_free(void* p);
size_t heap_usable_size(void* p);

/* Process contexts (process.cpp): the heap allocations of the current
 * thread come from (its process's arena, or the global heap), and the heap
 * a pointer belongs to. */
Heap& current_heap();
Heap& heap_for_pointer(void* p);
int process_start(tm_call* call);
int bind_tcs(tm_call* call);
int process_end(tm_call* call);
/* main() of the current thread's process returned this status. */
void record_exit_status(int status);

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
void teemate_stdio_recover_lock(uint64_t td);
}

#endif
