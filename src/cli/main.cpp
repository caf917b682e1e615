// teemate: the command-line tool that builds, signs, measures, verifies and
// inspects enclave images. main() only wires the verbs together; each verb
// lives in its own cmd_<verb>.cpp. Never put verb logic here.
#include <cstdio>

#include "cli/commands.h"

namespace {

// Add a verb by adding its register function here.
constexpr void (*kVerbs[])(CLI::App&) = {
    teemate::cli::register_keygen,  teemate::cli::register_pack,    teemate::cli::register_sign,
    teemate::cli::register_measure, teemate::cli::register_verify,  teemate::cli::register_inspect,
    teemate::cli::register_enclave, teemate::cli::register_edger,
};

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{
      "teemate builds and checks TeeMate enclave images: a .tme file holds the enclave's ELF, its\n"
      "configuration (heap, stacks, TCS count, attributes) and, once signed, its SIGSTRUCT.\n"
      "Typical flow: keygen, pack, sign, then verify or inspect.",
      "teemate"};
  app.set_version_flag("--version", "teemate 0.1.0");
  app.require_subcommand(1);
  app.footer(
      "Run 'teemate <verb> --help' for the arguments, options and examples of each verb.\n\n"
      "EXAMPLE\n"
      "  teemate keygen signer.pem\n"
      "  teemate pack --config enclave.toml --elf app.elf -o app.tme\n"
      "  teemate sign --key signer.pem app.tme\n"
      "  teemate verify app.tme\n\n" +
      std::string(teemate::cli::kExitStatusHelp));
  for (auto reg : kVerbs) reg(app);

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == 0) return app.exit(e);  // --help, --version
    std::string verb;
    for (const CLI::App* sub : app.get_subcommands()) verb = " " + sub->get_name();
    std::fprintf(stderr, "teemate%s: %s\nRun 'teemate%s --help' for usage.\n", verb.c_str(), e.what(),
                 verb.c_str());
    return 2;
  }
  // `enclave run` exits with the enclave program's own status.
  if (teemate::cli::exit_status() == 0 && teemate::cli::enclave_run_exit_status() >= 0) {
    return teemate::cli::enclave_run_exit_status();
  }
  return teemate::cli::exit_status();
}
