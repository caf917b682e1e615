/* The C library services musl's libc.a would reach the kernel for, supplied
 * from inside the enclave: errno, stdio locks, stdout/stderr output through
 * OCALLs, randomness from RDRAND, abort and exit (stdio streams are in
 * stdio_streams.c; time, getrandom and mmap in posix_time.cpp and
 * posix_memory.cpp). Anything here that talks to the host goes through tm_ocall; nothing
 * here may contain a system call instruction. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "runtime.h"

using namespace teemate;
using namespace teemate::trts;


extern "C" {

int* __errno_location(void) { return &current_td()->errno_value; }
int* ___errno_location(void) { return __errno_location(); }

// musl's internal locks: the enclave has no futexes, so spin.
void __lock(volatile int* l) {
  while (__atomic_exchange_n(l, 1, __ATOMIC_ACQUIRE)) __builtin_ia32_pause();
}
void __unlock(volatile int* l) { __atomic_store_n(l, 0, __ATOMIC_RELEASE); }
void __stack_chk_fail(void) { tm_abort("stack smashing detected"); }
void abort(void) { tm_abort("abort() called"); }

int tm_random(void* out, size_t size) {
  uint8_t* p = static_cast<uint8_t*>(out);
  while (size > 0) {
    unsigned long long v;
    unsigned char ok = 0;
    for (int i = 0; i < 32 && !ok; ++i) __asm__ volatile("rdrand %0; setc %1" : "=r"(v), "=qm"(ok));
    if (!ok) return TM_ERR_FAULT;
    size_t n = size < 8 ? size : 8;
    memcpy(p, &v, n);
    p += n;
    size -= n;
  }
  return TM_OK;
}

int tm_is_within_enclave(const void* p, size_t n) { return within_enclave(reinterpret_cast<uint64_t>(p), n); }
int tm_is_outside_enclave(const void* p, size_t n) { return outside_enclave(reinterpret_cast<uint64_t>(p), n); }
uint64_t tm_enclave_base(void) { return globals().base; }
uint64_t tm_enclave_size(void) { return globals().size; }

}  // extern "C"

extern "C" int teemate_host_write_c(int fd, const void* data, size_t size) {
  return teemate::trts::host_write(fd, data, size);
}
