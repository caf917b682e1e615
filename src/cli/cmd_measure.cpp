// `teemate measure`: prints an image's MRENCLAVE as one line of hex. Reads
// only; the value is computed from the layout, never taken from the SIGSTRUCT.
#include <cstdio>
#include <memory>

#include "cli/commands.h"
#include "host/image/image_file.h"

namespace teemate::cli {

namespace {

Status run_measure(const std::string& path) {
  TM_ASSIGN_OR_RETURN(image::LoadedImage img, image::load_image(path));
  std::printf("%s\n", sgx::to_hex(img.layout.measure()).c_str());
  return flush_stdout();
}

}  // namespace

void register_measure(CLI::App& app) {
  auto path = std::make_shared<std::string>();
  CLI::App* cmd = app.add_subcommand("measure", "Print the MRENCLAVE of an image");
  cmd->add_option("IMAGE", *path, "The image (.tme)")->required();
  cmd->footer(man_footer(
      "Print the MRENCLAVE of an image (signed or not) as 64 hex digits on one line. The value\n"
      "is computed from the ELF and the configuration, the way SGX measures ECREATE, EADD and\n"
      "EEXTEND, so it is what EREPORT will show for an enclave built from this image on either\n"
      "backend.",
      "teemate measure hello.tme\n"
      "test \"$(teemate measure a.tme)\" = \"$(teemate measure b.tme)\""));
  cmd->callback([path] { report("measure", run_measure(*path)); });
}

}  // namespace teemate::cli
