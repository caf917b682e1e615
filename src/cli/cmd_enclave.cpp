// `teemate enclave run IMAGE [-- ARGS...]`: runs an enclave program's
// main(argc, argv) in a fresh enclave with stdio wired through; the exit
// status is main's return value. Thin: all work is in the host runtime.
#include <cstdio>
#include <cstdlib>

#include "cli/commands.h"
#include "teemate/enclave.h"

namespace teemate::cli {
namespace {

struct RunOptions {
  std::string image;
  std::string backend = "sim";
  std::vector<std::string> args;
  bool show_identity = false;
  bool shared = false;
  std::string socket;
  double wait_seconds = 30;
  uint32_t tcs = 1;
};

int g_run_exit = -1;

}  // namespace

void register_enclave(CLI::App& app) {
  CLI::App* enclave = app.add_subcommand("enclave", "Run and manage enclaves.");
  enclave->require_subcommand(1);
  auto opts = std::make_shared<RunOptions>();
  CLI::App* run = enclave->add_subcommand(
      "run",
      "Run an enclave program's main(argc, argv) in a fresh enclave.\n\n"
      "Loads IMAGE (a signed .tme), builds a new enclave from it on the chosen backend (create, add\n"
      "and measure every page, EINIT with the image's SIGSTRUCT), then calls the program's main with\n"
      "IMAGE's file name as argv[0] followed by ARGS. The program's stdout and stderr reach this\n"
      "process's stdout and stderr through the runtime's write OCALL.");
  run->add_option("IMAGE", opts->image, "Signed enclave image (.tme).")->required()->check(CLI::ExistingFile);
  run->add_option("ARGS", opts->args, "Arguments passed to main after '--'.");
  run->add_option("--backend", opts->backend, "Backend: sim (software emulation, no protection) or sgx.")
      ->capture_default_str();
  run->add_flag("--identity", opts->show_identity, "Print MRENCLAVE and MRSIGNER to stderr before running.");
  run->add_flag("--shared", opts->shared,
                "Run in the warm enclave teemated keeps for IMAGE (loaded on first use) instead of building a "
                "fresh one: the enclave is mapped into this process at its base and one TCS is leased to it.");
  run->add_option("--wait", opts->wait_seconds,
                  "With --shared: when every TCS of the warm enclave is leased, wait up to SECONDS for one to come "
                  "free (0: fail at once).")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 86400.0))
      ->check([](const std::string& v) -> std::string {
        // CLI::Range lets "nan" through (every comparison with NaN is false).
        const double d = std::strtod(v.c_str(), nullptr);
        return d >= 0 && d <= 86400 ? "" : "--wait must be a number of seconds from 0 to 86400";
      });
  run->add_option("--tcs", opts->tcs,
                  "With --shared: TCS slots to lease (default 1): main's thread and up to N-1 enclave threads "
                  "(pthread_create answers EAGAIN beyond them).")
      ->check(CLI::Range(1u, 1024u));
  run->add_option("--socket", opts->socket, "teemated's control socket (with --shared; default $TEEMATE_SOCKET or "
                                             "/run/teemate/teemated.sock).");
  run->footer(
      "EXAMPLE\n"
      "  teemate enclave run build/enclaves/hello.tme -- one two\n"
      "  teemated --socket /tmp/tm.sock &   teemate enclave run --shared --socket /tmp/tm.sock hello.tme\n\n"
      "EXIT STATUS\n"
      "  main's return value (or the value passed to exit()); 1 when the enclave cannot be loaded\n"
      "  or attached (every TCS still leased after --wait, for example), or when the call fails (an\n"
      "  unhandled exception inside the enclave, for example); 2 on a usage error.");
  run->callback([opts] {
    AttachOptions attach;
    attach.socket_path = opts->socket;
    attach.image = opts->image;
    attach.client_name = "teemate enclave run";
    attach.wait_ms = static_cast<uint32_t>(opts->wait_seconds * 1000);
    attach.tcs = opts->tcs;
    Result<std::unique_ptr<Enclave>> e = opts->shared ? Enclave::attach(attach)
                                                      : Enclave::load(opts->image, LoadOptions{opts->backend, {}});
    if (!e.ok()) {
      report("enclave run", e.status());
      return;
    }
    if (opts->show_identity) {
      std::fprintf(stderr, "mrenclave %s\nmrsigner  %s\n", (*e)->info().mrenclave_hex.c_str(),
                   (*e)->info().mrsigner_hex.c_str());
    }
    auto code = (*e)->run_main(opts->args);
    if (!code.ok()) {
      report("enclave run", code.status());
      return;
    }
    g_run_exit = *code;
  });
}

int enclave_run_exit_status() { return g_run_exit; }

}  // namespace teemate::cli
