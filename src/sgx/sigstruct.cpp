// SIGSTRUCT signing and verification (RSA-3072, e = 3, PKCS#1 v1.5 SHA-256,
// little-endian MODULUS/SIGNATURE/Q1/Q2) and the EINIT checks, with OpenSSL 3.
// Never does file I/O, never prompts for a passphrase, never throws.
#include "sgx/sigstruct.h"

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>

#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <ctime>

#include "base/hex.h"

namespace teemate::sgx {

namespace {

constexpr int kModulusBits = 3072;
constexpr size_t kModulusBytes = 384;
constexpr uint32_t kExponent = 3;
constexpr size_t kSignedPart1 = 128;   // bytes [0,128)
constexpr size_t kSignedOffset2 = 900;  // bytes [900,1028)
constexpr size_t kSignedPart2 = 128;

struct PkeyFree {
  void operator()(EVP_PKEY* p) const { EVP_PKEY_free(p); }
};
struct PkeyCtxFree {
  void operator()(EVP_PKEY_CTX* p) const { EVP_PKEY_CTX_free(p); }
};
struct MdCtxFree {
  void operator()(EVP_MD_CTX* p) const { EVP_MD_CTX_free(p); }
};
struct BioFree {
  void operator()(BIO* p) const { BIO_free(p); }
};
struct BnFree {
  void operator()(BIGNUM* p) const { BN_free(p); }
};
struct BnCtxFree {
  void operator()(BN_CTX* p) const { BN_CTX_free(p); }
};
struct ParamBldFree {
  void operator()(OSSL_PARAM_BLD* p) const { OSSL_PARAM_BLD_free(p); }
};
struct ParamFree {
  void operator()(OSSL_PARAM* p) const { OSSL_PARAM_free(p); }
};
using PkeyPtr = std::unique_ptr<EVP_PKEY, PkeyFree>;
using PkeyCtxPtr = std::unique_ptr<EVP_PKEY_CTX, PkeyCtxFree>;
using MdCtxPtr = std::unique_ptr<EVP_MD_CTX, MdCtxFree>;
using BioPtr = std::unique_ptr<BIO, BioFree>;
using BnPtr = std::unique_ptr<BIGNUM, BnFree>;
using BnCtxPtr = std::unique_ptr<BN_CTX, BnCtxFree>;
using ParamBldPtr = std::unique_ptr<OSSL_PARAM_BLD, ParamBldFree>;
using ParamPtr = std::unique_ptr<OSSL_PARAM, ParamFree>;

// Drains this thread's OpenSSL error queue; returns the most recent reason.
std::string openssl_error() {
  unsigned long last = 0;
  while (unsigned long e = ERR_get_error()) last = e;
  if (last == 0) return "no OpenSSL error recorded";
  char buf[256];
  ERR_error_string_n(last, buf, sizeof buf);
  return buf;
}

using base::hex;

// Never prompt: an encrypted key simply fails to load.
int no_passphrase(char*, int, int, void*) { return -1; }

std::string bn_to_dec(const BIGNUM* bn) {
  char* s = BN_bn2dec(bn);
  if (s == nullptr) return "?";
  std::string out(s);
  OPENSSL_free(s);
  return out;
}

BnPtr get_bn(const EVP_PKEY* pkey, const char* name) {
  BIGNUM* bn = nullptr;
  if (EVP_PKEY_get_bn_param(pkey, name, &bn) != 1) return nullptr;
  return BnPtr(bn);
}

// The key rules SGX imposes: RSA, 3072 bits, e = 3.
Status check_sgx_key(const EVP_PKEY* pkey) {
  if (pkey == nullptr) return invalid_argument("signing key is empty (moved from)");
  if (!EVP_PKEY_is_a(pkey, "RSA")) {
    const char* type = EVP_PKEY_get0_type_name(pkey);
    return unsupported(std::string("key is ") + (type != nullptr ? type : "of an unknown type") +
                       ", not RSA");
  }
  const int bits = EVP_PKEY_get_bits(pkey);
  if (bits != kModulusBits)
    return unsupported("key is RSA-" + std::to_string(bits) + "; SGX needs RSA-3072");
  BnPtr e = get_bn(pkey, OSSL_PKEY_PARAM_RSA_E);
  if (!e) return internal_error("cannot read the RSA public exponent: " + openssl_error());
  if (!BN_is_word(e.get(), kExponent))
    return unsupported("public exponent is " + bn_to_dec(e.get()) + "; SGX needs 3");
  return Status::ok_status();
}

// The 256 signed bytes: [0,128) ++ [900,1028).
std::array<uint8_t, kSignedPart1 + kSignedPart2> signed_bytes(const Sigstruct& sig) {
  std::array<uint8_t, kSignedPart1 + kSignedPart2> out{};
  const auto* raw = reinterpret_cast<const uint8_t*>(&sig);
  std::memcpy(out.data(), raw, kSignedPart1);
  std::memcpy(out.data() + kSignedPart1, raw + kSignedOffset2, kSignedPart2);
  return out;
}

void reverse_copy(const uint8_t* in, uint8_t* out, size_t n) {
  for (size_t i = 0; i < n; ++i) out[i] = in[n - 1 - i];
}

// Q1 = floor(S^2 / M), Q2 = floor((S^3 - Q1*S*M) / M), little-endian, 384 bytes.
Status compute_q1_q2(const BIGNUM* s, const BIGNUM* m, uint8_t* q1_out, uint8_t* q2_out) {
  BnCtxPtr ctx(BN_CTX_new());
  BnPtr s2(BN_new()), s3(BN_new()), q1(BN_new()), t(BN_new()), q2(BN_new());
  if (!ctx || !s2 || !s3 || !q1 || !t || !q2) return internal_error("out of memory for BIGNUM");
  bool ok = BN_sqr(s2.get(), s, ctx.get()) == 1 &&
            BN_div(q1.get(), nullptr, s2.get(), m, ctx.get()) == 1 &&
            BN_mul(s3.get(), s2.get(), s, ctx.get()) == 1 &&
            BN_mul(t.get(), q1.get(), s, ctx.get()) == 1 &&
            BN_mul(t.get(), t.get(), m, ctx.get()) == 1 &&
            BN_sub(t.get(), s3.get(), t.get()) == 1 &&
            BN_div(q2.get(), nullptr, t.get(), m, ctx.get()) == 1;
  // Both quotients are below M when S < M; a non-fitting value means S >= M.
  ok = ok && BN_bn2lebinpad(q1.get(), q1_out, kModulusBytes) == static_cast<int>(kModulusBytes) &&
       BN_bn2lebinpad(q2.get(), q2_out, kModulusBytes) == static_cast<int>(kModulusBytes);
  if (!ok) return internal_error("computing Q1/Q2 failed: " + openssl_error());
  return Status::ok_status();
}

Digest sha256(const uint8_t* data, size_t len) {
  Digest d{};
  unsigned int n = 0;
  if (EVP_Digest(data, len, d.data(), &n, EVP_sha256(), nullptr) != 1) d.fill(0);
  return d;
}

bool is_bcd(uint32_t v) {
  for (int i = 0; i < 8; ++i)
    if (((v >> (4 * i)) & 0xf) > 9) return false;
  return true;
}

uint32_t to_bcd(unsigned value, int digits) {
  uint32_t out = 0;
  for (int i = 0; i < digits; ++i) {
    out |= (value % 10) << (4 * i);
    value /= 10;
  }
  return out;
}

}  // namespace

// ---------------------------------------------------------------- SigningKey

SigningKey::SigningKey(SigningKey&& other) noexcept : pkey_(other.pkey_) { other.pkey_ = nullptr; }

SigningKey& SigningKey::operator=(SigningKey&& other) noexcept {
  if (this != &other) {
    EVP_PKEY_free(static_cast<EVP_PKEY*>(pkey_));
    pkey_ = other.pkey_;
    other.pkey_ = nullptr;
  }
  return *this;
}

SigningKey::~SigningKey() { EVP_PKEY_free(static_cast<EVP_PKEY*>(pkey_)); }

Result<SigningKey> SigningKey::generate() {
  PkeyCtxPtr ctx(EVP_PKEY_CTX_new_from_name(nullptr, "RSA", nullptr));
  BnPtr e(BN_new());
  if (!ctx || !e || BN_set_word(e.get(), kExponent) != 1)
    return internal_error("RSA key generation setup failed: " + openssl_error());
  EVP_PKEY* raw = nullptr;
  if (EVP_PKEY_keygen_init(ctx.get()) != 1 ||
      EVP_PKEY_CTX_set_rsa_keygen_bits(ctx.get(), kModulusBits) != 1 ||
      EVP_PKEY_CTX_set1_rsa_keygen_pubexp(ctx.get(), e.get()) != 1 ||
      EVP_PKEY_generate(ctx.get(), &raw) != 1)
    return internal_error("RSA-3072 key generation failed: " + openssl_error());
  return SigningKey(raw);
}

Result<SigningKey> SigningKey::from_pem(const std::string& pem) {
  if (pem.find("-----BEGIN ") == std::string::npos)
    return corrupt("signing key is not PEM (no '-----BEGIN' line)");
  if (pem.size() > (1u << 20)) return corrupt("signing key PEM is larger than 1 MiB");
  BioPtr bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  if (!bio) return internal_error("BIO_new_mem_buf failed: " + openssl_error());
  PkeyPtr pkey(PEM_read_bio_PrivateKey(bio.get(), nullptr, no_passphrase, nullptr));
  if (!pkey) {
    const std::string why = openssl_error();
    if (pem.find("ENCRYPTED") != std::string::npos)
      return unsupported("signing key is encrypted; give an unencrypted PEM private key");
    if (pem.find("PRIVATE KEY-----") == std::string::npos)
      return corrupt("PEM does not hold a private key (a public key or certificate?)");
    return corrupt("PEM private key cannot be parsed: " + why);
  }
  TM_RETURN_IF_ERROR(check_sgx_key(pkey.get()));
  return SigningKey(pkey.release());
}

std::string SigningKey::to_pem() const {
  if (pkey_ == nullptr) return {};
  BioPtr bio(BIO_new(BIO_s_mem()));
  if (!bio) return {};
  // PEM_write_bio_PrivateKey writes PKCS#8 ("BEGIN PRIVATE KEY") in OpenSSL 3.
  if (PEM_write_bio_PrivateKey(bio.get(), static_cast<EVP_PKEY*>(pkey_), nullptr, nullptr, 0,
                               nullptr, nullptr) != 1) {
    ERR_clear_error();
    return {};
  }
  char* data = nullptr;
  const long len = BIO_get_mem_data(bio.get(), &data);
  if (len <= 0 || data == nullptr) return {};
  return std::string(data, static_cast<size_t>(len));
}

// ----------------------------------------------------------------- SIGSTRUCT

uint32_t bcd_date_today() {
  const std::time_t now = std::time(nullptr);
  std::tm tm{};
  localtime_r(&now, &tm);
  return to_bcd(static_cast<unsigned>(tm.tm_year + 1900), 4) << 16 |
         to_bcd(static_cast<unsigned>(tm.tm_mon + 1), 2) << 8 |
         to_bcd(static_cast<unsigned>(tm.tm_mday), 2);
}

Result<Sigstruct> sign_sigstruct(const SigstructFields& fields, const SigningKey& key) {
  auto* pkey = static_cast<EVP_PKEY*>(key.evp_pkey());
  TM_RETURN_IF_ERROR(check_sgx_key(pkey));
  if (fields.vendor != 0 && fields.vendor != 0x8086)
    return invalid_argument("SIGSTRUCT VENDOR " + hex(fields.vendor) + " must be 0 or 0x8086");
  const uint32_t date = fields.date_bcd != 0 ? fields.date_bcd : bcd_date_today();
  if (!is_bcd(date)) return invalid_argument("SIGSTRUCT DATE " + hex(date) + " is not BCD");

  Sigstruct sig;
  std::memset(&sig, 0, sizeof sig);
  std::memcpy(sig.header, kSigstructHeader, sizeof sig.header);
  sig.vendor = fields.vendor;
  sig.date = date;
  std::memcpy(sig.header2, kSigstructHeader2, sizeof sig.header2);
  sig.exponent = kExponent;
  sig.misc_select = fields.misc_select;
  sig.misc_mask = fields.misc_mask;
  sig.attributes = fields.attributes;
  sig.attribute_mask = fields.attribute_mask;
  std::memcpy(sig.enclave_hash, fields.enclave_hash.data(), sizeof sig.enclave_hash);
  sig.isv_prod_id = fields.isv_prod_id;
  sig.isv_svn = fields.isv_svn;

  BnPtr n = get_bn(pkey, OSSL_PKEY_PARAM_RSA_N);
  if (!n || BN_bn2lebinpad(n.get(), sig.modulus, kModulusBytes) != static_cast<int>(kModulusBytes))
    return internal_error("cannot read the RSA modulus: " + openssl_error());

  // RSASSA-PKCS1-v1_5 with SHA-256 over the 256 signed bytes.
  const auto msg = signed_bytes(sig);
  MdCtxPtr md(EVP_MD_CTX_new());
  EVP_PKEY_CTX* pctx = nullptr;  // owned by md
  uint8_t sig_be[kModulusBytes];
  size_t sig_len = sizeof sig_be;
  if (!md || EVP_DigestSignInit(md.get(), &pctx, EVP_sha256(), nullptr, pkey) != 1 ||
      EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PADDING) != 1 ||
      EVP_DigestSign(md.get(), sig_be, &sig_len, msg.data(), msg.size()) != 1)
    return internal_error("RSA signing failed: " + openssl_error());
  if (sig_len != kModulusBytes)
    return internal_error("RSA signature has " + std::to_string(sig_len) + " bytes, not 384");
  reverse_copy(sig_be, sig.signature, kModulusBytes);

  BnPtr s(BN_bin2bn(sig_be, static_cast<int>(kModulusBytes), nullptr));
  if (!s) return internal_error("BN_bin2bn failed: " + openssl_error());
  TM_RETURN_IF_ERROR(compute_q1_q2(s.get(), n.get(), sig.q1, sig.q2));
  return sig;
}

Status verify_sigstruct(const Sigstruct& sig) {
  if (std::memcmp(sig.header, kSigstructHeader, sizeof sig.header) != 0)
    return corrupt("SIGSTRUCT HEADER is wrong (not a SIGSTRUCT)");
  if (std::memcmp(sig.header2, kSigstructHeader2, sizeof sig.header2) != 0)
    return corrupt("SIGSTRUCT HEADER2 is wrong (not a SIGSTRUCT)");
  if (sig.vendor != 0 && sig.vendor != 0x8086)
    return corrupt("SIGSTRUCT VENDOR " + hex(sig.vendor) + " is neither 0 nor 0x8086");
  if (sig.exponent != kExponent)
    return corrupt("SIGSTRUCT EXPONENT is " + std::to_string(sig.exponent) + "; SGX requires 3");

  uint8_t n_be[kModulusBytes];
  uint8_t s_be[kModulusBytes];
  reverse_copy(sig.modulus, n_be, kModulusBytes);
  reverse_copy(sig.signature, s_be, kModulusBytes);
  BnPtr n(BN_bin2bn(n_be, static_cast<int>(kModulusBytes), nullptr));
  BnPtr s(BN_bin2bn(s_be, static_cast<int>(kModulusBytes), nullptr));
  BnPtr e(BN_new());
  if (!n || !s || !e || BN_set_word(e.get(), kExponent) != 1)
    return internal_error("out of memory for BIGNUM: " + openssl_error());
  if (BN_num_bits(n.get()) != kModulusBits)
    return corrupt("SIGSTRUCT MODULUS is " + std::to_string(BN_num_bits(n.get())) +
                   " bits, not 3072");
  if (BN_cmp(s.get(), n.get()) >= 0)
    return security_error("SIGSTRUCT SIGNATURE is not below its MODULUS");

  // Rebuild the public key (n, e = 3) and verify PKCS#1 v1.5 / SHA-256.
  ParamBldPtr bld(OSSL_PARAM_BLD_new());
  if (!bld || OSSL_PARAM_BLD_push_BN(bld.get(), OSSL_PKEY_PARAM_RSA_N, n.get()) != 1 ||
      OSSL_PARAM_BLD_push_BN(bld.get(), OSSL_PKEY_PARAM_RSA_E, e.get()) != 1)
    return internal_error("building RSA parameters failed: " + openssl_error());
  ParamPtr params(OSSL_PARAM_BLD_to_param(bld.get()));
  PkeyCtxPtr kctx(EVP_PKEY_CTX_new_from_name(nullptr, "RSA", nullptr));
  EVP_PKEY* raw = nullptr;
  if (!params || !kctx || EVP_PKEY_fromdata_init(kctx.get()) != 1 ||
      EVP_PKEY_fromdata(kctx.get(), &raw, EVP_PKEY_PUBLIC_KEY, params.get()) != 1)
    return security_error("SIGSTRUCT MODULUS is not a usable RSA public key: " + openssl_error());
  PkeyPtr pub(raw);

  const auto msg = signed_bytes(sig);
  MdCtxPtr md(EVP_MD_CTX_new());
  EVP_PKEY_CTX* pctx = nullptr;  // owned by md
  if (!md || EVP_DigestVerifyInit(md.get(), &pctx, EVP_sha256(), nullptr, pub.get()) != 1 ||
      EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PADDING) != 1)
    return internal_error("RSA verification setup failed: " + openssl_error());
  if (EVP_DigestVerify(md.get(), s_be, kModulusBytes, msg.data(), msg.size()) != 1) {
    ERR_clear_error();
    return security_error(
        "SIGSTRUCT signature does not verify against its MODULUS (signed fields, SIGNATURE or "
        "MODULUS changed)");
  }

  uint8_t q1[kModulusBytes];
  uint8_t q2[kModulusBytes];
  TM_RETURN_IF_ERROR(compute_q1_q2(s.get(), n.get(), q1, q2));
  if (std::memcmp(q1, sig.q1, kModulusBytes) != 0) return corrupt("SIGSTRUCT Q1 is wrong");
  if (std::memcmp(q2, sig.q2, kModulusBytes) != 0) return corrupt("SIGSTRUCT Q2 is wrong");
  return Status::ok_status();
}

Status check_einit(const Sigstruct& sig, const Digest& mrenclave,
                   const Attributes& secs_attributes, uint32_t secs_misc_select) {
  TM_RETURN_IF_ERROR(verify_sigstruct(sig));
  if (std::memcmp(sig.enclave_hash, mrenclave.data(), mrenclave.size()) != 0)
    return security_error("SIGSTRUCT ENCLAVEHASH " +
                          to_hex(std::span<const uint8_t>(sig.enclave_hash)) +
                          " does not match the enclave's measurement " + to_hex(mrenclave));
  const auto outside = [](const char* field, uint64_t secs, uint64_t want, uint64_t mask,
                          const char* mask_name) {
    return security_error("enclave " + std::string(field) + " " + hex(secs) +
                          " outside the SIGSTRUCT's " + mask_name + ": SIGSTRUCT wants " +
                          hex(want) + " under mask " + hex(mask) + " (differing bits " +
                          hex((secs ^ want) & mask) + ")");
  };
  const Attributes want = sig.attributes;
  const Attributes mask = sig.attribute_mask;
  if ((secs_attributes.flags & mask.flags) != (want.flags & mask.flags))
    return outside("ATTRIBUTES.FLAGS", secs_attributes.flags, want.flags, mask.flags,
                   "ATTRIBUTEMASK");
  if ((secs_attributes.xfrm & mask.xfrm) != (want.xfrm & mask.xfrm))
    return outside("ATTRIBUTES.XFRM", secs_attributes.xfrm, want.xfrm, mask.xfrm,
                   "ATTRIBUTEMASK");
  if ((secs_misc_select & sig.misc_mask) != (sig.misc_select & sig.misc_mask))
    return outside("MISCSELECT", secs_misc_select, sig.misc_select, sig.misc_mask, "MISCMASK");
  return Status::ok_status();
}

Digest mrsigner_of(const Sigstruct& sig) { return sha256(sig.modulus, sizeof sig.modulus); }

}  // namespace teemate::sgx
