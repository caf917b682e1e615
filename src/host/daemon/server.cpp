// teemated's server (see server.h and docs/daemon-protocol.md). Threads:
//   - the main thread accepts connections, watches every client process's
//     pidfd and the stop signals, and reaps what has finished;
//   - one thread per connection reads, decodes and serves its requests (a
//     slow or stalled client delays only itself; a build delays only the
//     client that asked for it);
//   - one thread per ended process recovers its TCS and context, while
//     everything else goes on.
// Shared bookkeeping is under one mutex, never held across an enclave build
// or an enclave entry: a TCS the daemon works on is marked leased first, so
// no other thread touches it. Operations on one client's attachments (its
// requests, its recovery) are serialised by that client's own mutex. Never
// trusts a client: every field is typed and checked, every enclave is used
// only by members of its trust domain, and a TCS is handed to one process
// at a time.
#include "host/daemon/server.h"

#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cxxabi.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cstdlib>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <list>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <thread>
#include <variant>
#include <vector>

#include "base/hex.h"
#include "base/paths.h"
#include "common/enclave_abi.h"
#include "host/daemon/daemon_config.h"
#include "host/daemon/daemon_state.h"
#include "host/daemon/enclave_control.h"
#include "host/backend/backend.h"
#include "host/daemon/protocol.h"
#include "host/daemon/requests.h"
#include "host/image/file_util.h"
#include "host/image/image_file.h"
#include "host/runtime/image_loader.h"
#include "sgx/measurement.h"
#include "teemate/enclave.h"

namespace teemate::daemon {
namespace {

using nlohmann::json;
using protocol::UniqueFd;

constexpr int kMessageTimeoutMs = 2000;  // a started message must arrive within this; a reply must leave
constexpr size_t kMaxClients = 1024;
constexpr int kSoPeerPidfd = 77;               // SO_PEERPIDFD (asm-generic/socket.h, Linux 6.5)
constexpr uint64_t kMaxImageBytes = 1ull << 30;
constexpr int32_t kOutOfService = -1;          // Warm::lease value of a TCS recovery could not bring back

// Identifies the file an enclave was loaded from, so that a later load of
// the same unchanged file finds the warm enclave without re-measuring it.
struct FileStamp {
  dev_t dev = 0;
  ino_t ino = 0;
  off_t size = 0;
  int64_t mtime_ns = 0;
  bool operator==(const FileStamp&) const = default;
};

struct Warm {
  uint32_t id = 0;
  std::string image;  // the path the loading client named (for people)
  FileStamp stamp;
  std::string mrenclave;
  std::string domain;  // only members attach, list or reuse it
  uid_t loaded_by = 0;
  std::unique_ptr<ControlledEnclave> ctl;
  std::vector<int32_t> lease;  // per TCS: 0 free, a pid, kOutOfService
  uint64_t memory_ino = 0, control_ino = 0;  // to find its descriptors in a client after a restart
  std::chrono::steady_clock::time_point last_used = std::chrono::steady_clock::now();
  // The image's data symbols (sorted by value), to name a shared global that
  // a debug enclave reports; empty for an enclave adopted after a restart.
  std::vector<image::ElfSymbol> globals;
  // The image's switchless settings, which attaching processes start with
  // (zero for an enclave adopted after a restart: they may still ask).
  uint32_t switchless_ocall_workers = 0, switchless_ecall_workers = 0, switchless_retries = 0;
};

// "g_vault+0x8", or "" when no data symbol covers enclave offset `at`.
std::string global_named(const Warm& w, uint64_t at) {
  auto it = std::upper_bound(w.globals.begin(), w.globals.end(), at,
                             [](uint64_t a, const image::ElfSymbol& s) { return a < s.value; });
  if (it == w.globals.begin()) return "";
  --it;
  if (at >= it->value + std::max<uint64_t>(it->size, 1)) return "";
  // C++ names as people write them ("(anonymous namespace)::g_vault").
  std::string name = it->name;
  int status = -1;
  if (char* plain = ::abi::__cxa_demangle(name.c_str(), nullptr, nullptr, &status)) {
    if (status == 0) name = plain;
    std::free(plain);
  }
  return name + (at == it->value ? "" : "+" + base::hex(at - it->value));
}

struct Client {
  uint64_t serial = 0;
  UniqueFd sock;
  UniqueFd pidfd;
  pid_t pid = 0;  // SO_PEERCRED: the daemon's PID namespace's view
  uint64_t start_time = 0;  // of that process, to tell it from a later one with its pid
  bool adopted = false;     // attached under an earlier run of the daemon: no connection
  Caller who;
  std::string name = "?";
  // One operation on this client's attachments at a time: one of its
  // requests, or its recovery once it has ended.
  std::mutex op_mu;
  std::thread thread;
  // Below: guarded by DaemonImpl::mu_ (written with op_mu held as well).
  bool dead = false;        // its process ended; a recovery thread owns what it held
  bool recovered = false;
  bool closed = false;      // its connection thread is done
  bool sweeping = false;    // a sweep of its leases is running
  std::map<uint32_t, std::vector<uint32_t>> leases;  // enclave id -> TCS indices
  std::map<uint32_t, uint64_t> contexts;             // enclave id -> process context handle
  std::map<std::pair<uint32_t, uint32_t>, Token128> tokens;  // (enclave, TCS) -> lease token
  std::set<uint32_t> pinned;  // enclaves its loads returned: not evicted while it is connected
};

// A build in progress, for loads of the same image to wait for.
struct PendingBuild {
  uint32_t id = 0;
  bool done = false;  // under DaemonImpl::mu_
  Status result;
};

bool stamp_of_fd(int fd, FileStamp* out, off_t* size) {
  struct stat st {};
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) return false;
  *out = FileStamp{st.st_dev, st.st_ino, st.st_size, st.st_mtim.tv_sec * 1000000000ll + st.st_mtim.tv_nsec};
  *size = st.st_size;
  return true;
}

Result<std::vector<uint8_t>> read_fd(int fd, off_t size) {
  std::vector<uint8_t> bytes(static_cast<size_t>(size));
  size_t done = 0;
  while (done < bytes.size()) {
    ssize_t n = pread(fd, bytes.data() + done, bytes.size() - done, static_cast<off_t>(done));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return io_error("reading the image", errno);
    if (n == 0) return corrupt("the image file shrank while it was read");
    done += static_cast<size_t>(n);
  }
  return bytes;
}

class DaemonImpl final : public Daemon {
 public:
  ~DaemonImpl() override { stop_all(); }

  Status init(const DaemonOptions& o) {
    options_ = o;
    if (!o.config_path.empty()) {
      TM_ASSIGN_OR_RETURN(config_, load_daemon_config(o.config_path));
    }
    TM_ASSIGN_OR_RETURN(backend_, host::open_backend(o.backend));
    TM_RETURN_IF_ERROR(protocol::check_socket_directory(o.socket_path, geteuid(), /*create=*/true));
    TM_ASSIGN_OR_RETURN(listen_, protocol::listen_unix(o.socket_path, 0660));
    if (o.socket_group >= 0 && chown(o.socket_path.c_str(), static_cast<uid_t>(-1), static_cast<gid_t>(o.socket_group)) != 0) {
      return io_error("cannot give " + o.socket_path + " to group " + std::to_string(o.socket_group), errno);
    }
    socket_gid_ = o.socket_group >= 0 ? static_cast<gid_t>(o.socket_group) : getegid();
    TM_RETURN_IF_ERROR(write_pid_file(o.state_dir));
    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGINT);
    sigaddset(&mask, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &mask, nullptr);  // threads made later inherit it
    signal(SIGPIPE, SIG_IGN);
    sigfd_.reset(signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK));
    if (!sigfd_) return io_error("signalfd", errno);
    wake_.reset(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
    if (!wake_) return io_error("eventfd", errno);
    log("listening on %s (backend %s, %zu trust domains configured)", o.socket_path.c_str(), backend_->name(),
        config_.domains.size());
    if (!o.state_dir.empty()) {
      state_path_ = o.state_dir + "/state.json";
      restore();  // (after the signal mask: the threads it starts inherit it)
    }
    return {};
  }

  Status run() override {
    for (;;) {
      std::vector<pollfd> fds;
      std::vector<std::shared_ptr<Client>> watched;
      fds.push_back({listen_.get(), POLLIN, 0});
      fds.push_back({sigfd_.get(), POLLIN, 0});
      fds.push_back({wake_.get(), POLLIN, 0});
      {
        std::lock_guard lock(mu_);
        for (auto& c : clients_) {
          if (c->dead || !c->pidfd) continue;
          fds.push_back({c->pidfd.get(), POLLIN, 0});
          watched.push_back(c);
        }
      }
      bool lingering = false;  // closed connections whose process still holds TCS
      {
        std::lock_guard lock(mu_);
        for (auto& c : clients_) lingering |= c->closed && !c->dead && !c->adopted && !c->leases.empty();
      }
      const int ready = poll(fds.data(), fds.size(), lingering ? 500 : -1);
      if (ready < 0) {
        if (errno == EINTR) continue;
        return io_error("poll", errno);
      }
      if (lingering && std::chrono::steady_clock::now() - last_sweep_ > std::chrono::milliseconds(500)) {
        last_sweep_ = std::chrono::steady_clock::now();
        sweep_closed_clients();
      }
      if (fds[1].revents) {
        log("stopping on signal");
        stop_all();
        unlink(options_.socket_path.c_str());
        if (!pid_file_.empty()) unlink(pid_file_.c_str());
        return {};
      }
      if (fds[2].revents) {
        uint64_t n;
        (void)!read(wake_.get(), &n, sizeof n);
      }
      if (fds[0].revents & POLLIN) accept_client();
      for (size_t k = 3; k < fds.size(); ++k) {
        if (fds[k].revents) process_ended(watched[k - 3]);
      }
      reap();
    }
  }

 private:
  // ---- Lifecycle ----------------------------------------------------------

  // The last line of defence of every thread: nothing it throws may end the
  // daemon (and with it every attached process's recovery).
  template <typename F>
  void guarded(const char* what, F&& body) {
    try {
      body();
    } catch (const std::exception& e) {
      log("internal error in %s: %s", what, e.what());
    } catch (...) {
      log("internal error in %s", what);
    }
  }

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

  void wake_main() {
    const uint64_t one = 1;
    (void)!write(wake_.get(), &one, sizeof one);
  }

  // Ends every connection and waits for every thread (builds and recoveries
  // in progress finish first).
  void stop_all() {
    std::vector<std::shared_ptr<Client>> all;
    {
      std::lock_guard lock(mu_);
      stopping_ = true;
      all = clients_;
      for (auto& c : all) {
        if (c->sock) shutdown(c->sock.get(), SHUT_RDWR);
      }
    }
    for (auto& c : all) {
      if (c->thread.joinable()) c->thread.join();
    }
    std::list<std::thread> rec;
    {
      std::lock_guard lock(mu_);
      rec.swap(recoveries_);
    }
    for (auto& t : rec) {
      if (t.joinable()) t.join();
    }
  }

  // Forgets clients that are gone and hold nothing; joins finished threads.
  void reap() {
    std::vector<std::shared_ptr<Client>> done;
    {
      std::lock_guard lock(mu_);
      std::erase_if(clients_, [&](const std::shared_ptr<Client>& c) {
        const bool holds = !c->leases.empty() || !c->contexts.empty();
        const bool gone = c->closed && !c->sweeping && (c->dead ? c->recovered : !holds);
        if (gone) done.push_back(c);
        return gone;
      });
      if (!done.empty()) save_state_locked();
    }
    for (auto& c : done) {
      if (c->thread.joinable()) c->thread.join();
    }
    std::list<std::thread> finished;
    {
      std::lock_guard lock(mu_);
      for (auto it = recoveries_.begin(); it != recoveries_.end();) {
        auto id = it->get_id();
        if (finished_recoveries_.count(id)) {
          finished_recoveries_.erase(id);
          finished.splice(finished.end(), recoveries_, it++);
        } else {
          ++it;
        }
      }
    }
    for (auto& t : finished) t.join();
  }

  void accept_client() {
    int fd = accept4(listen_.get(), nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) return;
    auto c = std::make_shared<Client>();
    c->sock.reset(fd);
    auto cred = protocol::peer_credentials(fd);
    auto who = caller_of(fd);
    if (!cred.ok() || !who.ok()) {
      log("refused a connection: %s", (!cred.ok() ? cred.status() : who.status()).message().c_str());
      return;
    }
    c->pid = cred->pid;
    c->start_time = process_start_time(c->pid);
    c->who = *who;
    if (c->who.uid != 0 && c->who.uid != geteuid() && c->who.gid != socket_gid_ &&
        std::find(c->who.groups.begin(), c->who.groups.end(), socket_gid_) == c->who.groups.end()) {
      log("refused pid %d: uid %u is neither root, nor this daemon's user, nor in the socket's group %u", c->pid,
          c->who.uid, socket_gid_);
      return;
    }
    // A pidfd for the process that connected: SO_PEERPIDFD names that very
    // process even if its pid has been reused since (Linux 6.5); older
    // kernels fall back to pidfd_open on the SO_PEERCRED pid.
    int pfd = -1;
    socklen_t len = sizeof pfd;
    if (getsockopt(fd, SOL_SOCKET, kSoPeerPidfd, &pfd, &len) != 0) {
      pfd = static_cast<int>(syscall(SYS_pidfd_open, c->pid, 0));
    }
    if (pfd < 0) {
      log("refused pid %d: cannot watch it (pidfd: %s)", c->pid, strerror(errno));
      return;
    }
    c->pidfd.reset(pfd);
    std::lock_guard lock(mu_);
    if (stopping_) return;
    if (clients_.size() >= kMaxClients) {
      log("refused pid %d: %zu clients already", c->pid, clients_.size());
      return;
    }
    const auto same_uid = std::count_if(clients_.begin(), clients_.end(), [&](const std::shared_ptr<Client>& o) {
      return !o->closed && o->who.uid == c->who.uid;
    });
    if (static_cast<uint64_t>(same_uid) >= config_.limits.max_connections_per_uid) {
      log("refused pid %d: uid %u has %ld connections open (limits.max_connections_per_uid)", c->pid, c->who.uid,
          static_cast<long>(same_uid));
      return;
    }
    c->serial = next_serial_++;
    if (options_.verbose) log("pid %d (uid %u) connected", c->pid, c->who.uid);
    clients_.push_back(c);
    c->thread = std::thread([this, c] { guarded("a connection", [&] { serve_connection(c); }); });
  }

  // ---- State that outlives the daemon ------------------------------------------

  // Writes what a restarted daemon needs (mu_ held). A failure is logged;
  // serving goes on.
  void save_state_locked() {
    if (state_path_.empty()) return;
    SavedState s;
    s.next_id = next_id_;
    s.next_base = next_base_;
    for (const auto& w : warm_) {
      SavedEnclave e;
      e.id = w->id;
      e.image = w->image;
      e.file_dev = w->stamp.dev;
      e.file_ino = w->stamp.ino;
      e.file_size = static_cast<uint64_t>(w->stamp.size);
      e.file_mtime_ns = w->stamp.mtime_ns;
      e.mrenclave = w->mrenclave;
      e.domain = w->domain;
      e.loaded_by = w->loaded_by;
      e.base = w->ctl->enclave().base();
      e.heap_size = w->ctl->heap_size();
      e.control_token = w->ctl->control_token();
      e.memory_ino = w->memory_ino;
      e.control_ino = w->control_ino;
      e.lease = w->lease;
      s.enclaves.push_back(std::move(e));
    }
    for (const auto& c : clients_) {
      if (c->dead || (c->leases.empty() && c->contexts.empty())) continue;
      s.clients.push_back(SavedClient{c->pid, c->start_time, c->who.uid, c->who.gid, c->name, c->leases, c->contexts});
    }
    Status st = save_state(state_path_, s);
    if (!st.ok() && st.message() != last_state_error_) log("cannot save state: %s", st.message().c_str());
    last_state_error_ = st.ok() ? "" : st.message();
  }

  // Descriptors of process `pid` whose files have these inodes, taken into
  // this process (pidfd_getfd): the enclave memory and control memory.
  static Result<host::AttachHandles> take_back_memory(int pidfd, pid_t pid, uint64_t memory_ino, uint64_t control_ino,
                                                      uint64_t base) {
    const std::string dir = "/proc/" + std::to_string(pid) + "/fd";
    int found[2] = {-1, -1};
    for (const std::string& name : image::list_directory(dir)) {
      struct stat st {};
      if (stat((dir + "/" + name).c_str(), &st) != 0) continue;
      const int num = std::atoi(name.c_str());
      if (st.st_ino == memory_ino && found[0] < 0) found[0] = num;
      if (st.st_ino == control_ino && found[1] < 0) found[1] = num;
    }
    if (found[0] < 0 || found[1] < 0) return Status(Code::kNotFound, "pid " + std::to_string(pid) + " holds no such enclave");
    host::AttachHandles h;
    for (int num : found) {
      int fd = static_cast<int>(syscall(SYS_pidfd_getfd, pidfd, num, 0));
      if (fd < 0) {
        const int err = errno;
        for (int got : h.fds) close(got);
        return io_error("pidfd_getfd from pid " + std::to_string(pid), err);
      }
      fcntl(fd, F_SETFD, FD_CLOEXEC);
      h.fds.push_back(fd);
    }
    struct stat st {};
    fstat(h.fds[0], &st);
    h.base = base;
    h.size = static_cast<uint64_t>(st.st_size);
    return h;
  }

  // After a restart: takes back the enclaves that processes still map (from
  // one of those processes), keeps the leases of the processes that still
  // run (watching them again), and recovers the TCS and contexts of those
  // that ended meanwhile. Enclaves nobody maps any more are gone with their
  // memory: they are forgotten. A damaged state file is set aside.
  void restore() {
    auto loaded = load_state(state_path_);
    if (!loaded.ok()) {
      log("ignoring the saved state: %s (kept as %s.damaged)", loaded.status().message().c_str(), state_path_.c_str());
      rename(state_path_.c_str(), (state_path_ + ".damaged").c_str());
      return;
    }
    if (!*loaded) return;
    SavedState& s = **loaded;
    std::lock_guard lock(mu_);
    next_id_ = std::max(next_id_, s.next_id);
    next_base_ = std::max(next_base_, s.next_base);
    std::vector<std::shared_ptr<Client>> restored;
    for (SavedClient& sc : s.clients) {
      auto c = std::make_shared<Client>();
      c->pid = sc.pid;
      c->start_time = sc.start_time;
      c->who.uid = sc.uid;
      c->who.gid = sc.gid;
      c->name = sc.name;
      c->leases = sc.leases;
      c->contexts = sc.contexts;
      c->adopted = true;
      c->closed = true;
      c->serial = next_serial_++;
      int pfd = static_cast<int>(syscall(SYS_pidfd_open, sc.pid, 0));
      if (pfd >= 0 && sc.start_time != 0 && process_start_time(sc.pid) == sc.start_time) {
        c->pidfd.reset(pfd);
      } else {
        if (pfd >= 0) close(pfd);
        c->dead = true;
      }
      restored.push_back(std::move(c));
    }
    for (SavedEnclave& se : s.enclaves) {
      std::unique_ptr<ControlledEnclave> ctl;
      for (auto& c : restored) {
        if (c->dead || (!c->leases.count(se.id) && !c->contexts.count(se.id))) continue;
        auto h = take_back_memory(c->pidfd.get(), c->pid, se.memory_ino, se.control_ino, se.base);
        if (!h.ok()) continue;
        auto adopted = ControlledEnclave::adopt(*backend_, *h, se.control_token, se.heap_size, se.id);
        for (int fd : h->fds) close(fd);
        if (adopted.ok()) {
          ctl = std::move(adopted).value();
          break;
        }
        log("enclave %u: taking it back from pid %d failed: %s", se.id, c->pid, adopted.status().message().c_str());
      }
      const bool usable = ctl && ctl->tcs_count() == se.lease.size() &&
                          sgx::to_hex(ctl->enclave().mrenclave()) == se.mrenclave &&
                          se.heap_size < ctl->enclave().size() && ctl->token_accepted();
      if (!usable) {
        log("enclave %u (%s) retired: %s", se.id, se.image.c_str(),
            ctl ? "the saved state does not match it (control token, TCS, MRENCLAVE or heap)"
                : "no running process maps it any more");
        for (auto& c : restored) {
          c->leases.erase(se.id);
          c->contexts.erase(se.id);
        }
        continue;
      }
      auto w = std::make_unique<Warm>();
      w->id = se.id;
      w->image = se.image;
      w->stamp = FileStamp{static_cast<dev_t>(se.file_dev), static_cast<ino_t>(se.file_ino),
                           static_cast<off_t>(se.file_size), se.file_mtime_ns};
      w->mrenclave = se.mrenclave;
      w->domain = se.domain;
      w->loaded_by = se.loaded_by;
      w->memory_ino = se.memory_ino;
      w->control_ino = se.control_ino;
      w->ctl = std::move(ctl);
      w->lease = se.lease;
      // A TCS marked leased that no saved process holds was being leased
      // when the old daemon died: nobody got its token; take it back.
      for (uint32_t i = 0; i < w->lease.size(); ++i) {
        if (w->lease[i] <= 0) continue;
        const bool held = std::any_of(restored.begin(), restored.end(), [&](const std::shared_ptr<Client>& c) {
          auto it = c->leases.find(se.id);
          return it != c->leases.end() && std::count(it->second.begin(), it->second.end(), i);
        });
        if (held) continue;
        Status st = w->ctl->reset_dead_thread(i);
        if (st.ok()) st = w->ctl->control(i, abi::kEcallBindTcs, {0, 0, 0, 0}).status();
        w->lease[i] = st.ok() ? 0 : kOutOfService;
      }
      log("enclave %u (%s) taken back after a restart", w->id, w->image.c_str());
      warm_.push_back(std::move(w));
    }
    for (auto& c : restored) {
      if (c->leases.empty() && c->contexts.empty()) continue;
      clients_.push_back(c);
      if (c->dead) {
        start_recovery_locked(c);
      } else {
        log("pid %d (%s) is still attached; watching it again", c->pid, c->name.c_str());
      }
    }
    save_state_locked();
  }

  // ---- One connection ---------------------------------------------------------

  void serve_connection(std::shared_ptr<Client> cp) {
    Client& c = *cp;
    bool greeted = false;
    std::string why;
    for (;;) {
      pollfd p{c.sock.get(), POLLIN, 0};
      if (poll(&p, 1, -1) < 0) {
        if (errno == EINTR) continue;
        why = "poll failed";
        break;
      }
      auto msg = protocol::recv_message(c.sock.get(), kMessageTimeoutMs);
      if (!msg.ok()) {
        if (msg.status().code() != Code::kNotFound) why = msg.status().message();
        break;
      }
      const std::string op = protocol::request_op(msg->body);
      if (op == "hello" ? greeted : !greeted) {
        why = greeted ? "out of order: a second hello" : "out of order: '" + op.substr(0, 32) + "' before hello";
        break;
      }
      std::vector<int> out_fds;
      json reply = handle(c, op, *msg, &out_fds, &greeted);
      Status st = protocol::send_message(c.sock.get(), reply, out_fds, kMessageTimeoutMs);
      if (!st.ok()) {
        why = st.message();
        break;
      }
    }
    if (!why.empty()) log("closing connection of pid %d (%s): %s", c.pid, c.name.c_str(), why.c_str());
    {
      // Idle TCS come back now; a TCS in use stays leased until the process ends.
      std::lock_guard op(c.op_mu);
      bool dead;
      std::map<uint32_t, std::vector<uint32_t>> leases;
      {
        std::lock_guard lock(mu_);
        dead = c.dead;
        leases = c.leases;
      }
      if (!dead) {
        for (const auto& [id, list] : leases) release_idle(c, id, list);
      }
    }
    {
      std::lock_guard lock(mu_);
      c.sock.reset();
      c.closed = true;
    }
    wake_main();
  }

  // One request, decoded into its typed form first. No exception escapes:
  // anything a handler throws becomes an error reply for this request only.
  json handle(Client& c, const std::string& op, protocol::Message& msg, std::vector<int>* out_fds, bool* greeted) {
    Result<json> r = internal_error("no reply");
    try {
      Result<protocol::Request> decoded = protocol::decode_request(msg.body);
      if (!decoded.ok()) {
        r = decoded.status();
      } else if (auto* hello = std::get_if<protocol::HelloRequest>(&*decoded)) {
        *greeted = true;
        if (!hello->client.empty()) {
          std::lock_guard lock(mu_);
          c.name = hello->client;
        }
        r = json{{"daemon", "teemated"}, {"version", "0.1.0"}, {"protocol", protocol::kVersion},
                 {"backend", backend_->name()}, {"pid", getpid()}};
      } else {
        std::lock_guard op_lock(c.op_mu);
        bool dead;
        {
          std::lock_guard lock(mu_);
          dead = c.dead;
        }
        if (dead) {
          r = Status(Code::kInvalidArgument, "the process of this connection has ended");
        } else {
          r = std::visit([&](auto& q) { return serve(c, q, msg.fds, out_fds); }, *decoded);
        }
      }
    } catch (const std::exception& e) {
      log("pid %d: %s: internal error: %s", c.pid, op.c_str(), e.what());
      r = internal_error(op + ": internal error in teemated: " + e.what());
    }
    if (!r.ok()) {
      if (options_.verbose) log("pid %d: %s failed: %s", c.pid, op.c_str(), r.status().message().c_str());
      return protocol::error_reply(r.status());
    }
    return protocol::ok_reply(std::move(r).value());
  }

  Result<json> serve(Client&, const protocol::HelloRequest&, std::vector<UniqueFd>&, std::vector<int>*) {
    return json::object();  // handled above
  }
  Result<json> serve(Client& c, const protocol::LoadRequest& q, std::vector<UniqueFd>& in, std::vector<int>*) {
    return load(c, q, in);
  }
  Result<json> serve(Client& c, const protocol::ListRequest&, std::vector<UniqueFd>&, std::vector<int>*) {
    return list(c);
  }
  Result<json> serve(Client& c, const protocol::AttachRequest& q, std::vector<UniqueFd>&, std::vector<int>* out) {
    return attach(c, q, out);
  }
  Result<json> serve(Client& c, const protocol::LeaseRequest& q, std::vector<UniqueFd>&, std::vector<int>*) {
    return lease(c, q);
  }
  Result<json> serve(Client& c, const protocol::ReleaseRequest& q, std::vector<UniqueFd>&, std::vector<int>*) {
    return release(c, q);
  }
  Result<json> serve(Client& c, const protocol::DetachRequest& q, std::vector<UniqueFd>&, std::vector<int>*) {
    return detach(c, q);
  }

  // ---- Enclaves ---------------------------------------------------------------

  // What a client may see of w (mu_ held).
  json describe(const Warm& w, const Caller& viewer) {
    uint32_t free = 0;
    for (int32_t p : w.lease) free += p == 0;
    json attached = json::array();
    for (const auto& c : clients_) {
      auto it = c->leases.find(w.id);
      if (it == c->leases.end()) continue;
      json e{{"uid", c->who.uid}, {"tcs", it->second}};
      // Another user's process ids are theirs to know.
      if (viewer.uid == 0 || viewer.uid == c->who.uid) e["pid"] = c->pid;
      attached.push_back(std::move(e));
    }
    return json{{"enclave", w.id}, {"image", w.image}, {"mrenclave", w.mrenclave}, {"trust_domain", w.domain},
                {"base", w.ctl->enclave().base()}, {"size", w.ctl->enclave().size()},
                {"tcs_count", w.lease.size()}, {"tcs_total", w.lease.size()}, {"tcs_free", free},
                {"attached", attached}};
  }

  Result<json> load(Client& c, const protocol::LoadRequest& q, std::vector<UniqueFd>& in) {
    if (in.size() != 1) {
      return invalid_argument("load: the image file must come with the request as its one descriptor (opened by "
                              "the client, so that the client's own permissions decide what it may load)");
    }
    const std::string domain = q.trust_domain.empty() ? own_domain(c.who.uid) : q.trust_domain;
    if (!domain_exists(config_, domain, c.who) || !is_member(config_, domain, c.who)) {
      return Status(Code::kSecurity, "load: uid " + std::to_string(c.who.uid) + " is not a member of trust domain '" +
                                         domain + "'");
    }
    // Opened for reading: an O_PATH descriptor (which needs no read
    // permission) must not reach a warm enclave by its file's identity.
    const int mode = fcntl(in[0].get(), F_GETFL);
    if (mode < 0 || (mode & O_PATH) || ((mode & O_ACCMODE) != O_RDONLY && (mode & O_ACCMODE) != O_RDWR)) {
      return invalid_argument("load: the image descriptor must be open for reading");
    }
    FileStamp stamp;
    off_t size = 0;
    if (!stamp_of_fd(in[0].get(), &stamp, &size)) return invalid_argument("load: the descriptor is not a regular file");
    if (static_cast<uint64_t>(size) > kMaxImageBytes) return resource_error("load: the image is larger than 1 GiB");
    if (!q.fresh) {
      std::lock_guard lock(mu_);
      for (auto& w : warm_) {
        if (w->domain == domain && w->image == q.image && w->stamp == stamp) {
          c.pinned.insert(w->id);
          return describe(*w, c.who);
        }
      }
    }
    TM_ASSIGN_OR_RETURN(std::vector<uint8_t> bytes, read_fd(in[0].get(), size));
    TM_ASSIGN_OR_RETURN(auto img, image::load_image_bytes(bytes, q.image));
    TM_RETURN_IF_ERROR(image::check_image_signature(img));
    const std::string mr = sgx::to_hex(img.layout.measure());
    uint32_t id = 0;
    uint64_t base = 0;
    std::shared_ptr<PendingBuild> pending;
    {
      std::unique_lock lock(mu_);
      // The same image is being built for another client of the domain:
      // wait for that build instead of making a second one.
      auto running = builds_.find({domain, mr});
      if (!q.fresh && running != builds_.end()) {
        std::shared_ptr<PendingBuild> other = running->second;
        builds_done_.wait(lock, [&] { return other->done; });
        if (!other->result.ok()) return other->result.with_context("load (built for another client)");
        if (Warm* w = by_id(other->id)) {
          c.pinned.insert(w->id);
          return describe(*w, c.who);
        }
        return Status(Code::kBusy, "load: the enclave another client's load built is gone again; try again");
      }
      uint32_t instances = 0;
      for (auto& w : warm_) {
        if (w->domain != domain || w->mrenclave != mr) continue;
        if (!q.fresh) {
          // The same image at that path was rewritten (a rebuild gives the
          // same MRENCLAVE): remember the file as it is now, so that the
          // next load of it is not measured again.
          if (w->image == q.image) w->stamp = stamp;
          c.pinned.insert(w->id);
          return describe(*w, c.who);
        }
        ++instances;
      }
      const auto mine = std::count_if(warm_.begin(), warm_.end(), [&](const auto& w) { return w->loaded_by == c.who.uid; });
      if (static_cast<uint64_t>(mine) + builds_by_uid_[c.who.uid] >= config_.limits.max_enclaves_per_uid &&
          !evict_idle_locked(c.who.uid)) {
        return resource_error("load: uid " + std::to_string(c.who.uid) + " has " + std::to_string(mine) +
                              " warm enclaves in use already (limits.max_enclaves_per_uid = " +
                              std::to_string(config_.limits.max_enclaves_per_uid) + ")");
      }
      if (warm_.size() + building_ >= config_.limits.max_enclaves && !evict_idle_locked(std::nullopt)) {
        return resource_error("load: teemated keeps " + std::to_string(warm_.size()) +
                              " enclaves in use already (limits.max_enclaves = " +
                              std::to_string(config_.limits.max_enclaves) + ")");
      }
      if (instances >= config_.limits.max_instances_per_image) {
        return resource_error("load: " + std::to_string(instances) + " instances of MRENCLAVE " + mr +
                              " run in domain '" + domain + "' already (limits.max_instances_per_image)");
      }
      if (builds_by_uid_[c.who.uid] >= config_.limits.max_builds_per_uid) {
        return Status(Code::kBusy, "load: uid " + std::to_string(c.who.uid) + " has " +
                                       std::to_string(builds_by_uid_[c.who.uid]) +
                                       " enclave builds in progress already (limits.max_builds_per_uid)");
      }
      ++builds_by_uid_[c.who.uid];
      ++building_;
      id = next_id_++;
      pending = std::make_shared<PendingBuild>();
      pending->id = id;
      if (!q.fresh) builds_[{domain, mr}] = pending;
      // Shared enclaves live far from where clients' own mappings go (the
      // executable near 0x55..., libraries and mmaps below 0x7f...), so that
      // the same base is free in every process that attaches.
      base = next_base_;
      next_base_ += 2 * img.layout.size();
    }
    const std::string name = q.image;
    std::vector<image::ElfSymbol> data_symbols;
    for (const image::ElfSymbol& sym : img.elf.symbols()) {
      if (sym.type == STT_OBJECT) data_symbols.push_back(sym);
    }
    const image::EnclaveConfig switchless = img.layout.config();
    auto built = ControlledEnclave::build(*backend_, std::move(img), base, id);
    std::lock_guard lock(mu_);
    --builds_by_uid_[c.who.uid];
    --building_;
    // Whoever waits for this build learns how it ended.
    pending->done = true;
    pending->result = built.ok() ? Status() : built.status().with_context(name);
    if (auto it = builds_.find({domain, mr}); it != builds_.end() && it->second == pending) builds_.erase(it);
    builds_done_.notify_all();
    if (!built.ok()) return built.status().with_context(name);
    auto w = std::make_unique<Warm>();
    w->id = id;
    w->image = name;
    w->stamp = stamp;
    w->domain = domain;
    w->loaded_by = c.who.uid;
    w->ctl = std::move(built).value();
    w->mrenclave = sgx::to_hex(w->ctl->enclave().mrenclave());
    w->lease.assign(w->ctl->tcs_count(), 0);
    w->globals = std::move(data_symbols);
    w->switchless_ocall_workers = switchless.switchless_ocall_workers;
    w->switchless_ecall_workers = switchless.switchless_ecall_workers;
    w->switchless_retries = switchless.switchless_retries;
    if (auto h = w->ctl->enclave().export_handles(); h.ok() && h->fds.size() == 2) {
      struct stat a {}, b {};
      if (fstat(h->fds[0], &a) == 0 && fstat(h->fds[1], &b) == 0) {
        w->memory_ino = a.st_ino;
        w->control_ino = b.st_ino;
      }
    }
    c.pinned.insert(w->id);
    log("loaded %s as enclave %u for trust domain %s (MRENCLAVE %s, %llu MiB, %zu TCS)", name.c_str(), w->id,
        domain.c_str(), w->mrenclave.c_str(), static_cast<unsigned long long>(w->ctl->enclave().size() >> 20),
        w->lease.size());
    warm_.push_back(std::move(w));
    save_state_locked();
    return describe(*warm_.back(), c.who);
  }

  // Makes room by dropping the warm enclave (of `uid`, or anyone's) that
  // has been idle longest: no process leases a TCS of it or has a context
  // or an attachment in it. False when every candidate is in use (mu_ held).
  bool evict_idle_locked(std::optional<uid_t> uid) {
    Warm* victim = nullptr;
    for (auto& w : warm_) {
      if (uid && w->loaded_by != *uid) continue;
      if (std::any_of(w->lease.begin(), w->lease.end(), [](int32_t l) { return l != 0; })) continue;
      // In use: leased, a context, or loaded by a connection that has not
      // attached yet (its load answered with this enclave; evicting it
      // now would make that attach fail).
      const bool used = std::any_of(clients_.begin(), clients_.end(), [&](const std::shared_ptr<Client>& c) {
        return c->leases.count(w->id) || c->contexts.count(w->id) || (!c->closed && c->pinned.count(w->id));
      });
      if (used) continue;
      if (!victim || w->last_used < victim->last_used) victim = w.get();
    }
    if (!victim) return false;
    log("enclave %u (%s) evicted: idle, and room was needed", victim->id, victim->image.c_str());
    std::erase_if(warm_, [&](const std::unique_ptr<Warm>& w) { return w.get() == victim; });
    save_state_locked();
    return true;
  }

  Result<json> list(Client& c) {
    std::lock_guard lock(mu_);
    json arr = json::array();
    for (auto& w : warm_) {
      if (is_member(config_, w->domain, c.who)) arr.push_back(describe(*w, c.who));
    }
    return json{{"enclaves", arr}};
  }

  Warm* by_id(uint32_t id) {  // mu_ held
    for (auto& w : warm_) {
      if (w->id == id) return w.get();
    }
    return nullptr;
  }

  // The enclave a request names (mu_ held), if the client may use it.
  Result<Warm*> find(const Client& c, const protocol::EnclaveSelector& which) {
    Warm* found = nullptr;
    if (which.id) {
      found = by_id(*which.id);
      if (!found) {
        return Status(Code::kNotFound, "no enclave " + std::to_string(*which.id) + " in a trust domain of uid " +
                                           std::to_string(c.who.uid) + " (not a member of its domain, or no such enclave)");
      }
    } else if (which.mrenclave) {
      const std::string hex = sgx::to_hex(std::vector<uint8_t>(which.mrenclave->begin(), which.mrenclave->end()));
      // Several instances may share a MRENCLAVE: the one with most free TCS
      // among those the client may use.
      uint32_t best_free = 0;
      for (auto& w : warm_) {
        if (w->mrenclave != hex || !is_member(config_, w->domain, c.who)) continue;
        const auto free = static_cast<uint32_t>(std::count(w->lease.begin(), w->lease.end(), 0));
        if (!found || free > best_free) {
          found = w.get();
          best_free = free;
        }
      }
      if (!found) return Status(Code::kNotFound, "no warm enclave with MRENCLAVE " + hex + " in a trust domain of uid " +
                                                     std::to_string(c.who.uid));
    } else {
      if (c.leases.size() + c.contexts.size() == 0) return invalid_argument("not attached to any enclave");
      const uint32_t id = !c.leases.empty() ? c.leases.begin()->first : c.contexts.begin()->first;
      found = by_id(id);
      if (!found) return Status(Code::kNotFound, "no enclave " + std::to_string(id));
    }
    if (!is_member(config_, found->domain, c.who)) {
      // The same answer as for an enclave that does not exist: ids of other
      // domains are not theirs to probe.
      return Status(Code::kNotFound, "no enclave " + std::to_string(found->id) + " in a trust domain of uid " +
                                         std::to_string(c.who.uid) + " (not a member of its domain, or no such enclave)");
    }
    return found;
  }

  // The arena each attached process gets inside the enclave.
  static uint64_t arena_bytes(const Warm& w) {
    uint64_t b = w.ctl->heap_size() / (uint64_t{w.ctl->tcs_count()} + 1);
    b = std::min<uint64_t>(b, 64ull << 20) & ~uint64_t{4095};
    return b;
  }

  // Leases n free TCS of w to c, all or nothing (c.op_mu held). The TCS are
  // marked leased first, so that nobody else uses them while they are bound.
  Result<std::vector<uint32_t>> take(Client& c, Warm& w, uint64_t n) {
    std::vector<uint32_t> got;
    bool need_context;
    uint64_t context = 0;
    {
      std::lock_guard lock(mu_);
      for (uint32_t i = 0; i < w.lease.size() && got.size() < n; ++i) {
        if (w.lease[i] == 0) got.push_back(i);
      }
      if (got.size() < n) {
        return Status(Code::kBusy, "enclave " + std::to_string(w.id) + " has " + std::to_string(got.size()) +
                                       " free TCS, " + std::to_string(n) + " requested");
      }
      for (uint32_t i : got) w.lease[i] = c.pid;
      need_context = !c.contexts.count(w.id);
      if (!need_context) context = c.contexts[w.id];
    }
    if (got.empty()) return got;
    size_t bound = 0;
    auto unwind = [&](const Status& why) -> Status {
      for (size_t k = 0; k < bound; ++k) (void)w.ctl->control(got[k], abi::kEcallBindTcs, {0, 0, 0, 0});
      if (need_context && context) (void)w.ctl->control(got[0], abi::kEcallProcessEnd, {context, 0, 0, 0});
      std::lock_guard lock(mu_);
      for (uint32_t i : got) w.lease[i] = 0;
      return why;
    };
    if (need_context) {
      auto r = w.ctl->control(got[0], abi::kEcallProcessStart, {static_cast<uint64_t>(c.pid), arena_bytes(w), 0, 0});
      if (!r.ok()) return unwind(r.status());
      context = (*r)[0];
    }
    std::vector<Token128> tokens(got.size());
    for (size_t k = 0; k < got.size(); ++k) {
      Status st = random_token(&tokens[k]);
      if (st.ok()) st = w.ctl->control(got[k], abi::kEcallBindTcs, {context, tokens[k][0], tokens[k][1], 0}).status();
      if (!st.ok()) return unwind(st);
      ++bound;
    }
    std::lock_guard lock(mu_);
    c.contexts[w.id] = context;
    w.last_used = std::chrono::steady_clock::now();
    for (size_t k = 0; k < got.size(); ++k) {
      c.leases[w.id].push_back(got[k]);
      c.tokens[{w.id, got[k]}] = tokens[k];
    }
    save_state_locked();
    return got;
  }

  // The leased TCS as the client needs them; the lease token of each goes
  // to this client only.
  json tcs_json(const Client& c, const Warm& w, const std::vector<uint32_t>& idx) {
    std::lock_guard lock(mu_);
    json arr = json::array();
    for (uint32_t i : idx) {
      auto it = c.tokens.find({w.id, i});
      arr.push_back(json{{"index", i}, {"address", w.ctl->enclave().tcs_address(i)},
                         {"token", it == c.tokens.end() ? "" : token_hex(it->second)}});
    }
    return arr;
  }

  Result<json> attach(Client& c, const protocol::AttachRequest& q, std::vector<int>* fds) {
    Warm* w;
    {
      std::lock_guard lock(mu_);
      TM_ASSIGN_OR_RETURN(w, find(c, q.which));
      if (c.leases.count(w->id)) {
        return invalid_argument("already attached to enclave " + std::to_string(w->id) + "; use lease");
      }
      if (q.tcs > w->lease.size()) {
        return invalid_argument("attach: field 'tcs' must be at most " + std::to_string(w->lease.size()) +
                                " (the enclave's TCS count)");
      }
    }
    TM_ASSIGN_OR_RETURN(host::AttachHandles h, w->ctl->enclave().export_handles());
    TM_ASSIGN_OR_RETURN(std::vector<uint32_t> got, take(c, *w, q.tcs));
    if (got.empty()) {
      std::lock_guard lock(mu_);
      c.leases[w->id];  // attached without slots yet
    }
    *fds = h.fds;
    if (options_.verbose) log("pid %d (%s) attached to enclave %u with %zu TCS", c.pid, c.name.c_str(), w->id, got.size());
    return json{{"enclave", w->id}, {"backend", backend_->name()}, {"image", w->image},
                {"mrenclave", w->mrenclave}, {"base", h.base}, {"size", h.size}, {"tcs", tcs_json(c, *w, got)},
                {"switchless", {{"ocall_workers", w->switchless_ocall_workers},
                                {"ecall_workers", w->switchless_ecall_workers},
                                {"retries", w->switchless_retries}}}};
  }

  Result<json> lease(Client& c, const protocol::LeaseRequest& q) {
    Warm* w;
    {
      std::lock_guard lock(mu_);
      TM_ASSIGN_OR_RETURN(w, find(c, q.which));
      if (!c.leases.count(w->id)) return invalid_argument("attach to enclave " + std::to_string(w->id) + " first");
    }
    TM_ASSIGN_OR_RETURN(std::vector<uint32_t> got, take(c, *w, q.tcs));
    return json{{"tcs", tcs_json(c, *w, got)}};
  }

  Result<json> release(Client& c, const protocol::ReleaseRequest& q) {
    Warm* w;
    std::vector<uint32_t> list;
    {
      std::lock_guard lock(mu_);
      TM_ASSIGN_OR_RETURN(w, find(c, q.which));
      auto it = c.leases.find(w->id);
      if (it == c.leases.end()) return invalid_argument("not attached to enclave " + std::to_string(w->id));
      for (uint32_t i : q.tcs) {
        if (std::find(it->second.begin(), it->second.end(), i) == it->second.end()) {
          return invalid_argument("TCS " + std::to_string(i) + " is not leased to this process");
        }
        if (std::find(list.begin(), list.end(), i) == list.end()) list.push_back(i);
      }
    }
    TM_RETURN_IF_ERROR(release_all_or_none(c, *w, list));
    return json::object();
  }

  Result<json> detach(Client& c, const protocol::DetachRequest& q) {
    Warm* w;
    std::vector<uint32_t> list;
    {
      std::lock_guard lock(mu_);
      TM_ASSIGN_OR_RETURN(w, find(c, q.which));
      auto it = c.leases.find(w->id);
      if (it == c.leases.end()) return json::object();
      list = it->second;
    }
    TM_RETURN_IF_ERROR(release_all_or_none(c, *w, list));
    return json::object();
  }

  // Gives back exactly `list` (TCS leased to c) or nothing (c.op_mu held):
  // each is unbound in the enclave, which refuses while a thread of the
  // process is inside it; after a refusal the ones already unbound are bound
  // again with the same tokens. When c holds no TCS of w any more, its
  // context ends.
  Status release_all_or_none(Client& c, Warm& w, const std::vector<uint32_t>& list) {
    std::vector<uint32_t> done;
    uint64_t context;
    std::map<uint32_t, Token128> tokens;
    {
      std::lock_guard lock(mu_);
      context = c.contexts.count(w.id) ? c.contexts[w.id] : 0;
      for (uint32_t i : list) tokens[i] = c.tokens[{w.id, i}];
    }
    for (uint32_t i : list) {
      Status st = w.ctl->enclave().tcs_busy(i) ? Status(Code::kBusy, "busy")
                                               : w.ctl->control(i, abi::kEcallBindTcs, {0, 0, 0, 0}).status();
      if (!st.ok()) {
        for (uint32_t j : done) (void)w.ctl->control(j, abi::kEcallBindTcs, {context, tokens[j][0], tokens[j][1], 0});
        return Status(Code::kBusy, "TCS " + std::to_string(i) +
                                       " is in use by a thread of this process; leave the enclave first (nothing was "
                                       "released)");
      }
      done.push_back(i);
    }
    give_back(c, w, list);
    return {};
  }

  // Bookkeeping once TCS `freed` of w are out of c's hands in the enclave
  // (c.op_mu held): they leave c's lease, c's context ends when it holds
  // none of w any more, and they return to the pool.
  void give_back(Client& c, Warm& w, const std::vector<uint32_t>& freed) {
    bool last;
    {
      std::lock_guard lock(mu_);
      auto& mine = c.leases[w.id];
      for (uint32_t i : freed) {
        std::erase(mine, i);
        c.tokens.erase({w.id, i});
      }
      last = mine.empty();
      if (last) c.leases.erase(w.id);
    }
    if (last && !freed.empty()) end_context(c, w, freed.back(), false);
    std::lock_guard lock(mu_);
    for (uint32_t i : freed) w.lease[i] = 0;
    save_state_locked();
  }

  // Can a thread of process c still be inside the enclave at `base`? Not
  // when no thread of it maps the enclave any more (it replaced itself with
  // execve, or unmapped it); each thread is checked, since while a killed
  // process is torn down some threads have left its memory and others not.
  // A process that has ended (or that we cannot look at) counts as "maybe":
  // its recovery is the pidfd's business.
  bool may_be_inside(const Client& c, uint64_t base) {
    char want[32];
    const int n = std::snprintf(want, sizeof want, "%llx-", static_cast<unsigned long long>(base));
    const std::string tasks = "/proc/" + std::to_string(c.pid) + "/task";
    bool any_task = false;
    for (const std::string& t : image::list_directory(tasks)) {
      any_task = true;
      FILE* f = std::fopen((tasks + "/" + t + "/maps").c_str(), "re");
      if (!f) return true;
      char line[512];
      bool found = false;
      while (!found && std::fgets(line, sizeof line, f)) found = std::strncmp(line, want, static_cast<size_t>(n)) == 0;
      std::fclose(f);
      if (found) return true;
    }
    if (!any_task) return true;
    // Only if that pid is still our process (not ended, not reused).
    int pidfd;
    {
      std::lock_guard lock(mu_);
      pidfd = c.pidfd ? c.pidfd.get() : -1;
    }
    pollfd p{pidfd, POLLIN, 0};
    return pidfd < 0 || poll(&p, 1, 0) != 0;
  }

  // A live process whose connection closed: its TCS come back one by one,
  // those in use by a thread of it stay leased until it ends; but a TCS
  // whose thread cannot be inside any more (the process replaced itself
  // with execve) is recovered as if the process had died (c.op_mu held).
  void release_idle(Client& c, uint32_t id, const std::vector<uint32_t>& list) {
    Warm* w;
    {
      std::lock_guard lock(mu_);
      w = by_id(id);
    }
    if (!w) return;
    std::vector<uint32_t> freed, reset;
    std::optional<bool> maybe_inside;
    for (uint32_t i : list) {
      // Tried once: kBusy means a call of the process is in progress on it
      // (an OCALL), which waiting would not change; it was two seconds of
      // retries that held up the recovery of a process killed in an OCALL.
      if (!w->ctl->enclave().tcs_busy(i) && w->ctl->control_once(i, abi::kEcallBindTcs, {0, 0, 0, 0}).ok()) {
        freed.push_back(i);
        continue;
      }
      if (!maybe_inside) maybe_inside = may_be_inside(c, w->ctl->enclave().base());
      if (*maybe_inside) continue;
      // The thread is gone. Its TCS stays bound until the context ends, so
      // that ending it finds the locks that thread held.
      Status st = w->ctl->reset_dead_thread(i);
      if (st.ok()) {
        log("enclave %u: no thread of pid %d maps the enclave any more (execve?); TCS %u recovered", w->id, c.pid, i);
        reset.push_back(i);
      }
    }
    if (!reset.empty() && reset.size() + freed.size() < list.size()) {
      // Cannot happen (no thread of it maps the enclave, so none is inside),
      // but never end a context early: unbind them one by one instead.
      std::erase_if(reset, [&](uint32_t i) { return !w->ctl->control(i, abi::kEcallBindTcs, {0, 0, 0, 0}).ok(); });
    }
    freed.insert(freed.end(), reset.begin(), reset.end());
    give_back(c, *w, freed);
  }

  // Clients whose connection closed while a thread was inside hold TCS
  // until they end; the main thread calls this every half second to give
  // back what they no longer use (c.op_mu taken on a thread of its own).
  void sweep_closed_clients() {
    std::lock_guard lock(mu_);
    for (auto& c : clients_) {
      if (!c->closed || c->dead || c->sweeping || c->adopted || c->leases.empty()) continue;
      c->sweeping = true;
      recoveries_.emplace_back([this, c] {
        guarded("a sweep", [&] {
          std::lock_guard op(c->op_mu);
          std::map<uint32_t, std::vector<uint32_t>> leases;
          bool dead;
          {
            std::lock_guard l(mu_);
            leases = c->leases;
            dead = c->dead;
          }
          if (!dead) {
            for (const auto& [id, list] : leases) release_idle(*c, id, list);
          }
        });
        std::lock_guard l(mu_);
        c->sweeping = false;
        finished_recoveries_.insert(std::this_thread::get_id());
        wake_main();
      });
    }
  }

  // Ends c's context in w, on TCS i, which the daemon holds (c.op_mu held).
  void end_context(Client& c, Warm& w, uint32_t i, bool owner_dead) {
    uint64_t context;
    {
      std::lock_guard lock(mu_);
      auto it = c.contexts.find(w.id);
      if (it == c.contexts.end()) return;
      context = it->second;
    }
    auto r = w.ctl->control(i, abi::kEcallProcessEnd, {context, 0, 0, 0});
    if (!r.ok()) {
      log("enclave %u: ending the context of pid %d failed: %s", w.id, c.pid, r.status().message().c_str());
      return;  // kept: a later death or detach tries again
    }
    if (options_.verbose || owner_dead) {
      log("enclave %u: context of pid %d ended (main status %lld, %llu arena bytes never freed, reclaimed)", w.id,
          c.pid, static_cast<long long>(static_cast<int64_t>((*r)[1])), static_cast<unsigned long long>((*r)[2]));
    }
    if (const uint64_t dangling = (*r)[3]) {
      // A debug enclave found shared globals still pointing into the arena
      // it just reclaimed: a program bug that silently hands one process's
      // memory to the next. Say which global, always.
      const uint64_t count = dangling >> 40, first = dangling & 0xffffffffffull;
      std::string where = global_named(w, first);
      char off[32];
      std::snprintf(off, sizeof off, "0x%llx", static_cast<unsigned long long>(first));
      log("enclave %u: warning: %llu shared global(s) still point into the per-process memory of pid %d, which "
          "was just reclaimed (first: %s at enclave offset %s); they now read zeros or another process's data. "
          "Keep shared data in tm_shared_malloc memory (docs/enclave-programs.md).",
          w.id, static_cast<unsigned long long>(count), c.pid, where.empty() ? "an unnamed global" : where.c_str(),
          off);
    }
    std::lock_guard lock(mu_);
    c.contexts.erase(w.id);
  }

  // ---- Processes that end -----------------------------------------------------

  // The main thread saw c's pidfd fire: hand what it held to a recovery
  // thread (which waits for a request of c in progress to finish first).
  void process_ended(const std::shared_ptr<Client>& c) {
    std::lock_guard lock(mu_);
    if (c->dead) return;
    c->dead = true;
    if (c->sock) shutdown(c->sock.get(), SHUT_RDWR);  // its connection thread ends too
    start_recovery_locked(c);
  }

  // A thread that recovers what the ended process c held (mu_ held).
  void start_recovery_locked(const std::shared_ptr<Client>& c) {
    recoveries_.emplace_back([this, c] {
      guarded("a recovery", [&] { recover(*c); });
      std::lock_guard l(mu_);
      c->recovered = true;
      finished_recoveries_.insert(std::this_thread::get_id());
      wake_main();
    });
  }

  void recover(Client& c) {
    std::lock_guard op(c.op_mu);
    std::map<uint32_t, std::vector<uint32_t>> leases;
    {
      std::lock_guard lock(mu_);
      leases = c.leases;
    }
    size_t n = 0;
    for (auto& [id, list] : leases) {
      Warm* w;
      {
        std::lock_guard lock(mu_);
        w = by_id(id);
      }
      if (!w) continue;
      // Every TCS first, so that no lock is needed while a dead thread of
      // the process may hold one; then the context (which releases them).
      std::vector<uint32_t> good, bad;
      for (uint32_t i : list) {
        Status st = w->ctl->reset_dead_thread(i);
        if (!st.ok()) {
          log("enclave %u TCS %u could not be recovered (%s); it stays out of service", w->id, i, st.message().c_str());
          bad.push_back(i);
        } else {
          good.push_back(i);
          ++n;
        }
      }
      if (!good.empty()) end_context(c, *w, good.back(), true);
      std::lock_guard lock(mu_);
      for (uint32_t i : good) w->lease[i] = 0;
      for (uint32_t i : bad) w->lease[i] = kOutOfService;
      for (uint32_t i : list) c.tokens.erase({id, i});
      c.leases.erase(id);
      save_state_locked();
    }
    if (n) log("pid %d (%s) ended; %zu TCS recovered", c.pid, c.name.c_str(), n);
  }

  DaemonOptions options_;
  DaemonConfig config_;
  std::unique_ptr<host::Backend> backend_;
  UniqueFd listen_;
  UniqueFd sigfd_;
  UniqueFd wake_;
  std::string pid_file_;
  gid_t socket_gid_ = 0;
  std::string state_path_;
  std::string last_state_error_;
  std::chrono::steady_clock::time_point last_sweep_{};

  std::mutex mu_;  // everything below
  bool stopping_ = false;
  std::vector<std::unique_ptr<Warm>> warm_;
  std::vector<std::shared_ptr<Client>> clients_;
  std::list<std::thread> recoveries_;
  std::set<std::thread::id> finished_recoveries_;
  std::map<uid_t, uint32_t> builds_by_uid_;
  std::map<std::pair<std::string, std::string>, std::shared_ptr<PendingBuild>> builds_;  // (domain, MRENCLAVE)
  std::condition_variable builds_done_;
  uint32_t building_ = 0;
  uint64_t next_serial_ = 1;
  uint32_t next_id_ = 1;
  uint64_t next_base_ = 0x200000000000ull;  // 32 TiB
};

}  // namespace

std::string default_socket_path() { return default_daemon_socket(); }

std::string default_state_dir() { return base::state_dir(); }

Result<std::unique_ptr<Daemon>> Daemon::create(const DaemonOptions& options) {
  auto d = std::make_unique<DaemonImpl>();
  TM_RETURN_IF_ERROR(d->init(options));
  return std::unique_ptr<Daemon>(std::move(d));
}

}  // namespace teemate::daemon
