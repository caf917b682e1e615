/* Sockets for enclave programs over the runtime's typed OCALLs
 * (src/common/tm_posix.edl): socket, bind, listen, accept/accept4,
 * connect, send/recv (and sendto/recvfrom without an address), read/write
 * on sockets, poll, shutdown, close, get/setsockopt, getsockname,
 * getpeername, and fcntl's descriptor and status flags (O_NONBLOCK).
 * read, write, close and fcntl are posix_file.cpp's, which hands sockets
 * to the functions at the end of this file.
 * Only descriptors the enclave opened itself (socket, accept) are usable:
 * anything else, the host's stdio and its connection to teemated included,
 * is EBADF, so enclave code cannot close or write into its host's files. Every host answer is checked before use: counts within what
 * was asked, errno values in range, address lengths bounded, and poll gives
 * back only revents. The data is visible to the host: encrypt it (TLS)
 * where that matters. Nothing here contains a system call instruction.
 * Its <sys/...> headers are musl's (the enclave libc, -isystem), never
 * the host's glibc ones: they only declare what this file defines. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <poll.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "posix_call.h"
#include "runtime.h"
#include "tm_posix_t.h"

namespace {

using teemate::trts::host_call;
using teemate::trts::kMaxIo;
constexpr size_t kMaxAddr = 128;  // sizeof(struct sockaddr_storage)

bool valid_fd(int fd) {
  if (fd < 0 || !teemate::trts::fd_owned(fd)) {
    errno = EBADF;
    return false;
  }
  return true;
}

// Copies an address the host returned back to the caller's buffer, as
// accept/getsockname do: at most *len bytes, *len set to the full size.
void give_address(const uint8_t* got, uint32_t got_len, struct sockaddr* addr, socklen_t* len) {
  if (!addr || !len) return;
  const size_t n = got_len < *len ? got_len : *len;
  memcpy(addr, got, n < kMaxAddr ? n : kMaxAddr);
  *len = got_len;
}

using NameFn = int (*)(int64_t*, int32_t, uint8_t*, uint32_t, uint32_t*);
int name_call(NameFn fn, int fd, struct sockaddr* addr, socklen_t* len) {
  if (!valid_fd(fd)) return -1;
  if (!addr || !len) {
    errno = EFAULT;
    return -1;
  }
  uint8_t buf[kMaxAddr];
  uint32_t got = 0;
  if (host_call([&](int64_t* res) { return fn(res, fd, buf, sizeof buf, &got); }, 0) < 0) return -1;
  if (got > kMaxAddr) {
    errno = EIO;
    return -1;
  }
  give_address(buf, got, addr, len);
  return 0;
}

}  // namespace

extern "C" {

// Records a descriptor the host just opened for us; without room to record
// it, closes it again and fails with EMFILE.
static int adopt(long long fd) {
  if (fd < 0) return -1;
  const int e = teemate::trts::fd_own(static_cast<int>(fd));
  if (e) {
    // A number we already own (or stdio) is not ours to close.
    if (e == ENOMEM) {
      int64_t ignored = 0;
      (void)tm_close(&ignored, static_cast<int32_t>(fd));
    }
    errno = e == ENOMEM ? EMFILE : EIO;
    return -1;
  }
  return static_cast<int>(fd);
}

int socket(int domain, int type, int protocol) {
  return adopt(host_call([&](int64_t* res) { return tm_socket(res, domain, type, protocol); }, INT_MAX));
}

int bind(int fd, const struct sockaddr* addr, socklen_t len) {
  if (!valid_fd(fd)) return -1;
  if (!addr || len > kMaxAddr) {
    errno = addr ? EINVAL : EFAULT;
    return -1;
  }
  return static_cast<int>(host_call([&](int64_t* res) { return tm_bind(res, fd, reinterpret_cast<const uint8_t*>(addr), len); }, 0));
}

int listen(int fd, int backlog) {
  if (!valid_fd(fd)) return -1;
  return static_cast<int>(host_call([&](int64_t* res) { return tm_listen(res, fd, backlog); }, 0));
}

int accept4(int fd, struct sockaddr* addr, socklen_t* len, int flags) {
  if (!valid_fd(fd)) return -1;
  uint8_t buf[kMaxAddr];
  uint32_t got = 0;
  const long long nfd = host_call([&](int64_t* res) { return tm_accept4(res, fd, addr ? buf : nullptr, sizeof buf, &got, flags); }, INT_MAX);
  if (nfd < 0) return -1;
  if (addr && len) {
    if (got > kMaxAddr) got = kMaxAddr;
    give_address(buf, got, addr, len);
  }
  return adopt(nfd);
}
int accept(int fd, struct sockaddr* addr, socklen_t* len) { return accept4(fd, addr, len, 0); }

int connect(int fd, const struct sockaddr* addr, socklen_t len) {
  if (!valid_fd(fd)) return -1;
  if (!addr || len > kMaxAddr) {
    errno = addr ? EINVAL : EFAULT;
    return -1;
  }
  return static_cast<int>(host_call([&](int64_t* res) { return tm_connect(res, fd, reinterpret_cast<const uint8_t*>(addr), len); }, 0));
}

ssize_t send(int fd, const void* buf, size_t len, int flags) {
  if (!valid_fd(fd)) return -1;
  if (len > kMaxIo) len = kMaxIo;  // a short write, as POSIX allows
  return static_cast<ssize_t>(
      host_call([&](int64_t* res) { return tm_send(res, fd, static_cast<const uint8_t*>(buf), len, flags); }, static_cast<int64_t>(len)));
}

ssize_t recv(int fd, void* buf, size_t len, int flags) {
  if (!valid_fd(fd)) return -1;
  if (len && !buf) {
    errno = EFAULT;
    return -1;
  }
  if (len > kMaxIo) len = kMaxIo;
  // Through a bounce buffer: the stub copies back the whole capacity, and
  // recv must not write past the bytes it received.
  uint8_t* bounce = static_cast<uint8_t*>(malloc(len ? len : 1));
  if (!bounce) {
    errno = ENOMEM;
    return -1;
  }
  const long long n = host_call([&](int64_t* res) { return tm_recv(res, fd, bounce, len, flags); },
                                static_cast<int64_t>(len));
  if (n > 0) memcpy(buf, bounce, static_cast<size_t>(n));
  free(bounce);
  return static_cast<ssize_t>(n);
}

ssize_t sendto(int fd, const void* buf, size_t len, int flags, const struct sockaddr* addr, socklen_t alen) {
  if (addr || alen) {
    errno = EOPNOTSUPP;  // connected sockets only
    return -1;
  }
  return send(fd, buf, len, flags);
}

ssize_t recvfrom(int fd, void* buf, size_t len, int flags, struct sockaddr* addr, socklen_t* alen) {
  if (alen) *alen = 0;
  (void)addr;
  return recv(fd, buf, len, flags);
}


int shutdown(int fd, int how) {
  if (!valid_fd(fd)) return -1;
  return static_cast<int>(host_call([&](int64_t* res) { return tm_shutdown(res, fd, how); }, 0));
}


int setsockopt(int fd, int level, int name, const void* value, socklen_t len) {
  if (!valid_fd(fd)) return -1;
  if (len > 1024) {
    errno = EINVAL;
    return -1;
  }
  return static_cast<int>(
      host_call([&](int64_t* res) { return tm_setsockopt(res, fd, level, name, static_cast<const uint8_t*>(value), len); }, 0));
}

int getsockopt(int fd, int level, int name, void* value, socklen_t* len) {
  if (!valid_fd(fd)) return -1;
  if (!value || !len) {
    errno = EFAULT;
    return -1;
  }
  if (*len > 1024) *len = 1024;  // no option value is longer; the kernel truncates the same way
  // Through a bounce buffer: the stub returns the whole capacity, and only
  // the option's own bytes may reach the caller's memory.
  uint8_t bounce[1024];
  uint32_t got = 0;
  if (host_call([&](int64_t* res) { return tm_getsockopt(res, fd, level, name, bounce, *len, &got); }, 0) < 0) {
    return -1;
  }
  if (got > *len) {
    errno = EIO;  // the host claims more than the buffer it was given
    return -1;
  }
  memcpy(value, bounce, got);
  *len = got;
  return 0;
}

int getsockname(int fd, struct sockaddr* addr, socklen_t* len) { return name_call(tm_getsockname, fd, addr, len); }
int getpeername(int fd, struct sockaddr* addr, socklen_t* len) { return name_call(tm_getpeername, fd, addr, len); }


int poll(struct pollfd* fds, nfds_t nfds, int timeout) {
  if (nfds > 1024) {
    errno = EINVAL;
    return -1;
  }
  if (nfds && !fds) {
    errno = EFAULT;
    return -1;
  }
  struct pollfd copy[1024];
  memcpy(copy, fds, nfds * sizeof *fds);
  // Descriptors that are not ours are POLLNVAL here; the host never sees them.
  bool foreign[1024];
  for (nfds_t i = 0; i < nfds; ++i) {
    foreign[i] = copy[i].fd >= 0 && !teemate::trts::fd_owned(copy[i].fd);
    if (foreign[i]) copy[i].fd = -1;
  }
  const long long n = host_call(
      [&](int64_t* res) { return tm_poll(res, reinterpret_cast<uint8_t*>(copy), nfds * sizeof *fds, timeout); },
      static_cast<int64_t>(nfds));
  if (n < 0) return -1;
  // Only revents come back, limited to what poll can report for what was asked.
  long long ready = n;
  for (nfds_t i = 0; i < nfds; ++i) {
    if (foreign[i]) {
      fds[i].revents = POLLNVAL;
      ++ready;
    } else {
      fds[i].revents = static_cast<short>(copy[i].revents & (fds[i].events | POLLERR | POLLHUP | POLLNVAL));
    }
  }
  return static_cast<int>(ready > static_cast<long long>(nfds) ? static_cast<long long>(nfds) : ready);
}

}  // extern "C"

// ---- for the descriptor calls of posix_file.cpp ---------------------------
namespace teemate::trts {

long long socket_write(int fd, const void* buf, size_t len) {
  if (fd == 1 || fd == 2) {
    if (host_write(fd, buf, len) != TM_OK) {
      errno = EIO;
      return -1;
    }
    return static_cast<long long>(len);
  }
  return send(fd, buf, len, 0);
}

long long socket_read(int fd, void* buf, size_t len) { return recv(fd, buf, len, 0); }

int socket_close(int fd) {
  if (!valid_fd(fd)) return -1;
  // The descriptor is released whatever the host answers, as POSIX has it.
  const long long r = host_call([&](int64_t* res) { return tm_close(res, fd); }, 0);
  fd_disown(fd);
  return static_cast<int>(r);
}

int descriptor_fcntl(int fd, int cmd, long arg) {
  if (!valid_fd(fd)) return -1;
  if (cmd != F_GETFD && cmd != F_SETFD && cmd != F_GETFL && cmd != F_SETFL) {
    errno = EINVAL;
    return -1;
  }
  return static_cast<int>(host_call([&](int64_t* res) { return tm_fcntl(res, fd, cmd, arg); }, INT_MAX));
}

}  // namespace teemate::trts
