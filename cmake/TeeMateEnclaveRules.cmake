# teemate_add_enclave: builds an enclave program into a signed image. One
# file for both users: this source tree (cmake/TeemateEnclave.cmake sets the
# variables below to in-tree targets) and projects built against an
# installed SDK (TeeMateConfig.cmake sets them to the installed files).
# Never refers to the source tree itself: everything comes from the
# variables.
#
#   teemate_add_enclave(NAME
#     SOURCES a.c b.cpp ...
#     CONFIG  enclave.toml
#     [KEY    signing-key.pem]   # default: a development key made once per build tree
#     [EDL    iface.edl ...]     # typed calls: adds the generated enclave side
#     [LIBS   extra enclave libraries ...]
#     [TRUSTED_FILES files ...])  # under trusted [[mount]]s: repack when they change
#
# pack runs in the directory of CONFIG, so relative [[mount]] host paths
# (and the trusted files hashed into the image) are taken from there.
#
#   teemate_edl_host(TARGET host_target EDL iface.edl ...)
#     adds the generated host side (iface_u.h, iface_u.cpp) to a host target,
#     which must also link the host API (TeeMate::host).
#
# Output: ${TEEMATE_ENCLAVE_DIR}/NAME.tme (default: the build directory).
#
# The compiler flags that shape the enclave's code are the SDK's, not the
# consuming project's: C11 and C++20 without GNU extensions, -O2, NDEBUG,
# baseline x86-64, no fast-math, build paths mapped away. They are appended
# after whatever CMAKE_<LANG>_FLAGS and build type the project sets, so the
# same sources give the same MRENCLAVE in a Debug and a Release build.
#
# Inputs (set before including this file):
#   TEEMATE_SDK_INCLUDE_DIR  the public headers (teemate/trusted/runtime.h)
#   TEEMATE_SDK_MUSL_INCLUDE musl's headers;  TEEMATE_SDK_MUSL_LIBC musl's libc.a
#   TEEMATE_SDK_TRTS, TEEMATE_SDK_MBEDTLS  targets of the trusted runtime and its mbedTLS subset
#   TEEMATE_SDK_TOOL         the teemate executable target (pack, sign, keygen)
#   TEEMATE_SDK_PREFIX_MAPS  extra "-ffile-prefix-map=OLD=NEW" options (may be empty)

include_guard(GLOBAL)

foreach(var TEEMATE_SDK_INCLUDE_DIR TEEMATE_SDK_MUSL_INCLUDE TEEMATE_SDK_MUSL_LIBC TEEMATE_SDK_TRTS
            TEEMATE_SDK_MBEDTLS TEEMATE_SDK_TOOL)
  if(NOT DEFINED ${var})
    message(FATAL_ERROR "TeeMateEnclaveRules.cmake: ${var} is not set (include it through find_package(TeeMate))")
  endif()
endforeach()
if(NOT EXISTS ${TEEMATE_SDK_MUSL_LIBC})
  message(FATAL_ERROR "TeeMate: musl's libc.a for enclaves not found at ${TEEMATE_SDK_MUSL_LIBC}")
endif()
if(NOT CMAKE_C_COMPILER_LOADED OR NOT CMAKE_CXX_COMPILER_LOADED)
  message(FATAL_ERROR "TeeMate: enclave programs need the C and CXX languages: project(... LANGUAGES C CXX)")
endif()
if(NOT DEFINED TEEMATE_ENCLAVE_DIR)
  set(TEEMATE_ENCLAVE_DIR ${CMAKE_BINARY_DIR})
endif()

# The compiler's own freestanding headers (stddef.h, intrinsics), libgcc,
# and the libstdc++ headers (header-only parts only inside an enclave).
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

# Compile flags of every enclave program (and, in the source tree, of the
# trusted runtime itself).
add_library(teemate_enclave_flags INTERFACE)
target_compile_options(teemate_enclave_flags INTERFACE
  -fPIE -fno-stack-protector -fno-plt -fvisibility=hidden -ffunction-sections -fdata-sections
  -fno-omit-frame-pointer -nostdinc
  # Fixed code generation, whatever the consuming project sets before us.
  -O2 -DNDEBUG -march=x86-64 -mtune=generic -fno-fast-math
  $<$<COMPILE_LANGUAGE:C>:-std=c11> $<$<COMPILE_LANGUAGE:CXX>:-std=c++20>
  # Reproducible images: no build paths in measured bytes (__FILE__ in asserts).
  -ffile-prefix-map=${CMAKE_SOURCE_DIR}=. -ffile-prefix-map=${CMAKE_BINARY_DIR}=build
  -ffile-prefix-map=${TEEMATE_SDK_INCLUDE_DIR}=teemate-include ${TEEMATE_SDK_PREFIX_MAPS}
  $<$<COMPILE_LANGUAGE:CXX>:-fno-exceptions -fno-rtti -fno-asynchronous-unwind-tables ${TEEMATE_CXX_INCLUDES}
    -include ${TEEMATE_SDK_INCLUDE_DIR}/teemate/trusted/libstdcxx_compat.h>
  # Search order matters: musl before the SDK's include directory, which is
  # /usr/include for a Debian package and must never supply glibc's headers.
  -isystem${TEEMATE_SDK_MUSL_INCLUDE} -isystem${TEEMATE_GCC_INCLUDE} -isystem${TEEMATE_SDK_INCLUDE_DIR}
  -Wall -Wextra -Wno-missing-field-initializers $<$<BOOL:${TEEMATE_WERROR}>:-Werror>)

# The development signing key, made once per build tree by `teemate keygen`.
# Never use it for an image anyone else is to trust.
set(TEEMATE_DEV_KEY ${CMAKE_BINARY_DIR}/keys/dev-signing-key.pem)
add_custom_command(OUTPUT ${TEEMATE_DEV_KEY}
  COMMAND ${CMAKE_COMMAND} -E make_directory ${CMAKE_BINARY_DIR}/keys
  COMMAND ${TEEMATE_SDK_TOOL} keygen --force ${TEEMATE_DEV_KEY}
  DEPENDS ${TEEMATE_SDK_TOOL}
  COMMENT "Generating the development signing key (RSA-3072, e=3)")
add_custom_target(teemate_dev_key DEPENDS ${TEEMATE_DEV_KEY})

# Generates one side of an interface into the build directory; sets
# <out_sources> to the generated source and <out_dir> to the include dir.
function(teemate_edl_generate edl side out_sources out_dir)
  if(NOT IS_ABSOLUTE ${edl})
    set(edl ${CMAKE_CURRENT_SOURCE_DIR}/${edl})
  endif()
  get_filename_component(stem ${edl} NAME_WE)
  set(dir ${CMAKE_CURRENT_BINARY_DIR}/teemate_edl/${stem}_${side})
  if(side STREQUAL "trusted")
    set(files ${dir}/${stem}_t.h ${dir}/${stem}_t.cpp)
    set(flag --trusted-dir)
  else()
    set(files ${dir}/${stem}_u.h ${dir}/${stem}_u.cpp)
    set(flag --untrusted-dir)
  endif()
  # Once per directory, however many targets use the interface.
  get_property(done DIRECTORY PROPERTY TEEMATE_EDL_GENERATED_${stem}_${side})
  if(NOT done)
    add_custom_command(OUTPUT ${files}
      COMMAND ${TEEMATE_SDK_TOOL} edger ${edl} ${flag} ${dir}
      DEPENDS ${edl} ${TEEMATE_SDK_TOOL}
      COMMENT "Generating the ${side} stubs of ${stem}.edl")
    set_property(DIRECTORY PROPERTY TEEMATE_EDL_GENERATED_${stem}_${side} 1)
  endif()
  list(GET files 1 source)
  set(${out_sources} ${source} PARENT_SCOPE)
  set(${out_dir} ${dir} PARENT_SCOPE)
endfunction()

function(teemate_edl_host)
  cmake_parse_arguments(H "" "TARGET" "EDL" ${ARGN})
  if(NOT H_TARGET OR NOT H_EDL)
    message(FATAL_ERROR "teemate_edl_host: TARGET and EDL are required")
  endif()
  foreach(edl ${H_EDL})
    teemate_edl_generate(${edl} untrusted src dir)
    target_sources(${H_TARGET} PRIVATE ${src})
    target_include_directories(${H_TARGET} PRIVATE ${dir})
  endforeach()
endfunction()

function(teemate_add_enclave name)
  cmake_parse_arguments(E "" "CONFIG;KEY" "SOURCES;LIBS;EDL;TRUSTED_FILES" ${ARGN})
  if(NOT E_CONFIG)
    message(FATAL_ERROR "teemate_add_enclave(${name}): CONFIG enclave.toml is required")
  endif()
  if(NOT E_SOURCES)
    message(FATAL_ERROR "teemate_add_enclave(${name}): SOURCES is empty")
  endif()
  if(NOT E_KEY)
    set(E_KEY ${TEEMATE_DEV_KEY})
  endif()
  set(elf ${name}_enclave_elf)
  set(edl_dirs "")
  foreach(edl ${E_EDL})
    teemate_edl_generate(${edl} trusted src dir)
    list(APPEND E_SOURCES ${src})
    list(APPEND edl_dirs ${dir})
  endforeach()
  add_executable(${elf} ${E_SOURCES})
  if(edl_dirs)
    target_include_directories(${elf} PRIVATE ${edl_dirs})
  endif()
  # The language standard as properties too, so that CMake adds no other.
  set_target_properties(${elf} PROPERTIES OUTPUT_NAME ${name}.elf
    RUNTIME_OUTPUT_DIRECTORY ${TEEMATE_ENCLAVE_DIR} LINKER_LANGUAGE CXX
    POSITION_INDEPENDENT_CODE ON INTERPROCEDURAL_OPTIMIZATION OFF
    C_STANDARD 11 C_STANDARD_REQUIRED ON C_EXTENSIONS OFF
    CXX_STANDARD 20 CXX_STANDARD_REQUIRED ON CXX_EXTENSIONS OFF)
  target_link_libraries(${elf} PRIVATE teemate_enclave_flags)
  target_link_options(${elf} PRIVATE -nostdlib -static-pie -Wl,-z,norelro -Wl,-z,text
    -Wl,-z,noexecstack -Wl,--gc-sections -Wl,--build-id=none -Wl,-e,teemate_enclave_entry)
  # The trusted runtime and its mbedTLS subset (sealing, reports) go into
  # every enclave; --gc-sections drops what a program does not use.
  target_link_libraries(${elf} PRIVATE -Wl,--start-group $<TARGET_FILE:${TEEMATE_SDK_TRTS}>
    $<TARGET_FILE:${TEEMATE_SDK_MBEDTLS}> ${E_LIBS}
    ${TEEMATE_SDK_MUSL_LIBC} ${TEEMATE_LIBGCC} -Wl,--end-group)
  foreach(lib ${TEEMATE_SDK_TRTS} ${TEEMATE_SDK_MBEDTLS})
    get_target_property(imported ${lib} IMPORTED)
    if(NOT imported)
      add_dependencies(${elf} ${lib})
    endif()
  endforeach()
  set_property(TARGET ${elf} APPEND PROPERTY LINK_DEPENDS $<TARGET_FILE:${TEEMATE_SDK_TRTS}>
    $<TARGET_FILE:${TEEMATE_SDK_MBEDTLS}>)

  set(config ${E_CONFIG})
  if(NOT IS_ABSOLUTE ${config})
    set(config ${CMAKE_CURRENT_SOURCE_DIR}/${config})
  endif()
  set(unsigned ${TEEMATE_ENCLAVE_DIR}/${name}.unsigned.tme)
  set(image ${TEEMATE_ENCLAVE_DIR}/${name}.tme)
  # pack runs in the config's directory: relative [[mount]] host paths
  # (trusted files are hashed now) are taken from there.
  get_filename_component(config_dir ${config} DIRECTORY)
  add_custom_command(OUTPUT ${image}
    COMMAND ${TEEMATE_SDK_TOOL} pack --config ${config} --elf $<TARGET_FILE:${elf}> -o ${unsigned}
    COMMAND ${TEEMATE_SDK_TOOL} sign --key ${E_KEY} -o ${image} ${unsigned}
    DEPENDS ${elf} ${config} ${TEEMATE_SDK_TOOL} ${E_KEY} ${E_TRUSTED_FILES}
    WORKING_DIRECTORY ${config_dir}
    COMMENT "Packing and signing enclave image ${name}.tme")
  add_custom_target(${name}_enclave ALL DEPENDS ${image})
  if(E_KEY STREQUAL TEEMATE_DEV_KEY)
    add_dependencies(${name}_enclave teemate_dev_key)
  endif()
endfunction()
