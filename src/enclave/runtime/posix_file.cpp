/* Files for enclave programs over the runtime's typed OCALLs
 * (src/common/tm_posix.edl), seen through the measured mounts (mounts.cpp):
 * open/openat/creat, read/write, pread/pwrite, lseek, fsync/fdatasync,
 * ftruncate, fstat/stat/lstat, unlink, rename, mkdir/rmdir, access,
 * opendir/readdir/closedir, fcntl (flags and record locks), and the
 * descriptor calls shared with sockets (read, write, close, fcntl).
 *   untrusted mounts: the host's files as they are, in clear both ways.
 *   trusted mounts:   read-only; a file is read whole at open, and its size
 *                     and SHA-256 must be the manifest's, or open fails with
 *                     EACCES; reads are served from that verified copy.
 *   protected mounts: encrypted and authenticated (protected_file.cpp); a
 *                     file is decrypted and verified whole at open (EIO if
 *                     any check fails), edited in enclave memory and
 *                     encrypted back at fsync and close.
 * Every host answer is checked (counts, errno values, record lengths)
 * before use; only descriptors the enclave opened are usable. A file's
 * state lives in the calling process's memory. Nothing here contains a
 * system call instruction; its <sys/...> headers are musl's. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "mbedtls/sha256.h"
#include "mounts.h"
#include "posix_call.h"
#include "protected_file.h"
#include "runtime.h"
#include "tm_posix_t.h"

namespace teemate::trts {
namespace {

struct OpenFile {
  uint32_t type;     // abi::MountType
  int flags;         // the open flags
  tm_spinlock lock;  // offset (trusted files)
  uint64_t offset;
  uint8_t* data;     // trusted: the verified contents
  uint64_t size;
  ProtectedFile* prot;  // protected: the decrypted contents
  char* path;           // protected: the enclave path it is bound to (rename rebinds)
  bool directory;
};

bool in_memory(const OpenFile* f) { return !f->directory && (f->type == abi::kMountTrusted || f->prot); }
uint64_t memory_size(const OpenFile* f) { return f->prot ? pf_size(f->prot) : f->size; }

int fail(int e) {
  errno = e;
  return -1;
}

ResolvedPath* resolve(const char* path) {
  auto* r = static_cast<ResolvedPath*>(malloc(sizeof(ResolvedPath)));
  if (!r) {
    errno = ENOMEM;
    return nullptr;
  }
  const int e = resolve_path(path, r);
  if (e) {
    free(r);
    errno = e;
    return nullptr;
  }
  return r;
}

// The file state of an owned descriptor; EBADF otherwise. `*file` is null
// for a socket.
bool lookup(int fd, OpenFile** file) {
  void* f = nullptr;
  if (fd < 0 || !fd_lookup(fd, &f)) {
    errno = EBADF;
    return false;
  }
  *file = static_cast<OpenFile*>(f);
  return true;
}

void close_host(int fd) {
  int64_t ignored = 0;
  (void)tm_close(&ignored, fd);
}

// Reads a trusted file whole through `fd` and checks it against the
// manifest. 0 or an errno.
int load_trusted(int fd, const abi::ManifestFile& want, OpenFile* f) {
  if (want.size > (uint64_t{1} << 40)) return EFBIG;
  uint8_t* data = static_cast<uint8_t*>(malloc(want.size ? want.size : 1));
  if (!data) return ENOMEM;
  uint64_t got = 0;
  while (got < want.size) {
    const uint64_t n = want.size - got < kMaxIo ? want.size - got : kMaxIo;
    const long long r = host_call([&](int64_t* res) { return tm_pread(res, fd, data + got, n, static_cast<int64_t>(got)); },
                                  static_cast<int64_t>(n));
    if (r <= 0) {
      free(data);
      return r < 0 ? errno : EACCES;  // shorter than measured
    }
    got += static_cast<uint64_t>(r);
  }
  uint8_t extra = 0;
  const long long more = host_call([&](int64_t* res) { return tm_pread(res, fd, &extra, 1, static_cast<int64_t>(got)); }, 1);
  uint8_t digest[32];
  if (more != 0 || mbedtls_sha256_ret(data, want.size, digest, 0) != 0 || memcmp(digest, want.sha256, 32) != 0) {
    free(data);
    return EACCES;  // longer than measured, or other bytes
  }
  f->data = data;
  f->size = want.size;
  return 0;
}

bool writes(int flags) { return (flags & O_ACCMODE) != O_RDONLY || (flags & (O_CREAT | O_TRUNC)); }

int open_resolved(const ResolvedPath& r, int flags, mode_t mode) {
  const bool trusted = r.type == abi::kMountTrusted;
  const bool prot = r.type == abi::kMountProtected;
  if (trusted && writes(flags)) return fail(EROFS);
  auto* f = static_cast<OpenFile*>(calloc(1, sizeof(OpenFile)));
  if (!f) return fail(ENOMEM);
  f->type = r.type;
  f->flags = flags;
  f->lock = TM_SPINLOCK_INIT;
  int host_flags = trusted ? (O_RDONLY | O_NONBLOCK | (flags & (O_DIRECTORY | O_NOFOLLOW))) : flags;
  if (prot) {
    // The enclave reads what it writes back, truncates and appends itself.
    host_flags = (flags & ~(O_ACCMODE | O_TRUNC | O_APPEND | O_NONBLOCK)) | (writes(flags) ? O_RDWR : O_RDONLY);
  }
  const long long fd = host_call([&](int64_t* res) { return tm_open(res, r.host_path, host_flags, mode); }, INT_MAX);
  if (fd < 0) {
    free(f);
    return -1;
  }
  // Recorded as ours before the enclave does anything with it: a number we
  // already own (another file's) or stdio is refused untouched and not
  // closed (review defect: a host handing out fd 1 or another file's fd got
  // a protected header, or plaintext, written there).
  const int hfd = static_cast<int>(fd);
  if (prot && !(f->path = strdup(r.enclave_path))) {
    close_host(hfd);
    free(f);
    return fail(ENOMEM);
  }
  const int e_own = fd_own(hfd, f);
  if (e_own) {
    if (e_own == ENOMEM) close_host(hfd);
    free(f->path);
    free(f);
    return fail(e_own == ENOMEM ? EMFILE : EIO);
  }
  auto give_up = [&](int e) {
    fd_disown(hfd);
    close_host(hfd);
    free(f->data);
    pf_free(f->prot);
    free(f->path);
    free(f);
    return fail(e);
  };
  uint8_t st[144];
  const long long s = host_call([&](int64_t* res) { return tm_fstat(res, hfd, st, sizeof st); }, 0);
  struct stat sb;
  memcpy(&sb, st, sizeof sb < sizeof st ? sizeof sb : sizeof st);
  f->directory = s == 0 && S_ISDIR(sb.st_mode);
  // A path that ends in '/' names a directory; a listed trusted file must
  // not turn into one; trusted and protected data come from regular files
  // (review defects).
  if (r.trailing_slash && !f->directory) return give_up(ENOTDIR);
  if (trusted && f->directory && r.trusted) return give_up(EACCES);
  if ((trusted || prot) && !f->directory && (s != 0 || !S_ISREG(sb.st_mode))) return give_up(EACCES);
  if ((trusted || prot) && !f->directory) {
    const bool can_write = writes(flags);
    int e = prot ? pf_open(hfd, r.enclave_path, can_write && (flags & (O_CREAT | O_TRUNC)),
                           can_write && (flags & O_TRUNC), &f->prot)
                 : r.trusted ? load_trusted(hfd, *r.trusted, f) : EACCES;
    // A new or truncated protected file gets its header now, so that it is
    // a valid (empty) file for stat and other opens at once (review defect).
    if (!e && prot && can_write) e = pf_flush(f->prot, hfd);
    if (e) return give_up(e);
  }
  return hfd;
}

long long io_read(int fd, OpenFile* f, void* buf, size_t len, int64_t at) {
  if (len && !buf) return fail(EFAULT);
  if (f->directory) return fail(EISDIR);
  if ((f->flags & O_ACCMODE) == O_WRONLY) return fail(EBADF);
  if (in_memory(f)) {
    tm_spin_lock(&f->lock);
    const uint64_t from = at >= 0 ? static_cast<uint64_t>(at) : f->offset;
    uint64_t n;
    if (f->prot) {
      n = pf_read(f->prot, buf, len, from);
    } else {
      n = from >= f->size ? 0 : (f->size - from < len ? f->size - from : len);
      if (n) memcpy(buf, f->data + from, n);
    }
    if (at < 0) f->offset = from + n;
    tm_spin_unlock(&f->lock);
    return static_cast<long long>(n);
  }
  if (len > kMaxIo) len = kMaxIo;
  // Through a bounce buffer: the stub copies back the whole capacity.
  uint8_t* bounce = static_cast<uint8_t*>(malloc(len ? len : 1));
  if (!bounce) return fail(ENOMEM);
  const long long n = host_call(
      [&](int64_t* res) {
        return at >= 0 ? tm_pread(res, fd, bounce, len, at) : tm_read(res, fd, bounce, len);
      },
      static_cast<int64_t>(len));
  if (n > 0) memcpy(buf, bounce, static_cast<size_t>(n));
  free(bounce);
  return n;
}

long long io_write(int fd, OpenFile* f, const void* buf, size_t len, int64_t at) {
  if (len && !buf) return fail(EFAULT);
  if (f->directory) return fail(EISDIR);
  if (f->type == abi::kMountTrusted || (f->flags & O_ACCMODE) == O_RDONLY) return fail(EBADF);
  if (f->prot) {
    tm_spin_lock(&f->lock);
    const uint64_t to = (f->flags & O_APPEND) ? pf_size(f->prot) : at >= 0 ? static_cast<uint64_t>(at) : f->offset;
    const int e = pf_write(f->prot, buf, len, to);
    if (!e && at < 0) f->offset = to + len;
    tm_spin_unlock(&f->lock);
    return e ? fail(e) : static_cast<long long>(len);
  }
  if (len > kMaxIo) len = kMaxIo;  // a short write, as POSIX allows
  const uint8_t* p = static_cast<const uint8_t*>(buf);
  return host_call(
      [&](int64_t* res) { return at >= 0 ? tm_pwrite(res, fd, p, len, at) : tm_write(res, fd, p, len); },
      static_cast<int64_t>(len));
}

int stat_into(long long r, const uint8_t* raw, struct stat* out) {
  if (r < 0) return -1;
  memcpy(out, raw, sizeof *out);
  return 0;
}

// Path calls that only untrusted mounts allow (changes to the file system).
template <typename F>
int mutate(const char* path, F call) {
  ResolvedPath* r = resolve(path);
  if (!r) return -1;
  int rc;
  if (r->type == abi::kMountTrusted) rc = fail(EROFS);
  else if (r->at_mount_root) rc = fail(EBUSY);  // a mount point stays
  else rc = static_cast<int>(host_call([&](int64_t* res) { return call(res, r->host_path); }, 0));
  free(r);
  return rc;
}

// A protected file is bound to its enclave path: rename it on the host,
// then open it there (checked against the old path) and bind it to the new
// one. A failed host rename changes nothing; a crash between the two steps
// leaves a file that verifies under neither name (EIO), never one that
// verifies with other contents.
int rename_protected(const ResolvedPath& from, const ResolvedPath& to) {
  uint8_t st[144];
  const long long s = host_call([&](int64_t* res) { return tm_stat(res, from.host_path, st, sizeof st, 1); }, 0);
  if (s < 0) return -1;
  struct stat sb;
  memcpy(&sb, st, sizeof sb);
  if (S_ISDIR(sb.st_mode)) return fail(EXDEV);  // its files are bound to their paths: move them one by one
  if (host_call([&](int64_t* res) { return tm_rename(res, from.host_path, to.host_path); }, 0) < 0) return -1;
  if (!S_ISREG(sb.st_mode)) return 0;
  auto* moved = static_cast<ResolvedPath*>(malloc(sizeof(ResolvedPath)));
  if (!moved) return fail(ENOMEM);
  *moved = from;
  memcpy(moved->host_path, to.host_path, sizeof moved->host_path);
  const int fd = open_resolved(*moved, O_RDWR, 0);
  free(moved);
  if (fd < 0) return -1;
  OpenFile* f = nullptr;
  int e = lookup(fd, &f) && f && f->prot ? pf_rebind(f->prot, to.enclave_path) : EBADF;
  if (!e) e = pf_flush(f->prot, fd);
  if (close(fd) != 0 && !e) e = errno;
  if (e) return fail(e);
  // This process's other open descriptors of the file write back later:
  // bound to the new path too, or their flush would undo the rebinding
  // (review defect). Other processes' opens are not known here.
  struct Rebind {
    const char* from;
    const char* to;
    int error;
  } rb{from.enclave_path, to.enclave_path, 0};
  fd_for_each_file(
      [](void* file, void* arg) {
        auto* o = static_cast<OpenFile*>(file);
        auto* b = static_cast<Rebind*>(arg);
        if (!o->prot || !o->path || strcmp(o->path, b->from) != 0) return;
        char* copy = strdup(b->to);
        if (!copy) {
          b->error = ENOMEM;
          return;
        }
        free(o->path);
        o->path = copy;
        pf_rebind(o->prot, b->to);
      },
      &rb);
  return rb.error ? fail(rb.error) : 0;
}

}  // namespace
}  // namespace teemate::trts

using namespace teemate;
using namespace teemate::trts;

// musl declares DIR as an incomplete struct __dirstream: ours.
struct __dirstream {
  int fd;
  uint32_t pos, len;
  struct dirent entry;
  uint8_t buf[4096];
};

extern "C" {

int open(const char* path, int flags, ...) {
  mode_t mode = 0;
  if (flags & (O_CREAT | O_TMPFILE)) {
    va_list ap;
    va_start(ap, flags);
    mode = va_arg(ap, mode_t);
    va_end(ap);
  }
  ResolvedPath* r = resolve(path);
  if (!r) return -1;
  const int fd = open_resolved(*r, flags, mode);
  free(r);
  return fd;
}

int openat(int dirfd, const char* path, int flags, ...) {
  mode_t mode = 0;
  if (flags & (O_CREAT | O_TMPFILE)) {
    va_list ap;
    va_start(ap, flags);
    mode = va_arg(ap, mode_t);
    va_end(ap);
  }
  // Only AT_FDCWD or an absolute path: the enclave has no directory handles.
  if (dirfd != AT_FDCWD && (!path || path[0] != '/')) return fail(dirfd < 0 ? EBADF : ENOSYS);
  return open(path, flags, mode);
}

int creat(const char* path, mode_t mode) { return open(path, O_CREAT | O_WRONLY | O_TRUNC, mode); }

ssize_t read(int fd, void* buf, size_t len) {
  OpenFile* f;
  if (!lookup(fd, &f)) return -1;
  if (!f) return static_cast<ssize_t>(socket_read(fd, buf, len));
  return static_cast<ssize_t>(io_read(fd, f, buf, len, -1));
}

ssize_t write(int fd, const void* buf, size_t len) {
  if (fd == 1 || fd == 2) return static_cast<ssize_t>(socket_write(fd, buf, len));
  OpenFile* f;
  if (!lookup(fd, &f)) return -1;
  if (!f) return static_cast<ssize_t>(socket_write(fd, buf, len));
  return static_cast<ssize_t>(io_write(fd, f, buf, len, -1));
}

ssize_t pread(int fd, void* buf, size_t len, off_t offset) {
  OpenFile* f;
  if (!lookup(fd, &f)) return -1;
  if (!f) return fail(ESPIPE);
  if (offset < 0) return fail(EINVAL);
  return static_cast<ssize_t>(io_read(fd, f, buf, len, offset));
}

ssize_t pwrite(int fd, const void* buf, size_t len, off_t offset) {
  OpenFile* f;
  if (!lookup(fd, &f)) return -1;
  if (!f) return fail(ESPIPE);
  if (offset < 0) return fail(EINVAL);
  return static_cast<ssize_t>(io_write(fd, f, buf, len, offset));
}

off_t lseek(int fd, off_t offset, int whence) {
  OpenFile* f;
  if (!lookup(fd, &f)) return -1;
  if (!f) return fail(ESPIPE);
  if (!in_memory(f)) {
    return static_cast<off_t>(host_call([&](int64_t* res) { return tm_lseek(res, fd, offset, whence); }, INT64_MAX));
  }
  tm_spin_lock(&f->lock);
  const int64_t base = whence == SEEK_SET ? 0 : whence == SEEK_CUR ? static_cast<int64_t>(f->offset)
                                              : whence == SEEK_END ? static_cast<int64_t>(memory_size(f)) : -1;
  int64_t to = -1;
  if (base < 0 || __builtin_add_overflow(base, static_cast<int64_t>(offset), &to)) to = -1;
  if (to >= 0) f->offset = static_cast<uint64_t>(to);
  tm_spin_unlock(&f->lock);
  return to >= 0 ? static_cast<off_t>(to) : fail(EINVAL);
}

int close(int fd) {
  OpenFile* f;
  if (!lookup(fd, &f)) return -1;
  if (!f) return socket_close(fd);
  // A protected file's changes go back first; an error is the close's.
  const int flushed = f->prot && writes(f->flags) ? pf_flush(f->prot, fd) : 0;
  const long long r = host_call([&](int64_t* res) { return tm_close(res, fd); }, 0);
  fd_disown(fd);
  free(f->data);
  pf_free(f->prot);
  free(f->path);
  free(f);
  if (flushed) return fail(flushed);
  return static_cast<int>(r);
}

int fsync(int fd) {
  OpenFile* f;
  if (!lookup(fd, &f)) return -1;
  if (!f) return fail(EINVAL);
  if (f->type == abi::kMountTrusted) return 0;
  if (f->prot && writes(f->flags)) {
    if (const int e = pf_flush(f->prot, fd)) return fail(e);
  }
  return static_cast<int>(host_call([&](int64_t* res) { return tm_fsync(res, fd, 0); }, 0));
}

int fdatasync(int fd) {
  OpenFile* f;
  if (!lookup(fd, &f)) return -1;
  if (!f) return fail(EINVAL);
  if (f->type == abi::kMountTrusted) return 0;
  if (f->prot && writes(f->flags)) {
    if (const int e = pf_flush(f->prot, fd)) return fail(e);
  }
  return static_cast<int>(host_call([&](int64_t* res) { return tm_fsync(res, fd, 1); }, 0));
}

int ftruncate(int fd, off_t length) {
  OpenFile* f;
  if (!lookup(fd, &f)) return -1;
  if (!f || f->directory) return fail(EINVAL);
  if (length < 0) return fail(EINVAL);
  if (f->type == abi::kMountTrusted || (f->flags & O_ACCMODE) == O_RDONLY) return fail(EBADF);
  if (f->prot) {
    tm_spin_lock(&f->lock);
    const int e = pf_truncate(f->prot, static_cast<uint64_t>(length));
    tm_spin_unlock(&f->lock);
    return e ? fail(e) : 0;
  }
  return static_cast<int>(host_call([&](int64_t* res) { return tm_ftruncate(res, fd, length); }, 0));
}

int fstat(int fd, struct stat* st) {
  if (!st) return fail(EFAULT);
  OpenFile* f;
  if (!lookup(fd, &f)) return -1;
  uint8_t raw[144];
  if (stat_into(host_call([&](int64_t* res) { return tm_fstat(res, fd, raw, sizeof raw); }, 0), raw, st) < 0) return -1;
  if (f && in_memory(f)) {
    st->st_size = static_cast<off_t>(memory_size(f));  // the verified size, whatever the host says
    st->st_blocks = static_cast<blkcnt_t>((memory_size(f) + 511) / 512);
    if (f->type == abi::kMountTrusted) st->st_mode = (st->st_mode & ~0222u);
  }
  return 0;
}

static int stat_path(const char* path, struct stat* st, int nofollow) {
  if (!st) return fail(EFAULT);
  ResolvedPath* r = resolve(path);
  if (!r) return -1;
  uint8_t raw[144];
  int rc = stat_into(host_call([&](int64_t* res) { return tm_stat(res, r->host_path, raw, sizeof raw, nofollow); }, 0), raw, st);
  if (rc == 0 && r->type == abi::kMountTrusted && !S_ISDIR(st->st_mode)) {
    if (!r->trusted) rc = fail(EACCES);
    else st->st_size = static_cast<off_t>(r->trusted->size);
  }
  if (rc == 0 && r->type == abi::kMountProtected && S_ISREG(st->st_mode)) {
    // The size is the verified plaintext's: open (and so check) the file.
    const int fd = open_resolved(*r, O_RDONLY, 0);
    if (fd < 0 || fstat(fd, st) != 0) rc = -1;
    if (fd >= 0) {
      const int saved = errno;
      close(fd);
      errno = saved;
    }
  }
  free(r);
  return rc;
}

int stat(const char* path, struct stat* st) { return stat_path(path, st, 0); }
int lstat(const char* path, struct stat* st) { return stat_path(path, st, 1); }

int access(const char* path, int mode) {
  ResolvedPath* r = resolve(path);
  if (!r) return -1;
  int rc;
  struct stat sb;
  if (r->type == abi::kMountTrusted && (mode & W_OK)) rc = fail(EROFS);
  else if (r->type == abi::kMountTrusted && !r->trusted) rc = stat_path(path, &sb, 0);  // EACCES unless a directory
  else rc = static_cast<int>(host_call([&](int64_t* res) { return tm_access(res, r->host_path, mode); }, 0));
  free(r);
  return rc;
}

int unlink(const char* path) {
  return mutate(path, [](int64_t* res, const char* host) { return tm_unlink(res, host); });
}

int rmdir(const char* path) {
  return mutate(path, [](int64_t* res, const char* host) { return tm_rmdir(res, host); });
}

int mkdir(const char* path, mode_t mode) {
  return mutate(path, [mode](int64_t* res, const char* host) { return tm_mkdir(res, host, mode); });
}

int rename(const char* from, const char* to) {
  ResolvedPath* a = resolve(from);
  if (!a) return -1;
  ResolvedPath* b = resolve(to);
  if (!b) {
    free(a);
    return -1;
  }
  int rc;
  if (a->type == abi::kMountTrusted || b->type == abi::kMountTrusted) rc = fail(EROFS);
  else if ((a->type == abi::kMountProtected) != (b->type == abi::kMountProtected)) rc = fail(EXDEV);
  else if (a->at_mount_root || b->at_mount_root) rc = fail(EBUSY);
  else if (a->type == abi::kMountProtected) rc = rename_protected(*a, *b);
  else rc = static_cast<int>(host_call([&](int64_t* res) { return tm_rename(res, a->host_path, b->host_path); }, 0));
  free(a);
  free(b);
  return rc;
}

int fcntl(int fd, int cmd, ...) {
  va_list ap;
  va_start(ap, cmd);
  void* ptr = nullptr;
  long arg = 0;
  if (cmd == F_GETLK || cmd == F_SETLK || cmd == F_SETLKW || cmd == F_OFD_GETLK || cmd == F_OFD_SETLK ||
      cmd == F_OFD_SETLKW) {
    ptr = va_arg(ap, void*);
  } else if (cmd == F_SETFD || cmd == F_SETFL) {
    arg = va_arg(ap, long);
  }
  va_end(ap);
  OpenFile* f;
  if (!lookup(fd, &f)) return -1;
  if (f && in_memory(f) && (cmd == F_GETFL || cmd == F_SETFL)) {
    // Status flags of trusted and protected files are the enclave's: the
    // host descriptor never gets O_APPEND (its pwrite would then append the
    // encrypted chunks instead of writing them in place: review defect).
    if (cmd == F_GETFL) return f->flags & ~(O_CREAT | O_EXCL | O_TRUNC | O_NOCTTY);
    tm_spin_lock(&f->lock);
    f->flags = (f->flags & ~(O_APPEND | O_NONBLOCK)) | (static_cast<int>(arg) & (O_APPEND | O_NONBLOCK));
    tm_spin_unlock(&f->lock);
    return 0;
  }
  if (cmd == F_SETFL && f && !in_memory(f)) {
    const int r = descriptor_fcntl(fd, cmd, arg);
    if (r == 0) f->flags = (f->flags & ~(O_APPEND | O_NONBLOCK)) | (static_cast<int>(arg) & (O_APPEND | O_NONBLOCK));
    return r;
  }
  const bool lock_cmd = cmd == F_GETLK || cmd == F_SETLK || cmd == F_SETLKW || cmd == F_OFD_GETLK ||
                        cmd == F_OFD_SETLK || cmd == F_OFD_SETLKW;
  if (!lock_cmd) return descriptor_fcntl(fd, cmd, arg);
  if (!f) return fail(EINVAL);  // record locks are for files
  if (!ptr || !tm_is_within_enclave(ptr, 32)) return fail(EFAULT);
  static_assert(sizeof(struct flock) == 32, "x86-64 struct flock");
  uint8_t lock[32];
  memcpy(lock, ptr, sizeof lock);
  const long long r = host_call([&](int64_t* res) { return tm_lock(res, fd, cmd, lock); }, 0);
  if (r == 0 && (cmd == F_GETLK || cmd == F_OFD_GETLK)) memcpy(ptr, lock, sizeof lock);
  return static_cast<int>(r);
}

DIR* opendir(const char* path) {
  const int fd = open(path, O_RDONLY | O_DIRECTORY);
  if (fd < 0) return nullptr;
  auto* d = static_cast<DIR*>(calloc(1, sizeof(DIR)));
  if (!d) {
    close(fd);
    errno = ENOMEM;
    return nullptr;
  }
  d->fd = fd;
  return d;
}

struct dirent* readdir(DIR* d) {
  if (!d) {
    errno = EBADF;
    return nullptr;
  }
  for (;;) {
    if (d->pos >= d->len) {
      const int saved = errno;
      const long long n = host_call([&](int64_t* res) { return tm_getdents(res, d->fd, d->buf, sizeof d->buf); },
                                    static_cast<int64_t>(sizeof d->buf));
      if (n <= 0) {
        if (n == 0) errno = saved;  // end of directory: errno unchanged
        return nullptr;
      }
      d->pos = 0;
      d->len = static_cast<uint32_t>(n);
    }
    // linux_dirent64: u64 ino, s64 off, u16 reclen, u8 type, name (NUL-terminated).
    const uint8_t* rec = d->buf + d->pos;
    const uint32_t left = d->len - d->pos;
    uint16_t reclen;
    if (left < 20 || (memcpy(&reclen, rec + 16, 2), reclen < 20) || reclen > left) {
      d->pos = d->len;
      errno = EIO;  // a malformed record from the host
      return nullptr;
    }
    d->pos += reclen;
    const char* name = reinterpret_cast<const char*>(rec + 19);
    const size_t max = reclen - 19u;
    const size_t n = strnlen(name, max);
    if (n == max || n == 0 || n >= sizeof d->entry.d_name || memchr(name, '/', n)) {
      errno = EIO;
      return nullptr;
    }
    memcpy(&d->entry.d_ino, rec, 8);
    memcpy(&d->entry.d_off, rec + 8, 8);
    d->entry.d_reclen = sizeof d->entry;
    d->entry.d_type = rec[18];
    memcpy(d->entry.d_name, name, n);
    d->entry.d_name[n] = 0;
    return &d->entry;
  }
}

int closedir(DIR* d) {
  if (!d) return fail(EBADF);
  const int rc = close(d->fd);
  free(d);
  return rc;
}

void rewinddir(DIR* d) {
  if (!d) return;
  (void)lseek(d->fd, 0, SEEK_SET);
  d->pos = d->len = 0;
}

int dirfd(DIR* d) { return d ? d->fd : fail(EBADF); }

}  // extern "C"
