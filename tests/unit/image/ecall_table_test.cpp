// Tests for the ECALL-table check that teemate pack runs: ids read from
// between __start_/__stop_teemate_ecalls, duplicates named, malformed
// tables refused, no table accepted.
#include "host/image/ecall_table.h"

#include <gtest/gtest.h>

#include <cstring>

#include "elf_builder.h"

namespace teemate::image {
namespace {

using testing::ElfBuilder;

std::vector<uint8_t> table(std::initializer_list<uint32_t> ids) {
  std::vector<uint8_t> out;
  for (uint32_t id : ids) {
    uint8_t entry[16] = {};
    std::memcpy(entry, &id, 4);
    out.insert(out.end(), entry, entry + 16);
  }
  return out;
}

ElfImage with_table(std::initializer_list<uint32_t> ids, uint64_t stop_adjust = 0) {
  const std::vector<uint8_t> data = table(ids);
  const uint64_t start = 0x2000, stop = start + data.size() + stop_adjust;
  ElfBuilder b;
  b.segment({0, 0, {0xc3}, PF_R | PF_X, {}})
      .segment({start, 0, data, PF_R | PF_W, {}})
      .symbol({"__start_teemate_ecalls", start, 0, STT_NOTYPE})
      .symbol({"__stop_teemate_ecalls", stop, 0, STT_NOTYPE})
      .entry(0);
  auto r = ElfImage::parse(std::make_shared<const std::vector<uint8_t>>(b.build()), "t.elf");
  EXPECT_TRUE(r.ok()) << r.status().message();
  return r.ok() ? r.value() : ElfImage();
}

TEST(EcallTable, IdsInOrder) {
  auto ids = ecall_ids(with_table({0x100, 0x11000, 0x11001}));
  ASSERT_TRUE(ids.ok()) << ids.status().message();
  EXPECT_EQ(*ids, (std::vector<uint32_t>{0x100, 0x11000, 0x11001}));
  EXPECT_TRUE(check_ecall_table(with_table({0x100, 0x101})).ok());
}

TEST(EcallTable, DuplicatesAreNamed) {
  Status st = check_ecall_table(with_table({0x100, 0x11000, 0x100, 0x11000, 0x11000}));
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.message().find("0x100 (2 times)"), std::string::npos) << st.message();
  EXPECT_NE(st.message().find("0x11000 (3 times)"), std::string::npos) << st.message();
}

TEST(EcallTable, RuntimeIdsAreRefused) {
  Status low = check_ecall_table(with_table({0x100, 0x1}));
  ASSERT_FALSE(low.ok());
  EXPECT_NE(low.message().find("reserved for the runtime: 0x1"), std::string::npos) << low.message();
  EXPECT_FALSE(check_ecall_table(with_table({0x10000})).ok());
  EXPECT_FALSE(check_ecall_table(with_table({0x10fff})).ok());
  EXPECT_TRUE(check_ecall_table(with_table({0x11000, 0xffff})).ok());
}

TEST(EcallTable, MalformedTableAndNoTable) {
  EXPECT_FALSE(check_ecall_table(with_table({0x100}, /*stop_adjust=*/8)).ok()) << "not whole entries";
  EXPECT_FALSE(check_ecall_table(with_table({0x100}, /*stop_adjust=*/0x10000)).ok()) << "beyond the segment";
  ElfBuilder b;
  b.segment({0, 0, {0xc3}, PF_R | PF_X, {}}).entry(0);
  auto none = ElfImage::parse(std::make_shared<const std::vector<uint8_t>>(b.build()), "n.elf");
  ASSERT_TRUE(none.ok());
  auto ids = ecall_ids(*none);
  ASSERT_TRUE(ids.ok());
  EXPECT_TRUE(ids->empty());
}

}  // namespace
}  // namespace teemate::image
