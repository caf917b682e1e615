/* fopen, fdopen and fclose for enclave programs: musl FILE objects whose
 * read, write, seek and close hooks are the enclave's own file calls
 * (posix_file.cpp), so that every musl stdio function (fread, fgets,
 * fprintf, fseek, ftell, getline...) works on files of the enclave's
 * mounts. A FILE lives in the calling process's memory and is never put on
 * musl's global list of open files, which a process that dies would leave
 * dangling for its co-tenants: fflush(NULL) flushes stdout and stderr only,
 * and a program fcloses what it fopens. Never makes a system call. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "musl_file.h"

#define FILE_BUFSIZ 4096

static size_t file_read(struct musl_file* f, unsigned char* buf, size_t len) {
  /* musl's contract (src/stdio/__stdio_read.c): return len with anything
   * beyond it left in rpos..rend, or fewer with the buffer empty. */
  const size_t direct = len - (f->buf_size ? 1 : 0);
  ssize_t cnt;
  if (direct >= f->buf_size) {
    cnt = read(f->fd, buf, len);
  } else {
    cnt = read(f->fd, f->buf, f->buf_size);
    if (cnt > 0) {
      const size_t n = (size_t)cnt < len ? (size_t)cnt : len;
      memcpy(buf, f->buf, n);
      f->rpos = f->buf + n;
      f->rend = f->buf + cnt;
      return n;
    }
  }
  if (cnt <= 0) {
    f->flags |= cnt ? F_ERR : F_EOF;
    return 0;
  }
  return (size_t)cnt;
}

static int write_all(int fd, const unsigned char* p, size_t n) {
  while (n > 0) {
    const ssize_t w = write(fd, p, n);
    if (w <= 0) return -1;
    p += w;
    n -= (size_t)w;
  }
  return 0;
}

static size_t file_write(struct musl_file* f, const unsigned char* buf, size_t len) {
  const size_t pending = (size_t)(f->wpos - f->wbase);
  if ((pending && write_all(f->fd, f->wbase, pending) != 0) || (len && write_all(f->fd, buf, len) != 0)) {
    f->wpos = f->wbase = f->wend = 0;
    f->flags |= F_ERR;
    return 0;
  }
  f->wend = f->buf + f->buf_size;
  f->wpos = f->wbase = f->buf;
  return len;
}

static int64_t file_seek(struct musl_file* f, int64_t off, int whence) { return lseek(f->fd, off, whence); }

static int file_close(struct musl_file* f) { return close(f->fd); }

int fcntl(int, int, ...);

struct musl_file* fdopen(int fd, const char* mode) {
  if (!mode || !*mode || !strchr("rwa", *mode)) {
    errno = EINVAL;
    return 0;
  }
  const int fl = fcntl(fd, F_GETFL);
  if (fl < 0) return 0; /* EBADF: not a descriptor of ours */
  /* "a" appends through the descriptor itself (review defect: F_APP alone
   * left writes at the current offset). */
  if (*mode == 'a' && !(fl & O_APPEND) && fcntl(fd, F_SETFL, fl | O_APPEND) != 0) return 0;
  struct musl_file* f = calloc(1, sizeof *f + UNGET + FILE_BUFSIZ);
  if (!f) {
    errno = ENOMEM;
    return 0;
  }
  if (!strchr(mode, '+')) f->flags = (*mode == 'r') ? F_NOWR : F_NORD;
  if (*mode == 'a') f->flags |= F_APP;
  f->fd = fd;
  f->buf = (unsigned char*)f + sizeof *f + UNGET;
  f->buf_size = FILE_BUFSIZ;
  f->lbf = -1;
  f->read = file_read;
  f->write = file_write;
  f->seek = file_seek;
  f->close = file_close;
  f->lock = 0; /* the runtime's stdio lock (stdio_streams.c) */
  return f;
}

struct musl_file* fopen(const char* path, const char* mode) {
  if (!mode || !*mode || !strchr("rwa", *mode)) {
    errno = EINVAL;
    return 0;
  }
  int flags = strchr(mode, '+') ? O_RDWR : (*mode == 'r' ? O_RDONLY : O_WRONLY);
  if (*mode == 'w') flags |= O_CREAT | O_TRUNC;
  if (*mode == 'a') flags |= O_CREAT | O_APPEND;
  if (strchr(mode, 'x')) flags |= O_EXCL;
  const int fd = open(path, flags, 0666);
  if (fd < 0) return 0;
  struct musl_file* f = fdopen(fd, mode);
  if (!f) close(fd);
  return f;
}

int fflush(void*);
int __lockfile(struct musl_file*);
void __unlockfile(struct musl_file*);

int fclose(struct musl_file* f) {
  __lockfile(f);
  int r = fflush(f);
  r |= f->close(f);
  __unlockfile(f);
  if (f->flags & F_PERM) return r;
  free(f->getln_buf);
  free(f);
  return r;
}

/* musl's names for the large-file variants are macros in its headers;
 * these are for code that calls them by symbol. */
struct musl_file* fopen64(const char* path, const char* mode) { return fopen(path, mode); }
