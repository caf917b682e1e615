// The sim backend: SGX's build and entry semantics in software. Enclave
// memory is a memfd mapped MAP_SHARED at a base aligned to the enclave size;
// EADD really copies each page and EEXTEND really hashes it; EINIT checks the
// SIGSTRUCT as the hardware does; pages then get their SECINFO permissions.
// It gives NO confidentiality or integrity: it says so once per process.
#include <errno.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <string>
#include <mutex>
#include <optional>
#include <vector>

#include "host/backend/backend.h"
#include "host/backend/sim/sim_backend.h"
#include "host/backend/sim/sim_keys.h"
#include "host/image/file_util.h"
#include "host/backend/sim/sim_state.h"
#include "sgx/sigstruct.h"

extern "C" void teemate_enclu_enter(teemate::host::EnterContext* ctx);

namespace teemate::host {
namespace sim {
namespace {

constexpr uint8_t kNotAdded = 0x80;

void warn_once() {
  static std::once_flag once;
  std::call_once(once, [] {
    std::fprintf(stderr,
                 "teemate: warning: the sim backend emulates SGX in software; enclaves run WITHOUT "
                 "confidentiality or integrity protection\n");
  });
}

// Does thread `tid` of PID namespace `pidns` still run (exist and not a
// zombie)? The namespace is found by its inode among the processes this
// process may see; a thread that cannot be found counts as gone.
bool thread_alive_here(const std::string& dir) {
  auto read = image::read_text_file(dir + "/stat");
  if (!read.ok()) return false;
  const std::string& text = *read;
  const size_t close = text.rfind(')');
  if (close == std::string::npos || close + 2 >= text.size()) return false;
  const char state = text[close + 2];
  return state != 'Z' && state != 'X' && state != 'x';
}

bool thread_alive(uint64_t pidns, uint32_t tid) {
  struct stat self {};
  if (pidns == 0) return false;
  if (stat("/proc/self/ns/pid", &self) == 0 && self.st_ino == pidns) {
    return thread_alive_here("/proc/" + std::to_string(tid));
  }
  for (const std::string& name : image::list_directory("/proc")) {
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    const std::string proc = "/proc/" + name;
    struct stat ns {};
    if (stat((proc + "/ns/pid").c_str(), &ns) != 0 || ns.st_ino != pidns) continue;
    for (const std::string& task_name : image::list_directory(proc + "/task")) {
      const std::string task = proc + "/task/" + task_name;
      auto status = image::read_text_file(task + "/status");
      if (!status.ok()) continue;
      const size_t at = status->find("\nNSpid:");
      if (at == std::string::npos) continue;
      const size_t eol = status->find('\n', at + 1);
      const std::string line = status->substr(at + 1, eol == std::string::npos ? std::string::npos : eol - at - 1);
      const size_t last = line.find_last_of(" \t");
      if (last != std::string::npos && std::strtoul(line.c_str() + last + 1, nullptr, 10) == tid) {
        return thread_alive_here(task);
      }
    }
  }
  return false;
}

class SimEnclave final : public BackendEnclave {
 public:
  ~SimEnclave() override {
    registry_remove(&state_);
    if (state_.base) munmap(reinterpret_cast<void*>(state_.base), state_.size);
    if (build_view_) munmap(build_view_, state_.size);
    if (memfd_ >= 0) close(memfd_);
    if (control_) munmap(control_, control_bytes_);
    if (control_fd_ >= 0) close(control_fd_);
  }

  Status create(const CreateParams& p) {
    if (p.size < 2 * sgx::kPageSize || (p.size & (p.size - 1))) {
      return invalid_argument("ECREATE: SIZE " + std::to_string(p.size) + " is not a power of two >= 8 KiB");
    }
    if (!(p.attributes.flags & sgx::kAttrMode64)) return invalid_argument("ECREATE: only 64-bit enclaves are supported");
    if ((p.attributes.xfrm & 0x3) != 0x3) return invalid_argument("ECREATE: XFRM must include x87 and SSE (0x3)");
    TM_RETURN_IF_ERROR(load_root_key());
    copy_root_key(state_.root_key);
    state_.size = p.size;
    state_.ssa_frame_pages = p.ssa_frame_pages;
    state_.misc_select = p.misc_select;
    state_.attributes = p.attributes;
    memfd_ = memfd_create("teemate-enclave", MFD_CLOEXEC);
    if (memfd_ < 0) return io_error("ECREATE: memfd_create", errno);
    if (ftruncate(memfd_, static_cast<off_t>(p.size)) != 0) return io_error("ECREATE: sizing enclave memory", errno);
    // Reserve twice the size and keep the naturally aligned half.
    void* r = mmap(reinterpret_cast<void*>(p.base_hint), 2 * p.size, PROT_NONE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (r == MAP_FAILED) return io_error("ECREATE: reserving " + std::to_string(2 * p.size) + " bytes", errno);
    uint64_t start = reinterpret_cast<uint64_t>(r);
    uint64_t base = (start + p.size - 1) & ~(p.size - 1);
    if (base > start) munmap(r, base - start);
    if (start + 2 * p.size > base + p.size) {
      munmap(reinterpret_cast<void*>(base + p.size), start + 2 * p.size - (base + p.size));
    }
    void* m = mmap(reinterpret_cast<void*>(base), p.size, PROT_NONE, MAP_SHARED | MAP_FIXED, memfd_, 0);
    if (m == MAP_FAILED) return io_error("ECREATE: mapping enclave memory", errno);
    state_.base = base;
    build_view_ = static_cast<uint8_t*>(mmap(nullptr, p.size, PROT_READ | PROT_WRITE, MAP_SHARED, memfd_, 0));
    if (build_view_ == MAP_FAILED) {
      build_view_ = nullptr;
      return io_error("ECREATE: mapping the build view", errno);
    }
    perms_.assign(p.size / sgx::kPageSize, kNotAdded);
    state_.page_perms = perms_.data();
    measurement_.emplace();
    measurement_->ecreate(p.ssa_frame_pages, p.size);
    return {};
  }

  uint64_t base() const override { return state_.base; }
  uint64_t size() const override { return state_.size; }

  Status add_page(uint64_t offset, const uint8_t* data, uint64_t flags, bool measure) override {
    if (state_.initialized) return invalid_argument("EADD after EINIT");
    if (offset % sgx::kPageSize || offset >= state_.size) {
      return invalid_argument("EADD: offset " + std::to_string(offset) + " outside the enclave");
    }
    uint64_t page = offset / sgx::kPageSize;
    if (perms_[page] != kNotAdded) return invalid_argument("EADD: page at offset " + std::to_string(offset) + " added twice");
    const auto type = sgx::secinfo_get_page_type(flags);
    if (type == sgx::kPtTcs) {
      if (flags & sgx::kSecinfoPermMask) return invalid_argument("EADD: a TCS page must have no R/W/X");
      TM_RETURN_IF_ERROR(add_tcs(offset, data));
    } else if (type != sgx::kPtReg) {
      return invalid_argument("EADD: page type " + std::to_string(type) + " cannot be added");
    } else if ((flags & sgx::kSecinfoW) && !(flags & sgx::kSecinfoR)) {
      return invalid_argument("EADD: a writable page must be readable");
    }
    memcpy(build_view_ + offset, data, sgx::kPageSize);  // EADD: commit and copy
    measurement_->add_page(offset, flags, data, measure);  // EEXTEND: hash
    perms_[page] = type == sgx::kPtTcs ? 0 : static_cast<uint8_t>(flags & sgx::kSecinfoPermMask);
    return {};
  }

  Status init(const sgx::Sigstruct& sig) override {
    if (state_.initialized) return invalid_argument("EINIT: enclave already initialised");
    if (!measurement_) return invalid_argument("EINIT before ECREATE");
    mrenclave_ = measurement_->finish();
    TM_RETURN_IF_ERROR(sgx::check_einit(sig, mrenclave_, state_.attributes, state_.misc_select)
                           .with_context("EINIT refused the SIGSTRUCT"));
    mrsigner_ = sgx::mrsigner_of(sig);
    // The enclave's identity is the signer's word, as on hardware: EINIT
    // copies ISVPRODID and ISVSVN from the SIGSTRUCT into the SECS.
    state_.isv_prod_id = sig.isv_prod_id;
    state_.isv_svn = sig.isv_svn;
    memcpy(state_.mr_enclave, mrenclave_.data(), 32);
    memcpy(state_.mr_signer, mrsigner_.data(), 32);
    // The build view goes away; the enclave view gets SECINFO permissions.
    munmap(build_view_, state_.size);
    build_view_ = nullptr;
    TM_RETURN_IF_ERROR(apply_permissions(perms_.data(), 0, perms_.size()).with_context("EINIT"));
    populate_added_pages();
    // The control memory: what every attached process must share.
    TM_RETURN_IF_ERROR(make_control());
    if (!registry_add(&state_)) return resource_error("EINIT: more than 64 enclaves in one process");
    __atomic_store_n(&control_->initialized, 1u, __ATOMIC_RELEASE);
    state_.initialized.store(true, std::memory_order_release);
    return {};
  }

  sgx::Digest mrenclave() const override { return mrenclave_; }
  sgx::Digest mrsigner() const override { return mrsigner_; }

  void enter(EnterContext* ctx) override {
    ensure_signal_stack();
    teemate_enclu_enter(ctx);
  }

  Result<AttachHandles> export_handles() const override {
    if (!state_.initialized) return invalid_argument("only an initialised enclave can be shared");
    return AttachHandles{{memfd_, control_fd_}, state_.base, state_.size};
  }

  uint32_t tcs_count() const override { return state_.tcs_count; }
  uint64_t tcs_address(uint32_t index) const override {
    return index < state_.tcs_count ? state_.tcs[index].tcs_addr : 0;
  }
  uint32_t tcs_cssa(uint32_t index) const override {
    return index < state_.tcs_count ? __atomic_load_n(&state_.tcs[index].cssa, __ATOMIC_ACQUIRE) : 0;
  }

  bool tcs_busy(uint32_t index) const override {
    return index < state_.tcs_count && state_.tcs[index].busy.load(std::memory_order_acquire) != 0;
  }

  Result<uint32_t> reclaim_tcs(uint32_t index) override {
    if (index >= state_.tcs_count) return invalid_argument("no TCS " + std::to_string(index));
    SimTcs& t = state_.tcs[index];
    uint32_t holder = t.busy.load(std::memory_order_acquire);
    if (holder != 0 && thread_alive(t.holder_pidns.load(std::memory_order_relaxed), holder)) {
      // Hardware would show the TCS busy as well: the thread inside is not
      // the dead process's (a process it handed its connection to, say).
      return Status(Code::kBusy, "TCS " + std::to_string(index) + " is in use by thread " + std::to_string(holder) +
                                     ", which still runs; it is not reclaimed");
    }
    if (holder != 0) {
      // The thread died inside: hardware would have taken an asynchronous
      // exit and saved its registers. Those are lost here, so the frame
      // says nothing (EXITINFO not valid, registers zero): recovery must not
      // rely on them, as nothing of the dead thread is resumed.
      if (t.cssa < t.nssa) {
        const uint64_t frame_bytes = uint64_t{state_.ssa_frame_pages} * sgx::kPageSize;
        auto* g = reinterpret_cast<sgx::GprSgx*>(t.ossa_addr + t.cssa * frame_bytes +
                                                 sgx::gprsgx_offset(state_.ssa_frame_pages));
        const uint64_t ursp = g->ursp, urbp = g->urbp;
        memset(static_cast<void*>(g), 0, sizeof *g);
        g->ursp = ursp;
        g->urbp = urbp;
        t.cssa += 1;
      }
      t.busy.store(0, std::memory_order_release);
    }
    return t.cssa;
  }

  // Maps an exported enclave here (see Backend::attach).
  Status attach(const AttachHandles& h) {
    if (h.fds.size() != 2) return invalid_argument("sim attach needs 2 file descriptors, got " + std::to_string(h.fds.size()));
    struct stat cst {};
    if (fstat(h.fds[1], &cst) != 0) return io_error("attach: control memory", errno);
    if (cst.st_size < static_cast<off_t>(sizeof(SimControlHeader))) return corrupt("attach: control memory too small");
    control_bytes_ = static_cast<size_t>(cst.st_size);
    void* c = mmap(nullptr, control_bytes_, PROT_READ | PROT_WRITE, MAP_SHARED, h.fds[1], 0);
    if (c == MAP_FAILED) return io_error("attach: mapping control memory", errno);
    control_ = static_cast<SimControlHeader*>(c);
    const SimControlHeader& hd = *control_;
    if (hd.magic != kSimControlMagic || hd.version != 2 || hd.total_size != control_bytes_ ||
        hd.base != h.base || hd.size != h.size || (hd.size & (hd.size - 1)) || hd.base % hd.size ||
        hd.tcs_offset + uint64_t{hd.tcs_count} * sizeof(SimTcs) > control_bytes_ ||
        hd.perms_offset + hd.size / sgx::kPageSize > control_bytes_ ||
        !__atomic_load_n(&hd.initialized, __ATOMIC_ACQUIRE)) {
      return corrupt("attach: the control memory does not describe an initialised enclave at the given base");
    }
    struct stat mst {};
    if (fstat(h.fds[0], &mst) != 0 || static_cast<uint64_t>(mst.st_size) != hd.size) {
      return corrupt("attach: enclave memory is not " + std::to_string(hd.size) + " bytes");
    }
    void* m = mmap(reinterpret_cast<void*>(hd.base), hd.size, PROT_NONE, MAP_SHARED | MAP_FIXED_NOREPLACE,
                   h.fds[0], 0);
    if (m == MAP_FAILED || m != reinterpret_cast<void*>(hd.base)) {
      int err = errno;
      if (m != MAP_FAILED) munmap(m, hd.size);
      char range[96];
      snprintf(range, sizeof range, "0x%llx-0x%llx", static_cast<unsigned long long>(hd.base),
               static_cast<unsigned long long>(hd.base + hd.size));
      return Status(Code::kResource, std::string("cannot map the enclave at its base ") + range +
                                         ": the range is already in use in this process (" + strerror(err) +
                                         "); reserve a high range early in processes that attach");
    }
    state_.base = hd.base;
    memfd_ = dup(h.fds[0]);
    control_fd_ = dup(h.fds[1]);
    if (memfd_ < 0 || control_fd_ < 0) return io_error("attach: dup", errno);
    state_.size = hd.size;
    state_.ssa_frame_pages = hd.ssa_frame_pages;
    state_.misc_select = hd.misc_select;
    state_.attributes = hd.attributes;
    state_.isv_prod_id = hd.isv_prod_id;
    state_.isv_svn = hd.isv_svn;
    memcpy(state_.mr_enclave, hd.mr_enclave, 32);
    memcpy(state_.mr_signer, hd.mr_signer, 32);
    memcpy(state_.root_key, hd.root_key, 32);
    memcpy(mrenclave_.data(), hd.mr_enclave, 32);
    memcpy(mrsigner_.data(), hd.mr_signer, 32);
    state_.control = control_;
    state_.tcs = reinterpret_cast<SimTcs*>(reinterpret_cast<uint8_t*>(control_) + hd.tcs_offset);
    state_.tcs_count = hd.tcs_count;
    state_.page_perms = reinterpret_cast<uint8_t*>(control_) + hd.perms_offset;
    TM_RETURN_IF_ERROR(apply_attached_permissions(hd.size / sgx::kPageSize));
    if (!registry_add(&state_)) return resource_error("attach: more than 64 enclaves in one process");
    state_.initialized.store(true, std::memory_order_release);
    return {};
  }

 private:
  Status apply_permissions(const uint8_t* perms, uint64_t first, uint64_t end) {
    const int err = apply_page_permissions(state_.base, perms, first, end);
    return err ? io_error("applying page permissions", err) : Status{};
  }

  // An attached process applies the permissions of everything but the TCS
  // blocks now, and those of a block when it first enters its TCS or
  // touches it (sim_deferred_blocks.cpp). Blocks are deferred only when
  // the TCS lie at one stride, each block starting at its TCS.
  Status apply_attached_permissions(uint64_t pages) {
    const uint32_t n = state_.tcs_count;
    const uint64_t start = n ? state_.tcs[0].tcs_addr : 0;
    const uint64_t stride = n >= 2 ? state_.tcs[1].tcs_addr - start : 0;
    bool uniform = n >= 2 && stride > 0 && stride % sgx::kPageSize == 0 && start >= state_.base &&
                   (start - state_.base) % sgx::kPageSize == 0 && stride <= state_.size &&
                   n <= (state_.size - (start - state_.base)) / stride;
    for (uint32_t i = 0; uniform && i < n; ++i) uniform = state_.tcs[i].tcs_addr == start + i * stride;
    if (!uniform) return apply_permissions(state_.page_perms, 0, pages);
    const uint64_t first = (start - state_.base) / sgx::kPageSize;
    const uint64_t end = first + n * (stride / sgx::kPageSize);
    TM_RETURN_IF_ERROR(apply_permissions(state_.page_perms, 0, first));
    TM_RETURN_IF_ERROR(apply_permissions(state_.page_perms, end, pages));
    deferred_state_ = std::make_unique<std::atomic<uint8_t>[]>(n);
    state_.deferred_state = deferred_state_.get();
    state_.deferred_start = start;
    state_.deferred_stride = stride;
    state_.deferred_blocks = n;
    return {};
  }

  // Every added page is resident in the EPC on hardware and charged to the
  // enclave; map the owner's readable pages now so that memory accounting
  // (RSS/PSS) sees them here too, as the owner of the pages.
  void populate_added_pages() {
#ifdef MADV_POPULATE_READ
    const uint64_t pages = perms_.size();
    for (uint64_t i = 0; i < pages;) {
      uint64_t j = i;
      while (j < pages && ((perms_[j] & sgx::kSecinfoR) && perms_[j] != kNotAdded) ==
                              ((perms_[i] & sgx::kSecinfoR) && perms_[i] != kNotAdded)) {
        ++j;
      }
      if ((perms_[i] & sgx::kSecinfoR) && perms_[i] != kNotAdded) {
        madvise(reinterpret_cast<void*>(state_.base + i * sgx::kPageSize), (j - i) * sgx::kPageSize,
                MADV_POPULATE_READ);
      }
      i = j;
    }
#endif
  }

  // Builds the control memory from what ECREATE/EADD/EINIT established.
  Status make_control() {
    const uint64_t pages = perms_.size();
    const uint64_t tcs_offset = (sizeof(SimControlHeader) + 63) & ~uint64_t{63};
    const uint64_t perms_offset = tcs_offset + pending_tcs_.size() * sizeof(SimTcs);
    control_bytes_ = (perms_offset + pages + sgx::kPageSize - 1) & ~(sgx::kPageSize - 1);
    control_fd_ = memfd_create("teemate-enclave-control", MFD_CLOEXEC);
    if (control_fd_ < 0) return io_error("EINIT: memfd_create", errno);
    if (ftruncate(control_fd_, static_cast<off_t>(control_bytes_)) != 0) return io_error("EINIT: sizing control memory", errno);
    void* c = mmap(nullptr, control_bytes_, PROT_READ | PROT_WRITE, MAP_SHARED, control_fd_, 0);
    if (c == MAP_FAILED) return io_error("EINIT: mapping control memory", errno);
    control_ = static_cast<SimControlHeader*>(c);
    SimControlHeader& hd = *control_;
    hd.magic = kSimControlMagic;
    hd.version = 2;
    memcpy(hd.root_key, state_.root_key, 32);
    hd.tcs_count = static_cast<uint32_t>(pending_tcs_.size());
    hd.base = state_.base;
    hd.size = state_.size;
    hd.ssa_frame_pages = state_.ssa_frame_pages;
    hd.misc_select = state_.misc_select;
    hd.attributes = state_.attributes;
    hd.isv_prod_id = state_.isv_prod_id;
    hd.isv_svn = state_.isv_svn;
    memcpy(hd.mr_enclave, mrenclave_.data(), 32);
    memcpy(hd.mr_signer, mrsigner_.data(), 32);
    hd.tcs_offset = tcs_offset;
    hd.perms_offset = perms_offset;
    hd.total_size = control_bytes_;
    auto* tcs = reinterpret_cast<SimTcs*>(reinterpret_cast<uint8_t*>(control_) + tcs_offset);
    for (size_t i = 0; i < pending_tcs_.size(); ++i) {
      const auto& src = pending_tcs_[i];
      SimTcs* d = new (&tcs[i]) SimTcs{};
      d->tcs_addr = state_.base + src.offset;
      d->ossa_addr = state_.base + src.tcs.ossa;
      d->oentry_addr = state_.base + src.tcs.oentry;
      d->enclave_fs = state_.base + src.tcs.ofs_base;
      d->enclave_gs = state_.base + src.tcs.ogs_base;
      d->nssa = src.tcs.nssa;
      d->cssa = src.tcs.cssa;
      d->index = static_cast<uint32_t>(i);
    }
    uint8_t* perms = reinterpret_cast<uint8_t*>(control_) + perms_offset;
    memcpy(perms, perms_.data(), pages);
    state_.control = control_;
    state_.tcs = tcs;
    state_.tcs_count = hd.tcs_count;
    state_.page_perms = perms;
    return {};
  }

  struct PendingTcs {
    uint64_t offset;
    sgx::Tcs tcs;
  };

  // EADD of a TCS: the hardware checks the fields it will rely on.
  Status add_tcs(uint64_t offset, const uint8_t* data) {
    sgx::Tcs tcs;
    memcpy(&tcs, data, sizeof tcs);
    const uint64_t frame = uint64_t{state_.ssa_frame_pages} * sgx::kPageSize;
    if (tcs.ossa % sgx::kPageSize || tcs.nssa == 0 || tcs.ossa >= state_.size ||
        tcs.nssa * frame > state_.size - tcs.ossa) {
      return invalid_argument("EADD: TCS at offset " + std::to_string(offset) + " has a bad OSSA/NSSA");
    }
    if (tcs.oentry >= state_.size || tcs.ofs_base >= state_.size || tcs.ogs_base >= state_.size ||
        tcs.cssa != 0 || tcs.state != 0) {
      return invalid_argument("EADD: TCS at offset " + std::to_string(offset) + " has a field out of range");
    }
    pending_tcs_.push_back({offset, tcs});
    return {};
  }

  SimEnclaveState state_;
  int memfd_ = -1;
  uint8_t* build_view_ = nullptr;
  std::vector<uint8_t> perms_;
  std::unique_ptr<std::atomic<uint8_t>[]> deferred_state_;  // attached: see apply_attached_permissions
  std::vector<PendingTcs> pending_tcs_;
  SimControlHeader* control_ = nullptr;
  size_t control_bytes_ = 0;
  int control_fd_ = -1;
  // Only a build measures: an attached enclave never creates the hashing
  // context (whose first use loads OpenSSL's configuration, ~1 ms).
  std::optional<sgx::MeasurementBuilder> measurement_;
  sgx::Digest mrenclave_{};
  sgx::Digest mrsigner_{};
};

class SimBackend final : public Backend {
 public:
  const char* name() const override { return "sim"; }
  Result<std::unique_ptr<BackendEnclave>> create(const CreateParams& params) override {
    auto e = std::make_unique<SimEnclave>();
    TM_RETURN_IF_ERROR(e->create(params));
    return std::unique_ptr<BackendEnclave>(std::move(e));
  }
  Result<std::unique_ptr<BackendEnclave>> attach(const AttachHandles& handles) override {
    auto e = std::make_unique<SimEnclave>();
    TM_RETURN_IF_ERROR(e->attach(handles));
    return std::unique_ptr<BackendEnclave>(std::move(e));
  }
};

}  // namespace

std::unique_ptr<Backend> make_sim_backend() {
  warn_once();
  install_signal_handlers();
  return std::make_unique<SimBackend>();
}

}  // namespace sim
}  // namespace teemate::host
