// teemated: TCS leases and process contexts (attach, lease, release,
// detach, giving back what a closed connection no longer uses). See
// daemon_impl.h.
#include "host/daemon/daemon_impl.h"

namespace teemate::daemon::detail {

uint64_t DaemonImpl::arena_bytes(const Warm& w) {
  uint64_t b = w.ctl->heap_size() / (uint64_t{w.ctl->tcs_count()} + 1);
  b = std::min<uint64_t>(b, 64ull << 20) & ~uint64_t{4095};
  return b;
}

Result<std::vector<uint32_t>> DaemonImpl::take(Client& c, Warm& w, uint64_t n) {
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
    for (size_t k = 0; k < bound; ++k) (void)w.ctl->unbind_tcs(got[k]);
    if (need_context && context) (void)w.ctl->process_end(got[0], context);
    std::lock_guard lock(mu_);
    for (uint32_t i : got) w.lease[i] = 0;
    return why;
  };
  if (need_context) {
    auto r = w.ctl->process_start(got[0], static_cast<uint64_t>(c.pid), arena_bytes(w));
    if (!r.ok()) return unwind(r.status());
    context = *r;
  }
  std::vector<Token128> tokens(got.size());
  for (size_t k = 0; k < got.size(); ++k) {
    Status st = random_token(&tokens[k]);
    if (st.ok()) st = w.ctl->bind_tcs(got[k], context, tokens[k]);
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

json DaemonImpl::tcs_json(const Client& c, const Warm& w, const std::vector<uint32_t>& idx) {
  std::lock_guard lock(mu_);
  json arr = json::array();
  for (uint32_t i : idx) {
    auto it = c.tokens.find({w.id, i});
    arr.push_back(json{{"index", i}, {"address", w.ctl->enclave().tcs_address(i)},
                       {"token", it == c.tokens.end() ? "" : token_hex(it->second)}});
  }
  return arr;
}

Result<json> DaemonImpl::attach(Client& c, const protocol::AttachRequest& q, std::vector<int>* fds) {
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

Result<json> DaemonImpl::lease(Client& c, const protocol::LeaseRequest& q) {
  Warm* w;
  {
    std::lock_guard lock(mu_);
    TM_ASSIGN_OR_RETURN(w, find(c, q.which));
    if (!c.leases.count(w->id)) return invalid_argument("attach to enclave " + std::to_string(w->id) + " first");
  }
  TM_ASSIGN_OR_RETURN(std::vector<uint32_t> got, take(c, *w, q.tcs));
  return json{{"tcs", tcs_json(c, *w, got)}};
}

Result<json> DaemonImpl::release(Client& c, const protocol::ReleaseRequest& q) {
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

Result<json> DaemonImpl::detach(Client& c, const protocol::DetachRequest& q) {
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

Status DaemonImpl::release_all_or_none(Client& c, Warm& w, const std::vector<uint32_t>& list) {
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
                                             : w.ctl->unbind_tcs(i);
    if (!st.ok()) {
      for (uint32_t j : done) (void)w.ctl->bind_tcs(j, context, tokens[j]);
      return Status(Code::kBusy, "TCS " + std::to_string(i) +
                                     " is in use by a thread of this process; leave the enclave first (nothing was "
                                     "released)");
    }
    done.push_back(i);
  }
  give_back(c, w, list);
  return {};
}

void DaemonImpl::give_back(Client& c, Warm& w, const std::vector<uint32_t>& freed) {
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

bool DaemonImpl::may_be_inside(const Client& c, uint64_t base) {
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

void DaemonImpl::release_idle(Client& c, uint32_t id, const std::vector<uint32_t>& list) {
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
    if (!w->ctl->enclave().tcs_busy(i) && w->ctl->unbind_tcs_once(i).ok()) {
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
    std::erase_if(reset, [&](uint32_t i) { return !w->ctl->unbind_tcs(i).ok(); });
  }
  freed.insert(freed.end(), reset.begin(), reset.end());
  give_back(c, *w, freed);
}

void DaemonImpl::sweep_closed_clients() {
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

void DaemonImpl::end_context(Client& c, Warm& w, uint32_t i, bool owner_dead) {
  uint64_t context;
  {
    std::lock_guard lock(mu_);
    auto it = c.contexts.find(w.id);
    if (it == c.contexts.end()) return;
    context = it->second;
  }
  auto r = w.ctl->process_end(i, context);
  if (!r.ok()) {
    log("enclave %u: ending the context of pid %d failed: %s", w.id, c.pid, r.status().message().c_str());
    return;  // kept: a later death or detach tries again
  }
  if (options_.verbose || owner_dead) {
    log("enclave %u: context of pid %d ended (main status %lld, %llu arena bytes never freed, reclaimed)", w.id,
        c.pid, static_cast<long long>(r->exit_status), static_cast<unsigned long long>(r->leaked_bytes));
  }
  if (const uint64_t dangling = r->globals_report) {
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

}  // namespace teemate::daemon::detail
