// MRENCLAVE computation (ECREATE/EADD/EEXTEND records hashed with SHA-256, as
// the SDM defines it). Pure computation: never does I/O and never depends on
// where the enclave is mapped; misuse by the (trusted) caller aborts loudly.
#include "sgx/measurement.h"

#include <openssl/evp.h>

#include <cinttypes>
#include <cstdio>
#include <cstdlib>

#include "sgx/arch.h"

namespace teemate::sgx {

namespace {

// Record tags: the ASCII names, NUL padded, as little-endian u64s.
constexpr uint64_t kTagEcreate = 0x0045544145524345ull;  // "ECREATE\0"
constexpr uint64_t kTagEadd = 0x0000000044444145ull;     // "EADD\0\0\0\0"
constexpr uint64_t kTagEextend = 0x00444E4554584545ull;  // "EEXTEND\0"

void put_le(uint8_t* out, uint64_t v, int bytes) {
  for (int i = 0; i < bytes; ++i) out[i] = static_cast<uint8_t>(v >> (8 * i));
}

// Precondition violated by the caller: a bug in trusted code, never a runtime
// condition. Says what and aborts.
[[noreturn]] void die(const char* what, uint64_t value) {
  std::fprintf(stderr, "teemate: MeasurementBuilder misuse: %s (value 0x%" PRIx64 ")\n", what,
               value);
  std::fflush(stderr);
  std::abort();
}

}  // namespace

std::string to_hex(std::span<const uint8_t> bytes) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  out.reserve(bytes.size() * 2);
  for (uint8_t b : bytes) {
    out.push_back(kDigits[b >> 4]);
    out.push_back(kDigits[b & 0xf]);
  }
  return out;
}

std::array<uint8_t, 64> ecreate_record(uint32_t ssa_frame_size, uint64_t size) {
  std::array<uint8_t, 64> r{};
  put_le(r.data(), kTagEcreate, 8);
  put_le(r.data() + 8, ssa_frame_size, 4);
  put_le(r.data() + 12, size, 8);
  return r;
}

std::array<uint8_t, 64> eadd_record(uint64_t offset, uint64_t secinfo_flags) {
  std::array<uint8_t, 64> r{};
  put_le(r.data(), kTagEadd, 8);
  put_le(r.data() + 8, offset, 8);
  // Bytes 16..63: the first 48 bytes of SECINFO (FLAGS, then reserved zeros).
  put_le(r.data() + 16, secinfo_flags, 8);
  return r;
}

std::array<uint8_t, 64> eextend_header(uint64_t offset) {
  std::array<uint8_t, 64> r{};
  put_le(r.data(), kTagEextend, 8);
  put_le(r.data() + 8, offset, 8);
  return r;
}

struct MeasurementBuilder::Impl {
  EVP_MD_CTX* ctx = nullptr;
  bool created = false;   // ECREATE seen
  bool finished = false;  // EINIT done
  uint64_t size = 0;      // SECS.SIZE from ECREATE

  void update(const uint8_t* data, size_t len) {
    if (EVP_DigestUpdate(ctx, data, len) != 1) die("EVP_DigestUpdate failed", len);
  }
  void require_open(const char* op) const {
    if (finished) die(op, 0);
  }
};

MeasurementBuilder::MeasurementBuilder() : impl_(std::make_unique<Impl>()) {
  impl_->ctx = EVP_MD_CTX_new();
  if (impl_->ctx == nullptr) die("EVP_MD_CTX_new failed", 0);
  if (EVP_DigestInit_ex(impl_->ctx, EVP_sha256(), nullptr) != 1) die("EVP_DigestInit_ex failed", 0);
}

MeasurementBuilder::~MeasurementBuilder() { EVP_MD_CTX_free(impl_->ctx); }

void MeasurementBuilder::ecreate(uint32_t ssa_frame_size, uint64_t size) {
  impl_->require_open("ecreate() after finish()");
  if (impl_->created) die("ecreate() called twice", size);
  impl_->created = true;
  impl_->size = size;
  const auto r = ecreate_record(ssa_frame_size, size);
  impl_->update(r.data(), r.size());
}

void MeasurementBuilder::eadd(uint64_t offset, uint64_t secinfo_flags) {
  impl_->require_open("eadd() after finish()");
  if (!impl_->created) die("eadd() before ecreate()", offset);
  if (offset % kPageSize != 0) die("eadd() offset is not page-aligned", offset);
  if (offset >= impl_->size || impl_->size - offset < kPageSize)
    die("eadd() offset is outside the enclave SIZE", offset);
  const auto r = eadd_record(offset, secinfo_flags);
  impl_->update(r.data(), r.size());
}

void MeasurementBuilder::eextend(uint64_t offset, const uint8_t* chunk256) {
  impl_->require_open("eextend() after finish()");
  if (!impl_->created) die("eextend() before ecreate()", offset);
  if (offset % kMeasureChunk != 0) die("eextend() offset is not 256-byte aligned", offset);
  if (offset >= impl_->size || impl_->size - offset < kMeasureChunk)
    die("eextend() offset is outside the enclave SIZE", offset);
  const auto h = eextend_header(offset);
  impl_->update(h.data(), h.size());
  impl_->update(chunk256, kMeasureChunk);
}

void MeasurementBuilder::add_page(uint64_t offset, uint64_t secinfo_flags,
                                  const uint8_t* page4096, bool measured) {
  eadd(offset, secinfo_flags);
  if (!measured) return;
  for (uint64_t c = 0; c < kPageSize; c += kMeasureChunk) eextend(offset + c, page4096 + c);
}

Digest MeasurementBuilder::finish() {
  impl_->require_open("finish() called twice");
  if (!impl_->created) die("finish() before ecreate()", 0);
  impl_->finished = true;
  Digest d{};
  unsigned int len = 0;
  if (EVP_DigestFinal_ex(impl_->ctx, d.data(), &len) != 1 || len != d.size())
    die("EVP_DigestFinal_ex failed", len);
  return d;
}

}  // namespace teemate::sgx
