// End-to-end tests of the host runtime and the trusted runtime on the sim
// backend: ECALL/OCALL marshalling from 0 bytes to 16 MiB, nested
// OCALL -> ECALL, many threads on many TCS, faults reported and survived,
// a handled exception resumed, pointer checks both ways.
#include <gtest/gtest.h>

#include <atomic>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

#include "teemate/enclave.h"
#include "test_enclave_ids.h"

namespace teemate {
namespace {

std::string enclave_path(const char* name) {
  const char* dir = std::getenv("TEEMATE_BUILD_DIR");
  return std::string(dir ? dir : "build") + "/enclaves/" + name;
}

class RuntimeTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    auto e = Enclave::load(enclave_path("test_enclave.tme"));
    ASSERT_TRUE(e.ok()) << e.status().to_string();
    enclave_ = std::move(e).value().release();
  }
  static void TearDownTestSuite() {
    delete enclave_;
    enclave_ = nullptr;
  }
  static Enclave* enclave_;
};
Enclave* RuntimeTest::enclave_ = nullptr;

TEST_F(RuntimeTest, AddReturnsScalars) {
  CallArgs a;
  a.scalar(0, 40).scalar(1, 2);
  ASSERT_TRUE(enclave_->call(kEcallAdd, a).ok());
  EXPECT_EQ(a.scalar_value(2), 42u);
}

TEST_F(RuntimeTest, EchoFromZeroBytesTo16MiB) {
  for (size_t size : {size_t{0}, size_t{1}, size_t{4095}, size_t{4096}, size_t{65537}, size_t{1} << 20,
                      size_t{16} << 20}) {
    std::vector<uint8_t> in(size), out(size + 1, 0xee);
    for (size_t i = 0; i < size; ++i) in[i] = static_cast<uint8_t>(i * 131 + 7);
    CallArgs a;
    a.in(in).out(out);
    Status st = enclave_->call(kEcallEcho, a);
    ASSERT_TRUE(st.ok()) << size << ": " << st.to_string();
    EXPECT_EQ(a.buffer(1).out_size, size);
    EXPECT_TRUE(std::equal(in.begin(), in.end(), out.begin())) << "size " << size;
    EXPECT_EQ(out[size], 0xee) << "wrote past out_size";
  }
}

TEST_F(RuntimeTest, BufferLargerThanLimitIsRefused) {
  std::vector<uint8_t> big((32u << 20) + 1);
  std::vector<uint8_t> out(16);
  CallArgs a;
  a.in(big).out(out);
  Status st = enclave_->call(kEcallEcho, a);
  EXPECT_EQ(st.code(), Code::kResource) << st.to_string();
  EXPECT_NE(st.message().find("max_call_buffer"), std::string::npos) << st.message();
}

TEST_F(RuntimeTest, UnknownEcallIsAClearError) {
  CallArgs a;
  Status st = enclave_->call(0x7777, a);
  EXPECT_EQ(st.code(), Code::kInvalidArgument);
  EXPECT_NE(st.message().find("no such ECALL"), std::string::npos) << st.message();
}

TEST_F(RuntimeTest, NestedOcallMakesEcall) {
  ASSERT_TRUE(enclave_->set_ocall(kOcallNested, [](CallArgs& args) -> int32_t {
    CallArgs inner;
    inner.scalar(0, args.scalar_value(0)).scalar(1, 1000);
    Status st = enclave_->call(kEcallAdd, inner);
    if (!st.ok()) return 1;
    args.scalar_ref(1) = inner.scalar_value(2);
    return 0;
  }).ok());
  CallArgs a;
  a.scalar(0, 5);
  Status st = enclave_->call(kEcallNested, a);
  ASSERT_TRUE(st.ok()) << st.to_string();
  EXPECT_EQ(a.scalar_value(1), 1006u);  // (5 + 1000) + 1
}

TEST_F(RuntimeTest, NullDereferenceIsReportedAndSurvived) {
  CallArgs a;
  a.scalar(0, 0);
  Status st = enclave_->call(kEcallNullDeref, a);
  EXPECT_EQ(st.code(), Code::kEnclaveFault);
  EXPECT_NE(st.message().find("#PF"), std::string::npos) << st.message();
  EXPECT_NE(st.message().find("accessing 0x0"), std::string::npos) << st.message();
  CallArgs b;
  b.scalar(0, 1).scalar(1, 2);
  ASSERT_TRUE(enclave_->call(kEcallAdd, b).ok());
  EXPECT_EQ(b.scalar_value(2), 3u);
}

TEST_F(RuntimeTest, DivisionByZeroIsReportedAndSurvived) {
  for (int round = 0; round < 20; ++round) {  // every TCS faults and recovers
    CallArgs a;
    a.scalar(0, 10).scalar(1, 0);
    Status st = enclave_->call(kEcallDivide, a);
    ASSERT_EQ(st.code(), Code::kEnclaveFault) << st.to_string();
    EXPECT_NE(st.message().find("#DE"), std::string::npos) << st.message();
  }
  CallArgs b;
  b.scalar(0, 10).scalar(1, 3);
  ASSERT_TRUE(enclave_->call(kEcallDivide, b).ok());
  EXPECT_EQ(b.scalar_value(2), 3u);
}

TEST_F(RuntimeTest, HandledExceptionResumes) {
  CallArgs a;
  Status st = enclave_->call(kEcallHandledException, a);
  ASSERT_TRUE(st.ok()) << st.to_string();
  EXPECT_EQ(a.scalar_value(0), 1u);
}

TEST_F(RuntimeTest, AbortFailsOnlyThatCall) {
  CallArgs a;
  Status st = enclave_->call(kEcallAbort, a);
  EXPECT_EQ(st.code(), Code::kEnclaveFault);
  CallArgs b;
  EXPECT_TRUE(enclave_->call(kEcallAdd, b).ok());
}

TEST_F(RuntimeTest, HostBufferInsideTheEnclaveIsRefused) {
  CallArgs stats;
  ASSERT_TRUE(enclave_->call(kEcallHeapStats, stats).ok());
  const uint64_t base = stats.scalar_value(1);
  std::vector<uint8_t> out(64);
  CallArgs a;
  a.in({reinterpret_cast<const uint8_t*>(base + 4096), 64}).out(out);
  Status st = enclave_->call(kEcallEcho, a);
  EXPECT_EQ(st.code(), Code::kSecurity) << st.to_string();
}

TEST_F(RuntimeTest, EnclaveRefusesOcallOfHostPointer) {
  static uint8_t host_buffer[16];
  CallArgs a;
  a.scalar(0, reinterpret_cast<uint64_t>(host_buffer));
  ASSERT_TRUE(enclave_->call(kEcallOcallHostPointer, a).ok());
  EXPECT_EQ(a.scalar_value(1), 3u);  // TM_ERR_BUFFER_RANGE
}

TEST_F(RuntimeTest, ManyThreadsOnManyTcs) {
  CallArgs before;
  ASSERT_TRUE(enclave_->call(kEcallCount, before).ok());
  const uint64_t start = before.scalar_value(1);
  constexpr int kThreads = 8, kCalls = 50, kPerCall = 1000;
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < kCalls; ++i) {
        CallArgs a;
        a.scalar(0, kPerCall);
        if (!enclave_->call(kEcallCount, a).ok()) failures++;
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(failures.load(), 0);
  CallArgs after;
  ASSERT_TRUE(enclave_->call(kEcallCount, after).ok());
  EXPECT_EQ(after.scalar_value(1) - start, uint64_t{kThreads} * kCalls * kPerCall);
}

TEST_F(RuntimeTest, HeapDoesNotLeakAcrossCalls) {
  CallArgs s1;
  ASSERT_TRUE(enclave_->call(kEcallHeapStats, s1).ok());
  std::vector<uint8_t> in(100000), out(100000);
  for (int i = 0; i < 100; ++i) {
    CallArgs a;
    a.in(in).out(out);
    ASSERT_TRUE(enclave_->call(kEcallEcho, a).ok());
    CallArgs f;
    f.scalar(0, 0);
    (void)enclave_->call(kEcallNullDeref, f);
  }
  CallArgs s2;
  ASSERT_TRUE(enclave_->call(kEcallHeapStats, s2).ok());
  EXPECT_EQ(s1.scalar_value(0), s2.scalar_value(0));
}

TEST(RuntimeLoad, MissingImageNamesThePath) {
  auto e = Enclave::load("/nonexistent/x.tme");
  ASSERT_FALSE(e.ok());
  EXPECT_NE(e.status().message().find("/nonexistent/x.tme"), std::string::npos) << e.status().message();
}

TEST(RuntimeLoad, UnsignedImageIsRefused) {
  auto e = Enclave::load(enclave_path("hello.unsigned.tme"));
  ASSERT_FALSE(e.ok());
  EXPECT_NE(e.status().message().find("not signed"), std::string::npos) << e.status().message();
}

TEST(RuntimeLoad, HelloRunsMain) {
  std::string captured;
  LoadOptions opts;
  opts.output = [&](int fd, std::string_view text) {
    if (fd == 1) captured.append(text);
  };
  auto e = Enclave::load(enclave_path("hello.tme"), opts);
  ASSERT_TRUE(e.ok()) << e.status().to_string();
  auto rc = (*e)->run_main({"fail", "x"});
  ASSERT_TRUE(rc.ok()) << rc.status().to_string();
  EXPECT_EQ(*rc, 3);
  EXPECT_NE(captured.find("Hello from inside the enclave!"), std::string::npos) << captured;
  EXPECT_NE(captured.find("argv[2] = x"), std::string::npos) << captured;
}

}  // namespace
}  // namespace teemate
