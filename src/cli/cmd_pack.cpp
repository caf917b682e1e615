// `teemate pack`: enclave.toml + a static-PIE ELF -> an unsigned .tme image.
// Refuses anything the loader would refuse (bad config, bad ELF, a layout
// over the size limit, system-call instructions) before writing, and never
// leaves a partial output file.
#include <cstdio>
#include <memory>

#include "cli/commands.h"
#include "host/image/file_util.h"
#include "host/image/image_file.h"
#include "host/image/ecall_table.h"
#include "host/image/instruction_scan.h"

namespace teemate::cli {

namespace {

struct PackOptions {
  std::string config;
  std::string elf;
  std::string out;
};

constexpr uint64_t kMaxConfigFile = 1 << 20;

Status run_pack(const PackOptions& o) {
  TM_ASSIGN_OR_RETURN(std::vector<uint8_t> toml, image::read_file(o.config, kMaxConfigFile));
  TM_ASSIGN_OR_RETURN(image::EnclaveConfig config,
                      image::parse_config_toml(std::string_view(reinterpret_cast<const char*>(toml.data()),
                                                                toml.size()),
                                               o.config));
  Status hashed = image::hash_trusted_files(&config.manifest);
  if (!hashed.ok()) return hashed.with_context(o.config);
  TM_ASSIGN_OR_RETURN(std::vector<uint8_t> elf_bytes, image::read_file(o.elf, image::kMaxImageFileSize));
  auto shared = std::make_shared<const std::vector<uint8_t>>(std::move(elf_bytes));
  TM_ASSIGN_OR_RETURN(image::ElfImage elf, image::ElfImage::parse(shared, o.elf));
  Result<image::Layout> layout = image::Layout::compute(elf, config);
  if (!layout.ok()) return layout.status().with_context(o.config);
  TM_RETURN_IF_ERROR(image::check_ecall_table(elf).with_context(o.elf));
  Status scan = image::scan_forbidden_instructions(elf);
  if (!scan.ok()) return scan.with_context(o.elf);

  image::ImageFile file;
  file.config = config;
  file.elf_bytes = shared;
  TM_RETURN_IF_ERROR(image::write_image_file(o.out, file));
  std::printf("%s: unsigned image, enclave size %llu KiB, %llu pages, %u TCS", o.out.c_str(),
              static_cast<unsigned long long>(layout->size() >> 10),
              static_cast<unsigned long long>(layout->total_pages()), config.tcs_count);
  if (!config.manifest.mounts.empty()) {
    std::printf(", %zu mounts, %zu trusted files", config.manifest.mounts.size(), config.manifest.files.size());
  }
  std::printf(" (next: teemate sign)\n");
  return flush_stdout();
}

}  // namespace

void register_pack(CLI::App& app) {
  auto o = std::make_shared<PackOptions>();
  CLI::App* cmd = app.add_subcommand("pack", "Build an unsigned enclave image (.tme) from enclave.toml and a static-PIE ELF");
  cmd->add_option("-c,--config", o->config, "enclave.toml: the [enclave] table (heap_size, "
                                            "stack_size, tcs_count, ...)")
      ->required();
  cmd->add_option("-e,--elf", o->elf, "The enclave program (static-PIE ELF)")->required();
  cmd->add_option("-o,--output", o->out, "The image to write (.tme); replaced atomically")->required();
  cmd->footer(man_footer(
      "Build an unsigned enclave image from an enclave program and its configuration.\n"
      "The program must be a static PIE linked at address 0 (gcc -static-pie -nostdlib ...) with\n"
      "only R_X86_64_RELATIVE relocations, no TLS and no W+X segment. The configuration is\n"
      "checked key by key, the page layout is computed (so an enclave that would exceed 64 GiB is\n"
      "refused here) and the code is scanned for syscall, sysenter and int 0x80, which enclave\n"
      "code may not contain. Each [[mount]] table of type \"trusted\" is hashed now: every regular\n"
      "file under its host path (relative paths are taken from the working directory) gets its\n"
      "SHA-256 in the measured manifest, and the enclave refuses any other content at run time.\n"
      "See docs/enclave-image.md for the TOML keys and docs/enclave-files.md for mounts.",
      "teemate pack --config enclave.toml --elf hello.elf -o hello.tme"));
  cmd->callback([o] { report("pack", run_pack(*o)); });
}

}  // namespace teemate::cli
