// The .tme enclave image file: a 64-byte header, the binary config record,
// the SIGSTRUCT (zero until signed) and the ELF bytes; plus load_image(), the
// one entry point the loader, the daemon and the CLI use to get a validated
// ELF and layout from a path, and the signature check. Host-only. Parsing
// treats the file as hostile and never trusts an offset before checking it;
// writing is atomic and never leaves a partial file.
//
// Header (little-endian):
//    0  magic "TEEMATE\x01"          8  u32 format version (2; 1 is read too)
//   12  u32 header size (64)
//   16  u64 config offset           24  u32 config size (128)   28  u32 flags (bit 0: signed)
//   32  u64 ELF offset              40  u64 ELF size
//   48  u64 SIGSTRUCT offset        56  u32 SIGSTRUCT size (1808)
//   60  u32 mount manifest size (version 2; reserved, 0, in version 1): the
//       manifest (common/mount_manifest_abi.h) follows the ELF immediately
// Sections must lie inside the file, must not overlap each other or the
// header, and the file ends where the last section ends. write_image_file()
// puts the config at 64, the SIGSTRUCT at 192, the ELF at 4096 and the
// manifest (when enclave.toml has [[mount]] tables) after the ELF.
#pragma once

#include <stdint.h>

#include <memory>
#include <span>
#include <string>
#include <vector>

#include "teemate/status.h"
#include "host/image/elf_image.h"
#include "host/image/enclave_config.h"
#include "host/image/layout.h"
#include "sgx/arch.h"
#include "sgx/measurement.h"
#include "sgx/sigstruct.h"

namespace teemate::image {

inline constexpr uint8_t kImageMagic[8] = {'T', 'E', 'E', 'M', 'A', 'T', 'E', 0x01};
inline constexpr uint32_t kImageFormatVersion = 2;
inline constexpr size_t kImageHeaderSize = 64;
inline constexpr uint32_t kImageFlagSigned = 1u << 0;
// Largest .tme file read_image_file() accepts.
inline constexpr uint64_t kMaxImageFileSize = 4ull << 30;

struct ImageFile {
  EnclaveConfig config;
  std::shared_ptr<const std::vector<uint8_t>> elf_bytes;
  sgx::Sigstruct sigstruct{};  // all zero when !is_signed
  bool is_signed = false;
};

// Parses a .tme image held in memory; `name` prefixes every error. Validates
// the header, section bounds and the config record (ranges included); does
// not parse the ELF or check the signature (see load_image,
// check_image_signature).
Result<ImageFile> parse_image(std::span<const uint8_t> bytes, const std::string& name);
// The bytes write_image_file() would write.
std::vector<uint8_t> serialize_image(const ImageFile& image);

Result<ImageFile> read_image_file(const std::string& path);
// Atomic: temporary file in the same directory, fsync, rename; mode 0644.
Status write_image_file(const std::string& path, const ImageFile& image);

struct LoadedImage {
  ImageFile file;
  ElfImage elf;
  Layout layout;
};

// read_image_file + ElfImage::parse + Layout::compute, with a check that the
// ELF ends before the metadata page. Errors are prefixed with the path.
Result<LoadedImage> load_image(const std::string& path);
// The same for an image already in memory (tests, fuzzing, the daemon).
Result<LoadedImage> load_image_bytes(std::span<const uint8_t> bytes, const std::string& name);

// The SIGSTRUCT fields a signer must use for this layout: ENCLAVEHASH =
// `mrenclave`, ATTRIBUTES = layout.attributes(), ATTRIBUTEMASK = the config's
// masks, MISCSELECT/MISCMASK and ISV identity from the config, vendor 0,
// date 0 (today).
sgx::SigstructFields sigstruct_fields_for(const Layout& layout, const sgx::Digest& mrenclave);

// The image is signed, its SIGSTRUCT verifies, ENCLAVEHASH equals
// layout.measure() and ISVPRODID/ISVSVN/ATTRIBUTES/masks/MISC agree with the
// config. Measures the layout unless `mrenclave` is given.
Status check_image_signature(const LoadedImage& image);
Status check_image_signature(const LoadedImage& image, const sgx::Digest& mrenclave);

}  // namespace teemate::image
