// The sim backend's one entry point for the backend factory: SGX's build
// and entry semantics in software, with NO confidentiality or integrity
// (it says so on stderr once per process). Nothing else of the sim is
// visible outside src/host/backend/sim.
#pragma once

#include <memory>

#include "host/backend/backend.h"

namespace teemate::host::sim {

std::unique_ptr<Backend> make_sim_backend();

}  // namespace teemate::host::sim
