// The fixture of the shared-enclave tests: a real teemated on a private
// socket, and helpers to start client processes, read what they print and
// ask the daemon what it holds. Test-only.
#pragma once

#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "host/daemon/protocol.h"
#include "teemate/enclave.h"

extern char** environ;

namespace teemate {

inline std::string build_dir() {
  const char* d = std::getenv("TEEMATE_BUILD_DIR");
  return d ? d : "build";
}
inline std::string image() { return build_dir() + "/enclaves/test_enclave.tme"; }

// quiet: stdout and stderr go to /dev/null (unless stdout_fd asks for a pipe).
// with_stderr: stderr goes to the same pipe as stdout.
inline pid_t spawn(const std::vector<std::string>& argv, int* stdout_fd = nullptr, bool quiet = false,
                   bool with_stderr = false) {
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  if (quiet) {
    posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
  }
  int pipefd[2] = {-1, -1};
  if (stdout_fd) {
    if (pipe(pipefd) != 0) return -1;
    posix_spawn_file_actions_adddup2(&fa, pipefd[1], 1);
    if (with_stderr) posix_spawn_file_actions_adddup2(&fa, pipefd[1], 2);
    posix_spawn_file_actions_addclose(&fa, pipefd[0]);
  }
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  pid_t pid = -1;
  if (posix_spawn(&pid, args[0], &fa, nullptr, args.data(), environ) != 0) pid = -1;
  posix_spawn_file_actions_destroy(&fa);
  if (stdout_fd) {
    close(pipefd[1]);
    *stdout_fd = pipefd[0];
  }
  return pid;
}

// Runs a command to completion; returns its stdout, and its exit code in *rc.
inline std::string run(const std::vector<std::string>& argv, int* rc, bool with_stderr = false) {
  int out = -1;
  pid_t pid = spawn(argv, &out, false, with_stderr);
  std::string text;
  char buf[512];
  ssize_t n;
  while ((n = read(out, buf, sizeof buf)) > 0) text.append(buf, static_cast<size_t>(n));
  close(out);
  int status = 0;
  waitpid(pid, &status, 0);
  *rc = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return text;
}

inline std::string client() { return build_dir() + "/tests/teemate-test-client"; }

// Reads one line a spawned client printed.
inline std::string read_line(int fd) {
  std::string line;
  char ch;
  while (read(fd, &ch, 1) == 1 && ch != '\n') line.push_back(ch);
  return line;
}

class DaemonTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    socket_ = std::filesystem::temp_directory_path() / ("teemate-test-" + std::to_string(getpid()) + ".sock");
    setenv("TEEMATE_SOCKET", socket_.c_str(), 1);
    state_dir_ = std::filesystem::temp_directory_path() / ("teemate-test-state-" + std::to_string(getpid()));
    daemon_ = spawn({build_dir() + "/bin/teemated", "--socket", socket_, "--state-dir", state_dir_});
    ASSERT_GT(daemon_, 0);
    for (int i = 0; i < 200 && !std::filesystem::exists(socket_); ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    ASSERT_TRUE(std::filesystem::exists(socket_)) << "teemated did not start";
  }
  static void TearDownTestSuite() {
    if (daemon_ > 0) {
      kill(daemon_, SIGTERM);
      int status = 0;
      waitpid(daemon_, &status, 0);
      EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "teemated did not stop cleanly";
      EXPECT_FALSE(std::filesystem::exists(socket_)) << "teemated left its socket behind";
    }
    std::filesystem::remove_all(state_dir_);
  }

  // The daemon's view of our test enclave: {tcs_free, tcs_total}.
  static std::pair<uint64_t, uint64_t> tcs_free_total() {
    auto s = protocol::connect_unix(socket_);
    if (!s.ok()) return {0, 0};
    if (!protocol::call(s->get(), protocol::make_request("hello", {{"client", "test"}})).ok()) return {0, 0};
    auto l = protocol::call(s->get(), protocol::make_request("list"));
    if (!l.ok()) return {0, 0};
    for (const auto& e : l->body["enclaves"]) {
      if (e["image"].get<std::string>() == std::filesystem::weakly_canonical(image()).string()) {
        return {e["tcs_free"].get<uint64_t>(), e["tcs_total"].get<uint64_t>()};
      }
    }
    return {0, 0};
  }

  // Free TCS once the daemon has taken back what finished processes held
  // (it does so when their pidfd fires), waiting up to 5 s for `want`.
  static uint64_t wait_for_free_tcs(uint64_t want) {
    uint64_t now = 0;
    for (int i = 0; i < 250 && (now = tcs_free_total().first) != want; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return now;
  }

  static size_t open_fds(pid_t pid) {
    size_t n = 0;
    for (auto& entry : std::filesystem::directory_iterator("/proc/" + std::to_string(pid) + "/fd")) {
      (void)entry;
      ++n;
    }
    return n;
  }

  // The daemon closes a finished connection when its poll loop gets to it:
  // count once the number stopped moving.
  static size_t settled_fds(pid_t pid) {
    size_t last = open_fds(pid);
    for (int i = 0; i < 50; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
      size_t now = open_fds(pid);
      if (now == last) return now;
      last = now;
    }
    return last;
  }

  static inline std::string socket_;
  static inline std::string state_dir_;
  static inline pid_t daemon_ = -1;
};


}  // namespace teemate
