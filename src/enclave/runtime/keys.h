/* Internal interface of the trusted runtime's report and key code (keys.cpp)
 * for sealing (seal.cpp). Enclave-only. Never returns key material anywhere
 * but the caller's buffer, which the caller zeroes after use. */
#ifndef TEEMATE_TRTS_KEYS_H_
#define TEEMATE_TRTS_KEYS_H_

#include <stdint.h>

#include "sgx/arch.h"

namespace teemate::trts {

/* KEYREQUEST masks of every seal key (the SGX SDK's defaults, so a blob
 * format ported from the SDK derives the same keys on hardware):
 * ATTRIBUTES.FLAGS: INIT | DEBUG | bit 3 | bits 56..63 (reserved bits take
 * part so that a future attribute there separates keys); XFRM: none (a
 * change of enabled CPU state does not lose sealed data); MISCSELECT: bits
 * 28..31 (reserved). */
inline constexpr uint64_t kSealAttributeMask = 0xFF0000000000000Bull;
inline constexpr uint64_t kSealXfrmMask = 0;
inline constexpr uint32_t kSealMiscMask = 0xF0000000u;

/* EREPORT with an all-zero TARGETINFO and REPORTDATA: this enclave's own
 * identity (MRENCLAVE, MRSIGNER, ISVSVN, CPUSVN, ATTRIBUTES, ...). The MAC of
 * this report is for no one; use only its body. */
void self_report(sgx::Report* out);

/* EGETKEY(SEAL) for `policy` with an explicit ISVSVN and CPUSVN (this
 * enclave's when sealing, the blob's when unsealing). Returns TM_OK, or
 * TM_ERR_INVALID when the CPU refuses the request (for example an ISVSVN or
 * CPUSVN newer than this enclave's). */
int seal_key(uint16_t policy, uint16_t isv_svn, const uint8_t cpu_svn[16], const uint8_t key_id[32],
             uint8_t key_out[16]);

}  // namespace teemate::trts

#endif
