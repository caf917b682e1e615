// `teemate verify`: everything a loader would check before EINIT, without
// building an enclave: ELF and config validity, no system-call instructions,
// a valid SIGSTRUCT whose ENCLAVEHASH equals the recomputed MRENCLAVE and
// whose identity fields agree with the config. Reads only.
#include <cstdio>
#include <memory>

#include "cli/commands.h"
#include "host/image/image_file.h"
#include "host/image/instruction_scan.h"

namespace teemate::cli {

namespace {

Status run_verify(const std::string& path) {
  TM_ASSIGN_OR_RETURN(image::LoadedImage img, image::load_image(path));
  Status scan = image::scan_forbidden_instructions(img.elf);
  if (!scan.ok()) return scan.with_context(path);
  const sgx::Digest mrenclave = img.layout.measure();
  Status sig = image::check_image_signature(img, mrenclave);
  if (!sig.ok()) return sig.with_context(path);
  std::printf("OK\nmrenclave %s\nmrsigner %s\n", sgx::to_hex(mrenclave).c_str(),
              sgx::to_hex(sgx::mrsigner_of(img.file.sigstruct)).c_str());
  return flush_stdout();
}

}  // namespace

void register_verify(CLI::App& app) {
  auto path = std::make_shared<std::string>();
  CLI::App* cmd = app.add_subcommand("verify", "Check an image's signature and MRENCLAVE as a loader would");
  cmd->add_option("IMAGE", *path, "The signed image (.tme)")->required();
  cmd->footer(man_footer(
      "Check a signed image as a loader would before EINIT: the ELF and the configuration are\n"
      "valid, the code contains no syscall/sysenter/int 0x80, the SIGSTRUCT's RSA signature and\n"
      "Q1/Q2 are correct, its ENCLAVEHASH equals the MRENCLAVE recomputed from the image, and its\n"
      "ISVPRODID, ISVSVN, ATTRIBUTES, masks and MISCSELECT agree with the configuration.\n"
      "Prints OK, MRENCLAVE and MRSIGNER, or the first check that failed.",
      "teemate verify hello.tme && echo ready to ship"));
  cmd->callback([path] { report("verify", run_verify(*path)); });
}

}  // namespace teemate::cli
