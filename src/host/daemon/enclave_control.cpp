// The daemon's control ECALLs (see enclave_control.h and the RuntimeEcall
// comments in common/enclave_abi.h).
#include "host/daemon/enclave_control.h"

#include <errno.h>
#include <stdarg.h>
#include <sys/random.h>
#include <time.h>

#include <cstdio>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "common/enclave_abi.h"
#include "host/runtime/image_loader.h"
#include "host/runtime/ocall_frame.h"
#include "tm_posix_u.h"

namespace teemate::daemon {
namespace {

int no_aex(host::EnterContext*) { return 1; }

const char* control_ecall_name(uint32_t id) {
  switch (id) {
    case abi::kEcallResetThread: return "reset thread";
    case abi::kEcallProcessStart: return "process start";
    case abi::kEcallBindTcs: return "bind TCS";
    case abi::kEcallProcessEnd: return "process end";
    case abi::kEcallClaimControl: return "claim control";
    case abi::kEcallPing: return "ping";
    default: return "unknown";
  }
}

Status fill_random(void* out, size_t size) {
  auto* p = static_cast<uint8_t*>(out);
  size_t done = 0;
  while (done < size) {
    ssize_t n = getrandom(p + done, size - done, 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      return io_error("getrandom", errno);
    }
    done += static_cast<size_t>(n);
  }
  return {};
}


// An OCALL the runtime made during one of our own entries: only its
// diagnostics (write, clock) are served; anything else is refused.
void serve_own_ocall(uint32_t log_id, abi::CallFrame* f) {
  if (f->call_id != abi::kOcallConsoleWrite && f->call_id != abi::kOcallClock) {
    f->status = abi::kErrUnknownCall;
    return;
  }
  CallArgs args;
  if (int32_t bad = host::args_from_frame(*f, &args); bad != abi::kOk) {
    f->status = bad;
    return;
  }
  // The typed call's own code decodes the request and checks it.
  const host::ConsoleSink to_log = [log_id](int, std::string_view text) {
    std::string line(text);
    while (!line.empty() && line.back() == '\n') line.pop_back();
    log("enclave %u says: %s", log_id, line.c_str());
  };
  host::ScopedConsoleSink sink(&to_log);
  const int32_t status = tm_posix_dispatch_ocall(f->call_id, args);
  host::answer_frame(f, args, status);
}

}  // namespace

Status random_token(Token128* out) { return fill_random(out->data(), sizeof(*out)); }
Status random_token(Token256* out) { return fill_random(out->data(), sizeof(*out)); }

std::string token_hex(const Token128& t) {
  char b[33];
  std::snprintf(b, sizeof b, "%016llx%016llx", static_cast<unsigned long long>(t[0]),
                static_cast<unsigned long long>(t[1]));
  return b;
}

Result<std::unique_ptr<ControlledEnclave>> ControlledEnclave::build(host::Backend& backend, image::LoadedImage image,
                                                                    uint64_t base_hint, uint32_t log_id) {
  auto e = std::unique_ptr<ControlledEnclave>(new ControlledEnclave());
  e->log_id_ = log_id;
  const image::Layout& layout = image.layout;
  e->heap_size_ = layout.config().heap_size;
  host::CreateParams cp = host::create_params_for(layout);
  cp.base_hint = base_hint;
  TM_ASSIGN_OR_RETURN(e->enclave_, backend.create(cp));
  TM_RETURN_IF_ERROR(host::add_image_pages(*e->enclave_, layout));
  TM_RETURN_IF_ERROR(e->enclave_->init(image.file.sigstruct));
  // Claim the enclave before any client can map it: from now on it runs
  // only ECALLs on TCS this daemon bound, with their lease tokens.
  TM_RETURN_IF_ERROR(random_token(&e->control_token_));
  TM_RETURN_IF_ERROR(e->control(0, abi::kEcallClaimControl, {}).status().with_context("claiming the new enclave"));
  return e;
}

Result<std::unique_ptr<ControlledEnclave>> ControlledEnclave::adopt(host::Backend& backend,
                                                                    const host::AttachHandles& handles,
                                                                    const Token256& control_token, uint64_t heap_size,
                                                                    uint32_t log_id) {
  auto e = std::unique_ptr<ControlledEnclave>(new ControlledEnclave());
  e->log_id_ = log_id;
  e->heap_size_ = heap_size;
  e->control_token_ = control_token;
  TM_ASSIGN_OR_RETURN(e->enclave_, backend.attach(handles));
  return e;
}

Result<std::array<uint64_t, 4>> ControlledEnclave::control(uint32_t i, uint32_t id, std::array<uint64_t, 4> in) {
  constexpr int kAttempts = 200;  // ~2 s of 10 ms pauses, plus the enclave's own bounded spins
  for (int attempt = 1;; ++attempt) {
    int32_t status = 0;
    uint64_t fault = 0;
    auto r = control_once(i, id, in, &status, &fault);
    const bool retry = !r.ok() && (status == abi::kErrBusy || fault != 0) && attempt < kAttempts;
    if (!retry) return r;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

Result<std::array<uint64_t, 4>> ControlledEnclave::control_once(uint32_t i, uint32_t id, std::array<uint64_t, 4> in) {
  int32_t status = 0;
  uint64_t fault = 0;
  return control_once(i, id, in, &status, &fault);
}

Result<std::array<uint64_t, 4>> ControlledEnclave::control_once(uint32_t i, uint32_t id,
                                                                const std::array<uint64_t, 4>& in, int32_t* status_out,
                                                                uint64_t* fault_out) {
  std::vector<uint8_t> scratch(abi::kOcallScratchSize);
  abi::CallFrame frame{};
  frame.abi_version = abi::kAbiVersion;
  frame.call_id = id;
  for (size_t k = 0; k < 4; ++k) frame.scalars[k] = in[k];
  for (size_t k = 0; k < 4; ++k) frame.auth[k] = control_token_[k];
  frame.ocall_scratch = reinterpret_cast<uint64_t>(scratch.data());
  frame.ocall_scratch_size = scratch.size();
  host::EnterContext ctx{};
  ctx.tcs = enclave_->tcs_address(i);
  ctx.on_aex = no_aex;
  ctx.rdi = abi::kEntryEcall;
  ctx.rsi = reinterpret_cast<uint64_t>(&frame);
  for (int ocalls = 0;; ++ocalls) {
    enclave_->enter(&ctx);
    if (ctx.out_rdi != abi::kExitOcall || ctx.out_rsi != frame.ocall_scratch || ocalls > 64) break;
    serve_own_ocall(log_id_, reinterpret_cast<abi::CallFrame*>(scratch.data()));
    ctx.rdi = abi::kEntryOcallReturn;
    ctx.rsi = 0;
  }
  const std::string what = "runtime ECALL " + std::to_string(id) + " (" + control_ecall_name(id) + ") on TCS " +
                           std::to_string(i);
  if (ctx.out_rdi == host::kExitEncluFault) {
    *fault_out = ctx.fault_vector;
    return internal_error(what + ": EENTER faulted (vector " + std::to_string(ctx.fault_vector) +
                          "; the TCS is busy or has no free SSA frame)");
  }
  if (ctx.out_rdi != abi::kExitReturn) {
    return internal_error(what + " ended with exit reason " + std::to_string(ctx.out_rdi));
  }
  const int32_t status = static_cast<int32_t>(ctx.out_rsi);
  *status_out = status;
  if (status != abi::kOk) {
    const Code code = status == abi::kErrBusy       ? Code::kBusy
                      : status == abi::kErrNoMemory || status == abi::kErrTooLarge ? Code::kResource
                                                                                     : Code::kInternal;
    return Status(code, what + " failed: " + call_status_description(status) + " (" + call_status_name(status) + ")");
  }
  std::array<uint64_t, 4> out{};
  for (size_t k = 0; k < 4; ++k) out[k] = frame.scalars[k];
  return out;
}

bool ControlledEnclave::token_accepted() {
  for (uint32_t i = 0; i < tcs_count(); ++i) {
    if (enclave_->tcs_busy(i)) continue;
    int32_t status = 0;
    uint64_t fault = 0;
    // Ending context 0 is refused as invalid, after the token was checked.
    (void)control_once(i, abi::kEcallProcessEnd, {0, 0, 0, 0}, &status, &fault);
    if (fault) continue;
    return status != abi::kErrDenied;
  }
  return true;
}

Status ControlledEnclave::reset_dead_thread(uint32_t i) {
  TM_ASSIGN_OR_RETURN(uint32_t cssa, enclave_->reclaim_tcs(i));
  abi::CallFrame frame{};
  frame.abi_version = abi::kAbiVersion;
  for (size_t k = 0; k < 4; ++k) frame.auth[k] = control_token_[k];
  while (cssa > 0) {
    host::EnterContext ctx{};
    ctx.tcs = enclave_->tcs_address(i);
    ctx.on_aex = no_aex;
    ctx.rdi = abi::kEntryRecover;
    ctx.rsi = reinterpret_cast<uint64_t>(&frame);
    ctx.resume_after_exception = 1;
    enclave_->enter(&ctx);
    if (ctx.out_rdi == abi::kExitExceptionHandled) {
      return internal_error("the enclave refused the recovery entry (" +
                            call_status_name(static_cast<int32_t>(ctx.out_rsi)) + ")");
    }
    if (ctx.out_rdi != abi::kExitReturn) {
      return internal_error("recovery entry ended with exit reason " + std::to_string(ctx.out_rdi));
    }
    const uint32_t now = enclave_->tcs_cssa(i);
    if (now >= cssa) return internal_error("recovery did not lower CSSA");
    cssa = now;
  }
  return control(i, abi::kEcallResetThread, {}).status().with_context("reset");
}

}  // namespace teemate::daemon
