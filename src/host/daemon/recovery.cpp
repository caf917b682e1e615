// teemated: recovering what a process that ended held (its TCS, reset
// through the recovery entry, then its context). See daemon_impl.h.
#include "host/daemon/daemon_impl.h"

namespace teemate::daemon::detail {

void DaemonImpl::process_ended(const std::shared_ptr<Client>& c) {
  std::lock_guard lock(mu_);
  if (c->dead) return;
  c->dead = true;
  if (c->sock) shutdown(c->sock.get(), SHUT_RDWR);  // its connection thread ends too
  start_recovery_locked(c);
}

void DaemonImpl::start_recovery_locked(const std::shared_ptr<Client>& c) {
  recoveries_.emplace_back([this, c] {
    guarded("a recovery", [&] { recover(*c); });
    std::lock_guard l(mu_);
    c->recovered = true;
    finished_recoveries_.insert(std::this_thread::get_id());
    wake_main();
  });
}

void DaemonImpl::recover(Client& c) {
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

}  // namespace teemate::daemon::detail
