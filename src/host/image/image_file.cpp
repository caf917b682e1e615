// The .tme image format: parsing (hostile input, every field bounds-checked),
// serialisation, atomic writing, load_image() and the signature check.
// Never trusts an offset or size from the file before checking it, and never
// writes a partial image.
#include "host/image/le_bytes.h"
#include "host/image/image_file.h"

#include <string.h>

#include <algorithm>
#include <cstdio>

#include "base/hex.h"
#include "host/image/file_util.h"

namespace teemate::image {

namespace {

using le::get16;
using le::get32;
using le::get64;
using le::put16;
using le::put32;
using le::put64;


constexpr uint64_t kConfigOffset = 64;
constexpr uint64_t kSigstructOffset = 192;
constexpr uint64_t kElfOffset = 4096;


bool in_bounds(uint64_t offset, uint64_t size, uint64_t total) {
  return offset <= total && size <= total - offset;
}

using base::hex;

struct Section {
  const char* what;
  uint64_t offset;
  uint64_t size;
};

Status parse_into(std::span<const uint8_t> bytes, ImageFile* out) {
  if (bytes.size() < kImageHeaderSize) {
    return corrupt("truncated: " + std::to_string(bytes.size()) +
                   " bytes is shorter than the 64-byte image header");
  }
  const uint8_t* h = bytes.data();
  if (memcmp(h, kImageMagic, 7) != 0) return corrupt("not a TeeMate image (bad magic)");
  const uint32_t version = get32(h + 8);
  if (h[7] != kImageMagic[7] || version < 1 || version > kImageFormatVersion) {
    return unsupported("image format version " + std::to_string(version) + " (magic byte " +
                       std::to_string(h[7]) + ") is not supported; this teemate reads versions 1 to " +
                       std::to_string(kImageFormatVersion));
  }
  if (get32(h + 12) != kImageHeaderSize) {
    return corrupt("header size " + std::to_string(get32(h + 12)) + " is not 64");
  }
  const uint32_t flags = get32(h + 28);
  if (flags & ~kImageFlagSigned) return corrupt("unknown header flags " + hex(flags));
  if (version == 1 && get32(h + 60) != 0) return corrupt("reserved header field is not zero");
  const uint64_t manifest_size = version >= 2 ? get32(h + 60) : 0;
  if (manifest_size > abi::kManifestMaxSize) {
    return corrupt("mount manifest section is " + std::to_string(manifest_size) + " bytes, more than 16 MiB");
  }

  // The manifest follows the ELF immediately (bounded: the ELF's end is
  // checked against the file size before the manifest is).
  const uint64_t elf_end = get64(h + 32) + get64(h + 40);
  const Section sections[4] = {
      {"config record", get64(h + 16), get32(h + 24)},
      {"ELF", get64(h + 32), get64(h + 40)},
      {"SIGSTRUCT", get64(h + 48), get32(h + 56)},
      {"mount manifest", elf_end < get64(h + 32) ? UINT64_MAX : elf_end, manifest_size},
  };
  const int nsec = manifest_size ? 4 : 3;  // an empty manifest is no section
  if (sections[2].size != sizeof(sgx::Sigstruct)) {
    return corrupt("SIGSTRUCT section is " + std::to_string(sections[2].size) + " bytes, expected " +
                   std::to_string(sizeof(sgx::Sigstruct)));
  }
  if (sections[1].size == 0) return corrupt("the ELF section is empty");
  uint64_t end = kImageHeaderSize;
  for (int i = 0; i < nsec; ++i) {
    const Section& s = sections[i];
    if (s.offset < kImageHeaderSize) {
      return corrupt(std::string(s.what) + " section at " + hex(s.offset) + " overlaps the header");
    }
    if (!in_bounds(s.offset, s.size, bytes.size())) {
      return corrupt(std::string(s.what) + " section [" + hex(s.offset) + ", +" + hex(s.size) +
                     ") lies outside the file (" + std::to_string(bytes.size()) +
                     " bytes; truncated?)");
    }
    end = std::max(end, s.offset + s.size);
  }
  for (int i = 0; i < nsec; ++i) {
    for (int j = i + 1; j < nsec; ++j) {
      const Section& a = sections[i];
      const Section& b = sections[j];
      if (a.offset < b.offset + b.size && b.offset < a.offset + a.size) {
        return corrupt(std::string(a.what) + " and " + b.what + " sections overlap");
      }
    }
  }
  if (end != bytes.size()) {
    return corrupt(std::to_string(bytes.size() - end) + " unexpected bytes after the last section");
  }

  Result<EnclaveConfig> config = deserialize_config(bytes.data() + sections[0].offset, sections[0].size);
  if (!config.ok()) return config.status();
  out->config = config.value();
  Result<MountManifest> manifest =
      deserialize_manifest(manifest_size ? bytes.subspan(sections[3].offset, manifest_size) : std::span<const uint8_t>());
  if (!manifest.ok()) return manifest.status();
  out->config.manifest = std::move(manifest).value();

  memcpy(&out->sigstruct, bytes.data() + sections[2].offset, sizeof(sgx::Sigstruct));
  out->is_signed = flags & kImageFlagSigned;
  if (!out->is_signed) {
    const uint8_t* sig = bytes.data() + sections[2].offset;
    if (std::any_of(sig, sig + sizeof(sgx::Sigstruct), [](uint8_t b) { return b != 0; })) {
      return corrupt("unsigned image has a non-zero SIGSTRUCT section");
    }
  }
  const uint8_t* elf = bytes.data() + sections[1].offset;
  out->elf_bytes = std::make_shared<const std::vector<uint8_t>>(elf, elf + sections[1].size);
  return Status::ok_status();
}

}  // namespace

Result<ImageFile> parse_image(std::span<const uint8_t> bytes, const std::string& name) {
  ImageFile out;
  Status st = parse_into(bytes, &out);
  if (!st.ok()) return st.with_context(name);
  return out;
}

std::vector<uint8_t> serialize_image(const ImageFile& image) {
  const std::vector<uint8_t> config = serialize_config(image.config);
  const std::vector<uint8_t> manifest = serialize_manifest(image.config.manifest);
  const uint64_t elf_size = image.elf_bytes ? image.elf_bytes->size() : 0;
  std::vector<uint8_t> out(kElfOffset + elf_size + manifest.size(), 0);
  uint8_t* h = out.data();
  memcpy(h, kImageMagic, 8);
  put32(h + 8, kImageFormatVersion);
  put32(h + 12, kImageHeaderSize);
  put64(h + 16, kConfigOffset);
  put32(h + 24, static_cast<uint32_t>(config.size()));
  put32(h + 28, image.is_signed ? kImageFlagSigned : 0);
  put64(h + 32, kElfOffset);
  put64(h + 40, elf_size);
  put64(h + 48, kSigstructOffset);
  put32(h + 56, sizeof(sgx::Sigstruct));
  put32(h + 60, static_cast<uint32_t>(manifest.size()));
  static_assert(kConfigOffset + 128 <= kSigstructOffset);
  static_assert(kSigstructOffset + sizeof(sgx::Sigstruct) <= kElfOffset);
  memcpy(h + kConfigOffset, config.data(), std::min<size_t>(config.size(), kSigstructOffset - kConfigOffset));
  if (image.is_signed) memcpy(h + kSigstructOffset, &image.sigstruct, sizeof(sgx::Sigstruct));
  if (elf_size) memcpy(h + kElfOffset, image.elf_bytes->data(), elf_size);
  if (!manifest.empty()) memcpy(h + kElfOffset + elf_size, manifest.data(), manifest.size());
  return out;
}

Result<ImageFile> read_image_file(const std::string& path) {
  TM_ASSIGN_OR_RETURN(std::vector<uint8_t> bytes, read_file(path, kMaxImageFileSize));
  return parse_image(bytes, path);
}

Status write_image_file(const std::string& path, const ImageFile& image) {
  if (!image.elf_bytes || image.elf_bytes->empty()) {
    return invalid_argument(path + ": refusing to write an image without ELF bytes");
  }
  Status st = validate_config(image.config);
  if (!st.ok()) return st.with_context(path);
  const std::vector<uint8_t> bytes = serialize_image(image);
  return write_file_atomic(path, bytes, 0644, /*overwrite=*/true);
}

Result<LoadedImage> load_image_bytes(std::span<const uint8_t> bytes, const std::string& name) {
  TM_ASSIGN_OR_RETURN(ImageFile file, parse_image(bytes, name));
  Result<ElfImage> elf = ElfImage::parse(file.elf_bytes, name + " (ELF)");
  if (!elf.ok()) return elf.status();
  Result<Layout> layout = Layout::compute(elf.value(), file.config);
  if (!layout.ok()) return layout.status().with_context(name);
  if (layout->meta().meta_offset < elf->end()) {
    return internal_error(name + ": the ELF (ends at " + hex(elf->end()) +
                          ") overlaps the metadata page at " + hex(layout->meta().meta_offset));
  }
  return LoadedImage{std::move(file), std::move(elf).value(), std::move(layout).value()};
}

Result<LoadedImage> load_image(const std::string& path) {
  TM_ASSIGN_OR_RETURN(std::vector<uint8_t> bytes, read_file(path, kMaxImageFileSize));
  return load_image_bytes(bytes, path);
}

sgx::SigstructFields sigstruct_fields_for(const Layout& layout, const sgx::Digest& mrenclave) {
  const EnclaveConfig& c = layout.config();
  sgx::SigstructFields f;
  f.vendor = 0;
  f.date_bcd = 0;
  f.misc_select = c.misc_select;
  f.misc_mask = c.misc_mask;
  f.attributes = layout.attributes();
  f.attribute_mask.flags = c.attributes_mask;
  f.attribute_mask.xfrm = c.xfrm_mask;
  f.enclave_hash = mrenclave;
  f.isv_prod_id = c.isv_prod_id;
  f.isv_svn = c.isv_svn;
  return f;
}

Status check_image_signature(const LoadedImage& image) {
  return check_image_signature(image, image.layout.measure());
}

Status check_image_signature(const LoadedImage& image, const sgx::Digest& mrenclave) {
  if (!image.file.is_signed) return security_error("the image is not signed (run `teemate sign`)");
  const sgx::Sigstruct& sig = image.file.sigstruct;
  Status st = sgx::verify_sigstruct(sig);
  if (!st.ok()) return Status(Code::kSecurity, "SIGSTRUCT: " + st.message());
  if (memcmp(sig.enclave_hash, mrenclave.data(), mrenclave.size()) != 0) {
    return security_error("SIGSTRUCT ENCLAVEHASH " +
                          sgx::to_hex(std::span<const uint8_t>(sig.enclave_hash, 32)) +
                          " does not match the image's MRENCLAVE " + sgx::to_hex(mrenclave) +
                          " (the image changed after signing)");
  }
  const sgx::SigstructFields want = sigstruct_fields_for(image.layout, mrenclave);
  auto mismatch = [](const std::string& field, uint64_t got, const std::string& key, uint64_t expected) {
    return security_error("SIGSTRUCT " + field + " " + hex(got) + " does not match the config (" + key +
                          " gives " + hex(expected) + ")");
  };
  if (sig.isv_prod_id != want.isv_prod_id) {
    return mismatch("ISVPRODID", sig.isv_prod_id, "enclave.isv_prod_id", want.isv_prod_id);
  }
  if (sig.isv_svn != want.isv_svn) return mismatch("ISVSVN", sig.isv_svn, "enclave.isv_svn", want.isv_svn);
  if (sig.misc_select != want.misc_select) {
    return mismatch("MISCSELECT", sig.misc_select, "enclave.misc_select", want.misc_select);
  }
  if (sig.misc_mask != want.misc_mask) {
    return mismatch("MISCMASK", sig.misc_mask, "enclave.misc_mask", want.misc_mask);
  }
  if (sig.attributes.flags != want.attributes.flags) {
    return mismatch("ATTRIBUTES.FLAGS", sig.attributes.flags, "enclave.debug/attributes",
                    want.attributes.flags);
  }
  if (sig.attributes.xfrm != want.attributes.xfrm) {
    return mismatch("ATTRIBUTES.XFRM", sig.attributes.xfrm, "enclave.xfrm", want.attributes.xfrm);
  }
  if (sig.attribute_mask.flags != want.attribute_mask.flags) {
    return mismatch("ATTRIBUTEMASK.FLAGS", sig.attribute_mask.flags, "enclave.attributes_mask",
                    want.attribute_mask.flags);
  }
  if (sig.attribute_mask.xfrm != want.attribute_mask.xfrm) {
    return mismatch("ATTRIBUTEMASK.XFRM", sig.attribute_mask.xfrm, "enclave.xfrm_mask",
                    want.attribute_mask.xfrm);
  }
  return Status::ok_status();
}

}  // namespace teemate::image
