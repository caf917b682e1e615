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
#include <vector>

#include "common/enclave_abi.h"
#include "host/backend/backend.h"
#include "host/daemon/protocol.h"
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
  std::vector<int32_t> lease;  // pid per TCS, 0 = free
};

struct Client {
  UniqueFd sock;
  UniqueFd pidfd;
  protocol::PeerCredentials cred;
  std::string name = "?";
  bool connected = true;
  bool greeted = false;
  std::map<uint32_t, std::vector<uint32_t>> leases;  // enclave id -> TCS indices
  std::map<uint32_t, uint64_t> contexts;             // enclave id -> process context id
};

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
    int pfd = static_cast<int>(syscall(SYS_pidfd_open, c->cred.pid, 0));
    if (pfd < 0) {
      log("refused pid %d: cannot watch it (pidfd_open: %s)", c->cred.pid, strerror(errno));
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

  json handle(Client& c, const json& req, std::vector<int>* fds) {
    const std::string op = req.value("op", "");
    if (std::string bad = order_violation(c, op); !bad.empty()) {
      close_connection(c, "out of order: " + bad);
      return json();
    }
    Result<json> r = op == "hello"     ? hello(c, req)
                     : op == "load"    ? load(c, req)
                     : op == "list"    ? list()
                     : op == "attach"  ? attach(c, req, fds)
                     : op == "lease"   ? lease(c, req)
                     : op == "release" ? release(c, req)
                     : op == "detach"  ? detach(c, req)
                                       : Result<json>(invalid_argument("unknown op '" + op + "'"));
    if (!r.ok()) {
      if (options_.verbose) log("pid %d: %s failed: %s", c.cred.pid, op.c_str(), r.status().message().c_str());
      return protocol::error_reply(r.status());
    }
    return protocol::ok_reply(std::move(r).value());
  }

  Result<json> hello(Client& c, const json& req) {
    c.greeted = true;
    if (req.contains("client") && req["client"].is_string()) c.name = req["client"].get<std::string>().substr(0, 64);
    return json{{"daemon", "teemated"}, {"version", "0.1.0"}, {"protocol", protocol::kVersion},
                {"backend", backend_->name()}, {"pid", getpid()}};
  }

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

  Result<json> load(Client& c, const json& req) {
    TM_ASSIGN_OR_RETURN(std::string path, protocol::get_string(req, "image"));
    if (path.empty() || path[0] != '/') return invalid_argument("field 'image' must be an absolute path");
    if (!client_may_read(path, c.cred)) {
      return Status(Code::kSecurity, "image " + path + " does not exist or is not readable by uid " +
                                         std::to_string(c.cred.uid));
    }
    const bool fresh = req.value("new", false);
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
    // No process may enter until it holds a lease.
    for (uint32_t i = 0; i < w->lease.size(); ++i) (void)w->enclave->set_tcs_lease(i, -1);
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
  Result<Warm*> find_for(const Client& c, const json& req) {
    if (!req.contains("enclave") && !req.contains("mrenclave")) {
      if (c.leases.size() + c.contexts.size() == 0) return invalid_argument("not attached to any enclave");
      const uint32_t id = !c.leases.empty() ? c.leases.begin()->first : c.contexts.begin()->first;
      if (Warm* w = by_id(id)) return w;
      return Status(Code::kNotFound, "no enclave " + std::to_string(id));
    }
    return find(req);
  }

  Result<Warm*> find(const json& req) {
    if (req.contains("enclave")) {
      TM_ASSIGN_OR_RETURN(uint64_t id, protocol::get_u64(req, "enclave", UINT32_MAX));
      for (auto& w : warm_) {
        if (w->id == id) return w.get();
      }
      return Status(Code::kNotFound, "no enclave " + std::to_string(id));
    }
    TM_ASSIGN_OR_RETURN(std::vector<uint8_t> mr, protocol::get_hex(req, "mrenclave", 32));
    const std::string hex = sgx::to_hex(mr);
    for (auto& w : warm_) {
      if (w->mrenclave == hex) return w.get();
    }
    return Status(Code::kNotFound, "no warm enclave with MRENCLAVE " + hex);
  }

  // A runtime ECALL made by the daemon on TCS i (which it must hold).
  Result<std::array<uint64_t, 4>> runtime_ecall(Warm& w, uint32_t i, uint32_t id, std::array<uint64_t, 4> in) {
    std::vector<uint8_t> scratch(abi::kOcallScratchSize);
    abi::CallFrame frame{};
    frame.abi_version = abi::kAbiVersion;
    frame.call_id = id;
    for (size_t k = 0; k < 4; ++k) frame.scalars[k] = in[k];
    frame.ocall_scratch = reinterpret_cast<uint64_t>(scratch.data());
    frame.ocall_scratch_size = scratch.size();
    host::EnterContext ctx{};
    ctx.tcs = w.enclave->tcs_address(i);
    ctx.on_aex = no_aex;
    ctx.rdi = abi::kEntryEcall;
    ctx.rsi = reinterpret_cast<uint64_t>(&frame);
    w.enclave->enter(&ctx);
    if (ctx.out_rdi != abi::kExitReturn || frame.status != abi::kOk) {
      return internal_error("runtime ECALL " + std::to_string(id) + " on TCS " + std::to_string(i) +
                            " failed (exit " + std::to_string(ctx.out_rdi) + ", status " +
                            std::to_string(frame.status) + ")");
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
    // The process's context in the enclave, made on its first lease.
    const pid_t me = getpid();
    for (uint32_t i : got) TM_RETURN_IF_ERROR(w.enclave->set_tcs_lease(i, me));
    auto unwind = [&] {
      for (uint32_t i : got) (void)w.enclave->set_tcs_lease(i, -1);
    };
    if (!c.contexts.count(w.id)) {
      auto r = runtime_ecall(w, got[0], abi::kEcallProcessStart,
                             {static_cast<uint64_t>(c.cred.pid), arena_bytes(w), 0, 0});
      if (!r.ok()) {
        unwind();
        return r.status();
      }
      c.contexts[w.id] = (*r)[0];
    }
    for (uint32_t i : got) {
      auto r = runtime_ecall(w, i, abi::kEcallBindTcs, {c.contexts[w.id], 0, 0, 0});
      if (!r.ok()) {
        unwind();
        return r.status();
      }
    }
    for (uint32_t i : got) {
      w.lease[i] = c.cred.pid;
      TM_RETURN_IF_ERROR(w.enclave->set_tcs_lease(i, c.cred.pid));
      c.leases[w.id].push_back(i);
    }
    return got;
  }

  json tcs_json(const Warm& w, const std::vector<uint32_t>& idx) {
    json arr = json::array();
    for (uint32_t i : idx) arr.push_back(json{{"index", i}, {"address", w.enclave->tcs_address(i)}});
    return arr;
  }

  Result<json> attach(Client& c, const json& req, std::vector<int>* fds) {
    TM_ASSIGN_OR_RETURN(Warm * w, find(req));
    if (c.leases.count(w->id)) return invalid_argument("already attached to enclave " + std::to_string(w->id) + "; use lease");
    TM_ASSIGN_OR_RETURN(uint64_t n, protocol::get_u64(req, "tcs", w->lease.size()));
    TM_ASSIGN_OR_RETURN(host::AttachHandles h, w->enclave->export_handles());
    TM_ASSIGN_OR_RETURN(std::vector<uint32_t> got, take(c, *w, n));
    if (got.empty()) c.leases[w->id];  // attached without slots yet
    *fds = h.fds;
    if (options_.verbose) log("pid %d (%s) attached to enclave %u with %zu TCS", c.cred.pid, c.name.c_str(), w->id, got.size());
    return json{{"enclave", w->id}, {"backend", backend_->name()}, {"image", w->image},
                {"mrenclave", w->mrenclave}, {"base", h.base}, {"size", h.size}, {"tcs", tcs_json(*w, got)}};
  }

  Result<json> lease(Client& c, const json& req) {
    TM_ASSIGN_OR_RETURN(Warm * w, find_for(c, req));
    if (!c.leases.count(w->id)) return invalid_argument("attach to enclave " + std::to_string(w->id) + " first");
    TM_ASSIGN_OR_RETURN(uint64_t n, protocol::get_u64(req, "tcs", 1024));
    TM_ASSIGN_OR_RETURN(std::vector<uint32_t> got, take(c, *w, n));
    return json{{"tcs", tcs_json(*w, got)}};
  }

  Result<json> release(Client& c, const json& req) {
    TM_ASSIGN_OR_RETURN(Warm * w, find_for(c, req));
    TM_ASSIGN_OR_RETURN(std::vector<uint64_t> want, protocol::get_u64_array(req, "tcs", UINT32_MAX, 1024));
    auto& mine = c.leases[w->id];
    for (uint64_t i : want) {
      if (std::find(mine.begin(), mine.end(), i) == mine.end()) {
        return invalid_argument("TCS " + std::to_string(i) + " is not leased to this process");
      }
    }
    std::vector<uint32_t> list(want.begin(), want.end());
    std::vector<uint32_t> kept = release_idle(c, w->id, list);
    if (!kept.empty()) return Status(Code::kBusy, "TCS " + std::to_string(kept[0]) + " is in use; leave the enclave first");
    return json::object();
  }

  Result<json> detach(Client& c, const json& req) {
    TM_ASSIGN_OR_RETURN(Warm * w, find_for(c, req));
    auto it = c.leases.find(w->id);
    if (it == c.leases.end()) return json::object();
    std::vector<uint32_t> kept = release_idle(c, w->id, it->second);
    if (!kept.empty()) return Status(Code::kBusy, "TCS " + std::to_string(kept[0]) + " is in use; leave the enclave first");
    return json::object();
  }

  Warm* by_id(uint32_t id) {
    for (auto& w : warm_) {
      if (w->id == id) return w.get();
    }
    return nullptr;
  }

  // Returns the TCS of `list` that are idle to the pool (after resetting
  // their thread state) and leaves the busy ones leased; returns those.
  std::vector<uint32_t> release_idle(Client& c, uint32_t id, std::vector<uint32_t> list) {
    Warm* w = by_id(id);
    std::vector<uint32_t> kept;
    if (!w) return kept;
    auto& mine = c.leases[id];
    for (uint32_t i : list) {
      if (w->enclave->tcs_busy(i)) {
        kept.push_back(i);
        continue;
      }
      std::erase(mine, i);
      give_back(c, *w, i, false, mine.empty());
    }
    if (mine.empty()) c.leases.erase(id);
    return kept;
  }

  // Brings TCS i to a clean state and puts it back in the pool; with
  // `last`, also ends the process's context (its arena and locks).
  void give_back(Client& c, Warm& w, uint32_t i, bool owner_dead, bool last) {
    (void)w.enclave->set_tcs_lease(i, getpid());  // only the daemon enters while it resets
    Status st = reset_tcs(w, i, owner_dead);
    if (st.ok() && last && c.contexts.count(w.id)) {
      auto r = runtime_ecall(w, i, abi::kEcallProcessEnd, {c.contexts[w.id], 0, 0, 0});
      if (!r.ok()) {
        log("enclave %u: ending the context of pid %d failed: %s", w.id, c.cred.pid, r.status().message().c_str());
      } else if (options_.verbose || owner_dead) {
        log("enclave %u: context of pid %d ended (main status %lld, %llu arena bytes never freed, reclaimed)",
            w.id, c.cred.pid, static_cast<long long>(static_cast<int64_t>((*r)[1])),
            static_cast<unsigned long long>((*r)[2]));
      }
      c.contexts.erase(w.id);
    }
    if (!st.ok()) {
      log("enclave %u TCS %u could not be recovered (%s); it stays out of service", w.id, i, st.message().c_str());
      (void)w.enclave->set_tcs_lease(i, -1);
      w.lease[i] = -1;
      return;
    }
    (void)w.enclave->set_tcs_lease(i, -1);
    w.lease[i] = 0;
  }

  Status reset_tcs(Warm& w, uint32_t i, bool owner_dead) {
    uint32_t cssa = w.enclave->tcs_cssa(i);
    if (owner_dead) {
      TM_ASSIGN_OR_RETURN(cssa, w.enclave->reclaim_tcs(i));
    }
    host::EnterContext ctx{};
    ctx.tcs = w.enclave->tcs_address(i);
    ctx.on_aex = no_aex;
    std::vector<uint8_t> scratch(abi::kOcallScratchSize);
    abi::CallFrame frame{};
    while (cssa > 0) {
      ctx.rdi = abi::kEntryRecover;
      ctx.resume_after_exception = 1;
      w.enclave->enter(&ctx);
      if (ctx.out_rdi != abi::kExitReturn) {
        return internal_error("recovery entry ended with exit reason " + std::to_string(ctx.out_rdi));
      }
      const uint32_t now = w.enclave->tcs_cssa(i);
      if (now >= cssa) return internal_error("recovery did not lower CSSA");
      cssa = now;
    }
    frame.abi_version = abi::kAbiVersion;
    frame.call_id = abi::kEcallResetThread;
    frame.ocall_scratch = reinterpret_cast<uint64_t>(scratch.data());
    frame.ocall_scratch_size = scratch.size();
    ctx = host::EnterContext{};
    ctx.tcs = w.enclave->tcs_address(i);
    ctx.on_aex = no_aex;
    ctx.rdi = abi::kEntryEcall;
    ctx.rsi = reinterpret_cast<uint64_t>(&frame);
    w.enclave->enter(&ctx);
    if (ctx.out_rdi != abi::kExitReturn || frame.status != abi::kOk) {
      return internal_error("reset ECALL failed (exit " + std::to_string(ctx.out_rdi) + ", status " +
                            std::to_string(frame.status) + ")");
    }
    return {};
  }

  void process_ended(Client& c) {
    size_t n = 0;
    for (auto& [id, list] : c.leases) {
      Warm* w = by_id(id);
      if (!w) continue;
      for (size_t k = 0; k < list.size(); ++k) {
        give_back(c, *w, list[k], true, k + 1 == list.size());
        ++n;
      }
    }
    c.leases.clear();
    if (n) log("pid %d (%s) ended; %zu TCS recovered", c.cred.pid, c.name.c_str(), n);
    c.pidfd.reset();
    c.sock.reset();
    c.connected = false;
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
