#!/usr/bin/env bash
# The installed SDK as an outside project sees it: installs the build tree
# into a fresh temporary prefix, checks that nothing installed refers back
# to the source or build tree and that libteemate.so and the CMake package
# need none of the build-only dependencies, then builds examples/standalone
# against the prefix (twice, with different consumer settings that must not
# change MRENCLAVE) and runs it with the installed teemate and through
# libteemate.so.
#
#   sdk_install_test.sh BUILD_DIR SOURCE_DIR
set -euo pipefail
build=$(realpath "$1")
src=$(realpath "$2")
work=$(mktemp -d /tmp/teemate-sdk-test.XXXXXX)
trap 'rm -rf "$work"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

prefix=$work/prefix
cmake --install "$build" --prefix "$prefix" >"$work/install.log" || { cat "$work/install.log"; fail "install"; }
for f in bin/teemate bin/teemated lib/libteemate.so include/teemate/enclave.h include/teemate/status.h \
         include/teemate/status_codes.h include/teemate/trusted/runtime.h lib/cmake/TeeMate/TeeMateConfig.cmake \
         lib/teemate/enclave/libteemate_trts.a lib/teemate/enclave/musl/libc.a \
         lib/teemate/enclave/musl/include/stdio.h share/teemate/systemd/teemated.service; do
  [[ -e $prefix/$f ]] || fail "the install lacks $f"
done

# Text files (headers, CMake files, docs, the unit) never name our trees.
if hits=$(grep -rIl -e "$src" -e "$build" "$prefix"); then
  fail "installed files refer to the source or build tree: $hits"
fi
# The host library and the package need no build-only dependency.
needed=$(readelf -d "$prefix/lib/libteemate.so" | grep NEEDED)
if grep -Eiq 'capstone|gtest|cli11' <<<"$needed"; then fail "libteemate.so needs a build-only library: $needed"; fi
if grep -Eiq 'capstone|gtest|cli11' "$prefix"/lib/cmake/TeeMate/*.cmake; then
  fail "the CMake package asks for a build-only dependency"
fi
# Only the public API is exported.
if nm -D --defined-only "$prefix/lib/libteemate.so" | c++filt | grep -Eq 'teemate::(image|sgx|daemon|sim)::'; then
  fail "libteemate.so exports internal symbols"
fi

build_standalone() {
  local dir=$1; shift
  cmake -S "$src/examples/standalone" -B "$dir" -DCMAKE_PREFIX_PATH="$prefix" -DCMAKE_EXPORT_COMPILE_COMMANDS=ON \
    -DCMAKE_DISABLE_FIND_PACKAGE_GTest=ON -DCMAKE_DISABLE_FIND_PACKAGE_CLI11=ON "$@" >"$dir.log" 2>&1 &&
    cmake --build "$dir" >>"$dir.log" 2>&1 || { cat "$dir.log"; fail "building examples/standalone ($*)"; }
  # Nothing in its compile or link lines reaches into src/, include/ or the build tree.
  if grep -rF -e "$src/src" -e "$src/include" -e "$build" "$dir/compile_commands.json" \
       "$dir/CMakeFiles" --include=link.txt --include=flags.make --include=compile_commands.json -l; then
    fail "the standalone build refers to TeeMate's tree"
  fi
}

build_standalone "$work/b1" -DCMAKE_BUILD_TYPE=Release
[[ -f $work/b1/standalone.tme ]] || fail "no standalone.tme in the build directory"
out=$("$prefix/bin/teemate" enclave run "$work/b1/standalone.tme" 2>"$work/run.err") || {
  cat "$work/run.err"; fail "teemate enclave run standalone.tme"; }
[[ $out == *"standalone ok"* ]] || fail "standalone printed: $out"
host_out=$(env -u LD_LIBRARY_PATH "$work/b1/standalone_host" "$work/b1/standalone.tme" 2>"$work/host.err") || {
  cat "$work/host.err"; fail "standalone_host"; }
[[ $host_out == *"host ok"* ]] || fail "standalone_host printed: $host_out"
# Not `ldd | grep -q`: with pipefail, grep's early exit can fail ldd with SIGPIPE.
libs=$(ldd "$work/b1/standalone_host")
grep -q "$prefix/lib/libteemate.so" <<<"$libs" || fail "standalone_host does not use the installed libteemate.so: $libs"

# Consumer settings that must not reach the enclave's code.
build_standalone "$work/b2" -DCMAKE_BUILD_TYPE=Debug -DCMAKE_C_STANDARD=99 -DCMAKE_C_EXTENSIONS=ON \
  -DCMAKE_CXX_STANDARD=17 -DCMAKE_CXX_EXTENSIONS=ON "-DCMAKE_C_FLAGS=-O0 -UNDEBUG" "-DCMAKE_CXX_FLAGS=-O3"
m1=$("$prefix/bin/teemate" measure "$work/b1/standalone.tme")
m2=$("$prefix/bin/teemate" measure "$work/b2/standalone.tme")
[[ $m1 =~ ^[0-9a-f]{64}$ ]] || fail "measure printed '$m1'"
[[ $m1 == "$m2" ]] || fail "MRENCLAVE depends on the consumer's settings: $m1 (Release) vs $m2 (Debug, gnu99, -O0)"
echo "PASS: installed SDK builds and runs examples/standalone; MRENCLAVE $m1 in both configurations"
