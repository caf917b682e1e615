// The host runtime: loads a signed image onto a backend (EADD/EEXTEND of
// every page in layout order, EINIT), hands TCS slots to calling threads,
// runs the EENTER/EEXIT loop that serves OCALLs, and re-enters the enclave's
// exception path after an asynchronous exit. Never dereferences an enclave
// address: everything it reads comes from host memory it owns.
#include "teemate/enclave.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <string.h>
#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <filesystem>
#include <cstdio>
#include <map>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <thread>
#include <array>
#include <atomic>
#include <vector>

#include "base/hex.h"
#include "base/process_id.h"
#include "base/paths.h"
#include "common/enclave_abi.h"
#include "host/backend/backend.h"
#include "host/daemon/protocol.h"
#include "host/image/image_file.h"
#include "host/runtime/image_loader.h"
#include "host/runtime/ocall_frame.h"
#include "host/runtime/switchless_host.h"
#include "sgx/measurement.h"
#include "sgx/sigstruct.h"
#include "tm_posix_u.h"
#include "tm_runtime_u.h"

namespace teemate {

CallArgs& CallArgs::in(std::span<const uint8_t> b) {
  if (nbufs_ >= 4) { overflow_ = true; return *this; }
  bufs_[nbufs_++] = Buffer{const_cast<uint8_t*>(b.data()), b.size(), 0, Dir::kIn};
  return *this;
}
CallArgs& CallArgs::out(std::span<uint8_t> b) {
  if (nbufs_ >= 4) { overflow_ = true; return *this; }
  bufs_[nbufs_++] = Buffer{b.data(), b.size(), 0, Dir::kOut};
  return *this;
}
CallArgs& CallArgs::inout(std::span<uint8_t> b) {
  if (nbufs_ >= 4) { overflow_ = true; return *this; }
  bufs_[nbufs_++] = Buffer{b.data(), b.size(), 0, Dir::kInOut};
  return *this;
}
CallArgs& CallArgs::scalar(size_t index, uint64_t value) {
  if (index >= 4) { overflow_ = true; return *this; }
  scalars_[index] = value;
  return *this;
}

namespace {

const char* vector_name(uint32_t v) {
  switch (v) {
    case 0: return "#DE (divide error)";
    case 1: return "#DB (debug)";
    case 3: return "#BP (breakpoint)";
    case 5: return "#BR (bound range)";
    case 6: return "#UD (invalid opcode)";
    case 13: return "#GP (general protection)";
    case 14: return "#PF (page fault)";
    case 16: return "#MF (x87 floating point)";
    case 17: return "#AC (alignment check)";
    case 19: return "#XM (SIMD floating point)";
    default: return "an exception the hardware did not report";
  }
}

using base::hex;

// Text from the enclave, safe to print: control bytes (newlines that would
// forge log lines, terminal escapes) become \n, \t or \xNN.
std::string printable(const std::string& s) {
  std::string out;
  for (unsigned char c : s) {
    if (c == '\n') {
      out += "\\n";
    } else if (c == '\t') {
      out += "\\t";
    } else if (c < 0x20 || c == 0x7f) {
      char b[8];
      std::snprintf(b, sizeof b, "\\x%02x", c);
      out += b;
    } else {
      out += static_cast<char>(c);
    }
  }
  return out;
}

// Turns an ECALL's status into a Status that names it: the TM_ERR_* name
// from the shared table, what it means here, and for kErrApp the
// application's own code and message (never described as a runtime error).
Status status_from_call(int32_t st, const abi::CallFrame& f, uint32_t id) {
  const std::string what = "ECALL " + hex(id);
  const std::string named = call_status_name(st);
  switch (st) {
    case abi::kOk: return {};
    case abi::kErrFault: {
      if (f.exception.vector == 0xffffffffu && f.exception.rip_offset == 0) {
        const abi::AppError why = f.app_error;
        const size_t n = why.message_len <= abi::kAppMessageMax ? why.message_len : abi::kAppMessageMax;
        return Status(Code::kEnclaveFault, what + " aborted inside the enclave (tm_abort)" +
                                               (n ? ": " + printable(std::string(why.message, n)) : std::string()));
      }
      std::string m = what + " failed: enclave fault " + vector_name(f.exception.vector) +
                      " at enclave offset " + hex(f.exception.rip_offset);
      if (f.exception.vector == 14 || f.exception.vector == 13) m += " accessing " + hex(f.exception.addr);
      return Status(Code::kEnclaveFault, m);
    }
    case abi::kErrApp: {
      // Copied once out of the frame; the length is the enclave's word, so
      // bound it before use.
      const abi::AppError app = f.app_error;
      const size_t n = app.message_len <= abi::kAppMessageMax ? app.message_len : abi::kAppMessageMax;
      std::string msg = printable(std::string(app.message, n));
      if (msg.empty()) msg = "the handler failed without a message";
      return Status::application(app.code, what + ": " + msg + " (application error " +
                                                std::to_string(app.code) + ")");
    }
    case abi::kErrUnknownCall: return invalid_argument(what + ": the enclave has no such ECALL (" + named + ")");
    case abi::kErrBufferRange:
      return security_error(what + ": a buffer overlaps the enclave or wraps around (" + named + ")");
    case abi::kErrTooLarge:
      return resource_error(what + ": a buffer exceeds the enclave's max_call_buffer (" + named + ")");
    case abi::kErrNoMemory: return resource_error(what + ": the enclave heap is exhausted (" + named + ")");
    case abi::kErrInvalid: return invalid_argument(what + ": the enclave refused the arguments (" + named + ")");
    case abi::kErrOcallFailed:
      return internal_error(what + ": an OCALL result was refused by the enclave (" + named + ")");
    case abi::kErrAbi: return invalid_argument(what + ": host/enclave ABI version mismatch (" + named + ")");
    case abi::kErrState: return internal_error(what + ": enclave entered in the wrong state (" + named + ")");
    case abi::kErrMac: return security_error(what + ": authentication failed inside the enclave (" + named + ")");
    case abi::kErrBusy: return Status(Code::kBusy, what + ": the enclave is busy; try again (" + named + ")");
    case abi::kErrDenied:
      return security_error(what + ": the enclave refused the call: this TCS is not leased to this process "
                                   "(its lease ended, or the token is wrong) (" + named + ")");
    case abi::kErrInterface:
      return invalid_argument(what + ": the enclave's typed-call stubs were generated from a different interface "
                                     "than the caller's; rebuild both from the same .edl (" + named + ")");
    default:
      return internal_error(what + " failed: " + named + " (" + call_status_description(st) + ")");
  }
}

struct ScratchPool {
  std::vector<std::unique_ptr<uint8_t[]>> levels;
  uint8_t* at(size_t depth) {
    while (levels.size() <= depth) {
      levels.emplace_back(new uint8_t[abi::kOcallScratchSize]);
      host::SwitchlessHost::register_scratch(levels.back().get());
    }
    return levels[depth].get();
  }
  ~ScratchPool() {
    for (auto& l : levels) host::SwitchlessHost::unregister_scratch(l.get());
  }
};

class EnclaveImpl;

struct ActiveCall {
  const EnclaveImpl* enclave;
  uint32_t tcs;
};

// This process's pid, read from memory (base::current_pid): a system call
// per ECALL otherwise, and correct in a child made by _Fork or clone, which
// run no atfork hooks (review defect of the cached pid).
using base::current_pid;

thread_local ScratchPool t_scratch;
thread_local std::vector<ActiveCall> t_active;

// Per EENTER: which enclave and which scratch region serves its OCALLs.
struct EntryState {
  EnclaveImpl* self;
  uint8_t* scratch;
  std::string aex_error;  // why the exception path failed, when it did
};

class EnclaveImpl final : public Enclave {
 public:
  Status load(const std::string& path, const LoadOptions& options) {
    options_ = options;
    TM_ASSIGN_OR_RETURN(auto loaded, image::load_image(path));
    image_.emplace(std::move(loaded));
    if (!image_->file.is_signed) return invalid_argument(path + ": image is not signed (run `teemate sign`)");
    // The SIGSTRUCT's own signature first (cheap); whether its ENCLAVEHASH
    // is this image's measurement is EINIT's check, as on hardware (it
    // needs the hashing that EADD/EEXTEND do anyway).
    TM_RETURN_IF_ERROR(sgx::verify_sigstruct(image_->file.sigstruct).with_context(path + ": SIGSTRUCT"));
    TM_ASSIGN_OR_RETURN(backend_, host::open_backend(options.backend));
    const image::Layout& layout = image_->layout;
    TM_ASSIGN_OR_RETURN(enclave_, backend_->create(host::create_params_for(layout)));
    TM_RETURN_IF_ERROR(host::add_image_pages(*enclave_, layout).with_context(path));
    TM_RETURN_IF_ERROR(enclave_->init(image_->file.sigstruct).with_context(path));
    const uint32_t n = layout.config().tcs_count;
    for (uint32_t i = 0; i < n; ++i) {
      tcs_addrs_.push_back(enclave_->base() + layout.tcs_offset(i));
      free_tcs_.push_back(n - 1 - i);
    }
    info_.mrenclave_hex = sgx::to_hex(enclave_->mrenclave());
    info_.mrsigner_hex = sgx::to_hex(enclave_->mrsigner());
    info_.base = enclave_->base();
    info_.size = enclave_->size();
    info_.tcs_count = n;
    image_name_ = path.substr(path.find_last_of('/') + 1);
    const image::EnclaveConfig& cfg = layout.config();
    return start_switchless(options.switchless, {cfg.switchless_ocall_workers, cfg.switchless_ecall_workers,
                                                 cfg.switchless_retries});
  }

  // Stops the workers, then makes the enclave forget this process's queues
  // before their memory is freed (review defect: the enclave wrote into a
  // freed queue). If the enclave cannot be told, the queues are never freed.
  void stop_switchless() {
    if (!switchless_) return;
    switchless_->stop();
    if (!runtime_call("forgetting the switchless queues", -1, [](CallTarget& t, int* ret) {
          return tm_runtime_switchless_setup(t, ret, 0, 0, 0);
        }).ok()) {
      (void)switchless_.release();  // leaked on purpose: the enclave may still write there
      return;
    }
    switchless_.reset();
  }

  // Starts the switchless workers the image (or the caller) asks for and
  // tells the enclave where this process's queues are.
  Status start_switchless(const SwitchlessOptions& o, host::SwitchlessConfig c) {
    if (o.ocall_workers >= 0) c.ocall_workers = static_cast<uint32_t>(std::min(o.ocall_workers, 64));
    if (o.ecall_workers >= 0) c.ecall_workers = static_cast<uint32_t>(std::min(o.ecall_workers, 64));
    if (o.retries >= 0) c.retries = static_cast<uint32_t>(std::min<int64_t>(o.retries, 10000000));
    if (o.idle_us >= 0) c.idle_us = static_cast<uint32_t>(std::min<int64_t>(o.idle_us, 10000000));
    if (!c.ocall_workers && !c.ecall_workers) return {};
    if (c.ecall_workers && c.ecall_workers >= tcs_addrs_.size()) {
      return invalid_argument("switchless: " + std::to_string(c.ecall_workers) + " ECALL workers need more than " +
                              std::to_string(tcs_addrs_.size()) + " TCS (each holds one while it polls)");
    }
    host::SwitchlessHost::Hooks hooks;
    hooks.serve_ocall = [this](abi::CallFrame* f) { handle_ocall(f); };
    hooks.run_enclave_worker = [this](uint64_t idle_polls, uint64_t* served) {
      auto tcs = try_acquire_tcs();
      if (!tcs) return false;
      return runtime_call("an enclave switchless worker", *tcs, [&](CallTarget& t, int* ret) {
               return tm_runtime_switchless_worker(t, ret, idle_polls, served);
             }).ok();
    };
    auto host = std::make_unique<host::SwitchlessHost>(c, std::move(hooks));
    if ((c.ocall_workers && !host->ocall_queue_address()) || (c.ecall_workers && !host->ecall_queue_address())) {
      return resource_error("switchless: cannot allocate the call queues");
    }
    TM_RETURN_IF_ERROR(runtime_call("switchless set-up", -1, [&](CallTarget& t, int* ret) {
      return tm_runtime_switchless_setup(t, ret, host->ocall_queue_address(), host->ecall_queue_address(), c.retries);
    }));
    // Published before the workers start: their crossings read it.
    switchless_ = std::move(host);
    switchless_->start();
    return {};
  }

  Status attach(const AttachOptions& o) {
    options_.output = o.output;
    const std::string sock_path = o.socket_path.empty() ? default_daemon_socket() : o.socket_path;
    // Whoever controls the socket's directory could stand in for teemated.
    TM_RETURN_IF_ERROR(protocol::check_socket_directory(sock_path, geteuid(), /*create=*/false)
                           .with_context("refusing to connect to " + sock_path));
    TM_ASSIGN_OR_RETURN(daemon_, protocol::connect_unix(sock_path));
    // hello, load and attach go out together (one round trip): the daemon
    // answers a connection's requests in order, its attach names "the
    // enclave my load just returned", and a failed hello or load fails
    // what follows it as well.
    TM_RETURN_IF_ERROR(protocol::send_message(daemon_.get(), protocol::make_request("hello", {{"client", o.client_name}})));
    nlohmann::json which;
    bool loading = false;
    if (!o.mrenclave.empty()) {
      which = {{"mrenclave", o.mrenclave}};
    } else if (o.enclave_id != 0) {
      which = {{"enclave", o.enclave_id}};
    } else {
      if (o.image.empty()) return invalid_argument("attach: name an image, an enclave id or a MRENCLAVE");
      std::error_code ec;
      const std::string image = std::filesystem::absolute(o.image, ec).string();
      // The daemon reads the image through our descriptor, so what we may
      // load is what we may open.
      protocol::UniqueFd file(open(image.c_str(), O_RDONLY | O_CLOEXEC));
      if (!file) return io_error("cannot open " + image, errno);
      nlohmann::json load = {{"image", image}};
      if (!o.trust_domain.empty()) load["trust_domain"] = o.trust_domain;
      const int fds[] = {file.get()};
      TM_RETURN_IF_ERROR(protocol::send_message(daemon_.get(), protocol::make_request("load", load), fds));
      which = {{"loaded", true}};
      loading = true;
    }
    nlohmann::json req = which;
    req["tcs"] = o.tcs;
    TM_RETURN_IF_ERROR(protocol::send_message(daemon_.get(), protocol::make_request("attach", req)));
    TM_RETURN_IF_ERROR(protocol::await_reply(daemon_.get()).status());
    if (loading) {
      Result<protocol::Message> loaded = protocol::await_reply(daemon_.get());
      if (!loaded.ok()) {
        (void)protocol::await_reply(daemon_.get());  // the attach that named it fails too
        return loaded.status();
      }
      if (!loaded->body.contains("enclave") || !loaded->body["enclave"].is_number_unsigned()) {
        return corrupt("teemated's load reply lacks an unsigned enclave id");
      }
      req.erase("loaded");
      req["enclave"] = loaded->body["enclave"].get<uint64_t>();
    }
    // All TCS leased: wait (bounded) for processes to leave, as a run
    // waits for a CPU; the daemon answers `busy` at once, so poll it.
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(o.wait_ms);
    auto pause = std::chrono::milliseconds(2);
    Result<protocol::Message> reply = protocol::await_reply(daemon_.get());
    while (!reply.ok() && reply.status().code() == Code::kBusy && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(std::min<std::chrono::steady_clock::duration>(pause, deadline - std::chrono::steady_clock::now()));
      pause = std::min(pause * 2, std::chrono::milliseconds(50));
      reply = protocol::call(daemon_.get(), protocol::make_request("attach", req));
    }
    if (!reply.ok()) {
      if (reply.status().code() == Code::kBusy && o.wait_ms > 0) {
        return Status(Code::kBusy, reply.status().message() + " (waited " + std::to_string(o.wait_ms / 1000.0).substr(0, 5) +
                                       " s for a free TCS)");
      }
      return reply.status();
    }
    protocol::Message att = std::move(reply).value();
    const nlohmann::json& b = att.body;
    auto u64 = [&](const char* k) { return b.contains(k) && b[k].is_number_unsigned(); };
    if (!u64("enclave") || !u64("base") || !u64("size") || !b.contains("tcs") || !b["tcs"].is_array() ||
        !b.contains("mrenclave") || !b["mrenclave"].is_string()) {
      return corrupt("teemated's attach reply lacks an unsigned enclave, base or size, a tcs list or a MRENCLAVE");
    }
    const uint64_t id = b["enclave"].get<uint64_t>();
    host::AttachHandles h;
    for (auto& fd : att.fds) h.fds.push_back(fd.get());
    h.base = b["base"].get<uint64_t>();
    h.size = b["size"].get<uint64_t>();
    // The daemon says which backend built the enclave; the attaching
    // process names none.
    if (!b.contains("backend") || !b["backend"].is_string()) {
      return corrupt("teemated's attach reply does not name the backend that built the enclave");
    }
    TM_ASSIGN_OR_RETURN(backend_, host::open_backend(b["backend"].get<std::string>()));
    TM_ASSIGN_OR_RETURN(enclave_, backend_->attach(h));
    TM_RETURN_IF_ERROR(adopt_tcs(b["tcs"]));
    if (tcs_addrs_.empty()) return corrupt("teemated leased no TCS");
    enclave_id_ = id;
    if (sgx::to_hex(enclave_->mrenclave()) != b["mrenclave"].get<std::string>()) {
      return security_error("the enclave teemated mapped is not the one it named (MRENCLAVE differs)");
    }
    info_.mrenclave_hex = sgx::to_hex(enclave_->mrenclave());
    info_.mrsigner_hex = sgx::to_hex(enclave_->mrsigner());
    info_.base = enclave_->base();
    info_.size = enclave_->size();
    info_.tcs_count = static_cast<uint32_t>(tcs_addrs_.size());
    const std::string image_path = b.contains("image") && b["image"].is_string() ? b["image"].get<std::string>() : o.image;
    image_name_ = image_path.substr(image_path.find_last_of('/') + 1);
    // The image's switchless settings, as the daemon read them (none from
    // an older daemon).
    host::SwitchlessConfig sc{0, 0, 20000};
    if (b.contains("switchless") && b["switchless"].is_object()) {
      const nlohmann::json& j = b["switchless"];
      auto u32 = [&](const char* k, uint32_t max, uint32_t* out) {
        if (j.contains(k) && j[k].is_number_unsigned()) *out = static_cast<uint32_t>(std::min<uint64_t>(j[k].get<uint64_t>(), max));
      };
      u32("ocall_workers", 64, &sc.ocall_workers);
      u32("ecall_workers", 64, &sc.ecall_workers);
      u32("retries", 10000000, &sc.retries);
    }
    // Fewer TCS leased than ECALL workers configured: as many as leave one.
    if (o.switchless.ecall_workers < 0 && sc.ecall_workers >= tcs_addrs_.size()) {
      sc.ecall_workers = static_cast<uint32_t>(tcs_addrs_.size() - 1);
    }
    return start_switchless(o.switchless, sc);
  }

  // Adds TCS the daemon leased to us ({"index", "address"} objects).
  Status adopt_tcs(const nlohmann::json& list) {
    if (!list.is_array()) return corrupt("teemated's reply lacks the leased TCS");
    std::lock_guard lock(tcs_mu_);
    for (const auto& t : list) {
      if (!t.is_object() || !t.contains("address") || !t["address"].is_number_unsigned() || !t.contains("index") ||
          !t["index"].is_number_unsigned() || !t.contains("token") || !t["token"].is_string()) {
        return corrupt("teemated's TCS entry lacks an unsigned index and address, or a token");
      }
      const uint64_t addr = t["address"].get<uint64_t>();
      if (addr < info_base() || addr - info_base() >= enclave_->size()) {
        return corrupt("teemated leased a TCS outside the enclave");
      }
      std::array<uint64_t, 2> token{};
      const std::string hex = t["token"].get<std::string>();
      if (hex.size() != 32) return corrupt("teemated's lease token is not 32 hex digits");
      for (size_t w = 0; w < 2; ++w) {
        char* end = nullptr;
        const std::string part = hex.substr(w * 16, 16);
        token[w] = std::strtoull(part.c_str(), &end, 16);
        if (end != part.c_str() + 16) return corrupt("teemated's lease token is not hex");
      }
      free_tcs_.push_back(static_cast<uint32_t>(tcs_addrs_.size()));
      tcs_addrs_.push_back(addr);
      daemon_index_.push_back(static_cast<uint32_t>(t["index"].get<uint64_t>()));
      lease_tokens_.push_back(token);
    }
    info_.tcs_count = static_cast<uint32_t>(free_tcs_.size());
    tcs_cv_.notify_all();
    return {};
  }
  uint64_t info_base() const { return enclave_->base(); }

  Status lease_tcs(uint32_t n) override {
    if (!daemon_) return unsupported("lease_tcs: this enclave is dedicated, not attached through teemated");
    TM_ASSIGN_OR_RETURN(protocol::Message r, protocol::call(daemon_.get(), protocol::make_request(
                                                 "lease", {{"enclave", enclave_id_}, {"tcs", n}})));
    return adopt_tcs(r.body["tcs"]);
  }

  Status release_tcs(uint32_t n) override {
    if (!daemon_) return unsupported("release_tcs: this enclave is dedicated, not attached through teemated");
    std::vector<uint32_t> mine;
    {
      std::lock_guard lock(tcs_mu_);
      if (n >= free_tcs_.size()) {
        return invalid_argument("release_tcs: " + std::to_string(n) + " of " + std::to_string(free_tcs_.size()) +
                                " idle TCS would leave none");
      }
      for (uint32_t k = 0; k < n; ++k) {
        mine.push_back(free_tcs_.back());
        free_tcs_.pop_back();
      }
      info_.tcs_count = static_cast<uint32_t>(free_tcs_.size());
    }
    nlohmann::json idx = nlohmann::json::array();
    for (uint32_t t : mine) idx.push_back(daemon_index_[t]);
    Status st = protocol::call(daemon_.get(), protocol::make_request("release", {{"enclave", enclave_id_}, {"tcs", idx}}))
                    .status();
    if (!st.ok()) {
      std::lock_guard lock(tcs_mu_);
      for (uint32_t t : mine) free_tcs_.push_back(t);
      info_.tcs_count = static_cast<uint32_t>(free_tcs_.size());
    }
    return st;
  }

  ~EnclaveImpl() override {
    // Threads pthread_create started run on this handle's TCS: let them end
    // (their switchless OCALLs are still served meanwhile).
    {
      std::unique_lock lock(threads_mu_);
      threads_cv_.wait(lock, [&] { return running_threads_ == 0; });
    }
    stop_switchless();
    if (daemon_ && enclave_id_ != 0) {  // 0: the attach failed before the daemon named an enclave
      // Idle slots go back at once; the daemon resets them.
      (void)protocol::call(daemon_.get(), protocol::make_request("detach", {{"enclave", enclave_id_}}), {}, 2000);
    }
  }

  Status call(uint32_t id, CallArgs& args) override {
    TM_RETURN_IF_ERROR(application_id(id));
    return call_any(id, args);
  }

  Status call_switchless(uint32_t id, CallArgs& args) override {
    TM_RETURN_IF_ERROR(application_id(id));
    if (!switchless_ || !switchless_->config().ecall_workers || current_pid() != owner_pid_ || args.overflowed()) {
      return call_any(id, args);
    }
    abi::CallFrame frame = frame_for(id, args);
    frame.status = abi::kErrState;  // what a worker that never ran it leaves
    if (!switchless_->try_ecall(&frame)) return call_any(id, args);
    const int32_t status = __atomic_load_n(&frame.status, __ATOMIC_ACQUIRE);
    return finish_call(status, frame, id, args);
  }

  SwitchlessStats switchless_stats() const override {
    SwitchlessStats out;
    if (switchless_) {
      out.ocalls_by_workers = switchless_->ocalls_served();
      out.ecalls_by_workers = switchless_->ecalls_served();
      out.ecall_fallbacks = switchless_->ecall_fallbacks();
    }
    return out;
  }

  // The tm_thread_spawn OCALL: a host thread enters a free TCS of ours with
  // tm_runtime_thread_run(handle). -EAGAIN when every TCS is in use (the enclave's
  // pthread_create then fails with EAGAIN rather than wait for one).
  int64_t spawn_thread(uint64_t handle) {
    std::optional<uint32_t> tcs;
    bool finishing;
    {
      std::lock_guard lock(threads_mu_);
      finishing = running_threads_ > 0;
    }
    {
      std::unique_lock lock(tcs_mu_);
      // A thread that was just joined gives its TCS back a moment after its
      // joiner learns it ended: wait briefly for it (review defect: an
      // immediate pthread_create got EAGAIN).
      if (free_tcs_.empty() && finishing) {
        tcs_cv_.wait_for(lock, std::chrono::milliseconds(50), [&] { return !free_tcs_.empty(); });
      }
      if (!free_tcs_.empty()) {
        tcs = free_tcs_.back();
        free_tcs_.pop_back();
      }
    }
    if (!tcs) return -EAGAIN;
    {
      std::lock_guard lock(threads_mu_);
      ++running_threads_;
    }
    try {
      std::thread([this, handle, t = *tcs] {
        Status st = runtime_call("running an enclave thread", static_cast<int64_t>(t), [&](CallTarget& target, int* ret) {
          return tm_runtime_thread_run(target, ret, handle);
        });
        if (!st.ok()) std::fprintf(stderr, "teemate: enclave thread: %s\n", st.to_string().c_str());
        std::lock_guard lock(threads_mu_);
        --running_threads_;
        threads_cv_.notify_all();
      }).detach();
    } catch (const std::system_error&) {
      return_to_pool(*tcs);
      std::lock_guard lock(threads_mu_);
      --running_threads_;
      threads_cv_.notify_all();
      return -EAGAIN;
    }
    return 0;
  }

  static Status application_id(uint32_t id) {
    if (id < abi::kFirstUserCall) {
      return invalid_argument("ECALL " + hex(id) + ": ids below 0x100 are reserved to the runtime");
    }
    if (id >= abi::kFirstRuntimeId && id <= abi::kLastRuntimeId) {
      return invalid_argument("ECALL " + hex(id) + ": ids " + hex(abi::kFirstRuntimeId) + "-" +
                              hex(abi::kLastRuntimeId) + " belong to the runtime's own interfaces");
    }
    return {};
  }

  // The runtime's own ECALLs (tm_runtime.edl) through their generated
  // proxies, on a TCS from the pool or on `preassigned` (>= 0): `make(target,
  // &ret)` makes the call; a non-zero `ret` is the function's own TM_ERR_*.
  class RuntimeTarget final : public CallTarget {
   public:
    RuntimeTarget(EnclaveImpl& e, int64_t tcs) : e_(e), tcs_(tcs) {}
    Status call(uint32_t id, CallArgs& args) override { return e_.call_any(id, args, tcs_); }

   private:
    EnclaveImpl& e_;
    int64_t tcs_;
  };
  template <typename Make>
  Status runtime_call(const char* what, int64_t preassigned, Make make) {
    RuntimeTarget target(*this, preassigned);
    int ret = abi::kOk;
    Status st = make(target, &ret);
    if (st.ok() && ret != abi::kOk) st = status_from_call(ret, abi::CallFrame{}, 0);
    return st.ok() ? st : st.with_context(what);
  }

  // `preassigned`: a TCS the caller already took from the pool (>= 0).
  Status call_any(uint32_t id, CallArgs& args, int64_t preassigned = -1) {
    if (current_pid() != owner_pid_) {
      return Status(Code::kInvalidArgument, "this enclave handle belongs to pid " + std::to_string(owner_pid_) +
                                      "; a forked child must load or attach an enclave of its own");
    }
    if (args.overflowed()) return invalid_argument("ECALL " + hex(id) + ": more than 4 buffers or scalars");
    // A nested ECALL (from an OCALL handler on this thread) reuses its TCS.
    uint32_t tcs = 0;
    bool nested = false;
    for (auto it = t_active.rbegin(); it != t_active.rend(); ++it) {
      if (it->enclave == this) {
        tcs = it->tcs;
        nested = true;
        break;
      }
    }
    if (preassigned >= 0) {
      tcs = static_cast<uint32_t>(preassigned);
    } else if (!nested) {
      auto got = acquire_tcs();
      if (!got.ok()) return got.status().with_context("ECALL " + hex(id));
      tcs = *got;
    }
    nested = nested && preassigned < 0;
    if (switchless_) switchless_->nudge();
    t_active.push_back({this, tcs});
    uint8_t* scratch = t_scratch.at(t_active.size() - 1);

    abi::CallFrame frame = frame_for(id, args);
    frame.ocall_scratch = reinterpret_cast<uint64_t>(scratch);
    frame.ocall_scratch_size = abi::kOcallScratchSize;
    if (tcs < lease_tokens_.size()) {
      frame.auth[0] = lease_tokens_[tcs][0];
      frame.auth[1] = lease_tokens_[tcs][1];
    }

    uint64_t exit_value = 0;
    Status st = run(tcs, abi::kEntryEcall, reinterpret_cast<uint64_t>(&frame), scratch, abi::kExitReturn, &exit_value);
    t_active.pop_back();
    if (!nested) return_to_pool(tcs);
    TM_RETURN_IF_ERROR(st);
    // The status the enclave exited with, not one read back from host
    // memory (a frame the enclave refused early is never written).
    return finish_call(static_cast<int32_t>(exit_value), frame, id, args);
  }

  static abi::CallFrame frame_for(uint32_t id, const CallArgs& args) {
    abi::CallFrame frame{};
    frame.abi_version = abi::kAbiVersion;
    frame.call_id = id;
    frame.nbufs = static_cast<uint32_t>(args.buffer_count());
    for (size_t i = 0; i < 4; ++i) frame.scalars[i] = args.scalar_value(i);
    for (size_t i = 0; i < args.buffer_count(); ++i) {
      const auto& b = args.buffer(i);
      frame.bufs[i] = abi::CallBuffer{reinterpret_cast<uint64_t>(b.data), b.size, 0,
                                      static_cast<uint32_t>(b.dir), 0};
    }
    return frame;
  }

  static Status finish_call(int32_t status, const abi::CallFrame& frame, uint32_t id, CallArgs& args) {
    for (size_t i = 0; i < args.buffer_count(); ++i) {
      auto& b = args.buffer(i);
      b.out_size = frame.bufs[i].out_size <= b.size ? frame.bufs[i].out_size : 0;
    }
    for (size_t i = 0; i < 4; ++i) args.scalar_ref(i) = frame.scalars[i];
    return status_from_call(status, frame, id);
  }

  Result<int> run_main(const std::vector<std::string>& argv) override {
    std::string blob;
    blob.append(image_name_).push_back('\0');
    for (const auto& a : argv) blob.append(a).push_back('\0');
    int64_t code = 0;
    TM_RETURN_IF_ERROR(runtime_call("running main()", -1, [&](CallTarget& t, int* ret) {
      return tm_runtime_run_main(t, ret, blob.data(), blob.size(), &code);
    }));
    return static_cast<int>(code);
  }

  Status set_ocall(uint32_t id, OcallHandler handler) override {
    if (id < abi::kFirstUserCall) return invalid_argument("OCALL ids below 0x100 are reserved for the runtime");
    std::unique_lock lock(ocall_mu_);
    ocalls_[id] = std::move(handler);
    return {};
  }

  const EnclaveInfo& info() const override { return info_; }

  // Called on the AEP after an asynchronous exit: let the enclave's
  // exception path decide, then ERESUME (return 0) or abandon.
  static int on_aex(host::EnterContext* ctx) {
    auto* es = static_cast<EntryState*>(ctx->user);
    uint32_t tcs = es->self->tcs_index(ctx->tcs);
    Status st = es->self->run(tcs, abi::kEntryException, 0, es->scratch, abi::kExitExceptionHandled, nullptr);
    if (!st.ok()) es->aex_error = st.message();
    return st.ok() ? 0 : 1;
  }

 private:
  uint32_t tcs_index(uint64_t addr) const {
    for (uint32_t i = 0; i < tcs_addrs_.size(); ++i) {
      if (tcs_addrs_[i] == addr) return i;
    }
    return 0;
  }

  // A free TCS of ours, waiting while all are in use by our other
  // threads; an error when none is usable any more (all out of service).
  Result<uint32_t> acquire_tcs() {
    std::unique_lock lock(tcs_mu_);
    tcs_cv_.wait(lock, [&] { return !free_tcs_.empty() || broken_.size() >= tcs_addrs_.size(); });
    if (free_tcs_.empty()) {
      return Status(Code::kResource, "every TCS of this enclave handle is out of service after an earlier failure");
    }
    uint32_t t = free_tcs_.back();
    free_tcs_.pop_back();
    return t;
  }

  // A free TCS without waiting (switchless enclave workers must not hold
  // up the application's calls).
  std::optional<uint32_t> try_acquire_tcs() {
    std::lock_guard lock(tcs_mu_);
    if (free_tcs_.empty()) return std::nullopt;
    uint32_t t = free_tcs_.back();
    free_tcs_.pop_back();
    return t;
  }

  void return_to_pool(uint32_t t) {
    {
      std::lock_guard lock(tcs_mu_);
      // A TCS whose entry failed at the architecture level stays out of the
      // pool: it may still hold state (CSSA) that only recovery can clear.
      if (broken_.count(t)) return;
      free_tcs_.push_back(t);
    }
    tcs_cv_.notify_one();
  }

  // One EENTER and every re-entry that OCALLs need, until the enclave exits
  // with `expect`.
  Status run(uint32_t tcs, uint64_t reason, uint64_t arg, uint8_t* scratch, uint64_t expect, uint64_t* exit_value) {
    EntryState es{this, scratch, {}};
    host::EnterContext ctx{};
    ctx.tcs = tcs_addrs_[tcs];
    ctx.rdi = reason;
    ctx.rsi = arg;
    ctx.on_aex = &EnclaveImpl::on_aex;
    ctx.user = &es;
    for (;;) {
      ctx.out_rdi = ctx.out_rsi = ctx.fault_vector = 0;
      enclave_->enter(&ctx);
      if (ctx.out_rdi == expect) {
        if (exit_value) *exit_value = ctx.out_rsi;
        return {};
      }
      switch (ctx.out_rdi) {
        case abi::kExitOcall: {
          if (ctx.out_rsi != reinterpret_cast<uint64_t>(scratch)) {
            mark_broken(tcs);
            return internal_error("enclave made an OCALL outside the scratch region it was given");
          }
          if (switchless_) switchless_->nudge();
          handle_ocall(reinterpret_cast<abi::CallFrame*>(scratch));
          ctx.rdi = abi::kEntryOcallReturn;
          ctx.rsi = 0;
          continue;
        }
        case host::kExitEncluFault:
          mark_broken(tcs);
          return internal_error("EENTER on TCS " + std::to_string(tcs) + " faulted with vector " +
                                std::to_string(ctx.fault_vector) + " (TCS busy or no free SSA frame)");
        case abi::kExitAex:
          mark_broken(tcs);
          return internal_error("the enclave could not handle an exception on TCS " + std::to_string(tcs) +
                                " (" + es.aex_error + "); the TCS is out of service");
        default:
          mark_broken(tcs);
          return internal_error("enclave exited with unexpected reason " + std::to_string(ctx.out_rdi) +
                                " (value " + std::to_string(ctx.out_rsi) + ")");
      }
    }
  }

  void mark_broken(uint32_t tcs) {
    {
      std::lock_guard lock(tcs_mu_);
      broken_[tcs] = true;
    }
    tcs_cv_.notify_all();  // waiters learn when none is left
  }

  // Serves one OCALL whose frame the enclave built in `f` (our scratch),
  // on a crossing or for a switchless worker; the runtime's console OCALL
  // writes to this handle's output.
  void handle_ocall(abi::CallFrame* f) {
    CallArgs args;
    if (int32_t bad = host::args_from_frame(*f, &args); bad != abi::kOk) {
      f->status = bad;
      return;
    }
    host::ScopedConsoleSink sink(&options_.output);
    const int32_t status = dispatch_ocall(f->call_id, args);
    host::answer_frame(f, args, status);
  }

  int32_t dispatch_ocall(uint32_t id, CallArgs& args) {
    OcallHandler h;
    {
      std::shared_lock lock(ocall_mu_);
      auto it = ocalls_.find(id);
      if (it != ocalls_.end()) h = it->second;
    }
    if (h) return h(args);
    // The runtime's typed OCALLs (common/tm_posix.edl, id block 0), unless
    // the application serves one itself (as any host may).
    if (id >= 0x10000 && id < 0x11000) return tm_posix_dispatch_ocall(id, args);
    return abi::kErrUnknownCall;
  }

  LoadOptions options_;
  std::optional<image::LoadedImage> image_;
  std::unique_ptr<host::Backend> backend_;
  std::unique_ptr<host::BackendEnclave> enclave_;
  std::vector<uint64_t> tcs_addrs_;
  std::mutex threads_mu_;
  std::condition_variable threads_cv_;
  int running_threads_ = 0;
  std::mutex tcs_mu_;
  std::condition_variable tcs_cv_;
  std::vector<uint32_t> free_tcs_;
  std::map<uint32_t, bool> broken_;
  std::shared_mutex ocall_mu_;
  std::map<uint32_t, OcallHandler> ocalls_;
  EnclaveInfo info_;
  std::string image_name_;
  protocol::UniqueFd daemon_;  // shared mode: the connection that holds our lease
  std::vector<uint32_t> daemon_index_;  // the daemon's index of each of our TCS
  std::vector<std::array<uint64_t, 2>> lease_tokens_;  // shared mode: per TCS, sent in every frame
  uint64_t enclave_id_ = 0;
  std::unique_ptr<host::SwitchlessHost> switchless_;  // stopped first in the destructor
  pid_t owner_pid_ = current_pid();  // a forked child must attach or load its own
};

}  // namespace

Result<std::unique_ptr<Enclave>> Enclave::attach(const AttachOptions& options) {
  auto e = std::make_unique<EnclaveImpl>();
  const std::string what = !options.mrenclave.empty() ? "MRENCLAVE " + options.mrenclave
                           : options.enclave_id   ? "enclave " + std::to_string(options.enclave_id)
                                                  : options.image;
  TM_RETURN_IF_ERROR(e->attach(options).with_context("attaching to " + what));
  return std::unique_ptr<Enclave>(std::move(e));
}

std::string default_daemon_socket() {
  if (const char* s = std::getenv("TEEMATE_SOCKET"); s && *s) return s;
  return base::runtime_dir() + "/teemated.sock";
}

Result<std::unique_ptr<Enclave>> Enclave::load(const std::string& image_path, const LoadOptions& options) {
  auto e = std::make_unique<EnclaveImpl>();
  TM_RETURN_IF_ERROR(e->load(image_path, options));
  return std::unique_ptr<Enclave>(std::move(e));
}

}  // namespace teemate

// The runtime's tm_thread_spawn OCALL (src/common/tm_posix.edl): served by
// the enclave handle whose ECALL this thread is in.
int64_t tm_thread_spawn(uint64_t handle) {
  if (teemate::t_active.empty()) return -EINVAL;
  auto* self = const_cast<teemate::EnclaveImpl*>(teemate::t_active.back().enclave);
  return self->spawn_thread(handle);
}
