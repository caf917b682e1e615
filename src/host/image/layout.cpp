// Layout::compute and MRENCLAVE: the one place that decides where every page
// of an enclave goes. Deterministic and I/O-free; the packer, the loader and
// every backend must get identical ranges and contents from it, so never make
// a page's content depend on anything but the ELF bytes and the config.
#include "host/image/layout.h"

#include <string.h>

#include <algorithm>
#include <cstdio>

namespace teemate::image {

namespace {

constexpr uint64_t kPage = sgx::kPageSize;

uint64_t round_up(uint64_t v) { return (v + kPage - 1) & ~(kPage - 1); }

uint64_t next_pow2(uint64_t v) {
  uint64_t p = 1;
  while (p < v) p <<= 1;
  return p;
}

// "64 GiB 200 KiB", "12 KiB", "100 bytes": exact, largest units first.
std::string human_size(uint64_t v) {
  if (v == 0) return "0 bytes";
  static const struct { unsigned shift; const char* unit; } kUnits[] = {
      {30, "GiB"}, {20, "MiB"}, {10, "KiB"}, {0, "bytes"}};
  std::string out;
  for (const auto& u : kUnits) {
    const uint64_t n = v >> u.shift;
    if (n == 0) continue;
    if (!out.empty()) out += ' ';
    out += std::to_string(n) + " " + u.unit;
    v -= n << u.shift;
  }
  return out;
}

uint64_t segment_flags(const ElfSegment& s) {
  uint64_t f = sgx::secinfo_page_type(sgx::kPtReg) | sgx::kSecinfoR;
  if (s.writable) f |= sgx::kSecinfoW;
  if (s.executable) f |= sgx::kSecinfoX;
  return f;
}

constexpr uint64_t kRw = sgx::secinfo_page_type(sgx::kPtReg) | sgx::kSecinfoR | sgx::kSecinfoW;

alignas(64) const uint8_t kZeroPage[kPage] = {};

}  // namespace

const char* range_kind_name(RangeKind kind) {
  switch (kind) {
    case RangeKind::kElf: return "elf";
    case RangeKind::kMeta: return "meta";
    case RangeKind::kManifest: return "manifest";
    case RangeKind::kTcs: return "tcs";
    case RangeKind::kSsa: return "ssa";
    case RangeKind::kStack: return "stack";
    case RangeKind::kExceptionStack: return "exception-stack";
    case RangeKind::kThreadData: return "thread-data";
    case RangeKind::kHeap: return "heap";
  }
  return "?";
}

Result<Layout> Layout::compute(const ElfImage& elf, const EnclaveConfig& config) {
  TM_RETURN_IF_ERROR(validate_config(config));
  if (elf.segments().empty()) return invalid_argument("layout: the ELF image has no segments");
  if (elf.end() > kMaxSize) {
    return resource_error("layout: the ELF image ends at " + human_size(elf.end()) +
                          ", beyond the 64 GiB enclave limit");
  }

  Layout l;
  l.elf_ = elf;
  l.config_ = config;
  l.entry_offset_ = elf.entry();

  for (const ElfSegment& s : elf.segments()) {
    l.ranges_.push_back({RangeKind::kElf, s.page_begin(), (s.page_end() - s.page_begin()) / kPage,
                         segment_flags(s), true, 0});
  }

  const uint64_t nssa = config.ssa_frames;
  const uint64_t ssa_pages = nssa * config.ssa_frame_pages;
  const uint64_t stack_pages = config.stack_size / kPage;
  const uint64_t meta_offset = round_up(elf.end());
  std::vector<uint8_t> manifest = serialize_manifest(config.manifest);
  const uint64_t manifest_offset = meta_offset + kPage;
  const uint64_t manifest_pages = (manifest.size() + kPage - 1) / kPage;
  const uint64_t threads_offset = manifest_offset + manifest_pages * kPage;
  const uint64_t ssa_in_block = kPage;
  const uint64_t stack_in_block = ssa_in_block + (ssa_pages + 1) * kPage;  // after SSA + guard
  const uint64_t exc_pages = abi::kExceptionStackPages;
  const uint64_t exc_in_block = stack_in_block + (stack_pages + 1) * kPage;  // after stack + guard
  const uint64_t td_in_block = exc_in_block + exc_pages * kPage;
  const uint64_t stride = (1 + ssa_pages + 1 + stack_pages + 1 + exc_pages + 1) * kPage;
  const uint64_t heap_offset = threads_offset + config.tcs_count * stride + kPage;
  const uint64_t heap_end = heap_offset + config.heap_size;  // bounded: no overflow (see limits)
  if (heap_end > kMaxSize) {
    return resource_error("layout: the enclave needs " + human_size(heap_end) +
                          " (ELF " + human_size(meta_offset) + ", " + std::to_string(config.tcs_count) +
                          " threads of " + human_size(stride) + ", heap " + human_size(config.heap_size) +
                          "), more than the 64 GiB limit; reduce enclave.heap_size, "
                          "enclave.stack_size or enclave.tcs_count");
  }
  l.size_ = std::max<uint64_t>(next_pow2(heap_end), 2 * kPage);

  l.ranges_.push_back({RangeKind::kMeta, meta_offset, 1,
                       sgx::secinfo_page_type(sgx::kPtReg) | sgx::kSecinfoR, true, 0});
  if (manifest_pages) {
    l.ranges_.push_back({RangeKind::kManifest, manifest_offset, manifest_pages,
                         sgx::secinfo_page_type(sgx::kPtReg) | sgx::kSecinfoR, true, 0});
  }
  for (uint32_t t = 0; t < config.tcs_count; ++t) {
    const uint64_t block = threads_offset + t * stride;
    l.ranges_.push_back({RangeKind::kTcs, block, 1, sgx::secinfo_page_type(sgx::kPtTcs), true, t});
    l.ranges_.push_back({RangeKind::kSsa, block + ssa_in_block, ssa_pages, kRw, true, t});
    l.ranges_.push_back({RangeKind::kStack, block + stack_in_block, stack_pages, kRw, true, t});
    l.ranges_.push_back({RangeKind::kExceptionStack, block + exc_in_block, exc_pages, kRw, true, t});
    l.ranges_.push_back({RangeKind::kThreadData, block + td_in_block, 1, kRw, true, t});
  }
  l.ranges_.push_back({RangeKind::kHeap, heap_offset, config.heap_size / kPage, kRw, true, 0});

  abi::EnclaveMeta& m = l.meta_;
  memset(&m, 0, sizeof m);
  m.magic = abi::kMetaMagic;
  m.abi_version = abi::kAbiVersion;
  m.tcs_count = config.tcs_count;
  m.enclave_size = l.size_;
  m.meta_offset = meta_offset;
  m.threads_offset = threads_offset;
  m.thread_stride = stride;
  m.ssa_offset_in_block = ssa_in_block;
  m.nssa = config.ssa_frames;
  m.ssa_frame_pages = config.ssa_frame_pages;
  m.stack_offset_in_block = stack_in_block;
  m.stack_size = config.stack_size;
  m.td_offset_in_block = td_in_block;
  m.heap_offset = heap_offset;
  m.heap_size = config.heap_size;
  m.max_call_buffer = config.max_call_buffer;
  m.misc_select = config.misc_select;
  m.debug = config.debug ? 1 : 0;
  const std::vector<uint8_t> record = serialize_config(config);
  static_assert(sizeof(m.config_record) >= 128);
  m.config_record_size = static_cast<uint32_t>(std::min(record.size(), sizeof(m.config_record)));
  memcpy(m.config_record, record.data(), m.config_record_size);
  if (!manifest.empty()) {
    m.manifest_offset = manifest_offset;
    m.manifest_size = manifest.size();
  }
  l.manifest_ = std::move(manifest);
  if (elf.tls().memsz) {
    m.tls_vaddr = elf.tls().vaddr;
    m.tls_filesz = elf.tls().filesz;
    m.tls_memsz = elf.tls().memsz;
    m.tls_align = elf.tls().align;
  }
  return l;
}

uint64_t Layout::total_pages() const {
  uint64_t n = 0;
  for (const PageRange& r : ranges_) n += r.pages;
  return n;
}

uint64_t Layout::tcs_offset(uint32_t thread) const {
  return meta_.threads_offset + uint64_t{thread} * meta_.thread_stride;
}

sgx::Attributes Layout::attributes() const {
  sgx::Attributes a{};
  a.flags = sgx::kAttrMode64 | (config_.debug ? sgx::kAttrDebug : 0) | config_.attributes;
  a.xfrm = config_.xfrm;
  return a;
}

namespace {

// The ELF segment whose pages start at `offset`, or nullptr.
const ElfSegment* segment_at(const ElfImage& elf, uint64_t offset) {
  const std::vector<ElfSegment>& segs = elf.segments();
  auto it = std::lower_bound(segs.begin(), segs.end(), offset,
                             [](const ElfSegment& s, uint64_t o) { return s.page_begin() < o; });
  if (it == segs.end() || it->page_begin() != offset) return nullptr;
  return &*it;
}

// Where the ELF header's section-header fields are (Elf64_Ehdr): e_shoff
// (8 bytes) and e_shentsize, e_shnum, e_shstrndx (2 each).
constexpr uint64_t kEhdrShoff = 0x28, kEhdrShFieldsEnd = 0x40, kEhdrShentsize = 0x3a;

// Does this page hold the ELF header (a segment that maps file offset 0)?
bool holds_elf_header(const ElfSegment& s, uint64_t page_vaddr) {
  return s.file_offset == 0 && s.filesz >= kEhdrShFieldsEnd && page_vaddr <= s.vaddr &&
         s.vaddr < page_vaddr + kPage && s.vaddr + kEhdrShFieldsEnd <= page_vaddr + kPage;
}

// Fills `out` with ELF page `page_vaddr` of segment `s`: file bytes for
// [vaddr, vaddr + filesz), zero elsewhere. A loaded ELF header gets its
// section-header fields zeroed: nothing in the enclave uses them, and they
// move with debug information, which would make MRENCLAVE depend on -g.
void elf_page(const ElfImage& elf, const ElfSegment& s, uint64_t page_vaddr, uint8_t* out) {
  memset(out, 0, kPage);
  std::span<const uint8_t> file = elf.segment_bytes(s);
  const uint64_t lo = std::max(page_vaddr, s.vaddr);
  const uint64_t hi = std::min(page_vaddr + kPage, s.vaddr + file.size());
  if (lo < hi) memcpy(out + (lo - page_vaddr), file.data() + (lo - s.vaddr), hi - lo);
  if (holds_elf_header(s, page_vaddr)) {
    uint8_t* ehdr = out + (s.vaddr - page_vaddr);
    memset(ehdr + kEhdrShoff, 0, 8);
    memset(ehdr + kEhdrShentsize, 0, kEhdrShFieldsEnd - kEhdrShentsize);
  }
}

// A pointer straight into the file when the whole page is file-backed and
// needs no change.
const uint8_t* elf_page_in_place(const ElfImage& elf, const ElfSegment& s, uint64_t page_vaddr) {
  std::span<const uint8_t> file = elf.segment_bytes(s);
  if (holds_elf_header(s, page_vaddr)) return nullptr;
  if (page_vaddr >= s.vaddr && page_vaddr + kPage <= s.vaddr + file.size()) {
    return file.data() + (page_vaddr - s.vaddr);
  }
  return nullptr;
}

}  // namespace

void Layout::page_content(const PageRange& range, uint64_t index, uint8_t* out) const {
  if (index >= range.pages) {
    memset(out, 0, kPage);
    return;
  }
  switch (range.kind) {
    case RangeKind::kElf: {
      const ElfSegment* s = segment_at(elf_, range.offset);
      if (s == nullptr) {
        memset(out, 0, kPage);
      } else {
        elf_page(elf_, *s, range.offset + index * kPage, out);
      }
      return;
    }
    case RangeKind::kMeta:
      memcpy(out, &meta_, kPage);
      return;
    case RangeKind::kManifest: {
      memset(out, 0, kPage);
      const uint64_t from = index * kPage;
      if (from < manifest_.size()) {
        memcpy(out, manifest_.data() + from, std::min<uint64_t>(kPage, manifest_.size() - from));
      }
      return;
    }
    case RangeKind::kTcs: {
      sgx::Tcs tcs;
      memset(&tcs, 0, sizeof tcs);
      tcs.flags = config_.debug ? sgx::kTcsDbgOptIn : 0;
      tcs.ossa = range.offset + meta_.ssa_offset_in_block;
      tcs.cssa = 0;
      tcs.nssa = meta_.nssa;
      tcs.oentry = entry_offset_;
      tcs.aep = 0;
      tcs.ofs_base = range.offset + meta_.td_offset_in_block;
      tcs.ogs_base = tcs.ofs_base;
      tcs.fs_limit = 0xfff;
      tcs.gs_limit = 0xfff;
      memcpy(out, &tcs, kPage);
      return;
    }
    case RangeKind::kSsa:
    case RangeKind::kStack:
    case RangeKind::kExceptionStack:
    case RangeKind::kThreadData:
    case RangeKind::kHeap:
      memset(out, 0, kPage);
      return;
  }
  memset(out, 0, kPage);
}

sgx::Digest Layout::measure() const {
  sgx::MeasurementBuilder b;
  b.ecreate(config_.ssa_frame_pages, size_);
  alignas(64) uint8_t buf[kPage];
  for (const PageRange& r : ranges_) {
    const ElfSegment* seg = r.kind == RangeKind::kElf ? segment_at(elf_, r.offset) : nullptr;
    for (uint64_t i = 0; i < r.pages; ++i) {
      const uint64_t offset = r.offset + i * kPage;
      const uint8_t* page = kZeroPage;
      switch (r.kind) {
        case RangeKind::kElf:
          if (seg == nullptr || offset >= seg->vaddr + seg->filesz) break;  // .bss: zero
          page = elf_page_in_place(elf_, *seg, offset);
          if (page == nullptr) {
            elf_page(elf_, *seg, offset, buf);
            page = buf;
          }
          break;
        case RangeKind::kMeta:
        case RangeKind::kManifest:
        case RangeKind::kTcs:
          page_content(r, i, buf);
          page = buf;
          break;
        default:
          break;  // SSA, stack, thread data, heap: zero
      }
      b.add_page(offset, r.secinfo_flags, page, r.measured);
    }
  }
  return b.finish();
}

}  // namespace teemate::image
