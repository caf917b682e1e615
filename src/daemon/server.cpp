// teemated's poll loop and operations (see server.h and
// docs/daemon-protocol.md). Never trusts a client: every field is checked,
// a TCS is handed to one process at a time, and a process's TCS come back
// only when it released them while idle or after it has ended.
#include "daemon/server.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/random.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <map>
#include <optional>
#include <variant>
#include <vector>

#include "common/enclave_abi.h"
#include "host/backend/backend.h"
#include "host/daemon/protocol.h"
#include "host/daemon/requests.h"
#include "host/image/image_file.h"
#include "host/runtime/image_loader.h"
#include "sgx/measurement.h"
#include "teemate/enclave.h"

namespace teemate::daemon {
namespace {

using nlohmann::json;
using protocol::UniqueFd;

constexpr int kMessageTimeoutMs = 2000;  // a started message must arrive within this
constexpr size_t kMaxClients = 1024;
constexpr int kSoPeerPidfd = 77;  // SO_PEERPIDFD (asm-generic/socket.h, Linux 6.5)

void log(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
void log(const char* fmt, ...) {
  char when[32];
  time_t now = time(nullptr);
  struct tm tm {};
  localtime_r(&now, &tm);
  strftime(when, sizeof when, "%H:%M:%S", &tm);
  std::fprintf(stderr, "%s teemated: ", when);
  va_list ap;
  va_start(ap, fmt);
  std::vfprintf(stderr, fmt, ap);
  va_end(ap);
  std::fputc('\n', stderr);
}

int no_aex(host::EnterContext*) { return 1; }

// Identifies the file an enclave was loaded from, so that a later load of
// the same unchanged file finds the warm enclave without re-measuring it.
struct FileStamp {
  dev_t dev = 0;
  ino_t ino = 0;
  off_t size = 0;
  int64_t mtime_ns = 0;
  bool operator==(const FileStamp&) const = default;
};

bool stamp_of(const std::string& path, FileStamp* out) {
  struct stat st {};
  if (stat(path.c_str(), &st) != 0) return false;
  *out = FileStamp{st.st_dev, st.st_ino, st.st_size, st.st_mtim.tv_sec * 1000000000ll + st.st_mtim.tv_nsec};
  return true;
}

struct Warm {
  uint32_t id = 0;
  std::string image;
  FileStamp stamp;
  std::string mrenclave;
  std::optional<image::LoadedImage> loaded;
  std::unique_ptr<host::BackendEnclave> enclave;
  std::vector<int32_t> lease;  // pid per TCS, 0 = free, -1 = out of service
  // Authenticates this daemon's control ECALLs to the enclave; installed
  // right after EINIT, before any client can map the enclave, and never
  // sent to a client.
  std::array<uint64_t, 4> control_token{};
};

struct Client {
  UniqueFd sock;
  UniqueFd pidfd;
  protocol::PeerCredentials cred;
  std::string name = "?";
  bool connected = true;
  bool greeted = false;
  std::map<uint32_t, std::vector<uint32_t>> leases;  // enclave id -> TCS indices
  std::map<uint32_t, uint64_t> contexts;             // enclave id -> process context handle
  std::map<std::pair<uint32_t, uint32_t>, std::array<uint64_t, 2>> tokens;  // (enclave, TCS) -> lease token
  bool recovering = false;                           // its recovery is in progress
};

// 128 or 256 bits from the kernel's CSPRNG.
template <size_t N>
Status random_words(std::array<uint64_t, N>* out) {
  size_t done = 0;
  auto* p = reinterpret_cast<uint8_t*>(out->data());
  while (done < sizeof(*out)) {
    ssize_t n = getrandom(p + done, sizeof(*out) - done, 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      return io_error("getrandom", errno);
    }
    done += static_cast<size_t>(n);
  }
  return {};
}

std::string hex_words(const uint64_t* w, size_t n) {
  std::string s;
  char b[17];
  for (size_t i = 0; i < n; ++i) {
    std::snprintf(b, sizeof b, "%016llx", static_cast<unsigned long long>(w[i]));
    s += b;
  }
  return s;
}

const char* call_status_name(int32_t st) {
  switch (st) {
    case abi::kOk: return "ok";
    case abi::kErrInvalid: return "invalid";
    case abi::kErrUnknownCall: return "unknown call";
    case abi::kErrBufferRange: return "buffer range";
    case abi::kErrTooLarge: return "too large";
    case abi::kErrNoMemory: return "enclave heap exhausted";
    case abi::kErrFault: return "enclave fault";
    case abi::kErrOcallFailed: return "OCALL failed";
    case abi::kErrAbi: return "ABI mismatch";
    case abi::kErrState: return "wrong state";
    case abi::kErrBusy: return "busy";
    case abi::kErrDenied: return "denied";
    default: return "unknown status";
  }
}

class DaemonImpl final : public Daemon {
 public:
  Status init(const DaemonOptions& o) {
    options_ = o;
    TM_ASSIGN_OR_RETURN(backend_, host::open_backend(o.backend));
    std::error_code ec;
    std::filesystem::create_directories(std::filesystem::path(o.socket_path).parent_path(), ec);
    TM_ASSIGN_OR_RETURN(listen_, protocol::listen_unix(o.socket_path, 0660));
    TM_RETURN_IF_ERROR(write_pid_file(o.state_dir));
    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGINT);
    sigaddset(&mask, SIGTERM);
    sigprocmask(SIG_BLOCK, &mask, nullptr);
    signal(SIGPIPE, SIG_IGN);
    sigfd_.reset(signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK));
    if (!sigfd_) return io_error("signalfd", errno);
    log("listening on %s (backend %s)", o.socket_path.c_str(), backend_->name());
    return {};
  }

  Status run() override {
    for (;;) {
      std::vector<pollfd> fds;
      fds.push_back({listen_.get(), POLLIN, 0});
      fds.push_back({sigfd_.get(), POLLIN, 0});
      std::vector<std::pair<size_t, bool>> who;  // client index, is-pidfd
      for (size_t i = 0; i < clients_.size(); ++i) {
        Client& c = *clients_[i];
        if (c.connected) {
          fds.push_back({c.sock.get(), POLLIN, 0});
          who.push_back({i, false});
        }
        if (c.pidfd) {
          fds.push_back({c.pidfd.get(), POLLIN, 0});
          who.push_back({i, true});
        }
      }
      if (poll(fds.data(), fds.size(), -1) < 0) {
        if (errno == EINTR) continue;
        return io_error("poll", errno);
      }
      if (fds[1].revents) {
        log("stopping on signal");
        unlink(options_.socket_path.c_str());
        unlink(pid_file_.c_str());
        return {};
      }
      if (fds[0].revents & POLLIN) accept_client();
      for (size_t k = 2; k < fds.size(); ++k) {
        if (!fds[k].revents) continue;
        auto [index, is_pidfd] = who[k - 2];
        Client& c = *clients_[index];
        if (is_pidfd) {
          process_ended(c);
        } else {
          serve_one(c);
        }
      }
      // Forget clients that are gone and hold nothing.
      std::erase_if(clients_, [](const std::unique_ptr<Client>& c) {
        return !c->connected && !c->pidfd && c->leases.empty();
      });
    }
  }

 private:
  // state_dir/teemated.pid, written atomically.
  Status write_pid_file(const std::string& dir) {
    if (dir.empty()) return {};
    std::error_code ec;
    std::filesystem::create_directories(dir, ec);
    if (ec) return Status(Code::kIo, "cannot create state directory " + dir + ": " + ec.message());
    chmod(dir.c_str(), 0700);
    pid_file_ = dir + "/teemated.pid";
    const std::string tmp = pid_file_ + ".tmp";
    FILE* f = std::fopen(tmp.c_str(), "w");
    if (!f) return io_error("cannot write " + tmp, errno);
    std::fprintf(f, "%d\n", getpid());
    if (std::fclose(f) != 0 || rename(tmp.c_str(), pid_file_.c_str()) != 0) {
      return io_error("cannot write " + pid_file_, errno);
    }
    return {};
  }

  void accept_client() {
    int fd = accept4(listen_.get(), nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) return;
    auto c = std::make_unique<Client>();
    c->sock.reset(fd);
    auto cred = protocol::peer_credentials(fd);
    if (!cred.ok()) {
      log("refused a connection: %s", cred.status().message().c_str());
      return;
    }
    c->cred = *cred;
    if (c->cred.uid != 0 && c->cred.uid != geteuid() && c->cred.gid != getegid()) {
      log("refused pid %d: uid %u is neither root, nor this daemon's user, nor in its group", c->cred.pid,
          c->cred.uid);
      return;
    }
    if (clients_.size() >= kMaxClients) {
      log("refused pid %d: %zu clients already", c->cred.pid, clients_.size());
      return;
    }
    // A pidfd for the process that connected: SO_PEERPIDFD names that very
    // process even if its pid has been reused since (Linux 6.5); older
    // kernels fall back to pidfd_open on the SO_PEERCRED pid.
    int pfd = -1;
    socklen_t len = sizeof pfd;
    if (getsockopt(fd, SOL_SOCKET, kSoPeerPidfd, &pfd, &len) != 0) {
      pfd = static_cast<int>(syscall(SYS_pidfd_open, c->cred.pid, 0));
    }
    if (pfd < 0) {
      log("refused pid %d: cannot watch it (pidfd: %s)", c->cred.pid, strerror(errno));
      return;
    }
    c->pidfd.reset(pfd);
    if (options_.verbose) log("pid %d connected", c->cred.pid);
    clients_.push_back(std::move(c));
  }

  void close_connection(Client& c, const std::string& why) {
    if (!c.connected) return;
    if (!why.empty()) log("closing connection of pid %d (%s): %s", c.cred.pid, c.name.c_str(), why.c_str());
    c.sock.reset();
    c.connected = false;
    // Idle TCS come back now; a TCS in use stays leased until the process ends.
    const auto leases = c.leases;  // release_idle edits c.leases
    for (const auto& [id, list] : leases) release_idle(c, id, list);
    // Nothing left to take back when the process ends: stop watching it.
    if (c.leases.empty()) c.pidfd.reset();
  }

  void serve_one(Client& c) {
    auto msg = protocol::recv_message(c.sock.get(), kMessageTimeoutMs);
    if (!msg.ok()) {
      close_connection(c, msg.status().code() == Code::kNotFound ? "" : msg.status().message());
      return;
    }
    std::vector<int> out_fds;
    json reply = handle(c, msg->body, &out_fds);
    if (!c.connected) return;
    Status st = protocol::send_message(c.sock.get(), reply, out_fds, kMessageTimeoutMs);
    if (!st.ok()) close_connection(c, st.message());
  }

  // Out-of-order requests close the connection (docs/daemon-protocol.md).
  std::string order_violation(const Client& c, const std::string& op) {
    if (op == "hello") return c.greeted ? "a second hello" : "";
    if (!c.greeted) return "'" + op + "' before hello";
    return "";
  }

  // One request, decoded into its typed form first. No exception escapes:
  // anything a handler throws becomes an error reply for this request only.
  json handle(Client& c, const json& req, std::vector<int>* fds) {
    const std::string op = protocol::request_op(req);
    if (std::string bad = order_violation(c, op); !bad.empty()) {
      close_connection(c, "out of order: " + bad);
      return json();
    }
    Result<json> r = internal_error("no reply");
    try {
      Result<protocol::Request> decoded = protocol::decode_request(req);
      if (!decoded.ok()) {
        r = decoded.status();
      } else {
        r = std::visit([&](auto& q) { return serve(c, q, fds); }, *decoded);
      }
    } catch (const std::exception& e) {
      log("pid %d: %s: internal error: %s", c.cred.pid, op.c_str(), e.what());
      r = internal_error(op + ": internal error in teemated: " + e.what());
    }
    if (!r.ok()) {
      if (options_.verbose) log("pid %d: %s failed: %s", c.cred.pid, op.c_str(), r.status().message().c_str());
      return protocol::error_reply(r.status());
    }
    return protocol::ok_reply(std::move(r).value());
  }

  Result<json> serve(Client& c, const protocol::HelloRequest& q, std::vector<int>*) {
    c.greeted = true;
    if (!q.client.empty()) c.name = q.client;
    return json{{"daemon", "teemated"}, {"version", "0.1.0"}, {"protocol", protocol::kVersion},
                {"backend", backend_->name()}, {"pid", getpid()}};
  }
  Result<json> serve(Client& c, const protocol::LoadRequest& q, std::vector<int>*) { return load(c, q); }
  Result<json> serve(Client&, const protocol::ListRequest&, std::vector<int>*) { return list(); }
  Result<json> serve(Client& c, const protocol::AttachRequest& q, std::vector<int>* fds) { return attach(c, q, fds); }
  Result<json> serve(Client& c, const protocol::LeaseRequest& q, std::vector<int>*) { return lease(c, q); }
  Result<json> serve(Client& c, const protocol::ReleaseRequest& q, std::vector<int>*) { return release(c, q); }
  Result<json> serve(Client& c, const protocol::DetachRequest& q, std::vector<int>*) { return detach(c, q); }

  Result<json> describe(const Warm& w) {
    uint32_t free = 0;
    for (int32_t p : w.lease) free += p == 0;
    json attached = json::array();
    for (const auto& c : clients_) {
      auto it = c->leases.find(w.id);
      if (it == c->leases.end()) continue;
      attached.push_back(json{{"pid", c->cred.pid}, {"uid", c->cred.uid}, {"tcs", it->second}});
    }
    return json{{"enclave", w.id}, {"image", w.image}, {"mrenclave", w.mrenclave},
                {"base", w.enclave->base()}, {"size", w.enclave->size()}, {"tcs_count", w.lease.size()},
                {"tcs_total", w.lease.size()}, {"tcs_free", free}, {"attached", attached}};
  }

  // May the client's user read `path`? (The daemon may run as root.)
  static bool client_may_read(const std::string& path, const protocol::PeerCredentials& cred) {
    struct stat st {};
    if (stat(path.c_str(), &st) != 0) return false;
    if (cred.uid == 0) return true;
    if (st.st_uid == cred.uid) return st.st_mode & S_IRUSR;
    if (st.st_gid == cred.gid) return st.st_mode & S_IRGRP;
    return st.st_mode & S_IROTH;
  }

  Result<json> load(Client& c, const protocol::LoadRequest& q) {
    const std::string& path = q.image;
    if (!client_may_read(path, c.cred)) {
      return Status(Code::kSecurity, "image " + path + " does not exist or is not readable by uid " +
                                         std::to_string(c.cred.uid));
    }
    const bool fresh = q.fresh;
    std::error_code ec;
    std::string canonical = std::filesystem::weakly_canonical(path, ec).string();
    if (ec) canonical = path;
    FileStamp stamp;
    const bool stamped = stamp_of(canonical, &stamp);
    if (!fresh && stamped) {
      for (auto& w : warm_) {
        if (w->image == canonical && w->stamp == stamp) return describe(*w);
      }
    }
    TM_ASSIGN_OR_RETURN(auto img, image::load_image(canonical));
    TM_RETURN_IF_ERROR(image::check_image_signature(img));
    const std::string mr = sgx::to_hex(img.layout.measure());
    if (!fresh) {
      for (auto& w : warm_) {
        if (w->mrenclave == mr) return describe(*w);
      }
    }
    auto w = std::make_unique<Warm>();
    w->id = next_id_++;
    w->image = canonical;
    w->stamp = stamp;
    w->loaded.emplace(std::move(img));
    const image::Layout& layout = w->loaded->layout;
    // Shared enclaves live far from where clients' own mappings go (the
    // executable near 0x55..., libraries and mmaps below 0x7f...), so that
    // the same base is free in every process that attaches.
    host::CreateParams cp = host::create_params_for(layout);
    cp.base_hint = next_base_;
    TM_ASSIGN_OR_RETURN(w->enclave, backend_->create(cp));
    next_base_ = std::max(next_base_, w->enclave->base() + 2 * w->enclave->size());
    TM_RETURN_IF_ERROR(host::add_image_pages(*w->enclave, layout).with_context(canonical));
    TM_RETURN_IF_ERROR(w->enclave->init(w->loaded->file.sigstruct).with_context(canonical));
    w->mrenclave = sgx::to_hex(w->enclave->mrenclave());
    w->lease.assign(w->enclave->tcs_count(), 0);
    // Claim the enclave before any client can map it: from now on it runs
    // only ECALLs on TCS this daemon bound, with their lease tokens.
    TM_RETURN_IF_ERROR(random_words(&w->control_token));
    TM_RETURN_IF_ERROR(runtime_ecall(*w, 0, abi::kEcallClaimControl, {}).status().with_context(
        canonical + ": claiming the new enclave"));
    log("loaded %s as enclave %u (MRENCLAVE %s, %llu MiB, %zu TCS)", canonical.c_str(), w->id,
        w->mrenclave.c_str(), static_cast<unsigned long long>(w->enclave->size() >> 20), w->lease.size());
    warm_.push_back(std::move(w));
    return describe(*warm_.back());
  }

  Result<json> list() {
    json arr = json::array();
    for (auto& w : warm_) {
      TM_ASSIGN_OR_RETURN(json d, describe(*w));
      arr.push_back(std::move(d));
    }
    return json{{"enclaves", arr}};
  }

  // The enclave a request names, or the connection's one attachment.
  Result<Warm*> find_for(const Client& c, const protocol::EnclaveSelector& which) {
    if (which.empty()) {
      if (c.leases.size() + c.contexts.size() == 0) return invalid_argument("not attached to any enclave");
      const uint32_t id = !c.leases.empty() ? c.leases.begin()->first : c.contexts.begin()->first;
      if (Warm* w = by_id(id)) return w;
      return Status(Code::kNotFound, "no enclave " + std::to_string(id));
    }
    return find(which);
  }

  Result<Warm*> find(const protocol::EnclaveSelector& which) {
    if (which.id) {
      if (Warm* w = by_id(*which.id)) return w;
      return Status(Code::kNotFound, "no enclave " + std::to_string(*which.id));
    }
    if (!which.mrenclave) return invalid_argument("field 'enclave' or 'mrenclave' is missing");
    const std::string hex = sgx::to_hex(std::vector<uint8_t>(which.mrenclave->begin(), which.mrenclave->end()));
    // Several instances may share a MRENCLAVE: the one with most free TCS.
    Warm* best = nullptr;
    uint32_t best_free = 0;
    for (auto& w : warm_) {
      if (w->mrenclave != hex) continue;
      const auto free = static_cast<uint32_t>(std::count(w->lease.begin(), w->lease.end(), 0));
      if (!best || free > best_free) {
        best = w.get();
        best_free = free;
      }
    }
    if (best) return best;
    return Status(Code::kNotFound, "no warm enclave with MRENCLAVE " + hex);
  }

  // Serves an OCALL the runtime made during one of our own entries: only
  // its diagnostics (write, clock); anything else is refused.
  static void serve_own_ocall(const Warm& w, abi::CallFrame* f) {
    f->status = abi::kErrUnknownCall;
    if (f->call_id == abi::kOcallWrite && f->nbufs == 1 && f->bufs[0].size <= abi::kOcallScratchSize) {
      const auto* lo = reinterpret_cast<const char*>(f);
      const auto* p = reinterpret_cast<const char*>(f->bufs[0].ptr);
      if (p >= lo && p + f->bufs[0].size <= lo + abi::kOcallScratchSize) {
        std::string text(p, f->bufs[0].size);
        while (!text.empty() && text.back() == '\n') text.pop_back();
        log("enclave %u says: %s", w.id, text.c_str());
        f->scalars[1] = f->bufs[0].size;
        f->status = abi::kOk;
      }
    } else if (f->call_id == abi::kOcallClockGettime) {
      struct timespec ts {};
      if (clock_gettime(static_cast<clockid_t>(f->scalars[0]), &ts) == 0) {
        f->scalars[1] = static_cast<uint64_t>(ts.tv_sec) * 1000000000ull + static_cast<uint64_t>(ts.tv_nsec);
        f->status = abi::kOk;
      }
    }
  }

  // One control (or other runtime) ECALL by the daemon on TCS i, which no
  // client holds, authenticated with the enclave's control token. kErrBusy
  // means a lock the call needs is held by a thread that is not running
  // (most likely one of a process that died a moment ago): recover dead
  // processes and try again. A TCS a co-tenant holds busy is retried too.
  Result<std::array<uint64_t, 4>> runtime_ecall(Warm& w, uint32_t i, uint32_t id, std::array<uint64_t, 4> in) {
    constexpr int kAttempts = 40;
    for (int attempt = 1;; ++attempt) {
      int32_t status = 0;
      uint64_t fault = 0;
      auto r = runtime_ecall_once(w, i, id, in, &status, &fault);
      const bool retry = (!r.ok() && (status == abi::kErrBusy || fault != 0)) && attempt < kAttempts;
      if (!retry) return r;
      recover_dead_clients();
      struct timespec pause_for {0, 5 * 1000 * 1000};
      nanosleep(&pause_for, nullptr);
    }
  }

  Result<std::array<uint64_t, 4>> runtime_ecall_once(Warm& w, uint32_t i, uint32_t id, const std::array<uint64_t, 4>& in,
                                                     int32_t* status_out, uint64_t* fault_out) {
    std::vector<uint8_t> scratch(abi::kOcallScratchSize);
    abi::CallFrame frame{};
    frame.abi_version = abi::kAbiVersion;
    frame.call_id = id;
    for (size_t k = 0; k < 4; ++k) frame.scalars[k] = in[k];
    for (size_t k = 0; k < 4; ++k) frame.auth[k] = w.control_token[k];
    frame.ocall_scratch = reinterpret_cast<uint64_t>(scratch.data());
    frame.ocall_scratch_size = scratch.size();
    host::EnterContext ctx{};
    ctx.tcs = w.enclave->tcs_address(i);
    ctx.on_aex = no_aex;
    ctx.rdi = abi::kEntryEcall;
    ctx.rsi = reinterpret_cast<uint64_t>(&frame);
    for (int ocalls = 0;; ++ocalls) {
      w.enclave->enter(&ctx);
      if (ctx.out_rdi != abi::kExitOcall || ctx.out_rsi != frame.ocall_scratch || ocalls > 64) break;
      serve_own_ocall(w, reinterpret_cast<abi::CallFrame*>(scratch.data()));
      ctx.rdi = abi::kEntryOcallReturn;
      ctx.rsi = 0;
    }
    const std::string what = "runtime ECALL " + std::to_string(id) + " on TCS " + std::to_string(i);
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
      return Status(status == abi::kErrBusy ? Code::kBusy : Code::kInternal,
                    what + " failed: " + call_status_name(status) + " (status " + std::to_string(status) + ")");
    }
    std::array<uint64_t, 4> out{};
    for (size_t k = 0; k < 4; ++k) out[k] = frame.scalars[k];
    return out;
  }

  // The arena each attached process gets inside the enclave.
  static uint64_t arena_bytes(const Warm& w) {
    const image::EnclaveConfig& cfg = w.loaded->layout.config();
    uint64_t b = cfg.heap_size / (uint64_t{cfg.tcs_count} + 1);
    b = std::min<uint64_t>(b, 64ull << 20) & ~uint64_t{4095};
    return b;
  }

  // Leases up to n free TCS of w to c; all or nothing.
  Result<std::vector<uint32_t>> take(Client& c, Warm& w, uint64_t n) {
    std::vector<uint32_t> got;
    for (uint32_t i = 0; i < w.lease.size() && got.size() < n; ++i) {
      if (w.lease[i] == 0) got.push_back(i);
    }
    if (got.size() < n) {
      return Status(Code::kBusy, "enclave " + std::to_string(w.id) + " has " + std::to_string(got.size()) +
                                     " free TCS, " + std::to_string(n) + " requested");
    }
    if (got.empty()) return got;
    // Nobody else may take these while we bind them.
    for (uint32_t i : got) w.lease[i] = c.cred.pid;
    auto unwind = [&](size_t bound) {
      for (size_t k = 0; k < bound; ++k) (void)runtime_ecall(w, got[k], abi::kEcallBindTcs, {0, 0, 0, 0});
      for (uint32_t i : got) w.lease[i] = 0;
    };
    // The process's context in the enclave, made on its first lease.
    if (!c.contexts.count(w.id)) {
      auto r = runtime_ecall(w, got[0], abi::kEcallProcessStart,
                             {static_cast<uint64_t>(c.cred.pid), arena_bytes(w), 0, 0});
      if (!r.ok()) {
        unwind(0);
        return r.status();
      }
      c.contexts[w.id] = (*r)[0];
    }
    std::vector<std::array<uint64_t, 2>> tokens(got.size());
    for (size_t k = 0; k < got.size(); ++k) {
      Status st = random_words(&tokens[k]);
      if (st.ok()) {
        st = runtime_ecall(w, got[k], abi::kEcallBindTcs, {c.contexts[w.id], tokens[k][0], tokens[k][1], 0}).status();
      }
      if (!st.ok()) {
        unwind(k);
        return st;
      }
    }
    for (size_t k = 0; k < got.size(); ++k) {
      c.leases[w.id].push_back(got[k]);
      c.tokens[{w.id, got[k]}] = tokens[k];
    }
    return got;
  }

  // The leased TCS as the client needs them; the lease token of each goes
  // to this client only.
  json tcs_json(const Client& c, const Warm& w, const std::vector<uint32_t>& idx) {
    json arr = json::array();
    for (uint32_t i : idx) {
      auto it = c.tokens.find({w.id, i});
      const std::string token = it == c.tokens.end() ? "" : hex_words(it->second.data(), 2);
      arr.push_back(json{{"index", i}, {"address", w.enclave->tcs_address(i)}, {"token", token}});
    }
    return arr;
  }

  Result<json> attach(Client& c, const protocol::AttachRequest& q, std::vector<int>* fds) {
    TM_ASSIGN_OR_RETURN(Warm * w, find(q.which));
    if (c.leases.count(w->id)) return invalid_argument("already attached to enclave " + std::to_string(w->id) + "; use lease");
    const uint64_t n = q.tcs;
    if (n > w->lease.size()) {
      return invalid_argument("attach: field 'tcs' must be at most " + std::to_string(w->lease.size()) +
                              " (the enclave's TCS count)");
    }
    TM_ASSIGN_OR_RETURN(host::AttachHandles h, w->enclave->export_handles());
    TM_ASSIGN_OR_RETURN(std::vector<uint32_t> got, take(c, *w, n));
    if (got.empty()) c.leases[w->id];  // attached without slots yet
    *fds = h.fds;
    if (options_.verbose) log("pid %d (%s) attached to enclave %u with %zu TCS", c.cred.pid, c.name.c_str(), w->id, got.size());
    return json{{"enclave", w->id}, {"backend", backend_->name()}, {"image", w->image},
                {"mrenclave", w->mrenclave}, {"base", h.base}, {"size", h.size}, {"tcs", tcs_json(c, *w, got)}};
  }

  Result<json> lease(Client& c, const protocol::LeaseRequest& q) {
    TM_ASSIGN_OR_RETURN(Warm * w, find_for(c, q.which));
    if (!c.leases.count(w->id)) return invalid_argument("attach to enclave " + std::to_string(w->id) + " first");
    const uint64_t n = q.tcs;
    TM_ASSIGN_OR_RETURN(std::vector<uint32_t> got, take(c, *w, n));
    return json{{"tcs", tcs_json(c, *w, got)}};
  }

  Result<json> release(Client& c, const protocol::ReleaseRequest& q) {
    TM_ASSIGN_OR_RETURN(Warm * w, find_for(c, q.which));
    auto it = c.leases.find(w->id);
    if (it == c.leases.end()) return invalid_argument("not attached to enclave " + std::to_string(w->id));
    auto& mine = it->second;
    std::vector<uint32_t> list;
    for (uint32_t i : q.tcs) {
      if (std::find(mine.begin(), mine.end(), i) == mine.end()) {
        return invalid_argument("TCS " + std::to_string(i) + " is not leased to this process");
      }
      if (std::find(list.begin(), list.end(), i) == list.end()) list.push_back(i);
    }
    TM_RETURN_IF_ERROR(release_all_or_none(c, *w, list));
    return json::object();
  }

  Result<json> detach(Client& c, const protocol::DetachRequest& q) {
    TM_ASSIGN_OR_RETURN(Warm * w, find_for(c, q.which));
    auto it = c.leases.find(w->id);
    if (it == c.leases.end()) return json::object();
    const std::vector<uint32_t> list = it->second;
    TM_RETURN_IF_ERROR(release_all_or_none(c, *w, list));
    return json::object();
  }

  // Gives back exactly `list` (TCS leased to c) or nothing: each is unbound
  // in the enclave, which refuses while a thread of the process is inside
  // it; after a refusal the ones already unbound are bound again with the
  // same tokens. When c holds no TCS of w any more, its context ends.
  Status release_all_or_none(Client& c, Warm& w, const std::vector<uint32_t>& list) {
    std::vector<uint32_t> done;
    for (uint32_t i : list) {
      Status st = w.enclave->tcs_busy(i) ? Status(Code::kBusy, "busy")
                                         : runtime_ecall(w, i, abi::kEcallBindTcs, {0, 0, 0, 0}).status();
      if (!st.ok()) {
        for (uint32_t j : done) {
          const auto& t = c.tokens[{w.id, j}];
          (void)runtime_ecall(w, j, abi::kEcallBindTcs, {c.contexts[w.id], t[0], t[1], 0});
        }
        return Status(Code::kBusy, "TCS " + std::to_string(i) +
                                       " is in use by a thread of this process; leave the enclave first (nothing was released)");
      }
      done.push_back(i);
    }
    auto& mine = c.leases[w.id];
    for (uint32_t i : list) {
      std::erase(mine, i);
      c.tokens.erase({w.id, i});
    }
    if (mine.empty()) {
      c.leases.erase(w.id);
      if (!list.empty()) end_context(c, w, list.back(), false);
    }
    for (uint32_t i : list) w.lease[i] = 0;
    return {};
  }

  Warm* by_id(uint32_t id) {
    for (auto& w : warm_) {
      if (w->id == id) return w.get();
    }
    return nullptr;
  }

  // A live process gives TCS of `list` back: each is unbound in the
  // enclave (refused while a thread of the process is inside it) and
  // returns to the pool; when the process has no TCS left, its context
  // ends. Returns the TCS that stay leased because they are in use.
  std::vector<uint32_t> release_idle(Client& c, uint32_t id, std::vector<uint32_t> list) {
    Warm* w = by_id(id);
    std::vector<uint32_t> kept;
    if (!w) return kept;
    auto& mine = c.leases[id];
    for (uint32_t i : list) {
      Status st = w->enclave->tcs_busy(i) ? Status(Code::kBusy, "busy")
                                          : runtime_ecall(*w, i, abi::kEcallBindTcs, {0, 0, 0, 0}).status();
      if (!st.ok()) {
        kept.push_back(i);
        continue;
      }
      std::erase(mine, i);
      c.tokens.erase({id, i});
      if (mine.empty()) {
        end_context(c, *w, i, false);
      }
      w->lease[i] = 0;
    }
    if (mine.empty()) c.leases.erase(id);
    return kept;
  }

  // Ends c's context in w, on TCS i (which c no longer holds).
  void end_context(Client& c, Warm& w, uint32_t i, bool owner_dead) {
    auto ctx = c.contexts.find(w.id);
    if (ctx == c.contexts.end()) return;
    auto r = runtime_ecall(w, i, abi::kEcallProcessEnd, {ctx->second, 0, 0, 0});
    if (!r.ok()) {
      log("enclave %u: ending the context of pid %d failed: %s", w.id, c.cred.pid, r.status().message().c_str());
      return;  // kept in c.contexts: a later death or detach tries again
    }
    if (options_.verbose || owner_dead) {
      log("enclave %u: context of pid %d ended (main status %lld, %llu arena bytes never freed, reclaimed)",
          w.id, c.cred.pid, static_cast<long long>(static_cast<int64_t>((*r)[1])),
          static_cast<unsigned long long>((*r)[2]));
    }
    c.contexts.erase(ctx);
  }

  // TCS i of a process that has ended: reach the state the hardware leaves
  // after the thread's asynchronous exit, run the enclave's recovery path
  // (CSSA back to 0, the dead thread's chain forgotten), and reset a
  // pending OCALL. Takes no enclave lock.
  Status reset_tcs(Warm& w, uint32_t i) {
    TM_ASSIGN_OR_RETURN(uint32_t cssa, w.enclave->reclaim_tcs(i));
    host::EnterContext ctx{};
    std::vector<uint8_t> scratch(abi::kOcallScratchSize);
    abi::CallFrame frame{};
    frame.abi_version = abi::kAbiVersion;
    for (size_t k = 0; k < 4; ++k) frame.auth[k] = w.control_token[k];
    while (cssa > 0) {
      ctx = host::EnterContext{};
      ctx.tcs = w.enclave->tcs_address(i);
      ctx.on_aex = no_aex;
      ctx.rdi = abi::kEntryRecover;
      ctx.rsi = reinterpret_cast<uint64_t>(&frame);
      ctx.resume_after_exception = 1;
      w.enclave->enter(&ctx);
      if (ctx.out_rdi == abi::kExitExceptionHandled) {
        return internal_error("the enclave refused the recovery entry (status " + std::to_string(ctx.out_rsi) + ")");
      }
      if (ctx.out_rdi != abi::kExitReturn) {
        return internal_error("recovery entry ended with exit reason " + std::to_string(ctx.out_rdi));
      }
      const uint32_t now = w.enclave->tcs_cssa(i);
      if (now >= cssa) return internal_error("recovery did not lower CSSA");
      cssa = now;
    }
    return runtime_ecall(w, i, abi::kEcallResetThread, {}).status().with_context("reset");
  }

  // Polls every client's pidfd without waiting and recovers those whose
  // process has ended (a control ECALL that found a lock held calls this).
  void recover_dead_clients() {
    for (auto& cp : clients_) {
      Client& c = *cp;
      if (!c.pidfd || c.recovering) continue;
      pollfd p{c.pidfd.get(), POLLIN, 0};
      if (poll(&p, 1, 0) == 1 && (p.revents & POLLIN)) process_ended(c);
    }
  }

  void process_ended(Client& c) {
    if (c.recovering) return;
    c.recovering = true;
    size_t n = 0;
    for (auto& [id, list] : c.leases) {
      Warm* w = by_id(id);
      if (!w) continue;
      // Every TCS first, so that no lock is needed while a dead thread of
      // the process may hold one; then the context (which releases them).
      std::vector<uint32_t> good;
      for (uint32_t i : list) {
        Status st = reset_tcs(*w, i);
        if (!st.ok()) {
          log("enclave %u TCS %u could not be recovered (%s); it stays out of service", w->id, i, st.message().c_str());
          w->lease[i] = -1;
          continue;
        }
        good.push_back(i);
        ++n;
      }
      if (!good.empty()) end_context(c, *w, good.back(), true);
      for (uint32_t i : good) w->lease[i] = 0;
      for (uint32_t i : list) c.tokens.erase({id, i});
    }
    c.leases.clear();
    if (n) log("pid %d (%s) ended; %zu TCS recovered", c.cred.pid, c.name.c_str(), n);
    c.pidfd.reset();
    c.sock.reset();
    c.connected = false;
    c.recovering = false;
  }

  DaemonOptions options_;
  std::unique_ptr<host::Backend> backend_;
  UniqueFd listen_;
  UniqueFd sigfd_;
  std::vector<std::unique_ptr<Warm>> warm_;
  std::vector<std::unique_ptr<Client>> clients_;
  uint32_t next_id_ = 1;
  uint64_t next_base_ = 0x200000000000ull;  // 32 TiB
  std::string pid_file_;
};

}  // namespace

std::string default_socket_path() { return default_daemon_socket(); }

std::string default_state_dir() {
  if (geteuid() == 0) return "/var/lib/teemate";
  if (const char* x = std::getenv("XDG_STATE_HOME"); x && *x) return std::string(x) + "/teemate";
  if (const char* h = std::getenv("HOME"); h && *h) return std::string(h) + "/.local/state/teemate";
  return "/tmp/teemate-" + std::to_string(geteuid()) + "/state";
}

Result<std::unique_ptr<Daemon>> Daemon::create(const DaemonOptions& options) {
  auto d = std::make_unique<DaemonImpl>();
  TM_RETURN_IF_ERROR(d->init(options));
  return std::unique_ptr<Daemon>(std::move(d));
}

}  // namespace teemate::daemon
