// teemate::version(): the library's version, set by the build. Host-only.
#include "teemate/enclave.h"

namespace teemate {

const char* version() { return TEEMATE_VERSION_STRING; }

}  // namespace teemate
