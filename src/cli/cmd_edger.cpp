// `teemate edger`: generates typed-call stubs from an .edl interface: the
// enclave side (NAME_t.h, NAME_t.cpp) and the host side (NAME_u.h,
// NAME_u.cpp). A thin verb over host/edl; the build runs it through
// teemate_add_enclave(... EDL ...) and teemate_edl_host(...).
#include <cctype>
#include <filesystem>
#include <memory>

#include "cli/commands.h"
#include "host/edl/edl.h"
#include "host/image/file_util.h"

namespace teemate::cli {

namespace {

struct EdgerOptions {
  std::string edl;
  std::string trusted_dir;
  std::string untrusted_dir;
};

bool is_c_identifier(const std::string& s) {
  if (s.empty() || std::isdigit(static_cast<unsigned char>(s[0]))) return false;
  for (char c : s) {
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '_') return false;
  }
  return true;
}

Status write_text(const std::string& dir, const std::string& name, const std::string& text) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return io_error("creating " + dir, ec.value());
  const std::string path = dir + "/" + name;
  return image::write_file_atomic(path, {reinterpret_cast<const uint8_t*>(text.data()), text.size()}, 0644, true);
}

Status run_edger(const EdgerOptions& o) {
  if (o.trusted_dir.empty() && o.untrusted_dir.empty()) {
    return invalid_argument("nothing to generate: give --trusted-dir, --untrusted-dir or both");
  }
  const std::string name = std::filesystem::path(o.edl).stem().string();
  if (!is_c_identifier(name)) {
    return invalid_argument(o.edl + ": the file name (without .edl) names the generated files and functions, so it "
                            "must be a C identifier, not '" + name + "'");
  }
  TM_ASSIGN_OR_RETURN(std::vector<uint8_t> bytes, image::read_file(o.edl, 1 << 20));
  TM_ASSIGN_OR_RETURN(edl::Interface iface,
                      edl::parse(std::string_view(reinterpret_cast<const char*>(bytes.data()), bytes.size()), o.edl, name));
  const edl::Generated g = edl::generate(iface);
  if (!o.trusted_dir.empty()) {
    TM_RETURN_IF_ERROR(write_text(o.trusted_dir, name + "_t.h", g.trusted_header));
    TM_RETURN_IF_ERROR(write_text(o.trusted_dir, name + "_t.cpp", g.trusted_source));
  }
  if (!o.untrusted_dir.empty()) {
    TM_RETURN_IF_ERROR(write_text(o.untrusted_dir, name + "_u.h", g.untrusted_header));
    TM_RETURN_IF_ERROR(write_text(o.untrusted_dir, name + "_u.cpp", g.untrusted_source));
  }
  return {};
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
