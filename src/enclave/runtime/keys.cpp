/* EREPORT and EGETKEY from inside the enclave (the same ENCLU machine code on
 * hardware and on the sim backend) and REPORT verification with AES-128-CMAC.
 * Never keeps key material beyond a call (every key buffer is zeroed before
 * return) and never caches anything in mutable globals. */
#include "keys.h"

#include <string.h>

#include "mbedtls/cipher.h"
#include "mbedtls/cmac.h"
extern "C" {  // mbedTLS 2.28's constant_time.h has no C++ guard of its own
#include "mbedtls/constant_time.h"
}
#include "mbedtls/platform_util.h"
#include "runtime.h"

namespace teemate::trts {
namespace {

static_assert(sizeof(sgx::Report) == TM_REPORT_SIZE && sgx::kReportBodySize == TM_REPORT_BODY_SIZE);
static_assert(sizeof(sgx::TargetInfo) == TM_TARGET_INFO_SIZE);
static_assert(int{TM_KEY_NAME_SEAL} == int{sgx::kKeySeal} && int{TM_KEY_NAME_REPORT} == int{sgx::kKeyReport});
static_assert(TM_KEY_POLICY_MRENCLAVE == sgx::kKeyPolicyMrEnclave &&
              TM_KEY_POLICY_MRSIGNER == sgx::kKeyPolicyMrSigner);

/* ENCLU[EREPORT]: RBX = TARGETINFO (512-aligned), RCX = REPORTDATA
 * (128-aligned), RDX = REPORT (512-aligned). */
void enclu_ereport(const sgx::TargetInfo* ti, const uint8_t* report_data, sgx::Report* out) {
  uint64_t rax = sgx::kEreport;
  __asm__ volatile("enclu" : "+a"(rax) : "b"(ti), "c"(report_data), "d"(out) : "memory", "cc");
}

/* ENCLU[EGETKEY]: RBX = KEYREQUEST (512-aligned), RCX = key (16-aligned);
 * returns RAX, 0 on success or the SDM's error code. */
uint64_t enclu_egetkey(const sgx::KeyRequest* req, uint8_t* key) {
  uint64_t rax = sgx::kEgetkey;
  __asm__ volatile("enclu" : "+a"(rax) : "b"(req), "c"(key) : "memory", "cc");
  return rax;
}

int egetkey(const sgx::KeyRequest& req, uint8_t key_out[16]) {
  alignas(sgx::kKeyRequestAlign) sgx::KeyRequest r;
  memcpy(&r, &req, sizeof r);
  alignas(sgx::kKeyAlign) uint8_t key[16];
  const uint64_t err = enclu_egetkey(&r, key);
  if (err == 0) memcpy(key_out, key, sizeof key);
  mbedtls_platform_zeroize(key, sizeof key);
  return err == 0 ? TM_OK : TM_ERR_INVALID;
}

void report_for(const sgx::TargetInfo& target, const uint8_t* report_data, sgx::Report* out) {
  alignas(sgx::kTargetInfoAlign) sgx::TargetInfo ti;
  memcpy(&ti, &target, sizeof ti);
  alignas(128) uint8_t rd[TM_REPORT_DATA_SIZE] = {};
  if (report_data) memcpy(rd, report_data, sizeof rd);
  alignas(sgx::kReportAlign) sgx::Report r;
  enclu_ereport(&ti, rd, &r);
  memcpy(out, &r, sizeof r);
}

}  // namespace

void self_report(sgx::Report* out) {
  const sgx::TargetInfo none{};
  report_for(none, nullptr, out);
}

int seal_key(uint16_t policy, uint16_t isv_svn, const uint8_t cpu_svn[16], const uint8_t key_id[32],
             uint8_t key_out[16]) {
  if ((policy & ~(TM_KEY_POLICY_MRENCLAVE | TM_KEY_POLICY_MRSIGNER)) != 0 || policy == 0) return TM_ERR_INVALID;
  sgx::KeyRequest req{};
  req.key_name = sgx::kKeySeal;
  req.key_policy = policy;
  req.isv_svn = isv_svn;
  memcpy(req.cpu_svn, cpu_svn, sizeof req.cpu_svn);
  req.attribute_mask.flags = kSealAttributeMask;
  req.attribute_mask.xfrm = kSealXfrmMask;
  memcpy(req.key_id, key_id, sizeof req.key_id);
  req.misc_mask = kSealMiscMask;
  return egetkey(req, key_out);
}

}  // namespace teemate::trts

using namespace teemate;
using namespace teemate::trts;

extern "C" {

int tm_get_key(uint16_t key_name, uint16_t key_policy, const uint8_t key_id[TM_KEY_ID_SIZE],
               uint8_t key_out[TM_KEY_SIZE]) {
  if (!key_id || !key_out) return TM_ERR_INVALID;
  if (key_name == TM_KEY_NAME_REPORT) {
    sgx::KeyRequest req{};
    req.key_name = sgx::kKeyReport;
    memcpy(req.key_id, key_id, sizeof req.key_id);
    return egetkey(req, key_out);
  }
  if (key_name != TM_KEY_NAME_SEAL) return TM_ERR_INVALID;
  sgx::Report self;
  self_report(&self);
  return seal_key(key_policy, self.isv_svn, self.cpu_svn, key_id, key_out);
}

int tm_report(const uint8_t* target_info, const uint8_t* report_data, uint8_t report_out[TM_REPORT_SIZE]) {
  if (!report_out) return TM_ERR_INVALID;
  sgx::TargetInfo ti{};
  if (target_info) {
    memcpy(&ti, target_info, sizeof ti);
  } else {
    // Target this enclave: its TARGETINFO comes from a report of itself,
    // as the SGX SDK's sgx_self_target does.
    sgx::Report self;
    self_report(&self);
    memcpy(ti.mr_enclave, self.mr_enclave, sizeof ti.mr_enclave);
    ti.attributes = self.attributes;
    ti.config_svn = self.config_svn;
    ti.misc_select = self.misc_select;
    memcpy(ti.config_id, self.config_id, sizeof ti.config_id);
  }
  sgx::Report r;
  report_for(ti, report_data, &r);
  memcpy(report_out, &r, sizeof r);
  return TM_OK;
}

int tm_verify_report(const uint8_t report[TM_REPORT_SIZE]) {
  if (!report) return TM_ERR_INVALID;
  sgx::Report r;
  memcpy(&r, report, sizeof r);
  sgx::KeyRequest req{};
  req.key_name = sgx::kKeyReport;
  memcpy(req.key_id, r.key_id, sizeof req.key_id);
  uint8_t key[16];
  if (egetkey(req, key) != TM_OK) return TM_ERR_INVALID;
  uint8_t mac[16];
  const mbedtls_cipher_info_t* aes = mbedtls_cipher_info_from_type(MBEDTLS_CIPHER_AES_128_ECB);
  const int rc = aes ? mbedtls_cipher_cmac(aes, key, 128, reinterpret_cast<const unsigned char*>(&r),
                                           sgx::kReportBodySize, mac)
                     : -1;
  mbedtls_platform_zeroize(key, sizeof key);
  if (rc != 0) {
    mbedtls_platform_zeroize(mac, sizeof mac);
    return TM_ERR_FAULT;
  }
  const int diff = mbedtls_ct_memcmp(mac, r.mac, sizeof mac);
  mbedtls_platform_zeroize(mac, sizeof mac);
  return diff == 0 ? TM_OK : TM_ERR_MAC;
}

}  // extern "C"
