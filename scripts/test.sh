#!/usr/bin/env bash
# Runs the whole test suite: builds (if needed) and runs every CTest test,
# unit, integration, fuzz and slow ones included. Pass extra ctest arguments
# through, e.g. `scripts/test.sh -LE slow` for the quick subset.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
JOBS=${JOBS:-$(nproc)}
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo -DTEEMATE_FUZZ=ON
cmake --build build -j"$JOBS"
cd build
ctest --output-on-failure --timeout 900 "$@"
