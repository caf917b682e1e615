/* How the enclave's POSIX calls turn a runtime OCALL into a POSIX result:
 * the OCALL's status and the host's answer checked (errno in range, no more
 * than was asked for), then the value or -1 with errno. Shared by
 * posix_socket.cpp and posix_file.cpp. Enclave-only. */
#pragma once

#include <errno.h>
#include <stdint.h>

#include "teemate/trusted/runtime.h"

namespace teemate::trts {

inline constexpr int64_t kMaxErrno = 4095;
/* Bytes per read/write OCALL: request and answer must fit the 256 KiB OCALL
 * scratch area; longer transfers return a short count, as POSIX allows. */
inline constexpr uint64_t kMaxIo = 128u << 10;

/* The OCALL's status and the host's result, as POSIX: the value, or -1
 * with errno. `max` bounds a non-negative result. */
inline long long posix_finish(int rc, int64_t r, int64_t max) {
  if (rc != TM_OK) {
    errno = rc == TM_ERR_TOO_LARGE ? EMSGSIZE : EIO;
    return -1;
  }
  if (r < 0) {
    errno = r >= -kMaxErrno ? static_cast<int>(-r) : EIO;  // not an errno: refused
    return -1;
  }
  if (r > max) {
    errno = EIO;  // more than was asked for: refused
    return -1;
  }
  return r;
}

/* Makes the OCALL, then reads its result: never the other way round. */
template <typename F>
long long host_call(F ocall, int64_t max) {
  int64_t r = 0;
  const int rc = ocall(&r);
  return posix_finish(rc, r, max);
}

}  // namespace teemate::trts
