// `teemate edger`: generates typed-call stubs from an .edl interface: the
// enclave side (NAME_t.h, NAME_t.cpp) and the host side (NAME_u.h,
// NAME_u.cpp). A thin verb over host/edl; the build runs it through
// teemate_add_enclave(... EDL ...) and teemate_edl_host(...).
#include <memory>

#include "cli/commands.h"
#include "cli/enclave_symbols.h"
#include "host/edl/edl.h"

namespace teemate::cli {

namespace {

struct EdgerOptions {
  std::string edl;
  std::string trusted_dir;
  std::string untrusted_dir;
};

Status run_edger(const EdgerOptions& o) {
  return edl::generate_files(o.edl, o.trusted_dir, o.untrusted_dir, /*runtime=*/false, enclave_linked_symbols());
}

}  // namespace

void register_edger(CLI::App& app) {
  auto o = std::make_shared<EdgerOptions>();
  CLI::App* cmd = app.add_subcommand("edger", "Generate typed-call stubs from an .edl interface");
  cmd->add_option("EDL", o->edl, "The interface file (NAME.edl)")->required()->check(CLI::ExistingFile);
  cmd->add_option("--trusted-dir", o->trusted_dir, "Write the enclave side here: NAME_t.h, NAME_t.cpp");
  cmd->add_option("--untrusted-dir", o->untrusted_dir, "Write the host side here: NAME_u.h, NAME_u.cpp");
  cmd->footer(man_footer(
      "Read an interface that declares ECALLs (trusted { ... }) and OCALLs (untrusted { ... })\n"
      "once, with the direction and size of every pointer ([in], [out], [in, out], size=, count=,\n"
      "[string], [user_check]), and generate both sides' stubs. The enclave program implements\n"
      "the ECALLs declared in NAME_t.h and calls the OCALLs; the host calls the ECALL proxies in\n"
      "NAME_u.h with its teemate::Enclave and implements the OCALLs, installed by\n"
      "NAME_register_ocalls(). Every request and answer is checked on arrival: exact lengths,\n"
      "sizes recomputed by the receiver, NUL-terminated strings, and a hash of each function's\n"
      "signature, so stubs from a different interface are refused (TM_ERR_INTERFACE).\n"
      "The grammar and the wire format are in docs/typed-calls.md. CMake:\n"
      "teemate_add_enclave(NAME ... EDL NAME.edl) and teemate_edl_host(TARGET NAME.edl).",
      "teemate edger kv.edl --trusted-dir build/gen/t --untrusted-dir build/gen/u"));
  cmd->callback([o] { report("edger", run_edger(*o)); });
}

}  // namespace teemate::cli
