// teemated's internals, shared by the files that implement it, one concern
// each: server.cpp (lifecycle, the connection loop, dispatch),
// warm_enclaves.cpp (loading, finding, evicting), leases.cpp (TCS leases,
// contexts, giving back), recovery.cpp (processes that end),
// restart_state.cpp (what outlives a daemon restart). Private to the daemon:
// never included by anything outside src/host/daemon.
#pragma once

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

#include "host/daemon/server.h"

namespace teemate::daemon::detail {

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
  std::optional<uint32_t> last_loaded;  // what its last successful load returned
};

// A build in progress, for loads of the same image to wait for.
struct PendingBuild {
  uint32_t id = 0;
  bool done = false;  // under DaemonImpl::mu_
  Status result;
};

// "g_vault+0x8", or "" when no data symbol covers enclave offset `at`.
std::string global_named(const Warm& w, uint64_t at);
bool stamp_of_fd(int fd, FileStamp* out, off_t* size);
Result<std::vector<uint8_t>> read_fd(int fd, off_t size);

class DaemonImpl final : public Daemon {
 public:
  ~DaemonImpl() override { stop_all(); }

  Status init(const DaemonOptions& o);

  Status run() override;

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

  Status write_pid_file(const std::string& dir);

  void wake_main();

  // Ends every connection and waits for every thread (builds and recoveries
  // in progress finish first).
  void stop_all();

  // Forgets clients that are gone and hold nothing; joins finished threads.
  void reap();

  void accept_client();

  // ---- State that outlives the daemon ------------------------------------------

  // Writes what a restarted daemon needs (mu_ held). A failure is logged;
  // serving goes on.
  void save_state_locked();

  // Descriptors of process `pid` whose files have these inodes, taken into
  // this process (pidfd_getfd): the enclave memory and control memory.
  static Result<host::AttachHandles> take_back_memory(int pidfd, pid_t pid, uint64_t memory_ino, uint64_t control_ino,
                                                      uint64_t base);

  // After a restart: takes back the enclaves that processes still map (from
  // one of those processes), keeps the leases of the processes that still
  // run (watching them again), and recovers the TCS and contexts of those
  // that ended meanwhile. Enclaves nobody maps any more are gone with their
  // memory: they are forgotten. A damaged state file is set aside.
  void restore();

  // ---- One connection ---------------------------------------------------------

  void serve_connection(std::shared_ptr<Client> cp);

  // One request, decoded into its typed form first. No exception escapes:
  // anything a handler throws becomes an error reply for this request only.
  json handle(Client& c, const std::string& op, protocol::Message& msg, std::vector<int>* out_fds, bool* greeted);

  Result<json> serve(Client&, const protocol::HelloRequest&, std::vector<UniqueFd>&, std::vector<int>*);
  Result<json> serve(Client& c, const protocol::LoadRequest& q, std::vector<UniqueFd>& in, std::vector<int>*);
  Result<json> serve(Client& c, const protocol::ListRequest&, std::vector<UniqueFd>&, std::vector<int>*);
  Result<json> serve(Client& c, const protocol::AttachRequest& q, std::vector<UniqueFd>&, std::vector<int>* out);
  Result<json> serve(Client& c, const protocol::LeaseRequest& q, std::vector<UniqueFd>&, std::vector<int>*);
  Result<json> serve(Client& c, const protocol::ReleaseRequest& q, std::vector<UniqueFd>&, std::vector<int>*);
  Result<json> serve(Client& c, const protocol::DetachRequest& q, std::vector<UniqueFd>&, std::vector<int>*);

  // ---- Enclaves ---------------------------------------------------------------

  // What a client may see of w (mu_ held).
  json describe(const Warm& w, const Caller& viewer);

  Result<json> load(Client& c, const protocol::LoadRequest& q, std::vector<UniqueFd>& in);

  // Makes room by dropping the warm enclave (of `uid`, or anyone's) that
  // has been idle longest: no process leases a TCS of it or has a context
  // or an attachment in it. False when every candidate is in use (mu_ held).
  bool evict_idle_locked(std::optional<uid_t> uid);

  Result<json> list(Client& c);

  Warm* by_id(uint32_t id) {  // mu_ held
    for (auto& w : warm_) {
      if (w->id == id) return w.get();
    }
    return nullptr;
  }

  // The enclave a request names (mu_ held), if the client may use it.
  Result<Warm*> find(const Client& c, const protocol::EnclaveSelector& which);

  // The arena each attached process gets inside the enclave.
  static uint64_t arena_bytes(const Warm& w);

  // Leases n free TCS of w to c, all or nothing (c.op_mu held). The TCS are
  // marked leased first, so that nobody else uses them while they are bound.
  Result<std::vector<uint32_t>> take(Client& c, Warm& w, uint64_t n);

  // The leased TCS as the client needs them; the lease token of each goes
  // to this client only.
  json tcs_json(const Client& c, const Warm& w, const std::vector<uint32_t>& idx);

  Result<json> attach(Client& c, const protocol::AttachRequest& q, std::vector<int>* fds);

  Result<json> lease(Client& c, const protocol::LeaseRequest& q);

  Result<json> release(Client& c, const protocol::ReleaseRequest& q);

  Result<json> detach(Client& c, const protocol::DetachRequest& q);

  // Gives back exactly `list` (TCS leased to c) or nothing (c.op_mu held):
  // each is unbound in the enclave, which refuses while a thread of the
  // process is inside it; after a refusal the ones already unbound are bound
  // again with the same tokens. When c holds no TCS of w any more, its
  // context ends.
  Status release_all_or_none(Client& c, Warm& w, const std::vector<uint32_t>& list);

  // Bookkeeping once TCS `freed` of w are out of c's hands in the enclave
  // (c.op_mu held): they leave c's lease, c's context ends when it holds
  // none of w any more, and they return to the pool.
  void give_back(Client& c, Warm& w, const std::vector<uint32_t>& freed);

  // Can a thread of process c still be inside the enclave at `base`? Not
  // when no thread of it maps the enclave any more (it replaced itself with
  // execve, or unmapped it); each thread is checked, since while a killed
  // process is torn down some threads have left its memory and others not.
  // A process that has ended (or that we cannot look at) counts as "maybe":
  // its recovery is the pidfd's business.
  bool may_be_inside(const Client& c, uint64_t base);

  // A live process whose connection closed: its TCS come back one by one,
  // those in use by a thread of it stay leased until it ends; but a TCS
  // whose thread cannot be inside any more (the process replaced itself
  // with execve) is recovered as if the process had died (c.op_mu held).
  void release_idle(Client& c, uint32_t id, const std::vector<uint32_t>& list);

  // Clients whose connection closed while a thread was inside hold TCS
  // until they end; the main thread calls this every half second to give
  // back what they no longer use (c.op_mu taken on a thread of its own).
  void sweep_closed_clients();

  // Ends c's context in w, on TCS i, which the daemon holds (c.op_mu held).
  void end_context(Client& c, Warm& w, uint32_t i, bool owner_dead);

  // ---- Processes that end -----------------------------------------------------

  // The main thread saw c's pidfd fire: hand what it held to a recovery
  // thread (which waits for a request of c in progress to finish first).
  void process_ended(const std::shared_ptr<Client>& c);

  // A thread that recovers what the ended process c held (mu_ held).
  void start_recovery_locked(const std::shared_ptr<Client>& c);

  void recover(Client& c);

  DaemonOptions options_;
  DaemonConfig config_;
  std::unique_ptr<host::Backend> backend_;
  UniqueFd listen_;
  UniqueFd sigfd_;
  UniqueFd wake_;
  std::string pid_file_;
  gid_t socket_gid_ = 0;
  std::string state_path_;
  std::unique_ptr<StateJournal> journal_;  // appends to state_path_ (under mu_)
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

}  // namespace teemate::daemon::detail
