// The mount manifest: enclave.toml's [[mount]] tables and the SHA-256 of
// every trusted file, as the packer writes them into the image's measured
// manifest pages (right after the metadata page; EnclaveMeta's
// manifest_offset/manifest_size say where). Plain little-endian data, read
// by the host (image files) and by the trusted runtime (file services).
// The enclave trusts these bytes only because MRENCLAVE covers them, and
// still checks every offset before use. Never put behaviour here.
//
//   ManifestHeader
//   ManifestMount[mount_count]     (sorted by path, no duplicates)
//   ManifestFile[file_count]       (sorted by path, byte order, no duplicates)
//   strings (not NUL-terminated; each entry gives offset and length from the
//            start of the manifest)
#pragma once

#include <stdint.h>

namespace teemate::abi {

inline constexpr uint8_t kManifestMagic[8] = {'T', 'M', 'M', 'O', 'U', 'N', 'T', 'S'};
inline constexpr uint32_t kManifestVersion = 1;
inline constexpr uint32_t kManifestMaxMounts = 64;
inline constexpr uint32_t kManifestMaxFiles = 65536;
inline constexpr uint32_t kManifestMaxPath = 4095;          // bytes, like PATH_MAX - 1
inline constexpr uint32_t kManifestMaxSize = 16u << 20;     // whole manifest, bytes

enum MountType : uint32_t {
  kMountUntrusted = 1,  // plain host files, read and written as they are
  kMountTrusted = 2,    // read-only; each file's SHA-256 is in the manifest
  kMountProtected = 3,  // encrypted and authenticated per 4 KiB chunk
};

struct ManifestHeader {
  uint8_t magic[8];
  uint32_t version;
  uint32_t total_size;    // header + tables + strings
  uint32_t mount_count;
  uint32_t file_count;
  uint32_t strings_offset;
  uint32_t strings_size;
};
static_assert(sizeof(ManifestHeader) == 32);

struct ManifestMount {
  uint32_t type;      // MountType
  uint32_t path_off;  // absolute, normalised enclave path ("/data")
  uint32_t path_len;
  uint32_t host_off;  // host path; relative ones are taken from the working directory
  uint32_t host_len;
  uint32_t reserved;  // 0
};
static_assert(sizeof(ManifestMount) == 24);

struct ManifestFile {
  uint32_t path_off;  // absolute enclave path of a file under a trusted mount
  uint32_t path_len;
  uint64_t size;      // bytes
  uint8_t sha256[32];
};
static_assert(sizeof(ManifestFile) == 48);

}  // namespace teemate::abi
