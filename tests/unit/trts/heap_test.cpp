// The trusted runtime's heap allocator, compiled for the host and driven
// hard: random allocation and free with alignments up to 4096 (and 1 MiB), no two live
// blocks overlap, contents survive, everything coalesces back to one block,
// and a double free or a foreign pointer aborts instead of corrupting. An
// operation stopped at any write (a thread killed mid-update) is rolled
// back exactly to the heap's state before it.
#include <gtest/gtest.h>

#include <cstring>
#include <random>
#include <stdexcept>
#include <vector>

#include "runtime.h"

// The allocator's two dependencies, supplied by the test.
extern "C" void tm_spin_lock(tm_spinlock* l) { l->owner = 1; }
extern "C" void tm_spin_unlock(tm_spinlock* l) { l->owner = 0; }
struct HeapAbort : std::runtime_error {
  using std::runtime_error::runtime_error;
};
extern "C" void tm_abort(const char* why) { throw HeapAbort(why); }

// The allocator calls this before logging each write (0) and between
// logging it and doing it (1): the test "kills" the thread at the N-th.
struct Killed {};
long g_points_left = -1;  // < 0: never
namespace teemate::trts {
void heap_test_point(int) {
  if (g_points_left < 0) return;
  if (g_points_left-- == 0) throw Killed{};
}
}  // namespace teemate::trts

namespace teemate::trts {
namespace {

class HeapTest : public ::testing::Test {
 protected:
  void SetUp() override {
    arena_.resize(kSize + 64);
    heap_init(arena_.data() + (16 - reinterpret_cast<uintptr_t>(arena_.data()) % 16) % 16, kSize);
  }
  static constexpr size_t kSize = 8u << 20;
  std::vector<uint8_t> arena_;
};

TEST_F(HeapTest, RandomAllocFreeKeepsBlocksDisjointAndCoalesces) {
  const size_t start_used = tm_heap_used();
  std::mt19937_64 rng(42);
  struct Live {
    uint8_t* p;
    size_t n;
    uint8_t fill;
  };
  std::vector<Live> live;
  for (int step = 0; step < 20000; ++step) {
    if (live.empty() || rng() % 3) {
      size_t n = rng() % 3 == 0 ? rng() % 70000 : rng() % 300;
      size_t align = size_t{16} << (rng() % 9);  // 16 .. 4096
      auto* p = static_cast<uint8_t*>(heap_alloc(n, align));
      if (!p) continue;  // full is allowed
      ASSERT_EQ(reinterpret_cast<uintptr_t>(p) % align, 0u);
      ASSERT_GE(heap_usable_size(p), n);
      uint8_t fill = static_cast<uint8_t>(rng());
      memset(p, fill, n);
      live.push_back({p, n, fill});
    } else {
      size_t i = rng() % live.size();
      for (size_t k = 0; k < live[i].n; ++k) ASSERT_EQ(live[i].p[k], live[i].fill) << "corrupted";
      heap_free(live[i].p);
      live[i] = live.back();
      live.pop_back();
    }
  }
  std::sort(live.begin(), live.end(), [](const Live& a, const Live& b) { return a.p < b.p; });
  for (size_t i = 1; i < live.size(); ++i) ASSERT_LE(live[i - 1].p + live[i - 1].n, live[i].p) << "overlap";
  for (auto& l : live) heap_free(l.p);
  EXPECT_EQ(tm_heap_used(), start_used);
  // Fully coalesced: one allocation of nearly the whole heap succeeds.
  void* big = heap_alloc(kSize - 4096, 16);
  EXPECT_NE(big, nullptr);
  heap_free(big);
}

TEST_F(HeapTest, ExhaustionReturnsNull) {
  EXPECT_EQ(heap_alloc(kSize * 2, 16), nullptr);
  EXPECT_EQ(heap_alloc(16, 3), nullptr);       // not a power of two
  EXPECT_EQ(heap_alloc(16, size_t{2} << 20), nullptr);  // beyond the supported alignment (1 MiB)
}

// Review defect D6: alignments above 4096 returned NULL. Every power of two
// up to 1 MiB is served, aligned, and coalesces back.
TEST_F(HeapTest, LargeAlignmentsUpToOneMiB) {
  const size_t before = tm_heap_used();
  std::vector<void*> live;
  for (size_t align = 8192; align <= (size_t{1} << 20); align <<= 1) {
    for (size_t n : {size_t{1}, size_t{100}, align + 3}) {
      void* p = heap_alloc(n, align);
      ASSERT_NE(p, nullptr) << "align " << align << " size " << n;
      EXPECT_EQ(reinterpret_cast<uintptr_t>(p) % align, 0u) << align;
      std::memset(p, 0xab, n);
      live.push_back(p);
    }
  }
  for (void* p : live) heap_free(p);
  EXPECT_EQ(tm_heap_used(), before);
  void* big = heap_alloc(kSize - 4096, 16);  // fully coalesced again
  EXPECT_NE(big, nullptr);
  heap_free(big);
}

TEST_F(HeapTest, DoubleFreeAndForeignPointersAbort) {
  void* p = heap_alloc(100, 16);
  heap_free(p);
  EXPECT_THROW(heap_free(p), HeapAbort);
  int on_stack = 0;
  EXPECT_THROW(heap_free(&on_stack), HeapAbort);
  // The heap still works after a refused free.
  void* q = heap_alloc(100, 16);
  EXPECT_NE(q, nullptr);
  heap_free(q);
}

// What a heap is, for comparison: its bytes and its header fields.
struct HeapImage {
  std::vector<uint8_t> bytes;
  uint8_t* start;
  uint8_t* end;
  void* free_list;
  size_t used;
  size_t total;
  bool operator==(const HeapImage&) const = default;
};
HeapImage image_of(const Heap& h) {
  return HeapImage{std::vector<uint8_t>(h.start, h.end), h.start, h.end, h.free_list, h.used, h.total};
}
void restore(Heap& h, const HeapImage& im) {
  memcpy(h.start, im.bytes.data(), im.bytes.size());
  h.free_list = im.free_list;
  h.used = im.used;
  h.nundo = 0;
}

TEST(HeapRollback, AnOperationKilledAtAnyWriteRollsBackExactly) {
  std::vector<uint8_t> mem(64 * 1024 + 16);
  uint8_t* start = mem.data() + (16 - reinterpret_cast<uintptr_t>(mem.data()) % 16) % 16;
  Heap h{};
  heap_init(h, start, 64 * 1024);
  std::mt19937_64 rng(7);
  std::vector<void*> live;
  size_t kills = 0;
  for (int step = 0; step < 300; ++step) {
    const bool alloc = live.empty() || rng() % 2;
    const size_t n = rng() % 3000;
    const size_t align = size_t{16} << (rng() % 6);
    const size_t victim = live.empty() ? 0 : rng() % live.size();
    auto op = [&]() -> void* {
      if (alloc) return heap_alloc(h, n, align);
      heap_free(h, live[victim]);
      return nullptr;
    };
    const HeapImage before = image_of(h);
    // Kill the operation at every point it reaches, roll back, compare.
    for (long point = 0;; ++point) {
      restore(h, before);
      g_points_left = point;
      bool killed = false;
      try {
        (void)op();
      } catch (const Killed&) {
        killed = true;
      }
      g_points_left = -1;
      if (!killed) break;  // it ran to completion before this point
      ++kills;
      heap_rollback(h);
      ASSERT_EQ(h.nundo, 0u);
      ASSERT_TRUE(image_of(h) == before) << "step " << step << ", killed at point " << point;
    }
    restore(h, before);
    // The real operation.
    void* p = op();
    if (alloc && p) live.push_back(p);
    if (!alloc) {
      live[victim] = live.back();
      live.pop_back();
    }
  }
  EXPECT_GT(kills, 1000u);
  for (void* p : live) heap_free(h, p);
  EXPECT_EQ(h.used, 0u);
  EXPECT_NE(heap_alloc(h, 60 * 1024, 16), nullptr);  // coalesced whole again
}

}  // namespace
}  // namespace teemate::trts
