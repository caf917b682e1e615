// Turns a validated image layout into a backend enclave: the ECREATE
// parameters and the EADD/EEXTEND of every page in layout (EADD) order.
// The only place that walks a layout onto a backend; callers add EINIT.
#pragma once

#include "teemate/status.h"
#include "host/backend/backend.h"
#include "host/image/layout.h"

namespace teemate::host {

// SECS fields for ECREATE, as the layout and its config define them.
CreateParams create_params_for(const image::Layout& layout);

// EADD (and EEXTEND where measured) of every page. Errors name the offset.
Status add_image_pages(BackendEnclave& enclave, const image::Layout& layout);

}  // namespace teemate::host
