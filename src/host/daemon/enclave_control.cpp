// The daemon's control ECALLs (see enclave_control.h, common/tm_control.edl
// and the ControlEcall comments in common/enclave_abi.h): the generated
// proxies of tm_control_u.h over a Channel, the transport that carries the
// control token and serves the runtime's diagnostic OCALLs.
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
#include "tm_control_u.h"
#include "tm_posix_u.h"

namespace teemate::daemon {
namespace {

int no_aex(host::EnterContext*) { return 1; }

// A control ECALL's failure code as a Status: kBusy to retry, kResource
// for memory, otherwise internal (the daemon asked something wrong).
Status status_of(int32_t code, const std::string& where) {
  const Code c = code == abi::kErrBusy                                    ? Code::kBusy
                 : code == abi::kErrNoMemory || code == abi::kErrTooLarge ? Code::kResource
                                                                           : Code::kInternal;
  return Status(c, where + ": " + call_status_description(code) + " (" + call_status_name(code) + ")");
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

// One control ECALL on one TCS: a typed call's frame plus the control
// token, entered on the TCS, with the runtime's diagnostic OCALLs served
// (console and clock: the enclave may log during a control ECALL).
class ControlledEnclave::Channel final : public CallTarget {
 public:
  Channel(ControlledEnclave& e, uint32_t tcs) : e_(e), tcs_(tcs) {}
  Status call(uint32_t id, CallArgs& args) override;
  int32_t status = abi::kOk;  // the frame's (kErrBusy: a lock stayed taken)
  uint64_t fault = 0;         // EENTER faulted (the TCS was busy), its vector

 private:
  ControlledEnclave& e_;
  uint32_t tcs_;
};

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
  TM_RETURN_IF_ERROR(e->control(0, "claiming the new enclave", false, [](Channel& ch, int* ret) {
    return tm_control_claim(ch, ret);
  }));
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

Status ControlledEnclave::Channel::call(uint32_t id, CallArgs& args) {
  if (args.buffer_count() > abi::kMaxCallBuffers) return invalid_argument("too many buffers for a control ECALL");
  std::vector<uint8_t> scratch(abi::kOcallScratchSize);
  abi::CallFrame frame{};
  frame.abi_version = abi::kAbiVersion;
  frame.call_id = id;
  frame.nbufs = static_cast<uint32_t>(args.buffer_count());
  for (size_t k = 0; k < 4; ++k) frame.scalars[k] = args.scalar_value(k);
  for (size_t k = 0; k < args.buffer_count(); ++k) {
    const auto& b = args.buffer(k);
    frame.bufs[k] = abi::CallBuffer{reinterpret_cast<uint64_t>(b.data), b.size, 0, static_cast<uint32_t>(b.dir), 0};
  }
  for (size_t k = 0; k < 4; ++k) frame.auth[k] = e_.control_token_[k];
  frame.ocall_scratch = reinterpret_cast<uint64_t>(scratch.data());
  frame.ocall_scratch_size = scratch.size();
  host::EnterContext ctx{};
  ctx.tcs = e_.enclave_->tcs_address(tcs_);
  ctx.on_aex = no_aex;
  ctx.rdi = abi::kEntryEcall;
  ctx.rsi = reinterpret_cast<uint64_t>(&frame);
  for (int ocalls = 0;; ++ocalls) {
    e_.enclave_->enter(&ctx);
    if (ctx.out_rdi != abi::kExitOcall || ctx.out_rsi != frame.ocall_scratch || ocalls > 64) break;
    serve_own_ocall(e_.log_id_, reinterpret_cast<abi::CallFrame*>(scratch.data()));
    ctx.rdi = abi::kEntryOcallReturn;
    ctx.rsi = 0;
  }
  const std::string where = "on TCS " + std::to_string(tcs_);
  if (ctx.out_rdi == host::kExitEncluFault) {
    fault = ctx.fault_vector;
    return internal_error(where + ": EENTER faulted (vector " + std::to_string(ctx.fault_vector) +
                          "; the TCS is busy or has no free SSA frame)");
  }
  if (ctx.out_rdi != abi::kExitReturn) {
    return internal_error(where + ": ended with exit reason " + std::to_string(ctx.out_rdi));
  }
  // The status the enclave exited with, never one read back from host memory.
  status = static_cast<int32_t>(ctx.out_rsi);
  if (status != abi::kOk) return status_of(status, where);
  for (size_t k = 0; k < args.buffer_count(); ++k) {
    auto& b = args.buffer(k);
    b.out_size = frame.bufs[k].out_size <= b.size ? frame.bufs[k].out_size : 0;
  }
  return {};
}

template <class Call>
Status ControlledEnclave::control(uint32_t i, const char* what, bool once, Call&& call) {
  constexpr int kAttempts = 200;  // ~2 s of 10 ms pauses, plus the enclave's own bounded spins
  for (int attempt = 1;; ++attempt) {
    Channel ch(*this, i);
    int ret = abi::kOk;
    Status st = call(ch, &ret);
    if (st.ok() && ret != abi::kOk) {  // the function's own answer
      ch.status = ret;
      st = status_of(ret, "on TCS " + std::to_string(i));
    }
    const bool retry = !once && !st.ok() && (ch.status == abi::kErrBusy || ch.fault != 0) && attempt < kAttempts;
    if (!retry) return st.ok() ? st : st.with_context(what);
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

Result<uint64_t> ControlledEnclave::process_start(uint32_t i, uint64_t pid, uint64_t arena_bytes) {
  uint64_t context = 0;
  TM_RETURN_IF_ERROR(control(i, "starting a process context", false, [&](Channel& ch, int* ret) {
    return tm_control_process_start(ch, ret, pid, arena_bytes, &context);
  }));
  return context;
}

Status ControlledEnclave::bind_tcs(uint32_t i, uint64_t context, const Token128& lease) {
  return control(i, context ? "binding a TCS" : "unbinding a TCS", false, [&](Channel& ch, int* ret) {
    return tm_control_bind_tcs(ch, ret, context, lease[0], lease[1]);
  });
}

Status ControlledEnclave::unbind_tcs_once(uint32_t i) {
  return control(i, "unbinding a TCS", true, [&](Channel& ch, int* ret) { return tm_control_bind_tcs(ch, ret, 0, 0, 0); });
}

Result<ControlledEnclave::ProcessEnd> ControlledEnclave::process_end(uint32_t i, uint64_t context) {
  ProcessEnd end;
  TM_RETURN_IF_ERROR(control(i, "ending a process context", false, [&](Channel& ch, int* ret) {
    return tm_control_process_end(ch, ret, context, &end.exit_status, &end.leaked_bytes, &end.globals_report);
  }));
  return end;
}

bool ControlledEnclave::token_accepted() {
  for (uint32_t i = 0; i < tcs_count(); ++i) {
    if (enclave_->tcs_busy(i)) continue;
    // Ending context 0 is refused as invalid, after the token was checked.
    Channel ch(*this, i);
    int ret = abi::kOk;
    int64_t exit_status = 0;
    uint64_t leaked = 0, report = 0;
    (void)tm_control_process_end(ch, &ret, 0, &exit_status, &leaked, &report);
    if (ch.fault) continue;
    return ch.status != abi::kErrDenied;
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
  return control(i, "resetting a dead thread", false,
                 [](Channel& ch, int* ret) { return tm_control_reset_thread(ch, ret); });
}

}  // namespace teemate::daemon
