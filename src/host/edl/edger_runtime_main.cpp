// teemate-edger-runtime: generates the stubs of the runtime's own
// interfaces (src/common/tm_*.edl) during TeeMate's build, before the
// teemate tool exists (the tool links the host runtime that includes them).
// Build-time only; never installed. Usage:
//   teemate-edger-runtime EDL TRUSTED_DIR UNTRUSTED_DIR
#include <cstdio>

#include "host/edl/edl.h"

int main(int argc, char** argv) {
  if (argc != 4) {
    std::fprintf(stderr, "usage: %s EDL TRUSTED_DIR UNTRUSTED_DIR\n", argv[0]);
    return 2;
  }
  teemate::Status st = teemate::edl::generate_files(argv[1], argv[2], argv[3], /*runtime=*/true);
  if (!st.ok()) {
    std::fprintf(stderr, "teemate-edger-runtime: %s\n", st.message().c_str());
    return 1;
  }
  return 0;
}
