// Unit tests for SIGSTRUCT signing/verification, SigningKey PEM handling,
// MRSIGNER and the EINIT checks. Cross-checks the library with OpenSSL used
// directly here; never reads or writes key files.
#include "sgx/sigstruct.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>

#include <cstddef>
#include <cstring>
#include <memory>
#include <ctime>
#include <iterator>
#include <optional>
#include <vector>

namespace teemate::sgx {
namespace {

using ::testing::HasSubstr;
using Bytes = std::vector<uint8_t>;

// ---------------------------------------------------------- OpenSSL helpers

struct PkeyDel {
  void operator()(EVP_PKEY* p) const { EVP_PKEY_free(p); }
};
struct BnDel {
  void operator()(BIGNUM* p) const { BN_free(p); }
};
using Pkey = std::unique_ptr<EVP_PKEY, PkeyDel>;
using Bn = std::unique_ptr<BIGNUM, BnDel>;

Pkey gen_rsa(int bits, unsigned long e) {
  EVP_PKEY_CTX* ctx = EVP_PKEY_CTX_new_from_name(nullptr, "RSA", nullptr);
  BIGNUM* exp = BN_new();
  BN_set_word(exp, e);
  EVP_PKEY* key = nullptr;
  EXPECT_EQ(EVP_PKEY_keygen_init(ctx), 1);
  EXPECT_EQ(EVP_PKEY_CTX_set_rsa_keygen_bits(ctx, bits), 1);
  EXPECT_EQ(EVP_PKEY_CTX_set1_rsa_keygen_pubexp(ctx, exp), 1);
  EXPECT_EQ(EVP_PKEY_generate(ctx, &key), 1);
  BN_free(exp);
  EVP_PKEY_CTX_free(ctx);
  return Pkey(key);
}

std::string bio_string(BIO* bio) {
  char* data = nullptr;
  long len = BIO_get_mem_data(bio, &data);
  std::string s(data, static_cast<size_t>(len));
  BIO_free(bio);
  return s;
}

std::string pkcs8_pem(EVP_PKEY* key) {
  BIO* bio = BIO_new(BIO_s_mem());
  EXPECT_EQ(PEM_write_bio_PrivateKey(bio, key, nullptr, nullptr, 0, nullptr, nullptr), 1);
  return bio_string(bio);
}

std::string pkcs1_pem(EVP_PKEY* key) {
  BIO* bio = BIO_new(BIO_s_mem());
  EXPECT_EQ(PEM_write_bio_PrivateKey_traditional(bio, key, nullptr, nullptr, 0, nullptr, nullptr),
            1);
  return bio_string(bio);
}

std::string public_pem(EVP_PKEY* key) {
  BIO* bio = BIO_new(BIO_s_mem());
  EXPECT_EQ(PEM_write_bio_PUBKEY(bio, key), 1);
  return bio_string(bio);
}

Bn get_bn(const EVP_PKEY* key, const char* name) {
  BIGNUM* bn = nullptr;
  EXPECT_EQ(EVP_PKEY_get_bn_param(key, name, &bn), 1);
  return Bn(bn);
}

Bytes be_bytes(const BIGNUM* bn) {
  Bytes out(384);
  EXPECT_EQ(BN_bn2binpad(bn, out.data(), 384), 384);
  return out;
}

Bytes reversed(const uint8_t* p, size_t n) {
  return Bytes(std::make_reverse_iterator(p + n), std::make_reverse_iterator(p));
}

Digest sha256(const uint8_t* data, size_t n) {
  Digest d{};
  EXPECT_EQ(EVP_Digest(data, n, d.data(), nullptr, EVP_sha256(), nullptr), 1);
  return d;
}

Bytes signed_region(const Sigstruct& s) {
  const auto* raw = reinterpret_cast<const uint8_t*>(&s);
  Bytes out(256);
  std::memcpy(out.data(), raw, 128);
  std::memcpy(out.data() + 128, raw + 900, 128);
  return out;
}

EVP_PKEY* raw_key(const SigningKey& k) { return static_cast<EVP_PKEY*>(k.evp_pkey()); }

// ---------------------------------------------------------------- fixture

class SigstructTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    auto k = SigningKey::generate();
    ASSERT_TRUE(k.ok()) << k.status().message();
    key_.emplace(std::move(k).value());
  }
  static void TearDownTestSuite() { key_.reset(); }

  static const SigningKey& key() { return *key_; }

  static SigstructFields fields() {
    SigstructFields f;
    f.vendor = 0;
    f.date_bcd = 0x20261129;
    f.misc_select = kMiscExinfo;
    f.misc_mask = kMiscExinfo;
    f.attributes = {kAttrMode64, kXfrmLegacy};
    f.attribute_mask = {kAttrInit | kAttrDebug | kAttrMode64 | kAttrProvisionKey, kXfrmLegacy};
    for (size_t i = 0; i < f.enclave_hash.size(); ++i)
      f.enclave_hash[i] = static_cast<uint8_t>(0xA0 + i);
    f.isv_prod_id = 0x1234;
    f.isv_svn = 7;
    return f;
  }

  static Sigstruct signed_sig() {
    auto s = sign_sigstruct(fields(), key());
    EXPECT_TRUE(s.ok()) << s.status().message();
    return s.value();
  }

  static std::optional<SigningKey> key_;
};

std::optional<SigningKey> SigstructTest::key_;

// ------------------------------------------------------------- SigningKey

TEST_F(SigstructTest, GeneratedKeyIsRsa3072WithExponent3) {
  EVP_PKEY* k = raw_key(key());
  ASSERT_NE(k, nullptr);
  EXPECT_TRUE(EVP_PKEY_is_a(k, "RSA"));
  EXPECT_EQ(EVP_PKEY_get_bits(k), 3072);
  EXPECT_TRUE(BN_is_word(get_bn(k, OSSL_PKEY_PARAM_RSA_E).get(), 3));
}

TEST_F(SigstructTest, PemRoundTrip) {
  const std::string pem = key().to_pem();
  EXPECT_THAT(pem, HasSubstr("-----BEGIN PRIVATE KEY-----"));  // PKCS#8
  auto back = SigningKey::from_pem(pem);
  ASSERT_TRUE(back.ok()) << back.status().message();
  EXPECT_EQ(EVP_PKEY_eq(raw_key(*back), raw_key(key())), 1);
  EXPECT_EQ(back->to_pem(), pem);
  // PKCS#1 v1.5 is deterministic: the reloaded key signs identically.
  auto a = sign_sigstruct(fields(), key());
  auto b = sign_sigstruct(fields(), *back);
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(std::memcmp(&a.value(), &b.value(), sizeof(Sigstruct)), 0);
}

TEST_F(SigstructTest, AcceptsPkcs1Pem) {
  const std::string pem = pkcs1_pem(raw_key(key()));
  ASSERT_THAT(pem, HasSubstr("-----BEGIN RSA PRIVATE KEY-----"));
  auto k = SigningKey::from_pem(pem);
  ASSERT_TRUE(k.ok()) << k.status().message();
  EXPECT_EQ(EVP_PKEY_eq(raw_key(*k), raw_key(key())), 1);
}

TEST(SigningKeyPem, Refuses2048BitKey) {
  Pkey k = gen_rsa(2048, 3);
  auto r = SigningKey::from_pem(pkcs8_pem(k.get()));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kUnsupported);
  EXPECT_EQ(r.status().message(), "key is RSA-2048; SGX needs RSA-3072");
}

TEST(SigningKeyPem, RefusesExponent65537) {
  Pkey k = gen_rsa(3072, 65537);
  auto r = SigningKey::from_pem(pkcs1_pem(k.get()));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kUnsupported);
  EXPECT_EQ(r.status().message(), "public exponent is 65537; SGX needs 3");
}

TEST(SigningKeyPem, RefusesEcKey) {
  Pkey k(EVP_EC_gen("P-256"));
  ASSERT_TRUE(k);
  auto r = SigningKey::from_pem(pkcs8_pem(k.get()));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().message(), "key is EC, not RSA");
}

TEST(SigningKeyPem, RefusesNonPemAndNonPrivate) {
  auto r = SigningKey::from_pem("hello, I am not a key");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kCorrupt);
  EXPECT_THAT(r.status().message(), HasSubstr("not PEM"));

  auto empty = SigningKey::from_pem("");
  ASSERT_FALSE(empty.ok());
  EXPECT_THAT(empty.status().message(), HasSubstr("not PEM"));

  Pkey k = gen_rsa(2048, 3);
  auto pub = SigningKey::from_pem(public_pem(k.get()));
  ASSERT_FALSE(pub.ok());
  EXPECT_EQ(pub.status().code(), Code::kCorrupt);
  EXPECT_THAT(pub.status().message(), HasSubstr("not hold a private key"));

  auto garbage =
      SigningKey::from_pem("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n");
  ASSERT_FALSE(garbage.ok());
  EXPECT_EQ(garbage.status().code(), Code::kCorrupt);
}

TEST_F(SigstructTest, MoveTransfersOwnership) {
  auto k = SigningKey::from_pem(key().to_pem());
  ASSERT_TRUE(k.ok());
  SigningKey a = std::move(k).value();
  EVP_PKEY* p = raw_key(a);
  SigningKey b(std::move(a));
  EXPECT_EQ(raw_key(b), p);
  EXPECT_EQ(raw_key(a), nullptr);  // NOLINT(bugprone-use-after-move)

  auto other = SigningKey::from_pem(key().to_pem());
  ASSERT_TRUE(other.ok());
  SigningKey c = std::move(other).value();
  c = std::move(b);  // frees c's own key (ASan would notice a leak or double free)
  EXPECT_EQ(raw_key(c), p);
  EXPECT_EQ(raw_key(b), nullptr);  // NOLINT(bugprone-use-after-move)
  SigningKey& alias = c;
  c = std::move(alias);  // self-move keeps the key
  EXPECT_EQ(raw_key(c), p);
  EXPECT_TRUE(sign_sigstruct(fields(), c).ok());

  auto moved_from = sign_sigstruct(fields(), b);
  ASSERT_FALSE(moved_from.ok());
  EXPECT_EQ(moved_from.status().code(), Code::kInvalidArgument);
  EXPECT_EQ(b.to_pem(), "");
}

// ---------------------------------------------------------- sign / verify

TEST_F(SigstructTest, SignedFieldsAreLaidOut) {
  const Sigstruct s = signed_sig();
  const SigstructFields f = fields();
  EXPECT_EQ(std::memcmp(s.header, kSigstructHeader, 16), 0);
  EXPECT_EQ(std::memcmp(s.header2, kSigstructHeader2, 16), 0);
  EXPECT_EQ(s.vendor, 0u);
  EXPECT_EQ(s.date, 0x20261129u);
  EXPECT_EQ(s.exponent, 3u);
  EXPECT_EQ(s.misc_select, f.misc_select);
  EXPECT_EQ(s.misc_mask, f.misc_mask);
  const Attributes attrs = s.attributes;
  const Attributes mask = s.attribute_mask;
  EXPECT_EQ(attrs.flags, f.attributes.flags);
  EXPECT_EQ(attrs.xfrm, f.attributes.xfrm);
  EXPECT_EQ(mask.flags, f.attribute_mask.flags);
  EXPECT_EQ(mask.xfrm, f.attribute_mask.xfrm);
  EXPECT_EQ(std::memcmp(s.enclave_hash, f.enclave_hash.data(), 32), 0);
  EXPECT_EQ(s.isv_prod_id, 0x1234);
  EXPECT_EQ(s.isv_svn, 7);
  // Raw bytes at the SDM offsets, little-endian.
  const auto* raw = reinterpret_cast<const uint8_t*>(&s);
  EXPECT_EQ(raw[20], 0x29);
  EXPECT_EQ(raw[23], 0x20);
  EXPECT_EQ(raw[512], 3);
  EXPECT_EQ(raw[1024], 0x34);
  EXPECT_EQ(raw[1025], 0x12);
  // MODULUS is the key's n, little-endian.
  const Bytes n_be = be_bytes(get_bn(raw_key(key()), OSSL_PKEY_PARAM_RSA_N).get());
  EXPECT_EQ(reversed(s.modulus, 384), n_be);
  EXPECT_EQ(s.modulus[383] & 0x80, 0x80);  // top bit of a 3072-bit modulus, stored last
}

TEST_F(SigstructTest, SignatureVerifiesIndependently) {
  const Sigstruct s = signed_sig();
  const Bytes msg = signed_region(s);
  ASSERT_EQ(msg.size(), 256u);
  const Digest h = sha256(msg.data(), msg.size());
  const Bytes sig_be = reversed(s.signature, 384);

  // With OpenSSL's verify over the digest.
  EVP_PKEY_CTX* ctx = EVP_PKEY_CTX_new(raw_key(key()), nullptr);
  ASSERT_EQ(EVP_PKEY_verify_init(ctx), 1);
  ASSERT_EQ(EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_PADDING), 1);
  ASSERT_EQ(EVP_PKEY_CTX_set_signature_md(ctx, EVP_sha256()), 1);
  EXPECT_EQ(EVP_PKEY_verify(ctx, sig_be.data(), sig_be.size(), h.data(), h.size()), 1);
  EVP_PKEY_CTX_free(ctx);

  // By hand: S^3 mod M is the EMSA-PKCS1-v1_5 encoding of SHA-256(msg).
  Bytes em(384, 0xFF);
  em[0] = 0x00;
  em[1] = 0x01;
  const uint8_t digest_info[19] = {0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01,
                                   0x65, 0x03, 0x04, 0x02, 0x01, 0x05, 0x00, 0x04, 0x20};
  em[384 - 32 - 19 - 1] = 0x00;
  std::memcpy(&em[384 - 32 - 19], digest_info, 19);
  std::memcpy(&em[384 - 32], h.data(), 32);
  BN_CTX* bctx = BN_CTX_new();
  Bn m(BN_lebin2bn(s.modulus, 384, nullptr));
  Bn sg(BN_lebin2bn(s.signature, 384, nullptr));
  Bn three(BN_new());
  BN_set_word(three.get(), 3);
  Bn r(BN_new());
  ASSERT_EQ(BN_mod_exp(r.get(), sg.get(), three.get(), m.get(), bctx), 1);
  EXPECT_EQ(be_bytes(r.get()), em);
  BN_CTX_free(bctx);
}

TEST_F(SigstructTest, Q1Q2MatchIndependentComputation) {
  const Sigstruct s = signed_sig();
  BN_CTX* ctx = BN_CTX_new();
  Bn m(BN_lebin2bn(s.modulus, 384, nullptr));
  Bn sg(BN_lebin2bn(s.signature, 384, nullptr));
  Bn s2(BN_new()), q1(BN_new()), r1(BN_new()), t(BN_new()), q2(BN_new());
  // Q1 = floor(S^2 / M), remainder r1 = S^2 mod M.
  ASSERT_EQ(BN_sqr(s2.get(), sg.get(), ctx), 1);
  ASSERT_EQ(BN_div(q1.get(), r1.get(), s2.get(), m.get(), ctx), 1);
  // S^3 - Q1*S*M = S * (S^2 mod M), so Q2 = floor(S * r1 / M).
  ASSERT_EQ(BN_mul(t.get(), sg.get(), r1.get(), ctx), 1);
  ASSERT_EQ(BN_div(q2.get(), nullptr, t.get(), m.get(), ctx), 1);
  Bytes q1_le(384), q2_le(384);
  ASSERT_EQ(BN_bn2lebinpad(q1.get(), q1_le.data(), 384), 384);
  ASSERT_EQ(BN_bn2lebinpad(q2.get(), q2_le.data(), 384), 384);
  EXPECT_EQ(Bytes(s.q1, s.q1 + 384), q1_le);
  EXPECT_EQ(Bytes(s.q2, s.q2 + 384), q2_le);
  BN_CTX_free(ctx);
}

TEST_F(SigstructTest, SignThenVerifyPasses) {
  const Sigstruct s = signed_sig();
  const Status st = verify_sigstruct(s);
  EXPECT_TRUE(st.ok()) << st.message();

  SigstructFields f = fields();
  f.vendor = 0x8086;
  auto intel = sign_sigstruct(f, key());
  ASSERT_TRUE(intel.ok());
  EXPECT_TRUE(verify_sigstruct(intel.value()).ok());
}

struct Tamper {
  const char* what;
  size_t offset;
  Code code;
  const char* message;
};

TEST_F(SigstructTest, EveryTamperingIsCaughtAndNamed) {
  const Sigstruct good = signed_sig();
  const Tamper cases[] = {
      {"HEADER", offsetof(Sigstruct, header) + 4, Code::kCorrupt, "SIGSTRUCT HEADER is wrong"},
      {"HEADER2", offsetof(Sigstruct, header2) + 8, Code::kCorrupt, "SIGSTRUCT HEADER2 is wrong"},
      {"VENDOR", offsetof(Sigstruct, vendor), Code::kCorrupt, "VENDOR"},
      {"EXPONENT", offsetof(Sigstruct, exponent), Code::kCorrupt, "EXPONENT"},
      {"DATE (signed header region)", offsetof(Sigstruct, date), Code::kSecurity,
       "SIGSTRUCT signature does not verify against its MODULUS"},
      {"RESERVED1 (signed header region)", offsetof(Sigstruct, reserved1) + 50, Code::kSecurity,
       "SIGSTRUCT signature does not verify against its MODULUS"},
      {"ENCLAVEHASH (signed body region)", offsetof(Sigstruct, enclave_hash) + 17,
       Code::kSecurity, "SIGSTRUCT signature does not verify against its MODULUS"},
      {"ATTRIBUTES (signed body region)", offsetof(Sigstruct, attributes), Code::kSecurity,
       "SIGSTRUCT signature does not verify against its MODULUS"},
      {"ISVSVN (last signed byte)", 1027, Code::kSecurity,
       "SIGSTRUCT signature does not verify against its MODULUS"},
      {"SIGNATURE", offsetof(Sigstruct, signature) + 100, Code::kSecurity,
       "SIGSTRUCT signature does not verify against its MODULUS"},
      {"MODULUS", offsetof(Sigstruct, modulus) + 100, Code::kSecurity,
       "SIGSTRUCT signature does not verify against its MODULUS"},
      {"Q1", offsetof(Sigstruct, q1) + 5, Code::kCorrupt, "SIGSTRUCT Q1 is wrong"},
      {"Q2", offsetof(Sigstruct, q2) + 383, Code::kCorrupt, "SIGSTRUCT Q2 is wrong"},
  };
  for (const Tamper& t : cases) {
    Sigstruct bad = good;
    reinterpret_cast<uint8_t*>(&bad)[t.offset] ^= 0x01;
    const Status st = verify_sigstruct(bad);
    EXPECT_FALSE(st.ok()) << t.what;
    EXPECT_EQ(st.code(), t.code) << t.what << ": " << st.message();
    EXPECT_THAT(st.message(), HasSubstr(t.message)) << t.what;
  }
}

TEST_F(SigstructTest, MalformedModulusAndSignatureAreNamed) {
  const Sigstruct good = signed_sig();
  Sigstruct short_mod = good;
  short_mod.modulus[383] = 0x00;  // no longer 3072 bits
  Status st = verify_sigstruct(short_mod);
  EXPECT_EQ(st.code(), Code::kCorrupt);
  EXPECT_THAT(st.message(), HasSubstr("MODULUS"));

  Sigstruct big_sig = good;
  std::memset(big_sig.signature, 0xFF, sizeof big_sig.signature);  // S >= M
  st = verify_sigstruct(big_sig);
  EXPECT_EQ(st.code(), Code::kSecurity);
  EXPECT_THAT(st.message(), HasSubstr("SIGNATURE"));
}

TEST_F(SigstructTest, SignRefusesBadVendorAndDate) {
  SigstructFields f = fields();
  f.vendor = 0x1234;
  auto r = sign_sigstruct(f, key());
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(r.status().message(), HasSubstr("VENDOR"));

  f = fields();
  f.date_bcd = 0x2026113A;
  r = sign_sigstruct(f, key());
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(r.status().message(), HasSubstr("DATE"));
}

// ---------------------------------------------------------------- dates

uint32_t bcd(unsigned v, int digits) {
  uint32_t out = 0;
  for (int i = 0; i < digits; ++i, v /= 10) out |= (v % 10) << (4 * i);
  return out;
}

TEST(SigstructDate, TodayIsBcd) {
  const uint32_t d = bcd_date_today();
  std::time_t now = std::time(nullptr);
  std::tm tm{};
  localtime_r(&now, &tm);
  const uint32_t want = bcd(static_cast<unsigned>(tm.tm_year + 1900), 4) << 16 |
                        bcd(static_cast<unsigned>(tm.tm_mon + 1), 2) << 8 |
                        bcd(static_cast<unsigned>(tm.tm_mday), 2);
  EXPECT_EQ(d, want);
  for (int i = 0; i < 8; ++i) EXPECT_LE((d >> (4 * i)) & 0xf, 9u);
  EXPECT_GE(d >> 16, 0x2024u);
  EXPECT_EQ(bcd(2026, 4) << 16 | bcd(11, 2) << 8 | bcd(29, 2), 0x20261129u);
}

TEST_F(SigstructTest, DateZeroMeansToday) {
  SigstructFields f = fields();
  f.date_bcd = 0;
  const uint32_t before = bcd_date_today();
  auto s = sign_sigstruct(f, key());
  const uint32_t after = bcd_date_today();
  ASSERT_TRUE(s.ok());
  const uint32_t date = s.value().date;
  EXPECT_TRUE(date == before || date == after) << std::hex << date;
}

// --------------------------------------------------------------- MRSIGNER

TEST_F(SigstructTest, MrsignerIsSha256OfLittleEndianModulus) {
  const Sigstruct s = signed_sig();
  Bytes n_le(384);
  ASSERT_EQ(BN_bn2lebinpad(get_bn(raw_key(key()), OSSL_PKEY_PARAM_RSA_N).get(), n_le.data(), 384),
            384);
  EXPECT_EQ(mrsigner_of(s), sha256(n_le.data(), n_le.size()));
  const Bytes n_be = reversed(n_le.data(), n_le.size());
  EXPECT_NE(mrsigner_of(s), sha256(n_be.data(), n_be.size()));
  // Depends only on the key, not on what was signed.
  SigstructFields f = fields();
  f.enclave_hash[0] ^= 1;
  auto other = sign_sigstruct(f, key());
  ASSERT_TRUE(other.ok());
  EXPECT_EQ(mrsigner_of(other.value()), mrsigner_of(s));
}

// ------------------------------------------------------------- EINIT checks

TEST_F(SigstructTest, CheckEinitAcceptsMatchingEnclave) {
  const Sigstruct s = signed_sig();
  const Digest mr = fields().enclave_hash;
  Status st = check_einit(s, mr, {kAttrMode64, kXfrmLegacy}, kMiscExinfo);
  EXPECT_TRUE(st.ok()) << st.message();
  // Bits outside the masks may differ freely.
  st = check_einit(s, mr, {kAttrMode64 | kAttrKss, kXfrmLegacy | 0x4}, kMiscExinfo | 0x2);
  EXPECT_TRUE(st.ok()) << st.message();
}

TEST_F(SigstructTest, CheckEinitRefusesWrongHash) {
  const Sigstruct s = signed_sig();
  Digest mr = fields().enclave_hash;
  mr[31] ^= 0xFF;
  const Status st = check_einit(s, mr, {kAttrMode64, kXfrmLegacy}, kMiscExinfo);
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.code(), Code::kSecurity);
  EXPECT_THAT(st.message(), HasSubstr("ENCLAVEHASH " + to_hex(fields().enclave_hash)));
  EXPECT_THAT(st.message(), HasSubstr("does not match the enclave's measurement " + to_hex(mr)));
}

TEST_F(SigstructTest, CheckEinitRefusesAttributesOutsideMask) {
  const Sigstruct s = signed_sig();
  const Digest mr = fields().enclave_hash;
  struct Case {
    const char* what;
    Attributes attrs;
    uint32_t misc;
    const char* field;
  };
  const Case cases[] = {
      {"DEBUG set", {kAttrMode64 | kAttrDebug, kXfrmLegacy}, kMiscExinfo, "ATTRIBUTES.FLAGS"},
      {"MODE64 clear", {0, kXfrmLegacy}, kMiscExinfo, "ATTRIBUTES.FLAGS"},
      {"PROVISIONKEY set", {kAttrMode64 | kAttrProvisionKey, kXfrmLegacy}, kMiscExinfo,
       "ATTRIBUTES.FLAGS"},
      {"SSE missing", {kAttrMode64, 0x1}, kMiscExinfo, "ATTRIBUTES.XFRM"},
  };
  for (const Case& c : cases) {
    const Status st = check_einit(s, mr, c.attrs, c.misc);
    ASSERT_FALSE(st.ok()) << c.what;
    EXPECT_EQ(st.code(), Code::kSecurity) << c.what;
    EXPECT_THAT(st.message(), HasSubstr(c.field)) << c.what;
    EXPECT_THAT(st.message(), HasSubstr("outside the SIGSTRUCT's ATTRIBUTEMASK")) << c.what;
  }
  const Status misc = check_einit(s, mr, {kAttrMode64, kXfrmLegacy}, 0);
  ASSERT_FALSE(misc.ok());
  EXPECT_EQ(misc.code(), Code::kSecurity);
  EXPECT_THAT(misc.message(), HasSubstr("MISCSELECT"));
  EXPECT_THAT(misc.message(), HasSubstr("MISCMASK"));
}

TEST_F(SigstructTest, CheckEinitVerifiesTheSigstructFirst) {
  Sigstruct s = signed_sig();
  s.q1[0] ^= 1;
  const Status st = check_einit(s, fields().enclave_hash, {kAttrMode64, kXfrmLegacy}, kMiscExinfo);
  ASSERT_FALSE(st.ok());
  EXPECT_THAT(st.message(), HasSubstr("Q1"));
}

}  // namespace
}  // namespace teemate::sgx
