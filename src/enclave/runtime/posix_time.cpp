/* Time and randomness for enclave programs: clock_gettime, gettimeofday,
 * time, nanosleep/clock_nanosleep (sleep and usleep reach them through
 * musl), getrandom and getentropy. Time comes from the host and is
 * untrusted: it is range-checked, and CLOCK_MONOTONIC never goes back
 * (a host answer earlier than one already given is raised to it).
 * Randomness never comes from the host: RDRAND inside the enclave.
 * Nothing here contains a system call instruction.
 * Its <sys/...> headers are musl's (the enclave libc, -isystem), never
 * the host's glibc ones: they only declare what this file defines. */
#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <sys/random.h>
#include <sys/time.h>
#include <time.h>

#include "runtime.h"
#include "tm_posix_t.h"

using namespace teemate;
using namespace teemate::trts;

namespace {

constexpr uint64_t kNsPerSec = 1000000000ull;

/* Deliberate shared state, lock-free: the latest CLOCK_MONOTONIC value any
 * thread of the enclave was given. */
uint64_t g_last_monotonic_ns = 0;

bool host_clock(int clk, uint64_t* ns) {
  int64_t got = -1;
  if (tm_clock_ns(&got, clk) != TM_OK || got < 0) return false;  // an error, or not a time
  *ns = static_cast<uint64_t>(got);
  return true;
}

uint64_t never_back(uint64_t ns) {
  uint64_t seen = __atomic_load_n(&g_last_monotonic_ns, __ATOMIC_RELAXED);
  while (ns > seen) {
    if (__atomic_compare_exchange_n(&g_last_monotonic_ns, &seen, ns, true, __ATOMIC_RELAXED, __ATOMIC_RELAXED)) {
      return ns;
    }
  }
  return seen > ns ? seen : ns;
}

bool valid_timespec(const struct timespec* t) {
  return t && t->tv_sec >= 0 && t->tv_nsec >= 0 && t->tv_nsec < static_cast<long>(kNsPerSec);
}

}  // namespace

extern "C" {

int clock_gettime(clockid_t clk, struct timespec* ts) {
  int host_clk;
  switch (clk) {
    case CLOCK_REALTIME:
    case CLOCK_REALTIME_COARSE:
      host_clk = CLOCK_REALTIME;
      break;
    case CLOCK_MONOTONIC:
    case CLOCK_MONOTONIC_COARSE:
    case CLOCK_MONOTONIC_RAW:
    case CLOCK_BOOTTIME:
      host_clk = CLOCK_MONOTONIC;
      break;
    default:  // CPU-time clocks and clock ids of other processes: not available
      errno = EINVAL;
      return -1;
  }
  if (!ts) {
    errno = EFAULT;
    return -1;
  }
  uint64_t ns = 0;
  if (!host_clock(host_clk, &ns)) {
    errno = EIO;
    return -1;
  }
  if (host_clk == CLOCK_MONOTONIC) ns = never_back(ns);
  ts->tv_sec = static_cast<time_t>(ns / kNsPerSec);
  ts->tv_nsec = static_cast<long>(ns % kNsPerSec);
  return 0;
}
int __clock_gettime(clockid_t clk, struct timespec* ts) { return clock_gettime(clk, ts); }

int clock_getres(clockid_t clk, struct timespec* res) {
  struct timespec probe;
  if (clock_gettime(clk, &probe) != 0) return -1;
  if (res) {
    res->tv_sec = 0;
    res->tv_nsec = 1;
  }
  return 0;
}

int gettimeofday(struct timeval* tv, void* tz) {
  (void)tz;  // obsolete; always UTC inside the enclave
  if (!tv) return 0;
  struct timespec ts;
  if (clock_gettime(CLOCK_REALTIME, &ts) != 0) return -1;
  tv->tv_sec = ts.tv_sec;
  tv->tv_usec = ts.tv_nsec / 1000;
  return 0;
}

time_t time(time_t* out) {
  struct timespec ts;
  if (clock_gettime(CLOCK_REALTIME, &ts) != 0) return static_cast<time_t>(-1);
  if (out) *out = ts.tv_sec;
  return ts.tv_sec;
}

int clock_nanosleep(clockid_t clk, int flags, const struct timespec* req, struct timespec* rem) {
  if (!req) return EFAULT;
  if (!valid_timespec(req)) return EINVAL;
  uint64_t want = static_cast<uint64_t>(req->tv_sec) > UINT64_MAX / kNsPerSec - 1
                      ? UINT64_MAX
                      : static_cast<uint64_t>(req->tv_sec) * kNsPerSec + static_cast<uint64_t>(req->tv_nsec);
  if (flags & TIMER_ABSTIME) {
    struct timespec now;
    if (clock_gettime(clk, &now) != 0) return errno;
    const uint64_t now_ns = static_cast<uint64_t>(now.tv_sec) * kNsPerSec + static_cast<uint64_t>(now.tv_nsec);
    want = want > now_ns ? want - now_ns : 0;
  } else if (clk != CLOCK_REALTIME && clk != CLOCK_MONOTONIC && clk != CLOCK_BOOTTIME) {
    return EINVAL;
  }
  // The host sleeps at most a day per OCALL: longer sleeps take several.
  constexpr uint64_t kChunk = 86400ull * kNsPerSec;
  while (want > 0) {
    const uint64_t step = want < kChunk ? want : kChunk;
    int64_t slept = -1;
    if (tm_sleep_ns(&slept, step) != TM_OK || slept != 0) return EIO;
    want -= step;
  }
  if (rem) memset(rem, 0, sizeof *rem);
  return 0;
}

int nanosleep(const struct timespec* req, struct timespec* rem) {
  const int err = clock_nanosleep(CLOCK_MONOTONIC, 0, req, rem);
  if (err) {
    errno = err;
    return -1;
  }
  return 0;
}

ssize_t getrandom(void* buf, size_t len, unsigned flags) {
  if (flags & ~static_cast<unsigned>(GRND_NONBLOCK | GRND_RANDOM | GRND_INSECURE)) {
    errno = EINVAL;
    return -1;
  }
  if (len > 33554431) len = 33554431;  // as Linux: at most this many bytes per call
  if (len && !buf) {
    errno = EFAULT;
    return -1;
  }
  if (tm_random(buf, len) != TM_OK) {
    errno = EIO;
    return -1;
  }
  return static_cast<ssize_t>(len);
}

int getentropy(void* buf, size_t len) {
  if (len > 256) {
    errno = EIO;
    return -1;
  }
  if (len && !buf) {
    errno = EFAULT;
    return -1;
  }
  if (tm_random(buf, len) != TM_OK) {
    errno = EIO;
    return -1;
  }
  return 0;
}

}  // extern "C"
