// Whole-file reads and atomic writes. Every error names the path and errno;
// never leaves a temporary or partial file behind.
#include "host/image/file_util.h"

#include <errno.h>
#include <dirent.h>
#include <string.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

namespace teemate::image {

namespace {

class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }
  int release() {
    int fd = fd_;
    fd_ = -1;
    return fd;
  }

 private:
  int fd_;
};

Status write_all(int fd, const uint8_t* data, size_t size, const std::string& path) {
  while (size > 0) {
    ssize_t n = ::write(fd, data, size);
    if (n < 0) {
      if (errno == EINTR) continue;
      return io_error("cannot write " + path, errno);
    }
    data += n;
    size -= static_cast<size_t>(n);
  }
  return Status::ok_status();
}

std::string dir_of(const std::string& path) {
  const size_t slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

}  // namespace

Result<std::vector<uint8_t>> read_file(const std::string& path, uint64_t max_size) {
  // O_NONBLOCK: opening a FIFO must not wait for a writer; the S_ISREG check
  // below then refuses it (no effect on regular files).
  Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK));
  if (fd.get() < 0) {
    const int err = errno;
    Status st = io_error("cannot open " + path, err);
    if (err == ENOENT) return Status(Code::kNotFound, st.message());
    return st;
  }
  struct stat sb;
  if (::fstat(fd.get(), &sb) != 0) return io_error("cannot stat " + path, errno);
  if (!S_ISREG(sb.st_mode)) return invalid_argument(path + ": not a regular file");
  if (static_cast<uint64_t>(sb.st_size) > max_size) {
    return resource_error(path + ": file is " + std::to_string(sb.st_size) +
                          " bytes, more than the limit of " + std::to_string(max_size));
  }
  std::vector<uint8_t> out(static_cast<size_t>(sb.st_size));
  size_t done = 0;
  while (done < out.size()) {
    ssize_t n = ::read(fd.get(), out.data() + done, out.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      return io_error("cannot read " + path, errno);
    }
    if (n == 0) return io_error("cannot read " + path + " (file shrank while reading)", EIO);
    done += static_cast<size_t>(n);
  }
  return out;
}

std::vector<std::string> list_directory(const std::string& path) {
  std::vector<std::string> names;
  DIR* d = ::opendir(path.c_str());
  if (!d) return names;
  while (struct dirent* e = ::readdir(d)) {
    if (::strcmp(e->d_name, ".") != 0 && ::strcmp(e->d_name, "..") != 0) names.emplace_back(e->d_name);
  }
  ::closedir(d);
  return names;
}

Result<std::string> read_text_file(const std::string& path, size_t max_size) {
  // O_NONBLOCK: a FIFO put in the file's place must not block the reader.
  Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK));
  if (fd.get() < 0) return io_error("cannot open " + path, errno);
  std::string out;
  char buf[4096];
  for (;;) {
    ssize_t n = ::read(fd.get(), buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN) return io_error("cannot read " + path + " (not a regular file?)", errno);
      return io_error("cannot read " + path, errno);
    }
    if (n == 0) return out;
    if (out.size() + static_cast<size_t>(n) > max_size) return resource_error(path + ": larger than the limit");
    out.append(buf, static_cast<size_t>(n));
  }
}

Status write_file_atomic(const std::string& path, std::span<const std::span<const uint8_t>> parts,
                         mode_t mode, bool overwrite) {
  if (path.empty()) return invalid_argument("empty output path");
  std::string tmp = path + ".tmp.XXXXXX";
  Fd fd(::mkostemp(tmp.data(), O_CLOEXEC));
  if (fd.get() < 0) return io_error("cannot create a temporary file next to " + path, errno);
  auto fail = [&](Status st) {
    ::unlink(tmp.c_str());
    return st;
  };
  if (::fchmod(fd.get(), mode) != 0) return fail(io_error("cannot chmod " + tmp, errno));
  for (std::span<const uint8_t> part : parts) {
    Status st = write_all(fd.get(), part.data(), part.size(), tmp);
    if (!st.ok()) return fail(st);
  }
  if (::fsync(fd.get()) != 0) return fail(io_error("cannot fsync " + tmp, errno));
  if (::close(fd.release()) != 0) return fail(io_error("cannot close " + tmp, errno));
  if (overwrite) {
    if (::rename(tmp.c_str(), path.c_str()) != 0) {
      return fail(io_error("cannot rename " + tmp + " to " + path, errno));
    }
  } else {
    // renameat2(RENAME_NOREPLACE) refuses to replace; file systems without
    // it get link(2), which refuses too, then the temporary is removed.
    int rc = ::renameat2(AT_FDCWD, tmp.c_str(), AT_FDCWD, path.c_str(), RENAME_NOREPLACE);
    int err = rc == 0 ? 0 : errno;
    if (rc != 0 && (err == EINVAL || err == ENOSYS || err == ENOTSUP)) {
      rc = ::link(tmp.c_str(), path.c_str());
      err = rc == 0 ? 0 : errno;
      if (rc == 0) ::unlink(tmp.c_str());
    }
    if (rc != 0) {
      if (err == EEXIST) return fail(Status(Code::kInvalidArgument, path + " already exists"));
      return fail(io_error("cannot create " + path, err));
    }
  }
  // Make the rename durable; failure here does not undo a complete file.
  Fd dir(::open(dir_of(path).c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (dir.get() >= 0) (void)::fsync(dir.get());
  return Status::ok_status();
}

Status write_file_atomic(const std::string& path, std::span<const uint8_t> data, mode_t mode,
                         bool overwrite) {
  const std::span<const uint8_t> parts[1] = {data};
  return write_file_atomic(path, std::span<const std::span<const uint8_t>>(parts, 1), mode, overwrite);
}

}  // namespace teemate::image
