// What teemated writes to its state directory so that a restarted daemon
// (after a crash or kill -9) can take back what the old one had: the warm
// enclaves (with their control tokens and the identity of their memory, so
// that it can be taken back from a process that still maps it), the lease
// table, and the processes attached (pid and start time, so that a reused
// pid is never mistaken for them), with their leases and contexts. Plain
// data and its JSON file; the server decides what to do with it. The file
// is the daemon's own (0600 in a 0700 directory) but is still checked field
// by field: a damaged file is refused, never half-used.
//
// The file is a journal (JSON Lines): every change appends the whole state
// as one line with one write(), which costs a few microseconds, where the
// rename of a rewritten file cost an attach up to 0.7 ms on ext4. The last
// complete line is the state; a line without its newline is a write the
// daemon died in (its change was never answered) and is skipped. Past
// kStateJournalCompactBytes the file is rewritten to one line and renamed.
#pragma once

#include <sys/types.h>

#include <array>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "teemate/status.h"

namespace teemate::daemon {

struct SavedEnclave {
  uint32_t id = 0;
  std::string image;
  uint64_t file_dev = 0, file_ino = 0, file_size = 0;
  int64_t file_mtime_ns = 0;
  std::string mrenclave;
  std::string domain;
  uint32_t loaded_by = 0;
  uint64_t base = 0;
  uint64_t heap_size = 0;
  std::array<uint64_t, 4> control_token{};
  uint64_t memory_ino = 0;   // inode of the enclave memory's descriptor
  uint64_t control_ino = 0;  // inode of the sim control memory's descriptor
  std::vector<int32_t> lease;
};

struct SavedClient {
  int32_t pid = 0;
  uint64_t start_time = 0;  // /proc/PID/stat field 22
  uint32_t uid = 0, gid = 0;
  std::string name;
  std::map<uint32_t, std::vector<uint32_t>> leases;
  std::map<uint32_t, uint64_t> contexts;
};

struct SavedState {
  uint32_t next_id = 1;
  uint64_t next_base = 0;
  std::vector<SavedEnclave> enclaves;
  std::vector<SavedClient> clients;
};

// Writes path atomically (a temporary file renamed over it), mode 0600,
// as a journal of one line.
Status save_state(const std::string& path, const SavedState& state);

inline constexpr uint64_t kStateJournalCompactBytes = 1u << 20;

// The daemon's handle on its state file: appends, compacting when large.
// Not thread-safe (the daemon calls it under its lock).
class StateJournal {
 public:
  explicit StateJournal(std::string path) : path_(std::move(path)) {}
  ~StateJournal();
  StateJournal(const StateJournal&) = delete;
  StateJournal& operator=(const StateJournal&) = delete;
  Status append(const SavedState& state);

 private:
  std::string path_;
  int fd_ = -1;
  uint64_t bytes_ = 0;
};
// nullopt when there is no file; kCorrupt naming the field when it is damaged.
Result<std::optional<SavedState>> load_state(const std::string& path);

// The start time of process pid (clock ticks since boot), or 0 if it is gone.
uint64_t process_start_time(pid_t pid);

}  // namespace teemate::daemon
