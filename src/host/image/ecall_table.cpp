// The ECALL table of an enclave program (ecall_table.h). Host-only.
#include "host/image/ecall_table.h"

#include <cstring>
#include <map>

#include "base/hex.h"

namespace teemate::image {

namespace {
constexpr uint64_t kEntrySize = 16;  // tm_ecall_entry: uint32 id, padding, function pointer
}  // namespace

Result<std::vector<uint32_t>> ecall_ids(const ElfImage& elf) {
  uint64_t start = 0, stop = 0;
  bool have_start = false, have_stop = false;
  for (const ElfSymbol& s : elf.symbols()) {
    if (s.name == "__start_teemate_ecalls") start = s.value, have_start = true;
    if (s.name == "__stop_teemate_ecalls") stop = s.value, have_stop = true;
  }
  std::vector<uint32_t> ids;
  if (!have_start || !have_stop || start == stop) return ids;
  if (stop < start || (stop - start) % kEntrySize) {
    return corrupt("the ECALL table [" + base::hex(start) + ", " + base::hex(stop) + ") is not a whole number of entries");
  }
  for (const ElfSegment& seg : elf.segments()) {
    if (start < seg.vaddr || stop > seg.vaddr + seg.filesz) continue;
    std::span<const uint8_t> bytes = elf.segment_bytes(seg);
    for (uint64_t at = start; at < stop; at += kEntrySize) {
      uint32_t id;
      std::memcpy(&id, bytes.data() + (at - seg.vaddr), sizeof id);
      ids.push_back(id);
    }
    return ids;
  }
  return corrupt("the ECALL table [" + base::hex(start) + ", " + base::hex(stop) + ") lies outside the file's segments");
}

Status check_ecall_table(const ElfImage& elf) {
  TM_ASSIGN_OR_RETURN(std::vector<uint32_t> ids, ecall_ids(elf));
  std::map<uint32_t, int> count;
  for (uint32_t id : ids) ++count[id];
  std::string dups;
  for (const auto& [id, n] : count) {
    if (n > 1) dups += (dups.empty() ? "" : ", ") + base::hex(id) + " (" + std::to_string(n) + " times)";
  }
  std::string reserved;
  for (const auto& [id, n] : count) {
    if (id < 0x100 || (id >= 0x10000 && id < 0x11000)) reserved += (reserved.empty() ? "" : ", ") + base::hex(id);
  }
  if (!reserved.empty()) {
    return invalid_argument("ECALL ids reserved for the runtime: " + reserved +
                            " (application ids start at 0x100; typed calls use 0x11000 and up)");
  }
  if (!dups.empty()) {
    return invalid_argument("ECALL ids registered more than once: " + dups +
                            "; every TM_ECALL (and every typed call of every .edl) needs its own id");
  }
  return {};
}

}  // namespace teemate::image
