// `teemate sign`: computes MRENCLAVE from an image's layout, builds and signs
// its SIGSTRUCT from the config, and writes the signed image (in place by
// default). The write is atomic: a failure leaves the old file as it was.
#include <cstdio>
#include <memory>

#include "cli/commands.h"
#include "host/image/image_file.h"
#include "host/image/instruction_scan.h"

namespace teemate::cli {

namespace {

struct SignOptions {
  std::string key;
  std::string image;
  std::string out;
};

Status run_sign(const SignOptions& o) {
  TM_ASSIGN_OR_RETURN(sgx::SigningKey key, read_signing_key(o.key));
  TM_ASSIGN_OR_RETURN(image::LoadedImage img, image::load_image(o.image));
  Status scan = image::scan_forbidden_instructions(img.elf);
  if (!scan.ok()) return scan.with_context(o.image);
  const sgx::Digest mrenclave = img.layout.measure();
  TM_ASSIGN_OR_RETURN(sgx::Sigstruct sig,
                      sgx::sign_sigstruct(image::sigstruct_fields_for(img.layout, mrenclave), key));
  img.file.sigstruct = sig;
  img.file.is_signed = true;
  Status check = image::check_image_signature(img, mrenclave);
  if (!check.ok()) return internal_error("the new signature does not verify: " + check.message());
  const std::string out = o.out.empty() ? o.image : o.out;
  TM_RETURN_IF_ERROR(image::write_image_file(out, img.file));
  std::printf("mrenclave %s\nmrsigner %s\n", sgx::to_hex(mrenclave).c_str(),
              sgx::to_hex(sgx::mrsigner_of(sig)).c_str());
  return flush_stdout();
}

}  // namespace

void register_sign(CLI::App& app) {
  auto o = std::make_shared<SignOptions>();
  CLI::App* cmd = app.add_subcommand("sign", "Sign an image: compute MRENCLAVE and write its SIGSTRUCT");
  cmd->add_option("-k,--key", o->key, "PEM private key (RSA-3072, e = 3; see teemate keygen)")
      ->required();
  cmd->add_option("IMAGE", o->image, "The image to sign (.tme)")->required();
  cmd->add_option("-o,--output", o->out, "Write the signed image here instead of replacing IMAGE");
  cmd->footer(man_footer(
      "Sign an enclave image. MRENCLAVE is computed from the image's page layout exactly as\n"
      "ECREATE/EADD/EEXTEND would measure it; the SIGSTRUCT takes ATTRIBUTES (MODE64BIT, DEBUG\n"
      "when debug = true, plus enclave.attributes), XFRM, the attribute masks, MISCSELECT/MISCMASK\n"
      "and ISVPRODID/ISVSVN from the image's configuration, and today's date. An existing\n"
      "signature is replaced. Prints MRENCLAVE and MRSIGNER.",
      "teemate sign --key signer.pem hello.tme\n"
      "teemate sign --key signer.pem hello.tme -o hello-signed.tme"));
  cmd->callback([o] { report("sign", run_sign(*o)); });
}

}  // namespace teemate::cli
