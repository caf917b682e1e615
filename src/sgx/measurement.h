// MRENCLAVE computation exactly as the SGX architecture defines it: SHA-256
// over the 64-byte ECREATE record, one 64-byte EADD record per page and, per
// 256-byte chunk of each measured page, a 64-byte EEXTEND header followed by
// the chunk. Offsets are relative to the enclave base, so MRENCLAVE never
// depends on where the enclave is mapped. Pure computation, no I/O.
// Not thread-safe: one builder per measurement.
#pragma once

#include <stdint.h>

#include <array>
#include <memory>
#include <span>
#include <string>

namespace teemate::sgx {

using Digest = std::array<uint8_t, 32>;

// Lower-case hex of a digest (64 characters).
std::string to_hex(std::span<const uint8_t> bytes);

// The 64-byte measurement records, exposed so that tests and independent
// tools can check each one byte by byte.
std::array<uint8_t, 64> ecreate_record(uint32_t ssa_frame_size, uint64_t size);
std::array<uint8_t, 64> eadd_record(uint64_t offset, uint64_t secinfo_flags);
std::array<uint8_t, 64> eextend_header(uint64_t offset);

class MeasurementBuilder {
 public:
  MeasurementBuilder();
  ~MeasurementBuilder();
  MeasurementBuilder(const MeasurementBuilder&) = delete;
  MeasurementBuilder& operator=(const MeasurementBuilder&) = delete;

  void ecreate(uint32_t ssa_frame_size, uint64_t size);
  void eadd(uint64_t offset, uint64_t secinfo_flags);
  // Extends one 256-byte chunk at `offset` (256-byte aligned).
  void eextend(uint64_t offset, const uint8_t* chunk256);
  // EADD and, when `measured`, EEXTEND of all 16 chunks of a 4096-byte page.
  void add_page(uint64_t offset, uint64_t secinfo_flags, const uint8_t* page4096, bool measured);
  // Finalises the hash (EINIT). The builder cannot be used afterwards.
  Digest finish();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace teemate::sgx
