// The daemon's side of a warm enclave's control plane: the enclave itself
// (built, claimed with a control token), and the control ECALLs the daemon
// makes on a TCS that no client holds (start/end process contexts, bind a
// TCS with a lease token, reset a dead thread, recover a TCS at CSSA > 0):
// the typed calls of common/tm_control.edl, made through the generated
// proxies over a transport that adds the control token.
// Thread-safe as the hardware is: calls on different TCS may run at once;
// the caller guarantees that nobody else uses the TCS it names. Never sends
// the control token anywhere but into the enclave.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <string>

#include "base/log.h"
#include "teemate/status.h"
#include "host/backend/backend.h"
#include "host/image/image_file.h"

namespace teemate::daemon {

using Token128 = std::array<uint64_t, 2>;
using Token256 = std::array<uint64_t, 4>;

// Random words from the kernel's CSPRNG.
Status random_token(Token128* out);
Status random_token(Token256* out);
// 32 hex digits of a lease token, as the protocol sends it.
std::string token_hex(const Token128& t);

class ControlledEnclave {
 public:
  // Builds `image` on `backend` at `base_hint`, EINITs it and claims it
  // (tm_control_claim) before anyone else can map it.
  static Result<std::unique_ptr<ControlledEnclave>> build(host::Backend& backend, image::LoadedImage image,
                                                          uint64_t base_hint, uint32_t log_id);
  // Takes control again of an enclave this daemon (an earlier run of it)
  // built and claimed: maps it from `handles` (taken back from a process
  // that still maps it) and uses the control token saved then.
  static Result<std::unique_ptr<ControlledEnclave>> adopt(host::Backend& backend, const host::AttachHandles& handles,
                                                          const Token256& control_token, uint64_t heap_size,
                                                          uint32_t log_id);

  host::BackendEnclave& enclave() { return *enclave_; }
  uint32_t tcs_count() const { return enclave_->tcs_count(); }
  uint64_t heap_size() const { return heap_size_; }
  const Token256& control_token() const { return control_token_; }

  // The control ECALLs of common/tm_control.edl on TCS i. A kBusy from the
  // enclave (a lock held by a thread of a process that died and is not
  // recovered yet) and a TCS that is momentarily busy are retried for up
  // to about two seconds, while other threads recover the dead.
  Result<uint64_t> process_start(uint32_t i, uint64_t pid, uint64_t arena_bytes);
  // Binds TCS i to `context` with `lease` (context 0 and a zero lease unbind).
  Status bind_tcs(uint32_t i, uint64_t context, const Token128& lease);
  Status unbind_tcs(uint32_t i) { return bind_tcs(i, 0, {0, 0}); }
  // Unbinding tried once: for a kBusy that is an answer, not a lock to
  // wait out (a call of its process is still in progress on the TCS).
  Status unbind_tcs_once(uint32_t i);
  struct ProcessEnd {
    int64_t exit_status = -1;     // main()'s (-1: none)
    uint64_t leaked_bytes = 0;    // arena bytes never freed
    uint64_t globals_report = 0;  // debug enclaves: (count << 40) | offset of the first global into the arena
  };
  Result<ProcessEnd> process_end(uint32_t i, uint64_t context);
  // Does the enclave accept our control token? (A harmless control ECALL
  // on an idle TCS; true when every TCS is busy and it cannot be asked.)
  bool token_accepted();
  // TCS i of a process that has ended: reclaimed as the hardware's AEX
  // leaves it, recovery entries until CSSA is 0, then a reset ECALL. Takes
  // no enclave lock.
  Status reset_dead_thread(uint32_t i);

  void set_log_id(uint32_t id) { log_id_ = id; }

 private:
  class Channel;
  // One control ECALL, made by `call` through a Channel on TCS i; retried
  // as said above unless `once`. `what` names it in errors.
  template <class Call>
  Status control(uint32_t i, const char* what, bool once, Call&& call);
  std::unique_ptr<host::BackendEnclave> enclave_;
  uint64_t heap_size_ = 0;
  Token256 control_token_{};
  uint32_t log_id_ = 0;
};

// teemated's log line: "HH:MM:SS teemated: ..." on stderr (thread-safe).
using base::log;

}  // namespace teemate::daemon
