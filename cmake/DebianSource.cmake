# Fetches a Debian source package at configure time, verified by apt against
# the signed Sources index, and unpacks it with dpkg-source (Debian's patches
# applied) under ${CMAKE_BINARY_DIR}/_deps. Never writes a mirror host name,
# never changes the machine's apt configuration or state: the source list is
# derived from the machine's own apt sources and every apt directory is private.
#
#   teemate_fetch_debian_source(PACKAGE mbedtls VERSION_PREFIX 2.28 OUT_DIR var)
#
# Sets `var` (in the caller's scope) to the unpacked source tree. Downloads
# once per build tree; later configures reuse the unpacked tree.

# Writes the deb-src form of the machine's apt sources into `parts_dir`.
function(_teemate_debian_src_lists parts_dir)
  file(REMOVE_RECURSE ${parts_dir})
  file(MAKE_DIRECTORY ${parts_dir})
  # TEEMATE_APT_ETC_DIR (default /etc/apt) exists to test the derivation.
  set(etc /etc/apt)
  if(TEEMATE_APT_ETC_DIR)
    set(etc ${TEEMATE_APT_ETC_DIR})
  endif()
  # Every deb822 file (*.sources) and one-line file (sources.list, *.list)
  # the machine has: bookworm images use debian.sources, debootstrapped
  # roots a sources.list, mmdebstrap roots other names.
  file(GLOB deb822_files ${etc}/sources.list.d/*.sources)
  file(GLOB oneline_files ${etc}/sources.list.d/*.list)
  if(EXISTS ${etc}/sources.list)
    list(APPEND oneline_files ${etc}/sources.list)
  endif()
  set(found FALSE)
  set(index 0)
  foreach(deb822 IN LISTS deb822_files)
    file(READ ${deb822} text)
    # Only the Types line changes: URIs, suites, components and Signed-By
    # stay exactly as the machine has them.
    string(REGEX REPLACE "(^|\n)[Tt]ypes:[ \t]*deb[ \t]*(\n|$)" "\\1Types: deb-src\\2" text "${text}")
    string(REGEX REPLACE "(^|\n)([Tt]ypes:[ \t]*)deb[ \t]+deb-src[ \t]*(\n|$)" "\\1\\2deb-src\\3" text "${text}")
    if(text MATCHES "[Tt]ypes:[ \t]*deb-src")
      math(EXPR index "${index} + 1")
      file(WRITE ${parts_dir}/teemate-src-${index}.sources "${text}")
      set(found TRUE)
    endif()
  endforeach()
  set(out "")
  foreach(oneline IN LISTS oneline_files)
    file(STRINGS ${oneline} lines)
    foreach(line IN LISTS lines)
      if(line MATCHES "^[ \t]*deb[ \t]+(.*)$")
        string(APPEND out "deb-src ${CMAKE_MATCH_1}\n")
      endif()
    endforeach()
  endforeach()
  if(NOT out STREQUAL "")
    file(WRITE ${parts_dir}/teemate-src.list "${out}")
    set(found TRUE)
  endif()
  if(NOT found)
    message(FATAL_ERROR "cannot fetch Debian source packages: no 'deb' source in ${etc}/sources.list "
      "or ${etc}/sources.list.d/ to derive a 'deb-src' source from")
  endif()
endfunction()

# Reads "Version:" from a .dsc file or the first changelog line of a tree.
function(_teemate_debian_tree_version dir out_var)
  set(${out_var} "" PARENT_SCOPE)
  if(EXISTS ${dir}/debian/changelog)
    file(STRINGS ${dir}/debian/changelog first LIMIT_COUNT 1)
    if(first MATCHES "^[^ ]+ \\(([^)]+)\\)")
      set(${out_var} "${CMAKE_MATCH_1}" PARENT_SCOPE)
    endif()
  endif()
endfunction()

function(teemate_fetch_debian_source)
  cmake_parse_arguments(D "" "PACKAGE;VERSION_PREFIX;OUT_DIR" "" ${ARGN})
  if(NOT D_PACKAGE OR NOT D_OUT_DIR)
    message(FATAL_ERROR "teemate_fetch_debian_source: PACKAGE and OUT_DIR are required")
  endif()
  if(NOT D_PACKAGE MATCHES "^[a-z0-9][a-z0-9.+-]+$")
    message(FATAL_ERROR "teemate_fetch_debian_source: '${D_PACKAGE}' is not a Debian source package name")
  endif()
  set(pkg ${D_PACKAGE})
  string(REPLACE "." "\\." prefix_re "${D_VERSION_PREFIX}")
  set(deps ${CMAKE_BINARY_DIR}/_deps)
  set(stamp ${deps}/${pkg}.source-dir)

  # Cached: a stamp written only after a complete unpack names the tree.
  if(EXISTS ${stamp})
    file(READ ${stamp} cached)
    string(STRIP "${cached}" cached)
    _teemate_debian_tree_version(${cached} version)
    if(IS_DIRECTORY ${cached} AND (NOT D_VERSION_PREFIX OR version MATCHES "^([0-9]+:)?${prefix_re}[.-]"))
      set(${D_OUT_DIR} ${cached} PARENT_SCOPE)
      return()
    endif()
    file(REMOVE ${stamp})
  endif()

  find_program(TEEMATE_APT_GET apt-get)
  find_program(TEEMATE_APT_CACHE apt-cache)
  find_program(TEEMATE_DPKG_SOURCE dpkg-source)
  find_program(TEEMATE_DPKG dpkg)
  if(NOT TEEMATE_APT_GET OR NOT TEEMATE_APT_CACHE OR NOT TEEMATE_DPKG)
    message(FATAL_ERROR "cannot fetch Debian source package ${pkg}: apt-get/apt-cache/dpkg not found (a Debian system is required)")
  endif()
  if(NOT TEEMATE_DPKG_SOURCE)
    message(FATAL_ERROR "cannot unpack Debian source package ${pkg}: dpkg-source not found; apt-get install dpkg-dev")
  endif()

  # Private apt state: nothing of the machine's apt configuration changes.
  set(apt ${deps}/apt)
  file(MAKE_DIRECTORY ${apt}/lists/partial ${apt}/cache/archives/partial ${apt}/download)
  file(WRITE ${apt}/none.list "")
  _teemate_debian_src_lists(${apt}/parts)
  set(opts
    -o Dir::Etc::SourceList=${apt}/none.list
    -o Dir::Etc::SourceParts=${apt}/parts
    -o Dir::State::Lists=${apt}/lists
    -o Dir::Cache=${apt}/cache
    # As root apt drops to the _apt user for downloads, which cannot write
    # into a root-owned build tree; downloads are still verified by hash
    # against the signed index. Ignored when not running as root.
    -o APT::Sandbox::User=root
    -q)

  # The index is refreshed at most once per configure, shared by packages.
  get_property(updated GLOBAL PROPERTY TEEMATE_DEBIAN_SOURCES_UPDATED)
  if(NOT updated)
    message(STATUS "Debian sources: apt-get update (private lists under ${apt})")
    execute_process(COMMAND ${TEEMATE_APT_GET} ${opts} update
      RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
    string(STRIP "${out}${err}" log)
    # apt-get update exits 0 even when a source failed: "W:"/"E:" lines say so.
    if(NOT rc EQUAL 0 OR err MATCHES "(^|\n)E: " OR err MATCHES "Failed to fetch")
      message(FATAL_ERROR "cannot fetch Debian source package ${pkg}: ${log}; is the network reachable?")
    endif()
    set_property(GLOBAL PROPERTY TEEMATE_DEBIAN_SOURCES_UPDATED TRUE)
  endif()

  # Pick the newest version whose upstream part starts with VERSION_PREFIX.
  execute_process(COMMAND ${TEEMATE_APT_CACHE} ${opts} showsrc --only-source ${pkg}
    RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "cannot fetch Debian source package ${pkg}: ${out}${err}; is the network reachable?")
  endif()
  string(REGEX MATCHALL "(^|\n)Version: [^\n]+" lines "${out}")
  set(best "")
  set(seen "")
  foreach(line IN LISTS lines)
    string(REGEX REPLACE "^\n?Version: " "" v "${line}")
    string(STRIP "${v}" v)
    list(APPEND seen ${v})
    string(REGEX REPLACE "^[0-9]+:" "" upstream "${v}")  # drop an epoch
    if(D_VERSION_PREFIX AND NOT upstream MATCHES "^${prefix_re}[.-]")
      continue()
    endif()
    if(best STREQUAL "")
      set(best ${v})
    else()
      execute_process(COMMAND ${TEEMATE_DPKG} --compare-versions ${v} gt ${best} RESULT_VARIABLE newer)
      if(newer EQUAL 0)
        set(best ${v})
      endif()
    endif()
  endforeach()
  if(best STREQUAL "")
    if(seen STREQUAL "")
      message(FATAL_ERROR "cannot fetch Debian source package ${pkg}: the deb-src index derived from "
        "the machine's apt sources does not list it${err}; is the network reachable?")
    endif()
    message(FATAL_ERROR "cannot fetch Debian source package ${pkg}: version ${D_VERSION_PREFIX}.x is required, "
      "the archive offers only: ${seen}")
  endif()

  # Download (apt checks every file against the signed Sources index).
  set(download ${apt}/download/${pkg}-${best})
  string(REPLACE ":" "_" download "${download}")
  file(REMOVE_RECURSE ${download})
  file(MAKE_DIRECTORY ${download})
  message(STATUS "Debian sources: apt-get source --download-only ${pkg}=${best}")
  execute_process(COMMAND ${TEEMATE_APT_GET} ${opts} source --download-only ${pkg}=${best}
    WORKING_DIRECTORY ${download} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  string(STRIP "${out}${err}" log)
  file(GLOB dsc ${download}/*.dsc)
  list(LENGTH dsc ndsc)
  if(NOT rc EQUAL 0 OR NOT ndsc EQUAL 1)
    message(FATAL_ERROR "cannot fetch Debian source package ${pkg}: ${log}; is the network reachable?")
  endif()

  # Unpack next to the final place, then rename: never a half-unpacked tree.
  string(REGEX REPLACE "^[0-9]+:" "" plain "${best}")
  set(final ${deps}/src/${pkg}-${plain})
  set(tmp ${deps}/src/.${pkg}-${plain}.tmp)
  file(REMOVE_RECURSE ${tmp} ${final})
  file(MAKE_DIRECTORY ${deps}/src)
  execute_process(COMMAND ${TEEMATE_DPKG_SOURCE} --no-copy -x ${dsc} ${tmp}
    WORKING_DIRECTORY ${download} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc EQUAL 0 OR NOT IS_DIRECTORY ${tmp})
    file(REMOVE_RECURSE ${tmp})
    message(FATAL_ERROR "cannot unpack Debian source package ${pkg} (${dsc}): ${out}${err}")
  endif()
  _teemate_debian_tree_version(${tmp} unpacked)
  if(NOT unpacked STREQUAL best)
    file(REMOVE_RECURSE ${tmp})
    message(FATAL_ERROR "Debian source package ${pkg}: unpacked version '${unpacked}' is not the requested ${best}")
  endif()
  file(RENAME ${tmp} ${final})
  file(WRITE ${stamp} "${final}\n")
  message(STATUS "Debian sources: ${pkg} ${best} unpacked in ${final}")
  set(${D_OUT_DIR} ${final} PARENT_SCOPE)
endfunction()
