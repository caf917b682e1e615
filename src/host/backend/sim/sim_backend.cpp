// The sim backend: SGX's build and entry semantics in software. Enclave
// memory is a memfd mapped MAP_SHARED at a base aligned to the enclave size;
// EADD really copies each page and EEXTEND really hashes it; EINIT checks the
// SIGSTRUCT as the hardware does; pages then get their SECINFO permissions.
// It gives NO confidentiality or integrity: it says so once per process.
#include <errno.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstdio>
#include <mutex>
#include <vector>

#include "host/backend/backend.h"
#include "host/backend/sim/sim_keys.h"
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

int prot_of(uint8_t perm) {
  int p = PROT_NONE;
  if (perm & sgx::kSecinfoR) p |= PROT_READ;
  if (perm & sgx::kSecinfoW) p |= PROT_WRITE;
  if (perm & sgx::kSecinfoX) p |= PROT_EXEC;
  return p;
}

class SimEnclave final : public BackendEnclave {
 public:
  ~SimEnclave() override {
    registry_remove(&state_);
    if (state_.base) munmap(reinterpret_cast<void*>(state_.base), state_.size);
    if (build_view_) munmap(build_view_, state_.size);
    if (memfd_ >= 0) close(memfd_);
    if (tcs_) munmap(tcs_, tcs_bytes_);
  }

  Status create(const CreateParams& p) {
    if (p.size < 2 * sgx::kPageSize || (p.size & (p.size - 1))) {
      return invalid_argument("ECREATE: SIZE " + std::to_string(p.size) + " is not a power of two >= 8 KiB");
    }
    if (!(p.attributes.flags & sgx::kAttrMode64)) return invalid_argument("ECREATE: only 64-bit enclaves are supported");
    if ((p.attributes.xfrm & 0x3) != 0x3) return invalid_argument("ECREATE: XFRM must include x87 and SSE (0x3)");
    state_.size = p.size;
    state_.ssa_frame_pages = p.ssa_frame_pages;
    state_.misc_select = p.misc_select;
    state_.attributes = p.attributes;
    state_.isv_prod_id = p.isv_prod_id;
    state_.isv_svn = p.isv_svn;
    memfd_ = memfd_create("teemate-enclave", MFD_CLOEXEC);
    if (memfd_ < 0) return io_error("ECREATE: memfd_create", errno);
    if (ftruncate(memfd_, static_cast<off_t>(p.size)) != 0) return io_error("ECREATE: sizing enclave memory", errno);
    // Reserve twice the size and keep the naturally aligned half.
    void* r = mmap(nullptr, 2 * p.size, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
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
    measurement_.ecreate(p.ssa_frame_pages, p.size);
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
    measurement_.add_page(offset, flags, data, measure);  // EEXTEND: hash
    perms_[page] = type == sgx::kPtTcs ? 0 : static_cast<uint8_t>(flags & sgx::kSecinfoPermMask);
    return {};
  }

  Status init(const sgx::Sigstruct& sig) override {
    if (state_.initialized) return invalid_argument("EINIT: enclave already initialised");
    mrenclave_ = measurement_.finish();
    TM_RETURN_IF_ERROR(sgx::check_einit(sig, mrenclave_, state_.attributes, state_.misc_select)
                           .with_context("EINIT refused the SIGSTRUCT"));
    mrsigner_ = sgx::mrsigner_of(sig);
    memcpy(state_.mr_enclave, mrenclave_.data(), 32);
    memcpy(state_.mr_signer, mrsigner_.data(), 32);
    // The build view goes away; the enclave view gets SECINFO permissions.
    munmap(build_view_, state_.size);
    build_view_ = nullptr;
    const uint64_t pages = perms_.size();
    for (uint64_t i = 0; i < pages;) {
      uint64_t j = i;
      while (j < pages && perms_[j] == perms_[i]) ++j;
      if (perms_[i] != kNotAdded && perms_[i] != 0) {
        if (mprotect(reinterpret_cast<void*>(state_.base + i * sgx::kPageSize), (j - i) * sgx::kPageSize,
                     prot_of(perms_[i])) != 0) {
          return io_error("EINIT: applying page permissions", errno);
        }
      }
      i = j;
    }
    // TCS records live in their own shared mapping, outside the enclave.
    tcs_bytes_ = std::max<size_t>(pending_tcs_.size() * sizeof(SimTcs), sgx::kPageSize);
    void* t = mmap(nullptr, tcs_bytes_, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (t == MAP_FAILED) return io_error("EINIT: allocating TCS state", errno);
    tcs_ = static_cast<SimTcs*>(t);
    for (size_t i = 0; i < pending_tcs_.size(); ++i) {
      const auto& src = pending_tcs_[i];
      SimTcs* d = new (&tcs_[i]) SimTcs{};
      d->tcs_addr = state_.base + src.offset;
      d->ossa_addr = state_.base + src.tcs.ossa;
      d->oentry_addr = state_.base + src.tcs.oentry;
      d->enclave_fs = state_.base + src.tcs.ofs_base;
      d->enclave_gs = state_.base + src.tcs.ogs_base;
      d->nssa = src.tcs.nssa;
      d->cssa = src.tcs.cssa;
      d->index = static_cast<uint32_t>(i);
    }
    state_.tcs = tcs_;
    state_.tcs_count = static_cast<uint32_t>(pending_tcs_.size());
    if (!registry_add(&state_)) return resource_error("EINIT: more than 64 enclaves in one process");
    state_.initialized.store(true, std::memory_order_release);
    return {};
  }

  sgx::Digest mrenclave() const override { return mrenclave_; }
  sgx::Digest mrsigner() const override { return mrsigner_; }

  void enter(EnterContext* ctx) override {
    ensure_signal_stack();
    teemate_enclu_enter(ctx);
  }

 private:
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
  std::vector<PendingTcs> pending_tcs_;
  SimTcs* tcs_ = nullptr;
  size_t tcs_bytes_ = 0;
  sgx::MeasurementBuilder measurement_;
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
};

}  // namespace
}  // namespace sim

Result<std::unique_ptr<Backend>> open_backend(std::string_view name) {
  if (name == "sim") {
    sim::warn_once();
    TM_RETURN_IF_ERROR(sim::load_root_key());
    sim::install_signal_handlers();
    return std::unique_ptr<Backend>(std::make_unique<sim::SimBackend>());
  }
  if (name == "sgx") {
    return unsupported("backend 'sgx' is not built into this TeeMate yet; use --backend sim");
  }
  return invalid_argument("unknown backend '" + std::string(name) + "' (known: sim, sgx)");
}

}  // namespace teemate::host
