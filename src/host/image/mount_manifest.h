// enclave.toml's [[mount]] tables on the host: the checked in-memory form,
// the binary manifest the packer writes into the image's measured pages
// (src/common/mount_manifest_abi.h), its hostile-input parser, and the
// packer's hashing of trusted files. Host-only; never trusts a manifest
// read from an image before checking it.
#pragma once

#include <stdint.h>

#include <array>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/mount_manifest_abi.h"
#include "teemate/status.h"

namespace teemate::image {

struct MountSpec {
  std::string path;  // inside the enclave: absolute and normalised ("/data")
  std::string host;  // on the host; a relative path is taken from the working directory
  abi::MountType type = abi::kMountUntrusted;
  bool operator==(const MountSpec&) const = default;
};

struct TrustedFileDigest {
  std::string path;  // enclave path of the file
  uint64_t size = 0;
  std::array<uint8_t, 32> sha256{};
  bool operator==(const TrustedFileDigest&) const = default;
};

struct MountManifest {
  std::vector<MountSpec> mounts;       // sorted by path
  std::vector<TrustedFileDigest> files;  // sorted by path
  bool empty() const { return mounts.empty() && files.empty(); }
  bool operator==(const MountManifest&) const = default;
};

// "trusted", "protected", "untrusted"; nullptr for anything else.
const char* mount_type_name(abi::MountType type);
// Absolute, no empty, "." or ".." component, no trailing '/' (except "/"),
// no NUL, at most abi::kManifestMaxPath bytes.
bool is_normalized_enclave_path(std::string_view path);
// Sorts, then checks limits, paths, duplicates, and that every file lies
// under a trusted mount. Errors name the mount ("mount[2].path") or file.
Status normalize_and_check(MountManifest* manifest);
// The binary form (empty when the manifest is empty).
std::vector<uint8_t> serialize_manifest(const MountManifest& manifest);
// Parses a manifest from an image file: treats the bytes as hostile.
Result<MountManifest> deserialize_manifest(std::span<const uint8_t> bytes);
// The packer: replaces manifest->files with the SHA-256 and size of every
// regular file under each trusted mount's host path (a directory, walked
// recursively without following directory links, or one file).
Status hash_trusted_files(MountManifest* manifest);

}  // namespace teemate::image
