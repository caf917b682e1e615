// libFuzzer target for everything that reads untrusted image bytes:
// parse_image + ElfImage::parse + Layout::compute (via load_image_bytes), the
// raw ELF parser, the instruction scan and enclave.toml parsing. Inputs
// starting with the .tme magic go to the image path, inputs starting with '['
// to the TOML parser, everything else to the ELF parser. Never measures or
// walks a layout large enough to make an input slow rather than wrong.
#include <string.h>

#include <memory>
#include <span>
#include <string_view>
#include <vector>

#include "host/image/image_file.h"
#include "host/image/instruction_scan.h"

namespace {

using teemate::image::ElfImage;
using teemate::image::Layout;

constexpr uint64_t kMaxPagesToTouch = 8;

void exercise(const ElfImage& elf, const Layout& layout) {
  alignas(64) static uint8_t page[4096];
  for (const teemate::image::PageRange& r : layout.ranges()) {
    for (uint64_t i = 0; i < r.pages && i < kMaxPagesToTouch; ++i) layout.page_content(r, i, page);
    layout.page_content(r, r.pages - 1, page);
  }
  if (layout.total_pages() <= 512) (void)layout.measure();
  for (const auto& s : elf.segments()) (void)elf.symbol_at(s.vaddr);
  (void)teemate::image::find_forbidden_instructions(elf);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::span<const uint8_t> in(data, size);
  if (size >= 7 && memcmp(data, teemate::image::kImageMagic, 7) == 0) {
    auto loaded = teemate::image::load_image_bytes(in, "fuzz.tme");
    if (loaded.ok()) exercise(loaded->elf, loaded->layout);
    return 0;
  }
  if (size >= 1 && data[0] == '[') {
    std::string_view text(reinterpret_cast<const char*>(data), size);
    (void)teemate::image::parse_config_toml(text, "fuzz.toml");
    return 0;
  }
  auto bytes = std::make_shared<const std::vector<uint8_t>>(data, data + size);
  auto elf = ElfImage::parse(bytes, "fuzz.elf");
  if (!elf.ok()) return 0;
  teemate::image::EnclaveConfig config;
  config.heap_size = 16 * 4096;
  config.stack_size = 2 * 4096;
  config.tcs_count = 1;
  auto layout = Layout::compute(elf.value(), config);
  if (layout.ok()) exercise(elf.value(), layout.value());
  return 0;
}
