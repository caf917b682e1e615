// Default directories (paths.h). Host-only.
#include "base/paths.h"

#include <unistd.h>

#include <cstdlib>

namespace teemate::base {

namespace {
std::string env(const char* name) {
  const char* v = std::getenv(name);
  return v && *v ? v : "";
}
std::string per_user_tmp() { return "/tmp/teemate-" + std::to_string(geteuid()); }
}  // namespace

std::string state_dir() {
  if (geteuid() == 0) return "/var/lib/teemate";
  if (std::string x = env("XDG_STATE_HOME"); !x.empty()) return x + "/teemate";
  if (std::string h = env("HOME"); !h.empty()) return h + "/.local/state/teemate";
  return per_user_tmp() + "/state";
}

std::string runtime_dir() {
  if (geteuid() == 0) return "/run/teemate";
  if (std::string x = env("XDG_RUNTIME_DIR"); !x.empty()) return x + "/teemate";
  return per_user_tmp();
}

}  // namespace teemate::base
