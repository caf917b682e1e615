// Build-time check that enclave code makes no raw system calls: disassembles
// every executable segment (capstone, x86-64, linear sweep resynchronised at
// each function symbol) and reports `syscall`, `sysenter` and `int 0x80`.
// Host-only, no I/O. A lint for honest programs, not a security boundary: at
// run time the sim backend traps system calls from the enclave range anyway.
#pragma once

#include <stdint.h>

#include <string>
#include <vector>

#include "teemate/status.h"
#include "host/image/elf_image.h"

namespace teemate::image {

struct ForbiddenInstruction {
  uint64_t vaddr = 0;    // offset from the enclave base
  std::string mnemonic;  // "syscall", "sysenter" or "int 0x80"
  std::string function;  // symbol containing vaddr, or "?"
};

// Every forbidden instruction, in address order.
Result<std::vector<ForbiddenInstruction>> find_forbidden_instructions(const ElfImage& elf);

// OK when there is none; otherwise a kSecurity error naming each one (up to
// ten): "forbidden instruction 'syscall' at 0x5d21 in function __lock
// (enclave code may not make system calls)".
Status scan_forbidden_instructions(const ElfImage& elf);

}  // namespace teemate::image
