// The only source of libteemate.so itself: the library is the host runtime
// archive (teemate_host) linked whole, with hidden visibility except for the
// TEEMATE_EXPORT API of include/teemate. CMake needs one source per library;
// never add logic here, or the static and shared builds would differ.
#include "teemate/enclave.h"
