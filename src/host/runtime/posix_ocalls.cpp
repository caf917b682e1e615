// The host side of the runtime's POSIX OCALLs (src/common/tm_posix.edl):
// each does the system call for the enclave in the calling process and
// returns the result or -errno. Runs on the thread that made the ECALL, so
// descriptors are that process's. Never interprets the data it moves.
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <cstring>
#include <mutex>
#include <unordered_map>

#include <string_view>

#include "host/runtime/ocall_frame.h"
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

// ---- files ------------------------------------------------------------------
namespace {
int64_t stat_out(int r, const struct stat& st, uint8_t* out, uint32_t cap) {
  if (r < 0) return -static_cast<int64_t>(errno);
  static_assert(sizeof(struct stat) == 144, "x86-64 struct stat");
  if (cap < sizeof st) return -EINVAL;
  memcpy(out, &st, sizeof st);
  return 0;
}
}  // namespace

int64_t tm_open(const char* path, int32_t flags, uint32_t mode) {
  return result(::open(path, flags | O_CLOEXEC, static_cast<mode_t>(mode)));
}
int64_t tm_read(int32_t fd, uint8_t* buf, uint64_t len) { return result(::read(fd, buf, len)); }
int64_t tm_write(int32_t fd, const uint8_t* buf, uint64_t len) { return result(::write(fd, buf, len)); }
int64_t tm_pread(int32_t fd, uint8_t* buf, uint64_t len, int64_t offset) {
  return result(::pread(fd, buf, len, offset));
}
int64_t tm_pwrite(int32_t fd, const uint8_t* buf, uint64_t len, int64_t offset) {
  return result(::pwrite(fd, buf, len, offset));
}
int64_t tm_lseek(int32_t fd, int64_t offset, int32_t whence) { return result(::lseek(fd, offset, whence)); }
int64_t tm_fsync(int32_t fd, int32_t data_only) { return result(data_only ? ::fdatasync(fd) : ::fsync(fd)); }
int64_t tm_ftruncate(int32_t fd, int64_t length) { return result(::ftruncate(fd, length)); }
int64_t tm_fstat(int32_t fd, uint8_t* out, uint32_t cap) {
  struct stat st {};
  return stat_out(::fstat(fd, &st), st, out, cap);
}
int64_t tm_stat(const char* path, uint8_t* out, uint32_t cap, int32_t nofollow) {
  struct stat st {};
  return stat_out(nofollow ? ::lstat(path, &st) : ::stat(path, &st), st, out, cap);
}
int64_t tm_unlink(const char* path) { return result(::unlink(path)); }
int64_t tm_rename(const char* from, const char* to) { return result(::rename(from, to)); }
int64_t tm_mkdir(const char* path, uint32_t mode) { return result(::mkdir(path, static_cast<mode_t>(mode))); }
int64_t tm_rmdir(const char* path) { return result(::rmdir(path)); }
int64_t tm_access(const char* path, int32_t mode) { return result(::access(path, mode)); }
int64_t tm_getdents(int32_t fd, uint8_t* buf, uint64_t cap) {
  return result(::syscall(SYS_getdents64, fd, buf, cap));
}
int64_t tm_lock(int32_t fd, int32_t cmd, uint8_t* lock) {
  if (cmd != F_GETLK && cmd != F_SETLK && cmd != F_SETLKW && cmd != F_OFD_GETLK && cmd != F_OFD_SETLK &&
      cmd != F_OFD_SETLKW) {
    return -EINVAL;
  }
  static_assert(sizeof(struct flock) == 32, "x86-64 struct flock");
  return result(::fcntl(fd, cmd, reinterpret_cast<struct flock*>(lock)));
}

// ---- waiting (tm_wait / tm_wake in the enclave) --------------------------------
// A wake sequence per key (an enclave address, never dereferenced here), in
// buckets. Waiters of one bucket share a condition variable and recheck
// their own key. Only this process's threads meet here; the enclave bounds
// every wait, so wakes from other processes arrive by its re-polling.
namespace {
struct WaitBucket {
  std::mutex mu;
  std::condition_variable cv;
  std::unordered_map<uint64_t, uint64_t> seq;
};
constexpr size_t kWaitBuckets = 64;
WaitBucket& bucket_of(uint64_t key) {
  static WaitBucket buckets[kWaitBuckets];
  return buckets[(key >> 2) % kWaitBuckets];
}
}  // namespace

int64_t tm_futex_seq(uint64_t key) {
  WaitBucket& b = bucket_of(key);
  std::lock_guard lock(b.mu);
  auto it = b.seq.find(key);
  return it == b.seq.end() ? 0 : static_cast<int64_t>(it->second & INT64_MAX);
}

int64_t tm_futex_wait(uint64_t key, uint64_t seq, int64_t timeout_ns) {
  if (timeout_ns < 0) return -EINVAL;
  WaitBucket& b = bucket_of(key);
  std::unique_lock lock(b.mu);
  const auto changed = [&] {
    auto it = b.seq.find(key);
    return (it == b.seq.end() ? 0 : (it->second & INT64_MAX)) != seq;
  };
  if (b.cv.wait_for(lock, std::chrono::nanoseconds(timeout_ns), changed)) return 0;
  return -ETIMEDOUT;
}

int64_t tm_futex_wake(uint64_t key) {
  WaitBucket& b = bucket_of(key);
  {
    std::lock_guard lock(b.mu);
    ++b.seq[key];
  }
  b.cv.notify_all();
  return 0;
}

// ---- The runtime's console, clock and sleep ---------------------------------

int64_t tm_console_write(int32_t fd, const uint8_t* buf, uint64_t len) {
  if (fd != 1 && fd != 2) return -EBADF;
  if (!buf && len) return -EFAULT;
  const std::string_view text(reinterpret_cast<const char*>(buf), len);
  const teemate::host::ConsoleSink* sink = teemate::host::current_console_sink();
  if (sink && *sink) {
    (*sink)(fd, text);
    return static_cast<int64_t>(len);
  }
  size_t done = 0;
  while (done < text.size()) {
    const ssize_t n = ::write(fd, text.data() + done, text.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    done += static_cast<size_t>(n);
  }
  // What could not be written is dropped, as a closed terminal drops it:
  // the enclave's output never blocks or fails its caller.
  return static_cast<int64_t>(len);
}

int64_t tm_clock_ns(int32_t clock) {
  struct timespec ts {};
  if (::clock_gettime(static_cast<clockid_t>(clock), &ts) != 0) return -static_cast<int64_t>(errno);
  return static_cast<int64_t>(ts.tv_sec) * 1000000000ll + ts.tv_nsec;
}

int64_t tm_sleep_ns(uint64_t ns) {
  if (ns > 86400ull * 1000000000ull) return -EINVAL;
  struct timespec req {static_cast<time_t>(ns / 1000000000ull), static_cast<long>(ns % 1000000000ull)};
  struct timespec rem {};
  // A signal handler of the host process may interrupt it: sleep the rest.
  while (::nanosleep(&req, &rem) != 0 && errno == EINTR) req = rem;
  return 0;
}
