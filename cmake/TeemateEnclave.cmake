# Building enclave programs: freestanding static PIE against musl's headers
# and the trusted runtime, then packed, scanned for system-call instructions
# and signed into build/enclaves/NAME.tme.
#
#   teemate_add_enclave(NAME
#     SOURCES a.c b.cpp ...
#     CONFIG  enclave.toml
#     [KEY    signing-key.pem])   # default: a development key made at build time
#
# musl's libc.a supplies pure functions (string, snprintf, strtod, math,
# qsort, setjmp); anything that would reach the host is the runtime's.

set(TEEMATE_MUSL_INCLUDE /usr/include/x86_64-linux-musl)
set(TEEMATE_MUSL_LIBC /usr/lib/x86_64-linux-musl/libc.a)
if(NOT EXISTS ${TEEMATE_MUSL_LIBC})
  message(FATAL_ERROR "musl not found (${TEEMATE_MUSL_LIBC}): apt-get install musl-dev")
endif()
execute_process(COMMAND ${CMAKE_C_COMPILER} -print-file-name=include
  OUTPUT_VARIABLE TEEMATE_GCC_INCLUDE OUTPUT_STRIP_TRAILING_WHITESPACE)
execute_process(COMMAND ${CMAKE_C_COMPILER} -print-libgcc-file-name
  OUTPUT_VARIABLE TEEMATE_LIBGCC OUTPUT_STRIP_TRAILING_WHITESPACE)
set(TEEMATE_CXX_INCLUDES "")
foreach(dir ${CMAKE_CXX_IMPLICIT_INCLUDE_DIRECTORIES})
  if(dir MATCHES "/c\\+\\+/")
    list(APPEND TEEMATE_CXX_INCLUDES "-isystem${dir}")
  endif()
endforeach()

# Compile flags shared by the trusted runtime and every enclave program.
add_library(teemate_enclave_flags INTERFACE)
target_compile_options(teemate_enclave_flags INTERFACE
  -fPIE -fno-stack-protector -fno-plt -fvisibility=hidden -ffunction-sections -fdata-sections
  -fno-omit-frame-pointer -nostdinc
  # Reproducible images: no build paths in measured bytes (__FILE__ in asserts).
  -ffile-prefix-map=${PROJECT_SOURCE_DIR}=. -ffile-prefix-map=${CMAKE_BINARY_DIR}=build
  $<$<COMPILE_LANGUAGE:CXX>:-fno-exceptions -fno-rtti -fno-asynchronous-unwind-tables ${TEEMATE_CXX_INCLUDES}
    -include ${PROJECT_SOURCE_DIR}/include/teemate/trusted/libstdcxx_compat.h>
  -isystem${TEEMATE_MUSL_INCLUDE} -isystem${TEEMATE_GCC_INCLUDE}
  -Wall -Wextra -Wno-missing-field-initializers $<$<BOOL:${TEEMATE_WERROR}>:-Werror>)
# Enclave programs see only the public headers; the trusted runtime adds src/
# (the ABI) privately.
target_include_directories(teemate_enclave_flags INTERFACE ${PROJECT_SOURCE_DIR}/include)

# The development signing key, made once per build tree by `teemate keygen`.
# Called from the top level after the CLI target exists.
set(TEEMATE_DEV_KEY ${CMAKE_BINARY_DIR}/keys/dev-signing-key.pem)
function(teemate_define_dev_key)
  add_custom_command(OUTPUT ${TEEMATE_DEV_KEY}
    COMMAND ${CMAKE_COMMAND} -E make_directory ${CMAKE_BINARY_DIR}/keys
    COMMAND $<TARGET_FILE:teemate> keygen --force ${TEEMATE_DEV_KEY}
    COMMENT "Generating the development signing key (RSA-3072, e=3)")
  add_custom_target(teemate_dev_key DEPENDS ${TEEMATE_DEV_KEY})
  add_dependencies(teemate_dev_key teemate)
endfunction()

function(teemate_add_enclave name)
  cmake_parse_arguments(E "" "CONFIG;KEY" "SOURCES;LIBS" ${ARGN})
  if(NOT E_CONFIG)
    message(FATAL_ERROR "teemate_add_enclave(${name}): CONFIG enclave.toml is required")
  endif()
  if(NOT E_KEY)
    set(E_KEY ${TEEMATE_DEV_KEY})
  endif()
  set(elf ${name}_enclave_elf)
  add_executable(${elf} ${E_SOURCES})
  set_target_properties(${elf} PROPERTIES OUTPUT_NAME ${name}.elf
    RUNTIME_OUTPUT_DIRECTORY ${TEEMATE_ENCLAVE_DIR} LINKER_LANGUAGE CXX
    POSITION_INDEPENDENT_CODE ON)
  target_link_libraries(${elf} PRIVATE teemate_enclave_flags)
  target_link_options(${elf} PRIVATE -nostdlib -static-pie -Wl,-z,norelro -Wl,-z,text
    -Wl,-z,noexecstack -Wl,--gc-sections -Wl,--build-id=none -Wl,-e,teemate_enclave_entry)
  # The trusted runtime and its mbedTLS subset (sealing, reports) go into
  # every enclave; --gc-sections drops what a program does not use.
  target_link_libraries(${elf} PRIVATE -Wl,--start-group $<TARGET_FILE:teemate_trts>
    $<TARGET_FILE:teemate_enclave_mbedtls> ${E_LIBS}
    ${TEEMATE_MUSL_LIBC} ${TEEMATE_LIBGCC} -Wl,--end-group)
  add_dependencies(${elf} teemate_trts teemate_enclave_mbedtls)
  set_property(TARGET ${elf} APPEND PROPERTY LINK_DEPENDS $<TARGET_FILE:teemate_trts>
    $<TARGET_FILE:teemate_enclave_mbedtls>)

  set(config ${E_CONFIG})
  if(NOT IS_ABSOLUTE ${config})
    set(config ${CMAKE_CURRENT_SOURCE_DIR}/${config})
  endif()
  set(unsigned ${TEEMATE_ENCLAVE_DIR}/${name}.unsigned.tme)
  set(image ${TEEMATE_ENCLAVE_DIR}/${name}.tme)
  add_custom_command(OUTPUT ${image}
    COMMAND $<TARGET_FILE:teemate> pack --config ${config} --elf $<TARGET_FILE:${elf}> -o ${unsigned}
    COMMAND $<TARGET_FILE:teemate> sign --key ${E_KEY} -o ${image} ${unsigned}
    DEPENDS ${elf} ${config} teemate ${E_KEY}
    COMMENT "Packing and signing enclave image ${name}.tme")
  add_custom_target(${name}_enclave ALL DEPENDS ${image})
  if(E_KEY STREQUAL TEEMATE_DEV_KEY)
    add_dependencies(${name}_enclave teemate_dev_key)
  endif()
endfunction()
