/* Sealing: AES-128-GCM blobs under EGETKEY seal keys (format in trusted.h and
 * docs/sealing.md). Treats every blob as hostile: each header field and
 * length is checked before use, and nothing is released before the tag
 * verifies. Never keeps key material past a call; no mutable globals. */
#include <string.h>

#include "keys.h"
#include "mbedtls/gcm.h"
#include "mbedtls/platform_util.h"
#include "runtime.h"

namespace teemate::trts {
namespace {

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "the blob format is little-endian");

constexpr uint8_t kMagic[4] = {'T', 'M', 'S', 'L'};
constexpr uint16_t kVersion = 1;
constexpr size_t kIvSize = 12;

/* The blob header, byte for byte (x86-64 is little-endian). */
struct Header {
  uint8_t magic[4];
  uint16_t version;
  uint16_t key_policy;
  uint16_t isv_svn;
  uint16_t reserved;
  uint32_t aad_len;
  uint32_t text_len;
  uint8_t iv[kIvSize];
  uint8_t cpu_svn[16];
  uint8_t key_id[32];
};
static_assert(sizeof(Header) == TM_SEAL_HEADER_SIZE);
static_assert(offsetof(Header, aad_len) == 12 && offsetof(Header, text_len) == 16);
static_assert(offsetof(Header, iv) == 20 && offsetof(Header, cpu_svn) == 32 && offsetof(Header, key_id) == 48);

bool valid_policy(uint16_t p) { return p == TM_SEAL_MRENCLAVE || p == TM_SEAL_MRSIGNER; }

/* Overflow-safe: do [a, a+an) and [b, b+bn) share a byte? */
bool overlap(const void* a, size_t an, const void* b, size_t bn) {
  if (an == 0 || bn == 0) return false;
  const uintptr_t x = reinterpret_cast<uintptr_t>(a), y = reinterpret_cast<uintptr_t>(b);
  return x < y + bn && y < x + an;
}

bool inside(const void* p, size_t n) { return n == 0 || (p && tm_is_within_enclave(p, n)); }

/* Reads and checks a blob's header against its length. */
int parse(const void* blob, size_t blob_len, Header* h) {
  if (!blob) return TM_ERR_INVALID;
  if (blob_len < TM_SEAL_HEADER_SIZE + TM_SEAL_TAG_SIZE) return TM_ERR_INVALID;
  memcpy(h, blob, sizeof *h);
  if (memcmp(h->magic, kMagic, sizeof kMagic) != 0 || h->version != kVersion || h->reserved != 0 ||
      !valid_policy(h->key_policy)) {
    return TM_ERR_INVALID;
  }
  // Each length is below 2^32, so the sum cannot overflow 64 bits.
  const uint64_t total =
      uint64_t{TM_SEAL_HEADER_SIZE} + h->aad_len + uint64_t{h->text_len} + TM_SEAL_TAG_SIZE;
  if (total != blob_len) return TM_ERR_INVALID;
  return TM_OK;
}

}  // namespace
}  // namespace teemate::trts

using namespace teemate;
using namespace teemate::trts;

extern "C" {

size_t tm_sealed_size(size_t plaintext_len, size_t aad_len) {
  if (plaintext_len > UINT32_MAX || aad_len > UINT32_MAX) return 0;
  return TM_SEAL_HEADER_SIZE + aad_len + plaintext_len + TM_SEAL_TAG_SIZE;
}

int tm_seal(uint16_t policy, const void* aad, size_t aad_len, const void* plaintext, size_t len, void* out,
            size_t out_cap) {
  if (!valid_policy(policy) || !out) return TM_ERR_INVALID;
  if ((aad_len > 0 && !aad) || (len > 0 && !plaintext)) return TM_ERR_INVALID;
  const size_t total = tm_sealed_size(len, aad_len);
  if (total == 0 || out_cap < total) return TM_ERR_TOO_LARGE;
  if (!inside(out, total) || !inside(aad, aad_len) || !inside(plaintext, len)) return TM_ERR_BUFFER_RANGE;
  if (overlap(out, total, aad, aad_len) || overlap(out, total, plaintext, len)) return TM_ERR_INVALID;

  uint8_t* blob = static_cast<uint8_t*>(out);
  Header h{};
  memcpy(h.magic, kMagic, sizeof kMagic);
  h.version = kVersion;
  h.key_policy = policy;
  h.aad_len = static_cast<uint32_t>(aad_len);
  h.text_len = static_cast<uint32_t>(len);
  sgx::Report self;
  self_report(&self);
  h.isv_svn = self.isv_svn;
  memcpy(h.cpu_svn, self.cpu_svn, sizeof h.cpu_svn);
  if (tm_random(h.key_id, sizeof h.key_id) != TM_OK || tm_random(h.iv, sizeof h.iv) != TM_OK) {
    return TM_ERR_FAULT;
  }

  uint8_t key[16];
  if (seal_key(h.key_policy, h.isv_svn, h.cpu_svn, h.key_id, key) != TM_OK) return TM_ERR_FAULT;
  memcpy(blob, &h, sizeof h);
  if (aad_len > 0) memcpy(blob + sizeof h, aad, aad_len);
  uint8_t* ciphertext = blob + sizeof h + aad_len;
  uint8_t* tag = ciphertext + len;

  mbedtls_gcm_context gcm;
  mbedtls_gcm_init(&gcm);
  int rc = mbedtls_gcm_setkey(&gcm, MBEDTLS_CIPHER_ID_AES, key, 128);
  mbedtls_platform_zeroize(key, sizeof key);
  if (rc == 0) {
    // The header and the AAD are contiguous: both are authenticated.
    rc = mbedtls_gcm_crypt_and_tag(&gcm, MBEDTLS_GCM_ENCRYPT, len, h.iv, sizeof h.iv, blob, sizeof h + aad_len,
                                   static_cast<const unsigned char*>(plaintext), ciphertext, TM_SEAL_TAG_SIZE,
                                   tag);
  }
  mbedtls_gcm_free(&gcm);
  if (rc != 0) {
    mbedtls_platform_zeroize(blob, total);
    return TM_ERR_FAULT;
  }
  return TM_OK;
}

int tm_sealed_lengths(const void* blob, size_t blob_len, size_t* aad_len, size_t* text_len) {
  if (!inside(blob, blob_len)) return TM_ERR_BUFFER_RANGE;
  Header h;
  const int rc = parse(blob, blob_len, &h);
  if (rc != TM_OK) return rc;
  if (aad_len) *aad_len = h.aad_len;
  if (text_len) *text_len = h.text_len;
  return TM_OK;
}

int tm_unseal(const void* blob, size_t blob_len, void* aad_out, size_t aad_cap, size_t* aad_len_out, void* out,
              size_t out_cap, size_t* out_len) {
  if (!inside(blob, blob_len)) return TM_ERR_BUFFER_RANGE;
  Header h;
  int rc = parse(blob, blob_len, &h);
  if (rc != TM_OK) return rc;
  if (h.text_len > out_cap || (aad_out && h.aad_len > aad_cap)) return TM_ERR_TOO_LARGE;
  if (h.text_len > 0 && !out) return TM_ERR_INVALID;
  const size_t aad_copy = aad_out ? h.aad_len : 0;
  if (!inside(out, h.text_len) || !inside(aad_out, aad_copy)) return TM_ERR_BUFFER_RANGE;
  if (overlap(out, h.text_len, blob, blob_len) || overlap(aad_out, aad_copy, blob, blob_len) ||
      overlap(out, h.text_len, aad_out, aad_copy)) {
    return TM_ERR_INVALID;
  }

  uint8_t key[16];
  // The CPU refuses an ISVSVN or CPUSVN newer than this enclave's.
  if (seal_key(h.key_policy, h.isv_svn, h.cpu_svn, h.key_id, key) != TM_OK) return TM_ERR_INVALID;
  const uint8_t* b = static_cast<const uint8_t*>(blob);
  const uint8_t* ciphertext = b + sizeof h + h.aad_len;
  const uint8_t* tag = ciphertext + h.text_len;

  mbedtls_gcm_context gcm;
  mbedtls_gcm_init(&gcm);
  rc = mbedtls_gcm_setkey(&gcm, MBEDTLS_CIPHER_ID_AES, key, 128);
  mbedtls_platform_zeroize(key, sizeof key);
  if (rc == 0) {
    // On a failed tag mbedTLS zeroes `out` before returning.
    rc = mbedtls_gcm_auth_decrypt(&gcm, h.text_len, h.iv, sizeof h.iv, b, sizeof h + h.aad_len, tag,
                                  TM_SEAL_TAG_SIZE, ciphertext, static_cast<unsigned char*>(out));
  }
  mbedtls_gcm_free(&gcm);
  if (rc == MBEDTLS_ERR_GCM_AUTH_FAILED) return TM_ERR_MAC;
  if (rc != 0) {
    if (out) mbedtls_platform_zeroize(out, h.text_len);
    return TM_ERR_FAULT;
  }
  if (aad_copy > 0) memcpy(aad_out, b + sizeof h, aad_copy);
  if (aad_len_out) *aad_len_out = h.aad_len;
  if (out_len) *out_len = h.text_len;
  return TM_OK;
}

}  // extern "C"
