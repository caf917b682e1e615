/* AES-NI/PCLMULQDQ detection for mbedTLS inside the enclave: replaces
 * aesni.c's CPUID test (CPUID faults inside a hardware enclave) by running
 * one AESENC and one PCLMULQDQ under an exception handler that skips them if
 * they fault (#UD). Never executes CPUID and never asks the host. */
#include <atomic>

#include "mbedtls/aesni.h"
#include "runtime.h"

extern "C" {
/* Returns bit 0 set if AESENC ran, bit 1 set if PCLMULQDQ ran. */
__attribute__((visibility("hidden"))) uint32_t teemate_aesni_probe(void);
__attribute__((visibility("hidden"))) extern const char teemate_aesni_probe_aes[];
__attribute__((visibility("hidden"))) extern const char teemate_aesni_probe_clmul[];
__attribute__((visibility("hidden"))) extern const char teemate_aesni_probe_done[];
}

__asm__(
    ".pushsection .text.teemate_aesni_probe,\"ax\",@progbits\n"
    ".globl teemate_aesni_probe\n"
    ".hidden teemate_aesni_probe\n"
    ".type teemate_aesni_probe,@function\n"
    "teemate_aesni_probe:\n"
    "  movl $3, %eax\n"
    "  pxor %xmm0, %xmm0\n"
    ".globl teemate_aesni_probe_aes\n"
    ".hidden teemate_aesni_probe_aes\n"
    "teemate_aesni_probe_aes:\n"
    "  aesenc %xmm0, %xmm0\n"
    ".globl teemate_aesni_probe_clmul\n"
    ".hidden teemate_aesni_probe_clmul\n"
    "teemate_aesni_probe_clmul:\n"
    "  pclmulqdq $0, %xmm0, %xmm0\n"
    ".globl teemate_aesni_probe_done\n"
    ".hidden teemate_aesni_probe_done\n"
    "teemate_aesni_probe_done:\n"
    "  pxor %xmm0, %xmm0\n"
    "  ret\n"
    ".size teemate_aesni_probe, .-teemate_aesni_probe\n"
    ".popsection\n");

namespace {

constexpr uint32_t kVectorUD = 6;
constexpr int kUnknown = -1;

/* Deliberately shared: the probe's result, written once under g_probe_lock
 * (bit 0 AES-NI, bit 1 PCLMULQDQ), read without the lock afterwards. */
std::atomic<int> g_support{kUnknown};
tm_spinlock g_probe_lock = TM_SPINLOCK_INIT;

int skip_probe_fault(tm_exception_info* info) {
  if (info->vector != kVectorUD) return TM_EXCEPTION_CONTINUE_SEARCH;
  if (info->cpu.rip == reinterpret_cast<uint64_t>(teemate_aesni_probe_aes)) {
    info->cpu.rax &= ~uint64_t{1};
    info->cpu.rip = reinterpret_cast<uint64_t>(teemate_aesni_probe_clmul);
    return TM_EXCEPTION_CONTINUE_EXECUTION;
  }
  if (info->cpu.rip == reinterpret_cast<uint64_t>(teemate_aesni_probe_clmul)) {
    info->cpu.rax &= ~uint64_t{2};
    info->cpu.rip = reinterpret_cast<uint64_t>(teemate_aesni_probe_done);
    return TM_EXCEPTION_CONTINUE_EXECUTION;
  }
  return TM_EXCEPTION_CONTINUE_SEARCH;
}

int support() {
  int s = g_support.load(std::memory_order_acquire);
  if (s != kUnknown) return s;
  tm_spin_lock(&g_probe_lock);
  s = g_support.load(std::memory_order_relaxed);
  if (s == kUnknown) {
    if (tm_register_exception_handler(skip_probe_fault) == TM_OK) {
      s = static_cast<int>(teemate_aesni_probe());
      tm_unregister_exception_handler(skip_probe_fault);
      g_support.store(s, std::memory_order_release);
    } else {
      s = 0;  // no handler slot free: use the software AES this time, probe later
    }
  }
  tm_spin_unlock(&g_probe_lock);
  return s;
}

}  // namespace

/* Called by mbedTLS's aes.c and gcm.c in place of mbedtls_aesni_has_support
 * (renamed at compile time by src/enclave/CMakeLists.txt). */
extern "C" int teemate_aesni_has_support(unsigned int what) {
  const int s = support();
  if (what == MBEDTLS_AESNI_AES) return (s & 1) != 0;
  if (what == MBEDTLS_AESNI_CLMUL) return (s & 2) != 0;
  return 0;
}
