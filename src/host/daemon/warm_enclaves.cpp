// teemated: the warm enclaves (loading an image once per trust domain,
// finding one for a request, evicting idle ones). See daemon_impl.h.
#include "host/daemon/daemon_impl.h"

namespace teemate::daemon::detail {

json DaemonImpl::describe(const Warm& w, const Caller& viewer) {
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

Result<json> DaemonImpl::load(Client& c, const protocol::LoadRequest& q, std::vector<UniqueFd>& in) {
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

bool DaemonImpl::evict_idle_locked(std::optional<uid_t> uid) {
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

Result<json> DaemonImpl::list(Client& c) {
  std::lock_guard lock(mu_);
  json arr = json::array();
  for (auto& w : warm_) {
    if (is_member(config_, w->domain, c.who)) arr.push_back(describe(*w, c.who));
  }
  return json{{"enclaves", arr}};
}

Result<Warm*> DaemonImpl::find(const Client& c, const protocol::EnclaveSelector& which) {
  Warm* found = nullptr;
  if (which.loaded && !c.last_loaded) {
    return invalid_argument("'loaded' names the enclave of this connection's last successful load, and there is none");
  }
  const std::optional<uint32_t> id = which.loaded ? c.last_loaded : which.id;
  if (id) {
    found = by_id(*id);
    if (!found) {
      return Status(Code::kNotFound, "no enclave " + std::to_string(*id) + " in a trust domain of uid " +
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
    const uint32_t first = !c.leases.empty() ? c.leases.begin()->first : c.contexts.begin()->first;
    found = by_id(first);
    if (!found) return Status(Code::kNotFound, "no enclave " + std::to_string(first));
  }
  if (!is_member(config_, found->domain, c.who)) {
    // The same answer as for an enclave that does not exist: ids of other
    // domains are not theirs to probe.
    return Status(Code::kNotFound, "no enclave " + std::to_string(found->id) + " in a trust domain of uid " +
                                       std::to_string(c.who.uid) + " (not a member of its domain, or no such enclave)");
  }
  return found;
}

}  // namespace teemate::daemon::detail
