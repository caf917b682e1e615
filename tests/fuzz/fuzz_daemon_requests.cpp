// libFuzzer target over teemated's request handling (not only framing): a
// real Daemon on the sim backend runs on a thread of this process, and each
// input is sent to it as one framed request on a fresh connection (after a
// hello when the first byte's bit 0 is set; when bit 1 is set and the rest
// parses as JSON, with the descriptor of $TEEMATE_FUZZ_IMAGE attached, as a
// load carries its image). Whatever the daemon replies,
// it must then still answer a list on a new connection within 5 s: a daemon
// that died (an uncaught exception aborts the process) or wedged is a
// crash. Seeds: run_fuzz_daemon.sh writes valid requests of every kind.
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <mutex>
#include <string>
#include <thread>

#include "host/daemon/server.h"
#include "host/daemon/protocol.h"

namespace {

std::string g_socket;

void start_daemon_once() {
  static std::once_flag once;
  std::call_once(once, [] {
    char dir[] = "/tmp/teemate-fuzz-daemon.XXXXXX";
    if (!mkdtemp(dir)) abort();
    g_socket = std::string(dir) + "/teemated.sock";
    teemate::daemon::DaemonOptions o;
    o.socket_path = g_socket;
    o.state_dir = std::string(dir) + "/state";
    std::thread([o] {
      auto d = teemate::daemon::Daemon::create(o);
      if (!d.ok()) {
        std::fprintf(stderr, "fuzz: teemated did not start: %s\n", d.status().message().c_str());
        abort();
      }
      (void)(*d)->run();
      abort();  // it never stops on its own
    }).detach();
    for (int i = 0; i < 500 && !std::filesystem::exists(g_socket); ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
  });
}

void send_all(int fd, const void* p, size_t n) {
  const auto* b = static_cast<const uint8_t*>(p);
  while (n) {
    ssize_t k = send(fd, b, n, MSG_NOSIGNAL);
    if (k <= 0) return;
    b += k;
    n -= static_cast<size_t>(k);
  }
}

// Sends one input as a request on connection s; waits for the reply.
void send_input(int s, const uint8_t* data, size_t size) {
  using namespace teemate;
  static const char* image = std::getenv("TEEMATE_FUZZ_IMAGE");
  if ((data[0] & 2) && image) {
    auto body = nlohmann::json::parse(data + 1, data + size, nullptr, false);
    if (!body.is_discarded() && body.is_object()) {
      protocol::UniqueFd f(open(image, O_RDONLY | O_CLOEXEC));
      const int fds[] = {f.get()};
      if (f && protocol::send_message(s, body, fds, 5000).ok()) (void)protocol::recv_reply(s, 5000);
      return;
    }
  }
  const uint32_t n = static_cast<uint32_t>(size - 1);
  const uint8_t len[4] = {static_cast<uint8_t>(n), static_cast<uint8_t>(n >> 8), static_cast<uint8_t>(n >> 16),
                          static_cast<uint8_t>(n >> 24)};
  send_all(s, len, 4);
  send_all(s, data + 1, n);
  (void)protocol::recv_reply(s, 5000);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace teemate;
  start_daemon_once();
  if (size < 1 || size > protocol::kMaxMessage + 1) return 0;
  {
    auto s = protocol::connect_unix(g_socket);
    if (!s.ok()) abort();
    if (data[0] & 1) {
      if (!protocol::call(s->get(), protocol::make_request("hello", {{"client", "fuzz"}}), {}, 5000).ok()) abort();
    }
    send_input(s->get(), data, size);
  }
  auto probe = protocol::connect_unix(g_socket);
  if (!probe.ok()) abort();
  if (!protocol::call(probe->get(), protocol::make_request("hello", {{"client", "probe"}}), {}, 5000).ok() ||
      !protocol::call(probe->get(), protocol::make_request("list"), {}, 5000).ok()) {
    std::fprintf(stderr, "fuzz: teemated stopped answering\n");
    abort();
  }
  return 0;
}
