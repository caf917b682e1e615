// Unit tests for the MRENCLAVE builder: each record byte by byte, a known
// answer computed independently of the library, and sensitivity/invariance.
// Tests only: never touches enclaves, devices or files.
#include "sgx/measurement.h"

#include <gtest/gtest.h>
#include <openssl/evp.h>

#include <array>
#include <cstring>
#include <vector>

#include "sgx/arch.h"

namespace teemate::sgx {
namespace {

using Bytes = std::vector<uint8_t>;

// ------------------------------------------------------------------ records

TEST(MeasurementRecords, EcreateBytes) {
  const std::array<uint8_t, 64> expected = {
      'E', 'C', 'R', 'E', 'A', 'T', 'E', 0,                // tag
      0x04, 0x03, 0x02, 0x01,                              // SSAFRAMESIZE (LE)
      0x88, 0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11,      // SIZE (LE)
      0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
      0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0};
  EXPECT_EQ(ecreate_record(0x01020304u, 0x1122334455667788ull), expected);
}

TEST(MeasurementRecords, EcreateTagIsTheSdmConstant) {
  const auto r = ecreate_record(1, 0x4000);
  uint64_t tag = 0;
  for (int i = 7; i >= 0; --i) tag = (tag << 8) | r[i];
  EXPECT_EQ(tag, 0x0045544145524345ull);
}

TEST(MeasurementRecords, EaddBytes) {
  const std::array<uint8_t, 64> expected = {
      'E', 'A', 'D', 'D', 0, 0, 0, 0,                      // tag
      0x00, 0x90, 0x78, 0x56, 0x34, 0x12, 0x00, 0x00,      // offset 0x123456789000 (LE)
      0x05, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,      // SECINFO.FLAGS 0x205 (LE)
      0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
      0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0};
  EXPECT_EQ(eadd_record(0x123456789000ull, 0x205), expected);
  EXPECT_EQ(0x205u, secinfo_page_type(kPtReg) | kSecinfoR | kSecinfoX);
}

TEST(MeasurementRecords, EaddTagIsTheSdmConstant) {
  const auto r = eadd_record(0, 0);
  uint64_t tag = 0;
  for (int i = 7; i >= 0; --i) tag = (tag << 8) | r[i];
  EXPECT_EQ(tag, 0x0000000044444145ull);
}

TEST(MeasurementRecords, EextendHeaderBytes) {
  const std::array<uint8_t, 64> expected = {
      'E', 'E', 'X', 'T', 'E', 'N', 'D', 0,                // tag
      0x00, 0xAF, 0xBC, 0x9A, 0x78, 0x56, 0x34, 0x12,      // offset 0x123456789ABCAF00 (LE)
      0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
      0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0};
  EXPECT_EQ(eextend_header(0x123456789ABCAF00ull), expected);
}

TEST(MeasurementRecords, EextendTagIsTheSdmConstant) {
  const auto r = eextend_header(0);
  uint64_t tag = 0;
  for (int i = 7; i >= 0; --i) tag = (tag << 8) | r[i];
  EXPECT_EQ(tag, 0x00444E4554584545ull);
}

TEST(MeasurementHex, LowerCase) {
  const std::array<uint8_t, 4> b = {0x00, 0xAB, 0x7f, 0xFF};
  EXPECT_EQ(to_hex(b), "00ab7fff");
  EXPECT_EQ(to_hex(std::span<const uint8_t>()), "");
  EXPECT_EQ(to_hex(Digest{}).size(), 64u);
}

// ----------------------------------------------------------- known answer

// Hand-assembled record stream, independent of the library's record functions.
void put_u64(Bytes& out, uint64_t v) {
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<uint8_t>(v >> (8 * i)));
}
void put_zeros(Bytes& out, size_t n) { out.insert(out.end(), n, 0); }
void put_str8(Bytes& out, const char* s) {  // 8 bytes, NUL padded
  size_t n = std::strlen(s);
  out.insert(out.end(), s, s + n);
  put_zeros(out, 8 - n);
}
void manual_ecreate(Bytes& out, uint32_t ssa, uint64_t size) {
  put_str8(out, "ECREATE");
  for (int i = 0; i < 4; ++i) out.push_back(static_cast<uint8_t>(ssa >> (8 * i)));
  put_u64(out, size);
  put_zeros(out, 44);
}
void manual_page(Bytes& out, uint64_t off, uint64_t flags, const Bytes& page, bool measured) {
  put_str8(out, "EADD");
  put_u64(out, off);
  put_u64(out, flags);
  put_zeros(out, 40);
  if (!measured) return;
  for (uint64_t c = 0; c < 4096; c += 256) {
    put_str8(out, "EEXTEND");
    put_u64(out, off + c);
    put_zeros(out, 48);
    out.insert(out.end(), page.data() + c, page.data() + c + 256);
  }
}
Digest plain_sha256(const Bytes& data) {
  Digest d{};
  unsigned int n = 0;
  EXPECT_EQ(EVP_Digest(data.data(), data.size(), d.data(), &n, EVP_sha256(), nullptr), 1);
  EXPECT_EQ(n, 32u);
  return d;
}

struct TinyEnclave {
  Bytes code = Bytes(4096);
  Bytes tcs = Bytes(4096, 0);
  Bytes heap = Bytes(4096, 0);
  uint32_t ssa = 1;
  uint64_t size = 0x4000;
  uint64_t code_flags = secinfo_page_type(kPtReg) | kSecinfoR | kSecinfoX;  // 0x205
  uint64_t tcs_flags = secinfo_page_type(kPtTcs);                           // 0x100
  uint64_t heap_flags = secinfo_page_type(kPtReg) | kSecinfoR | kSecinfoW;  // 0x203
  TinyEnclave() {
    for (size_t i = 0; i < code.size(); ++i) code[i] = static_cast<uint8_t>(i * 7 + 3);
    tcs[32] = 0x34;  // OENTRY = 0x1234
    tcs[33] = 0x12;
  }
  Digest measure() const {
    MeasurementBuilder b;
    b.ecreate(ssa, size);
    b.add_page(0x0000, code_flags, code.data(), true);
    b.add_page(0x1000, tcs_flags, tcs.data(), true);
    b.add_page(0x3000, heap_flags, heap.data(), false);
    return b.finish();
  }
  Bytes manual_stream() const {
    Bytes s;
    manual_ecreate(s, ssa, size);
    manual_page(s, 0x0000, code_flags, code, true);
    manual_page(s, 0x1000, tcs_flags, tcs, true);
    manual_page(s, 0x3000, heap_flags, heap, false);
    return s;
  }
};

TEST(MeasurementKnownAnswer, MatchesHandAssembledStream) {
  TinyEnclave e;
  const Bytes stream = e.manual_stream();
  ASSERT_EQ(stream.size(), 64u + 2 * (64u + 16 * (64 + 256)) + 64u);
  EXPECT_EQ(e.measure(), plain_sha256(stream));
}

TEST(MeasurementKnownAnswer, FixedDigest) {
  // Computed once with Python hashlib over the same hand-assembled stream.
  EXPECT_EQ(to_hex(TinyEnclave().measure()),
            "b73095bb4152c7d044b4cd2eb5676fd6ab41f6b01078aeaccb5b5f9d419ad858");
}

TEST(MeasurementKnownAnswer, EcreateOnly) {
  Bytes s;
  manual_ecreate(s, 2, 0x200000);
  MeasurementBuilder b;
  b.ecreate(2, 0x200000);
  EXPECT_EQ(b.finish(), plain_sha256(s));
}

TEST(MeasurementKnownAnswer, SingleEextendEqualsPageChunk) {
  TinyEnclave e;
  MeasurementBuilder b;
  b.ecreate(e.ssa, e.size);
  b.eadd(0, e.code_flags);
  for (uint64_t c = 0; c < 4096; c += 256) b.eextend(c, e.code.data() + c);
  const Digest chunked = b.finish();

  MeasurementBuilder p;
  p.ecreate(e.ssa, e.size);
  p.add_page(0, e.code_flags, e.code.data(), true);
  EXPECT_EQ(chunked, p.finish());
}

// ------------------------------------------------- sensitivity / invariance

TEST(MeasurementSensitivity, SameInputsSameDigest) {
  EXPECT_EQ(TinyEnclave().measure(), TinyEnclave().measure());
}

TEST(MeasurementSensitivity, DoesNotDependOnBufferAddress) {
  TinyEnclave a;
  TinyEnclave b;
  // Same contents at a different host address (and alignment).
  Bytes shifted(4096 + 1);
  std::memcpy(shifted.data() + 1, a.code.data(), 4096);
  MeasurementBuilder m;
  m.ecreate(b.ssa, b.size);
  m.add_page(0x0000, b.code_flags, shifted.data() + 1, true);
  m.add_page(0x1000, b.tcs_flags, b.tcs.data(), true);
  m.add_page(0x3000, b.heap_flags, b.heap.data(), false);
  EXPECT_EQ(m.finish(), a.measure());
}

TEST(MeasurementSensitivity, EachInputChangesDigest) {
  const Digest base = TinyEnclave().measure();
  {
    TinyEnclave e;
    e.code[4095] ^= 1;
    EXPECT_NE(e.measure(), base) << "data byte";
  }
  {
    TinyEnclave e;
    e.code_flags |= kSecinfoW;
    EXPECT_NE(e.measure(), base) << "SECINFO flag";
  }
  {
    TinyEnclave e;
    e.ssa = 2;
    EXPECT_NE(e.measure(), base) << "SSAFRAMESIZE";
  }
  {
    TinyEnclave e;
    e.size = 0x8000;
    EXPECT_NE(e.measure(), base) << "SIZE";
  }
  {
    TinyEnclave e;
    e.heap[0] = 1;  // unmeasured page: data must not matter
    EXPECT_EQ(e.measure(), base) << "unmeasured data";
  }
}

TEST(MeasurementSensitivity, OffsetAndMeasuredFlagMatter) {
  TinyEnclave e;
  const Digest base = e.measure();
  MeasurementBuilder b;
  b.ecreate(e.ssa, e.size);
  b.add_page(0x0000, e.code_flags, e.code.data(), true);
  b.add_page(0x1000, e.tcs_flags, e.tcs.data(), true);
  b.add_page(0x2000, e.heap_flags, e.heap.data(), false);  // other offset
  EXPECT_NE(b.finish(), base);

  MeasurementBuilder m;
  m.ecreate(e.ssa, e.size);
  m.add_page(0x0000, e.code_flags, e.code.data(), true);
  m.add_page(0x1000, e.tcs_flags, e.tcs.data(), true);
  m.add_page(0x3000, e.heap_flags, e.heap.data(), true);  // now measured
  EXPECT_NE(m.finish(), base);
}

// ------------------------------------------------------- preconditions

TEST(MeasurementDeathTest, MisuseAborts) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  uint8_t chunk[256] = {};
  EXPECT_DEATH(
      {
        MeasurementBuilder b;
        b.ecreate(1, 0x4000);
        b.eadd(0x1001, 0);
      },
      "not page-aligned");
  EXPECT_DEATH(
      {
        MeasurementBuilder b;
        b.ecreate(1, 0x4000);
        b.eextend(0x180, chunk);
      },
      "not 256-byte aligned");
  EXPECT_DEATH(
      {
        MeasurementBuilder b;
        b.ecreate(1, 0x4000);
        b.eadd(0x4000, 0);
      },
      "outside the enclave SIZE");
  EXPECT_DEATH(
      {
        MeasurementBuilder b;
        b.eadd(0, 0);
      },
      "before ecreate");
  EXPECT_DEATH(
      {
        MeasurementBuilder b;
        b.ecreate(1, 0x4000);
        (void)b.finish();
        b.eadd(0, 0);
      },
      "after finish");
}

}  // namespace
}  // namespace teemate::sgx
