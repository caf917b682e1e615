// teemated: the TeeMate daemon. Parses flags and runs the server; all logic
// is in server.cpp and its neighbours (daemon_impl.h). Foreground, logs to stderr.
#include <CLI/CLI.hpp>

#include <cstdio>

#include "host/daemon/server.h"

int main(int argc, char** argv) {
  teemate::daemon::DaemonOptions opts;
  opts.socket_path = teemate::daemon::default_socket_path();
  opts.state_dir = teemate::daemon::default_state_dir();
  CLI::App app{
      "teemated keeps enclaves warm and shares them with container processes.\n\n"
      "It builds an enclave once per image (on request), then hands any number of later processes an\n"
      "attachment: the enclave's memory, mapped at the same base in the client (aliasing), and a\n"
      "lease of TCS slots (thread assignment). It watches every attached process and, when one ends\n"
      "however it ends, takes its TCS back and resets them so the others keep running.",
      "teemated"};
  app.add_option("--socket", opts.socket_path, "Control socket (mode 0660).")->capture_default_str();
  app.add_option("--socket-group", opts.socket_group,
                 "Numeric group id that owns the socket: its members may connect (as docker's -G). Default: "
                 "the daemon's group.")
      ->check(CLI::Range(int64_t{0}, int64_t{4294967294}));
  app.add_option("--state-dir", opts.state_dir,
                 "Directory for teemated.pid and the state from which a restarted daemon takes back the "
                 "enclaves processes still map (created 0700). Default: /var/lib/teemate for root, else "
                 "$XDG_STATE_HOME/teemate, else ~/.local/state/teemate.")
      ->capture_default_str();
  app.add_option("--config", opts.config_path,
                 "TOML file with trust domains (which users may share enclaves) and limits; see "
                 "docs/shared-enclaves.md. Without it, every user has only its own domain.")
      ->check(CLI::ExistingFile);
  app.add_option("--backend", opts.backend, "Backend: sim (software emulation, no protection) or sgx.")
      ->capture_default_str();
  app.add_flag("-v,--verbose", opts.verbose, "Log every connection and failed request.");
  app.set_version_flag("--version", "teemated 0.1.0");
  app.footer(
      "The protocol is in docs/daemon-protocol.md. Clients: `teemate enclave run --shared IMAGE`.\n\n"
      "ENVIRONMENT\n  TEEMATE_SOCKET   default for --socket\n\n"
      "EXIT STATUS\n  0 after SIGINT/SIGTERM; 1 when the daemon cannot start (socket in use, backend\n"
      "  missing); 2 on a usage error.");
  CLI11_PARSE(app, argc, argv);
  auto d = teemate::daemon::Daemon::create(opts);
  if (!d.ok()) {
    std::fprintf(stderr, "teemated: %s\n", d.status().message().c_str());
    return 1;
  }
  teemate::Status st = (*d)->run();
  if (!st.ok()) {
    std::fprintf(stderr, "teemated: %s\n", st.message().c_str());
    return 1;
  }
  return 0;
}
