// The enclave layout: where every page of an image goes, with which SECINFO
// and whether it is measured, in EADD order. Computed from the ELF and the
// config, deterministically, so the packer, `teemate measure`, the loader and
// every backend agree on MRENCLAVE. Host-only; never does I/O.
//
// Order (offsets from the base): the ELF's PT_LOAD segments with their
// permissions; the metadata page (abi::EnclaveMeta, R); the mount manifest
// pages when there are [[mount]] tables (R); per TCS the thread
// block of abi::EnclaveMeta (TCS, SSA, guard, stack, guard, thread data);
// a guard page; the heap. Guard pages are never added. The enclave size is
// the next power of two at or above the end of the heap.
#pragma once

#include <stdint.h>

#include <vector>

#include "common/enclave_abi.h"
#include "teemate/status.h"
#include "host/image/elf_image.h"
#include "host/image/enclave_config.h"
#include "sgx/arch.h"
#include "sgx/measurement.h"

namespace teemate::image {

enum class RangeKind { kElf, kMeta, kManifest, kTcs, kSsa, kStack, kExceptionStack, kThreadData, kHeap };
const char* range_kind_name(RangeKind kind);

struct PageRange {
  RangeKind kind;
  uint64_t offset;         // from the enclave base, page-aligned
  uint64_t pages;
  uint64_t secinfo_flags;  // includes the page type
  bool measured;
  uint32_t thread;         // thread index for per-thread ranges, else 0
};

class Layout {
 public:
  // Largest enclave compute() accepts.
  static constexpr uint64_t kMaxSize = 64ull << 30;

  static Result<Layout> compute(const ElfImage& elf, const EnclaveConfig& config);

  uint64_t size() const { return size_; }                // power of two
  uint32_t ssa_frame_pages() const { return config_.ssa_frame_pages; }
  const EnclaveConfig& config() const { return config_; }
  const ElfImage& elf() const { return elf_; }
  const abi::EnclaveMeta& meta() const { return meta_; }
  const std::vector<PageRange>& ranges() const { return ranges_; }  // EADD order
  uint64_t total_pages() const;                          // pages added
  uint64_t entry_offset() const { return entry_offset_; }
  uint64_t tcs_offset(uint32_t thread) const;
  // SECS.ATTRIBUTES as ECREATE receives them (MODE64BIT, DEBUG if configured).
  sgx::Attributes attributes() const;
  uint32_t misc_select() const { return config_.misc_select; }

  // Writes the 4096 bytes of page `index` (0-based) of `range` into out.
  void page_content(const PageRange& range, uint64_t index, uint8_t* out) const;

  // MRENCLAVE, by feeding every page through sgx::MeasurementBuilder.
  sgx::Digest measure() const;

 private:
  ElfImage elf_;  // shares the ELF bytes (ElfImage is cheap to copy)
  EnclaveConfig config_;
  abi::EnclaveMeta meta_{};
  std::vector<uint8_t> manifest_;  // serialize_manifest(config_.manifest)
  std::vector<PageRange> ranges_;
  uint64_t size_ = 0;
  uint64_t entry_offset_ = 0;
};

}  // namespace teemate::image
