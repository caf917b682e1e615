// `teemate keygen`: creates an RSA-3072 (e = 3) enclave signing key as a PEM
// file with mode 0600. Never overwrites an existing file without --force and
// never leaves a partial key file.
#include <cstdio>
#include <memory>

#include "cli/commands.h"
#include "host/image/file_util.h"

namespace teemate::cli {

namespace {

struct KeygenOptions {
  std::string out;
  bool force = false;
};

Status run_keygen(const KeygenOptions& o) {
  TM_ASSIGN_OR_RETURN(sgx::SigningKey key, sgx::SigningKey::generate());
  // MRSIGNER is the hash of the modulus; a throw-away SIGSTRUCT yields it.
  sgx::SigstructFields fields;
  fields.attributes = {sgx::kAttrMode64, sgx::kXfrmLegacy};
  TM_ASSIGN_OR_RETURN(sgx::Sigstruct probe, sgx::sign_sigstruct(fields, key));
  const std::string pem = key.to_pem();
  Status st = image::write_file_atomic(
      o.out, std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(pem.data()), pem.size()), 0600,
      o.force);
  if (!st.ok()) {
    if (!o.force && st.code() == Code::kInvalidArgument) {
      return invalid_argument(o.out + " already exists (use --force to replace it)");
    }
    return st;
  }
  std::printf("wrote %s (RSA-3072, e = 3, mode 0600)\nmrsigner %s\n", o.out.c_str(),
              sgx::to_hex(sgx::mrsigner_of(probe)).c_str());
  return flush_stdout();
}

}  // namespace

void register_keygen(CLI::App& app) {
  auto o = std::make_shared<KeygenOptions>();
  CLI::App* cmd = app.add_subcommand("keygen", "Create an RSA-3072 (e = 3) enclave signing key");
  cmd->add_option("OUT", o->out, "Path of the PEM file to create")->required();
  cmd->add_flag("-f,--force", o->force, "Replace OUT if it already exists");
  cmd->footer(man_footer(
      "Create an enclave signing key: RSA-3072 with public exponent 3, as SGX requires for\n"
      "SIGSTRUCT. The key is written as PKCS#8 PEM with file mode 0600. MRSIGNER, the identity\n"
      "every enclave signed with this key will have, is printed. Keep the key secret: whoever\n"
      "holds it can sign enclaves that unseal data sealed to this MRSIGNER.",
      "teemate keygen signer.pem\n"
      "teemate keygen --force ~/.config/teemate/signer.pem"));
  cmd->callback([o] { report("keygen", run_keygen(*o)); });
}

}  // namespace teemate::cli
