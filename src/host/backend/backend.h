// The one narrow interface between the host runtime and what really creates
// and enters enclaves: ECREATE, EADD/EEXTEND, EINIT and enter/resume. The
// `sim` backend implements it in software; an `sgx` backend implements it on
// /dev/sgx_enclave. Nothing above this header may ask which backend it has.
// Thread-safety: create/add/init from one thread; enter() from any thread.
#pragma once

#include <stddef.h>
#include <stdint.h>

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "teemate/status.h"
#include "sgx/arch.h"
#include "sgx/measurement.h"

namespace teemate::host {

// What one EENTER..EEXIT (or an abandoned AEX) produced. Filled by enter().
struct EnterContext {
  uint64_t tcs;            // in: TCS address
  uint64_t rdi;            // in: entry reason
  uint64_t rsi;            // in: argument
  uint64_t out_rdi;        // out: exit reason (abi::ExitReason)
  uint64_t out_rsi;        // out: exit value
  uint64_t fault_vector;   // out: set when ENCLU itself faulted (#GP: TCS busy, CSSA full...)
  // Called from the AEP after an asynchronous exit, on the same stack depth
  // as the EENTER. Returns 0 to ERESUME, non-zero to abandon the entry (the
  // entry then returns with out_rdi = kExitAex).
  int (*on_aex)(EnterContext* ctx);
  void* user;
  // Set for a recovery entry (abi::kEntryRecover): when the enclave exits
  // with kExitExceptionHandled, ERESUME at once at the same stack depth;
  // enter() then returns at the resumed code's EEXIT.
  uint64_t resume_after_exception;
};
static_assert(offsetof(EnterContext, resume_after_exception) == 64, "sim_enclu.S reads it at 64");
// enter() results beyond the enclave's own exit reasons.
inline constexpr uint64_t kExitEncluFault = 0x100;

struct CreateParams {
  uint64_t size = 0;  // power of two
  uint32_t ssa_frame_pages = 1;
  uint32_t misc_select = 0;
  sgx::Attributes attributes{};
  // Where to try to put the enclave (0: anywhere). Enclaves that other
  // processes will attach go in a high range those processes leave free.
  uint64_t base_hint = 0;
};

// What another process needs to map an initialised enclave at the same
// base (aliasing): backend-specific file descriptors (owned by the
// exporting enclave; the receiver duplicates what it keeps) and the range.
struct AttachHandles {
  std::vector<int> fds;  // sim: {enclave memory memfd, control memfd}
  uint64_t base = 0;
  uint64_t size = 0;
};

class BackendEnclave {
 public:
  virtual ~BackendEnclave() = default;
  virtual uint64_t base() const = 0;
  virtual uint64_t size() const = 0;
  // EADD of one 4096-byte page (really committed and copied) and, when
  // `measure`, EEXTEND of its 16 chunks (really hashed).
  virtual Status add_page(uint64_t offset, const uint8_t* data, uint64_t secinfo_flags,
                          bool measure) = 0;
  // EINIT: refuses a SIGSTRUCT whose ENCLAVEHASH is not the measurement, a
  // bad signature, or attributes outside the mask, saying which.
  virtual Status init(const sgx::Sigstruct& sigstruct) = 0;
  virtual sgx::Digest mrenclave() const = 0;
  virtual sgx::Digest mrsigner() const = 0;
  // EENTER with ctx, handling OCALL exits is the caller's job: enter()
  // returns at every EEXIT. Thread-safe across different TCS.
  virtual void enter(EnterContext* ctx) = 0;

  // ---- Sharing (owner side unless noted) -----------------------------------
  // Handles to pass to another process (SCM_RIGHTS) so it can attach.
  virtual Result<AttachHandles> export_handles() const = 0;
  virtual uint32_t tcs_count() const = 0;
  virtual uint64_t tcs_address(uint32_t index) const = 0;
  // Takes back a TCS left busy by a thread that no longer exists, reaching
  // the state hardware leaves after an asynchronous exit (TCS free, CSSA
  // incremented, an SSA frame whose EXITINFO is not valid). Returns the CSSA
  // afterwards. The caller must know the thread is gone (its process ended).
  // On hardware the kernel already took that exit: nothing to do.
  virtual Result<uint32_t> reclaim_tcs(uint32_t index) = 0;
  virtual uint32_t tcs_cssa(uint32_t index) const = 0;
  // Is a thread inside through TCS `index` right now?
  virtual bool tcs_busy(uint32_t index) const = 0;
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual const char* name() const = 0;
  virtual Result<std::unique_ptr<BackendEnclave>> create(const CreateParams& params) = 0;
  // Maps an enclave another process built, at the same base and with the
  // same page permissions. Fails clearly if that range is taken here.
  virtual Result<std::unique_ptr<BackendEnclave>> attach(const AttachHandles& handles) = 0;
};

// Opens "sim" (or, where built, "sgx"). The error names what is missing.
Result<std::unique_ptr<Backend>> open_backend(std::string_view name);

}  // namespace teemate::host
