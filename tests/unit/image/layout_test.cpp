// Tests for Layout: offsets, stride and size follow abi::EnclaveMeta exactly,
// guard pages are never added, TCS and metadata pages hold what the trusted
// runtime expects, and MRENCLAVE is deterministic and sensitive to every
// measured input.
#include "host/image/layout.h"

#include <gtest/gtest.h>
#include <string.h>

#include <chrono>
#include <set>

#include "elf_builder.h"

namespace teemate::image {
namespace {

using testing::ElfBuilder;

constexpr uint64_t kPage = 4096;

ElfImage make_elf(std::vector<uint8_t> bytes) {
  Result<ElfImage> r = ElfImage::parse(std::make_shared<const std::vector<uint8_t>>(std::move(bytes)), "t.elf");
  EXPECT_TRUE(r.ok()) << r.status().message();
  return r.ok() ? r.value() : ElfImage();
}

ElfImage basic_elf() { return make_elf(ElfBuilder::basic().build()); }

Layout compute(const ElfImage& elf, const EnclaveConfig& c) {
  Result<Layout> r = Layout::compute(elf, c);
  EXPECT_TRUE(r.ok()) << r.status().message();
  return r.ok() ? r.value() : Layout();
}

TEST(Layout, OffsetsStrideAndSize) {
  EnclaveConfig c;
  c.tcs_count = 3;
  c.ssa_frames = 2;
  c.ssa_frame_pages = 2;
  c.stack_size = 16 * kPage;
  c.heap_size = 100 * kPage;
  Layout l = compute(basic_elf(), c);
  const abi::EnclaveMeta& m = l.meta();
  // basic ELF ends at 0x3800.
  EXPECT_EQ(m.meta_offset, 0x4000u);
  EXPECT_EQ(m.threads_offset, 0x5000u);
  const uint64_t ssa_pages = 2 * 2;
  EXPECT_EQ(m.thread_stride, (1 + ssa_pages + 1 + 16 + 1 + 2 + 1) * kPage);
  EXPECT_EQ(m.ssa_offset_in_block, kPage);
  EXPECT_EQ(m.stack_offset_in_block, (1 + ssa_pages + 1) * kPage);
  EXPECT_EQ(m.td_offset_in_block, (1 + ssa_pages + 1 + 16 + 1 + 2) * kPage);
  EXPECT_EQ(m.heap_offset, m.threads_offset + 3 * m.thread_stride + kPage);
  EXPECT_EQ(m.heap_size, 100 * kPage);
  for (uint32_t t = 0; t < 3; ++t) EXPECT_EQ(l.tcs_offset(t), m.threads_offset + t * m.thread_stride);

  const uint64_t heap_end = m.heap_offset + m.heap_size;
  EXPECT_EQ(l.size() & (l.size() - 1), 0u) << "size is a power of two";
  EXPECT_GE(l.size(), heap_end);
  EXPECT_LT(l.size() / 2, heap_end);
  EXPECT_EQ(m.enclave_size, l.size());
  EXPECT_EQ(l.ssa_frame_pages(), 2u);
  EXPECT_EQ(l.entry_offset(), 0x1000u);
}

TEST(Layout, RangesInEaddOrder) {
  EnclaveConfig c;
  c.tcs_count = 2;
  Layout l = compute(basic_elf(), c);
  const std::vector<PageRange>& r = l.ranges();
  ASSERT_EQ(r.size(), 3u + 1 + 2 * 5 + 1);
  const uint64_t reg = sgx::secinfo_page_type(sgx::kPtReg);
  EXPECT_EQ(r[0].kind, RangeKind::kElf);
  EXPECT_EQ(r[0].secinfo_flags, reg | sgx::kSecinfoR);
  EXPECT_EQ(r[1].secinfo_flags, reg | sgx::kSecinfoR | sgx::kSecinfoX);
  EXPECT_EQ(r[2].secinfo_flags, reg | sgx::kSecinfoR | sgx::kSecinfoW);
  EXPECT_EQ(r[2].offset, 0x2000u);
  EXPECT_EQ(r[2].pages, 2u);  // 0x2000 + 0x1800 rounds up to 0x4000
  EXPECT_EQ(r[3].kind, RangeKind::kMeta);
  EXPECT_EQ(r[3].secinfo_flags, reg | sgx::kSecinfoR);
  const RangeKind per_thread[] = {RangeKind::kTcs, RangeKind::kSsa, RangeKind::kStack,
                                  RangeKind::kExceptionStack, RangeKind::kThreadData};
  for (uint32_t t = 0; t < 2; ++t) {
    for (int k = 0; k < 5; ++k) {
      const PageRange& pr = r[4 + t * 5 + k];
      EXPECT_EQ(pr.kind, per_thread[k]);
      EXPECT_EQ(pr.thread, t);
    }
    EXPECT_EQ(r[4 + t * 5].secinfo_flags, sgx::secinfo_page_type(sgx::kPtTcs));
    EXPECT_EQ(r[4 + t * 5].offset, l.tcs_offset(t));
  }
  EXPECT_EQ(r.back().kind, RangeKind::kHeap);
  uint64_t total = 0;
  for (const PageRange& pr : r) {
    EXPECT_TRUE(pr.measured);
    EXPECT_EQ(pr.offset % kPage, 0u);
    if (pr.kind != RangeKind::kElf && pr.kind != RangeKind::kMeta && pr.kind != RangeKind::kTcs) {
      EXPECT_EQ(pr.secinfo_flags, reg | sgx::kSecinfoR | sgx::kSecinfoW);
    }
    total += pr.pages;
  }
  EXPECT_EQ(l.total_pages(), total);
}

TEST(Layout, GuardPagesAndGapsAreNotAdded) {
  EnclaveConfig c;
  c.tcs_count = 4;
  // Segments with a gap between them.
  ElfBuilder b;
  b.segment({0, 0, {1}, PF_R, {}}).segment({0x3000, 0, {0xc3}, PF_R | PF_X, {}}).entry(0x3000);
  Layout l = compute(make_elf(b.build()), c);
  std::set<uint64_t> added;
  for (const PageRange& r : l.ranges()) {
    for (uint64_t i = 0; i < r.pages; ++i) {
      EXPECT_TRUE(added.insert(r.offset + i * kPage).second) << "page added twice";
    }
  }
  EXPECT_FALSE(added.count(0x1000));
  EXPECT_FALSE(added.count(0x2000));
  const abi::EnclaveMeta& m = l.meta();
  const uint64_t ssa_pages = uint64_t{m.nssa} * m.ssa_frame_pages;
  for (uint32_t t = 0; t < 4; ++t) {
    const uint64_t block = l.tcs_offset(t);
    EXPECT_FALSE(added.count(block + (1 + ssa_pages) * kPage)) << "guard below the stack, thread " << t;
    EXPECT_FALSE(added.count(block + m.stack_offset_in_block + m.stack_size)) << "guard above the stack";
    // The exception stack sits between that guard page and the thread data.
    EXPECT_EQ(block + m.stack_offset_in_block + m.stack_size + 3 * kPage, block + m.td_offset_in_block);
    EXPECT_TRUE(added.count(block + m.td_offset_in_block - kPage)) << "exception stack";
    EXPECT_TRUE(added.count(block + m.td_offset_in_block - 2 * kPage)) << "exception stack";
  }
  EXPECT_FALSE(added.count(m.heap_offset - kPage));
  EXPECT_TRUE(added.count(m.heap_offset));
  EXPECT_LE(*added.rbegin() + kPage, l.size());
}

TEST(Layout, TcsContents) {
  EnclaveConfig c;
  c.tcs_count = 2;
  c.ssa_frames = 3;
  c.debug = true;
  Layout l = compute(basic_elf(), c);
  const PageRange& tcs1 = l.ranges()[4 + 5];
  ASSERT_EQ(tcs1.kind, RangeKind::kTcs);
  alignas(4096) uint8_t page[kPage];
  l.page_content(tcs1, 0, page);
  sgx::Tcs tcs;
  memcpy(&tcs, page, sizeof tcs);
  const uint64_t block = l.tcs_offset(1);
  EXPECT_EQ(tcs.state, 0u);
  EXPECT_EQ(tcs.flags, sgx::kTcsDbgOptIn);
  EXPECT_EQ(tcs.ossa, block + kPage);
  EXPECT_EQ(tcs.cssa, 0u);
  EXPECT_EQ(tcs.nssa, 3u);
  EXPECT_EQ(tcs.oentry, 0x1000u);
  EXPECT_EQ(tcs.aep, 0u);
  EXPECT_EQ(tcs.ofs_base, block + l.meta().td_offset_in_block);
  EXPECT_EQ(tcs.ogs_base, tcs.ofs_base);
  EXPECT_EQ(tcs.fs_limit, 0xfffu);
  EXPECT_EQ(tcs.gs_limit, 0xfffu);
  for (size_t i = 72; i < kPage; ++i) ASSERT_EQ(page[i], 0) << i;

  c.debug = false;
  Layout nd = compute(basic_elf(), c);
  nd.page_content(nd.ranges()[4], 0, page);
  memcpy(&tcs, page, sizeof tcs);
  EXPECT_EQ(tcs.flags, 0u);
}

TEST(Layout, MetaContents) {
  EnclaveConfig c;
  c.tcs_count = 5;
  c.ssa_frames = 4;
  c.ssa_frame_pages = 2;
  c.stack_size = 32 * kPage;
  c.heap_size = 64 * kPage;
  c.max_call_buffer = 1 << 20;
  c.misc_select = 1;
  c.debug = true;
  Layout l = compute(basic_elf(), c);
  alignas(4096) uint8_t page[kPage];
  l.page_content(l.ranges()[3], 0, page);
  abi::EnclaveMeta m;
  memcpy(&m, page, sizeof m);
  EXPECT_EQ(m.magic, abi::kMetaMagic);
  EXPECT_EQ(m.abi_version, abi::kAbiVersion);
  EXPECT_EQ(m.tcs_count, 5u);
  EXPECT_EQ(m.enclave_size, l.size());
  EXPECT_EQ(m.meta_offset, l.ranges()[3].offset);
  EXPECT_EQ(m.threads_offset, m.meta_offset + kPage);
  EXPECT_EQ(m.thread_stride, (1 + 8 + 1 + 32 + 1 + 2 + 1) * kPage);
  EXPECT_EQ(m.ssa_offset_in_block, kPage);
  EXPECT_EQ(m.nssa, 4u);
  EXPECT_EQ(m.ssa_frame_pages, 2u);
  EXPECT_EQ(m.stack_size, 32 * kPage);
  EXPECT_EQ(m.heap_size, 64 * kPage);
  EXPECT_EQ(m.heap_offset, l.ranges().back().offset);
  EXPECT_EQ(m.max_call_buffer, 1u << 20);
  EXPECT_EQ(m.misc_select, 1u);
  EXPECT_EQ(m.debug, 1u);
  for (uint8_t b : m.reserved) ASSERT_EQ(b, 0);
  EXPECT_EQ(memcmp(&m, &l.meta(), sizeof m), 0);
}

TEST(Layout, ElfPageContents) {
  // Data segment at a non-page-aligned address, as ld places .data.
  std::vector<uint8_t> data(0x30);
  for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<uint8_t>(0x80 + i);
  ElfBuilder b;
  b.segment({0, 0, {0xc3, 0x90}, PF_R | PF_X, {}}).segment({0x1068, 0x2000, data, PF_R | PF_W, {}}).entry(0);
  Layout l = compute(make_elf(b.build()), EnclaveConfig{});
  const PageRange& rw = l.ranges()[1];
  EXPECT_EQ(rw.offset, 0x1000u);
  EXPECT_EQ(rw.pages, 3u);  // [0x1000, 0x3068) rounds to 3 pages
  alignas(4096) uint8_t page[kPage];
  l.page_content(rw, 0, page);
  for (size_t i = 0; i < 0x68; ++i) ASSERT_EQ(page[i], 0) << "before vaddr, byte " << i;
  for (size_t i = 0; i < 0x30; ++i) ASSERT_EQ(page[0x68 + i], 0x80 + i);
  for (size_t i = 0x98; i < kPage; ++i) ASSERT_EQ(page[i], 0) << "bss, byte " << i;
  l.page_content(rw, 2, page);
  for (size_t i = 0; i < kPage; ++i) ASSERT_EQ(page[i], 0);
  l.page_content(l.ranges()[0], 0, page);
  EXPECT_EQ(page[0], 0xc3);
  EXPECT_EQ(page[1], 0x90);
  EXPECT_EQ(page[2], 0);
}

TEST(Layout, SizeIsAtLeastTwoPagesAndAtMost64GiB) {
  EnclaveConfig c;
  c.heap_size = 64ull << 30;
  Result<Layout> r = Layout::compute(basic_elf(), c);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kResource);
  EXPECT_NE(r.status().message().find("64 GiB limit"), std::string::npos) << r.status().message();
  EXPECT_NE(r.status().message().find("enclave.heap_size"), std::string::npos);

  c.heap_size = 32ull << 30;
  r = Layout::compute(basic_elf(), c);
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_EQ(r->size(), 64ull << 30);
}

TEST(Layout, RefusesInvalidConfigAndEmptyElf) {
  EnclaveConfig c;
  c.tcs_count = 0;
  Result<Layout> r = Layout::compute(basic_elf(), c);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("enclave.tcs_count"), std::string::npos);
  EXPECT_FALSE(Layout::compute(ElfImage(), EnclaveConfig{}).ok());
}

TEST(Layout, Attributes) {
  EnclaveConfig c;
  c.attributes = sgx::kAttrProvisionKey;
  c.xfrm = 0x7;
  sgx::Attributes a = compute(basic_elf(), c).attributes();
  EXPECT_EQ(a.flags, sgx::kAttrMode64 | sgx::kAttrProvisionKey);
  EXPECT_EQ(a.xfrm, 0x7u);
  c.debug = true;
  EXPECT_EQ(compute(basic_elf(), c).attributes().flags,
            sgx::kAttrMode64 | sgx::kAttrDebug | sgx::kAttrProvisionKey);
}

// measure() against a plain page-by-page recomputation through page_content.
sgx::Digest slow_measure(const Layout& l) {
  sgx::MeasurementBuilder b;
  b.ecreate(l.ssa_frame_pages(), l.size());
  alignas(4096) uint8_t page[kPage];
  for (const PageRange& r : l.ranges()) {
    for (uint64_t i = 0; i < r.pages; ++i) {
      l.page_content(r, i, page);
      b.add_page(r.offset + i * kPage, r.secinfo_flags, page, r.measured);
    }
  }
  return b.finish();
}

TEST(Layout, MeasureMatchesPageContents) {
  std::vector<uint8_t> code(0x2345);
  for (size_t i = 0; i < code.size(); ++i) code[i] = static_cast<uint8_t>(i * 7);
  // Multi-page code with a partial last page, data at an unaligned address.
  ElfBuilder b;
  b.segment({0, 0, {1, 2, 3}, PF_R, {}})
      .segment({0x1000, 0, code, PF_R | PF_X, {}})
      .segment({0x4010, 0x3000, std::vector<uint8_t>(0x1100, 0x5a), PF_R | PF_W, {}})
      .entry(0x1000);
  Layout l = compute(make_elf(b.build()), EnclaveConfig{});
  ASSERT_EQ(l.ranges()[1].pages, 3u);
  EXPECT_EQ(l.measure(), slow_measure(l));
}

TEST(Layout, MeasurementIsDeterministic) {
  EnclaveConfig c;
  EXPECT_EQ(compute(basic_elf(), c).measure(), compute(basic_elf(), c).measure());
  Layout l = compute(basic_elf(), c);
  EXPECT_EQ(l.measure(), l.measure());
}

TEST(Layout, MeasurementChangesWithEveryMeasuredConfigField) {
  const EnclaveConfig base;
  const sgx::Digest d0 = compute(basic_elf(), base).measure();
  std::vector<std::pair<const char*, EnclaveConfig>> variants;
  auto add = [&](const char* name, auto change) {
    EnclaveConfig c = base;
    change(c);
    variants.emplace_back(name, c);
  };
  add("heap_size", [](EnclaveConfig& c) { c.heap_size += kPage; });
  add("stack_size", [](EnclaveConfig& c) { c.stack_size += kPage; });
  add("tcs_count", [](EnclaveConfig& c) { c.tcs_count += 1; });
  add("ssa_frames", [](EnclaveConfig& c) { c.ssa_frames += 1; });
  add("ssa_frame_pages", [](EnclaveConfig& c) { c.ssa_frame_pages += 1; });
  add("debug", [](EnclaveConfig& c) { c.debug = !c.debug; });
  add("misc_select", [](EnclaveConfig& c) { c.misc_select = 1; });
  add("max_call_buffer", [](EnclaveConfig& c) { c.max_call_buffer += 1; });
  std::set<sgx::Digest> seen{d0};
  for (const auto& [name, c] : variants) {
    EXPECT_TRUE(seen.insert(compute(basic_elf(), c).measure()).second) << name << " is not measured";
  }
}

// ISV identity, ATTRIBUTES and the masks are SIGSTRUCT/SECS fields on SGX;
// TeeMate also measures them through the config record in the metadata
// page, so that every config field changes MRENCLAVE.
TEST(Layout, IdentityFieldsChangeMeasurementToo) {
  const sgx::Digest d0 = compute(basic_elf(), EnclaveConfig{}).measure();
  void (*changes[])(EnclaveConfig&) = {
      [](EnclaveConfig& c) { c.isv_prod_id = 9; },   [](EnclaveConfig& c) { c.isv_svn = 9; },
      [](EnclaveConfig& c) { c.misc_mask = 1; },     [](EnclaveConfig& c) { c.attributes = sgx::kAttrProvisionKey; },
      [](EnclaveConfig& c) { c.attributes_mask = 1; }, [](EnclaveConfig& c) { c.xfrm = 7; },
      [](EnclaveConfig& c) { c.xfrm_mask = 7; },
  };
  for (auto change : changes) {
    EnclaveConfig c;
    change(c);
    EXPECT_NE(compute(basic_elf(), c).measure(), d0);
  }
}

TEST(Layout, MeasurementChangesWithAnyLoadedElfByte) {
  const std::vector<uint8_t> bytes = ElfBuilder::basic().build();
  const ElfImage elf = make_elf(bytes);
  const sgx::Digest d0 = compute(elf, EnclaveConfig{}).measure();
  for (const ElfSegment& s : elf.segments()) {
    for (uint64_t off : {uint64_t{0}, s.filesz / 2, s.filesz - 1}) {
      std::vector<uint8_t> changed = bytes;
      changed[s.file_offset + off] ^= 0x01;
      EXPECT_NE(compute(make_elf(changed), EnclaveConfig{}).measure(), d0)
          << "segment at " << s.vaddr << " byte " << off;
    }
  }
  // The entry point lives in every TCS.
  std::vector<uint8_t> entry_moved = ElfBuilder::basic().entry(0x1001).build();
  EXPECT_NE(compute(make_elf(entry_moved), EnclaveConfig{}).measure(), d0);
}

TEST(Layout, LargeHeapMeasuresQuickly) {
  EnclaveConfig c;
  c.heap_size = 256ull << 20;
  Layout l = compute(basic_elf(), c);
  const auto start = std::chrono::steady_clock::now();
  sgx::Digest d = l.measure();
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_NE(d, sgx::Digest{});
  EXPECT_LT(secs, 2.0) << "256 MiB heap took " << secs << " s to measure";
  RecordProperty("measure_256m_seconds", std::to_string(secs));
}

TEST(Layout, RangeKindNames) {
  EXPECT_STREQ(range_kind_name(RangeKind::kElf), "elf");
  EXPECT_STREQ(range_kind_name(RangeKind::kThreadData), "thread-data");
  EXPECT_STREQ(range_kind_name(RangeKind::kHeap), "heap");
}

}  // namespace
}  // namespace teemate::image
