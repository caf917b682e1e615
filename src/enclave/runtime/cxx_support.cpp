/* C++ language support for enclave programs built without exceptions or
 * RTTI: operator new/delete on the enclave heap, pure-virtual and
 * static-init guards, atexit (destructors of globals never run: an enclave
 * is torn down, not exited). Never throws. */
#include <stddef.h>
#include <stdlib.h>

#include <new>

#include "teemate/trusted/runtime.h"

void* operator new(size_t n) {
  void* p = malloc(n);
  if (!p) tm_abort("operator new: enclave heap exhausted");
  return p;
}
void* operator new[](size_t n) { return operator new(n); }
void* operator new(size_t n, const std::nothrow_t&) noexcept { return malloc(n); }
void* operator new[](size_t n, const std::nothrow_t&) noexcept { return malloc(n); }
void* operator new(size_t n, std::align_val_t a) {
  void* p = aligned_alloc(static_cast<size_t>(a), n);
  if (!p) tm_abort("operator new: enclave heap exhausted");
  return p;
}
void operator delete(void* p) noexcept { free(p); }
void operator delete[](void* p) noexcept { free(p); }
void operator delete(void* p, size_t) noexcept { free(p); }
void operator delete[](void* p, size_t) noexcept { free(p); }
void operator delete(void* p, std::align_val_t) noexcept { free(p); }
void operator delete(void* p, size_t, std::align_val_t) noexcept { free(p); }

extern "C" {
void* __dso_handle = nullptr;
int __cxa_atexit(void (*)(void*), void*, void*) { return 0; }
int atexit(void (*)(void)) { return 0; }
void __cxa_pure_virtual(void) { tm_abort("pure virtual function called"); }

// Static-local initialisation guards: byte 0 = done, byte 1 = in progress.
int __cxa_guard_acquire(uint64_t* g) {
  auto* b = reinterpret_cast<volatile uint8_t*>(g);
  for (;;) {
    if (__atomic_load_n(&b[0], __ATOMIC_ACQUIRE)) return 0;
    uint8_t expected = 0;
    if (__atomic_compare_exchange_n(&b[1], &expected, 1, false, __ATOMIC_ACQUIRE, __ATOMIC_RELAXED)) {
      return 1;
    }
    __builtin_ia32_pause();
  }
}
void __cxa_guard_release(uint64_t* g) {
  auto* b = reinterpret_cast<volatile uint8_t*>(g);
  __atomic_store_n(&b[0], 1, __ATOMIC_RELEASE);
  __atomic_store_n(&b[1], 0, __ATOMIC_RELEASE);
}
void __cxa_guard_abort(uint64_t* g) {
  auto* b = reinterpret_cast<volatile uint8_t*>(g);
  __atomic_store_n(&b[1], 0, __ATOMIC_RELEASE);
}
}

// libstdc++'s headers call these on errors even without exceptions; in an
// enclave each one fails the current ECALL.
namespace std {
void __throw_bad_alloc() { tm_abort("std::bad_alloc"); }
void __throw_bad_array_new_length() { tm_abort("std::bad_array_new_length"); }
void __throw_length_error(const char* what) { tm_abort(what ? what : "std::length_error"); }
void __throw_out_of_range(const char* what) { tm_abort(what ? what : "std::out_of_range"); }
void __throw_out_of_range_fmt(const char* fmt, ...) { tm_abort(fmt ? fmt : "std::out_of_range"); }
void __throw_invalid_argument(const char* what) { tm_abort(what ? what : "std::invalid_argument"); }
void __throw_logic_error(const char* what) { tm_abort(what ? what : "std::logic_error"); }
void __throw_bad_function_call() { tm_abort("std::bad_function_call"); }
void __throw_bad_optional_access() { tm_abort("std::bad_optional_access"); }
}  // namespace std
