#!/usr/bin/env bash
# Installs every Debian bookworm package TeeMate needs to build, test and run
# its demos. Idempotent; needs root (or sudo). Never changes apt's sources.
set -euo pipefail
PACKAGES=(
  build-essential cmake pkg-config git ca-certificates
  libssl-dev nlohmann-json3-dev libcli11-dev libtomlplusplus-dev libcapstone-dev
  libgtest-dev libgmock-dev libbenchmark-dev
  musl-dev dpkg-dev
  clang libclang-rt-14-dev
  python3
)
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "teemate: installing ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
