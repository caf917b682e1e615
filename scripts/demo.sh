#!/usr/bin/env bash
# The main demo: inspect, verify and run the signed hello enclave image.
set -euo pipefail
cd "$(dirname "$0")/.."
T=build/bin/teemate
IMG=build/enclaves/hello.tme
echo "== teemate verify $IMG"
$T verify "$IMG"
echo
echo "== MRENCLAVE (teemate measure)"
$T measure "$IMG"
echo
echo "== teemate enclave run $IMG -- hello world"
$T enclave run "$IMG" -- hello world
