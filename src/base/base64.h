// Base64 (RFC 4648, with padding) through OpenSSL's encoder, for JSON
// output. Host-only.
#pragma once

#include <cstdint>
#include <span>
#include <string>

namespace teemate::base {

// Appends the base64 text of `data` to *out.
void append_base64(std::span<const uint8_t> data, std::string* out);
std::string base64(std::span<const uint8_t> data);

}  // namespace teemate::base
