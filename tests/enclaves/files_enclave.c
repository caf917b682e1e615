/* The file-services test enclave: main(argv[1] = scenario) exercises the
 * enclave's file calls on the mounts of files_enclave.toml, the way ported
 * C code uses them (POSIX calls and musl stdio), and prints "SCENARIO ok"
 * or the first step that failed with errno. Driven by
 * tests/integration/files_test.cpp. */
#define _POSIX_C_SOURCE 200809L
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int failed(const char* step) {
  printf("FAILED %s (errno %d: %s)\n", step, errno, strerror(errno));
  return 1;
}

#define CHECK(cond, step)            \
  do {                               \
    if (!(cond)) return failed(step); \
  } while (0)

#define EXPECT_ERRNO(call, err, step)               \
  do {                                              \
    errno = 0;                                      \
    if ((call) != -1 || errno != (err)) return failed(step); \
  } while (0)

static int untrusted(void) {
  FILE* f = fopen("/data/notes.txt", "w");
  CHECK(f, "fopen w");
  for (int i = 0; i < 1000; ++i) CHECK(fprintf(f, "line %d\n", i) > 0, "fprintf");
  CHECK(fclose(f) == 0, "fclose w");

  f = fopen("/data/notes.txt", "r");
  CHECK(f, "fopen r");
  char line[64];
  int n = 0;
  while (fgets(line, sizeof line, f)) {
    char want[64];
    snprintf(want, sizeof want, "line %d\n", n);
    CHECK(strcmp(line, want) == 0, "fgets content");
    ++n;
  }
  CHECK(n == 1000, "fgets count");
  CHECK(fseek(f, 5, SEEK_SET) == 0 && ftell(f) == 5, "fseek/ftell");
  CHECK(fgetc(f) == '0', "fgetc after fseek");
  CHECK(fclose(f) == 0, "fclose r");

  f = fopen("/data/notes.txt", "a");
  CHECK(f && fputs("appended\n", f) >= 0 && fclose(f) == 0, "fopen a");

  int fd = open("/data/raw.bin", O_RDWR | O_CREAT | O_TRUNC, 0600);
  CHECK(fd >= 0, "open raw");
  static unsigned char big[300000];
  for (size_t i = 0; i < sizeof big; ++i) big[i] = (unsigned char)(i * 7);
  size_t done = 0;
  while (done < sizeof big) {
    ssize_t w = write(fd, big + done, sizeof big - done);
    CHECK(w > 0, "write big");
    done += (size_t)w;
  }
  struct stat st;
  CHECK(fstat(fd, &st) == 0 && st.st_size == (off_t)sizeof big, "fstat size");
  CHECK(pwrite(fd, "XYZ", 3, 10) == 3, "pwrite");
  char three[3];
  CHECK(pread(fd, three, 3, 10) == 3 && memcmp(three, "XYZ", 3) == 0, "pread");
  CHECK(lseek(fd, 0, SEEK_SET) == 0, "lseek");
  static unsigned char back[300000];
  done = 0;
  while (done < sizeof back) {
    ssize_t r = read(fd, back + done, sizeof back - done);
    CHECK(r > 0, "read big");
    done += (size_t)r;
  }
  CHECK(read(fd, back, 1) == 0, "read at end");
  CHECK(memcmp(back + 13, big + 13, sizeof big - 13) == 0 && memcmp(back + 10, "XYZ", 3) == 0, "content big");
  struct flock lk = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 10};
  CHECK(fcntl(fd, F_SETLK, &lk) == 0, "fcntl F_SETLK");
  CHECK(ftruncate(fd, 100) == 0 && fstat(fd, &st) == 0 && st.st_size == 100, "ftruncate");
  CHECK(fsync(fd) == 0 && fdatasync(fd) == 0, "fsync");
  CHECK(close(fd) == 0, "close raw");
  EXPECT_ERRNO(close(fd), EBADF, "close twice");

  CHECK(mkdir("/data/dir", 0700) == 0, "mkdir");
  CHECK(rename("/data/raw.bin", "/data/dir/moved.bin") == 0, "rename");
  CHECK(stat("/data/dir/moved.bin", &st) == 0 && st.st_size == 100, "stat moved");
  EXPECT_ERRNO(stat("/data/raw.bin", &st), ENOENT, "stat old name");
  DIR* d = opendir("/data/dir");
  CHECK(d, "opendir");
  int seen = 0;
  struct dirent* e;
  while ((e = readdir(d)) != NULL) seen += strcmp(e->d_name, "moved.bin") == 0;
  CHECK(seen == 1, "readdir");
  CHECK(closedir(d) == 0, "closedir");
  CHECK(access("/data/dir/moved.bin", R_OK) == 0, "access");
  EXPECT_ERRNO(rmdir("/data/dir"), ENOTEMPTY, "rmdir non-empty");
  CHECK(unlink("/data/dir/moved.bin") == 0 && rmdir("/data/dir") == 0, "unlink/rmdir");
  EXPECT_ERRNO(rmdir("/data"), EBUSY, "rmdir mount point");
  printf("untrusted ok\n");
  return 0;
}

static int trusted(void) {
  FILE* f = fopen("/etc/app/hello.txt", "r");
  CHECK(f, "fopen trusted");
  char line[64] = {0};
  CHECK(fgets(line, sizeof line, f) && strcmp(line, "hello from a trusted file\n") == 0, "trusted content");
  CHECK(fclose(f) == 0, "fclose trusted");
  int fd = open("/etc/app/sub/numbers.txt", O_RDONLY);
  CHECK(fd >= 0, "open trusted sub");
  struct stat st;
  CHECK(fstat(fd, &st) == 0 && st.st_size > 8000, "fstat trusted");
  char buf[5];
  CHECK(pread(fd, buf, 5, 0) == 5 && memcmp(buf, "1\n2\n3", 5) == 0, "pread trusted");
  CHECK(lseek(fd, -5, SEEK_END) == st.st_size - 5, "lseek trusted");
  CHECK(read(fd, buf, 5) == 5 && memcmp(buf, "2000\n", 5) == 0, "read trusted tail");
  EXPECT_ERRNO(write(fd, "x", 1), EBADF, "write trusted");
  CHECK(close(fd) == 0, "close trusted");
  EXPECT_ERRNO(open("/etc/app/hello.txt", O_RDWR), EROFS, "open trusted rw");
  EXPECT_ERRNO(open("/etc/app/new.txt", O_WRONLY | O_CREAT, 0600), EROFS, "create trusted");
  EXPECT_ERRNO(unlink("/etc/app/hello.txt"), EROFS, "unlink trusted");
  EXPECT_ERRNO(rename("/data/x", "/etc/app/x"), EROFS, "rename into trusted");
  /* On the host but not in the manifest (the test puts it there). */
  EXPECT_ERRNO(open("/etc/app/unlisted.txt", O_RDONLY), EACCES, "open unlisted");
  printf("trusted ok\n");
  return 0;
}

static int tampered(void) {
  EXPECT_ERRNO(open("/etc/app/hello.txt", O_RDONLY), EACCES, "open tampered");
  CHECK(fopen("/etc/app/hello.txt", "r") == NULL && errno == EACCES, "fopen tampered");
  printf("tampered refused\n");
  return 0;
}

static int paths(void) {
  /* ".." never climbs out of a mount: this is /etc/passwd, under no mount. */
  EXPECT_ERRNO(open("/data/../../etc/passwd", O_RDONLY), ENOENT, "dotdot escape");
  EXPECT_ERRNO(open("/nomount/x", O_RDONLY), ENOENT, "no mount");
  EXPECT_ERRNO(open("", O_RDONLY), ENOENT, "empty path");
  char longpath[5000];
  memset(longpath, 'a', sizeof longpath - 1);
  longpath[0] = '/';
  longpath[sizeof longpath - 1] = 0;
  EXPECT_ERRNO(open(longpath, O_RDONLY), ENAMETOOLONG, "long path");
  /* A relative path is taken from "/"; ".." and "." are resolved first. */
  FILE* f = fopen("data/./sub/../rel.txt", "w");
  CHECK(f && fputs("r", f) >= 0 && fclose(f) == 0, "relative path");
  CHECK(access("/data/rel.txt", F_OK) == 0 && unlink("/data/rel.txt") == 0, "relative path resolved");
  EXPECT_ERRNO(openat(99, "x", O_RDONLY), ENOSYS, "openat with a directory");
  EXPECT_ERRNO(read(0, longpath, 1), EBADF, "host stdin is not ours");
  EXPECT_ERRNO(close(2), EBADF, "host stderr is not ours");
  EXPECT_ERRNO(open("/secret/missing", O_RDONLY), ENOENT, "protected missing");
  EXPECT_ERRNO(rename("/secret/a", "/data/a"), EXDEV, "rename across mount types");
  printf("paths ok\n");
  return 0;
}

/* 3 chunks and 100 bytes of a pattern with a marker the host must never see. */
#define DB_SIZE (3 * 4096 + 100)
static unsigned char pattern(size_t i) { return (unsigned char)((i * 31 + 7) & 0xff); }
static const char kMarker[] = "PLAINTEXT-MARKER-0123456789";

static int protected_write(void) {
  int fd = open("/secret/db.bin", O_RDWR | O_CREAT | O_TRUNC, 0600);
  CHECK(fd >= 0, "create protected");
  static unsigned char buf[DB_SIZE];
  for (size_t i = 0; i < sizeof buf; ++i) buf[i] = pattern(i);
  memcpy(buf + 5000, kMarker, sizeof kMarker - 1);
  CHECK(write(fd, buf, 4000) == 4000 && write(fd, buf + 4000, sizeof buf - 4000) == (ssize_t)(sizeof buf - 4000),
        "write protected");
  CHECK(fsync(fd) == 0, "fsync protected");
  CHECK(close(fd) == 0, "close protected");
  FILE* f = fopen("/secret/notes.txt", "w");
  CHECK(f && fprintf(f, "%s notes\n", kMarker) > 0 && fclose(f) == 0, "fopen protected");
  printf("protected written\n");
  return 0;
}

static int protected_read(void) {
  int fd = open("/secret/db.bin", O_RDWR);
  CHECK(fd >= 0, "open protected");
  struct stat st;
  CHECK(fstat(fd, &st) == 0 && st.st_size == DB_SIZE, "fstat protected");
  static unsigned char buf[DB_SIZE];
  CHECK(read(fd, buf, sizeof buf) == DB_SIZE && read(fd, buf, 1) == 0, "read protected");
  for (size_t i = 0; i < sizeof buf; ++i) {
    if (i >= 5000 && i < 5000 + sizeof kMarker - 1) continue;
    CHECK(buf[i] == pattern(i), "protected content");
  }
  CHECK(memcmp(buf + 5000, kMarker, sizeof kMarker - 1) == 0, "protected marker");
  /* Change the middle, grow past the end with a gap, shrink, then reread. */
  CHECK(pwrite(fd, "MID", 3, 6000) == 3, "pwrite protected");
  CHECK(pwrite(fd, "END", 3, 20000) == 3, "pwrite past the end");
  CHECK(fstat(fd, &st) == 0 && st.st_size == 20003, "grown size");
  char z[4] = {1, 1, 1, 1};
  CHECK(pread(fd, z, 4, 15000) == 4 && !z[0] && !z[1] && !z[2] && !z[3], "gap reads zero");
  CHECK(ftruncate(fd, 7000) == 0, "ftruncate protected");
  CHECK(lseek(fd, 0, SEEK_END) == 7000, "lseek end protected");
  CHECK(close(fd) == 0, "close protected rw");
  CHECK(stat("/secret/db.bin", &st) == 0 && st.st_size == 7000, "stat protected");
  CHECK(rename("/secret/db.bin", "/secret/moved.bin") == 0, "rename protected");
  fd = open("/secret/moved.bin", O_RDONLY);
  CHECK(fd >= 0, "open renamed protected");
  char mid[3];
  CHECK(pread(fd, mid, 3, 6000) == 3 && memcmp(mid, "MID", 3) == 0, "renamed content");
  EXPECT_ERRNO(write(fd, "x", 1), EBADF, "write read-only protected");
  CHECK(close(fd) == 0, "close renamed");
  FILE* f = fopen("/secret/notes.txt", "a+");
  CHECK(f && fputs("more\n", f) >= 0 && fclose(f) == 0, "append protected");
  f = fopen("/secret/notes.txt", "r");
  char line[80];
  CHECK(f && fgets(line, sizeof line, f) && strstr(line, kMarker) && fgets(line, sizeof line, f) &&
            strcmp(line, "more\n") == 0 && fclose(f) == 0,
        "reread appended protected");
  CHECK(unlink("/secret/moved.bin") == 0, "unlink protected");
  EXPECT_ERRNO(open("/secret/empty", O_RDONLY), ENOENT, "missing protected");
  printf("protected ok\n");
  return 0;
}

static int protected_check(void) {
  EXPECT_ERRNO(open("/secret/db.bin", O_RDONLY), EIO, "open tampered protected");
  printf("protected refused\n");
  return 0;
}

/* Regressions of the first hostile review. */
static int review(void) {
  /* fcntl(F_SETFL, O_APPEND) on a protected file appends in the enclave. */
  int fd = open("/secret/app.bin", O_RDWR | O_CREAT | O_TRUNC, 0600);
  CHECK(fd >= 0 && write(fd, "HELLO", 5) == 5 && close(fd) == 0, "protected HELLO");
  fd = open("/secret/app.bin", O_RDWR);
  CHECK(fd >= 0 && fcntl(fd, F_SETFL, O_APPEND) == 0 && (fcntl(fd, F_GETFL) & O_APPEND), "F_SETFL O_APPEND");
  CHECK(write(fd, "WORLD", 5) == 5 && close(fd) == 0, "append protected");
  char buf[16] = {0};
  fd = open("/secret/app.bin", O_RDONLY);
  CHECK(fd >= 0 && read(fd, buf, sizeof buf) == 10 && memcmp(buf, "HELLOWORLD", 10) == 0 && close(fd) == 0,
        "HELLOWORLD");
  /* A rename while a changed copy is open keeps the change under the new name. */
  fd = open("/secret/app.bin", O_RDWR);
  CHECK(fd >= 0 && pwrite(fd, "J", 1, 0) == 1, "pwrite open protected");
  CHECK(rename("/secret/app.bin", "/secret/moved.bin") == 0 && close(fd) == 0, "rename open protected");
  fd = open("/secret/moved.bin", O_RDONLY);
  CHECK(fd >= 0 && read(fd, buf, 10) == 10 && memcmp(buf, "JELLOWORLD", 10) == 0 && close(fd) == 0,
        "renamed open protected");
  /* A created protected file is valid at once. */
  fd = open("/secret/new.bin", O_WRONLY | O_CREAT, 0600);
  struct stat st;
  CHECK(fd >= 0 && stat("/secret/new.bin", &st) == 0 && st.st_size == 0 && close(fd) == 0, "stat new protected");
  /* fdopen "a" appends; an empty mode is refused. */
  FILE* f = fopen("/data/x", "w");
  CHECK(f && fputs("HELLO", f) >= 0 && fclose(f) == 0, "fopen w");
  fd = open("/data/x", O_RDWR);
  f = fdopen(fd, "a");
  CHECK(f && fputs("X", f) >= 0 && fclose(f) == 0, "fdopen a");
  f = fopen("/data/x", "r");
  CHECK(f && fgets(buf, sizeof buf, f) && strcmp(buf, "HELLOX") == 0 && fclose(f) == 0, "HELLOX");
  CHECK(fopen("/data/x", "") == NULL && errno == EINVAL, "empty fopen mode");
  CHECK(fdopen(77, "r") == NULL && errno == EBADF, "fdopen of a foreign descriptor");
  /* A trailing '/' needs a directory; a lock needs a lock structure. */
  EXPECT_ERRNO(open("/data/x/", O_RDONLY), ENOTDIR, "trailing slash on a file");
  fd = open("/data/x", O_RDWR);
  EXPECT_ERRNO(fcntl(fd, F_SETLK, (void*)0), EFAULT, "F_SETLK NULL");
  EXPECT_ERRNO(fcntl(fd, F_GETLK, (void*)0x10), EFAULT, "F_GETLK wild pointer");
  CHECK(close(fd) == 0, "close x");
  printf("review ok\n");
  return 0;
}

/* Under the hostile host shim: the host answers an open with a descriptor
 * the enclave already owns (alias) or with its stdout. */
static int alias(void) {
  int fd = open("/data/pub", O_RDWR | O_CREAT, 0600);
  CHECK(fd >= 0, "open pub");
  EXPECT_ERRNO(open("/secret/leak", O_RDWR | O_CREAT, 0600), EIO, "aliased descriptor");
  CHECK(write(fd, "public", 6) == 6 && close(fd) == 0, "pub still ours");
  printf("alias refused\n");
  return 0;
}

int main(int argc, char** argv) {
  if (argc < 2) return 2;
  if (strcmp(argv[1], "untrusted") == 0) return untrusted();
  if (strcmp(argv[1], "trusted") == 0) return trusted();
  if (strcmp(argv[1], "tampered") == 0) return tampered();
  if (strcmp(argv[1], "paths") == 0) return paths();
  if (strcmp(argv[1], "protected-write") == 0) return protected_write();
  if (strcmp(argv[1], "protected-read") == 0) return protected_read();
  if (strcmp(argv[1], "protected-check") == 0) return protected_check();
  if (strcmp(argv[1], "review") == 0) return review();
  if (strcmp(argv[1], "alias") == 0) return alias();
  return 2;
}
