// The host side of the runtime's POSIX OCALLs (src/common/tm_posix.edl):
// each does the system call for the enclave in the calling process and
// returns the result or -errno. Runs on the thread that made the ECALL, so
// descriptors are that process's. Never interprets the data it moves.
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "tm_posix_u.h"

namespace {
int64_t result(int64_t r) { return r < 0 ? -static_cast<int64_t>(errno) : r; }
}  // namespace

int64_t tm_socket(int32_t domain, int32_t type, int32_t protocol) {
  return result(::socket(domain, type | SOCK_CLOEXEC, protocol));
}
int64_t tm_bind(int32_t fd, const uint8_t* addr, uint32_t addrlen) {
  return result(::bind(fd, reinterpret_cast<const sockaddr*>(addr), addrlen));
}
int64_t tm_listen(int32_t fd, int32_t backlog) { return result(::listen(fd, backlog)); }
int64_t tm_accept4(int32_t fd, uint8_t* addr, uint32_t cap, uint32_t* addrlen, int32_t flags) {
  socklen_t len = cap;
  const int64_t r = result(::accept4(fd, addr ? reinterpret_cast<sockaddr*>(addr) : nullptr, addr ? &len : nullptr,
                                     flags | SOCK_CLOEXEC));
  if (addrlen) *addrlen = addr ? len : 0;
  return r;
}
int64_t tm_connect(int32_t fd, const uint8_t* addr, uint32_t addrlen) {
  return result(::connect(fd, reinterpret_cast<const sockaddr*>(addr), addrlen));
}
int64_t tm_send(int32_t fd, const uint8_t* buf, uint64_t len, int32_t flags) {
  return result(::send(fd, buf, len, flags | MSG_NOSIGNAL));
}
int64_t tm_recv(int32_t fd, uint8_t* buf, uint64_t len, int32_t flags) { return result(::recv(fd, buf, len, flags)); }
int64_t tm_shutdown(int32_t fd, int32_t how) { return result(::shutdown(fd, how)); }
int64_t tm_close(int32_t fd) { return result(::close(fd)); }
int64_t tm_setsockopt(int32_t fd, int32_t level, int32_t name, const uint8_t* value, uint32_t len) {
  return result(::setsockopt(fd, level, name, value, len));
}
int64_t tm_getsockopt(int32_t fd, int32_t level, int32_t name, uint8_t* value, uint32_t cap, uint32_t* len) {
  socklen_t l = cap;
  const int64_t r = result(::getsockopt(fd, level, name, value, &l));
  if (len) *len = l;
  return r;
}
int64_t tm_getsockname(int32_t fd, uint8_t* addr, uint32_t cap, uint32_t* addrlen) {
  socklen_t l = cap;
  const int64_t r = result(::getsockname(fd, reinterpret_cast<sockaddr*>(addr), &l));
  if (addrlen) *addrlen = l;
  return r;
}
int64_t tm_getpeername(int32_t fd, uint8_t* addr, uint32_t cap, uint32_t* addrlen) {
  socklen_t l = cap;
  const int64_t r = result(::getpeername(fd, reinterpret_cast<sockaddr*>(addr), &l));
  if (addrlen) *addrlen = l;
  return r;
}
int64_t tm_fcntl(int32_t fd, int32_t cmd, int64_t arg) {
  if (cmd != F_GETFD && cmd != F_SETFD && cmd != F_GETFL && cmd != F_SETFL) return -EINVAL;
  return result(::fcntl(fd, cmd, static_cast<long>(arg)));
}

int64_t tm_poll(uint8_t* fds, uint64_t bytes, int32_t timeout_ms) {
  if (bytes % sizeof(pollfd)) return -EINVAL;
  return result(::poll(reinterpret_cast<pollfd*>(fds), bytes / sizeof(pollfd), timeout_ms));
}
