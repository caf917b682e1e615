// Report and key derivation for the sim backend: EREPORT and EGETKEY from a
// per-host 256-bit root key kept in a 0600 file, with the SDM's derivation
// inputs (KEYNAME, KEYPOLICY, ISVPRODID, ISVSVN, CPUSVN, masked ATTRIBUTES
// and MISCSELECT, MRENCLAVE/MRSIGNER, KEYID). Gives no secrecy from the host:
// whoever reads the file derives every key. Never logs key material.
#pragma once

#include <stdint.h>

#include <string>

#include "common/status.h"
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

// Where the root key lives: $TEEMATE_SIM_ROOT_KEY, else
// $XDG_STATE_HOME/teemate/sim-root.key, else ~/.local/state/teemate/sim-root.key.
std::string root_key_path();
// Loads the root key, creating it (0600, 32 random bytes) on first use.
// Refuses a file with the wrong size, owner or permissions.
Status load_root_key();

void ereport(const SimEnclaveState& st, const sgx::TargetInfo& target, const uint8_t* report_data,
             sgx::Report* out);
uint32_t egetkey(const SimEnclaveState& st, const sgx::KeyRequest& req, uint8_t* key_out);

}  // namespace teemate::host::sim
