// Enclave configuration: what an image's enclave.toml says (heap, stack, TCS
// count, SSA frames, debug, ISV identity, MISCSELECT/ATTRIBUTES and masks),
// parsed and range-checked, and its fixed binary form stored in a .tme image.
// Host-only. Never accepts a value out of range: the error names the field.
#pragma once

#include <stdint.h>

#include <string>
#include <string_view>
#include <vector>

#include "host/image/mount_manifest.h"
#include "teemate/status.h"

namespace teemate::image {

struct EnclaveConfig {
  uint64_t heap_size = 1u << 20;     // bytes, page multiple, [4 KiB, 64 GiB]
  uint64_t stack_size = 64u << 10;   // bytes per TCS, page multiple, [8 KiB, 64 MiB]
  uint32_t tcs_count = 2;            // [1, 1024]
  uint32_t ssa_frames = 2;           // NSSA per TCS, [2, 16]; 2 lets the handler run
  uint32_t ssa_frame_pages = 1;      // SSAFRAMESIZE, [1, 16]
  bool debug = false;                // ATTRIBUTES.DEBUG
  uint16_t isv_prod_id = 0;
  uint16_t isv_svn = 0;
  uint32_t misc_select = 0;
  uint32_t misc_mask = 0xffffffff;
  uint64_t attributes = 0;           // extra ATTRIBUTES.FLAGS bits (MODE64BIT/DEBUG are derived)
  uint64_t attributes_mask = 0xfffffffffffffffbull;  // SIGSTRUCT ATTRIBUTEMASK.FLAGS
  uint64_t xfrm = 0x3;
  uint64_t xfrm_mask = 0;            // SIGSTRUCT ATTRIBUTEMASK.XFRM
  uint64_t max_call_buffer = 64u << 20;  // largest ECALL/OCALL buffer, [4 KiB, 1 GiB]
  // Switchless calls (docs/switchless.md): host threads serving OCALLs and
  // enclave threads serving ECALLs, [0, 64] each (ECALL workers fewer than
  // tcs_count); polls before a caller falls back, [0, 10M].
  uint32_t switchless_ocall_workers = 0;
  uint32_t switchless_ecall_workers = 0;
  uint32_t switchless_retries = 20000;
  // [[mount]] tables and, once packed, the trusted files' digests: measured
  // in their own pages (not in the fixed 128-byte record).
  MountManifest manifest;

  bool operator==(const EnclaveConfig&) const = default;
};

// Parses enclave.toml. `source_name` appears in every error message.
Result<EnclaveConfig> parse_config_toml(std::string_view text, const std::string& source_name);
// Range-checks every field; the error names the TOML key at fault.
Status validate_config(const EnclaveConfig& config);

// Fixed little-endian binary form kept inside a .tme image.
std::vector<uint8_t> serialize_config(const EnclaveConfig& config);
Result<EnclaveConfig> deserialize_config(const uint8_t* data, size_t size);

}  // namespace teemate::image
