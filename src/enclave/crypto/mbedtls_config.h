/* TeeMate's mbedTLS 2.28 configuration for enclave code (passed as
 * MBEDTLS_CONFIG_FILE): AES, GCM, CMAC and the cipher layer with AES-NI,
 * nothing else. Must never enable anything that reaches the host (files,
 * sockets, time, platform entropy, threading): enclave code has no OS. */
#ifndef TEEMATE_MBEDTLS_CONFIG_H_
#define TEEMATE_MBEDTLS_CONFIG_H_

/* System support: x86-64 inline assembly for AES-NI. Nothing else: no
 * MBEDTLS_HAVE_TIME(_DATE), MBEDTLS_FS_IO, MBEDTLS_NET_C, MBEDTLS_TIMING_C,
 * MBEDTLS_THREADING_C, MBEDTLS_PLATFORM_C (calloc/free are the enclave
 * heap's, reached directly). */
#define MBEDTLS_HAVE_ASM
#define MBEDTLS_NO_PLATFORM_ENTROPY
#define MBEDTLS_DEPRECATED_REMOVED

/* Ciphers. AES tables live in read-only data (MBEDTLS_AES_ROM_TABLES), so no
 * mutable global is filled lazily by whichever thread comes first. The
 * software tables are only the fallback: AES-NI and PCLMULQDQ are used when
 * the CPU has them (every SGX-capable CPU does). The CPUID-based detection
 * of aesni.c is replaced at build time by teemate_aesni_has_support, which
 * probes without CPUID (CPUID faults inside a hardware enclave). */
#define MBEDTLS_AES_C
#define MBEDTLS_AES_ROM_TABLES
#define MBEDTLS_AESNI_C
#define MBEDTLS_CIPHER_C
#define MBEDTLS_GCM_C
#define MBEDTLS_CMAC_C /* AES-128-CMAC: the MAC of SGX REPORTs */
#define MBEDTLS_SHA256_C /* trusted files (posix_file.cpp) */

#include "mbedtls/check_config.h"

#endif /* TEEMATE_MBEDTLS_CONFIG_H_ */
