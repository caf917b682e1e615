// teemate-test-client: a process that attaches to a warm enclave through
// teemated and does one thing, for the shared-enclave tests:
//   count N IMAGE        add N to the enclave's shared counter, print it
//   spin IMAGE           print "inside", then loop inside an ECALL forever
//   handoff IMAGE        connect, then let a forked child attach over that
//                        connection and loop inside; print "inside CHILDPID"
//   foreign IMAGE        act as a hostile co-tenant: enter every TCS without a
//                        token, with ours on TCS not leased to us, and make
//                        every control ECALL; print what the enclave allowed
//   sleep-attached IMAGE print "attached", then sleep (to be killed)
//   leak N IMAGE         malloc N bytes in the enclave, never free them, print
//                        "<process arena used> <global heap used> <context id>", then sleep
//   lock-spin IMAGE      print "inside", then take the shared enclave lock and spin
//   trylock IMAGE        print 1 if the shared enclave lock is free, else 0
//   threads T C IMAGE    lease T TCS, run C counter ECALLs on each of T threads
//   echo-threads T IMAGE lease T TCS; T threads echo 4 KiB buffers for ever;
//                        print "running" once each thread made a call
//   fork-call IMAGE      attach, fork; the child's two calls must fail at once
//                        (not hang); print "child: <error>" then the parent's
//                        "parent ok"
//   heap IMAGE           print the global heap bytes in use
//   exec-inside IMAGE    lease 2 TCS, loop inside an ECALL on one thread,
//                        print "inside", then execve /bin/sleep 30
//   sealkey IMAGE        print the enclave's MRENCLAVE-policy seal key (hex)
//   count-domain D N IMAGE   count, with the image loaded into trust domain D
//   sleep-domain D IMAGE     sleep-attached, in trust domain D
//   attach-id ID IMAGE   attach to enclave ID (IMAGE unused)
//   attach-mr MR IMAGE   attach to the enclave with MRENCLAVE MR
//   list-ids IMAGE       print the ids of the enclaves teemated lists to us
//   list-attached IMAGE  print "uid U pid P" (P "-" when hidden) per attached process
//   load-path-only IMAGE a load naming IMAGE without its descriptor
//   hold-connections N IMAGE  open N connections at once; print how many
//                        were served a hello
//   load-new-hold N IMAGE load N fresh instances of IMAGE ("new": true) and
//                        lease a TCS of each; print "ok" or the error code of
//                        each, then sleep holding them
//   load-opath IMAGE     a load whose descriptor is O_PATH (no read access)
//   stash KIND TEXT IMAGE keep TEXT in enclave memory of KIND (shared or
//                        process) behind a shared global pointer; print "stored"
//   peek IMAGE           print "<1 if that pointer is shared memory> <length>
//                        <the bytes it points to now, as text>"
//   stash-hold KIND TEXT IMAGE  stash, print "stored", wait for SIGUSR1, then
//                        peek and print as peek does
//   free-stash IMAGE     free() the block the global points to; print "freed"
//   realloc-stash process|shared IMAGE   the same with realloc / tm_shared_realloc to 1 MiB
//   map-put K V IMAGE    put K=V into the enclave's global shared_map
//   map-get K IMAGE      print V, or "app-error CODE" for an application error
//   shared-api IMAGE     print 1 when the tm_shared_* edge cases hold
//   map-fill P N IMAGE   put N keys P0..P(N-1) into the shared_map; print "filled"
// Socket from $TEEMATE_SOCKET. Exit status 0 on success.
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <array>
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

// An attachment made by hand (below the public API), over connection sock.
struct HandAttached {
  std::unique_ptr<host::Backend> backend;
  std::unique_ptr<host::BackendEnclave> enclave;
  nlohmann::json reply;
};
Result<HandAttached> attach_by_hand(int sock, const std::string& image) {
  if (!protocol::call(sock, protocol::make_request("hello", {{"client", "by-hand"}})).ok()) return internal_error("hello");
  protocol::UniqueFd file(open(image.c_str(), O_RDONLY | O_CLOEXEC));
  const int fds[] = {file.get()};
  TM_ASSIGN_OR_RETURN(auto loaded, protocol::call(sock, protocol::make_request("load", {{"image", image}}), fds));
  TM_ASSIGN_OR_RETURN(auto att, protocol::call(sock, protocol::make_request(
                                                         "attach", {{"enclave", loaded.body["enclave"]}, {"tcs", 1}})));
  host::AttachHandles h;
  for (auto& fd : att.fds) h.fds.push_back(fd.get());
  h.base = att.body["base"].get<uint64_t>();
  h.size = att.body["size"].get<uint64_t>();
  HandAttached a;
  TM_ASSIGN_OR_RETURN(a.backend, host::open_backend("sim"));
  TM_ASSIGN_OR_RETURN(a.enclave, a.backend->attach(h));
  a.reply = att.body;
  return a;
}

std::array<uint64_t, 4> token_of(const nlohmann::json& tcs) {
  const std::string hex = tcs["token"].get<std::string>();
  return {std::strtoull(hex.substr(0, 16).c_str(), nullptr, 16), std::strtoull(hex.substr(16, 16).c_str(), nullptr, 16),
          0, 0};
}

// A process connects, then hands its connection to a child (fork) that
// attaches over it and loops inside an ECALL; the parent then waits to be
// killed. The daemon takes the attachment for the parent's.
int handoff(const std::string& image) {
  auto sock = protocol::connect_unix(default_daemon_socket());
  if (!sock.ok()) return fail(sock.status().message());
  pid_t child = fork();
  if (child < 0) return fail("fork");
  if (child == 0) {
    auto a = attach_by_hand(sock->get(), image);
    if (!a.ok()) std::_Exit(fail(a.status().message()));
    const auto token = token_of(a->reply["tcs"][0]);
    std::printf("inside %d\n", getpid());
    std::fflush(stdout);
    host::EnterContext ctx{};
    testing::raw_ecall(*a->enclave, a->reply["tcs"][0]["address"].get<uint64_t>(), kEcallSpin, &ctx, token.data());
    std::_Exit(fail("the spin returned"));
  }
  for (;;) pause();
}

// Attaches by hand (below the public API) so that it can try TCS that the
// daemon did not lease to this process.
int foreign(const std::string& image) {
  auto sock = protocol::connect_unix(default_daemon_socket());
  if (!sock.ok()) return fail(sock.status().message());
  auto a = attach_by_hand(sock->get(), image);
  if (!a.ok()) return fail(a.status().message());
  host::BackendEnclave& e = *a->enclave;
  const nlohmann::json& reply = a->reply;
  const uint64_t mine = reply["tcs"][0]["address"].get<uint64_t>();
  const auto token_words = token_of(reply["tcs"][0]);
  const uint64_t* token = token_words.data();
  auto status_of = [](const host::EnterContext& ctx) -> int64_t {
    if (ctx.out_rdi == host::kExitEncluFault) return -1;  // busy
    return ctx.out_rdi == abi::kExitReturn ? static_cast<int32_t>(ctx.out_rsi) : -2;
  };
  // The sim applies a TCS block's permissions in an attached process when
  // the block is first used (sim_deferred_blocks.cpp): host code reading the
  // SSA page of a TCS this process never entered must still work, through
  // the fault-and-retry path (a crash here fails the test).
  {
    const uint32_t other = e.tcs_address(e.tcs_count() - 1) == mine ? e.tcs_count() - 2 : e.tcs_count() - 1;
    const volatile uint8_t* ssa = reinterpret_cast<const volatile uint8_t*>(e.tcs_address(other) + 4096);
    (void)*ssa;
  }
  int own_ok = 0, refused_untokened = 0, refused_foreign = 0, refused_control = 0, control_tries = 0;
  int refused_runtime = 0, runtime_tries = 0;
  for (uint32_t i = 0; i < e.tcs_count(); ++i) {
    const uint64_t tcs = e.tcs_address(i);
    host::EnterContext ctx{};
    testing::raw_ecall(e, tcs, kEcallAdd, &ctx);
    refused_untokened += status_of(ctx) == abi::kErrDenied;
    testing::raw_ecall(e, tcs, kEcallAdd, &ctx, token);
    if (tcs == mine) {
      if (status_of(ctx) != abi::kOk) return fail("our own TCS refused our token: " + std::to_string(status_of(ctx)));
      ++own_ok;
    } else {
      refused_foreign += status_of(ctx) == abi::kErrDenied;
    }
    // The daemon's control ECALLs, with no token and with our lease token,
    // naming every context handle a co-tenant could guess.
    for (uint32_t id = abi::kFirstControlEcall; id <= abi::kLastControlEcall; ++id) {
      for (const uint64_t* auth : {static_cast<const uint64_t*>(nullptr), token}) {
        for (uint64_t handle : {uint64_t{0}, (uint64_t{1} << 32) | 1, (uint64_t{1} << 32) | 2, (uint64_t{2} << 32) | 1}) {
          const uint64_t scalars[4] = {handle, 1, 1, 0};
          testing::raw_ecall(e, tcs, id, &ctx, auth, scalars);
          ++control_tries;
          refused_control += status_of(ctx) == abi::kErrDenied;
        }
      }
    }
    // The runtime's own ECALLs (tm_runtime.edl) on this TCS without a
    // token, and with ours where it is not ours: refused like any ECALL.
    for (uint32_t id = abi::kFirstRuntimeEcall; id <= abi::kLastRuntimeEcall; ++id) {
      testing::raw_ecall(e, tcs, id, &ctx);
      ++runtime_tries;
      refused_runtime += status_of(ctx) == abi::kErrDenied;
      if (tcs == mine) continue;
      testing::raw_ecall(e, tcs, id, &ctx, token);
      ++runtime_tries;
      refused_runtime += status_of(ctx) == abi::kErrDenied;
    }
  }
  std::printf("own %d untokened-refused %d foreign-refused %d control-refused %d/%d runtime-refused %d/%d of %u\n",
              own_ok, refused_untokened, refused_foreign, refused_control, control_tries, refused_runtime,
              runtime_tries, e.tcs_count());
  return 0;
}

// Commands that speak the protocol by hand (no attachment).
int raw_protocol(const std::string& cmd, const std::string& arg, const std::string& image) {
  if (cmd == "hold-connections") {
    std::vector<protocol::UniqueFd> open;
    int served = 0;
    for (int i = 0; i < std::atoi(arg.c_str()); ++i) {
      auto s = protocol::connect_unix(default_daemon_socket());
      if (!s.ok()) continue;
      if (protocol::call(s->get(), protocol::make_request("hello", {{"client", "hold"}}), {}, 2000).ok()) ++served;
      open.push_back(std::move(s).value());
    }
    std::printf("served %d\n", served);
    return 0;
  }
  auto sock = protocol::connect_unix(default_daemon_socket());
  if (!sock.ok()) return fail(sock.status().message());
  if (!protocol::call(sock->get(), protocol::make_request("hello", {{"client", cmd}})).ok()) return fail("hello");
  if (cmd == "load-path-only") {
    auto r = protocol::call(sock->get(), protocol::make_request("load", {{"image", image}}));
    return r.ok() ? 0 : fail(r.status().message());
  }
  if (cmd == "load-opath") {
    protocol::UniqueFd f(open(image.c_str(), O_PATH | O_CLOEXEC));
    const int fds[] = {f.get()};
    auto r = protocol::call(sock->get(), protocol::make_request("load", {{"image", image}}), fds);
    return r.ok() ? 0 : fail(r.status().message());
  }
  if (cmd == "load-new-hold") {
    std::string line;
    for (int i = 0; i < std::atoi(arg.c_str()); ++i) {
      protocol::UniqueFd f(open(image.c_str(), O_RDONLY | O_CLOEXEC));
      const int fds[] = {f.get()};
      auto r = protocol::call(sock->get(), protocol::make_request("load", {{"image", image}, {"new", true}}), fds);
      if (r.ok()) {
        r = protocol::call(sock->get(), protocol::make_request("attach", {{"enclave", r->body["enclave"]}, {"tcs", 1}}));
      }
      line += (line.empty() ? "" : " ") + std::string(r.ok() ? "ok" : code_name(r.status().code()));
    }
    std::printf("%s\n", line.c_str());
    std::fflush(stdout);
    for (;;) pause();
  }
  auto l = protocol::call(sock->get(), protocol::make_request("list"));
  if (!l.ok()) return fail(l.status().message());
  std::string line;
  for (const auto& e : l->body["enclaves"]) {
    if (cmd == "list-ids") {
      line += (line.empty() ? "" : " ") + std::to_string(e["enclave"].get<uint64_t>());
      continue;
    }
    for (const auto& a : e["attached"]) {
      std::printf("uid %llu pid %s\n", static_cast<unsigned long long>(a["uid"].get<uint64_t>()),
                  a.contains("pid") ? std::to_string(a["pid"].get<int64_t>()).c_str() : "-");
    }
  }
  if (cmd == "list-ids") std::printf("%s\n", line.c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) return fail("usage: teemate-test-client count N IMAGE | spin IMAGE | foreign IMAGE | sleep-attached IMAGE");
  std::string cmd = argv[1];
  const std::string image = argv[argc - 1];
  if (cmd == "foreign") return foreign(image);
  if (cmd == "handoff") return handoff(image);
  if (cmd == "list-ids" || cmd == "list-attached" || cmd == "load-path-only" || cmd == "hold-connections" ||
      cmd == "load-new-hold" || cmd == "load-opath") {
    return raw_protocol(cmd, argc > 3 ? argv[2] : "", image);
  }
  AttachOptions o;
  o.image = image;
  o.client_name = "test-client " + cmd;
  if (cmd == "count-domain" && argc == 5) {
    o.trust_domain = argv[2];
    cmd = "count";
    argv[2] = argv[3];
    argc = 4;
  } else if (cmd == "sleep-domain" && argc == 4) {
    o.trust_domain = argv[2];
    cmd = "sleep-attached";
  } else if (cmd == "attach-id" && argc == 4) {
    o.enclave_id = std::strtoull(argv[2], nullptr, 10);
    cmd = "count";
    argv[2] = const_cast<char*>("0");
  } else if (cmd == "attach-mr" && argc == 4) {
    o.mrenclave = argv[2];
    cmd = "count";
    argv[2] = const_cast<char*>("0");
  }
  if (cmd == "exec-inside") o.tcs = 2;
  if (cmd == "spawn-threads" && argc == 5) o.tcs = static_cast<uint32_t>(std::strtoul(argv[2], nullptr, 10));
  if ((cmd == "threads" && argc == 5) || (cmd == "echo-threads" && argc == 4)) o.tcs = static_cast<uint32_t>(std::strtoul(argv[2], nullptr, 10));
  if (cmd == "switchless") {  // both directions, one worker each, on 2 leased TCS
    o.tcs = 2;
    o.switchless.ocall_workers = 1;
    o.switchless.ecall_workers = 1;
    // Patient callers and workers that stay awake: on a loaded machine a
    // worker that sleeps after 0.5 ms is rarely running when a call comes
    // (CI saw none served in 20 s with the defaults).
    o.switchless.retries = 10000000;
    o.switchless.idle_us = 5000000;
  }
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
  if (cmd == "echo-threads" && argc == 4) {
    std::atomic<uint32_t> started{0};
    std::vector<std::thread> threads;
    for (uint32_t t = 0; t < o.tcs; ++t) {
      threads.emplace_back([&, t] {
        std::vector<uint8_t> in(4096, static_cast<uint8_t>(t)), out(4096);
        for (bool first = true;; first = false) {
          CallArgs a;
          a.in(in).out(out);
          if (!(*e)->call(kEcallEcho, a).ok() || out != in) {
            std::fprintf(stderr, "echo failed\n");
            std::_Exit(1);
          }
          if (first && ++started == o.tcs) {
            std::printf("running\n");
            std::fflush(stdout);
          }
        }
      });
    }
    for (auto& t : threads) t.join();
    return 0;
  }
  if (cmd == "fork-call") {
    pid_t child = fork();
    if (child < 0) return fail("fork");
    if (child == 0) {
      CallArgs a1, a2;
      a1.scalar(0, 1);
      a2.scalar(0, 1);
      Status s1 = (*e)->call(kEcallCount, a1);
      Status s2 = (*e)->call(kEcallCount, a2);
      if (s1.ok() || s2.ok()) std::_Exit(3);
      std::printf("child: %s\n", s2.message().c_str());
      std::fflush(stdout);
      std::_Exit(0);
    }
    int status = 0;
    waitpid(child, &status, 0);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) return fail("the forked child did not fail cleanly");
    CallArgs a;
    a.scalar(0, 1);
    Status st = (*e)->call(kEcallCount, a);
    if (!st.ok()) return fail("parent: " + st.message());
    std::printf("parent ok\n");
    return 0;
  }
  if (cmd == "sealkey") {
    std::vector<uint8_t> key_id(32, 0x11), key(16);
    CallArgs a;
    a.scalar(0, 4 /* SEAL */).scalar(1, 1 /* MRENCLAVE */).in(key_id).out(key);
    Status st = (*e)->call(kEcallGetKey, a);
    if (!st.ok() || a.scalar_value(2) != 0) return fail("EGETKEY failed: " + st.message());
    for (uint8_t b : key) std::printf("%02x", b);
    std::printf("\n");
    return 0;
  }
  if (cmd == "exec-inside") {
    std::thread([&] {
      CallArgs a;
      (void)(*e)->call(kEcallSpin, a);
    }).detach();
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    std::printf("inside\n");
    std::fflush(stdout);
    execl("/bin/sleep", "sleep", "30", static_cast<char*>(nullptr));
    return fail("execl");
  }
  if (cmd == "heap") {
    CallArgs a;
    Status st = (*e)->call(kEcallHeapStats, a);
    if (!st.ok()) return fail(st.message());
    std::printf("%llu\n", static_cast<unsigned long long>(a.scalar_value(0)));
    return 0;
  }
  if (cmd == "wait-flag" && argc == 5) {  // VALUE TIMEOUT_MS: prints "waiting", then "RC VALUE"
    std::printf("waiting\n");
    std::fflush(stdout);
    CallArgs a;
    a.scalar(0, std::strtoull(argv[2], nullptr, 10)).scalar(1, std::strtoull(argv[3], nullptr, 10) * 1000000ull);
    Status st = (*e)->call(kEcallWaitFlag, a);
    if (!st.ok()) return fail(st.message());
    std::printf("%llu %llu\n", static_cast<unsigned long long>(a.scalar_value(0)),
                static_cast<unsigned long long>(a.scalar_value(1)));
    return 0;
  }
  if (cmd == "set-flag" && argc == 4) {
    CallArgs a;
    a.scalar(0, std::strtoull(argv[2], nullptr, 10));
    Status st = (*e)->call(kEcallSetFlag, a);
    if (!st.ok()) return fail(st.message());
    std::printf("set\n");
    return 0;
  }
  if (cmd == "switchless") {  // prints "WRONG SERVED_BY_ECALL_WORKER SERVED_BY_OCALL_WORKER" (0/1 flags)
    Status st = (*e)->set_ocall(kOcallSwitchlessAdd, [](CallArgs& a) -> int32_t {
      if (a.buffer_count() != 1 || a.buffer(0).size != 8) return -22;
      uint64_t v = 0;
      std::memcpy(&v, a.buffer(0).data, 8);
      v += a.scalar_value(0);
      std::memcpy(a.buffer(0).data, &v, 8);
      a.buffer(0).out_size = 8;
      a.scalar_ref(1) = 2 * a.scalar_value(0);
      return 0;
    });
    if (!st.ok()) return fail(st.message());
    uint64_t wrong = 0;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    do {
      for (uint64_t i = 0; i < 100; ++i) {
        CallArgs add;
        add.scalar(0, i).scalar(1, getpid());
        if (!(*e)->call_switchless(kEcallAdd, add).ok() || add.scalar_value(2) != i + getpid()) ++wrong;
      }
      CallArgs loop;
      loop.scalar(0, 100);
      if (!(*e)->call(kEcallSwitchlessOcalls, loop).ok() || loop.scalar_value(0) != 5050 || loop.scalar_value(1)) ++wrong;
    } while (((*e)->switchless_stats().ecalls_by_workers == 0 || (*e)->switchless_stats().ocalls_by_workers == 0) &&
             std::chrono::steady_clock::now() < deadline);
    const SwitchlessStats s = (*e)->switchless_stats();
    std::printf("%llu %d %d\n", static_cast<unsigned long long>(wrong), s.ecalls_by_workers > 0 ? 1 : 0,
                s.ocalls_by_workers > 0 ? 1 : 0);
    return 0;
  }
  if (cmd == "spawn-threads" && argc == 5) {  // TCS N: prints "CREATED SUM ERRORS"
    CallArgs a;
    a.scalar(0, std::strtoull(argv[3], nullptr, 10));
    Status st = (*e)->call(kEcallSpawnThreads, a);
    if (!st.ok()) return fail(st.message());
    std::printf("%llu %llu %llu\n", static_cast<unsigned long long>(a.scalar_value(0)),
                static_cast<unsigned long long>(a.scalar_value(1)), static_cast<unsigned long long>(a.scalar_value(2)));
    return 0;
  }
  if ((cmd == "stash" || cmd == "stash-hold") && argc == 5) {
    sigset_t usr1;
    sigemptyset(&usr1);
    sigaddset(&usr1, SIGUSR1);
    sigprocmask(SIG_BLOCK, &usr1, nullptr);
    const std::string kind = argv[2], text = argv[3];
    CallArgs a;
    a.scalar(0, kind == "shared" ? 1 : 0).in(text);
    Status st = (*e)->call(kEcallStash, a);
    if (!st.ok()) return fail(st.message());
    std::printf("stored\n");
    std::fflush(stdout);
    if (cmd == "stash") return 0;
    int sig = 0;
    sigwait(&usr1, &sig);
    cmd = "peek";  // then print what the global points to now
  }
  if (cmd == "peek") {
    std::vector<uint8_t> out(4096);
    CallArgs a;
    a.out(out);
    Status st = (*e)->call(kEcallPeek, a);
    if (!st.ok()) return fail(st.message());
    std::string text;
    for (size_t i = 0; i < a.buffer(0).out_size; ++i) text += out[i] ? static_cast<char>(out[i]) : '.';
    std::printf("%llu %llu %s\n", static_cast<unsigned long long>(a.scalar_value(0)),
                static_cast<unsigned long long>(a.scalar_value(1)), text.c_str());
    return 0;
  }
  if (cmd == "free-stash" || (cmd == "realloc-stash" && argc == 4)) {
    CallArgs a;
    if (cmd == "realloc-stash") a.scalar(0, std::string(argv[2]) == "shared" ? 2 : 1);
    Status st = (*e)->call(kEcallFreeStash, a);
    if (!st.ok()) return fail(st.message());
    std::printf("freed\n");
    return 0;
  }
  if (cmd == "map-put" && argc == 5) {
    const std::string k = argv[2], v = argv[3];
    CallArgs a;
    a.in(k).in(v);
    Status st = (*e)->call(kEcallMapPut, a);
    if (!st.ok()) return fail(st.message());
    std::printf("put\n");
    return 0;
  }
  if (cmd == "map-get" && argc == 4) {
    const std::string k = argv[2];
    std::vector<uint8_t> out(4096);
    CallArgs a;
    a.in(k).out(out);
    Status st = (*e)->call(kEcallMapGet, a);
    if (st.code() == Code::kApplication) {
      std::printf("app-error %d\n", st.app_code());
      return 0;
    }
    if (!st.ok()) return fail(st.message());
    std::printf("%s\n", std::string(reinterpret_cast<char*>(out.data()), a.buffer(1).out_size).c_str());
    return 0;
  }
  if (cmd == "map-fill" && argc == 5) {
    const std::string prefix = argv[2];
    CallArgs a;
    a.in(prefix).scalar(0, std::strtoull(argv[3], nullptr, 10));
    Status st = (*e)->call(kEcallMapFill, a);
    if (!st.ok()) return fail(st.message());
    std::printf("filled\n");
    return 0;
  }
  if (cmd == "shared-api") {
    CallArgs a;
    Status st = (*e)->call(kEcallSharedApi, a);
    if (!st.ok()) return fail(st.message());
    std::printf("%llu\n", static_cast<unsigned long long>(a.scalar_value(0)));
    return 0;
  }
  if (cmd == "sleep-attached") {
    std::printf("attached\n");
    std::fflush(stdout);
    for (;;) pause();
  }
  return fail("unknown command " + cmd);
}
