# Enclave builds inside this source tree: points the SDK's enclave rules
# (cmake/TeeMateEnclaveRules.cmake, the same file an installed SDK uses) at
# the in-tree trusted runtime, the in-tree teemate tool and Debian's musl.
# Never put enclave build logic here: it belongs in the rules file, so that
# outside projects get exactly what this tree's enclaves get.

set(TEEMATE_MUSL_INCLUDE /usr/include/x86_64-linux-musl)
set(TEEMATE_MUSL_LIBC /usr/lib/x86_64-linux-musl/libc.a)
if(NOT EXISTS ${TEEMATE_MUSL_LIBC})
  message(FATAL_ERROR "musl not found (${TEEMATE_MUSL_LIBC}): apt-get install musl-dev")
endif()

set(TEEMATE_SDK_INCLUDE_DIR ${PROJECT_SOURCE_DIR}/include)
set(TEEMATE_SDK_MUSL_INCLUDE ${TEEMATE_MUSL_INCLUDE})
set(TEEMATE_SDK_MUSL_LIBC ${TEEMATE_MUSL_LIBC})
set(TEEMATE_SDK_TRTS teemate_trts)          # src/enclave
set(TEEMATE_SDK_MBEDTLS teemate_enclave_mbedtls)
set(TEEMATE_SDK_TOOL teemate)               # src/cli
set(TEEMATE_SDK_PREFIX_MAPS "")
include(${CMAKE_CURRENT_LIST_DIR}/TeeMateEnclaveRules.cmake)
