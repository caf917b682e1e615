// The daemon's log line: "HH:MM:SS teemated: message" on stderr, one
// printf-style call per line, whole lines even from many threads.
// Host-only.
#pragma once

namespace teemate::base {

void log(const char* fmt, ...) __attribute__((format(printf, 1, 2)));

}  // namespace teemate::base
