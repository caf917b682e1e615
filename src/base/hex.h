// Hexadecimal text of numbers, for messages and state files: one spelling
// each, used everywhere in host code. Host-only.
#pragma once

#include <cstdint>
#include <string>

namespace teemate::base {

// "0x1f": for people (error messages, tables).
std::string hex(uint64_t v);
// "000000000000001f": 16 digits, for fixed-width machine-read fields.
std::string hex16(uint64_t v);

}  // namespace teemate::base
