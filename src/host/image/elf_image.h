// ElfImage: a validated view of an enclave program, a static PIE (ET_DYN,
// x86-64) linked at address 0. Host-only, no I/O. parse() treats its input as
// hostile: every offset and size is bounds-checked, and anything the loader or
// the trusted runtime could not handle safely (W+X, more than 1 KiB of TLS, interpreters, shared
// libraries, relocations other than R_X86_64_RELATIVE) is refused with a
// message naming the segment, tag or offset. Cheap to copy; immutable, so safe
// to share between threads.
#pragma once

#include <stdint.h>

#include <memory>
#include <span>
#include <string>
#include <vector>

#include "teemate/status.h"

namespace teemate::image {

// One PT_LOAD segment. Addresses are offsets from the enclave base (the ELF is
// linked at 0). vaddr need not be page-aligned; the pages the segment
// occupies are [page_begin(), page_end()).
struct ElfSegment {
  uint64_t vaddr = 0;
  uint64_t memsz = 0;
  uint64_t filesz = 0;
  uint64_t file_offset = 0;
  bool readable = false;
  bool writable = false;
  bool executable = false;

  uint64_t page_begin() const { return vaddr & ~uint64_t{4095}; }
  uint64_t page_end() const { return (vaddr + memsz + 4095) & ~uint64_t{4095}; }
};

// The thread-local storage template (PT_TLS): .tdata bytes at
// [vaddr, vaddr + filesz) inside a loaded segment, then zeros up to memsz.
struct ElfTls {
  uint64_t vaddr = 0;
  uint64_t filesz = 0;
  uint64_t memsz = 0;  // 0: the program has no thread-local storage
  uint64_t align = 1;
};
// Largest thread-local block an enclave program may have: it lives at the
// top of each TCS's exception stack (x86-64 TLS variant II, below FS).
inline constexpr uint64_t kMaxTlsBytes = 1024;

// A named function or object from .symtab (or .dynsym when stripped).
struct ElfSymbol {
  std::string name;
  uint64_t value = 0;
  uint64_t size = 0;
  uint8_t type = 0;  // STT_FUNC, STT_OBJECT, STT_NOTYPE
};

// An R_X86_64_RELATIVE relocation: *(uint64_t*)(base + offset) = base + addend.
struct ElfRelocation {
  uint64_t offset = 0;
  int64_t addend = 0;
};

// A half-open address range [begin, end).
struct AddressRange {
  uint64_t begin = 0;
  uint64_t end = 0;
};

class ElfImage {
 public:
  ElfImage() = default;  // empty image (no segments); only parse() makes a valid one

  // Validates `bytes` as an enclave program. `name` (usually the file path)
  // prefixes every error message.
  static Result<ElfImage> parse(std::shared_ptr<const std::vector<uint8_t>> bytes,
                                const std::string& name);

  const std::string& name() const;
  // PT_LOAD segments, sorted by address, non-overlapping at page granularity.
  const std::vector<ElfSegment>& segments() const;
  // Highest vaddr + memsz over all segments (not page-rounded).
  uint64_t end() const;
  uint64_t entry() const;
  const ElfTls& tls() const;
  // The whole file.
  std::span<const uint8_t> bytes() const;
  const std::shared_ptr<const std::vector<uint8_t>>& shared_bytes() const { return bytes_; }
  // The file bytes of a segment: [vaddr, vaddr + filesz).
  std::span<const uint8_t> segment_bytes(const ElfSegment& segment) const;

  // Function/object symbols sorted by value (from .symtab, else .dynsym).
  const std::vector<ElfSymbol>& symbols() const;
  // The symbol that contains vaddr (value <= vaddr < value + size), or, when
  // none does, the closest preceding zero-size symbol in the same segment.
  // nullptr when nothing matches.
  const ElfSymbol* symbol_at(uint64_t vaddr) const;

  // R_X86_64_RELATIVE relocations from PT_DYNAMIC (each target lies inside a
  // writable segment).
  const std::vector<ElfRelocation>& relocations() const;

  // [vaddr, vaddr + memsz) of each executable segment, in address order.
  std::vector<AddressRange> executable_ranges() const;

 private:
  struct Data;
  std::shared_ptr<const std::vector<uint8_t>> bytes_;
  std::shared_ptr<const Data> data_;
};

// "R_X86_64_GLOB_DAT" for 6, "R_X86_64_<n>" for unknown numbers.
std::string x86_64_relocation_name(uint32_t type);

}  // namespace teemate::image
