// Tests for the forbidden-instruction scan: syscall, sysenter and int 0x80
// are found and named by function; look-alike bytes inside other
// instructions are not; the sweep resynchronises at function starts.
#include "host/image/instruction_scan.h"

#include <gtest/gtest.h>

#include "elf_builder.h"

namespace teemate::image {
namespace {

using testing::ElfBuilder;
using testing::SymSpec;

ElfImage parse(const ElfBuilder& b) {
  Result<ElfImage> r =
      ElfImage::parse(std::make_shared<const std::vector<uint8_t>>(b.build()), "t.elf");
  EXPECT_TRUE(r.ok()) << r.status().message();
  return r.ok() ? r.value() : ElfImage();
}

std::vector<ForbiddenInstruction> scan(const ElfBuilder& b) {
  Result<std::vector<ForbiddenInstruction>> r = find_forbidden_instructions(parse(b));
  EXPECT_TRUE(r.ok()) << r.status().message();
  return r.ok() ? r.value() : std::vector<ForbiddenInstruction>{};
}

TEST(InstructionScan, CleanCodePasses) {
  // push rbp; mov rbp,rsp; xor eax,eax; pop rbp; ret; ud2; int3
  ElfBuilder b = ElfBuilder::basic({0x55, 0x48, 0x89, 0xe5, 0x31, 0xc0, 0x5d, 0xc3, 0x0f, 0x0b, 0xcc});
  EXPECT_TRUE(scan(b).empty());
  EXPECT_TRUE(scan_forbidden_instructions(parse(b)).ok());
}

TEST(InstructionScan, FindsSyscallAndNamesFunction) {
  // entry: nop x4, ret (0x1000..0x1005); __lock at 0x1005: mov eax,202; syscall; ret
  std::vector<uint8_t> code = {0x90, 0x90, 0x90, 0x90, 0xc3,                    // entry
                               0xb8, 0xca, 0x00, 0x00, 0x00, 0x0f, 0x05, 0xc3};  // __lock
  ElfBuilder b = ElfBuilder::basic(code)
                     .symbol({"entry", 0x1000, 5, STT_FUNC})
                     .symbol({"__lock", 0x1005, 8, STT_FUNC});
  std::vector<ForbiddenInstruction> found = scan(b);
  ASSERT_EQ(found.size(), 1u);
  EXPECT_EQ(found[0].vaddr, 0x100au);
  EXPECT_EQ(found[0].mnemonic, "syscall");
  EXPECT_EQ(found[0].function, "__lock");
  Status st = scan_forbidden_instructions(parse(b));
  EXPECT_EQ(st.code(), Code::kSecurity);
  EXPECT_EQ(st.message(),
            "forbidden instruction 'syscall' at 0x100a in function __lock (enclave code may not make "
            "system calls)");
}

TEST(InstructionScan, FindsSysenterAndInt80ButNotOtherInterrupts) {
  std::vector<uint8_t> code = {0x0f, 0x34,  // sysenter
                               0xcd, 0x21,  // int 0x21: allowed (faults in an enclave anyway)
                               0xcd, 0x80,  // int 0x80
                               0xcc,        // int3
                               0xc3};
  std::vector<ForbiddenInstruction> found = scan(ElfBuilder::basic(code));
  ASSERT_EQ(found.size(), 2u);
  EXPECT_EQ(found[0].mnemonic, "sysenter");
  EXPECT_EQ(found[0].vaddr, 0x1000u);
  EXPECT_EQ(found[0].function, "?");  // no symbols
  EXPECT_EQ(found[1].mnemonic, "int 0x80");
  EXPECT_EQ(found[1].vaddr, 0x1004u);
}

TEST(InstructionScan, IgnoresSyscallBytesInsideOtherInstructions) {
  // mov eax, 0x050f; movabs rax, 0x80cd340f050f: the bytes 0f 05 / 0f 34 /
  // cd 80 appear only as immediates.
  std::vector<uint8_t> code = {0xb8, 0x0f, 0x05, 0x00, 0x00,                          //
                               0x48, 0xb8, 0x0f, 0x05, 0x0f, 0x34, 0xcd, 0x80, 0, 0,  //
                               0xc3};
  EXPECT_TRUE(scan(ElfBuilder::basic(code)).empty());
}

TEST(InstructionScan, ResynchronisesAtFunctionStarts) {
  // A stray 0xb8 (mov eax, imm32) before `victim` would swallow its syscall
  // in a plain linear sweep; the symbol makes the scan restart there.
  std::vector<uint8_t> code = {0xc3, 0xb8,                     // ret; junk byte
                               0x0f, 0x05, 0xc3, 0x90, 0x90};  // victim: syscall; ret; padding
  EXPECT_TRUE(scan(ElfBuilder::basic(code)).empty()) << "the plain sweep decodes mov eax, imm32";
  ElfBuilder with_symbol = ElfBuilder::basic(code).symbol({"victim", 0x1002, 3, STT_FUNC});
  std::vector<ForbiddenInstruction> found = scan(with_symbol);
  ASSERT_EQ(found.size(), 1u);
  EXPECT_EQ(found[0].vaddr, 0x1002u);
  EXPECT_EQ(found[0].function, "victim");
}

TEST(InstructionScan, SkipsUndecodableBytes) {
  // 0x06 (push es) is invalid in 64-bit mode; the sweep must step over it.
  std::vector<uint8_t> code = {0x06, 0x06, 0x0f, 0x05, 0xc3};
  std::vector<ForbiddenInstruction> found = scan(ElfBuilder::basic(code));
  ASSERT_EQ(found.size(), 1u);
  EXPECT_EQ(found[0].vaddr, 0x1002u);
}

TEST(InstructionScan, ScansOnlyExecutableSegments) {
  // syscall bytes in a data segment are data.
  ElfBuilder b;
  b.segment({0, 0, {0xc3}, PF_R | PF_X, {}}).segment({0x1000, 0, {0x0f, 0x05}, PF_R | PF_W, {}}).entry(0);
  EXPECT_TRUE(scan(b).empty());
}

TEST(InstructionScan, ListsSeveralFindings) {
  std::vector<uint8_t> code;
  for (int i = 0; i < 12; ++i) code.insert(code.end(), {0x0f, 0x05});
  code.push_back(0xc3);
  Status st = scan_forbidden_instructions(parse(ElfBuilder::basic(code).symbol({"many", 0x1000, 25, STT_FUNC})));
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.message().find("at 0x1000 in function many; forbidden instruction 'syscall' at 0x1002"),
            std::string::npos)
      << st.message();
  EXPECT_NE(st.message().find("and 2 more"), std::string::npos) << st.message();
}

}  // namespace
}  // namespace teemate::image
