// teemated's core: owns warm enclaves, hands attachments (enclave memory by
// SCM_RIGHTS, layout, TCS leases with their tokens) to client processes over
// a Unix socket, watches each client process with a pidfd and, when it ends
// however it ends, takes its TCS back and brings them to a clean state.
// Serves clients concurrently (a thread per connection, a thread per
// recovery); only members of an enclave's trust domain may use it. A bad
// message closes only that connection.
#pragma once

#include <memory>
#include <string>

#include "teemate/status.h"

namespace teemate::daemon {

struct DaemonOptions {
  std::string socket_path;  // created with mode 0660
  std::string state_dir;    // holds teemated.pid; created 0700 if missing
  std::string backend = "sim";
  std::string config_path;  // TOML: trust domains and limits (daemon_config.h); empty: defaults
  // Group that owns the socket (and may connect); -1: the daemon's own.
  int64_t socket_group = -1;
  bool verbose = false;
};

// The default socket: $TEEMATE_SOCKET, else /run/teemate/teemated.sock for
// root, else $XDG_RUNTIME_DIR/teemate/teemated.sock (or /tmp/teemate-UID/).
std::string default_socket_path();
// /var/lib/teemate for root, else $XDG_STATE_HOME/teemate or ~/.local/state/teemate.
std::string default_state_dir();

class Daemon {
 public:
  static Result<std::unique_ptr<Daemon>> create(const DaemonOptions& options);
  virtual ~Daemon() = default;
  // Serves until SIGINT/SIGTERM (or stop()); returns the reason it stopped.
  virtual Status run() = 0;
};

}  // namespace teemate::daemon
