// SIGSTRUCT creation and verification exactly as the SDM defines it:
// RSA-3072, public exponent 3, PKCS#1 v1.5 with SHA-256 over bytes [0,128)
// and [900,1028), modulus and signature stored little-endian, Q1 and Q2 for
// the hardware's verification. Uses OpenSSL. No file I/O here: keys arrive
// as PEM text and leave as PEM text.
#pragma once

#include <stdint.h>

#include <memory>
#include <span>
#include <string>

#include "teemate/status.h"
#include "sgx/arch.h"
#include "sgx/measurement.h"

namespace teemate::sgx {

// An RSA-3072 private key with e = 3. Move-only.
class SigningKey {
 public:
  // Generates a fresh RSA-3072 key with e = 3.
  static Result<SigningKey> generate();
  // Parses a PEM private key (PKCS#1 or PKCS#8); refuses one that is not
  // RSA, not 3072 bits, or whose public exponent is not 3, saying which.
  static Result<SigningKey> from_pem(const std::string& pem);
  std::string to_pem() const;  // PKCS#8 PEM

  SigningKey(SigningKey&&) noexcept;
  SigningKey& operator=(SigningKey&&) noexcept;
  ~SigningKey();

  // The opaque OpenSSL EVP_PKEY*, for sigstruct.cpp.
  void* evp_pkey() const { return pkey_; }

 private:
  explicit SigningKey(void* pkey) : pkey_(pkey) {}
  void* pkey_ = nullptr;
};

// The fields a signer chooses; the rest of the SIGSTRUCT is fixed or derived.
struct SigstructFields {
  uint32_t vendor = 0;
  uint32_t date_bcd = 0;  // 0 means "today" in BCD (YYYYMMDD)
  uint32_t misc_select = 0;
  uint32_t misc_mask = 0;
  Attributes attributes{};
  Attributes attribute_mask{};
  Digest enclave_hash{};
  uint16_t isv_prod_id = 0;
  uint16_t isv_svn = 0;
};

// Builds and signs a SIGSTRUCT (including Q1, Q2).
Result<Sigstruct> sign_sigstruct(const SigstructFields& fields, const SigningKey& key);

// Checks the fixed headers, the exponent, the RSA signature over the signed
// bytes and Q1/Q2. Names the first check that fails.
Status verify_sigstruct(const Sigstruct& sig);

// What EINIT checks before it initialises an enclave: verify_sigstruct, then
// ENCLAVEHASH == `mrenclave`, then the SECS ATTRIBUTES (flags and XFRM) and
// MISCSELECT agree with the SIGSTRUCT's under ATTRIBUTEMASK and MISCMASK.
// `secs_attributes` are the SECS attributes before EINIT (no INIT bit).
// Names the first check that fails (kCorrupt or kSecurity).
Status check_einit(const Sigstruct& sig, const Digest& mrenclave,
                   const Attributes& secs_attributes, uint32_t secs_misc_select);

// MRSIGNER: SHA-256 of the little-endian modulus as stored in the SIGSTRUCT.
Digest mrsigner_of(const Sigstruct& sig);

// Date today in SIGSTRUCT BCD form (0xYYYYMMDD).
uint32_t bcd_date_today();

}  // namespace teemate::sgx
