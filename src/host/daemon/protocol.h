// The teemated control protocol's wire layer: length-prefixed JSON messages
// with file descriptors passed by SCM_RIGHTS over a Unix stream socket
// (docs/daemon-protocol.md is the contract). No daemon logic lives here, and
// nothing here throws: every failure is a Status naming what was wrong.
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "teemate/status.h"

namespace teemate::protocol {

inline constexpr int kVersion = 1;               // the "v" of every message
inline constexpr uint32_t kMaxMessage = 65536;   // largest body N, in bytes
inline constexpr size_t kMaxFds = 8;             // descriptors per message
inline constexpr int kMaxDepth = 32;             // JSON nesting limit
inline constexpr const char* kReplyOp = "reply";  // the "op" of every reply

// Owns one file descriptor: closes it on destruction. Move-only.
class UniqueFd {
 public:
  UniqueFd() = default;
  explicit UniqueFd(int fd) : fd_(fd) {}
  UniqueFd(UniqueFd&& other) noexcept : fd_(other.release()) {}
  UniqueFd& operator=(UniqueFd&& other) noexcept {
    if (this != &other) reset(other.release());
    return *this;
  }
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;
  ~UniqueFd() { reset(); }

  int get() const { return fd_; }
  bool valid() const { return fd_ >= 0; }
  explicit operator bool() const { return valid(); }
  // Gives up ownership without closing; returns the descriptor (or -1).
  int release() {
    int fd = fd_;
    fd_ = -1;
    return fd;
  }
  // Closes the current descriptor (if any) and owns fd instead.
  void reset(int fd = -1);

 private:
  int fd_ = -1;
};

// One received message: its JSON object and the descriptors that came with
// it, in the order the sender listed them.
struct Message {
  nlohmann::json body;
  std::vector<UniqueFd> fds;
};

// What recv_message checks beyond framing and "v": a request needs a
// non-empty "op" string; a reply needs "op" (a string), "ok" (a bool) and,
// when "ok" is false, "error" (a string).
enum class Kind { kRequest, kReply };

// Sends one message: the 4-byte little-endian length, then the JSON body,
// with fds (at most kMaxFds) attached as SCM_RIGHTS to the sendmsg that
// carries the length prefix. body must be an object; if it has no "v", the
// current version is added on the wire. Loops on partial writes and EINTR,
// never raises SIGPIPE (MSG_NOSIGNAL), and on a non-blocking socket waits
// with poll() for at most timeout_ms (-1: forever). The caller keeps
// ownership of fds. After a failure part of a message may have been sent:
// close the connection.
Status send_message(int sock, const nlohmann::json& body, std::span<const int> fds = {},
                    int timeout_ms = -1);

// Receives exactly one message, waiting at most timeout_ms for all of it
// (-1: forever). Errors (after any of which the connection must be closed,
// since the stream's framing is lost; descriptors that did arrive are
// closed):
//   kNotFound  "peer closed the connection" (clean EOF before any byte)
//   kResource  "timed out after N ms waiting for a message" (nothing read),
//              "... in the middle of a message", "message of N bytes exceeds
//              the 65536-byte limit", more than kMaxFds descriptors,
//              truncated control data (MSG_CTRUNC)
//   kCorrupt   length 0, EOF mid-message, body not a JSON object, nesting
//              deeper than kMaxDepth, missing "v", missing/invalid "op",
//              descriptors that arrived with the body instead of the prefix
//   kUnsupported  "protocol version 7 not supported; this daemon speaks 1"
//   kIo        a system call failed
Result<Message> recv_message(int sock, int timeout_ms = -1, Kind kind = Kind::kRequest);
// recv_message(sock, timeout_ms, Kind::kReply).
Result<Message> recv_reply(int sock, int timeout_ms = -1);

// The checks recv_message applies to a parsed body, for callers that build
// or relay bodies themselves. They never look at fields beyond the header.
Status validate_request(const nlohmann::json& body);
Status validate_reply(const nlohmann::json& body);

// Client side of one exchange: sends request (and fds), receives the reply.
// A reply with "ok": false becomes a Status carrying the reply's "error"
// (and its "code", when it names one of ours); the reply is returned only
// when "ok" is true.
Result<Message> call(int sock, const nlohmann::json& request, std::span<const int> fds = {},
                     int timeout_ms = -1);
// The receiving half of call(), for a client that pipelines: the daemon
// answers a connection's requests in the order they were sent.
Result<Message> await_reply(int sock, int timeout_ms = -1);

// {"v": 1, "op": op, ...fields}. fields must be an object or null.
nlohmann::json make_request(const std::string& op, nlohmann::json fields = nlohmann::json::object());
// {"v": 1, "op": "reply", "ok": true, ...fields}. fields must be an object
// or null; its "v", "op" and "ok" are overwritten.
nlohmann::json ok_reply(nlohmann::json fields = nlohmann::json::object());
// {"v": 1, "op": "reply", "ok": false, "error": why}.
nlohmann::json error_reply(const std::string& why);
// As above, with "code": the status code's wire name ("invalid_argument",
// "not_found", ...), so that call() can give the client the same Code.
nlohmann::json error_reply(const Status& status);
// The wire name of a code, and back (unknown names give Code::kInternal).
const char* code_wire_name(Code code);
Code code_from_wire_name(const std::string& name);

// Typed field accessors for request bodies. Each error is kInvalidArgument
// and names the field: "field 'tcs' is missing", "field 'tcs' must be an
// unsigned integer <= 1024".
Result<std::string> get_string(const nlohmann::json& body, const char* key);
Result<uint64_t> get_u64(const nlohmann::json& body, const char* key, uint64_t max);
Result<bool> get_bool(const nlohmann::json& body, const char* key);
// An array of at most max_count unsigned integers, each <= max_value.
Result<std::vector<uint64_t>> get_u64_array(const nlohmann::json& body, const char* key,
                                            uint64_t max_value, size_t max_count);
// A hex string of exactly `bytes` bytes (2 * bytes digits, either case),
// decoded: for MRENCLAVE, get_hex(body, "mrenclave", 32).
Result<std::vector<uint8_t>> get_hex(const nlohmann::json& body, const char* key, size_t bytes);

// The credentials of the process at the other end of a connected Unix
// socket (SO_PEERCRED: as of connect() or socketpair()).
struct PeerCredentials {
  pid_t pid = 0;
  uid_t uid = 0;
  gid_t gid = 0;
};
Result<PeerCredentials> peer_credentials(int sock);

// Creates a listening Unix stream socket at path (SOCK_CLOEXEC, backlog 64)
// whose file has the given mode. An existing socket file is replaced only if
// nothing accepts connections on it; a live listener (another daemon) or a
// file that is not a socket is refused with an error naming it. The mode is
// set before listen(), so no connection is accepted under a looser mode.
Result<UniqueFd> listen_unix(const std::string& path, mode_t mode = 0660);

// Is the directory holding `socket_path` safe to trust for a socket of
// `uid`'s? It must be owned by root or `uid`, and anyone else able to write
// in it must be kept from renaming or removing others' files (the sticky
// bit), else another user could put a socket of theirs in our place. With
// `create`, a missing directory (only the last component) is made 0755.
// kSecurity names the directory, its owner and mode.
Status check_socket_directory(const std::string& socket_path, uid_t uid, bool create);

// Connects to the daemon's socket (SOCK_CLOEXEC). A missing socket or one
// nobody listens on is kNotFound ("cannot connect to teemated at PATH: No
// such file or directory (is the daemon running?)"); other failures kIo.
Result<UniqueFd> connect_unix(const std::string& path);

}  // namespace teemate::protocol
