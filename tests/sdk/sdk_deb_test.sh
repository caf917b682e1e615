#!/usr/bin/env bash
# `cpack -G DEB` makes a Debian package of the SDK: checks its metadata and
# contents, unpacks it into a scratch root and builds and runs
# examples/standalone against the unpacked /usr (multiarch library path).
#
#   sdk_deb_test.sh BUILD_DIR SOURCE_DIR
set -euo pipefail
build=$(realpath "$1")
src=$(realpath "$2")
work=$(mktemp -d /tmp/teemate-deb-test.XXXXXX)
trap 'rm -rf "$work"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

(cd "$build" && cpack --config "$build/CPackConfig.cmake" -G DEB -B "$work/pkg") >"$work/cpack.log" 2>&1 || {
  cat "$work/cpack.log"; fail "cpack -G DEB"; }
deb=$(ls "$work"/pkg/teemate_*.deb 2>/dev/null | head -1)
[[ -n $deb ]] || { cat "$work/cpack.log"; fail "cpack made no teemate_*.deb"; }
[[ $(dpkg-deb -f "$deb" Package) == teemate ]] || fail "package name"
depends=$(dpkg-deb -f "$deb" Depends)
[[ $depends == *libssl3* && $depends == *libc6* ]] || fail "Depends lacks the runtime libraries: $depends"
contents=$(dpkg-deb -c "$deb")
# GNUInstallDirs picks lib/ or lib/<multiarch>/ by the configured prefix.
libdir=$(dpkg-deb -c "$deb" | grep -oE "./usr/lib(/[a-z0-9_-]+-linux-gnu)?/libteemate.so.0 " | head -1)
libdir=${libdir%/libteemate.so.0 }
[[ -n $libdir ]] || fail "the package has no libteemate.so.0"
libdir=${libdir#.}
for f in ./usr/bin/teemate ./usr/bin/teemated ./usr/include/teemate/trusted/runtime.h \
         ".$libdir/cmake/TeeMate/TeeMateConfig.cmake" \
         ".$libdir/teemate/enclave/libteemate_trts.a"; do
  grep -qF " $f" <<<"$contents" || fail "the package lacks $f"
done

dpkg-deb -x "$deb" "$work/root"
export LD_LIBRARY_PATH="$work/root$libdir"
cmake -S "$src/examples/standalone" -B "$work/b" -DCMAKE_PREFIX_PATH="$work/root/usr" >"$work/b.log" 2>&1 &&
  cmake --build "$work/b" >>"$work/b.log" 2>&1 || { cat "$work/b.log"; fail "building standalone against the package"; }
out=$("$work/root/usr/bin/teemate" enclave run "$work/b/standalone.tme" 2>/dev/null) || fail "enclave run"
[[ $out == *"standalone ok"* ]] || fail "standalone printed: $out"
host_out=$("$work/b/standalone_host" "$work/b/standalone.tme" 2>/dev/null) || fail "standalone_host"
[[ $host_out == *"host ok"* ]] || fail "standalone_host printed: $host_out"
echo "PASS: $(basename "$deb") installs a working SDK (Depends: $depends)"
