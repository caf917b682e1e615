// teemated's state file as a journal (daemon_state.h): the last complete
// line is the state, a torn last append is skipped, an older daemon's
// single document still reads, a damaged last line is refused (never an
// earlier line used in its place), and the file is compacted when large.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "host/daemon/daemon_state.h"

namespace teemate::daemon {
namespace {

namespace fs = std::filesystem;

class StateJournalTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/teemate-journal-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    path_ = dir_ + "/state.json";
  }
  void TearDown() override { fs::remove_all(dir_); }

  static SavedState state_with(uint32_t next_id) {
    SavedState s;
    s.next_id = next_id;
    s.next_base = 0x200000000000;
    return s;
  }
  std::string text() const {
    std::ifstream in(path_);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  }
  void write_text(const std::string& t) const { std::ofstream(path_, std::ios::trunc) << t; }

  std::string dir_, path_;
};

TEST_F(StateJournalTest, TheLastAppendIsTheState) {
  StateJournal j(path_);
  for (uint32_t i = 2; i <= 5; ++i) ASSERT_TRUE(j.append(state_with(i)).ok());
  auto s = load_state(path_);
  ASSERT_TRUE(s.ok()) << s.status().to_string();
  ASSERT_TRUE(s->has_value());
  EXPECT_EQ((*s)->next_id, 5u);
  // Four lines, one per change.
  const std::string t = text();
  EXPECT_EQ(std::count(t.begin(), t.end(), '\n'), 4);
}

TEST_F(StateJournalTest, ATornLastAppendIsSkipped) {
  StateJournal j(path_);
  ASSERT_TRUE(j.append(state_with(7)).ok());
  std::ofstream(path_, std::ios::app) << "{\"next_id\": 9, \"next_ba";  // died mid-write
  auto s = load_state(path_);
  ASSERT_TRUE(s.ok()) << s.status().to_string();
  ASSERT_TRUE(s->has_value());
  EXPECT_EQ((*s)->next_id, 7u);
}

// Review defect: zero bytes after a valid line (blocks an append allocated
// but never wrote before a crash) made the daemon set the whole file aside;
// a line ending in \r\n was not read.
TEST_F(StateJournalTest, ZeroFilledAndCrlfTailsKeepTheLastState) {
  StateJournal j(path_);
  ASSERT_TRUE(j.append(state_with(6)).ok());
  std::ofstream(path_, std::ios::app) << std::string(4000, '\0') << "\n";
  auto s = load_state(path_);
  ASSERT_TRUE(s.ok()) << s.status().to_string();
  ASSERT_TRUE(s->has_value());
  EXPECT_EQ((*s)->next_id, 6u);
  std::ofstream(path_, std::ios::app) << std::string(100, '\0');  // and without a newline
  s = load_state(path_);
  ASSERT_TRUE(s.ok() && s->has_value()) << s.status().to_string();
  EXPECT_EQ((*s)->next_id, 6u);

  std::string line = text().substr(0, text().find('\n'));
  write_text(line + "\r\n" + line + "\r\n");
  s = load_state(path_);
  ASSERT_TRUE(s.ok() && s->has_value()) << s.status().to_string();
  EXPECT_EQ((*s)->next_id, 6u);
}

// Zero bytes alone are a write that never reached the disk: damage, refused
// (and so set aside and logged by the daemon), never silently no state.
TEST_F(StateJournalTest, AFileOfZeroBytesIsDamage) {
  write_text(std::string(512, '\0'));
  auto s = load_state(path_);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.status().code(), Code::kCorrupt);
  EXPECT_NE(s.status().message().find("zero bytes"), std::string::npos) << s.status().to_string();
}

TEST_F(StateJournalTest, OnlyATornFirstWriteIsNoState) {
  write_text("{\"next_id\": 3, \"ne");
  auto s = load_state(path_);
  ASSERT_TRUE(s.ok()) << s.status().to_string();
  EXPECT_FALSE(s->has_value());
}

TEST_F(StateJournalTest, AnOlderDaemonsPrettyDocumentReads) {
  ASSERT_TRUE(save_state(path_, state_with(4)).ok());
  auto one = load_state(path_);
  ASSERT_TRUE(one.ok() && one->has_value());
  // What the earlier daemon wrote: one indented document, no final newline.
  std::string pretty = text();
  pretty.pop_back();
  for (size_t at = 0; (at = pretty.find(",\"", at)) != std::string::npos; at += 3) pretty.insert(at + 1, "\n ");
  ASSERT_NE(pretty.find('\n'), std::string::npos);
  write_text(pretty);
  auto s = load_state(path_);
  ASSERT_TRUE(s.ok()) << s.status().to_string();
  ASSERT_TRUE(s->has_value());
  EXPECT_EQ((*s)->next_id, 4u);
}

TEST_F(StateJournalTest, ADamagedCompleteLastLineIsRefusedNotReplacedByAnOlderOne) {
  StateJournal j(path_);
  ASSERT_TRUE(j.append(state_with(3)).ok());
  std::ofstream(path_, std::ios::app) << "{\"next_id\": \"two\"}\n";
  auto s = load_state(path_);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.status().code(), Code::kCorrupt);
  std::ofstream(path_, std::ios::app) << "not json at all\n";
  EXPECT_FALSE(load_state(path_).ok());
}

TEST_F(StateJournalTest, ALargeJournalIsCompactedToOneLine) {
  StateJournal j(path_);
  SavedState big = state_with(2);
  SavedEnclave e;
  e.id = 1;
  e.image = std::string(4000, 'i');
  e.base = 0x200000000000;
  e.lease.assign(8, 0);
  big.enclaves.push_back(e);
  uint64_t appended = 0;
  for (int i = 0; appended < kStateJournalCompactBytes + 10000; ++i) {
    big.next_id = 2 + static_cast<uint32_t>(i);
    ASSERT_TRUE(j.append(big).ok());
    appended += 4100;
  }
  EXPECT_LE(fs::file_size(path_), kStateJournalCompactBytes);
  auto s = load_state(path_);
  ASSERT_TRUE(s.ok()) << s.status().to_string();
  EXPECT_EQ((*s)->next_id, big.next_id);
  // The journal was restarted by a rename: no temporary left behind.
  EXPECT_FALSE(fs::exists(path_ + ".tmp"));
}

}  // namespace
}  // namespace teemate::daemon
