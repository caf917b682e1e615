/* musl 1.2.3's FILE layout (an ABI fact of Debian bookworm's musl-dev) and
 * the flag bits its stdio uses, for the runtime's own streams
 * (stdio_streams.c: stdout, stderr; stdio_files.c: fopen). Enclave-only. */
#pragma once

#include <stddef.h>
#include <stdint.h>

struct musl_file {
  unsigned flags;
  unsigned char *rpos, *rend;
  int (*close)(struct musl_file*);
  unsigned char *wend, *wpos;
  unsigned char* mustbezero_1;
  unsigned char* wbase;
  size_t (*read)(struct musl_file*, unsigned char*, size_t);
  size_t (*write)(struct musl_file*, const unsigned char*, size_t);
  int64_t (*seek)(struct musl_file*, int64_t, int);
  unsigned char* buf;
  size_t buf_size;
  struct musl_file *prev, *next;
  int fd;
  int pipe_pid;
  long lockcount;
  int mode;
  volatile int lock;
  int lbf;
  void* cookie;
  int64_t off;
  char* getln_buf;
  void* mustbezero_2;
  unsigned char* shend;
  int64_t shlim, shcnt;
  struct musl_file *prev_locked, *next_locked;
  void* locale;
};
_Static_assert(offsetof(struct musl_file, fd) == 120, "musl FILE layout changed");
_Static_assert(offsetof(struct musl_file, lock) == 140, "musl FILE layout changed");

#define F_PERM 1
#define F_NORD 4
#define F_ERR 32
#define UNGET 8
#define F_NOWR 8
#define F_EOF 16
#define F_APP 128
