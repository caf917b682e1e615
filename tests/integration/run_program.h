// Runs `teemate enclave run IMAGE -- ARGS...` for the integration tests that
// drive an enclave program (files_test, threads_test): in directory `cwd`
// (empty: the test's), with extra NAME=value environment settings, stdout
// and stderr captured together. Returns the exit status (128 + signal).
#pragma once

#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <string>
#include <vector>

namespace teemate::testing {

inline std::string build_dir() {
  const char* d = std::getenv("TEEMATE_BUILD_DIR");
  return d ? d : "build";
}

inline int run_program(const std::string& image, const std::vector<std::string>& args, std::string* out,
                       const std::string& cwd = "", const std::vector<std::string>& env = {}) {
  int p[2];
  if (pipe(p) != 0) return -1;
  const std::string teemate = build_dir() + "/bin/teemate";
  std::vector<std::string> argv = {"teemate", "enclave", "run", image, "--"};
  argv.insert(argv.end(), args.begin(), args.end());
  std::vector<char*> cargv;
  for (std::string& a : argv) cargv.push_back(a.data());
  cargv.push_back(nullptr);
  pid_t pid = fork();
  if (pid == 0) {
    dup2(p[1], 1);
    dup2(p[1], 2);
    close(p[0]);
    if (!cwd.empty() && chdir(cwd.c_str()) != 0) _exit(126);
    for (const std::string& e : env) putenv(const_cast<char*>(e.c_str()));
    execv(teemate.c_str(), cargv.data());
    _exit(127);
  }
  close(p[1]);
  char buf[4096];
  ssize_t n;
  while ((n = read(p[0], buf, sizeof buf)) > 0) out->append(buf, static_cast<size_t>(n));
  close(p[0]);
  int st = 0;
  waitpid(pid, &st, 0);
  return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

}  // namespace teemate::testing
