// teemated: the state that outlives a daemon restart (saved after every
// change, taken back at start). See daemon_impl.h.
#include "host/daemon/daemon_impl.h"

namespace teemate::daemon::detail {

void DaemonImpl::save_state_locked() {
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
  if (!journal_) journal_ = std::make_unique<StateJournal>(state_path_);
  Status st = journal_->append(s);
  if (!st.ok() && st.message() != last_state_error_) log("cannot save state: %s", st.message().c_str());
  last_state_error_ = st.ok() ? "" : st.message();
}

Result<host::AttachHandles> DaemonImpl::take_back_memory(int pidfd, pid_t pid, uint64_t memory_ino, uint64_t control_ino,
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

void DaemonImpl::restore() {
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
      if (st.ok()) st = w->ctl->unbind_tcs(i);
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

}  // namespace teemate::daemon::detail
