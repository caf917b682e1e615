// teemate-bench-attach-client: the process teemate-bench-attach spawns for one
// measurement (noop, dedicated enclave, or attach to teemated's warm enclave).
// It must never do more than its mode says: one empty ECALL, no extra work.
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <memory>
#include <string>

#include "bench_enclave_ids.h"
#include "teemate/enclave.h"

namespace {

constexpr const char* kUsage =
    "usage: teemate-bench-attach-client noop [--hold]\n"
    "       teemate-bench-attach-client dedicated IMAGE [--hold]\n"
    "       teemate-bench-attach-client shared IMAGE --socket PATH [--hold]\n"
    "\n"
    "One measured process of teemate-bench-attach (which spawns it; it is not\n"
    "meant to be run by hand, though it can be).\n"
    "\n"
    "modes:\n"
    "  noop       do nothing (the floor: the cost of starting this program)\n"
    "  dedicated  Enclave::load(IMAGE) (create, add and measure every page,\n"
    "             init), then one empty ECALL (bench enclave ECALL 0x100)\n"
    "  shared     Enclave::attach to the warm enclave of IMAGE that teemated\n"
    "             keeps at --socket PATH (one TCS), then the same empty ECALL\n"
    "\n"
    "Protocol: when the mode's work is done the client writes \"done\\n\" to\n"
    "stdout and exits. With --hold it writes \"ready\\n\" instead, keeps its\n"
    "enclave (and lease) and waits until stdin reaches end of file, then\n"
    "exits. Errors go to stderr; exit status 0 on success, 1 on a failure,\n"
    "2 on a usage error.\n";

// Writes all of `s` to fd 1; false if the reader went away.
bool say(const char* s) {
  size_t left = strlen(s);
  while (left > 0) {
    const ssize_t n = write(1, s, left);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    s += n;
    left -= static_cast<size_t>(n);
  }
  return true;
}

// Blocks until stdin is at end of file (the bench closed its end).
void wait_for_eof() {
  char buf[64];
  for (;;) {
    const ssize_t n = read(0, buf, sizeof buf);
    if (n == 0 || (n < 0 && errno != EINTR)) return;
  }
}

int fail(const std::string& what) {
  fprintf(stderr, "teemate-bench-attach-client: %s\n", what.c_str());
  return 1;
}

int usage_error(const std::string& what) {
  fprintf(stderr, "teemate-bench-attach-client: %s (see --help)\n", what.c_str());
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  std::string mode, image, socket_path;
  bool hold = false;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--help" || a == "-h") {
      fputs(kUsage, stdout);
      return 0;
    } else if (a == "--hold") {
      hold = true;
    } else if (a == "--socket") {
      if (i + 1 >= argc) return usage_error("--socket needs a value");
      socket_path = argv[++i];
    } else if (a.rfind("--socket=", 0) == 0) {
      socket_path = a.substr(9);
    } else if (!a.empty() && a[0] == '-') {
      return usage_error("unknown option '" + a + "'");
    } else if (mode.empty()) {
      mode = a;
    } else if (image.empty()) {
      image = a;
    } else {
      return usage_error("unexpected argument '" + a + "'");
    }
  }
  if (mode != "noop" && mode != "dedicated" && mode != "shared") {
    return usage_error(mode.empty() ? "no mode given" : "unknown mode '" + mode + "'");
  }
  if (mode == "noop" && !image.empty()) return usage_error("noop takes no image");
  if (mode != "noop" && image.empty()) return usage_error(mode + " needs an IMAGE");
  if (mode == "shared" && socket_path.empty()) return usage_error("shared needs --socket PATH");

  std::unique_ptr<teemate::Enclave> enclave;
  if (mode == "dedicated") {
    auto e = teemate::Enclave::load(image);
    if (!e.ok()) return fail(e.status().to_string());
    enclave = std::move(e).value();
  } else if (mode == "shared") {
    teemate::AttachOptions o;
    o.socket_path = socket_path;
    o.image = image;
    o.tcs = 1;
    o.client_name = "teemate-bench-attach-client";
    auto e = teemate::Enclave::attach(o);
    if (!e.ok()) return fail(e.status().to_string());
    enclave = std::move(e).value();
  }
  if (enclave) {
    teemate::CallArgs args;
    if (teemate::Status st = enclave->call(kBenchEcallNop, args); !st.ok()) return fail("first ECALL: " + st.to_string());
  }
  if (!say(hold ? "ready\n" : "done\n")) return fail("the bench closed the notify pipe");
  if (hold) wait_for_eof();
  return 0;
}
