// generate_files: an interface file in, the four generated files out, for
// `teemate edger` and the in-tree runtime build (teemate-edger-runtime).
// Writes each file atomically; writes nothing when the interface is bad.
#include <cctype>
#include <filesystem>

#include "host/edl/edl.h"
#include "host/image/file_util.h"

namespace teemate::edl {

namespace {

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
  return image::write_file_atomic(dir + "/" + name, {reinterpret_cast<const uint8_t*>(text.data()), text.size()},
                                  0644, true);
}

}  // namespace

Status generate_files(const std::string& edl_path, const std::string& trusted_dir, const std::string& untrusted_dir,
                      bool runtime, std::span<const std::string_view> linked_symbols) {
  if (trusted_dir.empty() && untrusted_dir.empty()) {
    return invalid_argument("nothing to generate: give --trusted-dir, --untrusted-dir or both");
  }
  const std::string name = std::filesystem::path(edl_path).stem().string();
  if (!is_c_identifier(name)) {
    return invalid_argument(edl_path + ": the file name (without .edl) names the generated files and functions, so "
                            "it must be a C identifier, not '" + name + "'");
  }
  TM_ASSIGN_OR_RETURN(std::vector<uint8_t> bytes, image::read_file(edl_path, 1 << 20));
  TM_ASSIGN_OR_RETURN(Interface iface,
                      parse(std::string_view(reinterpret_cast<const char*>(bytes.data()), bytes.size()), edl_path, name,
                            runtime, linked_symbols));
  const Generated g = generate(iface);
  if (!trusted_dir.empty()) {
    TM_RETURN_IF_ERROR(write_text(trusted_dir, name + "_t.h", g.trusted_header));
    TM_RETURN_IF_ERROR(write_text(trusted_dir, name + "_t.cpp", g.trusted_source));
  }
  if (!untrusted_dir.empty()) {
    TM_RETURN_IF_ERROR(write_text(untrusted_dir, name + "_u.h", g.untrusted_header));
    TM_RETURN_IF_ERROR(write_text(untrusted_dir, name + "_u.cpp", g.untrusted_source));
  }
  return {};
}

}  // namespace teemate::edl
