/* stdout and stderr for enclave programs: musl FILE objects (musl 1.2.3's
 * struct layout, an ABI fact of Debian bookworm's musl-dev) whose write hook
 * sends bytes to the host through the write OCALL, so every musl stdio
 * function (printf, puts, fwrite, vfprintf, fflush) works unchanged. stdout
 * is line-buffered, stderr unbuffered; one recursive lock guards them
 * because the enclave's threads share them (a writer blocked in its OCALL
 * holds it: co-tenants' output waits for that process's host). Never makes a system call. */
#include <stddef.h>
#include <stdint.h>

#include "teemate/trusted/runtime.h"

#include "musl_file.h"

int teemate_host_write_c(int fd, const void* data, size_t size);

static size_t stream_write(struct musl_file* f, const unsigned char* buf, size_t len) {
  size_t pending = (size_t)(f->wpos - f->wbase);
  int ok = 1;
  if (pending && teemate_host_write_c(f->fd, f->wbase, pending) != TM_OK) ok = 0;
  if (ok && len && teemate_host_write_c(f->fd, buf, len) != TM_OK) ok = 0;
  if (!ok) {
    f->wpos = f->wbase = f->wend = 0;
    f->flags |= F_ERR;
    return 0;
  }
  f->wend = f->buf + f->buf_size;
  f->wpos = f->wbase = f->buf;
  return len;
}

static int64_t stream_seek(struct musl_file* f, int64_t off, int whence) {
  (void)f; (void)off; (void)whence;
  return -1;
}

static int stream_close(struct musl_file* f) {
  (void)f;
  return 0;
}

static unsigned char stdout_buf[1024 + UNGET];
static unsigned char stderr_buf[UNGET];

struct musl_file __stdout_FILE = {
    .flags = F_PERM | F_NORD, .buf = stdout_buf + UNGET, .buf_size = sizeof stdout_buf - UNGET,
    .fd = 1, .lbf = '\n', .write = stream_write, .seek = stream_seek, .close = stream_close, .lock = 0};
struct musl_file __stderr_FILE = {
    .flags = F_PERM | F_NORD, .buf = stderr_buf + UNGET, .buf_size = 0,
    .fd = 2, .lbf = -1, .write = stream_write, .seek = stream_seek, .close = stream_close, .lock = 0};

struct musl_file* const stdout = &__stdout_FILE;
struct musl_file* const stderr = &__stderr_FILE;
struct musl_file* volatile __stdout_used = &__stdout_FILE;
struct musl_file* volatile __stderr_used = &__stderr_FILE;

/* One recursive lock for both streams. The spinlock's word names its
 * holder, so a holder that dies (its process killed in the middle of a
 * write OCALL) is released by recovery like any runtime lock; the depth is
 * reset by the next thread that takes it. */
static uint32_t g_depth;
static tm_spinlock g_lock = TM_SPINLOCK_INIT;
static int g_shared; /* set by teemate_stdio_make_unbuffered */
int fflush(void*);

static uint64_t self_id(void) {
  uint64_t td;
  __asm__ volatile("mov %%gs:0, %0" : "=r"(td));
  return td;
}

int __lockfile(struct musl_file* f) {
  (void)f;
  if (__atomic_load_n(&g_lock.owner, __ATOMIC_ACQUIRE) == self_id()) {
    ++g_depth;
    return 1;
  }
  tm_spin_lock(&g_lock);
  g_depth = 1;
  return 1;
}

void __unlockfile(struct musl_file* f) {
  (void)f;
  if (--g_depth == 0) tm_spin_unlock(&g_lock);
}

/* The streams' lock, for recovery (locks.cpp). */
tm_spinlock* teemate_stdio_lock(void) { return &g_lock; }

/* A thread died holding the streams' lock (its process was killed, say in
 * the middle of its write OCALL): what it left in the buffers is its own
 * process's output and goes nowhere; the streams start again empty. */
void teemate_stdio_reset_streams(void) {
  struct musl_file* files[] = {&__stdout_FILE, &__stderr_FILE};
  unsigned char* bufs[] = {stdout_buf + UNGET, stderr_buf + UNGET};
  size_t sizes[] = {g_shared ? 0 : sizeof stdout_buf - UNGET, 0};
  for (int i = 0; i < 2; ++i) {
    struct musl_file* f = files[i];
    f->buf = bufs[i];
    f->buf_size = sizes[i];
    f->wpos = f->wbase = f->wend = 0;
    f->rpos = f->rend = 0;
    f->flags &= ~(unsigned)F_ERR;
    f->lockcount = 0;
  }
  g_depth = 0;
}

/* A shared enclave: processes must not see each other's output, so stdout
 * keeps nothing buffered between calls (each printf leaves through its own
 * thread's OCALL, to its own process). Called once, when the daemon claims
 * the enclave, before any process attaches. */
void teemate_stdio_make_unbuffered(void) {
  __lockfile(&__stdout_FILE);
  if (__stdout_FILE.wpos != __stdout_FILE.wbase) fflush(&__stdout_FILE);
  g_shared = 1;
  __stdout_FILE.buf_size = 0;
  __stdout_FILE.lbf = -1;
  __stdout_FILE.wpos = __stdout_FILE.wbase = __stdout_FILE.wend = 0;
  __unlockfile(&__stdout_FILE);
}

/* Flushes buffered stdout (end of main, exit(), end of each ECALL). */
void teemate_flush_stdio(void) {
  if (__stdout_FILE.wpos != __stdout_FILE.wbase) fflush(&__stdout_FILE);
}
