// See image_loader.h.
#include "host/runtime/image_loader.h"

#include <vector>

namespace teemate::host {

CreateParams create_params_for(const image::Layout& layout) {
  CreateParams cp;
  cp.size = layout.size();
  cp.ssa_frame_pages = layout.ssa_frame_pages();
  cp.misc_select = layout.misc_select();
  cp.attributes = layout.attributes();
  return cp;
}

Status add_image_pages(BackendEnclave& enclave, const image::Layout& layout) {
  std::vector<uint8_t> page(sgx::kPageSize);
  for (const image::PageRange& r : layout.ranges()) {
    for (uint64_t i = 0; i < r.pages; ++i) {
      layout.page_content(r, i, page.data());
      TM_RETURN_IF_ERROR(enclave.add_page(r.offset + i * sgx::kPageSize, page.data(), r.secinfo_flags, r.measured));
    }
  }
  return {};
}

}  // namespace teemate::host
