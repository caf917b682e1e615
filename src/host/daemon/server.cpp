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
#include "host/daemon/daemon_impl.h"

namespace teemate::daemon::detail {

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

Status DaemonImpl::init(const DaemonOptions& o) {
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

Status DaemonImpl::run() {
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

Status DaemonImpl::write_pid_file(const std::string& dir) {
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

void DaemonImpl::wake_main() {
  const uint64_t one = 1;
  (void)!write(wake_.get(), &one, sizeof one);
}

void DaemonImpl::stop_all() {
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

void DaemonImpl::reap() {
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

void DaemonImpl::accept_client() {
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

void DaemonImpl::serve_connection(std::shared_ptr<Client> cp) {
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

json DaemonImpl::handle(Client& c, const std::string& op, protocol::Message& msg, std::vector<int>* out_fds, bool* greeted) {
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

Result<json> DaemonImpl::serve(Client&, const protocol::HelloRequest&, std::vector<UniqueFd>&, std::vector<int>*) {
  return json::object();  // handled above
}

Result<json> DaemonImpl::serve(Client& c, const protocol::LoadRequest& q, std::vector<UniqueFd>& in, std::vector<int>*) {
  Result<json> r = load(c, q, in);
  std::lock_guard lock(mu_);
  c.last_loaded.reset();
  if (r.ok() && r->contains("enclave") && (*r)["enclave"].is_number_unsigned()) {
    c.last_loaded = (*r)["enclave"].get<uint32_t>();
  }
  return r;
}

Result<json> DaemonImpl::serve(Client& c, const protocol::ListRequest&, std::vector<UniqueFd>&, std::vector<int>*) {
  return list(c);
}

Result<json> DaemonImpl::serve(Client& c, const protocol::AttachRequest& q, std::vector<UniqueFd>&, std::vector<int>* out) {
  return attach(c, q, out);
}

Result<json> DaemonImpl::serve(Client& c, const protocol::LeaseRequest& q, std::vector<UniqueFd>&, std::vector<int>*) {
  return lease(c, q);
}

Result<json> DaemonImpl::serve(Client& c, const protocol::ReleaseRequest& q, std::vector<UniqueFd>&, std::vector<int>*) {
  return release(c, q);
}

Result<json> DaemonImpl::serve(Client& c, const protocol::DetachRequest& q, std::vector<UniqueFd>&, std::vector<int>*) {
  return detach(c, q);
}

}  // namespace teemate::daemon::detail

namespace teemate::daemon {

using detail::DaemonImpl;

std::string default_socket_path() { return default_daemon_socket(); }

std::string default_state_dir() { return base::state_dir(); }

Result<std::unique_ptr<Daemon>> Daemon::create(const DaemonOptions& options) {
  auto d = std::make_unique<DaemonImpl>();
  TM_RETURN_IF_ERROR(d->init(options));
  return std::unique_ptr<Daemon>(std::move(d));
}

}  // namespace teemate::daemon
