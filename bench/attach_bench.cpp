// teemate-bench-attach: start latency and memory of processes that build a dedicated
// enclave versus processes that attach to a warm one in its own private teemated.
// Never maps an enclave itself; only ever signals processes it started, by pid.
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "bench_util.h"
#include "host/image/image_file.h"
#include "host/image/layout.h"

extern char** environ;

namespace teemate::bench {
namespace {

constexpr const char* kUsage =
    "usage: teemate-bench-attach [--quick] [--reps N] [--sizes LIST] [--counts LIST]\n"
    "                            [--json] [--enclave-dir DIR] [--verbose]\n"
    "\n"
    "Shared (attach to a warm enclave) versus dedicated (build one's own) on the\n"
    "sim backend, for the bench images of 16, 64 and 256 MiB with 40 TCS\n"
    "(bench_attach_16m.tme, bench_attach_64m.tme, bench_attach_256m.tme). Per\n"
    "size it starts its own teemated on a private socket, warms the image there\n"
    "(one attach before any timing) and spawns teemate-bench-attach-client\n"
    "(posix_spawn, one fresh process per measurement):\n"
    "\n"
    "  dedicated_ms  the client runs Enclave::load(IMAGE) (create, add and measure\n"
    "                every page, init) and one empty ECALL\n"
    "  shared_ms     the client runs Enclave::attach to the warm enclave (1 TCS)\n"
    "                and one empty ECALL\n"
    "  spawn_ms      the client does nothing (the floor: exec, dynamic linking)\n"
    "\n"
    "Each time is from posix_spawn to the client's \"done\" line on a pipe\n"
    "(written after its first ECALL returned); the bench then waits for the\n"
    "exit (*_exit_ms: spawn to exit, teardown included) before the next run.\n"
    "The three modes are interleaved per repetition, in rotating order, so\n"
    "machine noise hits all alike. Medians with min and max.\n"
    "\n"
    "Memory, for N live processes per mode (each did its work, said \"ready\" and\n"
    "waits): pss_*_mib is the sum of Pss from /proc/PID/smaps_rollup, of the\n"
    "clients plus (shared mode) teemated, which is also given alone as\n"
    "pss_daemon_mib. Sim's enclave memory is a memfd whose pages were written\n"
    "through a build view that EINIT unmaps, so PSS only sees enclave pages a\n"
    "process touched since; mem_*_mib is therefore also given: PSS outside the\n"
    "enclave mappings plus the resident pages of every distinct enclave memfd\n"
    "the processes hold, each counted once (stat st_blocks of /proc/PID/fd/*).\n"
    "\n"
    "Output: a timing table, a memory table, the issue's targets, then one JSON\n"
    "object per (size, N) line, carrying that size's timing fields too.\n"
    "\n"
    "options:\n"
    "  --quick            3 repetitions, N = 1 and 8 (under a minute)\n"
    "  --reps N           timing repetitions per size (default 21; --quick: 3)\n"
    "  --sizes LIST       enclave sizes in MiB, from 16,64,256 (default: all)\n"
    "  --counts LIST      process counts N for memory (default 1,8,32; at most 40)\n"
    "  --json             print only the JSON lines\n"
    "  --enclave-dir DIR  where the bench_attach_*.tme images are\n"
    "                     (default: <dir of this program>/../enclaves)\n"
    "  --verbose          progress on stderr\n"
    "  --help             this text\n"
    "\n"
    "A configuration whose processes would not fit in MemAvailable (dedicated:\n"
    "N x (size + 16 MiB) + 512 MiB) is skipped and its fields are null.\n"
    "teemated and teemate-bench-attach-client are looked up next to this program.\n";

constexpr uint32_t kImageTcs = 40;  // bench/CMakeLists.txt: bench_attach_* images
constexpr const char* kEnclaveMemfd = "/memfd:teemate-enclave (deleted)";

enum class Mode { kDedicated, kShared, kSpawn };
const char* mode_name(Mode m) {
  return m == Mode::kDedicated ? "dedicated" : m == Mode::kShared ? "shared" : "noop";
}

bool verbose = false;
void progress(const std::string& s) {
  if (verbose) fprintf(stderr, "teemate-bench-attach: %s\n", s.c_str());
}

double ms_since(Clock::time_point t0) { return seconds_between(t0, Clock::now()) * 1e3; }

// Where the programs and scratch files are.
struct Env {
  std::string client, teemated, tmpdir, client_log;
  int client_log_fd = -1;
  int devnull = -1;
};

struct Child {
  pid_t pid = -1;
  int out = -1;  // read end of the client's stdout
  int in = -1;   // write end of the client's stdin (held clients)
};

void close_fd(int* fd) {
  if (*fd >= 0) close(*fd);
  *fd = -1;
}

// Spawns `argv` with stdout on a new pipe, stdin on a pipe (hold) or
// /dev/null, stderr on `err_fd`. Every fd of ours is close-on-exec, so the
// child holds no end of another child's pipes.
bool spawn(const std::vector<std::string>& argv, int err_fd, int devnull, bool stdin_pipe, Child* c,
           std::string* error) {
  int out[2] = {-1, -1}, in[2] = {-1, -1};
  if (pipe2(out, O_CLOEXEC) != 0 || (stdin_pipe && pipe2(in, O_CLOEXEC) != 0)) {
    *error = std::string("pipe: ") + strerror(errno);
    close_fd(&out[0]);
    close_fd(&out[1]);
    return false;
  }
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, stdin_pipe ? in[0] : devnull, 0);
  posix_spawn_file_actions_adddup2(&fa, out[1], 1);
  posix_spawn_file_actions_adddup2(&fa, err_fd, 2);
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  pid_t pid = -1;
  const int rc = posix_spawn(&pid, args[0], &fa, nullptr, args.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  close_fd(&out[1]);
  close_fd(&in[0]);
  if (rc != 0) {
    *error = "cannot start " + argv[0] + ": " + strerror(rc);
    close_fd(&out[0]);
    close_fd(&in[1]);
    return false;
  }
  c->pid = pid;
  c->out = out[0];
  c->in = in[1];
  return true;
}

// Reads one line (without the newline); false at end of file or error.
bool read_line(int fd, std::string* line) {
  line->clear();
  char ch;
  for (;;) {
    const ssize_t n = read(fd, &ch, 1);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    if (ch == '\n') return true;
    if (line->size() < 256) line->push_back(ch);
  }
}

// Waits for the child; returns a description of an abnormal end, "" if it
// exited with status 0.
std::string reap(Child* c) {
  close_fd(&c->in);
  close_fd(&c->out);
  if (c->pid <= 0) return "";
  int status = 0;
  pid_t r;
  do {
    r = waitpid(c->pid, &status, 0);
  } while (r < 0 && errno == EINTR);
  c->pid = -1;
  if (r < 0) return std::string("waitpid: ") + strerror(errno);
  if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return "";
  if (WIFEXITED(status)) return "exit status " + std::to_string(WEXITSTATUS(status));
  return std::string("killed by signal ") + strsignal(WTERMSIG(status));
}

// The clients' stderr without sim's one-line notice, for error messages.
std::string client_log_tail(const Env& env) {
  FILE* f = fopen(env.client_log.c_str(), "r");
  if (!f) return "";
  std::vector<std::string> lines;
  char buf[1024];
  while (fgets(buf, sizeof buf, f)) {
    if (strstr(buf, "sim backend emulates SGX")) continue;
    lines.push_back(buf);
  }
  fclose(f);
  std::string out;
  for (size_t i = lines.size() > 10 ? lines.size() - 10 : 0; i < lines.size(); ++i) out += "  " + lines[i];
  return out.empty() ? "  (nothing on stderr)\n" : out;
}

std::vector<std::string> client_argv(const Env& env, Mode m, const std::string& image, const std::string& socket,
                                     bool hold) {
  std::vector<std::string> a{env.client, mode_name(m)};
  if (m != Mode::kSpawn) a.push_back(image);
  if (m == Mode::kShared) {
    a.push_back("--socket");
    a.push_back(socket);
  }
  if (hold) a.push_back("--hold");
  return a;
}

// One timed run: spawn -> "done" line (*ms), spawn -> exit (*exit_ms).
bool time_one(const Env& env, Mode m, const std::string& image, const std::string& socket, double* ms,
              double* exit_ms, std::string* error) {
  const auto argv = client_argv(env, m, image, socket, false);
  Child c;
  const auto t0 = Clock::now();
  if (!spawn(argv, env.client_log_fd, env.devnull, false, &c, error)) return false;
  std::string line;
  const bool got = read_line(c.out, &line);
  *ms = ms_since(t0);
  const std::string end = reap(&c);
  *exit_ms = ms_since(t0);
  if (!got || line != "done" || !end.empty()) {
    *error = std::string("the ") + mode_name(m) + " client failed (" + (end.empty() ? "said '" + line + "'" : end) +
             "); its stderr:\n" + client_log_tail(env);
    return false;
  }
  return true;
}

// ---- /proc ---------------------------------------------------------------

// "Pss:" of /proc/PID/smaps_rollup, KiB; -1 if unreadable.
long long rollup_pss_kib(pid_t pid) {
  const std::string p = "/proc/" + std::to_string(pid) + "/smaps_rollup";
  FILE* f = fopen(p.c_str(), "r");
  if (!f) return -1;
  char line[512];
  long long kib = -1;
  while (fgets(line, sizeof line, f)) {
    if (strncmp(line, "Pss:", 4) == 0) {
      kib = strtoll(line + 4, nullptr, 10);
      break;
    }
  }
  fclose(f);
  return kib;
}

// Sum of Pss over the mappings of the enclave memfd (/proc/PID/smaps), KiB.
long long enclave_vma_pss_kib(pid_t pid) {
  const std::string p = "/proc/" + std::to_string(pid) + "/smaps";
  FILE* f = fopen(p.c_str(), "r");
  if (!f) return -1;
  char line[1024];
  bool in_enclave = false;
  long long kib = 0;
  while (fgets(line, sizeof line, f)) {
    const char* sp = strchr(line, ' ');
    if (!sp) continue;
    if (sp[-1] != ':') {
      // A mapping's header: "start-end perms offset dev inode   name".
      const char* q = line;
      for (int field = 0; field < 5 && q; ++field) {
        q = strchr(q, ' ');
        if (q) ++q;
      }
      std::string name = q ? q : "";
      name.erase(0, name.find_first_not_of(' '));
      while (!name.empty() && (name.back() == '\n' || name.back() == ' ')) name.pop_back();
      in_enclave = name == kEnclaveMemfd;
    } else if (in_enclave && strncmp(line, "Pss:", 4) == 0) {
      kib += strtoll(line + 4, nullptr, 10);
    }
  }
  fclose(f);
  return kib;
}

// The enclave memfds `pid` holds open: (dev, inode) -> resident KiB.
void enclave_memfds(pid_t pid, std::map<std::pair<dev_t, ino_t>, long long>* out) {
  const std::string dir = "/proc/" + std::to_string(pid) + "/fd";
  DIR* d = opendir(dir.c_str());
  if (!d) return;
  while (dirent* e = readdir(d)) {
    if (e->d_name[0] == '.') continue;
    const std::string p = dir + "/" + e->d_name;
    char target[256];
    const ssize_t n = readlink(p.c_str(), target, sizeof target - 1);
    if (n <= 0) continue;
    target[n] = '\0';
    if (strcmp(target, kEnclaveMemfd) != 0) continue;
    struct stat st {};
    if (stat(p.c_str(), &st) != 0) continue;
    (*out)[{st.st_dev, st.st_ino}] = static_cast<long long>(st.st_blocks) * 512 / 1024;
  }
  closedir(d);
}

long long mem_available_kib() {
  FILE* f = fopen("/proc/meminfo", "r");
  if (!f) return -1;
  char line[256];
  long long kib = -1;
  while (fgets(line, sizeof line, f)) {
    if (strncmp(line, "MemAvailable:", 13) == 0) kib = strtoll(line + 13, nullptr, 10);
  }
  fclose(f);
  return kib;
}

struct MemResult {
  bool measured = false;
  std::string skipped;       // why not measured
  double pss_mib = 0;        // clients (+ daemon)
  double pss_daemon_mib = 0;
  double mem_mib = 0;        // PSS outside enclave mappings + distinct enclave memfds
  double enclave_resident_mib = 0;
  int memfds = 0;
};

// N clients of mode `m` alive at once; `daemon` (> 0) is counted too.
bool measure_memory(const Env& env, Mode m, const std::string& image, const std::string& socket, int n, pid_t daemon,
                    MemResult* r, std::string* error) {
  std::vector<Child> kids(static_cast<size_t>(n));
  bool ok = true;
  for (auto& c : kids) {
    if (!spawn(client_argv(env, m, image, socket, true), env.client_log_fd, env.devnull, true, &c, error)) {
      ok = false;
      break;
    }
  }
  for (auto& c : kids) {
    if (!ok || c.pid <= 0) break;
    std::string line;
    if (!read_line(c.out, &line) || line != "ready") {
      *error = std::string("a held ") + mode_name(m) + " client failed";
      ok = false;
    }
  }
  if (ok) {
    std::vector<pid_t> pids;
    for (const auto& c : kids) pids.push_back(c.pid);
    if (daemon > 0) pids.push_back(daemon);
    long long pss = 0, outside = 0;
    std::map<std::pair<dev_t, ino_t>, long long> memfds;
    for (pid_t p : pids) {
      const long long total = rollup_pss_kib(p);
      const long long encl = enclave_vma_pss_kib(p);
      if (total < 0 || encl < 0) {
        *error = "cannot read /proc/" + std::to_string(p) + "/smaps";
        ok = false;
        break;
      }
      pss += total;
      outside += total - encl;
      if (p == daemon) r->pss_daemon_mib = static_cast<double>(total) / 1024;
      enclave_memfds(p, &memfds);
    }
    long long resident = 0;
    for (const auto& [key, kib] : memfds) resident += kib;
    r->measured = ok;
    r->pss_mib = static_cast<double>(pss) / 1024;
    r->enclave_resident_mib = static_cast<double>(resident) / 1024;
    r->mem_mib = static_cast<double>(outside + resident) / 1024;
    r->memfds = static_cast<int>(memfds.size());
  }
  for (auto& c : kids) {
    const std::string end = reap(&c);
    if (ok && !end.empty()) {
      *error = std::string("a held ") + mode_name(m) + " client ended badly (" + end + ")";
      ok = false;
    }
  }
  if (!ok) *error += "; its stderr:\n" + client_log_tail(env);
  return ok;
}

// ---- teemated ------------------------------------------------------------

bool can_connect(const std::string& path) {
  const int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (s < 0) return false;
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  snprintf(a.sun_path, sizeof a.sun_path, "%s", path.c_str());
  const bool ok = connect(s, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
  close(s);
  return ok;
}

// Starts teemated on `socket`, its stderr to `log`; waits until it accepts.
bool start_daemon(const Env& env, const std::string& socket, const std::string& log, pid_t* pid, std::string* error) {
  const int log_fd = open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (log_fd < 0) {
    *error = log + ": " + strerror(errno);
    return false;
  }
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, env.devnull, 0);
  posix_spawn_file_actions_adddup2(&fa, log_fd, 1);
  posix_spawn_file_actions_adddup2(&fa, log_fd, 2);
  std::vector<std::string> argv{env.teemated, "--socket", socket};
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  const int rc = posix_spawn(pid, args[0], &fa, nullptr, args.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  close(log_fd);
  if (rc != 0) {
    *error = "cannot start " + env.teemated + ": " + strerror(rc);
    return false;
  }
  for (int i = 0; i < 500; ++i) {
    if (can_connect(socket)) return true;
    int status = 0;
    if (waitpid(*pid, &status, WNOHANG) == *pid) {
      *error = "teemated exited at start-up; see " + log;
      *pid = -1;
      return false;
    }
    const timespec ten_ms{0, 10 * 1000 * 1000};
    nanosleep(&ten_ms, nullptr);
  }
  *error = "teemated did not accept connections within 5 s; see " + log;
  return false;
}

// SIGTERM to the daemon we started; "" if it stopped cleanly.
std::string stop_daemon(pid_t* pid) {
  if (*pid <= 0) return "";
  kill(*pid, SIGTERM);
  Child c;
  c.pid = *pid;
  *pid = -1;
  return reap(&c);
}

// ---- the run -------------------------------------------------------------

struct SizeResult {
  int size_mib = 0;
  double added_mib = 0;
  uint32_t tcs = 0;
  Stats dedicated, shared, spawn, dedicated_exit, shared_exit, spawn_exit;
  struct PerN {
    int n = 0;
    MemResult dedicated, shared, spawn;
  };
  std::vector<PerN> mem;
};

bool parse_list(const std::string& s, std::vector<int>* out) {
  out->clear();
  size_t start = 0;
  while (start <= s.size()) {
    const size_t comma = s.find(',', start);
    const std::string item = s.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
    int v = 0;
    if (!parse_positive(item.c_str(), &v)) return false;
    out->push_back(v);
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  return !out->empty();
}

std::string json_num(double v, int decimals = 3) { return fmt(v, decimals); }

std::string opt_num(const MemResult& m, double v) { return m.measured ? fmt(v, 2) : "null"; }

std::string json_line(const SizeResult& s, const SizeResult::PerN& p, bool quick) {
  std::string j = "{\"bench\":\"attach\",\"case\":\"attach_" + std::to_string(s.size_mib) + "m_n" +
                  std::to_string(p.n) + "\",\"size_mib\":" + std::to_string(s.size_mib) +
                  ",\"added_mib\":" + fmt(s.added_mib, 2) + ",\"tcs_count\":" + std::to_string(s.tcs) +
                  ",\"reps\":" + std::to_string(s.dedicated.n);
  auto timing = [&](const char* name, const Stats& st) {
    j += ",\"" + std::string(name) + "\":" + json_num(st.median) + ",\"" + name + "_min\":" + json_num(st.min) +
         ",\"" + name + "_max\":" + json_num(st.max);
  };
  timing("dedicated_ms", s.dedicated);
  timing("shared_ms", s.shared);
  timing("spawn_ms", s.spawn);
  j += ",\"dedicated_exit_ms\":" + json_num(s.dedicated_exit.median) +
       ",\"shared_exit_ms\":" + json_num(s.shared_exit.median) + ",\"spawn_exit_ms\":" + json_num(s.spawn_exit.median);
  j += ",\"shared_speedup\":" + (s.shared.median > 0 ? fmt(s.dedicated.median / s.shared.median, 2) : "null");
  j += ",\"shared_vs_spawn\":" + (s.spawn.median > 0 ? fmt(s.shared.median / s.spawn.median, 2) : "null");
  j += ",\"n\":" + std::to_string(p.n);
  j += ",\"pss_dedicated_mib\":" + opt_num(p.dedicated, p.dedicated.pss_mib);
  j += ",\"pss_shared_mib\":" + opt_num(p.shared, p.shared.pss_mib);
  j += ",\"pss_daemon_mib\":" + opt_num(p.shared, p.shared.pss_daemon_mib);
  j += ",\"pss_spawn_mib\":" + opt_num(p.spawn, p.spawn.pss_mib);
  const bool both = p.dedicated.measured && p.shared.measured;
  j += ",\"pss_ratio\":" + (both && p.shared.pss_mib > 0 ? fmt(p.dedicated.pss_mib / p.shared.pss_mib, 2) : "null");
  j += ",\"mem_dedicated_mib\":" + opt_num(p.dedicated, p.dedicated.mem_mib);
  j += ",\"mem_shared_mib\":" + opt_num(p.shared, p.shared.mem_mib);
  j += ",\"mem_ratio\":" + (both && p.shared.mem_mib > 0 ? fmt(p.dedicated.mem_mib / p.shared.mem_mib, 2) : "null");
  j += ",\"enclave_resident_dedicated_mib\":" + opt_num(p.dedicated, p.dedicated.enclave_resident_mib);
  j += ",\"enclave_resident_shared_mib\":" + opt_num(p.shared, p.shared.enclave_resident_mib);
  j += ",\"enclave_memfds_dedicated\":" + (p.dedicated.measured ? std::to_string(p.dedicated.memfds) : "null");
  j += ",\"enclave_memfds_shared\":" + (p.shared.measured ? std::to_string(p.shared.memfds) : "null");
  if (!p.dedicated.skipped.empty()) j += ",\"skipped\":\"" + json_escape(p.dedicated.skipped) + "\"";
  j += ",\"backend\":\"sim\",\"quick\":";
  j += quick ? "true" : "false";
  j += "}";
  return j;
}

std::string range(const Stats& s, int decimals) {
  return fmt(s.median, decimals) + " (" + fmt(s.min, decimals) + "-" + fmt(s.max, decimals) + ")";
}

void print_tables(const std::vector<SizeResult>& results, const Options& o) {
  printf("teemate-bench-attach%s: backend sim; times in ms, median (min-max) over %zu runs; memory in MiB\n\n",
         o.quick ? " --quick" : "", results.empty() ? size_t{0} : results[0].dedicated.n);
  printf("%-6s %26s %22s %22s %8s %8s %12s %12s\n", "size", "dedicated_ms", "shared_ms", "spawn_ms", "speedup",
         "sh/spawn", "ded_exit_ms", "sh_exit_ms");
  for (const auto& s : results) {
    printf("%-6s %26s %22s %22s %7.1fx %7.2fx %12s %12s\n", (std::to_string(s.size_mib) + "M").c_str(),
           range(s.dedicated, 2).c_str(), range(s.shared, 2).c_str(), range(s.spawn, 2).c_str(),
           s.shared.median > 0 ? s.dedicated.median / s.shared.median : 0.0,
           s.spawn.median > 0 ? s.shared.median / s.spawn.median : 0.0, fmt(s.dedicated_exit.median, 2).c_str(),
           fmt(s.shared_exit.median, 2).c_str());
  }
  printf("\n%-6s %4s %14s %11s %10s %10s %9s %14s %11s %9s %11s\n", "size", "N", "pss_dedicated", "pss_shared",
         "(daemon)", "pss_spawn", "pss_ratio", "mem_dedicated", "mem_shared", "mem_ratio", "memfds d/s");
  auto cell = [](const MemResult& m, double v) { return m.measured ? fmt(v, 1) : std::string("skipped"); };
  for (const auto& s : results) {
    for (const auto& p : s.mem) {
      const bool both = p.dedicated.measured && p.shared.measured;
      printf("%-6s %4d %14s %11s %10s %10s %9s %14s %11s %9s %11s\n", (std::to_string(s.size_mib) + "M").c_str(),
             p.n, cell(p.dedicated, p.dedicated.pss_mib).c_str(), cell(p.shared, p.shared.pss_mib).c_str(),
             cell(p.shared, p.shared.pss_daemon_mib).c_str(), cell(p.spawn, p.spawn.pss_mib).c_str(),
             both ? (fmt(p.dedicated.pss_mib / p.shared.pss_mib, 2) + "x").c_str() : "-",
             cell(p.dedicated, p.dedicated.mem_mib).c_str(), cell(p.shared, p.shared.mem_mib).c_str(),
             both ? (fmt(p.dedicated.mem_mib / p.shared.mem_mib, 2) + "x").c_str() : "-",
             (std::to_string(p.dedicated.memfds) + "/" + std::to_string(p.shared.memfds)).c_str());
      if (!p.dedicated.skipped.empty()) printf("       N=%d dedicated skipped: %s\n", p.n, p.dedicated.skipped.c_str());
    }
  }
  // The targets, reported, not tuned for.
  printf("\ntargets (from the issue):\n");
  for (const auto& s : results) {
    if (s.size_mib != 256) continue;
    const double speedup = s.dedicated.median / s.shared.median;
    const double vs_spawn = s.shared.median / s.spawn.median;
    printf("  shared >= 50x faster than dedicated at 256 MiB: %s (%.1fx)\n", speedup >= 50 ? "met" : "NOT met",
           speedup);
    printf("  shared within 2x of spawn at 256 MiB:           %s (%.2fx)\n", vs_spawn <= 2 ? "met" : "NOT met",
           vs_spawn);
  }
  for (const auto& s : results) {
    for (const auto& p : s.mem) {
      if (p.n != 32 || !p.dedicated.measured || !p.shared.measured) continue;
      const double pr = p.dedicated.pss_mib / p.shared.pss_mib, mr = p.dedicated.mem_mib / p.shared.mem_mib;
      printf("  N=32, %3d MiB: total PSS >= 8x lower shared:    %s (%.2fx); by mem_*: %s (%.2fx)\n", s.size_mib,
             pr >= 8 ? "met" : "NOT met", pr, mr >= 8 ? "met" : "NOT met", mr);
    }
  }
  printf("\n");
}

// Removes our scratch files (kept when something failed, for the logs).
void cleanup(const Env& env, const std::vector<std::string>& files) {
  for (const auto& f : files) unlink(f.c_str());
  unlink(env.client_log.c_str());
  rmdir(env.tmpdir.c_str());
}

int run(const Options& o, std::vector<int> sizes, std::vector<int> counts) {
  const std::string dir = enclave_dir(o);
  char exe[PATH_MAX];
  const ssize_t len = readlink("/proc/self/exe", exe, sizeof exe - 1);
  const std::string self = len > 0 ? std::string(exe, static_cast<size_t>(len)) : "";
  const std::string bin = self.substr(0, self.find_last_of('/'));
  Env env;
  env.client = bin + "/teemate-bench-attach-client";
  env.teemated = bin + "/teemated";
  for (const auto& p : {env.client, env.teemated}) {
    if (access(p.c_str(), X_OK) != 0) {
      fprintf(stderr, "teemate-bench-attach: %s not found (build teemate_bench_attach)\n", p.c_str());
      return 1;
    }
  }
  const int max_n = *std::max_element(counts.begin(), counts.end());
  if (max_n > static_cast<int>(kImageTcs)) {
    fprintf(stderr, "teemate-bench-attach: --counts: at most %u processes (the images have %u TCS)\n", kImageTcs,
            kImageTcs);
    return 2;
  }
  std::vector<SizeResult> results;
  for (int mib : sizes) {
    const std::string path = dir + "/bench_attach_" + std::to_string(mib) + "m.tme";
    auto probe = image::load_image(path);
    if (!probe.ok()) {
      fprintf(stderr, "teemate-bench-attach: %s (build the bench enclaves, or pass --enclave-dir)\n",
              probe.status().to_string().c_str());
      return 1;
    }
    if (probe->layout.size() != (uint64_t{static_cast<unsigned>(mib)} << 20) ||
        probe->layout.config().tcs_count < static_cast<uint32_t>(max_n)) {
      fprintf(stderr, "teemate-bench-attach: %s: enclave of %llu bytes with %u TCS; expected %d MiB and >= %d TCS\n",
              path.c_str(), static_cast<unsigned long long>(probe->layout.size()), probe->layout.config().tcs_count,
              mib, max_n);
      return 1;
    }
    SizeResult r;
    r.size_mib = mib;
    r.tcs = probe->layout.config().tcs_count;
    r.added_mib = static_cast<double>(probe->layout.total_pages() * 4096) / (1 << 20);
    results.push_back(r);
  }

  char tmpl[] = "/tmp/teemate-bench-attach-XXXXXX";
  if (!mkdtemp(tmpl)) {
    perror("teemate-bench-attach: mkdtemp");
    return 1;
  }
  env.tmpdir = tmpl;
  env.client_log = env.tmpdir + "/clients.log";
  env.client_log_fd = open(env.client_log.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
  env.devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
  if (env.client_log_fd < 0 || env.devnull < 0) {
    perror("teemate-bench-attach: opening scratch files");
    return 1;
  }
  const std::string socket = env.tmpdir + "/teemated.sock";
  std::vector<std::string> scratch{socket};
  const int reps = o.reps > 0 ? o.reps : (o.quick ? 3 : 21);
  std::string error;
  pid_t daemon = -1;

  auto failed = [&](const std::string& what) {
    fprintf(stderr, "teemate-bench-attach: %s\n", what.c_str());
    const std::string end = stop_daemon(&daemon);
    if (!end.empty()) fprintf(stderr, "teemate-bench-attach: teemated: %s\n", end.c_str());
    fprintf(stderr, "teemate-bench-attach: logs kept in %s\n", env.tmpdir.c_str());
    return 1;
  };

  for (SizeResult& r : results) {
    const std::string image = dir + "/bench_attach_" + std::to_string(r.size_mib) + "m.tme";
    const std::string dlog = env.tmpdir + "/teemated-" + std::to_string(r.size_mib) + "m.log";
    scratch.push_back(dlog);
    // A fresh daemon per size: it holds only the enclave being measured.
    progress(std::to_string(r.size_mib) + " MiB: starting teemated");
    if (!start_daemon(env, socket, dlog, &daemon, &error)) return failed(error);
    // Warm-up, untimed: the daemon loads the image (first attach), and each
    // mode runs once (page cache, dynamic linker caches).
    double ms = 0, exit_ms = 0;
    for (Mode m : {Mode::kShared, Mode::kDedicated, Mode::kSpawn, Mode::kShared}) {
      if (!time_one(env, m, image, socket, &ms, &exit_ms, &error)) return failed("warm-up: " + error);
    }
    std::map<Mode, std::vector<double>> t, te;
    const Mode order[3] = {Mode::kDedicated, Mode::kShared, Mode::kSpawn};
    for (int rep = 0; rep < reps; ++rep) {
      for (int k = 0; k < 3; ++k) {
        const Mode m = order[(rep + k) % 3];
        if (!time_one(env, m, image, socket, &ms, &exit_ms, &error)) return failed(error);
        t[m].push_back(ms);
        te[m].push_back(exit_ms);
      }
      progress(std::to_string(r.size_mib) + " MiB: timing rep " + std::to_string(rep + 1) + "/" +
               std::to_string(reps));
    }
    r.dedicated = summarize(t[Mode::kDedicated]);
    r.shared = summarize(t[Mode::kShared]);
    r.spawn = summarize(t[Mode::kSpawn]);
    r.dedicated_exit = summarize(te[Mode::kDedicated]);
    r.shared_exit = summarize(te[Mode::kShared]);
    r.spawn_exit = summarize(te[Mode::kSpawn]);

    for (int n : counts) {
      SizeResult::PerN p;
      p.n = n;
      progress(std::to_string(r.size_mib) + " MiB: memory, N = " + std::to_string(n));
      if (!measure_memory(env, Mode::kSpawn, image, socket, n, -1, &p.spawn, &error)) return failed(error);
      // Dedicated enclaves are resident in full (EADD wrote every page).
      const long long need_kib = static_cast<long long>(n) * (r.size_mib + 16) * 1024 + 512 * 1024;
      const long long avail = mem_available_kib();
      if (avail >= 0 && need_kib > avail) {
        p.dedicated.skipped = "needs about " + std::to_string(need_kib / 1024) + " MiB, MemAvailable is " +
                              std::to_string(avail / 1024) + " MiB";
        progress("N = " + std::to_string(n) + " dedicated skipped: " + p.dedicated.skipped);
      } else if (!measure_memory(env, Mode::kDedicated, image, socket, n, -1, &p.dedicated, &error)) {
        return failed(error);
      }
      if (!measure_memory(env, Mode::kShared, image, socket, n, daemon, &p.shared, &error)) return failed(error);
      r.mem.push_back(p);
    }
    const std::string end = stop_daemon(&daemon);
    if (!end.empty()) return failed("teemated did not stop cleanly: " + end);
  }

  if (!o.json_only) print_tables(results, o);
  for (const auto& s : results) {
    for (const auto& p : s.mem) printf("%s\n", json_line(s, p, o.quick).c_str());
  }
  fflush(stdout);
  close(env.client_log_fd);
  close(env.devnull);
  cleanup(env, scratch);
  return 0;
}

}  // namespace
}  // namespace teemate::bench

int main(int argc, char** argv) {
  using namespace teemate::bench;
  // Our own options first; the rest are the common ones of bench_util.h.
  std::vector<int> sizes{16, 64, 256}, counts{1, 8, 32};
  bool counts_given = false;
  std::vector<char*> rest{argv[0]};
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    std::string name;
    for (const char* opt : {"--sizes", "--counts"}) {
      if (a == opt || a.rfind(std::string(opt) + "=", 0) == 0) name = opt;
    }
    if (a == "--verbose" || a == "-v") {
      verbose = true;
      continue;
    }
    if (name.empty()) {
      rest.push_back(argv[i]);
      continue;
    }
    std::string value;
    if (a == name) {
      if (i + 1 >= argc) {
        fprintf(stderr, "teemate-bench-attach: %s needs a value\n", name.c_str());
        return 2;
      }
      value = argv[++i];
    } else {
      value = a.substr(name.size() + 1);
    }
    std::vector<int>* list = name == "--sizes" ? &sizes : &counts;
    if (!parse_list(value, list)) {
      fprintf(stderr, "teemate-bench-attach: %s wants a comma-separated list of positive integers, got '%s'\n",
              name.c_str(), value.c_str());
      return 2;
    }
    if (name == "--counts") counts_given = true;
  }
  Options o;
  std::string error;
  if (!parse_options(static_cast<int>(rest.size()), rest.data(), &o, &error)) {
    fprintf(stderr, "teemate-bench-attach: %s\n", error.c_str());
    return 2;
  }
  if (o.help) {
    fputs(kUsage, stdout);
    return 0;
  }
  for (int s : sizes) {
    if (s != 16 && s != 64 && s != 256) {
      fprintf(stderr, "teemate-bench-attach: --sizes: %d MiB has no image (16, 64 or 256)\n", s);
      return 2;
    }
  }
  if (o.quick && !counts_given) counts = {1, 8};
  return run(o, sizes, counts);
}
