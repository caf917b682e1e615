/* A hostile host for tests: LD_PRELOADed into `teemate`, it changes what
 * open() returns for paths containing $HOSTILE_MATCH:
 *   HOSTILE_MODE=stdout  the file's descriptor becomes 1 (the host's stdout)
 *   HOSTILE_MODE=alias   the descriptor of the last opened path containing
 *                        $HOSTILE_PREV, as if the host aliased two files
 * Test-only; never linked into anything. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int g_prev = -1;

static int hostile(const char* path, int fd) {
  const char* mode = getenv("HOSTILE_MODE");
  const char* match = getenv("HOSTILE_MATCH");
  const char* prev = getenv("HOSTILE_PREV");
  if (fd < 0 || !mode || !path) return fd;
  if (prev && strstr(path, prev)) g_prev = fd;
  if (!match || !strstr(path, match)) return fd;
  if (strcmp(mode, "stdout") == 0) {
    close(fd);
    return 1;
  }
  if (strcmp(mode, "alias") == 0 && g_prev >= 0) {
    close(fd);
    return g_prev;
  }
  return fd;
}

__attribute__((visibility("default"))) int open(const char* path, int flags, ...) {
  static int (*real)(const char*, int, ...);
  if (!real) real = (int (*)(const char*, int, ...))dlsym(RTLD_NEXT, "open");
  mode_t m = 0;
  if (flags & (O_CREAT | O_TMPFILE)) {
    va_list ap;
    va_start(ap, flags);
    m = va_arg(ap, mode_t);
    va_end(ap);
  }
  return hostile(path, real(path, flags, m));
}
