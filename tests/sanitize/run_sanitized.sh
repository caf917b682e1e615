#!/usr/bin/env bash
# Builds the host side with AddressSanitizer and UBSan in its own build tree
# (enclave code stays freestanding and unsanitized) and runs the unit and
# integration tests there. Usage: run_sanitized.sh SOURCE_DIR BUILD_DIR
set -euo pipefail
src=$1
out=$2
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
cmake -S "$src" -B "$out" -DTEEMATE_SANITIZE=ON -DTEEMATE_FUZZ=OFF -DCMAKE_BUILD_TYPE=Debug >/dev/null
cmake --build "$out" -j"${JOBS:-$(nproc)}" >/dev/null
cd "$out"
ctest --output-on-failure -L "unit|integration" -LE "^sanitize$|slow" --timeout 600
