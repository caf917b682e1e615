// Tests for ElfImage::parse: well-formed static PIEs are accepted with the
// right segments, symbols and relocations; every kind of hostile or
// unsupported input is refused with a message naming what is wrong.
#include "host/image/elf_image.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>
#include <iterator>

#include "elf_builder.h"

namespace teemate::image {
namespace {

using testing::ElfBuilder;
using testing::RelaSpec;
using testing::SegSpec;
using testing::SymSpec;

std::shared_ptr<const std::vector<uint8_t>> share(std::vector<uint8_t> b) {
  return std::make_shared<const std::vector<uint8_t>>(std::move(b));
}

Result<ElfImage> parse(std::vector<uint8_t> b) { return ElfImage::parse(share(std::move(b)), "t.elf"); }

// Expects parse failure whose message contains `needle`.
void expect_refused(std::vector<uint8_t> b, const std::string& needle) {
  Result<ElfImage> r = parse(std::move(b));
  ASSERT_FALSE(r.ok()) << "expected refusal mentioning: " << needle;
  EXPECT_NE(r.status().message().find(needle), std::string::npos) << r.status().message();
  EXPECT_EQ(r.status().message().rfind("t.elf: ", 0), 0u) << r.status().message();
}

TEST(ElfImage, AcceptsBasicStaticPie) {
  Result<ElfImage> r = parse(ElfBuilder::basic().build());
  ASSERT_TRUE(r.ok()) << r.status().message();
  const ElfImage& e = r.value();
  ASSERT_EQ(e.segments().size(), 3u);
  EXPECT_EQ(e.segments()[0].vaddr, 0u);
  EXPECT_TRUE(e.segments()[0].readable);
  EXPECT_FALSE(e.segments()[0].writable);
  EXPECT_FALSE(e.segments()[0].executable);
  EXPECT_TRUE(e.segments()[1].executable);
  EXPECT_FALSE(e.segments()[1].writable);
  EXPECT_TRUE(e.segments()[2].writable);
  EXPECT_EQ(e.segments()[2].memsz, 0x1800u);
  EXPECT_EQ(e.segments()[2].filesz, 0x40u);
  EXPECT_EQ(e.end(), 0x3800u);
  EXPECT_EQ(e.entry(), 0x1000u);
  EXPECT_EQ(e.name(), "t.elf");
  ASSERT_EQ(e.executable_ranges().size(), 1u);
  EXPECT_EQ(e.executable_ranges()[0].begin, 0x1000u);
  EXPECT_EQ(e.executable_ranges()[0].end, 0x1003u);
  EXPECT_EQ(e.segment_bytes(e.segments()[0]).size(), 0x100u);
  EXPECT_EQ(e.segment_bytes(e.segments()[0])[5], 5);
}

TEST(ElfImage, CopiesShareTheBytes) {
  Result<ElfImage> r = parse(ElfBuilder::basic().build());
  ASSERT_TRUE(r.ok());
  ElfImage copy = r.value();
  EXPECT_EQ(copy.shared_bytes().get(), r->shared_bytes().get());
  EXPECT_EQ(&copy.segments(), &r->segments());
}

TEST(ElfImage, DefaultConstructedIsEmpty) {
  ElfImage e;
  EXPECT_TRUE(e.segments().empty());
  EXPECT_TRUE(e.bytes().empty());
  EXPECT_EQ(e.symbol_at(0), nullptr);
}

TEST(ElfImage, EveryTruncationIsRefused) {
  std::vector<uint8_t> full = ElfBuilder::basic().symbol({"f", 0x1000, 3, STT_FUNC}).build();
  ASSERT_TRUE(parse(full).ok());
  for (size_t n = 0; n < full.size(); n += (n < 256 ? 1 : 61)) {
    std::vector<uint8_t> cut(full.begin(), full.begin() + static_cast<long>(n));
    EXPECT_FALSE(parse(cut).ok()) << "prefix of " << n << " bytes accepted";
  }
  EXPECT_FALSE(parse({}).ok());
}

TEST(ElfImage, RefusesWrongMagicClassEndianMachineType) {
  std::vector<uint8_t> b = ElfBuilder::basic().build();
  auto m = b;
  m[1] = 'X';
  expect_refused(m, "not an ELF file");
  m = b;
  m[EI_CLASS] = ELFCLASS32;
  expect_refused(m, "not a 64-bit ELF");
  m = b;
  m[EI_DATA] = ELFDATA2MSB;
  expect_refused(m, "little-endian");
  m = b;
  testing::patch16(&m, offsetof(Elf64_Ehdr, e_machine), EM_AARCH64);
  expect_refused(m, "not an x86-64 ELF");
  m = b;
  testing::patch16(&m, offsetof(Elf64_Ehdr, e_type), ET_EXEC);
  expect_refused(m, "ET_EXEC");
  m = b;
  testing::patch16(&m, offsetof(Elf64_Ehdr, e_type), ET_REL);
  expect_refused(m, "static PIE");
}

TEST(ElfImage, RefusesProgramHeadersOutsideFile) {
  std::vector<uint8_t> b = ElfBuilder::basic().build();
  testing::patch64(&b, offsetof(Elf64_Ehdr, e_phoff), b.size() - 8);
  expect_refused(b, "program header table");
  b = ElfBuilder::basic().build();
  testing::patch64(&b, offsetof(Elf64_Ehdr, e_phoff), ~uint64_t{0} - 10);  // wraps
  expect_refused(b, "program header table");
  b = ElfBuilder::basic().build();
  testing::patch16(&b, offsetof(Elf64_Ehdr, e_phentsize), 32);
  expect_refused(b, "e_phentsize");
  b = ElfBuilder::basic().build();
  testing::patch16(&b, offsetof(Elf64_Ehdr, e_phnum), 0);
  expect_refused(b, "no program headers");
}

TEST(ElfImage, RefusesOverlappingSegments) {
  ElfBuilder b;
  b.segment({0, 0x2000, {1, 2, 3}, PF_R | PF_X, {}}).segment({0x1000, 0x1000, {4}, PF_R | PF_W, {}});
  expect_refused(b.build(), "overlaps the previous segment");
  // Sharing a page counts as overlap: permissions are per page.
  ElfBuilder c;
  c.segment({0, 0x1010, {1}, PF_R | PF_X, {}}).segment({0x1800, 0x10, {4}, PF_R | PF_W, {}});
  expect_refused(c.build(), "overlaps");
}

TEST(ElfImage, RefusesUnsortedSegments) {
  ElfBuilder b;
  b.segment({0, 0, {0xc3}, PF_R | PF_X, {}})
      .segment({0x5000, 0, {1}, PF_R, {}})
      .segment({0x3000, 0, {2}, PF_R | PF_W, {}})
      .entry(0);
  expect_refused(b.build(), "not sorted");
}

TEST(ElfImage, RefusesFirstSegmentAwayFromZero) {
  ElfBuilder b;
  b.segment({0x1000, 0, {0xc3}, PF_R | PF_X, {}}).entry(0x1000);
  expect_refused(b.build(), "vaddr 0");
}

TEST(ElfImage, RefusesWritableAndExecutable) {
  ElfBuilder b;
  b.segment({0, 0, {0xc3}, PF_R | PF_W | PF_X, {}}).entry(0);
  expect_refused(b.build(), "both writable and executable");
}

TEST(ElfImage, RefusesFileszAboveMemsz) {
  ElfBuilder b = ElfBuilder::basic();
  b.segment({0x5000, 0x10, std::vector<uint8_t>(0x20, 1), PF_R, {}});
  expect_refused(b.build(), "exceeds p_memsz");
}

TEST(ElfImage, RefusesOffsetNotCongruentToVaddr) {
  ElfBuilder b = ElfBuilder::basic();
  b.segment({0x5000, 0, {1, 2}, PF_R, 0x6010});
  expect_refused(b.build(), "modulo the page size");
}

TEST(ElfImage, RefusesSegmentBytesOutsideFile) {
  std::vector<uint8_t> b = ElfBuilder::basic().build();
  // Program header 2 (data): make filesz run past the end of the file.
  const size_t ph2 = sizeof(Elf64_Ehdr) + 2 * sizeof(Elf64_Phdr);
  testing::patch64(&b, ph2 + offsetof(Elf64_Phdr, p_filesz), b.size());
  testing::patch64(&b, ph2 + offsetof(Elf64_Phdr, p_memsz), b.size() + 0x1000);
  expect_refused(b, "outside the file");
}

TEST(ElfImage, RefusesSegmentBeyondEnclaveLimit) {
  ElfBuilder b = ElfBuilder::basic();
  b.segment({0x4000, 70ull << 30, {1}, PF_R | PF_W, {}});
  expect_refused(b.build(), "64 GiB");
}

TEST(ElfImage, RefusesInterpreter) {
  Elf64_Phdr ph{};
  ph.p_type = PT_INTERP;
  expect_refused(ElfBuilder::basic().phdr(ph).build(), "PT_INTERP");
}

// Thread-local storage: at most 1 KiB, a sane alignment, its bytes loaded.
TEST(ElfImage, AcceptsSmallThreadLocalStorage) {
  Elf64_Phdr ph{};
  ph.p_type = PT_TLS;
  ph.p_vaddr = 0x2000;
  ph.p_memsz = 16;
  ph.p_align = 8;
  Result<ElfImage> r = parse(ElfBuilder::basic().phdr(ph).build());
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_EQ(r->tls().memsz, 16u);
  EXPECT_EQ(r->tls().align, 8u);
  EXPECT_EQ(parse(ElfBuilder::basic().build())->tls().memsz, 0u);
}

TEST(ElfImage, RefusesLargeOrMalformedThreadLocalStorage) {
  Elf64_Phdr ph{};
  ph.p_type = PT_TLS;
  ph.p_vaddr = 0x2000;
  ph.p_memsz = 1025;
  ph.p_align = 8;
  Result<ElfImage> r = parse(ElfBuilder::basic().phdr(ph).build());
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kUnsupported);
  EXPECT_NE(r.status().message().find("thread-local storage of 1025 bytes"), std::string::npos);
  ph.p_memsz = 16;
  ph.p_align = 3;
  expect_refused(ElfBuilder::basic().phdr(ph).build(), "power of two");
  ph.p_align = 8;
  ph.p_filesz = 32;
  expect_refused(ElfBuilder::basic().phdr(ph).build(), "p_filesz 32 > p_memsz");
  ph.p_filesz = 8;
  ph.p_vaddr = 0x7fff0000;  // initial bytes nowhere in the file
  expect_refused(ElfBuilder::basic().phdr(ph).build(), "not inside a loaded segment");
  ph.p_filesz = 0;
  expect_refused(ElfBuilder::basic().phdr(ph).phdr(ph).build(), "more than one PT_TLS");
}

TEST(ElfImage, IgnoresHarmlessProgramHeaders) {
  Elf64_Phdr stack{};
  stack.p_type = PT_GNU_STACK;
  stack.p_flags = PF_R | PF_W;
  Elf64_Phdr note{};
  note.p_type = PT_NOTE;
  EXPECT_TRUE(parse(ElfBuilder::basic().phdr(stack).phdr(note).build()).ok());
}

TEST(ElfImage, RefusesEntryOutsideExecutableSegment) {
  expect_refused(ElfBuilder::basic().entry(0x2000).build(), "entry point 0x2000");
  expect_refused(ElfBuilder::basic().entry(0x100000).build(), "not inside an executable segment");
}

TEST(ElfImage, AcceptsRelativeRelocationsIntoWritableSegment) {
  Result<ElfImage> r = parse(ElfBuilder::basic()
                                 .rela({0x2000, R_X86_64_RELATIVE, 0x1000, 0})
                                 .rela({0x2ff8, R_X86_64_RELATIVE, 0x10, 0})  // in .bss
                                 .build());
  ASSERT_TRUE(r.ok()) << r.status().message();
  ASSERT_EQ(r->relocations().size(), 2u);
  EXPECT_EQ(r->relocations()[0].offset, 0x2000u);
  EXPECT_EQ(r->relocations()[0].addend, 0x1000);
  EXPECT_EQ(r->relocations()[1].offset, 0x2ff8u);
}

TEST(ElfImage, RefusesUnsupportedRelocationByName) {
  Result<ElfImage> r =
      parse(ElfBuilder::basic().rela({0x2008, R_X86_64_GLOB_DAT, 0, 1}).build());
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("unsupported relocation R_X86_64_GLOB_DAT at offset 0x2008"),
            std::string::npos)
      << r.status().message();
  expect_refused(ElfBuilder::basic().rela({0x2000, R_X86_64_64, 0, 0}).build(),
                 "unsupported relocation R_X86_64_64 at offset 0x2000");
  expect_refused(ElfBuilder::basic().rela({0x2000, R_X86_64_IRELATIVE, 0, 0}).build(),
                 "R_X86_64_IRELATIVE");
  expect_refused(ElfBuilder::basic().rela({0x2000, 200, 0, 0}).build(), "R_X86_64_200 at offset 0x2000");
}

TEST(ElfImage, RefusesRelocationIntoReadOnlySegment) {
  expect_refused(ElfBuilder::basic().rela({0x10, R_X86_64_RELATIVE, 0, 0}).build(),
                 "relocation at offset 0x10 does not target a writable segment");
  expect_refused(ElfBuilder::basic().rela({0x1000, R_X86_64_RELATIVE, 0, 0}).build(),
                 "does not target a writable segment");
  // Straddling the end of the writable segment.
  expect_refused(ElfBuilder::basic().rela({0x37fc, R_X86_64_RELATIVE, 0, 0}).build(),
                 "does not target a writable segment");
  // Outside every segment.
  expect_refused(ElfBuilder::basic().rela({0x900000, R_X86_64_RELATIVE, 0, 0}).build(),
                 "does not target a writable segment");
}

TEST(ElfImage, RefusesSharedLibrariesAndOtherRelocationKinds) {
  expect_refused(ElfBuilder::basic().dyn(DT_NEEDED, 1).build(), "DT_NEEDED");
  expect_refused(ElfBuilder::basic().dyn(DT_REL, 0x100).build(), "DT_REL");
  expect_refused(ElfBuilder::basic().dyn(DT_JMPREL, 0x100).dyn(DT_PLTRELSZ, 24).build(), "DT_JMPREL");
  // An empty PLT relocation table is harmless.
  EXPECT_TRUE(parse(ElfBuilder::basic().dyn(DT_JMPREL, 0x100).dyn(DT_PLTRELSZ, 0).build()).ok());
  EXPECT_TRUE(parse(ElfBuilder::basic().dynamic().build()).ok());
}

TEST(ElfImage, RefusesRelocationTableOutsideSegments) {
  expect_refused(ElfBuilder::basic()
                     .dyn(DT_RELA, 0x900000)
                     .dyn(DT_RELASZ, 24)
                     .dyn(DT_RELAENT, 24)
                     .build(),
                 "relocation table");
  expect_refused(ElfBuilder::basic().dyn(DT_RELA, 0).dyn(DT_RELASZ, 24).dyn(DT_RELAENT, 16).build(),
                 "DT_RELAENT");
  expect_refused(ElfBuilder::basic().dyn(DT_RELASZ, 24).dyn(DT_RELAENT, 24).build(), "DT_RELA is missing");
}

TEST(ElfImage, ReadsSymbolsAndFindsContainingFunction) {
  Result<ElfImage> r = parse(ElfBuilder::basic(std::vector<uint8_t>(0x100, 0x90))
                                 .symbol({"beta", 0x1040, 0x20, STT_FUNC})
                                 .symbol({"alpha", 0x1000, 0x40, STT_FUNC})
                                 .symbol({"label", 0x1080, 0, STT_NOTYPE})
                                 .symbol({"table", 0x2000, 0x40, STT_OBJECT})
                                 .build());
  ASSERT_TRUE(r.ok()) << r.status().message();
  ASSERT_EQ(r->symbols().size(), 4u);
  EXPECT_EQ(r->symbols()[0].name, "alpha");  // sorted by value
  ASSERT_NE(r->symbol_at(0x1000), nullptr);
  EXPECT_EQ(r->symbol_at(0x1000)->name, "alpha");
  EXPECT_EQ(r->symbol_at(0x103f)->name, "alpha");
  EXPECT_EQ(r->symbol_at(0x1040)->name, "beta");
  EXPECT_EQ(r->symbol_at(0x1090)->name, "label");  // nearest preceding zero-size label
  EXPECT_EQ(r->symbol_at(0x2010)->name, "table");
  EXPECT_EQ(r->symbol_at(0x10), nullptr);
  EXPECT_EQ(r->symbol_at(0x3000), nullptr);  // label is in another segment
}

TEST(ElfImage, RefusesSymbolTableOutsideFile) {
  std::vector<uint8_t> b = ElfBuilder::basic().symbol({"f", 0x1000, 1, STT_FUNC}).build();
  Elf64_Ehdr eh;
  memcpy(&eh, b.data(), sizeof eh);
  // Section 1 (.symtab): point it past the end.
  const size_t sh1 = eh.e_shoff + sizeof(Elf64_Shdr);
  testing::patch64(&b, sh1 + offsetof(Elf64_Shdr, sh_offset), b.size());
  expect_refused(b, "symbol table");
}

TEST(ElfImage, SurvivesUnterminatedSymbolNames) {
  std::vector<uint8_t> b = ElfBuilder::basic().symbol({"fn", 0x1000, 1, STT_FUNC}).build();
  Elf64_Ehdr eh;
  memcpy(&eh, b.data(), sizeof eh);
  // Shrink .strtab so "fn" loses its terminator.
  const size_t sh2 = eh.e_shoff + 2 * sizeof(Elf64_Shdr);
  testing::patch64(&b, sh2 + offsetof(Elf64_Shdr, sh_size), 3);
  Result<ElfImage> r = parse(b);
  ASSERT_TRUE(r.ok()) << r.status().message();
  ASSERT_EQ(r->symbols().size(), 1u);
  EXPECT_EQ(r->symbols()[0].name, "fn");
}

TEST(ElfImage, RelocationNamesAreReadable) {
  EXPECT_EQ(x86_64_relocation_name(R_X86_64_RELATIVE), "R_X86_64_RELATIVE");
  EXPECT_EQ(x86_64_relocation_name(R_X86_64_JUMP_SLOT), "R_X86_64_JUMP_SLOT");
  EXPECT_EQ(x86_64_relocation_name(R_X86_64_REX_GOTPCRELX), "R_X86_64_REX_GOTPCRELX");
  EXPECT_EQ(x86_64_relocation_name(999), "R_X86_64_999");
}

// The tiny static PIE that tests/cli builds with gcc, when present.
TEST(ElfImage, AcceptsGccStaticPie) {
  const char* dir = std::getenv("TEEMATE_BUILD_DIR");
  if (dir == nullptr) GTEST_SKIP() << "TEEMATE_BUILD_DIR not set";
  std::ifstream in(std::string(dir) + "/tests/cli/tiny_enclave.elf", std::ios::binary);
  if (!in) GTEST_SKIP() << "tiny_enclave.elf not built";
  std::vector<uint8_t> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  Result<ElfImage> r = parse(bytes);
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_GE(r->segments().size(), 2u);
  ASSERT_NE(r->symbol_at(r->entry()), nullptr);
  EXPECT_EQ(r->symbol_at(r->entry())->name, "entry");
  EXPECT_FALSE(r->relocations().empty());
}

}  // namespace
}  // namespace teemate::image
