// ElfImage::parse: validation of an untrusted enclave program (static PIE).
// Every read goes through a bounds-checked helper; no offset from the file is
// trusted before it is checked, and no arithmetic on file values may wrap.
// Never accepts something the layout, the loader or the trusted runtime's
// self-relocation cannot handle exactly.
#include "host/image/elf_image.h"

#include <elf.h>
#include <string.h>

#include <algorithm>
#include <cstdio>

#include "base/hex.h"

namespace teemate::image {

namespace {

constexpr uint64_t kPage = 4096;
// No address in an enclave image may reach this (the largest enclave).
constexpr uint64_t kMaxAddress = 64ull << 30;
// Symbol names longer than this are truncated (they only label findings).
constexpr size_t kMaxSymbolName = 1024;

using base::hex;

// [offset, offset + size) lies inside a buffer of `total` bytes.
bool in_bounds(uint64_t offset, uint64_t size, uint64_t total) {
  return offset <= total && size <= total - offset;
}

template <typename T>
T read_at(std::span<const uint8_t> bytes, uint64_t offset) {
  T value;
  memcpy(&value, bytes.data() + offset, sizeof(T));  // caller checked bounds
  return value;
}

std::string segment_label(size_t index, const Elf64_Phdr& ph) {
  return "PT_LOAD segment " + std::to_string(index) + " (vaddr " + hex(ph.p_vaddr) + ")";
}

}  // namespace

struct ElfImage::Data {
  std::string name;
  ElfTls tls;
  std::vector<ElfSegment> segments;
  std::vector<ElfSymbol> symbols;
  std::vector<ElfRelocation> relocations;
  uint64_t entry = 0;
  uint64_t end = 0;
};

std::string x86_64_relocation_name(uint32_t type) {
  static const char* const kNames[] = {
      "NONE",      "64",        "PC32",            "GOT32",           "PLT32",
      "COPY",      "GLOB_DAT",  "JUMP_SLOT",       "RELATIVE",        "GOTPCREL",
      "32",        "32S",       "16",              "PC16",            "8",
      "PC8",       "DTPMOD64",  "DTPOFF64",        "TPOFF64",         "TLSGD",
      "TLSLD",     "DTPOFF32",  "GOTTPOFF",        "TPOFF32",         "PC64",
      "GOTOFF64",  "GOTPC32",   "GOT64",           "GOTPCREL64",      "GOTPC64",
      "GOTPLT64",  "PLTOFF64",  "SIZE32",          "SIZE64",          "GOTPC32_TLSDESC",
      "TLSDESC_CALL", "TLSDESC", "IRELATIVE",      "RELATIVE64",      "39",
      "40",        "GOTPCRELX", "REX_GOTPCRELX"};
  if (type < sizeof(kNames) / sizeof(kNames[0])) return std::string("R_X86_64_") + kNames[type];
  return "R_X86_64_" + std::to_string(type);
}

namespace {

struct Parsed {
  ElfTls tls;
  bool has_tls = false;
  std::vector<ElfSegment> segments;
  std::vector<ElfSymbol> symbols;
  std::vector<ElfRelocation> relocations;
  uint64_t entry = 0;
  uint64_t end = 0;
};

Status check_header(std::span<const uint8_t> bytes, Elf64_Ehdr* out) {
  if (bytes.size() < EI_NIDENT || memcmp(bytes.data(), ELFMAG, SELFMAG) != 0) {
    return corrupt("not an ELF file (bad magic)");
  }
  if (bytes[EI_CLASS] != ELFCLASS64) return unsupported("not a 64-bit ELF (EI_CLASS " +
                                                        std::to_string(bytes[EI_CLASS]) + ")");
  if (bytes[EI_DATA] != ELFDATA2LSB) return unsupported("not a little-endian ELF");
  if (bytes[EI_VERSION] != EV_CURRENT) return corrupt("unknown ELF version in e_ident");
  if (bytes.size() < sizeof(Elf64_Ehdr)) {
    return corrupt("truncated: " + std::to_string(bytes.size()) +
                   " bytes is shorter than the ELF header (64 bytes)");
  }
  Elf64_Ehdr eh = read_at<Elf64_Ehdr>(bytes, 0);
  if (eh.e_machine != EM_X86_64) {
    return unsupported("not an x86-64 ELF (e_machine " + std::to_string(eh.e_machine) + ")");
  }
  if (eh.e_type != ET_DYN) {
    return unsupported(std::string("e_type ") + (eh.e_type == ET_EXEC ? "ET_EXEC" : std::to_string(eh.e_type)) +
                       ": enclave programs must be static PIEs (ET_DYN, link with -static-pie)");
  }
  if (eh.e_version != EV_CURRENT) return corrupt("unknown ELF version in e_version");
  if (eh.e_phnum == 0) return corrupt("no program headers");
  if (eh.e_phnum == PN_XNUM) return unsupported("extended program header numbering (PN_XNUM)");
  if (eh.e_phentsize != sizeof(Elf64_Phdr)) {
    return corrupt("e_phentsize " + std::to_string(eh.e_phentsize) + " is not " +
                   std::to_string(sizeof(Elf64_Phdr)));
  }
  if (!in_bounds(eh.e_phoff, uint64_t{eh.e_phnum} * sizeof(Elf64_Phdr), bytes.size())) {
    return corrupt("program header table (offset " + hex(eh.e_phoff) + ", " +
                   std::to_string(eh.e_phnum) + " entries) lies outside the file (" +
                   std::to_string(bytes.size()) + " bytes)");
  }
  *out = eh;
  return Status::ok_status();
}

Status check_load(size_t index, const Elf64_Phdr& ph, uint64_t file_size, const ElfSegment* prev,
                  ElfSegment* out) {
  const std::string label = segment_label(index, ph);
  if (ph.p_memsz == 0) return corrupt(label + " is empty (p_memsz 0)");
  if (ph.p_filesz > ph.p_memsz) {
    return corrupt(label + ": p_filesz " + hex(ph.p_filesz) + " exceeds p_memsz " + hex(ph.p_memsz));
  }
  if (ph.p_vaddr >= kMaxAddress || ph.p_memsz > kMaxAddress - ph.p_vaddr) {
    return resource_error(label + ": ends beyond the 64 GiB enclave limit");
  }
  if (ph.p_offset % kPage != ph.p_vaddr % kPage) {
    return corrupt(label + ": p_offset " + hex(ph.p_offset) + " and p_vaddr differ modulo the page size");
  }
  if (!in_bounds(ph.p_offset, ph.p_filesz, file_size)) {
    return corrupt(label + ": file range [" + hex(ph.p_offset) + ", +" + hex(ph.p_filesz) +
                   ") lies outside the file (" + std::to_string(file_size) + " bytes)");
  }
  if ((ph.p_flags & PF_W) && (ph.p_flags & PF_X)) {
    return security_error(label + " is both writable and executable (W+X is not allowed in enclaves)");
  }
  ElfSegment seg;
  seg.vaddr = ph.p_vaddr;
  seg.memsz = ph.p_memsz;
  seg.filesz = ph.p_filesz;
  seg.file_offset = ph.p_offset;
  seg.readable = true;  // enclave pages are always readable
  seg.writable = ph.p_flags & PF_W;
  seg.executable = ph.p_flags & PF_X;
  if (prev == nullptr) {
    if (seg.vaddr != 0) {
      return unsupported(label + ": the first PT_LOAD must be at vaddr 0 (link as a PIE at address 0)");
    }
  } else {
    if (seg.vaddr < prev->vaddr) {
      return corrupt(label + ": PT_LOAD segments are not sorted by vaddr");
    }
    if (seg.page_begin() < prev->page_end()) {
      return corrupt(label + " overlaps the previous segment (pages [" + hex(prev->page_begin()) +
                     ", " + hex(prev->page_end()) + "))");
    }
  }
  *out = seg;
  return Status::ok_status();
}

// Maps [vaddr, vaddr + size) to a file offset if it lies in one segment's
// file-backed bytes.
bool vaddr_to_file(const std::vector<ElfSegment>& segs, uint64_t vaddr, uint64_t size,
                   uint64_t* offset) {
  for (const ElfSegment& s : segs) {
    if (vaddr >= s.vaddr && vaddr - s.vaddr <= s.filesz && size <= s.filesz - (vaddr - s.vaddr)) {
      *offset = s.file_offset + (vaddr - s.vaddr);
      return true;
    }
  }
  return false;
}

bool in_writable_segment(const std::vector<ElfSegment>& segs, uint64_t vaddr, uint64_t size) {
  for (const ElfSegment& s : segs) {
    if (s.writable && vaddr >= s.vaddr && vaddr - s.vaddr <= s.memsz &&
        size <= s.memsz - (vaddr - s.vaddr)) {
      return true;
    }
  }
  return false;
}

Status parse_dynamic(std::span<const uint8_t> bytes, const Elf64_Phdr& dyn, Parsed* p) {
  if (!in_bounds(dyn.p_offset, dyn.p_filesz, bytes.size())) {
    return corrupt("PT_DYNAMIC [" + hex(dyn.p_offset) + ", +" + hex(dyn.p_filesz) +
                   ") lies outside the file");
  }
  uint64_t rela = 0, relasz = 0, relaent = 0, pltrelsz = 0;
  bool has_rela = false, has_relaent = false, has_jmprel = false;
  const uint64_t count = dyn.p_filesz / sizeof(Elf64_Dyn);
  for (uint64_t i = 0; i < count; ++i) {
    Elf64_Dyn d = read_at<Elf64_Dyn>(bytes, dyn.p_offset + i * sizeof(Elf64_Dyn));
    if (d.d_tag == DT_NULL) break;
    switch (d.d_tag) {
      case DT_NEEDED:
        return unsupported("the program needs a shared library (DT_NEEDED); enclave programs must be "
                           "linked statically (-static-pie)");
      case DT_REL:
      case DT_RELSZ:
        if (d.d_tag == DT_REL || d.d_un.d_val != 0) {
          return unsupported("DT_REL relocations are not supported (x86-64 enclave programs use DT_RELA)");
        }
        break;
      case DT_RELA: rela = d.d_un.d_ptr; has_rela = true; break;
      case DT_RELASZ: relasz = d.d_un.d_val; break;
      case DT_RELAENT: relaent = d.d_un.d_val; has_relaent = true; break;
      case DT_JMPREL: has_jmprel = true; break;
      case DT_PLTRELSZ: pltrelsz = d.d_un.d_val; break;
      case 36:  // DT_RELR
        return unsupported("DT_RELR packed relocations are not supported (link without "
                           "-z pack-relative-relocs)");
      default: break;
    }
  }
  if (has_jmprel && pltrelsz != 0) {
    return unsupported("PLT relocations (DT_JMPREL, " + std::to_string(pltrelsz) +
                       " bytes) are not supported; link statically with -static-pie");
  }
  if (relasz == 0) return Status::ok_status();
  if (!has_rela) return corrupt("DT_RELASZ is " + std::to_string(relasz) + " but DT_RELA is missing");
  if (!has_relaent || relaent != sizeof(Elf64_Rela)) {
    return corrupt("DT_RELAENT must be " + std::to_string(sizeof(Elf64_Rela)));
  }
  if (relasz % sizeof(Elf64_Rela) != 0) {
    return corrupt("DT_RELASZ " + std::to_string(relasz) + " is not a multiple of DT_RELAENT");
  }
  uint64_t table = 0;
  if (!vaddr_to_file(p->segments, rela, relasz, &table)) {
    return corrupt("relocation table (DT_RELA " + hex(rela) + ", " + std::to_string(relasz) +
                   " bytes) is not inside the file bytes of a PT_LOAD segment");
  }
  const uint64_t n = relasz / sizeof(Elf64_Rela);
  p->relocations.reserve(n);
  for (uint64_t i = 0; i < n; ++i) {
    Elf64_Rela r = read_at<Elf64_Rela>(bytes, table + i * sizeof(Elf64_Rela));
    const uint32_t type = ELF64_R_TYPE(r.r_info);
    if (type != R_X86_64_RELATIVE) {
      return unsupported("unsupported relocation " + x86_64_relocation_name(type) + " at offset " +
                         hex(r.r_offset) + " (only R_X86_64_RELATIVE is supported)");
    }
    if (ELF64_R_SYM(r.r_info) != 0) {
      return corrupt("R_X86_64_RELATIVE at offset " + hex(r.r_offset) + " names a symbol");
    }
    if (!in_writable_segment(p->segments, r.r_offset, 8)) {
      return security_error("relocation at offset " + hex(r.r_offset) +
                            " does not target a writable segment");
    }
    p->relocations.push_back({r.r_offset, r.r_addend});
  }
  return Status::ok_status();
}

Status parse_symbols(std::span<const uint8_t> bytes, const Elf64_Ehdr& eh, Parsed* p) {
  if (eh.e_shoff == 0 || eh.e_shnum == 0) return Status::ok_status();  // no sections: no names
  if (eh.e_shentsize != sizeof(Elf64_Shdr)) {
    return corrupt("e_shentsize " + std::to_string(eh.e_shentsize) + " is not " +
                   std::to_string(sizeof(Elf64_Shdr)));
  }
  if (!in_bounds(eh.e_shoff, uint64_t{eh.e_shnum} * sizeof(Elf64_Shdr), bytes.size())) {
    return corrupt("section header table (offset " + hex(eh.e_shoff) + ", " +
                   std::to_string(eh.e_shnum) + " entries) lies outside the file");
  }
  auto shdr = [&](uint64_t i) {
    return read_at<Elf64_Shdr>(bytes, eh.e_shoff + i * sizeof(Elf64_Shdr));
  };
  int64_t symtab = -1, dynsym = -1;
  for (uint64_t i = 0; i < eh.e_shnum; ++i) {
    Elf64_Shdr s = shdr(i);
    if (s.sh_type == SHT_SYMTAB && symtab < 0) symtab = static_cast<int64_t>(i);
    if (s.sh_type == SHT_DYNSYM && dynsym < 0) dynsym = static_cast<int64_t>(i);
  }
  const int64_t chosen = symtab >= 0 ? symtab : dynsym;
  if (chosen < 0) return Status::ok_status();
  Elf64_Shdr st = shdr(static_cast<uint64_t>(chosen));
  const std::string label = "symbol table (section " + std::to_string(chosen) + ")";
  if (st.sh_entsize != sizeof(Elf64_Sym)) return corrupt(label + ": sh_entsize is not 24");
  if (!in_bounds(st.sh_offset, st.sh_size, bytes.size())) return corrupt(label + " lies outside the file");
  if (st.sh_link >= eh.e_shnum) return corrupt(label + ": sh_link names no section");
  Elf64_Shdr strs = shdr(st.sh_link);
  if (strs.sh_type != SHT_STRTAB) return corrupt(label + ": its string table is not SHT_STRTAB");
  if (!in_bounds(strs.sh_offset, strs.sh_size, bytes.size())) {
    return corrupt(label + ": its string table lies outside the file");
  }
  const char* strtab = reinterpret_cast<const char*>(bytes.data() + strs.sh_offset);
  const uint64_t n = st.sh_size / sizeof(Elf64_Sym);
  for (uint64_t i = 1; i < n; ++i) {
    Elf64_Sym sym = read_at<Elf64_Sym>(bytes, st.sh_offset + i * sizeof(Elf64_Sym));
    const uint8_t type = ELF64_ST_TYPE(sym.st_info);
    if (type != STT_FUNC && type != STT_OBJECT && type != STT_NOTYPE) continue;
    if (sym.st_shndx == SHN_UNDEF || sym.st_shndx == SHN_ABS) continue;
    if (sym.st_name == 0 || sym.st_name >= strs.sh_size) continue;
    const size_t max_len = std::min<uint64_t>(strs.sh_size - sym.st_name, kMaxSymbolName);
    const char* name = strtab + sym.st_name;
    ElfSymbol out;
    out.name.assign(name, strnlen(name, max_len));
    if (out.name.empty()) continue;
    out.value = sym.st_value;
    out.size = sym.st_size;
    out.type = type;
    p->symbols.push_back(std::move(out));
  }
  std::stable_sort(p->symbols.begin(), p->symbols.end(),
                   [](const ElfSymbol& a, const ElfSymbol& b) { return a.value < b.value; });
  return Status::ok_status();
}

Status parse_all(std::span<const uint8_t> bytes, Parsed* p) {
  Elf64_Ehdr eh;
  TM_RETURN_IF_ERROR(check_header(bytes, &eh));
  const Elf64_Phdr* dynamic = nullptr;
  Elf64_Phdr dyn_copy;
  for (uint64_t i = 0; i < eh.e_phnum; ++i) {
    Elf64_Phdr ph = read_at<Elf64_Phdr>(bytes, eh.e_phoff + i * sizeof(Elf64_Phdr));
    switch (ph.p_type) {
      case PT_LOAD: {
        ElfSegment seg;
        TM_RETURN_IF_ERROR(check_load(p->segments.size(), ph, bytes.size(),
                                      p->segments.empty() ? nullptr : &p->segments.back(), &seg));
        p->segments.push_back(seg);
        break;
      }
      case PT_INTERP:
        return unsupported("the program requests an interpreter (PT_INTERP); enclave programs must be "
                           "static PIEs (-static-pie)");
      case PT_TLS:
        if (p->has_tls) return corrupt("more than one PT_TLS");
        p->has_tls = true;
        p->tls = ElfTls{ph.p_vaddr, ph.p_filesz, ph.p_memsz, ph.p_align ? ph.p_align : 1};
        break;
      case PT_DYNAMIC:
        if (dynamic != nullptr) return corrupt("more than one PT_DYNAMIC");
        dyn_copy = ph;
        dynamic = &dyn_copy;
        break;
      default:
        break;  // PT_NOTE, PT_GNU_STACK, PT_GNU_EH_FRAME, PT_PHDR, ...: nothing to load
    }
  }
  if (p->segments.empty()) return corrupt("no PT_LOAD segments");
  for (const ElfSegment& s : p->segments) p->end = std::max(p->end, s.vaddr + s.memsz);

  p->entry = eh.e_entry;
  bool entry_ok = false;
  for (const ElfSegment& s : p->segments) {
    if (s.executable && eh.e_entry >= s.vaddr && eh.e_entry - s.vaddr < s.memsz) entry_ok = true;
  }
  if (!entry_ok) return corrupt("entry point " + hex(eh.e_entry) + " is not inside an executable segment");

  if (p->has_tls) {
    const ElfTls& t = p->tls;
    if (t.memsz > kMaxTlsBytes) {
      return unsupported("thread-local storage of " + std::to_string(t.memsz) + " bytes (PT_TLS p_memsz); enclaves "
                         "allow at most " + std::to_string(kMaxTlsBytes) + " (keep large per-thread data on the "
                         "heap, reached through one thread_local pointer)");
    }
    if (t.filesz > t.memsz || (t.align & (t.align - 1)) || t.align > 64) {
      return corrupt("PT_TLS: p_filesz " + std::to_string(t.filesz) + " > p_memsz, or p_align " +
                     std::to_string(t.align) + " is not a power of two up to 64");
    }
    bool inside = t.filesz == 0;
    for (const ElfSegment& s : p->segments) {
      if (t.vaddr >= s.vaddr && t.vaddr - s.vaddr <= s.filesz && t.filesz <= s.filesz - (t.vaddr - s.vaddr)) {
        inside = true;
      }
    }
    if (!inside) return corrupt("PT_TLS: its initial bytes are not inside a loaded segment's file bytes");
    if (t.memsz == 0) p->tls = ElfTls{};
  }
  if (dynamic != nullptr) TM_RETURN_IF_ERROR(parse_dynamic(bytes, *dynamic, p));
  TM_RETURN_IF_ERROR(parse_symbols(bytes, eh, p));
  return Status::ok_status();
}

}  // namespace

Result<ElfImage> ElfImage::parse(std::shared_ptr<const std::vector<uint8_t>> bytes,
                                 const std::string& name) {
  if (!bytes) return invalid_argument(name + ": no ELF bytes");
  Parsed p;
  Status st = parse_all(std::span<const uint8_t>(bytes->data(), bytes->size()), &p);
  if (!st.ok()) return st.with_context(name);
  auto data = std::make_shared<Data>();
  data->name = name;
  data->tls = p.tls;
  data->segments = std::move(p.segments);
  data->symbols = std::move(p.symbols);
  data->relocations = std::move(p.relocations);
  data->entry = p.entry;
  data->end = p.end;
  ElfImage img;
  img.bytes_ = std::move(bytes);
  img.data_ = std::move(data);
  return img;
}

namespace {
template <typename T>
const T& empty_value() {
  static const T kEmpty{};
  return kEmpty;
}
}  // namespace

const std::string& ElfImage::name() const {
  return data_ ? data_->name : empty_value<std::string>();
}
const std::vector<ElfSegment>& ElfImage::segments() const {
  return data_ ? data_->segments : empty_value<std::vector<ElfSegment>>();
}
uint64_t ElfImage::end() const { return data_ ? data_->end : 0; }
uint64_t ElfImage::entry() const { return data_ ? data_->entry : 0; }
const ElfTls& ElfImage::tls() const {
  static const ElfTls kNone;
  return data_ ? data_->tls : kNone;
}
std::span<const uint8_t> ElfImage::bytes() const {
  if (!bytes_) return {};
  return std::span<const uint8_t>(bytes_->data(), bytes_->size());
}
std::span<const uint8_t> ElfImage::segment_bytes(const ElfSegment& segment) const {
  // Segments come from parse(), which checked the range; re-check anyway so a
  // caller-made ElfSegment can never read out of bounds.
  if (!bytes_ || !in_bounds(segment.file_offset, segment.filesz, bytes_->size())) return {};
  return std::span<const uint8_t>(bytes_->data() + segment.file_offset, segment.filesz);
}
const std::vector<ElfSymbol>& ElfImage::symbols() const {
  return data_ ? data_->symbols : empty_value<std::vector<ElfSymbol>>();
}
const std::vector<ElfRelocation>& ElfImage::relocations() const {
  return data_ ? data_->relocations : empty_value<std::vector<ElfRelocation>>();
}

const ElfSymbol* ElfImage::symbol_at(uint64_t vaddr) const {
  const std::vector<ElfSymbol>& syms = symbols();
  // First symbol with value > vaddr; candidates are before it.
  auto it = std::upper_bound(syms.begin(), syms.end(), vaddr,
                             [](uint64_t v, const ElfSymbol& s) { return v < s.value; });
  const ElfSymbol* zero_size = nullptr;
  // Functions do not nest, so the container is close by; the bound keeps a
  // hostile symbol table from making every lookup linear.
  int budget = 4096;
  for (auto i = it; i != syms.begin() && budget-- > 0;) {
    --i;
    if (i->size != 0 && vaddr - i->value < i->size) return &*i;
    if (i->size == 0 && zero_size == nullptr) zero_size = &*i;
  }
  if (zero_size == nullptr) return nullptr;
  // A zero-size label only names addresses in its own segment.
  for (const ElfSegment& s : segments()) {
    const bool has_label = zero_size->value >= s.vaddr && zero_size->value - s.vaddr < s.memsz;
    const bool has_addr = vaddr >= s.vaddr && vaddr - s.vaddr < s.memsz;
    if (has_label && has_addr) return zero_size;
  }
  return nullptr;
}

std::vector<AddressRange> ElfImage::executable_ranges() const {
  std::vector<AddressRange> out;
  for (const ElfSegment& s : segments()) {
    if (s.executable) out.push_back({s.vaddr, s.vaddr + s.memsz});
  }
  return out;
}

}  // namespace teemate::image
