// The global symbols that the libraries linked into every enclave define
// (musl's libc.a, the trusted runtime, its mbedTLS subset), sorted; the
// definition is generated at build time from the libraries themselves
// (cmake/EnclaveSymbols.cmake). `teemate edger` refuses interface functions
// with these names. Never hand-edit the list.
#pragma once

#include <span>
#include <string_view>

namespace teemate::cli {

std::span<const std::string_view> enclave_linked_symbols();

}  // namespace teemate::cli
