// Shared helpers of the benchmark programs in bench/: options, locating
// build/enclaves, statistics, and the table and JSON-line output. Host-only;
// never throws, never loads or enters an enclave itself.
#pragma once

#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <string>
#include <utility>
#include <vector>

namespace teemate::bench {

using Clock = std::chrono::steady_clock;

inline double seconds_between(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

// Options every benchmark takes.
struct Options {
  bool quick = false;
  bool help = false;
  bool json_only = false;
  int reps = 0;  // 0: the benchmark's default
  std::string enclave_dir;
};

inline bool parse_positive(const char* s, int* out) {
  if (!s || !*s) return false;
  char* end = nullptr;
  errno = 0;
  const long v = strtol(s, &end, 10);
  if (errno != 0 || *end != '\0' || v <= 0 || v > 1000000) return false;
  *out = static_cast<int>(v);
  return true;
}

// Parses argv; on a bad argument returns false with `error` set.
inline bool parse_options(int argc, char** argv, Options* o, std::string* error) {
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&](const std::string& name, std::string* v) -> bool {
      if (a.rfind(name + "=", 0) == 0) {
        *v = a.substr(name.size() + 1);
        return true;
      }
      if (a == name) {
        if (i + 1 >= argc) {
          *error = name + " needs a value";
          return false;
        }
        *v = argv[++i];
        return true;
      }
      return false;
    };
    std::string v;
    if (a == "--quick") {
      o->quick = true;
    } else if (a == "--help" || a == "-h") {
      o->help = true;
    } else if (a == "--json") {
      o->json_only = true;
    } else if (a.rfind("--enclave-dir", 0) == 0 && (a == "--enclave-dir" || a[13] == '=')) {
      if (!value("--enclave-dir", &v)) return false;
      o->enclave_dir = v;
    } else if (a.rfind("--reps", 0) == 0 && (a == "--reps" || a[6] == '=')) {
      if (!value("--reps", &v)) return false;
      if (!parse_positive(v.c_str(), &o->reps)) {
        *error = "--reps wants a positive integer, got '" + v + "'";
        return false;
      }
    } else {
      *error = "unknown argument '" + a + "' (see --help)";
      return false;
    }
  }
  return true;
}

// The options' --enclave-dir, else <directory of /proc/self/exe>/../enclaves.
inline std::string enclave_dir(const Options& o) {
  if (!o.enclave_dir.empty()) return o.enclave_dir;
  char buf[PATH_MAX];
  const ssize_t n = readlink("/proc/self/exe", buf, sizeof buf - 1);
  if (n <= 0) return "build/enclaves";
  std::string exe(buf, static_cast<size_t>(n));
  const size_t slash = exe.find_last_of('/');
  return (slash == std::string::npos ? std::string(".") : exe.substr(0, slash)) + "/../enclaves";
}

inline bool file_exists(const std::string& path) {
  struct stat st {};
  return stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

// Median, extremes and p10/p90 (linear interpolation between order statistics).
struct Stats {
  size_t n = 0;
  double median = 0, min = 0, max = 0, p10 = 0, p90 = 0;
};

inline double percentile_sorted(const std::vector<double>& s, double q) {
  if (s.empty()) return 0;
  const double pos = q * static_cast<double>(s.size() - 1);
  const size_t lo = static_cast<size_t>(pos);
  const size_t hi = std::min(lo + 1, s.size() - 1);
  const double frac = pos - static_cast<double>(lo);
  return s[lo] + (s[hi] - s[lo]) * frac;
}

inline Stats summarize(std::vector<double> v) {
  Stats st;
  st.n = v.size();
  if (v.empty()) return st;
  std::sort(v.begin(), v.end());
  st.min = v.front();
  st.max = v.back();
  st.median = percentile_sorted(v, 0.5);
  st.p10 = percentile_sorted(v, 0.1);
  st.p90 = percentile_sorted(v, 0.9);
  return st;
}

inline std::string fmt(double v, int decimals = 3) {
  char b[64];
  snprintf(b, sizeof b, "%.*f", decimals, v);
  return b;
}

// One result row: a case, its statistics in `unit`, and extra numeric or
// string fields (already formatted) that go into the JSON and the notes.
struct Row {
  std::string bench;
  std::string name;  // "case" in the JSON
  std::string unit;
  Stats stats;
  int ops_per_rep = 1;
  std::vector<std::pair<std::string, std::string>> numbers;  // raw JSON numbers
  std::string note;                                          // table only
};

inline std::string json_escape(const std::string& s) {
  std::string o;
  for (char c : s) {
    if (c == '"' || c == '\\') {
      o += '\\';
      o += c;
    } else if (static_cast<unsigned char>(c) < 0x20) {
      char b[8];
      snprintf(b, sizeof b, "\\u%04x", c);
      o += b;
    } else {
      o += c;
    }
  }
  return o;
}

inline std::string to_json(const Row& r, bool quick, int decimals) {
  std::string j = "{\"bench\":\"" + json_escape(r.bench) + "\",\"case\":\"" + json_escape(r.name) +
                  "\",\"unit\":\"" + json_escape(r.unit) + "\",\"reps\":" + std::to_string(r.stats.n) +
                  ",\"ops_per_rep\":" + std::to_string(r.ops_per_rep) + ",\"median\":" + fmt(r.stats.median, decimals) +
                  ",\"min\":" + fmt(r.stats.min, decimals) + ",\"max\":" + fmt(r.stats.max, decimals) +
                  ",\"p10\":" + fmt(r.stats.p10, decimals) + ",\"p90\":" + fmt(r.stats.p90, decimals);
  for (const auto& [k, v] : r.numbers) j += ",\"" + json_escape(k) + "\":" + v;
  j += ",\"backend\":\"sim\",\"quick\":";
  j += quick ? "true" : "false";
  j += "}";
  return j;
}

// Prints the table (unless json_only), then one JSON line per row.
inline void print_rows(const std::vector<Row>& rows, const Options& o, int decimals) {
  if (!o.json_only) {
    size_t w = 4;
    for (const Row& r : rows) w = std::max(w, r.name.size());
    printf("%-*s %5s %7s %11s %11s %11s %11s %11s  %s\n", static_cast<int>(w), "case", "unit", "reps",
           "median", "p10", "p90", "min", "max", "notes");
    for (const Row& r : rows) {
      printf("%-*s %5s %7zu %11s %11s %11s %11s %11s  %s\n", static_cast<int>(w), r.name.c_str(), r.unit.c_str(),
             r.stats.n, fmt(r.stats.median, decimals).c_str(), fmt(r.stats.p10, decimals).c_str(),
             fmt(r.stats.p90, decimals).c_str(), fmt(r.stats.min, decimals).c_str(),
             fmt(r.stats.max, decimals).c_str(), r.note.c_str());
    }
    printf("\n");
  }
  for (const Row& r : rows) printf("%s\n", to_json(r, o.quick, decimals).c_str());
  fflush(stdout);
}

}  // namespace teemate::bench
