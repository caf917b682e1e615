// teemate-test-client: a process that attaches to a warm enclave through
// teemated and does one thing, for the shared-enclave tests:
//   count N IMAGE        add N to the enclave's shared counter, print it
//   spin IMAGE           print "inside", then loop inside an ECALL forever
//   foreign IMAGE        try every TCS not leased to us; print how many faulted
//   sleep-attached IMAGE print "attached", then sleep (to be killed)
//   leak N IMAGE         malloc N bytes in the enclave, never free them, print
//                        "<process arena used> <global heap used> <context id>", then sleep
//   lock-spin IMAGE      print "inside", then take the shared enclave lock and spin
//   trylock IMAGE        print 1 if the shared enclave lock is free, else 0
//   threads T C IMAGE    lease T TCS, run C counter ECALLs on each of T threads
// Socket from $TEEMATE_SOCKET. Exit status 0 on success.
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <atomic>
#include <vector>

#include "common/enclave_abi.h"
#include "host/backend/backend.h"
#include "host/daemon/protocol.h"
#include "host/image/image_file.h"
#include "teemate/enclave.h"
#include "raw_ecall.h"
#include "test_enclave_ids.h"

using namespace teemate;

namespace {

int fail(const std::string& what) {
  std::fprintf(stderr, "teemate-test-client: %s\n", what.c_str());
  return 1;
}

// Attaches by hand (below the public API) so that it can try TCS that the
// daemon did not lease to this process.
int foreign(const std::string& image) {
  auto sock = protocol::connect_unix(default_daemon_socket());
  if (!sock.ok()) return fail(sock.status().message());
  if (!protocol::call(sock->get(), protocol::make_request("hello", {{"client", "foreign"}})).ok()) return fail("hello");
  auto loaded = protocol::call(sock->get(), protocol::make_request("load", {{"image", image}}));
  if (!loaded.ok()) return fail(loaded.status().message());
  auto att = protocol::call(sock->get(), protocol::make_request("attach", {{"enclave", loaded->body["enclave"]}, {"tcs", 1}}));
  if (!att.ok()) return fail(att.status().message());
  host::AttachHandles h;
  for (auto& fd : att->fds) h.fds.push_back(fd.get());
  h.base = att->body["base"].get<uint64_t>();
  h.size = att->body["size"].get<uint64_t>();
  auto backend = host::open_backend("sim");
  if (!backend.ok()) return fail(backend.status().message());
  auto e = (*backend)->attach(h);
  if (!e.ok()) return fail(e.status().message());
  const uint64_t mine = att->body["tcs"][0]["address"].get<uint64_t>();
  int faulted = 0, entered = 0;
  for (uint32_t i = 0; i < (*e)->tcs_count(); ++i) {
    const uint64_t tcs = (*e)->tcs_address(i);
    host::EnterContext ctx{};
    testing::raw_ecall(**e, tcs, kEcallAdd, &ctx);
    if (tcs == mine) {
      if (ctx.out_rdi != abi::kExitReturn) return fail("our own TCS was refused");
      ++entered;
    } else if (ctx.out_rdi == host::kExitEncluFault && ctx.fault_vector == 13) {
      ++faulted;
    }
  }
  std::printf("entered %d faulted %d of %u\n", entered, faulted, (*e)->tcs_count());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) return fail("usage: teemate-test-client count N IMAGE | spin IMAGE | foreign IMAGE | sleep-attached IMAGE");
  const std::string cmd = argv[1];
  const std::string image = argv[argc - 1];
  if (cmd == "foreign") return foreign(image);
  AttachOptions o;
  o.image = image;
  o.client_name = "test-client " + cmd;
  if (cmd == "threads" && argc == 5) o.tcs = static_cast<uint32_t>(std::strtoul(argv[2], nullptr, 10));
  auto e = Enclave::attach(o);
  if (!e.ok()) return fail(e.status().message());
  if (cmd == "count" && argc == 4) {
    CallArgs a;
    a.scalar(0, std::strtoull(argv[2], nullptr, 10));
    Status st = (*e)->call(kEcallCount, a);
    if (!st.ok()) return fail(st.message());
    std::printf("%llu\n", static_cast<unsigned long long>(a.scalar_value(1)));
    return 0;
  }
  if (cmd == "spin") {
    std::printf("inside\n");
    std::fflush(stdout);
    CallArgs a;
    Status st = (*e)->call(kEcallSpin, a);
    return st.ok() ? 0 : fail(st.message());
  }
  if (cmd == "leak" && argc == 4) {
    CallArgs a;
    a.scalar(0, std::strtoull(argv[2], nullptr, 10));
    Status st = (*e)->call(kEcallLeak, a);
    if (!st.ok()) return fail(st.message());
    std::printf("%llu %llu %llu\n", static_cast<unsigned long long>(a.scalar_value(1)),
                static_cast<unsigned long long>(a.scalar_value(2)), static_cast<unsigned long long>(a.scalar_value(3)));
    std::fflush(stdout);
    for (;;) pause();
  }
  if (cmd == "lock-spin") {
    std::printf("inside\n");
    std::fflush(stdout);
    CallArgs a;
    Status st = (*e)->call(kEcallLockAndSpin, a);
    return fail(st.ok() ? "the lock spinner returned" : st.message());
  }
  if (cmd == "trylock") {
    CallArgs a;
    Status st = (*e)->call(kEcallTryLock, a);
    if (!st.ok()) return fail(st.message());
    std::printf("%llu\n", static_cast<unsigned long long>(a.scalar_value(0)));
    return 0;
  }
  if (cmd == "threads" && argc == 5) {
    const int calls = std::atoi(argv[3]);
    std::atomic<int> failures{0};
    std::vector<std::thread> threads;
    for (uint32_t t = 0; t < o.tcs; ++t) {
      threads.emplace_back([&] {
        for (int i = 0; i < calls; ++i) {
          CallArgs a;
          a.scalar(0, 1);
          if (!(*e)->call(kEcallCount, a).ok()) failures++;
        }
      });
    }
    for (auto& t : threads) t.join();
    if (failures) return fail(std::to_string(failures.load()) + " ECALLs failed");
    std::printf("ok\n");
    return 0;
  }
  if (cmd == "sleep-attached") {
    std::printf("attached\n");
    std::fflush(stdout);
    for (;;) pause();
  }
  return fail("unknown command " + cmd);
}
