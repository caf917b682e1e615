// open_backend: the one place that knows which backends exist. The host
// runtime and teemated ask for a backend by name ("sim", "sgx") and never
// include a backend's own headers.
#include <string>

#include "host/backend/backend.h"
#include "host/backend/sim/sim_backend.h"

namespace teemate::host {

Result<std::unique_ptr<Backend>> open_backend(std::string_view name) {
  if (name == "sim") return sim::make_sim_backend();
  if (name == "sgx") {
    return unsupported("backend 'sgx' is not built into this TeeMate yet; use --backend sim");
  }
  return invalid_argument("unknown backend '" + std::string(name) + "' (known: sim, sgx)");
}

}  // namespace teemate::host
