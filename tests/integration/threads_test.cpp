// pthreads in enclaves end to end: tests/enclaves/threads_enclave.c runs
// under `teemate enclave run`; each scenario prints "NAME ok" or the step
// that failed.
#include <gtest/gtest.h>

#include <string>

#include "run_program.h"

namespace {

int run(const std::string& scenario, std::string* out) {
  return teemate::testing::run_program(teemate::testing::build_dir() + "/enclaves/threads.tme", {scenario}, out);
}

TEST(ThreadsTest, CreateJoinAndSynchronise) {
  std::string out;
  EXPECT_EQ(run("basics", &out), 0) << out;
  EXPECT_NE(out.find("basics ok"), std::string::npos) << out;
}

TEST(ThreadsTest, PthreadCreateFailsWithEagainWhenNoTcsIsFree) {
  std::string out;
  EXPECT_EQ(run("exhaust", &out), 0) << out;
  EXPECT_NE(out.find("exhaust ok"), std::string::npos) << out;
}

// Regressions of the hostile review: aborted threads end and give their
// slot back, an aborted pthread_once routine runs again, re-created keys read
// NULL, far-future deadlines wait, and create right after join finds a TCS.
TEST(ThreadsTest, ReviewRegressions) {
  std::string out;
  EXPECT_EQ(run("review", &out), 0) << out;
  EXPECT_NE(out.find("review ok"), std::string::npos) << out;
}

}  // namespace
