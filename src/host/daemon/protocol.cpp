// The teemated control protocol's wire layer (see protocol.h and
// docs/daemon-protocol.md). Treats every byte from the peer as hostile: it
// never reads past one message, never trusts a length before checking it,
// never leaks a received descriptor, and never lets an exception escape.
#include "host/daemon/protocol.h"

#include <errno.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>

namespace teemate::protocol {

namespace {

using json = nlohmann::json;

// Room for the kernel's own limit on descriptors per message (SCM_MAX_FD),
// so a peer that sends too many is told how many rather than truncated, and
// for SCM_CREDENTIALS in case the caller enabled SO_PASSCRED.
constexpr size_t kKernelMaxFds = 253;
constexpr size_t kControlBytes = CMSG_SPACE(sizeof(int) * kKernelMaxFds) + CMSG_SPACE(sizeof(struct ucred));

// A point in time after which waiting stops; timeout_ms < 0 never expires.
class Deadline {
 public:
  explicit Deadline(int timeout_ms)
      : timeout_ms_(timeout_ms),
        end_(std::chrono::steady_clock::now() + std::chrono::milliseconds(std::max(timeout_ms, 0))) {}
  int timeout_ms() const { return timeout_ms_; }
  // Milliseconds left for poll(): -1 forever, 0 when expired.
  int remaining_ms() const {
    if (timeout_ms_ < 0) return -1;
    auto left = std::chrono::ceil<std::chrono::milliseconds>(end_ - std::chrono::steady_clock::now()).count();
    return left > 0 ? static_cast<int>(left) : 0;
  }

 private:
  int timeout_ms_;
  std::chrono::steady_clock::time_point end_;
};

// Waits until sock is ready for `events`. Returns false on timeout.
Result<bool> wait_for(int sock, short events, const Deadline& deadline) {
  for (;;) {
    struct pollfd p {};
    p.fd = sock;
    p.events = events;
    int r = poll(&p, 1, deadline.remaining_ms());
    if (r < 0) {
      if (errno == EINTR) continue;
      return io_error("waiting on the control socket", errno);
    }
    if (r == 0) return false;
    if (p.revents & POLLNVAL) return io_error("waiting on the control socket", EBADF);
    return true;  // readable, writable, or HUP/ERR: the next call reports which
  }
}

std::string type_name_of(const json& j) { return j.type_name(); }

// Deepest nesting of arrays and objects in text, ignoring brackets inside
// strings. Run before parsing so that a hostile body cannot make later
// recursive code (dump, destructors of user copies) run deep.
int nesting_depth(const std::string& text) {
  int depth = 0, deepest = 0;
  bool in_string = false, escaped = false;
  for (char c : text) {
    if (in_string) {
      if (escaped) escaped = false;
      else if (c == '\\') escaped = true;
      else if (c == '"') in_string = false;
      continue;
    }
    if (c == '"') in_string = true;
    else if (c == '[' || c == '{') deepest = std::max(deepest, ++depth);
    else if (c == ']' || c == '}') --depth;
  }
  return deepest;
}

Status check_version(const json& body, const char* speaker) {
  if (!body.is_object()) return corrupt("message body must be a JSON object, got " + type_name_of(body));
  auto v = body.find("v");
  if (v == body.end()) return corrupt("message has no protocol version field 'v'");
  if (!v->is_number_integer()) {
    return corrupt("protocol version 'v' must be an integer, got " + type_name_of(*v));
  }
  const bool match = v->is_number_unsigned() ? v->get<uint64_t>() == static_cast<uint64_t>(kVersion)
                                             : v->get<int64_t>() == kVersion;
  if (!match) {
    return unsupported("protocol version " + v->dump() + " not supported; this " + speaker + " speaks " +
                       std::to_string(kVersion));
  }
  return {};
}

Status check_op(const json& body) {
  auto op = body.find("op");
  if (op == body.end()) return corrupt("message has no 'op' string");
  if (!op->is_string()) return corrupt("message field 'op' must be a string, got " + type_name_of(*op));
  if (op->get_ref<const std::string&>().empty()) return corrupt("message field 'op' is empty");
  return {};
}

// Reads exactly len bytes into buf. Descriptors that arrive are appended to
// *arrived (so the caller closes them whatever happens) and are an error
// unless fds_allowed. `started` says whether earlier bytes of this message
// were read (it decides the EOF and timeout messages).
Status read_exact(int sock, uint8_t* buf, size_t len, bool fds_allowed, bool started,
                  std::vector<UniqueFd>* arrived, const Deadline& deadline) {
  size_t got = 0;
  while (got < len) {
    TM_ASSIGN_OR_RETURN(bool ready, wait_for(sock, POLLIN, deadline));
    if (!ready) {
      return resource_error("timed out after " + std::to_string(deadline.timeout_ms()) + " ms " +
                            (started || got > 0 ? "in the middle of a message" : "waiting for a message"));
    }
    struct iovec iov {};
    iov.iov_base = buf + got;
    iov.iov_len = len - got;
    alignas(struct cmsghdr) unsigned char control[kControlBytes];
    struct msghdr msg {};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control;
    msg.msg_controllen = sizeof control;
    ssize_t n = recvmsg(sock, &msg, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
    if (n < 0) {
      if (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK) continue;
      if (errno == ECONNRESET && !started && got == 0) return Status(Code::kNotFound, "peer closed the connection");
      return io_error("reading from the control socket", errno);
    }
    // Take ownership of every descriptor first, so that any refusal below
    // closes them.
    size_t new_fds = 0;
    for (struct cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
      if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
      const size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
      const unsigned char* data = CMSG_DATA(c);
      for (size_t i = 0; i < count; ++i) {
        int fd;
        std::memcpy(&fd, data + i * sizeof(int), sizeof fd);
        arrived->emplace_back(fd);
        ++new_fds;
      }
    }
    if (msg.msg_flags & MSG_CTRUNC) {
      return resource_error("ancillary data was truncated (too many file descriptors, or this process is out of "
                            "descriptors)");
    }
    if (new_fds > 0 && !fds_allowed) {
      return corrupt("file descriptors arrived with the message body; they must travel with the length prefix");
    }
    if (arrived->size() > kMaxFds) {
      return resource_error("message carries " + std::to_string(arrived->size()) +
                            " file descriptors; the limit is " + std::to_string(kMaxFds));
    }
    if (n == 0) {
      if (!started && got == 0) return Status(Code::kNotFound, "peer closed the connection");
      return corrupt("connection closed in the middle of a message");
    }
    got += static_cast<size_t>(n);
  }
  return {};
}

bool hex_value(char c, uint8_t* v) {
  if (c >= '0' && c <= '9') *v = static_cast<uint8_t>(c - '0');
  else if (c >= 'a' && c <= 'f') *v = static_cast<uint8_t>(c - 'a' + 10);
  else if (c >= 'A' && c <= 'F') *v = static_cast<uint8_t>(c - 'A' + 10);
  else return false;
  return true;
}

Status field_missing(const char* key) { return invalid_argument(std::string("field '") + key + "' is missing"); }

// A JSON integer as uint64_t, if it is one and not negative.
bool as_u64(const json& j, uint64_t* out) {
  if (j.is_number_unsigned()) {
    *out = j.get<uint64_t>();
    return true;
  }
  if (j.is_number_integer() && j.get<int64_t>() >= 0) {
    *out = static_cast<uint64_t>(j.get<int64_t>());
    return true;
  }
  return false;
}

Status fill_sockaddr(const std::string& path, struct sockaddr_un* addr) {
  if (path.empty()) return invalid_argument("the socket path is empty");
  if (path.size() >= sizeof(addr->sun_path)) {
    return invalid_argument("socket path " + path + " is " + std::to_string(path.size()) +
                            " bytes; the limit is " + std::to_string(sizeof(addr->sun_path) - 1));
  }
  if (path.find('\0') != std::string::npos) return invalid_argument("the socket path contains a NUL character");
  *addr = {};
  addr->sun_family = AF_UNIX;
  std::memcpy(addr->sun_path, path.data(), path.size());
  return {};
}

}  // namespace

void UniqueFd::reset(int fd) {
  if (fd_ >= 0 && fd_ != fd) ::close(fd_);
  fd_ = fd;
}

Status send_message(int sock, const json& body, std::span<const int> fds, int timeout_ms) {
  if (!body.is_object()) return invalid_argument("a message must be a JSON object, got " + type_name_of(body));
  if (fds.size() > kMaxFds) {
    return invalid_argument("a message carries at most " + std::to_string(kMaxFds) + " file descriptors, got " +
                            std::to_string(fds.size()));
  }
  for (int fd : fds) {
    if (fd < 0) return invalid_argument("cannot send file descriptor " + std::to_string(fd));
  }
  std::string text;
  if (body.contains("v")) {
    text = body.dump(-1, ' ', false, json::error_handler_t::replace);
  } else {
    json stamped = body;
    stamped["v"] = kVersion;
    text = stamped.dump(-1, ' ', false, json::error_handler_t::replace);
  }
  if (text.size() > kMaxMessage) {
    return resource_error("message of " + std::to_string(text.size()) + " bytes exceeds the " +
                          std::to_string(kMaxMessage) + "-byte limit");
  }
  const uint32_t n = static_cast<uint32_t>(text.size());
  uint8_t prefix[4] = {static_cast<uint8_t>(n), static_cast<uint8_t>(n >> 8), static_cast<uint8_t>(n >> 16),
                       static_cast<uint8_t>(n >> 24)};

  alignas(struct cmsghdr) unsigned char control[CMSG_SPACE(sizeof(int) * kMaxFds)];
  const Deadline deadline(timeout_ms);
  const size_t total = sizeof prefix + text.size();
  size_t sent = 0;
  bool fds_sent = fds.empty();
  while (sent < total) {
    struct iovec iov[2];
    int iovcnt = 0;
    if (sent < sizeof prefix) {
      iov[iovcnt].iov_base = prefix + sent;
      iov[iovcnt++].iov_len = sizeof prefix - sent;
      iov[iovcnt].iov_base = text.data();
      iov[iovcnt++].iov_len = text.size();
    } else {
      iov[iovcnt].iov_base = text.data() + (sent - sizeof prefix);
      iov[iovcnt++].iov_len = total - sent;
    }
    struct msghdr msg {};
    msg.msg_iov = iov;
    msg.msg_iovlen = static_cast<size_t>(iovcnt);
    if (!fds_sent) {
      // The descriptors ride with the first byte of the length prefix.
      std::memset(control, 0, sizeof control);
      msg.msg_control = control;
      msg.msg_controllen = CMSG_SPACE(sizeof(int) * fds.size());
      struct cmsghdr* c = CMSG_FIRSTHDR(&msg);
      c->cmsg_level = SOL_SOCKET;
      c->cmsg_type = SCM_RIGHTS;
      c->cmsg_len = CMSG_LEN(sizeof(int) * fds.size());
      std::memcpy(CMSG_DATA(c), fds.data(), sizeof(int) * fds.size());
    }
    ssize_t r = sendmsg(sock, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (r < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) {
        TM_ASSIGN_OR_RETURN(bool ready, wait_for(sock, POLLOUT, deadline));
        if (!ready) {
          return resource_error("timed out after " + std::to_string(timeout_ms) + " ms sending a message");
        }
        continue;
      }
      return io_error("sending a message", errno);
    }
    fds_sent = true;
    sent += static_cast<size_t>(r);
  }
  return {};
}

Status validate_request(const json& body) {
  TM_RETURN_IF_ERROR(check_version(body, "daemon"));
  return check_op(body);
}

Status validate_reply(const json& body) {
  TM_RETURN_IF_ERROR(check_version(body, "client"));
  TM_RETURN_IF_ERROR(check_op(body));
  auto ok = body.find("ok");
  if (ok == body.end() || !ok->is_boolean()) return corrupt("reply has no 'ok' true or false");
  if (!ok->get<bool>()) {
    auto error = body.find("error");
    if (error == body.end() || !error->is_string()) return corrupt("failed reply has no 'error' string");
  }
  return {};
}

Result<Message> recv_message(int sock, int timeout_ms, Kind kind) {
  const Deadline deadline(timeout_ms);
  Message m;
  uint8_t prefix[4];
  TM_RETURN_IF_ERROR(read_exact(sock, prefix, sizeof prefix, /*fds_allowed=*/true, /*started=*/false, &m.fds, deadline));
  const uint32_t n = uint32_t{prefix[0]} | uint32_t{prefix[1]} << 8 | uint32_t{prefix[2]} << 16 |
                     uint32_t{prefix[3]} << 24;
  if (n == 0) return corrupt("empty message (length 0)");
  if (n > kMaxMessage) {
    return resource_error("message of " + std::to_string(n) + " bytes exceeds the " + std::to_string(kMaxMessage) +
                          "-byte limit");
  }
  std::string text(n, '\0');
  TM_RETURN_IF_ERROR(
      read_exact(sock, reinterpret_cast<uint8_t*>(text.data()), n, /*fds_allowed=*/false, /*started=*/true, &m.fds,
                 deadline));
  const int depth = nesting_depth(text);
  if (depth > kMaxDepth) {
    return corrupt("message nests " + std::to_string(depth) + " levels deep; the limit is " +
                   std::to_string(kMaxDepth));
  }
  json body = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (body.is_discarded()) return corrupt("message body (" + std::to_string(n) + " bytes) is not valid JSON");
  TM_RETURN_IF_ERROR(kind == Kind::kRequest ? validate_request(body) : validate_reply(body));
  m.body = std::move(body);
  return m;
}

Result<Message> recv_reply(int sock, int timeout_ms) { return recv_message(sock, timeout_ms, Kind::kReply); }

Result<Message> call(int sock, const json& request, std::span<const int> fds, int timeout_ms) {
  TM_RETURN_IF_ERROR(send_message(sock, request, fds, timeout_ms));
  return await_reply(sock, timeout_ms);
}

Result<Message> await_reply(int sock, int timeout_ms) {
  TM_ASSIGN_OR_RETURN(Message reply, recv_reply(sock, timeout_ms));
  if (!reply.body["ok"].get<bool>()) {
    Code code = Code::kInternal;
    auto c = reply.body.find("code");
    if (c != reply.body.end() && c->is_string()) code = code_from_wire_name(c->get<std::string>());
    if (code == Code::kOk) code = Code::kInternal;
    return Status(code, reply.body["error"].get<std::string>());
  }
  return reply;
}

json make_request(const std::string& op, json fields) {
  json m = fields.is_object() ? std::move(fields) : json::object();
  m["v"] = kVersion;
  m["op"] = op;
  return m;
}

json ok_reply(json fields) {
  json m = fields.is_object() ? std::move(fields) : json::object();
  m["v"] = kVersion;
  m["op"] = kReplyOp;
  m["ok"] = true;
  return m;
}

json error_reply(const std::string& why) {
  return json{{"v", kVersion}, {"op", kReplyOp}, {"ok", false}, {"error", why}};
}

json error_reply(const Status& status) {
  json m = error_reply(status.ok() ? std::string("error reported without a reason") : status.message());
  m["code"] = code_wire_name(status.ok() ? Code::kInternal : status.code());
  return m;
}

namespace {
struct CodeName {
  Code code;
  const char* name;
};
constexpr CodeName kCodeNames[] = {
    {Code::kOk, "ok"},
    {Code::kInvalidArgument, "invalid_argument"},
    {Code::kNotFound, "not_found"},
    {Code::kIo, "io"},
    {Code::kCorrupt, "corrupt"},
    {Code::kUnsupported, "unsupported"},
    {Code::kSecurity, "security"},
    {Code::kBusy, "busy"},
    {Code::kResource, "resource"},
    {Code::kEnclaveFault, "enclave_fault"},
    {Code::kInternal, "internal"},
};
}  // namespace

const char* code_wire_name(Code code) {
  for (const auto& c : kCodeNames) {
    if (c.code == code) return c.name;
  }
  return "internal";
}

Code code_from_wire_name(const std::string& name) {
  for (const auto& c : kCodeNames) {
    if (name == c.name) return c.code;
  }
  return Code::kInternal;
}

Result<std::string> get_string(const json& body, const char* key) {
  if (!body.is_object()) return invalid_argument(std::string("cannot read field '") + key + "': not an object");
  auto it = body.find(key);
  if (it == body.end()) return field_missing(key);
  if (!it->is_string()) return invalid_argument(std::string("field '") + key + "' must be a string");
  const std::string& s = it->get_ref<const std::string&>();
  if (s.find('\0') != std::string::npos) {
    return invalid_argument(std::string("field '") + key + "' must not contain a NUL character");
  }
  return s;
}

Result<uint64_t> get_u64(const json& body, const char* key, uint64_t max) {
  if (!body.is_object()) return invalid_argument(std::string("cannot read field '") + key + "': not an object");
  auto it = body.find(key);
  if (it == body.end()) return field_missing(key);
  uint64_t v = 0;
  if (!as_u64(*it, &v) || v > max) {
    return invalid_argument(std::string("field '") + key + "' must be an unsigned integer <= " +
                            std::to_string(max));
  }
  return v;
}

Result<bool> get_bool(const json& body, const char* key) {
  if (!body.is_object()) return invalid_argument(std::string("cannot read field '") + key + "': not an object");
  auto it = body.find(key);
  if (it == body.end()) return field_missing(key);
  if (!it->is_boolean()) return invalid_argument(std::string("field '") + key + "' must be true or false");
  return it->get<bool>();
}

Result<std::vector<uint64_t>> get_u64_array(const json& body, const char* key, uint64_t max_value,
                                            size_t max_count) {
  if (!body.is_object()) return invalid_argument(std::string("cannot read field '") + key + "': not an object");
  auto it = body.find(key);
  if (it == body.end()) return field_missing(key);
  const Status bad = invalid_argument(std::string("field '") + key + "' must be an array of at most " +
                                      std::to_string(max_count) + " unsigned integers <= " +
                                      std::to_string(max_value));
  if (!it->is_array() || it->size() > max_count) return bad;
  std::vector<uint64_t> out;
  out.reserve(it->size());
  for (const json& e : *it) {
    uint64_t v = 0;
    if (!as_u64(e, &v) || v > max_value) return bad;
    out.push_back(v);
  }
  return out;
}

Result<std::vector<uint8_t>> get_hex(const json& body, const char* key, size_t bytes) {
  if (!body.is_object()) return invalid_argument(std::string("cannot read field '") + key + "': not an object");
  auto it = body.find(key);
  if (it == body.end()) return field_missing(key);
  const Status bad = invalid_argument(std::string("field '") + key + "' must be a hex string of " +
                                      std::to_string(2 * bytes) + " digits");
  if (!it->is_string()) return bad;
  const std::string& s = it->get_ref<const std::string&>();
  if (s.size() != 2 * bytes) return bad;
  std::vector<uint8_t> out(bytes);
  for (size_t i = 0; i < bytes; ++i) {
    uint8_t hi = 0, lo = 0;
    if (!hex_value(s[2 * i], &hi) || !hex_value(s[2 * i + 1], &lo)) return bad;
    out[i] = static_cast<uint8_t>(hi << 4 | lo);
  }
  return out;
}

Result<PeerCredentials> peer_credentials(int sock) {
  struct ucred cred {};
  socklen_t len = sizeof cred;
  if (getsockopt(sock, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) {
    return io_error("reading the peer's credentials (SO_PEERCRED)", errno);
  }
  if (len != sizeof cred) return internal_error("SO_PEERCRED returned " + std::to_string(len) + " bytes");
  return PeerCredentials{cred.pid, cred.uid, cred.gid};
}

Result<UniqueFd> listen_unix(const std::string& path, mode_t mode) {
  struct sockaddr_un addr {};
  TM_RETURN_IF_ERROR(fill_sockaddr(path, &addr));

  struct stat st {};
  if (lstat(path.c_str(), &st) == 0) {
    if (!S_ISSOCK(st.st_mode)) {
      return invalid_argument(path + " exists and is not a socket; refusing to replace it");
    }
    // A socket file: live if something accepts connections on it.
    UniqueFd probe(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
    if (!probe) return io_error("creating a socket", errno);
    if (connect(probe.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr) == 0 || errno == EAGAIN ||
        errno == EINPROGRESS) {
      return Status(Code::kBusy, "another teemated is already listening on " + path);
    }
    if (errno != ECONNREFUSED) return io_error("checking the existing socket " + path, errno);
    if (unlink(path.c_str()) != 0 && errno != ENOENT) return io_error("removing the stale socket " + path, errno);
  } else if (errno != ENOENT) {
    return io_error("checking " + path, errno);
  }

  UniqueFd fd(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd) return io_error("creating a socket", errno);
  if (bind(fd.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0) {
    if (errno == EADDRINUSE) {
      return Status(Code::kBusy, path + " appeared while binding (is another teemated starting?)");
    }
    return io_error("binding " + path, errno);
  }
  // Before listen() nobody can connect, so the mode is in force before the
  // first connection.
  if (chmod(path.c_str(), mode) != 0) {
    Status s = io_error("setting the mode of " + path, errno);
    unlink(path.c_str());
    return s;
  }
  if (listen(fd.get(), 64) != 0) {
    Status s = io_error("listening on " + path, errno);
    unlink(path.c_str());
    return s;
  }
  return fd;
}

Status check_socket_directory(const std::string& socket_path, uid_t uid, bool create) {
  const size_t slash = socket_path.find_last_of('/');
  const std::string dir = slash == std::string::npos ? "." : slash == 0 ? "/" : socket_path.substr(0, slash);
  if (create && mkdir(dir.c_str(), 0755) != 0 && errno != EEXIST) {
    return io_error("cannot create the socket directory " + dir, errno);
  }
  struct stat st {};
  if (lstat(dir.c_str(), &st) != 0) return io_error("socket directory " + dir, errno);
  if (!S_ISDIR(st.st_mode)) return Status(Code::kSecurity, "socket directory " + dir + " is not a directory (a symlink?)");
  char mode[8];
  std::snprintf(mode, sizeof mode, "%04o", static_cast<unsigned>(st.st_mode & 07777));
  if (st.st_uid != 0 && st.st_uid != uid) {
    return Status(Code::kSecurity, "socket directory " + dir + " belongs to uid " + std::to_string(st.st_uid) +
                                       ", neither root nor uid " + std::to_string(uid) +
                                       ": another user could have put a socket of theirs there");
  }
  if ((st.st_mode & (S_IWGRP | S_IWOTH)) && !(st.st_mode & S_ISVTX)) {
    return Status(Code::kSecurity, "socket directory " + dir + " (mode " + mode +
                                       ") is writable by others without the sticky bit");
  }
  return {};
}

Result<UniqueFd> connect_unix(const std::string& path) {
  struct sockaddr_un addr {};
  TM_RETURN_IF_ERROR(fill_sockaddr(path, &addr).with_context("cannot connect to teemated"));
  UniqueFd fd(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd) return io_error("creating a socket", errno);
  if (connect(fd.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0) {
    const int err = errno;
    std::string m = "cannot connect to teemated at " + path + ": " + strerror(err);
    if (err == ENOENT || err == ECONNREFUSED) return Status(Code::kNotFound, m + " (is the daemon running?)");
    if (err == EACCES) return Status(Code::kIo, m + " (is this user in the daemon's group?)");
    return Status(Code::kIo, m);
  }
  return fd;
}

}  // namespace teemate::protocol
