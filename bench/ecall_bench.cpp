// teemate-bench-ecall: the cost of crossing the enclave boundary (empty ECALL,
// 4/64 KiB echo, OCALL round trip) on the sim backend. A benchmark, not a
// test: it must never be registered with CTest or change an enclave image.
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <ucontext.h>
#include <unistd.h>

#include <memory>
#include <string>
#include <vector>

#include "bench_enclave_ids.h"
#include "bench_util.h"
#include "common/enclave_abi.h"
#include "teemate/enclave.h"
#include "../tests/integration/test_enclave_ids.h"

namespace teemate::bench {
namespace {

constexpr const char* kUsage =
    "usage: teemate-bench-ecall [--quick] [--reps N] [--json] [--enclave-dir DIR]\n"
    "\n"
    "Measures enclave boundary crossings on the sim backend and prints a table,\n"
    "then one JSON object per row (median, min, max, p10, p90 over repetitions;\n"
    "each repetition times a batch of calls and divides by the batch size).\n"
    "\n"
    "cases (microseconds per operation):\n"
    "  host_ud2_trap           one ud2 -> SIGILL -> handler -> sigreturn in a plain\n"
    "                          host process (no enclave): the price of one emulated ENCLU\n"
    "  host_syscall_getppid    one trivial system call (no enclave)\n"
    "  host_arch_prctl_get_fs  arch_prctl(ARCH_GET_FS), which sim's trap path uses\n"
    "  host_arch_prctl_set_fs  arch_prctl(ARCH_SET_FS) to the current value (likewise)\n"
    "  ecall_roundtrip         smallest ECALL (test_enclave.tme's add: scalars only, no buffers)\n"
    "  ecall_user_nop          empty application ECALL on bench_ecall.tme\n"
    "  ecall_echo_4k           ECALL copying a 4 KiB in-buffer to a 4 KiB out-buffer\n"
    "  ecall_echo_64k          the same with 64 KiB\n"
    "  ecall_with_N_ocalls     one ECALL that makes N empty OCALLs (bench_ecall.tme)\n"
    "  ocall_roundtrip         (time(ECALL with N OCALLs) - time(ECALL with 0)) / N\n"
    "  ocall_switchless        ocall_roundtrip's measure with tm_ocall_switchless on a\n"
    "                          handle with one host OCALL worker (falls back to a\n"
    "                          crossing when the worker does not take the call)\n"
    "  ecall_switchless        ecall_user_nop through Enclave::call_switchless on a\n"
    "                          handle with one enclave ECALL worker\n"
    "  ocall_nested_minus_ping test_enclave's nested ECALL (one OCALL) minus ping:\n"
    "                          a cross-check of ocall_roundtrip\n"
    "\n"
    "options:\n"
    "  --quick            fewer repetitions and smaller batches (a few seconds)\n"
    "  --reps N           repetitions per case (default 40, quick 8)\n"
    "  --json             print only the JSON lines\n"
    "  --enclave-dir DIR  where test_enclave.tme and bench_ecall.tme are\n"
    "                     (default: <dir of this program>/../enclaves)\n"
    "  --help             this text\n";

// A batch of `ops` calls of f; returns seconds, or a negative value when a
// call failed (the error is printed).
template <typename F>
double time_batch(int ops, F&& f) {
  const auto t0 = Clock::now();
  for (int i = 0; i < ops; ++i) {
    Status st = f();
    if (!st.ok()) {
      fprintf(stderr, "teemate-bench-ecall: %s\n", st.to_string().c_str());
      return -1;
    }
  }
  return seconds_between(t0, Clock::now());
}

// `reps` batches of `ops` calls (after one warm-up batch), in µs per call.
template <typename F>
bool measure_us(int reps, int ops, F&& f, std::vector<double>* out) {
  if (time_batch(std::max(1, ops / 4), f) < 0) return false;
  for (int r = 0; r < reps; ++r) {
    const double s = time_batch(ops, f);
    if (s < 0) return false;
    out->push_back(s * 1e6 / ops);
  }
  return true;
}

// --- host-only trap baseline -------------------------------------------------

void skip_ud2(int, siginfo_t*, void* uc) {
  static_cast<ucontext_t*>(uc)->uc_mcontext.gregs[REG_RIP] += 2;
}

// Runs before any enclave is loaded (the sim backend installs its own SIGILL
// handler on first use); restores the previous action afterwards.
bool measure_host_trap(int reps, int ops, std::vector<double>* out) {
  struct sigaction sa {}, old {};
  sa.sa_sigaction = skip_ud2;
  sa.sa_flags = SA_SIGINFO;
  sigemptyset(&sa.sa_mask);
  if (sigaction(SIGILL, &sa, &old) != 0) {
    perror("teemate-bench-ecall: sigaction(SIGILL)");
    return false;
  }
  auto trap = [] {
    __asm__ volatile("ud2" ::: "memory");
    return Status{};
  };
  const bool ok = measure_us(reps, ops, trap, out);
  sigaction(SIGILL, &old, nullptr);
  return ok;
}

Row make_row(const std::string& name, std::vector<double> samples, int ops, std::string note = "") {
  Row r;
  r.bench = "ecall";
  r.name = name;
  r.unit = "us";
  r.stats = summarize(std::move(samples));
  r.ops_per_rep = ops;
  r.note = std::move(note);
  return r;
}

int run(const Options& o) {
  const std::string dir = enclave_dir(o);
  const std::string test_path = dir + "/test_enclave.tme";
  const std::string bench_path = dir + "/bench_ecall.tme";
  for (const std::string& p : {test_path, bench_path}) {
    if (!file_exists(p)) {
      fprintf(stderr,
              "teemate-bench-ecall: %s not found (build the targets test_enclave_enclave and "
              "bench_ecall_enclave, or pass --enclave-dir)\n",
              p.c_str());
      return 1;
    }
  }
  const int reps = o.reps > 0 ? o.reps : (o.quick ? 8 : 40);
  const int ops_small = o.quick ? 200 : 1000;   // per batch, for the cheap cases
  const int ops_64k = o.quick ? 100 : 500;
  const int n_ocalls = 100;                     // OCALLs per ECALL in the loop case
  const int ops_loop = o.quick ? 4 : 10;        // ECALLs of N OCALLs per batch
  std::vector<Row> rows;

  {
    std::vector<double> s;
    if (!measure_host_trap(reps, ops_small, &s)) return 1;
    rows.push_back(make_row("host_ud2_trap", std::move(s), ops_small, "no enclave; SIGILL handler skips ud2"));
  }
  {
    auto getppid_call = [] {
      syscall(SYS_getppid);
      return Status{};
    };
    unsigned long fs = 0;
    auto get_fs = [&fs] {
      if (syscall(SYS_arch_prctl, 0x1003 /* ARCH_GET_FS */, &fs) != 0) return internal_error("ARCH_GET_FS failed");
      return Status{};
    };
    auto set_fs = [&fs] {
      if (syscall(SYS_arch_prctl, 0x1002 /* ARCH_SET_FS */, fs) != 0) return internal_error("ARCH_SET_FS failed");
      return Status{};
    };
    std::vector<double> s1, s2, s3;
    if (!measure_us(reps, ops_small, getppid_call, &s1) || !measure_us(reps, ops_small, get_fs, &s2) ||
        !measure_us(reps, ops_small, set_fs, &s3)) {
      return 1;
    }
    rows.push_back(make_row("host_syscall_getppid", std::move(s1), ops_small, "no enclave"));
    rows.push_back(make_row("host_arch_prctl_get_fs", std::move(s2), ops_small, "no enclave"));
    rows.push_back(make_row("host_arch_prctl_set_fs", std::move(s3), ops_small, "no enclave; same value"));
  }

  auto test_e = Enclave::load(test_path);
  if (!test_e.ok()) {
    fprintf(stderr, "teemate-bench-ecall: %s\n", test_e.status().to_string().c_str());
    return 1;
  }
  auto bench_e = Enclave::load(bench_path);
  if (!bench_e.ok()) {
    fprintf(stderr, "teemate-bench-ecall: %s\n", bench_e.status().to_string().c_str());
    return 1;
  }
  Enclave& te = **test_e;
  Enclave& be = **bench_e;
  Status st = te.set_ocall(kOcallNested, [](CallArgs&) -> int32_t { return 0; });
  if (st.ok()) st = be.set_ocall(kBenchOcallNop, [](CallArgs&) -> int32_t { return 0; });
  if (!st.ok()) {
    fprintf(stderr, "teemate-bench-ecall: %s\n", st.to_string().c_str());
    return 1;
  }

  // The runtime's own ping (id 2) is reserved to the runtime; the test
  // enclave's add (two scalars in, one out, no buffers) is as small.
  auto ping = [&] {
    CallArgs a;
    a.scalar(0, 1).scalar(1, 2);
    return te.call(kEcallAdd, a);
  };
  auto user_nop = [&] {
    CallArgs a;
    return be.call(kBenchEcallNop, a);
  };

  {
    std::vector<double> s;
    if (!measure_us(reps, ops_small, ping, &s)) return 1;
    rows.push_back(make_row("ecall_roundtrip", std::move(s), ops_small, "test_enclave add: scalars only, no buffers"));
  }
  {
    std::vector<double> s;
    if (!measure_us(reps, ops_small, user_nop, &s)) return 1;
    rows.push_back(make_row("ecall_user_nop", std::move(s), ops_small, "application ECALL, empty handler"));
  }

  for (size_t kib : {size_t{4}, size_t{64}}) {
    std::vector<uint8_t> in(kib << 10), out(kib << 10);
    for (size_t i = 0; i < in.size(); ++i) in[i] = static_cast<uint8_t>(i * 131 + 7);
    auto echo = [&] {
      CallArgs a;
      a.in(in).out(out);
      Status s = te.call(kEcallEcho, a);
      if (s.ok() && a.buffer(1).out_size != in.size()) {
        s = internal_error("echo returned " + std::to_string(a.buffer(1).out_size) + " bytes");
      }
      return s;
    };
    if (Status s = echo(); !s.ok() || memcmp(in.data(), out.data(), in.size()) != 0) {
      fprintf(stderr, "teemate-bench-ecall: echo of %zu KiB is wrong: %s\n", kib, s.to_string().c_str());
      return 1;
    }
    const int ops = kib == 4 ? ops_small : ops_64k;
    std::vector<double> s;
    if (!measure_us(reps, ops, echo, &s)) return 1;
    Row r = make_row("ecall_echo_" + std::to_string(kib) + "k", std::move(s), ops,
                     std::to_string(kib) + " KiB in + " + std::to_string(kib) + " KiB out");
    r.numbers.push_back({"bytes", std::to_string(kib << 10)});
    rows.push_back(std::move(r));
  }

  // OCALL round trip: interleave batches of ECALL(0) and ECALL(N) so that
  // drift on the shared machine hits both alike; per repetition
  // ocall = (t(N) - t(0)) / N.
  {
    uint64_t last_done = 0;
    auto loop = [&](uint64_t n) {
      CallArgs a;
      a.scalar(0, n);
      Status s = be.call(kBenchEcallOcallLoop, a);
      last_done = a.scalar_value(1);
      if (s.ok() && last_done != n) s = internal_error("the enclave made " + std::to_string(last_done) + " OCALLs");
      return s;
    };
    auto loop0 = [&] { return loop(0); };
    auto loopn = [&] { return loop(n_ocalls); };
    if (time_batch(ops_small / 4, loop0) < 0 || time_batch(1, loopn) < 0) return 1;
    std::vector<double> t0s, tns, ocall;
    for (int r = 0; r < reps; ++r) {
      const double t0 = time_batch(ops_small, loop0);
      const double tn = time_batch(ops_loop, loopn);
      if (t0 < 0 || tn < 0) return 1;
      const double us0 = t0 * 1e6 / ops_small, usn = tn * 1e6 / ops_loop;
      t0s.push_back(us0);
      tns.push_back(usn);
      ocall.push_back((usn - us0) / n_ocalls);
    }
    Row r0 = make_row("ecall_with_0_ocalls", std::move(t0s), ops_small, "the OCALL loop ECALL with N = 0");
    r0.numbers.push_back({"ocalls", "0"});
    rows.push_back(std::move(r0));
    Row rn = make_row("ecall_with_" + std::to_string(n_ocalls) + "_ocalls", std::move(tns), ops_loop,
                      "one ECALL making N empty OCALLs");
    rn.numbers.push_back({"ocalls", std::to_string(n_ocalls)});
    rows.push_back(std::move(rn));
    Row ro = make_row("ocall_roundtrip", std::move(ocall), ops_loop * n_ocalls,
                      "(t(N) - t(0)) / N, N = " + std::to_string(n_ocalls));
    ro.numbers.push_back({"ocalls", std::to_string(n_ocalls)});
    rows.push_back(std::move(ro));
  }

  // Switchless, each direction on a handle of its own (bench_ecall.tme with
  // one worker) so that only one worker spins at a time on a small machine.
  {
    LoadOptions ocall_opts;
    ocall_opts.switchless.ocall_workers = 1;
    ocall_opts.switchless.ecall_workers = 0;
    auto so = Enclave::load(bench_path, ocall_opts);
    if (!so.ok()) {
      fprintf(stderr, "teemate-bench-ecall: switchless OCALL handle: %s\n", so.status().to_string().c_str());
      return 1;
    }
    Enclave& se = **so;
    if (Status s = se.set_ocall(kBenchOcallNop, [](CallArgs&) -> int32_t { return 0; }); !s.ok()) return 1;
    auto loop = [&](uint32_t id, uint64_t n) {
      CallArgs a;
      a.scalar(0, n);
      Status s = se.call(id, a);
      if (s.ok() && a.scalar_value(1) != n) s = internal_error("the enclave made " + std::to_string(a.scalar_value(1)) + " OCALLs");
      return s;
    };
    auto loop0 = [&] { return loop(kBenchEcallSwitchlessOcallLoop, 0); };
    auto loopn = [&] { return loop(kBenchEcallSwitchlessOcallLoop, n_ocalls); };
    if (time_batch(ops_small / 4, loop0) < 0 || time_batch(1, loopn) < 0) return 1;
    std::vector<double> sw;
    for (int r = 0; r < reps; ++r) {
      const double t0 = time_batch(ops_small, loop0);
      const double tn = time_batch(ops_loop, loopn);
      if (t0 < 0 || tn < 0) return 1;
      sw.push_back((tn * 1e6 / ops_loop - t0 * 1e6 / ops_small) / n_ocalls);
    }
    Row r = make_row("ocall_switchless", std::move(sw), ops_loop * n_ocalls,
                     "like ocall_roundtrip, tm_ocall_switchless, 1 host worker");
    r.numbers.push_back({"ocalls", std::to_string(n_ocalls)});
    rows.push_back(std::move(r));
  }
  {
    LoadOptions ecall_opts;
    ecall_opts.switchless.ocall_workers = 0;
    ecall_opts.switchless.ecall_workers = 1;
    auto se = Enclave::load(bench_path, ecall_opts);
    if (!se.ok()) {
      fprintf(stderr, "teemate-bench-ecall: switchless ECALL handle: %s\n", se.status().to_string().c_str());
      return 1;
    }
    auto nop = [&] {
      CallArgs a;
      return (*se)->call_switchless(kBenchEcallNop, a);
    };
    if (time_batch(ops_small, nop) < 0) return 1;
    std::vector<double> s;
    if (!measure_us(reps, ops_small, nop, &s)) return 1;
    rows.push_back(make_row("ecall_switchless", std::move(s), ops_small,
                            "empty ECALL through call_switchless, 1 enclave worker"));
  }

  // Cross-check with the test enclave: nested ECALL (one OCALL) minus ping.
  {
    auto nested = [&] {
      CallArgs a;
      a.scalar(0, 1);
      return te.call(kEcallNested, a);
    };
    if (time_batch(ops_small / 4, nested) < 0) return 1;
    std::vector<double> diff;
    for (int r = 0; r < reps; ++r) {
      const double tp = time_batch(ops_small, ping);
      const double tn = time_batch(ops_small, nested);
      if (tp < 0 || tn < 0) return 1;
      diff.push_back((tn - tp) * 1e6 / ops_small);
    }
    rows.push_back(make_row("ocall_nested_minus_ping", std::move(diff), ops_small,
                            "test_enclave 0x102 (one OCALL 0x200) minus ping"));
  }

  if (!o.json_only) {
    printf("teemate-bench-ecall%s: backend sim, %d repetitions per case, microseconds per operation\n\n",
           o.quick ? " --quick" : "", reps);
  }
  print_rows(rows, o, 3);
  return 0;
}

}  // namespace
}  // namespace teemate::bench

int main(int argc, char** argv) {
  teemate::bench::Options o;
  std::string error;
  if (!teemate::bench::parse_options(argc, argv, &o, &error)) {
    fprintf(stderr, "teemate-bench-ecall: %s\n", error.c_str());
    return 2;
  }
  if (o.help) {
    fputs(teemate::bench::kUsage, stdout);
    return 0;
  }
  return teemate::bench::run(o);
}
