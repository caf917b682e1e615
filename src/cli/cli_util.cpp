// Helpers shared by the teemate verbs: error reporting, key loading, stdout.
// Never exits the process itself: main() returns exit_status().
#include <errno.h>

#include <cstdio>

#include "cli/commands.h"
#include "host/image/file_util.h"

namespace teemate::cli {

namespace {
int g_exit_status = 0;
constexpr uint64_t kMaxKeyFile = 1 << 20;
}  // namespace

const char* const kExitStatusHelp =
    "EXIT STATUS\n"
    "  0  success\n"
    "  1  the operation failed; the reason is printed as \"teemate <verb>: <message>\"\n"
    "  2  the command line is invalid\n";

std::string man_footer(const std::string& description, const std::string& examples) {
  auto indent = [](const std::string& text) {
    std::string out = "  ";
    for (char c : text) {
      out += c;
      if (c == '\n') out += "  ";
    }
    return out;
  };
  return "DESCRIPTION\n" + indent(description) + "\n\nEXAMPLE\n" + indent(examples) + "\n\n" +
         kExitStatusHelp;
}

void report(const char* verb, const Status& status) {
  if (status.ok()) return;
  std::fprintf(stderr, "teemate %s: %s\n", verb, status.message().c_str());
  g_exit_status = 1;
}

int exit_status() { return g_exit_status; }

Result<sgx::SigningKey> read_signing_key(const std::string& path) {
  TM_ASSIGN_OR_RETURN(std::vector<uint8_t> pem, image::read_file(path, kMaxKeyFile));
  Result<sgx::SigningKey> key =
      sgx::SigningKey::from_pem(std::string(pem.begin(), pem.end()));
  if (!key.ok()) return key.status().with_context(path);
  return key;
}

Status flush_stdout() {
  if (std::fflush(stdout) != 0 || std::ferror(stdout)) {
    return io_error("cannot write to standard output", errno);
  }
  return Status::ok_status();
}

}  // namespace teemate::cli
