/* First-entry work: self-relocation (R_X86_64_RELATIVE only; the packer
 * refused anything else), heap set-up and per-TCS thread data. Runs before
 * any relocated pointer may be used, so relocate() must touch only
 * RIP-relative data. Never calls the host. */
#include <elf.h>
#include <string.h>

#include "runtime.h"
#include "sgx/arch.h"

extern "C" {
extern const char __ehdr_start[];
extern Elf64_Dyn _DYNAMIC[];
extern const char _end[];
}

namespace teemate::trts {
namespace {

EnclaveGlobals g_globals;         /* written once under g_init_state */
/* 0 none, 2 done, 4 failed; while running, the initialising thread's TCS
 * address with bit 0 set (TCS addresses are page-aligned), so that the
 * recovery of that TCS knows the initialiser died and may take over. */
uint64_t g_init_state = 0;
constexpr uint64_t kInitDone = 2;
constexpr uint64_t kInitFailed = 4;

void relocate(uint64_t base) {
  uint64_t rela = 0, relasz = 0, relaent = sizeof(Elf64_Rela);
  for (Elf64_Dyn* d = _DYNAMIC; d->d_tag != DT_NULL; ++d) {
    if (d->d_tag == DT_RELA) rela = d->d_un.d_ptr;
    else if (d->d_tag == DT_RELASZ) relasz = d->d_un.d_val;
    else if (d->d_tag == DT_RELAENT) relaent = d->d_un.d_val;
  }
  if (rela == 0 || relaent != sizeof(Elf64_Rela)) return;
  for (uint64_t off = 0; off + sizeof(Elf64_Rela) <= relasz; off += relaent) {
    const Elf64_Rela* r = reinterpret_cast<const Elf64_Rela*>(base + rela + off);
    if (ELF64_R_TYPE(r->r_info) == R_X86_64_RELATIVE) {
      *reinterpret_cast<uint64_t*>(base + r->r_offset) = base + r->r_addend;
    }
  }
}

uint64_t page_up(uint64_t v) { return (v + 4095) & ~uint64_t{4095}; }

}  // namespace

const EnclaveGlobals& globals() { return g_globals; }

uint64_t rdrand64_or_zero() {
  for (int i = 0; i < 32; ++i) {
    unsigned long long v;
    unsigned char ok;
    __asm__ volatile("rdrand %0; setc %1" : "=r"(v), "=qm"(ok));
    if (ok) return v;
  }
  return 0;
}

bool global_init(uint64_t tcs, bool recovering) {
  const uint64_t mine = tcs | 1;
  uint64_t expected = 0;
  bool owner = __atomic_compare_exchange_n(&g_init_state, &expected, mine, false, __ATOMIC_ACQUIRE,
                                           __ATOMIC_ACQUIRE);
  // Found by CI: a process killed inside the first ECALL, while its thread
  // ran this set-up, left the state "running" for ever, and every later
  // entry (the recovery of that very TCS included) spun here. The recovery
  // of the initialiser's TCS redoes the work: relocation writes base+addend
  // (idempotent) and no thread can have used the heap before it was set up.
  if (!owner && recovering && expected == mine) owner = true;
  if (owner) {
    const uint64_t base = reinterpret_cast<uint64_t>(__ehdr_start);
    relocate(base);
    const auto* meta = reinterpret_cast<const abi::EnclaveMeta*>(base + page_up(
        reinterpret_cast<uint64_t>(_end) - base));
    if (meta->magic != abi::kMetaMagic || meta->abi_version != abi::kAbiVersion) {
      __atomic_store_n(&g_init_state, kInitFailed, __ATOMIC_RELEASE);
      return false;
    }
    g_globals.base = base;
    g_globals.size = meta->enclave_size;
    g_globals.meta = meta;
    heap_init(reinterpret_cast<void*>(base + meta->heap_offset), meta->heap_size);
    __atomic_store_n(&g_init_state, kInitDone, __ATOMIC_RELEASE);
    return true;
  }
  uint64_t s;
  while ((s = __atomic_load_n(&g_init_state, __ATOMIC_ACQUIRE)) & 1) __builtin_ia32_pause();
  return s == kInitDone;
}

uint64_t tls_block_bytes() {
  const abi::EnclaveMeta* m = g_globals.meta;
  if (!m || m->tls_memsz == 0) return 0;
  const uint64_t align = m->tls_align < 16 ? 16 : m->tls_align;
  return (m->tls_memsz + align - 1) & ~(align - 1);
}

// The packer bounded the template (at most 1 KiB, inside a loaded segment,
// alignment a power of two up to 64); the block is the top of the exception
// stack, below this thread-data page (FS points at the page: variant II).
void tls_reset(ThreadData* td) {
  const abi::EnclaveMeta* m = g_globals.meta;
  if (!m || m->tls_memsz == 0) return;
  const uint64_t block = tls_block_bytes();
  uint8_t* dst = reinterpret_cast<uint8_t*>(td) - block;
  const uint64_t at = reinterpret_cast<uint64_t>(td) - ((m->tls_memsz + (m->tls_align ? m->tls_align : 1) - 1) &
                                                        ~((m->tls_align ? m->tls_align : 1) - 1));
  uint8_t* start = reinterpret_cast<uint8_t*>(at);
  memset(dst, 0, block);
  memcpy(start, reinterpret_cast<const void*>(g_globals.base + m->tls_vaddr), m->tls_filesz);
}

extern "C" const char __c_locale[];

void thread_init(ThreadData* td, uint64_t tcs) {
  const abi::EnclaveMeta* m = g_globals.meta;
  const uint64_t block = tcs - g_globals.base - m->threads_offset;
  td->self = td;
  td->canary = rdrand64_or_zero() & ~uint64_t{0xff};
  td->locale = __c_locale;
  td->tcs_index = static_cast<uint32_t>(block / m->thread_stride);
  td->stack_top = tcs + (m->td_offset_in_block - TD_STACK_GAP);
  td->stack_limit = tcs + m->stack_offset_in_block;
  td->ssa_frame_bytes = uint64_t{m->ssa_frame_pages} * 4096;
  td->ssa_gpr0 = tcs + m->ssa_offset_in_block + td->ssa_frame_bytes - sizeof(sgx::GprSgx);
  // The exception stack: its own pages below the thread data, with a guard
  // page below them, so that an overflow faults instead of overwriting.
  td->exc_stack = reinterpret_cast<uint64_t>(td) - tls_block_bytes();
  tls_reset(td);
  td->initialized = 1;
}

bool within_enclave(uint64_t p, uint64_t n) {
  const uint64_t b = g_globals.base, s = g_globals.size;
  return p >= b && n <= s && p - b <= s - n;
}

bool outside_enclave(uint64_t p, uint64_t n) {
  if (p + n < p) return false;  // wraps
  const uint64_t b = g_globals.base, e = g_globals.base + g_globals.size;
  return p + n <= b || p >= e;
}

}  // namespace teemate::trts
