// The enclave program's ECALL table (the teemate_ecalls section that
// TM_ECALL entries fill, between the linker's __start_/__stop_teemate_ecalls):
// read from the ELF and checked for ids registered twice, which the
// runtime would otherwise resolve silently to the first. Host-only; reads
// through ElfImage's bounds-checked spans.
#pragma once

#include <cstdint>
#include <vector>

#include "host/image/elf_image.h"
#include "teemate/status.h"

namespace teemate::image {

// The ids of the TM_ECALL entries, in table order (empty without a table).
Result<std::vector<uint32_t>> ecall_ids(const ElfImage& elf);
// An error naming every id registered more than once.
Status check_ecall_table(const ElfImage& elf);

}  // namespace teemate::image
