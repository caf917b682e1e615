// teemate-test-client: a process that attaches to a warm enclave through
// teemated and does one thing, for the shared-enclave tests:
//   count N IMAGE        add N to the enclave's shared counter, print it
//   spin IMAGE           print "inside", then loop inside an ECALL forever
//   foreign IMAGE        try every TCS not leased to us; print how many faulted
//   sleep-attached IMAGE print "attached", then sleep (to be killed)
// Socket from $TEEMATE_SOCKET. Exit status 0 on success.
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "common/enclave_abi.h"
#include "host/backend/backend.h"
#include "host/daemon/protocol.h"
#include "host/image/image_file.h"
#include "teemate/enclave.h"
#include "test_enclave_ids.h"

using namespace teemate;

namespace {

int fail(const std::string& what) {
  std::fprintf(stderr, "teemate-test-client: %s\n", what.c_str());
  return 1;
}

int no_aex(host::EnterContext*) { return 1; }

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
    std::vector<uint8_t> scratch(abi::kOcallScratchSize);
    abi::CallFrame f{};
    f.abi_version = abi::kAbiVersion;
    f.call_id = kEcallAdd;
    f.ocall_scratch = reinterpret_cast<uint64_t>(scratch.data());
    f.ocall_scratch_size = scratch.size();
    host::EnterContext ctx{};
    ctx.tcs = tcs;
    ctx.rdi = abi::kEntryEcall;
    ctx.rsi = reinterpret_cast<uint64_t>(&f);
    ctx.on_aex = no_aex;
    (*e)->enter(&ctx);
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
  if (cmd == "sleep-attached") {
    std::printf("attached\n");
    std::fflush(stdout);
    for (;;) pause();
  }
  return fail("unknown command " + cmd);
}
