// The sim backend's model of the hardware state that SGX keeps outside
// software's reach: per-TCS busy flag, CSSA/NSSA and entry addresses, the
// enclave's identity after EINIT, and the registry that maps addresses to
// enclaves for the signal handler. Enclave code never reads any of this.
// The registry is lock-free (atomic slots) so the signal path can use it.
#pragma once

#include <signal.h>
#include <stdint.h>

#include <atomic>

#include "sgx/arch.h"

namespace teemate::host::sim {

// One TCS. host_fs/host_gs must stay the first two fields: the signal entry
// stub reads them by offset before any C code runs. host_gs is 0 when the
// host thread does not use GS (its base was 0): EEXIT then leaves the
// enclave's GS base loaded, which no host code reads, instead of paying for
// a GS reload on every crossing; the thread's next EENTER of the same TCS
// finds GS already right.
struct SimTcs {
  uint64_t host_fs;        // 0: host FS base saved at EENTER/ERESUME
  uint64_t host_gs;        // 8
  uint64_t enclave_fs;     // 16: FS/GS bases inside (base + OFSBASE/OGSBASE);
  uint64_t enclave_gs;     // 24    loaded as a pair by the stub
  std::atomic<uint32_t> busy;  // 0, or the kernel tid of the thread inside
  uint32_t cssa;
  uint32_t nssa;
  uint32_t index;
  uint64_t tcs_addr;
  uint64_t ossa_addr;
  uint64_t oentry_addr;
  uint64_t aep;
  uint64_t host_sigmask;   // the kernel's 64-bit mask at EENTER
  // Leases are not enforced here, as hardware does not enforce them: any
  // process that maps the enclave may EENTER any TCS that is not busy. The
  // enclave enforces them (lease tokens, docs/threat-model.md).
  //
  // The PID namespace (inode of /proc/self/ns/pid) in which `busy` is the
  // holder's thread id: with it the owner can tell a thread that died inside
  // (whose TCS it may reclaim) from one that still runs, in any process.
  std::atomic<uint64_t> holder_pidns;
};
static_assert(offsetof(SimTcs, host_fs) == 0 && offsetof(SimTcs, host_gs) == 8);
static_assert(offsetof(SimTcs, enclave_gs) == 24);
// teemate_enclu_enter (sim_enclu.S) reads these after the software EENTER.
static_assert(offsetof(SimTcs, enclave_fs) == 16 && offsetof(SimTcs, cssa) == 36 &&
              offsetof(SimTcs, oentry_addr) == 64);

// The control memory: a memfd shared by every process that maps the
// enclave (the "hardware state" of the sim): a header, the SimTcs array and
// one permission byte per page. Written by the owner up to EINIT; after
// that only busy/CSSA/lease and the per-entry fields of SimTcs change.
inline constexpr uint64_t kSimControlMagic = 0x3154434d4953544dull;  // "MTSIMCT1"
struct SimControlHeader {
  uint64_t magic;
  uint32_t version;
  uint32_t tcs_count;
  uint64_t base;
  uint64_t size;
  uint32_t ssa_frame_pages;
  uint32_t misc_select;
  sgx::Attributes attributes;
  uint16_t isv_prod_id;
  uint16_t isv_svn;
  uint32_t initialized;
  uint8_t mr_enclave[32];
  uint8_t mr_signer[32];
  uint64_t tcs_offset;    // SimTcs[tcs_count]
  uint64_t perms_offset;  // uint8_t[size / 4096]
  uint64_t total_size;
  // The simulated CPU's key material (the owner's root key): EREPORT and
  // EGETKEY in every attached process derive from it. No secret from the
  // host, as nothing in the sim is.
  uint8_t root_key[32];
};

// A process's view of one enclave (owner or attached): immutable fields
// copied from the control header, pointers into the control memory.
struct SimEnclaveState {
  uint64_t base = 0;
  uint64_t size = 0;
  uint32_t ssa_frame_pages = 1;
  uint32_t misc_select = 0;
  sgx::Attributes attributes{};
  uint16_t isv_prod_id = 0;
  uint16_t isv_svn = 0;
  std::atomic<bool> initialized{false};
  uint8_t mr_enclave[32] = {};
  uint8_t mr_signer[32] = {};
  uint8_t root_key[32] = {};       // see SimControlHeader::root_key
  SimTcs* tcs = nullptr;           // tcs_count entries
  uint32_t tcs_count = 0;
  const uint8_t* page_perms = nullptr;  // SECINFO R/W/X per page, 0x80 = not added
  SimControlHeader* control = nullptr;
  // Attached processes only (sim_deferred_blocks.cpp): deferred_blocks TCS
  // blocks of deferred_stride bytes from deferred_start, whose permissions
  // are applied on first use; deferred_state[b]: 0 deferred, 1 being
  // applied, 2 applied. Zero blocks: everything was applied at once.
  uint64_t deferred_start = 0;
  uint64_t deferred_stride = 0;
  uint32_t deferred_blocks = 0;
  std::atomic<uint8_t>* deferred_state = nullptr;
};

// Page permissions (sim_deferred_blocks.cpp), all async-signal-safe.
// mprotect()s pages [first, end) of the enclave at `base` as `perms` says
// (guards and pages never added stay PROT_NONE); 0 or the errno.
int apply_page_permissions(uint64_t base, const uint8_t* perms, uint64_t first, uint64_t end);
// Before host code touches the TCS block holding `addr` (EENTER, ERESUME):
// applies its permissions if they were deferred.
void apply_deferred_block(SimEnclaveState* st, uint64_t addr);
// A SIGSEGV at `addr`: true when it hit a deferred block whose permissions
// are now applied and allow the access (page-fault error code bits: 2
// write, 16 instruction fetch), so the access is to be retried.
bool retry_after_deferred_block(SimEnclaveState* st, uint64_t addr, uint64_t page_fault_error);

// Registry of live enclaves in this process, for the signal handler.
inline constexpr int kMaxEnclaves = 64;
bool registry_add(SimEnclaveState* state);
void registry_remove(SimEnclaveState* state);
SimEnclaveState* registry_find_addr(uint64_t addr);
SimTcs* registry_find_tcs(uint64_t tcs_addr, SimEnclaveState** owner);

// Installs the SIGILL/SIGSEGV/SIGBUS/SIGFPE/SIGTRAP handlers once.
void install_signal_handlers();
// Gives the calling thread an alternate signal stack (once per thread).
void ensure_signal_stack();


}  // namespace teemate::host::sim
