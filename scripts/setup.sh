#!/usr/bin/env bash
# One command from a fresh Debian bookworm machine to a running demo:
# installs dependencies, builds everything into build/, and runs the main
# demo (build, sign and run the hello enclave on the sim backend).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
JOBS=${JOBS:-$(nproc)}
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo
cmake --build build -j"$JOBS"
scripts/demo.sh
