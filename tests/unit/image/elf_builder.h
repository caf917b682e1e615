// Test helper: synthesises small x86-64 static-PIE ELF files byte by byte, so
// the image tests can feed the parser exactly the (good or hostile) input they
// need. Test-only; never used by production code.
#pragma once

#include <elf.h>
#include <stdint.h>
#include <string.h>

#include <algorithm>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace teemate::image::testing {

struct SegSpec {
  uint64_t vaddr = 0;
  uint64_t memsz = 0;  // 0: data.size()
  std::vector<uint8_t> data;
  uint32_t flags = PF_R;
  std::optional<uint64_t> file_offset;  // default: next free offset congruent to vaddr
};

struct SymSpec {
  std::string name;
  uint64_t value = 0;
  uint64_t size = 0;
  uint8_t type = STT_FUNC;
};

struct RelaSpec {
  uint64_t offset = 0;
  uint32_t type = R_X86_64_RELATIVE;
  int64_t addend = 0;
  uint32_t sym = 0;
};

class ElfBuilder {
 public:
  ElfBuilder& segment(SegSpec s) {
    segs_.push_back(std::move(s));
    return *this;
  }
  ElfBuilder& entry(uint64_t e) {
    entry_ = e;
    return *this;
  }
  // A non-PT_LOAD program header (PT_TLS, PT_INTERP, PT_GNU_STACK, ...).
  ElfBuilder& phdr(const Elf64_Phdr& ph) {
    extra_.push_back(ph);
    return *this;
  }
  ElfBuilder& symbol(SymSpec s) {
    syms_.push_back(std::move(s));
    return *this;
  }
  ElfBuilder& rela(RelaSpec r) {
    relas_.push_back(r);
    with_dynamic_ = true;
    return *this;
  }
  // An extra dynamic tag, written before the relocation tags.
  ElfBuilder& dyn(int64_t tag, uint64_t value) {
    dyns_.push_back({tag, value});
    with_dynamic_ = true;
    return *this;
  }
  // Emits PT_DYNAMIC even without relocations.
  ElfBuilder& dynamic() {
    with_dynamic_ = true;
    return *this;
  }

  std::vector<uint8_t> build() const {
    std::vector<SegSpec> segs = segs_;
    std::vector<uint8_t> dynseg;
    uint64_t dyn_vaddr = 0;
    if (with_dynamic_) {
      // An extra read-only segment after the others: dynamic array, then RELA.
      uint64_t end = 0;
      for (const SegSpec& s : segs) end = std::max(end, s.vaddr + memsz(s));
      dyn_vaddr = (end + 4095) & ~uint64_t{4095};
      std::vector<Elf64_Dyn> dyns;
      for (const auto& d : dyns_) dyns.push_back(make_dyn(d.first, d.second));
      const uint64_t ndyn = dyns.size() + (relas_.empty() ? 0 : 3) + 1;
      const uint64_t rela_vaddr = dyn_vaddr + ndyn * sizeof(Elf64_Dyn);
      if (!relas_.empty()) {
        dyns.push_back(make_dyn(DT_RELA, rela_vaddr));
        dyns.push_back(make_dyn(DT_RELASZ, relas_.size() * sizeof(Elf64_Rela)));
        dyns.push_back(make_dyn(DT_RELAENT, sizeof(Elf64_Rela)));
      }
      dyns.push_back(make_dyn(DT_NULL, 0));
      append(&dynseg, dyns.data(), dyns.size() * sizeof(Elf64_Dyn));
      for (const RelaSpec& r : relas_) {
        Elf64_Rela e{};
        e.r_offset = r.offset;
        e.r_info = ELF64_R_INFO(r.sym, r.type);
        e.r_addend = r.addend;
        append(&dynseg, &e, sizeof e);
      }
      SegSpec ds;
      ds.vaddr = dyn_vaddr;
      ds.data = dynseg;
      ds.flags = PF_R;
      segs.push_back(ds);
    }

    const size_t nph = segs.size() + extra_.size() + (with_dynamic_ ? 1 : 0);
    std::vector<uint8_t> out(4096, 0);  // header page; no segment maps it
    std::vector<Elf64_Phdr> phdrs;
    uint64_t dyn_offset = 0;
    for (const SegSpec& s : segs) {
      uint64_t off = s.file_offset ? *s.file_offset : next_offset(out.size(), s.vaddr);
      if (out.size() < off + s.data.size()) out.resize(off + s.data.size(), 0);
      if (!s.data.empty()) memcpy(out.data() + off, s.data.data(), s.data.size());
      Elf64_Phdr ph{};
      ph.p_type = PT_LOAD;
      ph.p_flags = s.flags;
      ph.p_offset = off;
      ph.p_vaddr = ph.p_paddr = s.vaddr;
      ph.p_filesz = s.data.size();
      ph.p_memsz = memsz(s);
      ph.p_align = 4096;
      phdrs.push_back(ph);
      if (with_dynamic_ && s.vaddr == dyn_vaddr) dyn_offset = off;
    }
    if (with_dynamic_) {
      Elf64_Phdr ph{};
      ph.p_type = PT_DYNAMIC;
      ph.p_flags = PF_R;
      ph.p_offset = dyn_offset;
      ph.p_vaddr = ph.p_paddr = dyn_vaddr;
      ph.p_filesz = ph.p_memsz = (dyns_.size() + (relas_.empty() ? 0 : 3) + 1) * sizeof(Elf64_Dyn);
      ph.p_align = 8;
      phdrs.push_back(ph);
    }
    for (const Elf64_Phdr& ph : extra_) phdrs.push_back(ph);

    // Symbols and section headers after everything else.
    uint64_t shoff = 0;
    uint16_t shnum = 0;
    if (!syms_.empty()) {
      std::vector<uint8_t> strtab(1, 0);
      std::vector<Elf64_Sym> symtab(1);  // index 0: null symbol
      for (const SymSpec& s : syms_) {
        Elf64_Sym sym{};
        sym.st_name = static_cast<uint32_t>(strtab.size());
        strtab.insert(strtab.end(), s.name.begin(), s.name.end());
        strtab.push_back(0);
        sym.st_info = ELF64_ST_INFO(STB_GLOBAL, s.type);
        sym.st_shndx = 1;  // any defined section
        sym.st_value = s.value;
        sym.st_size = s.size;
        symtab.push_back(sym);
      }
      const uint64_t symoff = align8(out.size());
      out.resize(symoff);
      append(&out, symtab.data(), symtab.size() * sizeof(Elf64_Sym));
      const uint64_t stroff = out.size();
      append(&out, strtab.data(), strtab.size());
      shoff = align8(out.size());
      out.resize(shoff);
      Elf64_Shdr sh[3]{};
      sh[1].sh_type = SHT_SYMTAB;
      sh[1].sh_offset = symoff;
      sh[1].sh_size = symtab.size() * sizeof(Elf64_Sym);
      sh[1].sh_link = 2;
      sh[1].sh_entsize = sizeof(Elf64_Sym);
      sh[2].sh_type = SHT_STRTAB;
      sh[2].sh_offset = stroff;
      sh[2].sh_size = strtab.size();
      append(&out, sh, sizeof sh);
      shnum = 3;
    }

    Elf64_Ehdr eh{};
    memcpy(eh.e_ident, ELFMAG, SELFMAG);
    eh.e_ident[EI_CLASS] = ELFCLASS64;
    eh.e_ident[EI_DATA] = ELFDATA2LSB;
    eh.e_ident[EI_VERSION] = EV_CURRENT;
    eh.e_type = ET_DYN;
    eh.e_machine = EM_X86_64;
    eh.e_version = EV_CURRENT;
    eh.e_entry = entry_;
    eh.e_phoff = sizeof(Elf64_Ehdr);
    eh.e_shoff = shoff;
    eh.e_ehsize = sizeof(Elf64_Ehdr);
    eh.e_phentsize = sizeof(Elf64_Phdr);
    eh.e_phnum = static_cast<uint16_t>(nph);
    eh.e_shentsize = sizeof(Elf64_Shdr);
    eh.e_shnum = shnum;
    memcpy(out.data(), &eh, sizeof eh);
    memcpy(out.data() + sizeof eh, phdrs.data(), phdrs.size() * sizeof(Elf64_Phdr));
    return out;
  }

  // A well-formed program: R page at 0, code (RX) at 0x1000 with the entry
  // point, data (RW) at 0x2000 with a .bss tail. `code` fills the RX segment.
  static ElfBuilder basic(std::vector<uint8_t> code = {0x90, 0x90, 0xc3}) {
    ElfBuilder b;
    std::vector<uint8_t> ro(0x100);
    for (size_t i = 0; i < ro.size(); ++i) ro[i] = static_cast<uint8_t>(i);
    std::vector<uint8_t> data(0x40, 0xab);
    b.segment({0, 0, ro, PF_R, {}})
        .segment({0x1000, 0, std::move(code), PF_R | PF_X, {}})
        .segment({0x2000, 0x1800, data, PF_R | PF_W, {}})
        .entry(0x1000);
    return b;
  }

 private:
  static uint64_t memsz(const SegSpec& s) { return s.memsz ? s.memsz : s.data.size(); }
  static uint64_t align8(uint64_t v) { return (v + 7) & ~uint64_t{7}; }
  static uint64_t next_offset(uint64_t cur, uint64_t vaddr) {
    uint64_t base = (cur + 4095) & ~uint64_t{4095};
    return base + (vaddr & 4095);
  }
  static Elf64_Dyn make_dyn(int64_t tag, uint64_t v) {
    Elf64_Dyn d{};
    d.d_tag = tag;
    d.d_un.d_val = v;
    return d;
  }
  static void append(std::vector<uint8_t>* out, const void* p, size_t n) {
    const uint8_t* b = static_cast<const uint8_t*>(p);
    out->insert(out->end(), b, b + n);
  }

  std::vector<SegSpec> segs_;
  std::vector<Elf64_Phdr> extra_;
  std::vector<SymSpec> syms_;
  std::vector<RelaSpec> relas_;
  std::vector<std::pair<int64_t, uint64_t>> dyns_;
  bool with_dynamic_ = false;
  uint64_t entry_ = 0x1000;
};

// Little-endian field patching for hostile-input tests.
inline void patch16(std::vector<uint8_t>* b, size_t off, uint16_t v) { memcpy(b->data() + off, &v, 2); }
inline void patch32(std::vector<uint8_t>* b, size_t off, uint32_t v) { memcpy(b->data() + off, &v, 4); }
inline void patch64(std::vector<uint8_t>* b, size_t off, uint64_t v) { memcpy(b->data() + off, &v, 8); }

}  // namespace teemate::image::testing
