// The daemon's log line (log.h). Host-only.
#include "base/log.h"

#include <cstdarg>
#include <cstdio>
#include <ctime>
#include <mutex>

namespace teemate::base {

void log(const char* fmt, ...) {
  static std::mutex mu;
  char when[32];
  const time_t now = time(nullptr);
  struct tm tm {};
  localtime_r(&now, &tm);
  strftime(when, sizeof when, "%H:%M:%S", &tm);
  char line[2048];
  va_list ap;
  va_start(ap, fmt);
  std::vsnprintf(line, sizeof line, fmt, ap);
  va_end(ap);
  std::lock_guard lock(mu);
  std::fprintf(stderr, "%s teemated: %s\n", when, line);
}

}  // namespace teemate::base
