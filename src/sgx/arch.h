// SGX architectural structures and constants, exactly as the Intel SDM
// (Vol. 3D, "SGX Data Structures") lays them out. Pure data: usable by host
// tools, both backends and enclave code alike. Never add I/O or process
// concepts here; sizes and offsets are pinned by static_asserts.
#pragma once

#include <stddef.h>
#include <stdint.h>

namespace teemate::sgx {

inline constexpr uint64_t kPageSize = 4096;
inline constexpr uint64_t kMeasureChunk = 256;  // EEXTEND granularity

// ENCLU leaf numbers (RAX) and ENCLS leaves used in measurement records.
enum EncluLeaf : uint32_t {
  kEreport = 0,
  kEgetkey = 1,
  kEenter = 2,
  kEresume = 3,
  kEexit = 4,
  kEaccept = 5,
  kEmodpe = 6,
  kEacceptcopy = 7,
};

// SECS.ATTRIBUTES.FLAGS bits.
inline constexpr uint64_t kAttrInit = 1ull << 0;
inline constexpr uint64_t kAttrDebug = 1ull << 1;
inline constexpr uint64_t kAttrMode64 = 1ull << 2;
inline constexpr uint64_t kAttrProvisionKey = 1ull << 4;
inline constexpr uint64_t kAttrEinittokenKey = 1ull << 5;
inline constexpr uint64_t kAttrKss = 1ull << 7;
// XFRM: x87 and SSE are mandatory.
inline constexpr uint64_t kXfrmLegacy = 0x3;

struct Attributes {
  uint64_t flags;
  uint64_t xfrm;
};
static_assert(sizeof(Attributes) == 16);

// SECINFO.FLAGS.
inline constexpr uint64_t kSecinfoR = 1ull << 0;
inline constexpr uint64_t kSecinfoW = 1ull << 1;
inline constexpr uint64_t kSecinfoX = 1ull << 2;
inline constexpr uint64_t kSecinfoPending = 1ull << 3;
inline constexpr uint64_t kSecinfoModified = 1ull << 4;
inline constexpr uint64_t kSecinfoPr = 1ull << 5;
inline constexpr uint64_t kSecinfoPermMask = kSecinfoR | kSecinfoW | kSecinfoX;
enum PageType : uint64_t { kPtSecs = 0, kPtTcs = 1, kPtReg = 2, kPtVa = 3, kPtTrim = 4 };
constexpr uint64_t secinfo_page_type(PageType t) { return static_cast<uint64_t>(t) << 8; }
constexpr PageType secinfo_get_page_type(uint64_t flags) {
  return static_cast<PageType>((flags >> 8) & 0xff);
}

struct alignas(64) Secinfo {
  uint64_t flags;
  uint8_t reserved[56];
};
static_assert(sizeof(Secinfo) == 64);

struct alignas(4096) Secs {
  uint64_t size;            // 0
  uint64_t base_addr;       // 8
  uint32_t ssa_frame_size;  // 16, in pages
  uint32_t misc_select;     // 20
  uint8_t reserved1[24];    // 24
  Attributes attributes;    // 48
  uint8_t mr_enclave[32];   // 64
  uint8_t reserved2[32];    // 96
  uint8_t mr_signer[32];    // 128
  uint8_t reserved3[96];    // 160
  uint16_t isv_prod_id;     // 256
  uint16_t isv_svn;         // 258
  uint8_t reserved4[3836];  // 260
};
static_assert(sizeof(Secs) == 4096);
static_assert(offsetof(Secs, attributes) == 48);
static_assert(offsetof(Secs, isv_prod_id) == 256);

// TCS.FLAGS
inline constexpr uint64_t kTcsDbgOptIn = 1ull << 0;

struct alignas(4096) Tcs {
  uint64_t state;       // 0, reserved for hardware
  uint64_t flags;       // 8
  uint64_t ossa;        // 16, offset of the SSA stack from the enclave base
  uint32_t cssa;        // 24
  uint32_t nssa;        // 28
  uint64_t oentry;      // 32, entry point offset from the base
  uint64_t aep;         // 40, written by hardware on EENTER
  uint64_t ofs_base;    // 48
  uint64_t ogs_base;    // 56
  uint32_t fs_limit;    // 64
  uint32_t gs_limit;    // 68
  uint8_t reserved[4024];
};
static_assert(sizeof(Tcs) == 4096);
static_assert(offsetof(Tcs, oentry) == 32 && offsetof(Tcs, ogs_base) == 56);

// EXITINFO in GPRSGX: vector in bits 7:0, type in bits 10:8, valid in bit 31.
enum ExitType : uint32_t { kExitHardware = 3, kExitSoftware = 6 };
enum ExceptionVector : uint32_t {
  kVecDE = 0,   // divide error
  kVecDB = 1,
  kVecBP = 3,   // breakpoint (int3)
  kVecBR = 5,
  kVecUD = 6,   // invalid opcode
  kVecMF = 16,
  kVecGP = 13,  // general protection
  kVecPF = 14,  // page fault
  kVecAC = 17,
  kVecXM = 19,  // SIMD floating point
};
constexpr uint32_t make_exit_info(uint32_t vector, ExitType type) {
  return (vector & 0xff) | (static_cast<uint32_t>(type) << 8) | (1u << 31);
}
constexpr bool exit_info_valid(uint32_t info) { return (info >> 31) & 1; }
constexpr uint32_t exit_info_vector(uint32_t info) { return info & 0xff; }

// GPRSGX: the last 184 bytes of an SSA frame.
struct GprSgx {
  uint64_t rax, rcx, rdx, rbx, rsp, rbp, rsi, rdi;  // 0..56
  uint64_t r8, r9, r10, r11, r12, r13, r14, r15;    // 64..120
  uint64_t rflags;                                  // 128
  uint64_t rip;                                     // 136
  uint64_t ursp;                                    // 144
  uint64_t urbp;                                    // 152
  uint32_t exit_info;                               // 160
  uint32_t reserved;                                // 164
  uint64_t fs_base;                                 // 168
  uint64_t gs_base;                                 // 176
};
static_assert(sizeof(GprSgx) == 184);
static_assert(offsetof(GprSgx, rip) == 136 && offsetof(GprSgx, exit_info) == 160);

// MISC.EXINFO (present when MISCSELECT bit 0 is set): just below GPRSGX.
inline constexpr uint32_t kMiscExinfo = 1u << 0;
struct MiscExinfo {
  uint64_t maddr;  // faulting linear address for #PF/#GP
  uint32_t errcd;  // page-fault error code
  uint32_t reserved;
};
static_assert(sizeof(MiscExinfo) == 16);

// Offset of GPRSGX inside an SSA frame of `ssa_frame_pages` pages.
constexpr uint64_t gprsgx_offset(uint32_t ssa_frame_pages) {
  return ssa_frame_pages * kPageSize - sizeof(GprSgx);
}
constexpr uint64_t misc_exinfo_offset(uint32_t ssa_frame_pages) {
  return gprsgx_offset(ssa_frame_pages) - sizeof(MiscExinfo);
}

// SIGSTRUCT (1808 bytes). Signed bytes: [0,128) and [900,1028).
struct Sigstruct {
  uint8_t header[16];           // 0
  uint32_t vendor;              // 16: 0 or 0x8086
  uint32_t date;                // 20: 0xYYYYMMDD in BCD
  uint8_t header2[16];          // 24
  uint32_t sw_defined;          // 40
  uint8_t reserved1[84];        // 44
  uint8_t modulus[384];         // 128, little-endian
  uint32_t exponent;            // 512, must be 3
  uint8_t signature[384];       // 516, little-endian
  uint32_t misc_select;         // 900
  uint32_t misc_mask;           // 904
  uint8_t reserved2[4];         // 908
  uint8_t isv_family_id[16];    // 912
  Attributes attributes;        // 928
  Attributes attribute_mask;    // 944
  uint8_t enclave_hash[32];     // 960
  uint8_t reserved3[16];        // 992
  uint8_t isv_ext_prod_id[16];  // 1008
  uint16_t isv_prod_id;         // 1024
  uint16_t isv_svn;             // 1026
  uint8_t reserved4[12];        // 1028
  uint8_t q1[384];              // 1040
  uint8_t q2[384];              // 1424
} __attribute__((packed));
static_assert(sizeof(Sigstruct) == 1808);
static_assert(offsetof(Sigstruct, modulus) == 128);
static_assert(offsetof(Sigstruct, signature) == 516);
static_assert(offsetof(Sigstruct, misc_select) == 900);
static_assert(offsetof(Sigstruct, attributes) == 928);
static_assert(offsetof(Sigstruct, enclave_hash) == 960);
static_assert(offsetof(Sigstruct, isv_prod_id) == 1024);
static_assert(offsetof(Sigstruct, q1) == 1040);
static_assert(offsetof(Sigstruct, q2) == 1424);

inline constexpr uint8_t kSigstructHeader[16] = {0x06, 0x00, 0x00, 0x00, 0xE1, 0x00, 0x00, 0x00,
                                                 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00};
inline constexpr uint8_t kSigstructHeader2[16] = {0x01, 0x01, 0x00, 0x00, 0x60, 0x00, 0x00, 0x00,
                                                  0x60, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00};

// REPORT (432 bytes); the MAC covers the 384-byte body.
struct Report {
  uint8_t cpu_svn[16];
  uint32_t misc_select;
  uint8_t reserved1[12];
  uint8_t isv_ext_prod_id[16];
  Attributes attributes;
  uint8_t mr_enclave[32];
  uint8_t reserved2[32];
  uint8_t mr_signer[32];
  uint8_t reserved3[32];
  uint8_t config_id[64];
  uint16_t isv_prod_id;
  uint16_t isv_svn;
  uint16_t config_svn;
  uint8_t reserved4[42];
  uint8_t isv_family_id[16];
  uint8_t report_data[64];      // 320
  uint8_t key_id[32];           // 384
  uint8_t mac[16];              // 416
};
static_assert(sizeof(Report) == 432);
static_assert(offsetof(Report, report_data) == 320);
static_assert(offsetof(Report, key_id) == 384);
static_assert(offsetof(Report, mac) == 416);
inline constexpr size_t kReportBodySize = 384;

struct TargetInfo {
  uint8_t mr_enclave[32];       // 0
  Attributes attributes;        // 32
  uint8_t reserved1[2];         // 48
  uint16_t config_svn;          // 50
  uint32_t misc_select;         // 52
  uint8_t reserved2[8];         // 56
  uint8_t config_id[64];        // 64
  uint8_t reserved3[384];       // 128
};
static_assert(sizeof(TargetInfo) == 512);

enum KeyName : uint16_t {
  kKeyEinitToken = 0,
  kKeyProvision = 1,
  kKeyProvisionSeal = 2,
  kKeyReport = 3,
  kKeySeal = 4,
};
inline constexpr uint16_t kKeyPolicyMrEnclave = 1u << 0;
inline constexpr uint16_t kKeyPolicyMrSigner = 1u << 1;

struct KeyRequest {
  uint16_t key_name;            // 0
  uint16_t key_policy;          // 2
  uint16_t isv_svn;             // 4
  uint16_t reserved1;           // 6
  uint8_t cpu_svn[16];          // 8
  Attributes attribute_mask;    // 24
  uint8_t key_id[32];           // 40
  uint32_t misc_mask;           // 72
  uint16_t config_svn;          // 76
  uint8_t reserved2[434];       // 78
};
static_assert(sizeof(KeyRequest) == 512);
static_assert(offsetof(KeyRequest, key_id) == 40 && offsetof(KeyRequest, misc_mask) == 72);

// Alignment the hardware demands for ENCLU operands.
inline constexpr size_t kReportAlign = 512;
inline constexpr size_t kTargetInfoAlign = 512;
inline constexpr size_t kKeyRequestAlign = 512;
inline constexpr size_t kKeyAlign = 16;

}  // namespace teemate::sgx
