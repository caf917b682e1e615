// Base64 through OpenSSL's EVP_EncodeBlock (base64.h). Host-only.
#include "base/base64.h"

#include <openssl/evp.h>

namespace teemate::base {

void append_base64(std::span<const uint8_t> data, std::string* out) {
  // EVP_EncodeBlock takes an int length: encode in chunks of whole triplets.
  constexpr size_t kChunk = 3 * (1u << 20);
  for (size_t at = 0; at < data.size(); at += kChunk) {
    const size_t n = data.size() - at < kChunk ? data.size() - at : kChunk;
    const size_t old = out->size();
    out->resize(old + 4 * ((n + 2) / 3) + 1);
    const int wrote = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out->data() + old), data.data() + at,
                                      static_cast<int>(n));
    out->resize(old + static_cast<size_t>(wrote));
  }
}

std::string base64(std::span<const uint8_t> data) {
  std::string s;
  append_base64(data, &s);
  return s;
}

}  // namespace teemate::base
