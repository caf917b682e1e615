// Switchless calls end to end on the sim backend: OCALLs served by host
// workers and ECALLs by enclave workers give the results crossings give
// (scalars, inout buffers, nested calls, faults), fall back to crossings
// when the workers are busy or absent, and survive many threads at once.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <cstring>
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

// By default patient callers and workers that stay awake for 5 s: on a
// loaded machine a worker that sleeps after the default 0.5 ms is rarely
// running when a call comes (CI once saw none served in 20 s).
std::unique_ptr<Enclave> load(int ocall_workers, int ecall_workers, int64_t retries = 10000000) {
  LoadOptions o;
  o.switchless.ocall_workers = ocall_workers;
  o.switchless.ecall_workers = ecall_workers;
  o.switchless.retries = retries;
  o.switchless.idle_us = 5000000;
  auto e = Enclave::load(enclave_path("test_enclave.tme"), o);
  EXPECT_TRUE(e.ok()) << e.status().to_string();
  if (!e.ok()) return nullptr;
  auto& enc = *e;
  Status st = enc->set_ocall(kOcallSwitchlessAdd, [](CallArgs& a) -> int32_t {
    if (a.buffer_count() != 1 || a.buffer(0).size != sizeof(uint64_t)) return -22;
    uint64_t counter = 0;
    memcpy(&counter, a.buffer(0).data, sizeof counter);
    counter += a.scalar_value(0);
    memcpy(a.buffer(0).data, &counter, sizeof counter);
    a.buffer(0).out_size = sizeof counter;
    a.scalar_ref(1) = 2 * a.scalar_value(0);
    return 0;
  });
  if (st.ok()) {
    st = enc->set_ocall(kOcallNested, [raw = enc.get()](CallArgs& a) -> int32_t {
      CallArgs add;
      add.scalar(0, a.scalar_value(0)).scalar(1, 100);
      if (!raw->call(kEcallAdd, add).ok()) return -1;
      a.scalar_ref(1) = add.scalar_value(2);
      return 0;
    });
  }
  EXPECT_TRUE(st.ok()) << st.to_string();
  return std::move(e).value();
}

// Repeats `round` (which checks its own results) until `served()` or 20 s
// have passed: on a loaded machine a worker may not get a CPU while the
// first calls are made (they then fall back, as they should), so whether a
// worker served one is asked of many rounds, not of a fixed number.
template <typename Round, typename Served>
void until_served(Round round, Served served) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  do {
    round();
    if (::testing::Test::HasFatalFailure()) return;
  } while (!served() && std::chrono::steady_clock::now() < deadline);
}

// n switchless OCALLs from one ECALL: the counter and every answer right.
void expect_ocalls_right(Enclave& e, uint64_t n) {
  CallArgs a;
  a.scalar(0, n);
  Status st = e.call(kEcallSwitchlessOcalls, a);
  ASSERT_TRUE(st.ok()) << st.to_string();
  EXPECT_EQ(a.scalar_value(0), n * (n + 1) / 2);
  EXPECT_EQ(a.scalar_value(1), 0u) << "answers that were wrong";
}

TEST(SwitchlessTest, OcallsServedByAHostWorkerGiveTheResultsOfCrossings) {
  auto e = load(1, 0);
  ASSERT_TRUE(e);
  until_served([&] { expect_ocalls_right(*e, 2000); }, [&] { return e->switchless_stats().ocalls_by_workers > 0; });
  EXPECT_GT(e->switchless_stats().ocalls_by_workers, 0u);
}

TEST(SwitchlessTest, WithoutWorkersSwitchlessOcallsAreCrossings) {
  auto e = load(0, 0);
  ASSERT_TRUE(e);
  expect_ocalls_right(*e, 300);
  const SwitchlessStats s = e->switchless_stats();
  EXPECT_EQ(s.ocalls_by_workers, 0u);
  EXPECT_EQ(s.ecalls_by_workers, 0u);
}

TEST(SwitchlessTest, ThreadsThatOutnumberTheWorkersFallBackAndStayRight) {
  // One worker, no patience: most OCALLs find it busy and cross instead.
  auto e = load(1, 0, 0);
  ASSERT_TRUE(e);
  constexpr int kThreads = 6;
  constexpr uint64_t kEach = 300;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) threads.emplace_back([&] { expect_ocalls_right(*e, kEach); });
  for (auto& t : threads) t.join();
  EXPECT_LT(e->switchless_stats().ocalls_by_workers, kThreads * kEach);
}

TEST(SwitchlessTest, EcallsServedByAnEnclaveWorkerCarryBuffersAndScalars) {
  auto e = load(0, 1);
  ASSERT_TRUE(e);
  std::vector<uint8_t> in(4096), out(4096);
  for (size_t i = 0; i < in.size(); ++i) in[i] = static_cast<uint8_t>(i * 7 + 1);
  until_served([&] { for (int i = 0; i < 300; ++i) {
    CallArgs add;
    add.scalar(0, i).scalar(1, 1000);
    ASSERT_TRUE(e->call_switchless(kEcallAdd, add).ok());
    ASSERT_EQ(add.scalar_value(2), static_cast<uint64_t>(i + 1000));
    CallArgs echo;
    std::fill(out.begin(), out.end(), 0);
    echo.in(in).out(out);
    Status st = e->call_switchless(kEcallEcho, echo);
    ASSERT_TRUE(st.ok()) << st.to_string();
    ASSERT_EQ(echo.buffer(1).out_size, in.size());
    ASSERT_EQ(memcmp(in.data(), out.data(), in.size()), 0);
  } }, [&] { return e->switchless_stats().ecalls_by_workers > 0; });
  EXPECT_GT(e->switchless_stats().ecalls_by_workers, 0u);
}

TEST(SwitchlessTest, ASwitchlessEcallMakesOcallsAndSurvivesAFault) {
  auto e = load(0, 1);
  ASSERT_TRUE(e);
  until_served([&] { for (int i = 0; i < 50; ++i) {
    // kEcallNested makes an OCALL whose handler makes an ECALL back.
    CallArgs n;
    n.scalar(0, 5);
    Status st = e->call_switchless(kEcallNested, n);
    ASSERT_TRUE(st.ok()) << st.to_string();
    EXPECT_EQ(n.scalar_value(1), 106u);
    CallArgs bad;
    bad.scalar(0, 8);  // a null-page address
    Status fault = e->call_switchless(kEcallNullDeref, bad);
    ASSERT_FALSE(fault.ok());
    EXPECT_NE(fault.message().find("fault"), std::string::npos) << fault.message();
  } }, [&] { return e->switchless_stats().ecalls_by_workers > 0; });
  CallArgs add;
  add.scalar(0, 1).scalar(1, 2);
  ASSERT_TRUE(e->call_switchless(kEcallAdd, add).ok());
  EXPECT_EQ(add.scalar_value(2), 3u);
  EXPECT_GT(e->switchless_stats().ecalls_by_workers, 0u) << "no call reached the worker";
}

TEST(SwitchlessTest, ManyCallersShareOneEnclaveWorker) {
  auto e = load(1, 1, 0);
  ASSERT_TRUE(e);
  std::atomic<int> wrong{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 6; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 200; ++i) {
        CallArgs add;
        add.scalar(0, t).scalar(1, i);
        if (!e->call_switchless(kEcallAdd, add).ok() || add.scalar_value(2) != static_cast<uint64_t>(t + i)) ++wrong;
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(wrong.load(), 0);
  const SwitchlessStats s = e->switchless_stats();
  EXPECT_EQ(s.ecalls_by_workers + s.ecall_fallbacks, 1200u);
}

// Review defect: the handle freed its queues before the enclave threads
// it waits for had ended, and never told the enclave to forget them; a
// late switchless OCALL then wrote into freed host memory. Now every late
// OCALL is served (by the workers, still running, or by a crossing).
TEST(SwitchlessTest, DroppingAHandleWhileAnEnclaveThreadStillCallsIsSafe) {
  static std::atomic<int> served{0};
  served = 0;
  {
    LoadOptions o;
    o.switchless.ocall_workers = 1;
    o.switchless.ecall_workers = 0;
    auto e = Enclave::load(enclave_path("test_enclave.tme"), o);
    ASSERT_TRUE(e.ok()) << e.status().to_string();
    ASSERT_TRUE((*e)->set_ocall(kOcallSwitchlessAdd, [](CallArgs& a) -> int32_t {
      ++served;
      a.buffer(0).out_size = a.buffer(0).size;
      a.scalar_ref(1) = 2 * a.scalar_value(0);
      return 0;
    }).ok());
    CallArgs a;
    a.scalar(0, 20);
    ASSERT_TRUE((*e)->call(kEcallDetachedSwitchless, a).ok());
  }  // the handle waits for the detached thread, then stops the workers
  EXPECT_EQ(served.load(), 20);
}

// A child made without fork's atfork hooks (_Fork, a raw clone) must not
// use its parent's handle (review defect of the cached pid): the enclave
// memory is shared with the parent's.
TEST(SwitchlessTest, AChildMadeByUnderscoreForkCannotUseTheParentsHandle) {
  auto e = load(0, 0);
  ASSERT_TRUE(e);
  CallArgs warm;
  warm.scalar(0, 1).scalar(1, 2);
  ASSERT_TRUE(e->call(kEcallAdd, warm).ok());
  const pid_t child = _Fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    CallArgs a;
    a.scalar(0, 1).scalar(1, 2);
    const Status st = e->call(kEcallAdd, a);
    _exit(!st.ok() && st.message().find("forked child") != std::string::npos ? 0 : 1);
  }
  int status = 0;
  ASSERT_EQ(waitpid(child, &status, 0), child);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "the child's call was not refused";
}

TEST(SwitchlessTest, TooManyEcallWorkersForTheTcsIsAClearError) {
  LoadOptions o;
  o.switchless.ecall_workers = 8;  // test_enclave has 8 TCS
  auto e = Enclave::load(enclave_path("test_enclave.tme"), o);
  ASSERT_FALSE(e.ok());
  EXPECT_NE(e.status().message().find("ECALL workers"), std::string::npos) << e.status().to_string();
}

}  // namespace
}  // namespace teemate
