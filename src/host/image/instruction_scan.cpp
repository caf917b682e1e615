// Forbidden-instruction scan over an ElfImage's executable segments with
// capstone. Reads only through ElfImage's bounds-checked spans; never
// modifies the image and never reports an address outside a segment.
#include "host/image/instruction_scan.h"

#include <capstone/capstone.h>
#include <elf.h>

#include <algorithm>
#include <cstdio>

#include "base/hex.h"

namespace teemate::image {

namespace {

using base::hex;

class Capstone {
 public:
  Capstone() {
    if (cs_open(CS_ARCH_X86, CS_MODE_64, &handle_) != CS_ERR_OK) {
      handle_ = 0;
      return;
    }
    insn_ = cs_malloc(handle_);
  }
  ~Capstone() {
    if (insn_ != nullptr) cs_free(insn_, 1);
    if (handle_ != 0) cs_close(&handle_);
  }
  Capstone(const Capstone&) = delete;
  Capstone& operator=(const Capstone&) = delete;
  bool ok() const { return handle_ != 0 && insn_ != nullptr; }
  csh handle() const { return handle_; }
  cs_insn* insn() const { return insn_; }

 private:
  csh handle_ = 0;
  cs_insn* insn_ = nullptr;
};

// The mnemonic to report, or nullptr when the instruction is allowed.
const char* forbidden(const cs_insn& insn) {
  switch (insn.id) {
    case X86_INS_SYSCALL: return "syscall";
    case X86_INS_SYSENTER: return "sysenter";
    case X86_INS_INT:
      if (insn.size == 2 && insn.bytes[0] == 0xcd && insn.bytes[1] == 0x80) return "int 0x80";
      return nullptr;
    default: return nullptr;
  }
}

}  // namespace

Result<std::vector<ForbiddenInstruction>> find_forbidden_instructions(const ElfImage& elf) {
  Capstone cs;
  if (!cs.ok()) return internal_error("capstone: cannot open an x86-64 disassembler");

  // Function starts, where the sweep resynchronises.
  std::vector<uint64_t> starts;
  for (const ElfSymbol& s : elf.symbols()) {
    if (s.type == STT_FUNC || s.type == STT_NOTYPE) starts.push_back(s.value);
  }
  std::sort(starts.begin(), starts.end());
  starts.erase(std::unique(starts.begin(), starts.end()), starts.end());

  std::vector<ForbiddenInstruction> found;
  for (const ElfSegment& seg : elf.segments()) {
    if (!seg.executable) continue;
    std::span<const uint8_t> code = elf.segment_bytes(seg);
    const uint64_t end = seg.vaddr + code.size();
    auto next = std::upper_bound(starts.begin(), starts.end(), seg.vaddr);
    uint64_t pos = seg.vaddr;
    while (pos < end) {
      while (next != starts.end() && *next <= pos) ++next;
      const uint64_t stop = (next != starts.end() && *next < end) ? *next : end;
      const uint8_t* p = code.data() + (pos - seg.vaddr);
      size_t left = stop - pos;
      uint64_t addr = pos;
      while (left > 0 && cs_disasm_iter(cs.handle(), &p, &left, &addr, cs.insn())) {
        if (const char* m = forbidden(*cs.insn())) {
          ForbiddenInstruction f;
          f.vaddr = cs.insn()->address;
          f.mnemonic = m;
          const ElfSymbol* sym = elf.symbol_at(f.vaddr);
          f.function = sym != nullptr ? sym->name : "?";
          found.push_back(std::move(f));
        }
      }
      // Stopped at the next function start, or at bytes that do not decode
      // (data, or an instruction running into the next function): skip one.
      pos = left == 0 ? stop : addr + 1;
    }
  }
  return found;
}

Status scan_forbidden_instructions(const ElfImage& elf) {
  TM_ASSIGN_OR_RETURN(std::vector<ForbiddenInstruction> found, find_forbidden_instructions(elf));
  if (found.empty()) return Status::ok_status();
  constexpr size_t kShown = 10;
  std::string msg;
  for (size_t i = 0; i < found.size() && i < kShown; ++i) {
    if (i > 0) msg += "; ";
    msg += "forbidden instruction '" + found[i].mnemonic + "' at " + hex(found[i].vaddr) +
           " in function " + found[i].function;
  }
  if (found.size() > kShown) msg += "; and " + std::to_string(found.size() - kShown) + " more";
  msg += " (enclave code may not make system calls)";
  return security_error(msg);
}

}  // namespace teemate::image
