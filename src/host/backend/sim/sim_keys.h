// Report and key derivation for the sim backend: EREPORT and EGETKEY from a
// 256-bit root key kept in a 0600 file, with the SDM's derivation
// inputs (KEYNAME, KEYPOLICY, ISVPRODID, ISVSVN, CPUSVN, masked ATTRIBUTES
// and MISCSELECT, MRENCLAVE/MRSIGNER, KEYID). Gives no secrecy from the host:
// whoever reads the file derives every key. Never logs key material.
#pragma once

#include <stdint.h>

#include <string>

#include "teemate/status.h"
#include "host/backend/sim/sim_state.h"
#include "sgx/arch.h"

namespace teemate::host::sim {

// EGETKEY error codes (RAX), as the SDM defines them.
inline constexpr uint32_t kErrInvalidAttribute = 2;
inline constexpr uint32_t kErrInvalidCpuSvn = 32;
inline constexpr uint32_t kErrInvalidIsvSvn = 64;
inline constexpr uint32_t kErrInvalidKeyname = 256;

// The CPUSVN the simulated CPU reports.
extern const uint8_t kSimCpuSvn[16];

// Where the root key lives: $TEEMATE_SIM_ROOT_KEY, else for root
// /var/lib/teemate/sim-root.key (one per host: teemated's), else
// sim-root.key in the per-user state directory (base::state_dir()).
std::string root_key_path();
// Loads the root key, creating it (0600, 32 random bytes) on first use.
// Refuses a file with the wrong size, owner or permissions. Only a process
// that builds enclaves needs it: the key becomes part of each enclave's
// simulated CPU state (SimEnclaveState::root_key, shared with attached
// processes through the control memory), so every process of one enclave
// derives the same keys whatever its own environment.
Status load_root_key();
// The loaded key (load_root_key must have succeeded).
void copy_root_key(uint8_t out[32]);

void ereport(const SimEnclaveState& st, const sgx::TargetInfo& target, const uint8_t* report_data,
             sgx::Report* out);
uint32_t egetkey(const SimEnclaveState& st, const sgx::KeyRequest& req, uint8_t* key_out);

}  // namespace teemate::host::sim
