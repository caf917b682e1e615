// TeeMate's public host API: load a signed enclave image on a backend and
// call into it. ECALLs are typed by id with up to four in/out buffers and
// four scalars; the runtime copies and checks buffers on both sides.
// Thread-safe: any number of host threads may call() at once; each call
// takes a free TCS (or waits for one). An OCALL handler may call() back into
// the same enclave (nested ECALL on the same TCS).
#pragma once

#include <stdint.h>

#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "teemate/export.h"
#include "teemate/status.h"

namespace teemate {

// Arguments of one ECALL or OCALL. Buffers are borrowed, not owned.
class TEEMATE_EXPORT CallArgs {
 public:
  enum class Dir : uint32_t { kIn = 1, kOut = 2, kInOut = 3 };
  struct Buffer {
    void* data = nullptr;
    size_t size = 0;      // capacity for out buffers
    size_t out_size = 0;  // bytes written back (out buffers)
    Dir dir = Dir::kIn;
  };

  CallArgs& in(std::span<const uint8_t> b);
  CallArgs& in(const std::string& s) { return in({reinterpret_cast<const uint8_t*>(s.data()), s.size()}); }
  CallArgs& out(std::span<uint8_t> b);
  CallArgs& inout(std::span<uint8_t> b);
  CallArgs& scalar(size_t index, uint64_t value);

  size_t buffer_count() const { return nbufs_; }
  Buffer& buffer(size_t i) { return bufs_[i]; }
  const Buffer& buffer(size_t i) const { return bufs_[i]; }
  uint64_t& scalar_ref(size_t i) { return scalars_[i]; }
  uint64_t scalar_value(size_t i) const { return scalars_[i]; }
  bool overflowed() const { return overflow_; }

 private:
  Buffer bufs_[4];
  size_t nbufs_ = 0;
  uint64_t scalars_[4] = {};
  bool overflow_ = false;
};

// An OCALL handler: reads/writes `args` (buffers live in host memory the
// runtime owns) and returns a status (0 = ok, positive = error).
using OcallHandler = std::function<int32_t(CallArgs& args)>;

// Switchless calls (docs/switchless.md). -1 takes the image's enclave.toml
// values (switchless_ocall_workers, switchless_ecall_workers,
// switchless_retries); 0 workers turns that direction off.
struct SwitchlessOptions {
  int ocall_workers = -1;  // host threads that serve tm_ocall_switchless
  int ecall_workers = -1;  // enclave threads that serve call_switchless
  int64_t retries = -1;    // polls before a caller falls back to a crossing
  int64_t idle_us = -1;    // how long an idle worker polls before it sleeps
                           // until the next crossing (default 500, max 10 s)
};

// What the switchless workers of one handle did so far.
struct SwitchlessStats {
  uint64_t ocalls_by_workers = 0;  // OCALLs host workers served
  uint64_t ecalls_by_workers = 0;  // ECALLs enclave workers served
  uint64_t ecall_fallbacks = 0;    // call_switchless calls made as crossings
};

struct LoadOptions {
  std::string backend = "sim";
  SwitchlessOptions switchless;
  // Where the enclave's stdout/stderr go (default: this process's fds 1/2).
  std::function<void(int fd, std::string_view text)> output;
};

// Attaching to a warm enclave that teemated keeps (shared mode).
struct AttachOptions {
  std::string socket_path;  // empty: default_daemon_socket()
  // Which warm enclave: by MRENCLAVE (hex), else by the daemon's enclave
  // id, else the one built from `image` (the daemon loads it if needed).
  std::string mrenclave;
  uint64_t enclave_id = 0;
  std::string image;
  // The trust domain to load `image` into (teemated's configuration names
  // who belongs to which); empty: the caller's own. Only processes of one
  // trust domain ever share an enclave.
  std::string trust_domain;
  uint32_t tcs = 1;         // TCS slots to lease
  // When every TCS is leased, wait this long for enough to come free
  // (0: fail at once with kBusy).
  uint32_t wait_ms = 30000;
  std::string client_name = "teemate";
  std::function<void(int fd, std::string_view text)> output;
  SwitchlessOptions switchless;
};

// $TEEMATE_SOCKET, else /run/teemate/teemated.sock for root, else
// $XDG_RUNTIME_DIR/teemate/teemated.sock (or /tmp/teemate-UID/teemated.sock).
TEEMATE_EXPORT std::string default_daemon_socket();

// The library's version ("0.1.0"), for logs and bug reports.
TEEMATE_EXPORT const char* version();

struct EnclaveInfo {
  std::string mrenclave_hex;
  std::string mrsigner_hex;
  uint64_t base = 0;
  uint64_t size = 0;
  uint32_t tcs_count = 0;
};

// Something ECALLs can be made through: an Enclave handle, or another
// transport (teemated's control channel to its own enclaves). The typed-call
// proxies `teemate edger` generates take one.
class TEEMATE_EXPORT CallTarget {
 public:
  virtual ~CallTarget() = default;
  // ECALL `id` (application ids start at 0x100).
  virtual Status call(uint32_t id, CallArgs& args) = 0;
  // The same ECALL through a switchless worker where the target has them;
  // a crossing otherwise.
  virtual Status call_switchless(uint32_t id, CallArgs& args) { return call(id, args); }
};

class TEEMATE_EXPORT Enclave : public CallTarget {
 public:
  // Loads, measures, EINITs and returns a ready enclave. Errors name the
  // image file and what is wrong with it.
  static Result<std::unique_ptr<Enclave>> load(const std::string& image_path, const LoadOptions& options = {});
  // Attaches to the warm enclave of `options.image` through teemated: maps
  // it at its base in this process and leases `options.tcs` TCS slots; the
  // handle then makes ECALLs exactly like a dedicated one. Dropping the
  // handle gives the slots back.
  static Result<std::unique_ptr<Enclave>> attach(const AttachOptions& options);
  ~Enclave() override = default;

  // ECALL `id` (application ids start at 0x100).
  Status call(uint32_t id, CallArgs& args) override = 0;
  // The same ECALL served by an enclave worker thread that polls for
  // requests inside the enclave, so that this thread does not cross; made
  // as call() makes it when no worker takes it within the retry budget or
  // the handle has no ECALL workers. The handler runs on the worker's
  // enclave thread (its thread_local values are the worker's).
  Status call_switchless(uint32_t id, CallArgs& args) override = 0;
  virtual SwitchlessStats switchless_stats() const = 0;
  // Runs the program's main(argc, argv); argv[0] is the image name.
  virtual Result<int> run_main(const std::vector<std::string>& argv) = 0;
  // Registers an OCALL handler for `id` (>= 0x100).
  virtual Status set_ocall(uint32_t id, OcallHandler handler) = 0;
  virtual const EnclaveInfo& info() const = 0;

  // Shared mode only: lease `n` more TCS slots from the daemon, or give `n`
  // idle ones back, while the process runs.
  virtual Status lease_tcs(uint32_t n) = 0;
  virtual Status release_tcs(uint32_t n) = 0;
};

}  // namespace teemate
