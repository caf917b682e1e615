// teemated's state file (see daemon_state.h).
#include "host/daemon/daemon_state.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <map>
#include <set>
#include <sstream>

#include "base/hex.h"

#include <nlohmann/json.hpp>

#include "host/image/file_util.h"

namespace teemate::daemon {
namespace {

using nlohmann::json;
constexpr int kStateVersion = 1;


// Typed reads that never throw; each failure names the field.
struct Reader {
  std::string where;
  Status error;
  bool ok() const { return error.ok(); }
  const json* field(const json& o, const char* k) {
    if (!error.ok()) return nullptr;
    if (!o.is_object() || !o.contains(k)) {
      error = corrupt(where + ": field '" + k + "' is missing");
      return nullptr;
    }
    return &o[k];
  }
  uint64_t u64(const json& o, const char* k) {
    const json* v = field(o, k);
    if (!v) return 0;
    if (!v->is_number_unsigned()) {
      error = corrupt(where + ": field '" + k + "' must be an unsigned integer");
      return 0;
    }
    return v->get<uint64_t>();
  }
  int64_t i64(const json& o, const char* k) {
    const json* v = field(o, k);
    if (!v) return 0;
    if (!v->is_number_integer()) {
      error = corrupt(where + ": field '" + k + "' must be an integer");
      return 0;
    }
    return v->get<int64_t>();
  }
  std::string str(const json& o, const char* k) {
    const json* v = field(o, k);
    if (!v) return "";
    if (!v->is_string()) {
      error = corrupt(where + ": field '" + k + "' must be a string");
      return "";
    }
    return v->get<std::string>();
  }
  const json& arr(const json& o, const char* k) {
    static const json empty = json::array();
    const json* v = field(o, k);
    if (!v) return empty;
    if (!v->is_array()) {
      error = corrupt(where + ": field '" + k + "' must be an array");
      return empty;
    }
    return *v;
  }
  const json& obj(const json& o, const char* k) {
    static const json empty = json::object();
    const json* v = field(o, k);
    if (!v) return empty;
    if (!v->is_object()) {
      error = corrupt(where + ": field '" + k + "' must be an object");
      return empty;
    }
    return *v;
  }
  uint32_t key_u32(const std::string& s) {
    char* end = nullptr;
    errno = 0;
    unsigned long v = std::strtoul(s.c_str(), &end, 10);
    if (s.empty() || *end || errno || v > UINT32_MAX) error = corrupt(where + ": '" + s + "' is not an enclave id");
    return static_cast<uint32_t>(v);
  }
};

// The cross-references a damaged or edited file could break: each is a
// reason to set the whole file aside rather than use part of it.
Status check_consistent(const SavedState& s) {
  std::map<uint32_t, const SavedEnclave*> by_id;
  for (const SavedEnclave& e : s.enclaves) {
    if (e.id == 0 || e.id >= s.next_id) return corrupt("enclave id " + std::to_string(e.id) + " is not below next_id");
    if (!by_id.emplace(e.id, &e).second) return corrupt("enclave " + std::to_string(e.id) + " appears twice");
    if (e.lease.empty() || e.lease.size() > 4096) return corrupt("enclave " + std::to_string(e.id) + ": bad lease table");
    if (e.base == 0 || (e.base & 4095) || e.heap_size > (uint64_t{64} << 30)) {
      return corrupt("enclave " + std::to_string(e.id) + ": bad base or heap size");
    }
    for (const SavedEnclave& o : s.enclaves) {
      if (&o != &e && o.base == e.base) return corrupt("two enclaves at one base");
    }
  }
  std::set<int32_t> pids;
  for (const SavedClient& c : s.clients) {
    if (!pids.insert(c.pid).second) return corrupt("client pid " + std::to_string(c.pid) + " appears twice");
    for (const auto& [id, list] : c.leases) {
      auto it = by_id.find(id);
      if (it == by_id.end()) return corrupt("pid " + std::to_string(c.pid) + " leases TCS of unknown enclave " + std::to_string(id));
      for (uint32_t i : list) {
        if (i >= it->second->lease.size() || it->second->lease[i] != c.pid) {
          return corrupt("pid " + std::to_string(c.pid) + " holds TCS " + std::to_string(i) + " of enclave " +
                         std::to_string(id) + ", which the lease table does not give it");
        }
      }
    }
    for (const auto& [id, h] : c.contexts) {
      if (!by_id.count(id) || h == 0) return corrupt("pid " + std::to_string(c.pid) + ": bad context of enclave " + std::to_string(id));
    }
  }
  return {};
}

json to_json(const SavedState& s) {
  json enclaves = json::array();
  for (const SavedEnclave& e : s.enclaves) {
    json token = json::array();
    for (uint64_t w : e.control_token) token.push_back(base::hex16(w));
    enclaves.push_back(json{{"id", e.id},
                            {"image", e.image},
                            {"file", {{"dev", e.file_dev}, {"ino", e.file_ino}, {"size", e.file_size}, {"mtime_ns", e.file_mtime_ns}}},
                            {"mrenclave", e.mrenclave},
                            {"trust_domain", e.domain},
                            {"loaded_by", e.loaded_by},
                            {"base", e.base},
                            {"heap_size", e.heap_size},
                            {"control_token", token},
                            {"memory_ino", e.memory_ino},
                            {"control_ino", e.control_ino},
                            {"lease", e.lease}});
  }
  json clients = json::array();
  for (const SavedClient& c : s.clients) {
    json leases = json::object(), contexts = json::object();
    for (const auto& [id, l] : c.leases) leases[std::to_string(id)] = l;
    for (const auto& [id, h] : c.contexts) contexts[std::to_string(id)] = h;
    clients.push_back(json{{"pid", c.pid}, {"start_time", c.start_time}, {"uid", c.uid}, {"gid", c.gid},
                           {"name", c.name}, {"leases", leases}, {"contexts", contexts}});
  }
  return json{{"version", kStateVersion}, {"next_id", s.next_id}, {"next_base", s.next_base},
              {"enclaves", enclaves}, {"clients", clients}};
}

Result<SavedState> from_json(const json& j, const std::string& path) {
  Reader r{path, {}};
  SavedState s;
  if (r.i64(j, "version") != kStateVersion && r.ok()) return corrupt(path + ": unknown state version");
  s.next_id = static_cast<uint32_t>(r.u64(j, "next_id"));
  s.next_base = r.u64(j, "next_base");
  for (const json& e : r.arr(j, "enclaves")) {
    SavedEnclave x;
    x.id = static_cast<uint32_t>(r.u64(e, "id"));
    x.image = r.str(e, "image");
    const json& f = r.obj(e, "file");
    x.file_dev = r.u64(f, "dev");
    x.file_ino = r.u64(f, "ino");
    x.file_size = r.u64(f, "size");
    x.file_mtime_ns = r.i64(f, "mtime_ns");
    x.mrenclave = r.str(e, "mrenclave");
    x.domain = r.str(e, "trust_domain");
    x.loaded_by = static_cast<uint32_t>(r.u64(e, "loaded_by"));
    x.base = r.u64(e, "base");
    x.heap_size = r.u64(e, "heap_size");
    const json& token = r.arr(e, "control_token");
    if (r.ok() && token.size() != 4) return corrupt(path + ": a control token has 4 words");
    for (size_t k = 0; r.ok() && k < 4; ++k) {
      if (!token[k].is_string() || token[k].get<std::string>().size() != 16) return corrupt(path + ": bad control token");
      x.control_token[k] = std::strtoull(token[k].get<std::string>().c_str(), nullptr, 16);
    }
    x.memory_ino = r.u64(e, "memory_ino");
    x.control_ino = r.u64(e, "control_ino");
    for (const json& l : r.arr(e, "lease")) {
      if (!l.is_number_integer() || l.get<int64_t>() < -1 || l.get<int64_t>() > INT32_MAX) {
        return corrupt(path + ": a lease must be a pid, 0 or -1");
      }
      x.lease.push_back(static_cast<int32_t>(l.get<int64_t>()));
    }
    if (!r.ok()) return r.error;
    s.enclaves.push_back(std::move(x));
  }
  for (const json& c : r.arr(j, "clients")) {
    SavedClient x;
    x.pid = static_cast<int32_t>(r.u64(c, "pid"));
    x.start_time = r.u64(c, "start_time");
    x.uid = static_cast<uint32_t>(r.u64(c, "uid"));
    x.gid = static_cast<uint32_t>(r.u64(c, "gid"));
    x.name = r.str(c, "name");
    for (const auto& [k, v] : r.obj(c, "leases").items()) {
      const uint32_t id = r.key_u32(k);
      if (!v.is_array()) return corrupt(path + ": leases of enclave " + k + " must be an array");
      for (const json& i : v) {
        if (!i.is_number_unsigned() || i.get<uint64_t>() > UINT32_MAX) return corrupt(path + ": bad TCS index");
        x.leases[id].push_back(static_cast<uint32_t>(i.get<uint64_t>()));
      }
    }
    for (const auto& [k, v] : r.obj(c, "contexts").items()) {
      const uint32_t id = r.key_u32(k);
      if (!v.is_number_unsigned()) return corrupt(path + ": a context handle must be an unsigned integer");
      x.contexts[id] = v.get<uint64_t>();
    }
    if (!r.ok()) return r.error;
    if (x.pid <= 0) return corrupt(path + ": a client pid must be positive");
    s.clients.push_back(std::move(x));
  }
  if (!r.ok()) return r.error;
  TM_RETURN_IF_ERROR(check_consistent(s).with_context(path));
  return s;
}

}  // namespace

Status save_state(const std::string& path, const SavedState& state) {
  const std::string text = to_json(state).dump() + "\n";
  const std::string tmp = path + ".tmp";
  int fd = open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0) return io_error("cannot write " + tmp, errno);
  size_t done = 0;
  while (done < text.size()) {
    ssize_t n = write(fd, text.data() + done, text.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      int err = errno;
      close(fd);
      return io_error("cannot write " + tmp, err);
    }
    done += static_cast<size_t>(n);
  }
  if (close(fd) != 0 || rename(tmp.c_str(), path.c_str()) != 0) return io_error("cannot write " + path, errno);
  return {};
}

StateJournal::~StateJournal() {
  if (fd_ >= 0) close(fd_);
}

Status StateJournal::append(const SavedState& state) {
  const std::string line = to_json(state).dump() + "\n";
  if (fd_ < 0 || bytes_ + line.size() > kStateJournalCompactBytes) {
    if (fd_ >= 0) close(fd_);
    fd_ = -1;
    TM_RETURN_IF_ERROR(save_state(path_, state));
    fd_ = open(path_.c_str(), O_WRONLY | O_APPEND | O_CLOEXEC | O_NOFOLLOW);
    if (fd_ < 0) return io_error("cannot open " + path_, errno);
    bytes_ = line.size();
    return {};
  }
  // One write: a concurrent crash leaves a line without its newline, which
  // load_state skips. A short write (a full disk) is the same, and the next
  // append starts the file over.
  const ssize_t n = write(fd_, line.data(), line.size());
  if (n != static_cast<ssize_t>(line.size())) {
    const int err = n < 0 ? errno : ENOSPC;
    close(fd_);
    fd_ = -1;
    return io_error("cannot append to " + path_, err);
  }
  bytes_ += line.size();
  return {};
}

Result<std::optional<SavedState>> load_state(const std::string& path) {
  struct stat st {};
  if (lstat(path.c_str(), &st) != 0) {
    if (errno == ENOENT) return std::optional<SavedState>();
    return io_error("cannot read " + path, errno);
  }
  if (!S_ISREG(st.st_mode)) return corrupt(path + ": not a regular file");
  auto text = image::read_text_file(path, 64u << 20);
  if (!text.ok()) {
    if (access(path.c_str(), F_OK) != 0 && errno == ENOENT) return std::optional<SavedState>();
    return text.status();
  }
  // One JSON document (an older daemon's file, or a journal of one line),
  // else the journal's last complete line.
  json j = json::parse(*text, nullptr, false);
  if (j.is_discarded()) {
    // The last line that holds a state. Skipped: a torn last append (no
    // newline yet), blank lines, "\r" before a newline, and lines of zero
    // bytes, which a crash can leave where an append's blocks were
    // allocated but never written (review defect: a valid state followed
    // by such a line was set aside whole). A complete line that is not a
    // state is damage, never replaced by an older line.
    const std::string_view t = *text;
    const bool torn_tail = !t.empty() && t.back() != '\n';
    std::vector<std::string_view> lines;  // after a final newline: one empty line
    for (size_t pos = 0;;) {
      const size_t nl = t.find('\n', pos);
      if (nl == std::string_view::npos) {
        lines.push_back(t.substr(pos));
        break;
      }
      lines.push_back(t.substr(pos, nl - pos));
      pos = nl + 1;
    }
    for (size_t i = lines.size(); i-- > 0 && j.is_discarded();) {
      std::string_view line = lines[i];
      if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
      if (line.find_first_not_of(std::string_view(" \t\r\0", 4)) == std::string_view::npos) continue;
      j = json::parse(line, nullptr, false);
      const bool torn = torn_tail && i + 1 == lines.size();
      if (j.is_discarded() && !torn) return corrupt(path + ": its last complete line is not a JSON object");
    }
    if (j.is_discarded()) {
      // Nothing but a torn first write is no state; zero bytes alone are a
      // write that never reached the disk: damage, set aside and said.
      if (t.find('\0') != std::string_view::npos) return corrupt(path + ": holds only zero bytes, no state line");
      return std::optional<SavedState>();
    }
  }
  if (j.is_discarded() || !j.is_object()) return corrupt(path + ": not a JSON object");
  TM_ASSIGN_OR_RETURN(SavedState s, from_json(j, path));
  return std::optional<SavedState>(std::move(s));
}

uint64_t process_start_time(pid_t pid) {
  char path[64];
  std::snprintf(path, sizeof path, "/proc/%d/stat", pid);
  auto read = image::read_text_file(path);
  if (!read.ok()) return 0;
  const std::string& text = *read;
  // The command name may hold spaces and parentheses: fields resume after the last ')'.
  const size_t close = text.rfind(')');
  if (close == std::string::npos) return 0;
  std::istringstream rest(text.substr(close + 1));
  std::string field;
  for (int i = 3; i <= 22 && rest >> field; ++i) {
    if (i == 22) return std::strtoull(field.c_str(), nullptr, 10);
  }
  return 0;
}

}  // namespace teemate::daemon
